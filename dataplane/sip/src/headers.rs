//! Small typed header values: CSeq, Call-ID, numbers, media types, option tags, and the
//! `value *(; param)` shape shared by Event, Subscription-State, P-Access-Network-Info and
//! P-Visited-Network-ID.

use crate::method::Method;
use crate::params::Params;
use crate::text::{self, quoted_string_end, trim_lws};

/// CSeq: a sequence number and a method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CSeq<'a> {
    /// The sequence number (below 2^32, RFC 3261 §8.1.1.5).
    pub seq: u32,
    /// The method.
    pub method: Method<'a>,
}

impl<'a> CSeq<'a> {
    /// Parses `1*DIGIT LWS Method`.
    pub fn parse(value: &'a [u8]) -> Option<Self> {
        let value = trim_lws(value);
        let digits = value.iter().position(|&c| !text::is_digit(c))?;
        let seq = text::parse_decimal(&value[..digits], u64::from(u32::MAX))? as u32;
        if !text::is_lws(value[digits]) {
            return None;
        }
        let method = Method::parse(trim_lws(&value[digits..]))?;
        Some(Self { seq, method })
    }
}

/// Checks `callid = word [ "@" word ]`.
pub(crate) fn is_call_id(value: &[u8]) -> bool {
    let mut parts = value.splitn(2, |&c| c == b'@');
    let word = |w: Option<&[u8]>| {
        w.is_some_and(|w| !w.is_empty() && w.iter().all(|&c| text::is_word(c) && c != b'@'))
    };
    let first = parts.next();
    word(first) && parts.next().is_none_or(|w| word(Some(w)))
}

/// `delta-seconds`; values beyond 2^32-1 are clamped to it, as RFC 3261 §8.3.1 advises for
/// registration intervals rather than refusing the message.
pub(crate) fn parse_delta_seconds(v: &[u8]) -> Option<u32> {
    if v.is_empty() || !v.iter().all(|&c| text::is_digit(c)) {
        return None;
    }
    Some(text::parse_decimal(v, u64::from(u32::MAX)).map_or(u32::MAX, |n| n as u32))
}

/// A value followed by parameters: `Event: reg;id=1`, `Subscription-State: active;expires=60`,
/// `P-Access-Network-Info: 3GPP-UTRAN-TDD;utran-cell-id-3gpp=...`, `Content-Type: a/b;x=y`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parameterized<'a> {
    value: &'a [u8],
    params: Params<'a>,
}

impl<'a> Parameterized<'a> {
    /// Parses `value *(; param)` where the value is a token, a quoted string or (for media
    /// types) `token/token`.
    pub fn parse(raw: &'a [u8]) -> Option<Self> {
        let raw = trim_lws(raw);
        let end = match raw.first()? {
            b'"' => quoted_string_end(raw, 0)?,
            _ => raw
                .iter()
                .position(|&c| c == b';' || text::is_lws(c))
                .unwrap_or(raw.len()),
        };
        let value = &raw[..end];
        if value.is_empty()
            || (value[0] != b'"' && !value.iter().all(|&c| text::is_token(c) || c == b'/'))
        {
            return None;
        }
        let rest = trim_lws(&raw[end..]);
        let params = match rest.split_first() {
            None => Params::default(),
            Some((b';', tail)) => Params::new(tail),
            Some(_) => return None,
        };
        (rest.is_empty() || params.check_generic()).then_some(Self { value, params })
    }

    /// The leading value (an event package, a state, a media type, an access type, …).
    pub const fn value(&self) -> &'a [u8] {
        self.value
    }

    /// The parameters after it.
    pub const fn params(&self) -> Params<'a> {
        self.params
    }
}

/// A media type, `type/subtype *(; param)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaType<'a> {
    /// The top-level type (`application`).
    pub kind: &'a [u8],
    /// The subtype (`sdp`).
    pub subtype: &'a [u8],
    /// Parameters (`boundary=`, `charset=`, …).
    pub params: Params<'a>,
}

impl<'a> MediaType<'a> {
    /// Parses a Content-Type value.
    pub fn parse(raw: &'a [u8]) -> Option<Self> {
        let p = Parameterized::parse(raw)?;
        let slash = memchr::memchr(b'/', p.value())?;
        let (kind, subtype) = (&p.value()[..slash], &p.value()[slash + 1..]);
        (text::all_tokens(kind) && text::all_tokens(subtype)).then_some(Self {
            kind,
            subtype,
            params: p.params(),
        })
    }

    /// True when this is `type/subtype`, case-insensitively.
    pub fn is(&self, kind: &[u8], subtype: &[u8]) -> bool {
        self.kind.eq_ignore_ascii_case(kind) && self.subtype.eq_ignore_ascii_case(subtype)
    }
}

/// Parameters-only headers: P-Charging-Vector (`icid-value=...;orig-ioi=...`) and
/// P-Charging-Function-Addresses (`ccf=...;ecf=...`).
pub(crate) fn parse_param_list(raw: &[u8]) -> Option<Params<'_>> {
    let params = Params::new(trim_lws(raw));
    (!params.is_empty() && params.check_generic()).then_some(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cseq() {
        assert_eq!(
            CSeq::parse(b"0009\r\n  INVITE"),
            Some(CSeq {
                seq: 9,
                method: Method::Invite
            })
        );
        assert_eq!(CSeq::parse(b"36893488147419103232 REGISTER"), None);
        assert_eq!(CSeq::parse(b"1INVITE"), None);
        assert_eq!(CSeq::parse(b"1 INV ITE"), None);
    }

    #[test]
    fn call_id() {
        assert!(is_call_id(br#"intmeth.word%ZK-!.*_+'@word`~)(><:\/"][?}{"#));
        assert!(!is_call_id(b"a@b@c"));
        assert!(!is_call_id(b""));
        assert!(!is_call_id(b"a b"));
    }

    #[test]
    fn parameterized_values() {
        let e = Parameterized::parse(b"reg ; id = 7").unwrap();
        assert_eq!(e.value(), b"reg");
        assert_eq!(e.params().get(b"id"), Some(Some(&b"7"[..])));
        let m = MediaType::parse(b"multipart/mixed;boundary=7a9cbec02ceef655").unwrap();
        assert!(m.is(b"MULTIPART", b"mixed"));
        assert!(Parameterized::parse(b"active garbage").is_none());
        assert!(Parameterized::parse(b";x=1").is_none());
        assert_eq!(parse_delta_seconds(b"99999999999"), Some(u32::MAX));
        assert!(
            parse_param_list(
                b"icid-value=1234bc9876e;icid-generated-at=192.0.6.8;orig-ioi=home1.net"
            )
            .is_some()
        );
    }
}
