//! Whitewater's IMS functions, sans-IO, in the shape of Sprout's sproutlets: each takes a
//! request (and, when it needs one, the result of a lookup the engine performed) and
//! returns a decision; none opens a socket, reads a clock or blocks.
//!
//! - [`auth`]: digest authentication with stateless nonces and replay protection.
//! - [`registrar`]: what a REGISTER does to an address of record's bindings.
//! - [`regevent`]: reg-event subscriptions (RFC 3680) and their NOTIFYs.
//! - [`sproutlet`]: the S-CSCF's sproutlets (authentication, registrar, reg-event,
//!   routing) chained per request, with the queries they ask the engine to run.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod auth;
pub mod regevent;
pub mod registrar;
pub mod sproutlet;
