//! SUBSCRIBE for the reg event package (RFC 3680): the subscription is kept in the AoR's
//! state (compare-and-swap, as registrations), answered 200 with our tag, and a full-state
//! NOTIFY follows at once. Reg-event is ours to serve, whoever asks (a UE subscribes to
//! its own through its Service-Route); other event packages go on to the user's devices.

use sip::Message;

use super::notify::{self, Change};
use super::{
    Answer, CAS_ATTEMPTS, Cx, Decision, Facts, Response, Settings, Sproutlet, SproutletTsx,
    Versioned, is_reg_event, to_aor, unexpected,
};
use crate::regevent::{self, EndReason, Subscribed};

/// The reg-event sproutlet.
#[derive(Debug, Clone, Copy, Default)]
pub struct RegEvent;

impl Sproutlet for RegEvent {
    fn name(&self) -> &'static str {
        "reg-event"
    }

    fn get_tsx(&self, req: &Message<'_>, _settings: &Settings) -> Option<Box<dyn SproutletTsx>> {
        is_reg_event(req).then(|| {
            Box::new(RegEventTsx {
                aor: String::new(),
                new_tag: String::new(),
                waiting: Waiting::Nothing,
            }) as Box<dyn SproutletTsx>
        })
    }
}

#[derive(Debug)]
enum Waiting {
    Nothing,
    Read { attempt: u32 },
    Write { done: Box<Subscribed>, attempt: u32 },
}

#[derive(Debug)]
struct RegEventTsx {
    aor: String,
    /// Our To tag, if this SUBSCRIBE starts a subscription.
    new_tag: String,
    waiting: Waiting,
}

impl SproutletTsx for RegEventTsx {
    fn on_initial_request(
        &mut self,
        req: &Message<'_>,
        _facts: &mut Facts,
        cx: &mut Cx<'_>,
    ) -> Decision {
        let Some(aor) = to_aor(req) else {
            return Decision::status(400);
        };
        self.aor = aor;
        self.new_tag = format!("{:016x}", cx.salts.next_salt());
        self.read(1)
    }

    fn on_answer(
        &mut self,
        req: &Message<'_>,
        answer: Answer,
        _facts: &mut Facts,
        cx: &mut Cx<'_>,
    ) -> Decision {
        match (
            std::mem::replace(&mut self.waiting, Waiting::Nothing),
            answer,
        ) {
            (Waiting::Read { attempt }, Answer::Aor(current)) => match current {
                Ok(current) => self.subscribe(req, current, attempt, cx),
                Err(_) => Decision::status(503),
            },
            (Waiting::Write { done, attempt }, Answer::Written(written)) => match written {
                Ok(true) => self.subscribed(&done, cx),
                Ok(false) if attempt < CAS_ATTEMPTS => self.read(attempt + 1),
                Ok(false) => Decision::status(500),
                Err(_) => Decision::status(503),
            },
            _ => unexpected(),
        }
    }
}

impl RegEventTsx {
    fn read(&mut self, attempt: u32) -> Decision {
        self.waiting = Waiting::Read { attempt };
        Decision::read_aor(&self.aor)
    }

    fn subscribe(
        &mut self,
        req: &Message<'_>,
        current: Versioned,
        attempt: u32,
        cx: &mut Cx<'_>,
    ) -> Decision {
        // Only a registered AoR can be watched: subscriptions to names that are not
        // registered would fill the store with nothing to report.
        let refresh = req.to().ok().and_then(|t| t.tag()).is_some();
        if current.state.is_unregistered() && !refresh {
            return Decision::status(403);
        }
        let done = match regevent::subscribe(
            &current.state,
            req,
            &self.new_tag,
            cx.now_s,
            cx.settings.sub_max_expires,
        ) {
            Ok(done) => done,
            Err(refusal) => return Decision::status(refusal.status()),
        };
        let state = done.state.clone();
        self.waiting = Waiting::Write {
            done: Box::new(done),
            attempt,
        };
        Decision::write_aor(&self.aor, current, state)
    }

    fn subscribed(&self, done: &Subscribed, cx: &mut Cx<'_>) -> Decision {
        let ends = (done.expires_in == 0).then_some(EndReason::Unsubscribed);
        let change = Change {
            aor: &self.aor,
            state: &done.state,
            ended_bindings: &[],
        };
        notify::queue(
            cx.notifies,
            &cx.settings.scscf_uri,
            change,
            &done.subscription,
            ends,
            cx.now_s,
        );
        Decision::Respond(Response {
            status: 200,
            to_tag: Some(done.subscription.to_tag.clone()),
            headers: vec![
                ("Expires", done.expires_in.to_string().into_bytes()),
                (
                    "Contact",
                    format!("<{}>", cx.settings.scscf_uri).into_bytes(),
                ),
            ],
        })
    }
}
