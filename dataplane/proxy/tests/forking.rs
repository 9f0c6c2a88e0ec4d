//! One request forked to several targets (RFC 3261 §16.6–§16.7): a branch per target,
//! the best response upstream, the other branches cancelled on a 2xx or 6xx, and branches
//! that fail or time out counted as responses generated here.

mod common;

use std::time::Duration;

use common::*;
use proxy::{Router, Routing, Target};

const A: &str = "127.0.0.1:6001";
const B: &str = "127.0.0.1:6002";
const C: &str = "127.0.0.1:6003";

/// Forks every request to bob's registered contacts, each its own Request-URI.
#[derive(Debug)]
struct ToContacts(Vec<&'static str>);

impl Router for ToContacts {
    fn route(
        &mut self,
        _request: &sip::Message<'_>,
        _planned: Option<Target>,
        targets: &mut Vec<Target>,
    ) -> Routing {
        for at in &self.0 {
            let uri = format!("sip:bob@{at}");
            targets.push(Target::to_uri(uri.as_bytes()).expect("an IP contact"));
        }
        Routing::Forward
    }
}

fn forking(to: &[&'static str]) -> Harness {
    Harness::with_router(
        1024,
        proxy::OverloadConfig::default(),
        Box::new(ToContacts(to.to_vec())),
    )
}

/// Sends the INVITE and returns its forwarded copies, in target order.
fn fork_invite(h: &mut Harness, targets: &[&str]) -> Vec<Sent> {
    let out = h.send(UAC, &Request::invite().branch("z9hG4bK-inv-1").build());
    assert_eq!(
        out.len(),
        1 + targets.len(),
        "100 Trying and one INVITE per target"
    );
    assert_upstream_response(&out[0], 100);
    for (sent, to) in out[1..].iter().zip(targets) {
        assert_downstream_request(sent, "INVITE", to);
    }
    out[1..].to_vec()
}

fn only<'a>(sent: &'a [Sent], to: &str) -> &'a Sent {
    let matching: Vec<_> = sent.iter().filter(|s| s.to == addr(to)).collect();
    assert_eq!(matching.len(), 1, "one datagram to {to} in {sent:#?}");
    matching[0]
}

fn finals_upstream(sent: &[Sent]) -> Vec<u16> {
    sent.iter()
        .filter(|s| s.to == addr(UAC))
        .filter_map(Sent::status)
        .filter(|&s| s >= 200)
        .collect()
}

#[test]
fn each_target_gets_its_own_branch_and_request_uri() {
    let mut h = forking(&[A, B, C]);
    let forwarded = fork_invite(&mut h, &[A, B, C]);
    let branches: Vec<_> = forwarded.iter().map(Sent::top_via_branch).collect();
    for (i, sent) in forwarded.iter().enumerate() {
        assert_eq!(sent.request_uri(), format!("sip:bob@{}", [A, B, C][i]));
        assert_eq!(sent.call_id(), "call-1@127.0.0.1");
        assert_eq!(sent.header("Record-Route"), RECORD_ROUTE);
        assert_eq!(sent.max_forwards(), 69);
        assert!(
            branches[..i].iter().all(|b| *b != branches[i]),
            "distinct branches"
        );
        assert!(
            sent.client,
            "each copy belongs to its own client transaction"
        );
    }
    assert_eq!(h.core.active_transactions(), 1);
}

#[test]
fn the_first_2xx_goes_upstream_and_every_other_branch_is_cancelled() {
    let mut h = forking(&[A, B, C]);
    let fwd = fork_invite(&mut h, &[A, B, C]);
    let ringing = h.send(A, &response_to(&fwd[0].bytes, 180, Some("a"), &[]));
    assert_upstream_response(&one(ringing), 180);
    let ringing = h.send(B, &response_to(&fwd[1].bytes, 180, Some("b"), &[]));
    assert_upstream_response(&one(ringing), 180);

    // B answers: upstream at once; A (ringing) is cancelled now, C (silent) once it
    // sends a provisional (§9.1).
    let out = h.send(B, &response_to(&fwd[1].bytes, 200, Some("b"), &[]));
    assert_eq!(out.len(), 2, "{out:#?}");
    assert_upstream_response(only(&out, UAC), 200);
    let cancel_a = only(&out, A).clone();
    assert_downstream_request(&cancel_a, "CANCEL", A);
    assert_eq!(cancel_a.top_via_branch(), fwd[0].top_via_branch());
    assert_eq!(cancel_a.request_uri(), format!("sip:bob@{A}"));

    let out = h.send(C, &response_to(&fwd[2].bytes, 100, None, &[]));
    let cancel_c = one(out);
    assert_downstream_request(&cancel_c, "CANCEL", C);
    assert_eq!(cancel_c.top_via_branch(), fwd[2].top_via_branch());

    // The cancelled branches end with 487: acknowledged there, nothing upstream.
    none(&h.send(A, &response_to(&cancel_a.bytes, 200, Some("a"), &[])));
    let out = h.send(A, &response_to(&fwd[0].bytes, 487, Some("a"), &[]));
    assert_downstream_request(&one(out), "ACK", A);
    none(&h.send(C, &response_to(&cancel_c.bytes, 200, Some("c"), &[])));
    let out = h.send(C, &response_to(&fwd[2].bytes, 487, Some("c"), &[]));
    assert_downstream_request(&one(out), "ACK", C);

    none(&h.advance(Duration::from_secs(40)));
    assert_eq!(h.core.active_transactions(), 0);
}

#[test]
fn when_every_branch_fails_the_lowest_class_goes_upstream_once() {
    let mut h = forking(&[A, B, C]);
    let fwd = fork_invite(&mut h, &[A, B, C]);
    let out = h.send(A, &response_to(&fwd[0].bytes, 503, Some("a"), &[]));
    assert_downstream_request(&one(out), "ACK", A);
    let out = h.send(B, &response_to(&fwd[1].bytes, 486, Some("b"), &[]));
    assert_downstream_request(&one(out), "ACK", B);
    let out = h.send(C, &response_to(&fwd[2].bytes, 404, Some("c"), &[]));
    assert_eq!(
        finals_upstream(&out),
        [486],
        "the first 4xx; 5xx is a higher class"
    );
    let busy = only(&out, UAC);
    assert_eq!(busy.to_tag().as_deref(), Some("b"), "B's own response");
    assert_downstream_request(only(&out, C), "ACK", C);

    let ack = Request::new("ACK", BOB)
        .branch("z9hG4bK-inv-1")
        .in_dialog("b")
        .build();
    none(&h.send(UAC, &ack));
    none(&h.advance(Duration::from_secs(40)));
    assert_eq!(h.core.active_transactions(), 0);
}

#[test]
fn a_6xx_cancels_the_others_and_wins() {
    let mut h = forking(&[A, B]);
    let fwd = fork_invite(&mut h, &[A, B]);
    one(h.send(A, &response_to(&fwd[0].bytes, 180, Some("a"), &[])));
    let out = h.send(B, &response_to(&fwd[1].bytes, 603, Some("b"), &[]));
    assert_eq!(
        finals_upstream(&out),
        Vec::<u16>::new(),
        "held until A ends"
    );
    assert_downstream_request(only(&out, B), "ACK", B);
    let cancel_a = only(&out, A).clone();
    assert_downstream_request(&cancel_a, "CANCEL", A);

    none(&h.send(A, &response_to(&cancel_a.bytes, 200, Some("a"), &[])));
    let out = h.send(A, &response_to(&fwd[0].bytes, 487, Some("a"), &[]));
    assert_eq!(finals_upstream(&out), [603]);
    assert_eq!(only(&out, UAC).to_tag().as_deref(), Some("b"));
}

#[test]
fn a_best_response_of_503_goes_upstream_as_500() {
    let mut h = forking(&[A, B]);
    let fwd = fork_invite(&mut h, &[A, B]);
    one(h.send(A, &response_to(&fwd[0].bytes, 503, Some("a"), &[])));
    let out = h.send(B, &response_to(&fwd[1].bytes, 503, Some("b"), &[]));
    assert_eq!(finals_upstream(&out), [500]);
}

#[test]
fn a_cancel_from_upstream_cancels_every_branch() {
    let mut h = forking(&[A, B, C]);
    let fwd = fork_invite(&mut h, &[A, B, C]);
    one(h.send(A, &response_to(&fwd[0].bytes, 180, Some("a"), &[])));
    one(h.send(B, &response_to(&fwd[1].bytes, 180, Some("b"), &[])));

    let cancel = Request::new("CANCEL", BOB).branch("z9hG4bK-inv-1").build();
    let out = h.send(UAC, &cancel);
    assert_eq!(
        out.len(),
        3,
        "200 upstream and a CANCEL to each ringing branch"
    );
    assert_upstream_response(only(&out, UAC), 200);
    let mut cancels = vec![only(&out, A).clone(), only(&out, B).clone()];
    // C had not answered at all: its CANCEL waits for a provisional (§9.1), which still
    // goes upstream since nothing is settled yet.
    let out = h.send(C, &response_to(&fwd[2].bytes, 180, Some("c"), &[]));
    assert_eq!(out.len(), 2, "{out:#?}");
    assert_upstream_response(only(&out, UAC), 180);
    cancels.push(only(&out, C).clone());
    for (cancel, (to, tag)) in cancels.iter().zip([(A, "a"), (B, "b"), (C, "c")]) {
        assert_downstream_request(cancel, "CANCEL", to);
        none(&h.send(to, &response_to(&cancel.bytes, 200, Some(tag), &[])));
    }
    let mut upstream = Vec::new();
    for (i, (to, tag)) in [(A, "a"), (B, "b"), (C, "c")].into_iter().enumerate() {
        let out = h.send(to, &response_to(&fwd[i].bytes, 487, Some(tag), &[]));
        assert_downstream_request(only(&out, to), "ACK", to);
        upstream.extend(finals_upstream(&out));
    }
    assert_eq!(upstream, [487], "one 487, once every branch has ended");
}

#[test]
fn a_branch_that_cannot_be_sent_counts_as_503_and_the_others_go_on() {
    let mut h = forking(&[A, B]);
    let fwd = fork_invite(&mut h, &[A, B]);
    let now = h.now;
    h.core
        .on_send_error(now, fwd[1].client_id.expect("a client transaction"));
    none(&h.drain_now());
    one(h.send(A, &response_to(&fwd[0].bytes, 180, Some("a"), &[])));
    let out = h.send(A, &response_to(&fwd[0].bytes, 200, Some("a"), &[]));
    assert_eq!(finals_upstream(&out), [200]);
}

#[test]
fn when_every_branch_is_unreachable_the_caller_gets_503() {
    let mut h = forking(&[A, B]);
    let fwd = fork_invite(&mut h, &[A, B]);
    let now = h.now;
    h.core.on_send_error(now, fwd[0].client_id.expect("client"));
    none(&h.drain_now());
    h.core.on_send_error(now, fwd[1].client_id.expect("client"));
    let out = h.drain_now();
    assert_eq!(finals_upstream(&out), [503], "our own 503, not a 500");
}

#[test]
fn a_silent_branch_times_out_without_ending_a_ringing_one() {
    let mut h = forking(&[A, B]);
    let fwd = fork_invite(&mut h, &[A, B]);
    one(h.send(A, &response_to(&fwd[0].bytes, 180, Some("a"), &[])));
    // B never answers: Timer B (64·T1) ends that branch alone.
    let out = h.advance(Duration::from_secs(33));
    assert!(
        out.iter().all(|s| s.to == addr(B)),
        "only B's retransmissions: {out:#?}"
    );
    assert!(finals_upstream(&out).is_empty());
    let out = h.send(A, &response_to(&fwd[0].bytes, 200, Some("a"), &[]));
    assert_eq!(finals_upstream(&out), [200]);
}

#[test]
fn a_forked_non_invite_never_gets_a_408_upstream() {
    let mut h = forking(&[A, B]);
    let out = h.send(UAC, &Request::new("MESSAGE", BOB).build());
    assert_eq!(out.len(), 2, "one MESSAGE per target");
    // Neither branch answers: RFC 4320 §4.1, no 408 for a non-INVITE.
    let out = h.advance(Duration::from_secs(40));
    assert!(finals_upstream(&out).is_empty(), "{out:#?}");
    assert_eq!(h.core.active_transactions(), 0);
}

#[test]
fn a_forked_non_invite_answered_on_one_branch_gets_that_answer() {
    let mut h = forking(&[A, B]);
    let out = h.send(UAC, &Request::new("MESSAGE", BOB).build());
    let to_a = only(&out, A).clone();
    none(&h.send(A, &response_to(&to_a.bytes, 404, Some("a"), &[])));
    // B times out (a 408 of our own, which loses to A's 404 that came first).
    let out = h.advance(Duration::from_secs(33));
    assert_eq!(finals_upstream(&out), [404]);
}

#[test]
fn no_target_is_480_and_a_router_refusal_is_sent_as_given() {
    let mut h = forking(&[]);
    let out = one(h.send(UAC, &Request::invite().build()));
    assert_upstream_response(&out, 480);

    #[derive(Debug)]
    struct Refuse;
    impl Router for Refuse {
        fn route(
            &mut self,
            _: &sip::Message<'_>,
            _: Option<Target>,
            _: &mut Vec<Target>,
        ) -> Routing {
            Routing::Reject(404)
        }
    }
    let mut h = Harness::with_router(16, proxy::OverloadConfig::default(), Box::new(Refuse));
    let out = one(h.send(UAC, &Request::invite().build()));
    assert_upstream_response(&out, 404);
    assert_eq!(h.core.active_transactions(), 0);
}

#[test]
fn a_branch_silent_after_its_cancel_still_ends() {
    let mut h = forking(&[A, B]);
    let fwd = fork_invite(&mut h, &[A, B]);
    one(h.send(A, &response_to(&fwd[0].bytes, 180, Some("a"), &[])));
    one(h.send(B, &response_to(&fwd[1].bytes, 180, Some("b"), &[])));
    let out = h.send(A, &response_to(&fwd[0].bytes, 200, Some("a"), &[]));
    let cancel_b = only(&out, B).clone();
    // B takes the CANCEL but never sends its 487.
    none(&h.send(B, &response_to(&cancel_b.bytes, 200, Some("b"), &[])));
    h.advance(Duration::from_secs(60));
    assert_eq!(h.core.active_transactions(), 0, "the silent branch ended");
}

#[test]
fn a_request_our_headers_would_take_past_the_limit_is_answered_513() {
    let mut h = Harness::new();
    let mut invite = Request::invite();
    // As many header lines as the parser takes: our Via and Record-Route do not fit.
    let headers = |r: &Request| {
        String::from_utf8(r.build())
            .expect("ascii")
            .lines()
            .filter(|l| l.contains(": "))
            .count()
    };
    while headers(&invite) < sip::MAX_HEADERS {
        invite = invite.header("X-Filler: 1");
    }
    let out = h.send(UAC, &invite.build());
    let statuses: Vec<_> = out.iter().filter_map(Sent::status).collect();
    assert!(
        statuses.contains(&513),
        "{:?}",
        out.iter().map(Sent::text).collect::<Vec<_>>()
    );
    h.advance(Duration::from_secs(40));
    assert_eq!(h.core.active_transactions(), 0, "nothing left behind");
}

#[test]
fn a_large_request_to_a_chosen_target_goes_by_tcp_and_falls_back_to_udp() {
    let mut h = forking(&[A]);
    let mut invite = Request::invite();
    while invite.build().len() < 1200 {
        invite = invite.header("X-Padding: 0123456789abcdef0123456789abcdef");
    }
    let out = h.send(UAC, &invite.build());
    let fwd = only(&out, A).clone();
    assert_eq!(fwd.protocol, proxy::Protocol::Tcp, "RFC 3261 §18.1.1");
    assert!(fwd.vias()[0].starts_with("SIP/2.0/TCP"));
    let now = h.now;
    h.core
        .on_send_error(now, fwd.client_id.expect("a client transaction"));
    let again = one(h.drain_now());
    assert_eq!(again.protocol, proxy::Protocol::Udp, "retried over UDP");
    assert!(again.vias()[0].starts_with("SIP/2.0/UDP"));
}
