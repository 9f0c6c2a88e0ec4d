//! One core's proxy: the transaction table, the timer wheel and the RFC 3261 §16 logic.

use std::net::SocketAddr;
use std::ops::Range;
use std::time::{Duration, Instant};

use arrayvec::ArrayVec;
use sip::{Editor, Message, Method, ViaSpec};
use txn::{
    Action, Actions, ClientState, ClientTransaction, InsertError, Kind, ServerState,
    ServerTransaction, TimerConfig, TimerWheel, TransactionTable, Transport, TxnId, TxnKey,
};

use crate::build;
use crate::latency::Latency;
use crate::overload::{LoadMonitor, OverloadConfig};
use crate::pool::BufferPool;
use crate::route::{self, Branch, Identity};
use crate::stats::{Stats, class_index, method_index};

/// Which of the core's two sockets a datagram uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Socket {
    /// The listening address every core shares.
    Shared,
    /// This core's own address.
    Own,
}

/// The transport a message arrived on or leaves by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// UDP: the transactions retransmit.
    Udp,
    /// TCP: one connection per peer address, reused in both directions (RFC 3261 §18).
    Tcp,
}

impl Protocol {
    fn reliability(self) -> Transport {
        match self {
            Self::Udp => Transport::Unreliable,
            Self::Tcp => Transport::Reliable,
        }
    }

    fn via_token(self) -> &'static [u8] {
        match self {
            Self::Udp => b"UDP",
            Self::Tcp => b"TCP",
        }
    }
}

/// RFC 3261 §18.1.1: a request within this much of the path MTU goes by TCP instead.
const UDP_LIMIT: usize = 1300;

/// One message to send. The bytes are in [`ProxyCore::transmits`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// UDP or TCP. For TCP, the engine reuses the connection to or from `to`, or opens one.
    pub protocol: Protocol,
    /// The UDP socket to send from (ignored for TCP).
    pub socket: Socket,
    /// The destination.
    pub to: SocketAddr,
    range: Range<usize>,
    /// The transaction whose request this is, so a send failure reaches it.
    pub client: Option<TxnId>,
}

/// What one core's proxy needs to know.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// The shared listening address (Record-Route, and the source of responses upstream).
    pub listen: SocketAddr,
    /// This core's index (0-based); its own port is `listen.port() + 1 + core`.
    pub core: u16,
    /// How many cores run a proxy, so every core's port is recognised as this proxy.
    pub cores: u16,
    /// Most transactions this core holds; beyond it new requests get 503.
    pub max_transactions: usize,
    /// T1, T2, T4.
    pub timers: TimerConfig,
    /// Timer C: how long an INVITE may ring before the proxy cancels it (> 3 min).
    pub timer_c: Duration,
    /// Overload control of initial requests.
    pub overload: OverloadConfig,
}

impl ProxyConfig {
    /// This core's own address.
    pub fn own_address(&self) -> SocketAddr {
        let mut own = self.listen;
        own.set_port(self.listen.port() + 1 + self.core);
        own
    }
}

/// Per-transaction state: the server side facing upstream and the client side facing the
/// next hop. Buffers are released as soon as no retransmission can need them.
#[derive(Debug)]
struct Context {
    server: ServerTransaction,
    upstream: SocketAddr,
    upstream_protocol: Protocol,
    client: Option<ClientTransaction>,
    downstream: SocketAddr,
    downstream_protocol: Protocol,
    branch: Branch,
    /// The request as forwarded (for retransmission, and to build ACK and CANCEL).
    request: Vec<u8>,
    /// The latest response sent upstream (for retransmission).
    response: Vec<u8>,
    cancel: Option<ClientTransaction>,
    cancel_request: Vec<u8>,
    /// A CANCEL arrived before any provisional response: send it when one arrives (§9.1).
    cancel_pending: bool,
    scheduled: Option<Instant>,
    /// Timer C (RFC 3261 §16.6 step 11): an INVITE that rings too long is cancelled, and
    /// answered 408 if even the CANCEL brings no final response.
    timer_c: Option<Instant>,
    timer_c_fired: bool,
    /// When the request reached the socket, for the latency histograms.
    received: Instant,
    provisional_sent: bool,
    /// The request's slot in the per-method counters.
    method: usize,
}

impl Context {
    fn is_done(&self) -> bool {
        self.server.is_terminated()
            && self
                .client
                .as_ref()
                .is_none_or(ClientTransaction::is_terminated)
            && self
                .cancel
                .as_ref()
                .is_none_or(ClientTransaction::is_terminated)
    }

    fn next_deadline(&self) -> Option<Instant> {
        [
            self.server.poll_timeout(),
            self.client
                .as_ref()
                .and_then(ClientTransaction::poll_timeout),
            self.cancel
                .as_ref()
                .and_then(ClientTransaction::poll_timeout),
            self.timer_c,
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

/// Option tags this proxy supports in Proxy-Require: none.
const SUPPORTED: &[&[u8]] = &[];

/// Pooled buffers kept per core.
const POOL_SIZE: usize = 4096;

/// One core's transaction-stateful proxy.
#[derive(Debug)]
pub struct ProxyCore {
    config: ProxyConfig,
    identity: Identity,
    via_host: ArrayVec<u8, 48>,
    own_port: u16,
    record_route: ArrayVec<u8, 64>,
    table: TransactionTable<Context>,
    wheel: TimerWheel<(TxnId, Instant)>,
    pool: BufferPool,
    out: Vec<u8>,
    scratch: Vec<u8>,
    transmits: Vec<Transmit>,
    due: Vec<(TxnId, Instant)>,
    /// The transport of the message being handled: locally generated answers use it.
    arrived_over: Protocol,
    stats: Stats,
    monitor: LoadMonitor,
    latency: Latency,
}

fn write_ip(out: &mut ArrayVec<u8, 48>, ip: std::net::IpAddr) {
    use std::io::Write;
    let mut text = [0u8; 48];
    let mut cursor = std::io::Cursor::new(&mut text[..]);
    let written = match ip {
        std::net::IpAddr::V4(v4) => write!(cursor, "{v4}"),
        std::net::IpAddr::V6(v6) => write!(cursor, "[{v6}]"),
    };
    written.expect("an IP address fits 48 bytes");
    let len = cursor.position() as usize;
    out.try_extend_from_slice(&text[..len]).expect("fits");
}

impl ProxyCore {
    /// A proxy for one core, starting at `now`.
    pub fn new(config: ProxyConfig, now: Instant) -> Self {
        let own = config.own_address();
        let mut via_host = ArrayVec::new();
        write_ip(&mut via_host, own.ip());
        let mut record_route = ArrayVec::new();
        record_route.try_extend_from_slice(b"sip:").expect("fits");
        let mut host = ArrayVec::<u8, 48>::new();
        write_ip(&mut host, config.listen.ip());
        record_route.try_extend_from_slice(&host).expect("fits");
        let port = format!(":{};lr", config.listen.port());
        record_route
            .try_extend_from_slice(port.as_bytes())
            .expect("fits");
        Self {
            identity: Identity {
                ip: config.listen.ip(),
                first_port: config.listen.port(),
                last_port: config.listen.port() + config.cores,
            },
            via_host,
            own_port: own.port(),
            record_route,
            table: TransactionTable::with_limit(config.max_transactions),
            wheel: TimerWheel::new(now, Duration::from_millis(10), 4096),
            pool: BufferPool::new(POOL_SIZE),
            out: Vec::with_capacity(64 * 1024),
            scratch: Vec::with_capacity(8 * 1024),
            transmits: Vec::with_capacity(256),
            due: Vec::with_capacity(256),
            arrived_over: Protocol::Udp,
            stats: Stats::default(),
            monitor: LoadMonitor::new(config.overload, now),
            latency: Latency::default(),
            config,
        }
    }

    /// Counters since start.
    pub const fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Latency histograms since start.
    pub const fn latency(&self) -> &Latency {
        &self.latency
    }

    /// The overload monitor's state.
    pub const fn load_monitor(&self) -> &LoadMonitor {
        &self.monitor
    }

    /// Transactions in the table.
    pub fn active_transactions(&self) -> usize {
        self.table.len()
    }

    /// The datagrams to send, in order, with their bytes.
    pub fn transmits(&self) -> impl Iterator<Item = (&Transmit, &[u8])> {
        self.transmits
            .iter()
            .map(|t| (t, &self.out[t.range.clone()]))
    }

    /// Forgets the datagrams returned by [`transmits`](Self::transmits) once sent.
    pub fn clear_transmits(&mut self) {
        self.transmits.clear();
        self.out.clear();
    }

    /// When [`on_timers`](Self::on_timers) must next run.
    pub fn next_timer(&self) -> Option<Instant> {
        self.wheel.next_expiry()
    }

    fn queue(
        &mut self,
        (protocol, socket): (Protocol, Socket),
        to: SocketAddr,
        bytes: &[u8],
        client: Option<TxnId>,
    ) {
        let start = self.out.len();
        self.out.extend_from_slice(bytes);
        self.transmits.push(Transmit {
            protocol,
            socket,
            to,
            range: start..self.out.len(),
            client,
        });
    }

    fn count_request_out(&mut self, method: Method<'_>) {
        self.stats.requests_out[method_index(method)] += 1;
    }

    /// Handles one UDP datagram received now.
    pub fn on_datagram(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        self.on_message(now, now, from, Protocol::Udp, datagram);
    }

    /// Handles one message: a UDP datagram, or one message framed out of a TCP stream
    /// (it must then carry Content-Length). `received` is when it reached the socket (the
    /// kernel's timestamp for UDP): the time it waited counts in the latency that overload
    /// control and the histograms see.
    pub fn on_message(
        &mut self,
        now: Instant,
        received: Instant,
        from: SocketAddr,
        protocol: Protocol,
        datagram: &[u8],
    ) {
        self.arrived_over = protocol;
        let framing = match protocol {
            Protocol::Udp => sip::Framing::Datagram,
            Protocol::Tcp => sip::Framing::Stream,
        };
        let Ok(msg) = Message::parse_framed(datagram, framing) else {
            self.reject_unparsed(datagram);
            return;
        };
        match msg.method() {
            Some(method) => {
                self.stats.requests_in[method_index(method)] += 1;
                self.on_request(now, received, from, &msg, method);
            }
            None => {
                let status = msg.status().unwrap_or(0);
                self.stats.responses_in[class_index(status)] += 1;
                self.on_response(now, &msg, status);
            }
        }
    }

    fn reject_unparsed(&mut self, _datagram: &[u8]) {
        // Without a parsed Via there is nowhere to send an answer: count and drop.
        self.stats.parse_errors += 1;
    }

    /// Answers a request we do not forward, statelessly: a retransmission of the request
    /// gets the same answer again, with the same To tag.
    fn respond(
        &mut self,
        request: &Message<'_>,
        from: SocketAddr,
        status: u16,
        extra: &[(&'static str, &[u8])],
    ) {
        let tag = route::local_tag(request);
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        if build::response(request, status, &tag, extra, &mut scratch).is_ok() {
            self.stats.responses_out[class_index(status)] += 1;
            self.queue(
                (self.arrived_over, Socket::Shared),
                response_target(request, from),
                &scratch,
                None,
            );
        }
        self.scratch = scratch;
    }

    fn on_request(
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

    fn on_ack(&mut self, now: Instant, msg: &Message<'_>) {
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
        // An ACK for a 2xx is a transaction of its own and is forwarded statelessly.
        self.forward_stateless(msg);
    }

    fn on_cancel(&mut self, now: Instant, from: SocketAddr, msg: &Message<'_>) {
        let found = TxnKey::server_for_cancelled_invite(msg)
            .ok()
            .and_then(|key| self.table.find(&key));
        let Some(id) = found else {
            // Nothing to cancel here: forward statelessly (§16.10).
            self.forward_stateless(msg);
            return;
        };
        self.respond(msg, from, 200, &[]);
        let Some(ctx) = self.table.get_mut(id) else {
            return;
        };
        match ctx.client.as_ref().map(ClientTransaction::state) {
            Some(ClientState::Proceeding) if ctx.cancel.is_none() => self.send_cancel(now, id),
            Some(ClientState::Calling) => ctx.cancel_pending = true,
            // Already answered, or the INVITE was never forwarded: nothing to cancel.
            _ => {}
        }
    }

    fn send_cancel(&mut self, now: Instant, id: TxnId) {
        let Some(ctx) = self.table.get_mut(id) else {
            return;
        };
        ctx.cancel_pending = false;
        let mut buf = self.pool.take();
        let built = Message::parse(&ctx.request)
            .ok()
            .and_then(|request| build::cancel(&request, &mut buf));
        if built.is_none() {
            self.pool.give(buf);
            return;
        }
        let (cancel, actions) = ClientTransaction::start(
            Kind::NonInvite,
            ctx.downstream_protocol.reliability(),
            self.config.timers,
            now,
        );
        ctx.cancel = Some(cancel);
        ctx.cancel_request = buf;
        self.apply_cancel(now, id, actions);
    }

    fn on_new_or_retransmitted(
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
        if initial && method != Method::Options {
            if !self.monitor.admit(now) {
                self.stats.overload_rejections += 1;
                self.respond(msg, from, 503, &[("Retry-After", RETRY_AFTER)]);
                return;
            }
            self.monitor
                .request_complete(now.saturating_duration_since(received), now);
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
        let kind = Kind::of(method);
        let upstream_protocol = self.arrived_over;
        let server = ServerTransaction::new(
            kind,
            upstream_protocol.reliability(),
            self.config.timers,
            now,
        );
        let context = Context {
            server,
            upstream: response_target(msg, from),
            upstream_protocol,
            client: None,
            downstream: plan.target,
            downstream_protocol: plan.protocol,
            branch: Branch::new(),
            request: self.pool.take(),
            response: self.pool.take(),
            cancel: None,
            cancel_request: Vec::new(),
            cancel_pending: false,
            scheduled: None,
            timer_c: None,
            timer_c_fired: false,
            received,
            provisional_sent: false,
            method: method_index(method),
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
        self.forward(now, id, msg, method, &plan, loop_hash);
    }

    fn is_addressed_to_us(&self, msg: &Message<'_>) -> bool {
        msg.routes().next().is_none()
            && msg
                .request_uri()
                .and_then(Result::ok)
                .is_some_and(|uri| self.identity.is_us_uri(&uri))
    }

    /// §16.3 step 4: a Via of ours whose branch carries the loop hash this request has now.
    fn is_loop(&self, msg: &Message<'_>, loop_hash: u64) -> bool {
        msg.vias().flatten().any(|via| {
            self.identity.is_us(Some(via.host()), via.port(), false)
                && via
                    .branch()
                    .and_then(route::parse_stateful_branch)
                    .is_some_and(|(hash, _, _)| hash == loop_hash)
        })
    }

    /// §16.4 and §16.5: which Route edits apply, and where the request goes.
    fn plan_route(&self, msg: &Message<'_>) -> Option<RoutePlan> {
        let mut routes = ArrayVec::<sip::NameAddr<'_>, 8>::new();
        for route in msg.routes() {
            if routes.try_push(route.ok()?).is_err() {
                break;
            }
        }
        let ruri = msg.request_uri()?.ok()?;
        let (mut restore, mut pop, mut strict) = (false, false, false);
        let mut first = 0;
        let mut last = routes.len();
        let mut target_uri = ruri;
        if self.identity.is_us_uri(&ruri) && !routes.is_empty() {
            // The previous hop was a strict router and put our Record-Route in the R-URI.
            restore = true;
            last -= 1;
            target_uri = *routes[last].uri();
        }
        if first < last && self.identity.is_us_uri(routes[first].uri()) {
            pop = true;
            first += 1;
        }
        if first < last {
            let next = routes[first].uri();
            strict = !next.is_loose_route() && !restore;
            target_uri = *next;
        }
        // RFC 3261 §18.1.1: transport=tcp asks for TCP; a request near the MTU takes it too
        // (the estimate adds room for our Via and Record-Route).
        let tcp_param = target_uri
            .params()
            .get(b"transport")
            .flatten()
            .is_some_and(|t| t.eq_ignore_ascii_case(b"tcp"));
        let large = msg.as_bytes().len() + 160 > UDP_LIMIT;
        Some(RoutePlan {
            protocol: if tcp_param || large {
                Protocol::Tcp
            } else {
                Protocol::Udp
            },
            target: route::uri_target(&target_uri)?,
            pop_route: pop,
            restore_from_last_route: restore,
            strict_next_hop: strict,
        })
    }

    fn forward(
        &mut self,
        now: Instant,
        id: TxnId,
        msg: &Message<'_>,
        method: Method<'_>,
        plan: &RoutePlan,
        loop_hash: u64,
    ) {
        let branch = route::stateful_branch(loop_hash, self.config.core, id);
        let record_route = msg.to().ok().and_then(|to| to.tag()).is_none()
            && matches!(
                method,
                Method::Invite | Method::Subscribe | Method::Refer | Method::Notify
            );
        let Some(ctx) = self.table.get_mut(id) else {
            return;
        };
        let mut buf = std::mem::take(&mut ctx.request);
        buf.clear();
        let via = ViaSpec {
            transport: plan.protocol.via_token(),
            host: &self.via_host,
            port: Some(self.own_port),
            branch: &branch,
            rport: true,
        };
        let written = edit_forwarded(
            msg,
            via,
            plan,
            record_route.then_some(&self.record_route[..]),
            &mut buf,
        );
        ctx.request = buf;
        ctx.branch = branch;
        if written.is_err() {
            // Cannot happen for a validated request short of the header limit: answer 513
            // rather than forward something the next hop cannot parse.
            self.send_response_upstream(now, id, msg, 513, false);
            self.finish_if_done(id);
            return;
        }
        let (client, actions) = ClientTransaction::start(
            Kind::of(method),
            plan.protocol.reliability(),
            self.config.timers,
            now,
        );
        if let Some(ctx) = self.table.get_mut(id) {
            ctx.client = Some(client);
        }
        self.apply_client(now, id, actions, None);
    }

    /// A response generated here for the server transaction `id` (100 Trying, 408, 503).
    fn send_response_upstream(
        &mut self,
        now: Instant,
        id: TxnId,
        request: &Message<'_>,
        status: u16,
        untagged: bool,
    ) {
        let tag = route::local_tag(request);
        let Some(ctx) = self.table.get_mut(id) else {
            return;
        };
        let Ok(actions) = ctx.server.send_response(status, now) else {
            return;
        };
        ctx.response.clear();
        let tag: &[u8] = if untagged { b"" } else { &tag };
        if build::response(request, status, tag, &[], &mut ctx.response).is_err() {
            return;
        }
        self.apply_server(now, id, actions);
    }

    /// A response generated here from the request we forwarded (the original is gone):
    /// built on the forwarded copy, then our Via is taken off again.
    fn answer_from_forwarded(&mut self, now: Instant, id: TxnId, status: u16) {
        let Some(ctx) = self.table.get_mut(id) else {
            return;
        };
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        let built = Message::parse(&ctx.request).ok().and_then(|forwarded| {
            let tag = route::local_tag(&forwarded);
            build::response(&forwarded, status, &tag, &[], &mut scratch).ok()
        });
        let stripped = built.and_then(|_| {
            let response = Message::parse(&scratch).ok()?;
            ctx.response.clear();
            Editor::new(&response)
                .remove_top_via()
                .and_then(|e| e.write(&mut ctx.response))
                .ok()
        });
        self.scratch = scratch;
        if stripped.is_none() {
            return;
        }
        if let Ok(actions) = ctx.server.send_response(status, now) {
            self.apply_server(now, id, actions);
        }
    }

    fn on_response(&mut self, now: Instant, msg: &Message<'_>, status: u16) {
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
                let ctx = self.table.get(id)?;
                (ctx.branch.as_slice() == branch).then_some(id)
            });
        let Some(id) = owned else {
            self.forward_response_stateless(msg);
            return;
        };
        if cseq.method == Method::Cancel {
            let Some(ctx) = self.table.get_mut(id) else {
                return;
            };
            let Some(cancel) = ctx.cancel.as_mut() else {
                return;
            };
            // The 200 to our CANCEL ends here: upstream got its own 200 from us.
            let actions = cancel.on_response(status, now);
            self.apply_cancel(now, id, actions);
            return;
        }
        let Some(ctx) = self.table.get_mut(id) else {
            return;
        };
        let Some(client) = ctx.client.as_mut() else {
            return;
        };
        let actions = client.on_response(status, now);
        if actions.is_empty() {
            self.stats.absorbed += 1;
        }
        self.apply_client(now, id, actions, Some(msg));
    }

    /// §16.7: forward a response upstream on its server transaction, without our Via.
    fn relay_response(&mut self, now: Instant, id: TxnId, msg: &Message<'_>, status: u16) {
        if status == 100 {
            // 100 Trying is hop-by-hop: we sent our own. It is still a provisional response:
            // it ends Timer B, so Timer C must run from here or a silent branch would hold
            // the transaction forever, and a CANCEL held for a provisional may go (§9.1).
            let timer_c = self.config.timer_c;
            if let Some(ctx) = self.table.get_mut(id)
                && ctx.server.kind() == Kind::Invite
                && ctx.timer_c.is_none()
                && !ctx.timer_c_fired
            {
                ctx.timer_c = Some(now + timer_c);
            }
            self.send_pending_cancel(now, id);
            return;
        }
        if status == 503 {
            // Downstream overload counts against our own rate (Clearwater's penalties).
            self.monitor.penalize();
        }
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
        } else if !ctx.provisional_sent {
            ctx.provisional_sent = true;
            self.latency.record_provisional(waited);
        }
        if ctx.response.capacity() == 0 {
            // Released to the pool after the first 2xx; a 2xx retransmission needs one again.
            ctx.response = self.pool.take();
        }
        ctx.response.clear();
        let written = Editor::new(msg)
            .remove_top_via()
            .and_then(|e| e.write(&mut ctx.response));
        if written.is_err() {
            self.stats.parse_errors += 1;
            return;
        }
        self.apply_server(now, id, actions);
        let provisional = (101..200).contains(&status);
        let timer_c = self.config.timer_c;
        if let Some(ctx) = self.table.get_mut(id)
            && ctx.server.kind() == Kind::Invite
        {
            ctx.timer_c = (provisional && !ctx.timer_c_fired).then(|| now + timer_c);
        }
        if provisional {
            self.send_pending_cancel(now, id);
        }
    }

    /// Sends the CANCEL that waited for a provisional response (§9.1), if there is one.
    fn send_pending_cancel(&mut self, now: Instant, id: TxnId) {
        let pending = self
            .table
            .get(id)
            .is_some_and(|ctx| ctx.cancel_pending && ctx.cancel.is_none());
        if pending {
            self.send_cancel(now, id);
        }
    }

    fn apply_server(&mut self, now: Instant, id: TxnId, actions: Actions) {
        for action in actions {
            match action {
                Action::SendResponse => {
                    let Some(ctx) = self.table.get(id) else {
                        return;
                    };
                    let path = (ctx.upstream_protocol, Socket::Shared);
                    let (to, status) = (ctx.upstream, status_of(&ctx.response));
                    let response =
                        std::mem::take(&mut self.table.get_mut(id).expect("present").response);
                    self.queue(path, to, &response, None);
                    self.stats.responses_out[class_index(status)] += 1;
                    let ctx = self.table.get_mut(id).expect("present");
                    ctx.response = response;
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

    fn apply_client(
        &mut self,
        now: Instant,
        id: TxnId,
        actions: Actions,
        response: Option<&Message<'_>>,
    ) {
        for action in actions {
            match action {
                Action::SendRequest => {
                    let Some(ctx) = self.table.get_mut(id) else {
                        return;
                    };
                    let request = std::mem::take(&mut ctx.request);
                    let (to, path) = (ctx.downstream, (ctx.downstream_protocol, Socket::Own));
                    let method = ctx.method;
                    self.queue(path, to, &request, Some(id));
                    self.stats.requests_out[method] += 1;
                    self.table.get_mut(id).expect("present").request = request;
                }
                Action::SendAck => {
                    let Some(response) = response else { continue };
                    let Some(ctx) = self.table.get(id) else {
                        return;
                    };
                    let mut scratch = std::mem::take(&mut self.scratch);
                    scratch.clear();
                    let built = Message::parse(&ctx.request)
                        .ok()
                        .and_then(|request| build::ack(&request, response, &mut scratch));
                    if built.is_some() {
                        let (to, path) = (ctx.downstream, (ctx.downstream_protocol, Socket::Own));
                        self.queue(path, to, &scratch, None);
                        self.count_request_out(Method::Ack);
                    }
                    self.scratch = scratch;
                }
                Action::DeliverResponse => {
                    if let Some(response) = response {
                        let status = response.status().unwrap_or(0);
                        self.relay_response(now, id, response, status);
                    }
                }
                Action::Timeout => {
                    self.stats.timeouts += 1;
                    let invite = self
                        .table
                        .get(id)
                        .is_some_and(|ctx| ctx.server.kind() == Kind::Invite);
                    if invite {
                        self.answer_from_forwarded(now, id, 408);
                    } else {
                        // RFC 4320 §4.1: no 408 for a non-INVITE; the client has given up.
                        self.end_server(id);
                    }
                }
                Action::TransportError => self.answer_from_forwarded(now, id, 503),
                Action::AckTimeout | Action::SendResponse | Action::Terminated => {}
            }
        }
        self.release_request_if_unneeded(id);
        self.reschedule(now, id);
    }

    fn apply_cancel(&mut self, now: Instant, id: TxnId, actions: Actions) {
        for action in actions {
            if action == Action::SendRequest {
                let Some(ctx) = self.table.get_mut(id) else {
                    return;
                };
                let request = std::mem::take(&mut ctx.cancel_request);
                let (to, path) = (ctx.downstream, (ctx.downstream_protocol, Socket::Own));
                self.queue(path, to, &request, None);
                self.count_request_out(Method::Cancel);
                self.table.get_mut(id).expect("present").cancel_request = request;
            }
        }
        self.reschedule(now, id);
    }

    /// The forwarded request is needed only while the client transaction may retransmit
    /// it or build an ACK or CANCEL from it.
    fn release_request_if_unneeded(&mut self, id: TxnId) {
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

    fn end_server(&mut self, id: TxnId) {
        if let Some(ctx) = self.table.get_mut(id) {
            let _ = ctx.server.on_transport_error();
        }
    }

    fn reschedule(&mut self, _now: Instant, id: TxnId) {
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

    fn finish_if_done(&mut self, id: TxnId) {
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

    fn on_timer_c(&mut self, now: Instant, id: TxnId) {
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
        let actions = client.on_transport_error();
        self.apply_client(now, id, actions, None);
    }

    /// §16.11: forward without a transaction (ACK for 2xx, CANCEL with nothing to cancel).
    fn forward_stateless(&mut self, msg: &Message<'_>) {
        if msg.proxy_precheck(SUPPORTED).is_err() {
            return;
        }
        let Some(plan) = self.plan_route(msg) else {
            return;
        };
        let branch = route::stateless_branch(msg);
        let via = ViaSpec {
            transport: plan.protocol.via_token(),
            host: &self.via_host,
            port: Some(self.own_port),
            branch: &branch,
            rport: true,
        };
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        if edit_forwarded(msg, via, &plan, None, &mut scratch).is_ok() {
            self.queue((plan.protocol, Socket::Own), plan.target, &scratch, None);
            if let Some(method) = msg.method() {
                self.count_request_out(method);
            }
        }
        self.scratch = scratch;
    }

    /// §16.7 step 2: a response with no transaction here goes on statelessly if the top
    /// Via is ours.
    fn forward_response_stateless(&mut self, msg: &Message<'_>) {
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
        scratch.clear();
        let written = Editor::new(msg)
            .remove_top_via()
            .and_then(|e| e.write(&mut scratch));
        if written.is_ok() {
            self.stats.stateless_responses += 1;
            let status = msg.status().unwrap_or(0);
            self.stats.responses_out[class_index(status)] += 1;
            self.queue((protocol, Socket::Shared), to, &scratch, None);
        }
        self.scratch = scratch;
    }
}

/// Seconds a client is asked to wait after a 503 for overload or a full table.
const RETRY_AFTER: &[u8] = b"2";

const ALLOW: &[u8] = b"INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, SUBSCRIBE, NOTIFY, PRACK, UPDATE, INFO, MESSAGE, REFER, PUBLISH";

#[derive(Debug)]
struct RoutePlan {
    protocol: Protocol,
    target: SocketAddr,
    pop_route: bool,
    restore_from_last_route: bool,
    strict_next_hop: bool,
}

fn edit_forwarded(
    msg: &Message<'_>,
    via: ViaSpec<'_>,
    plan: &RoutePlan,
    record_route: Option<&[u8]>,
    out: &mut Vec<u8>,
) -> Result<usize, sip::EditError> {
    let mut editor = Editor::new(msg);
    editor.add_via(via)?.decrement_max_forwards()?;
    if plan.restore_from_last_route {
        editor.restore_request_uri_from_last_route()?;
    }
    if plan.pop_route && plan.strict_next_hop {
        // The Editor reads the original message, whose top Route is still ours: write the
        // popped copy first, then route that to the strict router. Rare (RFC 2543 next
        // hop), so the extra copy and its allocation do not matter.
        editor.pop_route()?;
        if let Some(uri) = record_route {
            editor.add_record_route(uri)?;
        }
        let mut popped = Vec::with_capacity(msg.as_bytes().len() + 256);
        editor.write(&mut popped)?;
        let popped = Message::parse(&popped)
            .map_err(|_| sip::EditError::Malformed(sip::HeaderName::Route))?;
        return Editor::new(&popped).route_to_strict_router()?.write(out);
    }
    if plan.pop_route {
        editor.pop_route()?;
    }
    if plan.strict_next_hop {
        editor.route_to_strict_router()?;
    }
    if let Some(uri) = record_route {
        editor.add_record_route(uri)?;
    }
    editor.write(out)
}

/// Where a response to `request` goes (RFC 3261 §18.2.2 with RFC 3581): back to the
/// source address for UDP, which covers `received` and `rport`.
fn response_target(_request: &Message<'_>, from: SocketAddr) -> SocketAddr {
    from
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

fn status_of(response: &[u8]) -> u16 {
    response
        .get(8..11)
        .and_then(|d| std::str::from_utf8(d).ok())
        .and_then(|d| d.parse().ok())
        .unwrap_or(0)
}
