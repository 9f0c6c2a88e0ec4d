//! Reg-event subscriptions (RFC 3680) at the S-CSCF of `whitewater all-in-one`: a watcher
//! subscribes to a UE's registration, gets a full-state NOTIFY at once, another on every
//! change, and a terminated one when the registration or the subscription ends.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use common::ue::{ALICE, DOMAIN, Ue};
use common::{DEMO_PASSWORD, start_all_in_one};
use sip::Message;

/// A watcher: subscribes, receives NOTIFYs and answers them 200.
struct Watcher {
    socket: UdpSocket,
    server: SocketAddr,
    cseq: u32,
}

/// A NOTIFY as received.
struct Notify(Vec<u8>);

impl Notify {
    fn header(&self, name: &str) -> String {
        let msg = Message::parse(&self.0).expect("NOTIFY parses");
        msg.headers()
            .find(|h| h.raw_name().eq_ignore_ascii_case(name.as_bytes()))
            .map(|h| String::from_utf8_lossy(h.value()).into_owned())
            .unwrap_or_default()
    }
    fn body(&self) -> String {
        let msg = Message::parse(&self.0).expect("NOTIFY parses");
        String::from_utf8_lossy(msg.body()).into_owned()
    }
}

impl Watcher {
    fn new(server: SocketAddr) -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        Self {
            socket,
            server,
            cseq: 0,
        }
    }

    fn me(&self) -> SocketAddr {
        self.socket.local_addr().expect("addr")
    }

    /// Sends a SUBSCRIBE (`to_tag` for a refresh) and returns its final answer.
    fn subscribe(&mut self, to_tag: Option<&str>, expires: u32) -> Vec<u8> {
        self.cseq += 1;
        let me = self.me();
        let to = match to_tag {
            Some(tag) => format!("<sip:{ALICE}@{DOMAIN}>;tag={tag}"),
            None => format!("<sip:{ALICE}@{DOMAIN}>"),
        };
        let uri = match to_tag {
            Some(_) => format!("sip:{}", self.server),
            None => format!("sip:{ALICE}@{DOMAIN}"),
        };
        let text = format!(
            "SUBSCRIBE {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-w{};rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:watcher@{DOMAIN}>;tag=w1\r\nTo: {to}\r\n\
             Call-ID: watch-1\r\nCSeq: {} SUBSCRIBE\r\nContact: <sip:watcher@{me}>\r\n\
             Event: reg\r\nAccept: application/reginfo+xml\r\nExpires: {expires}\r\n\
             Content-Length: 0\r\n\r\n",
            self.cseq, self.cseq
        );
        self.socket
            .send_to(text.as_bytes(), self.server)
            .expect("send");
        loop {
            let bytes = self.receive();
            let msg = Message::parse(&bytes).expect("parses");
            if msg.status().is_some_and(|s| s >= 200) {
                return bytes;
            }
        }
    }

    fn receive(&self) -> Vec<u8> {
        let mut buf = vec![0u8; 65_536];
        let (n, _) = self
            .socket
            .recv_from(&mut buf)
            .expect("a message within 5 s");
        buf.truncate(n);
        buf
    }

    /// Waits for the next NOTIFY (skipping anything else) and answers it 200.
    fn notify(&self) -> Notify {
        loop {
            let bytes = self.receive();
            let msg = Message::parse(&bytes).expect("parses");
            if msg.method().is_some_and(|m| m.as_bytes() == b"NOTIFY") {
                // The answer goes where the NOTIFY's Via says (the S-CSCF core's own port).
                let to = via_sent_by(&msg).unwrap_or(self.server);
                self.socket.send_to(&ok_for(&msg), to).expect("answer");
                return Notify(bytes);
            }
        }
    }
}

fn via_sent_by(msg: &Message<'_>) -> Option<SocketAddr> {
    let via = msg.top_via().ok()?;
    let host = String::from_utf8_lossy(via.host_raw()).into_owned();
    format!("{host}:{}", via.port()?).parse().ok()
}

fn ok_for(request: &Message<'_>) -> Vec<u8> {
    let mut s = String::from("SIP/2.0 200 OK\r\n");
    for h in request.headers() {
        let name = String::from_utf8_lossy(h.raw_name()).to_ascii_lowercase();
        if ["via", "from", "to", "call-id", "cseq"].contains(&name.as_str()) {
            s += &format!(
                "{}: {}\r\n",
                String::from_utf8_lossy(h.raw_name()),
                String::from_utf8_lossy(h.value())
            );
        }
    }
    s += "Content-Length: 0\r\n\r\n";
    s.into_bytes()
}

fn status_and_tag(answer: &[u8]) -> (u16, String) {
    let msg = Message::parse(answer).expect("parses");
    let tag = msg
        .to()
        .ok()
        .and_then(|to| to.tag())
        .map(|t| String::from_utf8_lossy(t).into_owned())
        .unwrap_or_default();
    (msg.status().unwrap_or(0), tag)
}

#[test]
fn a_watcher_hears_of_every_registration_change_and_the_end() {
    let aio = start_all_in_one(2, &[]);
    let mut alice = Ue::new(aio.listen, ALICE);
    let first = format!("Contact: {}", alice.contact());
    assert_eq!(
        alice
            .register_with(DEMO_PASSWORD, &[first, "Expires: 300".into()])
            .status(),
        200
    );
    let mut watcher = Watcher::new(aio.listen);
    let (status, tag) = status_and_tag(&watcher.subscribe(None, 600));
    assert_eq!(status, 200);
    assert!(!tag.is_empty(), "our tag on the 200");
    let n = watcher.notify();
    assert_eq!(n.header("Event"), "reg");
    assert_eq!(n.header("Subscription-State"), "active;expires=600");
    assert_eq!(n.header("Content-Type"), "application/reginfo+xml");
    assert_eq!(n.header("CSeq"), "1 NOTIFY");
    assert!(n.header("From").ends_with(&format!(";tag={tag}")));
    let body = n.body();
    assert!(
        body.contains("state=\"full\"") && body.contains("version=\"0\""),
        "{body}"
    );
    assert!(body.contains(&format!(
        "<uri>sip:{ALICE}@{}</uri>",
        alice.socket.local_addr().expect("addr")
    )));

    // A second contact: a NOTIFY with both.
    let second = alice.register_with(
        DEMO_PASSWORD,
        &[
            "Contact: <sip:other@10.0.0.2:5060>".into(),
            "Expires: 300".into(),
        ],
    );
    assert_eq!(second.status(), 200);
    let n = watcher.notify();
    assert_eq!(n.header("CSeq"), "2 NOTIFY");
    assert_eq!(
        n.body()
            .matches("state=\"active\" event=\"registered\"")
            .count(),
        2
    );

    // Everything removed: the last NOTIFY says so, with the contacts terminated.
    let gone = alice.register_with(DEMO_PASSWORD, &["Contact: *".into(), "Expires: 0".into()]);
    assert_eq!(gone.status(), 200);
    let n = watcher.notify();
    assert_eq!(
        n.header("Subscription-State"),
        "terminated;reason=deactivated"
    );
    let body = n.body();
    assert_eq!(
        body.matches("state=\"terminated\" event=\"unregistered\"")
            .count(),
        2,
        "{body}"
    );
    assert!(body.contains("<registration aor=\"sip:6505550000@example.com\""));
}

#[test]
fn a_subscription_can_be_refreshed_and_ended_and_it_expires_on_its_own() {
    let aio = start_all_in_one(2, &[]);
    let mut alice = Ue::new(aio.listen, ALICE);
    let contact = format!("Contact: {}", alice.contact());
    assert_eq!(
        alice
            .register_with(DEMO_PASSWORD, &[contact, "Expires: 300".into()])
            .status(),
        200
    );
    let mut watcher = Watcher::new(aio.listen);
    let (_, tag) = status_and_tag(&watcher.subscribe(None, 600));
    watcher.notify();
    let (status, same) = status_and_tag(&watcher.subscribe(Some(&tag), 1200));
    assert_eq!((status, same.as_str()), (200, tag.as_str()));
    assert_eq!(
        watcher.notify().header("Subscription-State"),
        "active;expires=1200"
    );
    let (status, _) = status_and_tag(&watcher.subscribe(Some(&tag), 0));
    assert_eq!(status, 200);
    assert_eq!(
        watcher.notify().header("Subscription-State"),
        "terminated;reason=timeout"
    );
    let (status, _) = status_and_tag(&watcher.subscribe(Some(&tag), 600));
    assert_eq!(status, 481, "ended");

    // A short subscription ends by itself.
    let mut short = Watcher::new(aio.listen);
    let (status, _) = status_and_tag(&short.subscribe(None, 2));
    assert_eq!(status, 200);
    assert_eq!(
        short.notify().header("Subscription-State"),
        "active;expires=2"
    );
    let last = short.notify();
    assert_eq!(
        last.header("Subscription-State"),
        "terminated;reason=timeout"
    );
}

#[test]
fn an_aor_that_is_not_registered_cannot_be_watched() {
    let aio = start_all_in_one(2, &[]);
    let mut watcher = Watcher::new(aio.listen);
    let (status, _) = status_and_tag(&watcher.subscribe(None, 600));
    assert_eq!(status, 403);
}
