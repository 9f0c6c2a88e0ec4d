//! A read cache in front of any store. Entries live for a TTL; writes made through this
//! cache invalidate what they touch, so this node never serves its own stale data. Writes
//! made by another node become visible here within the TTL (Clearwater's Homestead cache
//! behaves the same).
//!
//! What is never cached: registration state (every reg-data request reads it from the
//! store, so Homesteads sharing a cluster agree on it) and AKA sequence numbers. Code that
//! reads a record in order to write it back reads through [`SubscriberStore::authoritative`],
//! which skips the cache.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
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
    /// Counts writes. A read that misses notes it before going to the store and caches
    /// its answer only if no write happened meanwhile: otherwise a slow read could put
    /// back a value a write had just replaced, for a whole TTL.
    writes: AtomicU64,
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
            writes: AtomicU64::new(0),
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
                Write::DeleteRegistrationSet(id) => self.sets.invalidate(id).await,
                Write::PutRegistration(..) | Write::DeleteRegistration(_) => {}
            }
        }
    }

    fn unchanged_since(&self, seen: u64) -> bool {
        self.writes.load(Ordering::Acquire) == seen
    }
}

#[async_trait]
impl SubscriberStore for CachedStore {
    fn authoritative(&self) -> &dyn SubscriberStore {
        &*self.inner
    }

    async fn private_identity(&self, impi: &str) -> Result<Option<PrivateIdentity>, StoreError> {
        if let Some(hit) = self.private.get(impi).await {
            return Ok(Some((*hit).clone()));
        }
        let seen = self.writes.load(Ordering::Acquire);
        let found = self.inner.private_identity(impi).await?;
        if let Some(p) = &found
            && self.unchanged_since(seen)
        {
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
        let seen = self.writes.load(Ordering::Acquire);
        let found = self.inner.public_identity(impu).await?;
        if let Some(index) = found
            && self.unchanged_since(seen)
        {
            self.public.insert(impu.to_owned(), index).await;
        }
        Ok(found)
    }

    async fn registration_set(&self, id: Uuid) -> Result<Option<RegistrationSet>, StoreError> {
        if let Some(hit) = self.sets.get(&id).await {
            return Ok(Some((*hit).clone()));
        }
        let seen = self.writes.load(Ordering::Acquire);
        let found = self.inner.registration_set(id).await?;
        if let Some(set) = &found
            && self.unchanged_since(seen)
        {
            self.sets.insert(id, Arc::new(set.clone())).await;
        }
        Ok(found)
    }

    async fn registration(&self, set: Uuid) -> Result<Option<Registration>, StoreError> {
        self.inner.registration(set).await
    }

    async fn apply(&self, batch: Vec<Write>) -> Result<(), StoreError> {
        // Count the write before it starts so a concurrent miss does not cache what it
        // read; invalidate after it lands so nothing older stays cached.
        self.writes.fetch_add(1, Ordering::AcqRel);
        let result = self.inner.apply(batch.clone()).await;
        self.writes.fetch_add(1, Ordering::AcqRel);
        self.invalidate(&batch).await;
        result
    }

    async fn compare_and_set_registration(
        &self,
        set: Uuid,
        current: Option<&Registration>,
        new: Option<&Registration>,
    ) -> Result<bool, StoreError> {
        self.inner
            .compare_and_set_registration(set, current, new)
            .await
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::RegistrationState;
    use std::sync::Mutex;

    /// A store whose reads wait until released, to interleave a read with a write.
    #[derive(Default)]
    struct Gated {
        registration_sets: Mutex<Option<RegistrationSet>>,
        gate: tokio::sync::Notify,
    }

    #[async_trait]
    impl SubscriberStore for Gated {
        fn authoritative(&self) -> &dyn SubscriberStore {
            self
        }
        async fn private_identity(&self, _: &str) -> Result<Option<PrivateIdentity>, StoreError> {
            Ok(None)
        }
        async fn public_identity(&self, _: &str) -> Result<Option<PublicIndex>, StoreError> {
            Ok(None)
        }
        async fn registration_set(&self, _: Uuid) -> Result<Option<RegistrationSet>, StoreError> {
            let value = self.registration_sets.lock().unwrap().clone();
            self.gate.notified().await;
            Ok(value)
        }
        async fn registration(&self, _: Uuid) -> Result<Option<Registration>, StoreError> {
            Ok(Some(Registration {
                state: RegistrationState::Registered,
                ..Registration::default()
            }))
        }
        async fn apply(&self, batch: Vec<Write>) -> Result<(), StoreError> {
            for write in batch {
                if let Write::PutRegistrationSet(set) = write {
                    *self.registration_sets.lock().unwrap() = Some(set);
                }
            }
            Ok(())
        }
        async fn compare_and_set_registration(
            &self,
            _: Uuid,
            _: Option<&Registration>,
            _: Option<&Registration>,
        ) -> Result<bool, StoreError> {
            Ok(true)
        }
        async fn sqn(&self, _: &str) -> Result<u64, StoreError> {
            Ok(0)
        }
        async fn compare_and_set_sqn(&self, _: &str, _: u64, _: u64) -> Result<bool, StoreError> {
            Ok(true)
        }
        async fn list_private_identities(
            &self,
            _: Option<&str>,
            _: usize,
        ) -> Result<Vec<String>, StoreError> {
            Ok(Vec::new())
        }
        async fn list_public_identities(
            &self,
            _: Option<&str>,
            _: usize,
        ) -> Result<Vec<String>, StoreError> {
            Ok(Vec::new())
        }
    }

    fn set(private: &str) -> RegistrationSet {
        RegistrationSet {
            id: Uuid::nil(),
            private_ids: vec![private.into()],
            service_profiles: Vec::new(),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_read_that_raced_a_write_is_not_cached() {
        let inner = Arc::new(Gated::default());
        *inner.registration_sets.lock().unwrap() = Some(set("old"));
        let cached = Arc::new(CachedStore::new(inner.clone(), CacheConfig::default()));
        let reader = {
            let cached = Arc::clone(&cached);
            tokio::spawn(async move { cached.registration_set(Uuid::nil()).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        cached
            .apply(vec![Write::PutRegistrationSet(set("new"))])
            .await
            .unwrap();
        inner.gate.notify_one();
        let raced = reader.await.unwrap().unwrap().unwrap();
        assert_eq!(
            raced.private_ids,
            ["old"],
            "the racing read saw the old value"
        );
        let after = tokio::spawn({
            let cached = Arc::clone(&cached);
            async move { cached.registration_set(Uuid::nil()).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        inner.gate.notify_one();
        let fresh = after.await.unwrap().unwrap().unwrap();
        assert_eq!(fresh.private_ids, ["new"], "the old value was cached");
    }
}
