//! Overload control: a burst of initial requests beyond the token bucket gets 503 with
//! Retry-After; OPTIONS, in-dialog requests, ACK and CANCEL are never shed; an initial
//! request that waited too long in the socket is dropped unparsed (UDP) or refused (TCP).

mod common;

use std::time::Duration;

use common::*;
use proxy::{OverloadConfig, Protocol};

fn small_bucket() -> Harness {
    Harness::with_config(
        1024,
        OverloadConfig {
            max_tokens: 3.0,
            // 50 ms of 60 per second is the bucket's 3 tokens.
            initial_rate: 60.0,
            ..OverloadConfig::default()
        },
    )
}

fn invite(n: u32) -> Vec<u8> {
    Request::invite()
        .branch(&format!("z9hG4bK-burst-{n}"))
        .call_id(&format!("burst-{n}@127.0.0.1"))
        .build()
}

#[test]
fn a_burst_beyond_the_bucket_is_answered_503_and_the_rest_forwarded() {
    let mut h = small_bucket();
    let mut forwarded = 0;
    let mut refused = 0;
    for n in 0..10 {
        for sent in h.send(UAC, &invite(n)) {
            match sent.status() {
                Some(503) => {
                    assert_eq!(sent.header("Retry-After"), "2");
                    refused += 1;
                }
                Some(100) => {}
                Some(other) => panic!("unexpected {other}"),
                None => forwarded += 1,
            }
        }
    }
    assert_eq!((forwarded, refused), (3, 7));
    assert_eq!(h.core.stats().overload_rejections, 7);
    // Tokens come back at the refill rate: 60 per second.
    h.advance(Duration::from_millis(100));
    let sent = h.send(UAC, &invite(100));
    assert!(
        sent.iter().any(|s| s.status().is_none()),
        "forwarded after refill"
    );
}

#[test]
fn options_in_dialog_requests_ack_and_cancel_are_never_shed() {
    let mut h = small_bucket();
    for n in 0..3 {
        h.send(UAC, &invite(n));
    }
    assert!(
        h.send(UAC, &invite(3))
            .iter()
            .any(|s| s.status() == Some(503))
    );
    let options = Request::new("OPTIONS", "sip:bob@127.0.0.1:6000").branch("z9hG4bK-opt");
    assert_downstream_request(&one(h.send(UAC, &options.build())), "OPTIONS", UAS);
    let bye = Request::new("BYE", "sip:bob@127.0.0.1:6000")
        .branch("z9hG4bK-bye")
        .in_dialog("totag");
    assert_downstream_request(&one(h.send(UAC, &bye.build())), "BYE", UAS);
    let ack = Request::new("ACK", "sip:bob@127.0.0.1:6000")
        .branch("z9hG4bK-ack")
        .cseq(1)
        .in_dialog("totag");
    assert_downstream_request(&one(h.send(UAC, &ack.build())), "ACK", UAS);
    let cancel = Request::new("CANCEL", "sip:bob@127.0.0.1:6000").branch("z9hG4bK-nothing");
    assert_downstream_request(&one(h.send(UAC, &cancel.build())), "CANCEL", UAS);
    assert_eq!(h.core.stats().overload_rejections, 1);
}

#[test]
fn the_ack_for_a_503_ends_at_the_proxy() {
    let mut h = small_bucket();
    for n in 0..3 {
        h.send(UAC, &invite(n));
    }
    let refused = h.send(UAC, &invite(3));
    let busy = refused
        .iter()
        .find(|s| s.status() == Some(503))
        .expect("503");
    let tag = busy.to_tag().expect("the 503 carries our To tag");
    let ack = Request::new("ACK", "sip:bob@127.0.0.1:6000")
        .branch("z9hG4bK-burst-3")
        .call_id("burst-3@127.0.0.1")
        .cseq(1)
        .in_dialog(&tag)
        .build();
    let absorbed = h.core.stats().absorbed;
    assert!(h.send(UAC, &ack).is_empty(), "the ACK is not forwarded");
    assert_eq!(h.core.stats().absorbed, absorbed + 1);
}

/// A core whose monitor found it behind: a period of requests that all waited 50 ms,
/// five times the target.
fn behind() -> Harness {
    let mut h = Harness::new();
    for n in 100..130 {
        h.send_queued(Protocol::Udp, UAC, &invite(n), Duration::from_millis(50));
    }
    h
}

#[test]
fn a_lone_late_request_on_a_core_that_is_not_behind_is_served() {
    // It waited through a stall (a fresh process faulting its pages in): nothing queues
    // behind it, and dropping it would cost its sender a retransmission.
    let mut h = Harness::new();
    let sent = h.send_queued(Protocol::Udp, UAC, &invite(1), Duration::from_millis(150));
    assert!(sent.iter().any(|s| s.status().is_none()), "forwarded");
    assert_eq!(h.core.stats().overload_drops, 0);
    let sent = h.send_queued(Protocol::Tcp, UAC, &invite(2), Duration::from_millis(150));
    assert!(sent.iter().all(|s| s.status() != Some(503)), "{sent:?}");
}

#[test]
fn a_udp_initial_request_that_waited_too_long_is_dropped_unparsed_and_counted() {
    let mut h = behind();
    let late = Duration::from_millis(150);
    assert!(
        h.send_queued(Protocol::Udp, UAC, &invite(1), late)
            .is_empty()
    );
    assert_eq!(h.core.stats().overload_drops, 1);
    assert_eq!(h.core.stats().overload_rejections, 0);
    // Work already under way is never shed, however late.
    let bye = Request::new("BYE", "sip:bob@127.0.0.1:6000")
        .branch("z9hG4bK-late-bye")
        .in_dialog("totag");
    let sent = h.send_queued(Protocol::Udp, UAC, &bye.build(), late);
    assert_downstream_request(&one(sent), "BYE", UAS);
    // Nor is anything the classifier cannot vouch for: the parser sees it and rejects it.
    h.send_queued(Protocol::Udp, UAC, b"INVITE nonsense\r\n\r\n", late);
    assert_eq!(h.core.stats().overload_drops, 1);
    assert_eq!(h.core.stats().parse_errors, 1);
    // Once the socket is drained again, the same request is served.
    let sent = h.send_queued(Protocol::Udp, UAC, &invite(2), Duration::ZERO);
    assert!(sent.iter().any(|s| s.status().is_none()), "forwarded");
}

#[test]
fn a_tcp_initial_request_that_waited_too_long_is_refused_503() {
    let mut h = behind();
    let sent = h.send_queued(Protocol::Tcp, UAC, &invite(1), Duration::from_millis(150));
    let busy = one(sent);
    assert_eq!(busy.status(), Some(503));
    assert_eq!(busy.header("Retry-After"), "2");
    assert_eq!(h.core.stats().overload_drops, 0);
    assert_eq!(h.core.stats().overload_rejections, 1);
}

#[test]
fn a_udp_request_seen_within_the_target_latency_is_answered_503_not_dropped() {
    let mut h = small_bucket();
    for n in 0..3 {
        h.send(UAC, &invite(n));
    }
    let sent = h.send_queued(Protocol::Udp, UAC, &invite(3), Duration::from_millis(5));
    assert!(sent.iter().any(|s| s.status() == Some(503)));
    assert_eq!(h.core.stats().overload_drops, 0);
}
