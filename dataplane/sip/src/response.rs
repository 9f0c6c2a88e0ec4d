//! Building a response to a request (RFC 3261 §8.2.6), written straight into a caller-owned
//! buffer. Via, From, Call-ID and CSeq lines are copied as received; To gains a tag.

use arrayvec::ArrayVec;

use crate::edit::write_decimal;
use crate::error::ParseError;
use crate::header_name::HeaderName;
use crate::message::Message;

/// The most extra header lines one response may carry.
pub const MAX_EXTRA_HEADERS: usize = 64;

/// A response to be written for a received request. `'b` is the request's buffer; `'e`
/// is what the added parts borrow, which the buffer outlives.
#[derive(Debug, Clone)]
pub struct ResponseBuilder<'r, 'b: 'e, 'e> {
    request: &'r Message<'b>,
    code: u16,
    reason: &'e [u8],
    to_tag: Option<&'e [u8]>,
    extra: ArrayVec<(&'static str, &'e [u8]), MAX_EXTRA_HEADERS>,
}

impl<'r, 'b: 'e, 'e> ResponseBuilder<'r, 'b, 'e> {
    /// A response with this status and reason phrase.
    pub fn new(request: &'r Message<'b>, code: u16, reason: &'e [u8]) -> Self {
        Self {
            request,
            code,
            reason,
            to_tag: None,
            extra: ArrayVec::new(),
        }
    }

    /// The To tag to add when the request's To has none (every response but 100 needs one
    /// once a dialog may form; RFC 3261 §8.2.6.2).
    pub fn to_tag(mut self, tag: &'e [u8]) -> Self {
        self.to_tag = Some(tag);
        self
    }

    /// Adds a header line (Retry-After, Unsupported, WWW-Authenticate, …). Headers beyond
    /// [`MAX_EXTRA_HEADERS`] are refused with `false`.
    pub fn header(&mut self, name: &'static str, value: &'e [u8]) -> bool {
        self.extra.try_push((name, value)).is_ok()
    }

    /// Appends the response to `out` and returns its length. Fails only when the request
    /// lacks a header every response must copy.
    pub fn write(&self, out: &mut Vec<u8>) -> Result<usize, ParseError> {
        let request = self.request;
        for name in [
            HeaderName::Via,
            HeaderName::From,
            HeaderName::To,
            HeaderName::CallId,
            HeaderName::CSeq,
        ] {
            if request.header(name).is_none() {
                return Err(ParseError::MissingHeader(name));
            }
        }
        let add_tag = match self.to_tag {
            Some(tag) if self.code > 100 => request.to()?.tag().is_none().then_some(tag),
            _ => None,
        };
        let before = out.len();
        out.extend_from_slice(b"SIP/2.0 ");
        write_decimal(out, u32::from(self.code));
        out.push(b' ');
        out.extend_from_slice(self.reason);
        out.extend_from_slice(b"\r\n");
        let src = request.as_bytes();
        for line in request.header_lines() {
            match line.name {
                HeaderName::Via | HeaderName::From | HeaderName::CallId | HeaderName::CSeq => {
                    out.extend_from_slice(&src[line.start as usize..line.end as usize]);
                }
                HeaderName::To => {
                    out.extend_from_slice(&src[line.start as usize..line.value_end as usize]);
                    if let Some(tag) = add_tag {
                        out.extend_from_slice(b";tag=");
                        out.extend_from_slice(tag);
                    }
                    out.extend_from_slice(b"\r\n");
                }
                _ => {}
            }
        }
        for (name, value) in &self.extra {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"Content-Length: 0\r\n\r\n");
        Ok(out.len() - before)
    }
}
