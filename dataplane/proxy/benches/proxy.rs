//! One whole call through a warm `ProxyCore`, in process: INVITE, 180, 200, ACK, BYE, 200,
//! with the 100 Trying and every relayed message written out. This is the proxy's cost per
//! call without the kernel; `bench/run proxy` measures it with the kernel and SIPp.

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use proxy::{ProxyConfig, ProxyCore};
use txn::TimerConfig;

const UAC: &str = "127.0.0.1:5080";

fn invite(n: u64) -> String {
    format!(
        "INVITE sip:bob@127.0.0.1:5070 SIP/2.0\r\nVia: SIP/2.0/UDP {UAC};branch=z9hG4bK-{n};rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:alice@127.0.0.1>;tag=a{n}\r\nTo: <sip:bob@127.0.0.1>\r\n\
         Call-ID: {n}@bench\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@{UAC}>\r\n\
         Content-Type: application/sdp\r\nContent-Length: 0\r\n\r\n"
    )
}

fn response(request: &[u8], status: &str, to_tag: bool) -> Vec<u8> {
    let text = std::str::from_utf8(request).expect("ascii");
    let mut out = format!("SIP/2.0 {status}\r\n");
    for line in text.split("\r\n").skip(1) {
        let lower = line.to_ascii_lowercase();
        if lower.starts_with("via:")
            || lower.starts_with("from:")
            || lower.starts_with("call-id:")
            || lower.starts_with("cseq:")
            || lower.starts_with("record-route:")
        {
            out.push_str(line);
            out.push_str("\r\n");
        } else if lower.starts_with("to:") {
            out.push_str(line);
            out.push_str(if to_tag { ";tag=b\r\n" } else { "\r\n" });
        }
    }
    out.push_str("Content-Length: 0\r\n\r\n");
    out.into_bytes()
}

fn in_dialog(method: &str, n: u64, cseq: u32) -> String {
    format!(
        "{method} sip:bob@127.0.0.1:5070 SIP/2.0\r\nVia: SIP/2.0/UDP {UAC};branch=z9hG4bK-{method}{n};rport\r\n\
         Max-Forwards: 70\r\nRoute: <sip:127.0.0.1:5060;lr>\r\nFrom: <sip:alice@127.0.0.1>;tag=a{n}\r\n\
         To: <sip:bob@127.0.0.1>;tag=b\r\nCall-ID: {n}@bench\r\nCSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n"
    )
}

fn call(core: &mut ProxyCore, now: Instant, n: u64) -> usize {
    let uac: SocketAddr = UAC.parse().expect("addr");
    let uas: SocketAddr = "127.0.0.1:5070".parse().expect("addr");
    let mut sent = 0;
    let mut forwarded = Vec::new();
    let mut step = |core: &mut ProxyCore, from: SocketAddr, bytes: &[u8], keep: bool| {
        core.on_datagram(now, from, bytes);
        forwarded.clear();
        for (t, b) in core.transmits() {
            sent += b.len();
            if keep && t.to == uas {
                forwarded.extend_from_slice(b);
            }
        }
        core.clear_transmits();
        forwarded.clone()
    };
    let out = step(core, uac, invite(n).as_bytes(), true);
    step(core, uas, &response(&out, "180 Ringing", true), false);
    step(core, uas, &response(&out, "200 OK", true), false);
    step(core, uac, in_dialog("ACK", n, 1).as_bytes(), false);
    let bye = step(core, uac, in_dialog("BYE", n, 2).as_bytes(), true);
    step(core, uas, &response(&bye, "200 OK", true), false);
    sent
}

fn benches(c: &mut Criterion) {
    let t0 = Instant::now();
    let config = ProxyConfig {
        listen: "127.0.0.1:5060".parse().expect("addr"),
        core: 0,
        cores: 1,
        max_transactions: 1 << 20,
        timers: TimerConfig::default(),
        timer_c: Duration::from_secs(180),
        overload: proxy::OverloadConfig::default(),
    };
    let mut core = ProxyCore::new(config, t0);
    let mut n = 0u64;
    let mut now = t0;
    c.bench_function("proxy/call", |b| {
        b.iter(|| {
            n += 1;
            // 40 s of simulated time per 4,000 calls keeps the table at a steady size.
            now += Duration::from_millis(10);
            core.on_timers(now);
            black_box(call(&mut core, now, n))
        })
    });
}

criterion_group!(proxy_benches, benches);
criterion_main!(proxy_benches);
