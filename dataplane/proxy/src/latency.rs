//! Per-core latency histograms: request → first provisional relayed, and request → final
//! response relayed, in microseconds from the request's arrival in the socket. Recording
//! never allocates; the engine merges the cores' histograms at scrape time.

use std::time::Duration;

use hdrhistogram::Histogram;

/// The two latency distributions of one core (or, merged, of the process).
#[derive(Debug, Clone)]
pub struct Latency {
    /// Request → first provisional response (other than 100) sent upstream.
    pub first_provisional: Histogram<u64>,
    /// Request → final response sent upstream.
    pub final_response: Histogram<u64>,
}

/// Highest latency tracked exactly: a minute; longer samples are clamped to it.
const MAX_MICROS: u64 = 60_000_000;

impl Default for Latency {
    fn default() -> Self {
        let histogram = || Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("valid bounds");
        Self {
            first_provisional: histogram(),
            final_response: histogram(),
        }
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros())
        .unwrap_or(u64::MAX)
        .clamp(1, MAX_MICROS)
}

impl Latency {
    pub(crate) fn record_provisional(&mut self, d: Duration) {
        self.first_provisional.saturating_record(micros(d));
    }

    pub(crate) fn record_final(&mut self, d: Duration) {
        self.final_response.saturating_record(micros(d));
    }

    /// Adds another core's samples into these.
    pub fn add(&mut self, other: &Self) {
        // Same bounds on both sides, so the addition cannot fail.
        let _ = self.first_provisional.add(&other.first_provisional);
        let _ = self.final_response.add(&other.final_response);
    }

    /// Empties both histograms, keeping their memory.
    pub fn reset(&mut self) {
        self.first_provisional.reset();
        self.final_response.reset();
    }
}
