//! Shared by the transaction tests: a simulated clock counted in milliseconds from a fixed
//! origin, and a driver that calls `handle_timeout` at each `poll_timeout` deadline and
//! records what every firing asked for. Nothing sleeps and nothing reads the wall clock
//! after the origin is taken.

// Each test binary uses its own subset of these helpers.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use txn::{Action, Actions, ClientTransaction, ServerTransaction, TimerConfig};

/// An empty action list, for comparing against `Actions::as_slice()`.
pub(crate) const NOTHING: [Action; 0] = [];

/// The defaults of RFC 3261 Table 4, in milliseconds.
pub(crate) const T1: u64 = 500;
pub(crate) const T2: u64 = 4_000;
pub(crate) const T4: u64 = 5_000;

/// A small configuration that moves every deadline: T1 = 100 ms, T2 = 400 ms, T4 = 1 s.
pub(crate) fn fast_config() -> TimerConfig {
    TimerConfig {
        t1: Duration::from_millis(100),
        t2: Duration::from_millis(400),
        t4: Duration::from_secs(1),
    }
}

/// Simulated time: instants are named by their offset in milliseconds from `t0`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    t0: Instant,
}

impl Clock {
    pub(crate) fn new() -> Self {
        Self { t0: Instant::now() }
    }

    /// The instant `ms` milliseconds after the origin.
    pub(crate) fn at(&self, ms: u64) -> Instant {
        self.t0 + Duration::from_millis(ms)
    }

    /// The offset of `t` from the origin, which must be a whole number of milliseconds.
    pub(crate) fn ms(&self, t: Instant) -> u64 {
        let since = t
            .checked_duration_since(self.t0)
            .expect("instant before the origin");
        assert_eq!(
            since.subsec_nanos() % 1_000_000,
            0,
            "deadline {since:?} is not a whole millisecond"
        );
        u64::try_from(since.as_millis()).expect("offset fits in u64")
    }

    /// The deadline of a transaction, as an offset in milliseconds.
    pub(crate) fn deadline(&self, txn: &impl Timed) -> Option<u64> {
        txn.poll_timeout().map(|t| self.ms(t))
    }
}

/// What the driver needs of a transaction.
pub(crate) trait Timed {
    fn poll_timeout(&self) -> Option<Instant>;
    fn handle_timeout(&mut self, now: Instant) -> Actions;
}

impl Timed for ClientTransaction {
    fn poll_timeout(&self) -> Option<Instant> {
        Self::poll_timeout(self)
    }

    fn handle_timeout(&mut self, now: Instant) -> Actions {
        Self::handle_timeout(self, now)
    }
}

impl Timed for ServerTransaction {
    fn poll_timeout(&self) -> Option<Instant> {
        Self::poll_timeout(self)
    }

    fn handle_timeout(&mut self, now: Instant) -> Actions {
        Self::handle_timeout(self, now)
    }
}

/// One timer firing: when (milliseconds after the origin) and the actions it returned.
pub(crate) type Fired = (u64, Vec<Action>);

/// Calls `handle_timeout` at each deadline the transaction announces, up to and including
/// `limit_ms`, and returns every firing. On the way it checks that a call one nanosecond
/// before a deadline does nothing (no timer fires early) and that a firing always moves the
/// deadline on.
pub(crate) fn run_until(txn: &mut impl Timed, clock: &Clock, limit_ms: u64) -> Vec<Fired> {
    let mut fired = Vec::new();
    while let Some(at) = txn.poll_timeout() {
        let ms = clock.ms(at);
        if ms > limit_ms {
            break;
        }
        if let Some(early) = at.checked_sub(Duration::from_nanos(1)) {
            assert_eq!(
                txn.handle_timeout(early).as_slice(),
                NOTHING,
                "a timer fired before its deadline at {ms} ms"
            );
            assert_eq!(
                txn.poll_timeout(),
                Some(at),
                "an early call moved the deadline"
            );
        }
        let actions = txn.handle_timeout(at);
        if let Some(next) = txn.poll_timeout() {
            assert!(next > at, "the deadline at {ms} ms did not move on");
        }
        fired.push((ms, actions.to_vec()));
        assert!(fired.len() < 1_000, "timers never stop firing");
    }
    fired
}

/// [`run_until`] with no limit: every timer until none is armed.
pub(crate) fn run_to_end(txn: &mut impl Timed, clock: &Clock) -> Vec<Fired> {
    run_until(txn, clock, u64::MAX)
}

/// The expected firings of a retransmission timer at `times`, each asking for `action`.
pub(crate) fn each(times: &[u64], action: Action) -> Vec<Fired> {
    times.iter().map(|&ms| (ms, vec![action])).collect()
}

/// The gaps between consecutive times.
pub(crate) fn intervals(times: &[u64]) -> Vec<u64> {
    times.windows(2).map(|w| w[1] - w[0]).collect()
}

/// The times of the firings that asked exactly for `action`.
pub(crate) fn times_of(fired: &[Fired], action: Action) -> Vec<u64> {
    fired
        .iter()
        .filter(|(_, actions)| actions.as_slice() == [action])
        .map(|&(ms, _)| ms)
        .collect()
}
