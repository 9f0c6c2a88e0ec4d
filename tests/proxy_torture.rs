//! RFC 4475 torture messages sent over UDP to a running `whitewater sprout`, each checked
//! against the proxy answer `dataplane/sip/tests/data/rfc4475/expected.tsv` gives it.
//!
//! How the proxy is observed, without sleeping for an answer that may never come: after each
//! message the test sends an OPTIONS addressed to the proxy (a *ping*) from the same socket.
//! One core handles datagrams in arrival order and sends its answers on one socket in order,
//! so when the ping's 200 arrives, whatever the proxy was going to answer to the message has
//! arrived before it; nothing before the ping's 200 means no answer at all. (What the proxy
//! forwards leaves from another socket: the next hop is watched a little longer, [`QUIET`].)
//!
//! Two passes:
//!
//! - **As sent** (`torture_messages_as_sent`): the 50 datagrams unchanged, in table order, to
//!   one proxy, which must still answer an OPTIONS to itself with 200 afterwards. The
//!   messages' next hops are domain names, and the proxy resolves no names (DNS is not done
//!   on the data plane, `dataplane/proxy/README.md`): a request the table says to forward is
//!   answered 503 here, which is what this pass expects of it. Responses the table says to
//!   forward carry a top Via that is not the proxy's, so they are discarded (RFC 3261
//!   §18.1.2) and this pass expects silence. Not sent in this pass: `mpart01`, whose Route
//!   names 127.0.0.1:5080, an address this test does not own.
//! - **Routed** (`torture_messages_routed_to_a_next_hop`): each message to a fresh proxy with
//!   a next hop the test plays. A request gets `Route: <sip:127.0.0.1:HOP;lr>` as its first
//!   header line (the torture text is otherwise untouched); the next hop answers what it
//!   receives with 200, which must come back to the sender without the proxy's Via. A
//!   response gets two Via lines on top, the proxy's own address and then the next hop, so
//!   that the proxy forwards it statelessly (RFC 3261 §16.7 step 3) to the next hop.
//!   The next hop listens on UDP and TCP (the proxy sends a request over about 1300 octets,
//!   `longreq` and `mpart01`, over TCP: RFC 3261 §18.1.1). What was forwarded is compared
//!   line by line with what was sent: the only differences allowed are the proxy's Via on
//!   top, its Record-Route, Max-Forwards one lower (or a new `Max-Forwards: 70`), a
//!   `Content-Length` added where there was none, and for a response the proxy's Via gone.
//!   Not sent in this pass: `bcast`, whose point is that its top Via is not the proxy's
//!   (checked as sent); with the proxy's Via on top, the proxy would send it on to
//!   192.0.2.198.
//!
//! The proxy's counters are checked for each message (parse errors, requests forwarded,
//! responses forwarded statelessly).
//!
//! Where the proxy disagrees with the table, the case is listed in [`KNOWN`] with what it
//! does instead; the test fails if a case disagrees in another way, or if a listed case
//! starts to agree (so that the list is cut when the proxy is fixed).

mod common;

use std::fmt;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{Proxy, metric, metric_sum, scrape_until, start_proxy};

/// Cases where the proxy does not do what `expected.tsv` says, with what it does instead:
/// none today. A case that starts to disagree fails the test until it is fixed or listed
/// here with its reason.
const KNOWN: &[(&str, Outcome)] = &[];

/// How long to wait for something that must come.
const ANSWER: Duration = Duration::from_secs(5);
/// How long a next hop is watched, after the ping's answer, for a forwarded request. The
/// proxy sends what it forwards from its own port, a socket other than the one its answers
/// leave from, so the ping's answer does not order the two; but both go out in the same
/// turn of the core's loop, microseconds apart.
const QUIET: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// The proxy answered the sender with this final status.
    Status(u16),
    /// The proxy forwarded the message to its next hop (and, for a request, relayed the
    /// next hop's 200 back).
    Forward,
    /// Nothing came back and nothing was forwarded.
    Drop,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Status(s) => write!(f, "{s}"),
            Self::Forward => f.write_str("forward"),
            Self::Drop => f.write_str("drop"),
        }
    }
}

struct Case {
    name: String,
    verdict: String,
    expected: Outcome,
    bytes: Vec<u8>,
}

impl Case {
    fn is_response(&self) -> bool {
        self.bytes.starts_with(b"SIP/2.0 ")
    }

    fn is_invite(&self) -> bool {
        self.bytes.starts_with(b"INVITE ")
    }

    /// The table's answer, or another the table's notes allow.
    fn allows(&self, got: Outcome) -> bool {
        got == self.expected
            || matches!(
                (self.name.as_str(), got),
                // "404 also acceptable", "400 also acceptable"
                ("novelsc", Outcome::Status(404)) | ("mismatch02", Outcome::Status(400))
            )
            // "either": a liberal receiver may parse it; rejecting it is fine too.
            || (self.verdict == "either"
                && self.expected == Outcome::Forward
                && got == Outcome::Status(400))
    }
}

fn cases() -> Vec<Case> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("dataplane/sip/tests/data/rfc4475");
    let table = std::fs::read_to_string(root.join("expected.tsv")).expect("expected.tsv");
    let cases: Vec<Case> = table
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|line| {
            let cols: Vec<&str> = line.split('\t').collect();
            let path = root.join(cols[1]).join(format!("{}.dat", cols[0]));
            let expected = match cols[3] {
                "forward" => Outcome::Forward,
                "drop" => Outcome::Drop,
                status => Outcome::Status(status.parse().expect("a status code")),
            };
            Case {
                name: cols[0].to_owned(),
                verdict: cols[2].to_owned(),
                expected,
                bytes: std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
            }
        })
        .collect();
    assert_eq!(cases.len(), 50, "the table lists every torture message");
    cases
}

// ---------------------------------------------------------------------------------------
// Reading SIP, just enough for the checks.

/// The status code of a response.
fn status(msg: &[u8]) -> Option<u16> {
    let code = msg.strip_prefix(b"SIP/2.0 ")?.get(..3)?;
    std::str::from_utf8(code).ok()?.parse().ok()
}

/// The start line and header lines (as sent: a folded header spans several), and the body.
fn split(msg: &[u8]) -> (Vec<&[u8]>, &[u8]) {
    let end = msg
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(msg.len());
    let head = &msg[..end];
    let body = msg.get(end + 4..).unwrap_or_default();
    (split_lines(head), body)
}

fn split_lines(head: &[u8]) -> Vec<&[u8]> {
    let mut lines = Vec::new();
    let mut rest = head;
    while let Some(at) = rest.windows(2).position(|w| w == b"\r\n") {
        lines.push(&rest[..at]);
        rest = &rest[at + 2..];
    }
    lines.push(rest);
    lines
}

/// A header's name, lower-cased, if `line` starts a header (not a continuation).
fn header_name(line: &[u8]) -> Option<String> {
    if line.first().is_some_and(|c| *c == b' ' || *c == b'\t') {
        return None;
    }
    let colon = line.iter().position(|&c| c == b':')?;
    Some(
        String::from_utf8_lossy(&line[..colon])
            .trim()
            .to_ascii_lowercase(),
    )
}

/// The headers of a message, each with its continuation lines, named in lower case with
/// compact forms expanded.
fn headers<'a>(lines: &[&'a [u8]]) -> Vec<(String, Vec<&'a [u8]>)> {
    let mut out: Vec<(String, Vec<&[u8]>)> = Vec::new();
    for line in lines.iter().skip(1) {
        match header_name(line) {
            Some(name) => {
                let name = match name.as_str() {
                    "v" => "via",
                    "f" => "from",
                    "t" => "to",
                    "i" => "call-id",
                    "l" => "content-length",
                    other => other,
                }
                .to_owned();
                out.push((name, vec![line]));
            }
            None => {
                if let Some(last) = out.last_mut() {
                    last.1.push(line);
                }
            }
        }
    }
    out
}

/// The value of a single-line header line, after the colon.
fn value(line: &[u8]) -> &str {
    let colon = line.iter().position(|&c| c == b':').unwrap_or(0);
    std::str::from_utf8(&line[colon + 1..]).unwrap_or("").trim()
}

fn has_to_tag(lines: &[&[u8]]) -> bool {
    headers(lines)
        .iter()
        .filter(|(name, _)| name == "to")
        .flat_map(|(_, lines)| lines.iter())
        .any(|line| {
            let squeezed: String = String::from_utf8_lossy(line)
                .chars()
                .filter(|c| !c.is_whitespace())
                .collect();
            squeezed.to_ascii_lowercase().contains(";tag=")
        })
}

fn text(msg: &[u8]) -> String {
    String::from_utf8_lossy(msg).into_owned()
}

// ---------------------------------------------------------------------------------------
// Talking to the proxy.

fn socket() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").expect("bind")
}

fn recv(socket: &UdpSocket, within: Duration) -> Option<Vec<u8>> {
    recv_from(socket, within).map(|(msg, _)| msg)
}

fn recv_from(socket: &UdpSocket, within: Duration) -> Option<(Vec<u8>, SocketAddr)> {
    use std::io::ErrorKind::{TimedOut, WouldBlock};
    socket.set_read_timeout(Some(within)).expect("timeout");
    let mut buf = vec![0; 65_535];
    match socket.recv_from(&mut buf) {
        Ok((n, from)) => Some((buf[..n].to_vec(), from)),
        Err(e) if matches!(e.kind(), WouldBlock | TimedOut) => None,
        Err(e) => panic!("recv: {e}"),
    }
}

/// `OPTIONS sip:<proxy>` with no Route: the proxy answers it itself.
fn options(proxy: SocketAddr, from: &UdpSocket, id: &str) -> Vec<u8> {
    let local = from.local_addr().expect("addr");
    format!(
        "OPTIONS sip:{proxy} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local};branch=z9hG4bK-{id}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:torture@{local}>;tag={id}\r\n\
         To: <sip:{proxy}>\r\n\
         Call-ID: {id}\r\n\
         CSeq: 1 OPTIONS\r\n\
         Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

/// Sends a ping and returns everything the socket received before the ping's 200.
fn ping(proxy: SocketAddr, socket: &UdpSocket, id: &str) -> Vec<Vec<u8>> {
    socket
        .send_to(&options(proxy, socket, id), proxy)
        .expect("send ping");
    let call_id = format!("\r\nCall-ID: {id}\r\n");
    let deadline = Instant::now() + ANSWER;
    let mut before = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let msg = recv(socket, left.max(Duration::from_millis(1)))
            .unwrap_or_else(|| panic!("the proxy did not answer the OPTIONS {id}"));
        if text(&msg).contains(&call_id) {
            assert_eq!(status(&msg), Some(200), "OPTIONS {id}:\n{}", text(&msg));
            return before;
        }
        before.push(msg);
    }
}

/// The next hop the test plays, on one port for UDP and TCP: the proxy sends a request
/// larger than about 1300 octets over TCP (RFC 3261 §18.1.1).
struct NextHop {
    udp: UdpSocket,
    tcp: TcpListener,
}

/// What reached the next hop, and how to answer it.
enum Arrival {
    Udp { from: SocketAddr },
    Tcp { stream: TcpStream },
}

impl NextHop {
    fn bind() -> Self {
        for _ in 0..100 {
            let udp = socket();
            let port = udp.local_addr().expect("addr").port();
            if let Ok(tcp) = TcpListener::bind(("127.0.0.1", port)) {
                tcp.set_nonblocking(true).expect("nonblocking");
                return Self { udp, tcp };
            }
        }
        panic!("no port free for both UDP and TCP");
    }

    fn addr(&self) -> SocketAddr {
        self.udp.local_addr().expect("addr")
    }

    /// The first message to arrive within `within`, over either transport.
    fn recv(&self, within: Duration) -> Option<(Vec<u8>, Arrival)> {
        let deadline = Instant::now() + within;
        loop {
            if let Some((msg, from)) = recv_from(&self.udp, Duration::from_millis(5)) {
                return Some((msg, Arrival::Udp { from }));
            }
            match self.tcp.accept() {
                Ok((stream, _)) => {
                    let msg = read_framed(&stream);
                    return Some((msg, Arrival::Tcp { stream }));
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("accept: {e}"),
            }
            if Instant::now() >= deadline {
                return None;
            }
        }
    }
}

/// One message from a stream: the head, then Content-Length octets of body.
fn read_framed(mut stream: &TcpStream) -> Vec<u8> {
    stream.set_nonblocking(false).expect("blocking");
    stream.set_read_timeout(Some(ANSWER)).expect("timeout");
    let mut msg = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = msg.windows(4).position(|w| w == b"\r\n\r\n") {
            let (lines, _) = split(&msg);
            let length = headers(&lines)
                .iter()
                .find(|(name, _)| name == "content-length")
                .and_then(|(_, lines)| value(lines[0]).parse::<usize>().ok())
                .expect("a Content-Length on a stream");
            if msg.len() >= end + 4 + length {
                msg.truncate(end + 4 + length);
                return msg;
            }
        }
        let n = stream.read(&mut buf).expect("read the forwarded request");
        assert!(n > 0, "the proxy closed the connection mid-message");
        msg.extend_from_slice(&buf[..n]);
    }
}

fn first_lines(msgs: &[Vec<u8>]) -> String {
    msgs.iter()
        .map(|m| text(split(m).0[0]))
        .collect::<Vec<_>>()
        .join(" | ")
}

// ---------------------------------------------------------------------------------------
// Pass 1: as sent.

/// What the proxy must do with the message as sent (see the module comment).
fn expected_as_sent(case: &Case) -> Outcome {
    match (case.expected, case.is_response()) {
        (Outcome::Forward, false) => Outcome::Status(503),
        (Outcome::Forward, true) => Outcome::Drop,
        (other, _) => other,
    }
}

fn allowed_as_sent(case: &Case, got: Outcome) -> bool {
    match (case.expected, case.is_response()) {
        (Outcome::Forward, false) => {
            got == Outcome::Status(503) || (case.verdict == "either" && got == Outcome::Status(400))
        }
        (Outcome::Forward, true) => got == Outcome::Drop,
        _ => case.allows(got),
    }
}

#[test]
fn torture_messages_as_sent() {
    let proxy = start_proxy();
    let sender = socket();
    ping(proxy.listen, &sender, "ready");
    let mut pings = 1;
    let mut disagreements = Vec::new();
    let mut faults = Vec::new();
    let mut parse_errors = 0;
    for case in cases() {
        if case.name == "mpart01" {
            continue;
        }
        sender.send_to(&case.bytes, proxy.listen).expect("send");
        let answers = ping(proxy.listen, &sender, &format!("after-{}", case.name));
        pings += 1;
        let got = match answers.as_slice() {
            [] => Outcome::Drop,
            [one] => match status(one) {
                Some(s) if s >= 200 => Outcome::Status(s),
                _ => {
                    faults.push(format!("{}: answered {}", case.name, first_lines(&answers)));
                    continue;
                }
            },
            _ => {
                faults.push(format!(
                    "{}: several answers: {}",
                    case.name,
                    first_lines(&answers)
                ));
                continue;
            }
        };
        // Every message refused as malformed is counted, and no other.
        if matches!(got, Outcome::Status(400 | 505))
            || (got == Outcome::Drop && case.verdict != "accept")
        {
            parse_errors += 1;
        }
        if !allowed_as_sent(&case, got) {
            disagreements.push((case.name.clone(), expected_as_sent(&case), got));
        }
    }
    // After all of it, the proxy still answers an OPTIONS addressed to it.
    let last = options(proxy.listen, &sender, "still-there");
    sender.send_to(&last, proxy.listen).expect("send");
    let answer = recv(&sender, ANSWER).expect("the proxy answers OPTIONS after the torture");
    assert_eq!(status(&answer), Some(200), "{}", text(&answer));
    assert!(text(&answer).contains("\r\nAllow: "), "{}", text(&answer));
    pings += 1;
    assert!(faults.is_empty(), "{faults:#?}");
    check_known("as sent", &disagreements);
    // Only the pings were answered 2xx: when all of them show, so does everything else.
    let scraped = scrape_until(proxy.metrics, "every ping answered", |t| {
        metric(t, "ww_sip_responses_out_total{class=\"2xx\"}") >= pings
    });
    assert_eq!(
        metric(&scraped, "ww_sip_responses_out_total{class=\"2xx\"}"),
        pings
    );
    assert_eq!(metric(&scraped, "ww_sip_parse_errors_total"), parse_errors);
    // Nothing was forwarded: every next hop was a name, every response's top Via foreign.
    assert_eq!(
        metric_sum(&scraped, "ww_sip_requests_out_total"),
        0,
        "{scraped}"
    );
    assert_eq!(metric(&scraped, "ww_sip_stateless_responses_total"), 0);
    // The 503s were for the names, not for load.
    assert_eq!(metric(&scraped, "ww_sip_overload_rejections_total"), 0);
    assert_eq!(metric(&scraped, "ww_sip_table_full_total"), 0);
}

/// The disagreements are exactly the [`KNOWN`] ones.
fn check_known(pass: &str, disagreements: &[(String, Outcome, Outcome)]) {
    let unexpected: Vec<String> = disagreements
        .iter()
        .filter(|(name, _, got)| !KNOWN.contains(&(name.as_str(), *got)))
        .map(|(name, want, got)| format!("{name}: expected {want}, got {got}"))
        .collect();
    let fixed: Vec<&str> = KNOWN
        .iter()
        .filter(|(name, got)| !disagreements.iter().any(|(n, _, g)| n == name && g == got))
        .map(|(name, _)| *name)
        .collect();
    assert!(
        unexpected.is_empty() && fixed.is_empty(),
        "{pass}: disagreements with expected.tsv not in KNOWN: {unexpected:#?}\n\
         in KNOWN but no longer disagreeing (remove them): {fixed:?}"
    );
}

// ---------------------------------------------------------------------------------------
// Pass 2: routed to a next hop played by the test.

/// `text` inserted after the start line of `msg`.
fn insert_after_start_line(msg: &[u8], text: &str) -> Vec<u8> {
    let at = msg
        .windows(2)
        .position(|w| w == b"\r\n")
        .expect("a start line")
        + 2;
    [&msg[..at], text.as_bytes(), &msg[at..]].concat()
}

/// The body as the sender framed it: Content-Length octets, or the rest of the datagram.
fn framed_body<'a>(lines: &[&[u8]], body: &'a [u8]) -> Result<&'a [u8], String> {
    let length = headers(lines)
        .iter()
        .find(|(name, _)| name == "content-length")
        .map(|(_, lines)| value(lines[0]).parse::<usize>());
    match length {
        None => Ok(body),
        Some(Ok(n)) if n <= body.len() => Ok(&body[..n]),
        Some(_) => Err("a request with a bad Content-Length was forwarded".into()),
    }
}

/// What the proxy forwarded is what it was sent, plus only the edits RFC 3261 §16.6 makes.
fn check_forwarded_request(
    sent: &[u8],
    forwarded: &[u8],
    transport: &str,
    proxy: &Proxy,
) -> Result<(), String> {
    let (sent_lines, sent_body) = split(sent);
    let (lines, body) = split(forwarded);
    let sent_body = framed_body(&sent_lines, sent_body)?;
    if lines[0] != sent_lines[0] {
        return Err(format!("Request-Line became {:?}", text(lines[0])));
    }
    let our_via = format!("Via: SIP/2.0/{transport} {};branch=z9hG4bK", proxy.own);
    if !lines
        .get(1)
        .is_some_and(|l| l.starts_with(our_via.as_bytes()))
    {
        return Err(format!(
            "top Via is not the proxy's: {:?}",
            lines.get(1).map(|l| text(l))
        ));
    }
    let record_route = format!("Record-Route: <sip:{};lr>", proxy.listen);
    let (ours, rest): (Vec<&[u8]>, Vec<&[u8]>) = lines[2..]
        .iter()
        .partition(|l| **l == record_route.as_bytes());
    let dialog_creating = sent.starts_with(b"INVITE ") && !has_to_tag(&sent_lines);
    if ours.len() > 1 || (dialog_creating && ours.is_empty()) {
        return Err(format!("{} Record-Route of the proxy", ours.len()));
    }
    let sent_headers = &sent_lines[1..];
    if rest.len() < sent_headers.len() {
        return Err(format!(
            "{} header lines lost",
            sent_headers.len() - rest.len()
        ));
    }
    let mut had_max_forwards = false;
    let mut had_length = false;
    for (sent_line, line) in sent_headers.iter().zip(&rest) {
        match header_name(sent_line).as_deref() {
            Some("max-forwards") => {
                had_max_forwards = true;
                let before: u32 = value(sent_line).parse().map_err(|_| "Max-Forwards value")?;
                let after: u32 = value(line)
                    .parse()
                    .map_err(|_| format!("forwarded {:?}", text(line)))?;
                if header_name(line).as_deref() != Some("max-forwards") || after + 1 != before {
                    return Err(format!("{:?} became {:?}", text(sent_line), text(line)));
                }
            }
            name => {
                had_length |= matches!(name, Some("content-length" | "l"));
                if sent_line != line {
                    return Err(format!("{:?} became {:?}", text(sent_line), text(line)));
                }
            }
        }
    }
    let mut added: Vec<String> = rest[sent_headers.len()..].iter().map(|l| text(l)).collect();
    added.sort();
    let mut allowed = Vec::new();
    if !had_length {
        allowed.push(format!("Content-Length: {}", sent_body.len()));
    }
    if !had_max_forwards {
        allowed.push("Max-Forwards: 70".to_owned());
    }
    allowed.sort();
    if !added.iter().all(|a| allowed.contains(a)) {
        return Err(format!("header lines added: {added:?}"));
    }
    if body != sent_body {
        return Err(format!(
            "body of {} octets forwarded as {} octets",
            sent_body.len(),
            body.len()
        ));
    }
    Ok(())
}

/// The next hop's 200: Via, From, To (tagged), Call-ID and CSeq as received.
fn answer(request: &[u8]) -> Vec<u8> {
    let (lines, _) = split(request);
    let mut out = b"SIP/2.0 200 OK\r\n".to_vec();
    let tagged = has_to_tag(&lines);
    for (name, header) in headers(&lines) {
        if !matches!(name.as_str(), "via" | "from" | "to" | "call-id" | "cseq") {
            continue;
        }
        for (i, line) in header.iter().enumerate() {
            out.extend_from_slice(line);
            if name == "to" && !tagged && i + 1 == header.len() {
                out.extend_from_slice(b";tag=next-hop");
            }
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(b"Content-Length: 0\r\n\r\n");
    out
}

/// `msg` without its first header line.
fn without_top_header(msg: &[u8]) -> Vec<u8> {
    let first = msg
        .windows(2)
        .position(|w| w == b"\r\n")
        .expect("start line")
        + 2;
    let second = first
        + msg[first..]
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("line")
        + 2;
    [&msg[..first], &msg[second..]].concat()
}

/// What one routed message did, for the checks against the table and the counters.
struct Routed {
    outcome: Outcome,
    /// 2xx responses the proxy sent besides the pings' (the relayed 200, a forwarded 2xx).
    extra_2xx: u64,
}

fn route_request(
    case: &Case,
    proxy: &Proxy,
    sender: &UdpSocket,
    hop: &NextHop,
) -> Result<Routed, String> {
    let route = format!("Route: <sip:{};lr>\r\n", hop.addr());
    let sent = insert_after_start_line(&case.bytes, &route);
    sender.send_to(&sent, proxy.listen).expect("send");
    let answers = ping(proxy.listen, sender, "after");
    let mut finals = Vec::new();
    for msg in &answers {
        match status(msg) {
            Some(100) if case.is_invite() => {}
            Some(s) if s >= 200 => finals.push(s),
            _ => return Err(format!("answered {}", first_lines(&answers))),
        }
    }
    // A request forwarded over UDP leaves in the turn that handled it, at the latest with
    // the ping's answer; over TCP, once the connection is up.
    let forwarded = hop.recv(QUIET);
    match (finals.as_slice(), forwarded) {
        ([], None) => Ok(Routed {
            outcome: Outcome::Drop,
            extra_2xx: 0,
        }),
        ([status], None) => Ok(Routed {
            outcome: Outcome::Status(*status),
            extra_2xx: 0,
        }),
        ([], Some((request, arrival))) => {
            let transport = match &arrival {
                Arrival::Udp { from } if *from != proxy.own => {
                    return Err(format!(
                        "forwarded from {from}, not the core's {}",
                        proxy.own
                    ));
                }
                Arrival::Udp { .. } => "UDP",
                Arrival::Tcp { .. } => "TCP",
            };
            check_forwarded_request(&sent, &request, transport, proxy)
                .map_err(|e| format!("forwarded over {transport} with a fault: {e}"))?;
            let ok = answer(&request);
            match &arrival {
                Arrival::Udp { from } => {
                    hop.udp.send_to(&ok, from).expect("send 200");
                }
                Arrival::Tcp { stream } => {
                    let mut stream = stream;
                    stream.write_all(&ok).expect("send 200");
                }
            }
            let relayed = recv(sender, ANSWER).ok_or("the next hop's 200 was not relayed")?;
            let want = without_top_header(&ok);
            if relayed != want {
                return Err(format!(
                    "200 relayed as\n{}\ninstead of\n{}",
                    text(&relayed),
                    text(&want)
                ));
            }
            Ok(Routed {
                outcome: Outcome::Forward,
                extra_2xx: 1,
            })
        }
        (finals, forwarded) => Err(format!(
            "answered {finals:?} and forwarded {:?}",
            forwarded.map(|(m, _)| text(split(&m).0[0]))
        )),
    }
}

fn route_response(
    case: &Case,
    proxy: &Proxy,
    sender: &UdpSocket,
    hop: &NextHop,
) -> Result<Routed, String> {
    let hop_addr = hop.addr();
    let ours = format!("Via: SIP/2.0/UDP {};branch=z9hG4bK-torture\r\n", proxy.own);
    let next = format!("Via: SIP/2.0/UDP {hop_addr};branch=z9hG4bK-next-hop\r\n");
    let sent = insert_after_start_line(&case.bytes, &format!("{ours}{next}"));
    sender.send_to(&sent, proxy.listen).expect("send");
    let answers = ping(proxy.listen, sender, "after");
    if !answers.is_empty() {
        return Err(format!(
            "a response was answered: {}",
            first_lines(&answers)
        ));
    }
    // Forwarded from the socket the ping's answer left from, before it: already there.
    match hop.recv(QUIET) {
        None => Ok(Routed {
            outcome: Outcome::Drop,
            extra_2xx: 0,
        }),
        Some((forwarded, arrival)) => {
            let want = without_top_header(&sent);
            if forwarded != want {
                return Err(format!("forwarded as\n{}", text(&forwarded)));
            }
            match arrival {
                Arrival::Udp { from } if from == proxy.listen => {}
                Arrival::Udp { from } => {
                    return Err(format!("forwarded from {from}, not {}", proxy.listen));
                }
                Arrival::Tcp { .. } => return Err("forwarded over TCP to a UDP Via".into()),
            }
            Ok(Routed {
                outcome: Outcome::Forward,
                extra_2xx: u64::from(status(&sent).is_some_and(|s| (200..300).contains(&s))),
            })
        }
    }
}

/// Runs one case against its own proxy and checks the proxy's counters; returns what the
/// proxy did, or what went wrong besides a disagreement with the table.
fn routed(case: &Case, starting: &Mutex<()>) -> Result<Outcome, String> {
    // Ports are probed free, then bound by the proxy: one start at a time.
    let (proxy, sender, hop) = {
        let _one = starting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let proxy = start_proxy();
        let (sender, hop) = (socket(), NextHop::bind());
        ping(proxy.listen, &sender, "ready");
        (proxy, sender, hop)
    };
    let result = if case.is_response() {
        route_response(case, &proxy, &sender, &hop)?
    } else {
        route_request(case, &proxy, &sender, &hop)?
    };
    // The message did not stop the proxy.
    ping(proxy.listen, &sender, "alive");
    let pings = 3;
    let want_2xx = pings + result.extra_2xx;
    let scraped = scrape_until(proxy.metrics, "the pings", |t| {
        metric(t, "ww_sip_responses_out_total{class=\"2xx\"}") >= want_2xx
    });
    let counted = |name| metric(&scraped, name);
    let refused = match result.outcome {
        Outcome::Status(s) => matches!(s, 400 | 505),
        Outcome::Drop => !case.is_response() || case.verdict != "accept",
        Outcome::Forward => false,
    };
    let forwarded_request = result.outcome == Outcome::Forward && !case.is_response();
    let forwarded_response = result.outcome == Outcome::Forward && case.is_response();
    let checks = [
        (
            "2xx responses sent",
            counted("ww_sip_responses_out_total{class=\"2xx\"}") == want_2xx,
        ),
        (
            "parse errors",
            counted("ww_sip_parse_errors_total") == u64::from(refused),
        ),
        (
            "requests forwarded",
            (metric_sum(&scraped, "ww_sip_requests_out_total") > 0) == forwarded_request,
        ),
        (
            "responses forwarded statelessly",
            counted("ww_sip_stateless_responses_total") == u64::from(forwarded_response),
        ),
    ];
    for (what, ok) in checks {
        if !ok {
            return Err(format!(
                "{what} miscounted for {}:\n{scraped}",
                result.outcome
            ));
        }
    }
    Ok(result.outcome)
}

#[test]
fn torture_messages_routed_to_a_next_hop() {
    let cases: Vec<Case> = cases().into_iter().filter(|c| c.name != "bcast").collect();
    let next = AtomicUsize::new(0);
    let starting = Mutex::new(());
    let results = Mutex::new(Vec::new());
    // Each case has its own proxy (so that no two messages share a transaction: several
    // reuse the same branch and sent-by), a few at a time.
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(case) = cases.get(index) else { break };
                    let result = routed(case, &starting);
                    results.lock().expect("lock").push((index, result));
                }
            });
        }
    });
    let mut results = results.into_inner().expect("lock");
    results.sort_by_key(|(index, _)| *index);
    assert_eq!(results.len(), cases.len());
    let mut faults = Vec::new();
    let mut disagreements = Vec::new();
    for (index, result) in results {
        let case = &cases[index];
        match result {
            Err(fault) => faults.push(format!("{}: {fault}", case.name)),
            Ok(got) if !case.allows(got) => {
                disagreements.push((case.name.clone(), case.expected, got));
            }
            Ok(_) => {}
        }
    }
    assert!(faults.is_empty(), "{}", faults.join("\n"));
    check_known("routed", &disagreements);
}
