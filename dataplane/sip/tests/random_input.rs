//! A bounded robustness run in the normal suite: random bytes, SIP-shaped soup and mutations
//! of realistic messages go through every entry point. Nothing may panic; the deframer must
//! stay inside the buffer it is given and under its limit; `inspect` must agree with the
//! parser and never answer a response; and what a proxy builds from a valid request must
//! itself be valid. The fuzz targets in `fuzz/` pursue the same properties for longer.

use std::path::Path;

use sip::{
    DEFAULT_MAX_MESSAGE, Deframer, Editor, Frame, Framing, HeaderName, Message, ResponseBuilder,
    Uri, Verdict, ViaSpec,
};

/// xorshift64*: no dependency, and a failure reproduces from the seed in the test.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }

    /// One entry of a `|`-separated list.
    fn piece(&mut self, list: &'static str) -> &'static [u8] {
        let n = self.below(list.split('|').count());
        list.split('|').nth(n).unwrap_or_default().as_bytes()
    }
}

const INVITE: &[u8] = b"INVITE sip:bob@[2001:db8::10]:5060;transport=udp SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK74bf9;rport,\r\n SIP/2.0/TCP [2001:db8::1];branch=z9hG4bKx\r\n\
Max-Forwards: 70\r\n\
Route: <sip:p1.example.com;lr>, \"Edge\" <sip:p2.example.com;lr>\r\n\
f: \"Alice \\\"A\\\"\" <sip:alice@example.com>;tag=9fxced76sl\r\n\
t: Bob <sip:bob@example.com>\r\n\
i: 3848276298220188511@192.0.2.1\r\n\
CSeq: 1 INVITE\r\n\
m: <sip:alice@192.0.2.1;ob>;+sip.instance=\"<urn:uuid:1>\";reg-id=1;q=0.5;expires=60\r\n\
Proxy-Require: sec-agree\r\n\
X-Opaque: <odd>, \"stuff\";;\r\n\
c: application/sdp\r\n\
l: 31\r\n\
\r\n\
v=0\r\nc=IN IP6 2001:db8::1\r\nt=0 0\r\n";

const REGISTER: &[u8] = b"REGISTER sip:example.com SIP/2.0\r\n\
v: SIP/2.0/TLS client.example.com:5061;branch=z9hG4bKnashds7;received=[2001:db8::9]\r\n\
Max-Forwards: 70\r\n\
From: <sip:alice@example.com>;tag=456248\r\n\
To: <sip:alice@example.com>\r\n\
Call-ID: 843817637684230@998sdasdh09\r\n\
CSeq: 1826 REGISTER\r\n\
Contact: *\r\n\
Expires: 0\r\n\
Path: <sip:pcscf.example.net;lr>\r\n\
Supported: path, outbound\r\n\
Authorization: Digest username=\"alice\", realm=\"example.com\", nonce=\"abc\", \
uri=\"sip:example.com\", response=\"0123\", nc=00000001, qop=auth\r\n\
P-Charging-Vector: icid-value=\"AyretyU0dm\";orig-ioi=home1.net\r\n\
Content-Length: 0\r\n\
\r\n";

const NOTIFY: &[u8] = b"NOTIFY sip:alice@192.0.2.1:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP server.example.com;branch=z9hG4bKnotify\r\n\
Max-Forwards: 1\r\n\
From: <sip:reg@example.com>;tag=n1\r\n\
To: <sip:alice@example.com>;tag=a1\r\n\
Call-ID: sub-1@example.com\r\n\
CSeq: 7 NOTIFY\r\n\
Event: reg;id=7\r\n\
Subscription-State: active;expires=3600\r\n\
Record-Route: <sip:rr1.example.com;lr>\r\n\
Content-Type: application/reginfo+xml\r\n\
Content-Length: 10\r\n\
\r\n\
<reginfo/>";

const OK: &[u8] = b"SIP/2.0 200 OK\r\n\
Via: SIP/2.0/UDP proxy.example.com;branch=z9hG4bKp1;received=192.0.2.9, SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK74bf9\r\n\
Record-Route: <sip:p1.example.com;lr>\r\n\
From: <sip:alice@example.com>;tag=9fxced76sl\r\n\
To: <sip:bob@example.com>;tag=8321234356\r\n\
Call-ID: 3848276298220188511@192.0.2.1\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:bob@192.0.2.4>\r\n\
WWW-Authenticate: Digest realm=\"example.com\", nonce=\"x\", stale=FALSE\r\n\
Content-Length: 4\r\n\
\r\n\
body";

fn seeds() -> Vec<Vec<u8>> {
    let mut seeds: Vec<Vec<u8>> = [INVITE, REGISTER, NOTIFY, OK]
        .iter()
        .map(|s| s.to_vec())
        .collect();
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    seeds.push(std::fs::read(data.join("invite-950.sip")).expect("invite-950.sip"));
    seeds
}

/// The RFC 4475 messages: a corpus of odd but deliberate constructs to mutate further.
fn torture_corpus() -> Vec<Vec<u8>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/rfc4475");
    let mut corpus = Vec::new();
    for dir in ["valid", "invalid"] {
        let mut paths: Vec<_> = std::fs::read_dir(root.join(dir))
            .expect("corpus directory")
            .map(|e| e.expect("entry").path())
            .collect();
        paths.sort();
        corpus.extend(paths.iter().map(|p| std::fs::read(p).expect("corpus file")));
    }
    corpus
}

// The lists below are `|`-separated to keep them compact; no entry contains a `|`.

/// The bytes that delimit SIP's grammar, which mutations insert to break it.
const DELIMITERS: &str = "\r|\n|\r\n|\r\n |\"|<|>|\0|;|,|:|\\|[|]|%| |\t|\r\n\r\n";

/// Pieces of SIP from which soup is assembled: a start line, header lines built from a name
/// and value fragments, a blank line and a short body. Half the time the mandatory headers
/// come first, so that some soup validates and the proxy paths run on it.
const START_LINES: &str = "INVITE sip:bob@example.com SIP/2.0\r\n|\
INVITE sip:[2001:db8::1]:5060;lr SIP/2.0\r\n|INVITE tel:+1-201-555-0123 SIP/2.0\r\n|\
INVITE sip:a@b SIP/2.1\r\n|SIP/2.0 180 Ringing\r\n|SIP/2.0 999 Bad\r\n|\
\r\nINVITE sip:bob@example.com SIP/2.0\r\n";

const MANDATORY: &str = "Via: SIP/2.0/UDP h.example.com;branch=z9hG4bK1\r\n\
From: <sip:a@example.com>;tag=1\r\nTo: <sip:b@example.com>\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\n";

const NAMES: &str = "Via: |v:|From: |To:|Call-ID: |CSeq: |Max-Forwards: |Content-Length: |l:|\
Route: |Record-Route: |Contact: |m: |Authorization: |Proxy-Require: |Expires: |Event: |\
P-Served-User: |P-Charging-Vector: |Content-Type: |X-Extension: | |Bad Name: ";

const VALUES: &str = "SIP/2.0/UDP 192.0.2.1:5060|;branch=z9hG4bK2|;received=[2001:db8::2]|\
;rport|<sip:p.example.com;lr>|sip:x@[2001:db8::1]:5060|\"Disp \\\"q\\\"\" |<tel:+1>|;tag=2|, |,|;|=|\
0|70|4294967296|*|Digest username=\"u\", nonce=\"\"|;expires=60|;q=0.5|reg;id=1|icid-value=1|\
application/sdp|1 INVITE|\r\n |<|>|\"|%41|\t|\0|[|]";

fn soup(rng: &mut Rng) -> Vec<u8> {
    let mut out = rng.piece(START_LINES).to_vec();
    if rng.below(2) == 0 {
        out.extend_from_slice(MANDATORY.as_bytes());
    }
    for _ in 0..rng.below(10) {
        out.extend_from_slice(rng.piece(NAMES));
        for _ in 0..=rng.below(5) {
            out.extend_from_slice(rng.piece(VALUES));
        }
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    let body = rng.below(8);
    out.extend((0..body).map(|_| rng.next() as u8));
    out
}

/// One to eight edits of the kinds that break framing and grammar: byte flips, inserted
/// delimiters, deletions, duplicated lines and truncation.
fn mutate(seed: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut out = seed.to_vec();
    for _ in 0..=rng.below(8) {
        let at = rng.below(out.len() + 1);
        match rng.below(6) {
            0 if at < out.len() => out[at] ^= 1 << rng.below(8),
            1 => {
                let bytes = rng.piece(DELIMITERS);
                out.splice(at..at, bytes.iter().copied());
            }
            2 if at < out.len() => {
                let end = (at + 1 + rng.below(16)).min(out.len());
                out.drain(at..end);
            }
            3 => {
                let start = out[..at]
                    .iter()
                    .rposition(|&c| c == b'\n')
                    .map_or(0, |i| i + 1);
                let end = out[at..]
                    .iter()
                    .position(|&c| c == b'\n')
                    .map_or(out.len(), |i| at + i + 1);
                let line = out[start..end].to_vec();
                out.splice(end..end, line);
            }
            4 => out.truncate(at),
            _ => out.insert(at.min(out.len()), rng.next() as u8),
        }
    }
    out
}

/// True when the sender meant a response: after any CRs and LFs, a status line.
fn looks_like_response(input: &[u8]) -> bool {
    input
        .iter()
        .position(|&c| c != b'\r' && c != b'\n')
        .and_then(|i| input.get(i..i + 4))
        .is_some_and(|p| p.eq_ignore_ascii_case(b"SIP/"))
}

fn check(input: &[u8], rng: &mut Rng) {
    let datagram = Message::parse(input);
    let valid = datagram.as_ref().is_ok_and(|m| m.validate().is_ok());
    match sip::inspect(input) {
        Verdict::Request(method) => {
            assert!(valid);
            assert_eq!(
                datagram.as_ref().ok().and_then(Message::method),
                Some(method)
            );
        }
        Verdict::Response(code) => {
            assert!(valid);
            assert_eq!(datagram.as_ref().ok().and_then(Message::status), Some(code));
        }
        Verdict::Reject { status, reason } => {
            assert!(!valid, "rejected ({reason}) a message that validates");
            let expected = (!looks_like_response(input)).then_some(reason.status());
            assert_eq!(status, expected, "responses are dropped, requests answered");
        }
    }
    if sip::is_initial_request(input) {
        // Overload control drops what the peek calls initial unparsed: where the parser
        // can read the message, it must agree (never an ACK, CANCEL, OPTIONS, response or
        // a request with a To tag).
        if let Ok(msg) = &datagram {
            let method = msg.method();
            assert!(
                method.is_some_and(|m| !matches!(
                    m,
                    sip::Method::Ack | sip::Method::Cancel | sip::Method::Options
                )),
                "peeked initial: {method:?}"
            );
            assert!(
                msg.to().map_or(true, |to| to.tag().is_none()),
                "peeked initial with a To tag"
            );
        }
    }
    if let Ok(msg) = &datagram {
        exercise(msg, valid);
    }
    if let Ok(msg) = Message::parse_framed(input, Framing::Stream) {
        let valid = msg.validate().is_ok();
        exercise(&msg, valid);
    }
    deframe(input, rng);
}

fn reflexive(uri: &Uri<'_>) {
    assert!(uri.equivalent(uri), "{uri} is not equivalent to itself");
    if let Some(host) = uri.host() {
        assert!(host.equivalent(&host));
    }
}

const PROXY_VIA: ViaSpec<'static> = ViaSpec {
    transport: b"UDP",
    host: b"[2001:db8::99]",
    port: Some(5060),
    branch: b"z9hG4bKrandom",
    rport: true,
};

/// Every typed accessor, every edit, and a response; asserting only what must hold for any
/// input, plus validity of what is built from a message that validated.
fn exercise(msg: &Message<'_>, valid: bool) {
    let _ = msg.proxy_precheck(&[b"path"]);
    let _ = msg.unsupported_proxy_requires(&[]).count();
    let _ = (msg.call_id(), msg.cseq(), msg.max_forwards(), msg.expires());
    let _ = (msg.min_expires(), msg.content_type(), msg.event());
    let _ = (msg.subscription_state(), msg.p_access_network_info());
    let _ = (msg.p_charging_vector(), msg.p_charging_function_addresses());
    let _ = (msg.p_served_user(), msg.p_visited_network_ids().count());
    let _ = (
        msg.supports(b"100rel"),
        msg.option_tags(HeaderName::Require).count(),
    );
    for h in msg.headers() {
        let _ = (h.raw_name(), msg.values(h.name()).count());
    }
    if let Some(Ok(uri)) = msg.request_uri() {
        reflexive(&uri);
        let _ = (
            uri.user(),
            uri.password(),
            uri.port(),
            uri.params().iter().count(),
        );
    }
    for via in msg.vias().flatten() {
        let _ = (
            via.branch(),
            via.received(),
            via.rport(),
            via.maddr(),
            via.port(),
        );
        let _ = (via.has_rfc3261_branch(), via.params().iter().count());
        assert!(via.host().equivalent(&via.host()));
    }
    for contact in msg.contacts().flatten() {
        let _ = (
            contact.q(),
            contact.expires(),
            contact.instance(),
            contact.reg_id(),
        );
        let _ = contact.pub_gruu();
        if let Some(addr) = contact.address() {
            reflexive(addr.uri());
        }
    }
    let addresses = [msg.from(), msg.to()].into_iter().chain(msg.routes());
    let addresses = addresses.chain(msg.record_routes()).chain(msg.paths());
    let addresses = addresses
        .chain(msg.service_routes())
        .chain(msg.p_asserted_identities());
    for addr in addresses.chain(msg.p_associated_uris()).flatten() {
        let _ = (
            addr.display_name(),
            addr.tag(),
            addr.params().iter().count(),
        );
        reflexive(addr.uri());
    }
    for name in [
        HeaderName::Authorization,
        HeaderName::ProxyAuthorization,
        HeaderName::WwwAuthenticate,
        HeaderName::ProxyAuthenticate,
    ] {
        for auth in msg.auth(name).flatten() {
            let _ = (
                auth.is_digest(),
                auth.username(),
                auth.realm(),
                auth.nonce(),
            );
            let _ = (
                auth.response(),
                auth.digest_uri(),
                auth.algorithm(),
                auth.qop(),
            );
            let _ = (
                auth.nonce_count(),
                auth.cnonce(),
                auth.opaque(),
                auth.auts(),
            );
            let _ = auth.stale();
        }
    }

    let mut out = Vec::new();
    Editor::new(msg)
        .write(&mut out)
        .expect("an unedited copy always writes");
    let copy = Message::parse_framed(&out, Framing::Stream).expect("the copy parses");
    assert_eq!(
        copy.validate().is_ok(),
        valid,
        "validity changed in a plain copy"
    );

    if msg.is_request() {
        forward(msg, valid);
        let mut out = Vec::new();
        let written = ResponseBuilder::new(msg, 400, b"Bad Request")
            .to_tag(b"r4nd")
            .write(&mut out);
        if valid {
            written.expect("a valid request can be answered");
            let response = Message::parse_framed(&out, Framing::Stream).expect("response parses");
            assert_eq!(response.validate(), Ok(()));
            assert_eq!(response.status(), Some(400));
        }
        let mut strict = Editor::new(msg);
        let _ = strict.route_to_strict_router();
        let _ = Editor::new(msg).restore_request_uri_from_last_route();
        let _ = strict.write(&mut Vec::new());
    } else {
        let mut editor = Editor::new(msg);
        let _ = editor.remove_top_via();
        let _ = editor.write(&mut Vec::new());
    }
}

/// The proxy's edits, recorded in RFC 3261 order (§16.4 pops the Route before §16.6 adds
/// the Via). From a valid request they must produce a valid one.
fn forward(msg: &Message<'_>, valid: bool) {
    let mut editor = Editor::new(msg);
    let applied = (msg.routes().next().is_none() || editor.pop_route().is_ok())
        && editor.decrement_max_forwards().is_ok()
        && editor.add_record_route(b"sip:[2001:db8::99];lr").is_ok()
        && editor.add_via(PROXY_VIA).is_ok();
    let mut out = Vec::new();
    let written = editor.write(&mut out);
    if valid && applied {
        written.expect("edits of a valid request write");
        let fwd = Message::parse_framed(&out, Framing::Stream).expect("forwarded request parses");
        assert_eq!(
            fwd.validate(),
            Ok(()),
            "{:?}",
            String::from_utf8_lossy(&out)
        );
        assert_eq!(
            fwd.top_via().map(|v| v.branch()),
            Ok(Some(PROXY_VIA.branch))
        );
    }
}

/// Feeds the input twice over, as two pipelined messages, in reads of random size.
fn deframe(input: &[u8], rng: &mut Rng) {
    let limit = rng.pick(&[64, 512, 2048, DEFAULT_MAX_MESSAGE]);
    let mut deframer = Deframer::new(limit);
    let stream = input.repeat(2);
    let mut rest = &stream[..];
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let polled = deframer.poll(&buf);
        assert!(polled.consumed <= buf.len(), "consumed past the buffer");
        match polled.frame {
            Err(_) => return,
            Ok(Frame::Message { len }) => {
                assert_eq!(len, polled.consumed);
                assert!(len <= limit, "framed {len} bytes with a limit of {limit}");
                if let Ok(msg) = Message::parse_framed(&buf[..len], Framing::Stream) {
                    assert_eq!(msg.as_bytes().len(), len, "parser and deframer disagree");
                }
            }
            Ok(Frame::Ping | Frame::Pong) => assert!(polled.consumed > 0),
            Ok(Frame::NeedMore) => {
                assert_eq!(polled.consumed, 0);
                if rest.is_empty() {
                    return;
                }
                let n = match rng.below(4) {
                    0 => rest.len(),
                    _ => 1 + rng.below(rest.len().min(64)),
                };
                buf.extend_from_slice(&rest[..n]);
                rest = &rest[n..];
            }
            Ok(other) => panic!("unexpected frame {other:?}"),
        }
        buf.drain(..polled.consumed);
    }
}

#[test]
fn random_bytes_and_soup() {
    let mut rng = Rng(0x5eed_0001_d00d_f00d);
    for i in 0..20_000 {
        let input = if i % 2 == 0 {
            let len = rng.below(2049);
            (0..len).map(|_| rng.next() as u8).collect()
        } else {
            soup(&mut rng)
        };
        check(&input, &mut rng);
    }
}

#[test]
fn mutated_messages() {
    let mut rng = Rng(0x5eed_0002_cafe_babe);
    for seed in seeds() {
        check(&seed, &mut rng);
        for end in 0..seed.len() {
            check(&seed[..end], &mut rng);
        }
        for _ in 0..4_000 {
            let input = mutate(&seed, &mut rng);
            check(&input, &mut rng);
        }
    }
    for message in torture_corpus() {
        for _ in 0..150 {
            let input = mutate(&message, &mut rng);
            check(&input, &mut rng);
        }
    }
}

/// A response whose framing is broken is discarded, never answered (RFC 3261 §8.1.3.3,
/// §18.3); the same fault in a request earns a 400.
#[test]
fn badly_framed_responses_are_dropped() {
    let text = std::str::from_utf8(OK).expect("ASCII");
    let variants = [
        text.replace("Content-Length: 4", "Content-Length: 40"),
        text.replace("Content-Length: 4", "Content-Length: -4"),
        text.replace("Content-Length: 4", "Content-Length: 4\r\nl: 4"),
        text.replace("Content-Length: 4", "Content-Length: 99999999999"),
        text.replace("\r\n", "\n"),
        text.replace("\r\n\r\nbody", "\r\n"),
        format!(
            "\r\n\r\n{}",
            text.replace("Content-Length: 4", "Content-Length: 5")
        ),
        text.replace("SIP/2.0 200", "sip/2.0 200")
            .replace("body", ""),
    ];
    for variant in &variants {
        assert!(
            matches!(
                sip::inspect(variant.as_bytes()),
                Verdict::Reject { status: None, .. }
            ),
            "{variant:?}"
        );
        let as_request = variant.replacen("SIP/2.0 200 OK", "OPTIONS sip:a@b SIP/2.0", 1);
        let as_request = as_request.replacen("sip/2.0 200 OK", "OPTIONS sip:a@b SIP/2.0", 1);
        assert!(
            matches!(
                sip::inspect(as_request.as_bytes()),
                Verdict::Reject {
                    status: Some(400),
                    ..
                }
            ),
            "{as_request:?}"
        );
    }
    let unframed = text.replace("Content-Length: 4\r\n", "");
    assert_eq!(sip::inspect(unframed.as_bytes()), Verdict::Response(200));
    let mut deframer = Deframer::default();
    assert!(deframer.poll(unframed.as_bytes()).frame.is_err());
}
