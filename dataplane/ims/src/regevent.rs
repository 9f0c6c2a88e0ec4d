//! The registration event package (RFC 3680) as the S-CSCF serves it: SUBSCRIBE with
//! `Event: reg` creates, refreshes or ends a subscription kept in the AoR's state, and the
//! subscriber gets a full-state `application/reginfo+xml` NOTIFY at once, on every change
//! of the AoR's bindings, and a terminated one at the end (reference §1.4).

use std::fmt::Write as _;

use sip::{HeaderName, Message};

use crate::registrar::{AorState, Binding, Subscription};

/// RFC 3680 §4.4: the default duration of a subscription.
pub const DEFAULT_EXPIRES: u32 = 3761;

/// Why a subscription ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// Its time ran out.
    Timeout,
    /// The AoR has no binding left.
    Deactivated,
    /// The subscriber ended it (Expires: 0).
    Unsubscribed,
}

impl EndReason {
    /// The Subscription-State reason (RFC 6665 §4.1.3): an unsubscribe is a timeout.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Timeout | Self::Unsubscribed => "timeout",
            Self::Deactivated => "deactivated",
        }
    }
}

/// Why a SUBSCRIBE is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SubscribeRefusal {
    /// Missing Contact, Call-ID, From tag.
    #[error("400 bad SUBSCRIBE: {0}")]
    BadRequest(&'static str),
    /// Accept without application/reginfo+xml.
    #[error("406 reginfo not acceptable")]
    NotAcceptable,
    /// A refresh for a subscription we do not have.
    #[error("481 no such subscription")]
    NoSuchSubscription,
    /// An event package other than reg.
    #[error("489 bad event")]
    BadEvent,
}

impl SubscribeRefusal {
    /// The status to answer with.
    pub const fn status(self) -> u16 {
        match self {
            Self::BadRequest(_) => 400,
            Self::NotAcceptable => 406,
            Self::NoSuchSubscription => 481,
            Self::BadEvent => 489,
        }
    }
}

/// What a SUBSCRIBE did to the AoR's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribed {
    /// The state to store.
    pub state: AorState,
    /// The subscription, with the CSeq of the NOTIFY to send now.
    pub subscription: Subscription,
    /// Seconds granted (0: it ended).
    pub expires_in: u64,
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Applies a SUBSCRIBE for `Event: reg` to `state`: a new subscription (no To tag; ours
/// is `new_tag`), a refresh, or an end (Expires: 0). The NOTIFY's CSeq is counted in the
/// returned state, so it is stored with the change.
pub fn subscribe(
    state: &AorState,
    msg: &Message<'_>,
    new_tag: &str,
    now_s: u64,
    max_expires: u32,
) -> Result<Subscribed, SubscribeRefusal> {
    let event = msg
        .event()
        .ok()
        .flatten()
        .ok_or(SubscribeRefusal::BadEvent)?;
    if !event.value().eq_ignore_ascii_case(b"reg") {
        return Err(SubscribeRefusal::BadEvent);
    }
    let accepts = msg.values(HeaderName::Accept).collect::<Vec<_>>();
    let reginfo = |v: &&[u8]| {
        let v = String::from_utf8_lossy(v).to_ascii_lowercase();
        v.split(';')
            .next()
            .is_some_and(|t| t.trim() == "application/reginfo+xml")
    };
    if !accepts.is_empty() && !accepts.iter().any(reginfo) {
        return Err(SubscribeRefusal::NotAcceptable);
    }
    let asked = msg.expires().ok().flatten().unwrap_or(DEFAULT_EXPIRES);
    let expires_in = u64::from(asked.min(max_expires));
    let call_id = msg
        .call_id()
        .map_err(|_| SubscribeRefusal::BadRequest("Call-ID"))?;
    let from = msg
        .from()
        .map_err(|_| SubscribeRefusal::BadRequest("From"))?;
    let from_tag = from.tag().ok_or(SubscribeRefusal::BadRequest("From tag"))?;
    let to = msg.to().map_err(|_| SubscribeRefusal::BadRequest("To"))?;
    let mut next = state.clone();
    let mut subscription = match to.tag() {
        Some(tag) => {
            let existing = next
                .subscriptions
                .get(&text(tag))
                .filter(|s| s.cid.as_bytes() == call_id && s.from_tag.as_bytes() == from_tag)
                .ok_or(SubscribeRefusal::NoSuchSubscription)?;
            existing.clone()
        }
        None => {
            let contact = msg
                .contacts()
                .find_map(|c| {
                    c.ok()
                        .and_then(|c| c.address().map(|a| text(a.uri().as_bytes())))
                })
                .ok_or(SubscribeRefusal::BadRequest("Contact"))?;
            Subscription {
                req_uri: contact,
                from_uri: text(from.uri().as_bytes()),
                from_tag: text(from_tag),
                to_uri: text(to.uri().as_bytes()),
                to_tag: new_tag.to_owned(),
                cid: text(call_id),
                routes: msg.values(HeaderName::RecordRoute).map(text).collect(),
                expires: 0,
                notify_cseq: 0,
            }
        }
    };
    subscription.expires = now_s + expires_in;
    subscription.notify_cseq += 1;
    if expires_in == 0 {
        next.subscriptions.remove(&subscription.to_tag);
    } else {
        next.subscriptions
            .insert(subscription.to_tag.clone(), subscription.clone());
    }
    Ok(Subscribed {
        state: next,
        subscription,
        expires_in,
    })
}

/// A binding that stopped, for the NOTIFY: its last state and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ended {
    /// The binding id.
    pub id: String,
    /// The binding as it was.
    pub binding: Binding,
    /// RFC 3680 §5.1 event: `expired`, `unregistered` or `deactivated`.
    pub event: &'static str,
}

/// The full-state reginfo document of `aor` for a subscription's NOTIFY with CSeq
/// `cseq` (its `version` is `cseq - 1`, starting at 0 as RFC 3680 §5.1 asks).
pub fn reginfo(aor: &str, state: &AorState, ended: &[Ended], cseq: u32, now_s: u64) -> String {
    let mut xml = String::with_capacity(512);
    let active = !state.bindings.is_empty();
    let _ = write!(
        xml,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <reginfo xmlns=\"urn:ietf:params:xml:ns:reginfo\" \
         xmlns:gr=\"urn:ietf:params:xml:ns:gruuinfo\" version=\"{}\" state=\"full\">\n\
         \x20 <registration aor=\"{}\" id=\"{}\" state=\"{}\">\n",
        cseq.saturating_sub(1),
        escape(aor),
        escape(&registration_id(aor)),
        if active { "active" } else { "terminated" }
    );
    for (id, binding) in &state.bindings {
        let expires = binding.expires.saturating_sub(now_s);
        contact(
            &mut xml,
            aor,
            id,
            binding,
            "active",
            "registered",
            Some(expires),
        );
    }
    for e in ended {
        contact(
            &mut xml,
            aor,
            &e.id,
            &e.binding,
            "terminated",
            e.event,
            None,
        );
    }
    xml.push_str("  </registration>\n</reginfo>\n");
    xml
}

fn registration_id(aor: &str) -> String {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut h = DefaultHasher::new();
    aor.hash(&mut h);
    format!("r{:016x}", h.finish())
}

fn contact(
    xml: &mut String,
    aor: &str,
    id: &str,
    binding: &Binding,
    state: &str,
    event: &str,
    expires: Option<u64>,
) {
    let _ = write!(
        xml,
        "    <contact id=\"{}\" state=\"{state}\" event=\"{event}\"",
        escape(id)
    );
    if let Some(expires) = expires {
        let _ = write!(xml, " expires=\"{expires}\"");
    }
    let _ = writeln!(xml, ">\n      <uri>{}</uri>", escape(&binding.uri));
    for (name, value) in &binding.params {
        if name == "expires" || name == "q" {
            continue;
        }
        let _ = writeln!(
            xml,
            "      <unknown-param name=\"{}\">{}</unknown-param>",
            escape(name),
            escape(value)
        );
    }
    if let Some(instance) = binding.params.get("+sip.instance") {
        let urn = instance
            .trim_matches('"')
            .trim_start_matches('<')
            .trim_end_matches('>');
        let _ = writeln!(
            xml,
            "      <gr:pub-gruu uri=\"{}\"/>",
            escape(&format!("{aor};gr={urn}"))
        );
    }
    xml.push_str("    </contact>\n");
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// The NOTIFY for `subscription` (without a Via: the proxy adds its own), from the S-CSCF
/// at `contact`. `ends` gives the Subscription-State reason of a last NOTIFY.
pub fn notify(
    subscription: &Subscription,
    contact: &str,
    body: &str,
    now_s: u64,
    ends: Option<EndReason>,
) -> String {
    let state = match ends {
        Some(reason) => format!("terminated;reason={}", reason.as_str()),
        None => format!(
            "active;expires={}",
            subscription.expires.saturating_sub(now_s)
        ),
    };
    let mut request = format!(
        "NOTIFY {} SIP/2.0\r\nMax-Forwards: 70\r\n",
        subscription.req_uri
    );
    for route in &subscription.routes {
        let _ = write!(request, "Route: {route}\r\n");
    }
    let _ = write!(
        request,
        "From: <{}>;tag={}\r\nTo: <{}>;tag={}\r\nCall-ID: {}\r\nCSeq: {} NOTIFY\r\n\
         Event: reg\r\nSubscription-State: {state}\r\nContact: <{contact}>\r\n\
         Content-Type: application/reginfo+xml\r\nContent-Length: {}\r\n\r\n{body}",
        subscription.to_uri,
        subscription.to_tag,
        subscription.from_uri,
        subscription.from_tag,
        subscription.cid,
        subscription.notify_cseq,
        body.len()
    );
    request
}

#[cfg(test)]
mod tests;
