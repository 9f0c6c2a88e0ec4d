//! Client transactions: RFC 3261 §17.1, with the Accepted state of RFC 6026 §7.2.

use std::time::{Duration, Instant};

use crate::action::{Action, Actions, actions};
use crate::config::TimerConfig;
use crate::timer::{Timer, TimerTable};
use crate::{Kind, Transport};

/// Where a client transaction is in its state machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientState {
    /// INVITE sent, nothing received.
    Calling,
    /// Non-INVITE sent, nothing received.
    Trying,
    /// A provisional response arrived.
    Proceeding,
    /// INVITE: a 2xx arrived; later 2xx retransmissions still go up (RFC 6026).
    Accepted,
    /// A final response arrived (non-2xx for INVITE); retransmissions are absorbed.
    Completed,
    /// Over.
    Terminated,
}

/// One client transaction. The owner keeps the request bytes and sends them on
/// [`Action::SendRequest`].
#[derive(Debug, Clone)]
pub struct ClientTransaction {
    kind: Kind,
    transport: Transport,
    config: TimerConfig,
    state: ClientState,
    timers: TimerTable,
    /// The current retransmission interval of Timer A or E.
    interval: Duration,
}

impl ClientTransaction {
    /// Starts a transaction: the request is to be sent now.
    pub fn start(
        kind: Kind,
        transport: Transport,
        config: TimerConfig,
        now: Instant,
    ) -> (Self, Actions) {
        let (state, retransmit, timeout) = match kind {
            Kind::Invite => (ClientState::Calling, Timer::A, Timer::B),
            Kind::NonInvite => (ClientState::Trying, Timer::E, Timer::F),
        };
        let mut txn = Self {
            kind,
            transport,
            config,
            state,
            timers: TimerTable::default(),
            interval: config.t1,
        };
        if transport == Transport::Unreliable {
            txn.timers.arm(retransmit, now + config.t1);
        }
        txn.timers.arm(timeout, now + config.transaction_timeout());
        (txn, actions([Action::SendRequest]))
    }

    /// The state the transaction is in.
    pub const fn state(&self) -> ClientState {
        self.state
    }

    /// INVITE or non-INVITE.
    pub const fn kind(&self) -> Kind {
        self.kind
    }

    /// True once the transaction can be removed.
    pub fn is_terminated(&self) -> bool {
        self.state == ClientState::Terminated
    }

    /// When [`handle_timeout`](Self::handle_timeout) must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// A response matching this transaction arrived.
    pub fn on_response(&mut self, status: u16, now: Instant) -> Actions {
        match (self.kind, self.state, status) {
            (_, ClientState::Terminated, _) => Actions::new(),
            (Kind::Invite, ClientState::Calling | ClientState::Proceeding, 100..=199) => {
                // Timer B only bounds the wait for a first response (RFC 3261 §17.1.1.2,
                // Figure 5; RFC 6026 Figure 5): once the INVITE is proceeding it may ring for
                // minutes, and ending it is the user's call (a proxy's Timer C, §16.6 step 11).
                self.timers.disarm(Timer::A);
                self.timers.disarm(Timer::B);
                self.state = ClientState::Proceeding;
                actions([Action::DeliverResponse])
            }
            (Kind::Invite, ClientState::Calling | ClientState::Proceeding, 200..=299) => {
                self.timers.clear();
                self.timers
                    .arm(Timer::M, now + self.config.transaction_timeout());
                self.state = ClientState::Accepted;
                actions([Action::DeliverResponse])
            }
            (Kind::Invite, ClientState::Calling | ClientState::Proceeding, _) => {
                self.timers.clear();
                self.state = ClientState::Completed;
                if self.transport == Transport::Reliable {
                    self.state = ClientState::Terminated;
                    return actions([Action::SendAck, Action::DeliverResponse, Action::Terminated]);
                }
                self.timers.arm(Timer::D, now + self.config.timer_d());
                actions([Action::SendAck, Action::DeliverResponse])
            }
            (Kind::Invite, ClientState::Accepted, 200..=299) => actions([Action::DeliverResponse]),
            (Kind::Invite, ClientState::Completed, 300..) => actions([Action::SendAck]),
            (Kind::NonInvite, ClientState::Trying | ClientState::Proceeding, 100..=199) => {
                self.state = ClientState::Proceeding;
                actions([Action::DeliverResponse])
            }
            (Kind::NonInvite, ClientState::Trying | ClientState::Proceeding, 200..) => {
                self.timers.clear();
                if self.transport == Transport::Reliable {
                    self.state = ClientState::Terminated;
                    return actions([Action::DeliverResponse, Action::Terminated]);
                }
                self.state = ClientState::Completed;
                self.timers.arm(Timer::K, now + self.config.t4);
                actions([Action::DeliverResponse])
            }
            // Late provisionals and retransmitted finals are absorbed.
            _ => Actions::new(),
        }
    }

    /// Runs every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) -> Actions {
        let mut out = Actions::new();
        while let Some(timer) = self.timers.take_due(now) {
            self.fire(timer, now, &mut out);
            if self.is_terminated() {
                break;
            }
        }
        out
    }

    fn fire(&mut self, timer: Timer, now: Instant, out: &mut Actions) {
        match timer {
            Timer::A => {
                self.interval *= 2;
                self.timers.arm(Timer::A, now + self.interval);
                out.push(Action::SendRequest);
            }
            Timer::E => {
                self.interval = if self.state == ClientState::Proceeding {
                    self.config.t2
                } else {
                    (self.interval * 2).min(self.config.t2)
                };
                self.timers.arm(Timer::E, now + self.interval);
                out.push(Action::SendRequest);
            }
            Timer::B | Timer::F => {
                self.terminate();
                out.push(Action::Timeout);
                out.push(Action::Terminated);
            }
            Timer::D | Timer::K | Timer::M => {
                self.terminate();
                out.push(Action::Terminated);
            }
            // Only server transactions arm these.
            Timer::G | Timer::H | Timer::I | Timer::J | Timer::L => {}
        }
    }

    /// The transport failed to send the request (RFC 3261 §17.1.4).
    pub fn on_transport_error(&mut self) -> Actions {
        if self.is_terminated() {
            return Actions::new();
        }
        let waiting = matches!(
            self.state,
            ClientState::Calling | ClientState::Trying | ClientState::Proceeding
        );
        self.terminate();
        if waiting {
            actions([Action::TransportError, Action::Terminated])
        } else {
            actions([Action::Terminated])
        }
    }

    fn terminate(&mut self) {
        self.timers.clear();
        self.state = ClientState::Terminated;
    }
}
