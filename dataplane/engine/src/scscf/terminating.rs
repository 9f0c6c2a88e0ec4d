//! A request to a user of the home domain: forked to every registered contact, each
//! through the Path it registered with (RFC 3327), highest q first; 480 when the user has
//! no binding, 404 when there is no such user.

use proxy::Target;
use sip::Message;

use super::{Decision, LookupFailure, ScscfCore, aor_of, lookup, unix_now};

pub(crate) async fn terminate(scscf: &ScscfCore, msg: &Message<'_>) -> Decision {
    match targets(scscf, msg).await {
        Ok(targets) => Decision::Forward(targets),
        Err(decision) => decision,
    }
}

/// The branches of a request to a user of the home domain, or the answer when there are
/// none.
pub(crate) async fn targets(scscf: &ScscfCore, msg: &Message<'_>) -> Result<Vec<Target>, Decision> {
    let Some(aor) = msg
        .request_uri()
        .and_then(Result::ok)
        .and_then(|uri| aor_of(&uri))
    else {
        return Err(Decision::status(404));
    };
    let stored = match scscf.store.get(&aor).await {
        Ok(stored) => stored,
        Err(_) => return Err(Decision::status(500)),
    };
    let now_s = unix_now();
    let mut bindings: Vec<_> = stored
        .state
        .bindings
        .values()
        .filter(|b| b.expires > now_s)
        .collect();
    bindings.sort_by_key(|b| std::cmp::Reverse(b.priority));
    let targets: Vec<Target> = bindings
        .iter()
        .filter_map(|b| {
            let routes = b.paths.iter().map(|p| p.as_bytes().to_vec()).collect();
            Target::via_routes(b.uri.as_bytes(), routes)
        })
        .collect();
    if !targets.is_empty() {
        return Ok(targets);
    }
    Err(
        match lookup(scscf, scscf.config.subscribers.exists(aor)).await {
            Ok(true) => Decision::status(480),
            Ok(false) | Err(LookupFailure::NotFound(_)) => Decision::status(404),
            Err(LookupFailure::Unavailable(_)) => Decision::status(504),
        },
    )
}
