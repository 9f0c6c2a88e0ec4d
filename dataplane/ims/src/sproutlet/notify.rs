//! Reg-event NOTIFYs (RFC 3680) for the engine to originate: full-state reginfo of the AoR
//! to each subscriber, through the dialog's route set.

use proxy::{Protocol, Target};

use crate::regevent::{self, EndReason, Ended};
use crate::registrar::{AorState, Subscription};

/// RFC 3261 §18.1.1: a request this close to the path MTU goes by TCP.
const UDP_LIMIT: usize = 1300;

/// A NOTIFY ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notify {
    /// The whole request, with its Request-URI and Route lines.
    pub request: String,
    /// Its first hop.
    pub target: Target,
    /// The AoR it reports.
    pub aor: String,
    /// The subscription's To tag (ours).
    pub to_tag: String,
    /// The subscription's last NOTIFY: nothing to end if it fails.
    pub last: bool,
}

/// Where a NOTIFY goes first: the top of the dialog's route set, else the subscriber's
/// Contact.
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

/// What changed in an AoR, for its watchers.
#[derive(Debug, Clone, Copy)]
pub struct Change<'a> {
    /// The AoR.
    pub aor: &'a str,
    /// Its state after the change.
    pub state: &'a AorState,
    /// Bindings that ended.
    pub ended_bindings: &'a [Ended],
}

/// Queues one NOTIFY of `change` to `subscription`; `ends` makes it the last.
pub fn queue(
    out: &mut Vec<Notify>,
    scscf_uri: &str,
    change: Change<'_>,
    subscription: &Subscription,
    ends: Option<EndReason>,
    now_s: u64,
) {
    let body = regevent::reginfo(
        change.aor,
        change.state,
        change.ended_bindings,
        subscription.notify_cseq,
        now_s,
    );
    let request = regevent::notify(subscription, scscf_uri, &body, now_s, ends);
    // A subscriber whose address cannot be reached without DNS gets nothing.
    if let Some(target) = next_hop(subscription, request.len()) {
        out.push(Notify {
            request,
            target,
            aor: change.aor.to_owned(),
            to_tag: subscription.to_tag.clone(),
            last: ends.is_some(),
        });
    }
}

/// Queues the NOTIFYs of a change: the subscriptions that go on, then those that ended.
pub fn queue_changes(
    out: &mut Vec<Notify>,
    scscf_uri: &str,
    change: Change<'_>,
    notified: &[Subscription],
    ended: &[(Subscription, EndReason)],
    now_s: u64,
) {
    for subscription in notified {
        queue(out, scscf_uri, change, subscription, None, now_s);
    }
    for (subscription, reason) in ended {
        queue(out, scscf_uri, change, subscription, Some(*reason), now_s);
    }
}
