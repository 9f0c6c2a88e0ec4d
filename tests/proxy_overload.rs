//! The plain proxy held to a tenth of a core (a CPU cgroup) and offered several times
//! what it can serve: it sheds initial requests (503 with Retry-After, or dropped unparsed
//! when late), keeps serving calls, and never sheds the ACK or BYE of a call it let in.
//! Needs root and the cgroup `cpu` controller; fails, never skips, without them. No timing
//! is asserted: the figures are in docs/performance.md (`bench/run overload`).

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{
    Calls, Running, clean_calls_through, column, free_udp_ports, metric, scenarios, scrape_until,
    sipp, sipp_turn, start_proxy, tempdir,
};

const PERIOD_US: u32 = 10_000;
const QUOTA_US: u32 = 1_000;

/// A CPU cgroup with a CFS quota, removed when dropped (after its processes have ended).
struct CpuQuota {
    dir: PathBuf,
    procs: PathBuf,
}

impl CpuQuota {
    fn new(name: &str) -> Self {
        let v1 = Path::new("/sys/fs/cgroup/cpu");
        let v2 = Path::new("/sys/fs/cgroup");
        let write = |path: PathBuf, value: &str| {
            std::fs::write(&path, value)
                .unwrap_or_else(|e| panic!("write {value} to {}: {e}", path.display()));
        };
        if v1.join("cpu.cfs_quota_us").exists() {
            let dir = v1.join(name);
            std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
            write(dir.join("cpu.cfs_period_us"), &PERIOD_US.to_string());
            write(dir.join("cpu.cfs_quota_us"), &QUOTA_US.to_string());
            let procs = dir.join("cgroup.procs");
            Self { dir, procs }
        } else if v2.join("cgroup.controllers").exists() {
            let controllers = std::fs::read_to_string(v2.join("cgroup.subtree_control"));
            if !controllers.is_ok_and(|c| c.split_whitespace().any(|c| c == "cpu")) {
                write(v2.join("cgroup.subtree_control"), "+cpu");
            }
            let dir = v2.join(name);
            std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
            write(dir.join("cpu.max"), &format!("{QUOTA_US} {PERIOD_US}"));
            let procs = dir.join("cgroup.procs");
            Self { dir, procs }
        } else {
            panic!(
                "this test needs the cgroup cpu controller (v1 /sys/fs/cgroup/cpu or v2 \
                 /sys/fs/cgroup) and root"
            );
        }
    }

    fn add(&self, pid: u32) {
        std::fs::write(&self.procs, pid.to_string())
            .unwrap_or_else(|e| panic!("move {pid} into {}: {e}", self.procs.display()));
    }
}

impl Drop for CpuQuota {
    fn drop(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::fs::remove_dir(&self.dir).is_err() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[test]
fn several_times_capacity_is_shed_at_the_door_and_admitted_calls_complete() {
    let _turn = sipp_turn();
    let quota = CpuQuota::new(&format!("ww-test-overload-{}", std::process::id()));
    let proxy = start_proxy();
    quota.add(proxy.pid());

    // A tenth of a core serves about 2,000 calls a second with the release build (bench/run
    // overload) and a few hundred with the debug build the tests run: 1,000 is several times that.
    let calls = 3_000u32;
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
            .args(["-buff_size", "8388608"])
            .spawn()
            .expect("start sipp uas (Debian package sip-tester)"),
    );
    let uac_port = free_udp_ports(0);
    let out = sipp()
        .current_dir(&dir)
        .arg(proxy.listen.to_string())
        .args([
            "-sf",
            scenarios().join("proxy-uac.xml").to_str().expect("utf-8"),
        ])
        .args(["-i", "127.0.0.1", "-p", &uac_port.to_string()])
        .args(["-key", "uas_host", "127.0.0.1"])
        .args(["-key", "uas_port", &uas_port.to_string()])
        .args(["-m", &calls.to_string(), "-r", "1000", "-l", "60000"])
        .args(["-buff_size", "8388608", "-max_invite_retrans", "3"])
        .args(["-trace_stat", "-stf", "uac.csv", "-fd", "1"])
        .args(["-timeout", "120", "-timeout_error"])
        .output()
        .expect("run sipp uac");
    let stats = std::fs::read_to_string(dir.join("uac.csv")).unwrap_or_default();
    // Failed calls make SIPp exit 1; anything else (a time-out, a crash) is a failure here.
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "sipp uac ended {:?}: {}\n{stats}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    drop(uas);
    let _ = std::fs::remove_dir_all(&dir);

    let successful = column(&stats, "SuccessfulCall(C)");
    let failed = column(&stats, "FailedCall(C)");
    assert_eq!(
        successful + failed,
        u64::from(calls),
        "every call ended:\n{stats}"
    );
    assert!(successful > 0, "the proxy kept serving calls:\n{stats}");
    assert!(
        failed > 0,
        "1,000 calls a second did overload a tenth of a core:\n{stats}"
    );

    let text = scrape_until(proxy.metrics, "every successful call's BYE", |t| {
        metric(t, "ww_sip_requests_out_total{method=\"BYE\"}") >= successful
    });
    let shed = metric(&text, "ww_sip_overload_rejections_total")
        + metric(&text, "ww_sip_overload_drops_total");
    eprintln!(
        "{successful} of {calls} calls completed; shed {} with 503, {} unparsed",
        metric(&text, "ww_sip_overload_rejections_total"),
        metric(&text, "ww_sip_overload_drops_total")
    );
    assert!(shed > 0, "overload control shed nothing:\n{text}");
    // What was let in is never shed: each successful call's ACK went on to the UAS.
    assert!(
        metric(&text, "ww_sip_requests_out_total{method=\"ACK\"}") >= successful,
        "ACKs shed:\n{text}"
    );
    assert_eq!(metric(&text, "ww_sip_parse_errors_total"), 0);
    drop(_turn);

    // Once the flood has passed, calls go through clean again, under the same quota.
    clean_calls_through(
        &proxy,
        &Calls {
            uas_stats: true,
            ..Calls::plain(200, 50)
        },
    );
}
