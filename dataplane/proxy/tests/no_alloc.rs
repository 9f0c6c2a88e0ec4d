//! Proves that a warm proxy core handles complete calls without touching the allocator:
//! INVITE, 100, 180, 200, ACK, BYE, 200, and the timers that end every transaction.
//!
//! A counting global allocator tallies allocations on this thread only while the core
//! runs; the test's own work (writing the SIP text, copying what the core sent) is not
//! counted. Set `NO_ALLOC_BACKTRACE=1` to print the stack of every counted allocation.

// Counting allocations needs a `GlobalAlloc`, an unsafe trait: the workspace denies
// unsafe_code, so it is allowed in this test file only. Every call is forwarded unchanged
// to the system allocator.
#![allow(unsafe_code)]

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{BOB, LISTEN, RECORD_ROUTE, Request, TIMER_C, UAC, UAS, addr, response_to};
use proxy::{ProxyConfig, ProxyCore};
use txn::TimerConfig;

struct CountingAllocator;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static TRACE: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn count() {
    // `try_with`: the allocator also runs while thread-locals are torn down.
    if COUNTING.try_with(Cell::get) != Ok(true) {
        return;
    }
    let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
    if TRACE.try_with(Cell::get) == Ok(true) {
        // Not counted, and not traced again while the backtrace itself allocates.
        COUNTING.set(false);
        eprintln!(
            "allocation in the core:\n{}",
            std::backtrace::Backtrace::force_capture()
        );
        COUNTING.set(true);
    }
}

// SAFETY: every call is forwarded unchanged to the system allocator; the counters are
// const-initialised thread-local Cells without destructors, which never allocate.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

/// Runs `f` with allocations counted.
fn counted<R>(f: impl FnOnce() -> R) -> R {
    COUNTING.set(true);
    let result = f();
    COUNTING.set(false);
    result
}

/// Time between two calls: four timer-wheel ticks of 10 ms. 4096 slots are a multiple
/// of 4, so every turn of the wheel loads the same slots the same way, and the warm-up
/// (longer than 64·T1 plus one turn) has already grown each slot to its steady size.
const CALL_SPACING: Duration = Duration::from_millis(40);
const WARM_UP_CALLS: usize = 2_000;
const MEASURED_CALLS: usize = 1_000;

struct Driver {
    core: ProxyCore,
    now: Instant,
    uac: SocketAddr,
    uas: SocketAddr,
}

impl Driver {
    fn new() -> Self {
        let now = Instant::now();
        let config = ProxyConfig {
            listen: addr(LISTEN),
            core: 0,
            cores: 1,
            max_transactions: 10_000,
            timers: TimerConfig::default(),
            timer_c: TIMER_C,
            overload: proxy::OverloadConfig::default(),
        };
        Self {
            core: ProxyCore::new(config, now),
            now,
            uac: addr(UAC),
            uas: addr(UAS),
        }
    }

    /// Feeds one datagram and "sends" what comes out, counted; then copies it out for the
    /// test, not counted.
    fn feed(&mut self, from: SocketAddr, datagram: &[u8]) -> Vec<(SocketAddr, Vec<u8>)> {
        let now = self.now;
        counted(|| {
            self.core.on_datagram(now, from, datagram);
            let sent: usize = self.core.transmits().map(|(_, b)| b.len()).sum();
            std::hint::black_box(sent);
        });
        let out = self
            .core
            .transmits()
            .map(|(t, b)| (t.to, b.to_vec()))
            .collect();
        counted(|| self.core.clear_transmits());
        out
    }

    fn tick(&mut self, by: Duration) {
        self.now += by;
        let now = self.now;
        counted(|| self.core.on_timers(now));
        assert_eq!(self.core.transmits().count(), 0, "no retransmission");
    }

    /// One complete call, every step checked; then the clock moves on.
    fn call(&mut self, i: usize) {
        let (uac, uas) = (self.uac, self.uas);
        let call_id = format!("call-{i}@127.0.0.1");
        let invite = Request::invite()
            .branch(&format!("z9hG4bK-inv-{i}"))
            .call_id(&call_id)
            .build();
        let out = self.feed(uac, &invite);
        assert_eq!(out.len(), 2, "100 Trying and the INVITE");
        assert_eq!((out[0].0, out[1].0), (uac, uas));
        let fwd = out[1].1.clone();

        let tag = format!("bob-{i}");
        assert!(
            self.feed(uas, &response_to(&fwd, 100, None, &[]))
                .is_empty()
        );
        for status in [180, 200] {
            let out = self.feed(uas, &response_to(&fwd, status, Some(&tag), &[]));
            assert_eq!(out.len(), 1);
            assert_eq!(out[0].0, uac);
        }

        let ack = Request::new("ACK", BOB)
            .branch(&format!("z9hG4bK-ack-{i}"))
            .call_id(&call_id)
            .in_dialog(&tag)
            .route(RECORD_ROUTE)
            .build();
        let out = self.feed(uac, &ack);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].0, uas);

        let bye = Request::new("BYE", BOB)
            .branch(&format!("z9hG4bK-bye-{i}"))
            .call_id(&call_id)
            .cseq(2)
            .in_dialog(&tag)
            .route(RECORD_ROUTE)
            .build();
        let out = self.feed(uac, &bye);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].0, uas);
        let out = self.feed(uas, &response_to(&out[0].1, 200, None, &[]));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].0, uac);

        self.tick(CALL_SPACING);
    }

    /// Feeds a datagram that must produce nothing.
    fn absorbed(&mut self, from: SocketAddr, datagram: &[u8]) {
        let out = self.feed(from, datagram);
        assert!(out.is_empty(), "absorbed");
    }

    /// The datagram sent to `to` among `out`.
    fn to(out: &[(SocketAddr, Vec<u8>)], to: SocketAddr) -> Vec<u8> {
        let mut matching = out.iter().filter(|(a, _)| *a == to);
        let (_, bytes) = matching.next().expect("one datagram");
        assert!(matching.next().is_none(), "only one datagram");
        bytes.clone()
    }

    /// One of four flows by `i % 4` (four, so the load repeats every 16 wheel ticks and
    /// every turn of the wheel looks the same): a plain call; a call with an INVITE and a
    /// 2xx retransmitted; a 486 with both ACKs; a CANCEL after 180, then 487 and both ACKs.
    fn mixed_call(&mut self, i: usize) {
        if i % 4 == 0 {
            return self.call(i);
        }
        let (uac, uas) = (self.uac, self.uas);
        let call_id = format!("call-{i}@127.0.0.1");
        let branch = format!("z9hG4bK-inv-{i}");
        let invite = Request::invite().branch(&branch).call_id(&call_id).build();
        let out = self.feed(uac, &invite);
        assert_eq!(out.len(), 2, "100 Trying and the INVITE");
        let fwd = Self::to(&out, uas);
        let tag = format!("bob-{i}");
        let ringing = response_to(&fwd, 180, Some(&tag), &[]);
        let ack = |tag: &str| {
            Request::new("ACK", BOB)
                .branch(&branch)
                .call_id(&call_id)
                .in_dialog(tag)
                .build()
        };
        match i % 4 {
            1 => {
                Self::to(&self.feed(uas, &ringing), uac);
                // The UAC retransmits its INVITE: it gets the 180 again.
                Self::to(&self.feed(uac, &invite), uac);
                let ok = response_to(&fwd, 200, Some(&tag), &[]);
                Self::to(&self.feed(uas, &ok), uac);
                // The UAS retransmits its 200: forwarded again (RFC 6026).
                Self::to(&self.feed(uas, &ok), uac);
                let ack = Request::new("ACK", BOB)
                    .branch(&format!("z9hG4bK-ack-{i}"))
                    .call_id(&call_id)
                    .in_dialog(&tag)
                    .route(RECORD_ROUTE)
                    .build();
                Self::to(&self.feed(uac, &ack), uas);
            }
            2 => {
                let busy = response_to(&fwd, 486, Some(&tag), &[]);
                let out = self.feed(uas, &busy);
                assert_eq!(out.len(), 2, "486 up, ACK down");
                Self::to(&out, uas);
                Self::to(&out, uac);
                self.absorbed(uac, &ack(&tag));
            }
            _ => {
                Self::to(&self.feed(uas, &ringing), uac);
                let cancel = Request::new("CANCEL", BOB)
                    .branch(&branch)
                    .call_id(&call_id)
                    .build();
                let out = self.feed(uac, &cancel);
                assert_eq!(out.len(), 2, "200 up, CANCEL down");
                Self::to(&out, uac);
                let cancel = Self::to(&out, uas);
                self.absorbed(uas, &response_to(&cancel, 200, Some(&tag), &[]));
                let terminated = response_to(&fwd, 487, Some(&tag), &[]);
                let out = self.feed(uas, &terminated);
                assert_eq!(out.len(), 2, "487 up, ACK down");
                self.absorbed(uac, &ack(&tag));
            }
        }
        self.tick(CALL_SPACING);
    }
}

#[test]
fn the_counter_counts() {
    let n = ALLOCATIONS.get();
    let v = counted(|| std::hint::black_box(Vec::<u8>::with_capacity(64)));
    assert_eq!(ALLOCATIONS.get(), n + 1);
    drop(v);
    let _ = std::hint::black_box(Vec::<u8>::with_capacity(64));
    assert_eq!(ALLOCATIONS.get(), n + 1, "not counted outside `counted`");
}

#[test]
fn warm_core_handles_complete_calls_without_allocating() {
    let mut driver = Driver::new();
    for i in 0..WARM_UP_CALLS {
        driver.call(i);
    }
    assert!(
        driver.core.stats().transactions_created > driver.core.active_transactions() as u64,
        "the warm-up ran long enough for transactions to end"
    );

    TRACE.set(std::env::var_os("NO_ALLOC_BACKTRACE").is_some());
    ALLOCATIONS.set(0);
    for i in WARM_UP_CALLS..WARM_UP_CALLS + MEASURED_CALLS {
        driver.call(i);
    }
    let allocations = ALLOCATIONS.get();
    TRACE.set(false);

    // Everything ends once the timers have run out.
    for _ in 0..1_000 {
        driver.tick(CALL_SPACING);
    }
    assert_eq!(driver.core.active_transactions(), 0);
    let stats = driver.core.stats();
    let calls = (WARM_UP_CALLS + MEASURED_CALLS) as u64;
    assert_eq!(stats.transactions_created, 2 * calls);
    assert_eq!(stats.retransmissions, 0);
    assert_eq!(stats.parse_errors, 0);

    assert_eq!(
        allocations, 0,
        "allocations in {MEASURED_CALLS} calls on a warm core"
    );
}

#[test]
fn warm_core_handles_retransmissions_failures_and_cancels_without_allocating() {
    let mut driver = Driver::new();
    for i in 0..WARM_UP_CALLS {
        driver.mixed_call(i);
    }
    TRACE.set(std::env::var_os("NO_ALLOC_BACKTRACE").is_some());
    ALLOCATIONS.set(0);
    for i in WARM_UP_CALLS..WARM_UP_CALLS + MEASURED_CALLS {
        driver.mixed_call(i);
    }
    let allocations = ALLOCATIONS.get();
    TRACE.set(false);

    for _ in 0..1_000 {
        driver.tick(CALL_SPACING);
    }
    assert_eq!(driver.core.active_transactions(), 0);
    let stats = driver.core.stats();
    assert_eq!(stats.retransmissions, 0);
    assert_eq!(stats.parse_errors, 0);
    assert!(stats.absorbed >= (WARM_UP_CALLS + MEASURED_CALLS) as u64 / 2);

    assert_eq!(
        allocations, 0,
        "allocations in {MEASURED_CALLS} mixed calls on a warm core"
    );
}
