use super::*;

const NOW: u64 = 1_000_000;
const AOR: &str = "sip:6505550000@example.com";

fn register(contacts: &[&str], expires: Option<u32>, call_id: &str, cseq: u32) -> Vec<u8> {
    let mut s = format!(
        "REGISTER sip:example.com SIP/2.0\r\n\
         Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK-{cseq}\r\n\
         Max-Forwards: 70\r\n\
         From: <{AOR}>;tag=a\r\nTo: <{AOR}>\r\n\
         Call-ID: {call_id}\r\nCSeq: {cseq} REGISTER\r\n\
         Path: <sip:pcscf.example.com;lr>\r\n"
    );
    for c in contacts {
        s += &format!("Contact: {c}\r\n");
    }
    if let Some(e) = expires {
        s += &format!("Expires: {e}\r\n");
    }
    s += "Content-Length: 0\r\n\r\n";
    s.into_bytes()
}

fn run(state: &AorState, bytes: &[u8], now: u64) -> Result<Applied, Refusal> {
    let msg = Message::parse(bytes).expect("parses");
    let reg = Register::from_message(&msg, "6505550000@example.com")?;
    apply(state, &reg, now, RegisterPolicy::default())
}

fn registered(contacts: &[&str]) -> AorState {
    run(
        &AorState::default(),
        &register(contacts, Some(300), "c1", 1),
        NOW,
    )
    .expect("registers")
    .state
}

#[test]
fn a_first_registration_stores_a_binding_with_path_and_capped_expiry() {
    let done = run(
        &AorState::default(),
        &register(&["<sip:ue@10.0.0.1:5060>"], Some(3600), "c1", 1),
        NOW,
    )
    .expect("registers");
    assert!(done.first_registration);
    assert!(!done.deregistered);
    let b = &done.state.bindings["sip:ue@10.0.0.1:5060"];
    assert_eq!(b.expires, NOW + 300, "cut to reg_max_expires");
    assert_eq!(b.paths, ["<sip:pcscf.example.com;lr>"]);
    assert_eq!(b.private_id, "6505550000@example.com");
    assert_eq!((b.cid.as_str(), b.cseq, b.priority), ("c1", 1, 1000));
}

#[test]
fn contact_expires_wins_over_the_header_and_the_default_applies_without_either() {
    let done = run(
        &AorState::default(),
        &register(
            &["<sip:a@10.0.0.1>;expires=120", "<sip:b@10.0.0.1>"],
            None,
            "c1",
            1,
        ),
        NOW,
    )
    .expect("registers");
    assert_eq!(done.state.bindings["sip:a@10.0.0.1"].expires, NOW + 120);
    assert_eq!(
        done.state.bindings["sip:b@10.0.0.1"].expires,
        NOW + 300,
        "3600 cut to 300"
    );
}

#[test]
fn too_brief_is_423_and_changes_nothing() {
    let err = run(
        &AorState::default(),
        &register(&["<sip:a@10.0.0.1>"], Some(10), "c1", 1),
        NOW,
    )
    .expect_err("too brief");
    assert_eq!(err, Refusal::IntervalTooBrief { min_expires: 60 });
    assert_eq!(err.status(), 423);
}

#[test]
fn bindings_are_keyed_by_instance_and_reg_id_so_a_new_address_replaces_the_old() {
    let instance = "+sip.instance=\"<urn:uuid:0000-1>\";reg-id=1";
    let state = registered(&[&format!("<sip:ue@10.0.0.1:5060>;{instance}")]);
    let moved = run(
        &state,
        &register(
            &[&format!("<sip:ue@10.0.0.9:5070>;{instance}")],
            Some(300),
            "c1",
            2,
        ),
        NOW + 10,
    )
    .expect("refreshes");
    assert_eq!(moved.state.bindings.len(), 1);
    let b = &moved.state.bindings["<urn:uuid:0000-1>:1"];
    assert_eq!(b.uri, "sip:ue@10.0.0.9:5070");
    assert!(!moved.first_registration);
}

#[test]
fn expires_zero_removes_one_binding_and_the_last_removal_is_a_deregistration() {
    let state = registered(&["<sip:a@10.0.0.1>", "<sip:b@10.0.0.1>"]);
    let one = run(
        &state,
        &register(&["<sip:a@10.0.0.1>"], Some(0), "c1", 2),
        NOW,
    )
    .expect("removes");
    assert_eq!(one.state.bindings.len(), 1);
    assert!(!one.deregistered);
    let all = run(
        &one.state,
        &register(&["<sip:b@10.0.0.1>;expires=0"], None, "c1", 3),
        NOW,
    )
    .expect("removes");
    assert!(all.state.is_empty());
    assert!(all.deregistered);
}

#[test]
fn star_removes_everything_and_needs_expires_zero_alone() {
    let state = registered(&["<sip:a@10.0.0.1>", "<sip:b@10.0.0.1>"]);
    let gone = run(&state, &register(&["*"], Some(0), "other-call", 1), NOW).expect("star");
    assert!(gone.state.is_empty());
    assert!(gone.deregistered);
    for bad in [
        register(&["*"], Some(60), "x", 1),
        register(&["*"], None, "x", 1),
        register(&["*", "<sip:a@10.0.0.1>"], Some(0), "x", 1),
    ] {
        let err = run(&state, &bad, NOW).expect_err("bad star");
        assert_eq!(err.status(), 400);
    }
}

#[test]
fn an_older_cseq_on_the_same_call_id_is_refused_500() {
    let state = registered(&["<sip:a@10.0.0.1>"]);
    let err = run(
        &state,
        &register(&["<sip:a@10.0.0.1>"], Some(300), "c1", 1),
        NOW,
    )
    .expect_err("replayed cseq");
    assert_eq!(err, Refusal::OutOfOrder);
    assert_eq!(err.status(), 500);
    // Another Call-ID (a rebooted UE) may start again at any CSeq.
    run(
        &state,
        &register(&["<sip:a@10.0.0.1>"], Some(300), "c2", 1),
        NOW,
    )
    .expect("new call-id");
}

#[test]
fn a_query_changes_nothing() {
    let state = registered(&["<sip:a@10.0.0.1>"]);
    let q = run(&state, &register(&[], None, "c1", 2), NOW).expect("query");
    assert_eq!(q.state, state);
    assert!(!q.first_registration && !q.deregistered);
}

#[test]
fn expired_bindings_are_dropped_before_applying() {
    let state = registered(&["<sip:a@10.0.0.1>"]);
    let later = run(
        &state,
        &register(&["<sip:b@10.0.0.1>"], Some(300), "c1", 2),
        NOW + 301,
    )
    .expect("registers");
    assert_eq!(
        later.state.bindings.keys().collect::<Vec<_>>(),
        ["sip:b@10.0.0.1"]
    );
    assert!(later.first_registration, "the AoR had nothing left");
}

#[test]
fn emergency_bindings_cannot_be_removed_or_shortened() {
    let state = registered(&["<sip:ue@10.0.0.1;sos>", "<sip:ue@10.0.0.1>"]);
    assert!(state.bindings["sossip:ue@10.0.0.1;sos"].emergency_reg);
    let err = run(
        &state,
        &register(&["<sip:ue@10.0.0.1;sos>"], Some(0), "c1", 2),
        NOW,
    )
    .expect_err("501");
    assert_eq!(err.status(), 501);
    let star = run(&state, &register(&["*"], Some(0), "c1", 2), NOW).expect("star keeps sos");
    assert_eq!(star.state.bindings.len(), 1);
    assert!(!star.deregistered);
    let shorter = run(
        &state,
        &register(&["<sip:ue@10.0.0.1;sos>;expires=60"], None, "c1", 3),
        NOW + 10,
    )
    .expect("kept");
    assert_eq!(
        shorter.state.bindings["sossip:ue@10.0.0.1;sos"].expires,
        NOW + 300
    );
}

#[test]
fn the_200_lists_every_binding_with_its_remaining_expiry_and_gruu_when_supported() {
    let state = registered(&[
        "<sip:ue@10.0.0.1:5060>;+sip.instance=\"<urn:uuid:0000-1>\";reg-id=1",
        "<sip:b@10.0.0.2>;q=0.5",
    ]);
    let values = contact_values(&state, AOR, NOW + 100, true);
    assert_eq!(values.len(), 2);
    assert!(
        values.contains(&"<sip:b@10.0.0.2>;expires=200;q=0.5".to_owned()),
        "{values:?}"
    );
    let with_gruu = values.iter().find(|v| v.contains("sip:ue@")).expect("ue");
    assert_eq!(
        with_gruu,
        "<sip:ue@10.0.0.1:5060>;expires=200;+sip.instance=\"<urn:uuid:0000-1>\";reg-id=1;pub-gruu=\"sip:6505550000@example.com;gr=urn:uuid:0000-1\""
    );
    let plain = contact_values(&state, AOR, NOW + 100, false);
    assert!(plain.iter().all(|v| !v.contains("pub-gruu")));
}
