//! A read cache in front of any store. Entries live for a TTL; writes made through this
//! cache invalidate what they touch, so this node never serves its own stale data. Writes
//! made by another node become visible here within the TTL (Clearwater's Homestead cache
//! behaves the same). AKA sequence numbers are never cached: they must be authoritative.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use moka::future::Cache;
use uuid::Uuid;

use super::{StoreError, SubscriberStore, Write};
use crate::model::{PrivateIdentity, PublicIndex, Registration, RegistrationSet};

/// Size and lifetime of the cache.
#[derive(Clone, Copy, Debug)]
pub struct CacheConfig {
    /// Entries per record kind.
    pub capacity: u64,
    /// How long an entry is served before the store is read again.
    pub ttl: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            capacity: 1_000_000,
            ttl: Duration::from_secs(30),
        }
    }
}

/// A [`SubscriberStore`] that caches another.
pub struct CachedStore {
    inner: Arc<dyn SubscriberStore>,
    private: Cache<String, Arc<PrivateIdentity>>,
    public: Cache<String, PublicIndex>,
    sets: Cache<Uuid, Arc<RegistrationSet>>,
    registrations: Cache<Uuid, Registration>,
}

impl CachedStore {
    pub fn new(inner: Arc<dyn SubscriberStore>, config: CacheConfig) -> Self {
        fn cache<K, V>(config: CacheConfig) -> Cache<K, V>
        where
            K: std::hash::Hash + Eq + Send + Sync + 'static,
            V: Clone + Send + Sync + 'static,
        {
            Cache::builder()
                .max_capacity(config.capacity)
                .time_to_live(config.ttl)
                .build()
        }
        Self {
            inner,
            private: cache(config),
            public: cache(config),
            sets: cache(config),
            registrations: cache(config),
        }
    }

    async fn invalidate(&self, batch: &[Write]) {
        for write in batch {
            match write {
                Write::PutPrivate(p) => self.private.invalidate(&p.impi).await,
                Write::DeletePrivate(impi) => self.private.invalidate(impi).await,
                Write::PutPublic(impu, _) | Write::DeletePublic(impu) => {
                    self.public.invalidate(impu).await;
                }
                Write::PutRegistrationSet(set) => self.sets.invalidate(&set.id).await,
                Write::DeleteRegistrationSet(id) => {
                    self.sets.invalidate(id).await;
                    self.registrations.invalidate(id).await;
                }
                Write::PutRegistration(id, _) | Write::DeleteRegistration(id) => {
                    self.registrations.invalidate(id).await;
                }
            }
        }
    }
}

#[async_trait]
impl SubscriberStore for CachedStore {
    async fn private_identity(&self, impi: &str) -> Result<Option<PrivateIdentity>, StoreError> {
        if let Some(hit) = self.private.get(impi).await {
            return Ok(Some((*hit).clone()));
        }
        let found = self.inner.private_identity(impi).await?;
        if let Some(p) = &found {
            self.private
                .insert(impi.to_owned(), Arc::new(p.clone()))
                .await;
        }
        Ok(found)
    }

    async fn public_identity(&self, impu: &str) -> Result<Option<PublicIndex>, StoreError> {
        if let Some(hit) = self.public.get(impu).await {
            return Ok(Some(hit));
        }
        let found = self.inner.public_identity(impu).await?;
        if let Some(index) = found {
            self.public.insert(impu.to_owned(), index).await;
        }
        Ok(found)
    }

    async fn registration_set(&self, id: Uuid) -> Result<Option<RegistrationSet>, StoreError> {
        if let Some(hit) = self.sets.get(&id).await {
            return Ok(Some((*hit).clone()));
        }
        let found = self.inner.registration_set(id).await?;
        if let Some(set) = &found {
            self.sets.insert(id, Arc::new(set.clone())).await;
        }
        Ok(found)
    }

    async fn registration(&self, set: Uuid) -> Result<Option<Registration>, StoreError> {
        if let Some(hit) = self.registrations.get(&set).await {
            return Ok(Some(hit));
        }
        let found = self.inner.registration(set).await?;
        if let Some(reg) = &found {
            self.registrations.insert(set, reg.clone()).await;
        }
        Ok(found)
    }

    async fn apply(&self, batch: Vec<Write>) -> Result<(), StoreError> {
        // Invalidate on both sides of the write: before, so no reader is served the old
        // value while the write is in flight; after, so a read that raced the write cannot
        // leave the old value cached.
        self.invalidate(&batch).await;
        let result = self.inner.apply(batch.clone()).await;
        self.invalidate(&batch).await;
        result
    }

    async fn sqn(&self, impi: &str) -> Result<u64, StoreError> {
        self.inner.sqn(impi).await
    }

    async fn compare_and_set_sqn(
        &self,
        impi: &str,
        current: u64,
        new: u64,
    ) -> Result<bool, StoreError> {
        self.inner.compare_and_set_sqn(impi, current, new).await
    }

    async fn list_private_identities(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        self.inner.list_private_identities(after, limit).await
    }

    async fn list_public_identities(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        self.inner.list_public_identities(after, limit).await
    }
}
