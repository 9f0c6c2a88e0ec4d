//! Per-core counters. Plain integers: each core owns its own, and the metrics endpoint sums
//! them at scrape time, so the hot path never shares a cache line with another core.

/// What one core has seen and done since start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Requests received, by method (index from [`method_index`]).
    pub requests_in: [u64; METHODS.len()],
    /// Responses received, by status class (1xx..6xx at indexes 0..5).
    pub responses_in: [u64; 6],
    /// Requests sent (forwarded, ACK and CANCEL generated), by method.
    pub requests_out: [u64; METHODS.len()],
    /// Responses sent (forwarded or generated), by status class.
    pub responses_out: [u64; 6],
    /// Datagrams that did not parse or validate.
    pub parse_errors: u64,
    /// Retransmissions sent by transaction timers (A, E, G).
    pub retransmissions: u64,
    /// Request and response retransmissions received and absorbed.
    pub absorbed: u64,
    /// Requests refused because the transaction table was full.
    pub table_full: u64,
    /// Requests refused by overload control.
    pub overload_rejections: u64,
    /// Initial requests that waited too long in the socket, shed unparsed by overload
    /// control (their senders retransmit).
    pub overload_drops: u64,
    /// Responses forwarded without a matching transaction (RFC 3261 §16.7 step 2).
    pub stateless_responses: u64,
    /// Client transactions that timed out (Timer B or F).
    pub timeouts: u64,
    /// Transactions created so far.
    pub transactions_created: u64,
}

/// Method names in the order of the per-method counters; the last slot counts the rest.
pub const METHODS: [&str; 15] = [
    "INVITE",
    "ACK",
    "BYE",
    "CANCEL",
    "OPTIONS",
    "REGISTER",
    "SUBSCRIBE",
    "NOTIFY",
    "PRACK",
    "UPDATE",
    "INFO",
    "MESSAGE",
    "REFER",
    "PUBLISH",
    "other",
];

/// The counter slot of a method.
pub fn method_index(method: sip::Method<'_>) -> usize {
    use sip::Method as M;
    match method {
        M::Invite => 0,
        M::Ack => 1,
        M::Bye => 2,
        M::Cancel => 3,
        M::Options => 4,
        M::Register => 5,
        M::Subscribe => 6,
        M::Notify => 7,
        M::Prack => 8,
        M::Update => 9,
        M::Info => 10,
        M::Message => 11,
        M::Refer => 12,
        M::Publish => 13,
        _ => 14,
    }
}

/// The counter slot of a status code's class.
pub fn class_index(status: u16) -> usize {
    usize::from(status / 100).clamp(1, 6) - 1
}

impl Stats {
    /// Adds another core's counters into these.
    pub fn add(&mut self, other: &Self) {
        fn sum<const N: usize>(a: &mut [u64; N], b: &[u64; N]) {
            a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
        }
        sum(&mut self.requests_in, &other.requests_in);
        sum(&mut self.responses_in, &other.responses_in);
        sum(&mut self.requests_out, &other.requests_out);
        sum(&mut self.responses_out, &other.responses_out);
        self.parse_errors += other.parse_errors;
        self.retransmissions += other.retransmissions;
        self.absorbed += other.absorbed;
        self.table_full += other.table_full;
        self.overload_rejections += other.overload_rejections;
        self.overload_drops += other.overload_drops;
        self.stateless_responses += other.stateless_responses;
        self.timeouts += other.timeouts;
        self.transactions_created += other.transactions_created;
    }
}
