//! Matching keys: RFC 3261 §17.1.3 (responses to client transactions) and §17.2.3
//! (requests to server transactions), including the RFC 2543 fallback.

use sip::{Message, Method};
use txn::{INLINE_KEY, KeyError, TxnKey};

fn request(method: &str, via: &str, cseq: &str) -> Vec<u8> {
    format!(
        "{method} sip:bob@example.com SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\n\
         From: <sip:alice@example.com>;tag=a1\r\nTo: <sip:bob@example.com>\r\n\
         Call-ID: k1@example.com\r\nCSeq: {cseq}\r\nContent-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

fn server_key(bytes: &[u8]) -> TxnKey {
    TxnKey::server_for_request(&Message::parse(bytes).expect("parses")).expect("has a key")
}

const VIA: &str = "SIP/2.0/UDP client.example.com:5060;branch=z9hG4bK-k1";

#[test]
fn ack_and_retransmission_match_the_invite_cancel_does_not() {
    let invite = server_key(&request("INVITE", VIA, "1 INVITE"));
    assert_eq!(server_key(&request("INVITE", VIA, "1 INVITE")), invite);
    assert_eq!(server_key(&request("ACK", VIA, "1 ACK")), invite);
    assert_ne!(server_key(&request("CANCEL", VIA, "1 CANCEL")), invite);
    assert!(invite.is_inline());
}

#[test]
fn branch_sent_by_and_method_all_take_part() {
    let base = server_key(&request("BYE", VIA, "2 BYE"));
    let other_branch = "SIP/2.0/UDP client.example.com:5060;branch=z9hG4bK-k2";
    let other_port = "SIP/2.0/UDP client.example.com:5070;branch=z9hG4bK-k1";
    let other_host = "SIP/2.0/UDP other.example.com:5060;branch=z9hG4bK-k1";
    assert_ne!(server_key(&request("BYE", other_branch, "2 BYE")), base);
    assert_ne!(server_key(&request("BYE", other_port, "2 BYE")), base);
    assert_ne!(server_key(&request("BYE", other_host, "2 BYE")), base);
    assert_ne!(server_key(&request("OPTIONS", VIA, "2 OPTIONS")), base);
}

#[test]
fn rfc2543_requests_match_by_dialog_fields() {
    let old_via = "SIP/2.0/UDP old.example.com:5060";
    let invite = server_key(&request("INVITE", old_via, "7 INVITE"));
    assert_eq!(server_key(&request("ACK", old_via, "7 ACK")), invite);
    assert_ne!(server_key(&request("INVITE", old_via, "8 INVITE")), invite);
    let cookie = server_key(&request("INVITE", VIA, "7 INVITE"));
    assert_ne!(cookie, invite);
}

#[test]
fn client_key_from_response_matches_the_request_it_answers() {
    let response = b"SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK-out7\r\n\
        From: <sip:a@x>;tag=1\r\nTo: <sip:b@x>;tag=2\r\nCall-ID: c\r\nCSeq: 3 INVITE\r\n\
        Content-Length: 0\r\n\r\n";
    let msg = Message::parse(response).expect("parses");
    let key = TxnKey::client_for_response(&msg).expect("key");
    assert_eq!(key, TxnKey::client(b"z9hG4bK-out7", Method::Invite));
    assert_ne!(key, TxnKey::client(b"z9hG4bK-out7", Method::Cancel));
    // A server key with the same branch is a different transaction.
    assert_ne!(
        key.as_bytes()[0],
        server_key(&request("INVITE", VIA, "1 INVITE")).as_bytes()[0]
    );
}

#[test]
fn long_keys_move_to_the_heap_and_still_match_exactly() {
    let long = format!(
        "SIP/2.0/UDP h.example.com;branch=z9hG4bK{}",
        "x".repeat(INLINE_KEY)
    );
    let a = server_key(&request("INVITE", &long, "1 INVITE"));
    assert!(!a.is_inline());
    assert_eq!(server_key(&request("ACK", &long, "1 ACK")), a);
    let longer = format!("{long}y");
    assert_ne!(server_key(&request("INVITE", &longer, "1 INVITE")), a);
}

#[test]
fn a_response_without_branch_has_no_client_key() {
    let response = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.1\r\nFrom: <sip:a@x>;tag=1\r\n\
        To: <sip:b@x>\r\nCall-ID: c\r\nCSeq: 3 OPTIONS\r\nContent-Length: 0\r\n\r\n";
    let msg = Message::parse(response).expect("parses");
    assert_eq!(
        TxnKey::client_for_response(&msg),
        Err(KeyError::Missing("Via branch"))
    );
}
