//! Parses arbitrary bytes as a datagram and as a stream message; for every message that parses,
//! runs validation, every typed accessor, and checks that an unedited `Editor` round trip
//! re-parses to the same message.
#![no_main]

use std::hint::black_box;

use libfuzzer_sys::fuzz_target;
use sip::{EditError, Editor, Framing, HeaderName as H, MAX_HEADERS, Message, ResponseBuilder};

fuzz_target!(|data: &[u8]| {
    let _ = black_box(sip::inspect(data));
    for framing in [Framing::Datagram, Framing::Stream] {
        if let Ok(msg) = Message::parse_framed(data, framing) {
            check(&msg);
        }
    }
});

fn check(msg: &Message<'_>) {
    let valid = msg.validate().is_ok();
    let _ = black_box(msg.proxy_precheck(&[b"path"]));
    let _ = black_box((msg.request_uri(), msg.call_id(), msg.cseq(), msg.from(), msg.to()));
    let _ = black_box((msg.max_forwards(), msg.expires(), msg.min_expires()));
    let _ = black_box((msg.content_type(), msg.top_via(), msg.p_served_user(), msg.event()));
    let _ = black_box((msg.subscription_state(), msg.p_access_network_info()));
    let _ = black_box((msg.p_charging_vector(), msg.p_charging_function_addresses()));
    let _ = black_box((msg.supports(b"path"), msg.option_tags(H::Require).count()));
    for v in msg.vias().flatten() {
        let _ = black_box((v.branch(), v.has_rfc3261_branch(), v.received(), v.rport()));
    }
    for c in msg.contacts().flatten() {
        let _ = black_box((c.q(), c.expires(), c.instance(), c.reg_id(), c.pub_gruu()));
    }
    let addrs = msg.routes().chain(msg.record_routes()).chain(msg.paths());
    let addrs = addrs.chain(msg.service_routes()).chain(msg.p_asserted_identities());
    for a in addrs.chain(msg.p_associated_uris()).flatten() {
        let _ = black_box((a.display_name(), a.tag(), a.uri().is_loose_route()));
    }
    let _ = black_box(msg.p_visited_network_ids().count());
    let _ = black_box(msg.unsupported_proxy_requires(&[]).count());
    for a in msg.auth(H::Authorization).chain(msg.auth(H::WwwAuthenticate)).flatten() {
        let _ = black_box((a.username(), a.realm(), a.nonce(), a.nonce_count(), a.stale()));
    }

    // Round trip: an Editor with no edits must reproduce the message (plus a Content-Length
    // when it had none), and the copy must parse even with stream framing, unless that
    // Content-Length would exceed the parser's header limit, which the Editor must refuse.
    let mut out = Vec::new();
    let added = usize::from(msg.content_length().is_none());
    if msg.headers().len() + added > MAX_HEADERS {
        assert_eq!(Editor::new(msg).write(&mut out), Err(EditError::TooManyHeaders));
        return;
    }
    Editor::new(msg).write(&mut out).expect("write without edits");
    let again = Message::parse_framed(&out, Framing::Stream).expect("round trip re-parses");
    assert_eq!(again.start_line(), msg.start_line());
    assert_eq!(again.headers().len(), msg.headers().len() + added);
    for (a, b) in msg.headers().zip(again.headers()) {
        assert_eq!((a.name(), a.raw_name(), a.value()), (b.name(), b.raw_name(), b.value()));
    }
    assert_eq!(again.body(), msg.body());
    assert_eq!(again.validate().is_ok(), valid, "validity changed on round trip");

    // A response to a valid request must itself parse.
    if valid && msg.is_request() {
        out.clear();
        let mut rb = ResponseBuilder::new(msg, 400, b"Bad Request").to_tag(b"fz1");
        rb.header("Warning", b"399 fuzz \"x\"");
        rb.write(&mut out).expect("response to a valid request");
        Message::parse_framed(&out, Framing::Stream).expect("built response parses");
    }
}
