//! The embedded registration store: every AoR lives on one owner core (a hash of the AoR
//! picks it), in a plain map only that core touches. Other cores reach it with a message
//! on the owner's channel and wait for the reply; each such hand-off is counted. No lock
//! is shared between cores. Writes are compare-and-swap on a version, as against
//! memcached, so the registrar's read-modify-write loop is the same for both.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use futures::channel::mpsc;
use ims::registrar::AorState;

use super::store::{
    AorStore, Expired, ExpiryQueue, StoreFailure, StoreOp, Versioned, ask, owner_of, private_id_of,
};

/// The AoRs one core owns.
#[derive(Debug)]
pub(crate) struct OwnedAors {
    core: usize,
    aors: RefCell<HashMap<String, Versioned>>,
    next_version: Cell<u64>,
    capacity: usize,
    expiries: ExpiryQueue,
    /// How many of the AoRs have bindings.
    registered: Cell<usize>,
}

impl OwnedAors {
    pub(crate) fn new(core: usize, capacity: usize) -> Self {
        Self {
            core,
            aors: RefCell::new(HashMap::new()),
            next_version: Cell::new(1),
            capacity,
            expiries: ExpiryQueue::default(),
            registered: Cell::new(0),
        }
    }

    fn schedule(&self, aor: &str, state: &AorState) {
        self.expiries.schedule(aor, state.next_expiry());
    }

    /// Removes the bindings and subscriptions expired at `now_s` from every AoR due.
    pub(crate) fn expire_due(&self, now_s: u64) -> Vec<Expired> {
        let mut changed = Vec::new();
        while let Some(aor) = self.expiries.pop_due(now_s) {
            let mut aors = self.aors.borrow_mut();
            let Some(entry) = aors.get_mut(&aor) else {
                continue;
            };
            let private_id = private_id_of(&entry.state);
            let was_registered = !entry.state.is_unregistered();
            let swept = entry.state.sweep(now_s);
            let state = entry.state.clone();
            self.count_registered(was_registered, !state.is_unregistered());
            if state.is_empty() {
                aors.remove(&aor);
            } else if !swept.is_nothing() {
                // A write quoting the old version must now fail its compare-and-swap.
                entry.version = self.next_version.get();
                self.next_version.set(entry.version + 1);
            }
            drop(aors);
            self.schedule(&aor, &state);
            if !swept.is_nothing() {
                changed.push(Expired {
                    aor,
                    private_id,
                    swept,
                    state,
                });
            }
        }
        changed
    }

    pub(crate) fn get(&self, aor: &str) -> Versioned {
        self.aors.borrow().get(aor).cloned().unwrap_or_default()
    }

    /// Stores `value.state` if the stored version is still `value.version`; an empty
    /// state removes the AoR.
    pub(crate) fn compare_and_set(
        &self,
        aor: String,
        value: Versioned,
    ) -> Result<bool, StoreFailure> {
        let mut aors = self.aors.borrow_mut();
        let current = aors.get(&aor).map_or(0, |v| v.version);
        if current != value.version {
            return Ok(false);
        }
        let was_registered = aors.get(&aor).is_some_and(|v| !v.state.is_unregistered());
        if value.state.is_empty() {
            aors.remove(&aor);
            self.count_registered(was_registered, false);
            return Ok(true);
        }
        if current == 0 && aors.len() >= self.capacity {
            return Err(StoreFailure::Full(self.core));
        }
        let version = self.next_version.get();
        self.next_version.set(version + 1);
        drop(aors);
        self.count_registered(was_registered, !value.state.is_unregistered());
        self.schedule(&aor, &value.state);
        self.aors.borrow_mut().insert(
            aor,
            Versioned {
                state: value.state,
                version,
                replica: 0,
            },
        );
        Ok(true)
    }

    /// AoRs held (registered, and those kept a while for a subscription, a challenge or
    /// replay protection).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.aors.borrow().len()
    }

    /// AoRs with at least one binding.
    pub(crate) fn registered(&self) -> usize {
        self.registered.get()
    }

    fn count_registered(&self, before: bool, after: bool) {
        match (before, after) {
            (false, true) => self.registered.set(self.registered.get() + 1),
            (true, false) => self.registered.set(self.registered.get().saturating_sub(1)),
            _ => {}
        }
    }
}

/// One core's view of the embedded store: its own AoRs, and channels to the other owners.
#[derive(Debug)]
pub(crate) struct EmbeddedStore {
    local: Rc<OwnedAors>,
    owners: Vec<mpsc::Sender<StoreOp>>,
    handoffs: Cell<u64>,
}

impl EmbeddedStore {
    /// `owners[i]` reaches core i's inbox; `local` is this core's own AoRs.
    pub(crate) fn new(local: Rc<OwnedAors>, owners: Vec<mpsc::Sender<StoreOp>>) -> Self {
        Self {
            local,
            owners,
            handoffs: Cell::new(0),
        }
    }

    fn remote(&self, aor: &str) -> Option<(usize, &mpsc::Sender<StoreOp>)> {
        let owner = owner_of(aor, self.owners.len());
        if owner == self.local.core {
            return None;
        }
        self.handoffs.set(self.handoffs.get() + 1);
        Some((owner, &self.owners[owner]))
    }
}

impl AorStore for EmbeddedStore {
    async fn get(&self, aor: &str) -> Result<Versioned, StoreFailure> {
        let Some((owner, channel)) = self.remote(aor) else {
            return Ok(self.local.get(aor));
        };
        let aor = aor.to_owned();
        ask(channel, owner, |reply| StoreOp::Get { aor, reply }).await?
    }

    async fn compare_and_set(&self, aor: &str, value: Versioned) -> Result<bool, StoreFailure> {
        let Some((owner, channel)) = self.remote(aor) else {
            return self.local.compare_and_set(aor.to_owned(), value);
        };
        let aor = aor.to_owned();
        ask(channel, owner, |reply| StoreOp::CompareAndSet {
            aor,
            value: Box::new(value),
            reply,
        })
        .await?
    }

    async fn expire_due(&self, now_s: u64) -> Vec<Expired> {
        self.local.expire_due(now_s)
    }

    /// Requests sent to another core so far.
    fn handoffs(&self) -> u64 {
        self.handoffs.get()
    }

    /// AoRs this core owns that have bindings.
    fn owned(&self) -> usize {
        self.local.registered()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ims::registrar::Binding;

    fn binding(uri: &str, expires: u64) -> Binding {
        Binding {
            uri: uri.into(),
            cid: "c".into(),
            cseq: 1,
            expires,
            priority: 1000,
            params: Default::default(),
            paths: Vec::new(),
            private_id: "a@example.com".into(),
            emergency_reg: false,
        }
    }

    fn state(bindings: &[(&str, u64)]) -> AorState {
        let mut s = AorState::default();
        for (uri, expires) in bindings {
            s.bindings.insert((*uri).into(), binding(uri, *expires));
        }
        s
    }

    #[test]
    fn bindings_expire_one_by_one_and_the_emptied_aor_is_reported() {
        let owned = OwnedAors::new(0, 16);
        let write = |value| owned.compare_and_set("sip:a@example.com".into(), value);
        let both = state(&[("sip:a@1.1.1.1", 100), ("sip:a@2.2.2.2", 200)]);
        assert_eq!(
            write(Versioned {
                state: both,
                version: 0,
                replica: 0,
            }),
            Ok(true)
        );
        let v1 = owned.get("sip:a@example.com").version;
        assert!(owned.expire_due(99).is_empty());
        let first = owned.expire_due(100);
        assert_eq!(first.len(), 1, "one binding expired");
        assert!(!first[0].swept.deregistered, "one binding left");
        let left = owned.get("sip:a@example.com");
        assert_eq!(left.state.bindings.len(), 1);
        assert_ne!(
            left.version, v1,
            "a write quoting the old version must fail"
        );
        let stale = Versioned {
            state: state(&[("sip:a@3.3.3.3", 500)]),
            version: v1,
            replica: 0,
        };
        assert_eq!(write(stale), Ok(false));
        let expired = owned.expire_due(200);
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0].aor, "sip:a@example.com");
        assert_eq!(expired[0].private_id, "a@example.com");
        assert!(expired[0].swept.deregistered);
        assert_eq!(owned.len(), 0);
    }

    #[test]
    fn a_full_core_refuses_new_aors_but_updates_known_ones() {
        let owned = OwnedAors::new(0, 1);
        let one = || state(&[("sip:x@1.1.1.1", 100)]);
        assert_eq!(
            owned.compare_and_set(
                "sip:a@x".into(),
                Versioned {
                    state: one(),
                    version: 0,
                    replica: 0,
                }
            ),
            Ok(true)
        );
        assert_eq!(
            owned.compare_and_set(
                "sip:b@x".into(),
                Versioned {
                    state: one(),
                    version: 0,
                    replica: 0,
                }
            ),
            Err(StoreFailure::Full(0))
        );
        let v = owned.get("sip:a@x").version;
        assert_eq!(
            owned.compare_and_set(
                "sip:a@x".into(),
                Versioned {
                    state: one(),
                    version: v,
                    replica: 0,
                }
            ),
            Ok(true)
        );
    }
}
