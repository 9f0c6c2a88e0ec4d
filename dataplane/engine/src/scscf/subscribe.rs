//! SUBSCRIBE for the reg event package at the S-CSCF: the subscription is kept in the
//! AoR's state (compare-and-swap, as registrations), answered 200 with our tag, and a
//! full-state NOTIFY follows at once.

use ims::regevent::{self, EndReason};
use ims::registrar::AorState;
use sip::Message;

use super::store::Versioned;
use super::{Decision, ScscfCore, aor_of, notify, unix_now};

const CAS_ATTEMPTS: usize = 8;

pub(crate) async fn subscribe(scscf: &ScscfCore, msg: &Message<'_>) -> Decision {
    let Some(aor) = msg.to().ok().and_then(|to| aor_of(to.uri())) else {
        return Decision::status(400);
    };
    let new_tag = format!("{:016x}", scscf.next_salt());
    for _ in 0..CAS_ATTEMPTS {
        let Ok(current) = scscf.store.get(&aor).await else {
            return Decision::status(503);
        };
        // Only a registered AoR can be watched: subscriptions to names that are not
        // registered would fill the store with nothing to report.
        if current.state.is_unregistered() && msg.to().ok().and_then(|t| t.tag()).is_none() {
            return Decision::status(403);
        }
        let now_s = unix_now();
        let done = match regevent::subscribe(
            &current.state,
            msg,
            &new_tag,
            now_s,
            scscf.config.sub_max_expires,
        ) {
            Ok(done) => done,
            Err(refusal) => return Decision::status(refusal.status()),
        };
        let next = Versioned {
            state: done.state.clone(),
            ..current
        };
        match scscf.store.compare_and_set(&aor, next).await {
            Ok(true) => {}
            Ok(false) => continue,
            Err(_) => return Decision::status(503),
        }
        let ends = (done.expires_in == 0).then_some(EndReason::Unsubscribed);
        notify::queue(
            scscf,
            &aor,
            &done.state,
            &[],
            &done.subscription,
            ends,
            now_s,
        );
        return Decision::Answer {
            status: 200,
            to_tag: Some(done.subscription.to_tag.clone()),
            headers: vec![
                ("Expires", done.expires_in.to_string().into_bytes()),
                (
                    "Contact",
                    format!("<{}>", scscf.config.scscf_uri).into_bytes(),
                ),
            ],
        };
    }
    Decision::status(500)
}

/// Ends a subscription whose subscriber is gone (its NOTIFY got 481 or no answer).
pub(crate) async fn drop_subscription(scscf: &ScscfCore, aor: &str, to_tag: &str) {
    for _ in 0..CAS_ATTEMPTS {
        let Ok(current) = scscf.store.get(aor).await else {
            return;
        };
        if !current.state.subscriptions.contains_key(to_tag) {
            return;
        }
        let mut state: AorState = current.state.clone();
        state.subscriptions.remove(to_tag);
        let next = Versioned { state, ..current };
        if !matches!(scscf.store.compare_and_set(aor, next).await, Ok(false)) {
            return;
        }
    }
}
