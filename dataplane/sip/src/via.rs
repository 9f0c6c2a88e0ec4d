//! The Via header (RFC 3261 §20.42, RFC 3581 rport, RFC 5118 IPv6 references).

use crate::params::Params;
use crate::text::{self, skip_lws, token_end, trim_lws};
use crate::uri::{self, Host};

/// The RFC 3261 magic cookie that starts every compliant branch.
pub const BRANCH_COOKIE: &[u8] = b"z9hG4bK";

/// One Via value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Via<'a> {
    protocol: &'a [u8],
    version: &'a [u8],
    transport: &'a [u8],
    host: Host<'a>,
    host_raw: &'a [u8],
    port: Option<u16>,
    params: Params<'a>,
    branch: Option<&'a [u8]>,
    received: Option<&'a [u8]>,
    rport: Option<Option<u16>>,
}

/// The Via value is malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed;

impl<'a> Via<'a> {
    /// Parses one element of a Via list: `SIP / 2.0 / UDP host[:port] *(; param)`, with
    /// optional whitespace around `/` and `:` and around parameter separators.
    pub fn parse(value: &'a [u8]) -> Result<Self, Malformed> {
        let value = trim_lws(value);
        let mut pos = 0;
        let mut next_token = |expect_slash: bool| -> Result<&'a [u8], Malformed> {
            let start = skip_lws(value, pos);
            let end = token_end(value, start);
            if end == start {
                return Err(Malformed);
            }
            pos = skip_lws(value, end);
            if expect_slash {
                if value.get(pos) != Some(&b'/') {
                    return Err(Malformed);
                }
                pos += 1;
            }
            Ok(&value[start..end])
        };
        let protocol = next_token(true)?;
        let version = next_token(true)?;
        let transport = next_token(false)?;
        // sent-by runs to the first ';' (IPv6 references hold no ';'); whitespace may surround
        // the port colon, which the host/port split below tolerates.
        let semi = memchr::memchr(b';', &value[pos..]).map_or(value.len(), |i| pos + i);
        let sent_by = trim_lws(&value[pos..semi]);
        let (host_raw, port) = split_sent_by(sent_by)?;
        let host = Host::parse(host_raw).map_err(|_| Malformed)?;
        let params = match value.get(semi) {
            Some(_) => Params::new(&value[semi + 1..]),
            None => Params::default(),
        };
        let mut via = Self {
            protocol,
            version,
            transport,
            host,
            host_raw,
            port,
            params,
            branch: None,
            received: None,
            rport: None,
        };
        let mut known_params_ok = true;
        let params_ok = params.scan(|p| {
            let mut first = |seen: bool| known_params_ok &= !seen;
            if p.name.eq_ignore_ascii_case(b"branch") {
                first(via.branch.is_some());
                known_params_ok &= p.value.is_some();
                via.branch = p.value;
            } else if p.name.eq_ignore_ascii_case(b"received") {
                first(via.received.is_some());
                known_params_ok &= p.value.is_some_and(is_ip_address);
                via.received = p.value;
            } else if p.name.eq_ignore_ascii_case(b"rport") {
                first(via.rport.is_some());
                let port = p.value.map(|v| text::parse_decimal(v, u64::from(u16::MAX)));
                known_params_ok &= port != Some(None);
                via.rport = Some(port.flatten().map(|n| n as u16));
            }
        });
        // A ';' with nothing valid after it is as malformed as a bad parameter.
        if (semi < value.len() && (!params_ok || params.is_empty())) || !known_params_ok {
            return Err(Malformed);
        }
        Ok(via)
    }

    /// The protocol name, `SIP`.
    pub const fn protocol(&self) -> &'a [u8] {
        self.protocol
    }

    /// The protocol version, `2.0`.
    pub const fn version(&self) -> &'a [u8] {
        self.version
    }

    /// The transport token as written (`UDP`, `TCP`, `TLS`, `SCTP`, `WS`, or any extension).
    pub const fn transport(&self) -> &'a [u8] {
        self.transport
    }

    /// The sent-by host.
    pub const fn host(&self) -> Host<'a> {
        self.host
    }

    /// The sent-by host as written (IPv6 references keep their brackets).
    pub const fn host_raw(&self) -> &'a [u8] {
        self.host_raw
    }

    /// The sent-by port, if explicit.
    pub const fn port(&self) -> Option<u16> {
        self.port
    }

    /// All Via parameters.
    pub const fn params(&self) -> Params<'a> {
        self.params
    }

    /// The branch parameter.
    pub const fn branch(&self) -> Option<&'a [u8]> {
        self.branch
    }

    /// True when the branch starts with the RFC 3261 magic cookie.
    pub fn has_rfc3261_branch(&self) -> bool {
        self.branch().is_some_and(|b| b.starts_with(BRANCH_COOKIE))
    }

    /// The `received` parameter.
    pub const fn received(&self) -> Option<&'a [u8]> {
        self.received
    }

    /// The `rport` parameter: `Some(None)` when requested without a value (RFC 3581).
    pub const fn rport(&self) -> Option<Option<u16>> {
        self.rport
    }

    /// The `maddr` parameter.
    pub fn maddr(&self) -> Option<&'a [u8]> {
        self.params.get(b"maddr").flatten()
    }
}

/// `received` holds an IPv4 or IPv6 address; RFC 5118 §4.5 asks receivers to accept IPv6
/// with or without brackets.
fn is_ip_address(v: &[u8]) -> bool {
    let inner = match v {
        [b'[', inner @ .., b']'] => inner,
        _ => v,
    };
    if inner.contains(&b':') {
        uri::parse_ipv6(inner).is_ok()
    } else {
        matches!(Host::parse(inner), Ok(Host::Ipv4(_)))
    }
}

fn split_sent_by(s: &[u8]) -> Result<(&[u8], Option<u16>), Malformed> {
    // The colon may have whitespace around it ("host : port"); an IPv6 reference holds colons
    // of its own, so the search starts after its closing bracket.
    let search_from = if s.first() == Some(&b'[') {
        memchr::memchr(b']', s).ok_or(Malformed)?
    } else {
        0
    };
    let (host, port) = match memchr::memchr(b':', &s[search_from..]) {
        None => (s, None),
        Some(i) => {
            let colon = search_from + i;
            let port = text::parse_decimal(trim_lws(&s[colon + 1..]), u64::from(u16::MAX))
                .ok_or(Malformed)?;
            (trim_lws(&s[..colon]), Some(port as u16))
        }
    };
    if host.iter().any(|&c| text::is_lws(c)) {
        return Err(Malformed);
    }
    Ok((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folded_via() {
        let v = Via::parse(b"SIP  /   2.0\r\n /UDP\r\n    192.0.2.2;branch=390skdjuw").unwrap();
        assert_eq!(v.transport(), b"UDP");
        assert_eq!(v.host(), Host::Ipv4("192.0.2.2".parse().unwrap()));
        assert_eq!(v.branch(), Some(&b"390skdjuw"[..]));
        assert!(!v.has_rfc3261_branch());
        let v = Via::parse(
            b"SIP  / 2.0  / TCP     spindle.example.com   ;\r\n  branch  =   z9hG4bK9ikj8  ",
        )
        .unwrap();
        assert_eq!(v.branch(), Some(&b"z9hG4bK9ikj8"[..]));
    }

    #[test]
    fn ipv6_and_rport() {
        let v = Via::parse(
            b"SIP/2.0/UDP [2001:db8::9:1]:5070;received=[2001:db8::9:255];branch=z9hG4bKas3;rport",
        )
        .unwrap();
        assert_eq!(v.port(), Some(5070));
        assert_eq!(v.host_raw(), b"[2001:db8::9:1]");
        assert_eq!(v.rport(), Some(None));
        assert!(Via::parse(b"SIP/2.0/UDP [2001:db8::9:1];received=2001:db8::9:255").is_ok());
        assert!(Via::parse(b"SIP/2.0/UDP h;received=nonsense").is_err());
    }

    #[test]
    fn malformed() {
        assert!(Via::parse(b"SIP/2.0/UDP 192.0.2.15;;").is_err());
        assert!(Via::parse(b"SIP/2.0/UDP").is_err());
        assert!(Via::parse(b"SIP/2.0 host").is_err());
        assert!(Via::parse(b"SIP/2.0/UDP host:99999").is_err());
    }
}
