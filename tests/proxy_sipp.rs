//! `whitewater sprout` as a plain transaction-stateful proxy, driven by real SIPp: calls
//! through it complete with no failure and no unexpected message, and the proxy's metrics
//! agree with what SIPp sent.

use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Kills a child process when the test ends, whatever happens.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn scenarios() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("sipp-scenarios")
}

/// A loopback UDP port with `extra` free ports above it (the proxy's per-core ports).
fn free_udp_ports(extra: u16) -> u16 {
    for _ in 0..200 {
        let probe = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let base = probe.local_addr().expect("addr").port();
        if base > 60_000 {
            continue;
        }
        let held: Vec<_> = (1..=extra)
            .map_while(|i| UdpSocket::bind(("127.0.0.1", base + i)).ok())
            .collect();
        if held.len() == usize::from(extra) {
            return base;
        }
    }
    panic!("no free run of UDP ports on loopback");
}

fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

fn sipp() -> Command {
    let mut cmd = Command::new("sipp");
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

/// Starts the proxy on one core and waits until its metrics endpoint answers.
fn start_proxy() -> (Running, SocketAddr, SocketAddr) {
    let port = free_udp_ports(1);
    let listen: SocketAddr = ([127, 0, 0, 1], port).into();
    let metrics: SocketAddr = ([127, 0, 0, 1], free_tcp_port()).into();
    let child = Command::new(env!("CARGO_BIN_EXE_whitewater"))
        .args(["sprout", "--listen", &listen.to_string(), "--cores", "0"])
        .args(["--metrics", &metrics.to_string()])
        .stdin(Stdio::null())
        .spawn()
        .expect("start whitewater");
    let proxy = Running(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(metrics).is_err() {
        assert!(Instant::now() < deadline, "whitewater did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    (proxy, listen, metrics)
}

fn scrape(metrics: SocketAddr) -> String {
    use std::io::{Read, Write};
    let mut stream = TcpStream::connect(metrics).expect("connect metrics");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("request");
    let mut body = String::new();
    stream.read_to_string(&mut body).expect("response");
    body
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no metric {name} in\n{text}"))
}

/// Runs `calls` calls UAC → proxy → UAS with the scenarios users run, and returns SIPp's
/// final statistics line of the UAC.
fn calls_through(listen: SocketAddr, calls: u32, rate: u32, extra: &[&str]) -> String {
    let dir = tempdir();
    let uas_port = free_udp_ports(0);
    let uas = Running(
        sipp()
            .current_dir(&dir)
            .args([
                "-sf",
                scenarios().join("proxy-uas.xml").to_str().expect("utf-8"),
            ])
            .args(["-i", "127.0.0.1", "-p", &uas_port.to_string(), "-nostdin"])
            .spawn()
            .expect("start sipp uas (Debian package sip-tester)"),
    );
    let uac_port = free_udp_ports(0);
    let out = sipp()
        .current_dir(&dir)
        .arg(listen.to_string())
        .args([
            "-sf",
            scenarios().join("proxy-uac.xml").to_str().expect("utf-8"),
        ])
        .args(["-i", "127.0.0.1", "-p", &uac_port.to_string()])
        .args([
            "-key",
            "uas_host",
            "127.0.0.1",
            "-key",
            "uas_port",
            &uas_port.to_string(),
        ])
        .args([
            "-m",
            &calls.to_string(),
            "-r",
            &rate.to_string(),
            "-d",
            "10",
        ])
        .args([
            "-trace_stat",
            "-stf",
            "uac.csv",
            "-fd",
            "1",
            "-timeout",
            "120",
            "-timeout_error",
        ])
        .args(extra)
        .output()
        .expect("run sipp uac");
    drop(uas);
    let stats = std::fs::read_to_string(dir.join("uac.csv")).unwrap_or_default();
    assert!(
        out.status.success(),
        "sipp uac failed ({:?}): {}\n{stats}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
    stats
}

fn tempdir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "ww-sipp-{}-{}",
        std::process::id(),
        Instant::now().elapsed().as_nanos() ^ u128::from(free_tcp_port())
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// SIPp's CSV: header row, then one row per period; the last is cumulative.
fn column(stats: &str, name: &str) -> u64 {
    let mut lines = stats.lines();
    let header: Vec<&str> = lines.next().expect("header").split(';').collect();
    let last: Vec<&str> = lines.last().expect("a row").split(';').collect();
    let at = header
        .iter()
        .position(|h| *h == name)
        .unwrap_or_else(|| panic!("no {name}"));
    last[at]
        .parse()
        .unwrap_or_else(|_| panic!("{name} = {}", last[at]))
}

#[test]
fn two_thousand_calls_over_udp_complete_without_failure() {
    let (_proxy, listen, metrics) = start_proxy();
    let stats = calls_through(listen, 2000, 200, &[]);
    assert_eq!(column(&stats, "SuccessfulCall(C)"), 2000);
    assert_eq!(column(&stats, "FailedCall(C)"), 0);
    assert_eq!(column(&stats, "Retransmissions(C)"), 0);
    // Cores publish their counters a few times a second: wait for the last call to show.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut text = scrape(metrics);
    while metric(&text, "ww_sip_requests_in_total{method=\"BYE\"}") < 2000 {
        assert!(
            Instant::now() < deadline,
            "metrics never caught up:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(50));
        text = scrape(metrics);
    }
    // INVITE and BYE each make a transaction; ACK for 2xx is forwarded statelessly.
    assert_eq!(
        metric(&text, "ww_sip_requests_in_total{method=\"INVITE\"}"),
        2000
    );
    assert_eq!(
        metric(&text, "ww_sip_requests_out_total{method=\"ACK\"}"),
        2000
    );
    assert_eq!(metric(&text, "ww_sip_transactions_total"), 4000);
    assert_eq!(metric(&text, "ww_sip_parse_errors_total"), 0);
}

#[test]
fn calls_complete_through_retransmissions_when_packets_are_lost() {
    let (_proxy, listen, _metrics) = start_proxy();
    // SIPp drops 5 % of what it sends and receives; T1 retransmissions recover every call.
    let stats = calls_through(listen, 100, 20, &["-lost", "5"]);
    assert_eq!(column(&stats, "SuccessfulCall(C)"), 100);
    assert_eq!(column(&stats, "FailedCall(C)"), 0);
}
