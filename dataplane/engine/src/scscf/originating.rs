//! A request from one of our users (it came through our Service-Route, whose Route value
//! carries `;orig`): optionally authenticated with 407 (Clearwater's
//! `non_register_authentication`), given a P-Asserted-Identity of the served user when it
//! has none, then routed to its target: a user of the home domain gets the terminating
//! treatment (forked to their contacts), anything else goes where the Request-URI says.

use ims::auth::{ChallengeKind, Outcome, Presented};
use proxy::Target;
use sip::{HeaderName, Message};

use super::{Decision, ScscfCore, aor_of, check_digest, terminating, unix_now};

pub(crate) async fn originate(scscf: &ScscfCore, msg: &Message<'_>) -> Decision {
    let Some(served) = served_user(msg) else {
        return Decision::status(400);
    };
    let mut remove_headers = Vec::new();
    if scscf.config.authenticate_originating {
        match authenticate(scscf, msg, &served).await {
            Ok(()) => remove_headers.push(HeaderName::ProxyAuthorization),
            Err(decision) => return decision,
        }
    }
    let add_headers = if msg.header(HeaderName::PAssertedIdentity).is_none() {
        vec![("P-Asserted-Identity", format!("<{served}>").into_bytes())]
    } else {
        Vec::new()
    };
    let targets = if is_home(scscf, msg) {
        match terminating::targets(scscf, msg).await {
            Ok(targets) => targets,
            Err(decision) => return decision,
        }
    } else {
        let Some(uri) = msg.request_uri_raw() else {
            return Decision::status(400);
        };
        // Another domain would need DNS (and a BGCF), which the data plane does not do.
        match Target::to_uri(uri) {
            Some(target) => vec![Target {
                request_uri: None,
                ..target
            }],
            None => return Decision::status(503),
        }
    };
    Decision::Forward(
        targets
            .into_iter()
            .map(|t| Target {
                add_headers: add_headers.clone(),
                remove_headers: remove_headers.clone(),
                ..t
            })
            .collect(),
    )
}

/// The user the request is served for: its P-Asserted-Identity, else its From.
fn served_user(msg: &Message<'_>) -> Option<String> {
    if let Some(Ok(Some(pai))) = msg.p_asserted_identities().next().map(|r| r.map(Some)) {
        return aor_of(pai.uri());
    }
    msg.from().ok().and_then(|from| aor_of(from.uri()))
}

fn is_home(scscf: &ScscfCore, msg: &Message<'_>) -> bool {
    msg.request_uri()
        .and_then(Result::ok)
        .and_then(|uri| match uri.host() {
            Some(sip::Host::Domain(d)) => {
                Some(d.eq_ignore_ascii_case(scscf.config.home_domain.as_bytes()))
            }
            _ => None,
        })
        .unwrap_or(false)
}

/// 407 until the request carries digest credentials of the served user's private
/// identity; 403 when they are wrong.
async fn authenticate(scscf: &ScscfCore, msg: &Message<'_>, served: &str) -> Result<(), Decision> {
    let now_s = unix_now();
    let presented = scscf
        .auth
        .borrow()
        .inspect(msg, ChallengeKind::Proxy, now_s);
    let (impi, credentials, nonce) = match presented {
        Presented::Malformed => return Err(Decision::status(400)),
        // Digest AKA authenticates registrations only.
        Presented::Aka { .. } => return Err(Decision::status(403)),
        Presented::Challenge => {
            let impi = served.split_once(':').map_or(served, |(_, rest)| rest);
            let mut value = Vec::with_capacity(128);
            scscf.auth.borrow().challenge(
                now_s,
                scscf.next_salt(),
                impi.as_bytes(),
                false,
                &mut value,
            );
            return Err(Decision::answer(
                407,
                vec![(ChallengeKind::Proxy.challenge_header(), value)],
            ));
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
    let method = msg.method().map_or(&b""[..], |m| m.as_bytes());
    let outcome = check_digest(scscf, &impi, served, &credentials, nonce, method).await?;
    match outcome {
        Outcome::Authenticated => Ok(()),
        Outcome::Stale => {
            let mut value = Vec::with_capacity(128);
            let impi =
                String::from_utf8_lossy(credentials.username().unwrap_or_default()).into_owned();
            scscf.auth.borrow().challenge(
                now_s,
                scscf.next_salt(),
                impi.as_bytes(),
                true,
                &mut value,
            );
            Err(Decision::answer(
                407,
                vec![(ChallengeKind::Proxy.challenge_header(), value)],
            ))
        }
        Outcome::Forbidden | Outcome::Replayed => Err(Decision::status(403)),
        Outcome::Busy => Err(Decision::status(503)),
    }
}
