//! The bounded transaction table and the timer wheel.

use std::time::{Duration, Instant};

use sip::Method;
use txn::{InsertError, TableFull, TimerWheel, TransactionTable, TxnKey};

fn key(n: u32) -> TxnKey {
    TxnKey::client(format!("z9hG4bK-{n}").as_bytes(), Method::Invite)
}

#[test]
fn table_is_bounded_and_finds_exactly() {
    let mut table = TransactionTable::with_limit(2);
    let a = table.insert(key(1), "a").expect("room");
    let b = table.insert(key(2), "b").expect("room");
    assert_eq!(
        table.insert(key(3), "c"),
        Err(InsertError::Full(TableFull(2)))
    );
    assert!(matches!(table.insert(key(1), "dup"), Err(InsertError::Duplicate(d)) if d.0 == a));
    assert_eq!(table.find(&key(2)), Some(b));
    assert_eq!(table.find(&key(3)), None);
    assert_eq!(table.get(a), Some(&"a"));
    assert_eq!(table.key(b), Some(&key(2)));
    assert_eq!(table.remove(a), Some("a"));
    assert_eq!(table.len(), 1);
    assert_eq!(table.find(&key(1)), None);
    table.insert(key(3), "c").expect("room after a removal");
}

#[test]
fn a_stale_handle_never_reaches_the_new_occupant_of_its_slot() {
    let mut table = TransactionTable::with_limit(1);
    let old = table.insert(key(1), 1).expect("room");
    table.remove(old);
    let new = table.insert(key(2), 2).expect("room");
    assert_ne!(old, new);
    assert_eq!(table.get(old), None);
    assert_eq!(table.get_mut(old), None);
    assert_eq!(table.remove(old), None);
    assert_eq!(table.get(new), Some(&2));
    assert_eq!(table.iter().count(), 1);
}

#[test]
fn wheel_fires_in_order_never_early_at_most_a_tick_late() {
    let t0 = Instant::now();
    let tick = Duration::from_millis(10);
    let mut wheel = TimerWheel::new(t0, tick, 64);
    for (ms, id) in [(500u64, 1u32), (5, 2), (1500, 3), (0, 4), (32_000, 5)] {
        wheel.insert(t0 + Duration::from_millis(ms), id);
    }
    assert_eq!(wheel.len(), 5);
    let mut fired = Vec::new();
    let mut now = t0;
    while !wheel.is_empty() {
        now = wheel.next_expiry().expect("pending");
        wheel.expire(now, |id| fired.push((id, now)));
    }
    let at = |id: u32| fired.iter().find(|f| f.0 == id).expect("fired").1 - t0;
    assert_eq!(
        fired.iter().map(|f| f.0).collect::<Vec<_>>(),
        [4, 2, 1, 3, 5]
    );
    for (id, ms) in [(4u32, 0u64), (2, 5), (1, 500), (3, 1500), (5, 32_000)] {
        let due = Duration::from_millis(ms);
        assert!(
            at(id) >= due && at(id) <= due + tick,
            "timer {id} at {:?}",
            at(id)
        );
    }
    assert!(now >= t0 + Duration::from_secs(32));
}

#[test]
fn wheel_survives_a_jump_of_many_turns() {
    let t0 = Instant::now();
    let mut wheel = TimerWheel::new(t0, Duration::from_millis(1), 8);
    for ms in 0..100u64 {
        wheel.insert(t0 + Duration::from_millis(ms * 7), ms);
    }
    let mut fired = Vec::new();
    wheel.expire(t0 + Duration::from_millis(350), |id| fired.push(id));
    fired.sort_unstable();
    assert_eq!(fired, (0..=50).collect::<Vec<_>>());
    wheel.expire(t0 + Duration::from_secs(10), |id| fired.push(id));
    assert_eq!(fired.len(), 100);
    assert!(wheel.is_empty());
    assert_eq!(wheel.next_expiry(), None);
}

#[test]
fn a_deadline_in_the_past_fires_on_the_next_expiry() {
    let t0 = Instant::now();
    let mut wheel = TimerWheel::new(t0, Duration::from_millis(10), 16);
    let later = t0 + Duration::from_secs(1);
    wheel.expire(later, |_: u8| unreachable!("empty"));
    wheel.insert(t0, 7u8);
    let mut fired = None;
    wheel.expire(later, |id| fired = Some(id));
    assert_eq!(fired, Some(7));
}

#[test]
fn a_steady_load_stops_allocating_once_the_most_timers_are_pending() {
    // 40 timers a tick, each 3.2 turns ahead, for 20 turns: once the first deadlines are
    // reached, expired nodes are reused and the arena never grows again.
    let t0 = Instant::now();
    let tick = Duration::from_millis(10);
    let mut wheel = TimerWheel::new(t0, tick, 100);
    let ahead = Duration::from_millis(3_200);
    let mut fired = 0u64;
    let mut most_pending = 0;
    let mut capacity_after_ramp = None;
    for step in 0..2_000u32 {
        let now = t0 + tick * step;
        wheel.expire(now, |at: Instant| {
            assert!(at <= now, "fired early");
            assert!(now - at <= tick, "fired late");
            fired += 1;
        });
        for _ in 0..40 {
            wheel.insert(now + ahead, now + ahead);
        }
        most_pending = most_pending.max(wheel.len());
        if step == 400 {
            capacity_after_ramp = Some(wheel.capacity());
        }
    }
    assert_eq!(capacity_after_ramp, Some(wheel.capacity()));
    assert_eq!(wheel.capacity(), most_pending);
    assert_eq!(fired + wheel.len() as u64, 2_000 * 40);
}
