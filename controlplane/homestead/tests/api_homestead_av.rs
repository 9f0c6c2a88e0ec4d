//! The Clearwater Homestead API (port 8888) over real HTTP: authentication vectors
//! (`/impi/<impi>/av...` and the legacy `/digest`), as Sprout asks for them.

mod common;

use base64::Engine as _;
use common::{
    ALICE, ALICE_SIP, ALICE_TEL, BOB, BOB_SIP, PASSWORD, Server, enc, ha1, password_spec,
    with_alice,
};
use milenage::Milenage;
use reqwest::{Method, StatusCode};
use serde_json::json;

/// TS 35.208 test set 1.
const K: &str = "465b5ce8b199b49faa5f0a2ee238a6bc";
const OPC: &str = "cd63cb71954a9f4e48a5994e37a02baf";

async fn with_aka_bob(server: &Server) {
    let spec = json!({ "impus": [BOB_SIP], "aka": { "k": K, "opc": OPC } });
    server.create_subscriber(BOB, &spec).await;
}

fn av_path(impi: &str, suffix: &str, impu: &str) -> String {
    format!("/impi/{}/{suffix}?impu={}", enc(impi), enc(impu))
}

fn digest_body(ha1: &str, realm: &str) -> String {
    format!(r#"{{"digest":{{"ha1":"{ha1}","realm":"{realm}","qop":"auth"}}}}"#)
}

fn milenage() -> Milenage {
    let key = |h: &str| -> [u8; 16] { hex::decode(h).unwrap().try_into().unwrap() };
    Milenage::new_with_opc(key(K), key(OPC))
}

/// Checks an AKA vector as a UE would (XRES, CK, IK and MAC-A from K/OPc) and its exact
/// JSON text; returns RAND and the SQN it carries.
fn verify_aka(reply: &common::Reply, version: u8) -> ([u8; 16], u64) {
    reply.expect_json_text();
    let json = reply.json();
    let aka = &json["aka"];
    let field = |name: &str| {
        aka[name]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: {json}"))
    };
    let (challenge, response) = (field("challenge"), field("response"));
    let (cryptkey, integritykey) = (field("cryptkey"), field("integritykey"));
    assert_eq!(
        reply.body,
        format!(
            r#"{{"aka":{{"challenge":"{challenge}","response":"{response}","cryptkey":"{cryptkey}","integritykey":"{integritykey}","version":{version}}}}}"#
        )
    );
    let nonce = base64::engine::general_purpose::STANDARD
        .decode(challenge)
        .expect("challenge is base64");
    assert_eq!(nonce.len(), 32, "challenge is RAND ‖ AUTN");
    let lower_hex = |s: &str, n: usize| {
        assert_eq!(s.len(), n, "{s}");
        assert!(
            s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        );
    };
    lower_hex(response, 16);
    lower_hex(cryptkey, 32);
    lower_hex(integritykey, 32);
    let rand: [u8; 16] = nonce[..16].try_into().unwrap();
    let mut m = milenage();
    let (xres, ck, ik, ak) = m.f2345(&rand);
    assert_eq!(response, hex::encode(xres));
    assert_eq!(cryptkey, hex::encode(ck));
    assert_eq!(integritykey, hex::encode(ik));
    let sqn: [u8; 6] = std::array::from_fn(|i| nonce[16 + i] ^ ak[i]);
    let amf: [u8; 2] = nonce[22..24].try_into().unwrap();
    assert_eq!(
        amf,
        [0x00, 0x00],
        "the default AMF has the separation bit clear (IMS, not EPS)"
    );
    assert_eq!(m.f1(&rand, &sqn, &amf), nonce[24..32], "MAC-A verifies");
    let mut be = [0u8; 8];
    be[2..].copy_from_slice(&sqn);
    (rand, u64::from_be_bytes(be))
}

/// base64(RAND ‖ AUTS) with AUTS = (SQN_MS ⊕ AK*) ‖ MAC-S, as the UE computes it.
fn resync_auth(rand: [u8; 16], sqn_ms: u64) -> Vec<u8> {
    let mut m = milenage();
    let ak_star = m.f5star(&rand);
    let sqn: [u8; 6] = sqn_ms.to_be_bytes()[2..].try_into().unwrap();
    let mac_s = m.f1star(&rand, &sqn, &[0, 0]);
    let mut blob = rand.to_vec();
    blob.extend(sqn.iter().zip(ak_star).map(|(s, a)| s ^ a));
    blob.extend(mac_s);
    blob
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[tokio::test(flavor = "multi_thread")]
async fn ping_answers_ok_to_get_only() {
    let server = Server::start().await;
    let ping = server.hs_get("/ping").await;
    ping.expect_status(StatusCode::OK);
    assert_eq!(ping.body, "OK");
    let prov_ping = server.prov_get("/ping").await;
    prov_ping.expect_status(StatusCode::OK);
    assert_eq!(prov_ping.body, "OK");
    server
        .hs(Method::POST, "/ping", Some(""))
        .await
        .expect_error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
}

#[tokio::test(flavor = "multi_thread")]
async fn digest_subscriber_gets_the_digest_vector_on_every_av_form() {
    let server = Server::start().await;
    with_alice(&server).await;
    let expected = digest_body(&ha1(ALICE, "example.com", PASSWORD), "example.com");
    // Without an HSS, Clearwater answers /av/aka and /av/aka2 with the digest vector.
    for suffix in ["av", "av/digest", "av/aka", "av/aka2"] {
        for impu in [ALICE_SIP, ALICE_TEL] {
            let reply = server.hs_get(&av_path(ALICE, suffix, impu)).await;
            assert_eq!(
                reply.expect_json_text(),
                expected,
                "{suffix} {impu}: compact, in Clearwater's order"
            );
        }
    }
    // resync-auth means nothing to a digest subscriber and is ignored (hsprov does too).
    let path = av_path(ALICE, "av/aka", ALICE_SIP) + "&resync-auth=not-base64!";
    assert_eq!(server.hs_get(&path).await.expect_json_text(), expected);
}

#[tokio::test(flavor = "multi_thread")]
async fn digest_realm_is_the_provisioned_one_or_the_impi_domain_or_the_default() {
    let server = Server::start().await;
    let spec =
        json!({ "impus": ["sip:carol@example.com"], "password": "pw", "realm": "other.example" });
    server.create_subscriber("carol@example.com", &spec).await;
    server
        .create_subscriber("dave", &password_spec(&["sip:dave@example.com"], "pw"))
        .await;
    let carol = server
        .hs_get(&av_path("carol@example.com", "av", "sip:carol@example.com"))
        .await;
    let carol_ha1 = ha1("carol@example.com", "other.example", "pw");
    assert_eq!(
        carol.expect_json_text(),
        digest_body(&carol_ha1, "other.example")
    );
    let dave = server
        .hs_get(&av_path("dave", "av/digest", "sip:dave@example.com"))
        .await;
    let dave_ha1 = ha1("dave", common::DEFAULT_REALM, "pw");
    assert_eq!(
        dave.expect_json_text(),
        digest_body(&dave_ha1, common::DEFAULT_REALM)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn av_lookups_that_cannot_be_answered_are_404_with_a_reason() {
    let server = Server::start().await;
    with_alice(&server).await;
    with_aka_bob(&server).await;
    let alice = enc(ALICE);
    let cases = [
        (av_path(ALICE, "av/bogus", ALICE_SIP), "bogus"),
        (format!("/impi/{alice}/av"), "impu"),
        (format!("/impi/{alice}/av?impu="), "impu"),
        (format!("/impi/{alice}/av/digest"), "impu"),
        (format!("/impi/{alice}/av/aka"), "impu"),
        (
            av_path("nobody@example.com", "av", ALICE_SIP),
            "nobody@example.com",
        ),
        (
            av_path(ALICE, "av", "sip:nobody@example.com"),
            "sip:nobody@example.com",
        ),
        (av_path(ALICE, "av", BOB_SIP), "is not a public identity of"),
        (
            av_path(BOB, "av/aka", ALICE_SIP),
            "is not a public identity of",
        ),
        // AKA-only subscriber asked for digest.
        (av_path(BOB, "av/digest", BOB_SIP), "no digest credentials"),
    ];
    for (path, reason) in cases {
        server
            .hs_get(&path)
            .await
            .expect_error(StatusCode::NOT_FOUND, reason);
    }
    server
        .hs(Method::POST, &av_path(ALICE, "av", ALICE_SIP), Some(""))
        .await
        .expect_error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
}

#[tokio::test(flavor = "multi_thread")]
async fn aka_vectors_verify_with_milenage_carry_the_version_and_advance_the_sqn() {
    let server = Server::start().await;
    with_aka_bob(&server).await;
    let mut seen = Vec::new();
    for (suffix, version) in [("av/aka", 1), ("av", 1), ("av/aka2", 2), ("av/aka", 1)] {
        let reply = server.hs_get(&av_path(BOB, suffix, BOB_SIP)).await;
        seen.push(verify_aka(&reply, version));
    }
    for pair in seen.windows(2) {
        assert_ne!(pair[0].0, pair[1].0, "every vector has a fresh RAND");
        assert!(pair[1].1 > pair[0].1, "SQN increases: {seen:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn subscriber_with_both_credentials_gets_the_scheme_asked_for() {
    let server = Server::start().await;
    let spec = json!({ "impus": [BOB_SIP], "password": "pw", "aka": { "k": K, "opc": OPC } });
    server.create_subscriber(BOB, &spec).await;
    let digest = server.hs_get(&av_path(BOB, "av/digest", BOB_SIP)).await;
    let expected = digest_body(&ha1(BOB, "example.com", "pw"), "example.com");
    assert_eq!(digest.expect_json_text(), expected);
    verify_aka(&server.hs_get(&av_path(BOB, "av/aka", BOB_SIP)).await, 1);
    verify_aka(&server.hs_get(&av_path(BOB, "av/aka2", BOB_SIP)).await, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn resync_auth_moves_the_sqn_past_the_ues_and_refuses_bad_auts() {
    let server = Server::start().await;
    with_aka_bob(&server).await;
    let (rand, first) = verify_aka(&server.hs_get(&av_path(BOB, "av/aka", BOB_SIP)).await, 1);
    let sqn_ms = 0x0000_4000_0000u64;
    assert!(first < sqn_ms);
    let path = |blob: &str| av_path(BOB, "av/aka", BOB_SIP) + "&resync-auth=" + &enc(blob);

    let good = resync_auth(rand, sqn_ms);
    let (_, resynced) = verify_aka(&server.hs_get(&path(&b64(&good))).await, 1);
    assert!(
        resynced > sqn_ms,
        "SQN {resynced:#x} must pass the UE's {sqn_ms:#x}"
    );
    let (_, next) = verify_aka(&server.hs_get(&av_path(BOB, "av", BOB_SIP)).await, 1);
    assert!(next > resynced);

    let mut tampered = good.clone();
    *tampered.last_mut().unwrap() ^= 1;
    let bad = [
        (b64(&tampered), "MAC-S"),
        ("***not base64***".to_owned(), "not base64"),
        (b64(&good[..29]), "got 29 bytes"),
    ];
    for (blob, reason) in bad {
        server
            .hs_get(&path(&blob))
            .await
            .expect_error(StatusCode::BAD_REQUEST, reason);
    }
    // A refused resync claims no SQN: the next vector still follows `next`.
    let (_, after) = verify_aka(&server.hs_get(&av_path(BOB, "av/aka", BOB_SIP)).await, 1);
    assert!(after > next);
}

#[tokio::test(flavor = "multi_thread")]
async fn legacy_digest_route_takes_public_id() {
    let server = Server::start().await;
    with_alice(&server).await;
    with_aka_bob(&server).await;
    let path = |impi: &str, query: &str| format!("/impi/{}/digest?{query}", enc(impi));
    let ok = server
        .hs_get(&path(ALICE, &format!("public_id={}", enc(ALICE_TEL))))
        .await;
    let expected = format!(
        r#"{{"digest_ha1":"{}"}}"#,
        ha1(ALICE, "example.com", PASSWORD)
    );
    assert_eq!(ok.expect_json_text(), expected);
    let cases = [
        (path(ALICE, &format!("impu={}", enc(ALICE_SIP))), "impu"),
        (
            path(ALICE, "public_id=sip%3Anobody%40example.com"),
            "sip:nobody@example.com",
        ),
        (
            path("nobody@example.com", "public_id=sip%3Aalice%40example.com"),
            "nobody",
        ),
        (
            path(BOB, &format!("public_id={}", enc(BOB_SIP))),
            "no digest credentials",
        ),
    ];
    for (path, reason) in cases {
        server
            .hs_get(&path)
            .await
            .expect_error(StatusCode::NOT_FOUND, reason);
    }
}
