//! Digest authentication end to end as a UE sees it: challenge, answer, verdict.

use ims::auth::digest::{self, ResponseInput};
use ims::auth::{AuthConfig, Authenticator, ChallengeKind, Outcome, Presented};
use sip::{Auth, Message};

const REALM: &str = "example.com";
const IMPI: &str = "6505550000@example.com";
const PASSWORD: &str = "7kkzTyGW";
const NOW: u64 = 1_700_000_000;

fn authenticator() -> Authenticator {
    let config = AuthConfig {
        realm: REALM.to_owned(),
        secret: b"a cluster secret, 32 bytes long!".to_vec(),
        nonce_lifetime_s: 40,
        nonce_reuse: true,
        max_tracked_nonces: 1024,
        ..AuthConfig::default()
    };
    Authenticator::new(&config, NOW)
}

fn challenge_for(a: &Authenticator, impi: &str, salt: u64) -> String {
    let mut out = Vec::new();
    a.challenge(NOW, salt, impi.as_bytes(), false, &mut out);
    String::from_utf8(out).expect("ASCII")
}

fn nonce_of(challenge: &str) -> String {
    let auth = Auth::parse(challenge.as_bytes()).expect("a challenge parses");
    String::from_utf8(auth.nonce().expect("a nonce").to_vec()).expect("ASCII")
}

/// The REGISTER a UE sends back, with the response computed from `password`.
fn answered(nonce: &str, nc: u32, password: &str) -> Vec<u8> {
    answered_naming(nonce, nc, password, "sip:example.com")
}

/// The REGISTER to `sip:example.com` with credentials whose digest `uri` is `uri`.
fn answered_naming(nonce: &str, nc: u32, password: &str, uri: &str) -> Vec<u8> {
    let ha1 = digest::ha1(IMPI.as_bytes(), REALM.as_bytes(), password.as_bytes());
    let nc = format!("{nc:08x}");
    let response = digest::expected_response(
        &ha1,
        &ResponseInput {
            method: b"REGISTER",
            uri: uri.as_bytes(),
            nonce: nonce.as_bytes(),
            qop: Some((b"auth", nc.as_bytes(), b"0a4f113b")),
        },
    );
    let response = std::str::from_utf8(&response).expect("hex");
    format!(
        "REGISTER sip:example.com SIP/2.0\r\n\
         Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK-1\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:{IMPI}>;tag=a\r\nTo: <sip:{IMPI}>\r\n\
         Call-ID: c1\r\nCSeq: 2 REGISTER\r\n\
         Authorization: Digest username=\"{IMPI}\",realm=\"{REALM}\",nonce=\"{nonce}\",uri=\"{uri}\",\
         response=\"{response}\",algorithm=MD5,qop=auth,nc={nc},cnonce=\"0a4f113b\"\r\n\
         Contact: <sip:ue@10.0.0.1>\r\nContent-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

fn verdict(a: &mut Authenticator, request: &[u8], now: u64) -> Result<Outcome, Presented<'static>> {
    let msg = Message::parse(request).expect("parses");
    let stored_ha1 = digest::ha1(IMPI.as_bytes(), REALM.as_bytes(), PASSWORD.as_bytes());
    match a.inspect(&msg, ChallengeKind::Register, now) {
        Presented::Verify {
            impi,
            credentials,
            nonce,
        } => {
            assert_eq!(impi, IMPI.as_bytes());
            Ok(a.verify(&credentials, nonce, b"REGISTER", &stored_ha1, now))
        }
        Presented::Challenge => Err(Presented::Challenge),
        Presented::Malformed => Err(Presented::Malformed),
        Presented::WrongUri => Err(Presented::WrongUri),
        Presented::Aka { .. } => unreachable!("these tests use MD5 only"),
    }
}

#[test]
fn the_right_password_authenticates_and_a_replay_does_not() {
    let mut a = authenticator();
    let nonce = nonce_of(&challenge_for(&a, IMPI, 1));
    let request = answered(&nonce, 1, PASSWORD);
    assert_eq!(
        verdict(&mut a, &request, NOW + 1),
        Ok(Outcome::Authenticated)
    );
    assert_eq!(verdict(&mut a, &request, NOW + 2), Ok(Outcome::Replayed));
    // Reusing the nonce with a higher count is allowed (nonce_count_supported).
    assert_eq!(
        verdict(&mut a, &answered(&nonce, 2, PASSWORD), NOW + 3),
        Ok(Outcome::Authenticated)
    );
}

#[test]
fn a_wrong_password_is_forbidden() {
    let mut a = authenticator();
    let nonce = nonce_of(&challenge_for(&a, IMPI, 1));
    assert_eq!(
        verdict(&mut a, &answered(&nonce, 1, "guess"), NOW + 1),
        Ok(Outcome::Forbidden)
    );
}

#[test]
fn an_old_nonce_with_the_right_password_is_stale() {
    let mut a = authenticator();
    let nonce = nonce_of(&challenge_for(&a, IMPI, 1));
    assert_eq!(
        verdict(&mut a, &answered(&nonce, 1, PASSWORD), NOW + 41),
        Ok(Outcome::Stale)
    );
    let mut stale = Vec::new();
    a.challenge(NOW + 41, 2, IMPI.as_bytes(), true, &mut stale);
    assert!(
        String::from_utf8(stale)
            .expect("ASCII")
            .ends_with(",stale=TRUE")
    );
}

#[test]
fn a_nonce_issued_for_someone_else_or_elsewhere_gets_a_fresh_challenge() {
    let mut a = authenticator();
    let nonce = nonce_of(&challenge_for(&a, "bob@example.com", 1));
    assert_eq!(
        verdict(&mut a, &answered(&nonce, 1, PASSWORD), NOW + 1),
        Err(Presented::Challenge)
    );
    assert_eq!(
        verdict(&mut a, &answered("forged", 1, PASSWORD), NOW + 1),
        Err(Presented::Challenge)
    );
}

#[test]
fn known_and_unknown_users_get_challenges_of_the_same_shape() {
    let a = authenticator();
    let known = challenge_for(&a, IMPI, 1);
    let unknown = challenge_for(&a, "nobody-9999@example.com", 2);
    assert_eq!(known.len(), unknown.len());
    let shape = |c: &str| {
        let nonce = nonce_of(c);
        c.replace(&nonce, "N")
    };
    assert_eq!(shape(&known), shape(&unknown));
    assert_eq!(
        shape(&known),
        "Digest realm=\"example.com\",nonce=\"N\",algorithm=MD5,qop=\"auth\""
    );
}

#[test]
fn no_credentials_or_another_realm_is_a_challenge_and_garbage_is_malformed() {
    let a = authenticator();
    let plain = b"REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK-1\r\n\
        From: <sip:a@example.com>;tag=a\r\nTo: <sip:a@example.com>\r\nCall-ID: c\r\nCSeq: 1 REGISTER\r\n\
        Content-Length: 0\r\n\r\n";
    let msg = Message::parse(plain).expect("parses");
    assert_eq!(
        a.inspect(&msg, ChallengeKind::Register, NOW),
        Presented::Challenge
    );
    let ims_first = String::from_utf8_lossy(plain).replace(
        "Content-Length",
        "Authorization: Digest username=\"a@example.com\",realm=\"example.com\",nonce=\"\",uri=\"sip:example.com\",response=\"\"\r\nContent-Length",
    );
    let msg = Message::parse(ims_first.as_bytes()).expect("parses");
    assert_eq!(
        a.inspect(&msg, ChallengeKind::Register, NOW),
        Presented::Challenge
    );
    let other = String::from_utf8_lossy(plain).replace(
        "Content-Length",
        "Authorization: Digest username=\"a\",realm=\"elsewhere\",nonce=\"x\"\r\nContent-Length",
    );
    let msg = Message::parse(other.as_bytes()).expect("parses");
    assert_eq!(
        a.inspect(&msg, ChallengeKind::Register, NOW),
        Presented::Challenge
    );
    let garbage = String::from_utf8_lossy(plain).replace(
        "Content-Length",
        "Authorization: Digest realm=\"example.com\", nonce=\"unterminated\r\nContent-Length",
    );
    let msg = Message::parse(garbage.as_bytes()).expect("the message itself parses");
    assert_eq!(
        a.inspect(&msg, ChallengeKind::Register, NOW),
        Presented::Malformed
    );
}

#[test]
fn a_response_computed_for_another_uri_is_refused_before_any_lookup() {
    let mut a = authenticator();
    let nonce = nonce_of(&challenge_for(&a, IMPI, 1));
    // Right password, right nonce, but computed (or captured) for another resource.
    let elsewhere = answered_naming(&nonce, 1, PASSWORD, "sip:other.example.net");
    assert_eq!(
        verdict(&mut a, &elsewhere, NOW + 1),
        Err(Presented::WrongUri)
    );
    let no_uri = String::from_utf8(answered(&nonce, 2, PASSWORD))
        .expect("ASCII")
        .replace(",uri=\"sip:example.com\"", "");
    assert_eq!(
        verdict(&mut a, no_uri.as_bytes(), NOW + 1),
        Err(Presented::WrongUri)
    );
    // The same resource written differently is the Request-URI (RFC 3261 §19.1.4).
    let same = answered_naming(&nonce, 3, PASSWORD, "sip:EXAMPLE.com;lr");
    assert_eq!(verdict(&mut a, &same, NOW + 1), Ok(Outcome::Authenticated));
}
