//! Nonce counts seen per nonce, so a captured response cannot be replayed (RFC 2617
//! §3.2.2: nc must rise with every request that reuses a nonce). Bounded: two generations
//! of one nonce lifetime each; a nonce older than that is stale anyway and refused before
//! it gets here.

use hashbrown::HashMap;

use super::nonce::NonceId;

/// What [`NonceCounts::record`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    /// A nonce count higher than any seen for this nonce: recorded.
    Accepted,
    /// Seen already (or not higher than one seen): a replay.
    Replayed,
    /// The table is full: the count cannot be tracked, so the request is not accepted.
    Full,
}

/// Highest nonce count per nonce, for nonces up to two lifetimes old.
#[derive(Debug)]
pub struct NonceCounts {
    current: HashMap<NonceId, u32>,
    previous: HashMap<NonceId, u32>,
    epoch_started_s: u64,
    epoch_s: u64,
    capacity: usize,
}

impl NonceCounts {
    /// Room for `capacity` nonces per generation; a generation lasts `lifetime_s`.
    pub fn new(capacity: usize, lifetime_s: u64, now_s: u64) -> Self {
        Self {
            current: HashMap::with_capacity(capacity.min(1 << 16)),
            previous: HashMap::new(),
            epoch_started_s: now_s,
            epoch_s: lifetime_s.max(1),
            capacity,
        }
    }

    fn rotate(&mut self, now_s: u64) {
        if now_s < self.epoch_started_s + self.epoch_s {
            return;
        }
        self.previous = std::mem::take(&mut self.current);
        if now_s >= self.epoch_started_s + 2 * self.epoch_s {
            // Idle for two lifetimes: nothing recorded can still be fresh.
            self.previous.clear();
        }
        self.epoch_started_s = now_s;
    }

    /// Records `nc` for `nonce`; `once` allows only nc = 1 (nonce reuse turned off).
    pub fn record(&mut self, nonce: NonceId, nc: u32, once: bool, now_s: u64) -> Count {
        self.rotate(now_s);
        let seen = self
            .current
            .get(&nonce)
            .or_else(|| self.previous.get(&nonce))
            .copied();
        if nc == 0 || (once && nc != 1) || seen.is_some_and(|last| nc <= last) {
            return Count::Replayed;
        }
        if seen.is_none() && self.current.len() >= self.capacity {
            return Count::Full;
        }
        self.current.insert(nonce, nc);
        Count::Accepted
    }

    /// Nonces tracked.
    pub fn len(&self) -> usize {
        self.current.len() + self.previous.len()
    }

    /// True when nothing is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> NonceId {
        [n; 32]
    }

    #[test]
    fn counts_must_rise_per_nonce() {
        let mut c = NonceCounts::new(16, 30, 0);
        assert_eq!(c.record(id(1), 1, false, 0), Count::Accepted);
        assert_eq!(c.record(id(1), 1, false, 1), Count::Replayed);
        assert_eq!(c.record(id(1), 3, false, 2), Count::Accepted);
        assert_eq!(c.record(id(1), 2, false, 3), Count::Replayed);
        assert_eq!(
            c.record(id(2), 1, false, 3),
            Count::Accepted,
            "another nonce"
        );
        assert_eq!(
            c.record(id(3), 0, false, 3),
            Count::Replayed,
            "nc starts at 1"
        );
    }

    #[test]
    fn without_reuse_a_nonce_serves_once() {
        let mut c = NonceCounts::new(16, 30, 0);
        assert_eq!(c.record(id(1), 2, true, 0), Count::Replayed);
        assert_eq!(c.record(id(1), 1, true, 0), Count::Accepted);
        assert_eq!(c.record(id(1), 2, true, 0), Count::Replayed);
    }

    #[test]
    fn a_nonce_is_remembered_for_at_least_its_lifetime_then_forgotten() {
        let mut c = NonceCounts::new(16, 30, 0);
        assert_eq!(c.record(id(1), 1, false, 29), Count::Accepted);
        // Rotated once at 30: still in the previous generation.
        assert_eq!(c.record(id(1), 1, false, 58), Count::Replayed);
        assert_eq!(c.record(id(2), 1, false, 61), Count::Accepted);
        assert!(c.len() <= 2);
        // Long idle: everything goes.
        assert_eq!(c.record(id(3), 1, false, 500), Count::Accepted);
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn a_full_table_refuses_new_nonces_but_tracks_known_ones() {
        let mut c = NonceCounts::new(2, 30, 0);
        assert_eq!(c.record(id(1), 1, false, 0), Count::Accepted);
        assert_eq!(c.record(id(2), 1, false, 0), Count::Accepted);
        assert_eq!(c.record(id(3), 1, false, 0), Count::Full);
        assert_eq!(c.record(id(1), 2, false, 0), Count::Accepted);
    }
}
