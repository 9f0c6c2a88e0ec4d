//! Limits on password guessing: failed digest attempts counted per private identity and
//! per source address; past a threshold within a window, further attempts are refused
//! before they cost a Homestead lookup, for a back-off period.
//!
//! A guesser at one address is stopped by the per-source count. One spread over many
//! addresses is stopped by the per-identity count, but locking the identity out outright
//! would hand any attacker a way to keep its real user from registering. So while an
//! identity is locked, an address with no failure recorded against it may still try: the
//! real user, at their own address, with the right password, gets in; a wrong guess from
//! it locks that address out too. A distributed guesser gets one guess per address per
//! back-off.
//!
//! Bounded: at most `max_tracked` addresses and identities are tracked; when the table is
//! full, entries whose window and back-off are over are swept, and if none is, a new key
//! goes uncounted (the other key of the attempt still counts it).

use std::hash::BuildHasher;
use std::net::IpAddr;

use hashbrown::HashMap;

/// The thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuessingLimits {
    /// Failed attempts from one address, within `window_s`, that lock it out (0: none).
    pub per_source: u32,
    /// Failed attempts on one private identity, within `window_s`, that lock it (0: none).
    pub per_identity: u32,
    /// The window failures are counted over, seconds.
    pub window_s: u64,
    /// How long a lock-out lasts, seconds.
    pub backoff_s: u64,
    /// Addresses and identities tracked at once.
    pub max_tracked: usize,
}

impl Default for GuessingLimits {
    fn default() -> Self {
        Self {
            per_source: 10,
            per_identity: 20,
            window_s: 60,
            backoff_s: 300,
            max_tracked: 1 << 16,
        }
    }
}

/// What a lock-out is of.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Guessed {
    /// An address that sent the failures.
    Source(IpAddr),
    /// A private identity the failures were for.
    Identity(String),
}

/// What is counted: an identity by a keyed 64-bit hash of it, so that checking an
/// attempt costs no allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    Source(IpAddr),
    Identity(u64),
}

/// A lock-out that began: logged once per episode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lockout {
    /// Of what.
    pub of: Guessed,
    /// Failures that set it off.
    pub failures: u32,
    /// Until when, Unix seconds.
    pub until_s: u64,
}

/// Counts since the process started, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GuessingStats {
    /// Digest attempts that failed (a wrong response or an unknown identity).
    pub failures: u64,
    /// Attempts refused unchecked, because their address or identity was locked out.
    pub refused: u64,
    /// Lock-outs begun.
    pub lockouts: u64,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    window_started_s: u64,
    failures: u32,
    locked_until_s: u64,
}

impl Entry {
    const fn is_locked(&self, now_s: u64) -> bool {
        now_s < self.locked_until_s
    }

    const fn is_over(&self, now_s: u64, window_s: u64) -> bool {
        !self.is_locked(now_s) && now_s >= self.window_started_s + window_s
    }
}

/// One core's failure counts.
#[derive(Debug)]
pub struct GuessingGuard {
    limits: GuessingLimits,
    entries: HashMap<Key, Entry>,
    identities: foldhash::fast::RandomState,
    lockouts: Vec<Lockout>,
    stats: GuessingStats,
}

impl GuessingGuard {
    /// A guard with nothing counted.
    pub fn new(limits: GuessingLimits) -> Self {
        Self {
            limits,
            entries: HashMap::new(),
            identities: foldhash::fast::RandomState::default(),
            lockouts: Vec::new(),
            stats: GuessingStats::default(),
        }
    }

    /// Whether an attempt for `identity` from `source` is to be refused without a check.
    /// Counts the refusal.
    pub fn refuses(&mut self, identity: &str, source: Option<IpAddr>, now_s: u64) -> bool {
        if self.entries.is_empty() {
            return false;
        }
        let source_entry = source.and_then(|ip| self.entries.get(&Key::Source(ip)));
        let refused = if source_entry.is_some_and(|e| e.is_locked(now_s)) {
            true
        } else {
            // A locked identity still lets an address with a clean record try.
            let identity_locked = self
                .entries
                .get(&self.identity_key(identity))
                .is_some_and(|e| e.is_locked(now_s));
            identity_locked && (source.is_none() || source_entry.is_some_and(|e| e.failures > 0))
        };
        if refused {
            self.stats.refused += 1;
        }
        refused
    }

    /// Counts a failed attempt for `identity` from `source`.
    pub fn failed(&mut self, identity: &str, source: Option<IpAddr>, now_s: u64) {
        self.stats.failures += 1;
        let key = self.identity_key(identity);
        let identity_locked = self.entries.get(&key).is_some_and(|e| e.is_locked(now_s));
        if let Some(ip) = source.filter(|_| self.limits.per_source > 0) {
            // A wrong guess while the identity is locked locks its address at once.
            let threshold = if identity_locked {
                1
            } else {
                self.limits.per_source
            };
            self.count(Key::Source(ip), threshold, now_s, || Guessed::Source(ip));
        }
        if self.limits.per_identity > 0 {
            self.count(key, self.limits.per_identity, now_s, || {
                Guessed::Identity(identity.to_owned())
            });
        }
    }

    /// The lock-outs begun since the last call, oldest first.
    pub fn take_lockouts(&mut self) -> Vec<Lockout> {
        std::mem::take(&mut self.lockouts)
    }

    /// The counts so far.
    pub const fn stats(&self) -> GuessingStats {
        self.stats
    }

    /// Addresses and identities tracked now.
    pub fn tracked(&self) -> usize {
        self.entries.len()
    }

    fn identity_key(&self, identity: &str) -> Key {
        Key::Identity(self.identities.hash_one(identity))
    }

    fn count(&mut self, key: Key, threshold: u32, now_s: u64, named: impl FnOnce() -> Guessed) {
        let GuessingLimits {
            window_s,
            backoff_s,
            max_tracked,
            ..
        } = self.limits;
        if !self.entries.contains_key(&key) && self.entries.len() >= max_tracked {
            self.entries.retain(|_, e| !e.is_over(now_s, window_s));
            if self.entries.len() >= max_tracked {
                return;
            }
        }
        let entry = self.entries.entry(key).or_insert(Entry {
            window_started_s: now_s,
            failures: 0,
            locked_until_s: 0,
        });
        if entry.is_locked(now_s) {
            return;
        }
        if now_s >= entry.window_started_s + window_s {
            entry.window_started_s = now_s;
            entry.failures = 0;
        }
        entry.failures += 1;
        if entry.failures >= threshold {
            entry.locked_until_s = now_s + backoff_s;
            self.stats.lockouts += 1;
            self.lockouts.push(Lockout {
                of: named(),
                failures: entry.failures,
                until_s: entry.locked_until_s,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_700_000_000;

    fn ip(last: u8) -> Option<IpAddr> {
        Some(IpAddr::from([192, 0, 2, last]))
    }

    fn guard() -> GuessingGuard {
        GuessingGuard::new(GuessingLimits {
            per_source: 3,
            per_identity: 5,
            window_s: 60,
            backoff_s: 300,
            max_tracked: 100,
        })
    }

    #[test]
    fn a_source_that_keeps_failing_is_locked_out_for_the_backoff_then_let_back() {
        let mut g = guard();
        for user in ["a", "b"] {
            assert!(!g.refuses(user, ip(1), NOW));
            g.failed(user, ip(1), NOW);
        }
        assert!(g.take_lockouts().is_empty());
        g.failed("c", ip(1), NOW + 1);
        let lockouts = g.take_lockouts();
        assert_eq!(
            lockouts,
            vec![Lockout {
                of: Guessed::Source(IpAddr::from([192, 0, 2, 1])),
                failures: 3,
                until_s: NOW + 301,
            }]
        );
        assert!(g.refuses("d", ip(1), NOW + 2));
        assert!(!g.refuses("d", ip(2), NOW + 2), "another address is not");
        // Further failures during the lock-out start no new episode.
        g.failed("d", ip(1), NOW + 3);
        assert!(g.take_lockouts().is_empty());
        assert!(!g.refuses("d", ip(1), NOW + 301));
        assert_eq!(g.stats().lockouts, 1);
        assert_eq!(g.stats().refused, 1);
    }

    #[test]
    fn a_limit_of_zero_counts_nothing_against_that_key() {
        let mut g = GuessingGuard::new(GuessingLimits {
            per_source: 0,
            per_identity: 0,
            ..GuessingLimits::default()
        });
        for _ in 0..100 {
            g.failed("a", ip(1), NOW);
        }
        assert!(g.take_lockouts().is_empty());
        assert_eq!(g.tracked(), 0);
        assert!(!g.refuses("a", ip(1), NOW));
    }

    #[test]
    fn failures_spread_beyond_the_window_lock_nothing() {
        let mut g = guard();
        for i in 0..10 {
            g.failed("a", ip(1), NOW + 61 * i);
        }
        assert!(g.take_lockouts().is_empty());
        assert!(!g.refuses("a", ip(1), NOW + 700));
    }

    #[test]
    fn a_locked_identity_lets_a_clean_address_try_and_locks_it_on_a_wrong_guess() {
        let mut g = guard();
        // Five guesses on "alice" from five addresses: each address is under its limit.
        for last in 1..=5 {
            g.failed("alice", ip(last), NOW);
        }
        let lockouts = g.take_lockouts();
        assert_eq!(lockouts.len(), 1);
        assert_eq!(lockouts[0].of, Guessed::Identity("alice".to_owned()));
        // A guesser's address is refused; alice at her own address is let through.
        assert!(g.refuses("alice", ip(3), NOW + 1));
        assert!(!g.refuses("alice", ip(100), NOW + 1));
        assert!(!g.refuses("bob", ip(3), NOW + 1), "other users are not");
        // A new address that guesses wrong is locked out after one failure.
        assert!(!g.refuses("alice", ip(101), NOW + 1));
        g.failed("alice", ip(101), NOW + 1);
        assert!(g.refuses("alice", ip(101), NOW + 2));
        assert!(g.refuses("bob", ip(101), NOW + 2));
        // Without an address (it was not known), a locked identity refuses.
        assert!(g.refuses("alice", None, NOW + 2));
    }

    #[test]
    fn a_full_table_sweeps_what_is_over_and_otherwise_counts_by_the_other_key() {
        let mut g = GuessingGuard::new(GuessingLimits {
            max_tracked: 4,
            ..GuessingLimits::default()
        });
        g.failed("a", ip(1), NOW);
        g.failed("b", ip(2), NOW);
        assert_eq!(g.tracked(), 4);
        // Nothing is over yet: the new keys go uncounted, the table stays bounded.
        g.failed("c", ip(3), NOW + 1);
        assert_eq!(g.tracked(), 4);
        // A window later the old entries are swept for the new ones.
        g.failed("c", ip(3), NOW + 61);
        assert_eq!(g.tracked(), 2);
        assert_eq!(g.stats().failures, 4);
    }
}
