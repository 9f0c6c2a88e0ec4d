//! Real phones through the S-CSCF of `whitewater all-in-one`: baresip (Debian
//! `baresip-core`, driven headless through ctrl_tcp) and PJSIP's pjsua2 (PyPI
//! `pjsua2-python`) each register with a password and call the other; every call is
//! answered and hung up cleanly. The script `tests/peers/phone_calls.py` plays both users.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{DEMO_PASSWORD, Running, free_tcp_port, free_udp_ports, start_all_in_one, tempdir};

/// The Python with pjsua2 that `test.sh` prepares.
fn peers_python() -> PathBuf {
    let python = std::env::var_os("WW_PEERS_PYTHON").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("target/peers-venv/bin/python"),
        PathBuf::from,
    );
    assert!(
        python.exists(),
        "no Python with pjsua2 at {}: run ./test.sh, which installs pjsua2-python there",
        python.display()
    );
    python
}

fn peers() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers")
}

/// A baresip for `user`, registering through `scscf`; returns it with its ctrl_tcp port.
fn start_baresip(dir: &Path, scscf: std::net::SocketAddr, user: &str) -> (Running, u16) {
    let sip_port = free_udp_ports(0);
    let ctrl_port = free_tcp_port();
    let rtp_first = free_udp_ports(20);
    let config = std::fs::read_to_string(peers().join("baresip.config"))
        .expect("baresip.config")
        .replace("@SIP_PORT@", &sip_port.to_string())
        .replace("@CTRL_PORT@", &ctrl_port.to_string())
        .replace("@DIR@", dir.to_str().expect("utf-8"))
        .replace("@RTP_FIRST@", &rtp_first.to_string())
        .replace("@RTP_LAST@", &(rtp_first + 20).to_string());
    std::fs::write(dir.join("config"), config).expect("config");
    let account = format!(
        "<sip:{user}@example.com>;auth_user={user}@example.com;auth_pass={DEMO_PASSWORD};\
         outbound=\"sip:{scscf}\";regint=300;answermode=auto;audio_codecs=pcmu,pcma\n"
    );
    std::fs::write(dir.join("accounts"), account).expect("accounts");
    // The microphone: a tone long enough to outlast the calls.
    let sox = Command::new("sox")
        .args([
            "-n",
            "-r",
            "8000",
            "-c",
            "1",
            "-b",
            "16",
            "-e",
            "signed-integer",
        ])
        .arg(dir.join("tone8k.wav"))
        .args(["synth", "60", "sine", "440"])
        .status()
        .expect("run sox (Debian package sox)");
    assert!(sox.success(), "sox failed");
    let child = Command::new("baresip")
        .arg("-f")
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start baresip (Debian package baresip-core)");
    (Running(child), ctrl_port)
}

#[test]
fn baresip_and_pjsua2_register_and_call_each_other() {
    let aio = start_all_in_one(5, &[]);
    let dir = tempdir();
    let (_baresip, ctrl_port) = start_baresip(&dir, aio.listen, "6505550000");
    let pj_port = free_udp_ports(0);
    let mut script = Command::new(peers_python())
        .arg(peers().join("phone_calls.py"))
        .args([&aio.listen.to_string(), "example.com", "6505550000"])
        .arg(ctrl_port.to_string())
        .arg("6505550001")
        .arg(pj_port.to_string())
        .arg(DEMO_PASSWORD)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run phone_calls.py");
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(status) = script.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = script.kill();
            break script.wait().expect("wait");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut out = String::new();
    let mut err = String::new();
    script.stdout.take().map(|mut s| s.read_to_string(&mut out));
    script.stderr.take().map(|mut s| s.read_to_string(&mut err));
    assert!(
        status.success() && out.lines().any(|l| l == "PASS"),
        "phones failed ({status:?}):\n{out}\n{err}"
    );
}
