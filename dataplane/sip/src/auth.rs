//! Authorization, Proxy-Authorization, WWW-Authenticate and Proxy-Authenticate
//! (RFC 3261 §20.7, RFC 2617 digest, RFC 3310 AKA), read as a scheme plus `name=value` pairs.

use crate::params::unquote;
use crate::text::{self, find_unnested, quoted_string_end, skip_lws, trim_lws};

/// A challenge or a set of credentials: the scheme and its comma-separated parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Auth<'a> {
    scheme: &'a [u8],
    params: &'a [u8],
}

/// The header is malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed;

impl<'a> Auth<'a> {
    /// Parses `scheme LWS auth-param *(COMMA auth-param)`; parameters are checked once here so
    /// lookups cannot fail later.
    pub fn parse(value: &'a [u8]) -> Result<Self, Malformed> {
        let value = trim_lws(value);
        let scheme_end = text::token_end(value, 0);
        if scheme_end == 0 {
            return Err(Malformed);
        }
        let params = &value[scheme_end..];
        if !params.is_empty() && !text::is_lws(params[0]) {
            return Err(Malformed);
        }
        let auth = Self {
            scheme: &value[..scheme_end],
            params: trim_lws(params),
        };
        for p in auth.iter() {
            let (name, value) = p.ok_or(Malformed)?;
            let well_formed = match value.first() {
                Some(b'"') => quoted_string_end(value, 0) == Some(value.len()),
                _ => {
                    !value.is_empty()
                        && value
                            .iter()
                            .all(|&c| text::is_token(c) || c == b'/' || c == b'=')
                }
            };
            if !text::all_tokens(name) || !well_formed {
                return Err(Malformed);
            }
        }
        Ok(auth)
    }

    /// The scheme (`Digest`, or another as written).
    pub const fn scheme(&self) -> &'a [u8] {
        self.scheme
    }

    /// True for the Digest scheme (case-insensitive).
    pub fn is_digest(&self) -> bool {
        self.scheme.eq_ignore_ascii_case(b"Digest")
    }

    /// The value of parameter `name` (case-insensitive), quotes removed.
    pub fn param(&self, name: &[u8]) -> Option<&'a [u8]> {
        self.iter()
            .flatten()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| unquote(v))
    }

    /// `username`
    pub fn username(&self) -> Option<&'a [u8]> {
        self.param(b"username")
    }

    /// `realm`
    pub fn realm(&self) -> Option<&'a [u8]> {
        self.param(b"realm")
    }

    /// `nonce`
    pub fn nonce(&self) -> Option<&'a [u8]> {
        self.param(b"nonce")
    }

    /// `response`
    pub fn response(&self) -> Option<&'a [u8]> {
        self.param(b"response")
    }

    /// `uri` (the digest-uri)
    pub fn digest_uri(&self) -> Option<&'a [u8]> {
        self.param(b"uri")
    }

    /// `algorithm` (`MD5`, `AKAv1-MD5`, `AKAv2-MD5`, …)
    pub fn algorithm(&self) -> Option<&'a [u8]> {
        self.param(b"algorithm")
    }

    /// `qop`
    pub fn qop(&self) -> Option<&'a [u8]> {
        self.param(b"qop")
    }

    /// `nc`, the nonce count, as eight hex digits.
    pub fn nonce_count(&self) -> Option<u32> {
        let nc = self.param(b"nc")?;
        if nc.len() != 8 {
            return None;
        }
        nc.iter().try_fold(0u32, |acc, &c| {
            text::hex_value(c).map(|d| acc << 4 | u32::from(d))
        })
    }

    /// `cnonce`
    pub fn cnonce(&self) -> Option<&'a [u8]> {
        self.param(b"cnonce")
    }

    /// `opaque`
    pub fn opaque(&self) -> Option<&'a [u8]> {
        self.param(b"opaque")
    }

    /// `auts`, the AKA resynchronisation token (RFC 3310).
    pub fn auts(&self) -> Option<&'a [u8]> {
        self.param(b"auts")
    }

    /// `stale` (challenges): true when set to `true`, case-insensitively.
    pub fn stale(&self) -> bool {
        self.param(b"stale")
            .is_some_and(|v| v.eq_ignore_ascii_case(b"true"))
    }

    /// Iterates `(name, raw value)` pairs; `None` marks a malformed element.
    fn iter(&self) -> impl Iterator<Item = Option<(&'a [u8], &'a [u8])>> + 'a {
        let raw = self.params;
        let mut pos = 0;
        std::iter::from_fn(move || {
            if pos >= raw.len() {
                return None;
            }
            let end = find_unnested(raw, pos, b',').unwrap_or(raw.len());
            let element = &raw[pos..end];
            pos = end + 1;
            let Some(eq) = memchr::memchr(b'=', element) else {
                return Some(None);
            };
            let name = trim_lws(&element[..eq]);
            let value = &element[skip_lws(element, eq + 1)..];
            Some(Some((name, trim_lws(value))))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_credentials() {
        let a = Auth::parse(
            br#"Digest username="alice@example.com", realm="example.com", nonce="abc", uri="sip:example.com", response="0123", algorithm=MD5, qop=auth, nc=0000000a, cnonce="xyz""#,
        )
        .unwrap();
        assert!(a.is_digest());
        assert_eq!(a.username(), Some(&b"alice@example.com"[..]));
        assert_eq!(a.realm(), Some(&b"example.com"[..]));
        assert_eq!(a.nonce_count(), Some(10));
        assert_eq!(a.qop(), Some(&b"auth"[..]));
        assert_eq!(a.digest_uri(), Some(&b"sip:example.com"[..]));
    }

    #[test]
    fn other_schemes_and_errors() {
        let a = Auth::parse(b"NoOneKnowsThisScheme opaque-data=here").unwrap();
        assert_eq!(a.scheme(), b"NoOneKnowsThisScheme");
        assert_eq!(a.param(b"opaque-data"), Some(&b"here"[..]));
        assert!(Auth::parse(b"Digest realm=\"open").is_err());
        assert!(Auth::parse(b"Digest realm").is_err());
        assert!(Auth::parse(b"").is_err());
    }
}
