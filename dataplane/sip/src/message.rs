//! The structural parse: start line, header lines and body, as offsets into the caller's
//! buffer. Nothing is copied and nothing is allocated: the header table is a fixed array in
//! the [`Message`] itself. Typed header views live in `typed.rs` and parse lazily; the few
//! every element reads several times (top Via, From, To, Request-URI) are parsed once and
//! kept in the message.

use std::cell::OnceCell;

use arrayvec::ArrayVec;

use crate::error::ParseError;
use crate::header_name::HeaderName;
use crate::method::Method;
use crate::name_addr::NameAddr;
use crate::text::{self, find_unnested, is_wsp, trim_lws};
use crate::uri::{Uri, UriError};
use crate::via::Via;

/// The most header lines one message may carry. A typical INVITE has 10–20; RFC 4475's
/// `longreq` has 37. Beyond this the message is refused with 513.
pub const MAX_HEADERS: usize = 96;

/// How the bytes arrived, which decides how the body is framed (RFC 3261 §18.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// One UDP datagram: without Content-Length the body runs to the end; octets beyond
    /// Content-Length are ignored.
    Datagram,
    /// One message cut from a stream by [`crate::Deframer`]: Content-Length is mandatory.
    Stream,
}

/// The first line of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartLine<'a> {
    /// `Method SP Request-URI SP SIP/2.0`
    Request {
        /// The method.
        method: Method<'a>,
        /// The Request-URI exactly as written (see [`Message::request_uri`] for a parsed one).
        uri: &'a [u8],
    },
    /// `SIP/2.0 SP Status-Code SP Reason-Phrase`
    Response {
        /// The status code, 100–699.
        code: u16,
        /// The reason phrase (may be empty, may be UTF-8).
        reason: &'a [u8],
    },
}

/// One header line, as offsets into the message. `end` is just past its CRLF.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HeaderLine {
    pub(crate) name: HeaderName,
    pub(crate) start: u32,
    pub(crate) name_end: u32,
    pub(crate) value_start: u32,
    pub(crate) value_end: u32,
    pub(crate) end: u32,
}

/// A view of one header line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'a> {
    name: HeaderName,
    raw_name: &'a [u8],
    value: &'a [u8],
}

impl<'a> Header<'a> {
    /// The header name, [`HeaderName::Other`] for extension headers.
    pub const fn name(&self) -> HeaderName {
        self.name
    }

    /// The name exactly as written (compact forms and odd casing included).
    pub const fn raw_name(&self) -> &'a [u8] {
        self.raw_name
    }

    /// The value with surrounding whitespace removed; folds inside it are kept.
    pub const fn value(&self) -> &'a [u8] {
        self.value
    }
}

/// The typed views a message's readers ask for again and again: validation, the
/// transaction key, loop detection and routing each read the top Via, From and To, so
/// each is parsed on first use and kept.
#[derive(Debug, Clone, Default)]
pub(crate) struct ParsedOnce<'a> {
    pub(crate) top_via: OnceCell<Result<Via<'a>, ParseError>>,
    pub(crate) from: OnceCell<Result<NameAddr<'a>, ParseError>>,
    pub(crate) to: OnceCell<Result<NameAddr<'a>, ParseError>>,
    pub(crate) request_uri: OnceCell<Option<Result<Uri<'a>, UriError>>>,
}

/// A parsed SIP message borrowing the buffer it was parsed from.
#[derive(Debug, Clone)]
pub struct Message<'a> {
    buf: &'a [u8],
    start_line: StartLine<'a>,
    headers: ArrayVec<HeaderLine, MAX_HEADERS>,
    headers_end: u32,
    content_length: Option<u32>,
    pub(crate) parsed: ParsedOnce<'a>,
}

impl<'a> Message<'a> {
    /// Parses one UDP datagram.
    pub fn parse(input: &'a [u8]) -> Result<Self, ParseError> {
        Self::parse_framed(input, Framing::Datagram)
    }

    /// Parses one message with the given framing rules.
    pub fn parse_framed(input: &'a [u8], framing: Framing) -> Result<Self, ParseError> {
        if u32::try_from(input.len()).is_err() {
            return Err(ParseError::TooLarge);
        }
        // RFC 3261 §7.5: CRLFs before the start line are ignored.
        let mut skip = 0;
        while input[skip..].starts_with(b"\r\n") {
            skip += 2;
        }
        let buf = &input[skip..];
        let line_end = find_crlf(buf, 0)?;
        let start_line = parse_start_line(&buf[..line_end])?;
        // Built in the value returned, with one return on every path: the header table is
        // most of a message's 3 KB, and assembling it elsewhere first cost a copy of it all.
        let mut parsed = Ok(Self {
            buf,
            start_line,
            headers: ArrayVec::new(),
            headers_end: 0,
            content_length: None,
            parsed: ParsedOnce::default(),
        });
        if let Ok(msg) = &mut parsed
            && let Err(error) = msg.parse_headers(line_end + 2, framing)
        {
            parsed = Err(error);
        }
        parsed
    }

    /// The header lines from `pos` and the body's extent, into a message whose start line
    /// is parsed.
    fn parse_headers(&mut self, mut pos: usize, framing: Framing) -> Result<(), ParseError> {
        let buf = self.buf;
        let headers_end = loop {
            match buf.get(pos..pos + 2) {
                Some(b"\r\n") => break pos,
                None => return Err(ParseError::Truncated),
                Some(_) => {}
            }
            let line = parse_header_line(buf, pos)?;
            if line.name == HeaderName::ContentLength {
                if self.content_length.is_some() {
                    return Err(ParseError::DuplicateHeader(HeaderName::ContentLength));
                }
                let value = &buf[line.value_start as usize..line.value_end as usize];
                let n = text::parse_decimal(value, u64::from(u32::MAX))
                    .ok_or(ParseError::BadContentLength)?;
                self.content_length = Some(n as u32);
            }
            pos = line.end as usize;
            self.headers
                .try_push(line)
                .map_err(|_| ParseError::TooManyHeaders)?;
        };
        let body_start = headers_end + 2;
        let available = buf.len() - body_start;
        let body_len = match (self.content_length, framing) {
            (Some(n), _) if n as usize > available => return Err(ParseError::BodyTruncated),
            (Some(n), _) => n as usize,
            (None, Framing::Datagram) => available,
            (None, Framing::Stream) => return Err(ParseError::MissingContentLength),
        };
        self.buf = &buf[..body_start + body_len];
        self.headers_end = headers_end as u32;
        Ok(())
    }

    /// The message bytes from the start line to the end of the body (octets after the body
    /// in a datagram are not part of the message).
    pub const fn as_bytes(&self) -> &'a [u8] {
        self.buf
    }

    /// The start line.
    pub const fn start_line(&self) -> StartLine<'a> {
        self.start_line
    }

    /// True for requests.
    pub const fn is_request(&self) -> bool {
        matches!(self.start_line, StartLine::Request { .. })
    }

    /// The request method, for requests.
    pub const fn method(&self) -> Option<Method<'a>> {
        match self.start_line {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }

    /// The status code, for responses.
    pub const fn status(&self) -> Option<u16> {
        match self.start_line {
            StartLine::Response { code, .. } => Some(code),
            StartLine::Request { .. } => None,
        }
    }

    /// The Request-URI as written, for requests.
    pub const fn request_uri_raw(&self) -> Option<&'a [u8]> {
        match self.start_line {
            StartLine::Request { uri, .. } => Some(uri),
            StartLine::Response { .. } => None,
        }
    }

    /// The Content-Length value, when the header is present.
    pub const fn content_length(&self) -> Option<u32> {
        self.content_length
    }

    /// The body.
    pub fn body(&self) -> &'a [u8] {
        &self.buf[self.headers_end as usize + 2..]
    }

    /// Every header line, in order.
    pub fn headers(&self) -> impl ExactSizeIterator<Item = Header<'a>> + '_ {
        self.headers.iter().map(|h| self.view(h))
    }

    /// The first header line with this name.
    pub fn header(&self, name: HeaderName) -> Option<Header<'a>> {
        self.headers_named(name).next()
    }

    /// Every header line with this name, in order.
    pub fn headers_named(&self, name: HeaderName) -> impl Iterator<Item = Header<'a>> + '_ {
        self.headers
            .iter()
            .filter(move |h| h.name == name)
            .map(|h| self.view(h))
    }

    /// The first header whose raw name equals `name` case-insensitively; for extension
    /// headers, which have no [`HeaderName`].
    pub fn extension_header(&self, name: &[u8]) -> Option<Header<'a>> {
        self.headers()
            .find(|h| h.raw_name.eq_ignore_ascii_case(name))
    }

    /// The comma-separated elements of every header line with this name, in order, each
    /// trimmed. An empty element (`a,,b`) is yielded as an empty slice for the typed parsers
    /// to refuse.
    pub fn values(&self, name: HeaderName) -> impl Iterator<Item = &'a [u8]> + '_ {
        self.headers_named(name)
            .flat_map(|h| ListElements::new(h.value))
    }

    pub(crate) fn header_lines(&self) -> &[HeaderLine] {
        &self.headers
    }

    pub(crate) const fn headers_end(&self) -> usize {
        self.headers_end as usize
    }

    /// Offset of `part` (a sub-slice of this message) from the start of the message.
    pub(crate) fn offset_of(&self, part: &[u8]) -> usize {
        part.as_ptr() as usize - self.buf.as_ptr() as usize
    }

    fn view(&self, h: &HeaderLine) -> Header<'a> {
        Header {
            name: h.name,
            raw_name: &self.buf[h.start as usize..h.name_end as usize],
            value: &self.buf[h.value_start as usize..h.value_end as usize],
        }
    }
}

/// Splits a header value on commas outside quotes and angle brackets.
pub(crate) struct ListElements<'a> {
    value: &'a [u8],
    pos: Option<usize>,
}

impl<'a> ListElements<'a> {
    pub(crate) fn new(value: &'a [u8]) -> Self {
        Self {
            value,
            pos: Some(0),
        }
    }
}

impl<'a> Iterator for ListElements<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let pos = self.pos?;
        match find_unnested(self.value, pos, b',') {
            Some(comma) => {
                self.pos = Some(comma + 1);
                Some(trim_lws(&self.value[pos..comma]))
            }
            None => {
                self.pos = None;
                Some(trim_lws(&self.value[pos..]))
            }
        }
    }
}

/// Index of the CRLF that ends the line starting at or after `from`. A bare LF is refused.
fn find_crlf(buf: &[u8], from: usize) -> Result<usize, ParseError> {
    let lf = memchr::memchr(b'\n', &buf[from..]).ok_or(ParseError::Truncated)? + from;
    if lf == from || buf[lf - 1] != b'\r' {
        return Err(ParseError::BadHeaderLine);
    }
    Ok(lf - 1)
}

fn parse_header_line(buf: &[u8], start: usize) -> Result<HeaderLine, ParseError> {
    if is_wsp(buf[start]) {
        // A continuation line with no header before it.
        return Err(ParseError::BadHeaderLine);
    }
    let mut eol = find_crlf(buf, start)?;
    while buf.get(eol + 2).is_some_and(|&c| is_wsp(c)) {
        eol = find_crlf(buf, eol + 2)?;
    }
    let colon = memchr::memchr(b':', &buf[start..eol]).ok_or(ParseError::BadHeaderLine)? + start;
    let mut name_end = colon;
    while name_end > start && is_wsp(buf[name_end - 1]) {
        name_end -= 1;
    }
    let raw_name = &buf[start..name_end];
    if !text::all_tokens(raw_name) {
        return Err(ParseError::BadHeaderLine);
    }
    let value_start = text::skip_lws(&buf[..eol], colon + 1);
    let mut value_end = eol;
    while value_end > value_start && text::is_lws(buf[value_end - 1]) {
        value_end -= 1;
    }
    Ok(HeaderLine {
        name: HeaderName::from_bytes(raw_name),
        start: start as u32,
        name_end: name_end as u32,
        value_start: value_start as u32,
        value_end: value_end as u32,
        end: (eol + 2) as u32,
    })
}

fn parse_start_line(line: &[u8]) -> Result<StartLine<'_>, ParseError> {
    if line.len() >= 4 && line[..4].eq_ignore_ascii_case(b"SIP/") {
        return parse_status_line(line);
    }
    // Single spaces only: RFC 4475 `lwsstart`, `lwsruri` and `trws` are all refused here.
    let sp1 = memchr::memchr(b' ', line).ok_or(ParseError::BadRequestLine)?;
    let method = Method::parse(&line[..sp1]).ok_or(ParseError::BadRequestLine)?;
    let rest = &line[sp1 + 1..];
    let sp2 = memchr::memchr(b' ', rest).ok_or(ParseError::BadRequestLine)?;
    let uri = &rest[..sp2];
    let version = &rest[sp2 + 1..];
    if uri.is_empty() || uri.iter().any(|&c| c <= b' ' || c == 0x7f) {
        return Err(ParseError::BadRequestLine);
    }
    check_version(version, ParseError::BadRequestLine)?;
    Ok(StartLine::Request { method, uri })
}

fn parse_status_line(line: &[u8]) -> Result<StartLine<'_>, ParseError> {
    let sp = memchr::memchr(b' ', line).ok_or(ParseError::BadStatusLine)?;
    check_version(&line[..sp], ParseError::BadStatusLine)?;
    let rest = &line[sp + 1..];
    let code_end = memchr::memchr(b' ', rest).unwrap_or(rest.len());
    let digits = &rest[..code_end];
    if digits.is_empty() || !digits.iter().all(|&c| text::is_digit(c)) {
        return Err(ParseError::BadStatusLine);
    }
    let code = match text::parse_decimal(digits, 999) {
        Some(c) if digits.len() == 3 && (100..=699).contains(&c) => c as u16,
        _ => return Err(ParseError::BadStatusCode),
    };
    let reason = rest.get(code_end + 1..).unwrap_or_default();
    if reason.iter().any(|&c| c == b'\r' || c == b'\n') {
        return Err(ParseError::BadStatusLine);
    }
    Ok(StartLine::Response { code, reason })
}

/// `SIP/2.0` is the only version; another well-formed `SIP/x.y` gets 505.
fn check_version(v: &[u8], malformed: ParseError) -> Result<(), ParseError> {
    if v.len() < 4 || !v[..4].eq_ignore_ascii_case(b"SIP/") {
        return Err(malformed);
    }
    let number = &v[4..];
    if number == b"2.0" {
        return Ok(());
    }
    let well_formed = match memchr::memchr(b'.', number) {
        Some(dot) => {
            let (major, minor) = (&number[..dot], &number[dot + 1..]);
            !major.is_empty()
                && !minor.is_empty()
                && major.iter().chain(minor).all(|&c| text::is_digit(c))
        }
        None => false,
    };
    Err(if well_formed {
        ParseError::BadVersion
    } else {
        malformed
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &[u8] = b"INVITE sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP pc33.example.com;branch=z9hG4bK776asdhds\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@example.com>\r\n\
From: Alice <sip:alice@example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.example.com\r\n\
CSeq: 314159 INVITE\r\n\
Content-Length: 4\r\n\
\r\n\
v=0\r\nEXTRA";

    #[test]
    fn request_structure() {
        let m = Message::parse(INVITE).unwrap();
        assert_eq!(m.method(), Some(Method::Invite));
        assert_eq!(m.request_uri_raw(), Some(&b"sip:bob@example.com"[..]));
        assert_eq!(m.headers().count(), 7);
        assert_eq!(m.body(), b"v=0\r");
        assert!(m.as_bytes().ends_with(b"v=0\r"));
        assert_eq!(
            m.header(HeaderName::CallId).unwrap().value(),
            b"a84b4c76e66710@pc33.example.com"
        );
    }

    #[test]
    fn framing_rules() {
        let no_cl = b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\r\n\r\nbody";
        assert_eq!(Message::parse(no_cl).unwrap().body(), b"body");
        assert_eq!(
            Message::parse_framed(no_cl, Framing::Stream).unwrap_err(),
            ParseError::MissingContentLength
        );
        let long_cl = b"OPTIONS sip:a@b SIP/2.0\r\nl: 10\r\n\r\nbody";
        assert_eq!(
            Message::parse(long_cl).unwrap_err(),
            ParseError::BodyTruncated
        );
        assert_eq!(
            Message::parse(b"OPTIONS sip:a@b SIP/2.0\r\nVia: x\r\n").unwrap_err(),
            ParseError::Truncated
        );
        assert_eq!(
            Message::parse(b"OPTIONS sip:a@b SIP/2.0\nVia: x\r\n\r\n").unwrap_err(),
            ParseError::BadHeaderLine
        );
    }

    #[test]
    fn start_lines() {
        let bad = |s: &[u8]| Message::parse(s).unwrap_err();
        assert_eq!(
            bad(b"OPTIONS sip:a@b SIP/7.0\r\n\r\n"),
            ParseError::BadVersion
        );
        assert_eq!(
            bad(b"OPTIONS  sip:a@b SIP/2.0\r\n\r\n"),
            ParseError::BadRequestLine
        );
        assert_eq!(
            bad(b"OPTIONS sip:a@b SIP/2.0 \r\n\r\n"),
            ParseError::BadRequestLine
        );
        assert_eq!(
            bad(b"SIP/2.0 4294967301 big\r\n\r\n"),
            ParseError::BadStatusCode
        );
        assert_eq!(bad(b"SIP/2.0 099 low\r\n\r\n"), ParseError::BadStatusCode);
        let r = Message::parse(b"SIP/2.0 100 \r\n\r\n").unwrap();
        assert_eq!(
            r.start_line(),
            StartLine::Response {
                code: 100,
                reason: b""
            }
        );
    }

    #[test]
    fn list_elements() {
        let v: Vec<&[u8]> = ListElements::new(br#"<sip:a,b>;x="1,2" , c,,"#).collect();
        assert_eq!(v, vec![&br#"<sip:a,b>;x="1,2""#[..], b"c", b"", b""]);
    }
}
