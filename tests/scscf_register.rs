//! The S-CSCF of `whitewater all-in-one` as a UE sees it over UDP: digest registration
//! against Homestead's subscribers, the registrar's answers, and every way credentials
//! can be wrong.

mod common;

use std::time::Duration;

use common::ue::{ALICE, Answer, BOB, DOMAIN, Ue};
use common::{AllInOne, DEMO_PASSWORD, metric, scrape_until, start_all_in_one};

fn contact_expires(ue: &Ue, expires: u32) -> Vec<String> {
    vec![
        format!("Contact: {}", ue.contact()),
        format!("Expires: {expires}"),
    ]
}

async fn reg_data_state(aio: &AllInOne, impu: &str) -> String {
    let url = format!(
        "http://{}/impu/{}/reg-data",
        aio.homestead,
        impu.replace(':', "%3A")
    );
    let body = reqwest::get(url)
        .await
        .expect("GET reg-data")
        .text()
        .await
        .expect("body");
    body.split("<RegistrationState>")
        .nth(1)
        .and_then(|rest| rest.split('<').next())
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn a_ue_registers_with_its_password_and_homestead_learns_of_it() {
    let aio = start_all_in_one(5, &[]);
    let mut alice = Ue::new(aio.listen, ALICE);
    let device = format!(
        "Contact: {};+sip.instance=\"<urn:uuid:0000-a>\";reg-id=1",
        alice.contact()
    );
    let ok = alice.register_with(
        DEMO_PASSWORD,
        &[
            device.clone(),
            "Expires: 3600".into(),
            "Supported: path, gruu".into(),
            "Path: <sip:pcscf.example.com;lr>".into(),
        ],
    );
    assert_eq!(ok.status(), 200, "{}", ok.text());
    let contact = ok.header("Contact");
    assert!(
        contact.contains(";expires=300"),
        "cut to reg_max_expires: {contact}"
    );
    assert!(
        contact.contains(&format!(
            "pub-gruu=\"sip:{ALICE}@{DOMAIN};gr=urn:uuid:0000-a\""
        )),
        "{contact}"
    );
    assert_eq!(ok.header("Path"), "<sip:pcscf.example.com;lr>");
    assert_eq!(
        ok.header("Service-Route"),
        format!("<sip:{};lr;orig>", aio.listen)
    );
    assert_eq!(
        ok.headers("P-Associated-URI"),
        [format!("<sip:{ALICE}@{DOMAIN}>")]
    );
    assert_eq!(
        reg_data_state(&aio, &format!("sip:{ALICE}@{DOMAIN}")).await,
        "REGISTERED"
    );
    let text = scrape_until(aio.metrics, "one AoR", |t| {
        metric(t, "ww_registered_aors") == 1
    });
    assert_eq!(metric(&text, "ww_registered_aors"), 1);

    // A refresh reuses the nonce with the next count: no new challenge needed.
    let nonce = {
        let mut probe = Ue::new(aio.listen, ALICE);
        probe.register(&[]).nonce()
    };
    let lines = [
        device.clone(),
        "Expires: 600".into(),
        alice.authorization(&nonce, 1, DEMO_PASSWORD),
    ];
    let refreshed = alice.register(&lines);
    assert_eq!(refreshed.status(), 200);
    assert_eq!(
        refreshed.headers("Contact").len(),
        1,
        "the same binding (instance, reg-id)"
    );

    // Deregistration: Expires 0 removes the binding; Homestead hears dereg-user.
    let ok = alice.register_with(DEMO_PASSWORD, &[device, "Expires: 0".into()]);
    assert_eq!(ok.status(), 200, "{}", ok.text());
    assert!(
        ok.headers("Contact").is_empty(),
        "no binding left: {}",
        ok.text()
    );
    assert_eq!(
        reg_data_state(&aio, &format!("sip:{ALICE}@{DOMAIN}")).await,
        "NOT_REGISTERED"
    );
}

#[test]
fn a_wrong_password_is_403() {
    let aio = start_all_in_one(2, &[]);
    let mut bob = Ue::new(aio.listen, BOB);
    let lines = contact_expires(&bob, 300);
    assert_eq!(bob.register_with("not-the-password", &lines).status(), 403);
}

#[test]
fn a_replayed_response_is_refused() {
    let aio = start_all_in_one(2, &[]);
    let mut alice = Ue::new(aio.listen, ALICE);
    let challenge = alice.register(&contact_expires(&alice, 300));
    let mut lines = contact_expires(&alice, 300);
    lines.push(alice.authorization(&challenge.nonce(), 1, DEMO_PASSWORD));
    assert_eq!(alice.register(&lines).status(), 200);
    // The same Authorization again (an attacker's copy, in a new transaction).
    assert_eq!(alice.register(&lines).status(), 403);
}

#[test]
fn credentials_computed_for_another_uri_are_400_unless_the_check_is_off() {
    for (options, expected) in [(&[][..], 400), (&["--no-digest-uri-check"][..], 200)] {
        let aio = start_all_in_one(2, options);
        let mut alice = Ue::new(aio.listen, ALICE);
        let challenge = alice.register(&contact_expires(&alice, 300));
        let mut lines = contact_expires(&alice, 300);
        // The right password, for a request to another resource (or SIPp without
        // -auth_uri, which names its peer's address).
        lines.push(alice.authorization_naming(
            &format!("sip:{}", aio.listen),
            &challenge.nonce(),
            1,
            DEMO_PASSWORD,
        ));
        let answer = alice.register(&lines);
        assert_eq!(answer.status(), expected, "{options:?}: {}", answer.text());
        if expected == 400 {
            assert!(answer.header("Warning").contains("not the Request-URI"));
        }
    }
}

#[test]
fn an_expired_nonce_gets_a_stale_challenge() {
    let aio = start_all_in_one(2, &["--nonce-lifetime-s", "1"]);
    let mut alice = Ue::new(aio.listen, ALICE);
    let challenge = alice.register(&contact_expires(&alice, 300));
    std::thread::sleep(Duration::from_millis(2100));
    let mut lines = contact_expires(&alice, 300);
    lines.push(alice.authorization(&challenge.nonce(), 1, DEMO_PASSWORD));
    let stale = alice.register(&lines);
    assert_eq!(stale.status(), 401);
    assert!(stale.header("WWW-Authenticate").ends_with(",stale=TRUE"));
}

#[test]
fn known_and_unknown_users_get_the_same_challenge_and_unknown_credentials_get_403() {
    let aio = start_all_in_one(2, &[]);
    let mut known = Ue::new(aio.listen, ALICE);
    let mut unknown = Ue::new(aio.listen, "9999999999");
    let a = known.register(&contact_expires(&known, 300));
    let b = unknown.register(&contact_expires(&unknown, 300));
    assert_eq!((a.status(), b.status()), (401, 401));
    let shape = |answer: &Answer| {
        answer
            .header("WWW-Authenticate")
            .replace(&answer.nonce(), "N")
    };
    assert_eq!(shape(&a), shape(&b));
    let first_line = |answer: &Answer| answer.text().lines().next().unwrap_or_default().to_owned();
    assert_eq!(first_line(&a), first_line(&b));
    assert_eq!(
        unknown
            .register_with(DEMO_PASSWORD, &contact_expires(&unknown, 300))
            .status(),
        403
    );
}

#[test]
fn too_brief_is_423_with_min_expires_and_star_removes_every_binding() {
    let aio = start_all_in_one(2, &[]);
    let mut alice = Ue::new(aio.listen, ALICE);
    let brief = alice.register_with(DEMO_PASSWORD, &contact_expires(&alice, 5));
    assert_eq!(brief.status(), 423);
    assert_eq!(brief.header("Min-Expires"), "60");
    let two = alice.register_with(
        DEMO_PASSWORD,
        &[
            "Contact: <sip:a@10.0.0.1>, <sip:b@10.0.0.2>".into(),
            "Expires: 120".into(),
        ],
    );
    assert_eq!(two.status(), 200, "{}", two.text());
    assert_eq!(two.contact_count(), 2);
    assert_eq!(two.headers("Contact").len(), 1, "one line");
    let gone = alice.register_with(DEMO_PASSWORD, &["Contact: *".into(), "Expires: 0".into()]);
    assert_eq!(gone.status(), 200, "{}", gone.text());
    assert!(gone.headers("Contact").is_empty());
}

#[tokio::test]
async fn an_operator_sees_the_bindings_and_can_clear_them() {
    let aio = start_all_in_one(2, &[]);
    let mut alice = Ue::new(aio.listen, ALICE);
    let ok = alice.register_with(
        DEMO_PASSWORD,
        &[
            format!(
                "Contact: {};+sip.instance=\"<urn:uuid:0000-a>\";reg-id=1",
                alice.contact()
            ),
            "Expires: 300".into(),
            "Path: <sip:pcscf.example.com;lr>".into(),
        ],
    );
    assert_eq!(ok.status(), 200);
    let impu = format!("sip:{ALICE}@{DOMAIN}");
    let base = format!(
        "http://{}/impu/{}",
        aio.management,
        impu.replace(':', "%3A")
    );
    let http = reqwest::Client::new();

    let answer = http
        .get(format!("{base}/bindings"))
        .send()
        .await
        .expect("GET bindings");
    assert_eq!(answer.status(), 200);
    let json: serde_json::Value = answer.json().await.expect("JSON");
    let binding = &json["bindings"]["<urn:uuid:0000-a>:1"];
    assert_eq!(
        binding["uri"],
        format!("sip:{ALICE}@{}", alice.socket.local_addr().expect("addr"))
    );
    assert_eq!(binding["cid"], alice.call_id);
    assert_eq!(
        binding["paths"],
        serde_json::json!(["<sip:pcscf.example.com;lr>"])
    );
    assert_eq!(binding["private_id"], format!("{ALICE}@{DOMAIN}"));
    assert_eq!(binding["emergency_reg"], false);
    assert_eq!(binding["timer_id"], "Deprecated");
    assert_eq!(binding["params"]["reg-id"], "1");
    let expires = binding["expires"].as_u64().expect("absolute expiry");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    assert!(
        (now + 290..=now + 301).contains(&expires),
        "{expires} vs {now}"
    );

    let answer = http
        .get(format!("{base}/subscriptions"))
        .send()
        .await
        .expect("GET");
    assert_eq!(answer.status(), 200);
    let json: serde_json::Value = answer.json().await.expect("JSON");
    assert_eq!(json, serde_json::json!({ "subscriptions": {} }));

    let answer = http.delete(&base).send().await.expect("DELETE");
    assert_eq!(answer.status(), 200, "{:?}", answer.text().await);
    assert_eq!(reg_data_state(&aio, &impu).await, "NOT_REGISTERED");
    let answer = http
        .get(format!("{base}/bindings"))
        .send()
        .await
        .expect("GET");
    assert_eq!(answer.status(), 404);
    let answer = http.delete(&base).send().await.expect("DELETE");
    assert_eq!(answer.status(), 404);
    let unknown = format!(
        "http://{}/impu/sip%3Anobody%40example.com/bindings",
        aio.management
    );
    assert_eq!(http.get(unknown).send().await.expect("GET").status(), 404);
}

#[test]
fn sipvicious_svwar_finds_no_subscriber() {
    let aio = start_all_in_one(5, &[]);
    let local = common::free_udp_ports(0).to_string();
    // The range holds the five demo subscribers and unknown numbers on both sides.
    let out = std::process::Command::new("svwar")
        .args(["-m", "REGISTER", "-e", "6505549995-6505550010"])
        .args(["--domain", DOMAIN, "-x", "127.0.0.1", "-P", &local])
        .args(["-p", &aio.listen.port().to_string(), "--force", "-v"])
        .arg("127.0.0.1")
        .output()
        .expect("run svwar (Debian package sipvicious)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("found nothing"), "svwar output:\n{text}");
    for n in 0..5 {
        let extension = format!("| 650555000{n} ");
        assert!(!text.contains(&extension), "svwar found {n}:\n{text}");
    }
}

#[tokio::test]
async fn a_binding_that_is_not_refreshed_expires_and_homestead_hears_of_it() {
    let aio = start_all_in_one(2, &["--reg-min-expires", "1"]);
    let mut alice = Ue::new(aio.listen, ALICE);
    let ok = alice.register_with(DEMO_PASSWORD, &contact_expires(&alice, 2));
    assert_eq!(ok.status(), 200, "{}", ok.text());
    let impu = format!("sip:{ALICE}@{DOMAIN}");
    assert_eq!(reg_data_state(&aio, &impu).await, "REGISTERED");
    let bindings = format!(
        "http://{}/impu/{}/bindings",
        aio.management,
        impu.replace(':', "%3A")
    );
    // Expires in 2 s; the sweep runs every second.
    let deadline = std::time::Instant::now() + Duration::from_secs(6);
    loop {
        let status = reqwest::get(&bindings).await.expect("GET").status();
        if status == 404 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the binding never expired"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while reg_data_state(&aio, &impu).await != "NOT_REGISTERED" {
        assert!(
            std::time::Instant::now() < deadline,
            "Homestead never heard of the expiry"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let text = scrape_until(aio.metrics, "no AoR", |t| {
        metric(t, "ww_registered_aors") == 0
    });
    assert_eq!(metric(&text, "ww_registered_aors"), 0);
}

#[test]
fn without_register_authentication_a_register_is_accepted_at_once() {
    let aio = start_all_in_one(2, &["--no-register-authentication"]);
    let mut alice = Ue::new(aio.listen, ALICE);
    let ok = alice.register(&contact_expires(&alice, 300));
    assert_eq!(ok.status(), 200, "{}", ok.text());
    assert_eq!(ok.headers("Contact").len(), 1);
}

#[test]
fn an_unreachable_homestead_gets_504_not_a_misleading_403() {
    // Sprout on its own, told of a Homestead that is not there.
    let port = common::free_udp_ports(1);
    let listen = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let dead = common::free_tcp_port();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_whitewater"))
        .args(["sprout", "--listen", &listen.to_string(), "--cores", "0"])
        .args([
            "--metrics",
            &format!("127.0.0.1:{}", common::free_tcp_port()),
        ])
        .args([
            "--management-http",
            &format!("127.0.0.1:{}", common::free_tcp_port()),
        ])
        .args(["--home-domain", DOMAIN])
        .args(["--homestead-url", &format!("http://127.0.0.1:{dead}")])
        .args(["--homestead-lookup-timeout-ms", "500"])
        .env("WW_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .spawn()
        .expect("start whitewater sprout");
    let _sprout = common::Running(child);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !common::udp_bound(port) || !common::udp_bound(port + 1) {
        assert!(std::time::Instant::now() < deadline, "sprout did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut alice = Ue::new(listen, ALICE);
    let challenge = alice.register(&contact_expires(&alice, 300));
    assert_eq!(challenge.status(), 401, "the challenge needs no Homestead");
    let mut lines = contact_expires(&alice, 300);
    lines.push(alice.authorization(&challenge.nonce(), 1, DEMO_PASSWORD));
    let answer = alice.register(&lines);
    assert_eq!(answer.status(), 504, "{}", answer.text());
}

#[test]
fn a_replay_from_elsewhere_is_refused_on_every_core() {
    // Two cores: a replay from another address may land on the core that never saw the
    // nonce; the count kept with the AoR refuses it there too.
    let aio = start_all_in_one(2, &["--cores", "0,1"]);
    let mut alice = Ue::new(aio.listen, ALICE);
    let challenge = alice.register(&contact_expires(&alice, 300));
    let mut lines = contact_expires(&alice, 300);
    lines.push(alice.authorization(&challenge.nonce(), 1, DEMO_PASSWORD));
    assert_eq!(alice.register(&lines).status(), 200);
    for _ in 0..6 {
        let mut attacker = Ue::new(aio.listen, ALICE);
        attacker.call_id = alice.call_id.clone();
        attacker.cseq = 10;
        assert_eq!(
            attacker.register(&lines).status(),
            403,
            "a replay got through"
        );
    }
}

#[test]
fn a_registration_replayed_after_its_deregistration_is_refused() {
    let aio = start_all_in_one(2, &["--cores", "0,1"]);
    let mut alice = Ue::new(aio.listen, ALICE);
    let challenge = alice.register(&contact_expires(&alice, 300));
    let nonce = challenge.nonce();
    let mut register = contact_expires(&alice, 300);
    register.push(alice.authorization(&nonce, 1, DEMO_PASSWORD));
    assert_eq!(alice.register(&register).status(), 200);
    let mut dereg = contact_expires(&alice, 0);
    dereg.push(alice.authorization(&nonce, 2, DEMO_PASSWORD));
    assert_eq!(alice.register(&dereg).status(), 200);
    // The AoR has no binding now; a copy of the first REGISTER must not bring it back.
    for _ in 0..6 {
        let mut attacker = Ue::new(aio.listen, ALICE);
        attacker.call_id = alice.call_id.clone();
        attacker.cseq = 20;
        assert_eq!(
            attacker.register(&register).status(),
            403,
            "the replay registered"
        );
    }
}
