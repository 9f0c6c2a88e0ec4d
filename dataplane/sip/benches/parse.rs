//! The SIP core's hot paths on a 954-byte INVITE with SDP: the structural parse, typed access
//! to the fields a proxy reads, full validation, and the whole proxy transform
//! (parse → checks → edits → serialize). Two reference points measured in the same run give
//! the ratios docs/performance.md reports (absolute times on a shared machine drift): a
//! memchr scan for every line feed of the message, the least any line-oriented parser does, and a
//! plain copy of the message, the least any forwarder does.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sip::{Editor, Message, ViaSpec};

const INVITE: &[u8] = include_bytes!("../tests/data/invite-950.sip");

const VIA: ViaSpec<'static> = ViaSpec {
    transport: b"UDP",
    host: b"203.0.113.5",
    port: Some(5054),
    branch: b"z9hG4bK-ww-0123456789abcdef",
    rport: true,
};

fn parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("sip");
    g.throughput(Throughput::Bytes(INVITE.len() as u64));
    g.bench_function("parse", |b| {
        b.iter(|| Message::parse(black_box(INVITE)).map(|m| m.headers().len()))
    });
    let msg = Message::parse(INVITE).expect("fixture parses");
    g.bench_function("typed_access", |b| {
        b.iter(|| {
            let m = black_box(&msg);
            let branch = m.top_via().ok().and_then(|v| v.branch()).map(<[u8]>::len);
            let call_id = m.call_id().map(<[u8]>::len);
            let cseq = m.cseq().map(|c| c.seq);
            let from_tag = m.from().ok().and_then(|f| f.tag()).map(<[u8]>::len);
            let to_tag = m.to().ok().and_then(|t| t.tag()).map(<[u8]>::len);
            let route = m
                .routes()
                .next()
                .map(|r| r.map(|r| r.uri().is_loose_route()));
            let max_forwards = m.max_forwards();
            (branch, call_id, cseq, from_tag, to_tag, route, max_forwards)
        })
    });
    g.bench_function("validate", |b| b.iter(|| black_box(&msg).validate()));
    let mut out = Vec::with_capacity(4096);
    g.bench_function("proxy_transform", |b| {
        b.iter(|| {
            out.clear();
            let m = Message::parse(black_box(INVITE)).expect("parses");
            m.proxy_precheck(&[]).expect("forwardable");
            let via = m.top_via().expect("via");
            black_box(via.branch());
            black_box((m.call_id().is_ok(), m.cseq().is_ok()));
            Editor::new(&m)
                .add_via(VIA)
                .and_then(|e| e.decrement_max_forwards())
                .and_then(|e| e.pop_route())
                .and_then(|e| e.add_record_route(b"sip:203.0.113.5:5054;lr"))
                .and_then(|e| e.write(&mut out))
                .expect("edits apply")
        })
    });
    g.bench_function("reference/line_scan", |b| {
        b.iter(|| memchr::memchr_iter(b'\n', black_box(INVITE)).count())
    });
    g.bench_function("reference/copy", |b| {
        b.iter(|| {
            out.clear();
            out.extend_from_slice(black_box(INVITE));
            out.len()
        })
    });
    g.finish();
}

criterion_group!(benches, parse);
criterion_main!(benches);
