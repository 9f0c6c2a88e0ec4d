//! One core: its two UDP sockets, its TCP listener and connections, its proxy and timers,
//! on one pinned glommio executor. Nothing here is shared with another core except the
//! metrics slot it publishes.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, RawFd};
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

use futures_lite::future;
use glommio::net::{TcpListener, UdpSocket as GlommioUdp};
use glommio::timer::Timer;
use proxy::{Protocol, ProxyConfig, ProxyCore, Socket};
use socket2::Socket as RawSocket;

use crate::coalesce::Coalescer;
use crate::metrics::{CoreSnapshot, Registry};
use crate::scscf::store::AorStore;
use crate::scscf::{self, ScscfCore};
use crate::tcp::{self, Connections};
use crate::udp::{self, RecvBatch, SendBatch};
use crate::uring::UringUdp;

/// How often a core publishes its counters.
const PUBLISH_EVERY: Duration = Duration::from_millis(250);
/// How often a core runs its due transaction timers (the wheel's tick).
pub(crate) const TICK: Duration = Duration::from_millis(10);

/// Sockets made before the executor starts, so a bind error stops start-up cleanly.
pub(crate) struct ShardSockets {
    /// UDP, bound with SO_REUSEPORT on the listening address.
    pub(crate) shared: RawSocket,
    /// UDP, bound on this core's own port.
    pub(crate) own: RawSocket,
    /// TCP, listening with SO_REUSEPORT on the listening address.
    pub(crate) listener: RawSocket,
    /// The idle wait over the three, for the batched UDP path.
    pub(crate) readable: udp::Readable,
}

/// Binds a core's sockets.
pub(crate) fn bind_sockets(
    config: &ProxyConfig,
    buffer_bytes: usize,
) -> std::io::Result<ShardSockets> {
    let shared = udp::bind(config.listen, true, buffer_bytes)?;
    let own = udp::bind(config.own_address(), false, buffer_bytes)?;
    let listener = tcp_listener(config.listen)?;
    let readable = udp::Readable::new([shared.as_raw_fd(), own.as_raw_fd(), listener.as_raw_fd()])?;
    Ok(ShardSockets {
        shared,
        own,
        listener,
        readable,
    })
}

fn tcp_listener(addr: SocketAddr) -> std::io::Result<RawSocket> {
    use socket2::{Domain, Protocol as IpProtocol, Type};
    let domain = if addr.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let socket = RawSocket::new(domain, Type::STREAM, Some(IpProtocol::TCP))?;
    socket.set_reuse_port(true)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket)
}

/// How a core moves its datagrams (`--udp-io`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UdpIo {
    /// `recvmmsg`/`sendmmsg`, 32 per call, and an epoll idle wait.
    #[default]
    Batched,
    /// The core's own io_uring: receives kept armed, sends and re-arms submitted in one
    /// enter per loop turn, which also waits when idle.
    Uring,
}

/// How a core moves and waits for its datagrams.
pub(crate) struct CoreIo {
    pub(crate) udp_io: UdpIo,
    /// glommio spins before parking (`--spin-us`).
    pub(crate) spins: bool,
    /// The moderation window (`--coalesce-us`).
    pub(crate) coalesce: Duration,
}

/// A core's datagram path.
pub(crate) enum UdpPath {
    Batched {
        to_shared: SendBatch,
        to_own: SendBatch,
        fds: [RawFd; 2],
    },
    Uring(Box<UringUdp>),
}

impl UdpPath {
    fn queue(&mut self, socket: Socket, to: SocketAddr, datagram: &[u8]) {
        match (self, socket) {
            (Self::Batched { to_shared, .. }, Socket::Shared) => to_shared.push(to, datagram),
            (Self::Batched { to_own, .. }, Socket::Own) => to_own.push(to, datagram),
            (Self::Uring(ring), Socket::Shared) => ring.send(0, to, datagram),
            (Self::Uring(ring), Socket::Own) => ring.send(1, to, datagram),
        }
    }

    /// The core's ring, on the io_uring path.
    pub(crate) fn uring(&mut self) -> Option<&mut UringUdp> {
        match self {
            Self::Uring(ring) => Some(ring),
            Self::Batched { .. } => None,
        }
    }

    /// Sends what is queued; the datagrams refused so far.
    fn flush(&mut self) -> u64 {
        match self {
            Self::Batched {
                to_shared,
                to_own,
                fds,
            } => {
                let failed = to_shared.flush(fds[0], |_, _| {}).failed
                    + to_own.flush(fds[1], |_, _| {}).failed;
                failed as u64
            }
            Self::Uring(ring) => {
                ring.submit();
                ring.take_send_errors()
            }
        }
    }
}

/// A core's state, shared by its UDP loop and its TCP tasks (all on one thread).
pub(crate) struct Shard {
    pub(crate) core: ProxyCore,
    pub(crate) connections: Connections,
    pub(crate) tcp_framing_errors: u64,
    pub(crate) udp: UdpPath,
    pub(crate) send_errors: u64,
    pub(crate) receive_errors: u64,
    /// When the core waits before its next receive, under load.
    pub(crate) coalescer: Coalescer,
    /// Connections registered while routing, opened once the shard is released.
    tcp_opened: Vec<tcp::NewConnection>,
    /// Transactions whose TCP message could not be queued.
    tcp_failed: Vec<proxy::ForkId>,
    /// The S-CSCF, when a home domain is configured.
    scscf: Option<Rc<ScscfCore>>,
    deferred: Vec<txn::TxnId>,
}

impl Shard {
    /// Sends what the proxy produced: UDP in batches now, TCP into its connection's
    /// queue. A message that cannot be queued fails its transaction, which may produce
    /// more.
    pub(crate) fn route(shard: &Rc<RefCell<Self>>) {
        let scscf = shard.borrow().scscf.clone();
        if let Some(scscf) = scscf {
            let mut ids = std::mem::take(&mut shard.borrow_mut().deferred);
            scscf::spawn_deferred(shard, &scscf, &mut ids);
            shard.borrow_mut().deferred = ids;
            scscf::flush_notifies(shard, &scscf);
        }
        for _ in 0..4 {
            let (mut opened, mut failed) = {
                let mut guard = shard.borrow_mut();
                let s = &mut *guard;
                for (t, bytes) in s.core.transmits() {
                    match (t.protocol, t.socket) {
                        (Protocol::Udp, socket) => s.udp.queue(socket, t.to, bytes),
                        (Protocol::Tcp, _) => match s.connections.queue(t.to, bytes, t.client) {
                            Ok(None) => {}
                            Ok(Some(opened)) => s.tcp_opened.push(opened),
                            Err(client) => s.tcp_failed.extend(client),
                        },
                    }
                }
                s.core.clear_transmits();
                s.send_errors += s.udp.flush();
                (
                    std::mem::take(&mut s.tcp_opened),
                    std::mem::take(&mut s.tcp_failed),
                )
            };
            for connection in opened.drain(..) {
                tcp::open(shard, connection);
            }
            let mut s = shard.borrow_mut();
            s.tcp_opened = opened;
            let done = failed.is_empty();
            let now = Instant::now();
            for &client in &failed {
                s.core.on_send_error(now, client);
            }
            failed.clear();
            s.tcp_failed = failed;
            if done {
                return;
            }
        }
    }
}

/// Runs one core until the process ends: one loop moves the UDP datagrams in batches,
/// runs due timers and publishes counters; the TCP accept loop and a task pair per
/// connection run beside it on the same executor, sharing the core's state.
pub(crate) async fn run(
    index: usize,
    config: ProxyConfig,
    sockets: ShardSockets,
    registry: Registry,
    scscf: Option<scscf::CoreSetup>,
    io: CoreIo,
) {
    let CoreIo {
        udp_io,
        spins,
        coalesce,
    } = io;
    let ShardSockets {
        shared,
        own,
        listener,
        readable,
    } = sockets;
    let listener_fd = listener.as_raw_fd();
    // SAFETY: the listener's descriptor is handed over to glommio, which now owns it.
    #[allow(unsafe_code)]
    let listener = unsafe { TcpListener::from_raw_fd(listener.into_raw_fd()) };
    let scscf = scscf.map(|setup| setup.start(index));
    let core = match &scscf {
        Some(scscf) => {
            let router = scscf::ScscfRouter::new(Rc::clone(scscf), config.clone());
            ProxyCore::with_router(config, Instant::now(), Box::new(router))
        }
        None => ProxyCore::new(config, Instant::now()),
    };
    let fds = [shared.as_raw_fd(), own.as_raw_fd()];
    let udp = match udp_io {
        UdpIo::Batched => UdpPath::Batched {
            to_shared: SendBatch::new(),
            to_own: SendBatch::new(),
            fds,
        },
        UdpIo::Uring => {
            // The ring waits in the kernel for each socket; the sockets themselves block.
            let ring = shared
                .set_nonblocking(false)
                .and_then(|()| own.set_nonblocking(false))
                .and_then(|()| UringUdp::new(fds, !spins));
            match ring {
                Ok(ring) => UdpPath::Uring(Box::new(ring)),
                // Engine::start probed io_uring before starting any core.
                Err(e) => panic!("core {index}: io_uring for UDP: {e}"),
            }
        }
    };
    let shard = Rc::new(RefCell::new(Shard {
        core,
        connections: Connections::default(),
        tcp_framing_errors: 0,
        udp,
        send_errors: 0,
        receive_errors: 0,
        coalescer: Coalescer::new(coalesce, TICK),
        tcp_opened: Vec::new(),
        tcp_failed: Vec::new(),
        scscf,
        deferred: Vec::new(),
    }));
    glommio::spawn_local(tcp::accept_loop(listener, Rc::clone(&shard))).detach();
    let publisher = Publisher::new(index, registry);
    match udp_io {
        UdpIo::Batched => batched_loop(&shard, [&shared, &own], &readable, publisher).await,
        UdpIo::Uring => crate::uring::run_loop(&shard, listener_fd, publisher).await,
    }
}

/// Whether tasks other than the UDP loop need the executor to run: TCP connections, and
/// the S-CSCF's request tasks and its share of the registration store (which other cores
/// message).
pub(crate) fn tasks_need_executor(shard: &Rc<RefCell<Shard>>) -> bool {
    let s = shard.borrow();
    s.connections.len() > 0 || s.scscf.is_some()
}

/// Runs the core's timers when their tick is due and publishes its counters; whether it
/// was due.
pub(crate) fn tick(
    shard: &Rc<RefCell<Shard>>,
    publisher: &mut Publisher,
    next_tick: &mut Instant,
) -> bool {
    let now = Instant::now();
    if now < *next_tick {
        return false;
    }
    {
        let mut s = shard.borrow_mut();
        s.core.on_timers(now);
        s.coalescer.on_tick();
    }
    publisher.maybe_publish(now, &shard.borrow());
    *next_tick = now + TICK;
    true
}

/// The `recvmmsg`/`sendmmsg` loop.
///
/// When the core has no TCP connection and no S-CSCF, the loop waits for its sockets with
/// one epoll_wait that also watches the TCP listener; glommio's waits (an io_uring submission
/// and allocations per wait) are used only while other tasks need the executor.
async fn batched_loop(
    shard: &Rc<RefCell<Shard>>,
    [shared, own]: [&RawSocket; 2],
    readable: &udp::Readable,
    mut publisher: Publisher,
) {
    let shared_wait = waiter(shared);
    let own_wait = waiter(own);
    let mut batch = RecvBatch::new();
    let mut next_tick = Instant::now() + TICK;
    let mut accept_pending = false;
    // Which sockets to read: both after a glommio wait, those epoll flagged after its wait,
    // and those whose last batch came back full.
    let mut ready = [true, true];
    loop {
        let mut full = [false, false];
        let mut handled = 0;
        for (i, socket) in [shared, own].into_iter().enumerate() {
            if ready[i] {
                let received = drain(socket, &mut batch, shard);
                full[i] = received == udp::BATCH;
                handled += received;
            }
        }
        shard.borrow_mut().coalescer.received(handled);
        let ticked = tick(shard, &mut publisher, &mut next_tick);
        Shard::route(shard);
        if full.contains(&true) {
            ready = full;
            glommio::yield_if_needed().await;
            continue;
        }
        if accept_pending || tasks_need_executor(shard) {
            // Other tasks need the executor: wait through glommio so they run meanwhile.
            accept_pending = false;
            let idle = next_tick.saturating_duration_since(Instant::now());
            let mut peek_shared = [0u8; 1];
            let mut peek_own = [0u8; 1];
            let shared_ready = async {
                let _ = shared_wait.peek_from(&mut peek_shared).await;
            };
            let own_ready = async {
                let _ = own_wait.peek_from(&mut peek_own).await;
            };
            let tick = async {
                Timer::new(idle).await;
            };
            future::or(shared_ready, future::or(own_ready, tick)).await;
            ready = [true, true];
        } else {
            if ticked {
                // Once a tick, glommio takes its own completions (this loop is its main
                // future: a yield runs its I/O poll and its tasks), whatever epoll saw.
                future::yield_now().await;
                if tasks_need_executor(shard) {
                    // That yield accepted a connection: its tasks need glommio's wait.
                    ready = [true, true];
                    continue;
                }
            }
            let pause = shard.borrow_mut().coalescer.pause(handled);
            if let Some(pause) = pause {
                // Nothing else runs on this thread: a plain sleep, then whatever came.
                std::thread::sleep(pause);
            }
            let idle = next_tick.saturating_duration_since(Instant::now());
            match readable.wait(idle) {
                Ok(udp::Readiness::Ready([a, b, listener])) => {
                    ready = [a, b];
                    // A connection is waiting: the accept loop takes it during the next wait.
                    accept_pending = listener;
                }
                Ok(udp::Readiness::TimedOut) => ready = [false, false],
                Err(_) => ready = [true, true],
            }
        }
    }
}

/// Receives one batch from `socket` and hands every datagram to the core.
fn drain(socket: &RawSocket, batch: &mut RecvBatch, shard: &Rc<RefCell<Shard>>) -> usize {
    let received = match batch.recv(socket) {
        Ok(received) => received,
        Err(_) => {
            shard.borrow_mut().receive_errors += 1;
            0
        }
    };
    if received == 0 {
        return 0;
    }
    let now = Instant::now();
    let wall = SystemTime::now();
    let mut s = shard.borrow_mut();
    for (from, stamp, datagram) in batch.datagrams() {
        let arrived = arrival(now, wall, stamp);
        s.core
            .on_message(now, arrived, from, Protocol::Udp, datagram);
    }
    received
}

/// When a datagram arrived on the monotonic clock the proxy runs on: the kernel's stamp
/// is wall-clock time, so the wait is carried over.
pub(crate) fn arrival(now: Instant, wall: SystemTime, stamp: Option<SystemTime>) -> Instant {
    let waited = stamp
        .and_then(|t| wall.duration_since(t).ok())
        .unwrap_or_default();
    now.checked_sub(waited).unwrap_or(now)
}

/// Publishes a core's counters into its metrics slot a few times a second.
pub(crate) struct Publisher {
    index: usize,
    registry: Registry,
    snapshot: CoreSnapshot,
    last: Instant,
}

impl Publisher {
    fn new(index: usize, registry: Registry) -> Self {
        Self {
            index,
            registry,
            snapshot: CoreSnapshot::default(),
            last: Instant::now(),
        }
    }

    fn maybe_publish(&mut self, now: Instant, s: &Shard) {
        if now.duration_since(self.last) < PUBLISH_EVERY {
            return;
        }
        let snapshot = &mut self.snapshot;
        snapshot.stats.clone_from(s.core.stats());
        snapshot.active_transactions = s.core.active_transactions();
        snapshot.latency.reset();
        snapshot.latency.add(s.core.latency());
        snapshot.admission_rate = s.core.load_monitor().rate();
        snapshot.send_errors = s.send_errors;
        snapshot.receive_errors = s.receive_errors;
        snapshot.coalesced_waits = s.coalescer.waits;
        snapshot.tcp_connections = s.connections.len();
        snapshot.tcp_framing_errors = s.tcp_framing_errors;
        if let Some(scscf) = &s.scscf {
            snapshot.cross_core_handoffs = scscf.store.handoffs();
            snapshot.registered_aors = scscf.store.owned();
            snapshot.guessing = scscf.auth.borrow().guessing_stats();
        }
        self.registry.publish(self.index, snapshot);
        self.last = now;
    }
}

/// A glommio socket on a duplicate of `socket`'s descriptor, used only to wait.
fn waiter(socket: &RawSocket) -> GlommioUdp {
    let dup = socket.try_clone().expect("dup of a bound socket");
    // SAFETY: `dup` is a fresh descriptor we own and hand over.
    #[allow(unsafe_code)]
    unsafe {
        GlommioUdp::from_raw_fd(dup.into_raw_fd())
    }
}
