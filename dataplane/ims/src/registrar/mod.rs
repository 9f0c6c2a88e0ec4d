//! The registrar's decision on a REGISTER (RFC 3261 §10.3, RFC 5626 binding ids, RFC 5627
//! public GRUUs, Sprout's emergency rules from reference §1.4), on a copy of the AoR's
//! state: the engine reads the state, calls [`apply`], and writes the result back with
//! compare-and-swap, retrying on a conflict; the 200 OK goes only after the write.

pub mod binding;

use std::collections::BTreeMap;

use sip::{Contact, Message};

pub use self::binding::{AorState, Binding, LastAuth, Subscription, Swept, binding_id};
use crate::regevent::{EndReason, Ended};

/// Expiry limits.
#[derive(Debug, Clone, Copy)]
pub struct RegisterPolicy {
    /// Shorter non-zero expiries get 423 Interval Too Brief.
    pub min_expires: u32,
    /// Longer expiries are cut to this (Clearwater's `reg_max_expires`, 300 by default).
    pub max_expires: u32,
}

impl Default for RegisterPolicy {
    fn default() -> Self {
        Self {
            min_expires: 60,
            max_expires: 300,
        }
    }
}

/// RFC 3261 §10.2.1.1: the expiry when neither the Contact nor the request gives one.
const DEFAULT_EXPIRES: u32 = 3600;

/// Why a REGISTER is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Malformed Contact, Call-ID or CSeq, or `*` with other contacts or a non-zero expiry.
    #[error("400 bad REGISTER: {0}")]
    BadRequest(&'static str),
    /// An expiry below the minimum: 423 with Min-Expires.
    #[error("423 interval too brief (minimum {min_expires} s)")]
    IntervalTooBrief {
        /// The minimum, for the Min-Expires header.
        min_expires: u32,
    },
    /// A REGISTER older than the one that last refreshed a binding (same Call-ID, CSeq
    /// not higher): RFC 3261 §10.3 step 7.
    #[error("500 out-of-order REGISTER")]
    OutOfOrder,
    /// The request only tried to remove emergency bindings, which the UE cannot do.
    #[error("501 emergency bindings cannot be removed")]
    EmergencyDeregistration,
}

impl Refusal {
    /// The SIP status to answer with.
    pub const fn status(&self) -> u16 {
        match self {
            Self::BadRequest(_) => 400,
            Self::IntervalTooBrief { .. } => 423,
            Self::OutOfOrder => 500,
            Self::EmergencyDeregistration => 501,
        }
    }
}

/// One Contact of a REGISTER, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactSpec {
    /// The Contact URI.
    pub uri: String,
    /// Every Contact parameter, as sent (values keep their quotes).
    pub params: BTreeMap<String, String>,
    /// `+sip.instance` without quotes.
    pub instance: Option<String>,
    /// `reg-id`.
    pub reg_id: Option<u32>,
    /// The `expires` parameter.
    pub expires: Option<u32>,
    /// `q` in thousandths.
    pub q: Option<u16>,
    /// The URI carries `sos`: an emergency registration.
    pub emergency: bool,
}

/// What a REGISTER asks for, read from the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Register {
    /// The contacts, or `None` for `Contact: *`.
    pub contacts: Option<Vec<ContactSpec>>,
    /// The Expires header.
    pub expires: Option<u32>,
    /// Call-ID.
    pub call_id: String,
    /// CSeq number.
    pub cseq: u32,
    /// Path headers, top first.
    pub paths: Vec<String>,
    /// The private identity that authenticated.
    pub private_id: String,
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

impl Register {
    /// Reads a REGISTER. A REGISTER with no Contact is a query: `contacts` is empty.
    pub fn from_message(msg: &Message<'_>, private_id: &str) -> Result<Self, Refusal> {
        let call_id = msg.call_id().map_err(|_| Refusal::BadRequest("Call-ID"))?;
        let cseq = msg.cseq().map_err(|_| Refusal::BadRequest("CSeq"))?;
        let expires = msg.expires().map_err(|_| Refusal::BadRequest("Expires"))?;
        let mut contacts = Vec::new();
        let mut star = false;
        for contact in msg.contacts() {
            match contact.map_err(|_| Refusal::BadRequest("Contact"))? {
                Contact::Star => star = true,
                c @ Contact::Address(address) => {
                    let uri = address.uri();
                    contacts.push(ContactSpec {
                        uri: text(uri.as_bytes()),
                        params: address
                            .params()
                            .iter()
                            .map(|p| (text(p.name), p.value.map(text).unwrap_or_default()))
                            .collect(),
                        instance: c.instance().map(text),
                        reg_id: c.reg_id(),
                        expires: c.expires(),
                        q: c.q(),
                        emergency: uri.params().contains(b"sos"),
                    });
                }
            }
        }
        if star && (!contacts.is_empty() || expires != Some(0)) {
            return Err(Refusal::BadRequest(
                "Contact: * needs Expires: 0 and no other contact",
            ));
        }
        let paths = msg.values(sip::HeaderName::Path).map(text).collect();
        Ok(Self {
            contacts: (!star).then_some(contacts),
            expires,
            call_id: text(call_id),
            cseq: cseq.seq,
            paths,
            private_id: private_id.to_owned(),
        })
    }
}

/// What a successful REGISTER did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The AoR's state to store.
    pub state: AorState,
    /// The AoR had no binding before (Homestead learns of a registration: reqtype `reg`).
    pub first_registration: bool,
    /// The AoR has no binding left (Homestead learns of it: reqtype `dereg-user`).
    pub deregistered: bool,
    /// Bindings this REGISTER removed or found expired, for the reg-event NOTIFYs.
    pub ended_bindings: Vec<Ended>,
    /// Subscriptions to tell of the change (NOTIFY CSeq already counted in `state`).
    pub notified: Vec<Subscription>,
    /// Subscriptions that ended because no binding is left.
    pub ended: Vec<(Subscription, EndReason)>,
}

/// Applies `register` to the AoR's `state` at `now_s`.
pub fn apply(
    state: &AorState,
    register: &Register,
    now_s: u64,
    policy: RegisterPolicy,
) -> Result<Applied, Refusal> {
    let mut next = state.clone();
    let mut ended_bindings: Vec<Ended> = state
        .bindings
        .iter()
        .filter(|(_, b)| b.expires <= now_s)
        .map(|(id, b)| Ended {
            id: id.clone(),
            binding: b.clone(),
            event: "expired",
        })
        .collect();
    next.expire(now_s);
    let was_empty = next.is_unregistered();
    match &register.contacts {
        None => remove_all(&mut next, register),
        Some(contacts) => {
            let expiries = contacts
                .iter()
                .map(|c| expiry(c, register, policy))
                .collect::<Result<Vec<_>, _>>()?;
            let mut emergency_removals = 0;
            for (contact, expires) in contacts.iter().zip(expiries) {
                emergency_removals +=
                    usize::from(update(&mut next, contact, expires, register, now_s)?);
            }
            if emergency_removals > 0 && emergency_removals == contacts.len() {
                return Err(Refusal::EmergencyDeregistration);
            }
        }
    }
    // The bindings live before this REGISTER are `state`'s unexpired ones.
    for (id, binding) in state.bindings.iter().filter(|(_, b)| b.expires > now_s) {
        if !next.bindings.contains_key(id) {
            ended_bindings.push(Ended {
                id: id.clone(),
                binding: binding.clone(),
                event: "unregistered",
            });
        }
    }
    let deregistered = !was_empty && next.is_unregistered();
    let (mut notified, mut ended) = (Vec::new(), Vec::new());
    if next.bindings != state.bindings {
        if next.is_unregistered() {
            for (_, mut s) in std::mem::take(&mut next.subscriptions) {
                s.notify_cseq += 1;
                ended.push((s, EndReason::Deactivated));
            }
        } else {
            for s in next.subscriptions.values_mut() {
                s.notify_cseq += 1;
                notified.push(s.clone());
            }
        }
    }
    Ok(Applied {
        first_registration: was_empty && !next.is_unregistered(),
        deregistered,
        ended_bindings,
        notified,
        ended,
        state: next,
    })
}

/// The granted expiry of one contact: its own `expires`, else the request's, else the
/// default, cut to the maximum; 0 removes.
fn expiry(
    contact: &ContactSpec,
    register: &Register,
    policy: RegisterPolicy,
) -> Result<u32, Refusal> {
    let asked = contact
        .expires
        .or(register.expires)
        .unwrap_or(DEFAULT_EXPIRES);
    if asked != 0 && asked < policy.min_expires {
        return Err(Refusal::IntervalTooBrief {
            min_expires: policy.min_expires,
        });
    }
    Ok(asked.min(policy.max_expires))
}

/// Adds, refreshes or removes one binding. True when it was a refused removal of an
/// emergency binding.
fn update(
    state: &mut AorState,
    contact: &ContactSpec,
    expires: u32,
    register: &Register,
    now_s: u64,
) -> Result<bool, Refusal> {
    let id = binding_id(
        &contact.uri,
        contact.instance.as_deref(),
        contact.reg_id,
        contact.emergency,
    );
    let existing = state.bindings.get(&id);
    if let Some(b) = existing
        && b.cid == register.call_id
        && register.cseq <= b.cseq
    {
        return Err(Refusal::OutOfOrder);
    }
    if expires == 0 {
        if existing.is_some_and(|b| b.emergency_reg) || contact.emergency {
            return Ok(true);
        }
        state.bindings.remove(&id);
        return Ok(false);
    }
    let mut until = now_s + u64::from(expires);
    if let Some(b) = existing
        && b.emergency_reg
    {
        // An emergency registration is never shortened (reference §1.4).
        until = until.max(b.expires);
    }
    state.bindings.insert(
        id,
        Binding {
            uri: contact.uri.clone(),
            cid: register.call_id.clone(),
            cseq: register.cseq,
            expires: until,
            priority: contact.q.unwrap_or(1000),
            params: contact.params.clone(),
            paths: register.paths.clone(),
            private_id: register.private_id.clone(),
            emergency_reg: contact.emergency,
        },
    );
    Ok(false)
}

/// `Contact: *` with `Expires: 0` (§10.3 step 6): every binding goes, except those the
/// same Call-ID refreshed with a higher CSeq, and emergency bindings.
fn remove_all(state: &mut AorState, register: &Register) {
    state
        .bindings
        .retain(|_, b| b.emergency_reg || (b.cid == register.call_id && b.cseq >= register.cseq));
}

/// The Contact values of the 200 OK: every binding with its remaining expiry, and its
/// public GRUU when the UE supports GRUU and registered an instance (RFC 5627).
pub fn contact_values(state: &AorState, aor: &str, now_s: u64, gruu: bool) -> Vec<String> {
    state
        .bindings
        .values()
        .filter(|b| b.expires > now_s)
        .map(|b| {
            let mut value = format!("<{}>;expires={}", b.uri, b.expires - now_s);
            for (name, v) in &b.params {
                if name.eq_ignore_ascii_case("expires") || name.eq_ignore_ascii_case("pub-gruu") {
                    continue;
                }
                value.push(';');
                value.push_str(name);
                if !v.is_empty() {
                    value.push('=');
                    value.push_str(v);
                }
            }
            if gruu && let Some(instance) = b.params.get("+sip.instance") {
                let urn = instance
                    .trim_matches('"')
                    .trim_start_matches('<')
                    .trim_end_matches('>');
                value.push_str(&format!(";pub-gruu=\"{aor};gr={urn}\""));
            }
            value
        })
        .collect()
}

#[cfg(test)]
mod tests;
