//! Requests whose router needs a lookup first (`Routing::Defer`): the core holds the
//! request in its server transaction, absorbing retransmissions, until the engine has the
//! answer and either forwards the request to targets or answers it.

use std::net::SocketAddr;
use std::time::Instant;

use sip::{Message, Method};
use txn::{InsertError, Kind, ServerTransaction, TxnId};

use super::request::{Incoming, RoutePlan};
use super::*;

impl ProxyCore {
    pub(super) fn defer(
        &mut self,
        now: Instant,
        incoming: Incoming,
        msg: &Message<'_>,
        method: Method<'_>,
    ) {
        let kind = Kind::of(method);
        let upstream_protocol = self.arrived_over;
        let context = Context {
            server: ServerTransaction::new(
                kind,
                upstream_protocol.reliability(),
                self.config.timers,
                now,
            ),
            upstream: response_target(msg, incoming.from),
            upstream_protocol,
            response: Vec::new(),
            scheduled: None,
            received: incoming.received,
            monitored: incoming.monitored,
            provisional_sent: false,
            method: method_index(method),
            responses: ResponseContext::new(1),
            forks: SmallVec::new(),
            original: self.pool.copy_of(msg.as_bytes()),
            originated: false,
        };
        let id = match self.table.insert(incoming.key, context) {
            Ok(id) => id,
            Err(InsertError::Full(_)) => {
                self.stats.table_full += 1;
                self.respond(msg, incoming.from, 503, &[("Retry-After", RETRY_AFTER)]);
                return;
            }
            Err(InsertError::Duplicate(_)) => return,
        };
        self.stats.transactions_created += 1;
        if kind == Kind::Invite {
            self.send_response_upstream(now, id, msg, 100, true);
        }
        self.deferred.push(id);
    }

    /// Moves the requests deferred since the last call into `out`.
    pub fn take_deferred(&mut self, out: &mut Vec<TxnId>) {
        out.append(&mut self.deferred);
    }

    /// The request a deferred transaction holds, as received.
    pub fn deferred_request(&self, id: TxnId) -> Option<&[u8]> {
        self.table
            .get(id)
            .map(|ctx| ctx.original.as_slice())
            .filter(|bytes| !bytes.is_empty())
    }

    /// The address a deferred transaction's request came from.
    pub fn deferred_source(&self, id: TxnId) -> Option<SocketAddr> {
        self.table.get(id).map(|ctx| ctx.upstream)
    }

    /// Takes a deferred transaction's request out, or `None` if it is gone or was resumed;
    /// overload control sees how long the request waited for the engine's answer.
    fn take_original(&mut self, now: Instant, id: TxnId) -> Option<Vec<u8>> {
        let ctx = self.table.get_mut(id)?;
        let original = std::mem::take(&mut ctx.original);
        if original.is_empty() {
            return None;
        }
        if std::mem::take(&mut ctx.monitored) {
            self.monitor
                .request_complete(now.saturating_duration_since(ctx.received), now);
        }
        Some(original)
    }

    /// Answers a deferred request with `status` and `headers` (each a header line: name
    /// and value, in order; at most [`sip::MAX_EXTRA_HEADERS`], else the answer is 500),
    /// as a response generated here, with `to_tag` as our To tag (one of our own when
    /// `None`; a request that has a To tag keeps it).
    pub fn answer_deferred(
        &mut self,
        now: Instant,
        id: TxnId,
        status: u16,
        to_tag: Option<&[u8]>,
        headers: &[(&'static str, &[u8])],
    ) {
        let Some(original) = self.take_original(now, id) else {
            return;
        };
        if let Ok(request) = Message::parse(&original) {
            let own = route::local_tag(&request);
            let tag = to_tag.unwrap_or(&own);
            let (status, headers) = if headers.len() > sip::MAX_EXTRA_HEADERS {
                (500, &[][..])
            } else {
                (status, headers)
            };
            let mut scratch = std::mem::take(&mut self.scratch);
            scratch.clear();
            let built = build::response(&request, status, tag, headers, &mut scratch).is_ok();
            if built {
                self.send_upstream(now, id, status, &scratch);
            }
            self.scratch = scratch;
        }
        self.pool.give(original);
        self.reschedule(now, id);
    }

    /// Forwards a deferred request to `targets` (none: 480), as if its router had chosen
    /// them at once.
    pub fn forward_deferred(&mut self, now: Instant, id: TxnId, targets: &[Target]) {
        if targets.is_empty() {
            self.answer_deferred(now, id, 480, None, &[]);
            return;
        }
        let Some(original) = self.take_original(now, id) else {
            return;
        };
        let forwarded = Message::parse(&original).ok().and_then(|msg| {
            let method = msg.method()?;
            let plan = self.plan_route(&msg)?;
            let loop_hash = route::loop_hash(&msg);
            let targets = &targets[..targets.len().min(MAX_BRANCHES)];
            let ctx = self.table.get_mut(id)?;
            ctx.forks = targets.iter().map(Fork::new).collect();
            ctx.responses = ResponseContext::new(targets.len());
            for (fork, target) in targets.iter().enumerate() {
                self.forward(now, id, fork, &msg, method, &plan, target, loop_hash);
            }
            Some(())
        });
        if forwarded.is_none() {
            self.pool.give(original);
            self.answer_deferred_failed(now, id);
            return;
        }
        self.pool.give(original);
        self.reschedule(now, id);
    }

    /// A deferred request whose stored copy no longer routes: 500, from nothing but the
    /// transaction (cannot happen for a request that routed when it arrived).
    fn answer_deferred_failed(&mut self, now: Instant, id: TxnId) {
        self.stats.parse_errors += 1;
        if let Some(ctx) = self.table.get_mut(id) {
            let _ = ctx.server.on_transport_error();
        }
        self.reschedule(now, id);
    }

    /// Sends a request this proxy originates (a NOTIFY of a subscription it serves) to
    /// `target`, in a client transaction of its own: our Via goes on top, retransmissions
    /// and timeouts are handled, and its final status is reported by
    /// [`take_originated`](Self::take_originated) (408 on timeout, 503 if it cannot be
    /// sent). `request` carries no Via. `None` when it does not parse or the table is full.
    pub fn originate(&mut self, now: Instant, request: &[u8], target: &Target) -> Option<TxnId> {
        let msg = Message::parse(request).ok()?;
        let method = msg.method()?;
        self.originated_count += 1;
        let mut synthetic = ArrayVec::<u8, 40>::new();
        let _ = synthetic.try_extend_from_slice(b"z9hG4bK-originated-");
        let mut count = Vec::new();
        sip::write_decimal(
            &mut count,
            (self.originated_count % u64::from(u32::MAX)) as u32,
        );
        let _ = synthetic.try_extend_from_slice(&count);
        let key = txn::TxnKey::client(&synthetic, method);
        let kind = Kind::of(method);
        let mut server =
            ServerTransaction::new(kind, Protocol::Udp.reliability(), self.config.timers, now);
        // No one upstream: the server side starts terminated and never sends.
        let _ = server.on_transport_error();
        let context = Context {
            server,
            upstream: target.address,
            upstream_protocol: target.protocol,
            response: Vec::new(),
            scheduled: None,
            received: now,
            monitored: false,
            provisional_sent: false,
            method: method_index(method),
            responses: ResponseContext::new(1),
            forks: std::iter::once(Fork::new(target)).collect(),
            original: Vec::new(),
            originated: true,
        };
        let id = self.table.insert(key, context).ok()?;
        let plan = RoutePlan::direct();
        self.forward(now, id, 0, &msg, method, &plan, target, 0);
        Some(id)
    }

    /// Moves the final statuses of originated requests since the last call into `out`.
    pub fn take_originated(&mut self, out: &mut Vec<(TxnId, u16)>) {
        out.append(&mut self.originated_results);
    }
}
