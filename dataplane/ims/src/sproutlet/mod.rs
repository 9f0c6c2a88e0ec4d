//! Sproutlets: the S-CSCF's functions as sans-IO transactions chained per request, in the
//! shape of Sprout's (`sproutlet.h`).
//!
//! A [`Sproutlet`] looks at a request and either takes it (a [`SproutletTsx`] for this
//! request) or lets the next one in the [`Chain`] have it. A transaction never performs a
//! lookup: it returns [`Decision::Ask`] with a [`Query`], the engine runs the query
//! (Homestead, the registration store) and hands the [`Answer`] back. Everything else a
//! callback does goes through [`Cx`]: the clock (passed in), the core's authenticator and
//! nonce salts, and the NOTIFYs to send, collected for the engine to originate afterwards.
//! A transaction that is done with a request passes it on with [`Decision::Next`]; what it
//! learnt (who authenticated) travels with the request in [`Facts`].
//!
//! The S-CSCF chain is [`Chain::scscf`]: authentication, registrar, reg-event
//! subscriptions, then originating/terminating routing.

mod authentication;
mod chain;
pub mod notify;
mod registrar;
mod routing;
mod subscription;

use std::fmt;

use proxy::Target;
use sip::{Message, Scheme};

use crate::auth::Authenticator;
use crate::registrar::{AorState, RegisterPolicy};

pub use self::authentication::{Authentication, immediate_challenge};
pub use self::chain::{Chain, Run, Step};
pub use self::notify::Notify;
pub use self::registrar::Registrar;
pub use self::routing::Scscf;
pub use self::subscription::RegEvent;

/// Compare-and-swap attempts before a request that writes the registration store gets
/// 500.
pub const CAS_ATTEMPTS: u32 = 8;

/// What a transaction needs found out before it can go on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    /// The digest HA1 of `impi` for `impu` ([`Answer::Ha1`]).
    DigestHa1 {
        /// Private identity.
        impi: String,
        /// Public identity.
        impu: String,
    },
    /// A Digest AKA vector ([`Answer::AkaVector`]).
    AkaVector {
        /// Private identity.
        impi: String,
        /// Public identity.
        impu: String,
        /// AKA version, 1 or 2.
        version: u8,
        /// base64(RAND ‖ AUTS) to resynchronise the sequence number first.
        resync: Option<String>,
    },
    /// Tell Homestead of a registration change ([`Answer::Identities`]).
    Registration {
        /// Public identity.
        impu: String,
        /// Private identity.
        impi: String,
        /// The change.
        change: RegistrationChange,
    },
    /// Whether `impu` is a subscriber at all ([`Answer::Exists`]).
    Exists {
        /// Public identity.
        impu: String,
    },
    /// An AoR's registration state ([`Answer::Aor`]).
    ReadAor {
        /// The AoR.
        aor: String,
    },
    /// Store `next` if the AoR is still at `next`'s version ([`Answer::Written`]).
    WriteAor {
        /// The AoR.
        aor: String,
        /// The new state, quoting the version it was derived from.
        next: Box<Versioned>,
    },
}

/// What a [`Query`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// For [`Query::DigestHa1`].
    Ha1(Result<String, LookupFailure>),
    /// For [`Query::AkaVector`]: `None` when the subscriber uses plain digest.
    AkaVector(Result<Option<AkaVector>, LookupFailure>),
    /// For [`Query::Registration`]: the implicit registration set's public identities.
    Identities(Result<Vec<String>, LookupFailure>),
    /// For [`Query::Exists`].
    Exists(Result<bool, LookupFailure>),
    /// For [`Query::ReadAor`].
    Aor(Result<Versioned, StoreFailure>),
    /// For [`Query::WriteAor`]: `false` when someone wrote the AoR first.
    Written(Result<bool, StoreFailure>),
}

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

/// Why the registration store could not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreFailure {
    /// The owner core holds as many AoRs as it may.
    #[error("registration store full on core {0}")]
    Full(usize),
    /// The owner core's channel is gone (it stopped).
    #[error("registration store owner core {0} is not answering")]
    OwnerGone(usize),
    /// No replica of the AoR could be reached.
    #[error("registration store unavailable: {0}")]
    Unavailable(String),
}

/// An AoR's state and the version a compare-and-swap must quote (0: absent), with the
/// replica it was read from (memcached; always 0 for the embedded store).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Versioned {
    /// The state.
    pub state: AorState,
    /// The store's version of it.
    pub version: u64,
    /// The replica it came from.
    pub replica: u8,
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

/// How the S-CSCF's sproutlets behave.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The home domain: REGISTERs for it are ours, requests to it are terminating.
    pub home_domain: String,
    /// Our own URI for Service-Route (`;lr;orig` is added) and the Contact of our
    /// NOTIFYs.
    pub scscf_uri: String,
    /// The longest reg-event subscription granted, in seconds.
    pub sub_max_expires: u32,
    /// Challenge REGISTERs.
    pub authenticate_register: bool,
    /// Challenge initial requests from our users with 407.
    pub authenticate_originating: bool,
    /// Registration expiry limits.
    pub register: RegisterPolicy,
    /// How long a nonce is good for (the replay record of an AoR is kept this long).
    pub nonce_lifetime_s: u64,
}

/// A counter for salts that make each challenge's nonce unique. Unique per core and
/// start is enough: the MAC, not the salt, is what protects a nonce.
#[derive(Debug, Clone)]
pub struct Salts(u64);

impl Salts {
    /// Starts at `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next salt.
    pub fn next_salt(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        self.0
    }
}

/// What a callback may use and where it leaves its side effects.
#[derive(Debug)]
pub struct Cx<'a> {
    /// Seconds since the Unix epoch (nonces and expiries are cluster-wide wall-clock
    /// times).
    pub now_s: u64,
    /// The address the request came from, when the engine knows it (guessing limits).
    pub source: Option<std::net::IpAddr>,
    /// The sproutlets' settings.
    pub settings: &'a Settings,
    /// The core's authenticator (nonce keys and the nonce-count table).
    pub auth: &'a mut Authenticator,
    /// The core's salts.
    pub salts: &'a mut Salts,
    /// NOTIFYs for the engine to originate.
    pub notifies: &'a mut Vec<Notify>,
}

/// What earlier sproutlets of the chain established about the request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    /// The private identity that proved itself.
    pub impi: Option<String>,
    /// The nonce and count of the credentials accepted (kept with the AoR, so a replay
    /// sent to another core or node is refused too).
    pub proof: Option<(String, u32)>,
    /// Proxy-Authorization was checked (and is taken off before forwarding).
    pub proxy_authenticated: bool,
}

/// A final answer for the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Our To tag, when the answer starts a dialog of ours (a subscription).
    pub to_tag: Option<String>,
    /// Headers to add.
    pub headers: Vec<(&'static str, Vec<u8>)>,
}

/// What a transaction's callback decided.
#[must_use = "a decision is the only way a sproutlet acts on its request"]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Answer the request.
    Respond(Response),
    /// Forward it to these branches (forked in parallel).
    Forward(Vec<Target>),
    /// Done with it: the next sproutlet of the chain takes it.
    Next,
    /// Find this out and call back with the answer.
    Ask(Query),
}

impl Decision {
    /// A final answer with no header of ours.
    pub fn status(status: u16) -> Self {
        Self::answer(status, Vec::new())
    }

    /// A final answer with headers.
    pub fn answer(status: u16, headers: Vec<(&'static str, Vec<u8>)>) -> Self {
        Self::Respond(Response {
            status,
            to_tag: None,
            headers,
        })
    }

    /// Ask for `aor`'s state.
    pub fn read_aor(aor: &str) -> Self {
        Self::Ask(Query::ReadAor {
            aor: aor.to_owned(),
        })
    }

    /// Ask to store `state` for `aor` if it is still at the version of `read`.
    pub fn write_aor(aor: &str, read: Versioned, state: AorState) -> Self {
        Self::Ask(Query::WriteAor {
            aor: aor.to_owned(),
            next: Box::new(Versioned { state, ..read }),
        })
    }
}

/// A function of the S-CSCF: takes the requests it serves.
pub trait Sproutlet: fmt::Debug {
    /// Its name (logs, metrics).
    fn name(&self) -> &'static str;
    /// A transaction for `req` if this sproutlet serves it; `None` passes it on.
    fn get_tsx(&self, req: &Message<'_>, settings: &Settings) -> Option<Box<dyn SproutletTsx>>;
}

/// One request inside one sproutlet.
pub trait SproutletTsx: fmt::Debug {
    /// The request arrives.
    fn on_initial_request(
        &mut self,
        req: &Message<'_>,
        facts: &mut Facts,
        cx: &mut Cx<'_>,
    ) -> Decision;
    /// The answer to the query this transaction asked.
    fn on_answer(
        &mut self,
        req: &Message<'_>,
        answer: Answer,
        facts: &mut Facts,
        cx: &mut Cx<'_>,
    ) -> Decision;
}

/// The AoR of a URI: scheme, user and host, without port or parameters (`sip:user@host`).
pub fn aor_of(uri: &sip::Uri<'_>) -> Option<String> {
    let user = uri.user()?;
    let host = uri.host_raw();
    let scheme = match uri.scheme() {
        Scheme::Sips => "sips",
        _ => "sip",
    };
    // One allocation: this runs for every REGISTER and every terminating request.
    let mut aor = String::with_capacity(scheme.len() + 2 + user.len() + host.len());
    aor.push_str(scheme);
    aor.push(':');
    aor.push_str(&String::from_utf8_lossy(user));
    aor.push('@');
    let start = aor.len();
    aor.push_str(&String::from_utf8_lossy(host));
    aor[start..].make_ascii_lowercase();
    Some(aor)
}

/// The AoR a REGISTER or SUBSCRIBE is about (its To).
pub(crate) fn to_aor(req: &Message<'_>) -> Option<String> {
    req.to().ok().and_then(|to| aor_of(to.uri()))
}

/// IMS UEs without credentials yet are identified by their AoR's user@host.
pub(crate) fn default_impi(aor: &str) -> String {
    aor.split_once(':').map_or(aor, |(_, rest)| rest).to_owned()
}

/// Whether a request came through our Service-Route (a Route with `;orig`): it is served
/// for its sender.
pub fn is_originating(req: &Message<'_>) -> bool {
    req.routes()
        .any(|route| route.is_ok_and(|r| r.uri().params().contains(b"orig")))
}

/// Whether a request is a SUBSCRIBE for the reg event package.
pub(crate) fn is_reg_event(req: &Message<'_>) -> bool {
    req.method() == Some(sip::Method::Subscribe)
        && req
            .event()
            .ok()
            .flatten()
            .is_some_and(|e| e.value().eq_ignore_ascii_case(b"reg"))
}

/// Whether a request is out of any dialog (no To tag).
pub(crate) fn is_initial(req: &Message<'_>) -> bool {
    req.to().ok().is_some_and(|to| to.tag().is_none())
}

/// The answer when the registration store fails.
pub(crate) fn store_failed(e: StoreFailure) -> Decision {
    match e {
        StoreFailure::Full(_) | StoreFailure::Unavailable(_) => Decision::status(503),
        StoreFailure::OwnerGone(_) => Decision::status(500),
    }
}

/// The answer to an answer that is not the one asked for: the engine broke its side of
/// the contract, and the request fails rather than the core.
pub(crate) fn unexpected() -> Decision {
    Decision::status(500)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_aor_keeps_its_user_and_scheme_and_lowercases_its_host() {
        let aor = |text: &str| aor_of(&sip::Uri::parse(text.as_bytes()).expect("a URI"));
        assert_eq!(
            aor("sip:Alice@Example.COM:5060;transport=tcp").as_deref(),
            Some("sip:Alice@example.com")
        );
        assert_eq!(
            aor("sips:6505550000@example.com").as_deref(),
            Some("sips:6505550000@example.com")
        );
        assert_eq!(aor("sip:example.com"), None);
    }
}
