//! Registration state of one address of record, in the JSON shape Sprout's management API
//! shows (reference §1.3), so `GET /impu/<impu>/bindings` is this document's `bindings`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::regevent::{EndReason, Ended};

/// One registered contact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binding {
    /// The Contact URI.
    pub uri: String,
    /// The Call-ID of the REGISTER that last refreshed it.
    pub cid: String,
    /// That REGISTER's CSeq number.
    pub cseq: u32,
    /// When it expires, in Unix seconds.
    pub expires: u64,
    /// `q` in thousandths (1000 when absent).
    pub priority: u16,
    /// The Contact's parameters (`+sip.instance`, `reg-id`, feature tags...), as sent.
    pub params: BTreeMap<String, String>,
    /// The Path headers of the REGISTER, top first: the route back to the UE.
    pub paths: Vec<String>,
    /// The private identity that registered it.
    pub private_id: String,
    /// An emergency registration: it cannot be shortened or removed by the UE.
    pub emergency_reg: bool,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The nonce and count a REGISTER last authenticated with, kept until the nonce can no
/// longer be fresh: an AoR deregistered meanwhile stays stored as a tombstone holding it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastAuth {
    /// The nonce.
    pub nonce: String,
    /// Its highest count used.
    pub nc: u32,
    /// Unix seconds after which the nonce is stale anyway.
    pub until: u64,
}

/// A reg-event subscription (RFC 3680) to this AoR, in the JSON field names of Sprout's
/// management API. We are the notifier: `to_tag` is ours, `from_tag` the subscriber's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscription {
    /// Where NOTIFYs go: the subscriber's Contact.
    pub req_uri: String,
    /// The subscriber (From of the SUBSCRIBE).
    pub from_uri: String,
    /// The subscriber's tag.
    pub from_tag: String,
    /// The AoR subscribed to (To of the SUBSCRIBE).
    pub to_uri: String,
    /// Our tag.
    pub to_tag: String,
    /// The dialog's Call-ID.
    pub cid: String,
    /// The dialog's route set (the SUBSCRIBE's Record-Route, in order).
    pub routes: Vec<String>,
    /// When it expires, in Unix seconds.
    pub expires: u64,
    /// The CSeq of the last NOTIFY sent (also the reginfo `version` + 1).
    #[serde(default)]
    pub notify_cseq: u32,
}

/// Everything stored for one address of record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AorState {
    /// Bindings by binding id.
    pub bindings: BTreeMap<String, Binding>,
    /// Reg-event subscriptions by our tag.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub subscriptions: BTreeMap<String, Subscription>,
    /// The implicit registration set's public identities (P-Associated-URI), as Homestead
    /// gave them when the AoR registered; refreshes reuse them.
    #[serde(
        default,
        rename = "associated-uris",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub associated_uris: Vec<String>,
    /// The Digest AKA vectors of outstanding challenges, newest last, at most
    /// [`MAX_PENDING_AKA`] (Clearwater kept them in its IMPI store for 40 s): one per nonce,
    /// so a REGISTER naming the same IMPI cannot replace the one a UE is answering.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending_aka: Vec<crate::auth::aka::PendingAka>,
    /// The last (nonce, nonce count) a REGISTER authenticated with, so a replay sent to
    /// any core or node is refused (the store's compare-and-swap orders them); the S-CSCF
    /// checks it before every write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_auth: Option<LastAuth>,
    /// Counts the writes of a replicated store (memcached): of two replicas, the one with
    /// the higher generation is the newer, whichever server it is on.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub generation: u64,
}

impl AorState {
    /// Drops bindings expired at `now_s` (subscriptions expire separately: the
    /// subscriber is told with a last NOTIFY).
    pub fn expire(&mut self, now_s: u64) {
        self.bindings.retain(|_, b| b.expires > now_s);
    }

    /// True when nothing is left to keep: no binding, no subscription, no challenge.
    pub fn is_empty(&self) -> bool {
        self.bindings.is_empty()
            && self.subscriptions.is_empty()
            && self.pending_aka.is_empty()
            && self.last_auth.is_none()
    }

    /// True when no binding is left (the AoR is not registered).
    pub fn is_unregistered(&self) -> bool {
        self.bindings.is_empty()
    }

    /// When the next binding or subscription expires.
    pub fn next_expiry(&self) -> Option<u64> {
        let bindings = self.bindings.values().map(|b| b.expires);
        let subscriptions = self.subscriptions.values().map(|s| s.expires);
        let challenge = self.pending_aka.iter().map(|p| p.expires);
        let replay_guard = self.last_auth.as_ref().map(|a| a.until);
        bindings
            .chain(subscriptions)
            .chain(challenge)
            .chain(replay_guard)
            .min()
    }

    /// Removes what expired at `now_s` and says whom to tell: the subscribers of a
    /// still-registered AoR whose bindings changed (their NOTIFY CSeq counted here, so it
    /// is stored with the change), and the subscriptions that ended (their time ran out,
    /// or the AoR's last binding expired).
    pub fn sweep(&mut self, now_s: u64) -> Swept {
        let mut swept = Swept::default();
        let challenges = self.pending_aka.len();
        self.pending_aka.retain(|p| p.expires > now_s);
        swept.dropped_challenge = self.pending_aka.len() != challenges;
        if self.last_auth.as_ref().is_some_and(|a| a.until <= now_s) {
            self.last_auth = None;
            swept.dropped_challenge = true;
        }
        let expired: Vec<String> = self
            .bindings
            .iter()
            .filter(|(_, b)| b.expires <= now_s)
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            if let Some(binding) = self.bindings.remove(&id) {
                swept.ended_bindings.push(Ended {
                    id,
                    binding,
                    event: "expired",
                });
            }
        }
        let timed_out: Vec<String> = self
            .subscriptions
            .iter()
            .filter(|(_, s)| s.expires <= now_s)
            .map(|(tag, _)| tag.clone())
            .collect();
        for tag in timed_out {
            if let Some(mut s) = self.subscriptions.remove(&tag) {
                s.notify_cseq += 1;
                swept.ended.push((s, EndReason::Timeout));
            }
        }
        swept.deregistered = !swept.ended_bindings.is_empty() && self.bindings.is_empty();
        if swept.deregistered {
            for (_, mut s) in std::mem::take(&mut self.subscriptions) {
                s.notify_cseq += 1;
                swept.ended.push((s, EndReason::Deactivated));
            }
        } else if !swept.ended_bindings.is_empty() {
            for s in self.subscriptions.values_mut() {
                s.notify_cseq += 1;
                swept.notified.push(s.clone());
            }
        }
        swept
    }
}

/// Outstanding AKA challenges kept per AoR; beyond it the oldest goes.
pub const MAX_PENDING_AKA: usize = 8;

impl AorState {
    /// Keeps `pending` as an outstanding AKA challenge, dropping the oldest beyond
    /// [`MAX_PENDING_AKA`].
    pub fn add_pending_aka(&mut self, pending: crate::auth::aka::PendingAka) {
        self.pending_aka.push(pending);
        let excess = self.pending_aka.len().saturating_sub(MAX_PENDING_AKA);
        self.pending_aka.drain(..excess);
    }
}

/// What [`AorState::sweep`] removed and whom to tell.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Swept {
    /// Bindings that expired.
    pub ended_bindings: Vec<Ended>,
    /// Subscriptions that go on, to be told of the expired bindings.
    pub notified: Vec<Subscription>,
    /// Subscriptions that ended, with why.
    pub ended: Vec<(Subscription, EndReason)>,
    /// The AoR had bindings and has none now.
    pub deregistered: bool,
    /// An unanswered Digest AKA challenge lapsed.
    pub dropped_challenge: bool,
}

impl Swept {
    /// Nothing expired.
    pub fn is_nothing(&self) -> bool {
        self.ended_bindings.is_empty() && self.ended.is_empty() && !self.dropped_challenge
    }
}

/// The key of a binding (Sprout's `get_binding_id`): `+sip.instance` without quotes plus
/// `:reg-id` when present (RFC 5626), else the Contact URI; emergency bindings get an
/// `sos` prefix so that they never collide with the normal one of the same device.
pub fn binding_id(
    uri: &str,
    instance: Option<&str>,
    reg_id: Option<u32>,
    emergency: bool,
) -> String {
    let base = match (instance, reg_id) {
        (Some(instance), Some(reg_id)) => format!("{instance}:{reg_id}"),
        (Some(instance), None) => instance.to_owned(),
        (None, _) => uri.to_owned(),
    };
    if emergency {
        format!("sos{base}")
    } else {
        base
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binding_ids_follow_sprout() {
        let instance = "<urn:uuid:00000000-0000-1000-8000-000a95a0e128>";
        assert_eq!(
            binding_id("sip:a@1.2.3.4", Some(instance), Some(1), false),
            format!("{instance}:1")
        );
        assert_eq!(
            binding_id("sip:a@1.2.3.4", Some(instance), None, false),
            instance
        );
        assert_eq!(
            binding_id("sip:a@1.2.3.4", None, Some(1), false),
            "sip:a@1.2.3.4"
        );
        assert_eq!(
            binding_id("sip:a@1.2.3.4;sos", None, None, true),
            "sossip:a@1.2.3.4;sos"
        );
    }

    #[test]
    fn state_round_trips_through_json_in_sprouts_field_names() {
        let mut state = AorState::default();
        state.bindings.insert(
            "sip:a@1.2.3.4".into(),
            Binding {
                uri: "sip:a@1.2.3.4".into(),
                cid: "c1".into(),
                cseq: 3,
                expires: 1_000,
                priority: 1000,
                params: BTreeMap::from([("+sip.instance".into(), "\"<urn:x>\"".into())]),
                paths: vec!["<sip:pcscf;lr>".into()],
                private_id: "a@example.com".into(),
                emergency_reg: false,
            },
        );
        let json = serde_json::to_value(&state).expect("serializes");
        let b = &json["bindings"]["sip:a@1.2.3.4"];
        for field in [
            "uri",
            "cid",
            "cseq",
            "expires",
            "priority",
            "params",
            "paths",
            "private_id",
            "emergency_reg",
        ] {
            assert!(b.get(field).is_some(), "{field} in {b}");
        }
        let back: AorState = serde_json::from_value(json).expect("deserializes");
        assert_eq!(back, state);
        let mut expired = back;
        expired.expire(1_000);
        assert!(expired.is_empty());
    }
}
