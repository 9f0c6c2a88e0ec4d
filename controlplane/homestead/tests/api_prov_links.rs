//! The Homestead-prov API (port 8889, crest's routes) over real HTTP: associations between
//! private identities and registration sets, the public-identity listing, provisioned
//! subscribers authenticating through the Homestead API, and lock-stripe collisions.

mod common;

use std::collections::BTreeSet;

use common::{
    IFC, LockKey, Reply, Server, enc, ha1, new_irs, new_sp, private, public, public_xml,
    put_password, put_public, sharing_a_stripe, sp_path,
};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

const CAROL: &str = "carol@example.com";
const CAROL_SIP: &str = "sip:carol@example.com";
const ERIN: &str = "erin@example.com";
#[tokio::test(flavor = "multi_thread")]
async fn private_identities_and_sets_associate_from_both_sides() {
    let server = Server::start().await;
    put_password(&server, CAROL, "pw").await;
    put_password(&server, ERIN, "pw").await;
    let irs = new_irs(&server).await;
    let sp = new_sp(&server, &irs).await;
    for impu in [CAROL_SIP, "tel:+15550003"] {
        put_public(&server, &irs, &sp, impu, &public_xml(impu))
            .await
            .expect_empty(StatusCode::OK);
    }
    let from_private = format!(
        "{}/associated_implicit_registration_sets/{irs}",
        private(CAROL)
    );
    let from_set = format!("/irs/{irs}/private_ids/{}", enc(ERIN));
    server
        .prov_put(&from_private, "")
        .await
        .expect_empty(StatusCode::OK);
    server
        .prov_put(&from_set, "")
        .await
        .expect_empty(StatusCode::OK);

    let sets = format!("{}/associated_implicit_registration_sets", private(CAROL));
    server
        .prov_get(&sets)
        .await
        .expect_json(&json!({ "associated_implicit_registration_sets": [irs] }));
    let both = json!({ "private_ids": [CAROL, ERIN] });
    server
        .prov_get(&format!("/irs/{irs}/private_ids"))
        .await
        .expect_json(&both);
    server
        .prov_get(&public("tel:+15550003", "associated_private_ids"))
        .await
        .expect_json(&both);
    let publics = json!({ "associated_public_ids": [CAROL_SIP, "tel:+15550003"] });
    server
        .prov_get(&format!("{}/associated_public_ids", private(ERIN)))
        .await
        .expect_json(&publics);

    let missing = Uuid::new_v4();
    let nobody = private("nobody@example.com");
    let refused = [
        (
            Method::PUT,
            from_private.clone(),
            "x",
            StatusCode::BAD_REQUEST,
            "no body",
        ),
        (
            Method::PUT,
            from_set.clone(),
            "x",
            StatusCode::BAD_REQUEST,
            "no body",
        ),
        (
            Method::PUT,
            format!("{nobody}/associated_implicit_registration_sets/{irs}"),
            "",
            StatusCode::NOT_FOUND,
            "no private identity",
        ),
        (
            Method::PUT,
            format!(
                "{}/associated_implicit_registration_sets/{missing}",
                private(CAROL)
            ),
            "",
            StatusCode::NOT_FOUND,
            "no implicit registration set",
        ),
        (
            Method::PUT,
            format!("{}/associated_implicit_registration_sets/x", private(CAROL)),
            "",
            StatusCode::NOT_FOUND,
            "not a registration set id",
        ),
        (
            Method::PUT,
            format!("/irs/{irs}/private_ids/nobody"),
            "",
            StatusCode::NOT_FOUND,
            "no private identity",
        ),
        (
            Method::DELETE,
            format!("/irs/{irs}/private_ids/nobody"),
            "",
            StatusCode::NOT_FOUND,
            "no private identity",
        ),
        (
            Method::GET,
            format!("{nobody}/associated_implicit_registration_sets"),
            "",
            StatusCode::NOT_FOUND,
            "no private identity",
        ),
        (
            Method::GET,
            format!("{nobody}/associated_public_ids"),
            "",
            StatusCode::NOT_FOUND,
            "no private identity",
        ),
    ];
    for (method, path, body, status, reason) in refused {
        server
            .prov(method, &path, Some(body))
            .await
            .expect_error(status, reason);
    }

    server
        .prov_delete(&from_set)
        .await
        .expect_empty(StatusCode::OK);
    let only_carol = json!({ "private_ids": [CAROL] });
    server
        .prov_get(&format!("/irs/{irs}/private_ids"))
        .await
        .expect_json(&only_carol);
    server
        .prov_delete(&from_private)
        .await
        .expect_empty(StatusCode::OK);
    server
        .prov_delete(&from_private)
        .await
        .expect_empty(StatusCode::NO_CONTENT);
    server
        .prov_get(&sets)
        .await
        .expect_json(&json!({ "associated_implicit_registration_sets": [] }));
    // Deleting a private identity removes it from its sets.
    server
        .prov_put(&from_set, "")
        .await
        .expect_empty(StatusCode::OK);
    server
        .prov_delete(&private(ERIN))
        .await
        .expect_empty(StatusCode::OK);
    server
        .prov_get(&format!("/irs/{irs}/private_ids"))
        .await
        .expect_json(&json!({ "private_ids": [] }));
}

#[tokio::test(flavor = "multi_thread")]
async fn provisioned_public_identity_authenticates_once_associated_until_its_set_is_deleted() {
    let server = Server::start().await;
    put_password(&server, CAROL, "pw").await;
    let irs = new_irs(&server).await;
    let sp = new_sp(&server, &irs).await;
    server
        .prov_put(&sp_path(&irs, &sp, "/filter_criteria"), IFC)
        .await
        .expect_empty(StatusCode::OK);
    let xml = "<PublicIdentity><BarringIndication>0</BarringIndication>\
        <Identity>sip:carol@example.com</Identity></PublicIdentity>";
    put_public(&server, &irs, &sp, CAROL_SIP, xml)
        .await
        .expect_empty(StatusCode::OK);
    let av = format!("/impi/{}/av?impu={}", enc(CAROL), enc(CAROL_SIP));
    server
        .hs_get(&av)
        .await
        .expect_error(StatusCode::NOT_FOUND, "is not a public identity of");

    let associate = format!("/irs/{irs}/private_ids/{}", enc(CAROL));
    server
        .prov_put(&associate, "")
        .await
        .expect_empty(StatusCode::OK);
    let digest = json!({ "digest": { "ha1": ha1(CAROL, "example.com", "pw"), "realm": "example.com", "qop": "auth" } });
    server.hs_get(&av).await.expect_json(&digest);
    let reg_data = server.reg_data_get(CAROL_SIP).await;
    let body = reg_data.expect_xml();
    for line in [
        "\t\t<PrivateID>carol@example.com</PrivateID>\n",
        "\t\t\t\t<BarringIndication>0</BarringIndication>\n",
        "\t\t\t\t\t<ServerName>sip:mmtel.example.com</ServerName>\n",
    ] {
        assert!(body.contains(line), "{line:?} in {body}");
    }

    server
        .prov_delete(&format!("/irs/{irs}"))
        .await
        .expect_empty(StatusCode::OK);
    server
        .prov_delete(&format!("/irs/{irs}"))
        .await
        .expect_empty(StatusCode::NO_CONTENT);
    server
        .prov_get(&public(CAROL_SIP, "irs"))
        .await
        .expect_error(StatusCode::NOT_FOUND, CAROL_SIP);
    server
        .hs_get(&av)
        .await
        .expect_error(StatusCode::NOT_FOUND, CAROL_SIP);
    server
        .reg_data_get(CAROL_SIP)
        .await
        .expect_error(StatusCode::NOT_FOUND, CAROL_SIP);
    let sets = format!("{}/associated_implicit_registration_sets", private(CAROL));
    server
        .prov_get(&sets)
        .await
        .expect_json(&json!({ "associated_implicit_registration_sets": [] }));
}

fn ids_of(reply: &Reply) -> Vec<Value> {
    let mut ids = reply.json()["public_ids"]
        .as_array()
        .expect("a public_ids array")
        .clone();
    ids.sort_by_key(|v| v["public_id"].as_str().expect("public_id").to_owned());
    ids
}

/// Provisions 8 public identities in two sets; returns their listing entries, sorted.
async fn listed_identities(server: &Server) -> Vec<Value> {
    let mut expected = Vec::new();
    for (set_size, prefix) in [(5, "sip:one"), (3, "tel:+1555")] {
        let irs = new_irs(server).await;
        let sp = new_sp(server, &irs).await;
        for n in 0..set_size {
            let impu = format!("{prefix}{n}@example.com");
            put_public(server, &irs, &sp, &impu, &public_xml(&impu))
                .await
                .expect_empty(StatusCode::OK);
            expected.push(json!({ "public_id": impu, "sp": sp, "irs": irs }));
        }
    }
    expected.sort_by_key(|v| v["public_id"].as_str().unwrap().to_owned());
    expected
}

#[tokio::test(flavor = "multi_thread")]
async fn public_listing_shows_every_identity_and_chunks_partition_it() {
    let server = Server::start().await;
    server
        .prov_get("/public/")
        .await
        .expect_json(&json!({ "public_ids": [] }));
    let expected = listed_identities(&server).await;
    let all = server.prov_get("/public/").await;
    all.expect_status(StatusCode::OK);
    assert_eq!(ids_of(&all), expected);
    let bare: Vec<_> = expected
        .iter()
        .map(|v| json!({ "public_id": v["public_id"] }))
        .collect();
    assert_eq!(
        ids_of(&server.prov_get("/public/?excludeuuids=true").await),
        bare
    );

    let mut seen = BTreeSet::new();
    let mut total = 0;
    for chunk in 0..3 {
        let reply = server
            .prov_get(&format!("/public/?chunk-proportion=3&chunk={chunk}"))
            .await;
        for id in ids_of(&reply) {
            assert!(expected.contains(&id), "{id} is a full entry");
            seen.insert(id["public_id"].as_str().unwrap().to_owned());
            total += 1;
        }
    }
    assert_eq!(total, expected.len(), "chunks are disjoint");
    assert_eq!(seen.len(), expected.len(), "chunks cover every identity");
    server
        .prov_get("/public/?chunk-proportion=3&chunk=3")
        .await
        .expect_json(&json!({ "public_ids": [] }));
    let bad = [
        ("/public/?chunk-proportion=many", "chunk-proportion"),
        ("/public/?chunk=x", "chunk"),
    ];
    for (path, reason) in bad {
        server
            .prov_get(path)
            .await
            .expect_error(StatusCode::BAD_REQUEST, reason);
    }
    server
        .prov_put("/public/", "")
        .await
        .expect_error(StatusCode::METHOD_NOT_ALLOWED, "method");
}

#[tokio::test(flavor = "multi_thread")]
async fn public_listing_chunk_without_chunk_proportion_is_one_of_256() {
    let server = Server::start().await;
    let expected = listed_identities(&server).await;
    // Homestead-prov's chunk-proportion defaults to 256.
    let mut total = 0;
    for chunk in 0..256 {
        let reply = server.prov_get(&format!("/public/?chunk={chunk}")).await;
        let ids = ids_of(&reply);
        assert!(
            ids.len() < expected.len(),
            "chunk {chunk} is not everything: {ids:?}"
        );
        total += ids.len();
    }
    assert_eq!(
        total,
        expected.len(),
        "the 256 chunks partition the identities"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_prov_paths_are_404() {
    let server = Server::start().await;
    for path in ["/", "/nope", "/irs/a/b/c/d/e/f/g", "/private", "/public/x"] {
        server
            .prov_get(path)
            .await
            .expect_error(StatusCode::NOT_FOUND, "no such resource");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn public_identity_in_the_lock_stripe_of_its_set_is_placed_and_removed() {
    let server = Server::start().await;
    let irs = new_irs(&server).await;
    let sp = new_sp(&server, &irs).await;
    let impu = sharing_a_stripe(
        &irs,
        |n| format!("sip:stripe{n}@example.com"),
        |s| LockKey::Public(s),
    );
    put_public(&server, &irs, &sp, &impu, &public_xml(&impu))
        .await
        .expect_empty(StatusCode::OK);
    let path = sp_path(&irs, &sp, &format!("/public_ids/{}", enc(&impu)));
    server.prov_delete(&path).await.expect_empty(StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn private_identity_in_the_lock_stripe_of_its_set_can_be_deleted() {
    let server = Server::start().await;
    let irs = new_irs(&server).await;
    let impi = sharing_a_stripe(
        &irs,
        |n| format!("stripe{n}@example.com"),
        |s| LockKey::Private(s),
    );
    put_password(&server, &impi, "pw").await;
    let associate = format!("/irs/{irs}/private_ids/{}", enc(&impi));
    server
        .prov_put(&associate, "")
        .await
        .expect_empty(StatusCode::OK);
    server
        .prov_delete(&private(&impi))
        .await
        .expect_empty(StatusCode::OK);
    server
        .prov_get(&format!("/irs/{irs}/private_ids"))
        .await
        .expect_json(&json!({ "private_ids": [] }));
}

#[tokio::test(flavor = "multi_thread")]
async fn set_can_be_deleted_when_its_private_identity_is_in_its_lock_stripe() {
    let server = Server::start().await;
    let irs = new_irs(&server).await;
    let impi = sharing_a_stripe(
        &irs,
        |n| format!("stripe{n}@example.com"),
        |s| LockKey::Private(s),
    );
    put_password(&server, &impi, "pw").await;
    let associate = format!("/irs/{irs}/private_ids/{}", enc(&impi));
    server
        .prov_put(&associate, "")
        .await
        .expect_empty(StatusCode::OK);
    server
        .prov_delete(&format!("/irs/{irs}"))
        .await
        .expect_empty(StatusCode::OK);
    let sets = format!("{}/associated_implicit_registration_sets", private(&impi));
    server
        .prov_get(&sets)
        .await
        .expect_json(&json!({ "associated_implicit_registration_sets": [] }));
}
