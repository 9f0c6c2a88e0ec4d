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

/// No transaction state runs more than two timers at once (a retransmission timer and a
/// timeout: A+B, E+F, G+H), so two slots hold every armed timer.
const SLOTS: usize = 2;

/// When each armed timer fires. Disarming is just forgetting the deadline, so a timer
/// event that arrives late for a disarmed timer finds nothing to do. Kept small: a proxy
/// holds hundreds of thousands of transactions, three tables each.
#[derive(Debug, Clone, Default)]
pub(crate) struct TimerTable {
    armed: [Option<(Timer, Instant)>; SLOTS],
}

impl TimerTable {
    pub(crate) fn arm(&mut self, timer: Timer, at: Instant) {
        let slot = self
            .armed
            .iter()
            .position(|a| a.is_some_and(|(t, _)| t == timer))
            .or_else(|| self.armed.iter().position(Option::is_none));
        debug_assert!(slot.is_some(), "more than {SLOTS} timers armed at once");
        self.armed[slot.unwrap_or(SLOTS - 1)] = Some((timer, at));
    }

    pub(crate) fn disarm(&mut self, timer: Timer) {
        for slot in &mut self.armed {
            if slot.is_some_and(|(t, _)| t == timer) {
                *slot = None;
            }
        }
    }

    pub(crate) fn clear(&mut self) {
        self.armed = [None; SLOTS];
    }

    /// The earliest deadline of any armed timer.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.armed.iter().flatten().map(|&(_, at)| at).min()
    }

    /// The earliest armed timer that is due at `now`, disarmed as it is returned.
    pub(crate) fn take_due(&mut self, now: Instant) -> Option<Timer> {
        let slot = (0..SLOTS)
            .filter(|&i| self.armed[i].is_some_and(|(_, at)| at <= now))
            .min_by_key(|&i| self.armed[i].map(|(_, at)| at))?;
        self.armed[slot].take().map(|(timer, _)| timer)
    }
}
