//! Runs the sproutlet chain for the requests a core deferred: each request in a task of
//! its own that performs the queries the chain asks (Homestead through the
//! [`Subscribers`](super::Subscribers), the registration store) and hands the answers
//! back, until the chain answers or forwards the request. Also the core's S-CSCF
//! housekeeping: originating the NOTIFYs the chain queued, ending subscriptions whose
//! NOTIFY failed, and expiring bindings.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::IpAddr;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ims::auth::Authenticator;
use ims::auth::guessing::Guessed;
use ims::sproutlet::notify::{self, Change};
use ims::sproutlet::{
    Answer, CAS_ATTEMPTS, Chain, Cx, Notify, Query, RegistrationChange, Salts, Settings, Step,
    Versioned,
};
use sip::Message;
use txn::TxnId;

use super::store::{self, AorStore, RegistrationStore};
use super::{Lookup, LookupFailure, Registrations, ScscfConfig, embedded, memcached};
use crate::shard::Shard;

/// One core's S-CSCF state, shared by its request tasks.
#[derive(Debug)]
pub(crate) struct ScscfCore {
    pub(crate) config: ScscfConfig,
    pub(crate) settings: Settings,
    pub(crate) chain: Chain,
    pub(crate) auth: RefCell<Authenticator>,
    pub(crate) salts: RefCell<Salts>,
    pub(crate) store: Rc<RegistrationStore>,
    /// NOTIFYs waiting to be sent by the core.
    outbox: RefCell<Vec<Notify>>,
    /// NOTIFYs in flight: their subscription, so a 481 or timeout can end it.
    in_flight: RefCell<HashMap<TxnId, (String, String)>>,
}

impl ScscfCore {
    fn new(config: ScscfConfig, core: usize, store: Rc<RegistrationStore>) -> Self {
        let auth = Authenticator::new(&config.auth, unix_now());
        let started = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Self {
            settings: config.settings(),
            config,
            chain: Chain::scscf(),
            auth: RefCell::new(auth),
            salts: RefCell::new(Salts::new(started ^ ((core as u64) << 56))),
            store,
            outbox: RefCell::new(Vec::new()),
            in_flight: RefCell::new(HashMap::new()),
        }
    }

    /// Runs `f` with a callback context. Callbacks never await, so the borrows end
    /// before any other task of the core runs.
    fn with_cx<T>(&self, source: Option<IpAddr>, f: impl FnOnce(&mut Cx<'_>) -> T) -> T {
        let mut auth = self.auth.borrow_mut();
        let mut salts = self.salts.borrow_mut();
        let mut notifies = self.outbox.borrow_mut();
        let mut cx = Cx {
            now_s: unix_now(),
            source,
            settings: &self.settings,
            auth: &mut auth,
            salts: &mut salts,
            notifies: &mut notifies,
        };
        f(&mut cx)
    }

    /// One line per lock-out begun: an episode is logged once, however long it lasts.
    fn log_lockouts(&self) {
        for lockout in self.auth.borrow_mut().guessing().take_lockouts() {
            let of = match &lockout.of {
                Guessed::Source(ip) => format!("address {ip}"),
                Guessed::Identity(impi) => format!("private identity {impi}"),
            };
            eprintln!(
                "whitewater: {} failed digest attempts: {of} locked out for {} s",
                lockout.failures,
                lockout.until_s.saturating_sub(unix_now())
            );
        }
    }

    /// Runs a request along the chain to its answer or its branches.
    async fn serve(&self, request: &[u8], source: Option<IpAddr>) -> Step {
        let Ok(msg) = Message::parse(request) else {
            return Step::Respond(ims::sproutlet::Response {
                status: 400,
                to_tag: None,
                headers: Vec::new(),
            });
        };
        let (mut run, mut step) = self.with_cx(source, |cx| self.chain.start(&msg, cx));
        while let Step::Ask(query) = step {
            let answer = self.perform(query).await;
            step = self.with_cx(source, |cx| self.chain.answer(&mut run, &msg, answer, cx));
        }
        step
    }

    /// Finds out what a sproutlet asked.
    async fn perform(&self, query: Query) -> Answer {
        let subscribers = &self.config.subscribers;
        match query {
            Query::DigestHa1 { impi, impu } => {
                Answer::Ha1(self.lookup(subscribers.digest_ha1(impi, impu)).await)
            }
            Query::AkaVector {
                impi,
                impu,
                version,
                resync,
            } => Answer::AkaVector(
                self.lookup(subscribers.aka_vector(impi, impu, version, resync))
                    .await,
            ),
            Query::Registration { impu, impi, change } => Answer::Identities(
                self.lookup(subscribers.registration(impu, impi, change))
                    .await,
            ),
            Query::Exists { impu } => Answer::Exists(self.lookup(subscribers.exists(impu)).await),
            Query::ReadAor { aor } => Answer::Aor(self.store.get(&aor).await),
            Query::WriteAor { aor, next } => {
                Answer::Written(self.store.compare_and_set(&aor, *next).await)
            }
        }
    }

    /// Runs a Homestead lookup with the configured timeout.
    async fn lookup<T>(&self, call: Lookup<T>) -> Result<T, LookupFailure> {
        let timeout = self.config.lookup_timeout;
        match glommio::timer::timeout(timeout, async { Ok(call.await) }).await {
            Ok(result) => result,
            Err(_) => Err(LookupFailure::Unavailable(format!(
                "no answer within {} ms",
                timeout.as_millis()
            ))),
        }
    }
}

/// What a core needs to start its S-CSCF: the configuration, its own registration-store
/// inbox, and every core's inbox (its own included, unused).
pub(crate) struct CoreSetup {
    config: ScscfConfig,
    inbox: futures::channel::mpsc::Receiver<store::StoreOp>,
    owners: Vec<futures::channel::mpsc::Sender<store::StoreOp>>,
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
        let source = shard.borrow().core.deferred_source(id).map(|a| a.ip());
        let shard = Rc::clone(shard);
        let scscf = Rc::clone(scscf);
        glommio::spawn_local(async move {
            let step = scscf.serve(&request, source).await;
            scscf.log_lockouts();
            {
                let mut s = shard.borrow_mut();
                let now = Instant::now();
                match step {
                    Step::Respond(response) => {
                        let headers: Vec<(&'static str, &[u8])> = response
                            .headers
                            .iter()
                            .map(|(n, v)| (*n, v.as_slice()))
                            .collect();
                        let tag = response.to_tag.as_deref().map(str::as_bytes);
                        s.core
                            .answer_deferred(now, id, response.status, tag, &headers);
                    }
                    Step::Forward(targets) => s.core.forward_deferred(now, id, &targets),
                    // `serve` returns only once the chain stopped asking.
                    Step::Ask(_) => s.core.answer_deferred(now, id, 500, None, &[]),
                }
            }
            Shard::route(&shard);
        })
        .detach();
    }
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
                drop_subscription(&scscf, &aor, &to_tag).await;
            })
            .detach();
        }
    }
}

/// Ends a subscription whose subscriber is gone (its NOTIFY got 481 or no answer).
async fn drop_subscription(scscf: &ScscfCore, aor: &str, to_tag: &str) {
    for _ in 0..CAS_ATTEMPTS {
        let Ok(current) = scscf.store.get(aor).await else {
            return;
        };
        if !current.state.subscriptions.contains_key(to_tag) {
            return;
        }
        let mut state = current.state.clone();
        state.subscriptions.remove(to_tag);
        let next = Versioned { state, ..current };
        if !matches!(scscf.store.compare_and_set(aor, next).await, Ok(false)) {
            return;
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
            let change = Change {
                aor: &expired.aor,
                state: &expired.state,
                ended_bindings: &expired.swept.ended_bindings,
            };
            notify::queue_changes(
                &mut scscf.outbox.borrow_mut(),
                &scscf.settings.scscf_uri,
                change,
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
                    let _ = scscf.lookup(call).await;
                })
                .detach();
            }
        }
    }
}
