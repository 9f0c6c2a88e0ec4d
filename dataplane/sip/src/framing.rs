//! Cutting messages out of a byte stream (TCP, TLS): RFC 3261 §18.3 framing by
//! Content-Length, RFC 5626 §3.5.1 CRLF keep-alives, and a size limit.
//!
//! The contract is rustls's unbuffered one: [`Deframer::poll`] looks at the front of the
//! caller's buffer and says how many bytes to discard before the next call. Errors are fatal
//! for the connection: after one, the stream has no trustworthy message boundary.

use crate::error::ParseError;
use crate::text;

/// The default size limit for one message on a stream.
pub const DEFAULT_MAX_MESSAGE: usize = 64 * 1024;

/// What the front of the stream holds.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Frame {
    /// A double-CRLF keep-alive ping: answer with a single CRLF (RFC 5626 §3.5.1).
    Ping,
    /// A single-CRLF pong (or a stray CRLF between messages): nothing to do.
    Pong,
    /// One whole message: `buf[..len]`; parse it with `Framing::Stream`, then discard.
    Message {
        /// Its length in bytes.
        len: usize,
    },
    /// Not enough bytes yet: read more and call again with the grown buffer.
    NeedMore,
}

/// The outcome of one [`Deframer::poll`].
#[must_use]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deframed {
    /// Bytes to remove from the front of the buffer (after using a `Message`).
    pub consumed: usize,
    /// The frame found, or why the stream is unusable (413-style size overrun: 513; no
    /// Content-Length: 400). After an error, answer if possible and close the connection.
    pub frame: Result<Frame, ParseError>,
}

/// Finds message boundaries in a stream. Keeps how far it has searched so a message that
/// arrives in many segments is scanned once.
#[derive(Debug, Clone)]
pub struct Deframer {
    max_message: usize,
    scanned: usize,
    pending_len: Option<usize>,
}

impl Default for Deframer {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_MESSAGE)
    }
}

impl Deframer {
    /// A deframer refusing messages larger than `max_message` bytes.
    pub const fn new(max_message: usize) -> Self {
        Self {
            max_message,
            scanned: 0,
            pending_len: None,
        }
    }

    /// Examines the front of `buf`, which must start where the previous call's `consumed`
    /// left off.
    pub fn poll(&mut self, buf: &[u8]) -> Deframed {
        let frame = |consumed, frame| Deframed {
            consumed,
            frame: Ok(frame),
        };
        if let Some(len) = self.pending_len {
            return self.complete(buf, len);
        }
        match buf {
            [] | [b'\r'] | [b'\r', b'\n'] | [b'\r', b'\n', b'\r'] => {
                return frame(0, Frame::NeedMore);
            }
            [b'\r', b'\n', b'\r', b'\n', ..] => return frame(4, Frame::Ping),
            [b'\r', b'\n', ..] => return frame(2, Frame::Pong),
            _ => {}
        }
        let window = &buf[..buf.len().min(self.max_message)];
        // Resume where the last call stopped (less the 3 bytes a split CRLFCRLF may span);
        // a caller that hands over a shorter buffer than before simply causes a rescan.
        let search_from = self.scanned.saturating_sub(3).min(window.len());
        let Some(blank) =
            memchr::memmem::find(&window[search_from..], b"\r\n\r\n").map(|i| search_from + i)
        else {
            if buf.len() >= self.max_message {
                return self.fail(ParseError::TooLarge);
            }
            self.scanned = buf.len();
            return frame(0, Frame::NeedMore);
        };
        let headers = &buf[..blank + 2];
        let len = match content_length(headers) {
            Ok(Some(body)) => blank + 4 + body,
            Ok(None) => return self.fail(ParseError::MissingContentLength),
            Err(e) => return self.fail(e),
        };
        if len > self.max_message {
            return self.fail(ParseError::TooLarge);
        }
        self.pending_len = Some(len);
        self.complete(buf, len)
    }

    fn complete(&mut self, buf: &[u8], len: usize) -> Deframed {
        if buf.len() < len {
            return Deframed {
                consumed: 0,
                frame: Ok(Frame::NeedMore),
            };
        }
        self.pending_len = None;
        self.scanned = 0;
        Deframed {
            consumed: len,
            frame: Ok(Frame::Message { len }),
        }
    }

    fn fail(&mut self, e: ParseError) -> Deframed {
        self.pending_len = None;
        self.scanned = 0;
        Deframed {
            consumed: 0,
            frame: Err(e),
        }
    }
}

/// Reads Content-Length (or `l`) from a header block ending in CRLF, without a full parse.
fn content_length(headers: &[u8]) -> Result<Option<usize>, ParseError> {
    let mut found = None;
    let mut pos = 0;
    while pos < headers.len() {
        let eol = memchr::memchr(b'\n', &headers[pos..]).map_or(headers.len(), |i| pos + i + 1);
        let line = &headers[pos..eol];
        pos = eol;
        if line.first().is_some_and(|&c| text::is_wsp(c)) {
            continue;
        }
        let Some(colon) = memchr::memchr(b':', line) else {
            continue;
        };
        let name = text::trim_lws(&line[..colon]);
        if name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"l") {
            if found.is_some() {
                return Err(ParseError::DuplicateHeader(
                    crate::HeaderName::ContentLength,
                ));
            }
            let value = text::trim_lws(&line[colon + 1..]);
            let n = text::parse_decimal(value, u64::from(u32::MAX))
                .ok_or(ParseError::BadContentLength)?;
            found = Some(n as usize);
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] = b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 4\r\n\r\nbody";

    #[test]
    fn keepalives_and_messages() {
        let mut d = Deframer::default();
        assert_eq!(d.poll(b"\r\n\r\nOPT").frame, Ok(Frame::Ping));
        assert_eq!(d.poll(b"\r\nOPT").consumed, 2);
        assert_eq!(d.poll(b"\r\n").frame, Ok(Frame::NeedMore));
        let out = d.poll(MSG);
        assert_eq!(
            (out.consumed, out.frame),
            (MSG.len(), Ok(Frame::Message { len: MSG.len() }))
        );
    }

    #[test]
    fn byte_by_byte_arrival() {
        let mut d = Deframer::default();
        let mut stream = MSG.to_vec();
        stream.extend_from_slice(MSG);
        for end in 1..MSG.len() {
            assert_eq!(
                d.poll(&stream[..end]).frame,
                Ok(Frame::NeedMore),
                "at {end}"
            );
        }
        assert_eq!(d.poll(&stream).consumed, MSG.len());
        assert_eq!(d.poll(&stream[MSG.len()..]).consumed, MSG.len());
    }

    #[test]
    fn limits_and_errors() {
        let mut d = Deframer::new(32);
        assert_eq!(d.poll(&[b'A'; 40]).frame, Err(ParseError::TooLarge));
        assert_eq!(d.poll(MSG).frame, Err(ParseError::TooLarge));
        let mut d = Deframer::default();
        assert_eq!(
            d.poll(b"OPTIONS sip:a@b SIP/2.0\r\n\r\n").frame,
            Err(ParseError::MissingContentLength)
        );
        assert_eq!(
            d.poll(b"OPTIONS sip:a@b SIP/2.0\r\nl: -1\r\n\r\n").frame,
            Err(ParseError::BadContentLength)
        );
    }
}
