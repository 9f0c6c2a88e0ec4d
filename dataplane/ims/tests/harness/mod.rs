//! A harness for the S-CSCF sproutlet chain: requests go in as SIP text, every query the
//! chain asks is answered by an in-memory registration store and a fake Homestead, and
//! the tests look at the steps, the queries asked and the NOTIFYs queued.
// Each test file uses its own part of the harness.
#![allow(dead_code, unreachable_pub)]

use std::collections::HashMap;

use ims::auth::digest;
use ims::auth::{AuthConfig, Authenticator};
use ims::registrar::{self, AorState, Register, RegisterPolicy};
use ims::sproutlet::{
    AkaVector, Answer, Chain, Cx, LookupFailure, Notify, Query, RegistrationChange, Run, Salts,
    Settings, Step, Versioned, aor_of, immediate_challenge,
};

mod messages;

pub use self::messages::*;

/// The clock the harness starts at (Unix seconds).
pub const NOW: u64 = 1_800_000_000;
/// The home domain, also the digest realm.
pub const HOME: &str = "example.com";
/// The S-CSCF's own URI.
pub const SCSCF_URI: &str = "sip:scscf.example.com";
/// The subscriber every harness knows: private identity, AoR, second identity, password.
pub const IMPI: &str = "6505550000@example.com";
pub const AOR: &str = "sip:6505550000@example.com";
pub const TEL: &str = "tel:+16505550000";
pub const PASSWORD: &str = "7kkzTyGW";
/// How long a nonce stays fresh.
pub const NONCE_LIFETIME_S: u64 = 40;
/// Where the UE's REGISTERs come through: the P-CSCF's Path.
pub const PATH: &str = "<sip:10.0.0.2:5060;lr>";
/// The UE's contact.
pub const CONTACT: &str = "<sip:ue@10.0.0.1:5060>";

/// The authenticator configuration; a second core is a second `Authenticator` of it.
pub fn auth_config() -> AuthConfig {
    AuthConfig {
        realm: HOME.to_owned(),
        secret: b"a cluster secret, 32 bytes long!".to_vec(),
        nonce_lifetime_s: NONCE_LIFETIME_S,
        nonce_reuse: true,
        max_tracked_nonces: 1024,
        guessing: ims::auth::guessing::GuessingLimits::default(),
        check_digest_uri: true,
    }
}

pub fn settings() -> Settings {
    Settings {
        home_domain: HOME.to_owned(),
        scscf_uri: SCSCF_URI.to_owned(),
        sub_max_expires: 3600,
        authenticate_register: true,
        authenticate_originating: false,
        register: RegisterPolicy::default(),
        nonce_lifetime_s: NONCE_LIFETIME_S,
    }
}

/// The registration store: AoRs with versions, written by compare-and-set.
#[derive(Debug, Default)]
pub struct Store {
    aors: HashMap<String, Versioned>,
    /// Writes still to lose, as if another node had written the AoR first.
    lost_writes: u32,
}

impl Store {
    /// The AoR as stored; an absent AoR is empty at version 0.
    pub fn read(&self, aor: &str) -> Versioned {
        self.aors.get(aor).cloned().unwrap_or_default()
    }

    /// Stores `next` if the AoR is still at the version `next` was derived from.
    pub fn write(&mut self, aor: &str, next: Versioned) -> bool {
        if self.lost_writes > 0 {
            self.lost_writes -= 1;
            return false;
        }
        let current = self.aors.get(aor).map_or(0, |v| v.version);
        if next.version != current {
            return false;
        }
        self.put(aor, next.state);
        true
    }

    /// Stores `state` as the next version, whatever is there.
    pub fn put(&mut self, aor: &str, state: AorState) {
        let version = self.aors.get(aor).map_or(0, |v| v.version) + 1;
        self.aors.insert(
            aor.to_owned(),
            Versioned {
                state,
                version,
                replica: 0,
            },
        );
    }

    pub fn lose_next_writes(&mut self, count: u32) {
        self.lost_writes = count;
    }

    pub fn lose_every_write(&mut self) {
        self.lost_writes = u32::MAX;
    }
}

/// Homestead: HA1 per private identity, AKA vectors, implicit registration sets.
#[derive(Debug, Default)]
pub struct Homestead {
    ha1: HashMap<String, String>,
    /// The implicit registration set, under each of its public identities.
    identities: HashMap<String, Vec<String>>,
    pub aka: HashMap<String, AkaVector>,
    /// Every lookup fails with this while set.
    pub failure: Option<LookupFailure>,
}

impl Homestead {
    pub fn add_subscriber(&mut self, impi: &str, password: &str, identities: &[&str]) {
        let ha1 = digest::ha1(impi.as_bytes(), HOME.as_bytes(), password.as_bytes());
        self.ha1
            .insert(impi.to_owned(), String::from_utf8_lossy(&ha1).into_owned());
        let set: Vec<String> = identities.iter().map(|&i| i.to_owned()).collect();
        for identity in identities {
            self.identities.insert((*identity).to_owned(), set.clone());
        }
    }

    pub fn answer(&self, query: &Query) -> Answer {
        match query {
            Query::DigestHa1 { impi, .. } => Answer::Ha1(self.unless_failing(|| {
                self.ha1
                    .get(impi)
                    .cloned()
                    .ok_or_else(|| LookupFailure::NotFound(impi.clone()))
            })),
            Query::AkaVector { impi, .. } => Answer::AkaVector(self.unless_failing(|| {
                match (self.aka.get(impi), self.ha1.contains_key(impi)) {
                    (Some(vector), _) => Ok(Some(vector.clone())),
                    (None, true) => Ok(None),
                    (None, false) => Err(LookupFailure::NotFound(impi.clone())),
                }
            })),
            Query::Registration { impu, .. } => Answer::Identities(self.unless_failing(|| {
                self.identities
                    .get(impu)
                    .cloned()
                    .ok_or_else(|| LookupFailure::NotFound(impu.clone()))
            })),
            Query::Exists { impu } => {
                Answer::Exists(self.unless_failing(|| Ok(self.identities.contains_key(impu))))
            }
            Query::ReadAor { .. } | Query::WriteAor { .. } => {
                panic!("the registration store answers {query:?}")
            }
        }
    }

    fn unless_failing<T>(
        &self,
        found: impl FnOnce() -> Result<T, LookupFailure>,
    ) -> Result<T, LookupFailure> {
        match &self.failure {
            Some(failure) => Err(failure.clone()),
            None => found(),
        }
    }
}

/// Queries asked for one request before the harness gives up on it as looping.
const MAX_QUERIES: usize = 64;

/// One S-CSCF core: the chain, what its callbacks use, and fakes for what it asks.
#[derive(Debug)]
pub struct Harness {
    pub settings: Settings,
    pub auth: Authenticator,
    pub salts: Salts,
    pub notifies: Vec<Notify>,
    pub chain: Chain,
    pub now_s: u64,
    /// The address requests come from.
    pub source: Option<std::net::IpAddr>,
    pub store: Store,
    pub homestead: Homestead,
    /// The queries asked for the last request driven.
    pub queries: Vec<Query>,
}

impl Harness {
    /// A core with the default settings, knowing the subscriber `IMPI` (`AOR`, `TEL`).
    pub fn new(now_s: u64) -> Self {
        Self::configured(now_s, |_| {})
    }

    pub fn configured(now_s: u64, configure: impl FnOnce(&mut Settings)) -> Self {
        let mut settings = settings();
        configure(&mut settings);
        let mut homestead = Homestead::default();
        homestead.add_subscriber(IMPI, PASSWORD, &[AOR, TEL]);
        Self {
            settings,
            auth: Authenticator::new(&auth_config(), now_s),
            salts: Salts::new(1),
            notifies: Vec::new(),
            chain: Chain::scscf(),
            now_s,
            source: Some(std::net::IpAddr::from([192, 0, 2, 10])),
            store: Store::default(),
            homestead,
            queries: Vec::new(),
        }
    }

    /// Starts `raw` at the head of the chain.
    pub fn start(&mut self, raw: &str) -> (Run, Step) {
        let msg = parse(raw);
        let mut cx = Cx {
            now_s: self.now_s,
            source: self.source,
            settings: &self.settings,
            auth: &mut self.auth,
            salts: &mut self.salts,
            notifies: &mut self.notifies,
        };
        self.chain.start(&msg, &mut cx)
    }

    /// Hands `answer` to the transaction holding `raw` in `run`.
    pub fn answer(&mut self, run: &mut Run, raw: &str, answer: Answer) -> Step {
        let msg = parse(raw);
        let mut cx = Cx {
            now_s: self.now_s,
            source: self.source,
            settings: &self.settings,
            auth: &mut self.auth,
            salts: &mut self.salts,
            notifies: &mut self.notifies,
        };
        self.chain.answer(run, &msg, answer, &mut cx)
    }

    /// Runs `raw` through the chain, answering every query from the fakes, until the
    /// chain answers or forwards. The queries asked are left in `queries`.
    pub fn drive(&mut self, raw: &str) -> Step {
        self.queries.clear();
        let (mut run, mut step) = self.start(raw);
        while let Step::Ask(query) = step {
            assert!(
                self.queries.len() < MAX_QUERIES,
                "the chain keeps asking: {:?}",
                self.queries
            );
            let answer = match &query {
                Query::ReadAor { aor } => Answer::Aor(Ok(self.store.read(aor))),
                Query::WriteAor { aor, next } => {
                    Answer::Written(Ok(self.store.write(aor, (**next).clone())))
                }
                homestead => self.homestead.answer(homestead),
            };
            self.queries.push(query);
            step = self.answer(&mut run, raw, answer);
        }
        step
    }

    /// The queries of the last request, by kind, in the order asked.
    pub fn asked(&self) -> Vec<&'static str> {
        self.queries.iter().map(kind).collect()
    }

    /// The challenge the engine sends without the chain, if `raw` gets one.
    pub fn challenge_at_once(&mut self, raw: &str) -> Option<String> {
        let msg = parse(raw);
        let mut out = Vec::new();
        immediate_challenge(
            &msg,
            &self.settings,
            &self.auth,
            &mut self.salts,
            self.now_s,
            &mut out,
        )
        .then(|| String::from_utf8(out).expect("a challenge is ASCII"))
    }

    /// Drives `raw`, which must be challenged, and gives the challenge's nonce.
    pub fn challenge_nonce(&mut self, raw: &str) -> String {
        let step = self.drive(raw);
        assert!(
            matches!(status(&step), 401 | 407),
            "a challenge expected, got {step:?}"
        );
        nonce_of(&step)
    }

    /// Registers `raw` in the store directly, as an earlier REGISTER would have, with
    /// the implicit registration set Homestead gives for its AoR.
    pub fn seed_registration(&mut self, raw: &str) {
        let msg = parse(raw);
        let aor = msg
            .to()
            .ok()
            .and_then(|to| aor_of(to.uri()))
            .expect("a REGISTER with a To");
        let register = Register::from_message(&msg, IMPI).expect("a valid REGISTER");
        let current = self.store.read(&aor);
        let mut state = registrar::apply(
            &current.state,
            &register,
            self.now_s,
            self.settings.register,
        )
        .expect("the registrar accepts it")
        .state;
        if let Answer::Identities(Ok(set)) = self.homestead.answer(&Query::Registration {
            impu: aor.clone(),
            impi: IMPI.to_owned(),
            change: RegistrationChange::Register,
        }) {
            state.associated_uris = set;
        }
        self.store.put(&aor, state);
    }
}

fn kind(query: &Query) -> &'static str {
    match query {
        Query::DigestHa1 { .. } => "DigestHa1",
        Query::AkaVector {
            resync: Some(_), ..
        } => "AkaVector resync",
        Query::AkaVector { version: 1, .. } => "AkaVector v1",
        Query::AkaVector { .. } => "AkaVector v2",
        Query::Registration { change, .. } => match change {
            RegistrationChange::Register => "Registration reg",
            RegistrationChange::DeregisterUser => "Registration dereg-user",
            RegistrationChange::DeregisterAdmin => "Registration dereg-admin",
            RegistrationChange::DeregisterTimeout => "Registration dereg-timeout",
        },
        Query::Exists { .. } => "Exists",
        Query::ReadAor { .. } => "ReadAor",
        Query::WriteAor { .. } => "WriteAor",
    }
}
