//! Why a message was refused, and the answer RFC 3261 prescribes for each reason.

use crate::HeaderName;

/// A message the parser refuses. Each case names the fault precisely; [`ParseError::status`]
/// maps it to the status a UAS or proxy answers with (requests) — responses are discarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// The Content-Length header is not a non-negative decimal below 2^32.
    #[error("Content-Length is not a valid number")]
    BadContentLength,
    /// A header line has no colon, or its name is not a token.
    #[error("malformed header line")]
    BadHeaderLine,
    /// A header Whitewater reads is malformed.
    #[error("malformed {0} header")]
    BadHeader(HeaderName),
    /// The Request-Line is not `Method SP Request-URI SP SIP-Version` with single spaces.
    #[error("malformed Request-Line")]
    BadRequestLine,
    /// The Request-URI does not parse.
    #[error("malformed Request-URI")]
    BadRequestUri,
    /// The Status-Line is malformed.
    #[error("malformed Status-Line")]
    BadStatusLine,
    /// A status code outside 100–699.
    #[error("status code outside 100-699")]
    BadStatusCode,
    /// The version is not SIP/2.0.
    #[error("SIP version not supported")]
    BadVersion,
    /// Content-Length claims more octets than the datagram holds.
    #[error("Content-Length larger than the message body")]
    BodyTruncated,
    /// The CSeq method is not the Request-Line method.
    #[error("CSeq method does not match the request method")]
    CSeqMethodMismatch,
    /// A header that must appear once appears again.
    #[error("{0} header appears more than once")]
    DuplicateHeader(HeaderName),
    /// A stream message has no Content-Length (RFC 3261 §18.3 makes it mandatory there).
    #[error("Content-Length is required on stream transports")]
    MissingContentLength,
    /// A header every message must carry is absent.
    #[error("missing {0} header")]
    MissingHeader(HeaderName),
    /// The Request-URI carries `?headers`, which RFC 3261 §19.1.1 forbids there.
    #[error("headers are not allowed in the Request-URI")]
    RequestUriHeaders,
    /// The message exceeds the configured size limit.
    #[error("message too large")]
    TooLarge,
    /// More header lines than the parser's fixed table holds.
    #[error("too many header lines")]
    TooManyHeaders,
    /// The header section never ends with an empty line.
    #[error("header section not terminated by an empty line")]
    Truncated,
}

impl ParseError {
    /// The status a stateful element answers a malformed request with.
    pub const fn status(self) -> u16 {
        match self {
            Self::BadVersion => 505,
            Self::TooLarge | Self::TooManyHeaders => 513,
            _ => 400,
        }
    }

    /// The reason phrase sent with [`ParseError::status`].
    pub const fn reason_phrase(self) -> &'static str {
        match self.status() {
            505 => "Version Not Supported",
            513 => "Message Too Large",
            _ => "Bad Request",
        }
    }
}
