//! REGISTER at the S-CSCF (reference §1.4): digest authentication, the registrar's rules
//! applied with compare-and-swap on the registration store, Homestead told of the change,
//! and the 200 OK with every binding, Path, Service-Route and P-Associated-URI.

use ims::auth::aka::{AkaVersion, PendingAka};
use ims::auth::{ChallengeKind, Outcome, Presented};
use ims::registrar::{self, Applied, Refusal, Register};
use sip::Message;

use super::store::{StoreFailure, Versioned};
use super::{
    Decision, LookupFailure, RegistrationChange, ScscfCore, aor_of, check_digest, lookup, notify,
    unix_now,
};

/// Compare-and-swap attempts before the REGISTER gets 500.
const CAS_ATTEMPTS: usize = 8;

pub(crate) async fn register(scscf: &ScscfCore, msg: &Message<'_>) -> Decision {
    let Some(aor) = msg.to().ok().and_then(|to| aor_of(to.uri())) else {
        return Decision::status(400);
    };
    let impi = if scscf.config.authenticate_register {
        match authenticate(scscf, msg, &aor).await {
            Ok(impi) => impi,
            Err(decision) => return decision,
        }
    } else {
        default_impi(&aor)
    };
    // The nonce and count just accepted: stored with the AoR, so that a replay sent to
    // another core or node (whose own count table has not seen it) is refused too.
    let proof = if scscf.config.authenticate_register {
        used_nonce(msg, scscf.auth.borrow().realm())
    } else {
        None
    };
    let register = match Register::from_message(msg, &impi) {
        Ok(register) => register,
        Err(refusal) => return refused(refusal),
    };
    // Homestead hears of a registration once, when the AoR becomes registered (reqtype
    // reg, before the store is written, as Sprout does); refreshes reuse the implicit
    // registration set it gave then. A REGISTER that only removes bindings needs nothing.
    let current = match scscf.store.get(&aor).await {
        Ok(current) => current,
        Err(e) => return store_failed(e),
    };
    let adds = register
        .contacts
        .as_ref()
        .is_some_and(|c| c.iter().any(|c| c.expires.or(register.expires) != Some(0)));
    // A REGISTER the registrar would refuse (423, out of order, emergency) is refused
    // before Homestead hears of it.
    if let Err(refusal) =
        registrar::apply(&current.state, &register, unix_now(), scscf.config.register)
    {
        return refused(refusal);
    }
    let mut associated = current.state.associated_uris.clone();
    if adds && (current.state.is_unregistered() || associated.is_empty()) {
        let call = scscf.config.subscribers.registration(
            aor.clone(),
            impi.clone(),
            RegistrationChange::Register,
        );
        match lookup(scscf, call).await {
            Ok(identities) => associated = identities,
            Err(LookupFailure::NotFound(_)) => return Decision::status(403),
            Err(LookupFailure::Unavailable(_)) => return Decision::status(504),
        }
    }
    if associated.is_empty() {
        associated.push(aor.clone());
    }
    let applied = match store_binding_change(scscf, &aor, &register, &associated, proof).await {
        Ok(applied) => applied,
        Err(decision) => return decision,
    };
    notify::queue_changes(
        scscf,
        &aor,
        &applied.state,
        &applied.ended_bindings,
        &applied.notified,
        &applied.ended,
        unix_now(),
    );
    if applied.deregistered {
        let call = scscf.config.subscribers.registration(
            aor.clone(),
            impi.clone(),
            RegistrationChange::DeregisterUser,
        );
        // The bindings are gone whatever Homestead says; it is told as Sprout tells it.
        if let Err(LookupFailure::Unavailable(_)) = lookup(scscf, call).await {
            return Decision::status(504);
        }
    }
    ok(scscf, msg, &aor, &applied, &associated)
}

/// Digest authentication of a REGISTER: the private identity that proved itself, or the
/// answer (401 challenge, 403, 504...).
async fn authenticate(scscf: &ScscfCore, msg: &Message<'_>, aor: &str) -> Result<String, Decision> {
    let now_s = unix_now();
    let presented = scscf
        .auth
        .borrow()
        .inspect(msg, ChallengeKind::Register, now_s);
    let (impi, credentials, nonce) = match presented {
        Presented::Malformed => return Err(Decision::status(400)),
        Presented::Challenge => return Err(challenge(scscf, default_impi(aor), now_s, false)),
        Presented::Aka {
            impi,
            credentials,
            version,
        } => {
            let impi = String::from_utf8_lossy(impi).into_owned();
            return aka(scscf, aor, impi, &credentials, version, now_s).await;
        }
        Presented::Verify {
            impi,
            credentials,
            nonce,
        } => (
            String::from_utf8_lossy(impi).into_owned(),
            credentials,
            nonce,
        ),
    };
    let outcome = check_digest(scscf, &impi, aor, &credentials, nonce, b"REGISTER").await?;
    match outcome {
        Outcome::Authenticated => {}
        Outcome::Stale => return Err(challenge(scscf, impi, now_s, true)),
        Outcome::Forbidden | Outcome::Replayed => return Err(Decision::status(403)),
        Outcome::Busy => return Err(Decision::status(503)),
    }
    Ok(impi)
}

/// The nonce and nonce count of the credentials for `realm` in `msg`.
fn used_nonce(msg: &Message<'_>, realm: &[u8]) -> Option<(String, u32)> {
    msg.headers_named(sip::HeaderName::Authorization)
        .filter_map(|h| sip::Auth::parse(h.value()).ok())
        .find(|a| a.realm() == Some(realm))
        .and_then(|a| {
            let nonce = String::from_utf8_lossy(a.nonce()?).into_owned();
            Some((nonce, a.nonce_count()?))
        })
}

/// IMS UEs without credentials yet are identified by their AoR's user@host.
fn default_impi(aor: &str) -> String {
    aor.split_once(':').map_or(aor, |(_, rest)| rest).to_owned()
}

fn challenge(scscf: &ScscfCore, impi: String, now_s: u64, stale: bool) -> Decision {
    let mut value = Vec::with_capacity(128);
    scscf
        .auth
        .borrow()
        .challenge(now_s, scscf.next_salt(), impi.as_bytes(), stale, &mut value);
    Decision::answer(
        401,
        vec![(ChallengeKind::Register.challenge_header(), value)],
    )
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

/// Read, apply, compare-and-swap; again on a conflict. The 200 goes only after a write
/// succeeded (reference §1.4).
/// How long a Digest AKA challenge waits for its answer (Clearwater's 40 s).
const AKA_CHALLENGE_S: u64 = 40;

/// Digest AKA: check the answer against the vector kept from the challenge, or challenge
/// with a new vector from Homestead (after resynchronising when the UE sent `auts`).
async fn aka(
    scscf: &ScscfCore,
    aor: &str,
    impi: String,
    credentials: &sip::Auth<'_>,
    version: AkaVersion,
    now_s: u64,
) -> Result<String, Decision> {
    let current = scscf.store.get(aor).await.map_err(store_failed)?;
    let nonce = credentials.nonce().unwrap_or_default();
    // The challenge this answer is to: the vector kept under its nonce.
    let pending = current
        .state
        .pending_aka
        .iter()
        .find(|p| !nonce.is_empty() && p.nonce.as_bytes() == nonce)
        .cloned();
    let resync = match (credentials.auts(), &pending) {
        (Some(auts), Some(p)) => {
            Some(resync_auth(&p.nonce, auts).ok_or_else(|| Decision::status(403))?)
        }
        // AUTS for a challenge we did not send.
        (Some(_), None) => return Err(Decision::status(403)),
        (None, _) => None,
    };
    if resync.is_none()
        && let Some(p) = pending
    {
        let outcome = scscf
            .auth
            .borrow_mut()
            .verify_aka(credentials, &p, b"REGISTER", now_s);
        match outcome {
            Outcome::Authenticated => return Ok(impi),
            // An old challenge: a new one follows.
            Outcome::Stale => {}
            Outcome::Forbidden | Outcome::Replayed => return Err(Decision::status(403)),
            Outcome::Busy => return Err(Decision::status(503)),
        }
    }
    let call =
        scscf
            .config
            .subscribers
            .aka_vector(impi.clone(), aor.to_owned(), version.number(), resync);
    let vector = match lookup(scscf, call).await {
        Ok(Some(vector)) => vector,
        // A digest subscriber: challenge for digest instead.
        Ok(None) => return Err(challenge(scscf, impi, now_s, false)),
        Err(LookupFailure::NotFound(_)) => return Err(Decision::status(403)),
        Err(LookupFailure::Unavailable(_)) => return Err(Decision::status(504)),
    };
    let pending = PendingAka {
        impi,
        nonce: vector.nonce,
        xres: vector.xres,
        ck: vector.ck,
        ik: vector.ik,
        version,
        expires: now_s + AKA_CHALLENGE_S,
    };
    for _ in 0..CAS_ATTEMPTS {
        let current = scscf.store.get(aor).await.map_err(store_failed)?;
        let mut state = current.state.clone();
        state.add_pending_aka(pending.clone());
        let next = Versioned { state, ..current };
        if scscf
            .store
            .compare_and_set(aor, next)
            .await
            .map_err(store_failed)?
        {
            let realm = String::from_utf8_lossy(scscf.auth.borrow().realm()).into_owned();
            let mut value = Vec::with_capacity(256);
            pending.challenge(&realm, &mut value);
            return Err(Decision::answer(
                401,
                vec![(ChallengeKind::Register.challenge_header(), value)],
            ));
        }
    }
    Err(Decision::status(500))
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

fn store_failed(e: StoreFailure) -> Decision {
    match e {
        StoreFailure::Full(_) | StoreFailure::Unavailable(_) => Decision::status(503),
        StoreFailure::OwnerGone(_) => Decision::status(500),
    }
}

async fn store_binding_change(
    scscf: &ScscfCore,
    aor: &str,
    register: &Register,
    associated: &[String],
    proof: Option<(String, u32)>,
) -> Result<Applied, Decision> {
    for _ in 0..CAS_ATTEMPTS {
        let current = scscf.store.get(aor).await.map_err(store_failed)?;
        if let (Some((nonce, nc)), Some(last)) = (&proof, &current.state.last_auth)
            && *nonce == last.nonce
            && *nc <= last.nc
        {
            return Err(Decision::status(403));
        }
        let mut applied =
            registrar::apply(&current.state, register, unix_now(), scscf.config.register)
                .map_err(refused)?;
        if !applied.state.is_unregistered() {
            applied.state.associated_uris = associated.to_vec();
        }
        // A successful REGISTER consumes the outstanding AKA challenges.
        applied.state.pending_aka.clear();
        if let Some((nonce, nc)) = &proof {
            // Kept past the nonce's lifetime (and the clock skew nonces allow).
            applied.state.last_auth = Some(ims::registrar::LastAuth {
                nonce: nonce.clone(),
                nc: *nc,
                until: unix_now() + scscf.config.auth.nonce_lifetime_s + 10,
            });
        }
        let next = Versioned {
            state: applied.state.clone(),
            ..current
        };
        if scscf
            .store
            .compare_and_set(aor, next)
            .await
            .map_err(store_failed)?
        {
            return Ok(applied);
        }
    }
    Err(Decision::status(500))
}

fn ok(
    scscf: &ScscfCore,
    msg: &Message<'_>,
    aor: &str,
    applied: &Applied,
    associated: &[String],
) -> Decision {
    let now_s = unix_now();
    let gruu = msg.supports(b"gruu");
    let mut headers: Vec<(&'static str, Vec<u8>)> = Vec::new();
    // One line each for the bindings and the identities, however many there are.
    let contacts = registrar::contact_values(&applied.state, aor, now_s, gruu);
    if !contacts.is_empty() {
        headers.push(("Contact", contacts.join(", ").into_bytes()));
    }
    for path in msg.values(sip::HeaderName::Path) {
        headers.push(("Path", path.to_vec()));
    }
    if !applied.state.is_unregistered() {
        let route = format!("<{};lr;orig>", scscf.config.scscf_uri);
        headers.push(("Service-Route", route.into_bytes()));
        let identities: Vec<String> = associated
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
