//! The registration store the S-CSCF reads and writes with compare-and-swap: embedded (each
//! AoR owned by one core) or a memcached cluster. Every core answers store requests sent to
//! its inbox (other cores' for the AoRs it owns, the management API's), so the same
//! messages serve both.

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::rc::Rc;

use futures::channel::{mpsc, oneshot};
use futures::{SinkExt, StreamExt};
use ims::registrar::AorState;
pub(crate) use ims::sproutlet::{StoreFailure, Versioned};

use super::embedded::EmbeddedStore;
use super::memcached::MemcachedStore;

/// What expired in one AoR, as stored afterwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Expired {
    pub(crate) aor: String,
    /// Who registered its bindings (for Homestead's dereg-timeout).
    pub(crate) private_id: String,
    pub(crate) swept: ims::registrar::Swept,
    /// The AoR's state after the sweep.
    pub(crate) state: AorState,
}

/// When each AoR next has something expire, one live entry per AoR: an entry pushed for
/// a later time than the AoR's earliest is not added, and a popped entry that no longer
/// matches the AoR's scheduled time is dropped, so the heap stays as large as the set of
/// AoRs, however often they are written.
#[derive(Debug, Default)]
pub(crate) struct ExpiryQueue {
    heap: RefCell<BinaryHeap<Reverse<(u64, String)>>>,
    scheduled: RefCell<HashMap<String, u64>>,
}

impl ExpiryQueue {
    /// Schedules `aor` at `at` unless it is already due no later.
    pub(crate) fn schedule(&self, aor: &str, at: Option<u64>) {
        let Some(at) = at else {
            return;
        };
        let mut scheduled = self.scheduled.borrow_mut();
        if scheduled.get(aor).is_some_and(|&t| t <= at) {
            return;
        }
        scheduled.insert(aor.to_owned(), at);
        self.heap.borrow_mut().push(Reverse((at, aor.to_owned())));
    }

    /// The next AoR due at `now_s`, taken off the schedule (schedule it again after
    /// looking at it).
    pub(crate) fn pop_due(&self, now_s: u64) -> Option<String> {
        let mut heap = self.heap.borrow_mut();
        loop {
            match heap.peek() {
                Some(Reverse((at, _))) if *at <= now_s => {}
                _ => return None,
            }
            let Reverse((at, aor)) = heap.pop()?;
            let mut scheduled = self.scheduled.borrow_mut();
            if scheduled.get(&aor) == Some(&at) {
                scheduled.remove(&aor);
                return Some(aor);
            }
        }
    }

    /// Entries held.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.heap.borrow().len()
    }
}

/// The private identity behind an AoR's bindings.
pub(crate) fn private_id_of(state: &AorState) -> String {
    state
        .bindings
        .values()
        .next()
        .map(|b| b.private_id.clone())
        .unwrap_or_default()
}

/// A request to the core that serves an AoR.
#[derive(Debug)]
pub(crate) enum StoreOp {
    Get {
        aor: String,
        reply: oneshot::Sender<Result<Versioned, StoreFailure>>,
    },
    CompareAndSet {
        aor: String,
        // Boxed: an AoR's state is large next to a read's key.
        value: Box<Versioned>,
        reply: oneshot::Sender<Result<bool, StoreFailure>>,
    },
}

/// The core that owns `aor` among `cores`.
pub(crate) fn owner_of(aor: &str, cores: usize) -> usize {
    // SipHash with fixed keys: every core and thread computes the same owner.
    let mut h = DefaultHasher::new();
    aor.hash(&mut h);
    (h.finish() % cores.max(1) as u64) as usize
}

pub(crate) async fn ask<T>(
    channel: &mpsc::Sender<StoreOp>,
    owner: usize,
    op: impl FnOnce(oneshot::Sender<T>) -> StoreOp,
) -> Result<T, StoreFailure> {
    let (reply, answer) = oneshot::channel();
    channel
        .clone()
        .send(op(reply))
        .await
        .map_err(|_| StoreFailure::OwnerGone(owner))?;
    answer.await.map_err(|_| StoreFailure::OwnerGone(owner))
}

/// The registration store as seen from outside the cores (the management API): every
/// request is a message to the owner core. `Send`, so a tokio task can hold it.
#[derive(Debug, Clone)]
pub struct Registrations {
    owners: Vec<mpsc::Sender<StoreOp>>,
}

impl Registrations {
    pub(crate) fn new(owners: Vec<mpsc::Sender<StoreOp>>) -> Self {
        Self { owners }
    }

    /// The state stored for `aor` (empty when none).
    pub async fn get(&self, aor: &str) -> Result<AorState, StoreFailure> {
        let owner = owner_of(aor, self.owners.len());
        let aor = aor.to_owned();
        let value = ask(&self.owners[owner], owner, |reply| StoreOp::Get {
            aor,
            reply,
        })
        .await??;
        Ok(value.state)
    }

    /// Removes every binding of `aor` (an administrative deregistration), returning what
    /// was there.
    pub async fn remove(&self, aor: &str) -> Result<AorState, StoreFailure> {
        let owner = owner_of(aor, self.owners.len());
        loop {
            let key = aor.to_owned();
            let current = ask(&self.owners[owner], owner, |reply| StoreOp::Get {
                aor: key,
                reply,
            })
            .await??;
            if current.state.is_empty() {
                return Ok(current.state);
            }
            let value = Versioned {
                state: AorState::default(),
                ..current
            };
            let key = aor.to_owned();
            let done = ask(&self.owners[owner], owner, |reply| StoreOp::CompareAndSet {
                aor: key,
                value: Box::new(value),
                reply,
            })
            .await??;
            if done {
                return Ok(current.state);
            }
        }
    }
}

/// What a registration store does for a core: read an AoR with the version a write must
/// quote, compare-and-swap it, and expire what is due among the AoRs this core looks
/// after. Implemented by the embedded store (each AoR owned by one core) and the memcached
/// cluster (two replicas per AoR); a new store implements this and becomes a variant of
/// [`RegistrationStore`], which dispatches without boxing a future per call.
pub(crate) trait AorStore {
    /// The AoR's state and version (the default state at version 0 when absent).
    async fn get(&self, aor: &str) -> Result<Versioned, StoreFailure>;
    /// Stores `value` if the AoR is still at `value.version`; `false` when someone wrote
    /// it first.
    async fn compare_and_set(&self, aor: &str, value: Versioned) -> Result<bool, StoreFailure>;
    /// Removes the bindings and subscriptions expired at `now_s` among the AoRs this core
    /// looks after; returns what went.
    async fn expire_due(&self, now_s: u64) -> Vec<Expired>;
    /// Requests handed to another core so far.
    fn handoffs(&self) -> u64 {
        0
    }
    /// AoRs with bindings held on this core.
    fn owned(&self) -> usize {
        0
    }
}

/// One core's registration store.
#[derive(Debug)]
pub(crate) enum RegistrationStore {
    Embedded(EmbeddedStore),
    Memcached(MemcachedStore),
}

impl AorStore for RegistrationStore {
    async fn get(&self, aor: &str) -> Result<Versioned, StoreFailure> {
        match self {
            Self::Embedded(store) => store.get(aor).await,
            Self::Memcached(store) => store.get(aor).await,
        }
    }

    async fn compare_and_set(&self, aor: &str, value: Versioned) -> Result<bool, StoreFailure> {
        match self {
            Self::Embedded(store) => store.compare_and_set(aor, value).await,
            Self::Memcached(store) => store.compare_and_set(aor, value).await,
        }
    }

    async fn expire_due(&self, now_s: u64) -> Vec<Expired> {
        match self {
            Self::Embedded(store) => store.expire_due(now_s).await,
            Self::Memcached(store) => store.expire_due(now_s).await,
        }
    }

    fn handoffs(&self) -> u64 {
        match self {
            Self::Embedded(store) => store.handoffs(),
            Self::Memcached(store) => store.handoffs(),
        }
    }

    fn owned(&self) -> usize {
        match self {
            Self::Embedded(store) => store.owned(),
            Self::Memcached(store) => store.owned(),
        }
    }
}

/// Answers the store requests sent to this core until every sender is gone.
pub(crate) async fn serve(store: Rc<RegistrationStore>, mut inbox: mpsc::Receiver<StoreOp>) {
    while let Some(op) = inbox.next().await {
        match op {
            StoreOp::Get { aor, reply } => {
                let _ = reply.send(store.get(&aor).await);
            }
            StoreOp::CompareAndSet { aor, value, reply } => {
                let _ = reply.send(store.compare_and_set(&aor, *value).await);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_aor_written_again_and_again_keeps_one_entry() {
        let q = ExpiryQueue::default();
        for n in 0..1000 {
            q.schedule("sip:a@x", Some(300 + n));
        }
        assert_eq!(q.len(), 1, "later times add nothing");
        q.schedule("sip:a@x", Some(100));
        assert_eq!(q.pop_due(99), None);
        assert_eq!(q.pop_due(300).as_deref(), Some("sip:a@x"));
        assert_eq!(q.pop_due(300), None, "the stale entry at 300 is dropped");
        assert_eq!(q.len(), 0);
        q.schedule("sip:a@x", None);
        assert_eq!(q.len(), 0);
    }
}
