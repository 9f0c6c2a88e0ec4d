//! Whole-message checks: everything a stateful element must verify before acting on a
//! message, with the RFC's answer for each failure; and the proxy's own refusals
//! (RFC 3261 §16.3), which depend on policy and are therefore separate.

use crate::auth::Auth;
use crate::error::ParseError;
use crate::header_name::HeaderName;
use crate::headers::{self, CSeq, MediaType, Parameterized};
use crate::message::{ListElements, Message};
use crate::name_addr::{Contact, NameAddr};
use crate::text;
use crate::uri::Scheme;
use crate::via::Via;

/// Headers every request and response must carry (RFC 3261 §8.1.1). Max-Forwards is left out
/// so RFC 2543 requests (RFC 4475 `inv2543`) are still accepted; proxies add it.
const MANDATORY: [HeaderName; 5] = [
    HeaderName::CallId,
    HeaderName::CSeq,
    HeaderName::From,
    HeaderName::To,
    HeaderName::Via,
];

/// Why a proxy refuses a well-formed request (RFC 3261 §16.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyRefusal {
    /// Proxy-Require lists an option tag the proxy does not support: 420, with the tags in
    /// an Unsupported header (see [`Message::unsupported_proxy_requires`]).
    #[error("Bad Extension")]
    BadExtension,
    /// Max-Forwards is 0: 483 (an OPTIONS addressed to the proxy itself may be answered
    /// instead, which only the proxy can tell).
    #[error("Too Many Hops")]
    TooManyHops,
    /// The Request-URI scheme is not sip, sips or tel: 416.
    #[error("Unsupported URI Scheme")]
    UnsupportedUriScheme,
}

impl ProxyRefusal {
    /// The status code to answer with.
    pub const fn status(self) -> u16 {
        match self {
            Self::BadExtension => 420,
            Self::TooManyHops => 483,
            Self::UnsupportedUriScheme => 416,
        }
    }
}

impl<'a> Message<'a> {
    /// Checks every header Whitewater understands, the mandatory headers, single-valued
    /// headers appearing once, the Request-URI, and that CSeq names the request's method.
    /// Extension headers are not inspected: they pass through untouched.
    pub fn validate(&self) -> Result<(), ParseError> {
        for name in MANDATORY {
            if self.header(name).is_none() {
                return Err(ParseError::MissingHeader(name));
            }
        }
        let lines = self.header_lines();
        for (i, line) in lines.iter().enumerate() {
            if line.name.is_single() && lines[..i].iter().any(|earlier| earlier.name == line.name) {
                return Err(ParseError::DuplicateHeader(line.name));
            }
        }
        if let Some(uri) = self.request_uri() {
            let uri = uri.map_err(|_| ParseError::BadRequestUri)?;
            if uri.is_sip() && uri.headers().is_some() {
                return Err(ParseError::RequestUriHeaders);
            }
        }
        let mut first_via = true;
        for header in self.headers() {
            // From, To and the top Via are parsed through the message's cache: whoever
            // reads them next (the transaction key, loop detection) gets them for free.
            let valid = match header.name() {
                HeaderName::From => self.from().is_ok(),
                HeaderName::To => self.to().is_ok(),
                HeaderName::Via if first_via => {
                    first_via = false;
                    self.top_via().is_ok()
                        && ListElements::new(header.value())
                            .skip(1)
                            .all(|v| Via::parse(v).is_ok())
                }
                name => value_is_valid(name, header.value()),
            };
            if !valid {
                return Err(ParseError::BadHeader(header.name()));
            }
        }
        if let Some(method) = self.method() {
            if self.cseq()?.method != method {
                return Err(ParseError::CSeqMethodMismatch);
            }
        }
        Ok(())
    }

    /// The checks of RFC 3261 §16.3 steps 2, 3 and 5, in that order, for a request that
    /// passed [`Message::validate`]. `supported` lists the option tags this proxy supports.
    pub fn proxy_precheck(&self, supported: &[&[u8]]) -> Result<(), ProxyRefusal> {
        if let Some(Ok(uri)) = self.request_uri() {
            if matches!(uri.scheme(), Scheme::Other(_)) {
                return Err(ProxyRefusal::UnsupportedUriScheme);
            }
        }
        if self.max_forwards() == Ok(Some(0)) {
            return Err(ProxyRefusal::TooManyHops);
        }
        if self.unsupported_proxy_requires(supported).next().is_some() {
            return Err(ProxyRefusal::BadExtension);
        }
        Ok(())
    }

    /// The Proxy-Require option tags not in `supported`, for the Unsupported header of a 420.
    pub fn unsupported_proxy_requires<'s>(
        &'s self,
        supported: &'s [&[u8]],
    ) -> impl Iterator<Item = &'a [u8]> + 's {
        self.values(HeaderName::ProxyRequire)
            .filter(move |tag| !supported.iter().any(|s| s.eq_ignore_ascii_case(tag)))
    }
}

fn value_is_valid(name: HeaderName, value: &[u8]) -> bool {
    let each = |check: fn(&[u8]) -> bool| ListElements::new(value).all(check);
    match name {
        HeaderName::Via => each(|v| Via::parse(v).is_ok()),
        HeaderName::Contact => each(|v| Contact::parse(v).is_ok()),
        HeaderName::From | HeaderName::To | HeaderName::PServedUser => {
            NameAddr::parse(value).is_ok()
        }
        HeaderName::Route
        | HeaderName::RecordRoute
        | HeaderName::Path
        | HeaderName::ServiceRoute
        | HeaderName::PAssertedIdentity
        | HeaderName::PAssociatedUri
        | HeaderName::PPreferredIdentity
        | HeaderName::PCalledPartyId => each(|v| NameAddr::parse(v).is_ok()),
        HeaderName::CallId => headers::is_call_id(value),
        HeaderName::CSeq => CSeq::parse(value).is_some(),
        HeaderName::MaxForwards => text::parse_decimal(value, 255).is_some(),
        HeaderName::Expires | HeaderName::MinExpires => {
            headers::parse_delta_seconds(value).is_some()
        }
        HeaderName::ContentType => MediaType::parse(value).is_some(),
        HeaderName::Require
        | HeaderName::ProxyRequire
        | HeaderName::Supported
        | HeaderName::Unsupported => each(text::all_tokens),
        HeaderName::Authorization
        | HeaderName::ProxyAuthorization
        | HeaderName::WwwAuthenticate
        | HeaderName::ProxyAuthenticate => Auth::parse(value).is_ok(),
        HeaderName::Event | HeaderName::SubscriptionState | HeaderName::PAccessNetworkInfo => {
            Parameterized::parse(value).is_some()
        }
        HeaderName::PVisitedNetworkId => each(|v| Parameterized::parse(v).is_some()),
        HeaderName::PChargingVector | HeaderName::PChargingFunctionAddresses => {
            headers::parse_param_list(value).is_some()
        }
        _ => true,
    }
}
