//! Authentication vectors from provisioned secrets: SIP digest HA1 (RFC 2617) and IMS AKA
//! (TS 33.203) vectors made with Milenage (TS 35.206), with SQN handling after TS 33.102
//! Annex C and resynchronisation from AUTS (TS 33.102 §6.3.5).

use base64::Engine as _;
use md5::{Digest, Md5};
use milenage::Milenage;

use crate::model::AkaCredentials;

/// MD5(username:realm:password) in lower-case hex, as RFC 2617 §3.2.2.2 defines HA1.
pub fn digest_ha1(impi: &str, realm: &str, password: &str) -> String {
    let mut md5 = Md5::new();
    md5.update(impi.as_bytes());
    md5.update(b":");
    md5.update(realm.as_bytes());
    md5.update(b":");
    md5.update(password.as_bytes());
    hex::encode(md5.finalize())
}

/// The realm a subscriber's digest lives in when provisioning does not name one: the
/// domain of the private identity (`alice@example.com` → `example.com`).
pub fn default_realm(impi: &str) -> Option<&str> {
    impi.rsplit_once('@')
        .map(|(_, domain)| domain)
        .filter(|d| !d.is_empty())
}

/// TS 33.102 Annex C.3.2: SQN = SEQ ‖ IND with a 5-bit IND. Each new vector moves SEQ on
/// by one (32 in SQN) and IND to the next of its 32 slots, so a UE accepts vectors that
/// arrive out of order (two challenges outstanding at once).
pub const SQN_STEP: u64 = 1 << 5;
const IND_MASK: u64 = SQN_STEP - 1;
const SQN_MAX: u64 = (1 << 48) - 1;

/// One AKA authentication vector, as Homestead's JSON carries it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AkaVector {
    /// base64(RAND ‖ AUTN): the RFC 3310 nonce Sprout puts in WWW-Authenticate.
    pub challenge: String,
    /// XRES, hex.
    pub response: String,
    /// CK, hex.
    pub cryptkey: String,
    /// IK, hex.
    pub integritykey: String,
}

/// Builds the vector for `rand` and `sqn` (TS 33.102 §6.3.2).
pub fn aka_vector(keys: &AkaCredentials, rand: [u8; 16], sqn: u64) -> AkaVector {
    let mut m = Milenage::new_with_opc(keys.k, keys.opc);
    let sqn_bytes = sqn_to_bytes(sqn);
    let mac_a = m.f1(&rand, &sqn_bytes, &keys.amf);
    let (xres, ck, ik, ak) = m.f2345(&rand);
    let mut nonce = [0u8; 32];
    nonce[..16].copy_from_slice(&rand);
    for i in 0..6 {
        nonce[16 + i] = sqn_bytes[i] ^ ak[i];
    }
    nonce[22..24].copy_from_slice(&keys.amf);
    nonce[24..].copy_from_slice(&mac_a);
    AkaVector {
        challenge: base64::engine::general_purpose::STANDARD.encode(nonce),
        response: hex::encode(xres),
        cryptkey: hex::encode(ck),
        integritykey: hex::encode(ik),
    }
}

/// Why a `resync-auth` parameter was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ResyncError {
    #[error("resync-auth is not base64")]
    NotBase64,
    #[error("resync-auth must be RAND (16 bytes) followed by AUTS (14 bytes), got {0} bytes")]
    WrongLength(usize),
    #[error("AUTS does not verify (MAC-S mismatch): the UE holds different keys")]
    BadMac,
}

/// Recovers the UE's SQN (SQN_MS) from `resync-auth` = base64(RAND ‖ AUTS), checking MAC-S.
pub fn resync_sqn(keys: &AkaCredentials, resync_auth: &str) -> Result<u64, ResyncError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(resync_auth.trim())
        .map_err(|_| ResyncError::NotBase64)?;
    let Ok::<[u8; 30], _>(blob) = bytes.as_slice().try_into() else {
        return Err(ResyncError::WrongLength(bytes.len()));
    };
    let (rand, auts) = blob.split_at(16);
    let rand: [u8; 16] = std::array::from_fn(|i| rand[i]);
    let auts: [u8; 14] = std::array::from_fn(|i| auts[i]);
    let mut m = Milenage::new_with_opc(keys.k, keys.opc);
    let ak_star = m.f5star(&rand);
    let mut sqn_ms = [0u8; 6];
    for i in 0..6 {
        sqn_ms[i] = auts[i] ^ ak_star[i];
    }
    // TS 33.102 §6.3.3: MAC-S is computed with a dummy all-zero AMF.
    let mac_s = m.f1star(&rand, &sqn_ms, &[0, 0]);
    if mac_s[..] != auts[6..] {
        return Err(ResyncError::BadMac);
    }
    Ok(sqn_from_bytes(sqn_ms))
}

/// The SQN to use after `last`: the next SEQ and the next IND. SEQ wraps after 2^43
/// vectors, which a subscriber does not reach (Annex C.2's wrap-around protection is the
/// UE's concern).
pub fn next_sqn(last: u64) -> u64 {
    let seq = (last >> 5) + 1;
    let ind = ((last & IND_MASK) + 1) & IND_MASK;
    let next = (seq << 5) | ind;
    if next > SQN_MAX { SQN_STEP | ind } else { next }
}

fn sqn_to_bytes(sqn: u64) -> [u8; 6] {
    let b = sqn.to_be_bytes();
    [b[2], b[3], b[4], b[5], b[6], b[7]]
}

fn sqn_from_bytes(b: [u8; 6]) -> u64 {
    u64::from_be_bytes([0, 0, b[0], b[1], b[2], b[3], b[4], b[5]])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_hex<const N: usize>(s: &str) -> [u8; N] {
        hex::decode(s).unwrap().try_into().unwrap()
    }

    /// TS 35.208 §4.3, test set 1.
    fn test_set_1() -> (AkaCredentials, [u8; 16], u64) {
        let keys = AkaCredentials {
            k: from_hex("465b5ce8b199b49faa5f0a2ee238a6bc"),
            opc: from_hex("cd63cb71954a9f4e48a5994e37a02baf"),
            amf: from_hex("b9b9"),
        };
        (
            keys,
            from_hex("23553cbe9637a89d218ae64dae47bf35"),
            0xff9b_b4d0_b607,
        )
    }

    #[test]
    fn vector_matches_ts_35_208_test_set_1() {
        let (keys, rand, sqn) = test_set_1();
        let v = aka_vector(&keys, rand, sqn);
        assert_eq!(v.response, "a54211d5e3ba50bf");
        assert_eq!(v.cryptkey, "b40ba9a3c58b2a05bbf0d987b21bf8cb");
        assert_eq!(v.integritykey, "f769bcd751044604127672711c6d3441");
        let nonce = base64::engine::general_purpose::STANDARD
            .decode(&v.challenge)
            .unwrap();
        assert_eq!(&nonce[..16], &rand);
        // AUTN = SQN⊕AK ‖ AMF ‖ MAC-A with AK = aa689c648370 and MAC-A = 4a9ffac354dfafb3.
        assert_eq!(
            hex::encode(&nonce[16..]),
            "55f328b43577b9b94a9ffac354dfafb3"
        );
    }

    #[test]
    fn resync_recovers_the_ue_sqn_and_checks_mac_s() {
        let (keys, rand, _) = test_set_1();
        let sqn_ms = 0x0000_0000_1234u64;
        let mut m = Milenage::new_with_opc(keys.k, keys.opc);
        let ak_star = m.f5star(&rand);
        let sqn_bytes = sqn_to_bytes(sqn_ms);
        let mac_s = m.f1star(&rand, &sqn_bytes, &[0, 0]);
        let mut blob = rand.to_vec();
        blob.extend(sqn_bytes.iter().zip(ak_star).map(|(s, a)| s ^ a));
        blob.extend(mac_s);
        let encoded = base64::engine::general_purpose::STANDARD.encode(&blob);
        assert_eq!(resync_sqn(&keys, &encoded), Ok(sqn_ms));

        *blob.last_mut().unwrap() ^= 1;
        let tampered = base64::engine::general_purpose::STANDARD.encode(&blob);
        assert_eq!(resync_sqn(&keys, &tampered), Err(ResyncError::BadMac));
        assert_eq!(resync_sqn(&keys, "!!"), Err(ResyncError::NotBase64));
        assert_eq!(resync_sqn(&keys, "AAAA"), Err(ResyncError::WrongLength(3)));
    }

    #[test]
    fn sqn_moves_seq_by_one_and_cycles_ind() {
        assert_eq!(next_sqn(0), 32 | 1);
        assert_eq!(next_sqn(32 | 1), 64 | 2);
        assert_eq!(next_sqn(64 | 31), 96, "IND wraps within its 5 bits");
        let mut sqn = 0;
        let mut inds = std::collections::HashSet::new();
        for _ in 0..32 {
            let next = next_sqn(sqn);
            assert!(next >> 5 > sqn >> 5, "SEQ always grows");
            inds.insert(next & IND_MASK);
            sqn = next;
        }
        assert_eq!(inds.len(), 32, "32 vectors use every IND slot");
        assert_eq!(next_sqn(SQN_MAX) >> 5, 1, "SEQ wraps at 2^43");
    }

    #[test]
    fn ha1_matches_rfc_2617_example_shape() {
        // HA1 for Mufasa:testrealm@host.com:Circle Of Life from RFC 2617 §3.5.
        assert_eq!(
            digest_ha1("Mufasa", "testrealm@host.com", "Circle Of Life"),
            "939e7578ed9e3c518a452acee763bce9"
        );
        assert_eq!(default_realm("alice@example.com"), Some("example.com"));
        assert_eq!(default_realm("alice"), None);
    }
}
