//! The S-CSCF on the engine: a [`proxy::Router`] that defers REGISTERs and requests for
//! the home domain, and the driver that runs each deferred request along the `ims`
//! crate's sproutlet chain, performing the lookups the sproutlets ask for (the
//! subscriber's HA1 and registration from Homestead, bindings from the registration store)
//! before the core answers or forwards the request. The decisions are all the chain's.

mod driver;
mod embedded;
mod memcached;
pub(crate) mod store;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use ims::auth::{AuthConfig, ChallengeKind};
use ims::registrar::RegisterPolicy;
use ims::sproutlet::immediate_challenge;
use proxy::{Router, Routing, Target};
use sip::{Host, Message, Method, Scheme};

pub(crate) use self::driver::{CoreSetup, ScscfCore, flush_notifies, spawn_deferred, unix_now};
pub use self::store::Registrations;
pub use ims::sproutlet::{AkaVector, LookupFailure, RegistrationChange, StoreFailure};

/// A lookup the S-CSCF awaits, run wherever the implementation likes (Homestead's client
/// runs it on the control plane's tokio runtime).
pub type Lookup<T> = Pin<Box<dyn Future<Output = Result<T, LookupFailure>> + Send>>;

/// Subscriber data the S-CSCF needs (Homestead, reference §1.1).
pub trait Subscribers: Send + Sync + fmt::Debug {
    /// The digest HA1 of `impi` for registering `impu`.
    fn digest_ha1(&self, impi: String, impu: String) -> Lookup<String>;
    /// A Digest AKA vector (`version` 1 or 2) for `impi`, after resynchronising the
    /// sequence number with `resync` (base64(RAND ‖ AUTS)) when given; `None` when the
    /// subscriber authenticates with plain digest instead.
    fn aka_vector(
        &self,
        impi: String,
        impu: String,
        version: u8,
        resync: Option<String>,
    ) -> Lookup<Option<AkaVector>>;
    /// Records a registration change; answers the implicit registration set's public
    /// identities (for P-Associated-URI).
    fn registration(
        &self,
        impu: String,
        impi: String,
        change: RegistrationChange,
    ) -> Lookup<Vec<String>>;
    /// Whether `impu` is a subscriber here at all (404 or 480 for a request to it).
    fn exists(&self, impu: String) -> Lookup<bool>;
}

/// How the S-CSCF runs.
#[derive(Debug, Clone)]
pub struct ScscfConfig {
    /// The home domain: REGISTERs for it are ours, requests to it are terminating.
    pub home_domain: String,
    /// Our own URI for Service-Route (`;lr;orig` is added) and the Contact of our
    /// NOTIFYs.
    pub scscf_uri: String,
    /// The longest reg-event subscription granted, in seconds.
    pub sub_max_expires: u32,
    /// Challenge REGISTERs (always, in a deployment; off only behind a trusted edge that
    /// authenticates, or to measure the registrar alone).
    pub authenticate_register: bool,
    /// Challenge initial requests from our users (those with `;orig` on our Route) with
    /// 407 until they carry digest credentials.
    pub authenticate_originating: bool,
    /// Digest authentication (realm, cluster secret, nonces).
    pub auth: AuthConfig,
    /// Registration expiry limits.
    pub register: RegisterPolicy,
    /// Homestead.
    pub subscribers: Arc<dyn Subscribers>,
    /// How long a Homestead lookup may take before the request gets 504.
    pub lookup_timeout: Duration,
    /// AoRs each core may own in the embedded registration store.
    pub max_aors_per_core: usize,
    /// memcached servers for the registration store (each AoR on two of them); empty:
    /// the embedded store.
    pub memcached: Vec<std::net::SocketAddr>,
    /// How long a memcached command may take before its server is rested.
    pub memcached_timeout: Duration,
}

impl ScscfConfig {
    /// What the sproutlets need of it.
    pub(crate) fn settings(&self) -> ims::sproutlet::Settings {
        ims::sproutlet::Settings {
            home_domain: self.home_domain.clone(),
            scscf_uri: self.scscf_uri.clone(),
            sub_max_expires: self.sub_max_expires,
            authenticate_register: self.authenticate_register,
            authenticate_originating: self.authenticate_originating,
            register: self.register,
            nonce_lifetime_s: self.auth.nonce_lifetime_s,
        }
    }
}

/// Routes a request the S-CSCF way: REGISTER to the home domain and initial requests to
/// a user of it are deferred for lookups; everything else follows its Route or
/// Request-URI.
#[derive(Debug)]
pub(crate) struct ScscfRouter {
    home_domain: String,
    proxy: proxy::ProxyConfig,
    scscf: Rc<ScscfCore>,
    /// The WWW-Authenticate value of the last challenge.
    challenge: Vec<u8>,
}

impl ScscfRouter {
    pub(crate) fn new(scscf: Rc<ScscfCore>, proxy: proxy::ProxyConfig) -> Self {
        Self {
            home_domain: scscf.config.home_domain.to_ascii_lowercase(),
            proxy,
            scscf,
            challenge: Vec::with_capacity(256),
        }
    }

    /// A REGISTER with no credentials for us is challenged at once: the challenge needs
    /// no lookup, so it needs no transaction or task either.
    fn challenge_at_once(&mut self, request: &Message<'_>) -> bool {
        let scscf = &self.scscf;
        immediate_challenge(
            request,
            &scscf.settings,
            &scscf.auth.borrow(),
            &mut scscf.salts.borrow_mut(),
            unix_now(),
            &mut self.challenge,
        )
    }

    /// No Route left once ours (an outbound proxy's, a Service-Route's) are taken off.
    fn routes_end_here(&self, msg: &Message<'_>) -> bool {
        msg.routes()
            .all(|route| route.is_ok_and(|r| self.proxy.is_own_uri(r.uri())))
    }

    fn is_home(&self, msg: &Message<'_>) -> bool {
        let Some(Ok(uri)) = msg.request_uri() else {
            return false;
        };
        matches!(uri.scheme(), Scheme::Sip | Scheme::Sips)
            && matches!(uri.host(), Some(Host::Domain(d)) if d.eq_ignore_ascii_case(self.home_domain.as_bytes()))
    }
}

impl Router for ScscfRouter {
    fn route(
        &mut self,
        request: &Message<'_>,
        planned: Option<Target>,
        targets: &mut Vec<Target>,
    ) -> Routing {
        let initial = request.to().ok().is_some_and(|to| to.tag().is_none());
        if initial && self.routes_end_here(request) && ims::sproutlet::is_originating(request) {
            return Routing::Defer;
        }
        let ours = self.routes_end_here(request) && self.is_home(request);
        if ours && request.method() == Some(Method::Register) && self.challenge_at_once(request) {
            return Routing::RejectWith(401);
        }
        if ours && (initial || request.method() == Some(Method::Register)) {
            return Routing::Defer;
        }
        // A refresh or end of a subscription we serve comes to our Contact.
        let to_us = request
            .request_uri()
            .and_then(Result::ok)
            .is_some_and(|uri| self.proxy.is_own_uri(&uri));
        if to_us && self.routes_end_here(request) && request.method() == Some(Method::Subscribe) {
            return Routing::Defer;
        }
        proxy::FollowRoute.route(request, planned, targets)
    }

    fn reject_header(&self) -> Option<(&'static str, &[u8])> {
        Some((ChallengeKind::Register.challenge_header(), &self.challenge))
    }
}
