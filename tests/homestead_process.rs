//! `whitewater homestead`, `provision` and `all-in-one` as processes: nothing acknowledged
//! is lost to `kill -9` or to a full disk, bulk provisioning is idempotent, and
//! all-in-one serves demo subscribers on first start.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

/// A running `whitewater` serving Homestead, killed when dropped.
struct Homestead {
    child: Child,
    http: String,
    prov: String,
}

impl Drop for Homestead {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn whitewater() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_whitewater"));
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .env("WW_LOG", "warn");
    cmd
}

fn homestead_args(data: &Path) -> Vec<String> {
    [
        "--data-dir",
        &data.display().to_string(),
        "--homestead-http",
        "127.0.0.1:0",
        "--prov-http",
        "127.0.0.1:0",
    ]
    .map(str::to_owned)
    .to_vec()
}

/// Starts `cmd`, waits for the line naming both HTTP addresses, and keeps draining stderr.
fn start(mut cmd: Command) -> Homestead {
    let mut child = cmd.spawn().expect("whitewater starts");
    let stderr = child.stderr.take().expect("piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("whitewater: homestead API on ") {
                let (http, prov) = rest
                    .split_once(", provisioning API on ")
                    .expect("both addresses");
                let bare = |a: &str| a.trim_start_matches("http://").to_owned();
                let _ = tx.send(Ok((bare(http), bare(prov))));
            } else {
                eprintln!("{line}");
            }
        }
        let _ = tx.send(Err(()));
    });
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(Ok((http, prov))) => Homestead { child, http, prov },
        _ => {
            let _ = child.kill();
            panic!("whitewater did not report its HTTP addresses");
        }
    }
}

fn data_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ww-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn subscriber_body(n: usize) -> String {
    format!(r#"{{"impus":["sip:{n}@example.com"],"password":"pw{n}"}}"#)
}

/// Provisions subscribers from `tasks` concurrent clients until told to stop or a request
/// fails; returns the numbers the server acknowledged, and the failures (status and body)
/// the server answered (a connection refused or reset is not an answer).
async fn provision_until_failure(
    prov: &str,
    tasks: usize,
    stop_after: usize,
) -> (Vec<usize>, Vec<(u16, String)>) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let next = Arc::new(AtomicUsize::new(0));
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..tasks {
        let (client, next, prov) = (client.clone(), Arc::clone(&next), prov.to_owned());
        set.spawn(async move {
            let mut acknowledged = Vec::new();
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= stop_after {
                    return (acknowledged, None);
                }
                let url = format!("http://{prov}/subscribers/{n}%40example.com");
                match client.put(url).body(subscriber_body(n)).send().await {
                    Ok(r) if r.status().is_success() => acknowledged.push(n),
                    Ok(r) => {
                        let status = r.status().as_u16();
                        return (
                            acknowledged,
                            Some((status, r.text().await.unwrap_or_default())),
                        );
                    }
                    Err(_) => return (acknowledged, None),
                }
            }
        });
    }
    let mut acknowledged = Vec::new();
    let mut failures = Vec::new();
    for (done, failure) in set.join_all().await {
        acknowledged.extend(done);
        failures.extend(failure);
    }
    (acknowledged, failures)
}

/// `PUT /subscribers/<user>@example.com` with one public identity and a password.
async fn put_subscriber(prov: &str, user: &str) -> reqwest::Response {
    reqwest::Client::new()
        .put(format!("http://{prov}/subscribers/{user}%40example.com"))
        .body(format!(
            r#"{{"impus":["sip:{user}@example.com"],"password":"pw"}}"#
        ))
        .send()
        .await
        .unwrap()
}

async fn subscriber_count(prov: &str) -> usize {
    let page: serde_json::Value = reqwest::get(format!("http://{prov}/subscribers?limit=10000"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    page["subscribers"].as_array().unwrap().len()
}

async fn assert_all_present(prov: &str, acknowledged: &[usize]) {
    let client = reqwest::Client::new();
    for n in acknowledged {
        let r = client
            .get(format!("http://{prov}/subscribers/{n}%40example.com"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "acknowledged subscriber {n} was lost");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_bulk_provisioning_loses_nothing_acknowledged() {
    let data = data_dir("kill9");
    let mut cmd = whitewater();
    cmd.arg("homestead").args(homestead_args(&data));
    let mut running = start(cmd);
    let prov = running.prov.clone();
    let load = tokio::spawn(async move { provision_until_failure(&prov, 32, usize::MAX).await.0 });
    // Kill mid-stream, once a good number of writes have been acknowledged.
    while subscriber_count(&running.prov).await < 300 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    running.child.kill().unwrap(); // SIGKILL
    running.child.wait().unwrap();
    let acknowledged = load.await.unwrap();
    // The server had committed 300 or more when it was killed; the clients may not yet
    // have read every answer, so fewer can count as acknowledged. What matters is below.
    assert!(
        acknowledged.len() >= 100,
        "only {} acknowledged",
        acknowledged.len()
    );

    let mut cmd = whitewater();
    cmd.arg("homestead").args(homestead_args(&data));
    let restarted = start(cmd);
    assert_all_present(&restarted.prov, &acknowledged).await;
    // And the data serves authentication after the restart.
    let n = acknowledged[0];
    let r = reqwest::Client::new()
        .get(format!(
            "http://{}/impi/{n}%40example.com/av/digest?impu=sip%3A{n}%40example.com",
            restarted.http
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    drop(restarted);
    let _ = std::fs::remove_dir_all(&data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_is_a_clear_error_and_loses_nothing_acknowledged() {
    let data = data_dir("fulldisk");
    // RLIMIT_FSIZE stands in for a full disk: writes past it fail with EFBIG, as they
    // would with ENOSPC, once SIGXFSZ is ignored (ignored signals survive exec).
    let program = env!("CARGO_BIN_EXE_whitewater");
    let args = homestead_args(&data).join(" ");
    let mut cmd = Command::new("sh");
    cmd.args([
        "-c",
        &format!("trap '' XFSZ; exec prlimit --fsize=4194304 -- {program} homestead {args}"),
    ])
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .env("WW_LOG", "error");
    let limited = start(cmd);
    let (acknowledged, failures) = provision_until_failure(&limited.prov, 8, 200_000).await;
    assert!(
        !acknowledged.is_empty(),
        "nothing was written before the disk filled"
    );
    assert!(
        acknowledged.len() < 200_000,
        "the file-size limit never bit"
    );

    // The write that hit the limit is a store error (502) naming the cause.
    assert!(
        failures
            .iter()
            .any(|(status, body)| *status == 502 && body.contains("File too large")),
        "{failures:?}"
    );
    // Later writes are refused too, naming the first failure and what to do.
    let r = put_subscriber(&limited.prov, "late").await;
    assert_eq!(r.status(), 503);
    let reason = r.text().await.unwrap();
    assert!(
        reason.contains("File too large") && reason.contains("free disk space"),
        "unclear error: {reason}"
    );
    drop(limited);

    let mut cmd = whitewater();
    cmd.arg("homestead").args(homestead_args(&data));
    let restarted = start(cmd);
    assert_all_present(&restarted.prov, &acknowledged).await;
    drop(restarted);
    let _ = std::fs::remove_dir_all(&data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provision_cli_is_idempotent_and_deletes() {
    let data = data_dir("cli");
    let mut cmd = whitewater();
    cmd.arg("homestead").args(homestead_args(&data));
    let running = start(cmd);
    let password = data.join("password");
    std::fs::write(&password, "s3cret\n").unwrap();
    let cli = |extra: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_whitewater"))
            .args([
                "provision",
                "--numbers",
                "6505550000-6505550199",
                "--domain",
                "example.com",
            ])
            .args(["--server", &format!("http://{}", running.prov)])
            .args(extra)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let password_arg = password.display().to_string();
    assert!(cli(&["--password-file", &password_arg]).contains("provisioned 200 subscribers"));
    assert!(cli(&["--password-file", &password_arg]).contains("provisioned 200 subscribers"));
    assert_eq!(subscriber_count(&running.prov).await, 200);
    // The password from the file is the one that authenticates.
    let av: serde_json::Value = reqwest::get(format!(
        "http://{}/impi/6505550123%40example.com/av?impu=sip%3A6505550123%40example.com",
        running.http
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(
        av["digest"]["ha1"],
        homestead::auth::digest_ha1("6505550123@example.com", "example.com", "s3cret")
    );
    assert!(cli(&["--delete"]).contains("deleted 200 subscribers"));
    assert_eq!(subscriber_count(&running.prov).await, 0);

    let out = Command::new(env!("CARGO_BIN_EXE_whitewater"))
        .args([
            "provision",
            "--numbers",
            "1-2",
            "--domain",
            "example.com",
            "--password-file",
        ])
        .arg(data.join("missing"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));
    drop(running);
    let _ = std::fs::remove_dir_all(&data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_in_one_serves_demo_subscribers_on_first_start() {
    let data = data_dir("aio");
    let sip = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let metrics = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut cmd = whitewater();
    cmd.arg("all-in-one")
        .args(homestead_args(&data))
        .args([
            "--listen",
            &sip.to_string(),
            "--cores",
            "0",
            "--metrics",
            &metrics.to_string(),
            "--management-http",
            "127.0.0.1:0",
        ])
        .args(["--demo-subscribers", "5"]);
    let running = start(cmd);
    let client = reqwest::Client::new();
    let mut listed = 0;
    for _ in 0..100 {
        listed = subscriber_count(&running.prov).await;
        if listed == 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(listed, 5);
    let av: serde_json::Value = client
        .get(format!(
            "http://{}/impi/6505550004%40example.com/av?impu=sip%3A6505550004%40example.com",
            running.http
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        av["digest"]["ha1"],
        homestead::auth::digest_ha1("6505550004@example.com", "example.com", "7kkzTyGW")
    );
    drop(running);
    let _ = std::fs::remove_dir_all(&data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_scylla_cluster_gets_503_with_the_reason_and_ping_answers() {
    let data = data_dir("scylla");
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut cmd = whitewater();
    cmd.arg("homestead").args(homestead_args(&data)).args([
        "--scylla-nodes",
        &dead.to_string(),
        "--scylla-timeout-ms",
        "300",
    ]);
    let running = start(cmd);
    let ping = reqwest::get(format!("http://{}/ping", running.http))
        .await
        .unwrap();
    assert_eq!(ping.status(), 200);
    let r = reqwest::get(format!(
        "http://{}/impi/alice%40example.com/av?impu=sip%3Aalice%40example.com",
        running.http
    ))
    .await
    .unwrap();
    assert_eq!(r.status(), 503);
    let reason = r.text().await.unwrap();
    assert!(
        reason.contains("ScyllaDB") && reason.contains(&dead.to_string()),
        "{reason}"
    );
    let put = put_subscriber(&running.prov, "alice").await;
    assert_eq!(put.status(), 503, "a write is refused, not acknowledged");
    drop(running);
    let _ = std::fs::remove_dir_all(&data);
}
