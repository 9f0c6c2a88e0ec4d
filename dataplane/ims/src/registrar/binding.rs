//! Registration state of one address of record, in the JSON shape Sprout's management API
//! shows (reference §1.3), so `GET /impu/<impu>/bindings` is this document's `bindings`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

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

/// Everything stored for one address of record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AorState {
    /// Bindings by binding id.
    pub bindings: BTreeMap<String, Binding>,
    /// The last (nonce, nonce count) a REGISTER authenticated with, so a replay sent to
    /// any core or node is refused (the store's compare-and-swap orders them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_auth: Option<(String, u32)>,
}

impl AorState {
    /// Drops bindings expired at `now_s`.
    pub fn expire(&mut self, now_s: u64) {
        self.bindings.retain(|_, b| b.expires > now_s);
    }

    /// True when no binding is left.
    pub fn is_empty(&self) -> bool {
        self.bindings.is_empty()
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
