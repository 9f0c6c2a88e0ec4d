//! A transaction pair's life: buffers released when no retransmission needs them, timers
//! scheduled on the wheel, Timer C, send errors, and removal.

use std::time::Instant;

use txn::{Action, ClientState, ClientTransaction, Kind, Transport, TxnId};

use super::*;

impl ProxyCore {
    /// A forwarded request is needed only while its client transaction may retransmit
    /// it or build an ACK or CANCEL from it.
    pub(super) fn release_request_if_unneeded(&mut self, id: TxnId, fork: usize) {
        let Some(f) = fork_mut(&mut self.table, id, fork) else {
            return;
        };
        let needed = f.client.as_ref().is_some_and(|c| {
            matches!(
                c.state(),
                ClientState::Calling | ClientState::Trying | ClientState::Proceeding
            ) || (c.kind() == Kind::Invite && c.state() == ClientState::Completed)
        });
        if !needed && f.request.capacity() > 0 {
            let buf = std::mem::take(&mut f.request);
            self.pool.give(buf);
        }
    }

    pub(super) fn end_server(&mut self, id: TxnId) {
        if let Some(ctx) = self.table.get_mut(id) {
            let _ = ctx.server.on_transport_error();
        }
    }

    pub(super) fn reschedule(&mut self, _now: Instant, id: TxnId) {
        let Some(ctx) = self.table.get_mut(id) else {
            return;
        };
        if ctx.is_done() {
            self.finish_if_done(id);
            return;
        }
        let Some(next) = ctx.next_deadline() else {
            return;
        };
        if ctx.scheduled.is_none_or(|at| next < at) {
            ctx.scheduled = Some(next);
            self.wheel.insert(next, (id, next));
        }
    }

    pub(super) fn finish_if_done(&mut self, id: TxnId) {
        if self.table.get(id).is_some_and(Context::is_done)
            && let Some(ctx) = self.table.remove(id)
        {
            self.pool.give(ctx.response);
            self.pool.give(ctx.original);
            for f in ctx.forks {
                for buf in [f.request, f.cancel_request, f.held] {
                    self.pool.give(buf);
                }
            }
        }
    }

    /// Runs every transaction timer due at `now`.
    pub fn on_timers(&mut self, now: Instant) {
        let mut due = std::mem::take(&mut self.due);
        self.wheel.expire(now, |entry| due.push(entry));
        for (id, at) in due.drain(..) {
            let Some(ctx) = self.table.get_mut(id) else {
                continue;
            };
            if ctx.scheduled != Some(at) {
                continue;
            }
            ctx.scheduled = None;
            let server = ctx.server.handle_timeout(now);
            let forks = ctx.forks.len();
            self.count_retransmissions(&server);
            self.apply_server(now, id, server);
            for fork in 0..forks {
                self.on_fork_timers(now, id, fork);
            }
            self.reschedule(now, id);
        }
        self.due = due;
    }

    fn on_fork_timers(&mut self, now: Instant, id: TxnId, fork: usize) {
        let timer_c_due = fork_ref(&self.table, id, fork)
            .and_then(|f| f.timer_c)
            .is_some_and(|at| at <= now);
        if timer_c_due {
            self.on_timer_c(now, id, fork);
        }
        let Some(f) = fork_mut(&mut self.table, id, fork) else {
            return;
        };
        let client = f
            .client
            .as_mut()
            .map(|c| c.handle_timeout(now))
            .unwrap_or_default();
        let cancel = f
            .cancel
            .as_mut()
            .map(|c| c.handle_timeout(now))
            .unwrap_or_default();
        self.count_retransmissions(&client);
        self.count_retransmissions(&cancel);
        self.apply_client(now, id, fork, client, None);
        self.apply_cancel(now, id, fork, cancel);
    }

    fn count_retransmissions(&mut self, actions: &txn::Actions) {
        let resent = actions
            .iter()
            .filter(|a| matches!(a, Action::SendRequest | Action::SendResponse))
            .count();
        self.stats.retransmissions += resent as u64;
    }

    pub(super) fn on_timer_c(&mut self, now: Instant, id: TxnId, fork: usize) {
        let transaction_timeout = self.config.timers.transaction_timeout();
        let Some(f) = fork_mut(&mut self.table, id, fork) else {
            return;
        };
        let ringing = f
            .client
            .as_ref()
            .is_some_and(|c| c.state() == ClientState::Proceeding);
        if !ringing {
            f.timer_c = None;
            return;
        }
        if f.timer_c_fired {
            // The CANCEL changed nothing: give up on the branch; it counts as a 408.
            f.timer_c = None;
            if let Some(client) = f.client.as_mut() {
                let _ = client.on_transport_error();
            }
            self.fork_failed(now, id, fork, 408);
            return;
        }
        f.timer_c_fired = true;
        f.timer_c = Some(now + transaction_timeout);
        if f.cancel.is_none() {
            self.send_cancel(now, id, fork);
        }
    }

    /// The transport could not send a request of the branch `id`.
    pub fn on_send_error(&mut self, now: Instant, id: ForkId) {
        let (txn, fork) = (id.txn, usize::from(id.fork));
        let Some(f) = self
            .table
            .get_mut(txn)
            .and_then(|ctx| ctx.forks.get_mut(fork))
        else {
            return;
        };
        let Some(client) = f.client.as_mut() else {
            return;
        };
        let waiting = matches!(client.state(), ClientState::Calling | ClientState::Trying);
        if f.udp_fallback && waiting && switch_via_to_udp(&mut f.request) {
            // RFC 3261 §18.1.1: a request sent by TCP only for its size, whose TCP attempt
            // failed, is retried over UDP.
            f.udp_fallback = false;
            f.protocol = Protocol::Udp;
            let (client, actions) = ClientTransaction::start(
                client.kind(),
                Transport::Unreliable,
                self.config.timers,
                now,
            );
            f.client = Some(client);
            self.apply_client(now, txn, fork, actions, None);
            return;
        }
        let actions = client.on_transport_error();
        self.apply_client(now, txn, fork, actions, None);
    }
}

/// Rewrites the transport of our Via (the first header line) from TCP to UDP in place.
fn switch_via_to_udp(request: &mut [u8]) -> bool {
    let Some(line_start) = request.windows(2).position(|w| w == b"\r\n").map(|i| i + 2) else {
        return false;
    };
    let token = b"SIP/2.0/TCP";
    let line = &request[line_start..];
    let line_end = line
        .windows(2)
        .position(|w| w == b"\r\n")
        .unwrap_or(line.len());
    match line[..line_end]
        .windows(token.len())
        .position(|w| w == token)
    {
        Some(at) => {
            let start = line_start + at + token.len() - 3;
            request[start..start + 3].copy_from_slice(b"UDP");
            true
        }
        None => false,
    }
}
