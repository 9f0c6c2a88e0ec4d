//! A hashed timing wheel: O(1) insert, expiry in slot order, no cancellation (entries carry a
//! [`TxnId`](crate::TxnId) and the transaction ignores timers it no longer has armed).

use std::time::{Duration, Instant};

/// Deadlines rounded up to a tick, in `slots` buckets. A deadline further away than one
/// turn of the wheel waits in its bucket for later turns.
#[derive(Debug)]
pub struct TimerWheel<T> {
    slots: Vec<Vec<(Instant, T)>>,
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
            slots: (0..slots).map(|_| Vec::new()).collect(),
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
        let slot = (tick % self.slots.len() as u64) as usize;
        self.slots[slot].push((at, item));
        self.len += 1;
    }

    /// Calls `fire` for every entry whose deadline is at or before `now`.
    pub fn expire(&mut self, now: Instant, mut fire: impl FnMut(T)) {
        let target = self.tick_of(now);
        let turn = self.slots.len() as u64;
        // Past one full turn every bucket is visited once; no need to loop further.
        let last = target.min(self.now_tick + turn - 1);
        let mut tick = self.now_tick;
        while tick <= last {
            let slot = (tick % turn) as usize;
            let bucket = &mut self.slots[slot];
            let mut i = 0;
            while i < bucket.len() {
                if bucket[i].0 <= now {
                    let (_, item) = bucket.swap_remove(i);
                    self.len -= 1;
                    fire(item);
                } else {
                    i += 1;
                }
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
}
