//! One core's proxy: the transaction table, the timer wheel and the RFC 3261 §16 logic.

use std::net::SocketAddr;
use std::ops::Range;
use std::time::{Duration, Instant};

use arrayvec::ArrayVec;
use sip::{Message, Method};
use smallvec::SmallVec;
use txn::{
    ClientTransaction, ServerTransaction, TimerConfig, TimerWheel, TransactionTable, Transport,
    TxnId,
};

use crate::best_response::{MAX_BRANCHES, ResponseContext};
use crate::build;
use crate::latency::Latency;
use crate::overload::{LoadMonitor, OverloadConfig};
use crate::pool::BufferPool;
use crate::route::{self, Branch, Identity};
use crate::router::{FollowRoute, Router, Routing, Target};
use crate::stats::{Stats, class_index, method_index};

mod deferred;
mod lifecycle;
mod request;
mod response;

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
    /// The branch whose request this is, so a send failure reaches it.
    pub client: Option<ForkId>,
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

    /// Whether `uri` names this proxy (its listening address or any core's own port).
    pub fn is_own_uri(&self, uri: &sip::Uri<'_>) -> bool {
        Identity {
            ip: self.listen.ip(),
            first_port: self.listen.port(),
            last_port: self.listen.port() + self.cores,
        }
        .is_us_uri(uri)
    }
}

/// One branch of a forwarded request, as the engine reports a send failure for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ForkId {
    pub(crate) txn: TxnId,
    pub(crate) fork: u8,
}

/// One branch of a forwarded request (§16.6): its client transaction, its CANCEL, and
/// Timer C, which runs per branch.
#[derive(Debug)]
struct Fork {
    client: Option<ClientTransaction>,
    downstream: SocketAddr,
    protocol: Protocol,
    /// The request went by TCP only because of its size; UDP is the fallback.
    udp_fallback: bool,
    branch: Branch,
    /// The request as forwarded (for retransmission, and to build ACK and CANCEL).
    request: Vec<u8>,
    cancel: Option<ClientTransaction>,
    cancel_request: Vec<u8>,
    /// A CANCEL is wanted before any provisional response: send it when one arrives (§9.1).
    cancel_pending: bool,
    /// Timer C (RFC 3261 §16.6 step 11): a branch that rings too long is cancelled, and
    /// counts as 408 if even the CANCEL brings no final response.
    timer_c: Option<Instant>,
    timer_c_fired: bool,
    /// This branch's final non-2xx response without our Via, held while other branches
    /// are pending (§16.7 step 4); empty when the final was generated here.
    held: Vec<u8>,
    /// The status generated here for this branch (408 on timeout, 503 on a transport
    /// error), 0 if none: sent as it is if it turns out to be the best.
    local_status: u16,
}

impl Fork {
    fn new(target: &Target) -> Self {
        Self {
            client: None,
            downstream: target.address,
            protocol: target.protocol,
            udp_fallback: target.udp_fallback,
            branch: Branch::new(),
            request: Vec::new(),
            cancel: None,
            cancel_request: Vec::new(),
            cancel_pending: false,
            timer_c: None,
            timer_c_fired: false,
            held: Vec::new(),
            local_status: 0,
        }
    }

    fn is_done(&self) -> bool {
        self.client
            .as_ref()
            .is_none_or(ClientTransaction::is_terminated)
            && self
                .cancel
                .as_ref()
                .is_none_or(ClientTransaction::is_terminated)
    }

    fn next_deadline(&self) -> Option<Instant> {
        [
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

/// Branch `fork` of transaction `id`. Free functions, so that the table alone is
/// borrowed and the core's other fields (the pool, the outbox) stay usable beside it.
fn fork_mut(table: &mut TransactionTable<Context>, id: TxnId, fork: usize) -> Option<&mut Fork> {
    table.get_mut(id).and_then(|ctx| ctx.forks.get_mut(fork))
}

fn fork_ref(table: &TransactionTable<Context>, id: TxnId, fork: usize) -> Option<&Fork> {
    table.get(id).and_then(|ctx| ctx.forks.get(fork))
}

/// Per-transaction state: the server side facing upstream and a branch per target.
/// Buffers are released as soon as no retransmission can need them.
#[derive(Debug)]
struct Context {
    server: ServerTransaction,
    upstream: SocketAddr,
    upstream_protocol: Protocol,
    /// The latest response sent upstream (for retransmission).
    response: Vec<u8>,
    scheduled: Option<Instant>,
    /// When the request reached the socket, for the latency histograms.
    received: Instant,
    /// An initial request that overload control admitted and that was deferred: its
    /// latency is sampled when the engine's answer lets it go on.
    monitored: bool,
    provisional_sent: bool,
    /// The request's slot in the per-method counters.
    method: usize,
    /// §16.7 response selection over the branches.
    responses: ResponseContext,
    /// One in the plain proxy: inline, so forwarding allocates nothing.
    forks: SmallVec<[Fork; 1]>,
    /// The request as received, while its router's decision is deferred; else empty.
    original: Vec<u8>,
    /// A request this proxy originated (a NOTIFY): no upstream, its result is reported.
    originated: bool,
}

impl Context {
    fn is_done(&self) -> bool {
        self.server.is_terminated() && self.forks.iter().all(Fork::is_done)
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.forks
            .iter()
            .filter_map(Fork::next_deadline)
            .chain(self.server.poll_timeout())
            .min()
    }
}

/// Option tags this proxy supports in Proxy-Require: none.
const SUPPORTED: &[&[u8]] = &[];

/// Pooled buffers kept per core.
const POOL_SIZE: usize = 4096;

/// What a core has to send, its bytes in one buffer. A field of its own so that a
/// transaction's buffer can be queued while the transaction table is borrowed.
#[derive(Debug)]
struct Outbox {
    bytes: Vec<u8>,
    transmits: Vec<Transmit>,
}

impl Outbox {
    fn push(
        &mut self,
        (protocol, socket): (Protocol, Socket),
        to: SocketAddr,
        bytes: &[u8],
        client: Option<ForkId>,
    ) {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(bytes);
        self.transmits.push(Transmit {
            protocol,
            socket,
            to,
            range: start..self.bytes.len(),
            client,
        });
    }
}

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
    outbox: Outbox,
    scratch: Vec<u8>,
    /// A second scratch buffer, for responses rewritten from a scratch copy.
    scratch_response: Vec<u8>,
    due: Vec<(TxnId, Instant)>,
    /// The transport of the message being handled: locally generated answers use it.
    arrived_over: Protocol,
    stats: Stats,
    monitor: LoadMonitor,
    latency: Latency,
    router: Box<dyn Router>,
    /// The router's answer for the request being handled, reused.
    targets: Vec<Target>,
    /// Transactions deferred since the engine last asked.
    deferred: Vec<TxnId>,
    /// Final statuses of originated requests since the engine last asked.
    originated_results: Vec<(TxnId, u16)>,
    /// Numbers the keys of originated requests.
    originated_count: u64,
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
    /// The plain proxy for one core, starting at `now`: every request goes where its
    /// Route or Request-URI says ([`FollowRoute`]).
    pub fn new(config: ProxyConfig, now: Instant) -> Self {
        Self::with_router(config, now, Box::new(FollowRoute))
    }

    /// A proxy for one core whose targets `router` chooses.
    pub fn with_router(config: ProxyConfig, now: Instant, router: Box<dyn Router>) -> Self {
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
            outbox: Outbox {
                bytes: Vec::with_capacity(64 * 1024),
                transmits: Vec::with_capacity(256),
            },
            scratch: Vec::with_capacity(8 * 1024),
            scratch_response: Vec::with_capacity(8 * 1024),
            due: Vec::with_capacity(256),
            arrived_over: Protocol::Udp,
            stats: Stats::default(),
            monitor: LoadMonitor::new(config.overload, now),
            latency: Latency::default(),
            router,
            targets: Vec::with_capacity(MAX_BRANCHES),
            deferred: Vec::new(),
            originated_results: Vec::new(),
            originated_count: 0,
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
        self.outbox
            .transmits
            .iter()
            .map(|t| (t, &self.outbox.bytes[t.range.clone()]))
    }

    /// Forgets the datagrams returned by [`transmits`](Self::transmits) once sent.
    pub fn clear_transmits(&mut self) {
        self.outbox.transmits.clear();
        self.outbox.bytes.clear();
    }

    /// When [`on_timers`](Self::on_timers) must next run.
    pub fn next_timer(&self) -> Option<Instant> {
        self.wheel.next_expiry()
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
        // A datagram that would start new work while the core is behind is shed before it
        // costs a parse: its sender retransmits, and the requests behind it are the ones
        // worth serving. Over TCP nothing retransmits, so it is refused 503 later.
        if protocol == Protocol::Udp
            && self
                .monitor
                .should_drop(now.saturating_duration_since(received), now)
            && sip::is_initial_request(datagram)
        {
            self.stats.overload_drops += 1;
            return;
        }
        let framing = match protocol {
            Protocol::Udp => sip::Framing::Datagram,
            Protocol::Tcp => sip::Framing::Stream,
        };
        // Borrowed where it was returned: moving a 3 KB message out of its Result is a copy.
        let parsed = Message::parse_framed(datagram, framing);
        let Ok(msg) = &parsed else {
            self.reject_unparsed(from, datagram);
            return;
        };
        match msg.method() {
            Some(method) => {
                self.stats.requests_in[method_index(method)] += 1;
                self.on_request(now, received, from, msg, method);
            }
            None => {
                let status = msg.status().unwrap_or(0);
                self.stats.responses_in[class_index(status)] += 1;
                self.on_response(now, msg, status);
            }
        }
    }

    /// A message that does not parse: a request gets the status the RFC gives (400, 505,
    /// 513) with what could be salvaged of its Via, From, To, Call-ID and CSeq lines; a
    /// response is dropped. Either way it is counted.
    fn reject_unparsed(&mut self, from: SocketAddr, datagram: &[u8]) {
        self.stats.parse_errors += 1;
        let sip::Verdict::Reject {
            status: Some(status),
            ..
        } = sip::inspect(datagram)
        else {
            return;
        };
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        if build::salvaged_response(datagram, status, &mut scratch).is_some() {
            self.stats.responses_out[class_index(status)] += 1;
            self.outbox
                .push((self.arrived_over, Socket::Shared), from, &scratch, None);
        }
        self.scratch = scratch;
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
        let built = build::response(request, status, &tag, extra, &mut scratch).is_ok() || {
            // A request missing From, To, Call-ID or CSeq cannot be answered the normal
            // way; RFC 4475 (`insuf`) still wants its 400, so answer with what is there.
            scratch.clear();
            build::salvaged_response(request.as_bytes(), status, &mut scratch).is_some()
        };
        if built {
            self.stats.responses_out[class_index(status)] += 1;
            self.outbox.push(
                (self.arrived_over, Socket::Shared),
                response_target(request, from),
                &scratch,
                None,
            );
        }
        self.scratch = scratch;
    }
}

/// Seconds a client is asked to wait after a 503 for overload or a full table.
const RETRY_AFTER: &[u8] = b"2";

const ALLOW: &[u8] = b"INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, SUBSCRIBE, NOTIFY, PRACK, UPDATE, INFO, MESSAGE, REFER, PUBLISH";

/// Where a response to `request` goes (RFC 3261 §18.2.2 with RFC 3581): back to the
/// source address for UDP, which covers `received` and `rport`.
fn response_target(_request: &Message<'_>, from: SocketAddr) -> SocketAddr {
    from
}

fn status_of(response: &[u8]) -> u16 {
    response
        .get(8..11)
        .and_then(|d| std::str::from_utf8(d).ok())
        .and_then(|d| d.parse().ok())
        .unwrap_or(0)
}
