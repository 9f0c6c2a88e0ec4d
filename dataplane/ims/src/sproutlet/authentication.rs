//! Authentication (reference §1.4): REGISTERs challenged with 401 and, when configured,
//! initial requests from our users with 407; digest MD5 checked against Homestead's HA1,
//! Digest AKA against the vector kept with the AoR since the challenge (resynchronised
//! from AUTS). A request that proves itself goes on down the chain with its private
//! identity in [`Facts`].

use sip::{HeaderName, Message, Method};

use super::{
    Answer, CAS_ATTEMPTS, Cx, Decision, Facts, LookupFailure, Query, Salts, Settings, Sproutlet,
    SproutletTsx, Versioned, aor_of, default_impi, is_initial, is_originating, is_reg_event,
    store_failed, to_aor, unexpected,
};
use crate::auth::aka::{AkaVersion, PendingAka};
use crate::auth::nonce::NonceCheck;
use crate::auth::{Authenticator, ChallengeKind, Outcome, Presented};

/// How long a Digest AKA challenge waits for its answer (Clearwater's 40 s).
const AKA_CHALLENGE_S: u64 = 40;

/// The authentication sproutlet.
#[derive(Debug, Clone, Copy, Default)]
pub struct Authentication;

impl Sproutlet for Authentication {
    fn name(&self) -> &'static str {
        "authentication"
    }

    fn get_tsx(&self, req: &Message<'_>, settings: &Settings) -> Option<Box<dyn SproutletTsx>> {
        let kind = if req.method() == Some(Method::Register) {
            settings
                .authenticate_register
                .then_some(ChallengeKind::Register)?
        } else if settings.authenticate_originating
            && is_initial(req)
            && is_originating(req)
            && !is_reg_event(req)
        {
            // A UE's subscription to its own reg event comes through its Service-Route
            // right after it registered; Sprout serves it without a challenge.
            ChallengeKind::Proxy
        } else {
            return None;
        };
        Some(Box::new(AuthenticationTsx {
            kind,
            identity: String::new(),
            waiting: Waiting::Nothing,
        }))
    }
}

/// Challenges a REGISTER that carries no credentials for us into `out` without a
/// transaction: the challenge needs no lookup, so known and unknown users get the same
/// answer, at once. `false` when the REGISTER needs the chain.
pub fn immediate_challenge(
    req: &Message<'_>,
    settings: &Settings,
    auth: &Authenticator,
    salts: &mut Salts,
    now_s: u64,
    out: &mut Vec<u8>,
) -> bool {
    if !settings.authenticate_register
        || auth.inspect(req, ChallengeKind::Register, now_s) != Presented::Challenge
    {
        return false;
    }
    let Some(aor) = to_aor(req) else {
        return false;
    };
    out.clear();
    auth.challenge(
        now_s,
        salts.next_salt(),
        default_impi(&aor).as_bytes(),
        false,
        out,
    );
    true
}

#[derive(Debug)]
enum Waiting {
    Nothing,
    /// The HA1 of `impi`, whose credentials carried a nonce of ours (`nonce`).
    Ha1 {
        impi: String,
        nonce: NonceCheck,
    },
    /// The AoR, for the AKA challenge the answer is to.
    Challenged {
        impi: String,
        version: AkaVersion,
    },
    /// A new AKA vector.
    Vector {
        impi: String,
        version: AkaVersion,
    },
    /// The AoR, to keep a new challenge with it.
    KeepRead {
        pending: PendingAka,
        attempt: u32,
    },
    /// The write of the AoR with the new challenge.
    KeepWrite {
        pending: PendingAka,
        attempt: u32,
    },
}

#[derive(Debug)]
struct AuthenticationTsx {
    kind: ChallengeKind,
    /// The AoR registering, or the user served.
    identity: String,
    waiting: Waiting,
}

impl SproutletTsx for AuthenticationTsx {
    fn on_initial_request(
        &mut self,
        req: &Message<'_>,
        _facts: &mut Facts,
        cx: &mut Cx<'_>,
    ) -> Decision {
        let identity = match self.kind {
            ChallengeKind::Register => to_aor(req),
            ChallengeKind::Proxy => served_user(req),
        };
        let Some(identity) = identity else {
            return Decision::status(400);
        };
        self.identity = identity;
        match cx.auth.inspect(req, self.kind, cx.now_s) {
            Presented::Malformed => Decision::status(400),
            Presented::WrongUri => Decision::answer(
                400,
                vec![(
                    "Warning",
                    b"399 whitewater \"The digest uri is not the Request-URI\"".to_vec(),
                )],
            ),
            Presented::Challenge => {
                let impi = default_impi(&self.identity);
                self.challenge(cx, &impi, false)
            }
            // Digest AKA authenticates registrations only.
            Presented::Aka { .. } if self.kind == ChallengeKind::Proxy => Decision::status(403),
            Presented::Aka { impi, version, .. } => {
                self.waiting = Waiting::Challenged {
                    impi: text(impi),
                    version,
                };
                self.read_aor()
            }
            Presented::Verify { impi, nonce, .. } => {
                let impi = text(impi);
                if cx.auth.guessing().refuses(&impi, cx.source, cx.now_s) {
                    return locked_out();
                }
                self.waiting = Waiting::Ha1 {
                    impi: impi.clone(),
                    nonce,
                };
                Decision::Ask(Query::DigestHa1 {
                    impi,
                    impu: self.identity.clone(),
                })
            }
        }
    }

    fn on_answer(
        &mut self,
        req: &Message<'_>,
        answer: Answer,
        facts: &mut Facts,
        cx: &mut Cx<'_>,
    ) -> Decision {
        match (
            std::mem::replace(&mut self.waiting, Waiting::Nothing),
            answer,
        ) {
            (Waiting::Ha1 { impi, nonce }, Answer::Ha1(ha1)) => match ha1 {
                Ok(ha1) => self.check_digest(req, impi, nonce, &ha1, facts, cx),
                Err(failure) => {
                    if matches!(failure, LookupFailure::NotFound(_)) {
                        cx.auth.guessing().failed(&impi, cx.source, cx.now_s);
                    }
                    lookup_failed(&failure)
                }
            },
            (Waiting::Challenged { impi, version }, Answer::Aor(current)) => match current {
                Ok(current) => self.check_aka(req, impi, version, &current, facts, cx),
                Err(e) => store_failed(e),
            },
            (Waiting::Vector { impi, version }, Answer::AkaVector(vector)) => match vector {
                Ok(Some(vector)) => {
                    let pending = PendingAka {
                        impi,
                        nonce: vector.nonce,
                        xres: vector.xres,
                        ck: vector.ck,
                        ik: vector.ik,
                        version,
                        expires: cx.now_s + AKA_CHALLENGE_S,
                    };
                    self.waiting = Waiting::KeepRead {
                        pending,
                        attempt: 1,
                    };
                    self.read_aor()
                }
                // A digest subscriber: challenge for digest instead.
                Ok(None) => self.challenge(cx, &impi, false),
                Err(failure) => lookup_failed(&failure),
            },
            (Waiting::KeepRead { pending, attempt }, Answer::Aor(current)) => match current {
                Ok(current) => self.keep_challenge(current, pending, attempt),
                Err(e) => store_failed(e),
            },
            (Waiting::KeepWrite { pending, attempt }, Answer::Written(written)) => match written {
                Ok(true) => {
                    let realm = String::from_utf8_lossy(cx.auth.realm()).into_owned();
                    let mut value = Vec::with_capacity(256);
                    pending.challenge(&realm, &mut value);
                    Decision::answer(401, vec![(self.kind.challenge_header(), value)])
                }
                Ok(false) if attempt < CAS_ATTEMPTS => {
                    self.waiting = Waiting::KeepRead {
                        pending,
                        attempt: attempt + 1,
                    };
                    self.read_aor()
                }
                Ok(false) => Decision::status(500),
                Err(e) => store_failed(e),
            },
            _ => unexpected(),
        }
    }
}

impl AuthenticationTsx {
    fn read_aor(&self) -> Decision {
        Decision::read_aor(&self.identity)
    }

    fn challenge(&self, cx: &mut Cx<'_>, impi: &str, stale: bool) -> Decision {
        let mut value = Vec::with_capacity(128);
        let salt = cx.salts.next_salt();
        cx.auth
            .challenge(cx.now_s, salt, impi.as_bytes(), stale, &mut value);
        let status = match self.kind {
            ChallengeKind::Register => 401,
            ChallengeKind::Proxy => 407,
        };
        Decision::answer(status, vec![(self.kind.challenge_header(), value)])
    }

    fn method<'m>(&self, req: &'m Message<'_>) -> &'m [u8] {
        match self.kind {
            ChallengeKind::Register => b"REGISTER",
            ChallengeKind::Proxy => req.method().map_or(&b""[..], |m| m.as_bytes()),
        }
    }

    fn check_digest(
        &self,
        req: &Message<'_>,
        impi: String,
        checked: NonceCheck,
        ha1: &str,
        facts: &mut Facts,
        cx: &mut Cx<'_>,
    ) -> Decision {
        // The nonce's age is judged again now, not when the request came: one that went
        // stale while Homestead answered gets a stale challenge rather than a late
        // acceptance. Its HMAC was checked then.
        let Presented::Verify {
            credentials, nonce, ..
        } = cx.auth.reinspect(req, self.kind, checked, cx.now_s)
        else {
            // The nonce went stale while Homestead answered.
            return self.challenge(cx, &impi, true);
        };
        let outcome = cx.auth.verify(
            &credentials,
            nonce,
            self.method(req),
            ha1.as_bytes(),
            cx.now_s,
        );
        match outcome {
            Outcome::Authenticated => {
                match self.kind {
                    ChallengeKind::Register => {
                        facts.proof = used_nonce(req, cx.auth.realm());
                    }
                    ChallengeKind::Proxy => facts.proxy_authenticated = true,
                }
                facts.impi = Some(impi);
                Decision::Next
            }
            Outcome::Stale => self.challenge(cx, &impi, true),
            Outcome::Forbidden => {
                cx.auth.guessing().failed(&impi, cx.source, cx.now_s);
                Decision::status(403)
            }
            Outcome::Replayed => Decision::status(403),
            Outcome::Busy => Decision::status(503),
        }
    }

    /// Digest AKA: check the answer against the vector kept from the challenge, or ask
    /// Homestead for a new one (after resynchronising when the UE sent `auts`).
    fn check_aka(
        &mut self,
        req: &Message<'_>,
        impi: String,
        version: AkaVersion,
        current: &Versioned,
        facts: &mut Facts,
        cx: &mut Cx<'_>,
    ) -> Decision {
        let Presented::Aka { credentials, .. } = cx.auth.inspect(req, self.kind, cx.now_s) else {
            return unexpected();
        };
        let nonce = credentials.nonce().unwrap_or_default();
        // The challenge this answer is to: the vector kept under its nonce.
        let pending = current
            .state
            .pending_aka
            .iter()
            .find(|p| !nonce.is_empty() && p.nonce.as_bytes() == nonce);
        let resync = match (credentials.auts(), pending) {
            (Some(auts), Some(p)) => match resync_auth(&p.nonce, auts) {
                Some(resync) => Some(resync),
                None => return Decision::status(403),
            },
            // AUTS for a challenge we did not send.
            (Some(_), None) => return Decision::status(403),
            (None, _) => None,
        };
        if resync.is_none()
            && let Some(p) = pending
        {
            match cx.auth.verify_aka(&credentials, p, b"REGISTER", cx.now_s) {
                Outcome::Authenticated => {
                    facts.proof = used_nonce(req, cx.auth.realm());
                    facts.impi = Some(impi);
                    return Decision::Next;
                }
                // An old challenge: a new one follows.
                Outcome::Stale => {}
                Outcome::Forbidden | Outcome::Replayed => return Decision::status(403),
                Outcome::Busy => return Decision::status(503),
            }
        }
        self.waiting = Waiting::Vector {
            impi: impi.clone(),
            version,
        };
        Decision::Ask(Query::AkaVector {
            impi,
            impu: self.identity.clone(),
            version: version.number(),
            resync,
        })
    }

    /// Keeps a new AKA challenge with the AoR (compare-and-swap), so the answer can be
    /// checked by any core or node.
    fn keep_challenge(
        &mut self,
        current: Versioned,
        pending: PendingAka,
        attempt: u32,
    ) -> Decision {
        let mut state = current.state.clone();
        state.add_pending_aka(pending.clone());
        self.waiting = Waiting::KeepWrite { pending, attempt };
        Decision::write_aor(&self.identity, current, state)
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// An unknown user learns it only after sending credentials (403); Homestead down or slow
/// is 504, never a misleading 403.
/// The answer to an attempt from an address, or for an identity, locked out for guessing.
/// As cheap as a 403 can be: no lookup, no digest computed.
fn locked_out() -> Decision {
    Decision::answer(
        403,
        vec![(
            "Warning",
            b"399 whitewater \"Too many failed authentication attempts; try again later\"".to_vec(),
        )],
    )
}

fn lookup_failed(failure: &LookupFailure) -> Decision {
    match failure {
        LookupFailure::NotFound(_) => Decision::status(403),
        LookupFailure::Unavailable(_) => Decision::status(504),
    }
}

/// The user a request is served for: its P-Asserted-Identity, else its From.
pub(crate) fn served_user(req: &Message<'_>) -> Option<String> {
    if let Some(Ok(pai)) = req.p_asserted_identities().next() {
        return aor_of(pai.uri());
    }
    req.from().ok().and_then(|from| aor_of(from.uri()))
}

/// The nonce and nonce count of the credentials for `realm` in `req`.
fn used_nonce(req: &Message<'_>, realm: &[u8]) -> Option<(String, u32)> {
    req.headers_named(HeaderName::Authorization)
        .filter_map(|h| sip::Auth::parse(h.value()).ok())
        .find(|a| a.realm() == Some(realm))
        .and_then(|a| {
            let nonce = String::from_utf8_lossy(a.nonce()?).into_owned();
            Some((nonce, a.nonce_count()?))
        })
}

/// base64(RAND ‖ AUTS) for Homestead's resync, RAND from the challenge's nonce.
fn resync_auth(nonce: &str, auts: &[u8]) -> Option<String> {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    let challenge = STANDARD.decode(nonce).ok()?;
    let auts = STANDARD.decode(auts).ok()?;
    let mut joined = challenge.get(..16)?.to_vec();
    joined.extend_from_slice(&auts);
    Some(STANDARD.encode(joined))
}
