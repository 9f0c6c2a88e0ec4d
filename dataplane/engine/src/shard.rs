//! One core: its two UDP sockets, its proxy, its timers, in one loop on a pinned glommio
//! executor. Nothing here is shared with another core except the metrics slot it publishes.

use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd};
use std::time::{Duration, Instant, SystemTime};

use futures_lite::future;
use glommio::net::UdpSocket as GlommioUdp;
use glommio::timer::Timer;
use proxy::{ProxyConfig, ProxyCore, Socket};
use socket2::Socket as RawSocket;

use crate::metrics::{CoreSnapshot, Registry};
use crate::udp::{self, RecvBatch, SendBatch};

/// How often a core publishes its counters.
const PUBLISH_EVERY: Duration = Duration::from_millis(250);
/// The longest a core sleeps with nothing to do, so timers and publishing stay timely.
const MAX_IDLE: Duration = Duration::from_millis(10);

/// Sockets made before the executor starts, so a bind error stops start-up cleanly.
pub(crate) struct ShardSockets {
    /// Bound with SO_REUSEPORT on the listening address.
    pub(crate) shared: RawSocket,
    /// Bound on this core's own port.
    pub(crate) own: RawSocket,
}

/// Binds a core's sockets.
pub(crate) fn bind_sockets(
    config: &ProxyConfig,
    buffer_bytes: usize,
) -> std::io::Result<ShardSockets> {
    Ok(ShardSockets {
        shared: udp::bind(config.listen, true, buffer_bytes)?,
        own: udp::bind(config.own_address(), false, buffer_bytes)?,
    })
}

/// Runs one core until the process ends.
pub(crate) async fn run(
    index: usize,
    config: ProxyConfig,
    sockets: ShardSockets,
    registry: Registry,
) {
    let shared_fd = sockets.shared.as_raw_fd();
    let own_fd = sockets.own.as_raw_fd();
    // glommio only waits for readability; datagrams move through our batched syscalls.
    let shared_wait = waiter(&sockets.shared);
    let own_wait = waiter(&sockets.own);
    let mut core = ProxyCore::new(config, Instant::now());
    let mut batch = RecvBatch::new();
    let mut to_shared = SendBatch::new();
    let mut to_own = SendBatch::new();
    let mut snapshot = CoreSnapshot::default();
    let mut last_publish = Instant::now();
    let mut peek = [0u8; 1];
    loop {
        let mut received = 0;
        for socket in [&sockets.shared, &sockets.own] {
            received += batch.recv(socket).unwrap_or(0);
            let now = Instant::now();
            let wall = SystemTime::now();
            for (from, stamp, datagram) in batch.datagrams() {
                // The kernel's arrival stamp is wall-clock time; carry the wait over to the
                // monotonic clock the proxy runs on.
                let waited = stamp
                    .and_then(|s| wall.duration_since(s).ok())
                    .unwrap_or_default();
                let arrived = now.checked_sub(waited).unwrap_or(now);
                core.on_datagram_received_at(now, arrived, from, datagram);
            }
        }
        let now = Instant::now();
        if core.next_timer().is_some_and(|at| at <= now) {
            core.on_timers(now);
        }
        for (transmit, bytes) in core.transmits() {
            match transmit.socket {
                Socket::Shared => to_shared.push(transmit.to, bytes),
                Socket::Own => to_own.push(transmit.to, bytes),
            }
        }
        core.clear_transmits();
        let mut failed = 0;
        failed += to_shared.flush(shared_fd, |_, _| {}).failed;
        failed += to_own.flush(own_fd, |_, _| {}).failed;
        snapshot.send_errors += failed as u64;
        if now.duration_since(last_publish) >= PUBLISH_EVERY {
            snapshot.stats.clone_from(core.stats());
            snapshot.active_transactions = core.active_transactions();
            snapshot.latency.reset();
            snapshot.latency.add(core.latency());
            snapshot.admission_rate = core.load_monitor().rate();
            registry.publish(index, &snapshot);
            last_publish = now;
        }
        if received == 0 {
            let idle = core.next_timer().map_or(MAX_IDLE, |at| {
                at.saturating_duration_since(now).min(MAX_IDLE)
            });
            let shared_ready = async {
                let _ = shared_wait.peek_from(&mut peek).await;
            };
            let mut peek_own = [0u8; 1];
            let own_ready = async {
                let _ = own_wait.peek_from(&mut peek_own).await;
            };
            let timeout = async {
                Timer::new(idle).await;
            };
            future::or(shared_ready, future::or(own_ready, timeout)).await;
        } else {
            glommio::yield_if_needed().await;
        }
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
