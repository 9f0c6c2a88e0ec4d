//! The Clearwater Homestead API (port 8888) over real HTTP: registration-status, location
//! and reg-data, as Sprout calls them.

mod common;

use common::{
    ALICE, ALICE_SIP, ALICE_TEL, BOB, BOB_SIP, IFC, PASSWORD, SCSCF, Server, enc, password_spec,
    with_alice,
};
use homestead::model::ChargingAddresses;
use reqwest::{Method, StatusCode};
use serde_json::json;

async fn with_bob(server: &Server) {
    server
        .create_subscriber(BOB, &password_spec(&[BOB_SIP], PASSWORD))
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn registration_status_names_the_configured_scscf() {
    let server = Server::start().await;
    with_alice(&server).await;
    with_bob(&server).await;
    let path = |impi: &str, impu: &str| {
        format!("/impi/{}/registration-status?impu={}", enc(impi), enc(impu))
    };
    let reply = server.hs_get(&path(ALICE, ALICE_TEL)).await;
    let body = reply.expect_json(&json!({ "result-code": 2001, "scscf": SCSCF }));
    assert_eq!(body, format!(r#"{{"result-code":2001,"scscf":"{SCSCF}"}}"#));
    let cases = [
        (format!("/impi/{}/registration-status", enc(ALICE)), "impu"),
        (path("nobody@example.com", ALICE_SIP), "nobody@example.com"),
        (
            path(ALICE, "sip:nobody@example.com"),
            "sip:nobody@example.com",
        ),
        (path(ALICE, BOB_SIP), "is not a public identity of"),
    ];
    for (path, reason) in cases {
        server
            .hs_get(&path)
            .await
            .expect_error(StatusCode::NOT_FOUND, reason);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn location_is_the_configured_scscf_until_a_registration_names_one() {
    let server = Server::start().await;
    with_alice(&server).await;
    let location = |impu: &str| format!("/impu/{}/location", enc(impu));
    let at = |scscf: &str| json!({ "result-code": 2001, "scscf": scscf });
    server
        .hs_get(&location(ALICE_SIP))
        .await
        .expect_json(&at(SCSCF));
    let other = "sip:scscf2.test.example:5054;transport=TCP";
    let reg = json!({ "reqtype": "reg", "server_name": other }).to_string();
    server
        .reg_data_put(ALICE_SIP, Some(ALICE), &reg)
        .await
        .expect_xml();
    // Every identity of the implicit registration set is served by the same S-CSCF.
    for impu in [ALICE_SIP, ALICE_TEL] {
        server.hs_get(&location(impu)).await.expect_json(&at(other));
    }
    let dereg = r#"{"reqtype":"dereg-user"}"#;
    server
        .reg_data_put(ALICE_SIP, None, dereg)
        .await
        .expect_xml();
    server
        .hs_get(&location(ALICE_SIP))
        .await
        .expect_json(&at(SCSCF));
    server
        .hs_get(&location("sip:nobody@example.com"))
        .await
        .expect_error(StatusCode::NOT_FOUND, "sip:nobody@example.com");
}

#[tokio::test(flavor = "multi_thread")]
async fn reg_data_document_is_printed_exactly_as_clearwater_prints_it() {
    let server = Server::start_with(|config| {
        config.charging = ChargingAddresses {
            ccfs: vec!["ccf1.example".into(), "ccf2.example".into()],
            ecfs: vec!["ecf1.example".into()],
        };
    })
    .await;
    let spec = json!({ "impus": [ALICE_SIP, ALICE_TEL], "password": PASSWORD, "ifcs": IFC });
    server.create_subscriber(ALICE, &spec).await;
    let reg = r#"{"reqtype":"reg","server_name":"sip:scscf.test.example"}"#;
    let put = server.reg_data_put(ALICE_SIP, Some(ALICE), reg).await;
    let expected = "<ClearwaterRegData>\n\
        \t<RegistrationState>REGISTERED</RegistrationState>\n\
        \t<PreviousRegistrationState>NOT_REGISTERED</PreviousRegistrationState>\n\
        \t<IMSSubscription>\n\
        \t\t<PrivateID>alice@example.com</PrivateID>\n\
        \t\t<ServiceProfile>\n\
        \t\t\t<PublicIdentity>\n\
        \t\t\t\t<Identity>sip:alice@example.com</Identity>\n\
        \t\t\t</PublicIdentity>\n\
        \t\t\t<PublicIdentity>\n\
        \t\t\t\t<Identity>tel:+15550001</Identity>\n\
        \t\t\t</PublicIdentity>\n\
        \t\t\t<InitialFilterCriteria>\n\
        \t\t\t\t<Priority>1</Priority>\n\
        \t\t\t\t<TriggerPoint>\n\
        \t\t\t\t\t<ConditionTypeCNF>0</ConditionTypeCNF>\n\
        \t\t\t\t\t<SPT>\n\
        \t\t\t\t\t\t<ConditionNegated>0</ConditionNegated>\n\
        \t\t\t\t\t\t<Group>0</Group>\n\
        \t\t\t\t\t\t<Method>INVITE</Method>\n\
        \t\t\t\t\t\t<Extension/>\n\
        \t\t\t\t\t</SPT>\n\
        \t\t\t\t</TriggerPoint>\n\
        \t\t\t\t<ApplicationServer>\n\
        \t\t\t\t\t<ServerName>sip:mmtel.example.com</ServerName>\n\
        \t\t\t\t\t<DefaultHandling>0</DefaultHandling>\n\
        \t\t\t\t</ApplicationServer>\n\
        \t\t\t</InitialFilterCriteria>\n\
        \t\t</ServiceProfile>\n\
        \t</IMSSubscription>\n\
        \t<ChargingAddresses>\n\
        \t\t<CCF priority=\"1\">ccf1.example</CCF>\n\
        \t\t<CCF priority=\"2\">ccf2.example</CCF>\n\
        \t\t<ECF priority=\"1\">ecf1.example</ECF>\n\
        \t</ChargingAddresses>\n\
        </ClearwaterRegData>\n\n";
    assert_eq!(put.expect_xml(), expected);
    // GET gives the same document without the previous state (reg and call PUTs only).
    let without_previous = expected.replace(
        "\t<PreviousRegistrationState>NOT_REGISTERED</PreviousRegistrationState>\n",
        "",
    );
    assert_eq!(
        server.reg_data_get(ALICE_TEL).await.expect_xml(),
        without_previous
    );
}

/// A reg-data PUT reqtype, the (state, previous state) it answers and the state GET
/// reports afterwards.
type Step = (
    &'static str,
    (&'static str, Option<&'static str>),
    &'static str,
);

fn state_of(xml: &str) -> (&str, Option<&str>) {
    let between = |open: &str, close: &str| {
        xml.split_once(open)
            .map(|(_, rest)| rest.split_once(close).expect("closed").0)
    };
    (
        between("\t<RegistrationState>", "</RegistrationState>\n").expect("a state"),
        between(
            "\t<PreviousRegistrationState>",
            "</PreviousRegistrationState>\n",
        ),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn reg_data_get_of_a_new_subscriber_is_not_registered() {
    let server = Server::start().await;
    with_alice(&server).await;
    let body = server.reg_data_get(ALICE_SIP).await.expect_xml().to_owned();
    assert_eq!(state_of(&body), ("NOT_REGISTERED", None));
    assert!(body.starts_with("<ClearwaterRegData>\n\t<RegistrationState>NOT_REGISTERED</RegistrationState>\n\t<IMSSubscription>\n\t\t<PrivateID>alice@example.com</PrivateID>\n"), "{body}");
    assert!(
        body.contains("\t\t\t\t<Identity>tel:+15550001</Identity>\n"),
        "{body}"
    );
    assert!(
        !body.contains("ChargingAddresses"),
        "no CCF/ECF configured: {body}"
    );
    assert!(
        body.ends_with("\t</IMSSubscription>\n</ClearwaterRegData>\n\n"),
        "{body}"
    );
    server
        .reg_data_get("sip:nobody@example.com")
        .await
        .expect_error(StatusCode::NOT_FOUND, "sip:nobody@example.com");
}

#[tokio::test(flavor = "multi_thread")]
async fn reg_data_put_walks_the_registration_states() {
    let server = Server::start().await;
    with_alice(&server).await;
    let srv = &server;
    let put = move |reqtype: &str| {
        let body = json!({ "reqtype": reqtype, "server_name": SCSCF }).to_string();
        async move { srv.reg_data_put(ALICE_SIP, None, &body).await }
    };
    let get = move || async move { srv.reg_data_get(ALICE_TEL).await.expect_xml().to_owned() };
    let steps: [Step; 12] = [
        ("reg", ("REGISTERED", Some("NOT_REGISTERED")), "REGISTERED"),
        ("reg", ("REGISTERED", Some("REGISTERED")), "REGISTERED"),
        ("dereg-auth-failed", ("REGISTERED", None), "REGISTERED"),
        ("dereg-auth-timeout", ("REGISTERED", None), "REGISTERED"),
        ("dereg-user", ("NOT_REGISTERED", None), "NOT_REGISTERED"),
        (
            "dereg-auth-failed",
            ("NOT_REGISTERED", None),
            "NOT_REGISTERED",
        ),
        (
            "call",
            ("UNREGISTERED", Some("NOT_REGISTERED")),
            "UNREGISTERED",
        ),
        (
            "call",
            ("UNREGISTERED", Some("UNREGISTERED")),
            "UNREGISTERED",
        ),
        ("dereg-admin", ("NOT_REGISTERED", None), "NOT_REGISTERED"),
        ("reg", ("REGISTERED", Some("NOT_REGISTERED")), "REGISTERED"),
        // A call to a registered user is answered from the registration as it stands.
        ("call", ("REGISTERED", Some("REGISTERED")), "REGISTERED"),
        ("dereg-timeout", ("NOT_REGISTERED", None), "NOT_REGISTERED"),
    ];
    for (reqtype, answer, stored) in steps {
        let reply = put(reqtype).await;
        assert_eq!(state_of(reply.expect_xml()), answer, "{reqtype}");
        assert_eq!(
            state_of(&get().await),
            (stored, None),
            "GET after {reqtype}"
        );
    }
    for reqtype in ["dereg-user", "dereg-admin", "dereg-timeout"] {
        put(reqtype)
            .await
            .expect_error(StatusCode::BAD_REQUEST, "not registered");
    }
    // private_id names the IMPI in the document.
    let reg = r#"{"reqtype":"reg"}"#;
    let body = server.reg_data_put(ALICE_TEL, Some(ALICE), reg).await;
    assert!(
        body.expect_xml()
            .contains("\t\t<PrivateID>alice@example.com</PrivateID>\n")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn reg_data_put_refuses_bad_requests_without_changing_state() {
    let server = Server::start().await;
    with_alice(&server).await;
    with_bob(&server).await;
    let bad_bodies = [
        ("", "not JSON"),
        ("reqtype=reg", "not JSON"),
        ("[]", "reqtype"),
        ("{}", "reqtype"),
        (r#"{"reqtype":5}"#, "reqtype"),
        (r#"{"reqtype":"register"}"#, "unknown reqtype \"register\""),
        (r#"{"reqtype":"dereg-auth-failure"}"#, "unknown reqtype"),
    ];
    for (body, reason) in bad_bodies {
        let reply = server.reg_data_put(ALICE_SIP, None, body).await;
        reply.expect_error(StatusCode::BAD_REQUEST, reason);
    }
    let reg = r#"{"reqtype":"reg"}"#;
    let not_allowed = server.reg_data_put(ALICE_SIP, Some(BOB), reg).await;
    not_allowed.expect_error(StatusCode::NOT_FOUND, "bob@example.com may not register");
    let unknown = server
        .reg_data_put("sip:nobody@example.com", None, reg)
        .await;
    unknown.expect_error(StatusCode::NOT_FOUND, "sip:nobody@example.com");
    // An authentication failure of an unknown identity gets Clearwater's blank document.
    for reqtype in ["dereg-auth-failed", "dereg-auth-timeout"] {
        let body = format!(r#"{{"reqtype":"{reqtype}"}}"#);
        let blank = server
            .reg_data_put("sip:nobody@example.com", None, &body)
            .await;
        assert_eq!(
            blank.expect_xml(),
            "<ClearwaterRegData>\n\t<RegistrationState>NOT_REGISTERED</RegistrationState>\n</ClearwaterRegData>\n\n"
        );
    }
    let path = format!("/impu/{}/reg-data", enc(ALICE_SIP));
    for method in [Method::POST, Method::DELETE] {
        let reply = server.hs(method, &path, Some(reg)).await;
        reply.expect_error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    }
    let body = server.reg_data_get(ALICE_SIP).await;
    assert_eq!(state_of(body.expect_xml()), ("NOT_REGISTERED", None));
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_paths_are_404() {
    let server = Server::start().await;
    for path in [
        "/",
        "/nope",
        "/impi/alice%40example.com",
        "/impu/x/other",
        "/impi/a/av/aka/x",
    ] {
        server
            .hs_get(path)
            .await
            .expect_error(StatusCode::NOT_FOUND, "no such resource");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_overloaded_homestead_answers_503_with_the_reason_on_both_apis() {
    // No request may be in flight: every request is shed, as under overload.
    let server = Server::start_with(|config| config.max_in_flight = 0).await;
    server
        .hs_get("/ping")
        .await
        .expect_error(StatusCode::SERVICE_UNAVAILABLE, "overloaded");
    server
        .prov_get("/subscribers")
        .await
        .expect_error(StatusCode::SERVICE_UNAVAILABLE, "overloaded");
}
