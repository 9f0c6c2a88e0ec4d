//! Originating and terminating routing through the S-CSCF chain: calls to home users
//! forked to their live bindings, calls from our users asserted and sent on, and the 407
//! challenge of originating requests when it is configured.

mod harness;

use harness::*;
use ims::sproutlet::{LookupFailure, Query};
use proxy::{Protocol, Target};
use sip::HeaderName;

/// The Route our Service-Route puts on a UE's requests.
const ORIG_ROUTE: &str = "Route: <sip:scscf.example.com;lr;orig>";
/// A user of another domain, reachable without DNS.
const ELSEWHERE: &str = "sip:bob@192.0.2.7:5060";

fn invite(to: &str, from: &str, extra: &[&str]) -> String {
    let start = format!("INVITE {to} SIP/2.0");
    let from = format!("From: <{from}>;tag=caller");
    let to = format!("To: <{to}>");
    let mut lines = vec![
        start.as_str(),
        "Via: SIP/2.0/UDP 10.0.0.7:5060;branch=z9hG4bK-inv-1",
        "Max-Forwards: 70",
        from.as_str(),
        to.as_str(),
        "Call-ID: call-1",
        "CSeq: 1 INVITE",
        "Contact: <sip:caller@10.0.0.7:5060>",
    ];
    lines.extend_from_slice(extra);
    request(&lines)
}

fn target(address: &str, request_uri: Option<&str>, routes: &[&str]) -> Target {
    Target {
        address: address.parse().expect("a socket address"),
        protocol: Protocol::Udp,
        udp_fallback: false,
        request_uri: request_uri.map(|uri| uri.as_bytes().to_vec()),
        routes: routes.iter().map(|r| r.as_bytes().to_vec()).collect(),
        add_headers: Vec::new(),
        remove_headers: Vec::new(),
    }
}

fn asserted(identity: &str) -> Vec<(&'static str, Vec<u8>)> {
    vec![("P-Asserted-Identity", format!("<{identity}>").into_bytes())]
}

#[test]
fn a_call_to_a_registered_user_forks_to_each_live_binding_highest_q_first() {
    let mut h = Harness::new(NOW);
    h.seed_registration(
        &RegisterRequest {
            call_id: "reg-a".to_owned(),
            contacts: vec!["<sip:ue@10.0.0.1:5060>;q=0.5".to_owned()],
            ..RegisterRequest::default()
        }
        .text(),
    );
    h.seed_registration(
        &RegisterRequest {
            call_id: "reg-b".to_owned(),
            contacts: vec!["<sip:ue2@10.0.0.3:5060>;q=0.9".to_owned()],
            path: None,
            ..RegisterRequest::default()
        }
        .text(),
    );
    h.seed_registration(
        &RegisterRequest {
            call_id: "reg-c".to_owned(),
            contacts: vec!["<sip:old@10.0.0.4:5060>".to_owned()],
            expires: Some(60),
            path: None,
            ..RegisterRequest::default()
        }
        .text(),
    );
    // The third binding has expired, though still stored.
    h.now_s += 100;

    let step = h.drive(&invite(AOR, "sip:caller@other.net", &[]));
    assert_eq!(
        h.queries,
        [Query::ReadAor {
            aor: AOR.to_owned()
        }]
    );
    assert_eq!(
        targets(&step).to_vec(),
        vec![
            target("10.0.0.3:5060", Some("sip:ue2@10.0.0.3:5060"), &[]),
            // Through the P-CSCF the REGISTER came by.
            target("10.0.0.2:5060", Some("sip:ue@10.0.0.1:5060"), &[PATH]),
        ]
    );
}

#[test]
fn a_subscriber_with_no_binding_is_temporarily_unavailable() {
    let mut h = Harness::new(NOW);
    let step = h.drive(&invite(AOR, "sip:caller@other.net", &[]));
    assert_eq!(h.asked(), ["ReadAor", "Exists"]);
    assert_eq!(
        h.queries[1],
        Query::Exists {
            impu: AOR.to_owned()
        }
    );
    assert_eq!(status(&step), 480);
}

#[test]
fn a_call_to_no_subscriber_is_not_found() {
    let mut h = Harness::new(NOW);
    let step = h.drive(&invite(
        "sip:nobody@example.com",
        "sip:caller@other.net",
        &[],
    ));
    assert_eq!(h.asked(), ["ReadAor", "Exists"]);
    assert_eq!(status(&step), 404);
}

#[test]
fn homestead_unavailable_for_the_existence_check_is_a_timeout() {
    let mut h = Harness::new(NOW);
    h.homestead.failure = Some(LookupFailure::Unavailable("overloaded".to_owned()));
    let step = h.drive(&invite(AOR, "sip:caller@other.net", &[]));
    assert_eq!(h.asked(), ["ReadAor", "Exists"]);
    assert_eq!(status(&step), 504);
}

#[test]
fn an_originating_call_to_another_domain_goes_on_with_the_callers_asserted_identity() {
    let mut h = Harness::new(NOW);
    let step = h.drive(&invite(ELSEWHERE, AOR, &[ORIG_ROUTE]));
    assert!(h.queries.is_empty(), "asked {:?}", h.queries);
    let expected = Target {
        add_headers: asserted(AOR),
        ..target("192.0.2.7:5060", None, &[])
    };
    assert_eq!(targets(&step).to_vec(), vec![expected]);
}

#[test]
fn an_identity_already_asserted_is_kept() {
    let mut h = Harness::new(NOW);
    let pai = format!("P-Asserted-Identity: <{AOR}>");
    let step = h.drive(&invite(ELSEWHERE, AOR, &[ORIG_ROUTE, pai.as_str()]));
    assert_eq!(targets(&step).len(), 1);
    assert!(targets(&step)[0].add_headers.is_empty());
}

#[test]
fn an_originating_call_to_a_home_user_is_forked_with_the_callers_identity() {
    let callee = "sip:6505550001@example.com";
    let mut h = Harness::new(NOW);
    h.seed_registration(
        &RegisterRequest {
            aor: callee.to_owned(),
            contacts: vec!["<sip:callee@10.0.0.5:5060>".to_owned()],
            path: None,
            ..RegisterRequest::default()
        }
        .text(),
    );
    let step = h.drive(&invite(callee, AOR, &[ORIG_ROUTE]));
    assert_eq!(h.asked(), ["ReadAor"]);
    let expected = Target {
        add_headers: asserted(AOR),
        ..target("10.0.0.5:5060", Some("sip:callee@10.0.0.5:5060"), &[])
    };
    assert_eq!(targets(&step).to_vec(), vec![expected]);
}

fn authenticating() -> Harness {
    Harness::configured(NOW, |s| s.authenticate_originating = true)
}

#[test]
fn an_originating_call_without_credentials_is_challenged_with_407() {
    let mut h = authenticating();
    let step = h.drive(&invite(ELSEWHERE, AOR, &[ORIG_ROUTE]));
    assert!(h.queries.is_empty(), "asked {:?}", h.queries);
    assert_eq!(status(&step), 407);
    assert_eq!(header(&step, "WWW-Authenticate"), None);
    let challenge = header(&step, "Proxy-Authenticate").expect("a proxy challenge");
    assert_eq!(auth_param(challenge, "realm").as_deref(), Some(HOME));
    assert_eq!(auth_param(challenge, "qop").as_deref(), Some("auth"));
    assert!(auth_param(challenge, "nonce").is_some_and(|n| !n.is_empty()));
}

#[test]
fn valid_proxy_credentials_are_checked_then_taken_off_before_forwarding() {
    let mut h = authenticating();
    let nonce = h.challenge_nonce(&invite(ELSEWHERE, AOR, &[ORIG_ROUTE]));
    let proxy_authorization = format!(
        "Proxy-Authorization: {}",
        credentials_for(
            ELSEWHERE,
            IMPI,
            PASSWORD.as_bytes(),
            &nonce,
            1,
            "INVITE",
            "MD5"
        )
    );
    let step = h.drive(&invite(
        ELSEWHERE,
        AOR,
        &[ORIG_ROUTE, proxy_authorization.as_str()],
    ));
    assert_eq!(
        h.queries,
        [Query::DigestHa1 {
            impi: IMPI.to_owned(),
            impu: AOR.to_owned(),
        }]
    );
    let expected = Target {
        add_headers: asserted(AOR),
        remove_headers: vec![HeaderName::ProxyAuthorization],
        ..target("192.0.2.7:5060", None, &[])
    };
    assert_eq!(targets(&step).to_vec(), vec![expected]);
}

#[test]
fn wrong_proxy_credentials_are_forbidden() {
    let mut h = authenticating();
    let nonce = h.challenge_nonce(&invite(ELSEWHERE, AOR, &[ORIG_ROUTE]));
    let proxy_authorization = format!(
        "Proxy-Authorization: {}",
        credentials_for(ELSEWHERE, IMPI, b"guess", &nonce, 1, "INVITE", "MD5")
    );
    let step = h.drive(&invite(
        ELSEWHERE,
        AOR,
        &[ORIG_ROUTE, proxy_authorization.as_str()],
    ));
    assert_eq!(h.asked(), ["DigestHa1"]);
    assert_eq!(status(&step), 403);
}

#[test]
fn a_terminating_call_is_not_challenged_even_when_originating_ones_are() {
    let mut h = authenticating();
    let step = h.drive(&invite(AOR, "sip:caller@other.net", &[]));
    assert_eq!(h.asked(), ["ReadAor", "Exists"]);
    assert_eq!(status(&step), 480);
}
