//! Prometheus text exposition, summed over cores at scrape time. Each core publishes a
//! snapshot of its own counters into its own slot a few times a second; the scraper is the
//! only other reader, so no lock is ever contended on the data path.

use std::fmt::Write as _;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};

use proxy::{Latency, METHODS, Stats};

/// What one core publishes.
#[derive(Debug, Clone, Default)]
pub struct CoreSnapshot {
    /// The proxy's counters.
    pub stats: Stats,
    /// Transactions in the core's table.
    pub active_transactions: usize,
    /// Datagrams the kernel refused to send.
    pub send_errors: u64,
    /// Receives that failed, and datagrams dropped before parsing (truncated, no
    /// readable source).
    pub receive_errors: u64,
    /// Times the core waited under load before receiving, so one wake-up handled many
    /// datagrams (`--coalesce-us`).
    pub coalesced_waits: u64,
    /// Latency histograms since start.
    pub latency: Latency,
    /// Overload control's current admission rate, initial requests per second.
    pub admission_rate: f64,
    /// Open TCP connections.
    pub tcp_connections: usize,
    /// TCP streams closed because no message boundary could be found.
    pub tcp_framing_errors: u64,
    /// Registration-store requests sent to the core that owns the AoR.
    pub cross_core_handoffs: u64,
    /// AoRs this core owns in the embedded registration store.
    pub registered_aors: usize,
    /// Failed digest attempts, attempts refused for guessing, lock-outs begun.
    pub guessing: ims::auth::guessing::GuessingStats,
}

/// One slot per core.
#[derive(Debug, Clone)]
pub struct Registry {
    slots: Arc<Vec<Mutex<CoreSnapshot>>>,
}

impl Registry {
    /// Slots for `cores` cores.
    pub fn new(cores: usize) -> Self {
        Self {
            slots: Arc::new((0..cores).map(|_| Mutex::default()).collect()),
        }
    }

    /// Core `core` replaces its snapshot.
    pub fn publish(&self, core: usize, snapshot: &CoreSnapshot) {
        if let Ok(mut slot) = self.slots[core].lock() {
            slot.clone_from(snapshot);
        }
    }

    /// The sum over cores.
    pub fn total(&self) -> CoreSnapshot {
        let mut total = CoreSnapshot::default();
        for slot in self.slots.iter() {
            if let Ok(s) = slot.lock() {
                total.stats.add(&s.stats);
                total.active_transactions += s.active_transactions;
                total.send_errors += s.send_errors;
                total.receive_errors += s.receive_errors;
                total.coalesced_waits += s.coalesced_waits;
                total.latency.add(&s.latency);
                total.admission_rate += s.admission_rate;
                total.tcp_connections += s.tcp_connections;
                total.tcp_framing_errors += s.tcp_framing_errors;
                total.cross_core_handoffs += s.cross_core_handoffs;
                total.registered_aors += s.registered_aors;
                total.guessing.failures += s.guessing.failures;
                total.guessing.refused += s.guessing.refused;
                total.guessing.lockouts += s.guessing.lockouts;
            }
        }
        total
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        let t = self.total();
        let s = &t.stats;
        let mut out = String::with_capacity(4096);
        let classes = ["1xx", "2xx", "3xx", "4xx", "5xx", "6xx"];
        counter_family(
            &mut out,
            "ww_sip_requests_in_total",
            "SIP requests received",
            "method",
            &METHODS,
            &s.requests_in,
        );
        counter_family(
            &mut out,
            "ww_sip_requests_out_total",
            "SIP requests sent",
            "method",
            &METHODS,
            &s.requests_out,
        );
        counter_family(
            &mut out,
            "ww_sip_responses_in_total",
            "SIP responses received",
            "class",
            &classes,
            &s.responses_in,
        );
        counter_family(
            &mut out,
            "ww_sip_responses_out_total",
            "SIP responses sent",
            "class",
            &classes,
            &s.responses_out,
        );
        for (name, help, value) in [
            (
                "ww_sip_parse_errors_total",
                "datagrams that did not parse or validate",
                s.parse_errors,
            ),
            (
                "ww_sip_retransmissions_total",
                "retransmissions sent by transaction timers",
                s.retransmissions,
            ),
            (
                "ww_sip_absorbed_total",
                "retransmissions received and absorbed",
                s.absorbed,
            ),
            (
                "ww_sip_table_full_total",
                "requests refused because the transaction table was full",
                s.table_full,
            ),
            (
                "ww_sip_overload_rejections_total",
                "requests refused by overload control",
                s.overload_rejections,
            ),
            (
                "ww_sip_overload_drops_total",
                "initial requests shed unparsed by overload control: they waited too long in the socket",
                s.overload_drops,
            ),
            (
                "ww_sip_stateless_responses_total",
                "responses forwarded without a transaction",
                s.stateless_responses,
            ),
            (
                "ww_sip_timeouts_total",
                "client transactions that timed out",
                s.timeouts,
            ),
            (
                "ww_sip_transactions_total",
                "transactions created",
                s.transactions_created,
            ),
            (
                "ww_sip_cross_core_handoffs_total",
                "registration-store requests handed to the core that owns the AoR",
                t.cross_core_handoffs,
            ),
            (
                "ww_auth_failures_total",
                "digest attempts that failed: a wrong response or an unknown identity",
                t.guessing.failures,
            ),
            (
                "ww_auth_guessing_refused_total",
                "digest attempts refused unchecked: their address or identity was locked out for guessing",
                t.guessing.refused,
            ),
            (
                "ww_auth_guessing_lockouts_total",
                "addresses and identities locked out after too many failed attempts",
                t.guessing.lockouts,
            ),
            (
                "ww_udp_send_errors_total",
                "datagrams the kernel refused",
                t.send_errors,
            ),
            (
                "ww_udp_receive_errors_total",
                "UDP receives that failed and datagrams dropped before parsing",
                t.receive_errors,
            ),
            (
                "ww_udp_coalesced_waits_total",
                "waits under load before receiving, so one wake-up handles many datagrams",
                t.coalesced_waits,
            ),
            (
                "ww_tcp_framing_errors_total",
                "TCP streams closed for a framing error",
                t.tcp_framing_errors,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP ww_sip_active_transactions transactions in the tables\n\
             # TYPE ww_sip_active_transactions gauge\nww_sip_active_transactions {}",
            t.active_transactions
        );
        let _ = writeln!(
            out,
            "# HELP ww_registered_aors addresses of record with bindings in the embedded store\n\
             # TYPE ww_registered_aors gauge\nww_registered_aors {}",
            t.registered_aors
        );
        let _ = writeln!(
            out,
            "# HELP ww_tcp_connections open TCP connections\n# TYPE ww_tcp_connections gauge\nww_tcp_connections {}",
            t.tcp_connections
        );
        let _ = writeln!(
            out,
            "# HELP ww_overload_admission_rate initial requests per second overload control admits, summed over cores\n\
             # TYPE ww_overload_admission_rate gauge\nww_overload_admission_rate {:.0}",
            t.admission_rate
        );
        histogram(
            &mut out,
            "ww_sip_first_provisional_latency_seconds",
            "request to first provisional response relayed",
            &t.latency.first_provisional,
        );
        histogram(
            &mut out,
            "ww_sip_final_response_latency_seconds",
            "request to final response relayed",
            &t.latency.final_response,
        );
        out
    }
}

/// Upper bounds of the latency buckets, seconds: 0.5 ms to 10 s, fine where SIP
/// latency lives and coarse beyond a transaction's timers.
const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A Prometheus histogram (cumulative `_bucket`s, `_sum`, `_count`), so that latencies
/// from many nodes and cores aggregate, which quantiles cannot. From the HDR histogram:
/// a bucket's count is exact to its 3 significant digits, and `_sum` is its mean times
/// its count.
fn histogram(out: &mut String, name: &str, help: &str, h: &hdrhistogram::Histogram<u64>) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
    for le in LATENCY_BUCKETS {
        let micros = (le * 1e6) as u64;
        let _ = writeln!(
            out,
            "{name}_bucket{{le=\"{le}\"}} {}",
            h.count_between(0, micros)
        );
    }
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", h.len());
    let sum = h.mean() * h.len() as f64 / 1e6;
    let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {}", h.len());
}

fn counter_family(
    out: &mut String,
    name: &str,
    help: &str,
    label: &str,
    keys: &[&str],
    values: &[u64],
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
    for (key, value) in keys.iter().zip(values) {
        let _ = writeln!(out, "{name}{{{label}=\"{key}\"}} {value}");
    }
}

/// Serves `GET /metrics` on a plain thread, off the data-plane cores.
pub fn serve(addr: SocketAddr, registry: Registry) -> io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    std::thread::Builder::new()
        .name("ww-metrics".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                let _ = answer(stream, &registry);
            }
        })?;
    Ok(bound)
}

fn answer(stream: std::net::TcpStream, registry: &Registry) -> io::Result<()> {
    stream.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut line = String::new();
    while reader.read_line(&mut line)? > 2 {
        line.clear();
    }
    let mut stream = stream;
    let path = request_line.split_whitespace().nth(1).unwrap_or("");
    let (status, body) = match path {
        "/metrics" => ("200 OK", registry.render()),
        "/ping" => ("200 OK", "OK".to_owned()),
        _ => ("404 Not Found", "not found\n".to_owned()),
    };
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_are_exposed_as_cumulative_buckets_with_sum_and_count() {
        let mut h =
            hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("bounds");
        for micros in [300, 2_000, 2_000, 40_000, 20_000_000] {
            h.record(micros).expect("in range");
        }
        let mut out = String::new();
        histogram(&mut out, "x_seconds", "help", &h);
        let value = |series: &str| -> f64 {
            out.lines()
                .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
                .unwrap_or_else(|| panic!("no {series} in\n{out}"))
        };
        assert!(out.contains("# TYPE x_seconds histogram"));
        assert_eq!(value("x_seconds_bucket{le=\"0.0005\"}"), 1.0);
        assert_eq!(value("x_seconds_bucket{le=\"0.001\"}"), 1.0);
        assert_eq!(value("x_seconds_bucket{le=\"0.0025\"}"), 3.0);
        assert_eq!(value("x_seconds_bucket{le=\"0.05\"}"), 4.0);
        assert_eq!(value("x_seconds_bucket{le=\"10\"}"), 4.0);
        assert_eq!(value("x_seconds_bucket{le=\"+Inf\"}"), 5.0);
        assert_eq!(value("x_seconds_count"), 5.0);
        let sum = value("x_seconds_sum");
        assert!((sum - 20.0443).abs() < 0.03, "sum {sum}");
    }
}
