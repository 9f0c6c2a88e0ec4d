//! Server transactions (RFC 3261 §17.2, RFC 6026 §7.1, RFC 4320 §4.2) driven through every
//! state and every timer on a simulated clock. Times are milliseconds after the request
//! arrived.

mod common;

use common::{
    Clock, NOTHING, T1, T4, each, fast_config, intervals, run_to_end, run_until, times_of,
};
use txn::Action::{AckTimeout, SendRequest, SendResponse, Terminated, TransportError};
use txn::{
    ClientTransaction, Kind, ServerError, ServerState, ServerTransaction, TimerConfig, Transport,
};

fn new(kind: Kind, transport: Transport, clock: &Clock) -> ServerTransaction {
    new_with(kind, transport, TimerConfig::default(), clock)
}

fn new_with(
    kind: Kind,
    transport: Transport,
    config: TimerConfig,
    clock: &Clock,
) -> ServerTransaction {
    let txn = ServerTransaction::new(kind, transport, config, clock.at(0));
    assert_eq!(txn.kind(), kind);
    assert_eq!(clock.deadline(&txn), None);
    txn
}

/// The user sends `status` at `ms` and it is accepted with exactly `expected`.
fn respond(txn: &mut ServerTransaction, clock: &Clock, status: u16, ms: u64) -> Vec<txn::Action> {
    txn.send_response(status, clock.at(ms))
        .unwrap_or_else(|e| panic!("{status} at {ms} ms refused: {e}"))
        .to_vec()
}

/// Every event a server transaction takes yields nothing (or `Terminated`) once it is over.
fn assert_inert(txn: &mut ServerTransaction, clock: &Clock) {
    assert_eq!(txn.state(), ServerState::Terminated);
    assert!(txn.is_terminated());
    assert_eq!(txn.poll_timeout(), None);
    for status in [100, 180, 200, 486] {
        assert_eq!(
            txn.send_response(status, clock.at(100_000)),
            Err(ServerError::Terminated)
        );
    }
    assert_eq!(txn.on_request_retransmission().as_slice(), NOTHING);
    assert_eq!(txn.on_ack(clock.at(100_000)).as_slice(), NOTHING);
    assert_eq!(txn.on_transport_error().as_slice(), NOTHING);
    for ms in [0, 500, 32_000, 1_000_000] {
        assert_eq!(txn.handle_timeout(clock.at(ms)).as_slice(), NOTHING);
    }
    assert_eq!(txn.state(), ServerState::Terminated);
}

// ---------------------------------------------------------------------------------------
// INVITE: Proceeding
// ---------------------------------------------------------------------------------------

/// §17.2.1: an INVITE server transaction starts in Proceeding with no timer; a
/// retransmission before the user answered has nothing to repeat.
#[test]
fn invite_starts_proceeding_and_absorbs_retransmission_before_any_response() {
    let clock = Clock::new();
    let mut txn = new(Kind::Invite, Transport::Unreliable, &clock);
    assert_eq!(txn.state(), ServerState::Proceeding);
    assert_eq!(txn.on_request_retransmission().as_slice(), NOTHING);
    assert_eq!(txn.on_ack(clock.at(10)).as_slice(), NOTHING);
    assert_eq!(txn.handle_timeout(clock.at(1_000_000)).as_slice(), NOTHING);
    assert_eq!(txn.state(), ServerState::Proceeding);
    assert_eq!(clock.deadline(&txn), None);
}

/// Provisionals are sent, and a retransmitted INVITE gets the latest one again. No timer
/// runs in Proceeding.
#[test]
fn invite_provisionals_repeat_on_retransmission() {
    let clock = Clock::new();
    let mut txn = new(Kind::Invite, Transport::Unreliable, &clock);
    assert_eq!(respond(&mut txn, &clock, 100, 10), [SendResponse]);
    assert_eq!(txn.state(), ServerState::Proceeding);
    assert_eq!(txn.on_request_retransmission().as_slice(), [SendResponse]);
    assert_eq!(respond(&mut txn, &clock, 180, 2_000), [SendResponse]);
    assert_eq!(txn.on_request_retransmission().as_slice(), [SendResponse]);
    assert_eq!(respond(&mut txn, &clock, 183, 3_000), [SendResponse]);
    assert_eq!(txn.state(), ServerState::Proceeding);
    assert_eq!(clock.deadline(&txn), None);
    assert_eq!(txn.on_ack(clock.at(4_000)).as_slice(), NOTHING);
    assert_eq!(txn.state(), ServerState::Proceeding);
}

// ---------------------------------------------------------------------------------------
// INVITE: Accepted (RFC 6026)
// ---------------------------------------------------------------------------------------

/// RFC 6026 §7.1: a 2xx moves to Accepted and starts Timer L (64·T1). INVITE
/// retransmissions are absorbed (the user retransmits the 2xx itself), further 2xx from the
/// user are sent, anything else is refused, and Timer L ends the transaction.
#[test]
fn invite_2xx_accepted_until_timer_l() {
    let clock = Clock::new();
    let mut txn = new(Kind::Invite, Transport::Unreliable, &clock);
    assert_eq!(respond(&mut txn, &clock, 180, 100), [SendResponse]);
    assert_eq!(respond(&mut txn, &clock, 200, 1_000), [SendResponse]);
    assert_eq!(txn.state(), ServerState::Accepted);
    assert_eq!(clock.deadline(&txn), Some(1_000 + 64 * T1));

    assert_eq!(txn.on_request_retransmission().as_slice(), NOTHING);
    // The ACK of a 2xx is not part of the INVITE transaction.
    assert_eq!(txn.on_ack(clock.at(1_200)).as_slice(), NOTHING);
    assert_eq!(respond(&mut txn, &clock, 200, 1_500), [SendResponse]);
    assert_eq!(respond(&mut txn, &clock, 202, 3_500), [SendResponse]);
    assert_eq!(txn.on_request_retransmission().as_slice(), NOTHING);
    for status in [100, 180, 300, 486, 603] {
        assert_eq!(
            txn.send_response(status, clock.at(4_000)),
            Err(ServerError::AlreadyAnswered),
            "{status}"
        );
    }
    assert_eq!(txn.state(), ServerState::Accepted);
    // Neither the user's 2xx nor retransmissions restart Timer L.
    assert_eq!(clock.deadline(&txn), Some(33_000));

    assert_eq!(run_to_end(&mut txn, &clock), [(33_000, vec![Terminated])]);
    assert_inert(&mut txn, &clock);
}

/// A 2xx as the first response; Timer L runs over TCP as well.
#[test]
fn invite_2xx_without_provisional_and_over_tcp() {
    let clock = Clock::new();
    for transport in [Transport::Unreliable, Transport::Reliable] {
        let mut txn = new(Kind::Invite, transport, &clock);
        assert_eq!(txn.on_request_retransmission().as_slice(), NOTHING);
        assert_eq!(respond(&mut txn, &clock, 200, 50), [SendResponse]);
        assert_eq!(txn.state(), ServerState::Accepted);
        assert_eq!(txn.on_request_retransmission().as_slice(), NOTHING);
        assert_eq!(run_to_end(&mut txn, &clock), [(32_050, vec![Terminated])]);
        assert_inert(&mut txn, &clock);
    }
}

// ---------------------------------------------------------------------------------------
// INVITE: Completed, Confirmed
// ---------------------------------------------------------------------------------------

/// §17.2.1: a 3xx–6xx moves to Completed; Timer G repeats it at T1, then at intervals that
/// double up to T2; Timer H (64·T1) gives up on the ACK and tells the user.
#[test]
fn invite_udp_non_2xx_timer_g_capped_at_t2_until_timer_h() {
    let clock = Clock::new();
    let mut txn = new(Kind::Invite, Transport::Unreliable, &clock);
    assert_eq!(respond(&mut txn, &clock, 486, 0), [SendResponse]);
    assert_eq!(txn.state(), ServerState::Completed);
    assert_eq!(clock.deadline(&txn), Some(T1));

    let fired = run_to_end(&mut txn, &clock);
    let sends = [
        500, 1_500, 3_500, 7_500, 11_500, 15_500, 19_500, 23_500, 27_500, 31_500,
    ];
    let mut expected = each(&sends, SendResponse);
    expected.push((32_000, vec![AckTimeout, Terminated]));
    assert_eq!(fired, expected);
    assert_eq!(
        intervals(&times_of(&fired, SendResponse)),
        [
            1_000, 2_000, 4_000, 4_000, 4_000, 4_000, 4_000, 4_000, 4_000
        ]
    );
    assert_inert(&mut txn, &clock);
}

/// Timer G and H run from the final response, not from the request; a retransmitted INVITE
/// in Completed gets the final response again without disturbing Timer G.
#[test]
fn invite_udp_completed_repeats_final_on_retransmission() {
    let clock = Clock::new();
    let mut txn = new(Kind::Invite, Transport::Unreliable, &clock);
    assert_eq!(respond(&mut txn, &clock, 100, 0), [SendResponse]);
    assert_eq!(respond(&mut txn, &clock, 404, 2_000), [SendResponse]);
    assert_eq!(clock.deadline(&txn), Some(2_500));
    assert_eq!(txn.on_request_retransmission().as_slice(), [SendResponse]);
    assert_eq!(clock.deadline(&txn), Some(2_500));
    assert_eq!(
        run_until(&mut txn, &clock, 5_500),
        each(&[2_500, 3_500, 5_500], SendResponse)
    );
    assert_eq!(txn.on_request_retransmission().as_slice(), [SendResponse]);
    assert_eq!(clock.deadline(&txn), Some(9_500));
    let rest = run_to_end(&mut txn, &clock);
    assert_eq!(rest.last(), Some(&(34_000, vec![AckTimeout, Terminated])));
    assert_eq!(
        times_of(&rest, SendResponse),
        [9_500, 13_500, 17_500, 21_500, 25_500, 29_500, 33_500]
    );
}

/// §17.2.1: the ACK moves Completed to Confirmed: Timer G and H stop, Timer I (T4) starts,
/// ACK and INVITE retransmissions are absorbed, and Timer I ends the transaction.
#[test]
fn invite_udp_ack_confirmed_until_timer_i() {
    let clock = Clock::new();
    let mut txn = new(Kind::Invite, Transport::Unreliable, &clock);
    assert_eq!(respond(&mut txn, &clock, 603, 0), [SendResponse]);
    assert_eq!(
        run_until(&mut txn, &clock, 1_500),
        each(&[500, 1_500], SendResponse)
    );

    assert_eq!(txn.on_ack(clock.at(2_000)).as_slice(), NOTHING);
    assert_eq!(txn.state(), ServerState::Confirmed);
    assert_eq!(clock.deadline(&txn), Some(2_000 + T4));

    // The Timer G deadline (3.5 s) is stale.
    assert_eq!(txn.handle_timeout(clock.at(3_500)).as_slice(), NOTHING);
    assert_eq!(txn.on_ack(clock.at(3_600)).as_slice(), NOTHING);
    assert_eq!(txn.on_request_retransmission().as_slice(), NOTHING);
    assert_eq!(
        txn.send_response(500, clock.at(3_700)),
        Err(ServerError::AlreadyAnswered)
    );
    assert_eq!(txn.state(), ServerState::Confirmed);
    assert_eq!(clock.deadline(&txn), Some(7_000));

    assert_eq!(run_to_end(&mut txn, &clock), [(7_000, vec![Terminated])]);
    // The Timer H deadline (32 s) is stale too.
    assert_inert(&mut txn, &clock);
}

/// Over TCP there is no Timer G, Timer H still waits for the ACK, and Timer I is zero.
#[test]
fn invite_reliable_no_timer_g_ack_terminates_at_once() {
    let clock = Clock::new();
    let mut txn = new(Kind::Invite, Transport::Reliable, &clock);
    assert_eq!(respond(&mut txn, &clock, 486, 1_000), [SendResponse]);
    assert_eq!(txn.state(), ServerState::Completed);
    assert_eq!(clock.deadline(&txn), Some(33_000));
    assert_eq!(txn.on_request_retransmission().as_slice(), [SendResponse]);
    assert_eq!(txn.on_ack(clock.at(1_200)).as_slice(), [Terminated]);
    assert_inert(&mut txn, &clock);

    let mut txn = new(Kind::Invite, Transport::Reliable, &clock);
    assert_eq!(respond(&mut txn, &clock, 486, 1_000), [SendResponse]);
    assert_eq!(
        run_to_end(&mut txn, &clock),
        [(33_000, vec![AckTimeout, Terminated])]
    );
    assert_inert(&mut txn, &clock);
}

/// Only one final response per INVITE transaction, except 2xx after 2xx.
#[test]
fn invite_second_final_is_already_answered() {
    let clock = Clock::new();
    let mut txn = new(Kind::Invite, Transport::Unreliable, &clock);
    assert_eq!(respond(&mut txn, &clock, 480, 0), [SendResponse]);
    for status in [100, 180, 200, 480, 500] {
        assert_eq!(
            txn.send_response(status, clock.at(100)),
            Err(ServerError::AlreadyAnswered),
            "{status}"
        );
    }
    assert_eq!(txn.state(), ServerState::Completed);
    assert_eq!(clock.deadline(&txn), Some(500));
}

/// Status codes outside 100–699 are refused and change nothing, whatever the state.
#[test]
fn bad_status_is_refused() {
    let clock = Clock::new();
    for kind in [Kind::Invite, Kind::NonInvite] {
        let mut txn = new(kind, Transport::Unreliable, &clock);
        let initial = txn.state();
        for status in [0, 99, 700, 999] {
            assert_eq!(
                txn.send_response(status, clock.at(10)),
                Err(ServerError::BadStatus(status))
            );
            assert_eq!(txn.state(), initial);
            assert_eq!(clock.deadline(&txn), None);
            assert_eq!(txn.on_request_retransmission().as_slice(), NOTHING);
        }
        // The transaction still takes a valid response afterwards.
        assert_eq!(respond(&mut txn, &clock, 100, 20), [SendResponse]);
        assert_eq!(txn.state(), ServerState::Proceeding);
    }
}

/// §17.2.4: a transport failure is reported and ends the transaction in any live state.
#[test]
fn transport_error_in_each_state() {
    let clock = Clock::new();
    let live: [(Kind, &[u16], bool, ServerState); 7] = [
        (Kind::Invite, &[], false, ServerState::Proceeding),
        (Kind::Invite, &[180], false, ServerState::Proceeding),
        (Kind::Invite, &[200], false, ServerState::Accepted),
        (Kind::Invite, &[486], false, ServerState::Completed),
        (Kind::Invite, &[486], true, ServerState::Confirmed),
        (Kind::NonInvite, &[], false, ServerState::Trying),
        (Kind::NonInvite, &[100], false, ServerState::Proceeding),
    ];
    for (kind, responses, ack, state) in live {
        let mut txn = new(kind, Transport::Unreliable, &clock);
        for &status in responses {
            assert_eq!(respond(&mut txn, &clock, status, 10), [SendResponse]);
        }
        if ack {
            assert_eq!(txn.on_ack(clock.at(20)).as_slice(), NOTHING);
        }
        assert_eq!(txn.state(), state);
        assert_eq!(
            txn.on_transport_error().as_slice(),
            [TransportError, Terminated],
            "{state:?}"
        );
        assert_inert(&mut txn, &clock);
    }

    let mut completed = new(Kind::NonInvite, Transport::Unreliable, &clock);
    assert_eq!(respond(&mut completed, &clock, 200, 10), [SendResponse]);
    assert_eq!(completed.state(), ServerState::Completed);
    assert_eq!(
        completed.on_transport_error().as_slice(),
        [TransportError, Terminated]
    );
    assert_inert(&mut completed, &clock);
}

// ---------------------------------------------------------------------------------------
// Non-INVITE
// ---------------------------------------------------------------------------------------

/// §17.2.2: a non-INVITE starts in Trying, where retransmissions are absorbed.
#[test]
fn non_invite_trying_absorbs_retransmissions() {
    let clock = Clock::new();
    let mut txn = new(Kind::NonInvite, Transport::Unreliable, &clock);
    assert_eq!(txn.state(), ServerState::Trying);
    assert_eq!(txn.on_request_retransmission().as_slice(), NOTHING);
    assert_eq!(txn.on_request_retransmission().as_slice(), NOTHING);
    assert_eq!(txn.on_ack(clock.at(10)).as_slice(), NOTHING);
    assert_eq!(txn.handle_timeout(clock.at(1_000_000)).as_slice(), NOTHING);
    assert_eq!(txn.state(), ServerState::Trying);
    assert_eq!(clock.deadline(&txn), None);
}

/// A provisional moves to Proceeding; retransmissions then get it again.
#[test]
fn non_invite_provisional_proceeding_repeats_on_retransmission() {
    let clock = Clock::new();
    let mut txn = new(Kind::NonInvite, Transport::Unreliable, &clock);
    assert_eq!(respond(&mut txn, &clock, 100, 3_500), [SendResponse]);
    assert_eq!(txn.state(), ServerState::Proceeding);
    assert_eq!(clock.deadline(&txn), None);
    assert_eq!(txn.on_request_retransmission().as_slice(), [SendResponse]);
    assert_eq!(respond(&mut txn, &clock, 100, 4_000), [SendResponse]);
    assert_eq!(txn.on_request_retransmission().as_slice(), [SendResponse]);
    assert_eq!(txn.state(), ServerState::Proceeding);
}

/// §17.2.2: a final response (2xx included) moves to Completed and starts Timer J (64·T1 over
/// UDP); retransmissions get the final response again; Timer J ends the transaction.
#[test]
fn non_invite_udp_final_completed_until_timer_j() {
    let clock = Clock::new();
    for (provisional, status) in [(false, 200), (true, 200), (false, 404), (true, 503)] {
        let mut txn = new(Kind::NonInvite, Transport::Unreliable, &clock);
        if provisional {
            assert_eq!(respond(&mut txn, &clock, 100, 500), [SendResponse]);
        }
        assert_eq!(respond(&mut txn, &clock, status, 1_000), [SendResponse]);
        assert_eq!(txn.state(), ServerState::Completed);
        assert_eq!(clock.deadline(&txn), Some(1_000 + 64 * T1));
        assert_eq!(txn.on_request_retransmission().as_slice(), [SendResponse]);
        assert_eq!(txn.on_request_retransmission().as_slice(), [SendResponse]);
        for again in [100, 200, 404] {
            assert_eq!(
                txn.send_response(again, clock.at(2_000)),
                Err(ServerError::AlreadyAnswered)
            );
        }
        assert_eq!(clock.deadline(&txn), Some(33_000));
        assert_eq!(run_to_end(&mut txn, &clock), [(33_000, vec![Terminated])]);
        assert_inert(&mut txn, &clock);
    }
}

/// Timer J is zero over a reliable transport.
#[test]
fn non_invite_reliable_final_terminates_at_once() {
    let clock = Clock::new();
    for provisional in [false, true] {
        let mut txn = new(Kind::NonInvite, Transport::Reliable, &clock);
        if provisional {
            assert_eq!(respond(&mut txn, &clock, 100, 10), [SendResponse]);
            assert_eq!(txn.on_request_retransmission().as_slice(), [SendResponse]);
        }
        assert_eq!(
            respond(&mut txn, &clock, 200, 20),
            [SendResponse, Terminated]
        );
        assert_inert(&mut txn, &clock);
    }
}

// ---------------------------------------------------------------------------------------
// RFC 4320 §4.2: no early 100 Trying to a non-INVITE over UDP
// ---------------------------------------------------------------------------------------

#[test]
fn rfc4320_trying_delay_defaults_to_3_5_seconds() {
    assert_eq!(
        TimerConfig::default().rfc4320_trying_delay().as_millis(),
        3_500
    );
    // With T1 = 100 ms and T2 = 400 ms, Timer E reaches T2 when it fires at 300 ms.
    assert_eq!(fast_config().rfc4320_trying_delay().as_millis(), 300);
}

/// The delay is exactly when a client's Timer E is first reset to T2.
#[test]
fn rfc4320_trying_delay_matches_client_timer_e() {
    let clock = Clock::new();
    for config in [TimerConfig::default(), fast_config()] {
        let (mut client, _) =
            ClientTransaction::start(Kind::NonInvite, Transport::Unreliable, config, clock.at(0));
        let t2 = u64::try_from(config.t2.as_millis()).expect("T2 in ms");
        let reset_to_t2 = loop {
            let at = client.poll_timeout().expect("Timer E is armed");
            assert_eq!(client.handle_timeout(at).as_slice(), [SendRequest]);
            let next = client.poll_timeout().expect("Timer E is re-armed");
            if clock.ms(next) - clock.ms(at) == t2 {
                break clock.ms(at);
            }
        };
        assert_eq!(
            u128::from(reset_to_t2),
            config.rfc4320_trying_delay().as_millis()
        );
    }
}

#[test]
fn may_send_trying_only_after_the_delay_for_udp_non_invite() {
    let clock = Clock::new();
    let udp = new(Kind::NonInvite, Transport::Unreliable, &clock);
    for (ms, allowed) in [
        (0, false),
        (1, false),
        (3_499, false),
        (3_500, true),
        (3_501, true),
        (60_000, true),
    ] {
        assert_eq!(udp.may_send_trying(clock.at(ms)), allowed, "{ms} ms");
    }

    let fast = new_with(
        Kind::NonInvite,
        Transport::Unreliable,
        fast_config(),
        &clock,
    );
    assert!(!fast.may_send_trying(clock.at(299)));
    assert!(fast.may_send_trying(clock.at(300)));

    // INVITE (any transport) and reliable non-INVITE: at once.
    for (kind, transport) in [
        (Kind::Invite, Transport::Unreliable),
        (Kind::Invite, Transport::Reliable),
        (Kind::NonInvite, Transport::Reliable),
    ] {
        let txn = new(kind, transport, &clock);
        for ms in [0, 1, 3_499, 3_500, 60_000] {
            assert!(
                txn.may_send_trying(clock.at(ms)),
                "{kind:?} {transport:?} {ms} ms"
            );
        }
    }
}

/// The delay counts from the request's arrival, not from some earlier instant.
#[test]
fn may_send_trying_counts_from_creation() {
    let clock = Clock::new();
    let txn = ServerTransaction::new(
        Kind::NonInvite,
        Transport::Unreliable,
        TimerConfig::default(),
        clock.at(10_000),
    );
    assert!(!txn.may_send_trying(clock.at(0)));
    assert!(!txn.may_send_trying(clock.at(13_499)));
    assert!(txn.may_send_trying(clock.at(13_500)));
}

// ---------------------------------------------------------------------------------------
// Custom timer values and stale timers
// ---------------------------------------------------------------------------------------

/// T1 = 100 ms, T2 = 400 ms, T4 = 1 s: every server deadline moves with them.
#[test]
fn custom_config_moves_every_server_deadline() {
    let clock = Clock::new();
    let config = fast_config();

    // Timer G: 100, 300, 700, then every 400 ms up to 6.3 s; Timer H at 6.4 s.
    let mut completed = new_with(Kind::Invite, Transport::Unreliable, config, &clock);
    assert_eq!(respond(&mut completed, &clock, 500, 0), [SendResponse]);
    let sends: Vec<u64> = [100, 300]
        .into_iter()
        .chain((700..6_400).step_by(400))
        .collect();
    assert_eq!(sends.len(), 17);
    let mut expected = each(&sends, SendResponse);
    expected.push((6_400, vec![AckTimeout, Terminated]));
    assert_eq!(run_to_end(&mut completed, &clock), expected);

    // Timer I = T4 = 1 s after the ACK.
    let mut confirmed = new_with(Kind::Invite, Transport::Unreliable, config, &clock);
    assert_eq!(respond(&mut confirmed, &clock, 500, 0), [SendResponse]);
    assert_eq!(
        run_until(&mut confirmed, &clock, 300),
        each(&[100, 300], SendResponse)
    );
    assert_eq!(confirmed.on_ack(clock.at(350)).as_slice(), NOTHING);
    assert_eq!(
        run_to_end(&mut confirmed, &clock),
        [(1_350, vec![Terminated])]
    );

    // Timer L = 64·T1 = 6.4 s.
    let mut accepted = new_with(Kind::Invite, Transport::Unreliable, config, &clock);
    assert_eq!(respond(&mut accepted, &clock, 200, 50), [SendResponse]);
    assert_eq!(
        run_to_end(&mut accepted, &clock),
        [(6_450, vec![Terminated])]
    );

    // Timer J = 64·T1 = 6.4 s.
    let mut non_invite = new_with(Kind::NonInvite, Transport::Unreliable, config, &clock);
    assert_eq!(respond(&mut non_invite, &clock, 200, 50), [SendResponse]);
    assert_eq!(
        run_to_end(&mut non_invite, &clock),
        [(6_450, vec![Terminated])]
    );

    // Timer H over TCP = 6.4 s, no Timer G.
    let mut reliable = new_with(Kind::Invite, Transport::Reliable, config, &clock);
    assert_eq!(respond(&mut reliable, &clock, 500, 0), [SendResponse]);
    assert_eq!(
        run_to_end(&mut reliable, &clock),
        [(6_400, vec![AckTimeout, Terminated])]
    );
}

/// A call before the earliest deadline does nothing; a call at a deadline fires only what is
/// due; a deadline of a timer that a state change disarmed does nothing.
#[test]
fn early_and_stale_calls_do_nothing() {
    let clock = Clock::new();
    let mut txn = new(Kind::Invite, Transport::Unreliable, &clock);
    assert_eq!(respond(&mut txn, &clock, 486, 1_000), [SendResponse]);
    for ms in [0, 1_000, 1_499] {
        assert_eq!(txn.handle_timeout(clock.at(ms)).as_slice(), NOTHING);
        assert_eq!(clock.deadline(&txn), Some(1_500));
    }
    assert_eq!(
        txn.handle_timeout(clock.at(1_500)).as_slice(),
        [SendResponse]
    );
    assert_eq!(txn.handle_timeout(clock.at(1_500)).as_slice(), NOTHING);
    assert_eq!(clock.deadline(&txn), Some(2_500));

    assert_eq!(txn.on_ack(clock.at(2_000)).as_slice(), NOTHING);
    // G (2.5 s) and H (33 s) were disarmed by the ACK; I is at 7 s.
    assert_eq!(txn.handle_timeout(clock.at(2_500)).as_slice(), NOTHING);
    assert_eq!(txn.handle_timeout(clock.at(6_999)).as_slice(), NOTHING);
    assert_eq!(txn.state(), ServerState::Confirmed);
    assert_eq!(txn.handle_timeout(clock.at(7_000)).as_slice(), [Terminated]);
    assert_inert(&mut txn, &clock);
}

/// The (state, deadline) walk of one INVITE through Proceeding, Completed, Confirmed and
/// Terminated, to catch a timer left armed by a transition.
#[test]
fn invite_udp_deadline_after_each_transition() {
    let clock = Clock::new();
    let mut txn = new(Kind::Invite, Transport::Unreliable, &clock);
    let mut walk: Vec<(ServerState, Option<u64>)> = vec![(txn.state(), clock.deadline(&txn))];
    assert_eq!(respond(&mut txn, &clock, 180, 100), [SendResponse]);
    walk.push((txn.state(), clock.deadline(&txn)));
    assert_eq!(respond(&mut txn, &clock, 486, 5_000), [SendResponse]);
    walk.push((txn.state(), clock.deadline(&txn)));
    assert_eq!(
        run_until(&mut txn, &clock, 6_500),
        each(&[5_500, 6_500], SendResponse)
    );
    walk.push((txn.state(), clock.deadline(&txn)));
    assert_eq!(txn.on_ack(clock.at(7_000)).as_slice(), NOTHING);
    walk.push((txn.state(), clock.deadline(&txn)));
    assert_eq!(run_to_end(&mut txn, &clock), [(12_000, vec![Terminated])]);
    walk.push((txn.state(), clock.deadline(&txn)));
    assert_eq!(
        walk,
        [
            (ServerState::Proceeding, None),
            (ServerState::Proceeding, None),
            (ServerState::Completed, Some(5_500)),
            (ServerState::Completed, Some(8_500)),
            (ServerState::Confirmed, Some(12_000)),
            (ServerState::Terminated, None),
        ]
    );
}
