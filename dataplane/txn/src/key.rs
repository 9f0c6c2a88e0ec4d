//! Transaction matching keys (RFC 3261 §17.1.3 and §17.2.3), owned without a heap allocation
//! for any key that fits [`INLINE_KEY`] bytes.

use std::hash::{Hash, Hasher};

use arrayvec::ArrayVec;
use sip::{BRANCH_COOKIE, Message, Method};

/// Keys up to this length are stored inline; longer ones (hostile or RFC 2543 peers) go to
/// the heap, which keeps matching exact instead of trusting a hash.
pub const INLINE_KEY: usize = 120;

/// Why no key could be built from a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The message lacks a header the key is made of (or it is malformed).
    #[error("missing or malformed {0}")]
    Missing(&'static str),
}

/// The bytes a transaction is matched by. Which side it belongs to is part of the key, so
/// client and server transactions can share a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnKey(Bytes);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Bytes {
    Inline(ArrayVec<u8, INLINE_KEY>),
    Heap(Box<[u8]>),
}

impl Hash for TxnKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state);
    }
}

impl TxnKey {
    /// The key as bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            Bytes::Inline(b) => b,
            Bytes::Heap(b) => b,
        }
    }

    fn from_parts(parts: &[&[u8]]) -> Self {
        let len: usize = parts.iter().map(|p| p.len() + 1).sum();
        if len <= INLINE_KEY {
            let mut buf = ArrayVec::new();
            for part in parts {
                // Cannot fail: the total was checked.
                let _ = buf.try_extend_from_slice(part);
                buf.push(0);
            }
            Self(Bytes::Inline(buf))
        } else {
            let mut buf = Vec::with_capacity(len);
            for part in parts {
                buf.extend_from_slice(part);
                buf.push(0);
            }
            Self(Bytes::Heap(buf.into_boxed_slice()))
        }
    }

    /// The key of the client transaction a response belongs to (§17.1.3): the top Via's
    /// branch and the CSeq method.
    pub fn client_for_response(response: &Message<'_>) -> Result<Self, KeyError> {
        let via = response.top_via().map_err(|_| KeyError::Missing("Via"))?;
        let branch = via.branch().ok_or(KeyError::Missing("Via branch"))?;
        let cseq = response.cseq().map_err(|_| KeyError::Missing("CSeq"))?;
        Ok(Self::client(branch, cseq.method))
    }

    /// The key of a client transaction that sends a request with this branch and method.
    pub fn client(branch: &[u8], method: Method<'_>) -> Self {
        Self::from_parts(&[b"c", method.as_bytes(), branch])
    }

    /// The key of the server transaction a request belongs to (§17.2.3). An ACK maps to
    /// the INVITE it acknowledges; a CANCEL has a transaction of its own. Requests without
    /// the RFC 3261 branch cookie are matched the RFC 2543 way (§17.2.3, last paragraphs).
    pub fn server_for_request(request: &Message<'_>) -> Result<Self, KeyError> {
        let method = request.method().ok_or(KeyError::Missing("request line"))?;
        let class = match method {
            Method::Ack => Method::Invite,
            other => other,
        };
        Self::server_with_class(request, class)
    }

    fn server_with_class(request: &Message<'_>, class: Method<'_>) -> Result<Self, KeyError> {
        let via = request.top_via().map_err(|_| KeyError::Missing("Via"))?;
        // Retransmissions repeat the Via byte for byte, so the host is compared as written.
        let host = via.host_raw();
        let port = via.port().unwrap_or(0).to_be_bytes();
        match via.branch() {
            Some(branch) if branch.starts_with(BRANCH_COOKIE) => Ok(Self::from_parts(&[
                b"s",
                class.as_bytes(),
                branch,
                host,
                &port,
            ])),
            _ => {
                let call_id = request
                    .call_id()
                    .map_err(|_| KeyError::Missing("Call-ID"))?;
                let cseq = request.cseq().map_err(|_| KeyError::Missing("CSeq"))?;
                let from = request.from().map_err(|_| KeyError::Missing("From"))?;
                let ruri = request.request_uri_raw().unwrap_or_default();
                let seq = cseq.seq.to_be_bytes();
                let tag = from.tag().unwrap_or_default();
                let branch = via.branch().unwrap_or_default();
                Ok(Self::from_parts(&[
                    b"2",
                    class.as_bytes(),
                    call_id,
                    tag,
                    &seq,
                    ruri,
                    host,
                    &port,
                    branch,
                ]))
            }
        }
    }

    /// The key of the INVITE server transaction a CANCEL refers to (RFC 3261 §9.2: same
    /// matching rules as the CANCEL's own transaction, but with the INVITE's method).
    pub fn server_for_cancelled_invite(cancel: &Message<'_>) -> Result<Self, KeyError> {
        Self::server_with_class(cancel, Method::Invite)
    }

    /// Whether the key is stored inline (no heap allocation).
    pub const fn is_inline(&self) -> bool {
        matches!(self.0, Bytes::Inline(_))
    }
}
