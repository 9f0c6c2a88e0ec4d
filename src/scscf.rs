//! The S-CSCF's options and its link to Homestead: `whitewater sprout --home-domain`
//! (Homestead over HTTP) and `whitewater all-in-one` (Homestead in process).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use engine::scscf::{Lookup, LookupFailure, RegistrationChange, ScscfConfig, Subscribers};
use homestead::HomesteadClient;
use homestead::source::{AuthRequest, AuthScheme, AuthVector, LookupError, RegDataRequest};
use ims::auth::AuthConfig;
use ims::auth::guessing::GuessingLimits;
use ims::registrar::RegisterPolicy;

/// Options of the registrar and authentication.
#[derive(Args, Debug, Clone)]
pub(crate) struct RegistrarArgs {
    /// A file holding the cluster secret nonces are keyed with (every node of a cluster
    /// needs the same). Default: a random secret per start, so nonces issued before a
    /// restart are challenged again.
    #[arg(long, env = "WW_AUTH_SECRET_FILE")]
    auth_secret_file: Option<PathBuf>,
    /// Seconds a nonce stays fresh; an older one is answered `stale=true`.
    #[arg(long, default_value_t = 40, env = "WW_NONCE_LIFETIME_S")]
    nonce_lifetime_s: u64,
    /// Refuse a nonce's reuse with a higher nonce count (Clearwater's
    /// `nonce_count_supported=N`): every REGISTER is challenged.
    #[arg(long, env = "WW_NO_NONCE_REUSE")]
    no_nonce_reuse: bool,
    /// Failed digest attempts from one address, within --auth-failure-window-s, that
    /// lock it out for --auth-lockout-s (password guessing); 0: no limit.
    #[arg(long, default_value_t = 10, env = "WW_AUTH_FAILURES_PER_SOURCE")]
    auth_failures_per_source: u32,
    /// Failed digest attempts on one private identity, within the window, that lock it:
    /// then an address with no failure of its own may still try, once; 0: no limit.
    #[arg(long, default_value_t = 20, env = "WW_AUTH_FAILURES_PER_IDENTITY")]
    auth_failures_per_identity: u32,
    /// The window failed digest attempts are counted over, seconds.
    #[arg(long, default_value_t = 60, env = "WW_AUTH_FAILURE_WINDOW_S")]
    auth_failure_window_s: u64,
    /// How long an address or identity stays locked out, seconds.
    #[arg(long, default_value_t = 300, env = "WW_AUTH_LOCKOUT_S")]
    auth_lockout_s: u64,
    /// Accept digest credentials whose `uri` is not the Request-URI (refused with 400 by
    /// default, RFC 7616 §3.4.6): for clients that do not name it, such as SIPp without
    /// `-auth_uri`.
    #[arg(long, env = "WW_NO_DIGEST_URI_CHECK")]
    no_digest_uri_check: bool,
    /// Accept REGISTERs without credentials. Only behind a trusted edge that
    /// authenticates, or to measure the registrar alone (bench/run register).
    #[arg(long, env = "WW_NO_REGISTER_AUTHENTICATION")]
    no_register_authentication: bool,
    /// Challenge initial requests from our users (those sent through our Service-Route,
    /// `;orig`) with 407 until they carry digest credentials (Clearwater's
    /// `non_register_authentication`).
    #[arg(long, env = "WW_AUTHENTICATE_ORIGINATING")]
    authenticate_originating: bool,
    /// Longest reg-event subscription granted, seconds (Clearwater's `sub_max_expires`).
    #[arg(long, default_value_t = 3600, env = "WW_SUB_MAX_EXPIRES")]
    sub_max_expires: u32,
    /// Shortest registration granted; shorter non-zero requests get 423.
    #[arg(long, default_value_t = 60, env = "WW_REG_MIN_EXPIRES")]
    reg_min_expires: u32,
    /// Longest registration granted (Clearwater's `reg_max_expires`).
    #[arg(long, default_value_t = 300, env = "WW_REG_MAX_EXPIRES")]
    reg_max_expires: u32,
    /// Milliseconds a Homestead lookup may take before the request is answered 504.
    #[arg(long, default_value_t = 2000, env = "WW_HOMESTEAD_LOOKUP_TIMEOUT_MS")]
    homestead_lookup_timeout_ms: u64,
    /// Addresses of record each core may hold in the embedded registration store.
    #[arg(long, default_value_t = 1_000_000, env = "WW_MAX_AORS_PER_CORE")]
    max_aors_per_core: usize,
    /// memcached servers (`host:port,host:port,...`) to keep registrations in, each AoR on
    /// two of them; without them, the embedded store (one node).
    #[arg(long, env = "WW_MEMCACHED_SERVERS", value_delimiter = ',')]
    memcached_servers: Vec<std::net::SocketAddr>,
    /// Milliseconds a memcached command may take before its server is rested for a second.
    #[arg(long, default_value_t = 500, env = "WW_MEMCACHED_TIMEOUT_MS")]
    memcached_timeout_ms: u64,
}

impl RegistrarArgs {
    pub(crate) fn homestead_lookup_timeout_ms(&self) -> u64 {
        self.homestead_lookup_timeout_ms
    }

    /// The S-CSCF configuration for `home_domain`, reached at `scscf_uri`.
    pub(crate) fn config(
        &self,
        home_domain: &str,
        scscf_uri: String,
        subscribers: Arc<dyn Subscribers>,
    ) -> Result<ScscfConfig, String> {
        let secret = match &self.auth_secret_file {
            Some(path) => {
                let secret = std::fs::read(path).map_err(|e| {
                    format!("cannot read --auth-secret-file {}: {e}", path.display())
                })?;
                if secret.len() < 16 {
                    return Err(format!(
                        "--auth-secret-file {} holds {} bytes; use at least 16",
                        path.display(),
                        secret.len()
                    ));
                }
                secret
            }
            None => rand::random::<[u8; 32]>().to_vec(),
        };
        Ok(ScscfConfig {
            home_domain: home_domain.to_owned(),
            scscf_uri,
            sub_max_expires: self.sub_max_expires,
            authenticate_originating: self.authenticate_originating,
            authenticate_register: !self.no_register_authentication,
            auth: AuthConfig {
                realm: home_domain.to_owned(),
                secret,
                nonce_lifetime_s: self.nonce_lifetime_s,
                nonce_reuse: !self.no_nonce_reuse,
                guessing: GuessingLimits {
                    per_source: self.auth_failures_per_source,
                    per_identity: self.auth_failures_per_identity,
                    window_s: self.auth_failure_window_s,
                    backoff_s: self.auth_lockout_s,
                    ..GuessingLimits::default()
                },
                check_digest_uri: !self.no_digest_uri_check,
                ..AuthConfig::default()
            },
            register: RegisterPolicy {
                min_expires: self.reg_min_expires,
                max_expires: self.reg_max_expires,
            },
            subscribers,
            lookup_timeout: Duration::from_millis(self.homestead_lookup_timeout_ms),
            max_aors_per_core: self.max_aors_per_core,
            memcached: self.memcached_servers.clone(),
            memcached_timeout: Duration::from_millis(self.memcached_timeout_ms),
        })
    }
}

/// Homestead as the S-CSCF's subscriber data.
pub(crate) struct HomesteadSubscribers {
    client: HomesteadClient,
    server_name: String,
}

impl std::fmt::Debug for HomesteadSubscribers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HomesteadSubscribers")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl HomesteadSubscribers {
    pub(crate) fn new(client: HomesteadClient, server_name: String) -> Self {
        Self {
            client,
            server_name,
        }
    }
}

fn failure(e: LookupError) -> LookupFailure {
    match e {
        LookupError::NotFound(what) => LookupFailure::NotFound(what),
        other => LookupFailure::Unavailable(other.to_string()),
    }
}

impl Subscribers for HomesteadSubscribers {
    fn digest_ha1(&self, impi: String, impu: String) -> Lookup<String> {
        let client = self.client.clone();
        let request = AuthRequest {
            impi,
            impu,
            scheme: AuthScheme::Digest,
            resync_auth: None,
            server_name: Some(self.server_name.clone()),
        };
        Box::pin(async move {
            match client.auth_vector(request).await.map_err(failure)? {
                AuthVector::Digest { ha1, .. } => Ok(ha1),
                AuthVector::Aka { .. } => Err(LookupFailure::NotFound(
                    "the subscriber authenticates with AKA, which this S-CSCF does not do yet"
                        .into(),
                )),
            }
        })
    }

    fn aka_vector(
        &self,
        impi: String,
        impu: String,
        version: u8,
        resync: Option<String>,
    ) -> Lookup<Option<engine::scscf::AkaVector>> {
        let client = self.client.clone();
        let request = AuthRequest {
            impi,
            impu,
            scheme: if version == 2 {
                AuthScheme::AkaV2
            } else {
                AuthScheme::AkaV1
            },
            resync_auth: resync,
            server_name: Some(self.server_name.clone()),
        };
        Box::pin(async move {
            match client.auth_vector(request).await.map_err(failure)? {
                AuthVector::Aka { vector, .. } => Ok(Some(engine::scscf::AkaVector {
                    nonce: vector.challenge,
                    xres: vector.response,
                    ck: vector.cryptkey,
                    ik: vector.integritykey,
                })),
                AuthVector::Digest { .. } => Ok(None),
            }
        })
    }

    fn registration(
        &self,
        impu: String,
        impi: String,
        change: RegistrationChange,
    ) -> Lookup<Vec<String>> {
        let client = self.client.clone();
        let server_name = self.server_name.clone();
        let request = match change {
            RegistrationChange::Register => RegDataRequest::Register,
            RegistrationChange::DeregisterUser => RegDataRequest::DeregUser,
            RegistrationChange::DeregisterAdmin => RegDataRequest::DeregAdmin,
            RegistrationChange::DeregisterTimeout => RegDataRequest::DeregTimeout,
        };
        Box::pin(async move {
            let data = client
                .update_reg_data(impu, Some(impi), request, Some(server_name))
                .await
                .map_err(failure)?;
            Ok(data.public_identities())
        })
    }

    fn exists(&self, impu: String) -> Lookup<bool> {
        let client = self.client.clone();
        Box::pin(async move {
            match client.location(impu).await {
                Ok(_) => Ok(true),
                Err(LookupError::NotFound(_)) => Ok(false),
                Err(e) => Err(failure(e)),
            }
        })
    }
}
