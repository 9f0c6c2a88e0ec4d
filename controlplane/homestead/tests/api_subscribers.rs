//! Our `/subscribers` API on the provisioning port over real HTTP: one idempotent PUT per
//! subscriber, a secret-free view, paging, deletion, conflicts and refused bodies.

mod common;

use common::{IFC, LockKey, Server, enc, ha1, password_spec, sharing_a_stripe};
use reqwest::{Method, StatusCode};
use serde_json::json;

const ALICE: &str = "alice@example.com";
const ALICE_SIP: &str = "sip:alice@example.com";
const ALICE_TEL: &str = "tel:+15550001";
const K: &str = "465b5ce8b199b49faa5f0a2ee238a6bc";
const OPC: &str = "cd63cb71954a9f4e48a5994e37a02baf";

fn subscriber(impi: &str) -> String {
    format!("/subscribers/{}", enc(impi))
}

/// The registration set a public identity lives in, from the 303 of `/public/<impu>/irs`.
async fn set_of(server: &Server, impu: &str) -> String {
    let reply = server.prov_get(&format!("/public/{}/irs", enc(impu))).await;
    reply.expect_status(StatusCode::SEE_OTHER);
    let location = reply.header("location").expect("Location");
    location
        .strip_prefix("/irs/")
        .expect("an IRS path")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn put_creates_then_is_idempotent_then_updates() {
    let server = Server::start().await;
    let spec = password_spec(&[ALICE_SIP, ALICE_TEL], "pw");
    server
        .put_subscriber(ALICE, &spec)
        .await
        .expect_empty(StatusCode::CREATED);
    server
        .put_subscriber(ALICE, &spec)
        .await
        .expect_empty(StatusCode::OK);
    let irs = set_of(&server, ALICE_TEL).await;
    let view = json!({
        "impi": ALICE, "realm": "example.com", "impus": [ALICE_SIP, ALICE_TEL],
        "digest": true, "aka": false, "registration_sets": [irs],
    });
    let body = server
        .prov_get(&subscriber(ALICE))
        .await
        .expect_json(&view)
        .to_owned();
    assert!(!body.contains("pw\""), "the password is not shown: {body}");

    // Dropping an identity frees it; the set and the profile stay.
    let fewer = password_spec(&[ALICE_SIP], "pw");
    server
        .put_subscriber(ALICE, &fewer)
        .await
        .expect_empty(StatusCode::OK);
    let reply = server
        .prov_get(&format!("/public/{}/irs", enc(ALICE_TEL)))
        .await;
    reply.expect_error(StatusCode::NOT_FOUND, ALICE_TEL);
    assert_eq!(set_of(&server, ALICE_SIP).await, irs);
    let view = json!({
        "impi": ALICE, "realm": "example.com", "impus": [ALICE_SIP],
        "digest": true, "aka": false, "registration_sets": [irs],
    });
    server.prov_get(&subscriber(ALICE)).await.expect_json(&view);
    // The subscriber authenticates and registers through the Homestead API.
    let av = format!("/impi/{}/av?impu={}", enc(ALICE), enc(ALICE_SIP));
    let digest = json!({ "digest": { "ha1": ha1(ALICE, "example.com", "pw"), "realm": "example.com", "qop": "auth" } });
    server.hs_get(&av).await.expect_json(&digest);
    server
        .reg_data_put(ALICE_SIP, Some(ALICE), r#"{"reqtype":"reg"}"#)
        .await
        .expect_xml();
}

#[tokio::test(flavor = "multi_thread")]
async fn view_of_an_aka_subscriber_hides_its_keys() {
    let server = Server::start().await;
    let spec =
        json!({ "impus": ["sip:bob@example.com"], "aka": { "k": K, "opc": OPC }, "ifcs": IFC });
    server.create_subscriber("bob@example.com", &spec).await;
    let irs = set_of(&server, "sip:bob@example.com").await;
    let view = json!({
        "impi": "bob@example.com", "realm": "example.com", "impus": ["sip:bob@example.com"],
        "digest": false, "aka": true, "registration_sets": [irs],
    });
    let body = server
        .prov_get(&subscriber("bob@example.com"))
        .await
        .expect_json(&view)
        .to_owned();
    assert!(!body.contains(K) && !body.contains(OPC), "{body}");

    let ha1_spec = json!({ "impus": ["sip:carol@example.com"], "digest_ha1": "0123456789ABCDEF0123456789ABCDEF", "realm": "r.example" });
    server
        .create_subscriber("carol@example.com", &ha1_spec)
        .await;
    let av = format!(
        "/impi/{}/av/digest?impu={}",
        enc("carol@example.com"),
        enc("sip:carol@example.com")
    );
    let digest = json!({ "digest": { "ha1": "0123456789abcdef0123456789abcdef", "realm": "r.example", "qop": "auth" } });
    server.hs_get(&av).await.expect_json(&digest);
}

#[tokio::test(flavor = "multi_thread")]
async fn list_pages_with_limit_and_after() {
    let server = Server::start().await;
    let page = |query: &str| format!("/subscribers{query}");
    server
        .prov_get(&page(""))
        .await
        .expect_json(&json!({ "subscribers": [], "next": null }));
    for name in ["c", "a", "e", "b", "d"] {
        let impi = format!("{name}@example.com");
        let spec = password_spec(&[&format!("sip:{impi}")], "pw");
        server.create_subscriber(&impi, &spec).await;
    }
    let all = [
        "a@example.com",
        "b@example.com",
        "c@example.com",
        "d@example.com",
        "e@example.com",
    ];
    server
        .prov_get(&page(""))
        .await
        .expect_json(&json!({ "subscribers": all, "next": null }));
    let pages = [
        (
            "?limit=2",
            json!({ "subscribers": &all[..2], "next": "b@example.com" }),
        ),
        (
            "?limit=2&after=b%40example.com",
            json!({ "subscribers": &all[2..4], "next": "d@example.com" }),
        ),
        (
            "?limit=2&after=d%40example.com",
            json!({ "subscribers": &all[4..], "next": null }),
        ),
        (
            "?limit=5",
            json!({ "subscribers": all, "next": "e@example.com" }),
        ),
        (
            "?limit=5&after=e%40example.com",
            json!({ "subscribers": [], "next": null }),
        ),
        (
            "?after=a%40example.com",
            json!({ "subscribers": &all[1..], "next": null }),
        ),
    ];
    for (query, expected) in pages {
        server.prov_get(&page(query)).await.expect_json(&expected);
    }
    server
        .prov_get(&page("?limit=many"))
        .await
        .expect_error(StatusCode::BAD_REQUEST, "limit");
    server
        .prov(Method::POST, "/subscribers", Some("{}"))
        .await
        .expect_error(StatusCode::METHOD_NOT_ALLOWED, "method");
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_removes_the_subscriber_and_frees_its_identities() {
    let server = Server::start().await;
    server
        .create_subscriber(ALICE, &password_spec(&[ALICE_SIP], "pw"))
        .await;
    server
        .prov_delete(&subscriber(ALICE))
        .await
        .expect_empty(StatusCode::OK);
    server
        .prov_delete(&subscriber(ALICE))
        .await
        .expect_error(StatusCode::NOT_FOUND, "no subscriber alice@example.com");
    server
        .prov_get(&subscriber(ALICE))
        .await
        .expect_error(StatusCode::NOT_FOUND, ALICE);
    let av = format!("/impi/{}/av?impu={}", enc(ALICE), enc(ALICE_SIP));
    server
        .hs_get(&av)
        .await
        .expect_error(StatusCode::NOT_FOUND, ALICE);
    server
        .reg_data_get(ALICE_SIP)
        .await
        .expect_error(StatusCode::NOT_FOUND, ALICE_SIP);
    server
        .prov_get(&format!("/public/{}/irs", enc(ALICE_SIP)))
        .await
        .expect_error(StatusCode::NOT_FOUND, ALICE_SIP);
    server
        .prov_get("/subscribers")
        .await
        .expect_json(&json!({ "subscribers": [], "next": null }));
    server
        .create_subscriber("other@example.com", &password_spec(&[ALICE_SIP], "pw"))
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_identity_of_another_subscriber_is_a_conflict() {
    let server = Server::start().await;
    server
        .create_subscriber(ALICE, &password_spec(&[ALICE_SIP], "pw"))
        .await;
    let bob = password_spec(&["sip:bob@example.com", ALICE_SIP], "pw");
    let reply = server.put_subscriber("bob@example.com", &bob).await;
    reply.expect_error(
        StatusCode::CONFLICT,
        "sip:alice@example.com already belongs to another subscriber",
    );
    server
        .prov_get(&subscriber("bob@example.com"))
        .await
        .expect_error(StatusCode::NOT_FOUND, "bob");
    let free = server
        .prov_get(&format!("/public/{}/irs", enc("sip:bob@example.com")))
        .await;
    free.expect_error(StatusCode::NOT_FOUND, "sip:bob@example.com");

    // A private identity in two sets (made with the Homestead-prov API) is not ours to rewrite.
    let carol = format!("/private/{}", enc("carol@example.com"));
    server
        .prov_put(&carol, r#"{"plaintext_password":"pw"}"#)
        .await
        .expect_empty(StatusCode::OK);
    for _ in 0..2 {
        let irs = server.prov_post("/irs", "").await;
        let location = irs.header("location").expect("Location").to_owned();
        let path = format!(
            "{carol}/associated_implicit_registration_sets/{}",
            &location[5..]
        );
        server
            .prov_put(&path, "")
            .await
            .expect_empty(StatusCode::OK);
    }
    let spec = password_spec(&["sip:carol@example.com"], "pw");
    let reply = server.put_subscriber("carol@example.com", &spec).await;
    reply.expect_error(StatusCode::CONFLICT, "several implicit registration sets");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_bodies_are_refused_with_the_reason() {
    let server = Server::start().await;
    let path = subscriber(ALICE);
    let raw = [
        ("", "empty"),
        ("{\"impus\":", "not valid JSON"),
        (r#"{"password":"pw"}"#, "missing field `impus`"),
    ];
    for (body, reason) in raw {
        server
            .prov_put(&path, body)
            .await
            .expect_error(StatusCode::BAD_REQUEST, reason);
    }
    let specs = [
        (
            json!({ "impus": [ALICE_SIP], "password": "pw", "colour": "red" }),
            "unknown field `colour`",
        ),
        (
            json!({ "impus": [], "password": "pw" }),
            "at least one public identity",
        ),
        (json!({ "impus": [ALICE_SIP] }), "needs credentials"),
        (
            json!({ "impus": [ALICE_SIP], "password": "pw", "digest_ha1": "0123456789abcdef0123456789abcdef" }),
            "not both",
        ),
        (
            json!({ "impus": [ALICE_SIP], "digest_ha1": "abc" }),
            "32 hex digits",
        ),
        (
            json!({ "impus": [ALICE_SIP], "password": "pw", "ifcs": "<ServiceProfile><InitialFilterCriteria>" }),
            "ifcs: not well-formed",
        ),
        (
            json!({ "impus": [ALICE_SIP], "password": "pw", "ifcs": "<PublicIdentity/>" }),
            "ifcs: root element must be <ServiceProfile>",
        ),
        (
            json!({ "impus": ["alice"], "password": "pw" }),
            "sip:, sips: or tel: URI",
        ),
        (
            json!({ "impus": [ALICE_SIP, ALICE_SIP], "password": "pw" }),
            "listed twice",
        ),
        (
            json!({ "impus": [ALICE_SIP], "aka": { "k": "zz", "opc": OPC } }),
            "not valid JSON for this resource",
        ),
    ];
    for (spec, reason) in specs {
        server
            .put_subscriber(ALICE, &spec)
            .await
            .expect_error(StatusCode::BAD_REQUEST, reason);
    }
    let control = server
        .put_subscriber("a\u{1}b", &password_spec(&[ALICE_SIP], "pw"))
        .await;
    control.expect_error(StatusCode::BAD_REQUEST, "control characters");
    server
        .prov_get("/subscribers")
        .await
        .expect_json(&json!({ "subscribers": [], "next": null }));
}

#[tokio::test(flavor = "multi_thread")]
async fn subscriber_in_the_lock_stripe_of_its_set_can_be_deleted() {
    let server = Server::start().await;
    let created = server.prov_post("/irs", "").await;
    let irs = created.header("location").expect("Location")[5..].to_owned();
    let impi = sharing_a_stripe(
        &irs,
        |n| format!("stripe{n}@example.com"),
        |s| LockKey::Private(s),
    );
    let private = format!("/private/{}", enc(&impi));
    server
        .prov_put(&private, r#"{"plaintext_password":"pw"}"#)
        .await
        .expect_empty(StatusCode::OK);
    let associate = format!("/irs/{irs}/private_ids/{}", enc(&impi));
    server
        .prov_put(&associate, "")
        .await
        .expect_empty(StatusCode::OK);
    server
        .prov_delete(&subscriber(&impi))
        .await
        .expect_empty(StatusCode::OK);
    // The set had no other private identity, so it went too.
    let set = server.prov_get(&format!("/irs/{irs}/public_ids")).await;
    set.expect_error(StatusCode::NOT_FOUND, "no implicit registration set");
}
