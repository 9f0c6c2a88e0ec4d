//! Provisioning: Whitewater as the master of subscriber data. [`Provisioning`] holds the
//! operations of Clearwater's Homestead-prov API (private identities, implicit
//! registration sets, service profiles, public identities) and of our own one-call
//! subscriber API ([`subscribers`]). Every operation is one atomic store batch, computed
//! under striped locks on the records it reads.

pub mod subscribers;

use std::sync::Arc;

use uuid::Uuid;

use crate::auth;
use crate::locks::{Held, LockKey, Locks};
use crate::model::{PrivateIdentity, PublicIdentity, PublicIndex, RegistrationSet, ServiceProfile};
use crate::source::new_id;
use crate::store::{StoreError, SubscriberStore, Write};
use crate::xml;

/// The filter criteria of a service profile that has none yet (as Clearwater writes it).
pub const EMPTY_FILTER_CRITERIA: &str =
    "<ServiceProfile><InitialFilterCriteria></InitialFilterCriteria></ServiceProfile>";

/// Why a provisioning request was refused; each kind is one HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum ProvError {
    /// 400.
    #[error("{0}")]
    BadRequest(String),
    /// 403: the request names records that do not belong together.
    #[error("{0}")]
    Forbidden(String),
    /// 404.
    #[error("{0}")]
    NotFound(String),
    /// 409: an identity already belongs to another subscriber.
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Credentials of a PUT on `/private/<impi>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credentials {
    DigestHa1(String),
    Password(String),
}

/// Provisioning operations over a store.
pub struct Provisioning {
    store: Arc<dyn SubscriberStore>,
    /// The digest realm used when a request names none and the IMPI has no domain.
    default_realm: String,
    locks: Arc<Locks>,
}

/// Records whose locks an operation discovers by reading.
#[derive(Clone, Copy)]
enum Related<'a> {
    SetsOfPrivate(&'a str),
    PrivatesOfSet(Uuid),
    SetOfPublic(&'a str),
}

impl Provisioning {
    /// Locks `known` and the records related to them now (the sets of a private
    /// identity, say), all in one call. Records can change between looking and locking, so
    /// the relation is read again under the lock, and the whole thing retried until what
    /// it finds is covered.
    async fn lock_related(
        &self,
        known: &[LockKey<'_>],
        related: Related<'_>,
    ) -> Result<Held<'_>, ProvError> {
        let stripes_of = |keys: &[LockKey<'_>]| {
            keys.iter()
                .map(|k| self.locks.0.stripe(k))
                .collect::<Vec<_>>()
        };
        let known = stripes_of(known);
        loop {
            let mut wanted = known.clone();
            wanted.extend(stripes_of(&self.related(related).await?));
            let held = self.locks.0.lock_stripes(wanted).await;
            if held.covers(&stripes_of(&self.related(related).await?)) {
                return Ok(held);
            }
        }
    }

    async fn related(&self, related: Related<'_>) -> Result<Vec<LockKey<'static>>, ProvError> {
        Ok(match related {
            Related::SetsOfPrivate(impi) => self
                .db()
                .private_identity(impi)
                .await?
                .map_or_else(Vec::new, |p| {
                    p.registration_sets.into_iter().map(LockKey::Set).collect()
                }),
            Related::PrivatesOfSet(id) => {
                self.db()
                    .registration_set(id)
                    .await?
                    .map_or_else(Vec::new, |s| {
                        s.private_ids
                            .into_iter()
                            .map(|p| LockKey::Private(p.into()))
                            .collect()
                    })
            }
            Related::SetOfPublic(impu) => self
                .db()
                .public_identity(impu)
                .await?
                .map(|index| LockKey::Set(index.registration_set))
                .into_iter()
                .collect(),
        })
    }

    /// `locks` must be the ones the [`crate::source::LocalSource`] on the same store uses.
    pub fn new(store: Arc<dyn SubscriberStore>, default_realm: String, locks: Arc<Locks>) -> Self {
        Self {
            store,
            default_realm,
            locks,
        }
    }

    pub fn store(&self) -> &Arc<dyn SubscriberStore> {
        &self.store
    }

    /// Where provisioning reads: never the cache, since what it reads it writes back.
    fn db(&self) -> &dyn SubscriberStore {
        self.store.authoritative()
    }

    fn realm_for(&self, impi: &str, realm: Option<&str>) -> String {
        realm
            .map(str::to_owned)
            .or_else(|| auth::default_realm(impi).map(str::to_owned))
            .unwrap_or_else(|| self.default_realm.clone())
    }

    async fn private(&self, impi: &str) -> Result<PrivateIdentity, ProvError> {
        self.db()
            .private_identity(impi)
            .await?
            .ok_or_else(|| ProvError::NotFound(format!("no private identity {impi}")))
    }

    async fn set(&self, id: Uuid) -> Result<RegistrationSet, ProvError> {
        self.db()
            .registration_set(id)
            .await?
            .ok_or_else(|| ProvError::NotFound(format!("no implicit registration set {id}")))
    }

    async fn public(&self, impu: &str) -> Result<PublicIndex, ProvError> {
        self.db()
            .public_identity(impu)
            .await?
            .ok_or_else(|| ProvError::NotFound(format!("no public identity {impu}")))
    }

    // Private identities.

    /// Creates or updates a private identity's digest credentials, keeping its
    /// associations and AKA keys.
    pub async fn put_private(
        &self,
        impi: &str,
        credentials: Credentials,
        realm: Option<&str>,
    ) -> Result<(), ProvError> {
        check_identity("private identity", impi)?;
        let _g = self.locks.0.lock(&[LockKey::private(impi)]).await;
        let realm = self.realm_for(impi, realm);
        let mut private = self
            .db()
            .private_identity(impi)
            .await?
            .unwrap_or(PrivateIdentity {
                impi: impi.to_owned(),
                realm: realm.clone(),
                digest_ha1: None,
                plaintext_password: None,
                aka: None,
                registration_sets: Vec::new(),
            });
        private.realm = realm;
        match credentials {
            Credentials::DigestHa1(ha1) => {
                if ha1.len() != 32 || !ha1.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(ProvError::BadRequest(
                        "digest_ha1 must be 32 hex digits".into(),
                    ));
                }
                private.digest_ha1 = Some(ha1.to_ascii_lowercase());
                private.plaintext_password = None;
            }
            Credentials::Password(password) => {
                private.digest_ha1 = Some(auth::digest_ha1(impi, &private.realm, &password));
                private.plaintext_password = Some(password);
            }
        }
        self.store.apply(vec![Write::PutPrivate(private)]).await?;
        Ok(())
    }

    pub async fn get_private(&self, impi: &str) -> Result<PrivateIdentity, ProvError> {
        self.private(impi).await
    }

    /// Deletes a private identity and its associations. `Ok(false)` when it did not exist.
    pub async fn delete_private(&self, impi: &str) -> Result<bool, ProvError> {
        self.delete_private_identity(impi, false).await
    }

    /// Deletes a private identity, removing it from its registration sets; with
    /// `drop_orphans`, a set left with no private identity goes too, with its public
    /// identities. `Ok(false)` when the identity did not exist.
    async fn delete_private_identity(
        &self,
        impi: &str,
        drop_orphans: bool,
    ) -> Result<bool, ProvError> {
        let _g = self
            .lock_related(&[LockKey::private(impi)], Related::SetsOfPrivate(impi))
            .await?;
        let Some(private) = self.db().private_identity(impi).await? else {
            return Ok(false);
        };
        let mut batch = vec![Write::DeletePrivate(impi.to_owned())];
        for id in &private.registration_sets {
            let Some(mut set) = self.db().registration_set(*id).await? else {
                continue;
            };
            set.private_ids.retain(|p| p != impi);
            if drop_orphans && set.private_ids.is_empty() {
                batch.extend(public_ids_of(&set).map(Write::DeletePublic));
                batch.push(Write::DeleteRegistrationSet(set.id));
            } else {
                batch.push(Write::PutRegistrationSet(set));
            }
        }
        self.store.apply(batch).await?;
        Ok(true)
    }

    /// Associates (or with `associate == false` dissociates) a private identity and an
    /// implicit registration set, on both records.
    pub async fn associate(
        &self,
        impi: &str,
        id: Uuid,
        associate: bool,
    ) -> Result<bool, ProvError> {
        let _g = self
            .locks
            .0
            .lock(&[LockKey::private(impi), LockKey::Set(id)])
            .await;
        let mut private = self.private(impi).await?;
        let mut set = self.set(id).await?;
        let linked = private.registration_sets.contains(&id);
        if linked == associate {
            return Ok(false);
        }
        if associate {
            private.registration_sets.push(id);
            set.private_ids.push(impi.to_owned());
        } else {
            private.registration_sets.retain(|s| *s != id);
            set.private_ids.retain(|p| p != impi);
        }
        self.store
            .apply(vec![
                Write::PutPrivate(private),
                Write::PutRegistrationSet(set),
            ])
            .await?;
        Ok(true)
    }

    pub async fn private_sets(&self, impi: &str) -> Result<Vec<Uuid>, ProvError> {
        Ok(self.private(impi).await?.registration_sets)
    }

    pub async fn private_public_ids(&self, impi: &str) -> Result<Vec<String>, ProvError> {
        let private = self.private(impi).await?;
        let mut out = Vec::new();
        for id in private.registration_sets {
            if let Some(set) = self.db().registration_set(id).await? {
                out.extend(public_ids_of(&set));
            }
        }
        Ok(out)
    }

    // Implicit registration sets.

    pub async fn create_set(&self) -> Result<Uuid, ProvError> {
        let set = RegistrationSet {
            id: new_id(),
            private_ids: Vec::new(),
            service_profiles: Vec::new(),
        };
        let id = set.id;
        self.store
            .apply(vec![Write::PutRegistrationSet(set)])
            .await?;
        Ok(id)
    }

    pub async fn get_set(&self, id: Uuid) -> Result<RegistrationSet, ProvError> {
        self.set(id).await
    }

    /// Deletes a set, its public identities and its registration state. `Ok(false)` when
    /// it did not exist.
    pub async fn delete_set(&self, id: Uuid) -> Result<bool, ProvError> {
        let _g = self
            .lock_related(&[LockKey::Set(id)], Related::PrivatesOfSet(id))
            .await?;
        let Some(set) = self.db().registration_set(id).await? else {
            return Ok(false);
        };
        let mut batch = vec![Write::DeleteRegistrationSet(id)];
        batch.extend(public_ids_of(&set).map(Write::DeletePublic));
        for impi in &set.private_ids {
            if let Some(mut private) = self.db().private_identity(impi).await? {
                private.registration_sets.retain(|s| *s != id);
                batch.push(Write::PutPrivate(private));
            }
        }
        self.store.apply(batch).await?;
        Ok(true)
    }

    // Service profiles.

    pub async fn create_service_profile(&self, set_id: Uuid) -> Result<Uuid, ProvError> {
        let _g = self.locks.0.lock(&[LockKey::Set(set_id)]).await;
        let mut set = self.set(set_id).await?;
        let id = new_id();
        set.service_profiles.push(ServiceProfile {
            id,
            filter_criteria_xml: EMPTY_FILTER_CRITERIA.into(),
            public_ids: Vec::new(),
        });
        self.store
            .apply(vec![Write::PutRegistrationSet(set)])
            .await?;
        Ok(id)
    }

    /// Reads a set and checks that `profile` is one of its profiles (403 otherwise, as
    /// Homestead-prov answers).
    async fn set_with_profile(
        &self,
        set_id: Uuid,
        profile: Uuid,
    ) -> Result<(RegistrationSet, usize), ProvError> {
        let set = self.set(set_id).await?;
        let position = set
            .service_profiles
            .iter()
            .position(|p| p.id == profile)
            .ok_or_else(|| {
                ProvError::Forbidden(format!(
                    "service profile {profile} is not in registration set {set_id}"
                ))
            })?;
        Ok((set, position))
    }

    pub async fn get_service_profile(
        &self,
        set_id: Uuid,
        profile: Uuid,
    ) -> Result<ServiceProfile, ProvError> {
        let (mut set, i) = self.set_with_profile(set_id, profile).await?;
        Ok(set.service_profiles.swap_remove(i))
    }

    pub async fn delete_service_profile(
        &self,
        set_id: Uuid,
        profile: Uuid,
    ) -> Result<(), ProvError> {
        let _g = self.locks.0.lock(&[LockKey::Set(set_id)]).await;
        let (mut set, i) = self.set_with_profile(set_id, profile).await?;
        let removed = set.service_profiles.remove(i);
        let mut batch: Vec<_> = removed
            .public_ids
            .into_iter()
            .map(|p| Write::DeletePublic(p.impu))
            .collect();
        batch.push(Write::PutRegistrationSet(set));
        self.store.apply(batch).await?;
        Ok(())
    }

    pub async fn put_filter_criteria(
        &self,
        set_id: Uuid,
        profile: Uuid,
        body: &str,
    ) -> Result<(), ProvError> {
        if body.trim().is_empty() {
            return Err(ProvError::BadRequest(
                "the body must be a <ServiceProfile> document".into(),
            ));
        }
        xml::validate_filter_criteria(body).map_err(|e| ProvError::BadRequest(e.to_string()))?;
        let _g = self.locks.0.lock(&[LockKey::Set(set_id)]).await;
        let (mut set, i) = self.set_with_profile(set_id, profile).await?;
        set.service_profiles[i].filter_criteria_xml = body.to_owned();
        self.store
            .apply(vec![Write::PutRegistrationSet(set)])
            .await?;
        Ok(())
    }

    /// Adds or replaces a public identity in a service profile. An identity held by
    /// another profile moves here.
    pub async fn put_public_identity(
        &self,
        set_id: Uuid,
        profile: Uuid,
        impu: &str,
        body: &str,
    ) -> Result<(), ProvError> {
        let identity = xml::validate_public_identity(body)
            .map_err(|e| ProvError::BadRequest(e.to_string()))?;
        if identity != impu {
            return Err(ProvError::Forbidden(format!(
                "<Identity> {identity} does not match the public identity {impu} of the URL"
            )));
        }
        let _g = self
            .lock_related(
                &[LockKey::public(impu), LockKey::Set(set_id)],
                Related::SetOfPublic(impu),
            )
            .await?;
        let previous = self.db().public_identity(impu).await?;
        let mut batch = Vec::new();
        if let Some(old) = previous.filter(|old| old.registration_set != set_id)
            && let Some(mut old_set) = self.db().registration_set(old.registration_set).await?
        {
            remove_public(&mut old_set, impu);
            batch.push(Write::PutRegistrationSet(old_set));
        }
        let (mut set, i) = self.set_with_profile(set_id, profile).await?;
        remove_public(&mut set, impu);
        set.service_profiles[i].public_ids.push(PublicIdentity {
            impu: impu.to_owned(),
            xml: body.to_owned(),
        });
        batch.push(Write::PutRegistrationSet(set));
        batch.push(Write::PutPublic(
            impu.to_owned(),
            PublicIndex {
                registration_set: set_id,
                service_profile: profile,
            },
        ));
        self.store.apply(batch).await?;
        Ok(())
    }

    pub async fn delete_public_identity(
        &self,
        set_id: Uuid,
        profile: Uuid,
        impu: &str,
    ) -> Result<(), ProvError> {
        let _g = self
            .locks
            .0
            .lock(&[LockKey::public(impu), LockKey::Set(set_id)])
            .await;
        let (mut set, i) = self.set_with_profile(set_id, profile).await?;
        let before = set.service_profiles[i].public_ids.len();
        set.service_profiles[i]
            .public_ids
            .retain(|p| p.impu != impu);
        if set.service_profiles[i].public_ids.len() == before {
            return Err(ProvError::Forbidden(format!(
                "{impu} is not in service profile {profile}"
            )));
        }
        self.store
            .apply(vec![
                Write::PutRegistrationSet(set),
                Write::DeletePublic(impu.to_owned()),
            ])
            .await?;
        Ok(())
    }

    // Public identities.

    pub async fn locate_public(&self, impu: &str) -> Result<PublicIndex, ProvError> {
        self.public(impu).await
    }

    pub async fn public_private_ids(&self, impu: &str) -> Result<Vec<String>, ProvError> {
        let index = self.public(impu).await?;
        Ok(self.set(index.registration_set).await?.private_ids)
    }
}

/// Every public identity of a set, over all its profiles.
pub fn public_ids_of(set: &RegistrationSet) -> impl Iterator<Item = String> + '_ {
    set.service_profiles
        .iter()
        .flat_map(|p| p.public_ids.iter().map(|i| i.impu.clone()))
}

fn remove_public(set: &mut RegistrationSet, impu: &str) {
    for profile in &mut set.service_profiles {
        profile.public_ids.retain(|p| p.impu != impu);
    }
}

/// Identities go into URLs, XML and store keys: refuse what cannot be one.
pub(crate) fn check_identity(what: &str, identity: &str) -> Result<(), ProvError> {
    if identity.is_empty() || identity.len() > 512 || identity.chars().any(char::is_control) {
        return Err(ProvError::BadRequest(format!(
            "{what} must be 1 to 512 characters without control characters"
        )));
    }
    Ok(())
}
