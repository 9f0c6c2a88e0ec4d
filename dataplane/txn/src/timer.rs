//! The transaction timers and the small fixed table each transaction keeps them in.

use std::time::Instant;

/// The timers of RFC 3261 §17 plus L and M of RFC 6026.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Timer {
    /// INVITE client: request retransmission.
    A,
    /// INVITE client: transaction timeout while Calling (no response at all).
    B,
    /// INVITE client: wait for response retransmissions in Completed.
    D,
    /// Non-INVITE client: request retransmission.
    E,
    /// Non-INVITE client: transaction timeout.
    F,
    /// INVITE server: response retransmission.
    G,
    /// INVITE server: wait for ACK.
    H,
    /// INVITE server: wait for ACK retransmissions in Confirmed.
    I,
    /// Non-INVITE server: wait for request retransmissions in Completed.
    J,
    /// Non-INVITE client: wait for response retransmissions in Completed.
    K,
    /// INVITE server (RFC 6026): wait in Accepted for INVITE retransmissions.
    L,
    /// INVITE client (RFC 6026): wait in Accepted for 2xx retransmissions.
    M,
}

const ALL: [Timer; 12] = [
    Timer::A,
    Timer::B,
    Timer::D,
    Timer::E,
    Timer::F,
    Timer::G,
    Timer::H,
    Timer::I,
    Timer::J,
    Timer::K,
    Timer::L,
    Timer::M,
];

/// When each armed timer fires. Disarming is just forgetting the deadline, so a timer
/// event that arrives late for a disarmed timer finds nothing to do.
#[derive(Debug, Clone, Default)]
pub(crate) struct TimerTable {
    deadlines: [Option<Instant>; ALL.len()],
}

impl TimerTable {
    fn slot(timer: Timer) -> usize {
        timer as usize
    }

    pub(crate) fn arm(&mut self, timer: Timer, at: Instant) {
        self.deadlines[Self::slot(timer)] = Some(at);
    }

    pub(crate) fn disarm(&mut self, timer: Timer) {
        self.deadlines[Self::slot(timer)] = None;
    }

    pub(crate) fn clear(&mut self) {
        self.deadlines = [None; ALL.len()];
    }

    /// The earliest deadline of any armed timer.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.deadlines.iter().flatten().min().copied()
    }

    /// The earliest armed timer that is due at `now`, disarmed as it is returned.
    pub(crate) fn take_due(&mut self, now: Instant) -> Option<Timer> {
        let (slot, _) = self
            .deadlines
            .iter()
            .enumerate()
            .filter_map(|(i, d)| d.filter(|&d| d <= now).map(|d| (i, d)))
            .min_by_key(|&(_, d)| d)?;
        self.deadlines[slot] = None;
        Some(ALL[slot])
    }
}
