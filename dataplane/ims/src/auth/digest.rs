//! RFC 2617 digest arithmetic (MD5): HA1, HA2 and the expected response, as lowercase hex.

use md5::{Digest, Md5};

/// 32 lowercase hex digits of an MD5 digest.
pub type Hex = [u8; 32];

fn hex(digest: &[u8]) -> Hex {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 32];
    for (i, byte) in digest.iter().enumerate() {
        out[2 * i] = DIGITS[usize::from(byte >> 4)];
        out[2 * i + 1] = DIGITS[usize::from(byte & 0xf)];
    }
    out
}

fn md5_of(parts: &[&[u8]]) -> Hex {
    let mut h = Md5::new();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            h.update(b":");
        }
        h.update(part);
    }
    hex(&h.finalize())
}

/// HA1 = MD5(username:realm:password) (what Homestead stores as `digest_ha1`).
pub fn ha1(username: &[u8], realm: &[u8], password: &[u8]) -> Hex {
    md5_of(&[username, realm, password])
}

/// The fields of an Authorization header that enter the response.
#[derive(Debug, Clone, Copy)]
pub struct ResponseInput<'a> {
    /// The request's method.
    pub method: &'a [u8],
    /// The `uri` parameter as the UE sent it.
    pub uri: &'a [u8],
    /// The nonce as sent.
    pub nonce: &'a [u8],
    /// `qop` with `nc` (eight hex digits as sent) and `cnonce`; `None` for RFC 2069.
    pub qop: Option<(&'a [u8], &'a [u8], &'a [u8])>,
}

/// The response a UE holding HA1 must send (RFC 2617 §3.2.2.1).
pub fn expected_response(ha1: &[u8], input: &ResponseInput<'_>) -> Hex {
    let ha2 = md5_of(&[input.method, input.uri]);
    match input.qop {
        Some((qop, nc, cnonce)) => md5_of(&[ha1, input.nonce, nc, cnonce, qop, &ha2]),
        None => md5_of(&[ha1, input.nonce, &ha2]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 2617 §3.5, with the erratum's method GET.
    #[test]
    fn the_rfc_2617_example() {
        let ha1 = ha1(b"Mufasa", b"testrealm@host.com", b"Circle Of Life");
        let input = ResponseInput {
            method: b"GET",
            uri: b"/dir/index.html",
            nonce: b"dcd98b7102dd2f0e8b11d0f600bfb0c093",
            qop: Some((b"auth", b"00000001", b"0a4f113b")),
        };
        assert_eq!(
            &expected_response(&ha1, &input),
            b"6629fae49393a05397450978507c4ef1"
        );
    }

    #[test]
    fn rfc_2069_responses_have_no_qop_fields() {
        let ha1 = ha1(b"Mufasa", b"testrealm@host.com", b"Circle Of Life");
        let with = ResponseInput {
            method: b"GET",
            uri: b"/",
            nonce: b"n",
            qop: None,
        };
        let h2 = md5_of(&[b"GET", b"/"]);
        assert_eq!(expected_response(&ha1, &with), md5_of(&[&ha1, b"n", &h2]));
    }
}
