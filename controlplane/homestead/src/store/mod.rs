//! Where subscriber data is kept. One trait, two backends: [`EmbeddedStore`] (redb on
//! local disk, the one-host default) and [`ScyllaStore`] (a ScyllaDB or Cassandra
//! cluster). [`CachedStore`] puts a read cache with a TTL in front of either.
//!
//! Every backend passes the same conformance suite (`tests/store_conformance.rs`).

mod cached;
mod embedded;
mod scylla;

pub use cached::{CacheConfig, CachedStore};
pub use embedded::EmbeddedStore;
pub use scylla::{ScyllaConfig, ScyllaStore, parse_consistency};

use async_trait::async_trait;
use uuid::Uuid;

use crate::model::{PrivateIdentity, PublicIndex, Registration, RegistrationSet};

/// The version of the record layout and schema this build writes; stores record it and
/// migrate older layouts forward at start-up.
pub const SCHEMA_VERSION: u32 = 1;

/// Why a store operation failed. Each kind maps to one HTTP status of Clearwater's API.
#[derive(Clone, Debug, thiserror::Error)]
pub enum StoreError {
    /// No replica could take the request (nodes down, not enough replicas for the
    /// consistency level, store not yet reachable): 503.
    #[error("subscriber store unavailable: {0}")]
    Unavailable(String),
    /// The store did not answer in time: 504.
    #[error("subscriber store timed out: {0}")]
    Timeout(String),
    /// The store answered with an error, or returned a record that does not decode: 502.
    #[error("subscriber store error: {0}")]
    Backend(String),
}

/// One change in an atomic batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Write {
    PutPrivate(PrivateIdentity),
    /// Deletes the private identity and its AKA sequence number.
    DeletePrivate(String),
    PutPublic(String, PublicIndex),
    DeletePublic(String),
    PutRegistrationSet(RegistrationSet),
    /// Deletes the set and its registration state.
    DeleteRegistrationSet(Uuid),
    PutRegistration(Uuid, Registration),
    DeleteRegistration(Uuid),
}

/// The records Homestead reads and writes. Writes come in batches applied atomically (all
/// or nothing) and durably: once `apply` returns `Ok`, a crash loses none of it.
#[async_trait]
pub trait SubscriberStore: Send + Sync + 'static {
    /// The store without any cache in front: what a read-modify-write must read.
    fn authoritative(&self) -> &dyn SubscriberStore;

    async fn private_identity(&self, impi: &str) -> Result<Option<PrivateIdentity>, StoreError>;
    async fn public_identity(&self, impu: &str) -> Result<Option<PublicIndex>, StoreError>;
    async fn registration_set(&self, id: Uuid) -> Result<Option<RegistrationSet>, StoreError>;
    async fn registration(&self, set: Uuid) -> Result<Option<Registration>, StoreError>;
    async fn apply(&self, batch: Vec<Write>) -> Result<(), StoreError>;

    /// Replaces the registration state of `set` only if it is still `current` (`None`:
    /// no state stored); `new` of `None` deletes it. `false` when another Homestead changed
    /// it first (the caller re-reads and retries). Comparison is by value, so a record
    /// written by another version of Whitewater compares equal to what it decodes to.
    async fn compare_and_set_registration(
        &self,
        set: Uuid,
        current: Option<&Registration>,
        new: Option<&Registration>,
    ) -> Result<bool, StoreError>;

    /// The AKA sequence number last used for `impi` (0 when none was).
    async fn sqn(&self, impi: &str) -> Result<u64, StoreError>;
    /// Sets the sequence number to `new` only if it is still `current`; `false` when
    /// another node moved it first (the caller re-reads and retries).
    async fn compare_and_set_sqn(
        &self,
        impi: &str,
        current: u64,
        new: u64,
    ) -> Result<bool, StoreError>;

    /// Up to `limit` private identities after `after`, in the store's own order (the same
    /// order on every call, so paging with the last one returned visits each once).
    async fn list_private_identities(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError>;
    /// The same for public identities.
    async fn list_public_identities(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError>;
}

pub(crate) fn encode<T: serde::Serialize>(record: &T) -> Vec<u8> {
    serde_json::to_vec(record).expect("records contain only strings, numbers and lists")
}

pub(crate) fn decode<T: serde::de::DeserializeOwned>(
    what: &str,
    key: &str,
    bytes: &[u8],
) -> Result<T, StoreError> {
    serde_json::from_slice(bytes)
        .map_err(|e| StoreError::Backend(format!("{what} record for {key} does not decode: {e}")))
}
