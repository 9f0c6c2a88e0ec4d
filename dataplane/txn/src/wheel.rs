//! A hashed timing wheel: O(1) insert, expiry in slot order, no cancellation (entries carry a
//! [`TxnId`](crate::TxnId) and the transaction ignores timers it no longer has armed).
//!
//! Each slot is a linked list through one arena of nodes, and expired nodes go on a free
//! list. A wheel therefore reaches its largest size once, when the most timers are pending
//! at the same time, and never allocates again; with a `Vec` per slot, every slot grew on
//! its own the first time a turn's worth of timers landed in it, which kept a core
//! allocating (and faulting in fresh pages) for a whole turn of the wheel after start.

use std::time::{Duration, Instant};

/// The end of a list.
const NIL: u32 = u32::MAX;

#[derive(Debug)]
struct Node<T> {
    at: Instant,
    item: T,
    next: u32,
}

/// Deadlines rounded up to a tick, in `slots` buckets. A deadline further away than one
/// turn of the wheel waits in its bucket for later turns.
#[derive(Debug)]
pub struct TimerWheel<T> {
    /// The first node of each slot's list.
    heads: Vec<u32>,
    nodes: Vec<Node<T>>,
    /// The first unused node.
    free: u32,
    tick: Duration,
    /// The tick in nanoseconds: rounding an instant to its tick divides 64-bit integers,
    /// not the 128-bit ones `Duration::as_nanos` returns (a call into a slow helper).
    tick_nanos: u64,
    /// The start of the tick the wheel has expired up to (exclusive).
    now_tick: u64,
    origin: Instant,
    len: usize,
}

impl<T: Copy> TimerWheel<T> {
    /// A wheel with `slots` buckets of `tick` each, starting at `now`.
    pub fn new(now: Instant, tick: Duration, slots: usize) -> Self {
        assert!(
            slots > 0 && !tick.is_zero(),
            "a wheel needs slots and a tick"
        );
        Self {
            heads: vec![NIL; slots],
            nodes: Vec::new(),
            free: NIL,
            tick,
            tick_nanos: u64::try_from(tick.as_nanos()).unwrap_or(u64::MAX),
            now_tick: 0,
            origin: now,
            len: 0,
        }
    }

    fn tick_of(&self, at: Instant) -> u64 {
        let since = at.saturating_duration_since(self.origin);
        let nanos = since
            .as_secs()
            .saturating_mul(1_000_000_000)
            .saturating_add(u64::from(since.subsec_nanos()));
        nanos / self.tick_nanos
    }

    /// Number of pending entries.
    pub const fn len(&self) -> usize {
        self.len
    }

    /// True when nothing is pending.
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The tick length: timers fire up to one tick late, never early.
    pub const fn tick(&self) -> Duration {
        self.tick
    }

    /// Schedules `item` for `at`.
    pub fn insert(&mut self, at: Instant, item: T) {
        // Round up so nothing fires early; past deadlines land in the current tick.
        let tick = self
            .tick_of(at + self.tick - Duration::from_nanos(1))
            .max(self.now_tick);
        let slot = (tick % self.heads.len() as u64) as usize;
        let next = self.heads[slot];
        let node = Node { at, item, next };
        let index = if self.free == NIL {
            let index = u32::try_from(self.nodes.len()).expect("fewer than 2^32 timers pending");
            self.nodes.push(node);
            index
        } else {
            let index = self.free;
            let reused = &mut self.nodes[index as usize];
            self.free = reused.next;
            *reused = node;
            index
        };
        self.heads[slot] = index;
        self.len += 1;
    }

    /// Calls `fire` for every entry whose deadline is at or before `now`.
    pub fn expire(&mut self, now: Instant, mut fire: impl FnMut(T)) {
        let target = self.tick_of(now);
        let turn = self.heads.len() as u64;
        // Past one full turn every bucket is visited once; no need to loop further.
        let last = target.min(self.now_tick + turn - 1);
        let mut tick = self.now_tick;
        while tick <= last {
            let slot = (tick % turn) as usize;
            // Walk the list, unlinking what is due; `prev` is the node whose `next` (or the
            // slot head, when NIL) points at `at`.
            let mut prev = NIL;
            let mut at = self.heads[slot];
            while at != NIL {
                let node = &self.nodes[at as usize];
                let next = node.next;
                if node.at <= now {
                    let item = node.item;
                    if prev == NIL {
                        self.heads[slot] = next;
                    } else {
                        self.nodes[prev as usize].next = next;
                    }
                    self.nodes[at as usize].next = self.free;
                    self.free = at;
                    self.len -= 1;
                    fire(item);
                } else {
                    prev = at;
                }
                at = next;
            }
            tick += 1;
        }
        self.now_tick = target;
    }

    /// The earliest instant at which [`expire`](Self::expire) can have work, if any entry
    /// is pending: the end of the current tick (cheap and never late by more than a tick).
    pub fn next_expiry(&self) -> Option<Instant> {
        let end = Duration::from_nanos(self.tick_nanos.saturating_mul(self.now_tick + 1));
        (!self.is_empty()).then(|| self.origin + end)
    }

    /// Nodes allocated: the most entries ever pending at once.
    pub fn capacity(&self) -> usize {
        self.nodes.len()
    }
}
