//! Reg-event NOTIFYs (RFC 3680) queued for the core to originate: full-state reginfo of
//! the AoR to each subscriber, through the dialog's route set.

use ims::regevent::{self, EndReason, Ended};
use ims::registrar::{AorState, Subscription};
use proxy::{Protocol, Target};

use super::ScscfCore;

/// RFC 3261 §18.1.1: a request this close to the path MTU goes by TCP.
const UDP_LIMIT: usize = 1300;

/// A NOTIFY ready for the core.
#[derive(Debug)]
pub(crate) struct Notify {
    pub(crate) request: String,
    pub(crate) target: Target,
    pub(crate) aor: String,
    pub(crate) to_tag: String,
    /// The subscription's last NOTIFY: nothing to end if it fails.
    pub(crate) last: bool,
}

/// Where a NOTIFY goes first: the top of the dialog's route set, else the subscriber's
/// Contact. The request already carries its Request-URI and Route lines.
fn next_hop(subscription: &Subscription, size: usize) -> Option<Target> {
    let hop = match subscription.routes.first() {
        Some(route) => {
            let addr = sip::NameAddr::parse(route.as_bytes()).ok()?;
            Target::to_uri(addr.uri().as_bytes())?
        }
        None => Target::to_uri(subscription.req_uri.as_bytes())?,
    };
    let large = size + 200 > UDP_LIMIT && hop.protocol == Protocol::Udp;
    Some(Target {
        request_uri: None,
        protocol: if large { Protocol::Tcp } else { hop.protocol },
        udp_fallback: large,
        ..hop
    })
}

/// Queues one NOTIFY of `aor`'s `state` to `subscription`; `ends` makes it the last.
pub(crate) fn queue(
    scscf: &ScscfCore,
    aor: &str,
    state: &AorState,
    ended_bindings: &[Ended],
    subscription: &Subscription,
    ends: Option<EndReason>,
    now_s: u64,
) {
    let body = regevent::reginfo(aor, state, ended_bindings, subscription.notify_cseq, now_s);
    let request = regevent::notify(subscription, &scscf.config.scscf_uri, &body, now_s, ends);
    // A subscriber whose address cannot be reached without DNS gets nothing.
    if let Some(target) = next_hop(subscription, request.len()) {
        scscf.outbox.borrow_mut().push(Notify {
            request,
            target,
            aor: aor.to_owned(),
            to_tag: subscription.to_tag.clone(),
            last: ends.is_some(),
        });
    }
}

/// Queues the NOTIFYs of a change to `aor`: the subscriptions that go on, then those
/// that ended.
pub(crate) fn queue_changes(
    scscf: &ScscfCore,
    aor: &str,
    state: &AorState,
    ended_bindings: &[Ended],
    notified: &[Subscription],
    ended: &[(Subscription, EndReason)],
    now_s: u64,
) {
    for subscription in notified {
        queue(scscf, aor, state, ended_bindings, subscription, None, now_s);
    }
    for (subscription, reason) in ended {
        queue(
            scscf,
            aor,
            state,
            ended_bindings,
            subscription,
            Some(*reason),
            now_s,
        );
    }
}
