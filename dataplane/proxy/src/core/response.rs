//! Responses: relaying upstream on the server transaction, generated responses, ACK and
//! CANCEL downstream, and the actions of each transaction (RFC 3261 §16.7).

use std::net::SocketAddr;
use std::time::Instant;

use sip::{Editor, Message, Method};
use txn::{Action, Actions, Kind, ServerState, TxnId};

use crate::best_response::Decision;

use super::*;

impl ProxyCore {
    /// Keeps `response` as the server transaction's latest response, in a pooled buffer
    /// of its size class: a non-INVITE's final response is held for 32 s (Timer J), so a
    /// 400-byte 200 OK should not pin a 2 KiB buffer.
    fn keep_response(&mut self, id: TxnId, response: &[u8]) {
        let Some(ctx) = self.table.get_mut(id) else {
            return;
        };
        let old = std::mem::take(&mut ctx.response);
        self.pool.give(old);
        let fresh = self.pool.copy_of(response);
        if let Some(ctx) = self.table.get_mut(id) {
            ctx.response = fresh;
        }
    }

    /// A response generated here for the server transaction `id` (100 Trying, 408, 503).
    pub(super) fn send_response_upstream(
        &mut self,
        now: Instant,
        id: TxnId,
        request: &Message<'_>,
        status: u16,
        untagged: bool,
    ) {
        let tag = if untagged {
            ArrayVec::new()
        } else {
            route::local_tag(request)
        };
        let Some(ctx) = self.table.get_mut(id) else {
            return;
        };
        let Ok(actions) = ctx.server.send_response(status, now) else {
            return;
        };
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        let built = build::response(request, status, &tag, &[], &mut scratch).is_ok();
        if built {
            self.keep_response(id, &scratch);
        }
        self.scratch = scratch;
        if built {
            self.apply_server(now, id, actions);
        }
    }

    /// A response generated here from the request we forwarded on `fork` (the original
    /// is gone): built on the forwarded copy, then our Via is taken off again.
    pub(super) fn answer_from_forwarded(
        &mut self,
        now: Instant,
        id: TxnId,
        fork: usize,
        status: u16,
    ) {
        let Some(f) = fork_ref(&self.table, id, fork) else {
            return;
        };
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        let built = Message::parse(&f.request).ok().and_then(|forwarded| {
            let tag = route::local_tag(&forwarded);
            build::response(&forwarded, status, &tag, &[], &mut scratch).ok()
        });
        let mut stripped = std::mem::take(&mut self.scratch_response);
        let written = built.and_then(|_| {
            let response = Message::parse(&scratch).ok()?;
            write_without_top_via(&response, &mut stripped).then_some(())
        });
        if written.is_some() {
            self.send_final_upstream(now, id, status, &stripped);
        } else {
            // Nothing to answer with: end the server side rather than leave it waiting.
            self.end_server(id);
        }
        self.scratch = scratch;
        self.scratch_response = stripped;
    }

    /// Sends `response` (already without our Via) upstream on the server transaction and
    /// keeps it for retransmissions.
    pub(super) fn send_upstream(&mut self, now: Instant, id: TxnId, status: u16, response: &[u8]) {
        let Some(ctx) = self.table.get_mut(id) else {
            return;
        };
        let first_final = status >= 200 && ctx.server.state() != ServerState::Accepted;
        let Ok(actions) = ctx.server.send_response(status, now) else {
            return;
        };
        let waited = now.saturating_duration_since(ctx.received);
        if first_final {
            self.latency.record_final(waited);
        } else if status < 200 && !ctx.provisional_sent {
            ctx.provisional_sent = true;
            self.latency.record_provisional(waited);
        }
        self.keep_response(id, response);
        self.apply_server(now, id, actions);
    }

    /// The final response chosen for upstream: no branch may ring on after it.
    fn send_final_upstream(&mut self, now: Instant, id: TxnId, status: u16, response: &[u8]) {
        if let Some(ctx) = self.table.get_mut(id) {
            // A cancelled branch keeps its guard (see send_cancel).
            for f in ctx.forks.iter_mut().filter(|f| f.cancel.is_none()) {
                f.timer_c = None;
            }
        }
        self.send_upstream(now, id, status, response);
    }

    pub(super) fn on_response(&mut self, now: Instant, msg: &Message<'_>, status: u16) {
        let Ok(via) = msg.top_via() else {
            self.stats.parse_errors += 1;
            return;
        };
        let Ok(cseq) = msg.cseq() else {
            self.stats.parse_errors += 1;
            return;
        };
        let owned = via
            .branch()
            .and_then(|b| route::parse_stateful_branch(b).map(|(_, core, id)| (b, core, id)))
            .filter(|&(_, core, _)| core == self.config.core)
            .and_then(|(branch, _, id)| {
                let f = self.table.get(id.txn)?.forks.get(usize::from(id.fork))?;
                (f.branch.as_slice() == branch).then_some(id)
            });
        let Some(ForkId { txn: id, fork }) = owned else {
            self.forward_response_stateless(msg);
            return;
        };
        let fork = usize::from(fork);
        let Some(f) = fork_mut(&mut self.table, id, fork) else {
            return;
        };
        if cseq.method == Method::Cancel {
            let Some(cancel) = f.cancel.as_mut() else {
                return;
            };
            // The 200 to our CANCEL ends here: upstream got its own 200 from us.
            let actions = cancel.on_response(status, now);
            self.apply_cancel(now, id, fork, actions);
            return;
        }
        let Some(client) = f.client.as_mut() else {
            return;
        };
        let ended = client.is_terminated();
        let actions = client.on_response(status, now);
        if actions.is_empty() {
            if ended && (200..300).contains(&status) && cseq.method == Method::Invite {
                // A 2xx after this branch ended (our 408 went upstream on Timer B or C):
                // it still goes upstream, or the callee is answered with no caller
                // (§16.7 step 5; RFC 6026).
                self.forward_response_stateless(msg);
                return;
            }
            self.stats.absorbed += 1;
        }
        self.apply_client(now, id, fork, actions, Some(msg));
    }

    /// §16.7: a response from branch `fork`, relayed upstream at once, held, or dropped.
    pub(super) fn relay_response(
        &mut self,
        now: Instant,
        id: TxnId,
        fork: usize,
        msg: &Message<'_>,
        status: u16,
    ) {
        let timer_c = self.config.timer_c;
        let Some(ctx) = self.table.get_mut(id) else {
            return;
        };
        if ctx.originated {
            // Our own request (a NOTIFY): its final answer goes to the engine, not upstream.
            if status >= 200 {
                self.originated_results.push((id, status));
            }
            return;
        }
        let invite = ctx.server.kind() == Kind::Invite;
        let Some(f) = ctx.forks.get_mut(fork) else {
            return;
        };
        if status < 200 {
            // Any provisional, 100 included, ends Timer B, so Timer C runs from here or a
            // silent branch would hold the transaction forever; a CANCEL held for a
            // provisional may go now (§9.1). A 100 is hop-by-hop: we sent our own.
            if invite && !f.timer_c_fired && (status > 100 || f.timer_c.is_none()) {
                f.timer_c = Some(now + timer_c);
            }
        } else {
            f.timer_c = None;
        }
        if status == 503 {
            // Downstream overload counts against our own rate (Clearwater's penalties).
            self.monitor.penalize();
        }
        let decision = ctx.responses.on_response(fork, status);
        let mut scratch = std::mem::take(&mut self.scratch);
        let written = decision != Decision::Drop && write_without_top_via(msg, &mut scratch);
        if decision != Decision::Drop && !written {
            self.stats.parse_errors += 1;
        }
        match decision {
            Decision::Drop => {}
            _ if !written => {}
            Decision::Forward if status < 200 => self.send_upstream(now, id, status, &scratch),
            Decision::Forward => self.send_final_upstream(now, id, status, &scratch),
            Decision::ForwardAndCancelOthers => {
                self.send_final_upstream(now, id, status, &scratch);
                self.cancel_forks(now, id, Some(fork));
            }
            Decision::Hold => self.hold(id, fork, &scratch),
            Decision::HoldAndCancelOthers => {
                self.hold(id, fork, &scratch);
                self.cancel_forks(now, id, Some(fork));
            }
            Decision::SendBest {
                branch,
                status: best,
            } if branch == fork && best == status => {
                self.send_final_upstream(now, id, status, &scratch);
            }
            Decision::SendBest {
                branch,
                status: best,
            } => {
                self.hold(id, fork, &scratch);
                self.send_best(now, id, fork, branch, best);
            }
        }
        self.scratch = scratch;
        if status < 200 {
            self.send_pending_cancel(now, id, fork);
        }
    }

    /// Keeps branch `fork`'s final response while other branches are pending.
    fn hold(&mut self, id: TxnId, fork: usize, response: &[u8]) {
        let Some(f) = fork_mut(&mut self.table, id, fork) else {
            return;
        };
        let old = std::mem::take(&mut f.held);
        self.pool.give(old);
        let copy = self.pool.copy_of(response);
        if let Some(f) = fork_mut(&mut self.table, id, fork) {
            f.held = copy;
        }
    }

    /// Every branch has answered: send the best answer upstream. `current` is the branch
    /// that answered last; its forwarded request is still at hand to build a response on.
    fn send_best(&mut self, now: Instant, id: TxnId, current: usize, best: usize, status: u16) {
        let Some(ctx) = self.table.get_mut(id) else {
            return;
        };
        let invite = ctx.server.kind() == Kind::Invite;
        let Some(f) = ctx.forks.get_mut(best) else {
            return;
        };
        if f.local_status != 0 && f.held.is_empty() {
            // Our own answer for that branch (§16.9): 408 or 503, sent as it is, except
            // that a non-INVITE is never answered 408 (RFC 4320 §4.1).
            let local = f.local_status;
            if local == 408 && !invite {
                self.end_server(id);
            } else {
                self.answer_from_forwarded(now, id, current, local);
            }
            return;
        }
        if status_of(&f.held) == status {
            let held = std::mem::take(&mut f.held);
            self.send_final_upstream(now, id, status, &held);
            self.pool.give(held);
        } else {
            // A 503 goes upstream as a 500 of our own (§16.7 step 6).
            self.answer_from_forwarded(now, id, current, status);
        }
    }

    /// Branch `fork` ended without a response (timeout, transport error, a request we
    /// could not write): it counts as `status` generated here (§16.7 step 4, §16.9).
    pub(super) fn fork_failed(&mut self, now: Instant, id: TxnId, fork: usize, status: u16) {
        let Some(ctx) = self.table.get_mut(id) else {
            return;
        };
        if ctx.originated {
            self.originated_results.push((id, status));
            return;
        }
        let Some(f) = ctx.forks.get_mut(fork) else {
            return;
        };
        f.local_status = status;
        f.timer_c = None;
        if let Decision::SendBest { branch, status } = ctx.responses.on_response(fork, status) {
            self.send_best(now, id, fork, branch, status);
        }
    }

    /// Sends the CANCEL that waited for a provisional response (§9.1), if there is one.
    pub(super) fn send_pending_cancel(&mut self, now: Instant, id: TxnId, fork: usize) {
        let pending =
            fork_ref(&self.table, id, fork).is_some_and(|f| f.cancel_pending && f.cancel.is_none());
        if pending {
            self.send_cancel(now, id, fork);
        }
    }

    pub(super) fn apply_server(&mut self, now: Instant, id: TxnId, actions: Actions) {
        for action in actions {
            match action {
                Action::SendResponse => {
                    let Some(ctx) = self.table.get_mut(id) else {
                        return;
                    };
                    let path = (ctx.upstream_protocol, Socket::Shared);
                    self.outbox.push(path, ctx.upstream, &ctx.response, None);
                    self.stats.responses_out[class_index(status_of(&ctx.response))] += 1;
                    if ctx.server.state() == ServerState::Accepted {
                        // 2xx retransmissions come from downstream, never from our copy.
                        let buf = std::mem::take(&mut ctx.response);
                        self.pool.give(buf);
                    }
                }
                Action::TransportError | Action::AckTimeout | Action::Terminated => {}
                _ => {}
            }
        }
        self.reschedule(now, id);
    }

    pub(super) fn apply_client(
        &mut self,
        now: Instant,
        id: TxnId,
        fork: usize,
        actions: Actions,
        response: Option<&Message<'_>>,
    ) {
        for action in actions {
            match action {
                Action::SendRequest => {
                    let Some(ctx) = self.table.get_mut(id) else {
                        return;
                    };
                    let method = ctx.method;
                    let Some(f) = ctx.forks.get(fork) else {
                        return;
                    };
                    let client = ForkId {
                        txn: id,
                        fork: fork as u8,
                    };
                    let path = (f.protocol, Socket::Own);
                    self.outbox
                        .push(path, f.downstream, &f.request, Some(client));
                    self.stats.requests_out[method] += 1;
                }
                Action::SendAck => {
                    let Some(response) = response else { continue };
                    let Some(f) = fork_ref(&self.table, id, fork) else {
                        return;
                    };
                    let mut scratch = std::mem::take(&mut self.scratch);
                    scratch.clear();
                    let built = Message::parse(&f.request)
                        .ok()
                        .and_then(|request| build::ack(&request, response, &mut scratch));
                    if built.is_some() {
                        let (to, path) = (f.downstream, (f.protocol, Socket::Own));
                        self.outbox.push(path, to, &scratch, None);
                        self.count_request_out(Method::Ack);
                    }
                    self.scratch = scratch;
                }
                Action::DeliverResponse => {
                    if let Some(response) = response {
                        let status = response.status().unwrap_or(0);
                        self.relay_response(now, id, fork, response, status);
                    }
                }
                Action::Timeout => {
                    self.stats.timeouts += 1;
                    self.fork_failed(now, id, fork, 408);
                }
                Action::TransportError => self.fork_failed(now, id, fork, 503),
                Action::AckTimeout | Action::SendResponse | Action::Terminated => {}
            }
        }
        self.release_request_if_unneeded(id, fork);
        self.reschedule(now, id);
    }

    pub(super) fn apply_cancel(&mut self, now: Instant, id: TxnId, fork: usize, actions: Actions) {
        for action in actions {
            if action == Action::SendRequest {
                let Some(f) = fork_ref(&self.table, id, fork) else {
                    return;
                };
                let path = (f.protocol, Socket::Own);
                self.outbox
                    .push(path, f.downstream, &f.cancel_request, None);
                self.stats.requests_out[method_index(Method::Cancel)] += 1;
            }
        }
        self.reschedule(now, id);
    }

    /// §16.7 step 2: a response with no transaction here goes on statelessly if the top
    /// Via is ours.
    pub(super) fn forward_response_stateless(&mut self, msg: &Message<'_>) {
        let mut vias = msg.vias();
        let ours = vias
            .next()
            .and_then(Result::ok)
            .is_some_and(|v| self.identity.is_us(Some(v.host()), v.port(), false));
        let Some(Ok(next)) = vias.next() else { return };
        if !ours {
            return;
        }
        let Some(to) = via_target(&next) else { return };
        let protocol = if next.transport().eq_ignore_ascii_case(b"TCP") {
            Protocol::Tcp
        } else {
            Protocol::Udp
        };
        let mut scratch = std::mem::take(&mut self.scratch);
        let written = write_without_top_via(msg, &mut scratch);
        if written {
            self.stats.stateless_responses += 1;
            let status = msg.status().unwrap_or(0);
            self.stats.responses_out[class_index(status)] += 1;
            self.outbox
                .push((protocol, Socket::Shared), to, &scratch, None);
        }
        self.scratch = scratch;
    }
}

/// The address in a Via for a stateless response: received/rport, else sent-by.
fn via_target(via: &sip::Via<'_>) -> Option<SocketAddr> {
    let host = match via.received() {
        Some(received) => std::str::from_utf8(received).ok()?.parse().ok()?,
        None => match via.host() {
            sip::Host::Ipv4(ip) => std::net::IpAddr::V4(ip),
            sip::Host::Ipv6(ip) => std::net::IpAddr::V6(ip),
            sip::Host::Domain(_) => return None,
        },
    };
    let port = via.rport().flatten().or(via.port()).unwrap_or(5060);
    Some(SocketAddr::new(host, port))
}

/// Writes a response as it goes upstream: without the top Via, which is ours (§16.7 step 3).
fn write_without_top_via(response: &Message<'_>, out: &mut Vec<u8>) -> bool {
    out.clear();
    Editor::new(response)
        .remove_top_via()
        .and_then(|e| e.write(out))
        .is_ok()
}
