//! Striped async locks: read-modify-write sequences on the same subscriber records run one
//! at a time in this process, while unrelated subscribers proceed in parallel (which keeps
//! the embedded store's group commit fed during bulk provisioning).
//!
//! Every operation takes all its stripes in one call, in stripe order, so two operations
//! never wait on each other in a cycle and one operation never waits on itself (a tokio
//! mutex is not re-entrant, and two keys of one operation may share a stripe).

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use tokio::sync::{Mutex, MutexGuard};

pub(crate) struct Stripes {
    locks: Vec<Mutex<()>>,
}

/// What a lock protects: provisioning and registration-state updates share one set of
/// stripes, so a registration update and the deletion of its set never interleave.
#[derive(Hash)]
pub(crate) enum LockKey<'a> {
    Private(std::borrow::Cow<'a, str>),
    Public(std::borrow::Cow<'a, str>),
    Set(uuid::Uuid),
}

impl<'a> LockKey<'a> {
    pub(crate) fn private(impi: &'a str) -> Self {
        Self::Private(impi.into())
    }

    pub(crate) fn public(impu: &'a str) -> Self {
        Self::Public(impu.into())
    }
}

/// The locks one Homestead's provisioning and registration updates share.
pub struct Locks(pub(crate) Stripes);

impl Locks {
    /// 1024 stripes: enough that unrelated subscribers rarely wait on each other.
    pub fn new() -> Self {
        Self(Stripes::new(1024))
    }
}

impl Default for Locks {
    fn default() -> Self {
        Self::new()
    }
}

/// The stripes one operation holds.
pub(crate) struct Held<'a> {
    stripes: Vec<usize>,
    _guards: Vec<MutexGuard<'a, ()>>,
}

impl Held<'_> {
    /// Whether every stripe in `stripes` is held.
    pub(crate) fn covers(&self, stripes: &[usize]) -> bool {
        stripes
            .iter()
            .all(|s| self.stripes.binary_search(s).is_ok())
    }
}

impl Stripes {
    pub(crate) fn new(count: usize) -> Self {
        Self {
            locks: (0..count.max(1)).map(|_| Mutex::new(())).collect(),
        }
    }

    pub(crate) fn stripe(&self, key: &impl Hash) -> usize {
        let mut h = DefaultHasher::new();
        key.hash(&mut h);
        (h.finish() % self.locks.len() as u64) as usize
    }

    /// Locks the stripes of every key.
    pub(crate) async fn lock<K: Hash>(&self, keys: &[K]) -> Held<'_> {
        self.lock_stripes(keys.iter().map(|k| self.stripe(k)).collect())
            .await
    }

    /// Locks the given stripes, in order, each once.
    pub(crate) async fn lock_stripes(&self, mut stripes: Vec<usize>) -> Held<'_> {
        stripes.sort_unstable();
        stripes.dedup();
        let mut guards = Vec::with_capacity(stripes.len());
        for &i in &stripes {
            guards.push(self.locks[i].lock().await);
        }
        Held {
            stripes,
            _guards: guards,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keys_sharing_a_stripe_lock_once() {
        let stripes = Stripes::new(1);
        let held = stripes.lock(&["a", "b"]).await;
        assert!(held.covers(&[0]));
        drop(held);
        let again =
            tokio::time::timeout(std::time::Duration::from_secs(1), stripes.lock(&["c"])).await;
        assert!(again.is_ok(), "the stripe was released");
    }
}
