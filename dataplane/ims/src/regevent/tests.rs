use super::*;
use crate::registrar::{self, Register, RegisterPolicy};

const NOW: u64 = 1_000_000;
const AOR: &str = "sip:6505550000@example.com";

fn subscribe_msg(to_tag: Option<&str>, expires: Option<u32>, extra: &str) -> Vec<u8> {
    let to = match to_tag {
        Some(tag) => format!("<{AOR}>;tag={tag}"),
        None => format!("<{AOR}>"),
    };
    let mut s = format!(
        "SUBSCRIBE {AOR} SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.9;branch=z9hG4bK-s\r\n\
         Max-Forwards: 70\r\nFrom: <sip:watcher@example.com>;tag=w1\r\nTo: {to}\r\n\
         Call-ID: sub-1\r\nCSeq: 1 SUBSCRIBE\r\nContact: <sip:watcher@10.0.0.9:5060>\r\n\
         Record-Route: <sip:pcscf.example.com;lr>\r\nEvent: reg\r\n{extra}"
    );
    if let Some(e) = expires {
        s += &format!("Expires: {e}\r\n");
    }
    s += "Content-Length: 0\r\n\r\n";
    s.into_bytes()
}

fn registered() -> AorState {
    let reg = b"REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK-r\r\n\
        From: <sip:6505550000@example.com>;tag=a\r\nTo: <sip:6505550000@example.com>\r\n\
        Call-ID: r1\r\nCSeq: 1 REGISTER\r\n\
        Contact: <sip:ue@10.0.0.1:5060>;+sip.instance=\"<urn:uuid:1>\";reg-id=1\r\n\
        Expires: 300\r\nContent-Length: 0\r\n\r\n";
    let msg = Message::parse(reg).expect("parses");
    let r = Register::from_message(&msg, "6505550000@example.com").expect("reads");
    registrar::apply(&AorState::default(), &r, NOW, RegisterPolicy::default())
        .expect("registers")
        .state
}

fn run(state: &AorState, bytes: &[u8]) -> Result<Subscribed, SubscribeRefusal> {
    let msg = Message::parse(bytes).expect("parses");
    subscribe(state, &msg, "scscf-1", NOW, 3600)
}

#[test]
fn a_subscription_is_kept_with_the_dialog_and_capped() {
    let done = run(&registered(), &subscribe_msg(None, Some(7200), "")).expect("subscribes");
    assert_eq!(done.expires_in, 3600);
    let s = &done.state.subscriptions["scscf-1"];
    assert_eq!(s.req_uri, "sip:watcher@10.0.0.9:5060");
    assert_eq!((s.from_tag.as_str(), s.to_tag.as_str()), ("w1", "scscf-1"));
    assert_eq!(s.routes, ["<sip:pcscf.example.com;lr>"]);
    assert_eq!(s.notify_cseq, 1);
    assert_eq!(s.expires, NOW + 3600);
    let default = run(&registered(), &subscribe_msg(None, None, "")).expect("subscribes");
    assert_eq!(
        default.expires_in, 3600,
        "3761 by default, cut to the maximum"
    );
}

#[test]
fn refresh_and_unsubscribe_find_the_dialog_and_count_the_notifies() {
    let first = run(&registered(), &subscribe_msg(None, Some(600), "")).expect("subscribes");
    let refresh =
        run(&first.state, &subscribe_msg(Some("scscf-1"), Some(600), "")).expect("refreshes");
    assert_eq!(refresh.subscription.notify_cseq, 2);
    let gone = run(&refresh.state, &subscribe_msg(Some("scscf-1"), Some(0), "")).expect("ends");
    assert_eq!(gone.expires_in, 0);
    assert!(gone.state.subscriptions.is_empty());
    assert_eq!(
        gone.subscription.notify_cseq, 3,
        "the last NOTIFY is still sent"
    );
    let err = run(&gone.state, &subscribe_msg(Some("scscf-1"), Some(600), "")).expect_err("481");
    assert_eq!(err.status(), 481);
}

#[test]
fn other_events_and_unacceptable_bodies_are_refused() {
    let other = String::from_utf8(subscribe_msg(None, Some(600), ""))
        .expect("ascii")
        .replace("Event: reg", "Event: presence");
    assert_eq!(
        run(&registered(), other.as_bytes())
            .expect_err("489")
            .status(),
        489
    );
    let accept = subscribe_msg(None, Some(600), "Accept: application/pidf+xml\r\n");
    assert_eq!(run(&registered(), &accept).expect_err("406").status(), 406);
    let fine = subscribe_msg(None, Some(600), "Accept: application/reginfo+xml\r\n");
    assert!(run(&registered(), &fine).is_ok());
}

#[test]
fn the_reginfo_is_full_state_with_every_contact_and_the_notify_carries_it() {
    let state = registered();
    let done = run(&state, &subscribe_msg(None, Some(600), "")).expect("subscribes");
    let xml = reginfo(
        AOR,
        &done.state,
        &[],
        done.subscription.notify_cseq,
        NOW + 10,
    );
    assert!(xml.contains("version=\"0\" state=\"full\""), "{xml}");
    assert!(xml.contains(&format!("<registration aor=\"{AOR}\"")));
    assert!(
        xml.contains("state=\"active\" event=\"registered\" expires=\"290\""),
        "{xml}"
    );
    assert!(xml.contains("<uri>sip:ue@10.0.0.1:5060</uri>"));
    assert!(xml.contains("<gr:pub-gruu uri=\"sip:6505550000@example.com;gr=urn:uuid:1\"/>"));
    assert!(
        xml.contains("&quot;&lt;urn:uuid:1&gt;&quot;"),
        "escaped instance: {xml}"
    );
    let request = notify(
        &done.subscription,
        "sip:127.0.0.1:5060",
        &xml,
        NOW + 10,
        None,
    );
    let msg = Message::parse(request.as_bytes()).expect("the NOTIFY parses");
    assert_eq!(
        msg.request_uri_raw(),
        Some(&b"sip:watcher@10.0.0.9:5060"[..])
    );
    assert_eq!(msg.body(), xml.as_bytes());
    let line = |name: &str| {
        request
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(line("Subscription-State"), "active;expires=590");
    assert_eq!(line("From"), format!("<{AOR}>;tag=scscf-1"));
    assert_eq!(line("To"), "<sip:watcher@example.com>;tag=w1");
    assert_eq!(line("Route"), "<sip:pcscf.example.com;lr>");
    assert_eq!(line("CSeq"), "1 NOTIFY");
    let last = notify(
        &done.subscription,
        "sip:s",
        &xml,
        NOW,
        Some(EndReason::Deactivated),
    );
    assert!(last.contains("Subscription-State: terminated;reason=deactivated\r\n"));
}

#[test]
fn registration_changes_count_notifies_and_the_last_binding_ends_subscriptions() {
    let subscribed = run(&registered(), &subscribe_msg(None, Some(600), ""))
        .expect("ok")
        .state;
    let dereg =
        b"REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK-d\r\n\
        From: <sip:6505550000@example.com>;tag=a\r\nTo: <sip:6505550000@example.com>\r\n\
        Call-ID: r1\r\nCSeq: 2 REGISTER\r\n\
        Contact: <sip:ue@10.0.0.1:5060>;+sip.instance=\"<urn:uuid:1>\";reg-id=1\r\n\
        Expires: 0\r\nContent-Length: 0\r\n\r\n";
    let msg = Message::parse(dereg).expect("parses");
    let r = Register::from_message(&msg, "6505550000@example.com").expect("reads");
    let applied =
        registrar::apply(&subscribed, &r, NOW + 5, RegisterPolicy::default()).expect("ok");
    assert!(applied.deregistered);
    assert_eq!(applied.ended_bindings.len(), 1);
    assert_eq!(applied.ended_bindings[0].event, "unregistered");
    assert_eq!(applied.ended.len(), 1);
    assert_eq!(applied.ended[0].1, EndReason::Deactivated);
    assert_eq!(applied.ended[0].0.notify_cseq, 2);
    assert!(applied.state.is_empty(), "nothing left to keep");
}

#[test]
fn the_sweep_expires_bindings_then_subscriptions() {
    let mut state = run(&registered(), &subscribe_msg(None, Some(100), ""))
        .expect("ok")
        .state;
    assert_eq!(state.next_expiry(), Some(NOW + 100));
    let swept = state.sweep(NOW + 100);
    assert_eq!(swept.ended.len(), 1);
    assert_eq!(swept.ended[0].1, EndReason::Timeout);
    assert!(!swept.deregistered);
    let mut state = run(&registered(), &subscribe_msg(None, Some(600), ""))
        .expect("ok")
        .state;
    let swept = state.sweep(NOW + 300);
    assert!(swept.deregistered);
    assert_eq!(swept.ended_bindings[0].event, "expired");
    assert_eq!(swept.ended[0].1, EndReason::Deactivated);
    assert!(state.is_empty());
}
