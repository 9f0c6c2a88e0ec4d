//! `name-addr` / `addr-spec` values: From, To, Contact, Route, Record-Route, Path,
//! Service-Route, P-Asserted-Identity, P-Associated-URI, P-Served-User and their kin.

use crate::params::Params;
use crate::text::{self, quoted_string_end, skip_lws, trim_lws};
use crate::uri::Uri;

/// An address with an optional display name and header parameters (`;tag=`, `;expires=`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameAddr<'a> {
    display_name: Option<&'a [u8]>,
    uri: Uri<'a>,
    params: Params<'a>,
    tag: Option<&'a [u8]>,
    bracketed: bool,
}

/// The address is malformed; the caller names the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed;

impl<'a> NameAddr<'a> {
    /// Parses one element of an address header (already split from any list).
    pub fn parse(value: &'a [u8]) -> Result<Self, Malformed> {
        let value = trim_lws(value);
        let (display_name, uri_start) = match value.first() {
            None => return Err(Malformed),
            Some(b'"') => {
                let end = quoted_string_end(value, 0).ok_or(Malformed)?;
                let lt = skip_lws(value, end);
                if value.get(lt) != Some(&b'<') {
                    return Err(Malformed);
                }
                (Some(&value[..end]), Some(lt + 1))
            }
            // A display name cannot hold ';', so a '<' after one sits in a parameter value.
            Some(_) => match memchr::memchr(
                b'<',
                &value[..memchr::memchr(b';', value).unwrap_or(value.len())],
            ) {
                Some(lt) => {
                    let name = trim_lws(&value[..lt]);
                    // An unquoted display name is a run of tokens (RFC 4475 `baddn`).
                    if !name.iter().all(|&c| text::is_token(c) || text::is_lws(c)) {
                        return Err(Malformed);
                    }
                    (Some(name).filter(|n| !n.is_empty()), Some(lt + 1))
                }
                None => (None, None),
            },
        };
        match uri_start {
            Some(start) => {
                let close = memchr::memchr(b'>', &value[start..]).ok_or(Malformed)? + start;
                let uri = Uri::parse(&value[start..close]).map_err(|_| Malformed)?;
                let (params, tag) = header_params(&value[close + 1..])?;
                Ok(Self {
                    display_name,
                    uri,
                    params,
                    tag,
                    bracketed: true,
                })
            }
            None => {
                // addr-spec: the URI ends at the first ';' or whitespace, and any ';' after it
                // starts header parameters; '?' and ',' would be ambiguous, so are refused.
                let end = value
                    .iter()
                    .position(|&c| c == b';' || text::is_lws(c))
                    .unwrap_or(value.len());
                let raw = &value[..end];
                if raw.contains(&b'?') || raw.contains(&b',') {
                    return Err(Malformed);
                }
                let uri = Uri::parse(raw).map_err(|_| Malformed)?;
                let (params, tag) = header_params(&value[end..])?;
                Ok(Self {
                    display_name: None,
                    uri,
                    params,
                    tag,
                    bracketed: false,
                })
            }
        }
    }

    /// The display name as written (quoted names keep their quotes).
    pub const fn display_name(&self) -> Option<&'a [u8]> {
        self.display_name
    }

    /// The URI.
    pub const fn uri(&self) -> &Uri<'a> {
        &self.uri
    }

    /// The header parameters after the address.
    pub const fn params(&self) -> Params<'a> {
        self.params
    }

    /// The `tag` parameter (From and To).
    pub const fn tag(&self) -> Option<&'a [u8]> {
        self.tag
    }

    /// True when the URI was written between angle brackets.
    pub const fn is_bracketed(&self) -> bool {
        self.bracketed
    }
}

/// Header parameters following an address: empty, or `;` then a well-formed list. The tag
/// is captured on the way, since From and To are asked for it on every message.
fn header_params(rest: &[u8]) -> Result<(Params<'_>, Option<&[u8]>), Malformed> {
    let start = skip_lws(rest, 0);
    match rest.get(start) {
        None => Ok((Params::default(), None)),
        Some(b';') => {
            let params = Params::new(&rest[start + 1..]);
            let mut tag = None;
            let mut tag_ok = true;
            let params_ok = params.scan(|p| {
                if p.name.eq_ignore_ascii_case(b"tag") {
                    tag_ok &= tag.is_none() && p.value.is_some();
                    tag = p.value;
                }
            });
            if params_ok && tag_ok && !params.is_empty() {
                Ok((params, tag))
            } else {
                Err(Malformed)
            }
        }
        Some(_) => Err(Malformed),
    }
}

/// One Contact value: `*` (remove all bindings) or an address.
// Boxing the address would cost an allocation per Contact; values live briefly on the stack.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contact<'a> {
    /// An address with its contact parameters.
    Address(NameAddr<'a>),
    /// `Contact: *`
    Star,
}

impl<'a> Contact<'a> {
    /// Parses one Contact list element.
    pub fn parse(value: &'a [u8]) -> Result<Self, Malformed> {
        if trim_lws(value) == b"*" {
            return Ok(Self::Star);
        }
        NameAddr::parse(value).map(Self::Address)
    }

    /// The address, unless this is `*`.
    pub const fn address(&self) -> Option<&NameAddr<'a>> {
        match self {
            Self::Address(a) => Some(a),
            Self::Star => None,
        }
    }

    /// The `q` parameter, in thousandths (`q=0.5` is 500), if present and well formed.
    pub fn q(&self) -> Option<u16> {
        let v = self.address()?.params().get(b"q")??;
        parse_qvalue(v)
    }

    /// The `expires` parameter in seconds, if present; values above 2^32-1 are clamped.
    pub fn expires(&self) -> Option<u32> {
        let v = self.address()?.params().get(b"expires")??;
        crate::headers::parse_delta_seconds(v)
    }

    /// The `+sip.instance` parameter without its quotes (RFC 5626).
    pub fn instance(&self) -> Option<&'a [u8]> {
        self.quoted_param(b"+sip.instance")
    }

    /// The `reg-id` parameter (RFC 5626).
    pub fn reg_id(&self) -> Option<u32> {
        let v = self.address()?.params().get(b"reg-id")??;
        text::parse_decimal(v, u64::from(u32::MAX)).map(|n| n as u32)
    }

    /// The `pub-gruu` parameter without its quotes (RFC 5627).
    pub fn pub_gruu(&self) -> Option<&'a [u8]> {
        self.quoted_param(b"pub-gruu")
    }

    fn quoted_param(&self, name: &[u8]) -> Option<&'a [u8]> {
        self.address()?
            .params()
            .get(name)?
            .map(crate::params::unquote)
    }
}

/// `qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )`, in thousandths.
fn parse_qvalue(v: &[u8]) -> Option<u16> {
    let (int, frac) = match memchr::memchr(b'.', v) {
        Some(dot) => (&v[..dot], &v[dot + 1..]),
        None => (v, &b""[..]),
    };
    if frac.len() > 3 || !frac.iter().all(|&c| text::is_digit(c)) {
        return None;
    }
    let mut thousandths = 0u16;
    for i in 0..3 {
        thousandths = thousandths * 10 + frac.get(i).map_or(0, |&c| u16::from(c - b'0'));
    }
    match int {
        b"0" => Some(thousandths),
        b"1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        let a = NameAddr::parse(
            br#""J Rosenberg \\\""       <sip:jdrosen@example.com>  ;  tag = 98asjd8"#,
        )
        .unwrap();
        assert_eq!(a.display_name(), Some(&br#""J Rosenberg \\\"""#[..]));
        assert_eq!(a.tag(), Some(&b"98asjd8"[..]));
        let a = NameAddr::parse(b"caller<sip:caller@example.com>;tag=323").unwrap();
        assert_eq!(a.display_name(), Some(&b"caller"[..]));
        let a = NameAddr::parse(b"sip:user@example.com ;   tag    = 1918181833n").unwrap();
        assert!(!a.is_bracketed());
        assert_eq!(a.tag(), Some(&b"1918181833n"[..]));
        let a = NameAddr::parse(b"sip:+19725552222@gw1.example.net;unknownparam").unwrap();
        assert!(a.uri().params().is_empty());
        assert!(a.params().contains(b"unknownparam"));
    }

    #[test]
    fn malformed() {
        for bad in [
            &br#""Mr. J. User <sip:j.user@example.com>"#[..],
            b"Bell, Alexander <sip:a.g.bell@example.com>;tag=43",
            b"\"Watson, Thomas\" < sip:t.watson@example.org >",
            b"sip:user@example.com?Route=%3Csip:sip.example.com%3E",
            b"\"Joe\" <sip:joe@example.org>;;;;",
            b"<sip:joe@example.org",
            b"",
        ] {
            assert!(
                NameAddr::parse(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn contact_params() {
        let c = Contact::parse(
            br#"<sip:u@h>;q=0.7;expires=3600;+sip.instance="<urn:uuid:1>";reg-id=1"#,
        )
        .unwrap();
        assert_eq!(c.q(), Some(700));
        assert_eq!(c.expires(), Some(3600));
        assert_eq!(c.instance(), Some(&b"<urn:uuid:1>"[..]));
        assert_eq!(c.reg_id(), Some(1));
        assert_eq!(Contact::parse(b" * ").unwrap(), Contact::Star);
        assert_eq!(parse_qvalue(b"1.0"), Some(1000));
        assert_eq!(parse_qvalue(b"1.5"), None);
    }
}
