//! `whitewater sprout` as a plain transaction-stateful proxy, driven by real SIPp: calls
//! through it complete with no failure and no unexpected message, and the proxy's metrics
//! agree with what SIPp sent.

mod common;

use common::{
    Calls, assert_calls_clean, calls_through, clean_calls_through, column, metric, scrape_until,
    start_proxy, start_proxy_with,
};

#[test]
fn two_thousand_calls_over_udp_complete_without_failure() {
    let proxy = start_proxy();
    let stats = calls_through(proxy.listen, &Calls::plain(2000, 200)).uac;
    assert_eq!(column(&stats, "SuccessfulCall(C)"), 2000);
    assert_eq!(column(&stats, "FailedCall(C)"), 0);
    assert_eq!(column(&stats, "Retransmissions(C)"), 0);
    // Cores publish their counters a few times a second: wait for the last call to show.
    let text = scrape_until(proxy.metrics, "2000 BYEs", |t| {
        metric(t, "ww_sip_requests_in_total{method=\"BYE\"}") >= 2000
    });
    // INVITE and BYE each make a transaction; ACK for 2xx is forwarded statelessly.
    assert_eq!(
        metric(&text, "ww_sip_requests_in_total{method=\"INVITE\"}"),
        2000
    );
    assert_eq!(
        metric(&text, "ww_sip_requests_out_total{method=\"ACK\"}"),
        2000
    );
    assert_eq!(metric(&text, "ww_sip_transactions_total"), 4000);
    assert_eq!(metric(&text, "ww_sip_parse_errors_total"), 0);
}

#[test]
fn two_thousand_calls_over_tcp_complete_without_failure() {
    let proxy = start_proxy();
    // One connection from the UAC and one the proxy opens to the UAS (the UAC's Request-URI
    // says transport=TCP); responses and in-dialog requests reuse them.
    let run = Calls {
        extra: &["-t", "t1"],
        uas_extra: &["-t", "t1"],
        uas_stats: true,
        ..Calls::plain(2000, 200)
    };
    let text = clean_calls_through(&proxy, &run);
    assert_eq!(metric(&text, "ww_sip_transactions_total"), 4000);
    assert_eq!(metric(&text, "ww_sip_retransmissions_total"), 0);
    assert_eq!(metric(&text, "ww_tcp_framing_errors_total"), 0);
}

#[test]
fn calls_complete_through_retransmissions_when_packets_are_lost() {
    let proxy = start_proxy();
    // SIPp drops 5 % of what it sends and receives; T1 retransmissions recover every call.
    let run = Calls {
        extra: &["-lost", "5"],
        ..Calls::plain(100, 20)
    };
    let stats = calls_through(proxy.listen, &run).uac;
    assert_eq!(column(&stats, "SuccessfulCall(C)"), 100);
    assert_eq!(column(&stats, "FailedCall(C)"), 0);
}

#[test]
fn two_hundred_calls_cancelled_while_ringing() {
    let proxy = start_proxy();
    // INVITE → 100 (proxy) → 180 → CANCEL → 200 (proxy) → CANCEL downstream → 200 (UAS,
    // absorbed) and 487 → 487 relayed → ACK absorbed, and the proxy's own ACK to the UAS.
    let run = Calls {
        uac: "proxy-uac-cancel.xml",
        uas: "proxy-uas-cancel.xml",
        uas_stats: true,
        ..Calls::plain(200, 100)
    };
    let stats = calls_through(proxy.listen, &run);
    assert_calls_clean("uac", &stats.uac, 200);
    assert_calls_clean("uas", &stats.uas, 200);
    // The UAC's ACK for the 487 is the last message of a call to reach the proxy.
    let text = scrape_until(proxy.metrics, "200 ACKs received", |t| {
        metric(t, "ww_sip_requests_in_total{method=\"ACK\"}") >= 200
    });
    let count = |name: &str| metric(&text, name);
    assert_eq!(count("ww_sip_requests_in_total{method=\"INVITE\"}"), 200);
    assert_eq!(count("ww_sip_requests_in_total{method=\"CANCEL\"}"), 200);
    assert_eq!(count("ww_sip_requests_in_total{method=\"ACK\"}"), 200);
    // Each CANCEL went on downstream once; each ACK for a 487 was generated here.
    assert_eq!(count("ww_sip_requests_out_total{method=\"INVITE\"}"), 200);
    assert_eq!(count("ww_sip_requests_out_total{method=\"CANCEL\"}"), 200);
    assert_eq!(count("ww_sip_requests_out_total{method=\"ACK\"}"), 200);
    // Upstream: 100 and the relayed 180 per call, the proxy's 200 to CANCEL, the 487.
    assert_eq!(count("ww_sip_responses_out_total{class=\"1xx\"}"), 400);
    assert_eq!(count("ww_sip_responses_out_total{class=\"2xx\"}"), 200);
    assert_eq!(count("ww_sip_responses_out_total{class=\"4xx\"}"), 200);
    // Downstream answered 180, 200 to the CANCEL (ends at the proxy) and 487.
    assert_eq!(count("ww_sip_responses_in_total{class=\"1xx\"}"), 200);
    assert_eq!(count("ww_sip_responses_in_total{class=\"2xx\"}"), 200);
    assert_eq!(count("ww_sip_responses_in_total{class=\"4xx\"}"), 200);
    // A CANCEL is matched to its INVITE's transaction, not given one of its own.
    assert_eq!(count("ww_sip_transactions_total"), 200);
    assert_eq!(count("ww_sip_parse_errors_total"), 0);
    assert_eq!(count("ww_sip_timeouts_total"), 0);
}

#[test]
fn a_180_after_the_200_does_not_disturb_the_call() {
    let proxy = start_proxy();
    // The UAS sends 200 then 180. The 2xx has moved both of the proxy's INVITE transactions
    // to Accepted (RFC 6026), where a provisional response has nowhere to go: it is absorbed.
    // The UAC would accept it anyway (optional="global").
    let run = Calls {
        uac: "proxy-uac-reordered.xml",
        uas: "proxy-uas-reordered.xml",
        uas_stats: true,
        ..Calls::plain(200, 100)
    };
    let stats = calls_through(proxy.listen, &run);
    assert_calls_clean("uac", &stats.uac, 200);
    assert_calls_clean("uas", &stats.uas, 200);
    // The 200 to BYE is the last message of a call through the proxy.
    let text = scrape_until(proxy.metrics, "400 2xx relayed", |t| {
        metric(t, "ww_sip_responses_out_total{class=\"2xx\"}") >= 400
    });
    let count = |name: &str| metric(&text, name);
    assert_eq!(count("ww_sip_responses_in_total{class=\"1xx\"}"), 200);
    assert_eq!(count("ww_sip_responses_in_total{class=\"2xx\"}"), 400);
    // Upstream got the proxy's own 100 Trying per call and no 180.
    assert_eq!(count("ww_sip_responses_out_total{class=\"1xx\"}"), 200);
    assert_eq!(count("ww_sip_responses_out_total{class=\"2xx\"}"), 400);
    assert_eq!(count("ww_sip_absorbed_total"), 200);
    assert_eq!(count("ww_sip_transactions_total"), 400);
    assert_eq!(count("ww_sip_parse_errors_total"), 0);
}

#[test]
fn under_load_a_core_waits_to_batch_its_datagrams_and_every_call_stays_clean() {
    // With a 2 ms window the batched path starts to sleep a moment after each batch from
    // 4,000 datagrams a second (8 a window); 1,000 calls/s is 6,000 into the core. The
    // waits must show in the metrics, and not one call may fail or be retransmitted.
    let proxy = start_proxy_with(&["--coalesce-us", "2000"]);
    let run = Calls {
        uas_stats: true,
        ..Calls::plain(5000, 1000)
    };
    let text = clean_calls_through(&proxy, &run);
    let waits = metric(&text, "ww_udp_coalesced_waits_total");
    // test.sh runs this suite on both UDP paths; the io_uring path does not moderate.
    if std::env::var("WW_UDP_IO").is_ok_and(|io| io == "uring") {
        assert_eq!(waits, 0, "the io_uring path waited:\n{text}");
    } else {
        assert!(waits > 0, "no coalesced wait at 1,000 calls/s:\n{text}");
    }
    assert_eq!(metric(&text, "ww_sip_retransmissions_total"), 0);
}

#[test]
fn coalescing_turned_off_never_waits() {
    let proxy = start_proxy_with(&["--coalesce-us", "0"]);
    let text = clean_calls_through(&proxy, &Calls::plain(2000, 1000));
    assert_eq!(metric(&text, "ww_udp_coalesced_waits_total"), 0);
}
