//! Nonces any node of the cluster can check without shared state: the issue time, a salt
//! and a MAC over both and the identity, keyed with the cluster's secret. A nonce is bound
//! to the private identity it was issued for and expires after a lifetime; an expired one
//! with a correct response is answered `stale=true` (RFC 2617 §3.2.1), so the UE retries
//! without asking its user again.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The bytes a nonce carries: issue time (8), salt (8), MAC (16).
pub const NONCE_BYTES: usize = 32;
const MAC_BYTES: usize = 16;

/// A nonce as decoded, the key for replay tracking.
pub type NonceId = [u8; NONCE_BYTES];

/// What a nonce presented by a UE turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceCheck {
    /// Issued by the cluster for this identity and not yet expired.
    Fresh(NonceId),
    /// Issued by the cluster for this identity, but older than the lifetime.
    Stale(NonceId),
    /// Not ours, not for this identity, or from the future: challenge afresh.
    Invalid,
}

/// The cluster secret and the nonce lifetime.
#[derive(Clone)]
pub struct NonceKey {
    mac: Hmac<Sha256>,
    lifetime_s: u64,
}

impl std::fmt::Debug for NonceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NonceKey")
            .field("lifetime_s", &self.lifetime_s)
            .finish_non_exhaustive()
    }
}

/// A nonce issued by another node whose clock runs ahead of ours by up to this much is
/// still accepted.
const CLOCK_SKEW_S: u64 = 5;

impl NonceKey {
    /// A key from the cluster secret (at least 16 bytes; shared through etcd in a cluster).
    pub fn new(secret: &[u8], lifetime_s: u64) -> Self {
        Self {
            mac: Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length"),
            lifetime_s,
        }
    }

    /// How long a nonce stays fresh.
    pub const fn lifetime_s(&self) -> u64 {
        self.lifetime_s
    }

    fn tag(&self, issued: u64, salt: u64, realm: &[u8], impi: &[u8]) -> [u8; MAC_BYTES] {
        let mut mac = self.mac.clone();
        mac.update(&issued.to_be_bytes());
        mac.update(&salt.to_be_bytes());
        // Lengths first, so that no two (realm, impi) pairs feed the MAC the same bytes.
        mac.update(&(realm.len() as u32).to_be_bytes());
        mac.update(realm);
        mac.update(impi);
        let full = mac.finalize().into_bytes();
        let mut tag = [0; MAC_BYTES];
        tag.copy_from_slice(&full[..MAC_BYTES]);
        tag
    }

    /// A nonce for `impi` in `realm`, issued at `now_s` (Unix seconds). `salt` makes each
    /// challenge unique; the engine draws it from its random source.
    pub fn issue(&self, now_s: u64, salt: u64, realm: &[u8], impi: &[u8]) -> String {
        let mut raw = [0u8; NONCE_BYTES];
        raw[..8].copy_from_slice(&now_s.to_be_bytes());
        raw[8..16].copy_from_slice(&salt.to_be_bytes());
        raw[16..].copy_from_slice(&self.tag(now_s, salt, realm, impi));
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// Checks a nonce a UE sent back for `impi` in `realm` at `now_s`.
    pub fn check(&self, nonce: &[u8], now_s: u64, realm: &[u8], impi: &[u8]) -> NonceCheck {
        let mut raw = [0u8; NONCE_BYTES];
        match URL_SAFE_NO_PAD.decode_slice(nonce, &mut raw) {
            Ok(NONCE_BYTES) => {}
            _ => return NonceCheck::Invalid,
        }
        let (Some(issued), Some(salt)) = (raw.first_chunk::<8>(), raw[8..].first_chunk::<8>())
        else {
            return NonceCheck::Invalid;
        };
        let (issued, salt) = (u64::from_be_bytes(*issued), u64::from_be_bytes(*salt));
        let expected = self.tag(issued, salt, realm, impi);
        if !constant_time_eq(&expected, &raw[16..]) || issued > now_s + CLOCK_SKEW_S {
            return NonceCheck::Invalid;
        }
        if now_s.saturating_sub(issued) > self.lifetime_s {
            NonceCheck::Stale(raw)
        } else {
            NonceCheck::Fresh(raw)
        }
    }
}

impl NonceKey {
    /// A nonce [`check`](Self::check) found ours, judged again at `now_s`: whether it went
    /// stale since (while Homestead answered, say). Its tag is not computed again.
    pub fn age(&self, checked: NonceCheck, now_s: u64) -> NonceCheck {
        let (NonceCheck::Fresh(raw) | NonceCheck::Stale(raw)) = checked else {
            return NonceCheck::Invalid;
        };
        let issued = raw.first_chunk::<8>().map_or(0, |b| u64::from_be_bytes(*b));
        if now_s.saturating_sub(issued) > self.lifetime_s {
            NonceCheck::Stale(raw)
        } else {
            NonceCheck::Fresh(raw)
        }
    }
}

/// Compares without an early exit, so the time taken says nothing about where bytes differ.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const REALM: &[u8] = b"example.com";
    const ALICE: &[u8] = b"alice@example.com";

    fn key() -> NonceKey {
        NonceKey::new(b"cluster secret of sixteen+ bytes", 30)
    }

    #[test]
    fn a_checked_nonce_ages_without_its_tag_computed_again() {
        let k = key();
        let nonce = k.issue(1_000, 7, REALM, ALICE);
        let checked = k.check(nonce.as_bytes(), 1_000, REALM, ALICE);
        assert!(matches!(checked, NonceCheck::Fresh(_)));
        assert_eq!(k.age(checked, 1_030), checked);
        assert!(matches!(k.age(checked, 1_031), NonceCheck::Stale(_)));
        assert_eq!(k.age(NonceCheck::Invalid, 1_000), NonceCheck::Invalid);
    }

    #[test]
    fn a_nonce_is_fresh_for_its_lifetime_then_stale() {
        let k = key();
        let n = k.issue(1_000, 7, REALM, ALICE);
        assert_eq!(n.len(), 43, "32 bytes in unpadded base64url");
        assert!(matches!(
            k.check(n.as_bytes(), 1_000, REALM, ALICE),
            NonceCheck::Fresh(_)
        ));
        assert!(matches!(
            k.check(n.as_bytes(), 1_030, REALM, ALICE),
            NonceCheck::Fresh(_)
        ));
        assert!(matches!(
            k.check(n.as_bytes(), 1_031, REALM, ALICE),
            NonceCheck::Stale(_)
        ));
    }

    #[test]
    fn a_nonce_is_bound_to_its_identity_realm_and_secret() {
        let k = key();
        let n = k.issue(1_000, 7, REALM, ALICE);
        let n = n.as_bytes();
        assert_eq!(
            k.check(n, 1_001, REALM, b"bob@example.com"),
            NonceCheck::Invalid
        );
        assert_eq!(k.check(n, 1_001, b"other.com", ALICE), NonceCheck::Invalid);
        let other = NonceKey::new(b"another cluster's secret", 30);
        assert_eq!(other.check(n, 1_001, REALM, ALICE), NonceCheck::Invalid);
    }

    #[test]
    fn salts_make_every_challenge_different() {
        let k = key();
        assert_ne!(
            k.issue(1_000, 1, REALM, ALICE),
            k.issue(1_000, 2, REALM, ALICE)
        );
    }

    #[test]
    fn tampered_truncated_and_future_nonces_are_invalid() {
        let k = key();
        let n = k.issue(1_000, 7, REALM, ALICE);
        let mut tampered = n.clone().into_bytes();
        tampered[3] = if tampered[3] == b'A' { b'B' } else { b'A' };
        assert_eq!(k.check(&tampered, 1_001, REALM, ALICE), NonceCheck::Invalid);
        assert_eq!(
            k.check(&n.as_bytes()[..40], 1_001, REALM, ALICE),
            NonceCheck::Invalid
        );
        assert_eq!(
            k.check(b"not base64 at all!", 1_001, REALM, ALICE),
            NonceCheck::Invalid
        );
        assert_eq!(k.check(b"", 1_001, REALM, ALICE), NonceCheck::Invalid);
        let future = k.issue(2_000, 7, REALM, ALICE);
        assert_eq!(
            k.check(future.as_bytes(), 1_000, REALM, ALICE),
            NonceCheck::Invalid
        );
        let skewed = k.issue(1_004, 7, REALM, ALICE);
        assert!(matches!(
            k.check(skewed.as_bytes(), 1_000, REALM, ALICE),
            NonceCheck::Fresh(_)
        ));
    }
}
