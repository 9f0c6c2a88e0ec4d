//! A transaction pair's life: buffers released when no retransmission needs them, timers
//! scheduled on the wheel, Timer C, send errors, and removal.

use std::time::Instant;

use txn::{Action, ClientState, ClientTransaction, Kind, Transport, TxnId};

use super::*;

impl ProxyCore {
    /// The forwarded request is needed only while the client transaction may retransmit
    /// it or build an ACK or CANCEL from it.
    pub(super) fn release_request_if_unneeded(&mut self, id: TxnId) {
        let Some(ctx) = self.table.get_mut(id) else {
            return;
        };
        let needed = ctx.client.as_ref().is_some_and(|c| {
            matches!(
                c.state(),
                ClientState::Calling | ClientState::Trying | ClientState::Proceeding
            ) || (c.kind() == Kind::Invite && c.state() == ClientState::Completed)
        });
        if !needed && ctx.request.capacity() > 0 {
            let buf = std::mem::take(&mut ctx.request);
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
            for buf in [ctx.request, ctx.response, ctx.cancel_request] {
                self.pool.give(buf);
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
            if ctx.timer_c.is_some_and(|at| at <= now) {
                self.on_timer_c(now, id);
            }
            let Some(ctx) = self.table.get_mut(id) else {
                continue;
            };
            let server = ctx.server.handle_timeout(now);
            let client = ctx
                .client
                .as_mut()
                .map(|c| c.handle_timeout(now))
                .unwrap_or_default();
            let cancel = ctx
                .cancel
                .as_mut()
                .map(|c| c.handle_timeout(now))
                .unwrap_or_default();
            let retransmits = [&server, &client, &cancel]
                .iter()
                .flat_map(|a| a.iter())
                .filter(|a| matches!(a, Action::SendRequest | Action::SendResponse))
                .count();
            self.stats.retransmissions += retransmits as u64;
            self.apply_server(now, id, server);
            self.apply_client(now, id, client, None);
            self.apply_cancel(now, id, cancel);
            self.reschedule(now, id);
        }
        self.due = due;
    }

    pub(super) fn on_timer_c(&mut self, now: Instant, id: TxnId) {
        let Some(ctx) = self.table.get_mut(id) else {
            return;
        };
        let ringing = ctx
            .client
            .as_ref()
            .is_some_and(|c| c.state() == ClientState::Proceeding);
        if !ringing {
            ctx.timer_c = None;
            return;
        }
        if ctx.timer_c_fired {
            // The CANCEL changed nothing: give up on the branch and answer upstream.
            ctx.timer_c = None;
            if let Some(client) = ctx.client.as_mut() {
                let _ = client.on_transport_error();
            }
            self.answer_from_forwarded(now, id, 408);
            return;
        }
        ctx.timer_c_fired = true;
        ctx.timer_c = Some(now + self.config.timers.transaction_timeout());
        if ctx.cancel.is_none() {
            self.send_cancel(now, id);
        }
    }

    /// The transport could not send a request of the client transaction `id`.
    pub fn on_send_error(&mut self, now: Instant, id: TxnId) {
        let Some(ctx) = self.table.get_mut(id) else {
            return;
        };
        let Some(client) = ctx.client.as_mut() else {
            return;
        };
        let waiting = matches!(client.state(), ClientState::Calling | ClientState::Trying);
        if ctx.udp_fallback && waiting && switch_via_to_udp(&mut ctx.request) {
            // RFC 3261 §18.1.1: a request sent by TCP only for its size, whose TCP attempt
            // failed, is retried over UDP.
            ctx.udp_fallback = false;
            ctx.downstream_protocol = Protocol::Udp;
            let (client, actions) = ClientTransaction::start(
                client.kind(),
                Transport::Unreliable,
                self.config.timers,
                now,
            );
            ctx.client = Some(client);
            self.apply_client(now, id, actions, None);
            return;
        }
        let actions = client.on_transport_error();
        self.apply_client(now, id, actions, None);
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
