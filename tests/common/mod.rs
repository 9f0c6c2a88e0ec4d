//! What the tests that run `whitewater sprout` share: free ports, the proxy process, its
//! metrics, and SIPp runs with their CSV statistics.
#![allow(dead_code)] // each test binary uses its own part of this module

pub(crate) mod ue;

use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Kills a child process when the test ends, whatever happens.
pub(crate) struct Running(pub(crate) Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) fn scenarios() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("sipp-scenarios")
}

/// A loopback UDP port with `extra` free ports above it (the proxy's per-core ports); the
/// TCP port of the same number is free too (the proxy listens on it).
pub(crate) fn free_udp_ports(extra: u16) -> u16 {
    for _ in 0..200 {
        let probe = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let base = probe.local_addr().expect("addr").port();
        if base > 60_000 {
            continue;
        }
        let Ok(_tcp) = TcpListener::bind(("127.0.0.1", base)) else {
            continue;
        };
        let held: Vec<_> = (1..=extra)
            .map_while(|i| UdpSocket::bind(("127.0.0.1", base + i)).ok())
            .collect();
        if held.len() == usize::from(extra) {
            return base;
        }
    }
    panic!("no free run of UDP ports on loopback");
}

pub(crate) fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

pub(crate) fn sipp() -> Command {
    let mut cmd = Command::new("sipp");
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

/// A running `whitewater sprout` on one core.
pub(crate) struct Proxy {
    _process: Running,
    /// The shared listening address.
    pub(crate) listen: SocketAddr,
    /// The core's own address (`listen` port + 1): the source and Via of what it forwards.
    pub(crate) own: SocketAddr,
    pub(crate) metrics: SocketAddr,
}

impl Proxy {
    pub(crate) fn pid(&self) -> u32 {
        self._process.0.id()
    }
}

/// Starts the proxy on one core and waits until its metrics endpoint answers.
pub(crate) fn start_proxy() -> Proxy {
    start_proxy_with(&[])
}

/// [`start_proxy`] with more options.
pub(crate) fn start_proxy_with(extra: &[&str]) -> Proxy {
    let port = free_udp_ports(1);
    let listen: SocketAddr = ([127, 0, 0, 1], port).into();
    let metrics: SocketAddr = ([127, 0, 0, 1], free_tcp_port()).into();
    let child = Command::new(env!("CARGO_BIN_EXE_whitewater"))
        .args(["sprout", "--listen", &listen.to_string(), "--cores", "0"])
        .args(["--metrics", &metrics.to_string()])
        .args(extra)
        .stdin(Stdio::null())
        .spawn()
        .expect("start whitewater");
    let process = Running(child);
    // The metrics endpoint comes up before the cores bind their UDP sockets, and a datagram
    // sent before that is lost: wait for both.
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(metrics).is_err() || !udp_bound(port) || !udp_bound(port + 1) {
        assert!(Instant::now() < deadline, "whitewater did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    Proxy {
        _process: process,
        listen,
        own: ([127, 0, 0, 1], port + 1).into(),
        metrics,
    }
}

/// Whether a UDP socket is bound to 127.0.0.1:`port`, from the kernel's table (binding the
/// port to find out could take it from the proxy).
pub(crate) fn udp_bound(port: u16) -> bool {
    let local = format!("0100007F:{port:04X}");
    std::fs::read_to_string("/proc/net/udp")
        .expect("/proc/net/udp")
        .lines()
        .skip(1)
        .any(|line| line.split_whitespace().nth(1) == Some(local.as_str()))
}

pub(crate) fn scrape(metrics: SocketAddr) -> String {
    use std::io::{Read, Write};
    let mut stream = TcpStream::connect(metrics).expect("connect metrics");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("request");
    let mut body = String::new();
    stream.read_to_string(&mut body).expect("response");
    body
}

pub(crate) fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no metric {name} in\n{text}"))
}

/// The sum of a labelled counter over all its labels (`ww_sip_requests_out_total` over
/// methods, say).
pub(crate) fn metric_sum(text: &str, name: &str) -> u64 {
    let prefix = format!("{name}{{");
    text.lines()
        .filter_map(|l| l.strip_prefix(&prefix)?.split_once('}'))
        .map(|(_, value)| value.trim().parse::<u64>().expect("counter value"))
        .sum()
}

/// Scrapes until `ready` holds for what the cores have published (they publish a few times
/// a second), then returns that scrape.
pub(crate) fn scrape_until(
    metrics: SocketAddr,
    what: &str,
    ready: impl Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut text = scrape(metrics);
    while !ready(&text) {
        assert!(
            Instant::now() < deadline,
            "metrics never showed {what}:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(50));
        text = scrape(metrics);
    }
    text
}

/// SIPp runs take turns: the machine may have two cores, and several SIPp pairs and proxies
/// at once would turn scheduling delays into retransmissions the tests count.
pub(crate) fn sipp_turn() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    TURN.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One SIPp run: a UAC scenario through the proxy to a UAS scenario.
pub(crate) struct Calls<'a> {
    pub(crate) uac: &'a str,
    pub(crate) uas: &'a str,
    pub(crate) calls: u32,
    pub(crate) rate: u32,
    /// More UAC options.
    pub(crate) extra: &'a [&'a str],
    /// More UAS options.
    pub(crate) uas_extra: &'a [&'a str],
    /// Run the UAS with `-m calls` and wait for it to finish on its own, so that its final
    /// statistics are read too (a killed SIPp writes no last row).
    pub(crate) uas_stats: bool,
}

impl Calls<'_> {
    /// The users' call scenarios, `proxy-uac.xml` and `proxy-uas.xml`.
    pub(crate) const fn plain(calls: u32, rate: u32) -> Self {
        Calls {
            uac: "proxy-uac.xml",
            uas: "proxy-uas.xml",
            calls,
            rate,
            extra: &[],
            uas_extra: &[],
            uas_stats: false,
        }
    }
}

/// SIPp's CSV statistics of both sides of a run.
pub(crate) struct CallStats {
    pub(crate) uac: String,
    /// Empty unless [`Calls::uas_stats`].
    pub(crate) uas: String,
}

/// Runs the calls UAC → proxy → UAS and returns SIPp's statistics.
pub(crate) fn calls_through(listen: SocketAddr, run: &Calls<'_>) -> CallStats {
    let _turn = sipp_turn();
    let dir = tempdir();
    let uas_port = free_udp_ports(0);
    let mut uas_cmd = sipp();
    uas_cmd
        .current_dir(&dir)
        .args(["-sf", scenarios().join(run.uas).to_str().expect("utf-8")])
        .args(["-i", "127.0.0.1", "-p", &uas_port.to_string(), "-nostdin"])
        .args(run.uas_extra);
    if run.uas_stats {
        uas_cmd.args(["-m", &run.calls.to_string()]).args([
            "-trace_stat",
            "-stf",
            "uas.csv",
            "-fd",
            "1",
        ]);
    }
    let mut uas = Running(
        uas_cmd
            .spawn()
            .expect("start sipp uas (Debian package sip-tester)"),
    );
    let uac_port = free_udp_ports(0);
    let out = sipp()
        .current_dir(&dir)
        .arg(listen.to_string())
        .args(["-sf", scenarios().join(run.uac).to_str().expect("utf-8")])
        .args(["-i", "127.0.0.1", "-p", &uac_port.to_string()])
        .args(["-key", "uas_host", "127.0.0.1"])
        .args(["-key", "uas_port", &uas_port.to_string()])
        .args(["-m", &run.calls.to_string(), "-r", &run.rate.to_string()])
        .args(["-d", "10"])
        .args(["-trace_stat", "-stf", "uac.csv", "-fd", "1"])
        .args(["-timeout", "120", "-timeout_error"])
        .args(run.extra)
        .output()
        .expect("run sipp uac");
    let uac_stats = std::fs::read_to_string(dir.join("uac.csv")).unwrap_or_default();
    assert!(
        out.status.success(),
        "sipp uac failed ({:?}): {}\n{uac_stats}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let mut uas_stats = String::new();
    if run.uas_stats {
        // The UAS ends after its last call's last step (and timewait, if any).
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(status) = uas.0.try_wait().expect("wait for sipp uas") {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "sipp uas did not finish its {} calls",
                run.calls
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        uas_stats = std::fs::read_to_string(dir.join("uas.csv")).unwrap_or_default();
        assert!(
            status.success(),
            "sipp uas failed ({status:?}):\n{uas_stats}"
        );
    }
    drop(uas);
    let _ = std::fs::remove_dir_all(&dir);
    CallStats {
        uac: uac_stats,
        uas: uas_stats,
    }
}

pub(crate) fn tempdir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "ww-sipp-{}-{}",
        std::process::id(),
        Instant::now().elapsed().as_nanos() ^ u128::from(free_tcp_port())
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// SIPp's CSV: header row, then one row per period; the last is cumulative.
pub(crate) fn column(stats: &str, name: &str) -> u64 {
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

/// A running `whitewater all-in-one`: the S-CSCF for example.com on one core, with
/// Homestead in process and `demo` subscribers 6505550000@example.com upwards (password
/// 7kkzTyGW).
pub(crate) struct AllInOne {
    _process: Running,
    pub(crate) listen: SocketAddr,
    pub(crate) metrics: SocketAddr,
    pub(crate) homestead: SocketAddr,
    pub(crate) prov: SocketAddr,
    /// Sprout's management API.
    pub(crate) management: SocketAddr,
}

pub(crate) const DEMO_PASSWORD: &str = "7kkzTyGW";

/// Starts all-in-one with `demo` subscribers and `extra` options, and waits until SIP,
/// metrics and both Homestead APIs answer.
pub(crate) fn start_all_in_one(demo: u32, extra: &[&str]) -> AllInOne {
    // Free ports are free only when probed: a test running beside this one may take one
    // before all-in-one binds it. All-in-one then exits with the bind error; try again.
    for _ in 0..3 {
        if let Some(started) = try_start_all_in_one(demo, extra) {
            return started;
        }
    }
    panic!("all-in-one did not start in three attempts");
}

fn try_start_all_in_one(demo: u32, extra: &[&str]) -> Option<AllInOne> {
    // Room for two cores' own ports; one core unless `extra` says otherwise.
    let port = free_udp_ports(2);
    let cores: &[&str] = if extra.contains(&"--cores") {
        &[]
    } else {
        &["--cores", "0"]
    };
    let listen: SocketAddr = ([127, 0, 0, 1], port).into();
    let metrics: SocketAddr = ([127, 0, 0, 1], free_tcp_port()).into();
    let homestead: SocketAddr = ([127, 0, 0, 1], free_tcp_port()).into();
    let prov: SocketAddr = ([127, 0, 0, 1], free_tcp_port()).into();
    let management: SocketAddr = ([127, 0, 0, 1], free_tcp_port()).into();
    let data = tempdir();
    let child = Command::new(env!("CARGO_BIN_EXE_whitewater"))
        .arg("all-in-one")
        .args(["--listen", &listen.to_string()])
        .args(cores)
        .args(["--metrics", &metrics.to_string()])
        .args(["--homestead-http", &homestead.to_string()])
        .args(["--prov-http", &prov.to_string()])
        .args(["--management-http", &management.to_string()])
        .args(["--data-dir", data.to_str().expect("utf-8")])
        .args(["--demo-subscribers", &demo.to_string()])
        .args(extra)
        .env("WW_LOG", "warn")
        .stdin(Stdio::null())
        .spawn()
        .expect("start whitewater all-in-one");
    let mut process = Running(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(metrics).is_err()
        || TcpStream::connect(homestead).is_err()
        || TcpStream::connect(management).is_err()
        || !udp_bound(port)
        || !udp_bound(port + 1)
    {
        if process.0.try_wait().expect("wait").is_some() {
            return None;
        }
        assert!(Instant::now() < deadline, "all-in-one did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Demo subscribers are put in place in the background: wait for the last one.
    if demo > 0 {
        let last = 6_505_550_000 + u64::from(demo) - 1;
        let path = format!("/impi/{last}%40example.com/av/digest?impu=sip%3A{last}%40example.com");
        while http_status(homestead, &path) != 200 {
            assert!(Instant::now() < deadline, "demo subscribers never appeared");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    Some(AllInOne {
        _process: process,
        listen,
        metrics,
        homestead,
        prov,
        management,
    })
}

/// The status of `GET path` on a local HTTP server (0 if it does not answer).
pub(crate) fn http_status(server: SocketAddr, path: &str) -> u16 {
    use std::io::{Read, Write};
    let Ok(mut stream) = TcpStream::connect(server) else {
        return 0;
    };
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return 0;
    }
    let mut head = [0u8; 12];
    if stream.read_exact(&mut head).is_err() {
        return 0;
    }
    std::str::from_utf8(&head[9..12])
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// No call of either side failed, met an unexpected message, or needed a retransmission
/// (loopback loses nothing, so a retransmission means a message went missing in the proxy).
/// Runs `run` through `proxy`, checks that every call was clean on the UAC's side (and the
/// UAS's, when it keeps statistics), and returns the proxy's metrics once every BYE shows.
pub(crate) fn clean_calls_through(proxy: &Proxy, run: &Calls<'_>) -> String {
    let stats = calls_through(proxy.listen, run);
    assert_calls_clean("uac", &stats.uac, u64::from(run.calls));
    if run.uas_stats {
        assert_calls_clean("uas", &stats.uas, u64::from(run.calls));
    }
    scrape_until(proxy.metrics, "every BYE", |t| {
        metric(t, "ww_sip_requests_in_total{method=\"BYE\"}") >= u64::from(run.calls)
    })
}

pub(crate) fn assert_calls_clean(side: &str, stats: &str, calls: u64) {
    for (name, want) in [
        ("SuccessfulCall(C)", calls),
        ("FailedCall(C)", 0),
        ("FailedUnexpectedMessage(C)", 0),
        ("OutOfCallMsgs(C)", 0),
        ("Retransmissions(C)", 0),
    ] {
        assert_eq!(column(stats, name), want, "{side} {name}:\n{stats}");
    }
}
