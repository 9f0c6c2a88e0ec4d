//! Real SIPp against the S-CSCF of `whitewater all-in-one`: a thousand subscribers register
//! with digest authentication, then call each other, over UDP and over TCP, with no
//! failure.

mod common;

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::{
    AllInOne, Running, column, free_udp_ports, metric, metric_sum, scenarios, scrape_until, sipp,
    sipp_turn, start_all_in_one, tempdir,
};

const SUBSCRIBERS: u32 = 1000;
const FIRST: u64 = 6_505_550_000;

fn write_csvs(dir: &Path) {
    let mut users = String::from("SEQUENTIAL\n");
    let mut pairs = String::from("SEQUENTIAL\n");
    for i in 0..u64::from(SUBSCRIBERS) {
        let user = FIRST + i;
        let _ = writeln!(
            users,
            "{user};example.com;[authentication username={user}@example.com password=7kkzTyGW]"
        );
        let callee = FIRST + (i + 1) % u64::from(SUBSCRIBERS);
        let _ = writeln!(pairs, "{user};{callee};example.com");
    }
    std::fs::write(dir.join("users.csv"), users).expect("users.csv");
    std::fs::write(dir.join("pairs.csv"), pairs).expect("pairs.csv");
}

/// Runs a SIPp UAC scenario to completion and returns its final statistics.
fn run_uac(dir: &Path, target: SocketAddr, args: &[&str], name: &str) -> String {
    run_uac_while(dir, target, args, name, || {})
}

/// As [`run_uac`], doing `meanwhile` while SIPp runs.
fn run_uac_while(
    dir: &Path,
    target: SocketAddr,
    args: &[&str],
    name: &str,
    meanwhile: impl FnOnce(),
) -> String {
    let stats = format!("{name}.csv");
    let child = sipp()
        .current_dir(dir)
        .arg(target.to_string())
        .args(["-i", "127.0.0.1"])
        .args(args)
        .args(["-trace_stat", "-stf", &stats, "-fd", "1"])
        .args(["-trace_err", "-timeout", "120", "-timeout_error"])
        .spawn()
        .expect("run sipp (Debian package sip-tester)");
    meanwhile();
    let out = child.wait_with_output().expect("sipp ends");
    let text = std::fs::read_to_string(dir.join(&stats)).unwrap_or_default();
    assert!(
        out.status.success(),
        "sipp {name} failed ({:?}): {}\n{text}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

fn register_then_call(transport: &[&str], cores: &str) {
    let aio = start_all_in_one(SUBSCRIBERS, &["--cores", cores]);
    let _turn = sipp_turn();
    let dir = tempdir();
    write_csvs(&dir);
    // Every subscriber registers the callee SIPp's address as its contact.
    let uas_port = free_udp_ports(0).to_string();
    register_all(&aio, &dir, &uas_port, transport, 500, || {});
    let text = scrape_until(aio.metrics, "1,000 registered AoRs", |t| {
        metric(t, "ww_registered_aors") == u64::from(SUBSCRIBERS)
    });
    assert_eq!(
        metric_sum(&text, "ww_sip_responses_out_total"),
        2 * u64::from(SUBSCRIBERS)
    );
    call_all(&aio, &dir, &uas_port, transport);
    if cores.contains(',') {
        // AoRs are spread over the cores; a REGISTER or INVITE that arrived on another
        // core reached the owner by message.
        let text = scrape_until(aio.metrics, "hand-offs", |t| {
            metric(t, "ww_sip_cross_core_handoffs_total") > 0
        });
        assert!(metric(&text, "ww_sip_cross_core_handoffs_total") > 0);
    }
}

/// Registers every subscriber with `uas_port` as its contact, at `rate` per second, doing
/// `meanwhile` during the run: none may fail.
fn register_all(
    aio: &AllInOne,
    dir: &Path,
    uas_port: &str,
    transport: &[&str],
    rate: u32,
    meanwhile: impl FnOnce(),
) {
    let register = scenarios().join("register-digest.xml");
    let rate = rate.to_string();
    let mut args = vec![
        "-sf",
        register.to_str().expect("utf-8"),
        "-inf",
        "users.csv",
        // SIPp names its peer's address in the digest uri unless told the Request-URI.
        "-auth_uri",
        "example.com",
    ];
    args.extend(["-p", uas_port, "-m", "1000", "-r", &rate, "-l", "200"]);
    args.extend(transport);
    let stats = run_uac_while(dir, aio.listen, &args, "register", meanwhile);
    assert_eq!(
        column(&stats, "SuccessfulCall(C)"),
        u64::from(SUBSCRIBERS),
        "{stats}"
    );
    assert_eq!(column(&stats, "FailedCall(C)"), 0);
}

/// Every subscriber calls the next one; the callees answer at `uas_port`.
fn call_all(aio: &AllInOne, dir: &Path, uas_port: &str, transport: &[&str]) {
    let uas_scenario = scenarios().join("proxy-uas.xml");
    let mut uas = sipp();
    uas.current_dir(dir)
        .args(["-sf", uas_scenario.to_str().expect("utf-8")])
        .args(["-i", "127.0.0.1", "-p", uas_port, "-nostdin"])
        .args(transport);
    let _uas = Running(uas.spawn().expect("start sipp uas"));
    std::thread::sleep(Duration::from_millis(300));
    let caller_port = free_udp_ports(0).to_string();
    let calls = scenarios().join("call-registered-uac.xml");
    let mut args = vec!["-sf", calls.to_str().expect("utf-8"), "-inf", "pairs.csv"];
    args.extend(["-p", &caller_port, "-m", "1000", "-r", "200", "-d", "10"]);
    args.extend(transport);
    let stats = run_uac(dir, aio.listen, &args, "calls");
    assert_eq!(
        column(&stats, "SuccessfulCall(C)"),
        u64::from(SUBSCRIBERS),
        "{stats}"
    );
    assert_eq!(column(&stats, "FailedCall(C)"), 0);
    assert_eq!(column(&stats, "FailedUnexpectedMessage(C)"), 0);
}

#[test]
fn a_thousand_subscribers_register_and_call_each_other_over_udp_on_two_cores() {
    register_then_call(&[], "0,1");
}

#[test]
fn a_thousand_subscribers_register_and_call_each_other_over_tcp() {
    register_then_call(&["-t", "t1"], "0");
}

/// A memcached server on a free loopback port, stopped by pid when dropped.
fn start_memcached() -> (Running, SocketAddr) {
    let port = common::free_tcp_port();
    let child = std::process::Command::new("memcached")
        .args([
            "-l",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            "0",
            "-m",
            "64",
        ])
        .args(["-u", "root"])
        .stdin(std::process::Stdio::null())
        .spawn()
        .expect("start memcached (Debian package memcached)");
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "memcached did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    (Running(child), addr)
}

#[test]
fn registrations_survive_the_death_of_one_of_three_memcached_servers() {
    let mut servers: Vec<_> = (0..3).map(|_| start_memcached()).collect();
    let list = servers
        .iter()
        .map(|(_, addr)| addr.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let aio = start_all_in_one(SUBSCRIBERS, &["--memcached-servers", &list]);
    let _turn = sipp_turn();
    let dir = tempdir();
    write_csvs(&dir);
    let uas_port = free_udp_ports(0).to_string();
    // Registrations run for five seconds; one server dies two seconds in.
    let (mut victim, _) = servers.remove(1);
    register_all(&aio, &dir, &uas_port, &[], 200, move || {
        std::thread::sleep(Duration::from_secs(2));
        let _ = victim.0.kill();
        let _ = victim.0.wait();
    });
    // Every AoR is still there (read through the survivors) and reachable by a call.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let missing = rt.block_on(async {
        let http = reqwest::Client::new();
        let mut missing = Vec::new();
        for n in 0..u64::from(SUBSCRIBERS) {
            let url = format!(
                "http://{}/impu/sip:{}@example.com/bindings",
                aio.management,
                FIRST + n
            );
            let status = http.get(url).send().await.expect("GET bindings").status();
            if status != 200 {
                missing.push((FIRST + n, status.as_u16()));
            }
        }
        missing
    });
    assert!(missing.is_empty(), "AoRs without bindings: {missing:?}");
    // The survivors hold the registrations (two copies of each AoR over three servers).
    let held: u64 = servers.iter().map(|(_, addr)| memcached_items(*addr)).sum();
    assert!(
        held >= u64::from(SUBSCRIBERS),
        "only {held} items on the survivors"
    );
    call_all(&aio, &dir, &uas_port, &[]);
}

/// `curr_items` of a memcached server.
fn memcached_items(addr: SocketAddr) -> u64 {
    use std::io::{BufRead, BufReader, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect memcached");
    stream.write_all(b"stats\r\n").expect("stats");
    let reader = BufReader::new(stream);
    for line in reader.lines() {
        let line = line.expect("stats line");
        if let Some(n) = line.strip_prefix("STAT curr_items ") {
            return n.trim().parse().expect("a count");
        }
        if line == "END" {
            break;
        }
    }
    panic!("no curr_items from memcached {addr}");
}

#[test]
fn volte_style_calls_with_prack_and_update_go_through_the_service_route() {
    let aio = start_all_in_one(SUBSCRIBERS, &[]);
    let _turn = sipp_turn();
    let dir = tempdir();
    write_csvs(&dir);
    let uas_port = free_udp_ports(0).to_string();
    register_all(&aio, &dir, &uas_port, &[], 500, || {});
    let callee = scenarios().join("volte-callee.xml");
    let mut uas = sipp();
    uas.current_dir(&dir)
        .args(["-sf", callee.to_str().expect("utf-8")])
        .args(["-i", "127.0.0.1", "-p", &uas_port, "-nostdin"]);
    let _uas = Running(uas.spawn().expect("start sipp callee"));
    std::thread::sleep(Duration::from_millis(300));
    let caller_port = free_udp_ports(0).to_string();
    let caller = scenarios().join("volte-caller.xml");
    let args = [
        "-sf",
        caller.to_str().expect("utf-8"),
        "-inf",
        "pairs.csv",
        "-p",
        &caller_port,
        "-m",
        "500",
        "-r",
        "100",
        "-d",
        "10",
    ];
    let stats = run_uac(&dir, aio.listen, &args, "volte");
    assert_eq!(column(&stats, "SuccessfulCall(C)"), 500, "{stats}");
    assert_eq!(column(&stats, "FailedCall(C)"), 0);
    assert_eq!(column(&stats, "FailedUnexpectedMessage(C)"), 0);
}

#[test]
fn writes_made_while_a_memcached_server_stalled_are_not_lost_when_it_returns() {
    let servers: Vec<_> = (0..3).map(|_| start_memcached()).collect();
    let list = servers
        .iter()
        .map(|(_, addr)| addr.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let aio = start_all_in_one(
        SUBSCRIBERS,
        &[
            "--memcached-servers",
            &list,
            "--memcached-timeout-ms",
            "200",
        ],
    );
    let _turn = sipp_turn();
    let dir = tempdir();
    write_csvs(&dir);
    let first_port = free_udp_ports(0).to_string();
    register_all(&aio, &dir, &first_port, &[], 500, || {});
    // One server stalls (SIGSTOP) while everyone registers a new contact, then comes back
    // holding the old contacts of the AoRs it was first replica for.
    let stalled = servers[1].0.0.id().to_string();
    let signal = |sig: &str| {
        let ok = std::process::Command::new("kill")
            .args([sig, &stalled])
            .status()
            .expect("kill");
        assert!(ok.success());
    };
    signal("-STOP");
    let second_port = free_udp_ports(0).to_string();
    register_all(&aio, &dir, &second_port, &[], 200, || {});
    signal("-CONT");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let stale = rt.block_on(async {
        let http = reqwest::Client::new();
        let mut stale = Vec::new();
        for n in 0..u64::from(SUBSCRIBERS) {
            let url = format!(
                "http://{}/impu/sip:{}@example.com/bindings",
                aio.management,
                FIRST + n
            );
            let body = http
                .get(url)
                .send()
                .await
                .expect("GET")
                .text()
                .await
                .expect("body");
            if !body.contains(&format!(":{second_port};")) {
                stale.push(FIRST + n);
            }
        }
        stale
    });
    assert!(
        stale.is_empty(),
        "{} AoRs show an old contact, e.g. {:?}",
        stale.len(),
        &stale[..stale.len().min(5)]
    );
}
