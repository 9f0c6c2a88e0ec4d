//! `whitewater sprout` and `whitewater all-in-one`: start the data-plane engine.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use engine::scscf::ScscfConfig;
use engine::{Engine, EngineConfig, online_cpus, parse_core_list};

use homestead::api::bearer::ApiToken;

use crate::api_token::ApiTokenArgs;
use crate::scscf::{HomesteadSubscribers, RegistrarArgs};

/// Options of `whitewater sprout`.
#[derive(Args, Debug)]
pub(crate) struct SproutCommand {
    #[command(flatten)]
    sprout: SproutArgs,
    /// The home domain: with it, Sprout is an S-CSCF (registrar, digest authentication,
    /// terminating routing to registered contacts) and needs --homestead-url; without
    /// it, a plain proxy that forwards by Route or Request-URI (the benchmark mode).
    #[arg(long, env = "WW_HOME_DOMAIN", requires = "homestead_url")]
    home_domain: Option<String>,
    /// Homestead's API (`http://host:8888`), for the S-CSCF's subscriber lookups.
    #[arg(long, env = "WW_HOMESTEAD_URL")]
    homestead_url: Option<String>,
    #[command(flatten)]
    api_token: ApiTokenArgs,
}

/// Runs `whitewater sprout`.
pub(crate) fn run_command(command: SproutCommand) -> ExitCode {
    let (Some(domain), Some(url)) = (&command.home_domain, &command.homestead_url) else {
        return run(command.sprout, None);
    };
    let token = match command.sprout.management_token(&command.api_token) {
        Ok(token) => token,
        Err(e) => {
            eprintln!("whitewater: {e}");
            return ExitCode::from(2);
        }
    };
    // The HTTP client runs on a small tokio runtime of its own, off the SIP cores.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("homestead-client")
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("whitewater: cannot start the Homestead client: {e}");
            return ExitCode::FAILURE;
        }
    };
    let timeout = Duration::from_millis(command.sprout.registrar.homestead_lookup_timeout_ms());
    let client = match homestead::HomesteadClient::http(runtime.handle().clone(), url, timeout) {
        Ok(client) => client,
        Err(e) => {
            eprintln!("whitewater: bad --homestead-url {url}: {e}");
            return ExitCode::from(2);
        }
    };
    let scscf = match command.sprout.scscf_config(domain, client) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("whitewater: {e}");
            return ExitCode::from(2);
        }
    };
    let code = run(command.sprout, Some((scscf, token)));
    drop(runtime);
    code
}

/// `--udp-io` values.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UdpIoArg {
    /// recvmmsg/sendmmsg.
    Batched,
    /// io_uring.
    Uring,
}

/// Options of the SIP engine.
#[derive(Args, Debug)]
pub(crate) struct SproutArgs {
    /// The address SIP is received on (every core binds it with SO_REUSEPORT; core N also
    /// binds port+1+N for the responses to what it forwards).
    #[arg(long, default_value = "127.0.0.1:5060", env = "WW_LISTEN")]
    listen: SocketAddr,
    /// CPUs to run a core on, as `0-3` or `0,2,4-7`. Default: every online CPU.
    #[arg(long, env = "WW_CORES")]
    cores: Option<String>,
    /// Where Prometheus metrics are served (`/metrics`).
    #[arg(long, default_value = "127.0.0.1:9060", env = "WW_METRICS")]
    metrics: SocketAddr,
    /// Transactions per core before new requests are answered 503.
    #[arg(long, default_value_t = 1024 * 1024, env = "WW_MAX_TRANSACTIONS")]
    max_transactions: usize,
    /// SO_RCVBUF/SO_SNDBUF per socket, bytes (capped by net.core.rmem_max/wmem_max).
    #[arg(long, default_value_t = 8 * 1024 * 1024, env = "WW_SOCKET_BUFFER")]
    socket_buffer: usize,
    /// Overload control: the request latency (from arrival in the socket) the admission
    /// rate is steered to, in milliseconds (Clearwater's Sprout default: 10).
    #[arg(long, default_value_t = 10, env = "WW_TARGET_LATENCY_MS")]
    target_latency_ms: u64,
    /// Overload control: an initial request that waited longer than this in the socket, in
    /// milliseconds, is shed before it is parsed (UDP: its sender retransmits) or refused
    /// 503 (TCP).
    #[arg(long, default_value_t = 100, env = "WW_MAX_QUEUE_DELAY_MS")]
    max_queue_delay_ms: u64,
    /// Overload control: the highest admission rate per core, initial requests per second.
    #[arg(long, default_value_t = 100_000, env = "WW_MAX_ADMISSION_RATE")]
    max_admission_rate: u32,
    /// Microseconds an idle core spins before sleeping (0: never; lower latency at low
    /// load costs CPU).
    #[arg(long, default_value_t = 0, env = "WW_SPIN_US")]
    spin_us: u64,
    /// How UDP datagrams move: `batched` (recvmmsg/sendmmsg and an epoll idle wait) or
    /// `uring` (each core's own io_uring: receives kept armed, sends and re-arms submitted
    /// in one enter per loop turn).
    #[arg(long, value_enum, default_value_t = UdpIoArg::Batched, env = "WW_UDP_IO")]
    udp_io: UdpIoArg,
    /// Under load (when a window would gather 8 datagrams or more: 16,000 a second at
    /// 500 µs), microseconds a core that serves UDP alone on the batched path sleeps after
    /// handling datagrams before it looks for more, so that one wake-up handles many: the
    /// latency it may add per hop (0: off; at most 10,000, a timer tick).
    #[arg(
        long,
        default_value_t = engine::DEFAULT_COALESCE.as_micros() as u64,
        value_parser = clap::value_parser!(u64).range(0..=10_000),
        env = "WW_COALESCE_US"
    )]
    coalesce_us: u64,
    /// RFC 3261 T1 in milliseconds.
    #[arg(long, default_value_t = 500, env = "WW_T1_MS")]
    t1_ms: u64,
    /// RFC 3261 T2 in milliseconds.
    #[arg(long, default_value_t = 4000, env = "WW_T2_MS")]
    t2_ms: u64,
    /// RFC 3261 T4 in milliseconds.
    #[arg(long, default_value_t = 5000, env = "WW_T4_MS")]
    t4_ms: u64,
    /// Sprout's management API (bindings and subscriptions per IMPU, administrative
    /// deregistration; Clearwater's port 9886). Served by the S-CSCF only.
    #[arg(long, default_value = "127.0.0.1:9886", env = "WW_MANAGEMENT_HTTP")]
    management_http: SocketAddr,
    #[command(flatten)]
    registrar: RegistrarArgs,
}

impl SproutArgs {
    /// The token the management API requires (refused without one when it is bound
    /// beyond loopback).
    pub(crate) fn management_token(
        &self,
        token: &ApiTokenArgs,
    ) -> Result<Option<ApiToken>, String> {
        ApiToken::required_for(
            "management API",
            self.management_http,
            token.load()?.as_ref(),
        )
    }

    /// The S-CSCF for `home_domain` with `client` as its Homestead; its Service-Route
    /// points at the listening address.
    pub(crate) fn scscf_config(
        &self,
        home_domain: &str,
        client: homestead::HomesteadClient,
    ) -> Result<ScscfConfig, String> {
        let uri = format!("sip:{}", self.listen);
        let subscribers = std::sync::Arc::new(HomesteadSubscribers::new(client, uri.clone()));
        self.registrar.config(home_domain, uri, subscribers)
    }
}

/// Starts the engine (an S-CSCF, with the management API's token, when `scscf` is
/// given) and runs until it stops.
pub(crate) fn run(args: SproutArgs, scscf: Option<(ScscfConfig, Option<ApiToken>)>) -> ExitCode {
    let (scscf, management_token) = scscf.unzip();
    let cores = match args.cores.as_deref().map(parse_core_list) {
        None => online_cpus(),
        Some(Ok(cores)) => cores,
        Some(Err(e)) => {
            eprintln!("whitewater: {e}");
            return ExitCode::from(2);
        }
    };
    let mut config = EngineConfig::new(args.listen, cores.clone());
    config.max_transactions = args.max_transactions;
    config.socket_buffer = args.socket_buffer;
    config.timers.t1 = Duration::from_millis(args.t1_ms);
    config.timers.t2 = Duration::from_millis(args.t2_ms);
    config.timers.t4 = Duration::from_millis(args.t4_ms);
    config.metrics = Some(args.metrics);
    config.spin_before_park = Duration::from_micros(args.spin_us);
    config.udp_io = match args.udp_io {
        UdpIoArg::Batched => engine::UdpIo::Batched,
        UdpIoArg::Uring => engine::UdpIo::Uring,
    };
    config.coalesce = Duration::from_micros(args.coalesce_us);
    config.overload.target_latency = Duration::from_millis(args.target_latency_ms);
    config.overload.max_rate = f64::from(args.max_admission_rate);
    config.overload.max_queue_delay = Duration::from_millis(args.max_queue_delay_ms);
    let role = scscf.as_ref().map_or_else(
        || "proxy".to_owned(),
        |s| format!("S-CSCF for {}", s.home_domain),
    );
    let subscribers = scscf
        .as_ref()
        .map(|s| std::sync::Arc::clone(&s.subscribers));
    config.scscf = scscf;
    let engine = match Engine::start(config) {
        Ok(engine) => engine,
        Err(e) => {
            eprintln!("whitewater: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let (Some(registrations), Some(subscribers)) = (engine.registrations(), subscribers) {
        let token = management_token.flatten();
        if let Err(e) = start_management(args.management_http, registrations, subscribers, token) {
            eprintln!(
                "whitewater: management API on {}: {e}",
                args.management_http
            );
            return ExitCode::FAILURE;
        }
        eprintln!(
            "whitewater: management API on http://{}",
            args.management_http
        );
    }
    eprintln!(
        "whitewater: SIP {role} on {} (cores {:?}), metrics on http://{}/metrics",
        args.listen,
        cores,
        engine
            .metrics_address()
            .map_or_else(String::new, |a| a.to_string())
    );
    match engine.join() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("whitewater: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Serves the management API on a thread of its own (a one-thread tokio runtime, off the
/// SIP cores); a bind error is returned before anything else starts answering.
fn start_management(
    addr: SocketAddr,
    registrations: engine::scscf::Registrations,
    subscribers: std::sync::Arc<dyn engine::scscf::Subscribers>,
    token: Option<ApiToken>,
) -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let listener = runtime.block_on(tokio::net::TcpListener::bind(addr))?;
    std::thread::Builder::new()
        .name("management-http".into())
        .spawn(move || {
            runtime.block_on(async move {
                let app = homestead::api::bearer::require(
                    crate::management::app(registrations, subscribers),
                    token,
                );
                if let Err(e) = axum::serve(listener, app).await {
                    eprintln!("whitewater: management API stopped: {e}");
                }
            });
        })?;
    Ok(())
}
