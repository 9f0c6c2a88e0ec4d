//! Proxy edits applied while serializing (RFC 3261 §16.6 and §16.7).
//!
//! The parsed message is never mutated. An [`Editor`] records splices — byte ranges of the
//! original replaced by new content — and [`Editor::write`] copies the message into a
//! caller-owned buffer in one pass, applying them in order. Everything not edited, extension
//! headers included, is copied byte for byte. With a reused output buffer nothing allocates.

use arrayvec::ArrayVec;

use crate::header_name::HeaderName;
use crate::message::{ListElements, MAX_HEADERS, Message};
use crate::name_addr::NameAddr;
use crate::text::trim_lws;

/// The most edits one message may receive before [`Editor::write`].
pub const MAX_EDITS: usize = 16;

/// The Max-Forwards value a proxy adds when a request has none (RFC 3261 §16.6 step 3).
pub const DEFAULT_MAX_FORWARDS: u8 = 70;

/// An edit could not be recorded or applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EditError {
    /// Two edits touch the same bytes (for example popping a Route twice).
    #[error("edits overlap")]
    Overlap,
    /// Max-Forwards is already 0; the proxy must answer 483 instead of forwarding.
    #[error("Max-Forwards exhausted")]
    MaxForwardsExhausted,
    /// The edit needs a header the message lacks (a Route to pop, a Via to remove).
    #[error("no {0} header to edit")]
    Missing(HeaderName),
    /// A header the edit reads is malformed.
    #[error("malformed {0} header")]
    Malformed(HeaderName),
    /// More than [`MAX_EDITS`] edits.
    #[error("too many edits")]
    TooMany,
    /// The edit applies only to requests (or only to responses).
    #[error("edit does not apply to this kind of message")]
    WrongKind,
    /// The edited message would have more than [`MAX_HEADERS`] header lines (the added
    /// Content-Length included), which the parser refuses: answer 513 instead of forwarding.
    #[error("too many header lines")]
    TooManyHeaders,
}

/// The Via a proxy adds on top of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ViaSpec<'e> {
    /// `UDP`, `TCP`, `TLS`, …
    pub transport: &'e [u8],
    /// This proxy's host: a name, an IPv4 address or a bracketed IPv6 reference.
    pub host: &'e [u8],
    /// This proxy's port, when not the transport's default.
    pub port: Option<u16>,
    /// A branch starting with `z9hG4bK`, unique per transaction.
    pub branch: &'e [u8],
    /// Whether to ask the next hop for `rport` (RFC 3581).
    pub rport: bool,
}

#[derive(Debug, Clone, Copy)]
enum Content<'e> {
    Nothing,
    Bytes(&'e [u8]),
    Decimal(u32),
    /// `Name: value\r\n`
    Line(&'static str, &'e [u8]),
    /// `Name: 123\r\n`
    NumberLine(&'static str, u32),
    /// `Name: <uri>\r\n`
    AddrLine(&'static str, &'e [u8]),
    Via(ViaSpec<'e>),
}

#[derive(Debug, Clone, Copy)]
struct Splice<'e> {
    start: u32,
    end: u32,
    content: Content<'e>,
}

/// Records edits to one message and writes the edited copy. `'b` is the message's
/// buffer; `'e` is what the edits borrow, which the buffer outlives.
#[derive(Debug)]
pub struct Editor<'m, 'b: 'e, 'e> {
    msg: &'m Message<'b>,
    splices: ArrayVec<Splice<'e>, MAX_EDITS>,
    content_length_missing: bool,
}

impl<'m, 'b: 'e, 'e> Editor<'m, 'b, 'e> {
    /// Starts editing `msg`.
    pub fn new(msg: &'m Message<'b>) -> Self {
        Self {
            msg,
            splices: ArrayVec::new(),
            content_length_missing: msg.content_length().is_none(),
        }
    }

    /// Adds `via` as the topmost Via (RFC 3261 §16.6 step 8).
    pub fn add_via(&mut self, via: ViaSpec<'e>) -> Result<&mut Self, EditError> {
        self.request_only()?;
        let at = self.first_header_offset();
        self.insert(at, Content::Via(via))
    }

    /// Decrements Max-Forwards, or adds it with 70 when absent (§16.6 step 3).
    pub fn decrement_max_forwards(&mut self) -> Result<&mut Self, EditError> {
        self.request_only()?;
        match self.msg.header(HeaderName::MaxForwards) {
            Some(h) => {
                let value = self
                    .msg
                    .max_forwards()
                    .map_err(|_| EditError::Malformed(HeaderName::MaxForwards))?
                    .unwrap_or(0);
                if value == 0 {
                    return Err(EditError::MaxForwardsExhausted);
                }
                let start = self.msg.offset_of(h.value());
                self.splice(
                    start,
                    start + h.value().len(),
                    Content::Decimal(u32::from(value) - 1),
                )
            }
            None => {
                let at = self.end_of_headers();
                self.insert(
                    at,
                    Content::NumberLine("Max-Forwards", DEFAULT_MAX_FORWARDS.into()),
                )
            }
        }
    }

    /// Replaces the Request-URI.
    pub fn set_request_uri(&mut self, uri: &'e [u8]) -> Result<&mut Self, EditError> {
        let current = self.msg.request_uri_raw().ok_or(EditError::WrongKind)?;
        let start = self.msg.offset_of(current);
        self.splice(start, start + current.len(), Content::Bytes(uri))
    }

    /// Removes the topmost Route value (loose routing: the proxy found itself there,
    /// §16.4).
    pub fn pop_route(&mut self) -> Result<&mut Self, EditError> {
        self.request_only()?;
        self.remove_first_value(HeaderName::Route)
    }

    /// Removes the first `count` Route values, wherever the lines split them: a proxy
    /// that finds itself in several leading values (its outbound-proxy URI and its
    /// Service-Route, say) takes them all off rather than spiral back to itself.
    pub fn pop_routes(&mut self, count: usize) -> Result<&mut Self, EditError> {
        self.request_only()?;
        let msg = self.msg;
        let mut left = count;
        for line in msg
            .header_lines()
            .iter()
            .filter(|l| l.name == HeaderName::Route)
        {
            if left == 0 {
                break;
            }
            let (start, end, value) = line_span(msg, *line);
            let total = ListElements::new(value).count();
            if left >= total {
                self.splice(start, end, Content::Nothing)?;
                left -= total;
                continue;
            }
            let next = ListElements::new(value)
                .nth(left)
                .ok_or(EditError::Malformed(HeaderName::Route))?;
            let value_start = msg.offset_of(value);
            let value_end = value_start + value.len();
            let next_start =
                crate::text::skip_lws(&msg.as_bytes()[..value_end], msg.offset_of(next));
            self.splice(value_start, next_start, Content::Nothing)?;
            left = 0;
        }
        if left > 0 {
            return Err(EditError::Missing(HeaderName::Route));
        }
        Ok(self)
    }

    /// Removes the topmost Via value of a response (§16.7 step 3).
    pub fn remove_top_via(&mut self) -> Result<&mut Self, EditError> {
        if self.msg.is_request() {
            return Err(EditError::WrongKind);
        }
        self.remove_first_value(HeaderName::Via)
    }

    /// Adds a Record-Route with `uri` above any existing ones (§16.6 step 4). `uri` should
    /// carry `;lr`.
    pub fn add_record_route(&mut self, uri: &'e [u8]) -> Result<&mut Self, EditError> {
        self.request_only()?;
        let at = match self.line_of(HeaderName::RecordRoute, First) {
            Some(line) => line.start as usize,
            None => self.end_of_headers(),
        };
        self.insert(at, Content::AddrLine("Record-Route", uri))
    }

    /// §16.4: the Request-URI is a value this proxy put in a Record-Route, so the previous
    /// hop was a strict router. The last Route value becomes the Request-URI and is removed.
    pub fn restore_request_uri_from_last_route(&mut self) -> Result<&mut Self, EditError> {
        let (value, line) = self.last_value(HeaderName::Route)?;
        let addr = NameAddr::parse(value).map_err(|_| EditError::Malformed(HeaderName::Route))?;
        self.set_request_uri(addr.uri().as_bytes())?;
        self.remove_value(line_span(self.msg, line), value)
    }

    /// §16.6 step 6: the next hop (the top Route) is a strict router, so it becomes the
    /// Request-URI, and the original Request-URI is appended as the last Route.
    pub fn route_to_strict_router(&mut self) -> Result<&mut Self, EditError> {
        let request_uri = self.msg.request_uri_raw().ok_or(EditError::WrongKind)?;
        let top = self
            .msg
            .routes()
            .next()
            .ok_or(EditError::Missing(HeaderName::Route))?
            .map_err(|_| EditError::Malformed(HeaderName::Route))?;
        let after_last_route = self
            .line_of(HeaderName::Route, Last)
            .map(|l| l.end as usize)
            .ok_or(EditError::Missing(HeaderName::Route))?;
        self.set_request_uri(top.uri().as_bytes())?;
        self.pop_route()?;
        self.insert(after_last_route, Content::AddrLine("Route", request_uri))
    }

    /// Adds a Route value above every existing one; successive calls keep their order.
    pub fn add_route_first(&mut self, value: &'e [u8]) -> Result<&mut Self, EditError> {
        self.request_only()?;
        let at = match self.line_of(HeaderName::Route, First) {
            Some(line) => line.start as usize,
            None => self.end_of_headers(),
        };
        self.insert(at, Content::Line("Route", value))
    }

    /// Appends a header line at the end of the header section.
    pub fn add_header(
        &mut self,
        name: &'static str,
        value: &'e [u8],
    ) -> Result<&mut Self, EditError> {
        let at = self.end_of_headers();
        self.insert(at, Content::Line(name, value))
    }

    /// Removes every header line with this name.
    pub fn remove_headers(&mut self, name: HeaderName) -> Result<&mut Self, EditError> {
        let msg = self.msg;
        for line in msg.header_lines().iter().filter(|l| l.name == name) {
            self.splice(line.start as usize, line.end as usize, Content::Nothing)?;
        }
        Ok(self)
    }

    /// Writes the edited message to `out` (appending) and returns the bytes written. A
    /// Content-Length header is added when the original had none, since stream transports
    /// require it (RFC 3261 §18.3).
    pub fn write(&mut self, out: &mut Vec<u8>) -> Result<usize, EditError> {
        if self.content_length_missing {
            let at = self.end_of_headers();
            let body_len = self.msg.body().len() as u32;
            self.insert(at, Content::NumberLine("Content-Length", body_len))?;
            self.content_length_missing = false;
        }
        // Stable insertion sort by (start, end): inserts at one offset keep the order they were
        // made, and an insert sorts before a removal starting at the same offset (a Via added
        // where a popped Route line was), whichever was recorded first.
        let splices = &mut self.splices;
        let key = |s: &Splice<'_>| (s.start, s.end);
        for i in 1..splices.len() {
            let mut j = i;
            while j > 0 && key(&splices[j - 1]) > key(&splices[j]) {
                splices.swap(j - 1, j);
                j -= 1;
            }
        }
        // The copy must stay within what this crate parses (the next hop may be Whitewater).
        let lines = self.msg.header_lines();
        let (mut added, mut removed) = (0, 0);
        for s in splices.iter() {
            match s.content {
                Content::Line(..) | Content::NumberLine(..) | Content::AddrLine(..) => added += 1,
                Content::Via(_) => added += 1,
                Content::Nothing if lines.iter().any(|l| (l.start, l.end) == (s.start, s.end)) => {
                    removed += 1;
                }
                _ => {}
            }
        }
        if (lines.len() + added).saturating_sub(removed) > MAX_HEADERS {
            return Err(EditError::TooManyHeaders);
        }
        let src = self.msg.as_bytes();
        let before = out.len();
        let mut copied = 0usize;
        for s in splices.iter() {
            let (start, end) = (s.start as usize, s.end as usize);
            if start < copied {
                out.truncate(before);
                return Err(EditError::Overlap);
            }
            out.extend_from_slice(&src[copied..start]);
            write_content(out, s.content);
            copied = end;
        }
        out.extend_from_slice(&src[copied..]);
        Ok(out.len() - before)
    }

    fn request_only(&self) -> Result<(), EditError> {
        if self.msg.is_request() {
            Ok(())
        } else {
            Err(EditError::WrongKind)
        }
    }

    fn first_header_offset(&self) -> usize {
        self.msg
            .header_lines()
            .first()
            .map_or(self.end_of_headers(), |l| l.start as usize)
    }

    fn end_of_headers(&self) -> usize {
        self.msg.headers_end()
    }

    fn line_of(&self, name: HeaderName, which: Which) -> Option<crate::message::HeaderLine> {
        let mut lines = self.msg.header_lines().iter().filter(|l| l.name == name);
        match which {
            First => lines.next().copied(),
            Last => lines.next_back().copied(),
        }
    }

    fn remove_first_value(&mut self, name: HeaderName) -> Result<&mut Self, EditError> {
        let line = self.line_of(name, First).ok_or(EditError::Missing(name))?;
        let value = &self.msg.as_bytes()[line.value_start as usize..line.value_end as usize];
        let first = ListElements::new(value).next().unwrap_or_default();
        self.remove_value(line_span(self.msg, line), first)
    }

    /// Removes one list element from a header line: the whole line when it is the only one,
    /// otherwise the element and the comma that joins it to its neighbour.
    fn remove_value(
        &mut self,
        line: (usize, usize, &'e [u8]),
        element: &'e [u8],
    ) -> Result<&mut Self, EditError> {
        let (line_start, line_end, value) = line;
        let mut elements = ListElements::new(value);
        let count = elements.by_ref().take(2).count();
        if count < 2 {
            return self.splice(line_start, line_end, Content::Nothing);
        }
        let msg = self.msg;
        let el_start = msg.offset_of(element);
        let el_end = el_start + element.len();
        let value_start = msg.offset_of(value);
        let value_end = value_start + value.len();
        let src = msg.as_bytes();
        if el_end < value_end {
            // Not last: remove through the following comma and whitespace.
            let comma =
                memchr::memchr(b',', &src[el_end..value_end]).map_or(value_end, |i| el_end + i);
            let next = crate::text::skip_lws(&src[..value_end], (comma + 1).min(value_end));
            self.splice(el_start, next, Content::Nothing)
        } else {
            // Last: remove from the preceding comma.
            let comma = memchr::memrchr(b',', &src[value_start..el_start])
                .map_or(el_start, |i| value_start + i);
            self.splice(comma, el_end, Content::Nothing)
        }
    }

    fn last_value(
        &self,
        name: HeaderName,
    ) -> Result<(&'e [u8], crate::message::HeaderLine), EditError> {
        let line = self.line_of(name, Last).ok_or(EditError::Missing(name))?;
        let value = &self.msg.as_bytes()[line.value_start as usize..line.value_end as usize];
        let last = ListElements::new(value).last().unwrap_or_default();
        Ok((trim_lws(last), line))
    }

    fn insert(&mut self, at: usize, content: Content<'e>) -> Result<&mut Self, EditError> {
        self.splice(at, at, content)
    }

    fn splice(
        &mut self,
        start: usize,
        end: usize,
        content: Content<'e>,
    ) -> Result<&mut Self, EditError> {
        self.splices
            .try_push(Splice {
                start: start as u32,
                end: end as u32,
                content,
            })
            .map_err(|_| EditError::TooMany)?;
        Ok(self)
    }
}

#[derive(Clone, Copy)]
enum Which {
    First,
    Last,
}
use Which::{First, Last};

fn line_span<'e>(msg: &Message<'e>, line: crate::message::HeaderLine) -> (usize, usize, &'e [u8]) {
    (
        line.start as usize,
        line.end as usize,
        &msg.as_bytes()[line.value_start as usize..line.value_end as usize],
    )
}

fn write_content(out: &mut Vec<u8>, content: Content<'_>) {
    match content {
        Content::Nothing => {}
        Content::Bytes(b) => out.extend_from_slice(b),
        Content::Decimal(n) => write_decimal(out, n),
        Content::Line(name, value) => {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
        Content::NumberLine(name, n) => {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            write_decimal(out, n);
            out.extend_from_slice(b"\r\n");
        }
        Content::AddrLine(name, uri) => {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": <");
            out.extend_from_slice(uri);
            out.extend_from_slice(b">\r\n");
        }
        Content::Via(via) => {
            out.extend_from_slice(b"Via: SIP/2.0/");
            out.extend_from_slice(via.transport);
            out.push(b' ');
            out.extend_from_slice(via.host);
            if let Some(port) = via.port {
                out.push(b':');
                write_decimal(out, u32::from(port));
            }
            out.extend_from_slice(b";branch=");
            out.extend_from_slice(via.branch);
            if via.rport {
                out.extend_from_slice(b";rport");
            }
            out.extend_from_slice(b"\r\n");
        }
    }
}

/// Appends `n` in decimal without going through `fmt` (which is slow and may allocate).
pub fn write_decimal(out: &mut Vec<u8>, mut n: u32) {
    let mut digits = [0u8; 10];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}
