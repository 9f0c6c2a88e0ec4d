//! Whitewater's thread-per-core engine: the only data-plane crate with sockets and
//! executors.
//!
//! One glommio executor per listed core, pinned. Each core binds the shared listening
//! address with SO_REUSEPORT (the kernel spreads incoming flows over cores by address hash)
//! and its own port (listening port + 1 + core index), which it writes in the Via of every
//! request it forwards: responses come back to the core that holds the transaction. Each
//! core runs a [`proxy::ProxyCore`] with its own transaction table and timer wheel; no lock
//! or queue is shared between cores. UDP moves in batches through `recvmmsg`/`sendmmsg`, or on
//! each core's own io_uring (`UdpIo::Uring`).
//! Counters are summed over cores when `/metrics` is scraped.

mod coalesce;
mod cores;
pub mod metrics;
pub mod scscf;
mod shard;
mod tcp;
pub mod udp;
mod uring;

use std::net::SocketAddr;
use std::time::Duration;

pub use cores::{BadCoreList, parse_core_list};
use glommio::{LocalExecutorBuilder, Placement};
use proxy::ProxyConfig;
pub use shard::UdpIo;
use txn::TimerConfig;

/// Everything the engine is started with.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// The shared listening address.
    pub listen: SocketAddr,
    /// CPUs to run a core on, one executor each.
    pub cores: Vec<usize>,
    /// Transactions per core before new requests get 503.
    pub max_transactions: usize,
    /// SO_RCVBUF and SO_SNDBUF for every socket (capped by the kernel's rmem_max/wmem_max).
    pub socket_buffer: usize,
    /// T1, T2, T4.
    pub timers: TimerConfig,
    /// Timer C for INVITEs that ring without answer.
    pub timer_c: Duration,
    /// Overload control per core.
    pub overload: proxy::OverloadConfig,
    /// Where `/metrics` is served, if anywhere.
    pub metrics: Option<SocketAddr>,
    /// How long an idle core spins before it sleeps in the kernel: lower latency at low
    /// load, paid for in CPU. Zero (the default) never spins.
    pub spin_before_park: Duration,
    /// The S-CSCF (registrar, authentication, terminating routing); `None` runs the plain
    /// proxy of the benchmark mode.
    pub scscf: Option<scscf::ScscfConfig>,
    /// How datagrams move.
    pub udp_io: UdpIo,
    /// Under load, how long a core that serves UDP alone sleeps after handling datagrams
    /// before it looks for more, so that one wake-up handles many: the latency it may add
    /// per hop. Zero turns it off; more than a timer tick (10 ms) is taken as a tick, so
    /// timers and new connections never wait longer than that.
    pub coalesce: Duration,
}

/// The default of [`EngineConfig::coalesce`]: at 4,000 calls/s it cut a core's wake-ups
/// from about 3,900 to 1,100 a second, and its CPU per call by a sixth (docs/performance.md),
/// for at most half a millisecond per hop, against SIP's timers of half a second and more.
pub const DEFAULT_COALESCE: Duration = Duration::from_micros(500);

impl EngineConfig {
    /// Defaults for one host: every online CPU, 1 Mi transactions per core.
    pub fn new(listen: SocketAddr, cores: Vec<usize>) -> Self {
        Self {
            listen,
            cores,
            max_transactions: 1024 * 1024,
            socket_buffer: 8 * 1024 * 1024,
            timers: TimerConfig::default(),
            timer_c: Duration::from_secs(180),
            overload: proxy::OverloadConfig::default(),
            metrics: None,
            spin_before_park: Duration::ZERO,
            scscf: None,
            udp_io: UdpIo::default(),
            coalesce: DEFAULT_COALESCE,
        }
    }
}

/// Why the engine could not start.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A socket could not be bound.
    #[error("cannot bind {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// No cores were given.
    #[error("no cores to run on")]
    NoCores,
    /// `--udp-io uring` on a kernel (or sandbox) that refuses io_uring.
    #[error("io_uring is not available for UDP: {0}")]
    Uring(std::io::Error),
    /// An executor failed to start or stopped with an error.
    #[error("core {core}: {message}")]
    Executor {
        /// The CPU.
        core: usize,
        /// What glommio said.
        message: String,
    },
}

/// A started engine.
pub struct Engine {
    handles: Vec<(usize, glommio::ExecutorJoinHandle<()>)>,
    metrics: Option<SocketAddr>,
    registrations: Option<scscf::Registrations>,
}

impl Engine {
    /// Binds every socket, then starts one pinned executor per core.
    pub fn start(config: EngineConfig) -> Result<Self, EngineError> {
        if config.cores.is_empty() {
            return Err(EngineError::NoCores);
        }
        if config.udp_io == UdpIo::Uring {
            uring::probe(config.spin_before_park.is_zero()).map_err(EngineError::Uring)?;
        }
        let registry = metrics::Registry::new(config.cores.len());
        let cores = u16::try_from(config.cores.len()).map_err(|_| EngineError::NoCores)?;
        // Every socket is bound before anything answers, so a client that sees /metrics
        // up can send SIP at once: datagrams wait in the socket until the core starts.
        let mut bound = Vec::with_capacity(config.cores.len());
        for (index, &cpu) in config.cores.iter().enumerate() {
            let proxy = ProxyConfig {
                listen: config.listen,
                core: index as u16,
                cores,
                max_transactions: config.max_transactions,
                timers: config.timers,
                timer_c: config.timer_c,
                overload: config.overload,
            };
            let sockets = shard::bind_sockets(&proxy, config.socket_buffer).map_err(|source| {
                EngineError::Bind {
                    addr: proxy.own_address(),
                    source,
                }
            })?;
            bound.push((index, cpu, proxy, sockets));
        }
        let metrics = match config.metrics {
            Some(addr) => Some(
                metrics::serve(addr, registry.clone())
                    .map_err(|source| EngineError::Bind { addr, source })?,
            ),
            None => None,
        };
        let (mut setups, registrations): (Vec<Option<scscf::CoreSetup>>, _) = match &config.scscf {
            Some(s) => {
                let (setups, registrations) = scscf::CoreSetup::for_cores(s, bound.len());
                (setups.into_iter().map(Some).collect(), Some(registrations))
            }
            None => ((0..bound.len()).map(|_| None).collect(), None),
        };
        let mut handles = Vec::with_capacity(bound.len());
        let udp_io = config.udp_io;
        let spins = !config.spin_before_park.is_zero();
        let coalesce = config.coalesce;
        for (index, cpu, proxy, sockets) in bound {
            let setup = setups[index].take();
            let registry = registry.clone();
            let mut builder =
                LocalExecutorBuilder::new(Placement::Fixed(cpu)).name(&format!("ww-core{cpu}"));
            if !config.spin_before_park.is_zero() {
                builder = builder.spin_before_park(config.spin_before_park);
            }
            let handle = builder
                .spawn(move || {
                    let io = shard::CoreIo {
                        udp_io,
                        spins,
                        coalesce,
                    };
                    shard::run(index, proxy, sockets, registry, setup, io)
                })
                .map_err(|e| EngineError::Executor {
                    core: cpu,
                    message: e.to_string(),
                })?;
            handles.push((cpu, handle));
        }
        Ok(Self {
            handles,
            metrics,
            registrations,
        })
    }

    /// The registration store, for the management API (S-CSCF only).
    pub fn registrations(&self) -> Option<scscf::Registrations> {
        self.registrations.clone()
    }

    /// Where `/metrics` is served.
    pub const fn metrics_address(&self) -> Option<SocketAddr> {
        self.metrics
    }

    /// Waits for every core (they run until the process ends).
    pub fn join(self) -> Result<(), EngineError> {
        for (core, handle) in self.handles {
            handle.join().map_err(|e| EngineError::Executor {
                core,
                message: e.to_string(),
            })?;
        }
        Ok(())
    }
}

/// Every online CPU.
pub fn online_cpus() -> Vec<usize> {
    (0..std::thread::available_parallelism().map_or(1, usize::from)).collect()
}
