//! The per-transaction costs the engine pays on every call: matching a request to its
//! server transaction (key from a parsed message, table lookup), a table insert and
//! removal, a wheel insert and expiry, and the state machines of one INVITE round trip.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use sip::Message;
use txn::{
    ClientTransaction, Kind, ServerTransaction, TimerConfig, TimerWheel, TransactionTable,
    Transport, TxnKey,
};

const INVITE: &[u8] = include_bytes!("../../sip/tests/data/invite-950.sip");

fn benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("txn");
    let msg = Message::parse(INVITE).expect("fixture parses");
    g.bench_function("server_key", |b| {
        b.iter(|| TxnKey::server_for_request(black_box(&msg)).map(|k| k.as_bytes().len()))
    });
    let mut table = TransactionTable::with_limit(100_000);
    for n in 0..50_000u32 {
        let key = TxnKey::client(format!("z9hG4bK-{n}").as_bytes(), sip::Method::Invite);
        table.insert(key, n).expect("room");
    }
    let key = TxnKey::server_for_request(&msg).expect("key");
    g.bench_function("insert_find_remove_50k", |b| {
        b.iter(|| {
            let id = table.insert(black_box(key.clone()), 7).expect("room");
            let found = table.find(&key);
            table.remove(id);
            found
        })
    });
    let t0 = Instant::now();
    let mut wheel = TimerWheel::new(t0, Duration::from_millis(10), 4096);
    let mut now = t0;
    g.bench_function("wheel_insert_expire", |b| {
        b.iter(|| {
            now += Duration::from_millis(1);
            wheel.insert(now + Duration::from_millis(500), 1u32);
            let mut fired = 0;
            wheel.expire(now, |_| fired += 1);
            fired
        })
    });
    let config = TimerConfig::default();
    g.bench_function("invite_round_trip", |b| {
        b.iter(|| {
            let now = Instant::now();
            let mut server =
                ServerTransaction::new(Kind::Invite, Transport::Unreliable, config, now);
            let (mut client, _) =
                ClientTransaction::start(Kind::Invite, Transport::Unreliable, config, now);
            let _ = server.send_response(100, now);
            let _ = client.on_response(180, now);
            let _ = server.send_response(180, now);
            let _ = client.on_response(200, now);
            let _ = server.send_response(200, now);
            (client.poll_timeout(), server.poll_timeout())
        })
    });
    g.finish();
}

criterion_group!(table_benches, benches);
criterion_main!(table_benches);
