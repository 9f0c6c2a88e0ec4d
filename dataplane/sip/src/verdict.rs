//! One call that says what a receiver must do with a datagram: the logic behind
//! `whitewater sip check` and the data plane's first look at every UDP message.

use crate::error::ParseError;
use crate::message::{Message, StartLine};
use crate::method::Method;

/// What to do with a received datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict<'a> {
    /// A well-formed request.
    Request(Method<'a>),
    /// A well-formed response.
    Response(u16),
    /// Malformed: answer with `status` (requests), or discard silently when `status` is
    /// `None` (responses, which are never answered).
    Reject {
        /// The status to answer with, if any.
        status: Option<u16>,
        /// What was wrong.
        reason: ParseError,
    },
}

/// Parses and validates one datagram.
pub fn inspect(datagram: &[u8]) -> Verdict<'_> {
    let looks_like_response = datagram
        .iter()
        .position(|&c| c != b'\r' && c != b'\n')
        .and_then(|i| datagram.get(i..i + 4))
        .is_some_and(|p| p.eq_ignore_ascii_case(b"SIP/"));
    let reject = |reason: ParseError| Verdict::Reject {
        status: (!looks_like_response).then_some(reason.status()),
        reason,
    };
    let message = match Message::parse(datagram) {
        Ok(m) => m,
        Err(e) => return reject(e),
    };
    if let Err(e) = message.validate() {
        return reject(e);
    }
    match message.start_line() {
        StartLine::Request { method, .. } => Verdict::Request(method),
        StartLine::Response { code, .. } => Verdict::Response(code),
    }
}
