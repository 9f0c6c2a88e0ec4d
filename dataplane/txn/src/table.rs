//! A bounded table of transactions, one per core: exact matching by key, stable handles
//! for the timer wheel, and no allocation once warm (capacity is reserved up front).

use std::hash::BuildHasher;

use hashbrown::{DefaultHashBuilder, HashTable};
use slab::Slab;

use crate::key::TxnKey;

/// A handle to a table entry. The generation makes a handle to a removed entry harmless
/// even after its slot is reused, so timers never need cancelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TxnId {
    index: u32,
    generation: u32,
}

impl TxnId {
    /// The slot index and generation, for encoding a handle into a branch parameter.
    pub const fn to_parts(self) -> (u32, u32) {
        (self.index, self.generation)
    }

    /// A handle from [`to_parts`](Self::to_parts). A forged or stale pair finds nothing:
    /// lookups check the generation.
    pub const fn from_parts(index: u32, generation: u32) -> Self {
        Self { index, generation }
    }
}

/// The table is at its bound; a server answers 503 rather than grow without limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("transaction table full ({0} entries)")]
pub struct TableFull(pub usize);

/// Inserting a key that is already present.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a transaction with this key exists")]
pub struct DuplicateKey(pub TxnId);

/// Why an insert failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InsertError {
    /// See [`TableFull`].
    #[error(transparent)]
    Full(#[from] TableFull),
    /// See [`DuplicateKey`].
    #[error(transparent)]
    Duplicate(#[from] DuplicateKey),
}

#[derive(Debug)]
struct Entry<V> {
    key: TxnKey,
    generation: u32,
    value: V,
}

/// Transactions by key, bounded to a fixed number of entries. The index holds slot numbers
/// only; each key is stored once, in its entry.
#[derive(Debug)]
pub struct TransactionTable<V> {
    by_key: HashTable<u32>,
    hasher: DefaultHashBuilder,
    entries: Slab<Entry<V>>,
    limit: usize,
    next_generation: u32,
}

impl<V> TransactionTable<V> {
    /// A table that holds at most `limit` transactions, with room for all of them reserved
    /// now: it never grows (a growing table copies every entry while the core waits). The
    /// reservation is address space; pages are committed as entries are first written.
    pub fn with_limit(limit: usize) -> Self {
        Self {
            by_key: HashTable::with_capacity(limit),
            hasher: DefaultHashBuilder::default(),
            entries: Slab::with_capacity(limit),
            limit,
            next_generation: 0,
        }
    }

    /// How many transactions are in the table.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when the table holds no transaction.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The bound given at construction.
    pub const fn limit(&self) -> usize {
        self.limit
    }

    /// Adds a transaction under `key`.
    pub fn insert(&mut self, key: TxnKey, value: V) -> Result<TxnId, InsertError> {
        if let Some(id) = self.find(&key) {
            return Err(DuplicateKey(id).into());
        }
        if self.entries.len() >= self.limit {
            return Err(TableFull(self.limit).into());
        }
        let generation = self.next_generation;
        self.next_generation = self.next_generation.wrapping_add(1);
        let hash = self.hasher.hash_one(&key);
        let index = self.entries.insert(Entry {
            key,
            generation,
            value,
        });
        // Slab indexes stay below `limit`, which the caller chose to fit in memory.
        let index = u32::try_from(index).expect("table limit fits in u32");
        let (entries, hasher) = (&self.entries, &self.hasher);
        self.by_key
            .insert_unique(hash, index, |&i| hasher.hash_one(&entries[i as usize].key));
        Ok(TxnId { index, generation })
    }

    fn id_at(&self, index: u32) -> TxnId {
        TxnId {
            index,
            generation: self.entries[index as usize].generation,
        }
    }

    /// The transaction with this key.
    pub fn find(&self, key: &TxnKey) -> Option<TxnId> {
        let hash = self.hasher.hash_one(key);
        self.by_key
            .find(hash, |&i| self.entries[i as usize].key == *key)
            .map(|&index| self.id_at(index))
    }

    /// The transaction behind a handle, unless it was removed since.
    pub fn get(&self, id: TxnId) -> Option<&V> {
        self.entries
            .get(id.index as usize)
            .filter(|e| e.generation == id.generation)
            .map(|e| &e.value)
    }

    /// Mutable access to the transaction behind a handle.
    pub fn get_mut(&mut self, id: TxnId) -> Option<&mut V> {
        self.entries
            .get_mut(id.index as usize)
            .filter(|e| e.generation == id.generation)
            .map(|e| &mut e.value)
    }

    /// The key a transaction was inserted under.
    pub fn key(&self, id: TxnId) -> Option<&TxnKey> {
        self.entries
            .get(id.index as usize)
            .filter(|e| e.generation == id.generation)
            .map(|e| &e.key)
    }

    /// Removes a transaction, returning it.
    pub fn remove(&mut self, id: TxnId) -> Option<V> {
        let entry = self.entries.get(id.index as usize)?;
        if entry.generation != id.generation {
            return None;
        }
        let hash = self.hasher.hash_one(&entry.key);
        if let Ok(found) = self.by_key.find_entry(hash, |&i| i == id.index) {
            found.remove();
        }
        Some(self.entries.remove(id.index as usize).value)
    }

    /// Every transaction, for metrics and shutdown.
    pub fn iter(&self) -> impl Iterator<Item = (TxnId, &V)> {
        self.entries.iter().map(|(index, e)| {
            (
                TxnId {
                    index: index as u32,
                    generation: e.generation,
                },
                &e.value,
            )
        })
    }
}
