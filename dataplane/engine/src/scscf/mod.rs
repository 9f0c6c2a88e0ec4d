//! The S-CSCF on the engine: a [`proxy::Router`] that defers REGISTERs and requests for
//! the home domain, and the tasks that decide them with lookups (the subscriber's HA1 and
//! registration from Homestead, bindings from the registration store) before the core
//! answers or forwards them. The decisions themselves are the sans-IO `ims` crate's.

mod embedded;
mod memcached;
mod notify;
mod originating;
mod register;
pub(crate) mod store;
mod subscribe;
mod terminating;

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ims::auth::{AuthConfig, Authenticator, ChallengeKind, Presented};
use ims::registrar::RegisterPolicy;
use proxy::{Router, Routing, Target};
use sip::{Host, Message, Method, Scheme};
use txn::TxnId;

use self::store::RegistrationStore;
pub use self::store::{Registrations, StoreFailure};
use crate::shard::Shard;

/// A lookup the S-CSCF awaits, run wherever the implementation likes (Homestead's client
/// runs it on the control plane's tokio runtime).
pub type Lookup<T> = Pin<Box<dyn Future<Output = Result<T, LookupFailure>> + Send>>;

/// Why a subscriber lookup failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupFailure {
    /// No such subscriber.
    #[error("not found: {0}")]
    NotFound(String),
    /// Homestead or its store is down, overloaded or slow: the caller gets 504.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

/// What a registration change tells Homestead (the reg-data `reqtype`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistrationChange {
    /// A REGISTER with bindings (`reg`).
    Register,
    /// The UE removed its last binding (`dereg-user`).
    DeregisterUser,
    /// An operator removed every binding (`dereg-admin`).
    DeregisterAdmin,
    /// The last binding expired (`dereg-timeout`).
    DeregisterTimeout,
}

/// A Digest AKA vector (hex, as Homestead gives it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AkaVector {
    /// base64(RAND ‖ AUTN).
    pub nonce: String,
    /// XRES.
    pub xres: String,
    /// CK.
    pub ck: String,
    /// IK.
    pub ik: String,
}

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
        if !self.scscf.config.authenticate_register {
            return false;
        }
        let now_s = unix_now();
        let scscf = &self.scscf;
        if scscf
            .auth
            .borrow()
            .inspect(request, ChallengeKind::Register, now_s)
            != Presented::Challenge
        {
            return false;
        }
        let Some(aor) = request.to().ok().and_then(|to| aor_of(to.uri())) else {
            return false;
        };
        let impi = aor.split_once(':').map_or(aor.as_str(), |(_, rest)| rest);
        self.challenge.clear();
        scscf.auth.borrow().challenge(
            now_s,
            scscf.next_salt(),
            impi.as_bytes(),
            false,
            &mut self.challenge,
        );
        true
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
        if initial && self.routes_end_here(request) && is_originating(request) {
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

/// One core's S-CSCF state, shared by its lookup tasks.
#[derive(Debug)]
pub(crate) struct ScscfCore {
    pub(crate) config: ScscfConfig,
    pub(crate) auth: RefCell<Authenticator>,
    pub(crate) store: Rc<RegistrationStore>,
    salt: Cell<u64>,
    /// NOTIFYs waiting to be sent by the core.
    pub(crate) outbox: RefCell<Vec<notify::Notify>>,
    /// NOTIFYs in flight: their subscription, so a 481 or timeout can end it.
    pub(crate) in_flight: RefCell<std::collections::HashMap<TxnId, (String, String)>>,
}

impl ScscfCore {
    pub(crate) fn new(config: ScscfConfig, core: usize, store: Rc<RegistrationStore>) -> Self {
        let auth = Authenticator::new(&config.auth, unix_now());
        let started = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Self {
            config,
            auth: RefCell::new(auth),
            store,
            // Unique per core and start: the MAC, not the salt, is what protects a nonce.
            salt: Cell::new(started ^ ((core as u64) << 56)),
            outbox: RefCell::new(Vec::new()),
            in_flight: RefCell::new(std::collections::HashMap::new()),
        }
    }

    pub(crate) fn next_salt(&self) -> u64 {
        let salt = self.salt.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
        self.salt.set(salt);
        salt
    }
}

/// What a core needs to start its S-CSCF: the configuration, its own registration-store
/// inbox, and every core's inbox (its own included, unused).
pub(crate) struct CoreSetup {
    pub(crate) config: ScscfConfig,
    pub(crate) inbox: futures::channel::mpsc::Receiver<store::StoreOp>,
    pub(crate) owners: Vec<futures::channel::mpsc::Sender<store::StoreOp>>,
}

impl CoreSetup {
    /// One setup per core, wired to each other, and the store's handle for outside the
    /// cores.
    pub(crate) fn for_cores(config: &ScscfConfig, cores: usize) -> (Vec<Self>, Registrations) {
        let (owners, inboxes): (Vec<_>, Vec<_>) = (0..cores)
            .map(|_| futures::channel::mpsc::channel(4096))
            .unzip();
        let setups = inboxes
            .into_iter()
            .map(|inbox| Self {
                config: config.clone(),
                inbox,
                owners: owners.clone(),
            })
            .collect();
        (setups, Registrations::new(owners))
    }

    /// Starts the core's share of the registration store and its S-CSCF state.
    pub(crate) fn start(self, core: usize) -> Rc<ScscfCore> {
        let store = if self.config.memcached.is_empty() {
            let owned = Rc::new(embedded::OwnedAors::new(
                core,
                self.config.max_aors_per_core,
            ));
            RegistrationStore::Embedded(embedded::EmbeddedStore::new(owned, self.owners))
        } else {
            RegistrationStore::Memcached(memcached::MemcachedStore::new(
                &self.config.memcached,
                self.config.memcached_timeout,
            ))
        };
        let store = Rc::new(store);
        glommio::spawn_local(store::serve(Rc::clone(&store), self.inbox)).detach();
        let scscf = Rc::new(ScscfCore::new(self.config, core, store));
        glommio::spawn_local(expire_bindings(Rc::clone(&scscf))).detach();
        scscf
    }
}

/// What a lookup task decided for a deferred request.
#[derive(Debug)]
pub(crate) enum Decision {
    Answer {
        status: u16,
        /// Our To tag, when the answer starts a dialog of ours (a subscription).
        to_tag: Option<String>,
        headers: Vec<(&'static str, Vec<u8>)>,
    },
    Forward(Vec<Target>),
}

impl Decision {
    pub(crate) fn status(status: u16) -> Self {
        Self::answer(status, Vec::new())
    }

    pub(crate) fn answer(status: u16, headers: Vec<(&'static str, Vec<u8>)>) -> Self {
        Self::Answer {
            status,
            to_tag: None,
            headers,
        }
    }
}

/// Seconds since the Unix epoch: nonces and binding expiries are wall-clock times that
/// every node of a cluster shares.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Starts a task for every request the core deferred.
pub(crate) fn spawn_deferred(
    shard: &Rc<RefCell<Shard>>,
    scscf: &Rc<ScscfCore>,
    ids: &mut Vec<TxnId>,
) {
    shard.borrow_mut().core.take_deferred(ids);
    for id in ids.drain(..) {
        let Some(request) = shard.borrow().core.deferred_request(id).map(<[u8]>::to_vec) else {
            continue;
        };
        let shard = Rc::clone(shard);
        let scscf = Rc::clone(scscf);
        glommio::spawn_local(async move {
            let decision = decide(&scscf, &request).await;
            {
                let mut s = shard.borrow_mut();
                let now = Instant::now();
                match decision {
                    Decision::Answer {
                        status,
                        to_tag,
                        headers,
                    } => {
                        let headers: Vec<(&'static str, &[u8])> =
                            headers.iter().map(|(n, v)| (*n, v.as_slice())).collect();
                        let tag = to_tag.as_deref().map(str::as_bytes);
                        s.core.answer_deferred(now, id, status, tag, &headers);
                    }
                    Decision::Forward(targets) => s.core.forward_deferred(now, id, &targets),
                }
            }
            Shard::route(&shard);
        })
        .detach();
    }
}

async fn decide(scscf: &ScscfCore, request: &[u8]) -> Decision {
    let Ok(msg) = Message::parse(request) else {
        return Decision::status(400);
    };
    match msg.method() {
        Some(Method::Register) => register::register(scscf, &msg).await,
        // Reg-event is ours to serve, whoever asks (a UE subscribes to its own, through
        // its Service-Route); other event packages go to the user's devices.
        Some(Method::Subscribe) if is_reg_event(&msg) => subscribe::subscribe(scscf, &msg).await,
        _ if is_originating(&msg) => originating::originate(scscf, &msg).await,
        _ => terminating::terminate(scscf, &msg).await,
    }
}

fn is_reg_event(msg: &Message<'_>) -> bool {
    msg.event()
        .ok()
        .flatten()
        .is_some_and(|e| e.value().eq_ignore_ascii_case(b"reg"))
}

/// Whether a request came through our Service-Route (a Route of ours with `;orig`):
/// it is served for its sender. The router has checked that its Routes are all ours.
fn is_originating(msg: &Message<'_>) -> bool {
    msg.routes()
        .any(|route| route.is_ok_and(|r| r.uri().params().contains(b"orig")))
}

/// Hands the queued NOTIFYs to the core, and ends the subscriptions whose NOTIFY came
/// back 481 or timed out.
pub(crate) fn flush_notifies(shard: &Rc<RefCell<Shard>>, scscf: &Rc<ScscfCore>) {
    let queued = std::mem::take(&mut *scscf.outbox.borrow_mut());
    let now = Instant::now();
    for n in queued {
        let id = shard
            .borrow_mut()
            .core
            .originate(now, n.request.as_bytes(), &n.target);
        if let (Some(id), false) = (id, n.last) {
            scscf.in_flight.borrow_mut().insert(id, (n.aor, n.to_tag));
        }
    }
    let mut results = Vec::new();
    shard.borrow_mut().core.take_originated(&mut results);
    for (id, status) in results {
        let Some((aor, to_tag)) = scscf.in_flight.borrow_mut().remove(&id) else {
            continue;
        };
        if matches!(status, 408 | 481) {
            let scscf = Rc::clone(scscf);
            glommio::spawn_local(async move {
                subscribe::drop_subscription(&scscf, &aor, &to_tag).await;
            })
            .detach();
        }
    }
}

/// How often a core removes the bindings expired among the AoRs it owns.
const EXPIRY_SWEEP: Duration = Duration::from_secs(1);

/// Removes expired bindings and subscriptions as they expire (to the second), so the
/// store holds only live state; subscribers hear of it, and an AoR left with no binding is
/// deregistered at Homestead (`dereg-timeout`).
async fn expire_bindings(scscf: Rc<ScscfCore>) {
    loop {
        glommio::timer::sleep(EXPIRY_SWEEP).await;
        let now_s = unix_now();
        for expired in scscf.store.expire_due(now_s).await {
            notify::queue_changes(
                &scscf,
                &expired.aor,
                &expired.state,
                &expired.swept.ended_bindings,
                &expired.swept.notified,
                &expired.swept.ended,
                now_s,
            );
            if expired.swept.deregistered {
                let call = scscf.config.subscribers.registration(
                    expired.aor,
                    expired.private_id,
                    RegistrationChange::DeregisterTimeout,
                );
                // Each in a task of its own, so a slow Homestead does not hold up the
                // sweep. A failure leaves Homestead's state to the AoR's next registration.
                let scscf = Rc::clone(&scscf);
                glommio::spawn_local(async move {
                    let _ = lookup(&scscf, call).await;
                })
                .detach();
            }
        }
    }
}

/// Checks digest credentials against the HA1 Homestead has for `impi` (registering or
/// serving `impu`): the verdict, or the answer when the lookup fails (an unknown user 403,
/// learnt only after credentials were sent; Homestead down or slow 504).
pub(crate) async fn check_digest(
    scscf: &ScscfCore,
    impi: &str,
    impu: &str,
    credentials: &sip::Auth<'_>,
    nonce: ims::auth::nonce::NonceCheck,
    method: &[u8],
) -> Result<ims::auth::Outcome, Decision> {
    let call = scscf
        .config
        .subscribers
        .digest_ha1(impi.to_owned(), impu.to_owned());
    let ha1 = match lookup(scscf, call).await {
        Ok(ha1) => ha1,
        Err(LookupFailure::NotFound(_)) => return Err(Decision::status(403)),
        Err(LookupFailure::Unavailable(_)) => return Err(Decision::status(504)),
    };
    Ok(scscf
        .auth
        .borrow_mut()
        .verify(credentials, nonce, method, ha1.as_bytes(), unix_now()))
}

/// Runs a Homestead lookup with the configured timeout.
pub(crate) async fn lookup<T>(scscf: &ScscfCore, call: Lookup<T>) -> Result<T, LookupFailure> {
    let timeout = scscf.config.lookup_timeout;
    match glommio::timer::timeout(timeout, async { Ok(call.await) }).await {
        Ok(result) => result,
        Err(_) => Err(LookupFailure::Unavailable(format!(
            "no answer within {} ms",
            timeout.as_millis()
        ))),
    }
}

/// The AoR of a URI: scheme, user and host, without port or parameters (`sip:user@host`).
pub(crate) fn aor_of(uri: &sip::Uri<'_>) -> Option<String> {
    let user = uri.user()?;
    let host = uri.host_raw();
    let scheme = match uri.scheme() {
        Scheme::Sips => "sips",
        _ => "sip",
    };
    Some(format!(
        "{scheme}:{}@{}",
        String::from_utf8_lossy(user),
        String::from_utf8_lossy(host).to_ascii_lowercase()
    ))
}
