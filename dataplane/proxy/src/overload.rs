//! Overload control after Clearwater's load monitor (cpp-common `load_monitor`, reference
//! §1.4): a token bucket admits initial requests; its refill rate follows the smoothed
//! latency of admitted requests against a target. Above the target the rate falls; below
//! it, and only while more than half the permitted rate is in use, the rate rises. Each
//! core runs its own monitor, so no state is shared.

use std::time::{Duration, Instant};

/// Requests between two rate adjustments.
const REQUESTS_BEFORE_ADJUSTMENT: u32 = 20;
/// The shortest time between two rate adjustments.
const ADJUST_PERIOD: Duration = Duration::from_secs(2);
/// Above this relative latency error the rate is divided by [`DECREASE_FACTOR`].
const DECREASE_THRESHOLD: f64 = 0.0;
const DECREASE_FACTOR: f64 = 1.2;
/// Below this relative latency error the rate grows by `-error · bucket · INCREASE_FACTOR`.
const INCREASE_THRESHOLD: f64 = -0.005;
const INCREASE_FACTOR: f64 = 0.5;

/// The monitor's settings. Clearwater's Sprout defaults, except the initial and maximum
/// rates, which Clearwater set for a whole process on 2013 hardware (2,000 per second) and
/// which here are per core: a core starts by admitting 20,000 initial requests per second
/// and only latency above the target brings that down.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OverloadConfig {
    /// The latency the rate is steered to (Clearwater: 10 ms for Sprout).
    pub target_latency: Duration,
    /// Bucket size: the largest burst admitted at once (1,000).
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
    completed: u32,
    admitted_in_period: u32,
    penalties: u32,
    adjusted: Instant,
}

impl LoadMonitor {
    /// A monitor with a full bucket at `now`.
    pub fn new(config: OverloadConfig, now: Instant) -> Self {
        Self {
            tokens: config.max_tokens,
            rate: config.initial_rate.clamp(config.min_rate, config.max_rate),
            refilled: now,
            smoothed_latency: None,
            completed: 0,
            admitted_in_period: 0,
            penalties: 0,
            adjusted: now,
            config,
        }
    }

    /// The current refill rate, tokens per second.
    pub const fn rate(&self) -> f64 {
        self.rate
    }

    /// The smoothed latency the rate is steered by.
    pub fn smoothed_latency(&self) -> Option<Duration> {
        self.smoothed_latency.map(Duration::from_secs_f64)
    }

    /// Whether an initial request may be processed now; false means answer 503.
    pub fn admit(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.refilled = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.config.max_tokens);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
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
        self.completed += 1;
        let period = now.saturating_duration_since(self.adjusted);
        if self.completed < REQUESTS_BEFORE_ADJUSTMENT || period < ADJUST_PERIOD {
            return;
        }
        let target = self.config.target_latency.as_secs_f64();
        let error = (smoothed - target) / target;
        if error > DECREASE_THRESHOLD || self.penalties > 0 {
            self.rate /= DECREASE_FACTOR;
        } else if error < INCREASE_THRESHOLD {
            let used = f64::from(self.admitted_in_period) / period.as_secs_f64();
            if used > self.rate / 2.0 {
                self.rate += -error * self.config.max_tokens * INCREASE_FACTOR;
            }
        }
        self.rate = self.rate.clamp(self.config.min_rate, self.config.max_rate);
        self.completed = 0;
        self.admitted_in_period = 0;
        self.penalties = 0;
        self.adjusted = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_bucket_admits_a_burst_then_the_refill_rate() {
        let t0 = Instant::now();
        let config = OverloadConfig {
            max_tokens: 10.0,
            initial_rate: 100.0,
            ..OverloadConfig::default()
        };
        let mut m = LoadMonitor::new(config, t0);
        assert_eq!((0..20).filter(|_| m.admit(t0)).count(), 10);
        // 100 per second refills one token per 10 ms.
        assert!(m.admit(t0 + ms(10)));
        assert!(!m.admit(t0 + ms(10)));
    }

    #[test]
    fn high_latency_lowers_the_rate_and_low_latency_under_load_raises_it() {
        let t0 = Instant::now();
        let mut m = LoadMonitor::new(OverloadConfig::default(), t0);
        let mut now = t0;
        for _ in 0..3 {
            for _ in 0..20 {
                now += ms(120);
                assert!(m.admit(now));
                m.request_complete(ms(50), now);
            }
        }
        assert!(m.rate() < 20_000.0 / 1.2 / 1.2, "rate {}", m.rate());
        let lowered = m.rate();
        // Fast answers while the admitted rate uses most of the permitted rate: it grows.
        for _ in 0..5 {
            let start = now;
            let mut admitted = 0;
            while now.duration_since(start) < ADJUST_PERIOD + ms(10) {
                now += Duration::from_secs_f64(1.0 / lowered);
                if m.admit(now) {
                    admitted += 1;
                    m.request_complete(Duration::from_micros(100), now);
                }
            }
            assert!(admitted > 0);
        }
        assert!(m.rate() > lowered, "rate {} after {}", m.rate(), lowered);
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
}
