//! Requests the proxy originates itself (the NOTIFYs of a subscription the S-CSCF serves):
//! sent with our Via in a client transaction, retransmitted, and their outcome reported.

mod common;

use std::time::Duration;

use common::*;
use proxy::Target;

const NOTIFY: &str = "NOTIFY sip:alice@127.0.0.1:6000 SIP/2.0\r\n\
Max-Forwards: 70\r\n\
From: <sip:alice@example.com>;tag=scscf\r\n\
To: <sip:alice@example.com>;tag=ue\r\n\
Call-ID: sub-1\r\n\
CSeq: 2 NOTIFY\r\n\
Event: reg\r\n\
Subscription-State: active;expires=600\r\n\
Content-Length: 0\r\n\r\n";

fn target() -> Target {
    Target::to_uri(b"sip:alice@127.0.0.1:6000").expect("an IP target")
}

#[test]
fn an_originated_request_gets_our_via_and_its_answer_is_reported() {
    let mut h = Harness::new();
    let now = h.now;
    let id = h
        .core
        .originate(now, NOTIFY.as_bytes(), &target())
        .expect("sent");
    let sent = one(h.drain_now());
    assert_downstream_request(&sent, "NOTIFY", UAS);
    assert_eq!(sent.vias().len(), 1, "our Via only");
    assert_eq!(sent.max_forwards(), 69);
    assert!(
        !sent.has_header("Record-Route"),
        "in-dialog: no Record-Route"
    );
    none(&h.send(UAS, &response_to(&sent.bytes, 200, None, &[])));
    let mut results = Vec::new();
    h.core.take_originated(&mut results);
    assert_eq!(results, [(id, 200)]);
    none(&h.advance(Duration::from_secs(40)));
    assert_eq!(h.core.active_transactions(), 0);
}

#[test]
fn an_unanswered_originated_request_is_retransmitted_then_reported_as_408() {
    let mut h = Harness::new();
    let now = h.now;
    let id = h
        .core
        .originate(now, NOTIFY.as_bytes(), &target())
        .expect("sent");
    one(h.drain_now());
    let resent = h.advance(Duration::from_secs(33));
    assert!(
        resent.len() >= 5,
        "Timer E retransmissions: {}",
        resent.len()
    );
    assert!(resent.iter().all(|s| s.to == addr(UAS)));
    let mut results = Vec::new();
    h.core.take_originated(&mut results);
    assert_eq!(results, [(id, 408)]);
    assert_eq!(h.core.active_transactions(), 0);
}

#[test]
fn a_481_is_reported_so_the_subscription_can_end() {
    let mut h = Harness::new();
    let now = h.now;
    let id = h
        .core
        .originate(now, NOTIFY.as_bytes(), &target())
        .expect("sent");
    let sent = one(h.drain_now());
    none(&h.send(UAS, &response_to(&sent.bytes, 481, None, &[])));
    let mut results = Vec::new();
    h.core.take_originated(&mut results);
    assert_eq!(results, [(id, 481)]);
}
