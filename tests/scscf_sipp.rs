//! Real SIPp against the S-CSCF of `whitewater all-in-one`: a thousand subscribers register
//! with digest authentication, then call each other, over UDP and over TCP, with no
//! failure.

mod common;

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::{
    Running, column, free_udp_ports, metric, metric_sum, scenarios, scrape_until, sipp, sipp_turn,
    start_all_in_one, tempdir,
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
    let stats = format!("{name}.csv");
    let out = sipp()
        .current_dir(dir)
        .arg(target.to_string())
        .args(["-i", "127.0.0.1"])
        .args(args)
        .args(["-trace_stat", "-stf", &stats, "-fd", "1"])
        .args(["-trace_err", "-timeout", "120", "-timeout_error"])
        .output()
        .expect("run sipp (Debian package sip-tester)");
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
    let register = scenarios().join("register-digest.xml");
    let mut args = vec![
        "-sf",
        register.to_str().expect("utf-8"),
        "-inf",
        "users.csv",
    ];
    args.extend(["-p", &uas_port, "-m", "1000", "-r", "500", "-l", "200"]);
    args.extend(transport);
    let stats = run_uac(&dir, aio.listen, &args, "register");
    assert_eq!(
        column(&stats, "SuccessfulCall(C)"),
        u64::from(SUBSCRIBERS),
        "{stats}"
    );
    assert_eq!(column(&stats, "FailedCall(C)"), 0);
    let text = scrape_until(aio.metrics, "1,000 registered AoRs", |t| {
        metric(t, "ww_registered_aors") == u64::from(SUBSCRIBERS)
    });
    assert_eq!(
        metric_sum(&text, "ww_sip_responses_out_total"),
        2 * u64::from(SUBSCRIBERS)
    );

    let uas_scenario = scenarios().join("proxy-uas.xml");
    let mut uas = sipp();
    uas.current_dir(&dir)
        .args(["-sf", uas_scenario.to_str().expect("utf-8")])
        .args(["-i", "127.0.0.1", "-p", &uas_port, "-nostdin"])
        .args(transport);
    let _uas = Running(uas.spawn().expect("start sipp uas"));
    std::thread::sleep(Duration::from_millis(300));
    let caller_port = free_udp_ports(0).to_string();
    let calls = scenarios().join("call-registered-uac.xml");
    let mut args = vec!["-sf", calls.to_str().expect("utf-8"), "-inf", "pairs.csv"];
    args.extend(["-p", &caller_port, "-m", "1000", "-r", "200", "-d", "10"]);
    args.extend(transport);
    let stats = run_uac(&dir, aio.listen, &args, "calls");
    assert_eq!(
        column(&stats, "SuccessfulCall(C)"),
        u64::from(SUBSCRIBERS),
        "{stats}"
    );
    assert_eq!(column(&stats, "FailedCall(C)"), 0);
    assert_eq!(column(&stats, "FailedUnexpectedMessage(C)"), 0);
    if cores.contains(',') {
        // AoRs are spread over the cores; a REGISTER or INVITE that arrived on another
        // core reached the owner by message.
        let text = scrape_until(aio.metrics, "hand-offs", |t| {
            metric(t, "ww_sip_cross_core_handoffs_total") > 0
        });
        assert!(metric(&text, "ww_sip_cross_core_handoffs_total") > 0);
    }
}

#[test]
fn a_thousand_subscribers_register_and_call_each_other_over_udp_on_two_cores() {
    register_then_call(&[], "0,1");
}

#[test]
fn a_thousand_subscribers_register_and_call_each_other_over_tcp() {
    register_then_call(&["-t", "t1"], "0");
}
