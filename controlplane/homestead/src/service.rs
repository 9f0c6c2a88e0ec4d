//! Starting Homestead: open the store (waiting for a cluster if need be), put the cache in
//! front, seed demo subscribers on first start when asked, bind both HTTP ports and serve.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::api;
use crate::api::bearer::{self, ApiToken};
use crate::api::metrics::{Api as MetricsApi, Metrics};
use crate::locks::Locks;
use crate::model::ChargingAddresses;
use crate::provisioning::subscribers::SubscriberSpec;
use crate::provisioning::{ProvError, Provisioning};
use crate::source::{LocalSource, LocalSourceConfig, SubscriberSource};
use crate::store::{
    CacheConfig, CachedStore, EmbeddedStore, ScyllaConfig, ScyllaStore, StoreError, SubscriberStore,
};

/// Which store holds subscriber data.
#[derive(Clone, Debug)]
pub enum StoreConfig {
    /// redb file on local disk.
    Embedded {
        path: PathBuf,
    },
    Scylla(ScyllaConfig),
}

/// Demo subscribers put in place at every start (idempotent).
#[derive(Clone, Debug)]
pub struct DemoSubscribers {
    pub domain: String,
    pub first: u64,
    pub count: u64,
    pub password: String,
}

/// Everything Homestead needs to start.
#[derive(Clone, Debug)]
pub struct HomesteadConfig {
    /// The Homestead API (Clearwater port 8888).
    pub http: SocketAddr,
    /// The provisioning API (Clearwater port 8889).
    pub prov_http: SocketAddr,
    /// The bearer token the provisioning API requires, if any.
    pub prov_token: Option<ApiToken>,
    pub store: StoreConfig,
    pub cache: CacheConfig,
    /// The S-CSCF URI returned by registration-status and location.
    pub scscf: String,
    pub charging: ChargingAddresses,
    /// Digest realm when neither the request nor the IMPI names one.
    pub default_realm: String,
    /// Concurrent requests per API before new ones get 503.
    pub max_in_flight: usize,
    /// A request that takes longer gets 504.
    pub request_timeout: Duration,
    pub demo: Option<DemoSubscribers>,
}

impl HomesteadConfig {
    pub fn new(store: StoreConfig) -> Self {
        Self {
            http: SocketAddr::from(([127, 0, 0, 1], 8888)),
            prov_http: SocketAddr::from(([127, 0, 0, 1], 8889)),
            prov_token: None,
            store,
            cache: CacheConfig::default(),
            scscf: "sip:127.0.0.1:5054;transport=TCP".into(),
            charging: ChargingAddresses::default(),
            default_realm: "example.com".into(),
            max_in_flight: 4096,
            request_timeout: Duration::from_secs(5),
            demo: None,
        }
    }
}

/// A running Homestead.
pub struct Homestead {
    pub source: Arc<dyn SubscriberSource>,
    pub provisioning: Arc<Provisioning>,
    pub http: SocketAddr,
    pub prov_http: SocketAddr,
    servers: Vec<JoinHandle<std::io::Result<()>>>,
}

/// Why Homestead could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Homestead {
    /// Opens the store and binds both ports; serving runs on the current tokio runtime.
    pub async fn start(config: HomesteadConfig) -> Result<Self, StartError> {
        let backend: Arc<dyn SubscriberStore> = match &config.store {
            StoreConfig::Embedded { path } => {
                let path = path.clone();
                Arc::new(
                    tokio::task::spawn_blocking(move || EmbeddedStore::open(&path))
                        .await
                        .map_err(|e| StoreError::Unavailable(e.to_string()))??,
                )
            }
            StoreConfig::Scylla(scylla) => ScyllaStore::start(scylla.clone()),
        };
        let store: Arc<dyn SubscriberStore> = Arc::new(CachedStore::new(backend, config.cache));
        let locks = Arc::new(Locks::new());
        let source: Arc<dyn SubscriberSource> = Arc::new(LocalSource::new(
            Arc::clone(&store),
            LocalSourceConfig {
                scscf: config.scscf.clone(),
                charging: config.charging.clone(),
            },
            Arc::clone(&locks),
        ));
        let provisioning = Arc::new(Provisioning::new(
            Arc::clone(&store),
            config.default_realm.clone(),
            locks,
        ));
        if let Some(demo) = &config.demo {
            let provisioning = Arc::clone(&provisioning);
            let demo = demo.clone();
            tokio::spawn(async move { seed_demo(&provisioning, &demo).await });
        }

        let bind = |address: SocketAddr| async move {
            TcpListener::bind(address)
                .await
                .map_err(|e| StartError::Bind(address, e))
        };
        let http = bind(config.http).await?;
        let prov_http = bind(config.prov_http).await?;
        let addresses = (
            local(&http, config.http),
            local(&prov_http, config.prov_http),
        );
        let metrics = Metrics::new();
        let homestead_api = metrics.serve(metrics.count(
            api::protect(
                api::homestead::router(Arc::clone(&source)),
                config.max_in_flight,
                config.request_timeout,
            ),
            MetricsApi::Homestead,
        ));
        // Counted first, so refusals show; the token is checked before a permit is taken.
        let prov_api = metrics.count(
            bearer::require(
                api::protect(
                    api::prov::router(Arc::clone(&provisioning)),
                    config.max_in_flight,
                    config.request_timeout,
                ),
                config.prov_token.clone(),
            ),
            MetricsApi::Provisioning,
        );
        let servers = vec![
            tokio::spawn(async move { axum::serve(http, homestead_api).await }),
            tokio::spawn(async move { axum::serve(prov_http, prov_api).await }),
        ];
        tracing::info!(http = %addresses.0, prov_http = %addresses.1, "homestead serving");
        Ok(Self {
            source,
            provisioning,
            http: addresses.0,
            prov_http: addresses.1,
            servers,
        })
    }

    /// Runs until a server stops (it does only on an I/O error).
    pub async fn join(self) -> std::io::Result<()> {
        for server in self.servers {
            server.await.map_err(std::io::Error::other)??;
        }
        Ok(())
    }
}

fn local(listener: &TcpListener, asked: SocketAddr) -> SocketAddr {
    listener.local_addr().unwrap_or(asked)
}

/// Provisions the demo subscribers. Every PUT is idempotent, so this runs on every
/// start: a first start killed half-way is completed by the next one. A subscriber that
/// fails (a cluster still starting) is retried until it lands.
async fn seed_demo(provisioning: &Provisioning, demo: &DemoSubscribers) {
    for number in demo.first..demo.first + demo.count {
        let impi = format!("{number}@{}", demo.domain);
        loop {
            let spec = SubscriberSpec {
                impus: vec![format!("sip:{number}@{}", demo.domain)],
                password: Some(demo.password.clone()),
                ..SubscriberSpec::default()
            };
            match provisioning.put_subscriber(&impi, spec).await {
                Ok(_) => break,
                Err(ProvError::Store(e)) => {
                    tracing::warn!(impi, error = %e, "demo subscriber: store not ready; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) => {
                    tracing::warn!(impi, error = %e, "demo subscriber not provisioned");
                    break;
                }
            }
        }
    }
    tracing::info!(count = demo.count, domain = %demo.domain, "demo subscribers in place");
}
