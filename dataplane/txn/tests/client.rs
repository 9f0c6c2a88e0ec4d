//! Client transactions (RFC 3261 §17.1, RFC 6026 §7.2) driven through every state and every
//! timer on a simulated clock. Times are milliseconds after the transaction started.

mod common;

use std::time::Duration;

use common::{
    Clock, Fired, NOTHING, T1, T2, T4, each, fast_config, intervals, run_to_end, run_until,
    times_of,
};
use txn::Action::{DeliverResponse, SendAck, SendRequest, Terminated, Timeout, TransportError};
use txn::{ClientState, ClientTransaction, Kind, TimerConfig, Transport};

fn start(kind: Kind, transport: Transport, clock: &Clock) -> ClientTransaction {
    start_with(kind, transport, TimerConfig::default(), clock)
}

fn start_with(
    kind: Kind,
    transport: Transport,
    config: TimerConfig,
    clock: &Clock,
) -> ClientTransaction {
    let (txn, actions) = ClientTransaction::start(kind, transport, config, clock.at(0));
    assert_eq!(actions.as_slice(), [SendRequest]);
    assert_eq!(txn.kind(), kind);
    txn
}

/// Every event a client transaction takes yields nothing and changes nothing once it is over.
fn assert_inert(txn: &mut ClientTransaction, clock: &Clock) {
    assert_eq!(txn.state(), ClientState::Terminated);
    assert!(txn.is_terminated());
    assert_eq!(txn.poll_timeout(), None);
    for status in [100, 180, 200, 202, 302, 486, 503, 699] {
        assert_eq!(
            txn.on_response(status, clock.at(100_000)).as_slice(),
            NOTHING,
            "{status}"
        );
    }
    assert_eq!(txn.on_transport_error().as_slice(), NOTHING);
    for ms in [0, 500, 32_000, 1_000_000] {
        assert_eq!(txn.handle_timeout(clock.at(ms)).as_slice(), NOTHING);
    }
    assert_eq!(txn.state(), ClientState::Terminated);
    assert_eq!(txn.poll_timeout(), None);
}

// ---------------------------------------------------------------------------------------
// INVITE over UDP
// ---------------------------------------------------------------------------------------

/// §17.1.1.2: Timer A fires at T1 and doubles without a cap; Timer B ends the transaction at
/// 64·T1 with a timeout. With T1 = 500 ms: six retransmissions, then B at 32 s.
#[test]
fn invite_udp_timer_a_doubles_uncapped_until_timer_b() {
    let clock = Clock::new();
    let mut txn = start(Kind::Invite, Transport::Unreliable, &clock);
    assert_eq!(txn.state(), ClientState::Calling);
    assert_eq!(clock.deadline(&txn), Some(T1));

    let fired = run_to_end(&mut txn, &clock);
    let mut expected = each(&[500, 1_500, 3_500, 7_500, 15_500, 31_500], SendRequest);
    expected.push((32_000, vec![Timeout, Terminated]));
    assert_eq!(fired, expected);

    let sends = times_of(&fired, SendRequest);
    assert_eq!(sends.len(), 6);
    // Past T2 = 4 s: Timer A is not capped (that is Timer E and G).
    assert_eq!(intervals(&sends), [1_000, 2_000, 4_000, 8_000, 16_000]);
    assert_inert(&mut txn, &clock);
}

/// The transaction stays in Calling while it retransmits.
#[test]
fn invite_udp_stays_calling_between_retransmissions() {
    let clock = Clock::new();
    let mut txn = start(Kind::Invite, Transport::Unreliable, &clock);
    assert_eq!(
        run_until(&mut txn, &clock, 3_500),
        each(&[500, 1_500, 3_500], SendRequest)
    );
    assert_eq!(txn.state(), ClientState::Calling);
    assert_eq!(clock.deadline(&txn), Some(7_500));
}

/// A provisional response stops Timer A. Timer B only bounds the wait for a first response
/// (§17.1.1.2: "still in the Calling state when timer B fires"; Figure 5 and RFC 6026
/// Figure 5 have no Timer B out of Proceeding), so it stops too: a phone may ring longer
/// than 64·T1, and ending the ringing is the user's business (a proxy's Timer C).
#[test]
fn invite_udp_provisional_stops_timer_a_and_timer_b() {
    let clock = Clock::new();
    let mut txn = start(Kind::Invite, Transport::Unreliable, &clock);
    assert_eq!(
        run_until(&mut txn, &clock, 1_500),
        each(&[500, 1_500], SendRequest)
    );

    assert_eq!(
        txn.on_response(100, clock.at(2_000)).as_slice(),
        [DeliverResponse]
    );
    assert_eq!(txn.state(), ClientState::Proceeding);
    assert_eq!(clock.deadline(&txn), None);

    // The deadlines Timer A and B had are stale now.
    for ms in [3_500, 7_500, 32_000, 40_000] {
        assert_eq!(txn.handle_timeout(clock.at(ms)).as_slice(), NOTHING);
    }
    assert_eq!(txn.state(), ClientState::Proceeding);

    // Later provisionals still go up, and a final response long after 64·T1 is taken.
    assert_eq!(
        txn.on_response(180, clock.at(45_000)).as_slice(),
        [DeliverResponse]
    );
    assert_eq!(
        txn.on_response(183, clock.at(50_000)).as_slice(),
        [DeliverResponse]
    );
    assert_eq!(txn.state(), ClientState::Proceeding);
    assert_eq!(
        txn.on_response(200, clock.at(60_000)).as_slice(),
        [DeliverResponse]
    );
    assert_eq!(txn.state(), ClientState::Accepted);
    assert_eq!(clock.deadline(&txn), Some(60_000 + 64 * T1));
}

/// RFC 6026 §7.2: a 2xx moves Calling to Accepted and starts Timer M (64·T1); 2xx
/// retransmissions (or 2xx from other forks) still go up, anything else is absorbed, and
/// Timer M ends the transaction without a timeout.
#[test]
fn invite_udp_2xx_in_calling_accepted_until_timer_m() {
    let clock = Clock::new();
    let mut txn = start(Kind::Invite, Transport::Unreliable, &clock);
    assert_eq!(run_until(&mut txn, &clock, 500), each(&[500], SendRequest));

    assert_eq!(
        txn.on_response(200, clock.at(800)).as_slice(),
        [DeliverResponse]
    );
    assert_eq!(txn.state(), ClientState::Accepted);
    assert_eq!(clock.deadline(&txn), Some(800 + 32_000));

    // The old Timer A and B deadlines do nothing.
    assert_eq!(txn.handle_timeout(clock.at(1_500)).as_slice(), NOTHING);
    assert_eq!(txn.handle_timeout(clock.at(32_000)).as_slice(), NOTHING);
    assert_eq!(txn.state(), ClientState::Accepted);

    assert_eq!(
        txn.on_response(200, clock.at(1_000)).as_slice(),
        [DeliverResponse]
    );
    assert_eq!(
        txn.on_response(299, clock.at(5_000)).as_slice(),
        [DeliverResponse]
    );
    for status in [100, 180, 300, 486, 603] {
        assert_eq!(
            txn.on_response(status, clock.at(6_000)).as_slice(),
            NOTHING,
            "{status}"
        );
    }
    assert_eq!(txn.state(), ClientState::Accepted);
    // Responses do not restart Timer M.
    assert_eq!(clock.deadline(&txn), Some(32_800));

    assert_eq!(run_to_end(&mut txn, &clock), [(32_800, vec![Terminated])]);
    assert_inert(&mut txn, &clock);
}

/// A 2xx after a provisional: Proceeding to Accepted, Timer M from the 2xx.
#[test]
fn invite_udp_2xx_in_proceeding_accepted_until_timer_m() {
    let clock = Clock::new();
    let mut txn = start(Kind::Invite, Transport::Unreliable, &clock);
    assert_eq!(
        txn.on_response(180, clock.at(300)).as_slice(),
        [DeliverResponse]
    );
    assert_eq!(
        txn.on_response(200, clock.at(10_000)).as_slice(),
        [DeliverResponse]
    );
    assert_eq!(txn.state(), ClientState::Accepted);
    assert_eq!(
        run_to_end(&mut txn, &clock),
        [(10_000 + 64 * T1, vec![Terminated])]
    );
    assert_inert(&mut txn, &clock);
}

/// §17.1.1.2: a 3xx–6xx in Proceeding is acknowledged and passed up; the transaction waits in
/// Completed for Timer D (at least 32 s), acknowledging every retransmission of the final
/// response without passing it up.
#[test]
fn invite_udp_non_2xx_in_proceeding_completed_until_timer_d() {
    let clock = Clock::new();
    let mut txn = start(Kind::Invite, Transport::Unreliable, &clock);
    assert_eq!(
        txn.on_response(100, clock.at(200)).as_slice(),
        [DeliverResponse]
    );
    assert_eq!(
        txn.on_response(486, clock.at(10_000)).as_slice(),
        [SendAck, DeliverResponse]
    );
    assert_eq!(txn.state(), ClientState::Completed);
    assert_eq!(clock.deadline(&txn), Some(42_000));

    assert_eq!(txn.on_response(486, clock.at(11_000)).as_slice(), [SendAck]);
    assert_eq!(txn.on_response(486, clock.at(20_000)).as_slice(), [SendAck]);
    // Late provisionals and a 2xx after the non-2xx are absorbed.
    for status in [100, 180, 200] {
        assert_eq!(
            txn.on_response(status, clock.at(21_000)).as_slice(),
            NOTHING,
            "{status}"
        );
    }
    assert_eq!(txn.state(), ClientState::Completed);
    assert_eq!(clock.deadline(&txn), Some(42_000));

    assert_eq!(run_to_end(&mut txn, &clock), [(42_000, vec![Terminated])]);
    assert_inert(&mut txn, &clock);
}

/// A final response straight from Calling: same handling, and Timer A and B are gone.
#[test]
fn invite_udp_non_2xx_in_calling_completed_until_timer_d() {
    let clock = Clock::new();
    let mut txn = start(Kind::Invite, Transport::Unreliable, &clock);
    assert_eq!(
        run_until(&mut txn, &clock, 1_500),
        each(&[500, 1_500], SendRequest)
    );
    for status in [300, 404, 500, 699] {
        let mut txn = txn.clone();
        assert_eq!(
            txn.on_response(status, clock.at(2_000)).as_slice(),
            [SendAck, DeliverResponse],
            "{status}"
        );
        assert_eq!(txn.state(), ClientState::Completed);
        assert_eq!(txn.handle_timeout(clock.at(3_500)).as_slice(), NOTHING);
        // Any final response repeated in Completed is acknowledged again.
        assert_eq!(
            txn.on_response(status, clock.at(4_000)).as_slice(),
            [SendAck]
        );
        assert_eq!(
            run_to_end(&mut txn, &clock),
            [(2_000 + 32_000, vec![Terminated])]
        );
        assert_inert(&mut txn, &clock);
    }
}

/// Timer D is "at least 32 s" for unreliable transports, independent of a small T1, and
/// 64·T1 when that is longer.
#[test]
fn timer_d_is_at_least_32_seconds() {
    let clock = Clock::new();
    let cases = [
        (fast_config(), 32_000),
        (TimerConfig::default(), 32_000),
        (
            TimerConfig {
                t1: Duration::from_secs(1),
                ..TimerConfig::default()
            },
            64_000,
        ),
    ];
    for (config, d) in cases {
        assert_eq!(config.timer_d().as_millis(), u128::from(d));
        let mut txn = start_with(Kind::Invite, Transport::Unreliable, config, &clock);
        assert_eq!(
            txn.on_response(404, clock.at(50)).as_slice(),
            [SendAck, DeliverResponse]
        );
        assert_eq!(run_to_end(&mut txn, &clock), [(50 + d, vec![Terminated])]);
    }
}

// ---------------------------------------------------------------------------------------
// INVITE over a reliable transport
// ---------------------------------------------------------------------------------------

/// No Timer A over TCP; Timer B still bounds the wait for a first response.
#[test]
fn invite_reliable_no_timer_a_timer_b_still_runs() {
    let clock = Clock::new();
    let mut txn = start(Kind::Invite, Transport::Reliable, &clock);
    assert_eq!(txn.state(), ClientState::Calling);
    assert_eq!(clock.deadline(&txn), Some(32_000));
    assert_eq!(
        run_to_end(&mut txn, &clock),
        [(32_000, vec![Timeout, Terminated])]
    );
    assert_inert(&mut txn, &clock);
}

/// Timer D is zero over a reliable transport: a non-2xx ends the transaction at once.
#[test]
fn invite_reliable_non_2xx_terminates_at_once() {
    let clock = Clock::new();
    let mut txn = start(Kind::Invite, Transport::Reliable, &clock);
    assert_eq!(
        txn.on_response(180, clock.at(100)).as_slice(),
        [DeliverResponse]
    );
    assert_eq!(txn.state(), ClientState::Proceeding);
    assert_eq!(clock.deadline(&txn), None);
    assert_eq!(
        txn.on_response(603, clock.at(40_000)).as_slice(),
        [SendAck, DeliverResponse, Terminated]
    );
    assert_inert(&mut txn, &clock);

    let mut txn = start(Kind::Invite, Transport::Reliable, &clock);
    assert_eq!(
        txn.on_response(302, clock.at(100)).as_slice(),
        [SendAck, DeliverResponse, Terminated]
    );
    assert_inert(&mut txn, &clock);
}

/// RFC 6026: Timer M runs for every transport.
#[test]
fn invite_reliable_2xx_accepted_until_timer_m() {
    let clock = Clock::new();
    let mut txn = start(Kind::Invite, Transport::Reliable, &clock);
    assert_eq!(
        txn.on_response(200, clock.at(1_000)).as_slice(),
        [DeliverResponse]
    );
    assert_eq!(txn.state(), ClientState::Accepted);
    assert_eq!(
        txn.on_response(200, clock.at(2_000)).as_slice(),
        [DeliverResponse]
    );
    assert_eq!(run_to_end(&mut txn, &clock), [(33_000, vec![Terminated])]);
    assert_inert(&mut txn, &clock);
}

// ---------------------------------------------------------------------------------------
// INVITE transport errors
// ---------------------------------------------------------------------------------------

/// §17.1.4: a transport failure while waiting for a final response is reported to the user
/// (who acts as on a 503); once a final response was delivered it only ends the transaction.
#[test]
fn invite_transport_error_in_each_state() {
    let clock = Clock::new();

    let mut calling = start(Kind::Invite, Transport::Unreliable, &clock);
    assert_eq!(
        calling.on_transport_error().as_slice(),
        [TransportError, Terminated]
    );
    assert_inert(&mut calling, &clock);

    let mut proceeding = start(Kind::Invite, Transport::Unreliable, &clock);
    let _ = proceeding.on_response(180, clock.at(100));
    assert_eq!(
        proceeding.on_transport_error().as_slice(),
        [TransportError, Terminated]
    );
    assert_inert(&mut proceeding, &clock);

    let mut completed = start(Kind::Invite, Transport::Unreliable, &clock);
    assert_eq!(
        completed.on_response(486, clock.at(100)).as_slice(),
        [SendAck, DeliverResponse]
    );
    assert_eq!(completed.on_transport_error().as_slice(), [Terminated]);
    assert_inert(&mut completed, &clock);

    let mut accepted = start(Kind::Invite, Transport::Unreliable, &clock);
    assert_eq!(
        accepted.on_response(200, clock.at(100)).as_slice(),
        [DeliverResponse]
    );
    assert_eq!(accepted.on_transport_error().as_slice(), [Terminated]);
    assert_inert(&mut accepted, &clock);
}

// ---------------------------------------------------------------------------------------
// Non-INVITE over UDP
// ---------------------------------------------------------------------------------------

/// §17.1.2.2: Timer E starts at T1 and doubles up to T2; Timer F ends the transaction at
/// 64·T1 with a timeout.
#[test]
fn non_invite_udp_timer_e_capped_at_t2_until_timer_f() {
    let clock = Clock::new();
    let mut txn = start(Kind::NonInvite, Transport::Unreliable, &clock);
    assert_eq!(txn.state(), ClientState::Trying);
    assert_eq!(clock.deadline(&txn), Some(T1));

    let fired = run_to_end(&mut txn, &clock);
    let sends = [
        500, 1_500, 3_500, 7_500, 11_500, 15_500, 19_500, 23_500, 27_500, 31_500,
    ];
    let mut expected = each(&sends, SendRequest);
    expected.push((32_000, vec![Timeout, Terminated]));
    assert_eq!(fired, expected);
    assert_eq!(
        intervals(&sends),
        [
            1_000, 2_000, 4_000, 4_000, 4_000, 4_000, 4_000, 4_000, 4_000
        ]
    );
    assert_inert(&mut txn, &clock);
}

/// §17.1.2.2: a provisional moves Trying to Proceeding without touching Timer E; when E next
/// fires it is reset to T2, every time. Timer F still runs and times the request out.
#[test]
fn non_invite_udp_proceeding_retransmits_every_t2_until_timer_f() {
    let clock = Clock::new();
    let mut txn = start(Kind::NonInvite, Transport::Unreliable, &clock);
    assert_eq!(run_until(&mut txn, &clock, 500), each(&[500], SendRequest));

    assert_eq!(
        txn.on_response(100, clock.at(600)).as_slice(),
        [DeliverResponse]
    );
    assert_eq!(txn.state(), ClientState::Proceeding);
    // E keeps the deadline it had (500 + 2·T1); in Trying the one after would be 3.5 s.
    assert_eq!(clock.deadline(&txn), Some(1_500));

    let fired = run_to_end(&mut txn, &clock);
    let sends = [1_500, 5_500, 9_500, 13_500, 17_500, 21_500, 25_500, 29_500];
    let mut expected = each(&sends, SendRequest);
    expected.push((32_000, vec![Timeout, Terminated]));
    assert_eq!(fired, expected);
    assert!(intervals(&sends).iter().all(|&gap| gap == T2));
    assert_inert(&mut txn, &clock);
}

/// A provisional before the first retransmission: T1, then T2 every time.
#[test]
fn non_invite_udp_early_provisional() {
    let clock = Clock::new();
    let mut txn = start(Kind::NonInvite, Transport::Unreliable, &clock);
    assert_eq!(
        txn.on_response(100, clock.at(100)).as_slice(),
        [DeliverResponse]
    );
    // A second provisional goes up too.
    assert_eq!(
        txn.on_response(100, clock.at(200)).as_slice(),
        [DeliverResponse]
    );
    let fired = run_until(&mut txn, &clock, 13_000);
    assert_eq!(fired, each(&[500, 4_500, 8_500, 12_500], SendRequest));
    assert_eq!(txn.state(), ClientState::Proceeding);
}

/// §17.1.2.2: a final response (2xx too) moves to Completed and Timer K (T4); retransmitted
/// finals and late provisionals are absorbed.
#[test]
fn non_invite_udp_final_completed_until_timer_k() {
    let clock = Clock::new();
    let mut txn = start(Kind::NonInvite, Transport::Unreliable, &clock);
    assert_eq!(run_until(&mut txn, &clock, 500), each(&[500], SendRequest));

    assert_eq!(
        txn.on_response(200, clock.at(700)).as_slice(),
        [DeliverResponse]
    );
    assert_eq!(txn.state(), ClientState::Completed);
    assert_eq!(clock.deadline(&txn), Some(700 + T4));

    for status in [200, 100, 180, 404, 503] {
        assert_eq!(
            txn.on_response(status, clock.at(800)).as_slice(),
            NOTHING,
            "{status}"
        );
    }
    // The stale Timer E deadline does nothing.
    assert_eq!(txn.handle_timeout(clock.at(1_500)).as_slice(), NOTHING);
    assert_eq!(txn.state(), ClientState::Completed);

    assert_eq!(run_to_end(&mut txn, &clock), [(5_700, vec![Terminated])]);
    // Nor does the stale Timer F deadline.
    assert_inert(&mut txn, &clock);
}

/// Proceeding to Completed on a non-2xx final.
#[test]
fn non_invite_udp_final_in_proceeding_completed_until_timer_k() {
    let clock = Clock::new();
    let mut txn = start(Kind::NonInvite, Transport::Unreliable, &clock);
    let _ = txn.on_response(100, clock.at(100));
    assert_eq!(
        run_until(&mut txn, &clock, 4_500),
        each(&[500, 4_500], SendRequest)
    );
    assert_eq!(
        txn.on_response(481, clock.at(5_000)).as_slice(),
        [DeliverResponse]
    );
    assert_eq!(txn.state(), ClientState::Completed);
    assert_eq!(txn.on_response(481, clock.at(5_100)).as_slice(), NOTHING);
    assert_eq!(run_to_end(&mut txn, &clock), [(10_000, vec![Terminated])]);
    assert_inert(&mut txn, &clock);
}

// ---------------------------------------------------------------------------------------
// Non-INVITE over a reliable transport
// ---------------------------------------------------------------------------------------

/// No Timer E; Timer F still runs, in Trying and in Proceeding.
#[test]
fn non_invite_reliable_no_timer_e_timer_f_still_runs() {
    let clock = Clock::new();
    let mut txn = start(Kind::NonInvite, Transport::Reliable, &clock);
    assert_eq!(clock.deadline(&txn), Some(32_000));
    assert_eq!(
        txn.on_response(100, clock.at(1_000)).as_slice(),
        [DeliverResponse]
    );
    assert_eq!(txn.state(), ClientState::Proceeding);
    assert_eq!(clock.deadline(&txn), Some(32_000));
    assert_eq!(
        run_to_end(&mut txn, &clock),
        [(32_000, vec![Timeout, Terminated])]
    );
    assert_inert(&mut txn, &clock);
}

/// Timer K is zero over a reliable transport.
#[test]
fn non_invite_reliable_final_terminates_at_once() {
    let clock = Clock::new();
    for provisional in [false, true] {
        let mut txn = start(Kind::NonInvite, Transport::Reliable, &clock);
        if provisional {
            let _ = txn.on_response(100, clock.at(10));
        }
        assert_eq!(
            txn.on_response(200, clock.at(20)).as_slice(),
            [DeliverResponse, Terminated]
        );
        assert_inert(&mut txn, &clock);
    }
}

/// §17.1.4 for a non-INVITE: reported while waiting, silent in Completed.
#[test]
fn non_invite_transport_error_in_each_state() {
    let clock = Clock::new();

    let mut trying = start(Kind::NonInvite, Transport::Unreliable, &clock);
    assert_eq!(
        trying.on_transport_error().as_slice(),
        [TransportError, Terminated]
    );
    assert_inert(&mut trying, &clock);

    let mut proceeding = start(Kind::NonInvite, Transport::Unreliable, &clock);
    let _ = proceeding.on_response(100, clock.at(10));
    assert_eq!(
        proceeding.on_transport_error().as_slice(),
        [TransportError, Terminated]
    );
    assert_inert(&mut proceeding, &clock);

    let mut completed = start(Kind::NonInvite, Transport::Unreliable, &clock);
    let _ = completed.on_response(200, clock.at(10));
    assert_eq!(completed.on_transport_error().as_slice(), [Terminated]);
    assert_inert(&mut completed, &clock);
}

// ---------------------------------------------------------------------------------------
// Custom timer values and stale timers
// ---------------------------------------------------------------------------------------

/// T1 = 100 ms, T2 = 400 ms, T4 = 1 s: every client deadline moves with them.
#[test]
fn custom_config_moves_every_client_deadline() {
    let clock = Clock::new();
    let config = fast_config();
    assert_eq!(config.transaction_timeout().as_millis(), 6_400);

    // Timer A: 100, 300, 700, 1500, 3100, 6300; Timer B at 6.4 s.
    let mut invite = start_with(Kind::Invite, Transport::Unreliable, config, &clock);
    let mut expected = each(&[100, 300, 700, 1_500, 3_100, 6_300], SendRequest);
    expected.push((6_400, vec![Timeout, Terminated]));
    assert_eq!(run_to_end(&mut invite, &clock), expected);

    // Timer E: 100, 300, 700, then every 400 ms up to 6.3 s; Timer F at 6.4 s.
    let mut non_invite = start_with(Kind::NonInvite, Transport::Unreliable, config, &clock);
    let sends: Vec<u64> = [100, 300]
        .into_iter()
        .chain((700..6_400).step_by(400))
        .collect();
    assert_eq!(sends.len(), 17);
    assert_eq!(sends.last(), Some(&6_300));
    let mut expected = each(&sends, SendRequest);
    expected.push((6_400, vec![Timeout, Terminated]));
    assert_eq!(run_to_end(&mut non_invite, &clock), expected);

    // Timer E in Proceeding: every T2 = 400 ms.
    let mut proceeding = start_with(Kind::NonInvite, Transport::Unreliable, config, &clock);
    let _ = proceeding.on_response(100, clock.at(50));
    assert_eq!(
        run_until(&mut proceeding, &clock, 1_000),
        each(&[100, 500, 900], SendRequest)
    );

    // Timer K = T4 = 1 s.
    let mut completed = start_with(Kind::NonInvite, Transport::Unreliable, config, &clock);
    let _ = completed.on_response(200, clock.at(150));
    assert_eq!(
        run_to_end(&mut completed, &clock),
        [(1_150, vec![Terminated])]
    );

    // Timer M = 64·T1 = 6.4 s.
    let mut accepted = start_with(Kind::Invite, Transport::Unreliable, config, &clock);
    let _ = accepted.on_response(200, clock.at(150));
    assert_eq!(
        run_to_end(&mut accepted, &clock),
        [(6_550, vec![Terminated])]
    );

    // Timer B over TCP = 6.4 s.
    let mut reliable = start_with(Kind::Invite, Transport::Reliable, config, &clock);
    assert_eq!(
        run_to_end(&mut reliable, &clock),
        [(6_400, vec![Timeout, Terminated])]
    );
}

/// A call before the earliest deadline does nothing and leaves the deadline alone; a call
/// at a deadline fires only what is due.
#[test]
fn early_and_stale_calls_do_nothing() {
    let clock = Clock::new();
    let mut txn = start(Kind::Invite, Transport::Unreliable, &clock);
    for ms in [0, 1, 250, 499] {
        assert_eq!(txn.handle_timeout(clock.at(ms)).as_slice(), NOTHING);
        assert_eq!(clock.deadline(&txn), Some(500));
        assert_eq!(txn.state(), ClientState::Calling);
    }
    assert_eq!(txn.handle_timeout(clock.at(500)).as_slice(), [SendRequest]);
    // Calling again at the same instant: A moved on to 1.5 s, nothing is due.
    assert_eq!(txn.handle_timeout(clock.at(500)).as_slice(), NOTHING);
    assert_eq!(clock.deadline(&txn), Some(1_500));

    // Non-INVITE: the Timer E deadline is stale once the final arrived, and the Timer K
    // deadline is not reached early.
    let mut txn = start(Kind::NonInvite, Transport::Unreliable, &clock);
    let _ = txn.on_response(200, clock.at(100));
    for ms in [500, 1_500, 5_099] {
        assert_eq!(txn.handle_timeout(clock.at(ms)).as_slice(), NOTHING);
        assert_eq!(txn.state(), ClientState::Completed);
    }
    assert_eq!(txn.handle_timeout(clock.at(5_100)).as_slice(), [Terminated]);
}

/// Every client timer together: the (state, deadline) walk of one INVITE through Calling,
/// Proceeding, Completed and Terminated, to catch a timer left armed by a transition.
#[test]
fn invite_udp_deadline_after_each_transition() {
    let clock = Clock::new();
    let mut txn = start(Kind::Invite, Transport::Unreliable, &clock);
    let mut walk: Vec<(ClientState, Option<u64>)> = vec![(txn.state(), clock.deadline(&txn))];
    let fired: Vec<Fired> = run_until(&mut txn, &clock, 500);
    assert_eq!(fired, each(&[500], SendRequest));
    walk.push((txn.state(), clock.deadline(&txn)));
    let _ = txn.on_response(180, clock.at(900));
    walk.push((txn.state(), clock.deadline(&txn)));
    let _ = txn.on_response(480, clock.at(20_000));
    walk.push((txn.state(), clock.deadline(&txn)));
    let _ = run_to_end(&mut txn, &clock);
    walk.push((txn.state(), clock.deadline(&txn)));
    assert_eq!(
        walk,
        [
            (ClientState::Calling, Some(500)),
            (ClientState::Calling, Some(1_500)),
            (ClientState::Proceeding, None),
            (ClientState::Completed, Some(52_000)),
            (ClientState::Terminated, None),
        ]
    );
}
