//! `whitewater homestead`: the subscriber data service on its own, and the options
//! `all-in-one` shares.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::api_token::ApiTokenArgs;
use clap::Args;
use homestead::api::bearer::ApiToken;
use homestead::store::{CacheConfig, ScyllaConfig, parse_consistency};
use homestead::{DemoSubscribers, Homestead, HomesteadConfig, StoreConfig};

/// Options of Homestead.
#[derive(Args, Debug, Clone)]
pub(crate) struct HomesteadArgs {
    /// The Homestead API (Clearwater's port 8888).
    #[arg(
        long = "homestead-http",
        default_value = "127.0.0.1:8888",
        env = "WW_HOMESTEAD_HTTP"
    )]
    http: SocketAddr,
    /// The provisioning API (Clearwater's Homestead-prov port 8889, plus /subscribers).
    #[arg(
        long = "prov-http",
        default_value = "127.0.0.1:8889",
        env = "WW_PROV_HTTP"
    )]
    prov_http: SocketAddr,
    /// Where the embedded store keeps its file (homestead.redb), used when no ScyllaDB
    /// nodes are given.
    #[arg(long, default_value = "/var/lib/whitewater", env = "WW_DATA_DIR")]
    data_dir: PathBuf,
    /// ScyllaDB/Cassandra contact points (`host:9042,host:9042`); when set, subscriber
    /// data lives there instead of the embedded store.
    #[arg(long, env = "WW_SCYLLA_NODES", value_delimiter = ',')]
    scylla_nodes: Vec<String>,
    /// Keyspace created (when missing) and used in ScyllaDB/Cassandra.
    #[arg(long, default_value = "homestead", env = "WW_SCYLLA_KEYSPACE")]
    scylla_keyspace: String,
    /// Replication factor of the keyspace when Homestead creates it.
    #[arg(long, default_value_t = 3, env = "WW_SCYLLA_REPLICATION_FACTOR")]
    scylla_replication_factor: u32,
    /// Consistency level of every read and write (ONE, QUORUM, LOCAL_QUORUM, ...).
    #[arg(long, default_value = "LOCAL_QUORUM", env = "WW_SCYLLA_CONSISTENCY")]
    scylla_consistency: String,
    /// Timeout of each ScyllaDB request in milliseconds (exceeded: 504).
    #[arg(long, default_value_t = 2000, env = "WW_SCYLLA_TIMEOUT_MS")]
    scylla_timeout_ms: u64,
    /// Seconds a cached subscriber record is served before the store is read again.
    #[arg(long, default_value_t = 30, env = "WW_CACHE_TTL_S")]
    cache_ttl_s: u64,
    /// Cached records per kind.
    #[arg(long, default_value_t = 1_000_000, env = "WW_CACHE_CAPACITY")]
    cache_capacity: u64,
    /// The S-CSCF URI that registration-status and location return.
    #[arg(
        long,
        default_value = "sip:127.0.0.1:5054;transport=TCP",
        env = "WW_SCSCF_URI"
    )]
    scscf_uri: String,
    /// Charging Collection Function addresses for reg-data, in priority order.
    #[arg(long = "ccf", env = "WW_CCF", value_delimiter = ',')]
    ccfs: Vec<String>,
    /// Event Charging Function addresses for reg-data, in priority order.
    #[arg(long = "ecf", env = "WW_ECF", value_delimiter = ',')]
    ecfs: Vec<String>,
    /// Home domain: the digest realm when a private identity has no domain, and the
    /// domain of demo subscribers.
    #[arg(long, default_value = "example.com", env = "WW_HOME_DOMAIN")]
    home_domain: String,
    /// Concurrent HTTP requests per API before new ones get 503.
    #[arg(
        long = "homestead-max-in-flight",
        default_value_t = 4096,
        env = "WW_HOMESTEAD_MAX_IN_FLIGHT"
    )]
    max_in_flight: usize,
    /// Milliseconds a Homestead request may take before it is answered 504.
    #[arg(
        long = "homestead-request-timeout-ms",
        default_value_t = 5000,
        env = "WW_HOMESTEAD_REQUEST_TIMEOUT_MS"
    )]
    request_timeout_ms: u64,
}

impl HomesteadArgs {
    /// The home domain.
    pub(crate) fn home_domain(&self) -> &str {
        &self.home_domain
    }

    /// Whether subscriber data lives in the embedded store (no ScyllaDB nodes given).
    pub(crate) fn embedded_store(&self) -> bool {
        self.scylla_nodes.is_empty()
    }

    /// The service configuration, with `demo` subscribers put in place at every start.
    /// Homestead's configuration; the provisioning API's token from `token` (refused
    /// without one when it is bound beyond loopback).
    pub(crate) fn config(
        &self,
        demo: u64,
        token: &ApiTokenArgs,
    ) -> Result<HomesteadConfig, String> {
        let prov_token =
            ApiToken::required_for("provisioning API", self.prov_http, token.load()?.as_ref())?;
        let store = if self.scylla_nodes.is_empty() {
            StoreConfig::Embedded {
                path: self.data_dir.join("homestead.redb"),
            }
        } else {
            StoreConfig::Scylla(ScyllaConfig {
                nodes: self.scylla_nodes.clone(),
                keyspace: self.scylla_keyspace.clone(),
                replication_factor: self.scylla_replication_factor,
                consistency: parse_consistency(&self.scylla_consistency)?,
                request_timeout: Duration::from_millis(self.scylla_timeout_ms),
                ..ScyllaConfig::default()
            })
        };
        let mut config = HomesteadConfig::new(store);
        config.http = self.http;
        config.prov_http = self.prov_http;
        config.prov_token = prov_token;
        config.cache = CacheConfig {
            capacity: self.cache_capacity,
            ttl: Duration::from_secs(self.cache_ttl_s),
        };
        config.scscf = self.scscf_uri.clone();
        config.charging.ccfs = self.ccfs.clone();
        config.charging.ecfs = self.ecfs.clone();
        config.default_realm = self.home_domain.clone();
        config.max_in_flight = self.max_in_flight;
        config.request_timeout = Duration::from_millis(self.request_timeout_ms);
        config.demo = (demo > 0).then(|| DemoSubscribers {
            domain: self.home_domain.clone(),
            first: DEMO_FIRST_NUMBER,
            count: demo,
            password: DEMO_PASSWORD.into(),
        });
        Ok(config)
    }
}

/// Demo subscribers are 6505550000@<home domain> upwards, as Clearwater's docs number them.
pub(crate) const DEMO_FIRST_NUMBER: u64 = 6_505_550_000;
/// Their password (Clearwater's bulk-provisioning default).
pub(crate) const DEMO_PASSWORD: &str = "7kkzTyGW";

/// Options of `whitewater homestead`.
#[derive(Args, Debug)]
pub(crate) struct HomesteadCommand {
    #[command(flatten)]
    homestead: HomesteadArgs,
    /// Demo subscribers put in place at every start (0: none).
    #[arg(long, default_value_t = 0, env = "WW_DEMO_SUBSCRIBERS")]
    demo_subscribers: u64,
    #[command(flatten)]
    api_token: ApiTokenArgs,
}

pub(crate) fn run(command: &HomesteadCommand) -> ExitCode {
    let config = match command
        .homestead
        .config(command.demo_subscribers, &command.api_token)
    {
        Ok(config) => config,
        Err(e) => {
            eprintln!("whitewater: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("whitewater: cannot start the control-plane runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        match serve(config).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("whitewater: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

/// Starts Homestead on the current runtime, says where it listens, and serves until a
/// server fails.
async fn serve(config: HomesteadConfig) -> anyhow::Result<()> {
    let homestead = Homestead::start(config).await?;
    eprintln!(
        "whitewater: homestead API on http://{}, provisioning API on http://{}",
        homestead.http, homestead.prov_http
    );
    homestead.join().await?;
    Ok(())
}
