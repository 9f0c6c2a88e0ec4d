//! Subscriber data as Homestead keeps it: private identities with their credentials,
//! implicit registration sets (IRS) holding service profiles and public identities, the
//! public-identity index, and registration state per IRS.
//!
//! Records are what the stores persist; every store keeps them as versioned JSON so that a
//! field added later reads old rows (serde defaults) without a data migration.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A private identity (IMPI) and how it authenticates.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrivateIdentity {
    pub impi: String,
    /// The digest realm the HA1 was computed in.
    pub realm: String,
    /// MD5(impi:realm:password), lower-case hex. Absent for an AKA-only subscriber.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest_ha1: Option<String>,
    /// Kept only when provisioned as a plain-text password (the Homestead-prov API returns it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plaintext_password: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aka: Option<AkaCredentials>,
    /// The implicit registration sets this identity may register.
    #[serde(default)]
    pub registration_sets: Vec<Uuid>,
}

/// The USIM/ISIM secrets Milenage needs (TS 35.206). Kept hex-encoded on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AkaCredentials {
    #[serde(with = "hex::serde")]
    pub k: [u8; 16],
    #[serde(with = "hex::serde")]
    pub opc: [u8; 16],
    #[serde(with = "hex::serde", default = "default_amf")]
    pub amf: [u8; 2],
}

fn default_amf() -> [u8; 2] {
    // IMS AKA vectors are not EPS vectors, so the separation bit (TS 33.102 Annex H) is 0.
    [0x00, 0x00]
}

/// An implicit registration set: the public identities that register together, in one or
/// more service profiles, and the private identities allowed to register them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistrationSet {
    pub id: Uuid,
    #[serde(default)]
    pub private_ids: Vec<String>,
    #[serde(default)]
    pub service_profiles: Vec<ServiceProfile>,
}

/// A service profile: its initial filter criteria and the public identities using them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceProfile {
    pub id: Uuid,
    /// A validated `<ServiceProfile>` element holding only `<InitialFilterCriteria>` (and
    /// `<Extension>`) children, as PUT on `.../filter_criteria`.
    pub filter_criteria_xml: String,
    #[serde(default)]
    pub public_ids: Vec<PublicIdentity>,
}

/// A public identity inside a service profile.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicIdentity {
    pub impu: String,
    /// The validated `<PublicIdentity>` element as provisioned.
    pub xml: String,
}

/// Where a public identity lives: the index from IMPU to its set and profile.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicIndex {
    pub registration_set: Uuid,
    pub service_profile: Uuid,
}

/// TS 29.228 registration states, spelled as Clearwater's reg-data XML spells them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum RegistrationState {
    #[serde(rename = "REGISTERED")]
    Registered,
    #[serde(rename = "UNREGISTERED")]
    Unregistered,
    #[default]
    #[serde(rename = "NOT_REGISTERED")]
    NotRegistered,
}

impl RegistrationState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Registered => "REGISTERED",
            Self::Unregistered => "UNREGISTERED",
            Self::NotRegistered => "NOT_REGISTERED",
        }
    }
}

/// Registration state of one implicit registration set (every IMPU of a set shares it, as
/// TS 23.228 §5.2.1a specifies).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    pub state: RegistrationState,
    /// The S-CSCF the set is assigned to (`server_name` of the last reg/call).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// The private identity of the last registration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_id: Option<String>,
}

/// Billing addresses returned in reg-data (`<ChargingAddresses>`), configured per
/// deployment rather than per subscriber when there is no HSS.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChargingAddresses {
    #[serde(default)]
    pub ccfs: Vec<String>,
    #[serde(default)]
    pub ecfs: Vec<String>,
}
