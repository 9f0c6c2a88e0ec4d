//! Whitewater's SIP message core: a zero-copy, allocation-free parser with typed, lazily
//! parsed header views, URIs with RFC 3261 comparison, proxy edits applied while serializing,
//! response building, stream framing, and the RFC's verdict for malformed input.
//!
//! Sans-IO: no sockets, no clock, no executor. Every view borrows the caller's buffer; every
//! output goes to a caller-owned `Vec<u8>`, so a data-plane core that reuses its buffers
//! parses, edits and forwards a message without touching the heap.
//!
//! ```
//! use sip::{Editor, Message, ViaSpec};
//!
//! let datagram = b"OPTIONS sip:bob@example.com SIP/2.0\r\n\
//! Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK74bf9\r\n\
//! Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=9fxced76sl\r\n\
//! To: <sip:bob@example.com>\r\nCall-ID: 3848276298220188511@192.0.2.1\r\n\
//! CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
//! let msg = Message::parse(datagram)?;
//! msg.validate()?;
//! assert_eq!(msg.top_via()?.branch(), Some(&b"z9hG4bK74bf9"[..]));
//!
//! let mut out = Vec::with_capacity(2048);
//! Editor::new(&msg)
//!     .add_via(ViaSpec { transport: b"UDP", host: b"192.0.2.9", port: Some(5060),
//!                        branch: b"z9hG4bKproxy1", rport: false })?
//!     .decrement_max_forwards()?
//!     .add_record_route(b"sip:192.0.2.9:5060;lr")?;
//! # let mut editor = Editor::new(&msg);
//! # editor.decrement_max_forwards()?;
//! # editor.write(&mut out)?;
//! assert!(out.windows(16).any(|w| w == b"Max-Forwards: 69"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod auth;
mod edit;
mod error;
mod framing;
mod header_name;
mod headers;
mod message;
mod method;
mod name_addr;
mod params;
mod peek;
mod response;
mod text;
mod typed;
mod uri;
mod validate;
mod verdict;
mod via;

pub use auth::Auth;
pub use edit::{DEFAULT_MAX_FORWARDS, EditError, Editor, MAX_EDITS, ViaSpec, write_decimal};
pub use error::ParseError;
pub use framing::{DEFAULT_MAX_MESSAGE, Deframed, Deframer, Frame};
pub use header_name::HeaderName;
pub use headers::{CSeq, MediaType, Parameterized};
pub use message::{Framing, Header, MAX_HEADERS, Message, StartLine};
pub use method::Method;
pub use name_addr::{Contact, NameAddr};
pub use params::{Param, ParamIter, Params};
pub use peek::is_initial_request;
pub use response::{MAX_EXTRA_HEADERS, ResponseBuilder};
pub use uri::{Host, Scheme, Uri, UriError};
pub use validate::ProxyRefusal;
pub use verdict::{Verdict, inspect};
pub use via::{BRANCH_COOKIE, Via};
