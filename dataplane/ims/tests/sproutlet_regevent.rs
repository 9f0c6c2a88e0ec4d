//! Reg-event subscriptions through the S-CSCF chain: SUBSCRIBE kept with the AoR, the
//! full-state NOTIFY queued at once, and the NOTIFY a later change of bindings queues.

mod harness;

use harness::*;

/// Where the subscriber's NOTIFYs go first: the SUBSCRIBE's Record-Route.
const SUBSCRIBER_ROUTE: &str = "<sip:10.0.0.2:5060;lr>";

fn subscribe(to: &str) -> String {
    let start = format!("SUBSCRIBE {to} SIP/2.0");
    let from = format!("From: <{AOR}>;tag=w1");
    let to = format!("To: <{to}>");
    let contact = format!("Contact: {CONTACT}");
    let record_route = format!("Record-Route: {SUBSCRIBER_ROUTE}");
    request(&[
        start.as_str(),
        "Via: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bK-sub-1",
        "Max-Forwards: 70",
        from.as_str(),
        to.as_str(),
        "Call-ID: sub-1",
        "CSeq: 1 SUBSCRIBE",
        contact.as_str(),
        record_route.as_str(),
        "Event: reg",
        "Accept: application/reginfo+xml",
        "Expires: 600",
    ])
}

/// A harness whose REGISTERs need no credentials, with `AOR` registered at `CONTACT`.
fn registered() -> Harness {
    let mut h = Harness::configured(NOW, |s| s.authenticate_register = false);
    h.seed_registration(&RegisterRequest::default().text());
    h
}

#[test]
fn a_subscription_to_a_registered_aor_is_kept_and_notified_at_once() {
    let mut h = registered();
    let step = h.drive(&subscribe(AOR));
    assert_eq!(h.asked(), ["ReadAor", "WriteAor"]);

    let ok = response(&step);
    assert_eq!(ok.status, 200);
    let tag = ok.to_tag.clone().expect("our To tag");
    assert!(!tag.is_empty());
    assert_eq!(header(&step, "Expires"), Some("600"));
    assert_eq!(
        header(&step, "Contact"),
        Some(format!("<{SCSCF_URI}>").as_str())
    );

    let stored = h.store.read(AOR).state;
    let subscription = stored.subscriptions.get(&tag).expect("kept under our tag");
    assert_eq!(subscription.expires, h.now_s + 600);
    assert_eq!(subscription.routes, [SUBSCRIBER_ROUTE]);

    let [notify] = h.notifies.as_slice() else {
        panic!("one NOTIFY expected, got {:?}", h.notifies);
    };
    assert_eq!(notify.aor, AOR);
    assert_eq!(notify.to_tag, tag);
    assert!(!notify.last);
    assert_eq!(
        notify.target.address,
        "10.0.0.2:5060"
            .parse::<std::net::SocketAddr>()
            .expect("address"),
        "sent along the dialog's route set"
    );
    assert_eq!(notify.target.request_uri, None);
    let text = &notify.request;
    assert!(
        text.starts_with("NOTIFY sip:ue@10.0.0.1:5060 SIP/2.0\r\n"),
        "{text}"
    );
    assert!(
        text.contains(&format!("Route: {SUBSCRIBER_ROUTE}\r\n")),
        "{text}"
    );
    assert!(text.contains("CSeq: 1 NOTIFY\r\n"), "{text}");
    assert!(
        text.contains("Subscription-State: active;expires=600\r\n"),
        "{text}"
    );
    assert!(
        text.contains("Content-Type: application/reginfo+xml\r\n"),
        "{text}"
    );
    assert!(text.contains(&format!("aor=\"{AOR}\"")), "{text}");
    assert!(text.contains("<uri>sip:ue@10.0.0.1:5060</uri>"), "{text}");
}

#[test]
fn a_ue_subscribing_to_its_own_registration_through_its_service_route_is_not_challenged() {
    let mut h = Harness::configured(NOW, |s| {
        s.authenticate_register = false;
        s.authenticate_originating = true;
    });
    h.seed_registration(&RegisterRequest::default().text());
    let service_route = format!("Route: <{SCSCF_URI};lr;orig>\r\nEvent: reg");
    let through_service_route = subscribe(AOR).replace("Event: reg", &service_route);
    let step = h.drive(&through_service_route);
    assert_eq!(h.asked(), ["ReadAor", "WriteAor"]);
    assert_eq!(status(&step), 200);
}

#[test]
fn a_subscription_to_an_unregistered_aor_is_forbidden() {
    let mut h = Harness::new(NOW);
    let step = h.drive(&subscribe(AOR));
    assert_eq!(status(&step), 403);
    assert_eq!(h.asked(), ["ReadAor"]);
    assert!(h.notifies.is_empty());
    assert_eq!(
        h.store.read(AOR).version,
        0,
        "nothing stored for a stranger"
    );
}

#[test]
fn a_register_that_changes_the_bindings_notifies_the_subscriber() {
    let mut h = registered();
    let step = h.drive(&subscribe(AOR));
    let tag = response(&step).to_tag.clone().expect("our To tag");
    h.notifies.clear();

    h.now_s += 30;
    let second_device = RegisterRequest {
        call_id: "reg-2".to_owned(),
        contacts: vec!["<sip:ue2@10.0.0.3:5060>".to_owned()],
        ..RegisterRequest::default()
    };
    let step = h.drive(&second_device.text());
    assert_eq!(status(&step), 200);
    assert_eq!(h.asked(), ["ReadAor", "WriteAor"]);

    let [notify] = h.notifies.as_slice() else {
        panic!("one NOTIFY expected, got {:?}", h.notifies);
    };
    assert_eq!(notify.to_tag, tag);
    assert!(!notify.last);
    let text = &notify.request;
    assert!(text.contains("CSeq: 2 NOTIFY\r\n"), "{text}");
    assert!(text.contains("<uri>sip:ue@10.0.0.1:5060</uri>"), "{text}");
    assert!(text.contains("<uri>sip:ue2@10.0.0.3:5060</uri>"), "{text}");
    assert_eq!(
        h.store.read(AOR).state.subscriptions[&tag].notify_cseq,
        2,
        "the NOTIFY's CSeq is stored with the change"
    );
}
