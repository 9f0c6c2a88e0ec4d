//! Overload control: a burst of initial requests beyond the token bucket gets 503 with
//! Retry-After; OPTIONS, in-dialog requests, ACK and CANCEL are never shed.

mod common;

use std::time::Duration;

use common::*;
use proxy::OverloadConfig;

fn small_bucket() -> Harness {
    Harness::with_config(
        1024,
        OverloadConfig {
            max_tokens: 3.0,
            initial_rate: 10.0,
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
    // Tokens come back at the refill rate: 10 per second.
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
