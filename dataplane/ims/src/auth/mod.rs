//! Digest authentication of REGISTER (401) and of initial requests (407), as Sprout's
//! authentication sproutlet does it (reference §1.4), with nonces any node can check
//! without shared state.
//!
//! A request with no credentials for our realm is challenged at once: the challenge needs
//! no subscriber data, so a known and an unknown user get challenges of the same shape at
//! the same speed (a scanner learns nothing). Credentials are checked against the HA1 the
//! engine fetches from Homestead; only then does an unknown user get 403.

pub mod aka;
pub mod digest;
pub mod guessing;
pub mod nonce;
pub mod replay;

use sip::Auth;
use sip::{HeaderName, Message};

use self::aka::{AkaVersion, PendingAka};
use self::digest::ResponseInput;
use self::guessing::{GuessingGuard, GuessingLimits};
use self::nonce::{NonceCheck, NonceId, NonceKey};
use self::replay::{Count, NonceCounts};
use sha2::{Digest as _, Sha256};

/// How a core authenticates.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// The digest realm (the home domain, as Clearwater uses).
    pub realm: String,
    /// The cluster secret nonces are keyed with (shared by every node).
    pub secret: Vec<u8>,
    /// How long a nonce stays fresh, in seconds.
    pub nonce_lifetime_s: u64,
    /// Whether a UE may reuse a nonce with a rising nonce count (Clearwater's
    /// `nonce_count_supported`); off, every nonce serves one request.
    pub nonce_reuse: bool,
    /// Nonces whose counts a core tracks at once; beyond it, requests get 503.
    pub max_tracked_nonces: usize,
    /// When failed attempts lock an address or an identity out.
    pub guessing: GuessingLimits,
    /// Whether credentials must name the Request-URI in their `uri` (RFC 7616 §3.4.6).
    /// Off only for clients that do not (SIPp without `-auth_uri`).
    pub check_digest_uri: bool,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            realm: "example.com".to_owned(),
            secret: Vec::new(),
            nonce_lifetime_s: 40,
            nonce_reuse: true,
            max_tracked_nonces: 1 << 20,
            guessing: GuessingLimits::default(),
            check_digest_uri: true,
        }
    }
}

/// The challenge header: 401's WWW-Authenticate or 407's Proxy-Authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChallengeKind {
    /// REGISTER: 401 with WWW-Authenticate, credentials in Authorization.
    Register,
    /// Other initial requests: 407 with Proxy-Authenticate, credentials in
    /// Proxy-Authorization.
    Proxy,
}

impl ChallengeKind {
    /// The status of the challenge.
    pub const fn status(self) -> u16 {
        match self {
            Self::Register => 401,
            Self::Proxy => 407,
        }
    }

    /// The header the challenge goes in.
    pub const fn challenge_header(self) -> &'static str {
        match self {
            Self::Register => "WWW-Authenticate",
            Self::Proxy => "Proxy-Authenticate",
        }
    }

    const fn credentials_header(self) -> HeaderName {
        match self {
            Self::Register => HeaderName::Authorization,
            Self::Proxy => HeaderName::ProxyAuthorization,
        }
    }
}

/// What a request's credentials call for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presented<'a> {
    /// Nothing usable for our realm (none, another realm, a nonce not ours): challenge.
    Challenge,
    /// Digest credentials with a nonce of ours for `impi`: fetch its HA1, then
    /// [`Authenticator::verify`].
    Verify {
        /// The private identity (the `username`).
        impi: &'a [u8],
        /// The credentials.
        credentials: Auth<'a>,
        /// The nonce, fresh or stale.
        nonce: NonceCheck,
    },
    /// Credentials naming Digest AKA: challenge with a vector from Homestead, or check
    /// against the one kept from the challenge.
    Aka {
        /// The private identity.
        impi: &'a [u8],
        /// The credentials (an empty nonce on a UE's first REGISTER; `auts` to resync).
        credentials: Auth<'a>,
        /// AKAv1 or AKAv2.
        version: AkaVersion,
    },
    /// Credentials for our realm that cannot be parsed: 400.
    Malformed,
    /// Credentials whose `uri` names another resource than the Request-URI: a response
    /// captured for one request replayed on another. 400 (RFC 7616 §3.4.6).
    WrongUri,
}

/// The verdict on credentials checked against the subscriber's HA1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The response is right and the nonce count new.
    Authenticated,
    /// The response is right but the nonce expired: challenge again with `stale=true`.
    Stale,
    /// Wrong response, wrong algorithm or qop: 403.
    Forbidden,
    /// A nonce count already used: a replay. 403.
    Replayed,
    /// Too many nonces tracked to check this one: 503.
    Busy,
}

/// One core's authenticator.
#[derive(Debug)]
pub struct Authenticator {
    realm: Vec<u8>,
    key: NonceKey,
    counts: NonceCounts,
    nonce_reuse: bool,
    guessing: GuessingGuard,
    check_digest_uri: bool,
}

impl Authenticator {
    /// An authenticator starting at `now_s` (Unix seconds).
    pub fn new(config: &AuthConfig, now_s: u64) -> Self {
        Self {
            realm: config.realm.as_bytes().to_vec(),
            key: NonceKey::new(&config.secret, config.nonce_lifetime_s),
            counts: NonceCounts::new(
                config.max_tracked_nonces,
                config.nonce_lifetime_s + 5,
                now_s,
            ),
            nonce_reuse: config.nonce_reuse,
            guessing: GuessingGuard::new(config.guessing),
            check_digest_uri: config.check_digest_uri,
        }
    }

    /// The failed-attempt counts (password guessing).
    pub fn guessing(&mut self) -> &mut GuessingGuard {
        &mut self.guessing
    }

    /// The failed-attempt counts, to read.
    pub const fn guessing_stats(&self) -> guessing::GuessingStats {
        self.guessing.stats()
    }

    /// The realm challenged for.
    pub fn realm(&self) -> &[u8] {
        &self.realm
    }

    /// Writes a challenge header value for `impi` into `out`. The same shape for every
    /// user, known or not.
    pub fn challenge(&self, now_s: u64, salt: u64, impi: &[u8], stale: bool, out: &mut Vec<u8>) {
        let nonce = self.key.issue(now_s, salt, &self.realm, impi);
        out.extend_from_slice(b"Digest realm=\"");
        out.extend_from_slice(&self.realm);
        out.extend_from_slice(b"\",nonce=\"");
        out.extend_from_slice(nonce.as_bytes());
        out.extend_from_slice(b"\",algorithm=MD5,qop=\"auth\"");
        if stale {
            out.extend_from_slice(b",stale=TRUE");
        }
    }

    /// Finds the request's digest credentials for our realm and checks their nonce.
    pub fn inspect<'a>(
        &self,
        request: &Message<'a>,
        kind: ChallengeKind,
        now_s: u64,
    ) -> Presented<'a> {
        self.inspect_with(request, kind, |nonce, impi| {
            self.key.check(nonce, now_s, &self.realm, impi)
        })
    }

    /// As [`inspect`](Self::inspect), for a request it found to carry a nonce of ours
    /// (`checked`): only the nonce's age at `now_s` is judged again, not its HMAC.
    pub fn reinspect<'a>(
        &self,
        request: &Message<'a>,
        kind: ChallengeKind,
        checked: NonceCheck,
        now_s: u64,
    ) -> Presented<'a> {
        self.inspect_with(request, kind, |_, _| self.key.age(checked, now_s))
    }

    fn inspect_with<'a>(
        &self,
        request: &Message<'a>,
        kind: ChallengeKind,
        check_nonce: impl Fn(&[u8], &[u8]) -> NonceCheck,
    ) -> Presented<'a> {
        // Credentials are one header line each: commas separate their parameters, not values.
        for header in request.headers_named(kind.credentials_header()) {
            let Ok(credentials) = Auth::parse(header.value()) else {
                return Presented::Malformed;
            };
            if !credentials.is_digest() || credentials.realm() != Some(&self.realm[..]) {
                continue;
            }
            let (Some(impi), Some(nonce)) = (credentials.username(), credentials.nonce()) else {
                return Presented::Malformed;
            };
            let answers = !nonce.is_empty() && credentials.response().is_some();
            if answers && self.check_digest_uri && !names_request_uri(&credentials, request) {
                return Presented::WrongUri;
            }
            if let Some(version) = credentials.algorithm().and_then(AkaVersion::from_algorithm) {
                return Presented::Aka {
                    impi,
                    credentials,
                    version,
                };
            }
            if nonce.is_empty() {
                // An IMS UE's first REGISTER names its IMPI with an empty nonce.
                return Presented::Challenge;
            }
            return match check_nonce(nonce, impi) {
                NonceCheck::Invalid => Presented::Challenge,
                nonce => Presented::Verify {
                    impi,
                    credentials,
                    nonce,
                },
            };
        }
        Presented::Challenge
    }

    /// Checks `credentials` for a request with `method` against the subscriber's `ha1`
    /// (32 hex digits), recording the nonce count when they are right.
    pub fn verify(
        &mut self,
        credentials: &Auth<'_>,
        nonce: NonceCheck,
        method: &[u8],
        ha1: &[u8],
        now_s: u64,
    ) -> Outcome {
        let algorithm_ok = credentials
            .algorithm()
            .is_none_or(|a| a.eq_ignore_ascii_case(b"MD5"));
        if !algorithm_ok {
            return Outcome::Forbidden;
        }
        let nc = match check_response(credentials, method, ha1) {
            Ok(nc) => nc,
            Err(outcome) => return outcome,
        };
        let id = match nonce {
            NonceCheck::Fresh(id) => id,
            NonceCheck::Stale(_) => return Outcome::Stale,
            NonceCheck::Invalid => return Outcome::Forbidden,
        };
        self.record(id, nc, now_s)
    }

    /// Checks Digest AKA `credentials` against the vector kept from the challenge: the
    /// nonce must be that vector's, and the response computed with its RES-derived
    /// password.
    pub fn verify_aka(
        &mut self,
        credentials: &Auth<'_>,
        pending: &PendingAka,
        method: &[u8],
        now_s: u64,
    ) -> Outcome {
        let (Some(username), Some(nonce)) = (credentials.username(), credentials.nonce()) else {
            return Outcome::Forbidden;
        };
        if nonce != pending.nonce.as_bytes() || username != pending.impi.as_bytes() {
            return Outcome::Forbidden;
        }
        let Some(password) = pending.password() else {
            return Outcome::Forbidden;
        };
        let ha1 = digest::ha1(username, &self.realm, &password);
        let nc = match check_response(credentials, method, &ha1) {
            Ok(nc) => nc,
            Err(outcome) => return outcome,
        };
        if now_s > pending.expires {
            return Outcome::Stale;
        }
        let id: NonceId = Sha256::digest(nonce).into();
        self.record(id, nc, now_s)
    }

    fn record(&mut self, id: NonceId, nc: u32, now_s: u64) -> Outcome {
        match self.counts.record(id, nc, !self.nonce_reuse, now_s) {
            Count::Accepted => Outcome::Authenticated,
            Count::Replayed => Outcome::Replayed,
            Count::Full => Outcome::Busy,
        }
    }
}

/// Whether the credentials' `uri` is the request's Request-URI: the same bytes, or the
/// same resource by RFC 3261 §19.1.4 (a UE may write case or parameters differently).
fn names_request_uri(credentials: &Auth<'_>, request: &Message<'_>) -> bool {
    let Some(uri) = credentials.digest_uri() else {
        return false;
    };
    if request.request_uri_raw() == Some(uri) {
        return true;
    }
    match (request.request_uri(), sip::Uri::parse(uri)) {
        (Some(Ok(target)), Ok(named)) => target.equivalent(&named),
        _ => false,
    }
}

/// The digest response check shared by MD5 and AKA: qop=auth with nc and cnonce, and
/// the expected response for `ha1`. The nonce count when right.
fn check_response(credentials: &Auth<'_>, method: &[u8], ha1: &[u8]) -> Result<u32, Outcome> {
    let (Some(uri), Some(response), Some(nonce_text), Some(qop), Some(nc_text), Some(cnonce)) = (
        credentials.digest_uri(),
        credentials.response(),
        credentials.nonce(),
        credentials.qop(),
        credentials.param(b"nc"),
        credentials.cnonce(),
    ) else {
        return Err(Outcome::Forbidden);
    };
    let Some(nc) = credentials.nonce_count() else {
        return Err(Outcome::Forbidden);
    };
    if !qop.eq_ignore_ascii_case(b"auth") {
        return Err(Outcome::Forbidden);
    }
    let expected = digest::expected_response(
        &ascii_lowercase::<32>(ha1),
        &ResponseInput {
            method,
            uri,
            nonce: nonce_text,
            qop: Some((qop, nc_text, cnonce)),
        },
    );
    if nonce::constant_time_eq(&expected, &ascii_lowercase::<32>(response)) {
        Ok(nc)
    } else {
        Err(Outcome::Forbidden)
    }
}

/// Hex digits compared without regard to case; anything not 32 long never matches.
fn ascii_lowercase<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    if bytes.len() == N {
        for (o, b) in out.iter_mut().zip(bytes) {
            *o = b.to_ascii_lowercase();
        }
    }
    out
}
