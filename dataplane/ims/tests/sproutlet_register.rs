//! Digest REGISTER through the S-CSCF chain: the challenge, the checks of the answer, and
//! the registrar's lookups and writes, in the order the engine is asked to run them.

mod harness;

use harness::*;
use ims::auth::Authenticator;
use ims::sproutlet::{CAS_ATTEMPTS, LookupFailure, Query, RegistrationChange, Response, Step};

/// Registers `AOR` with digest credentials (nonce count 1); the nonce is given back for
/// later requests to reuse.
fn register(h: &mut Harness, request: &RegisterRequest) -> (String, Step) {
    let nonce = h.challenge_nonce(&request.text());
    let answered = request.with_authorization(register_credentials(IMPI, PASSWORD, &nonce, 1));
    (nonce, h.drive(&answered.text()))
}

#[test]
fn a_register_without_credentials_is_challenged_without_any_lookup() {
    let mut h = Harness::new(NOW);
    let text = RegisterRequest::default().text();
    let step = h.drive(&text);
    assert_eq!(status(&step), 401);
    assert!(h.queries.is_empty(), "asked {:?}", h.queries);
    let challenge = header(&step, "WWW-Authenticate").expect("a challenge");
    assert_eq!(auth_param(challenge, "realm").as_deref(), Some(HOME));
    assert_eq!(auth_param(challenge, "qop").as_deref(), Some("auth"));
    assert_eq!(auth_param(challenge, "algorithm").as_deref(), Some("MD5"));
    assert_eq!(auth_param(challenge, "stale"), None);
    let nonce = auth_param(challenge, "nonce").expect("a nonce");
    assert!(!nonce.is_empty());
    assert!(challenge.starts_with("Digest "), "{challenge}");

    let at_once = h
        .challenge_at_once(&text)
        .expect("challenged without the chain");
    assert_eq!(auth_param(&at_once, "realm").as_deref(), Some(HOME));
    assert_ne!(
        auth_param(&at_once, "nonce"),
        Some(nonce),
        "every challenge has its own nonce"
    );
}

#[test]
fn the_right_credentials_register_the_contact_after_homestead_and_the_store() {
    let mut h = Harness::new(NOW);
    let (_, step) = register(&mut h, &RegisterRequest::default());
    assert_eq!(
        h.asked(),
        ["DigestHa1", "ReadAor", "Registration reg", "WriteAor"]
    );
    assert_eq!(
        h.queries[0],
        Query::DigestHa1 {
            impi: IMPI.to_owned(),
            impu: AOR.to_owned(),
        }
    );
    assert_eq!(
        h.queries[2],
        Query::Registration {
            impu: AOR.to_owned(),
            impi: IMPI.to_owned(),
            change: RegistrationChange::Register,
        }
    );
    let expected = Response {
        status: 200,
        to_tag: None,
        headers: vec![
            ("Contact", format!("{CONTACT};expires=300").into_bytes()),
            ("Path", PATH.as_bytes().to_vec()),
            (
                "Service-Route",
                format!("<{SCSCF_URI};lr;orig>").into_bytes(),
            ),
            ("P-Associated-URI", format!("<{AOR}>, <{TEL}>").into_bytes()),
        ],
    };
    assert_eq!(response(&step), &expected);
    let stored = h.store.read(AOR).state;
    assert_eq!(stored.bindings.len(), 1);
    assert_eq!(stored.associated_uris, [AOR, TEL]);
}

#[test]
fn without_a_path_the_ok_has_none() {
    let mut h = Harness::new(NOW);
    let request = RegisterRequest {
        path: None,
        ..RegisterRequest::default()
    };
    let (_, step) = register(&mut h, &request);
    assert_eq!(status(&step), 200);
    assert_eq!(header(&step, "Path"), None);
}

#[test]
fn a_refresh_does_not_tell_homestead_again() {
    let mut h = Harness::new(NOW);
    let first = RegisterRequest::default();
    let (nonce, step) = register(&mut h, &first);
    assert_eq!(status(&step), 200);

    h.now_s += 10;
    let refresh = RegisterRequest {
        cseq: 2,
        authorization: Some(register_credentials(IMPI, PASSWORD, &nonce, 2)),
        ..first
    };
    let step = h.drive(&refresh.text());
    assert_eq!(h.asked(), ["DigestHa1", "ReadAor", "WriteAor"]);
    assert_eq!(status(&step), 200);
    assert_eq!(
        header(&step, "P-Associated-URI"),
        Some(format!("<{AOR}>, <{TEL}>").as_str()),
        "the implicit registration set Homestead gave at the first REGISTER"
    );
}

#[test]
fn a_wrong_password_is_forbidden_and_registers_nothing() {
    let mut h = Harness::new(NOW);
    let request = RegisterRequest::default();
    let nonce = h.challenge_nonce(&request.text());
    let answered = request.with_authorization(register_credentials(IMPI, "guess", &nonce, 1));
    let step = h.drive(&answered.text());
    assert_eq!(status(&step), 403);
    assert_eq!(h.asked(), ["DigestHa1"]);
    assert_eq!(h.store.read(AOR).version, 0);
}

#[test]
fn a_replayed_nonce_count_is_forbidden() {
    let mut h = Harness::new(NOW);
    let request = RegisterRequest::default();
    let nonce = h.challenge_nonce(&request.text());
    let answered = request
        .with_authorization(register_credentials(IMPI, PASSWORD, &nonce, 1))
        .text();
    assert_eq!(status(&h.drive(&answered)), 200);
    let step = h.drive(&answered);
    assert_eq!(status(&step), 403);
    assert_eq!(h.asked(), ["DigestHa1"]);
}

#[test]
fn a_replay_to_another_core_is_caught_by_the_count_stored_with_the_aor() {
    let mut h = Harness::new(NOW);
    let (nonce, step) = register(&mut h, &RegisterRequest::default());
    assert_eq!(status(&step), 200);

    // Another core has seen no count for this nonce; only the AoR's record refuses it.
    h.auth = Authenticator::new(&auth_config(), h.now_s);
    let replay = RegisterRequest {
        cseq: 2,
        authorization: Some(register_credentials(IMPI, PASSWORD, &nonce, 1)),
        ..RegisterRequest::default()
    };
    let step = h.drive(&replay.text());
    assert_eq!(status(&step), 403);
    assert_eq!(h.asked(), ["DigestHa1", "ReadAor"]);
}

#[test]
fn an_unknown_user_is_forbidden_only_after_answering_the_challenge() {
    let mut h = Harness::new(NOW);
    let request = RegisterRequest {
        aor: "sip:nobody@example.com".to_owned(),
        ..RegisterRequest::default()
    };
    let nonce = h.challenge_nonce(&request.text());
    let answered =
        request.with_authorization(register_credentials("nobody@example.com", "x", &nonce, 1));
    let step = h.drive(&answered.text());
    assert_eq!(status(&step), 403);
    assert_eq!(h.asked(), ["DigestHa1"]);
}

#[test]
fn homestead_unavailable_is_a_timeout_not_a_refusal() {
    let mut h = Harness::new(NOW);
    let request = RegisterRequest::default();
    let nonce = h.challenge_nonce(&request.text());
    h.homestead.failure = Some(LookupFailure::Unavailable("overloaded".to_owned()));
    let answered = request.with_authorization(register_credentials(IMPI, PASSWORD, &nonce, 1));
    let step = h.drive(&answered.text());
    assert_eq!(status(&step), 504);
    assert_eq!(h.asked(), ["DigestHa1"]);
}

#[test]
fn an_expired_nonce_with_the_right_password_gets_a_stale_challenge() {
    let mut h = Harness::new(NOW);
    let request = RegisterRequest::default();
    let nonce = h.challenge_nonce(&request.text());
    h.now_s += NONCE_LIFETIME_S + 1;
    let answered = request.with_authorization(register_credentials(IMPI, PASSWORD, &nonce, 1));
    let step = h.drive(&answered.text());
    assert_eq!(status(&step), 401);
    assert_eq!(h.asked(), ["DigestHa1"]);
    let challenge = header(&step, "WWW-Authenticate").expect("a challenge");
    assert_eq!(auth_param(challenge, "stale").as_deref(), Some("TRUE"));
    assert_ne!(auth_param(challenge, "nonce"), Some(nonce));
    assert_eq!(h.store.read(AOR).version, 0);
}

#[test]
fn an_expiry_below_the_minimum_is_423_before_homestead_hears_of_it() {
    let mut h = Harness::new(NOW);
    let request = RegisterRequest {
        expires: Some(30),
        ..RegisterRequest::default()
    };
    let (_, step) = register(&mut h, &request);
    assert_eq!(h.asked(), ["DigestHa1", "ReadAor"]);
    let min = h.settings.register.min_expires.to_string();
    assert_eq!(
        response(&step),
        &Response {
            status: 423,
            to_tag: None,
            headers: vec![("Min-Expires", min.into_bytes())],
        }
    );
}

#[test]
fn a_lost_compare_and_set_is_retried_from_a_fresh_read() {
    let mut h = Harness::new(NOW);
    h.store.lose_next_writes(1);
    let (_, step) = register(&mut h, &RegisterRequest::default());
    assert_eq!(status(&step), 200);
    assert_eq!(
        h.asked(),
        [
            "DigestHa1",
            "ReadAor",
            "Registration reg",
            "WriteAor",
            "ReadAor",
            "WriteAor"
        ]
    );
    assert_eq!(h.store.read(AOR).state.bindings.len(), 1);
}

#[test]
fn compare_and_set_lost_every_time_gives_up_with_500() {
    let mut h = Harness::new(NOW);
    h.store.lose_every_write();
    let (_, step) = register(&mut h, &RegisterRequest::default());
    assert_eq!(status(&step), 500);
    let mut expected = vec!["DigestHa1", "ReadAor", "Registration reg", "WriteAor"];
    for _ in 1..CAS_ATTEMPTS {
        expected.extend(["ReadAor", "WriteAor"]);
    }
    assert_eq!(h.asked(), expected);
    let writes = h.asked().iter().filter(|&&q| q == "WriteAor").count();
    assert_eq!(writes, CAS_ATTEMPTS as usize);
}

#[test]
fn expires_zero_deregisters_and_tells_homestead_after_the_write() {
    let mut h = Harness::new(NOW);
    let first = RegisterRequest::default();
    let (nonce, step) = register(&mut h, &first);
    assert_eq!(status(&step), 200);

    let deregister = RegisterRequest {
        cseq: 2,
        expires: Some(0),
        authorization: Some(register_credentials(IMPI, PASSWORD, &nonce, 2)),
        ..first
    };
    let step = h.drive(&deregister.text());
    assert_eq!(
        h.asked(),
        [
            "DigestHa1",
            "ReadAor",
            "WriteAor",
            "Registration dereg-user"
        ]
    );
    assert_eq!(
        h.queries[3],
        Query::Registration {
            impu: AOR.to_owned(),
            impi: IMPI.to_owned(),
            change: RegistrationChange::DeregisterUser,
        }
    );
    assert_eq!(status(&step), 200);
    assert_eq!(header(&step, "Contact"), None);
    assert_eq!(header(&step, "Service-Route"), None);
    let stored = h.store.read(AOR).state;
    assert!(stored.bindings.is_empty());
    assert!(
        stored.last_auth.is_some(),
        "the nonce count outlives the bindings, against replays"
    );
}

#[test]
fn without_register_authentication_the_registrar_reads_the_aor_first() {
    let mut h = Harness::configured(NOW, |s| s.authenticate_register = false);
    let text = RegisterRequest::default().text();
    assert_eq!(h.challenge_at_once(&text), None);
    let step = h.drive(&text);
    assert_eq!(h.asked(), ["ReadAor", "Registration reg", "WriteAor"]);
    assert_eq!(status(&step), 200);
    assert_eq!(
        h.store.read(AOR).state.bindings["sip:ue@10.0.0.1:5060"].private_id,
        IMPI,
        "registered for the AoR's default private identity"
    );
}

#[test]
fn guessing_from_one_address_locks_it_out_before_any_lookup_and_not_the_user_elsewhere() {
    let mut h = Harness::new(NOW);
    let limit = ims::auth::guessing::GuessingLimits::default().per_source;
    let request = RegisterRequest::default();
    for _ in 0..limit {
        let nonce = h.challenge_nonce(&request.text());
        let guess = request.with_authorization(register_credentials(IMPI, "guess", &nonce, 1));
        assert_eq!(status(&h.drive(&guess.text())), 403);
        assert_eq!(h.asked(), ["DigestHa1"]);
    }
    // Locked out: even the right password from that address is refused, unchecked.
    let nonce = h.challenge_nonce(&request.text());
    let right = request.with_authorization(register_credentials(IMPI, PASSWORD, &nonce, 1));
    let step = h.drive(&right.text());
    assert_eq!(status(&step), 403);
    assert!(h.queries.is_empty(), "asked {:?}", h.queries);
    assert!(header(&step, "Warning").is_some_and(|w| w.contains("failed authentication")));
    assert_eq!(h.auth.guessing_stats().lockouts, 1);
    assert_eq!(h.auth.guessing_stats().refused, 1);
    // The user at their own address gets in.
    h.source = Some(std::net::IpAddr::from([198, 51, 100, 1]));
    let step = h.drive(&right.text());
    assert_eq!(
        h.asked(),
        ["DigestHa1", "ReadAor", "Registration reg", "WriteAor"]
    );
    assert_eq!(status(&step), 200);
}
