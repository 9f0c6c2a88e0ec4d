//! SIP transactions (RFC 3261 §17), sans-IO.
//!
//! A transaction is a state machine that never touches a socket, a clock or a message
//! buffer: the owner feeds it events (a response or request matched to it, a timer due, a
//! transport error) with the current time, and carries out the [`Action`]s it returns. The
//! owner keeps the bytes (the request a client transaction retransmits, the latest
//! response a server transaction repeats) and asks [`ClientTransaction::poll_timeout`] or
//! [`ServerTransaction::poll_timeout`] when to call back.
//!
//! Beyond RFC 3261: the Accepted states of RFC 6026 (2xx retransmissions pass through an
//! INVITE client transaction to the user; an INVITE server transaction absorbs INVITE
//! retransmissions after its 2xx and lets the user send 2xx retransmissions) and the
//! non-INVITE rules of RFC 4320 (no 408 upstream on Timer F, which is the user's choice,
//! and no 100 Trying before the client's Timer E reaches T2: [`ServerTransaction::may_send_trying`]).
//!
//! Alongside: [`TxnKey`] (matching rules of §17.1.3 and §17.2.3), a bounded
//! [`TransactionTable`] and a [`TimerWheel`], the per-core pieces the engine is built from.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod action;
mod client;
mod config;
mod key;
mod server;
mod table;
mod timer;
mod wheel;

pub use action::{Action, Actions};
pub use client::{ClientState, ClientTransaction};
pub use config::TimerConfig;
pub use key::{INLINE_KEY, KeyError, TxnKey};
pub use server::{ServerError, ServerState, ServerTransaction};
pub use table::{DuplicateKey, InsertError, TableFull, TransactionTable, TxnId};
pub use timer::Timer;
pub use wheel::TimerWheel;

/// INVITE transactions and the rest behave differently (RFC 3261 §17).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An INVITE (its ACK for a non-2xx belongs to it).
    Invite,
    /// Any other method, CANCEL included.
    NonInvite,
}

impl Kind {
    /// The kind of a transaction for a request with this method.
    pub fn of(method: sip::Method<'_>) -> Self {
        if method == sip::Method::Invite {
            Self::Invite
        } else {
            Self::NonInvite
        }
    }
}

/// Whether the transport retransmits for us: it decides which timers run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// UDP: the transaction retransmits.
    Unreliable,
    /// TCP, TLS, SCTP, WebSocket.
    Reliable,
}
