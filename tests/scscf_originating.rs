//! Requests from our users through the S-CSCF's Service-Route (`;orig`): the served user's
//! P-Asserted-Identity is added, the request goes to the callee's registered contacts,
//! and with `--authenticate-originating` it must first answer a 407 challenge.

mod common;

use std::net::SocketAddr;

use common::ue::{ALICE, BOB, DOMAIN, Ue};
use common::{DEMO_PASSWORD, start_all_in_one};
use ims::auth::digest::{self, ResponseInput};
use sip::{Auth, Message};

fn invite(from: &Ue, scscf: SocketAddr, extra: &str) -> Vec<u8> {
    let me = from.socket.local_addr().expect("addr");
    format!(
        "INVITE sip:{BOB}@{DOMAIN} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-call{};rport\r\n\
         Max-Forwards: 70\r\nRoute: <sip:{scscf};lr;orig>\r\n\
         From: <sip:{ALICE}@{DOMAIN}>;tag=a1\r\nTo: <sip:{BOB}@{DOMAIN}>\r\n\
         Call-ID: call-orig\r\nCSeq: {} INVITE\r\nContact: <sip:{ALICE}@{me}>\r\n{extra}\
         Content-Length: 0\r\n\r\n",
        extra.len(),
        1 + u32::from(!extra.is_empty())
    )
    .into_bytes()
}

fn receive(ue: &Ue) -> Vec<u8> {
    let mut buf = vec![0u8; 65_536];
    let (n, _) = ue.socket.recv_from(&mut buf).expect("a message within 5 s");
    buf.truncate(n);
    buf
}

/// The next request `ue` receives (responses skipped).
fn next_request(ue: &Ue) -> Vec<u8> {
    loop {
        let bytes = receive(ue);
        if Message::parse(&bytes).expect("parses").is_request() {
            return bytes;
        }
    }
}

/// The next final response `ue` receives.
fn next_final(ue: &Ue) -> Vec<u8> {
    loop {
        let bytes = receive(ue);
        let msg = Message::parse(&bytes).expect("parses");
        if msg.status().is_some_and(|s| s >= 200) {
            return bytes;
        }
    }
}

fn header(bytes: &[u8], name: &str) -> Option<String> {
    let msg = Message::parse(bytes).expect("parses");
    msg.headers()
        .find(|h| h.raw_name().eq_ignore_ascii_case(name.as_bytes()))
        .map(|h| String::from_utf8_lossy(h.value()).into_owned())
}

fn registered(scscf: SocketAddr, user: &str) -> Ue {
    let mut ue = Ue::new(scscf, user);
    let contact = format!("Contact: {}", ue.contact());
    let ok = ue.register_with(DEMO_PASSWORD, &[contact, "Expires: 300".into()]);
    assert_eq!(ok.status(), 200);
    ue
}

#[test]
fn a_call_from_a_served_user_gets_their_asserted_identity() {
    let aio = start_all_in_one(2, &[]);
    let alice = registered(aio.listen, ALICE);
    let bob = registered(aio.listen, BOB);
    alice
        .socket
        .send_to(&invite(&alice, aio.listen, ""), aio.listen)
        .expect("send");
    let arrived = next_request(&bob);
    let msg = Message::parse(&arrived).expect("parses");
    assert_eq!(
        msg.request_uri_raw(),
        Some(format!("sip:{BOB}@{}", bob.socket.local_addr().expect("addr")).as_bytes())
    );
    assert_eq!(
        header(&arrived, "P-Asserted-Identity").as_deref(),
        Some(format!("<sip:{ALICE}@{DOMAIN}>").as_str())
    );
    assert!(
        header(&arrived, "Route").is_none(),
        "our orig Route was taken off"
    );
    assert!(header(&arrived, "Record-Route").is_some());
}

#[test]
fn with_authentication_on_a_call_is_challenged_407_then_goes_through_without_credentials() {
    let aio = start_all_in_one(2, &["--authenticate-originating"]);
    let alice = registered(aio.listen, ALICE);
    let bob = registered(aio.listen, BOB);
    alice
        .socket
        .send_to(&invite(&alice, aio.listen, ""), aio.listen)
        .expect("send");
    let challenge = next_final(&alice);
    assert_eq!(
        Message::parse(&challenge).expect("parses").status(),
        Some(407)
    );
    let value = header(&challenge, "Proxy-Authenticate").expect("a challenge");
    let nonce = String::from_utf8_lossy(
        Auth::parse(value.as_bytes())
            .expect("parses")
            .nonce()
            .expect("nonce"),
    )
    .into_owned();
    // The INVITE again, a new transaction (CSeq 2), with credentials.
    let impi = format!("{ALICE}@{DOMAIN}");
    let uri = format!("sip:{BOB}@{DOMAIN}");
    let ha1 = digest::ha1(impi.as_bytes(), DOMAIN.as_bytes(), DEMO_PASSWORD.as_bytes());
    let response = digest::expected_response(
        &ha1,
        &ResponseInput {
            method: b"INVITE",
            uri: uri.as_bytes(),
            nonce: nonce.as_bytes(),
            qop: Some((b"auth", b"00000001", b"abc")),
        },
    );
    let credentials = format!(
        "Proxy-Authorization: Digest username=\"{impi}\",realm=\"{DOMAIN}\",nonce=\"{nonce}\",\
         uri=\"{uri}\",response=\"{}\",algorithm=MD5,qop=auth,nc=00000001,cnonce=\"abc\"\r\n",
        String::from_utf8_lossy(&response)
    );
    alice
        .socket
        .send_to(&invite(&alice, aio.listen, &credentials), aio.listen)
        .expect("send");
    let arrived = next_request(&bob);
    assert!(
        header(&arrived, "Proxy-Authorization").is_none(),
        "our credentials stay with us"
    );
    assert_eq!(
        header(&arrived, "P-Asserted-Identity").as_deref(),
        Some(format!("<sip:{ALICE}@{DOMAIN}>").as_str())
    );
}
