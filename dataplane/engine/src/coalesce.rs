//! Software interrupt moderation for a core that serves UDP alone.
//!
//! Every wake-up of a sleeping core costs a context switch, and on a virtual machine an
//! exit from the guest's idle loop: at 4,000 calls/s a core woke about 3,900 times a
//! second, and those wake-ups were the largest part of its CPU per call that no code of
//! ours ran in. Under load, a core that has just handled datagrams therefore sleeps for a
//! short window before it looks for more, so that one wake-up handles everything that
//! arrived meanwhile. The window bounds the latency added per hop; the kernel's arrival
//! stamps include it, so overload control sees it. A lightly loaded core never waits: each
//! datagram is handled as it comes.
//!
//! The batched path only: on the io_uring path a multishot receive completes as task work,
//! which wakes a sleeping thread to run it, so a sleep there batched nothing and doubled
//! the context switches.

use std::time::Duration;

/// A core is busy when, at the rate of the last timer tick, one window would gather at
/// least this many datagrams: 16,000 a second with the default 500 µs window, some 2,700
/// calls a second. Fewer do not pay for the timer that ends the sleep: at 1,000 calls/s a
/// 500 µs window gathered three datagrams and cost more CPU per call than it saved.
const MIN_PER_WINDOW: u64 = 8;

/// Decides when a core waits before its next receive.
#[derive(Debug)]
pub(crate) struct Coalescer {
    window: Duration,
    /// Datagrams per tick from which the core is busy.
    busy_per_tick: u64,
    this_tick: u64,
    busy: bool,
    /// Waits taken since start, for `/metrics`.
    pub(crate) waits: u64,
}

impl Coalescer {
    /// Moderation with `window` for a core whose timers tick every `tick`; a zero window
    /// turns it off.
    pub(crate) fn new(window: Duration, tick: Duration) -> Self {
        let window = window.min(tick);
        let windows_per_tick = tick.as_nanos().div_ceil(window.as_nanos().max(1));
        Self {
            window,
            busy_per_tick: MIN_PER_WINDOW.saturating_mul(windows_per_tick as u64),
            this_tick: 0,
            busy: false,
            waits: 0,
        }
    }

    /// Counts the datagrams a loop turn handled.
    pub(crate) fn received(&mut self, datagrams: usize) {
        self.this_tick += datagrams as u64;
    }

    /// At each timer tick: the load of the tick that ended decides the next one.
    pub(crate) fn on_tick(&mut self) {
        self.busy = self.this_tick >= self.busy_per_tick;
        self.this_tick = 0;
    }

    /// How long to sleep now, after a turn that handled `handled` datagrams and flushed
    /// what it had to send: the window while the core is busy, nothing otherwise.
    pub(crate) fn pause(&mut self, handled: usize) -> Option<Duration> {
        if !self.busy || handled == 0 || self.window.is_zero() {
            return None;
        }
        self.waits += 1;
        Some(self.window)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_micros(500);
    const TICK: Duration = Duration::from_millis(10);

    #[test]
    fn a_light_load_is_never_delayed() {
        let mut c = Coalescer::new(WINDOW, TICK);
        // 1,000 calls/s: 60 datagrams a tick, three a window.
        for _ in 0..60 {
            c.received(1);
            assert_eq!(c.pause(1), None);
        }
        c.on_tick();
        assert_eq!(c.pause(1), None, "60 datagrams in a tick is not busy");
        assert_eq!(c.waits, 0);
    }

    #[test]
    fn busy_means_eight_datagrams_a_window() {
        for (window_us, busy_per_tick) in [(500, 160), (1000, 80), (2000, 40), (3000, 32)] {
            let c = Coalescer::new(Duration::from_micros(window_us), TICK);
            assert_eq!(c.busy_per_tick, busy_per_tick, "{window_us} µs");
        }
    }

    #[test]
    fn a_busy_tick_makes_the_next_turns_wait_until_the_load_drops() {
        let mut c = Coalescer::new(WINDOW, TICK);
        // 4,000 calls/s: 240 datagrams a tick.
        c.received(240);
        assert_eq!(c.pause(5), None, "busy is decided at the tick");
        c.on_tick();
        assert_eq!(c.pause(5), Some(WINDOW));
        assert_eq!(
            c.pause(0),
            None,
            "a turn that handled nothing does not wait"
        );
        c.received(3);
        c.on_tick();
        assert_eq!(c.pause(3), None, "the load dropped");
        assert_eq!(c.waits, 1);
    }

    #[test]
    fn a_window_longer_than_a_tick_is_a_tick() {
        let mut c = Coalescer::new(Duration::from_millis(50), TICK);
        c.received(1_000);
        c.on_tick();
        assert_eq!(c.pause(1), Some(TICK));
    }

    #[test]
    fn a_zero_window_turns_it_off() {
        let mut c = Coalescer::new(Duration::ZERO, TICK);
        c.received(10_000);
        c.on_tick();
        assert_eq!(c.pause(100), None);
    }
}
