//! Overload control after Clearwater's load monitor (cpp-common `load_monitor`, reference
//! §1.4): a token bucket admits initial requests, and its refill rate follows the latency
//! of admitted requests against a target. Each core runs its own monitor, so no
//! state is shared.
//!
//! Clearwater's law, as written for a process on 2013 hardware, adjusted every 2 s by a
//! factor of 1.2 from whatever rate it held; starting at a core's 20,000 per second, it took
//! 25 s to come down to a quota-limited core's 2,000, and by then the socket held seconds of
//! stale work and every client retransmitted. So here:
//! - the rate adjusts every 100 ms, steered by the *least* latency seen in the period (as
//!   CoDel steers by the least queueing delay): a burst, or a core that the scheduler holds
//!   off for a few milliseconds, delays some requests but leaves others quick; only a
//!   standing queue delays them all;
//! - a decrease cuts below what was really admitted over the last second or so (the
//!   permitted rate may be far above it), but at most by half (a single period can be a
//!   stall, such as a fresh process's first 100 ms under a quota), then waits for
//!   latency samples of requests that arrived after the cut before cutting again;
//! - the bucket holds at most 50 ms of the current rate, so a burst cannot queue more;
//! - while the core is behind (the last adjustment found even the least latency above
//!   the target), an initial request that already waited longer than `max_queue_delay` in
//!   the socket is shed before it costs a parse ([`should_drop`](LoadMonitor::should_drop)):
//!   its sender has retransmitted or will, and working on it only delays the requests
//!   behind it. On a core that is not behind, one that waited through a short stall is
//!   served: nothing queues behind it;
//! - so is one that finds the bucket empty once the core is behind (it waited longer than
//!   the target): at several times its capacity a core cannot afford a 503 for every
//!   request it refuses (parsing, building and sending one costs a sixth of a whole call
//!   through the proxy), while dropping one unparsed costs a fiftieth, and its sender's
//!   retransmission may find room later.

use std::time::{Duration, Instant};

/// Requests between two rate adjustments.
const REQUESTS_BEFORE_ADJUSTMENT: u32 = 20;
/// The shortest time between two rate adjustments.
const ADJUST_PERIOD: Duration = Duration::from_millis(100);
/// Above this relative latency error the rate is cut by [`DECREASE_FACTOR`].
const DECREASE_THRESHOLD: f64 = 0.0;
/// A cut sets the rate to what was admitted in the period divided by this...
const DECREASE_FACTOR: f64 = 1.1;
/// ...but never below this fraction of the rate it cuts: one period's admissions can be
/// those of a stall (a fresh process faulting its pages in under a CPU quota admits a
/// hundred a second for its first 100 ms), and one bad sample must not cost seconds of
/// refusals at a fraction of capacity.
const DEEPEST_CUT: f64 = 0.5;
/// Below this relative latency error the rate grows by `-error` times the larger of
/// [`INCREASE_FRACTION`] of the rate and [`INCREASE_FLOOR`] of the bucket size.
const INCREASE_THRESHOLD: f64 = -0.005;
const INCREASE_FRACTION: f64 = 0.1;
const INCREASE_FLOOR: f64 = 0.05;
/// How long a window the admitted rate that a cut starts from is averaged over.
const ADMITTED_WINDOW: Duration = Duration::from_secs(1);
/// The bucket holds at most this long a run of the current rate.
const BURST: Duration = Duration::from_millis(50);

/// The monitor's settings. Clearwater's Sprout defaults, except the initial and maximum
/// rates, which Clearwater set for a whole process on 2013 hardware (2,000 per second) and
/// which here are per core: a core starts by admitting 20,000 initial requests per second
/// and only latency above the target brings that down.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OverloadConfig {
    /// The latency the rate is steered to (Clearwater: 10 ms for Sprout).
    pub target_latency: Duration,
    /// An initial request that waited longer than this in the socket is shed unparsed
    /// (UDP) or refused 503 (TCP), whatever the bucket holds (100 ms).
    pub max_queue_delay: Duration,
    /// Bucket size: the largest burst admitted at once (1,000; at most 50 ms of the rate).
    pub max_tokens: f64,
    /// Refill rate at start, tokens per second (20,000).
    pub initial_rate: f64,
    /// The rate never falls below this (10 per second).
    pub min_rate: f64,
    /// The rate never rises above this.
    pub max_rate: f64,
}

impl Default for OverloadConfig {
    fn default() -> Self {
        Self {
            target_latency: Duration::from_millis(10),
            max_queue_delay: Duration::from_millis(100),
            max_tokens: 1000.0,
            initial_rate: 20_000.0,
            min_rate: 10.0,
            max_rate: 100_000.0,
        }
    }
}

/// One core's token bucket and latency tracker.
#[derive(Debug, Clone)]
pub struct LoadMonitor {
    config: OverloadConfig,
    tokens: f64,
    rate: f64,
    refilled: Instant,
    smoothed_latency: Option<f64>,
    /// The least latency sampled since the last adjustment, seconds.
    least_latency: f64,
    completed: u32,
    admitted_in_period: u32,
    /// Where the admitted rate of this period is measured from: the last adjustment, or
    /// the first admission after a whole idle period (otherwise the first burst after a
    /// quiet spell would look like a trickle, and the first cut would take the rate from
    /// thousands to tens).
    period_started: Instant,
    /// Initial requests admitted per second, averaged over about [`ADMITTED_WINDOW`].
    admitted_rate: Option<f64>,
    penalties: u32,
    /// The last adjustment found the core behind: even the least latency of its period
    /// was above the target (or downstream pushed back).
    behind: bool,
    /// No cut before this: the samples until then are of requests that arrived before the
    /// last cut took effect.
    hold_cuts_until: Instant,
}

impl LoadMonitor {
    /// A monitor with a full bucket at `now`.
    pub fn new(config: OverloadConfig, now: Instant) -> Self {
        let rate = config.initial_rate.clamp(config.min_rate, config.max_rate);
        Self {
            tokens: burst_capacity(&config, rate),
            rate,
            refilled: now,
            smoothed_latency: None,
            least_latency: f64::INFINITY,
            completed: 0,
            admitted_in_period: 0,
            period_started: now,
            admitted_rate: None,
            penalties: 0,
            behind: false,
            hold_cuts_until: now,
            config,
        }
    }

    /// Whether an initial request may be processed now; false means answer 503.
    pub fn admit(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            if self.admitted_in_period == 0
                && now.saturating_duration_since(self.period_started) >= ADJUST_PERIOD
            {
                self.period_started = now;
            }
            self.admitted_in_period += 1;
            true
        } else {
            false
        }
    }

    /// A 503 from downstream: forces the next adjustment down.
    pub fn penalize(&mut self) {
        self.penalties += 1;
    }

    /// An admitted request was handled; `latency` runs from its arrival in the socket.
    pub fn request_complete(&mut self, latency: Duration, now: Instant) {
        let sample = latency.as_secs_f64();
        let smoothed = match self.smoothed_latency {
            Some(s) => (7.0 * s + sample) / 8.0,
            None => sample,
        };
        self.smoothed_latency = Some(smoothed);
        self.least_latency = self.least_latency.min(sample);
        self.completed += 1;
        let period = now.saturating_duration_since(self.period_started);
        if self.completed < REQUESTS_BEFORE_ADJUSTMENT || period < ADJUST_PERIOD {
            return;
        }
        let target = self.config.target_latency.as_secs_f64();
        let least = self.least_latency;
        let error = (least - target) / target;
        let used = f64::from(self.admitted_in_period) / period.as_secs_f64();
        let weight = (period.as_secs_f64() / ADMITTED_WINDOW.as_secs_f64()).min(1.0);
        let admitted = self
            .admitted_rate
            .map_or(used, |average| average + (used - average) * weight);
        self.admitted_rate = Some(admitted);
        self.behind = error > DECREASE_THRESHOLD || self.penalties > 0;
        if self.behind {
            if now >= self.hold_cuts_until {
                let cut = self.rate.min(admitted.max(used)) / DECREASE_FACTOR;
                self.rate = cut.max(self.rate * DEEPEST_CUT);
                self.hold_cuts_until = now + Duration::from_secs_f64(smoothed) + ADJUST_PERIOD;
            }
        } else if error < INCREASE_THRESHOLD && used > self.rate / 2.0 {
            let step = (self.rate * INCREASE_FRACTION).max(self.config.max_tokens * INCREASE_FLOOR);
            self.rate += -error * step;
        }
        self.rate = self.rate.clamp(self.config.min_rate, self.config.max_rate);
        self.completed = 0;
        self.least_latency = f64::INFINITY;
        self.admitted_in_period = 0;
        self.penalties = 0;
        self.period_started = now;
    }

    /// The current refill rate, tokens per second.
    pub const fn rate(&self) -> f64 {
        self.rate
    }

    /// The smoothed latency of admitted requests.
    pub fn smoothed_latency(&self) -> Option<Duration> {
        self.smoothed_latency.map(Duration::from_secs_f64)
    }

    /// Whether an initial request that waited `queued` before we looked at it is too old
    /// to be worth its work: longer than `max_queue_delay`, while the core is behind.
    pub fn is_stale(&self, queued: Duration) -> bool {
        self.behind && queued > self.config.max_queue_delay
    }

    /// Whether an initial request that waited `queued` is to be dropped before it is even
    /// parsed: it is stale, or the core is behind and [`admit`](Self::admit) would refuse
    /// it. Takes no token.
    pub fn should_drop(&mut self, queued: Duration, now: Instant) -> bool {
        if queued <= self.config.target_latency {
            return false;
        }
        self.refill(now);
        self.is_stale(queued) || self.tokens < 1.0
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.refilled = now;
        let capacity = burst_capacity(&self.config, self.rate);
        self.tokens = (self.tokens + elapsed * self.rate).min(capacity);
    }
}

fn burst_capacity(config: &OverloadConfig, rate: f64) -> f64 {
    (rate * BURST.as_secs_f64()).clamp(1.0, config.max_tokens.max(1.0))
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_bucket_admits_at_most_50_ms_of_its_rate_at_once_then_the_refill_rate() {
        let t0 = Instant::now();
        let config = OverloadConfig {
            max_tokens: 10.0,
            initial_rate: 100.0,
            ..OverloadConfig::default()
        };
        let mut m = LoadMonitor::new(config, t0);
        // 50 ms of 100 per second is 5, under the bucket's 10.
        assert_eq!((0..20).filter(|_| m.admit(t0)).count(), 5);
        // 100 per second refills one token per 10 ms.
        assert!(m.admit(t0 + ms(10)));
        assert!(!m.admit(t0 + ms(10)));
        // A long pause refills no more than the burst.
        let later = t0 + Duration::from_secs(10);
        assert_eq!((0..20).filter(|_| m.admit(later)).count(), 5);
    }

    /// A core that serves `capacity` units of work a second, offered `load` initial
    /// requests a second, each costing 1 unit when admitted and `reject_cost` when refused;
    /// the queue is FIFO and latency is the time a request waited in it. Like a process
    /// held to a tenth of a core by a CPU quota, it works only in the first millisecond of
    /// every ten, at ten times the speed. Returns the monitor and what was admitted per
    /// second over the last half of `seconds`.
    fn simulate(capacity: f64, load: f64, reject_cost: f64, seconds: u64) -> (LoadMonitor, f64) {
        let t0 = Instant::now();
        let mut m = LoadMonitor::new(OverloadConfig::default(), t0);
        let mut queue = VecDeque::new();
        let (mut budget, mut owed) = (0.0, 0.0);
        let mut admitted_late = 0u64;
        let step = Duration::from_micros(100);
        let steps = seconds * 10_000;
        for i in 0..steps {
            let now = t0 + step * i as u32;
            owed += load * step.as_secs_f64();
            while owed >= 1.0 {
                queue.push_back(now);
                owed -= 1.0;
            }
            if i % 100 < 10 {
                budget += 10.0 * capacity * step.as_secs_f64();
            } else {
                budget = 0.0;
            }
            while budget >= 1.0 {
                let Some(arrived) = queue.pop_front() else {
                    budget = budget.min(1.0);
                    break;
                };
                if m.should_drop(now - arrived, now) {
                    budget -= reject_cost / 8.0;
                } else if m.admit(now) {
                    m.request_complete(now - arrived, now);
                    budget -= 1.0;
                    if i >= steps / 2 {
                        admitted_late += 1;
                    }
                } else {
                    budget -= reject_cost;
                }
            }
        }
        (m, admitted_late as f64 / (seconds as f64 / 2.0))
    }

    #[test]
    fn under_four_times_its_capacity_a_core_settles_near_the_best_it_can_do() {
        // With a refusal costing 5 % of a request, the most a core can admit at 4x is
        // 0.84 of its capacity (a + 0.05 (4C - a) = C).
        let (m, admitted) = simulate(2_000.0, 8_000.0, 0.05, 20);
        assert!(
            admitted > 0.9 * 0.84 * 2_000.0,
            "admitted {admitted} a second"
        );
        let latency = m.smoothed_latency().expect("samples");
        assert!(latency < ms(50), "latency {latency:?}");
    }

    #[test]
    fn under_twice_its_capacity_and_below_it_nothing_collapses() {
        let (_, admitted) = simulate(2_000.0, 4_000.0, 0.05, 20);
        assert!(
            admitted > 0.9 * 0.947 * 2_000.0,
            "admitted {admitted} a second"
        );
        // Just under capacity, every request waits up to 9 ms for its turn: none is refused.
        for load in [1_000.0, 1_900.0] {
            let (m, admitted) = simulate(2_000.0, load, 0.05, 20);
            assert_eq!(m.rate(), 20_000.0, "at {load} a second");
            assert!(
                admitted >= 0.999 * load,
                "admitted {admitted} of {load} a second"
            );
        }
    }

    /// A monitor starting at `rate`, so that what was admitted, not the halving bound,
    /// decides a cut.
    fn monitor_at(rate: f64, t0: Instant) -> LoadMonitor {
        let config = OverloadConfig {
            initial_rate: rate,
            ..OverloadConfig::default()
        };
        LoadMonitor::new(config, t0)
    }

    #[test]
    fn overload_that_starts_after_an_idle_spell_is_cut_from_its_own_rate() {
        let t0 = Instant::now();
        let mut m = monitor_at(1_500.0, t0);
        // A quiet minute, then 1,000 a second admitted, each having waited 50 ms. Measured
        // from the monitor's start, that is a trickle, and the cut would go as deep as it
        // may (half).
        let mut now = t0 + Duration::from_secs(60);
        for _ in 0..150 {
            now += ms(1);
            assert!(m.admit(now));
            m.request_complete(ms(50), now);
        }
        let cut = m.rate();
        assert!((800.0..1_000.0).contains(&cut), "rate {cut}");
    }

    #[test]
    fn a_cut_goes_below_what_was_admitted_and_waits_for_fresh_samples() {
        let t0 = Instant::now();
        let mut m = monitor_at(1_500.0, t0);
        // 1,000 a second admitted, each having waited 50 ms: far above the 10 ms target.
        let mut now = t0;
        for _ in 0..100 {
            now += ms(1);
            assert!(m.admit(now));
            m.request_complete(ms(50), now);
        }
        let cut = m.rate();
        assert!(cut < 1_000.0 / DECREASE_FACTOR + 1.0, "rate {cut}");
        // Still slow samples: the next cut waits for the latency and a period to pass.
        for _ in 0..100 {
            now += ms(1);
            m.admit(now);
            m.request_complete(ms(50), now);
        }
        assert_eq!(m.rate(), cut);
        for _ in 0..200 {
            now += ms(1);
            m.admit(now);
            m.request_complete(ms(50), now);
        }
        assert!(m.rate() < cut);
    }

    #[test]
    fn one_slow_period_at_most_halves_the_rate() {
        let t0 = Instant::now();
        let mut m = LoadMonitor::new(OverloadConfig::default(), t0);
        // A fresh process under a quota: 20 requests in its first 200 ms, each 150 ms late.
        let mut now = t0;
        for _ in 0..20 {
            now += ms(10);
            assert!(m.admit(now));
            m.request_complete(ms(150), now);
        }
        assert_eq!(m.rate(), 20_000.0 * DEEPEST_CUT);
    }

    #[test]
    fn an_idle_core_does_not_raise_its_rate_and_penalties_lower_it() {
        let t0 = Instant::now();
        let mut m = LoadMonitor::new(OverloadConfig::default(), t0);
        let mut now = t0;
        for _ in 0..40 {
            now += ms(200);
            assert!(m.admit(now));
            m.request_complete(Duration::from_micros(100), now);
        }
        assert_eq!(m.rate(), 20_000.0);
        m.penalize();
        for _ in 0..20 {
            now += ms(200);
            m.admit(now);
            m.request_complete(Duration::from_micros(100), now);
        }
        assert!(m.rate() < 20_000.0);
    }

    #[test]
    fn a_request_is_dropped_when_stale_while_behind_or_when_late_and_the_bucket_is_empty() {
        let t0 = Instant::now();
        let config = OverloadConfig {
            max_tokens: 1.0,
            initial_rate: 10.0,
            ..OverloadConfig::default()
        };
        let mut m = LoadMonitor::new(config, t0);
        // Not behind: a request that waited through a stall is served.
        assert!(!m.is_stale(ms(101)));
        assert!(!m.should_drop(ms(101), t0));
        // A period in which even the least latency was 50 ms: behind.
        let mut now = t0;
        for _ in 0..20 {
            now += ms(10);
            m.request_complete(ms(50), now);
        }
        assert!(!m.is_stale(ms(100)));
        assert!(m.is_stale(ms(101)));
        // A token is there: only a stale request is dropped, and none is taken.
        assert!(!m.should_drop(ms(50), now));
        assert!(m.should_drop(ms(101), now));
        assert!(m.admit(now));
        // The bucket is empty: a late request is dropped, one on time is left to admit()
        // (and its 503).
        assert!(m.should_drop(ms(11), now));
        assert!(!m.should_drop(ms(10), now));
        assert!(!m.admit(now));
    }
}
