//! Transport choice (RFC 3261 §18): TCP when the next hop asks for it or the request is
//! near the MTU, responses on the transport the request came by, no retransmissions over TCP.

mod common;

use std::time::Duration;

use common::*;
use proxy::Protocol;

fn forwarded(sent: &[Sent]) -> &Sent {
    sent.iter()
        .find(|s| s.status().is_none())
        .expect("the request was forwarded")
}

#[test]
fn a_large_request_switches_to_tcp_and_is_not_retransmitted() {
    let mut h = Harness::new();
    let padding = format!("X-Padding: {}", "p".repeat(1300));
    let invite = Request::invite().header(&padding).build();
    let sent = h.send(UAC, &invite);
    let out = forwarded(&sent);
    assert_eq!(out.protocol, Protocol::Tcp);
    assert!(
        out.vias()[0].starts_with("SIP/2.0/TCP 127.0.0.1:5061;"),
        "{:?}",
        out.vias()
    );
    // The 100 Trying goes back over UDP, the way the request came.
    let trying = sent.iter().find(|s| s.status() == Some(100)).expect("100");
    assert_eq!(trying.protocol, Protocol::Udp);
    // Reliable transport: Timer A does not run; Timer B still bounds the wait.
    let later = h.advance(Duration::from_secs(10));
    assert!(
        later
            .iter()
            .all(|s| s.status().is_none() || s.to != addr(UAS))
    );
    assert!(
        !later.iter().any(|s| s.protocol == Protocol::Tcp),
        "no retransmission over TCP"
    );
}

#[test]
fn transport_tcp_in_the_request_uri_selects_tcp_and_small_requests_stay_on_udp() {
    let mut h = Harness::new();
    let small = Request::invite().build();
    assert_eq!(forwarded(&h.send(UAC, &small)).protocol, Protocol::Udp);
    let tcp = Request::new("INVITE", "sip:bob@127.0.0.1:6000;transport=tcp")
        .branch("z9hG4bK-tcp")
        .call_id("tcp@127.0.0.1")
        .build();
    let out = h.send(UAC, &tcp);
    assert_eq!(forwarded(&out).protocol, Protocol::Tcp);
}

#[test]
fn a_request_over_tcp_is_answered_over_tcp() {
    let mut h = Harness::new();
    let invite = Request::invite().build();
    let sent = h.send_tcp(UAC, &invite);
    let trying = sent.iter().find(|s| s.status() == Some(100)).expect("100");
    assert_eq!((trying.protocol, trying.to), (Protocol::Tcp, addr(UAC)));
    let out = forwarded(&sent);
    let ringing = response_to(&out.bytes, 180, Some("t1"), &[]);
    let relayed = one(h.send(UAS, &ringing));
    assert_eq!(
        (relayed.protocol, relayed.to, relayed.status()),
        (Protocol::Tcp, addr(UAC), Some(180))
    );
}

#[test]
fn a_stream_message_without_content_length_is_refused() {
    let mut h = Harness::new();
    let text = String::from_utf8(Request::invite().build()).expect("ascii");
    let without: String = text
        .split("\r\n")
        .filter(|l| !l.to_ascii_lowercase().starts_with("content-length"))
        .collect::<Vec<_>>()
        .join("\r\n");
    none(&h.send_tcp(UAC, without.as_bytes()));
    assert_eq!(h.core.stats().parse_errors, 1);
}

#[test]
fn a_large_request_whose_tcp_connection_fails_is_retried_over_udp() {
    let mut h = Harness::new();
    let padding = format!("X-Padding: {}", "p".repeat(1300));
    let sent = h.send(UAC, &Request::invite().header(&padding).build());
    let out = forwarded(&sent);
    assert_eq!(out.protocol, Protocol::Tcp);
    // The engine reports the failed connect for the transaction the transmit named.
    let client = out
        .client_id
        .expect("a forwarded request names its transaction");
    h.core.on_send_error(h.now, client);
    let retried = h.drain_now();
    let again = forwarded(&retried);
    assert_eq!(again.protocol, Protocol::Udp);
    assert!(
        again.vias()[0].starts_with("SIP/2.0/UDP 127.0.0.1:5061;"),
        "{:?}",
        again.vias()
    );
    assert_eq!(again.top_via_branch(), out.top_via_branch());
    // Over UDP, Timer A retransmits it.
    let later = h.advance(Duration::from_millis(600));
    assert!(
        later
            .iter()
            .any(|s| s.protocol == Protocol::Udp && s.status().is_none())
    );
}

#[test]
fn a_transport_error_on_the_next_hop_is_answered_503() {
    let mut h = Harness::new();
    let sent = h.send(UAC, &Request::invite().build());
    let out = forwarded(&sent);
    assert_eq!(out.protocol, Protocol::Udp);
    h.core
        .on_send_error(h.now, out.client_id.expect("names its transaction"));
    let answer = one(h.drain_now());
    assert_upstream_response(&answer, 503);
    assert!(answer.to_tag().is_some());
    // The INVITE server transaction now waits for the ACK of its 503.
    let ack = Request::new("ACK", "sip:bob@127.0.0.1:6000")
        .cseq(1)
        .in_dialog(&answer.to_tag().expect("tagged"));
    none(&h.send(UAC, &ack.build()));
}
