//! RFC 3261 timer base values and the durations derived from them (§17, Table 4).

use std::time::Duration;

/// T1, T2 and T4. Every other transaction timer is derived from these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerConfig {
    /// RTT estimate: first retransmission interval (default 500 ms).
    pub t1: Duration,
    /// Cap on the retransmission interval of non-INVITE requests and INVITE responses (4 s).
    pub t2: Duration,
    /// Longest time a message stays in the network (5 s).
    pub t4: Duration,
}

impl Default for TimerConfig {
    fn default() -> Self {
        Self {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

impl TimerConfig {
    /// 64·T1: Timers B, F, H, J, L and M.
    pub fn transaction_timeout(&self) -> Duration {
        self.t1 * 64
    }

    /// Timer D: "at least 32 seconds" over unreliable transports.
    pub fn timer_d(&self) -> Duration {
        self.transaction_timeout().max(Duration::from_secs(32))
    }

    /// How long a non-INVITE server transaction on an unreliable transport must wait before it
    /// may send 100 Trying (RFC 4320 §4.2): until the client's Timer E has grown to T2.
    pub fn rfc4320_trying_delay(&self) -> Duration {
        let mut interval = self.t1;
        let mut elapsed = Duration::ZERO;
        while interval < self.t2 {
            elapsed += interval;
            interval = (interval * 2).min(self.t2);
        }
        elapsed
    }
}
