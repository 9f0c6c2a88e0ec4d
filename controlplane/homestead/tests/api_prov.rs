//! The Homestead-prov API (port 8889, crest's routes) over real HTTP: private identities,
//! implicit registration sets, service profiles, filter criteria and public identities.

mod common;

use common::{
    DEFAULT_REALM, IFC, Server, enc, ha1, new_irs, new_sp, private, public, public_xml,
    put_password, put_public, sp_path,
};
use reqwest::{Method, StatusCode};
use serde_json::json;
use uuid::Uuid;

const CAROL: &str = "carol@example.com";
const CAROL_SIP: &str = "sip:carol@example.com";
const EMPTY_IFC: &str =
    "<ServiceProfile><InitialFilterCriteria></InitialFilterCriteria></ServiceProfile>";

#[tokio::test(flavor = "multi_thread")]
async fn private_identity_put_get_and_delete() {
    let server = Server::start().await;
    let path = private(CAROL);
    put_password(&server, CAROL, "pw").await;
    let with_password = json!({
        "digest_ha1": ha1(CAROL, "example.com", "pw"), "realm": "example.com", "plaintext_password": "pw",
    });
    server.prov_get(&path).await.expect_json(&with_password);
    let digest =
        json!({ "digest_ha1": "0123456789ABCDEF0123456789abcdef", "realm": "other.example" });
    server
        .prov_put(&path, &digest.to_string())
        .await
        .expect_empty(StatusCode::OK);
    let stored =
        json!({ "digest_ha1": "0123456789abcdef0123456789abcdef", "realm": "other.example" });
    server.prov_get(&path).await.expect_json(&stored);

    let bad = [
        ("", "empty"),
        ("   ", "empty"),
        ("{\"plaintext_password\":", "not valid JSON"),
        ("{}", "digest_ha1 or plaintext_password is required"),
        (
            r#"{"realm":"x.example"}"#,
            "digest_ha1 or plaintext_password is required",
        ),
        (
            r#"{"plaintext_password":"a","digest_ha1":"0123456789abcdef0123456789abcdef"}"#,
            "not both",
        ),
        (r#"{"digest_ha1":"not-hex"}"#, "32 hex digits"),
        (
            r#"{"plaintext_password":"a","colour":"red"}"#,
            "unknown field",
        ),
    ];
    for (body, reason) in bad {
        server
            .prov_put(&path, body)
            .await
            .expect_error(StatusCode::BAD_REQUEST, reason);
    }
    server.prov_get(&path).await.expect_json(&stored);
    let control = server
        .prov_put("/private/a%0Ab", r#"{"plaintext_password":"a"}"#)
        .await;
    control.expect_error(StatusCode::BAD_REQUEST, "control characters");

    server
        .prov_get(&private("nobody@example.com"))
        .await
        .expect_error(StatusCode::NOT_FOUND, "nobody@example.com");
    server.prov_delete(&path).await.expect_empty(StatusCode::OK);
    server
        .prov_delete(&path)
        .await
        .expect_empty(StatusCode::NO_CONTENT);
    server
        .prov_get(&path)
        .await
        .expect_error(StatusCode::NOT_FOUND, CAROL);
    server
        .prov(Method::POST, &path, Some(""))
        .await
        .expect_error(StatusCode::METHOD_NOT_ALLOWED, "method");
}

#[tokio::test(flavor = "multi_thread")]
async fn private_identity_realm_defaults_to_the_impi_domain_then_the_configured_realm() {
    let server = Server::start().await;
    put_password(&server, "dave", "pw").await;
    let expected = json!({ "digest_ha1": ha1("dave", DEFAULT_REALM, "pw"), "realm": DEFAULT_REALM, "plaintext_password": "pw" });
    server
        .prov_get("/private/dave")
        .await
        .expect_json(&expected);
}

#[tokio::test(flavor = "multi_thread")]
async fn irs_and_service_profiles_are_created_with_locations() {
    let server = Server::start().await;
    let irs = new_irs(&server).await;
    assert_ne!(new_irs(&server).await, irs, "each POST makes a new set");
    server
        .prov_get(&format!("/irs/{irs}/public_ids"))
        .await
        .expect_json(&json!({ "public_ids": [] }));
    server
        .prov_get(&format!("/irs/{irs}/private_ids"))
        .await
        .expect_json(&json!({ "private_ids": [] }));
    let sp = new_sp(&server, &irs).await;
    server
        .prov_get(&sp_path(&irs, &sp, "/public_ids"))
        .await
        .expect_json(&json!({ "public_ids": [] }));

    server
        .prov_post("/irs", "{}")
        .await
        .expect_error(StatusCode::BAD_REQUEST, "no body");
    let profiles = format!("/irs/{irs}/service_profiles");
    server
        .prov_post(&profiles, "x")
        .await
        .expect_error(StatusCode::BAD_REQUEST, "no body");
    let missing = Uuid::new_v4();
    let not_found = [
        (
            Method::GET,
            format!("/irs/{missing}/public_ids"),
            "no implicit registration set",
        ),
        (
            Method::GET,
            format!("/irs/{missing}/private_ids"),
            "no implicit registration set",
        ),
        (
            Method::POST,
            format!("/irs/{missing}/service_profiles"),
            "no implicit registration set",
        ),
        (
            Method::GET,
            "/irs/not-a-uuid/public_ids".into(),
            "not a registration set id",
        ),
        (
            Method::DELETE,
            "/irs/not-a-uuid".into(),
            "not a registration set id",
        ),
        (
            Method::POST,
            "/irs/not-a-uuid/service_profiles".into(),
            "not a registration set id",
        ),
        (
            Method::GET,
            sp_path(&irs, "not-a-uuid", "/public_ids"),
            "not a service profile id",
        ),
    ];
    for (method, path, reason) in not_found {
        server
            .prov(method, &path, Some(""))
            .await
            .expect_error(StatusCode::NOT_FOUND, reason);
    }
    let other = sp_path(&irs, &Uuid::new_v4().to_string(), "/public_ids");
    server
        .prov_get(&other)
        .await
        .expect_error(StatusCode::FORBIDDEN, "is not in registration set");
    server
        .prov_get("/irs")
        .await
        .expect_error(StatusCode::METHOD_NOT_ALLOWED, "method");
}

#[tokio::test(flavor = "multi_thread")]
async fn filter_criteria_are_validated_and_returned_verbatim() {
    let server = Server::start().await;
    let (irs, other_irs) = (new_irs(&server).await, new_irs(&server).await);
    let (sp, other_sp) = (
        new_sp(&server, &irs).await,
        new_sp(&server, &other_irs).await,
    );
    let path = sp_path(&irs, &sp, "/filter_criteria");
    let get = server.prov_get(&path).await;
    assert_eq!(get.expect_xml(), EMPTY_IFC);
    server
        .prov_put(&path, IFC)
        .await
        .expect_empty(StatusCode::OK);
    assert_eq!(server.prov_get(&path).await.expect_xml(), IFC);

    let no_server = IFC
        .replace("<ApplicationServer>", "<X>")
        .replace("</ApplicationServer>", "</X>");
    let bad = [
        ("", "<ServiceProfile> document"),
        ("<ServiceProfile><InitialFilterCriteria>", "not well-formed"),
        ("<PublicIdentity/>", "root element must be <ServiceProfile>"),
        (no_server.as_str(), "may not contain <X>"),
    ];
    for (body, reason) in bad {
        server
            .prov_put(&path, body)
            .await
            .expect_error(StatusCode::BAD_REQUEST, reason);
    }
    assert_eq!(
        server.prov_get(&path).await.expect_xml(),
        IFC,
        "refused PUTs change nothing"
    );

    let crossed = sp_path(&irs, &other_sp, "/filter_criteria");
    server
        .prov_put(&crossed, IFC)
        .await
        .expect_error(StatusCode::FORBIDDEN, "is not in registration set");
    server
        .prov_get(&crossed)
        .await
        .expect_error(StatusCode::FORBIDDEN, "is not in registration set");
    let missing = sp_path(&Uuid::new_v4().to_string(), &sp, "/filter_criteria");
    server
        .prov_put(&missing, IFC)
        .await
        .expect_error(StatusCode::NOT_FOUND, "no implicit registration set");
}

#[tokio::test(flavor = "multi_thread")]
async fn public_identities_are_placed_found_moved_and_removed() {
    let server = Server::start().await;
    let (irs, irs2) = (new_irs(&server).await, new_irs(&server).await);
    let (sp, sp2) = (new_sp(&server, &irs).await, new_sp(&server, &irs2).await);
    let xml = public_xml(CAROL_SIP);
    put_public(&server, &irs, &sp, CAROL_SIP, &xml)
        .await
        .expect_empty(StatusCode::OK);
    put_public(&server, &irs, &sp, CAROL_SIP, &xml)
        .await
        .expect_empty(StatusCode::OK);
    let listed = json!({ "public_ids": [CAROL_SIP] });
    server
        .prov_get(&sp_path(&irs, &sp, "/public_ids"))
        .await
        .expect_json(&listed);
    server
        .prov_get(&format!("/irs/{irs}/public_ids"))
        .await
        .expect_json(&listed);
    let see_other = StatusCode::SEE_OTHER;
    let profile = sp_path(&irs, &sp, "");
    server
        .prov_get(&public(CAROL_SIP, "service_profile"))
        .await
        .expect_location(see_other, &profile);
    server
        .prov_get(&public(CAROL_SIP, "irs"))
        .await
        .expect_location(see_other, &format!("/irs/{irs}"));
    server
        .prov_get(&public(CAROL_SIP, "irs/"))
        .await
        .expect_location(see_other, &format!("/irs/{irs}"));

    let erin_xml = public_xml("sip:erin@example.com");
    let (i, s, s2, x) = (irs.as_str(), sp.as_str(), sp2.as_str(), xml.as_str());
    let refused = [
        (
            i,
            s,
            erin_xml.as_str(),
            StatusCode::FORBIDDEN,
            "does not match",
        ),
        (
            i,
            s,
            "<PublicIdentity><Identity>sip:x",
            StatusCode::BAD_REQUEST,
            "not well-formed",
        ),
        (
            i,
            s,
            "<PublicIdentity/>",
            StatusCode::BAD_REQUEST,
            "needs a non-empty <Identity>",
        ),
        (
            i,
            s,
            "<Identity>sip:carol@example.com</Identity>",
            StatusCode::BAD_REQUEST,
            "root element",
        ),
        (
            i,
            s,
            "<PublicIdentity><Identity>carol</Identity></PublicIdentity>",
            StatusCode::BAD_REQUEST,
            "sip:, sips: or tel: URI",
        ),
        (
            i,
            s2,
            x,
            StatusCode::FORBIDDEN,
            "is not in registration set",
        ),
        (
            i,
            "not-a-uuid",
            x,
            StatusCode::NOT_FOUND,
            "not a service profile id",
        ),
    ];
    for (set, profile, body, status, reason) in refused {
        put_public(&server, set, profile, CAROL_SIP, body)
            .await
            .expect_error(status, reason);
    }
    let missing = Uuid::new_v4().to_string();
    let reply = put_public(&server, &missing, &sp, CAROL_SIP, &xml).await;
    reply.expect_error(StatusCode::NOT_FOUND, "no implicit registration set");

    // PUT into another profile moves the identity there.
    put_public(&server, &irs2, &sp2, CAROL_SIP, &xml)
        .await
        .expect_empty(StatusCode::OK);
    server
        .prov_get(&public(CAROL_SIP, "irs"))
        .await
        .expect_location(see_other, &format!("/irs/{irs2}"));
    server
        .prov_get(&format!("/irs/{irs}/public_ids"))
        .await
        .expect_json(&json!({ "public_ids": [] }));

    let delete = sp_path(&irs2, &sp2, &format!("/public_ids/{}", enc(CAROL_SIP)));
    server
        .prov_delete(&delete)
        .await
        .expect_empty(StatusCode::OK);
    server
        .prov_delete(&delete)
        .await
        .expect_error(StatusCode::FORBIDDEN, "is not in service profile");
    for rest in ["irs", "service_profile", "associated_private_ids"] {
        server
            .prov_get(&public(CAROL_SIP, rest))
            .await
            .expect_error(StatusCode::NOT_FOUND, CAROL_SIP);
    }

    // Deleting a profile deletes its identities.
    put_public(
        &server,
        &irs,
        &sp,
        "tel:+15550002",
        &public_xml("tel:+15550002"),
    )
    .await
    .expect_empty(StatusCode::OK);
    server
        .prov_delete(&sp_path(&irs, &sp, ""))
        .await
        .expect_empty(StatusCode::OK);
    server
        .prov_get(&public("tel:+15550002", "irs"))
        .await
        .expect_error(StatusCode::NOT_FOUND, "tel:+15550002");
    server
        .prov_delete(&sp_path(&irs, &sp, ""))
        .await
        .expect_error(StatusCode::FORBIDDEN, "is not in registration set");
}
