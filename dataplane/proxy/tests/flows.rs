//! Whole SIP flows through one proxy core (RFC 3261 §16, RFC 6026, RFC 4320), on a
//! simulated clock: what goes in is text, what comes out is parsed and checked exactly.

mod common;

use std::time::Duration;

use common::*;
use proxy::{Socket, method_index};

const UAC_VIA: &str = "SIP/2.0/UDP 127.0.0.1:5000;branch=z9hG4bK-inv-1;rport";
const BOB_CONTACT: &str = "Contact: <sip:bob@127.0.0.1:6000>";

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// Sends the INVITE from the UAC and returns the forwarded copy, after checking the 100.
fn start_call(h: &mut Harness, invite: &Request) -> Sent {
    let out = h.send(UAC, &invite.build());
    assert_eq!(out.len(), 2, "100 Trying and the forwarded INVITE");
    assert_upstream_response(&out[0], 100);
    assert_downstream_request(&out[1], "INVITE", UAS);
    out[1].clone()
}

fn find<'a>(sent: &'a [Sent], to: &str) -> &'a Sent {
    let matching: Vec<_> = sent.iter().filter(|s| s.to == addr(to)).collect();
    assert_eq!(matching.len(), 1, "one datagram to {to}");
    matching[0]
}

/// The ACK a UAC sends for a non-2xx final response: same branch as the INVITE.
fn ack_for_non_2xx(branch: &str, to_tag: &str) -> Vec<u8> {
    Request::new("ACK", BOB)
        .branch(branch)
        .in_dialog(to_tag)
        .build()
}

// 1. A basic call.

#[test]
fn basic_call_invite_ringing_answer_ack_bye() {
    let mut h = Harness::new();
    let invite = Request::invite().branch("z9hG4bK-inv-1");
    let out = h.send(UAC, &invite.build());
    assert_eq!(out.len(), 2);

    let trying = &out[0];
    assert_upstream_response(trying, 100);
    assert_eq!(trying.to_tag(), None, "100 Trying carries no To tag");
    assert_eq!(trying.vias(), [UAC_VIA]);
    assert_eq!(trying.cseq(), "1 INVITE");
    assert_eq!(trying.call_id(), "call-1@127.0.0.1");
    assert!(!trying.client);

    let fwd = &out[1];
    assert_downstream_request(fwd, "INVITE", UAS);
    assert!(
        fwd.client,
        "the forwarded INVITE belongs to a client transaction"
    );
    assert_eq!(fwd.request_uri(), BOB);
    let vias = fwd.vias();
    assert_eq!(vias.len(), 2);
    assert!(
        vias[0].starts_with("SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK"),
        "{}",
        vias[0]
    );
    assert!(vias[0].ends_with(";rport"), "{}", vias[0]);
    assert_eq!(vias[1], UAC_VIA);
    assert_eq!(fwd.max_forwards(), 69);
    assert_eq!(fwd.headers("Record-Route"), [RECORD_ROUTE]);
    assert!(fwd.routes().is_empty());
    assert_eq!(
        fwd.header("From"),
        "\"Alice\" <sip:alice@127.0.0.1>;tag=alice-1"
    );
    assert_eq!(fwd.header("To"), "<sip:bob@127.0.0.1>");
    assert_eq!(fwd.call_id(), "call-1@127.0.0.1");
    assert_eq!(fwd.cseq(), "1 INVITE");
    assert_eq!(fwd.header("Contact"), "<sip:alice@127.0.0.1:5000>");
    assert_eq!(h.core.active_transactions(), 1);

    // 100 from the UAS is hop-by-hop: not forwarded.
    none(&h.send(UAS, &response_to(&fwd.bytes, 100, None, &[])));

    let ringing = one(h.send(
        UAS,
        &response_to(&fwd.bytes, 180, Some("bob-1"), &[BOB_CONTACT]),
    ));
    assert_upstream_response(&ringing, 180);
    assert_eq!(ringing.vias(), [UAC_VIA], "our Via is removed");
    assert_eq!(ringing.to_tag().as_deref(), Some("bob-1"));
    assert_eq!(ringing.headers("Record-Route"), [RECORD_ROUTE]);
    assert_eq!(ringing.cseq(), "1 INVITE");

    let ok = one(h.send(
        UAS,
        &response_to(&fwd.bytes, 200, Some("bob-1"), &[BOB_CONTACT]),
    ));
    assert_upstream_response(&ok, 200);
    assert_eq!(ok.vias(), [UAC_VIA]);
    assert_eq!(ok.to_tag().as_deref(), Some("bob-1"));
    assert_eq!(ok.header("Contact"), "<sip:bob@127.0.0.1:6000>");
    assert_eq!(ok.headers("Record-Route"), [RECORD_ROUTE]);

    // The ACK for the 2xx is a new transaction, routed through us by the Record-Route.
    let ack = Request::new("ACK", BOB)
        .branch("z9hG4bK-ack-1")
        .in_dialog("bob-1")
        .route(RECORD_ROUTE);
    let ack = one(h.send(UAC, &ack.build()));
    assert_downstream_request(&ack, "ACK", UAS);
    assert_eq!(ack.request_uri(), BOB);
    assert!(
        ack.routes().is_empty(),
        "our Route is popped:\n{}",
        ack.text()
    );
    assert!(!ack.has_header("Record-Route"));
    assert_eq!(ack.max_forwards(), 69);
    let vias = ack.vias();
    assert_eq!(vias.len(), 2);
    assert_eq!(
        vias[1],
        "SIP/2.0/UDP 127.0.0.1:5000;branch=z9hG4bK-ack-1;rport"
    );
    assert_eq!(ack.cseq(), "1 ACK");
    assert_eq!(ack.to_tag().as_deref(), Some("bob-1"));

    let bye = Request::new("BYE", BOB)
        .branch("z9hG4bK-bye-1")
        .cseq(2)
        .in_dialog("bob-1")
        .route(RECORD_ROUTE);
    let fwd_bye = one(h.send(UAC, &bye.build()));
    assert_downstream_request(&fwd_bye, "BYE", UAS);
    assert!(fwd_bye.client);
    assert_eq!(fwd_bye.request_uri(), BOB);
    assert!(fwd_bye.routes().is_empty());
    assert!(
        !fwd_bye.has_header("Record-Route"),
        "no Record-Route in a dialog"
    );
    assert_eq!(fwd_bye.max_forwards(), 69);
    assert_eq!(fwd_bye.vias().len(), 2);
    assert_eq!(fwd_bye.cseq(), "2 BYE");

    let bye_ok = one(h.send(UAS, &response_to(&fwd_bye.bytes, 200, None, &[])));
    assert_upstream_response(&bye_ok, 200);
    assert_eq!(
        bye_ok.vias(),
        ["SIP/2.0/UDP 127.0.0.1:5000;branch=z9hG4bK-bye-1;rport"]
    );
    assert_eq!(bye_ok.cseq(), "2 BYE");
    assert_eq!(bye_ok.to_tag().as_deref(), Some("bob-1"));

    assert_eq!(h.core.active_transactions(), 2, "the INVITE and the BYE");
    none(&h.advance(secs(40.0)));
    assert_eq!(h.core.active_transactions(), 0);

    let stats = h.core.stats();
    assert_eq!(stats.transactions_created, 2);
    assert_eq!(stats.requests_in[method_index(sip::Method::Invite)], 1);
    assert_eq!(stats.requests_out[method_index(sip::Method::Invite)], 1);
    assert_eq!(stats.requests_out[method_index(sip::Method::Ack)], 1);
    assert_eq!(stats.requests_out[method_index(sip::Method::Bye)], 1);
    assert_eq!(stats.responses_in, [2, 2, 0, 0, 0, 0]);
    assert_eq!(stats.responses_out, [2, 2, 0, 0, 0, 0]);
    assert_eq!(stats.timeouts, 0);
    assert_eq!(stats.retransmissions, 0);
    assert_eq!(stats.parse_errors, 0);
}

// 2. Retransmissions.

#[test]
fn invite_retransmission_gets_the_latest_provisional_and_is_not_forwarded() {
    let mut h = Harness::new();
    let invite = Request::invite().branch("z9hG4bK-inv-1");
    let first = h.send(UAC, &invite.build());
    let fwd = first[1].clone();

    let again = one(h.send(UAC, &invite.build()));
    assert_upstream_response(&again, 100);
    assert_eq!(again.bytes, first[0].bytes, "the same 100 again");

    let ringing = one(h.send(UAS, &response_to(&fwd.bytes, 180, Some("bob-1"), &[])));
    assert_upstream_response(&ringing, 180);

    let again = one(h.send(UAC, &invite.build()));
    assert_upstream_response(&again, 180);
    assert_eq!(again.bytes, ringing.bytes, "the latest provisional again");

    let ok = one(h.send(UAS, &response_to(&fwd.bytes, 200, Some("bob-1"), &[])));
    assert_upstream_response(&ok, 200);
    // RFC 6026 §7.1: in Accepted, INVITE retransmissions are absorbed; the UAS's 2xx
    // retransmissions reach the UAC instead.
    none(&h.send(UAC, &invite.build()));
    assert_eq!(h.core.stats().absorbed, 3);
    assert_eq!(
        h.core.stats().requests_out[method_index(sip::Method::Invite)],
        1
    );
}

#[test]
fn provisional_retransmissions_are_forwarded_as_they_arrive() {
    let mut h = Harness::new();
    let fwd = start_call(&mut h, &Request::invite());
    let ringing = response_to(&fwd.bytes, 180, Some("bob-1"), &[]);
    let first = one(h.send(UAS, &ringing));
    assert_upstream_response(&first, 180);
    // A stateful proxy forwards every provisional it receives (§16.7 step 5); a repeated
    // 180 (e.g. a reliable provisional retransmitted by the UAS) goes up again, unchanged.
    let second = one(h.send(UAS, &ringing));
    assert_eq!(second.bytes, first.bytes);
    // Provisionals stop Timer A: no INVITE retransmission downstream.
    none(&h.advance(secs(5.0)));
}

#[test]
fn two_hundred_retransmissions_are_forwarded_upstream_rfc6026() {
    let mut h = Harness::new();
    let fwd = start_call(&mut h, &Request::invite());
    let ok = response_to(&fwd.bytes, 200, Some("bob-1"), &[BOB_CONTACT]);
    let first = one(h.send(UAS, &ok));
    assert_upstream_response(&first, 200);
    let second = one(h.send(UAS, &ok));
    assert_upstream_response(&second, 200);
    assert_eq!(second.bytes, first.bytes);
    // Later, but before Timer M: still forwarded.
    none(&h.advance(secs(10.0)));
    let third = one(h.send(UAS, &ok));
    assert_eq!(third.bytes, first.bytes);
    assert_eq!(h.core.stats().responses_out[1], 3);
    // Timers L and M end both sides after 64·T1; a 2xx after that has no transaction and
    // goes up statelessly, on the second Via.
    none(&h.advance(secs(30.0)));
    assert_eq!(h.core.active_transactions(), 0);
    let late = one(h.send(UAS, &ok));
    assert_upstream_response(&late, 200);
    assert_eq!(late.bytes, first.bytes);
    assert_eq!(h.core.stats().stateless_responses, 1);
}

// 3. Loss downstream.

#[test]
fn unanswered_invite_is_retransmitted_then_answered_408() {
    let mut h = Harness::new();
    let fwd = start_call(&mut h, &Request::invite().branch("z9hG4bK-inv-1"));
    let sent = h.advance(secs(32.3));
    let (down, up): (Vec<_>, Vec<_>) = sent.iter().partition(|s| s.to == addr(UAS));

    // Timer A: T1, doubling, until Timer B at 64·T1.
    let expected = [0.5, 1.5, 3.5, 7.5, 15.5, 31.5];
    assert_eq!(down.len(), expected.len(), "INVITE retransmissions");
    for (s, at) in down.iter().zip(expected) {
        assert_eq!(s.bytes, fwd.bytes, "a retransmission is the same datagram");
        assert_eq!(s.socket, Socket::Own);
        assert!(
            s.at >= secs(at) && s.at <= secs(at + 0.010),
            "retransmission at {:?}, expected {at} s",
            s.at
        );
    }

    let timeout = one(up.into_iter().cloned().collect());
    assert_upstream_response(&timeout, 408);
    assert!(
        timeout.at >= secs(32.0) && timeout.at <= secs(32.010),
        "{:?}",
        timeout.at
    );
    assert!(timeout.to_tag().is_some(), "a final response has a To tag");
    assert_eq!(
        timeout.vias(),
        [UAC_VIA],
        "built on our copy, our Via removed"
    );
    assert_eq!(timeout.cseq(), "1 INVITE");
    assert_eq!(timeout.call_id(), "call-1@127.0.0.1");
    assert_eq!(h.core.stats().timeouts, 1);
    assert_eq!(h.core.stats().retransmissions, 6);

    // The UAC acknowledges the 408: absorbed here, and Timer G stops.
    let tag = timeout.to_tag().expect("tag");
    none(&h.send(UAC, &ack_for_non_2xx("z9hG4bK-inv-1", &tag)));
    none(&h.advance(secs(40.0)));
    assert_eq!(h.core.active_transactions(), 0);
}

#[test]
fn unacknowledged_408_is_retransmitted_until_timer_h() {
    let mut h = Harness::new();
    start_call(&mut h, &Request::invite());
    let sent = h.advance(secs(32.0 + 40.0));
    let up: Vec<_> = sent.iter().filter(|s| s.to == addr(UAC)).collect();
    assert!(up.len() > 1);
    assert!(
        up.iter()
            .all(|s| s.status() == Some(408) && s.bytes == up[0].bytes)
    );
    // Timer G: T1 doubling, capped at T2.
    let gaps: Vec<_> = up
        .windows(2)
        .map(|w| (w[1].at - w[0].at).as_millis().div_ceil(10) * 10)
        .collect();
    assert_eq!(gaps[..4], [500, 1000, 2000, 4000]);
    assert!(gaps[4..].iter().all(|&g| g == 4000), "{gaps:?}");
    assert_eq!(h.core.active_transactions(), 0, "Timer H ended it");
}

#[test]
fn unanswered_non_invite_times_out_without_408() {
    let mut h = Harness::new();
    let options = Request::new("OPTIONS", BOB).branch("z9hG4bK-opt-1");
    let fwd = one(h.send(UAC, &options.build()));
    assert_downstream_request(&fwd, "OPTIONS", UAS);
    assert!(!fwd.has_header("Record-Route"));

    let sent = h.advance(secs(33.0));
    assert!(
        sent.iter().all(|s| s.to == addr(UAS)),
        "no 100 and no 408 upstream (RFC 4320)"
    );
    assert!(sent.iter().all(|s| s.bytes == fwd.bytes));
    // Timer E: T1 doubling, capped at T2, until Timer F at 64·T1.
    let times: Vec<_> = sent.iter().map(|s| s.at).collect();
    let expected = [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5];
    assert_eq!(times.len(), expected.len(), "{times:?}");
    for (at, want) in times.iter().zip(expected) {
        assert!(
            *at >= secs(want) && *at <= secs(want + 0.010),
            "{at:?} vs {want}"
        );
    }
    assert_eq!(h.core.stats().timeouts, 1);
    assert_eq!(h.core.stats().responses_out, [0; 6]);
    assert_eq!(h.core.active_transactions(), 0);
}

// 4. CANCEL.

#[test]
fn cancel_after_ringing() {
    let mut h = Harness::new();
    let fwd = start_call(&mut h, &Request::invite().branch("z9hG4bK-inv-1"));
    let ringing = one(h.send(UAS, &response_to(&fwd.bytes, 180, Some("bob-1"), &[])));
    assert_upstream_response(&ringing, 180);

    let cancel = Request::new("CANCEL", BOB).branch("z9hG4bK-inv-1");
    let out = h.send(UAC, &cancel.build());
    assert_eq!(out.len(), 2);
    let ok = find(&out, UAC);
    assert_upstream_response(ok, 200);
    assert_eq!(ok.cseq(), "1 CANCEL");
    assert_eq!(ok.vias(), [UAC_VIA]);
    assert!(ok.to_tag().is_some());

    let fwd_cancel = find(&out, UAS).clone();
    assert_downstream_request(&fwd_cancel, "CANCEL", UAS);
    assert_eq!(fwd_cancel.request_uri(), BOB);
    assert_eq!(fwd_cancel.top_via_branch(), fwd.top_via_branch());
    assert_eq!(
        fwd_cancel.vias(),
        [fwd.vias()[0].clone()],
        "only our Via (§9.1)"
    );
    assert_eq!(fwd_cancel.cseq(), "1 CANCEL");
    assert_eq!(fwd_cancel.call_id(), fwd.call_id());
    assert_eq!(fwd_cancel.header("From"), fwd.header("From"));
    assert_eq!(fwd_cancel.header("To"), fwd.header("To"));
    assert_eq!(fwd_cancel.max_forwards(), 70);

    // Our CANCEL's 200 ends here: the UAC already has one.
    none(&h.send(
        UAS,
        &response_to(&fwd_cancel.bytes, 200, Some("bob-1"), &[]),
    ));

    let out = h.send(UAS, &response_to(&fwd.bytes, 487, Some("bob-1"), &[]));
    assert_eq!(out.len(), 2);
    let terminated = find(&out, UAC);
    assert_upstream_response(terminated, 487);
    assert_eq!(terminated.vias(), [UAC_VIA]);
    assert_eq!(terminated.to_tag().as_deref(), Some("bob-1"));
    let ack = find(&out, UAS);
    assert_downstream_request(ack, "ACK", UAS);
    assert_eq!(ack.request_uri(), BOB);
    assert_eq!(ack.top_via_branch(), fwd.top_via_branch());
    assert_eq!(ack.vias().len(), 1);
    assert_eq!(ack.cseq(), "1 ACK");
    assert_eq!(ack.to_tag().as_deref(), Some("bob-1"));
    assert!(!ack.client);

    let absorbed = h.core.stats().absorbed;
    none(&h.send(UAC, &ack_for_non_2xx("z9hG4bK-inv-1", "bob-1")));
    assert_eq!(h.core.stats().absorbed, absorbed + 1);
    none(&h.advance(secs(40.0)));
    assert_eq!(h.core.active_transactions(), 0);
    let stats = h.core.stats();
    assert_eq!(stats.requests_out[method_index(sip::Method::Cancel)], 1);
    assert_eq!(stats.requests_out[method_index(sip::Method::Ack)], 1);
}

#[test]
fn cancel_before_any_provisional_waits_for_one() {
    let mut h = Harness::new();
    let fwd = start_call(&mut h, &Request::invite().branch("z9hG4bK-inv-1"));
    let cancel = Request::new("CANCEL", BOB).branch("z9hG4bK-inv-1");
    let ok = one(h.send(UAC, &cancel.build()));
    assert_upstream_response(&ok, 200);
    assert_eq!(ok.cseq(), "1 CANCEL");

    // §9.1: no CANCEL before a provisional; the INVITE keeps being retransmitted.
    let sent = h.advance(secs(1.0));
    let retransmitted = one(sent);
    assert_eq!(retransmitted.bytes, fwd.bytes);

    let out = h.send(UAS, &response_to(&fwd.bytes, 180, Some("bob-1"), &[]));
    assert_eq!(out.len(), 2);
    assert_upstream_response(find(&out, UAC), 180);
    let fwd_cancel = find(&out, UAS);
    assert_downstream_request(fwd_cancel, "CANCEL", UAS);
    assert_eq!(fwd_cancel.top_via_branch(), fwd.top_via_branch());
    assert_eq!(fwd_cancel.cseq(), "1 CANCEL");

    // A second CANCEL from the UAC gets its 200 but sends nothing more downstream.
    let again = one(h.send(UAC, &cancel.build()));
    assert_upstream_response(&again, 200);
}

#[test]
fn pending_cancel_is_sent_on_100_trying() {
    // A 100 is a provisional response too (§9.1): once it arrives the CANCEL may go, and
    // must not wait for a 180 that may never come.
    let mut h = Harness::new();
    let fwd = start_call(&mut h, &Request::invite().branch("z9hG4bK-inv-1"));
    let cancel = Request::new("CANCEL", BOB).branch("z9hG4bK-inv-1");
    assert_upstream_response(&one(h.send(UAC, &cancel.build())), 200);
    let fwd_cancel = one(h.send(UAS, &response_to(&fwd.bytes, 100, None, &[])));
    assert_downstream_request(&fwd_cancel, "CANCEL", UAS);
    assert_eq!(fwd_cancel.top_via_branch(), fwd.top_via_branch());
}

#[test]
fn timer_c_cancels_a_branch_that_rings_too_long() {
    let mut h = Harness::new();
    let fwd = start_call(&mut h, &Request::invite().branch("z9hG4bK-inv-1"));
    one(h.send(UAS, &response_to(&fwd.bytes, 180, Some("bob-1"), &[])));
    none(&h.advance(TIMER_C - secs(0.1)));
    let fwd_cancel = one(h.advance(secs(0.2)));
    assert_downstream_request(&fwd_cancel, "CANCEL", UAS);
    assert_eq!(fwd_cancel.top_via_branch(), fwd.top_via_branch());
    none(&h.send(
        UAS,
        &response_to(&fwd_cancel.bytes, 200, Some("bob-1"), &[]),
    ));
    let out = h.send(UAS, &response_to(&fwd.bytes, 487, Some("bob-1"), &[]));
    assert_eq!(out.len(), 2);
    assert_upstream_response(find(&out, UAC), 487);
    assert_downstream_request(find(&out, UAS), "ACK", UAS);
}

#[test]
fn a_branch_silent_after_100_is_cancelled_then_answered_408() {
    // Timer B stops at the 100; without Timer C the transaction would never end.
    let mut h = Harness::new();
    let fwd = start_call(&mut h, &Request::invite().branch("z9hG4bK-inv-1"));
    none(&h.send(UAS, &response_to(&fwd.bytes, 100, None, &[])));
    none(&h.advance(TIMER_C - secs(0.1)));
    let fwd_cancel = one(h.advance(secs(0.2)));
    assert_downstream_request(&fwd_cancel, "CANCEL", UAS);
    // Nothing answers the CANCEL either: 64·T1 later the UAC gets a 408.
    let sent = h.advance(secs(32.2));
    let timeout = find(&sent, UAC);
    assert_upstream_response(timeout, 408);
    assert_eq!(timeout.vias(), [UAC_VIA]);
    let tag = timeout.to_tag().expect("tag");
    none(&h.send(UAC, &ack_for_non_2xx("z9hG4bK-inv-1", &tag)));
    h.advance(secs(40.0));
    assert_eq!(h.core.active_transactions(), 0);
}

#[test]
fn a_200_after_our_408_still_reaches_the_caller() {
    // RFC 3261 §16.7 step 5: a 2xx to an INVITE is forwarded even after a final response.
    let mut h = Harness::new();
    let fwd = start_call(&mut h, &Request::invite().branch("z9hG4bK-inv-1"));
    none(&h.send(UAS, &response_to(&fwd.bytes, 100, None, &[])));
    h.advance(TIMER_C + secs(0.1));
    let sent = h.advance(secs(32.2));
    assert_upstream_response(find(&sent, UAC), 408);
    // The callee answers late: its 200 goes upstream without our Via.
    let late = response_to(&fwd.bytes, 200, Some("bob-late"), &[]);
    let up = one(h.send(UAS, &late));
    assert_upstream_response(&up, 200);
    assert_eq!(up.vias(), [UAC_VIA]);
    assert_eq!(up.to_tag().as_deref(), Some("bob-late"));
}

#[test]
fn cancel_for_an_unknown_transaction_is_forwarded_statelessly() {
    let mut h = Harness::new();
    let cancel = Request::new("CANCEL", BOB).branch("z9hG4bK-nothing");
    let fwd = one(h.send(UAC, &cancel.build()));
    assert_downstream_request(&fwd, "CANCEL", UAS);
    assert_eq!(fwd.vias().len(), 2);
    assert_eq!(h.core.active_transactions(), 0);
}

// 5. Non-2xx final response.

#[test]
fn busy_is_forwarded_acknowledged_and_retransmissions_absorbed() {
    let mut h = Harness::new();
    let invite = Request::invite().branch("z9hG4bK-inv-1");
    let fwd = start_call(&mut h, &invite);
    let busy = response_to(&fwd.bytes, 486, Some("bob-1"), &[]);
    let out = h.send(UAS, &busy);
    assert_eq!(out.len(), 2);
    let up = find(&out, UAC).clone();
    assert_upstream_response(&up, 486);
    assert_eq!(up.vias(), [UAC_VIA]);
    assert_eq!(up.to_tag().as_deref(), Some("bob-1"));
    let ack = find(&out, UAS).clone();
    assert_downstream_request(&ack, "ACK", UAS);
    assert_eq!(ack.top_via_branch(), fwd.top_via_branch());
    assert_eq!(ack.cseq(), "1 ACK");
    assert_eq!(ack.to_tag().as_deref(), Some("bob-1"));
    assert_eq!(ack.request_uri(), BOB);

    // The UAC did not get it: its retransmitted INVITE gets the 486 again.
    let again = one(h.send(UAC, &invite.build()));
    assert_eq!(again.bytes, up.bytes);
    assert_eq!(again.to, addr(UAC));

    // The UAS did not get our ACK: its retransmitted 486 gets the ACK again, and is not
    // forwarded.
    let ack_again = one(h.send(UAS, &busy));
    assert_eq!(ack_again.bytes, ack.bytes);
    assert_eq!(ack_again.to, addr(UAS));

    none(&h.send(UAC, &ack_for_non_2xx("z9hG4bK-inv-1", "bob-1")));
    // Confirmed: further INVITE and ACK retransmissions are absorbed silently.
    none(&h.send(UAC, &invite.build()));
    none(&h.send(UAC, &ack_for_non_2xx("z9hG4bK-inv-1", "bob-1")));
    none(&h.advance(secs(40.0)));
    assert_eq!(h.core.active_transactions(), 0);
    assert_eq!(h.core.stats().responses_out[3], 2);
}

#[test]
fn a_503_from_the_only_branch_goes_upstream_as_500() {
    // RFC 3261 §16.7 step 6: forwarding a 503 would say this proxy is unavailable.
    let mut h = Harness::new();
    let invite = Request::invite().branch("z9hG4bK-inv-1");
    let fwd = start_call(&mut h, &invite);
    let unavailable = response_to(&fwd.bytes, 503, Some("bob-1"), &["Retry-After: 5"]);
    let out = h.send(UAS, &unavailable);
    assert_eq!(out.len(), 2);
    let up = find(&out, UAC).clone();
    assert_upstream_response(&up, 500);
    assert_eq!(up.vias(), [UAC_VIA]);
    let ack = find(&out, UAS).clone();
    assert_downstream_request(&ack, "ACK", UAS);
    assert_eq!(ack.to_tag().as_deref(), Some("bob-1"));
    // A retransmitted INVITE gets the same 500.
    let again = one(h.send(UAC, &invite.build()));
    assert_eq!(again.bytes, up.bytes);
    // The retransmitted 503 is acknowledged again and not forwarded.
    let ack_again = one(h.send(UAS, &unavailable));
    assert_eq!(ack_again.bytes, ack.bytes);
}

// 6. Refusals.

/// Sends `request` from the UAC and returns the single answer, checked as a response of
/// `status` from the proxy with a To tag and the UAC's Via; no transaction is left.
#[track_caller]
fn refused(request: &Request, status: u16) -> Sent {
    let mut h = Harness::new();
    let answer = one(h.send(UAC, &request.build()));
    assert_upstream_response(&answer, status);
    assert!(answer.to_tag().is_some(), "{}", answer.text());
    assert_eq!(answer.vias(), request.vias);
    assert_eq!(h.core.active_transactions(), 0);
    answer
}

#[test]
fn max_forwards_zero_is_483() {
    let mut invite = Request::invite();
    invite.max_forwards = Some(0);
    let answer = refused(&invite, 483);
    assert!(answer.text().starts_with("SIP/2.0 483 Too Many Hops\r\n"));
}

#[test]
fn unknown_uri_scheme_is_416() {
    refused(&Request::new("INVITE", "mailto:bob@example.com"), 416);
    refused(&Request::new("MESSAGE", "xmpp:bob@example.com"), 416);
}

#[test]
fn unsupported_proxy_require_is_420_with_unsupported() {
    let answer = refused(&Request::invite().header("Proxy-Require: foo"), 420);
    assert_eq!(answer.header("Unsupported"), "foo");
    let answer = refused(&Request::invite().header("Proxy-Require: foo, bar"), 420);
    assert_eq!(answer.header("Unsupported"), "foo, bar");
}

#[test]
fn malformed_request_is_400() {
    // A CSeq naming another method, and a Contact that does not parse (§16.3 step 1).
    let mut mismatch = Request::invite();
    mismatch.cseq_method = Some("BYE".to_owned());
    let bad_contact = Request::invite().header("Contact: <sip:alice@");
    for request in [mismatch, bad_contact] {
        let mut h = Harness::new();
        let answer = one(h.send(UAC, &request.build()));
        assert_upstream_response(&answer, 400);
        assert!(answer.text().starts_with("SIP/2.0 400 Bad Request\r\n"));
        assert!(answer.to_tag().is_some());
        assert_eq!(answer.vias(), request.vias);
        assert_eq!(h.core.stats().parse_errors, 1);
        assert_eq!(h.core.active_transactions(), 0);
    }
}

#[test]
fn request_without_a_mandatory_header_gets_400_from_what_is_there() {
    // RFC 4475 `insuf`: a 400 copying the Via and whatever else of From, To, Call-ID and
    // CSeq exists; never forwarded.
    for missing in ["Call-ID", "From", "To", "CSeq"] {
        let mut h = Harness::new();
        let text = String::from_utf8(Request::invite().build()).expect("ASCII");
        let text: String = text
            .split_inclusive("\r\n")
            .filter(|line| !line.starts_with(&format!("{missing}:")))
            .collect();
        let answer = one(h.send(UAC, text.as_bytes()));
        assert_eq!(answer.to, addr(UAC));
        let answer_text = answer.text().to_owned();
        assert!(answer_text.starts_with("SIP/2.0 400 "), "{answer_text}");
        assert!(
            answer_text.contains("\r\nVia: SIP/2.0/UDP 127.0.0.1:5000;"),
            "{answer_text}"
        );
        assert!(
            !answer_text.contains(&format!("\r\n{missing}:")),
            "{answer_text}"
        );
        assert_eq!(h.core.stats().parse_errors, 1, "without {missing}");
        assert_eq!(h.core.active_transactions(), 0);
    }
}

#[test]
fn options_to_the_proxy_itself_is_200() {
    for uri in [
        "sip:127.0.0.1:5060",
        "sip:127.0.0.1:5061",
        "sip:127.0.0.1:5060;lr",
    ] {
        let answer = refused(&Request::new("OPTIONS", uri), 200);
        assert!(
            answer.header("Allow").contains("INVITE"),
            "{}",
            answer.text()
        );
    }
    // Even at Max-Forwards 0 (§16.3 step 3 lets a proxy answer an OPTIONS to itself).
    let mut options = Request::new("OPTIONS", "sip:127.0.0.1:5060");
    options.max_forwards = Some(0);
    refused(&options, 200);
    // With a Route the request is going elsewhere: forwarded, not answered.
    let mut h = Harness::new();
    let routed = Request::new("OPTIONS", "sip:127.0.0.1:5060").route("<sip:127.0.0.1:7000;lr>");
    let fwd = one(h.send(UAC, &routed.build()));
    assert_downstream_request(&fwd, "OPTIONS", "127.0.0.1:7000");
}

#[test]
fn a_request_that_comes_back_is_a_loop_482() {
    let mut h = Harness::new();
    let fwd = start_call(&mut h, &Request::invite());
    // The next hop sends our own request straight back to us.
    let answer = one(h.send(UAS, &fwd.bytes));
    assert_eq!(answer.status(), Some(482));
    assert_eq!(answer.socket, Socket::Shared);
    assert_eq!(answer.to, addr(UAS));
    assert_eq!(answer.vias(), fwd.vias());
    assert_eq!(
        h.core.active_transactions(),
        1,
        "only the original transaction"
    );
}

#[test]
fn a_spiral_is_not_a_loop() {
    // Back through us with a different Request-URI (a spiral, §16.3 step 4): forwarded.
    let mut h = Harness::new();
    let fwd = start_call(&mut h, &Request::invite());
    let text = fwd.text().replacen(BOB, "sip:carol@127.0.0.1:6001", 1);
    let out = h.send(UAS, text.as_bytes());
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].status(), Some(100));
    assert_eq!(out[0].to, addr(UAS));
    assert_downstream_request(&out[1], "INVITE", "127.0.0.1:6001");
    assert_eq!(out[1].vias().len(), 3);
    assert_eq!(out[1].max_forwards(), 68);
}

#[test]
fn a_domain_target_is_503_without_dns() {
    let answer = refused(&Request::new("INVITE", "sip:bob@example.com"), 503);
    assert!(!answer.has_header("Retry-After"));
}

#[test]
fn a_full_table_is_503_with_retry_after() {
    let mut h = Harness::with_max_transactions(1);
    start_call(&mut h, &Request::invite());
    let second = Request::invite()
        .branch("z9hG4bK-inv-2")
        .call_id("call-2@127.0.0.1");
    let answer = one(h.send(UAC, &second.build()));
    assert_upstream_response(&answer, 503);
    assert_eq!(answer.header("Retry-After"), "2");
    assert!(answer.to_tag().is_some());
    assert_eq!(answer.call_id(), "call-2@127.0.0.1");
    assert_eq!(h.core.stats().table_full, 1);
    assert_eq!(h.core.active_transactions(), 1);
}

// 7. Strict routing.

#[test]
fn request_uri_is_restored_after_a_strict_router() {
    let mut h = Harness::new();
    // The previous hop was a strict router: our Record-Route URI is the Request-URI and the
    // real target is the last Route.
    let request = Request::new("INVITE", "sip:127.0.0.1:5060;lr")
        .route("<sip:127.0.0.1:7000;lr>")
        .route("<sip:bob@127.0.0.1:6000>");
    let out = h.send(UAC, &request.build());
    assert_eq!(out.len(), 2);
    let fwd = &out[1];
    assert_downstream_request(fwd, "INVITE", "127.0.0.1:7000");
    assert_eq!(fwd.request_uri(), BOB);
    assert_eq!(fwd.routes(), ["<sip:127.0.0.1:7000;lr>"]);

    let mut h = Harness::new();
    let request = Request::new("INVITE", "sip:127.0.0.1:5060;lr").route("<sip:bob@127.0.0.1:6000>");
    let out = h.send(UAC, &request.build());
    let fwd = &out[1];
    assert_downstream_request(fwd, "INVITE", UAS);
    assert_eq!(fwd.request_uri(), BOB);
    assert!(fwd.routes().is_empty());
}

#[test]
fn next_hop_strict_router_gets_the_request_uri_and_the_old_one_goes_last() {
    let mut h = Harness::new();
    let request = Request::invite()
        .route("<sip:127.0.0.1:7000>")
        .route("<sip:10.0.0.9:5080;lr>");
    let out = h.send(UAC, &request.build());
    assert_eq!(out.len(), 2);
    let fwd = &out[1];
    assert_downstream_request(fwd, "INVITE", "127.0.0.1:7000");
    assert_eq!(fwd.request_uri(), "sip:127.0.0.1:7000");
    assert_eq!(
        fwd.routes(),
        ["<sip:10.0.0.9:5080;lr>", "<sip:bob@127.0.0.1:6000>"]
    );
    assert_eq!(fwd.headers("Record-Route"), [RECORD_ROUTE]);
}

#[test]
fn strict_router_after_our_own_route() {
    // Our Route is popped first; the strict router is the next one.
    let mut h = Harness::new();
    let request = Request::invite()
        .route(RECORD_ROUTE)
        .route("<sip:127.0.0.1:7000>");
    let out = h.send(UAC, &request.build());
    assert_eq!(
        out.len(),
        2,
        "{:?}",
        out.iter().map(Sent::text).collect::<Vec<_>>()
    );
    let fwd = &out[1];
    assert_downstream_request(fwd, "INVITE", "127.0.0.1:7000");
    assert_eq!(fwd.request_uri(), "sip:127.0.0.1:7000");
    assert_eq!(fwd.routes(), ["<sip:bob@127.0.0.1:6000>"]);
}

#[test]
fn our_route_is_popped_and_the_next_loose_route_is_the_target() {
    let mut h = Harness::new();
    let request = Request::invite()
        .route(RECORD_ROUTE)
        .route("<sip:127.0.0.1:7000;lr>");
    let out = h.send(UAC, &request.build());
    let fwd = &out[1];
    assert_downstream_request(fwd, "INVITE", "127.0.0.1:7000");
    assert_eq!(fwd.request_uri(), BOB);
    assert_eq!(fwd.routes(), ["<sip:127.0.0.1:7000;lr>"]);
}

#[test]
fn every_leading_route_of_ours_is_popped_so_the_request_does_not_spiral_back() {
    let mut h = Harness::new();
    // An outbound-proxy Route and a Service-Route (with ;orig), both us, then the R-URI.
    let request = Request::invite()
        .route("<sip:127.0.0.1:5060;lr>, <sip:127.0.0.1:5060;lr;orig>")
        .route("<sip:127.0.0.1:5061;lr>");
    let out = h.send(UAC, &request.build());
    let fwd = &out[1];
    assert_downstream_request(fwd, "INVITE", UAS);
    assert_eq!(fwd.request_uri(), BOB);
    assert!(fwd.routes().is_empty(), "{}", fwd.text());
}

// 8. Responses without a transaction.

fn response_with_vias(vias: &[&str]) -> Vec<u8> {
    let mut request = Request::invite();
    request.vias = vias.iter().map(|v| (*v).to_owned()).collect();
    response_to(&request.build(), 200, Some("bob-1"), &[])
}

#[test]
fn response_with_our_via_and_unknown_branch_is_forwarded_statelessly() {
    let mut h = Harness::new();
    let uac_via = "SIP/2.0/UDP 127.0.0.1:5000;branch=z9hG4bK-x;rport";
    for (i, ours) in [
        "SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bKdeadbeef;rport",
        // Well-formed as ours, but for a slot that holds nothing.
        "SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK0123456789abcdef.0.7.3;rport",
    ]
    .into_iter()
    .enumerate()
    {
        let up = one(h.send(UAS, &response_with_vias(&[ours, uac_via])));
        assert_upstream_response(&up, 200);
        assert_eq!(up.vias(), [uac_via]);
        assert_eq!(h.core.stats().stateless_responses, i as u64 + 1);
    }
    // received and rport in the next Via win over its sent-by.
    let natted = "SIP/2.0/UDP 10.1.1.1:5000;branch=z9hG4bK-y;received=127.0.0.1;rport=5002";
    let up = one(h.send(
        UAS,
        &response_with_vias(&["SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bKz", natted]),
    ));
    assert_eq!(up.to, addr("127.0.0.1:5002"));
    assert_eq!(up.socket, Socket::Shared);
}

#[test]
fn response_whose_top_via_is_not_ours_is_dropped() {
    let mut h = Harness::new();
    let uac_via = "SIP/2.0/UDP 127.0.0.1:5000;branch=z9hG4bK-x;rport";
    none(&h.send(
        UAS,
        &response_with_vias(&["SIP/2.0/UDP 127.0.0.1:7000;branch=z9hG4bKother", uac_via]),
    ));
    // Ours but nothing below it: nowhere to send it.
    none(&h.send(
        UAS,
        &response_with_vias(&["SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bKdeadbeef"]),
    ));
    assert_eq!(h.core.stats().stateless_responses, 0);
}

// 9. Garbage.

#[test]
fn garbage_is_counted_and_dropped() {
    let mut h = Harness::new();
    none(&h.send(UAC, b"\x00\x01\x02 not SIP at all\r\n\r\n"));
    assert_eq!(h.core.stats().parse_errors, 1);
    none(&h.send(UAC, b""));
    assert_eq!(h.core.stats().parse_errors, 2);
    assert_eq!(h.core.active_transactions(), 0);
}
