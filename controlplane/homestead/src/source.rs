//! The source of subscriber data behind Homestead's API, as one trait so that an external
//! HSS over Diameter Cx plugs in beside [`LocalSource`] (Whitewater as the master of
//! subscriber data, the no-HSS mode). Sprout reaches it through [`crate::client`], either
//! in-process or over HTTP.

use std::sync::Arc;

use async_trait::async_trait;
use uuid::Uuid;

use crate::auth::{self, AkaVector};
use crate::locks::{LockKey, Locks};
use crate::model::{
    ChargingAddresses, PrivateIdentity, PublicIndex, Registration, RegistrationSet,
    RegistrationState,
};
use crate::store::{StoreError, SubscriberStore};
use crate::xml;

/// The authentication scheme asked for by the URL (`/av`, `/av/digest`, `/av/aka`,
/// `/av/aka2`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthScheme {
    Unknown,
    Digest,
    AkaV1,
    AkaV2,
}

/// A request for an authentication vector (Cx MAR).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthRequest {
    pub impi: String,
    pub impu: String,
    pub scheme: AuthScheme,
    /// base64(RAND ‖ AUTS) when the UE asked to resynchronise.
    pub resync_auth: Option<String>,
    pub server_name: Option<String>,
}

/// An authentication vector (Cx MAA).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthVector {
    Digest {
        ha1: String,
        realm: String,
        qop: String,
    },
    Aka {
        vector: AkaVector,
        version: u8,
    },
}

/// Which S-CSCF serves a user (Cx UAA/LIA).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerAssignment {
    pub result_code: u32,
    pub scscf: String,
}

/// The reqtype of a reg-data PUT (Cx SAR).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegDataRequest {
    Register,
    Call,
    DeregUser,
    DeregAdmin,
    DeregTimeout,
    DeregAuthFailed,
    DeregAuthTimeout,
}

impl RegDataRequest {
    /// Parses the spellings of Clearwater's code (not its docs).
    pub fn parse(reqtype: &str) -> Option<Self> {
        Some(match reqtype {
            "reg" => Self::Register,
            "call" => Self::Call,
            "dereg-user" => Self::DeregUser,
            "dereg-admin" => Self::DeregAdmin,
            "dereg-timeout" => Self::DeregTimeout,
            "dereg-auth-failed" => Self::DeregAuthFailed,
            "dereg-auth-timeout" => Self::DeregAuthTimeout,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Register => "reg",
            Self::Call => "call",
            Self::DeregUser => "dereg-user",
            Self::DeregAdmin => "dereg-admin",
            Self::DeregTimeout => "dereg-timeout",
            Self::DeregAuthFailed => "dereg-auth-failed",
            Self::DeregAuthTimeout => "dereg-auth-timeout",
        }
    }
}

/// A reg-data answer: the registration state and the subscriber's profile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegData {
    pub state: RegistrationState,
    pub previous: Option<RegistrationState>,
    /// The `<IMSSubscription>` element, indented for a `ClearwaterRegData` document.
    pub ims_subscription: String,
    pub charging: ChargingAddresses,
}

impl RegData {
    /// The `ClearwaterRegData` XML of the HTTP API.
    pub fn to_xml(&self) -> String {
        xml::RegDataDocument {
            state: self.state,
            previous: self.previous,
            ims_subscription: Some(&self.ims_subscription),
            charging: &self.charging,
        }
        .render()
    }

    /// The public identities of the subscription, in document order, barred ones left
    /// out: what a registrar lists in P-Associated-URI.
    pub fn public_identities(&self) -> Vec<String> {
        let Ok(doc) = roxmltree::Document::parse(&self.ims_subscription) else {
            return Vec::new();
        };
        fn text_of<'a>(node: roxmltree::Node<'a, '_>, name: &str) -> Option<&'a str> {
            node.children()
                .find(|c| c.has_tag_name(name))
                .and_then(|c| c.text())
                .map(str::trim)
        }
        let mut identities = Vec::new();
        for public in doc
            .descendants()
            .filter(|n| n.has_tag_name("PublicIdentity"))
        {
            let barred = matches!(text_of(public, "BarringIndication"), Some("1" | "true"));
            if let Some(identity) = text_of(public, "Identity")
                && !barred
                && !identities.iter().any(|i| i == identity)
            {
                identities.push(identity.to_owned());
            }
        }
        identities
    }
}

/// Why a lookup failed; each kind is one HTTP status of Clearwater's API.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    /// 404.
    #[error("{0}")]
    NotFound(String),
    /// 400.
    #[error("{0}")]
    BadRequest(String),
    /// 503, 504 or 502 by the store's error.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What answers Homestead's subscriber queries.
#[async_trait]
pub trait SubscriberSource: Send + Sync + 'static {
    async fn auth_vector(&self, request: &AuthRequest) -> Result<AuthVector, LookupError>;
    async fn registration_status(
        &self,
        impi: &str,
        impu: &str,
    ) -> Result<ServerAssignment, LookupError>;
    async fn location(&self, impu: &str) -> Result<ServerAssignment, LookupError>;
    async fn reg_data(&self, impu: &str) -> Result<RegData, LookupError>;
    async fn update_reg_data(
        &self,
        impu: &str,
        private_id: Option<&str>,
        request: RegDataRequest,
        server_name: Option<&str>,
    ) -> Result<RegData, LookupError>;
}

/// Deployment settings of the no-HSS source.
#[derive(Clone, Debug)]
pub struct LocalSourceConfig {
    /// The S-CSCF returned by registration-status and location (Clearwater's
    /// `scscf_uri`).
    pub scscf: String,
    pub charging: ChargingAddresses,
}

/// Subscriber data mastered by Whitewater in its own store (no HSS).
pub struct LocalSource {
    store: Arc<dyn SubscriberStore>,
    config: LocalSourceConfig,
    locks: Arc<Locks>,
}

/// Attempts at claiming a fresh SQN before reporting contention as unavailability.
const SQN_ATTEMPTS: usize = 16;

impl LocalSource {
    /// `locks` must be the ones provisioning on the same store uses, so that a
    /// registration update never interleaves with the deletion of its set.
    pub fn new(
        store: Arc<dyn SubscriberStore>,
        config: LocalSourceConfig,
        locks: Arc<Locks>,
    ) -> Self {
        Self {
            store,
            config,
            locks,
        }
    }

    async fn private(&self, impi: &str) -> Result<PrivateIdentity, LookupError> {
        self.store
            .private_identity(impi)
            .await?
            .ok_or_else(|| LookupError::NotFound(format!("no private identity {impi}")))
    }

    async fn public(&self, impu: &str) -> Result<PublicIndex, LookupError> {
        self.store
            .public_identity(impu)
            .await?
            .ok_or_else(|| LookupError::NotFound(format!("no public identity {impu}")))
    }

    async fn set(&self, index: PublicIndex, impu: &str) -> Result<RegistrationSet, LookupError> {
        self.store
            .registration_set(index.registration_set)
            .await?
            .ok_or_else(|| {
                LookupError::Store(StoreError::Backend(format!(
                    "public identity {impu} names registration set {} which does not exist",
                    index.registration_set
                )))
            })
    }

    /// The private identity and public identity must belong together.
    async fn associated(&self, impi: &str, impu: &str) -> Result<PrivateIdentity, LookupError> {
        if impu.is_empty() {
            return Err(LookupError::NotFound(
                "a public identity is required (query parameter impu, or public_id on /digest)"
                    .into(),
            ));
        }
        let private = self.private(impi).await?;
        let index = self.public(impu).await?;
        if !private.registration_sets.contains(&index.registration_set) {
            return Err(LookupError::NotFound(format!(
                "{impu} is not a public identity of {impi}"
            )));
        }
        Ok(private)
    }

    /// Claims the next SQN with compare-and-set, so that two Homesteads sharing a store
    /// never issue the same one. After a resynchronisation the sequence restarts from the
    /// UE's SQN_MS, even if that is below ours (TS 33.102 §6.3.5).
    async fn claim_sqn(&self, impi: &str, resync_from: Option<u64>) -> Result<u64, LookupError> {
        for _ in 0..SQN_ATTEMPTS {
            let current = self.store.sqn(impi).await?;
            let new = auth::next_sqn(resync_from.unwrap_or(current));
            if new == current {
                continue;
            }
            if self.store.compare_and_set_sqn(impi, current, new).await? {
                return Ok(new);
            }
        }
        Err(StoreError::Unavailable(format!("SQN of {impi} is contended; try again")).into())
    }

    fn render(
        &self,
        set: &RegistrationSet,
        registration: &Registration,
        previous: Option<RegistrationState>,
        private_id: Option<&str>,
    ) -> RegData {
        let private_id = private_id
            .or(registration.private_id.as_deref())
            .or(set.private_ids.first().map(String::as_str))
            .unwrap_or("Unspecified");
        RegData {
            state: registration.state,
            previous,
            ims_subscription: xml::ims_subscription(private_id, set, 1),
            charging: self.config.charging.clone(),
        }
    }
}

#[async_trait]
impl SubscriberSource for LocalSource {
    async fn auth_vector(&self, request: &AuthRequest) -> Result<AuthVector, LookupError> {
        let private = self.associated(&request.impi, &request.impu).await?;
        let digest = private.digest_ha1.as_ref().map(|ha1| AuthVector::Digest {
            ha1: ha1.clone(),
            realm: private.realm.clone(),
            qop: "auth".into(),
        });
        let (keys, version) = match (request.scheme, private.aka, digest) {
            (AuthScheme::Digest | AuthScheme::Unknown, _, Some(digest)) => return Ok(digest),
            (AuthScheme::Digest, _, None) => {
                return Err(LookupError::NotFound(format!(
                    "{} has no digest credentials",
                    request.impi
                )));
            }
            // Clearwater without an HSS answers an AKA request for a digest-only
            // subscriber with the digest vector; so do we.
            (_, None, Some(digest)) => return Ok(digest),
            (_, None, None) => {
                return Err(LookupError::NotFound(format!(
                    "{} has no credentials",
                    request.impi
                )));
            }
            (AuthScheme::AkaV2, Some(keys), _) => (keys, 2),
            (_, Some(keys), _) => (keys, 1),
        };
        let resync_from = match &request.resync_auth {
            Some(resync) if !resync.is_empty() => Some(
                auth::resync_sqn(&keys, resync)
                    .map_err(|e| LookupError::BadRequest(e.to_string()))?,
            ),
            _ => None,
        };
        let sqn = self.claim_sqn(&request.impi, resync_from).await?;
        let vector = auth::aka_vector(&keys, rand::random(), sqn);
        Ok(AuthVector::Aka { vector, version })
    }

    async fn registration_status(
        &self,
        impi: &str,
        impu: &str,
    ) -> Result<ServerAssignment, LookupError> {
        self.associated(impi, impu).await?;
        Ok(ServerAssignment {
            result_code: 2001,
            scscf: self.config.scscf.clone(),
        })
    }

    async fn location(&self, impu: &str) -> Result<ServerAssignment, LookupError> {
        let index = self.public(impu).await?;
        let registration = self.store.registration(index.registration_set).await?;
        let scscf = registration
            .and_then(|r| r.server_name)
            .unwrap_or_else(|| self.config.scscf.clone());
        Ok(ServerAssignment {
            result_code: 2001,
            scscf,
        })
    }

    async fn reg_data(&self, impu: &str) -> Result<RegData, LookupError> {
        let index = self.public(impu).await?;
        let set = self.set(index, impu).await?;
        let registration = self.store.registration(set.id).await?.unwrap_or_default();
        Ok(self.render(&set, &registration, None, None))
    }

    async fn update_reg_data(
        &self,
        impu: &str,
        private_id: Option<&str>,
        request: RegDataRequest,
        server_name: Option<&str>,
    ) -> Result<RegData, LookupError> {
        let index = match self.public(impu).await {
            // Clearwater answers an authentication failure for an unknown identity with
            // the blank document rather than 404.
            Err(LookupError::NotFound(_))
                if matches!(
                    request,
                    RegDataRequest::DeregAuthFailed | RegDataRequest::DeregAuthTimeout
                ) =>
            {
                return Ok(RegData {
                    state: RegistrationState::NotRegistered,
                    previous: None,
                    ims_subscription: String::new(),
                    charging: ChargingAddresses::default(),
                });
            }
            other => other?,
        };
        let _guard = self
            .locks
            .0
            .lock(&[LockKey::Set(index.registration_set)])
            .await;
        // Under the lock, from the store itself: the set may have just been deleted.
        let set = match self
            .store
            .authoritative()
            .registration_set(index.registration_set)
            .await?
        {
            Some(set) => set,
            None => return Err(LookupError::NotFound(format!("no public identity {impu}"))),
        };
        if let Some(impi) = private_id
            && !set.private_ids.iter().any(|p| p == impi)
        {
            return Err(LookupError::NotFound(format!(
                "private identity {impi} may not register {impu}"
            )));
        }
        for _ in 0..REGISTRATION_ATTEMPTS {
            let stored = self.store.registration(set.id).await?;
            let (after, previous) = transition(
                impu,
                request,
                stored.clone().unwrap_or_default(),
                server_name,
                private_id,
            )?;
            let new = (after != Registration::default()).then_some(&after);
            if stored.as_ref() == new
                || self
                    .store
                    .compare_and_set_registration(set.id, stored.as_ref(), new)
                    .await?
            {
                return Ok(self.render(&set, &after, previous, private_id));
            }
        }
        Err(StoreError::Unavailable(format!(
            "registration state of {impu} is contended; try again"
        ))
        .into())
    }
}

/// Attempts at a registration-state update before reporting contention as unavailability.
const REGISTRATION_ATTEMPTS: usize = 16;

/// The registration state after `request`, and the previous state to report.
fn transition(
    impu: &str,
    request: RegDataRequest,
    before: Registration,
    server_name: Option<&str>,
    private_id: Option<&str>,
) -> Result<(Registration, Option<RegistrationState>), LookupError> {
    let mut after = before.clone();
    let previous = match request {
        RegDataRequest::Register => {
            after.state = RegistrationState::Registered;
            after.server_name = server_name.map(str::to_owned).or(after.server_name);
            after.private_id = private_id.map(str::to_owned).or(after.private_id);
            Some(before.state)
        }
        RegDataRequest::Call => {
            if before.state == RegistrationState::NotRegistered {
                after.state = RegistrationState::Unregistered;
                after.server_name = server_name.map(str::to_owned);
            }
            Some(before.state)
        }
        RegDataRequest::DeregUser | RegDataRequest::DeregAdmin | RegDataRequest::DeregTimeout => {
            if before.state == RegistrationState::NotRegistered {
                return Err(LookupError::BadRequest(format!(
                    "{impu} is not registered, so it cannot be deregistered"
                )));
            }
            after = Registration::default();
            None
        }
        RegDataRequest::DeregAuthFailed | RegDataRequest::DeregAuthTimeout => None,
    };
    Ok((after, previous))
}

/// The id a new registration set or service profile gets.
pub(crate) fn new_id() -> Uuid {
    Uuid::new_v4()
}
