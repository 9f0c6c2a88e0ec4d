//! The registrar sproutlet (reference §1.4): the registrar's rules applied to the AoR with
//! compare-and-swap on the registration store, Homestead told when the AoR becomes
//! registered and when it ends, watchers notified, and the 200 OK with every binding,
//! Path, Service-Route and P-Associated-URI — sent only after the write succeeded.

use sip::{HeaderName, Message, Method};

use super::notify::{self, Change};
use super::{
    Answer, CAS_ATTEMPTS, Cx, Decision, Facts, Query, RegistrationChange, Settings, Sproutlet,
    SproutletTsx, Versioned, default_impi, store_failed, to_aor, unexpected,
};
use crate::registrar::{self, Applied, LastAuth, Refusal, Register};

/// The registrar sproutlet.
#[derive(Debug, Clone, Copy, Default)]
pub struct Registrar;

impl Sproutlet for Registrar {
    fn name(&self) -> &'static str {
        "registrar"
    }

    fn get_tsx(&self, req: &Message<'_>, _settings: &Settings) -> Option<Box<dyn SproutletTsx>> {
        (req.method() == Some(Method::Register)).then(|| {
            Box::new(RegistrarTsx {
                aor: String::new(),
                impi: String::new(),
                register: None,
                proof: None,
                associated: Vec::new(),
                waiting: Waiting::Nothing,
            }) as Box<dyn SproutletTsx>
        })
    }
}

#[derive(Debug)]
enum Waiting {
    Nothing,
    /// The AoR as it is.
    Current,
    /// Homestead's implicit registration set, then a write of `current` with the
    /// REGISTER as already applied to it.
    Identities {
        current: Versioned,
        applied: Box<Applied>,
    },
    /// A compare-and-swap write.
    Write {
        applied: Box<Applied>,
        attempt: u32,
    },
    /// The AoR again after losing a compare-and-swap.
    Reread {
        attempt: u32,
    },
    /// Homestead told of the deregistration.
    Deregistered {
        applied: Box<Applied>,
    },
}

#[derive(Debug)]
struct RegistrarTsx {
    aor: String,
    impi: String,
    register: Option<Register>,
    /// The credentials' nonce and count, stored with the AoR against replays.
    proof: Option<(String, u32)>,
    /// The implicit registration set (P-Associated-URI).
    associated: Vec<String>,
    waiting: Waiting,
}

impl SproutletTsx for RegistrarTsx {
    fn on_initial_request(
        &mut self,
        req: &Message<'_>,
        facts: &mut Facts,
        _cx: &mut Cx<'_>,
    ) -> Decision {
        let Some(aor) = to_aor(req) else {
            return Decision::status(400);
        };
        self.impi = facts.impi.clone().unwrap_or_else(|| default_impi(&aor));
        self.proof = facts.proof.clone();
        match Register::from_message(req, &self.impi) {
            Ok(register) => self.register = Some(register),
            Err(refusal) => return refused(refusal),
        }
        self.aor = aor;
        self.waiting = Waiting::Current;
        self.read_aor()
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
            (Waiting::Current, Answer::Aor(current)) => match current {
                Ok(current) => self.consider(current, cx),
                Err(e) => store_failed(e),
            },
            (Waiting::Identities { current, applied }, Answer::Identities(identities)) => {
                match identities {
                    Ok(identities) => {
                        self.associated = identities;
                        self.write(current, Some(applied), 1, cx)
                    }
                    Err(super::LookupFailure::NotFound(_)) => Decision::status(403),
                    Err(super::LookupFailure::Unavailable(_)) => Decision::status(504),
                }
            }
            (Waiting::Reread { attempt }, Answer::Aor(current)) => match current {
                Ok(current) => self.write(current, None, attempt, cx),
                Err(e) => store_failed(e),
            },
            (Waiting::Write { applied, attempt }, Answer::Written(written)) => match written {
                Ok(true) => self.written(req, applied, cx),
                Ok(false) if attempt < CAS_ATTEMPTS => {
                    self.waiting = Waiting::Reread {
                        attempt: attempt + 1,
                    };
                    self.read_aor()
                }
                Ok(false) => Decision::status(500),
                Err(e) => store_failed(e),
            },
            (Waiting::Deregistered { applied }, Answer::Identities(told)) => match told {
                // The bindings are gone whatever Homestead says; it is told as Sprout
                // tells it, and its being down is the UE's to hear.
                Err(super::LookupFailure::Unavailable(_)) => Decision::status(504),
                _ => self.ok(req, &applied, cx),
            },
            _ => unexpected(),
        }
    }
}

impl RegistrarTsx {
    fn read_aor(&self) -> Decision {
        Decision::read_aor(&self.aor)
    }

    /// A REGISTER the rules refuse (423, out of order, emergency) is refused before
    /// Homestead hears of it. Homestead hears of a registration once, when the AoR
    /// becomes registered (reqtype reg, before the store is written, as Sprout does);
    /// refreshes reuse the implicit registration set it gave then.
    fn consider(&mut self, current: Versioned, cx: &mut Cx<'_>) -> Decision {
        let Some(register) = self.register.as_ref() else {
            return unexpected();
        };
        let applied =
            match registrar::apply(&current.state, register, cx.now_s, cx.settings.register) {
                Ok(applied) => Box::new(applied),
                Err(refusal) => return refused(refusal),
            };
        let adds = register
            .contacts
            .as_ref()
            .is_some_and(|c| c.iter().any(|c| c.expires.or(register.expires) != Some(0)));
        self.associated = current.state.associated_uris.clone();
        if adds && (current.state.is_unregistered() || self.associated.is_empty()) {
            self.waiting = Waiting::Identities { current, applied };
            return Decision::Ask(Query::Registration {
                impu: self.aor.clone(),
                impi: self.impi.clone(),
                change: RegistrationChange::Register,
            });
        }
        self.write(current, Some(applied), 1, cx)
    }

    /// Applies the REGISTER to `current` (unless `applied` is that already) and asks for
    /// the compare-and-swap.
    fn write(
        &mut self,
        current: Versioned,
        applied: Option<Box<Applied>>,
        attempt: u32,
        cx: &mut Cx<'_>,
    ) -> Decision {
        if self.associated.is_empty() {
            self.associated.push(self.aor.clone());
        }
        if let (Some((nonce, nc)), Some(last)) = (&self.proof, &current.state.last_auth)
            && *nonce == last.nonce
            && *nc <= last.nc
        {
            return Decision::status(403);
        }
        let mut applied = match applied {
            Some(applied) => applied,
            None => {
                let Some(register) = self.register.as_ref() else {
                    return unexpected();
                };
                match registrar::apply(&current.state, register, cx.now_s, cx.settings.register) {
                    Ok(applied) => Box::new(applied),
                    Err(refusal) => return refused(refusal),
                }
            }
        };
        if !applied.state.is_unregistered() {
            applied.state.associated_uris.clone_from(&self.associated);
        }
        // A successful REGISTER consumes the outstanding AKA challenges.
        applied.state.pending_aka.clear();
        if let Some((nonce, nc)) = &self.proof {
            // Kept past the nonce's lifetime (and the clock skew nonces allow).
            applied.state.last_auth = Some(LastAuth {
                nonce: nonce.clone(),
                nc: *nc,
                until: cx.now_s + cx.settings.nonce_lifetime_s + 10,
            });
        }
        let state = applied.state.clone();
        self.waiting = Waiting::Write { applied, attempt };
        Decision::write_aor(&self.aor, current, state)
    }

    fn written(&mut self, req: &Message<'_>, applied: Box<Applied>, cx: &mut Cx<'_>) -> Decision {
        let change = Change {
            aor: &self.aor,
            state: &applied.state,
            ended_bindings: &applied.ended_bindings,
        };
        notify::queue_changes(
            cx.notifies,
            &cx.settings.scscf_uri,
            change,
            &applied.notified,
            &applied.ended,
            cx.now_s,
        );
        if applied.deregistered {
            self.waiting = Waiting::Deregistered { applied };
            return Decision::Ask(Query::Registration {
                impu: self.aor.clone(),
                impi: self.impi.clone(),
                change: RegistrationChange::DeregisterUser,
            });
        }
        self.ok(req, &applied, cx)
    }

    fn ok(&self, req: &Message<'_>, applied: &Applied, cx: &Cx<'_>) -> Decision {
        let gruu = req.supports(b"gruu");
        let mut headers: Vec<(&'static str, Vec<u8>)> = Vec::new();
        // One line each for the bindings and the identities, however many there are.
        let contacts = registrar::contact_values(&applied.state, &self.aor, cx.now_s, gruu);
        if !contacts.is_empty() {
            headers.push(("Contact", contacts.join(", ").into_bytes()));
        }
        for path in req.values(HeaderName::Path) {
            headers.push(("Path", path.to_vec()));
        }
        if !applied.state.is_unregistered() {
            let route = format!("<{};lr;orig>", cx.settings.scscf_uri);
            headers.push(("Service-Route", route.into_bytes()));
            let identities: Vec<String> = self
                .associated
                .iter()
                .filter(|u| !u.contains('!'))
                .map(|u| format!("<{u}>"))
                .collect();
            if !identities.is_empty() {
                headers.push(("P-Associated-URI", identities.join(", ").into_bytes()));
            }
        }
        Decision::answer(200, headers)
    }
}

fn refused(refusal: Refusal) -> Decision {
    let headers = match refusal {
        Refusal::IntervalTooBrief { min_expires } => {
            vec![("Min-Expires", min_expires.to_string().into_bytes())]
        }
        _ => Vec::new(),
    };
    Decision::answer(refusal.status(), headers)
}
