//! Proves the proxy path allocates nothing: parsing, validation, typed access, the proxy's
//! edits and serialization into a reused buffer, a response, and stream framing.
//!
//! A counting global allocator tallies allocations per thread, so the test harness's own
//! threads cannot disturb the count.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use sip::{Deframer, Editor, Frame, Framing, HeaderName, Message, ResponseBuilder, ViaSpec};

struct CountingAllocator;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: every call is forwarded unchanged to the system allocator; the counter is a
// const-initialised thread-local Cell, which never allocates itself.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

fn allocations_during(f: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.with(Cell::get);
    f();
    ALLOCATIONS.with(Cell::get) - before
}

const INVITE: &[u8] = include_bytes!("data/invite-950.sip");

fn proxy_transform(datagram: &[u8], out: &mut Vec<u8>) {
    out.clear();
    let msg = Message::parse(datagram).expect("parses");
    msg.validate().expect("valid");
    msg.proxy_precheck(&[]).expect("forwardable");
    let via = msg.top_via().expect("via");
    assert!(via.has_rfc3261_branch());
    assert!(msg.call_id().is_ok() && msg.cseq().is_ok());
    assert!(msg.from().expect("from").tag().is_some());
    let route = msg.routes().next().expect("route").expect("valid route");
    assert!(route.uri().is_loose_route());
    Editor::new(&msg)
        .add_via(ViaSpec {
            transport: b"UDP",
            host: b"203.0.113.5",
            port: Some(5054),
            branch: b"z9hG4bK-ww-0123456789abcdef",
            rport: true,
        })
        .and_then(|e| e.decrement_max_forwards())
        .and_then(|e| e.pop_route())
        .and_then(|e| e.add_record_route(b"sip:203.0.113.5:5054;lr"))
        .and_then(|e| e.write(out))
        .expect("edits apply");
}

#[test]
fn proxy_path_does_not_allocate() {
    let mut out = Vec::with_capacity(4096);
    proxy_transform(INVITE, &mut out);
    let n = allocations_during(|| {
        for _ in 0..100 {
            proxy_transform(INVITE, &mut out);
        }
    });
    assert_eq!(n, 0, "allocations on the proxy path");
    assert!(
        Message::parse(&out)
            .expect("output parses")
            .validate()
            .is_ok()
    );
}

#[test]
fn response_and_framing_do_not_allocate() {
    let mut out = Vec::with_capacity(4096);
    let mut stream = INVITE.to_vec();
    stream.extend_from_slice(b"\r\n\r\n");
    stream.extend_from_slice(INVITE);
    let n = allocations_during(|| {
        let msg = Message::parse(INVITE).expect("parses");
        let mut trying = ResponseBuilder::new(&msg, 100, b"Trying");
        assert!(trying.header("Server", b"Whitewater"));
        trying.write(&mut out).expect("100");
        out.clear();
        ResponseBuilder::new(&msg, 486, b"Busy Here")
            .to_tag(b"ww-7f3a")
            .write(&mut out)
            .expect("486");
        let mut deframer = Deframer::default();
        let mut buf = &stream[..];
        let mut messages = 0;
        while !buf.is_empty() {
            let d = deframer.poll(buf);
            if let Ok(Frame::Message { len }) = d.frame {
                let m = Message::parse_framed(&buf[..len], Framing::Stream).expect("framed");
                assert!(m.header(HeaderName::ContentType).is_some());
                messages += 1;
            }
            buf = &buf[d.consumed..];
        }
        assert_eq!(messages, 2);
    });
    assert_eq!(n, 0, "allocations building responses and framing");
}
