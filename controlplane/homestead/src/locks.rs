//! Striped async locks: read-modify-write sequences on the same subscriber records run one
//! at a time in this process, while unrelated subscribers proceed in parallel (which keeps
//! the embedded store's group commit fed during bulk provisioning).

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use tokio::sync::{Mutex, MutexGuard};

pub(crate) struct Stripes {
    locks: Vec<Mutex<()>>,
}

impl Stripes {
    pub(crate) fn new(count: usize) -> Self {
        Self {
            locks: (0..count.max(1)).map(|_| Mutex::new(())).collect(),
        }
    }

    fn index(&self, key: &impl Hash) -> usize {
        let mut h = DefaultHasher::new();
        key.hash(&mut h);
        (h.finish() % self.locks.len() as u64) as usize
    }

    /// Locks the stripes of every key, in stripe order so two callers never deadlock.
    pub(crate) async fn lock<K: Hash>(&self, keys: &[K]) -> Vec<MutexGuard<'_, ()>> {
        let mut indices: Vec<usize> = keys.iter().map(|k| self.index(k)).collect();
        indices.sort_unstable();
        indices.dedup();
        let mut guards = Vec::with_capacity(indices.len());
        for i in indices {
            guards.push(self.locks[i].lock().await);
        }
        guards
    }
}
