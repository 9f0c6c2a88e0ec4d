//! A harness for driving one [`ProxyCore`] through SIP flows: a simulated clock, SIP
//! messages written as text, and transmitted datagrams parsed back with `sip::Message`.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use proxy::{ProxyConfig, ProxyCore, Socket};
use sip::{HeaderName, Message};
use txn::TimerConfig;

/// The shared listening address (and the Record-Route URI's host and port).
pub const LISTEN: &str = "127.0.0.1:5060";
/// The core's own address: listening port + 1 + core.
pub const OWN: &str = "127.0.0.1:5061";
/// The UAC, upstream.
pub const UAC: &str = "127.0.0.1:5000";
/// The UAS, downstream.
pub const UAS: &str = "127.0.0.1:6000";
/// What the proxy puts in Record-Route.
pub const RECORD_ROUTE: &str = "<sip:127.0.0.1:5060;lr>";
/// The Request-URI of calls to bob.
pub const BOB: &str = "sip:bob@127.0.0.1:6000";

/// Timer C: a little over three minutes (RFC 3261 §16.6 step 11).
pub const TIMER_C: Duration = Duration::from_secs(181);

pub fn addr(s: &str) -> SocketAddr {
    s.parse().expect("socket address")
}

/// One datagram the proxy sent, copied out of the core.
#[derive(Debug, Clone)]
pub struct Sent {
    pub protocol: proxy::Protocol,
    pub socket: Socket,
    pub to: SocketAddr,
    pub bytes: Vec<u8>,
    /// Whether the core tied the datagram to a client transaction (for send errors).
    pub client: bool,
    /// That transaction, to report a send error for it.
    pub client_id: Option<proxy::ForkId>,
    /// Time since the harness started when it was sent.
    pub at: Duration,
}

impl Sent {
    /// The datagram parsed; every datagram the proxy sends must parse and validate.
    pub fn msg(&self) -> Message<'_> {
        let msg = Message::parse(&self.bytes)
            .unwrap_or_else(|e| panic!("proxy sent unparsable bytes ({e:?}):\n{}", self.text()));
        if let Err(e) = msg.validate() {
            panic!("proxy sent an invalid message ({e:?}):\n{}", self.text());
        }
        msg
    }

    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.bytes).expect("ASCII")
    }

    /// The status code of a response, `None` for a request.
    pub fn status(&self) -> Option<u16> {
        self.msg().status()
    }

    /// The method of a request, `None` for a response.
    pub fn method(&self) -> Option<String> {
        self.msg()
            .method()
            .map(|m| String::from_utf8_lossy(m.as_bytes()).into_owned())
    }

    pub fn request_uri(&self) -> String {
        lossy(self.msg().request_uri_raw().expect("a request"))
    }

    /// The values of every header line with this name (case-insensitive), in order.
    pub fn headers(&self, name: &str) -> Vec<String> {
        header_values(&self.msg(), name)
    }

    /// The value of the single header line with this name.
    pub fn header(&self, name: &str) -> String {
        let values = self.headers(name);
        assert_eq!(values.len(), 1, "exactly one {name} in\n{}", self.text());
        values.into_iter().next().expect("one")
    }

    pub fn has_header(&self, name: &str) -> bool {
        !self.headers(name).is_empty()
    }

    /// Every Via value, top first, lists split.
    pub fn vias(&self) -> Vec<String> {
        let msg = self.msg();
        msg.values(HeaderName::Via).map(lossy).collect()
    }

    /// Every Route value, top first, lists split.
    pub fn routes(&self) -> Vec<String> {
        let msg = self.msg();
        msg.values(HeaderName::Route).map(lossy).collect()
    }

    pub fn top_via_branch(&self) -> String {
        let msg = self.msg();
        let via = msg.top_via().expect("a Via");
        lossy(via.branch().expect("a branch"))
    }

    pub fn top_via_sent_by(&self) -> String {
        let msg = self.msg();
        let via = msg.top_via().expect("a Via");
        match via.port() {
            Some(port) => format!("{}:{port}", lossy(via.host_raw())),
            None => lossy(via.host_raw()),
        }
    }

    pub fn max_forwards(&self) -> u8 {
        self.msg().max_forwards().expect("valid").expect("present")
    }

    pub fn to_tag(&self) -> Option<String> {
        self.msg().to().expect("To").tag().map(lossy)
    }

    pub fn cseq(&self) -> String {
        self.header("CSeq")
    }

    pub fn call_id(&self) -> String {
        lossy(self.msg().call_id().expect("Call-ID"))
    }
}

pub fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

pub fn header_values(msg: &Message<'_>, name: &str) -> Vec<String> {
    msg.headers()
        .filter(|h| h.raw_name().eq_ignore_ascii_case(name.as_bytes()))
        .map(|h| lossy(h.value()))
        .collect()
}

/// A proxy core on a simulated clock.
pub struct Harness {
    pub core: ProxyCore,
    pub start: Instant,
    pub now: Instant,
}

impl Default for Harness {
    fn default() -> Self {
        Self::new()
    }
}

impl Harness {
    pub fn new() -> Self {
        Self::with_max_transactions(1024)
    }

    pub fn with_max_transactions(max_transactions: usize) -> Self {
        Self::with_config(max_transactions, proxy::OverloadConfig::default())
    }

    pub fn with_config(max_transactions: usize, overload: proxy::OverloadConfig) -> Self {
        Self::with_router(max_transactions, overload, Box::new(proxy::FollowRoute))
    }

    pub fn with_router(
        max_transactions: usize,
        overload: proxy::OverloadConfig,
        router: Box<dyn proxy::Router>,
    ) -> Self {
        let start = Instant::now();
        let config = ProxyConfig {
            listen: addr(LISTEN),
            core: 0,
            cores: 1,
            max_transactions,
            timers: TimerConfig::default(),
            timer_c: TIMER_C,
            overload,
        };
        assert_eq!(config.own_address(), addr(OWN));
        Self {
            core: ProxyCore::with_router(config, start, router),
            start,
            now: start,
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    fn drain(&mut self) -> Vec<Sent> {
        let at = self.elapsed();
        let sent = self
            .core
            .transmits()
            .map(|(t, bytes)| Sent {
                protocol: t.protocol,
                socket: t.socket,
                to: t.to,
                bytes: bytes.to_vec(),
                client: t.client.is_some(),
                client_id: t.client,
                at,
            })
            .collect();
        self.core.clear_transmits();
        sent
    }

    /// Feeds one datagram from `from` and returns what the proxy sent in reply.
    pub fn send(&mut self, from: &str, bytes: &[u8]) -> Vec<Sent> {
        self.core.on_datagram(self.now, addr(from), bytes);
        self.drain()
    }

    /// Feeds one message that waited `queued` in its socket before the core saw it.
    pub fn send_queued(
        &mut self,
        protocol: proxy::Protocol,
        from: &str,
        bytes: &[u8],
        queued: Duration,
    ) -> Vec<Sent> {
        let received = self.now;
        self.now += queued;
        let now = self.now;
        self.core
            .on_message(now, received, addr(from), protocol, bytes);
        self.drain()
    }

    /// What the core has queued since the last drain (after a direct call on `core`).
    pub fn drain_now(&mut self) -> Vec<Sent> {
        self.drain()
    }

    /// Delivers one message framed out of a TCP connection from `from`.
    pub fn send_tcp(&mut self, from: &str, bytes: &[u8]) -> Vec<Sent> {
        let now = self.now;
        self.core
            .on_message(now, now, addr(from), proxy::Protocol::Tcp, bytes);
        self.drain()
    }

    /// Advances the clock by `by`, running every timer on the way the way an event loop
    /// would (at each [`ProxyCore::next_timer`]), and returns what was sent, in order.
    pub fn advance(&mut self, by: Duration) -> Vec<Sent> {
        let until = self.now + by;
        let mut sent = Vec::new();
        while let Some(at) = self.core.next_timer() {
            if at > until {
                break;
            }
            self.now = self.now.max(at);
            self.core.on_timers(self.now);
            sent.extend(self.drain());
        }
        self.now = until;
        self.core.on_timers(self.now);
        sent.extend(self.drain());
        sent
    }
}

/// A request as a UA would send it; `build` writes the text.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub uri: String,
    /// Via values, top first.
    pub vias: Vec<String>,
    pub max_forwards: Option<u32>,
    pub from: String,
    pub to: String,
    pub call_id: Option<String>,
    pub cseq: u32,
    pub cseq_method: Option<String>,
    pub routes: Vec<String>,
    pub extra: Vec<String>,
}

impl Request {
    /// A request from the UAC (alice at 127.0.0.1:5000) to bob.
    pub fn new(method: &str, uri: &str) -> Self {
        Self {
            method: method.to_owned(),
            uri: uri.to_owned(),
            vias: vec![format!("SIP/2.0/UDP {UAC};branch=z9hG4bK-uac-1;rport")],
            max_forwards: Some(70),
            from: "\"Alice\" <sip:alice@127.0.0.1>;tag=alice-1".to_owned(),
            to: "<sip:bob@127.0.0.1>".to_owned(),
            call_id: Some("call-1@127.0.0.1".to_owned()),
            cseq: 1,
            cseq_method: None,
            routes: Vec::new(),
            extra: vec![format!("Contact: <sip:alice@{UAC}>")],
        }
    }

    pub fn invite() -> Self {
        Self::new("INVITE", BOB)
    }

    pub fn branch(mut self, branch: &str) -> Self {
        self.vias[0] = format!("SIP/2.0/UDP {UAC};branch={branch};rport");
        self
    }

    pub fn call_id(mut self, call_id: &str) -> Self {
        self.call_id = Some(call_id.to_owned());
        self
    }

    pub fn cseq(mut self, cseq: u32) -> Self {
        self.cseq = cseq;
        self
    }

    pub fn in_dialog(mut self, tag: &str) -> Self {
        self.to = format!("<sip:bob@127.0.0.1>;tag={tag}");
        self
    }

    pub fn route(mut self, route: &str) -> Self {
        self.routes.push(route.to_owned());
        self
    }

    pub fn header(mut self, line: &str) -> Self {
        self.extra.push(line.to_owned());
        self
    }

    pub fn build(&self) -> Vec<u8> {
        let mut s = format!("{} {} SIP/2.0\r\n", self.method, self.uri);
        for via in &self.vias {
            s += &format!("Via: {via}\r\n");
        }
        if let Some(mf) = self.max_forwards {
            s += &format!("Max-Forwards: {mf}\r\n");
        }
        for route in &self.routes {
            s += &format!("Route: {route}\r\n");
        }
        s += &format!("From: {}\r\nTo: {}\r\n", self.from, self.to);
        if let Some(call_id) = &self.call_id {
            s += &format!("Call-ID: {call_id}\r\n");
        }
        let cseq_method = self.cseq_method.as_deref().unwrap_or(&self.method);
        s += &format!("CSeq: {} {cseq_method}\r\n", self.cseq);
        for line in &self.extra {
            s += line;
            s += "\r\n";
        }
        s += "Content-Length: 0\r\n\r\n";
        s.into_bytes()
    }
}

/// The response a UA sends to `request` (as received): every Via, From, To (with
/// `to_tag` added if it has none), Call-ID, CSeq and Record-Route copied, then `extra`.
pub fn response_to(request: &[u8], status: u16, to_tag: Option<&str>, extra: &[&str]) -> Vec<u8> {
    let msg = Message::parse(request).expect("request parses");
    assert!(msg.is_request());
    let mut s = format!("SIP/2.0 {status} {}\r\n", reason(status));
    for h in msg.headers() {
        let name = h.name();
        let value = lossy(h.value());
        match name {
            HeaderName::Via
            | HeaderName::From
            | HeaderName::CallId
            | HeaderName::CSeq
            | HeaderName::RecordRoute => {
                s += &format!("{}: {value}\r\n", name.as_str());
            }
            HeaderName::To => {
                s += &format!("To: {value}");
                if let Some(tag) = to_tag
                    && msg.to().expect("To").tag().is_none()
                {
                    s += &format!(";tag={tag}");
                }
                s += "\r\n";
            }
            _ => {}
        }
    }
    for line in extra {
        s += line;
        s += "\r\n";
    }
    s += "Content-Length: 0\r\n\r\n";
    s.into_bytes()
}

fn reason(status: u16) -> &'static str {
    match status {
        100 => "Trying",
        180 => "Ringing",
        183 => "Session Progress",
        200 => "OK",
        486 => "Busy Here",
        487 => "Request Terminated",
        _ => "Whatever",
    }
}

/// Asserts that exactly one datagram was sent and returns it.
#[track_caller]
pub fn one(sent: Vec<Sent>) -> Sent {
    assert_eq!(
        sent.len(),
        1,
        "expected one datagram, got {}:\n{}",
        sent.len(),
        sent.iter()
            .map(Sent::text)
            .collect::<Vec<_>>()
            .join("\n----\n")
    );
    sent.into_iter().next().expect("one")
}

/// Asserts that nothing was sent.
#[track_caller]
pub fn none(sent: &[Sent]) {
    assert!(
        sent.is_empty(),
        "expected nothing sent, got:\n{}",
        sent.iter()
            .map(Sent::text)
            .collect::<Vec<_>>()
            .join("\n----\n")
    );
}

/// Asserts a response from the proxy to the UAC, from the shared socket.
#[track_caller]
pub fn assert_upstream_response(sent: &Sent, status: u16) {
    assert_eq!(sent.status(), Some(status), "{}", sent.text());
    assert_eq!(sent.socket, Socket::Shared);
    assert_eq!(sent.to, addr(UAC));
}

/// Asserts a request from the proxy's own socket to `to`, with our Via on top.
#[track_caller]
pub fn assert_downstream_request(sent: &Sent, method: &str, to: &str) {
    assert_eq!(sent.method().as_deref(), Some(method), "{}", sent.text());
    assert_eq!(sent.socket, Socket::Own);
    assert_eq!(sent.to, addr(to));
    assert_eq!(sent.top_via_sent_by(), OWN);
    assert!(sent.top_via_branch().starts_with("z9hG4bK"));
}
