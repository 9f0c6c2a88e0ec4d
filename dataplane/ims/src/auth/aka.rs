//! Digest AKA (RFC 3310, AKAv2 from RFC 4169) as the S-CSCF runs it (reference §1.4): the
//! nonce is base64(RAND ‖ AUTN) from Homestead's vector, the UE's password is its RES
//! (AKAv1) or a key derived from RES, IK and CK (AKAv2), and the response is computed as
//! for digest. The vector is kept with the AoR until the UE answers; `ck` and `ik` go to
//! the P-CSCF in the challenge.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use md5::Md5;
use serde::{Deserialize, Serialize};

/// AKAv1-MD5 or AKAv2-MD5.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AkaVersion {
    /// RFC 3310: the password is RES.
    V1,
    /// RFC 4169: the password is base64(HMAC-MD5(RES ‖ IK ‖ CK, "http-digest-akav2-password")).
    V2,
}

impl AkaVersion {
    /// The `algorithm` token.
    pub const fn algorithm(self) -> &'static str {
        match self {
            Self::V1 => "AKAv1-MD5",
            Self::V2 => "AKAv2-MD5",
        }
    }

    /// The version an `algorithm` parameter names, if it is AKA.
    pub fn from_algorithm(algorithm: &[u8]) -> Option<Self> {
        if algorithm.eq_ignore_ascii_case(b"AKAv1-MD5") {
            Some(Self::V1)
        } else if algorithm.eq_ignore_ascii_case(b"AKAv2-MD5") {
            Some(Self::V2)
        } else {
            None
        }
    }

    /// 1 or 2, as Homestead's API numbers them.
    pub const fn number(self) -> u8 {
        match self {
            Self::V1 => 1,
            Self::V2 => 2,
        }
    }
}

/// A vector the S-CSCF challenged with and keeps until the UE answers (hex as Homestead
/// gives them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingAka {
    /// The private identity challenged.
    pub impi: String,
    /// base64(RAND ‖ AUTN): the nonce.
    pub nonce: String,
    /// XRES, hex.
    pub xres: String,
    /// CK, hex.
    pub ck: String,
    /// IK, hex.
    pub ik: String,
    /// AKAv1 or AKAv2.
    pub version: AkaVersion,
    /// When the challenge lapses, Unix seconds.
    pub expires: u64,
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

impl PendingAka {
    /// The password the UE uses in the digest computation.
    pub fn password(&self) -> Option<Vec<u8>> {
        let xres = unhex(&self.xres)?;
        match self.version {
            AkaVersion::V1 => Some(xres),
            AkaVersion::V2 => {
                let mut key = xres;
                key.extend(unhex(&self.ik)?);
                key.extend(unhex(&self.ck)?);
                let mut mac = Hmac::<Md5>::new_from_slice(&key).ok()?;
                mac.update(b"http-digest-akav2-password");
                Some(STANDARD.encode(mac.finalize().into_bytes()).into_bytes())
            }
        }
    }

    /// The WWW-Authenticate value of this challenge, with `ck` and `ik` for the P-CSCF.
    pub fn challenge(&self, realm: &str, out: &mut Vec<u8>) {
        out.extend_from_slice(
            format!(
                "Digest realm=\"{realm}\",nonce=\"{}\",algorithm={},qop=\"auth\",ck=\"{}\",ik=\"{}\"",
                self.nonce,
                self.version.algorithm(),
                self.ck,
                self.ik
            )
            .as_bytes(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(version: AkaVersion) -> PendingAka {
        PendingAka {
            impi: "alice@example.com".into(),
            nonce: "n".into(),
            xres: "a54211d5e3ba50bf".into(),
            ck: "b40ba9a3c58b2a05bbf0d987b21bf8cb".into(),
            ik: "f769bcd751044604127672711c6d3441".into(),
            version,
            expires: 0,
        }
    }

    #[test]
    fn akav1_uses_res_itself() {
        let p = pending(AkaVersion::V1).password().expect("hex");
        assert_eq!(p, [0xa5, 0x42, 0x11, 0xd5, 0xe3, 0xba, 0x50, 0xbf]);
    }

    #[test]
    fn akav2_derives_its_password_with_hmac_md5() {
        // base64(HMAC-MD5(RES || IK || CK, "http-digest-akav2-password")), computed
        // independently with Python's hmac module.
        let p = pending(AkaVersion::V2).password().expect("hex");
        assert_eq!(p, b"shzt3q8CWaZnCAWqs3WmEQ==");
    }

    #[test]
    fn the_challenge_names_the_algorithm_and_carries_the_keys() {
        let mut out = Vec::new();
        pending(AkaVersion::V1).challenge("example.com", &mut out);
        let text = String::from_utf8(out).expect("ascii");
        assert!(text.contains("algorithm=AKAv1-MD5"));
        assert!(text.contains("ck=\"b40ba9a3c58b2a05bbf0d987b21bf8cb\""));
        assert_eq!(
            AkaVersion::from_algorithm(b"akav2-md5"),
            Some(AkaVersion::V2)
        );
        assert_eq!(AkaVersion::from_algorithm(b"MD5"), None);
    }
}
