//! Property tests over generated messages. A structurally valid request or response must
//! survive parse → validate → serialize → parse with nothing changed but an added
//! Content-Length, and a proxy's edits must leave a request valid with every extension header
//! intact, whatever order the edits are recorded in.

use std::net::{Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use proptest::sample::select;
use sip::{EditError, Editor, Framing, HeaderName, Message, ViaSpec};

/// How one header line is spelled: compact or full name, letter case, whitespace around the
/// colon. None of it may change what the line means.
#[derive(Debug, Clone)]
struct Style {
    compact: bool,
    case_mask: u64,
    before_colon: &'static str,
    after_colon: &'static str,
}

impl Style {
    fn line(&self, name: &str, compact: Option<&str>, value: &str) -> String {
        let name = compact.filter(|_| self.compact).unwrap_or(name);
        let name: String = name
            .chars()
            .enumerate()
            .map(|(i, c)| match self.case_mask >> (i % 64) & 1 {
                1 => c.to_ascii_uppercase(),
                _ => c.to_ascii_lowercase(),
            })
            .collect();
        format!(
            "{name}{}:{}{value}\r\n",
            self.before_colon, self.after_colon
        )
    }
}

fn style() -> impl Strategy<Value = Style> {
    let before: &[&str] = &["", "", " ", "\t"];
    let after: &[&str] = &["", " ", " ", "  ", "\t", "\r\n "];
    (any::<bool>(), any::<u64>(), select(before), select(after)).prop_map(
        |(compact, case_mask, before_colon, after_colon)| Style {
            compact,
            case_mask,
            before_colon,
            after_colon,
        },
    )
}

fn host() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(|o| Ipv4Addr::from(o).to_string()),
        (any::<[u16; 8]>(), 0..3u8).prop_map(|(groups, form)| match form {
            0 => format!("[{}]", Ipv6Addr::from(groups)),
            1 => format!("[{}]", groups.map(|g| format!("{g:X}")).join(":")),
            _ => format!("[{}]", groups.map(|g| format!("{g:04x}")).join(":")),
        }),
        "[a-z]([a-z0-9-]{0,6}[a-z0-9])?(\\.[a-z0-9]([a-z0-9-]{0,6}[a-z0-9])?){0,3}\\.?",
    ]
}

fn port() -> impl Strategy<Value = String> {
    prop::option::of(any::<u16>()).prop_map(|p| p.map(|p| format!(":{p}")).unwrap_or_default())
}

/// `sip:`/`sips:` with a user that may hold escapes and the `;`, `?` and `,` RFC 4475 likes.
fn sip_uri() -> impl Strategy<Value = String> {
    let scheme: &[&str] = &["sip", "sips"];
    let user = "(([A-Za-z0-9_.!~*'()&=+$,;?/-]|%[0-9A-Fa-f]{2}){1,10}\
(:([A-Za-z0-9_.!~*'()&=+$,-]|%[0-9A-Fa-f]{2}){0,8})?@)?";
    let params = "(;(lr|transport=(udp|tcp|tls|sctp)|user=phone|ttl=[0-9]{1,3}|method=[A-Z]{3,8}\
|x[a-z0-9-]{0,6}(=([A-Za-z0-9_.!~*'()\\[\\]/:&+$-]|%[0-9A-F]{2}){1,8})?)){0,3}";
    (select(scheme), user, host(), port(), params).prop_map(|(scheme, user, host, port, params)| {
        format!("{scheme}:{user}{host}{port}{params}")
    })
}

fn tel_uri() -> &'static str {
    "tel:\\+?[0-9][0-9().-]{0,12}(;phone-context=[a-z0-9.+-]{1,10}|;ext=[0-9]{1,4}){0,2}"
}

fn any_uri() -> impl Strategy<Value = String> {
    prop_oneof![4 => sip_uri(), 1 => tel_uri()]
}

fn token() -> &'static str {
    "[A-Za-z0-9.!%*_+`'~-]{1,12}"
}

/// Nothing, a run of tokens, or a quoted string with `"` and `\` escaped; the quoted form may
/// hold the `<`, `,` and `;` that split addresses, and non-ASCII text.
fn display_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[A-Za-z0-9.!%*_+`'~-]{1,8}( [A-Za-z0-9.!%*_+`'~-]{1,8}){0,2} ?",
        ("[ -~é]{0,12}", select(&["", " "][..])).prop_map(|(s, gap)| {
            format!("\"{}\"{gap}", s.replace('\\', "\\\\").replace('"', "\\\""))
        }),
    ]
}

/// A name-addr, or a bare addr-spec kept free of the `;`, `?` and `,` it could not hold.
fn address() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (display_name(), any_uri()).prop_map(|(d, u)| format!("{d}<{u}>")),
        1 => ("[a-z0-9]{1,8}", host(), port()).prop_map(|(u, h, p)| format!("sip:{u}@{h}{p}")),
    ]
}

fn param_separator() -> impl Strategy<Value = &'static str> {
    select(&[";", ";", " ;", "; ", " ; "][..])
}

/// The text that joins a list element to the one before it, or `None` to start a new line.
fn joiner() -> impl Strategy<Value = Option<&'static str>> {
    prop::option::of(select(&[",", ", ", " , ", ",\r\n ", "\r\n ,\t"][..]))
}

/// Writes list values over as many lines as the joiners ask for, one style per line.
fn list_lines(
    name: &str,
    compact: Option<&str>,
    values: &[(String, Option<&str>)],
    styles: &[Style],
) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut current = String::new();
    for (i, (value, join)) in values.iter().enumerate() {
        match join.filter(|_| i > 0) {
            Some(join) => current.push_str(join),
            None if i > 0 => {
                let style = &styles[lines.len() % styles.len()];
                lines.push(style.line(name, compact, &current));
                current.clear();
            }
            None => {}
        }
        current.push_str(value);
    }
    if !values.is_empty() {
        let style = &styles[lines.len() % styles.len()];
        lines.push(style.line(name, compact, &current));
    }
    lines
}

/// A Via value and its branch.
fn via() -> impl Strategy<Value = (String, String)> {
    let protocol: &[&str] = &["SIP/2.0/", "SIP / 2.0 / ", "sip/2.0/"];
    let transport: &[&str] = &["UDP", "TCP", "TLS", "SCTP", "WS", "udp"];
    let received = prop_oneof![
        Just(String::new()),
        any::<[u8; 4]>().prop_map(|o| format!(";received={}", Ipv4Addr::from(o))),
        any::<[u16; 8]>().prop_map(|g| format!(";received=[{}]", Ipv6Addr::from(g))),
        any::<[u16; 8]>().prop_map(|g| format!(";received={}", Ipv6Addr::from(g))),
    ];
    let extras: &[&str] = &["", ";rport", ";rport=5060", ";ttl=16", ";maddr=224.2.0.1"];
    let branch = "z9hG4bK[A-Za-z0-9.!%*_+`'~-]{1,16}";
    (
        (select(protocol), select(transport), host(), port()),
        (param_separator(), branch, received, select(extras)),
    )
        .prop_map(
            |((protocol, transport, host, port), (sep, branch, received, extra))| {
                let value = format!(
                    "{protocol}{transport} {host}{port}{sep}branch={branch}{received}{extra}"
                );
                (value, branch)
            },
        )
}

/// A header line the parser does not know, as written, with its name and value.
#[derive(Debug, Clone)]
struct Extension {
    line: String,
    name: String,
    value: String,
}

fn extension() -> impl Strategy<Value = Extension> {
    let value = "[!-~]([ -~]{0,30}[!-~])?";
    let name = "[A-Za-z0-9.!%*_+`'~-]{1,16}".prop_filter("a known header", |n| {
        HeaderName::from_bytes(n.as_bytes()) == HeaderName::Other
    });
    (name, value, style(), any::<bool>()).prop_map(|(name, value, style, fold)| {
        let value = if fold {
            value.replacen(' ', "\r\n ", 1)
        } else {
            value
        };
        let line = Style {
            compact: false,
            ..style
        }
        .line(&name, None, &value);
        let colon = line.find(':').expect("a colon");
        let name = line[..colon].trim_end().to_owned();
        Extension { line, name, value }
    })
}

/// A generated message: its start line, header groups (a group's lines stay together and in
/// order, but groups are shuffled) and body, and what the parser should read back.
#[derive(Debug, Clone)]
struct Generated {
    start: String,
    groups: Vec<Vec<String>>,
    body: Vec<u8>,
    content_length: bool,
    method: String,
    call_id: String,
    cseq: u32,
    from_tag: Option<String>,
    to_tag: Option<String>,
    branches: Vec<String>,
    routes: Vec<String>,
    max_forwards: Option<u8>,
    extensions: Vec<Extension>,
}

impl Generated {
    fn bytes(&self) -> Vec<u8> {
        let mut out = format!("{}\r\n", self.start).into_bytes();
        for line in self.groups.iter().flatten() {
            out.extend_from_slice(line.as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
        out
    }
}

/// From or To: an address, maybe a tag, and how the tag is attached.
fn party() -> impl Strategy<Value = (String, Option<String>, &'static str, Style)> {
    (
        address(),
        prop::option::of(token()),
        param_separator(),
        style(),
    )
}

/// Everything requests and responses share.
fn common() -> impl Strategy<Value = Generated> {
    let vias = (
        prop::collection::vec((via(), joiner()), 1..=4),
        prop::collection::vec(style(), 4),
    );
    let call_id = "[A-Za-z0-9.!%*_+`'~()<>:\\\\\"/\\[\\]?{}-]{1,20}(@[A-Za-z0-9.!%*_+`'~()<>:/\\[\\]?{}-]{1,12})?";
    let contact_value = (
        address(),
        "(;expires=[0-9]{1,6})?(;q=0\\.[0-9]{1,3})?",
        joiner(),
    );
    let contacts = (
        prop::collection::vec(contact_value, 0..=2),
        prop::collection::vec(style(), 2),
    );
    let extensions = prop::collection::vec(extension(), 0..=4);
    let body = (
        prop::collection::vec(any::<u8>(), 0..48),
        any::<bool>(),
        style(),
        style(),
    );
    (
        vias,
        (party(), party()),
        (call_id, any::<u32>(), style()),
        contacts,
        extensions,
        body,
    )
        .prop_map(|(vias, (from, to), ids, contacts, extensions, body)| {
            let (vias, via_styles) = vias;
            let (call_id, cseq, call_id_style) = ids;
            let (contacts, contact_styles) = contacts;
            let (body, content_length, cl_style, ct_style) = body;
            let values: Vec<_> = vias.iter().map(|((v, _), j)| (v.clone(), *j)).collect();
            let mut groups = vec![list_lines("Via", Some("v"), &values, &via_styles)];
            let mut tags = Vec::new();
            for ((name, compact), (addr, tag, sep, style)) in
                [("From", "f"), ("To", "t")].into_iter().zip([from, to])
            {
                let tag_param = tag
                    .as_ref()
                    .map(|t| format!("{sep}tag={t}"))
                    .unwrap_or_default();
                groups.push(vec![style.line(
                    name,
                    Some(compact),
                    &format!("{addr}{tag_param}"),
                )]);
                tags.push(tag);
            }
            groups.push(vec![call_id_style.line("Call-ID", Some("i"), &call_id)]);
            let values: Vec<_> = contacts.into_iter().map(|(a, p, j)| (a + &p, j)).collect();
            let contact_lines = list_lines("Contact", Some("m"), &values, &contact_styles);
            if !contact_lines.is_empty() {
                groups.push(contact_lines);
            }
            groups.extend(extensions.iter().map(|e| vec![e.line.clone()]));
            if !body.is_empty() {
                groups.push(vec![ct_style.line(
                    "Content-Type",
                    Some("c"),
                    "application/sdp",
                )]);
            }
            if content_length {
                let n = body.len().to_string();
                groups.push(vec![cl_style.line("Content-Length", Some("l"), &n)]);
            }
            let to_tag = tags.pop().flatten();
            let from_tag = tags.pop().flatten();
            Generated {
                start: String::new(),
                groups,
                body,
                content_length,
                method: String::new(),
                call_id,
                cseq,
                from_tag,
                to_tag,
                branches: vias.into_iter().map(|((_, b), _)| b).collect(),
                routes: Vec::new(),
                max_forwards: None,
                extensions,
            }
        })
}

fn method() -> impl Strategy<Value = String> {
    let known = "INVITE ACK BYE CANCEL OPTIONS REGISTER PRACK SUBSCRIBE NOTIFY PUBLISH INFO REFER \
MESSAGE UPDATE";
    prop_oneof![
        3 => select(known.split(' ').collect::<Vec<_>>()).prop_map(String::from),
        1 => "[A-Za-z][A-Za-z0-9.!%*_+`'~-]{0,10}",
    ]
}

/// Lines of one header name keep their order (a list's order is its meaning), but different
/// headers may come in any order.
fn shuffled(g: impl Strategy<Value = Generated>) -> impl Strategy<Value = Generated> {
    g.prop_flat_map(|g| {
        let groups = g.groups.clone();
        (Just(g), Just(groups).prop_shuffle())
    })
    .prop_map(|(g, groups)| Generated { groups, ..g })
}

fn request() -> impl Strategy<Value = Generated> {
    let route = (sip_uri(), joiner());
    let routes = (
        prop::collection::vec(route, 0..=3),
        prop::collection::vec(style(), 2),
    );
    let max_forwards = (prop::option::of(any::<u8>()), style());
    let gap: &[&str] = &[" ", "  ", "\t"];
    let base = (
        common(),
        method(),
        any_uri(),
        routes,
        max_forwards,
        style(),
        select(gap),
    )
        .prop_map(
            |(mut g, method, uri, (routes, route_styles), (mf, mf_style), cseq_style, gap)| {
                g.start = format!("{method} {uri} SIP/2.0");
                g.method = method;
                let cseq = format!("{}{gap}{}", g.cseq, g.method);
                g.groups.push(vec![cseq_style.line("CSeq", None, &cseq)]);
                let values: Vec<_> = routes
                    .iter()
                    .map(|(u, j)| (format!("<{u};lr>"), *j))
                    .collect();
                let route_lines = list_lines("Route", None, &values, &route_styles);
                if !route_lines.is_empty() {
                    g.groups.push(route_lines);
                }
                g.routes = routes.into_iter().map(|(u, _)| u + ";lr").collect();
                if let Some(n) = mf {
                    g.groups
                        .push(vec![mf_style.line("Max-Forwards", None, &n.to_string())]);
                }
                g.max_forwards = mf;
                g
            },
        );
    shuffled(base)
}

fn response() -> impl Strategy<Value = Generated> {
    let reason = prop_oneof!["[ -~]{0,20}", Just("Très bien".to_owned())];
    let base = (common(), 100..=699u16, reason, method(), style()).prop_map(
        |(mut g, code, reason, method, cseq_style)| {
            g.start = format!("SIP/2.0 {code} {reason}");
            g.method = method;
            let cseq = format!("{} {}", g.cseq, g.method);
            g.groups.push(vec![cseq_style.line("CSeq", None, &cseq)]);
            g
        },
    );
    shuffled(base)
}

fn parsed(bytes: &[u8], framing: Framing) -> Result<Message<'_>, TestCaseError> {
    let msg = Message::parse_framed(bytes, framing)
        .map_err(|e| TestCaseError::fail(format!("{e}: {:?}", String::from_utf8_lossy(bytes))))?;
    prop_assert_eq!(
        msg.validate(),
        Ok(()),
        "{:?}",
        String::from_utf8_lossy(bytes)
    );
    Ok(msg)
}

type HeaderView<'a> = (HeaderName, &'a [u8], &'a [u8]);

fn header_views<'a>(msg: &Message<'a>) -> Vec<HeaderView<'a>> {
    msg.headers()
        .map(|h| (h.name(), h.raw_name(), h.value()))
        .collect()
}

fn extension_views<'a>(msg: &Message<'a>) -> Vec<(&'a [u8], &'a [u8])> {
    let mut views: Vec<_> = msg
        .headers()
        .filter(|h| h.name() == HeaderName::Other)
        .map(|h| (h.raw_name(), h.value()))
        .collect();
    views.sort();
    views
}

/// The parser read back what the generator wrote.
fn check_model(msg: &Message<'_>, g: &Generated) -> Result<(), TestCaseError> {
    prop_assert_eq!(msg.call_id(), Ok(g.call_id.as_bytes()));
    let cseq = msg.cseq()?;
    prop_assert_eq!(
        (cseq.seq, cseq.method.as_bytes()),
        (g.cseq, g.method.as_bytes())
    );
    prop_assert_eq!(msg.from()?.tag(), g.from_tag.as_deref().map(str::as_bytes));
    prop_assert_eq!(msg.to()?.tag(), g.to_tag.as_deref().map(str::as_bytes));
    let branches: Vec<_> = msg.vias().map(|v| v.map(|v| v.branch())).collect();
    let expected: Vec<_> = g.branches.iter().map(|b| Ok(Some(b.as_bytes()))).collect();
    prop_assert_eq!(branches, expected);
    let routes: Vec<_> = msg
        .routes()
        .map(|r| r.map(|r| r.uri().as_bytes()))
        .collect();
    let expected: Vec<_> = g.routes.iter().map(|r| Ok(r.as_bytes())).collect();
    prop_assert_eq!(routes, expected);
    prop_assert_eq!(msg.max_forwards(), Ok(g.max_forwards));
    prop_assert_eq!(msg.body(), &g.body[..]);
    let mut expected: Vec<_> = g
        .extensions
        .iter()
        .map(|e| (e.name.as_bytes(), e.value.as_bytes()))
        .collect();
    expected.sort();
    prop_assert_eq!(extension_views(msg), expected);
    Ok(())
}

fn roundtrip(g: &Generated) -> Result<(), TestCaseError> {
    let bytes = g.bytes();
    let first = parsed(&bytes, Framing::Datagram)?;
    check_model(&first, g)?;

    let mut out = Vec::new();
    Editor::new(&first).write(&mut out)?;
    if g.content_length {
        prop_assert_eq!(&out, &bytes, "an unedited message is copied exactly");
    }
    let second = parsed(&out, Framing::Stream)?;
    prop_assert_eq!(first.start_line(), second.start_line());
    let mut headers = header_views(&second);
    if !g.content_length {
        let added = headers.pop();
        let length = g.body.len().to_string();
        prop_assert_eq!(
            added,
            Some((
                HeaderName::ContentLength,
                &b"Content-Length"[..],
                length.as_bytes()
            ))
        );
    }
    prop_assert_eq!(header_views(&first), headers);
    prop_assert_eq!(first.body(), second.body());
    prop_assert_eq!(first.request_uri(), second.request_uri());
    prop_assert_eq!(first.call_id(), second.call_id());
    prop_assert_eq!(first.cseq(), second.cseq());
    prop_assert_eq!(first.from(), second.from());
    prop_assert_eq!(first.to(), second.to());
    prop_assert_eq!(
        first.vias().collect::<Vec<_>>(),
        second.vias().collect::<Vec<_>>()
    );
    prop_assert_eq!(
        first.routes().collect::<Vec<_>>(),
        second.routes().collect::<Vec<_>>()
    );
    prop_assert_eq!(
        first.contacts().collect::<Vec<_>>(),
        second.contacts().collect::<Vec<_>>()
    );
    prop_assert_eq!(first.max_forwards(), second.max_forwards());
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Edit {
    AddVia,
    DecrementMaxForwards,
    AddRecordRoute,
    PopRoute,
}

/// The edits a proxy forwarding a request makes (RFC 3261 §16.4 and §16.6), recorded in
/// `order`: a proxy may record them as it reaches each step, so no order may fail.
fn forward(g: &Generated, spec: ViaSpec<'_>, order: &[Edit]) -> Result<(), TestCaseError> {
    let bytes = g.bytes();
    let msg = parsed(&bytes, Framing::Datagram)?;
    let own_uri = format!("sip:{};lr", String::from_utf8_lossy(spec.host));
    let mut editor = Editor::new(&msg);
    for &edit in order {
        let result = match edit {
            Edit::AddVia => editor.add_via(spec).map(drop),
            Edit::DecrementMaxForwards => editor.decrement_max_forwards().map(drop),
            Edit::AddRecordRoute => editor.add_record_route(own_uri.as_bytes()).map(drop),
            Edit::PopRoute => editor.pop_route().map(drop),
        };
        let expected = match edit {
            Edit::DecrementMaxForwards if g.max_forwards == Some(0) => {
                Err(EditError::MaxForwardsExhausted)
            }
            Edit::PopRoute if g.routes.is_empty() => Err(EditError::Missing(HeaderName::Route)),
            _ => Ok(()),
        };
        prop_assert_eq!(result, expected, "{:?} after {:?}", edit, order);
    }
    let mut out = Vec::new();
    editor.write(&mut out)?;
    let fwd = parsed(&out, Framing::Stream)?;

    let top = fwd.top_via()?;
    prop_assert_eq!(top.branch(), Some(spec.branch));
    prop_assert_eq!((top.host_raw(), top.port()), (spec.host, spec.port));
    prop_assert_eq!(top.rport().is_some(), spec.rport);
    prop_assert_eq!(
        fwd.vias().skip(1).collect::<Vec<_>>(),
        msg.vias().collect::<Vec<_>>()
    );
    let max_forwards = match g.max_forwards {
        Some(0) => Some(0),
        Some(n) => Some(n - 1),
        None => Some(sip::DEFAULT_MAX_FORWARDS),
    };
    prop_assert_eq!(fwd.max_forwards(), Ok(max_forwards));
    let record_route = fwd.record_routes().next().transpose()?;
    prop_assert_eq!(
        record_route.map(|r| r.uri().as_bytes()),
        Some(own_uri.as_bytes())
    );
    let routes: Vec<_> = fwd.routes().collect();
    let expected: Vec<_> = msg.routes().skip(1).collect();
    prop_assert_eq!(routes, expected);
    for e in &g.extensions {
        prop_assert!(
            out.windows(e.line.len()).any(|w| w == e.line.as_bytes()),
            "extension line {:?} not kept byte for byte",
            e.line
        );
    }
    prop_assert_eq!(extension_views(&fwd), extension_views(&msg));
    prop_assert_eq!(fwd.body(), msg.body());
    prop_assert_eq!((fwd.call_id(), fwd.cseq()), (msg.call_id(), msg.cseq()));
    prop_assert_eq!((fwd.from(), fwd.to()), (msg.from(), msg.to()));
    Ok(())
}

fn via_spec() -> impl Strategy<Value = (String, Option<u16>, String, bool)> {
    (
        host(),
        prop::option::of(any::<u16>()),
        "z9hG4bK[A-Za-z0-9-]{1,12}",
        any::<bool>(),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(5000))]

    #[test]
    fn requests_round_trip(g in request()) {
        roundtrip(&g)?;
    }

    #[test]
    fn responses_round_trip(g in response()) {
        roundtrip(&g)?;
    }

    #[test]
    fn proxy_edits_keep_a_request_valid(
        g in request(),
        (host, port, branch, rport) in via_spec(),
        order in Just(vec![
            Edit::AddVia,
            Edit::DecrementMaxForwards,
            Edit::AddRecordRoute,
            Edit::PopRoute,
        ]).prop_shuffle(),
    ) {
        let spec = ViaSpec {
            transport: b"TCP",
            host: host.as_bytes(),
            port,
            branch: branch.as_bytes(),
            rport,
        };
        forward(&g, spec, &order)?;
    }
}
