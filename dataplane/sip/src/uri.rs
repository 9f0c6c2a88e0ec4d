//! URIs: `sip:`, `sips:`, `tel:` and any other scheme, with RFC 3261 §19.1.4 comparison.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::params::{Param, Params};
use crate::text::{self, eq_unescaped};

/// Why a URI did not parse. Callers turn this into the error of the header that held it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UriError {
    /// The host is neither a domain name, an IPv4 address nor a bracketed IPv6 reference.
    #[error("bad host")]
    BadHost,
    /// A `;param` with an empty name, or a character not allowed in parameters.
    #[error("bad parameter")]
    BadParam,
    /// The port is not a number below 65536.
    #[error("bad port")]
    BadPort,
    /// No `scheme:` prefix, or a scheme that is not `ALPHA *(ALPHA / DIGIT / + / - / .)`.
    #[error("bad scheme")]
    BadScheme,
    /// The user or password part holds a character the grammar forbids, or is empty.
    #[error("bad user part")]
    BadUser,
    /// Whitespace, angle brackets, quotes or control characters inside the URI.
    #[error("illegal character")]
    IllegalCharacter,
}

/// The URI scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Scheme<'a> {
    /// Any scheme other than the three below, as written.
    Other(&'a [u8]),
    /// `sip:`
    Sip,
    /// `sips:`
    Sips,
    /// `tel:` (RFC 3966)
    Tel,
}

/// The host part of a SIP URI or a Via sent-by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Host<'a> {
    /// A domain name, as written (compare case-insensitively).
    Domain(&'a [u8]),
    /// An IPv4 address.
    Ipv4(Ipv4Addr),
    /// An IPv6 address (written as a bracketed reference in URIs and Vias).
    Ipv6(Ipv6Addr),
}

impl<'a> Host<'a> {
    /// Parses a host: a bracketed IPv6 reference, a dotted IPv4 address, or a domain name.
    /// An unbracketed IPv6 address is refused, as RFC 5118 §4.2 requires.
    pub fn parse(s: &'a [u8]) -> Result<Self, UriError> {
        match s {
            [b'[', inner @ .., b']'] => parse_ipv6(inner).map(Self::Ipv6),
            [] => Err(UriError::BadHost),
            _ if s.iter().all(|&c| text::is_digit(c) || c == b'.') => {
                parse_ipv4(s).map(Self::Ipv4).ok_or(UriError::BadHost)
            }
            _ if is_domain(s) => Ok(Self::Domain(s)),
            _ => Err(UriError::BadHost),
        }
    }

    /// Host equality per RFC 3261 §19.1.4: case-insensitive names, addresses by value.
    pub fn equivalent(&self, other: &Host<'_>) -> bool {
        match (self, other) {
            (Host::Domain(a), Host::Domain(b)) => a.eq_ignore_ascii_case(b),
            (Host::Ipv4(a), Host::Ipv4(b)) => a == b,
            (Host::Ipv6(a), Host::Ipv6(b)) => a == b,
            _ => false,
        }
    }
}

/// A dotted-quad IPv4 address, with std's rules (four decimal octets up to 255, no
/// leading zeros), without std's detour through `str`: every URI and Via host on the
/// proxy path goes through here.
fn parse_ipv4(s: &[u8]) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut parts = s.split(|&c| c == b'.');
    for octet in &mut octets {
        let part = parts.next()?;
        if part.is_empty() || part.len() > 3 || (part.len() > 1 && part[0] == b'0') {
            return None;
        }
        let mut value: u16 = 0;
        for &c in part {
            if !c.is_ascii_digit() {
                return None;
            }
            value = value * 10 + u16::from(c - b'0');
        }
        *octet = u8::try_from(value).ok()?;
    }
    parts.next().is_none().then_some(Ipv4Addr::from(octets))
}

pub(crate) fn parse_ipv6(s: &[u8]) -> Result<Ipv6Addr, UriError> {
    std::str::from_utf8(s)
        .ok()
        .and_then(|v| v.parse().ok())
        .ok_or(UriError::BadHost)
}

fn is_domain(s: &[u8]) -> bool {
    // hostname = *( domainlabel "." ) toplabel [ "." ]; labels are alphanumerics and hyphens,
    // never starting or ending with a hyphen.
    let s = s.strip_suffix(b".").unwrap_or(s);
    !s.is_empty()
        && s.split(|&c| c == b'.').all(|label| {
            !label.is_empty()
                && label[0] != b'-'
                && label[label.len() - 1] != b'-'
                && label
                    .iter()
                    .all(|&c| c.is_ascii_alphanumeric() || c == b'-')
        })
}

/// A parsed URI, borrowing the message bytes. Parameters and headers stay raw and are read
/// through [`Uri::params`] and [`Uri::headers`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Uri<'a> {
    raw: &'a [u8],
    scheme: Scheme<'a>,
    user: Option<&'a [u8]>,
    password: Option<&'a [u8]>,
    host: Option<Host<'a>>,
    host_raw: &'a [u8],
    port: Option<u16>,
    params: &'a [u8],
    headers: Option<&'a [u8]>,
}

impl<'a> Uri<'a> {
    /// Parses a URI as it appears in a Request-Line or between angle brackets.
    pub fn parse(raw: &'a [u8]) -> Result<Self, UriError> {
        let colon = memchr::memchr(b':', raw).ok_or(UriError::BadScheme)?;
        let scheme_raw = &raw[..colon];
        if scheme_raw.is_empty()
            || !text::is_alpha(scheme_raw[0])
            || !scheme_raw
                .iter()
                .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'))
        {
            return Err(UriError::BadScheme);
        }
        if raw
            .iter()
            .any(|&c| c <= b' ' || c >= 0x7f || matches!(c, b'<' | b'>' | b'"'))
        {
            return Err(UriError::IllegalCharacter);
        }
        let rest = &raw[colon + 1..];
        let scheme = if scheme_raw.eq_ignore_ascii_case(b"sip") {
            Scheme::Sip
        } else if scheme_raw.eq_ignore_ascii_case(b"sips") {
            Scheme::Sips
        } else if scheme_raw.eq_ignore_ascii_case(b"tel") {
            Scheme::Tel
        } else {
            if rest.is_empty() {
                return Err(UriError::BadScheme);
            }
            return Ok(Self::opaque(raw, Scheme::Other(scheme_raw), rest));
        };
        match scheme {
            Scheme::Tel => Self::parse_tel(raw, rest),
            _ => Self::parse_sip(raw, scheme, rest),
        }
    }

    fn opaque(raw: &'a [u8], scheme: Scheme<'a>, rest: &'a [u8]) -> Self {
        Self {
            raw,
            scheme,
            user: Some(rest),
            password: None,
            host: None,
            host_raw: b"",
            port: None,
            params: b"",
            headers: None,
        }
    }

    fn parse_tel(raw: &'a [u8], rest: &'a [u8]) -> Result<Self, UriError> {
        let end = memchr::memchr(b';', rest).unwrap_or(rest.len());
        let number = &rest[..end];
        if number.is_empty()
            || !number.iter().all(|&c| {
                c.is_ascii_alphanumeric()
                    || matches!(c, b'+' | b'-' | b'.' | b'(' | b')' | b'*' | b'#')
            })
        {
            return Err(UriError::BadUser);
        }
        let params = rest.get(end + 1..).unwrap_or_default();
        check_uri_params(params)?;
        Ok(Self {
            params,
            ..Self::opaque(raw, Scheme::Tel, number)
        })
    }

    fn parse_sip(raw: &'a [u8], scheme: Scheme<'a>, rest: &'a [u8]) -> Result<Self, UriError> {
        // '@' cannot appear unescaped in params or headers, so the first one ends the userinfo
        // even when the user part holds ';', '?' or ',' (RFC 4475 `intmeth`, `semiuri`).
        let (user, password, hostport_and_more) = match memchr::memchr(b'@', rest) {
            Some(at) => {
                let userinfo = &rest[..at];
                let (user, password) = match memchr::memchr(b':', userinfo) {
                    Some(c) => (&userinfo[..c], Some(&userinfo[c + 1..])),
                    None => (userinfo, None),
                };
                let ok = |s: &[u8]| {
                    s.iter()
                        .all(|&c| text::is_uric(c) && !matches!(c, b'[' | b']'))
                };
                if user.is_empty()
                    || !ok(user)
                    || !password.is_none_or(|p| ok(p) && !p.contains(&b':'))
                {
                    return Err(UriError::BadUser);
                }
                (Some(user), password, &rest[at + 1..])
            }
            None => (None, None, rest),
        };
        let host_end = host_end(hostport_and_more)?;
        let (host_raw, port) = split_port(&hostport_and_more[..host_end])?;
        let host = Host::parse(host_raw)?;
        let after = &hostport_and_more[host_end..];
        let (params, headers) = match after.first() {
            None => (&b""[..], None),
            Some(b';') => {
                let q = memchr::memchr(b'?', after).unwrap_or(after.len());
                (&after[1..q], after.get(q + 1..).filter(|_| q < after.len()))
            }
            Some(b'?') => (&b""[..], Some(&after[1..])),
            Some(_) => return Err(UriError::BadHost),
        };
        check_uri_params(params)?;
        if let Some(h) = headers {
            if h.is_empty()
                || h.split(|&c| c == b'&')
                    .any(|hv| !hv.contains(&b'=') || hv[0] == b'=')
            {
                return Err(UriError::BadParam);
            }
        }
        Ok(Self {
            raw,
            scheme,
            user,
            password,
            host: Some(host),
            host_raw,
            port,
            params,
            headers,
        })
    }

    /// The whole URI as written.
    pub const fn as_bytes(&self) -> &'a [u8] {
        self.raw
    }

    /// The scheme.
    pub const fn scheme(&self) -> Scheme<'a> {
        self.scheme
    }

    /// The user part (escapes kept); for `tel:` the number, for other schemes the opaque part.
    pub const fn user(&self) -> Option<&'a [u8]> {
        self.user
    }

    /// The password, when the userinfo has one.
    pub const fn password(&self) -> Option<&'a [u8]> {
        self.password
    }

    /// The host, for `sip:` and `sips:` URIs.
    pub const fn host(&self) -> Option<Host<'a>> {
        self.host
    }

    /// The host exactly as written (IPv6 references keep their brackets).
    pub const fn host_raw(&self) -> &'a [u8] {
        self.host_raw
    }

    /// The explicit port, if any.
    pub const fn port(&self) -> Option<u16> {
        self.port
    }

    /// The URI parameters (`;lr`, `;transport=tcp`, …).
    pub const fn params(&self) -> Params<'a> {
        Params::new(self.params)
    }

    /// The raw `?headers` part, without the `?`.
    pub const fn headers(&self) -> Option<&'a [u8]> {
        self.headers
    }

    /// True for `sip:` and `sips:` URIs.
    pub const fn is_sip(&self) -> bool {
        matches!(self.scheme, Scheme::Sip | Scheme::Sips)
    }

    /// True when the URI carries the `lr` parameter (a loose router, RFC 3261 §16.12).
    pub fn is_loose_route(&self) -> bool {
        self.params().contains(b"lr")
    }

    /// URI comparison per RFC 3261 §19.1.4 (SIP and SIPS) and RFC 3966 §4 (tel). Not an
    /// equivalence relation: a parameter present in only one URI is ignored unless it is one of
    /// user, ttl, method, maddr and transport.
    pub fn equivalent(&self, other: &Uri<'_>) -> bool {
        match (self.scheme, other.scheme) {
            (Scheme::Sip, Scheme::Sip) | (Scheme::Sips, Scheme::Sips) => self.sip_equivalent(other),
            (Scheme::Tel, Scheme::Tel) => {
                tel_digits_equal(
                    self.user.unwrap_or_default(),
                    other.user.unwrap_or_default(),
                ) && params_equivalent(self.params(), other.params(), &[])
            }
            (Scheme::Other(a), Scheme::Other(b)) => {
                a.eq_ignore_ascii_case(b) && self.user == other.user
            }
            _ => false,
        }
    }

    fn sip_equivalent(&self, other: &Uri<'_>) -> bool {
        let userinfo_equal = match (self.user, other.user) {
            (None, None) => true,
            (Some(a), Some(b)) => eq_unescaped(a, b, false),
            _ => false,
        } && match (self.password, other.password) {
            (None, None) => true,
            (Some(a), Some(b)) => eq_unescaped(a, b, false),
            _ => false,
        };
        let host_equal = match (self.host, other.host) {
            (Some(a), Some(b)) => a.equivalent(&b),
            _ => false,
        };
        userinfo_equal
            && host_equal
            && self.port == other.port
            && params_equivalent(
                self.params(),
                other.params(),
                &[b"user", b"ttl", b"method", b"maddr", b"transport"],
            )
            && headers_equivalent(self.headers, other.headers)
    }
}

impl std::fmt::Display for Uri<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&String::from_utf8_lossy(self.raw))
    }
}

/// Where the hostport ends: at `;`, `?` or the end, skipping over an IPv6 reference.
fn host_end(s: &[u8]) -> Result<usize, UriError> {
    let from = if s.first() == Some(&b'[') {
        memchr::memchr(b']', s).ok_or(UriError::BadHost)?
    } else {
        0
    };
    Ok(memchr::memchr2(b';', b'?', &s[from..]).map_or(s.len(), |i| from + i))
}

/// Splits `host[:port]`, where host may be a bracketed IPv6 reference.
fn split_port(s: &[u8]) -> Result<(&[u8], Option<u16>), UriError> {
    let colon = if s.first() == Some(&b'[') {
        let close = memchr::memchr(b']', s).ok_or(UriError::BadHost)?;
        match s.get(close + 1) {
            None => return Ok((s, None)),
            Some(b':') => close + 1,
            Some(_) => return Err(UriError::BadHost),
        }
    } else {
        match memchr::memchr(b':', s) {
            None => return Ok((s, None)),
            Some(c) => c,
        }
    };
    let port =
        text::parse_decimal(&s[colon + 1..], u64::from(u16::MAX)).ok_or(UriError::BadPort)?;
    Ok((&s[..colon], Some(port as u16)))
}

fn check_uri_params(params: &[u8]) -> Result<(), UriError> {
    if params.is_empty() {
        return Ok(());
    }
    for p in params.split(|&c| c == b';') {
        let name_end = memchr::memchr(b'=', p).unwrap_or(p.len());
        if name_end == 0
            || !p
                .iter()
                .all(|&c| text::is_uric(c) && c != b'?' && c != b',')
        {
            return Err(UriError::BadParam);
        }
    }
    Ok(())
}

fn params_equivalent(a: Params<'_>, b: Params<'_>, must_match: &[&[u8]]) -> bool {
    let one_way = |x: Params<'_>, y: Params<'_>| {
        x.iter().all(|p| {
            // A repeated name counts once, with its first value (as `Params::get` reads it);
            // comparing each repeat with y's first made a URI unequal to itself.
            let named = |q: &Param<'_>| eq_unescaped(p.name, q.name, true);
            match (x.iter().find(named), y.iter().find(named)) {
                (Some(p), Some(q)) => match (p.value, q.value) {
                    (Some(v), Some(w)) => eq_unescaped(v, w, true),
                    (None, None) => true,
                    _ => false,
                },
                _ => !must_match.iter().any(|m| eq_unescaped(p.name, m, true)),
            }
        })
    };
    one_way(a, b) && one_way(b, a)
}

fn headers_equivalent(a: Option<&[u8]>, b: Option<&[u8]>) -> bool {
    let contains_all = |x: &[u8], y: &[u8]| {
        x.split(|&c| c == b'&').all(|hx| {
            let (nx, vx) = hx.split_at(memchr::memchr(b'=', hx).unwrap_or(hx.len()));
            y.split(|&c| c == b'&').any(|hy| {
                let (ny, vy) = hy.split_at(memchr::memchr(b'=', hy).unwrap_or(hy.len()));
                eq_unescaped(nx, ny, true) && eq_unescaped(vx, vy, false)
            })
        })
    };
    match (a, b) {
        (None, None) => true,
        (Some(x), Some(y)) => contains_all(x, y) && contains_all(y, x),
        _ => false,
    }
}

fn tel_digits_equal(a: &[u8], b: &[u8]) -> bool {
    // Compared lazily, without a length cap: a cap made a long number unequal to itself.
    fn significant(s: &[u8]) -> impl Iterator<Item = u8> + '_ {
        s.iter()
            .copied()
            .filter(|c| !matches!(c, b'-' | b'.' | b'(' | b')'))
            .map(|c| c.to_ascii_lowercase())
    }
    significant(a).eq(significant(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri(s: &str) -> Uri<'_> {
        Uri::parse(s.as_bytes()).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn ipv4_hosts_parse_as_std_does() {
        let cases = [
            "127.0.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "256.0.0.1",
            "1.2.3",
            "1.2.3.4.5",
            "01.2.3.4",
            "1.2.3.04",
            "1..3.4",
            ".1.2.3",
            "1.2.3.",
            "1.2.3.4.",
            "1234.1.1.1",
            "10.0.0.255",
            "10.0.0.256",
            "192.168.100.200",
            "0.0.0.00",
            "",
            ".",
        ];
        for case in cases {
            let ours = parse_ipv4(case.as_bytes());
            let std = case.parse::<Ipv4Addr>().ok();
            assert_eq!(ours, std, "{case:?}");
        }
        for a in [0u16, 1, 9, 10, 99, 100, 199, 200, 249, 250, 255, 256, 999] {
            let text = format!("{a}.{a}.{a}.{a}");
            assert_eq!(parse_ipv4(text.as_bytes()), text.parse().ok(), "{text}");
        }
    }

    #[test]
    fn sip_uri_parts() {
        let u = uri("sip:alice:secret@Example.COM:5070;transport=tcp;lr?subject=x&priority=urgent");
        assert_eq!(u.scheme(), Scheme::Sip);
        assert_eq!(u.user(), Some(&b"alice"[..]));
        assert_eq!(u.password(), Some(&b"secret"[..]));
        assert_eq!(u.host(), Some(Host::Domain(b"Example.COM")));
        assert_eq!(u.port(), Some(5070));
        assert_eq!(u.params().get(b"transport"), Some(Some(&b"tcp"[..])));
        assert!(u.is_loose_route());
        assert_eq!(u.headers(), Some(&b"subject=x&priority=urgent"[..]));
    }

    #[test]
    fn ipv6_references() {
        let u = uri("sip:[2001:db8::10]:5070");
        assert_eq!(u.host(), Some(Host::Ipv6("2001:db8::10".parse().unwrap())));
        assert_eq!(u.port(), Some(5070));
        let u = uri("sip:[2001:db8::10:5070]");
        assert_eq!(
            u.host(),
            Some(Host::Ipv6("2001:db8::10:5070".parse().unwrap()))
        );
        assert_eq!(u.port(), None);
        assert!(Uri::parse(b"sip:2001:db8::10").is_err());
        assert!(Uri::parse(b"sip:user@[2001:db8::10").is_err());
    }

    #[test]
    fn other_schemes() {
        assert_eq!(
            uri("tel:+1-201-555-0123;phone-context=x").user(),
            Some(&b"+1-201-555-0123"[..])
        );
        assert_eq!(
            uri("soap.beep://192.0.2.103:3002").scheme(),
            Scheme::Other(b"soap.beep")
        );
        assert!(Uri::parse(b"<sip:a@b>").is_err());
        assert!(Uri::parse(b"sip:a@b c").is_err());
        assert!(Uri::parse(b"sip:a@b;;lr").is_err());
    }

    #[test]
    fn rfc3261_equality_examples() {
        let eq = |a: &str, b: &str| uri(a).equivalent(&uri(b));
        assert!(eq(
            "sip:%61lice@atlanta.com;transport=TCP",
            "sip:alice@AtLanTa.CoM;Transport=tcp"
        ));
        assert!(eq(
            "sip:carol@chicago.com",
            "sip:carol@chicago.com;newparam=5"
        ));
        assert!(eq(
            "sip:carol@chicago.com;security=on",
            "sip:carol@chicago.com;newparam=5"
        ));
        assert!(eq(
            "sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
            "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com"
        ));
        assert!(eq(
            "sip:alice@atlanta.com?subject=project%20x&priority=urgent",
            "sip:alice@atlanta.com?priority=urgent&subject=project%20x"
        ));
        assert!(!eq(
            "SIP:ALICE@AtLanTa.CoM;Transport=udp",
            "sip:alice@AtLanTa.CoM;Transport=UDP"
        ));
        assert!(!eq("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"));
        assert!(!eq(
            "sip:bob@biloxi.com",
            "sip:bob@biloxi.com;transport=udp"
        ));
        assert!(!eq(
            "sip:bob@biloxi.com",
            "sip:bob@biloxi.com:6000;transport=tcp"
        ));
        assert!(!eq(
            "sip:carol@chicago.com",
            "sip:carol@chicago.com?Subject=next%20meeting"
        ));
        assert!(!eq("sip:bob@phone21.boxesbybob.com", "sip:bob@192.0.2.4"));
        assert!(!eq(
            "sip:carol@chicago.com;security=on",
            "sip:carol@chicago.com;security=off"
        ));
        assert!(eq("tel:+1-201-555-0123", "tel:+12015550123"));
        assert!(eq("sip:[2001:db8::9:1]", "sip:[2001:0db8:0:0:0:0:9:1]"));
    }
}
