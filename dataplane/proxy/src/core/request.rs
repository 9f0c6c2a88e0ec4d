//! Requests: ACK, CANCEL, retransmissions, refusals, loop detection, route planning and
//! forwarding (RFC 3261 §16.3–§16.6, §16.10, §16.11).

use std::net::SocketAddr;
use std::time::Instant;

use sip::{Editor, Message, Method, ViaSpec};
use txn::{
    ClientState, ClientTransaction, InsertError, Kind, ServerState, ServerTransaction, TxnId,
    TxnKey,
};

use super::*;

impl ProxyCore {
    pub(super) fn on_request(
        &mut self,
        now: Instant,
        received: Instant,
        from: SocketAddr,
        msg: &Message<'_>,
        method: Method<'_>,
    ) {
        if let Err(error) = msg.validate() {
            self.stats.parse_errors += 1;
            if method != Method::Ack {
                self.respond(msg, from, error.status(), &[]);
            }
            return;
        }
        match method {
            Method::Ack => self.on_ack(now, msg),
            Method::Cancel => self.on_cancel(now, from, msg),
            _ => self.on_new_or_retransmitted(now, received, from, msg, method),
        }
    }

    pub(super) fn on_ack(&mut self, now: Instant, msg: &Message<'_>) {
        if let Ok(key) = TxnKey::server_for_request(msg)
            && let Some(id) = self.table.find(&key)
            && let Some(ctx) = self.table.get_mut(id)
            && matches!(
                ctx.server.state(),
                ServerState::Completed | ServerState::Confirmed
            )
        {
            // The ACK for a non-2xx response we sent: it ends here (§16.7 step 10, §17.2.1).
            let actions = ctx.server.on_ack(now);
            self.stats.absorbed += 1;
            self.apply_server(now, id, actions);
            return;
        }
        if msg
            .to()
            .ok()
            .and_then(|to| to.tag())
            .is_some_and(|tag| tag == route::local_tag(msg).as_slice())
        {
            // The ACK for a response we generated without a transaction (a 503 from
            // overload control, most often): it ends here, as the transaction's would.
            self.stats.absorbed += 1;
            return;
        }
        // An ACK for a 2xx is a transaction of its own and is forwarded statelessly.
        self.forward_stateless(msg);
    }

    pub(super) fn on_cancel(&mut self, now: Instant, from: SocketAddr, msg: &Message<'_>) {
        let found = TxnKey::server_for_cancelled_invite(msg)
            .ok()
            .and_then(|key| self.table.find(&key));
        let Some(id) = found else {
            // Nothing to cancel here: forward statelessly (§16.10).
            self.forward_stateless(msg);
            return;
        };
        self.respond(msg, from, 200, &[]);
        if self.deferred_request(id).is_some() {
            // Not forwarded yet: nothing downstream to cancel, so end it here.
            self.answer_deferred(now, id, 487, None, &[]);
            return;
        }
        self.cancel_forks(now, id, None);
    }

    /// Cancels every branch still ringing but `except`: at once if it has had a
    /// provisional response, else as soon as it has one (§9.1). A branch already
    /// answered, or never sent, has nothing to cancel.
    pub(super) fn cancel_forks(&mut self, now: Instant, id: TxnId, except: Option<usize>) {
        // Only an INVITE is cancelled (§9.1); other branches run to their own end.
        let forks = self
            .table
            .get(id)
            .filter(|ctx| ctx.server.kind() == Kind::Invite)
            .map_or(0, |ctx| ctx.forks.len());
        for fork in (0..forks).filter(|&k| Some(k) != except) {
            let Some(ctx) = self.table.get_mut(id) else {
                return;
            };
            let f = &mut ctx.forks[fork];
            match f.client.as_ref().map(ClientTransaction::state) {
                Some(ClientState::Proceeding) if f.cancel.is_none() => {
                    self.send_cancel(now, id, fork);
                }
                Some(ClientState::Calling) => f.cancel_pending = true,
                _ => {}
            }
        }
    }

    pub(super) fn send_cancel(&mut self, now: Instant, id: TxnId, fork: usize) {
        let Some(f) = fork_mut(&mut self.table, id, fork) else {
            return;
        };
        f.cancel_pending = false;
        let mut buf = self.pool.take();
        let built = Message::parse(&f.request)
            .ok()
            .and_then(|request| build::cancel(&request, &mut buf));
        if built.is_none() {
            self.pool.give(buf);
            return;
        }
        let (cancel, actions) = ClientTransaction::start(
            Kind::NonInvite,
            f.protocol.reliability(),
            self.config.timers,
            now,
        );
        f.cancel = Some(cancel);
        f.cancel_request = buf;
        // A branch that never answers its CANCEL would ring forever (an INVITE client in
        // Proceeding has no timer of its own): Timer C's second firing ends it.
        f.timer_c_fired = true;
        f.timer_c = Some(now + self.config.timers.transaction_timeout());
        self.apply_cancel(now, id, fork, actions);
    }

    pub(super) fn on_new_or_retransmitted(
        &mut self,
        now: Instant,
        received: Instant,
        from: SocketAddr,
        msg: &Message<'_>,
        method: Method<'_>,
    ) {
        let Ok(key) = TxnKey::server_for_request(msg) else {
            self.stats.parse_errors += 1;
            self.respond(msg, from, 400, &[]);
            return;
        };
        if let Some(id) = self.table.find(&key) {
            self.stats.absorbed += 1;
            if let Some(ctx) = self.table.get_mut(id) {
                let actions = ctx.server.on_request_retransmission();
                self.apply_server(now, id, actions);
            }
            return;
        }
        // ACK and CANCEL never reach here; OPTIONS and in-dialog requests are never shed.
        let initial = msg.to().ok().is_some_and(|to| to.tag().is_none());
        let monitored = initial && method != Method::Options;
        let queued = now.saturating_duration_since(received);
        if monitored && (self.monitor.is_stale(queued) || !self.monitor.admit(now)) {
            self.stats.overload_rejections += 1;
            self.respond(msg, from, 503, &[("Retry-After", RETRY_AFTER)]);
            return;
        }
        if let Err(refusal) = msg.proxy_precheck(SUPPORTED) {
            if method == Method::Options && self.is_addressed_to_us(msg) {
                self.respond(msg, from, 200, &[("Allow", ALLOW)]);
                return;
            }
            let mut unsupported = ArrayVec::<u8, 256>::new();
            for tag in msg.unsupported_proxy_requires(SUPPORTED) {
                if !unsupported.is_empty() {
                    let _ = unsupported.try_extend_from_slice(b", ");
                }
                let _ = unsupported.try_extend_from_slice(tag);
            }
            let extra: &[(&'static str, &[u8])] = if unsupported.is_empty() {
                &[]
            } else {
                &[("Unsupported", &unsupported)]
            };
            self.respond(msg, from, refusal.status(), extra);
            return;
        }
        if method == Method::Options && self.is_addressed_to_us(msg) {
            self.respond(msg, from, 200, &[("Allow", ALLOW)]);
            return;
        }
        let loop_hash = route::loop_hash(msg);
        if self.is_loop(msg, loop_hash) {
            self.respond(msg, from, 482, &[]);
            return;
        }
        let Some(plan) = self.plan_route(msg) else {
            self.respond(msg, from, 503, &[]);
            return;
        };
        let mut targets = std::mem::take(&mut self.targets);
        targets.clear();
        let routing = self.router.route(msg, plan.target.clone(), &mut targets);
        targets.truncate(MAX_BRANCHES);
        let refusal = match routing {
            Routing::Reject(status) | Routing::RejectWith(status) => Some(status),
            Routing::Forward if targets.is_empty() => Some(480),
            Routing::Forward | Routing::Defer => None,
        };
        // A deferred request's latency runs until the engine's answer lets it go on.
        if monitored && routing != Routing::Defer {
            self.monitor.request_complete(queued, now);
        }
        if let Some(status) = refusal {
            self.targets = targets;
            let mut value = ArrayVec::<u8, 512>::new();
            let header = match routing {
                Routing::RejectWith(_) => self.router.reject_header().and_then(|(name, v)| {
                    value.try_extend_from_slice(v).ok()?;
                    Some(name)
                }),
                _ => None,
            };
            match header {
                Some(name) => self.respond(msg, from, status, &[(name, &value)]),
                None => self.respond(msg, from, status, &[]),
            }
            return;
        }
        let incoming = Incoming {
            received,
            from,
            key,
            loop_hash,
            monitored,
        };
        if routing == Routing::Defer {
            self.defer(now, incoming, msg, method);
        } else {
            self.start_transaction(now, incoming, msg, method, plan, &targets);
        }
        targets.clear();
        self.targets = targets;
    }

    /// Creates the transaction pair for a request the router forwards to `targets`, and
    /// sends it on every branch.
    fn start_transaction(
        &mut self,
        now: Instant,
        incoming: Incoming,
        msg: &Message<'_>,
        method: Method<'_>,
        plan: RoutePlan,
        targets: &[Target],
    ) {
        let Incoming {
            received,
            from,
            key,
            loop_hash,
            ..
        } = incoming;
        let kind = Kind::of(method);
        let upstream_protocol = self.arrived_over;
        let server = ServerTransaction::new(
            kind,
            upstream_protocol.reliability(),
            self.config.timers,
            now,
        );
        let forks = targets.iter().map(Fork::new).collect();
        let context = Context {
            server,
            upstream: response_target(msg, from),
            upstream_protocol,
            response: Vec::new(),
            scheduled: None,
            received,
            monitored: false,
            provisional_sent: false,
            method: method_index(method),
            responses: ResponseContext::new(targets.len()),
            forks,
            original: Vec::new(),
            originated: false,
        };
        let id = match self.table.insert(key, context) {
            Ok(id) => id,
            Err(InsertError::Full(_)) => {
                self.stats.table_full += 1;
                self.respond(msg, from, 503, &[("Retry-After", RETRY_AFTER)]);
                return;
            }
            Err(InsertError::Duplicate(_)) => return,
        };
        self.stats.transactions_created += 1;
        if kind == Kind::Invite {
            self.send_response_upstream(now, id, msg, 100, true);
        }
        for (fork, target) in targets.iter().enumerate() {
            self.forward(now, id, fork, msg, method, &plan, target, loop_hash);
        }
    }

    pub(super) fn is_addressed_to_us(&self, msg: &Message<'_>) -> bool {
        msg.routes().next().is_none()
            && msg
                .request_uri()
                .and_then(Result::ok)
                .is_some_and(|uri| self.identity.is_us_uri(&uri))
    }

    /// §16.3 step 4: a Via of ours whose branch carries the loop hash this request has now.
    pub(super) fn is_loop(&self, msg: &Message<'_>, loop_hash: u64) -> bool {
        msg.vias().flatten().any(|via| {
            self.identity.is_us(Some(via.host()), via.port(), false)
                && via
                    .branch()
                    .and_then(route::parse_stateful_branch)
                    .is_some_and(|(hash, _, _)| hash == loop_hash)
        })
    }

    /// §16.4 and §16.5: which Route edits apply, and where the request goes.
    pub(super) fn plan_route(&self, msg: &Message<'_>) -> Option<RoutePlan> {
        let mut routes = ArrayVec::<sip::NameAddr<'_>, 8>::new();
        for route in msg.routes() {
            if routes.try_push(route.ok()?).is_err() {
                break;
            }
        }
        let ruri = msg.request_uri()?.ok()?;
        let (mut restore, mut pop, mut strict) = (false, 0, false);
        let mut first = 0;
        let mut last = routes.len();
        let mut target_uri = ruri;
        if self.identity.is_us_uri(&ruri) && !routes.is_empty() {
            // The previous hop was a strict router and put our Record-Route in the R-URI.
            restore = true;
            last -= 1;
            target_uri = *routes[last].uri();
        }
        // Every leading Route that is us goes (§16.4), not just the first: a request
        // routed through our outbound-proxy URI and our Service-Route would otherwise
        // spiral back to us over the network.
        while first < last && self.identity.is_us_uri(routes[first].uri()) {
            pop += 1;
            first += 1;
        }
        if first < last {
            let next = routes[first].uri();
            strict = !next.is_loose_route() && !restore;
            target_uri = *next;
        }
        // RFC 3261 §18.1.1: transport=tcp asks for TCP; a request near the MTU takes it too
        // (the estimate adds room for our Via and Record-Route).
        let tcp_param = route::uri_protocol(&target_uri) == Protocol::Tcp;
        let large = msg.as_bytes().len() + 160 > UDP_LIMIT;
        let target = route::uri_target(&target_uri).map(|address| Target {
            address,
            protocol: if tcp_param || large {
                Protocol::Tcp
            } else {
                Protocol::Udp
            },
            udp_fallback: large && !tcp_param,
            request_uri: None,
            routes: Vec::new(),
            add_headers: Vec::new(),
            remove_headers: Vec::new(),
        });
        Some(RoutePlan {
            target,
            pop_routes: pop,
            restore_from_last_route: restore,
            strict_next_hop: strict,
        })
    }

    /// Sends the request on branch `fork`, to `target`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn forward(
        &mut self,
        now: Instant,
        id: TxnId,
        fork: usize,
        msg: &Message<'_>,
        method: Method<'_>,
        plan: &RoutePlan,
        target: &Target,
        loop_hash: u64,
    ) {
        let branch = route::stateful_branch(loop_hash, self.config.core, id, fork as u8);
        let record_route = msg.to().ok().and_then(|to| to.tag()).is_none()
            && matches!(
                method,
                Method::Invite | Method::Subscribe | Method::Refer | Method::Notify
            );
        let Some(f) = fork_mut(&mut self.table, id, fork) else {
            return;
        };
        // RFC 3261 §18.1.1 for every branch, whatever chose it: a request near the path
        // MTU with what we add (Via, Record-Route, a Path, headers) goes by TCP, with UDP
        // as the fallback if TCP cannot be had.
        let added: usize = target.routes.iter().map(|r| r.len() + 9).sum::<usize>()
            + target
                .add_headers
                .iter()
                .map(|(n, v)| n.len() + v.len() + 4)
                .sum::<usize>()
            + target.request_uri.as_ref().map_or(0, Vec::len);
        let protocol =
            if target.protocol == Protocol::Udp && msg.as_bytes().len() + 160 + added > UDP_LIMIT {
                f.udp_fallback = true;
                Protocol::Tcp
            } else {
                target.protocol
            };
        f.protocol = protocol;
        let mut buf = self.pool.take();
        buf.clear();
        let via = ViaSpec {
            transport: protocol.via_token(),
            host: &self.via_host,
            port: Some(self.own_port),
            branch: &branch,
            rport: true,
        };
        let written = edit_forwarded(
            msg,
            via,
            plan,
            target,
            record_route.then_some(&self.record_route[..]),
            &mut buf,
        );
        f.request = buf;
        f.branch = branch;
        if written.is_err() {
            // Our additions (Via, Record-Route, a Path) would take the request past the
            // header limit: answer 513 from the request itself (the forwarded copy was not
            // written), and give up the other branches.
            self.stats.parse_errors += 1;
            self.send_response_upstream(now, id, msg, 513, false);
            self.cancel_forks(now, id, Some(fork));
            self.reschedule(now, id);
            return;
        }
        let (client, actions) = ClientTransaction::start(
            Kind::of(method),
            protocol.reliability(),
            self.config.timers,
            now,
        );
        if let Some(f) = fork_mut(&mut self.table, id, fork) {
            f.client = Some(client);
        }
        self.apply_client(now, id, fork, actions, None);
    }

    /// §16.11: forward without a transaction (ACK for 2xx, CANCEL with nothing to cancel).
    pub(super) fn forward_stateless(&mut self, msg: &Message<'_>) {
        if msg.proxy_precheck(SUPPORTED).is_err() {
            return;
        }
        let Some(plan) = self.plan_route(msg) else {
            return;
        };
        let Some(target) = plan.target.as_ref() else {
            return;
        };
        let branch = route::stateless_branch(msg);
        let via = ViaSpec {
            transport: target.protocol.via_token(),
            host: &self.via_host,
            port: Some(self.own_port),
            branch: &branch,
            rport: true,
        };
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        if edit_forwarded(msg, via, &plan, target, None, &mut scratch).is_ok() {
            self.outbox.push(
                (target.protocol, Socket::Own),
                target.address,
                &scratch,
                None,
            );
            if let Some(method) = msg.method() {
                self.count_request_out(method);
            }
        }
        self.scratch = scratch;
    }
}

/// A new request, as it arrived.
pub(super) struct Incoming {
    pub(super) received: Instant,
    /// Admitted by overload control, which samples its latency.
    pub(super) monitored: bool,
    pub(super) from: SocketAddr,
    pub(super) key: TxnKey,
    pub(super) loop_hash: u64,
}

impl RoutePlan {
    /// No Route edits: a request this proxy originates, sent as written.
    pub(super) fn direct() -> Self {
        Self {
            target: None,
            pop_routes: 0,
            restore_from_last_route: false,
            strict_next_hop: false,
        }
    }
}

/// The §16.4 Route edits every branch of a request gets, and where §16.5 sends it.
#[derive(Debug)]
pub(super) struct RoutePlan {
    /// `None` when the next hop is a host name (no DNS on the data plane).
    target: Option<Target>,
    /// How many leading Route values are ours and go.
    pop_routes: usize,
    restore_from_last_route: bool,
    strict_next_hop: bool,
}

pub(super) fn edit_forwarded(
    msg: &Message<'_>,
    via: ViaSpec<'_>,
    plan: &RoutePlan,
    target: &Target,
    record_route: Option<&[u8]>,
    out: &mut Vec<u8>,
) -> Result<usize, sip::EditError> {
    let mut editor = Editor::new(msg);
    editor.add_via(via)?.decrement_max_forwards()?;
    // Routes the router added lead the way (they are loose: a Path); the request's own
    // strict next hop, if any, is then reached through them.
    let strict_next_hop = plan.strict_next_hop && target.routes.is_empty();
    for route in &target.routes {
        editor.add_route_first(route)?;
    }
    for &name in &target.remove_headers {
        editor.remove_headers(name)?;
    }
    for (name, value) in &target.add_headers {
        editor.add_header(name, value)?;
    }
    if plan.restore_from_last_route {
        editor.restore_request_uri_from_last_route()?;
    } else if let Some(uri) = target.request_uri.as_deref().filter(|_| !strict_next_hop) {
        editor.set_request_uri(uri)?;
    }
    if plan.pop_routes > 0 && strict_next_hop {
        // The Editor reads the original message, whose top Route is still ours: write the
        // popped copy first, then route that to the strict router. Rare (RFC 2543 next
        // hop), so the extra copy and its allocation do not matter.
        editor.pop_routes(plan.pop_routes)?;
        if let Some(uri) = record_route {
            editor.add_record_route(uri)?;
        }
        let mut popped = Vec::with_capacity(msg.as_bytes().len() + 256);
        editor.write(&mut popped)?;
        let popped = Message::parse(&popped)
            .map_err(|_| sip::EditError::Malformed(sip::HeaderName::Route))?;
        return Editor::new(&popped).route_to_strict_router()?.write(out);
    }
    if plan.pop_routes > 0 {
        editor.pop_routes(plan.pop_routes)?;
    }
    if strict_next_hop {
        editor.route_to_strict_router()?;
    }
    if let Some(uri) = record_route {
        editor.add_record_route(uri)?;
    }
    editor.write(out)
}
