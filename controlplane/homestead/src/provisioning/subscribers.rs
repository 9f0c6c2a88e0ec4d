//! Our own provisioning API for the common case: one call creates or replaces a subscriber
//! (its private identity, credentials, public identities and optional iFCs in one
//! implicit registration set and service profile). PUT is idempotent, so a bulk run can be
//! repeated after an interruption.

use serde::{Deserialize, Serialize};

use super::{
    EMPTY_FILTER_CRITERIA, ProvError, Provisioning, Related, check_identity, public_ids_of,
};
use crate::auth;
use crate::locks::LockKey;
use crate::model::{
    AkaCredentials, PrivateIdentity, PublicIdentity, PublicIndex, RegistrationSet, ServiceProfile,
};
use crate::source::new_id;
use crate::store::Write;
use crate::xml;

/// The body of `PUT /subscribers/<impi>`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscriberSpec {
    /// Public identities (`sip:`, `sips:` or `tel:` URIs); the first is the default one.
    pub impus: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest_ha1: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub realm: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aka: Option<AkaCredentials>,
    /// A `<ServiceProfile>` document holding the subscriber's initial filter criteria.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ifcs: Option<String>,
}

/// What `GET /subscribers/<impi>` shows. Secrets (password, K, OPc) are never returned.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriberView {
    pub impi: String,
    pub realm: String,
    pub impus: Vec<String>,
    pub digest: bool,
    pub aka: bool,
    pub registration_sets: Vec<uuid::Uuid>,
}

/// What a PUT did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PutOutcome {
    Created,
    Updated,
    Unchanged,
}

impl Provisioning {
    /// Creates or replaces a subscriber as one atomic write.
    pub async fn put_subscriber(
        &self,
        impi: &str,
        spec: SubscriberSpec,
    ) -> Result<PutOutcome, ProvError> {
        check_identity("private identity", impi)?;
        validate_spec(&spec)?;
        let mut keys = vec![LockKey::private(impi)];
        keys.extend(spec.impus.iter().map(|u| LockKey::public(u)));
        let _g = self
            .lock_related(&keys, Related::SetsOfPrivate(impi))
            .await?;

        let existing = self.db().private_identity(impi).await?;
        let existing_set = match existing.as_ref().map(|p| p.registration_sets.as_slice()) {
            None | Some([]) => None,
            Some([id]) => self.db().registration_set(*id).await?,
            Some(_) => {
                return Err(ProvError::Conflict(format!(
                    "{impi} has several implicit registration sets; manage it with the \
                     Homestead-prov API (/private, /irs)"
                )));
            }
        };
        let set_id = existing_set.as_ref().map_or_else(new_id, |s| s.id);
        for impu in &spec.impus {
            if let Some(index) = self.db().public_identity(impu).await?
                && index.registration_set != set_id
            {
                return Err(ProvError::Conflict(format!(
                    "{impu} already belongs to another subscriber (registration set {})",
                    index.registration_set
                )));
            }
        }

        let realm = self.realm_for(impi, spec.realm.as_deref());
        let digest_ha1 = match (&spec.password, &spec.digest_ha1) {
            (Some(password), _) => Some(auth::digest_ha1(impi, &realm, password)),
            (None, Some(ha1)) => Some(ha1.to_ascii_lowercase()),
            (None, None) => None,
        };
        let private = PrivateIdentity {
            impi: impi.to_owned(),
            realm,
            digest_ha1,
            plaintext_password: spec.password.clone(),
            aka: spec.aka,
            registration_sets: vec![set_id],
        };
        let profile_id = existing_set
            .as_ref()
            .and_then(|s| s.service_profiles.first())
            .map_or_else(new_id, |p| p.id);
        let mut private_ids = existing_set
            .as_ref()
            .map_or_else(Vec::new, |s| s.private_ids.clone());
        if !private_ids.iter().any(|p| p == impi) {
            private_ids.push(impi.to_owned());
        }
        let set = RegistrationSet {
            id: set_id,
            private_ids,
            service_profiles: vec![ServiceProfile {
                id: profile_id,
                filter_criteria_xml: spec
                    .ifcs
                    .clone()
                    .unwrap_or_else(|| EMPTY_FILTER_CRITERIA.into()),
                public_ids: spec
                    .impus
                    .iter()
                    .map(|impu| PublicIdentity {
                        impu: impu.clone(),
                        xml: public_identity_xml(impu),
                    })
                    .collect(),
            }],
        };
        if existing.as_ref() == Some(&private) && existing_set.as_ref() == Some(&set) {
            return Ok(PutOutcome::Unchanged);
        }

        let mut batch = Vec::with_capacity(spec.impus.len() + 4);
        if let Some(old) = &existing_set {
            batch.extend(
                public_ids_of(old)
                    .filter(|u| !spec.impus.contains(u))
                    .map(Write::DeletePublic),
            );
        }
        for impu in &spec.impus {
            let index = PublicIndex {
                registration_set: set_id,
                service_profile: profile_id,
            };
            batch.push(Write::PutPublic(impu.clone(), index));
        }
        batch.push(Write::PutRegistrationSet(set));
        batch.push(Write::PutPrivate(private));
        self.store.apply(batch).await?;
        Ok(if existing.is_some() {
            PutOutcome::Updated
        } else {
            PutOutcome::Created
        })
    }

    pub async fn get_subscriber(&self, impi: &str) -> Result<SubscriberView, ProvError> {
        let private = self.private(impi).await?;
        let mut impus = Vec::new();
        for id in &private.registration_sets {
            if let Some(set) = self.db().registration_set(*id).await? {
                impus.extend(public_ids_of(&set));
            }
        }
        Ok(SubscriberView {
            impi: private.impi,
            realm: private.realm,
            impus,
            digest: private.digest_ha1.is_some(),
            aka: private.aka.is_some(),
            registration_sets: private.registration_sets,
        })
    }

    /// Deletes a subscriber: its private identity, and every registration set (with its
    /// public identities) that no other private identity shares. `Ok(false)` when absent.
    pub async fn delete_subscriber(&self, impi: &str) -> Result<bool, ProvError> {
        self.delete_private_identity(impi, true).await
    }

    pub async fn list_subscribers(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, ProvError> {
        Ok(self.db().list_private_identities(after, limit).await?)
    }
}

fn validate_spec(spec: &SubscriberSpec) -> Result<(), ProvError> {
    if spec.impus.is_empty() {
        return Err(ProvError::BadRequest(
            "impus must list at least one public identity".into(),
        ));
    }
    for impu in &spec.impus {
        check_identity("public identity", impu)?;
        xml::validate_public_identity(&public_identity_xml(impu))
            .map_err(|e| ProvError::BadRequest(format!("public identity {impu:?}: {e}")))?;
    }
    let mut seen = std::collections::HashSet::new();
    if let Some(dup) = spec.impus.iter().find(|u| !seen.insert(u.as_str())) {
        return Err(ProvError::BadRequest(format!("{dup} is listed twice")));
    }
    match (&spec.password, &spec.digest_ha1, &spec.aka) {
        (Some(_), Some(_), _) => {
            return Err(ProvError::BadRequest(
                "give password or digest_ha1, not both".into(),
            ));
        }
        (None, None, None) => {
            return Err(ProvError::BadRequest(
                "a subscriber needs credentials: password, digest_ha1 or aka".into(),
            ));
        }
        (_, Some(ha1), _) if ha1.len() != 32 || !ha1.bytes().all(|b| b.is_ascii_hexdigit()) => {
            return Err(ProvError::BadRequest(
                "digest_ha1 must be 32 hex digits".into(),
            ));
        }
        _ => {}
    }
    if let Some(ifcs) = &spec.ifcs {
        xml::validate_filter_criteria(ifcs)
            .map_err(|e| ProvError::BadRequest(format!("ifcs: {e}")))?;
    }
    Ok(())
}

/// The `<PublicIdentity>` element of a subscriber made by this API.
pub fn public_identity_xml(impu: &str) -> String {
    let mut out = String::from("<PublicIdentity><Identity>");
    xml::escape_into(impu, &mut out);
    out.push_str("</Identity></PublicIdentity>");
    out
}
