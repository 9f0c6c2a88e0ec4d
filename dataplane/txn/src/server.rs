//! Server transactions: RFC 3261 §17.2, with the Accepted state of RFC 6026 §7.1.

use std::time::{Duration, Instant};

use crate::action::{Action, Actions, actions};
use crate::config::TimerConfig;
use crate::timer::{Timer, TimerTable};
use crate::{Kind, Transport};

/// Where a server transaction is in its state machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerState {
    /// Non-INVITE received, no response sent yet.
    Trying,
    /// INVITE received, or a provisional response sent.
    Proceeding,
    /// INVITE answered with a 2xx; further 2xx from the user are still sent (RFC 6026).
    Accepted,
    /// A final response sent (non-2xx for INVITE); request retransmissions get it again.
    Completed,
    /// INVITE: the ACK arrived; its retransmissions are absorbed.
    Confirmed,
    /// Over.
    Terminated,
}

/// Why a response cannot be sent on this transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ServerError {
    /// A final response was already sent (only a 2xx may follow a 2xx on an INVITE).
    #[error("a final response was already sent")]
    AlreadyAnswered,
    /// The transaction is over.
    #[error("the transaction is terminated")]
    Terminated,
    /// Not a status code (100–699).
    #[error("status code {0} is out of range")]
    BadStatus(u16),
}

/// One server transaction. The owner keeps the latest response bytes and sends them on
/// [`Action::SendResponse`].
#[derive(Debug, Clone)]
pub struct ServerTransaction {
    kind: Kind,
    transport: Transport,
    config: TimerConfig,
    state: ServerState,
    timers: TimerTable,
    /// Whether a response exists that a request retransmission should get again.
    has_response: bool,
    /// The current interval of Timer G.
    interval: Duration,
    created: Instant,
}

impl ServerTransaction {
    /// A new request arrived and created this transaction; the user now answers it.
    pub fn new(kind: Kind, transport: Transport, config: TimerConfig, now: Instant) -> Self {
        Self {
            kind,
            transport,
            config,
            state: match kind {
                Kind::Invite => ServerState::Proceeding,
                Kind::NonInvite => ServerState::Trying,
            },
            timers: TimerTable::default(),
            has_response: false,
            interval: config.t1,
            created: now,
        }
    }

    /// The state the transaction is in.
    pub const fn state(&self) -> ServerState {
        self.state
    }

    /// INVITE or non-INVITE.
    pub const fn kind(&self) -> Kind {
        self.kind
    }

    /// True once the transaction can be removed.
    pub fn is_terminated(&self) -> bool {
        self.state == ServerState::Terminated
    }

    /// When [`handle_timeout`](Self::handle_timeout) must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// Whether a 100 Trying may be sent now. Always for INVITE; for a non-INVITE over an
    /// unreliable transport only once the client's Timer E has reached T2 (RFC 4320 §4.2),
    /// so that a fast final response is never preceded by a useless 100.
    pub fn may_send_trying(&self, now: Instant) -> bool {
        match (self.kind, self.transport) {
            (Kind::Invite, _) | (Kind::NonInvite, Transport::Reliable) => true,
            (Kind::NonInvite, Transport::Unreliable) => {
                now.saturating_duration_since(self.created) >= self.config.rfc4320_trying_delay()
            }
        }
    }

    /// The user sends a response on this transaction. On success the caller stores it as
    /// the latest response and carries out the actions (the first is always `SendResponse`).
    pub fn send_response(&mut self, status: u16, now: Instant) -> Result<Actions, ServerError> {
        if !(100..=699).contains(&status) {
            return Err(ServerError::BadStatus(status));
        }
        match (self.kind, self.state, status) {
            (_, ServerState::Terminated, _) => Err(ServerError::Terminated),
            (Kind::Invite, ServerState::Accepted, 200..=299) => Ok(actions([Action::SendResponse])),
            (_, ServerState::Trying | ServerState::Proceeding, 100..=199) => {
                self.state = ServerState::Proceeding;
                self.has_response = true;
                Ok(actions([Action::SendResponse]))
            }
            (Kind::Invite, ServerState::Proceeding, 200..=299) => {
                self.state = ServerState::Accepted;
                self.has_response = false;
                self.timers
                    .arm(Timer::L, now + self.config.transaction_timeout());
                Ok(actions([Action::SendResponse]))
            }
            (Kind::Invite, ServerState::Proceeding, _) => {
                self.state = ServerState::Completed;
                self.has_response = true;
                if self.transport == Transport::Unreliable {
                    self.timers.arm(Timer::G, now + self.config.t1);
                }
                self.timers
                    .arm(Timer::H, now + self.config.transaction_timeout());
                Ok(actions([Action::SendResponse]))
            }
            (Kind::NonInvite, ServerState::Trying | ServerState::Proceeding, _) => {
                self.has_response = true;
                if self.transport == Transport::Reliable {
                    self.terminate();
                    return Ok(actions([Action::SendResponse, Action::Terminated]));
                }
                self.state = ServerState::Completed;
                self.timers
                    .arm(Timer::J, now + self.config.transaction_timeout());
                Ok(actions([Action::SendResponse]))
            }
            _ => Err(ServerError::AlreadyAnswered),
        }
    }

    /// The request arrived again: answer with the latest response, if there is one to repeat.
    pub fn on_request_retransmission(&mut self) -> Actions {
        match self.state {
            ServerState::Proceeding | ServerState::Completed if self.has_response => {
                actions([Action::SendResponse])
            }
            _ => Actions::new(),
        }
    }

    /// An ACK matched this INVITE transaction (it acknowledges a non-2xx final response).
    pub fn on_ack(&mut self, now: Instant) -> Actions {
        if self.kind != Kind::Invite || self.state != ServerState::Completed {
            return Actions::new();
        }
        self.timers.clear();
        if self.transport == Transport::Reliable {
            self.terminate();
            return actions([Action::Terminated]);
        }
        self.state = ServerState::Confirmed;
        self.timers.arm(Timer::I, now + self.config.t4);
        Actions::new()
    }

    /// Runs every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) -> Actions {
        let mut out = Actions::new();
        while let Some(timer) = self.timers.take_due(now) {
            match timer {
                Timer::G => {
                    self.interval = (self.interval * 2).min(self.config.t2);
                    self.timers.arm(Timer::G, now + self.interval);
                    out.push(Action::SendResponse);
                }
                Timer::H => {
                    self.terminate();
                    out.push(Action::AckTimeout);
                    out.push(Action::Terminated);
                }
                Timer::I | Timer::J | Timer::L => {
                    self.terminate();
                    out.push(Action::Terminated);
                }
                // Only client transactions arm these.
                Timer::A | Timer::B | Timer::D | Timer::E | Timer::F | Timer::K | Timer::M => {}
            }
            if self.is_terminated() {
                break;
            }
        }
        out
    }

    /// The transport failed to send a response (RFC 3261 §17.2.4).
    pub fn on_transport_error(&mut self) -> Actions {
        if self.is_terminated() {
            return Actions::new();
        }
        self.terminate();
        actions([Action::TransportError, Action::Terminated])
    }

    fn terminate(&mut self) {
        self.timers.clear();
        self.state = ServerState::Terminated;
    }
}
