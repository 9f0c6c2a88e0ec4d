//! Typed, lazily parsed views of the headers Whitewater reads. Each accessor parses only the
//! header it is asked for and maps a malformed value to `ParseError::BadHeader(name)`.

use crate::auth::Auth;
use crate::error::ParseError;
use crate::header_name::HeaderName;
use crate::headers::{self, CSeq, MediaType, Parameterized};
use crate::message::{ListElements, Message};
use crate::name_addr::{Contact, NameAddr};
use crate::params::Params;
use crate::text;
use crate::uri::{Uri, UriError};
use crate::via::Via;

impl<'a> Message<'a> {
    /// The Request-URI, parsed; `None` for responses.
    pub fn request_uri(&self) -> Option<Result<Uri<'a>, UriError>> {
        *self
            .parsed
            .request_uri
            .get_or_init(|| self.request_uri_raw().map(Uri::parse))
    }

    /// Call-ID (mandatory).
    pub fn call_id(&self) -> Result<&'a [u8], ParseError> {
        let value = self.single(HeaderName::CallId)?;
        if headers::is_call_id(value) {
            Ok(value)
        } else {
            Err(ParseError::BadHeader(HeaderName::CallId))
        }
    }

    /// CSeq (mandatory).
    pub fn cseq(&self) -> Result<CSeq<'a>, ParseError> {
        CSeq::parse(self.single(HeaderName::CSeq)?).ok_or(ParseError::BadHeader(HeaderName::CSeq))
    }

    /// From (mandatory).
    pub fn from(&self) -> Result<NameAddr<'a>, ParseError> {
        *self
            .parsed
            .from
            .get_or_init(|| self.name_addr(HeaderName::From))
    }

    /// To (mandatory).
    pub fn to(&self) -> Result<NameAddr<'a>, ParseError> {
        *self
            .parsed
            .to
            .get_or_init(|| self.name_addr(HeaderName::To))
    }

    /// Max-Forwards, when present (0–255).
    pub fn max_forwards(&self) -> Result<Option<u8>, ParseError> {
        self.optional(HeaderName::MaxForwards, |v| {
            text::parse_decimal(v, 255).map(|n| n as u8)
        })
    }

    /// Expires, when present, in seconds.
    pub fn expires(&self) -> Result<Option<u32>, ParseError> {
        self.optional(HeaderName::Expires, headers::parse_delta_seconds)
    }

    /// Min-Expires, when present, in seconds.
    pub fn min_expires(&self) -> Result<Option<u32>, ParseError> {
        self.optional(HeaderName::MinExpires, headers::parse_delta_seconds)
    }

    /// Content-Type, when present.
    pub fn content_type(&self) -> Result<Option<MediaType<'a>>, ParseError> {
        self.optional(HeaderName::ContentType, MediaType::parse)
    }

    /// The topmost Via value.
    pub fn top_via(&self) -> Result<Via<'a>, ParseError> {
        *self.parsed.top_via.get_or_init(|| {
            self.values(HeaderName::Via)
                .next()
                .map_or(Err(ParseError::MissingHeader(HeaderName::Via)), parse_via)
        })
    }

    /// Every Via value, top first, across all Via header lines.
    pub fn vias(&self) -> impl Iterator<Item = Result<Via<'a>, ParseError>> + '_ {
        let mut values = self.values(HeaderName::Via);
        let top = values.next().map(|_| self.top_via());
        top.into_iter().chain(values.map(parse_via))
    }

    /// Every Contact value.
    pub fn contacts(&self) -> impl Iterator<Item = Result<Contact<'a>, ParseError>> + '_ {
        self.values(HeaderName::Contact)
            .map(|v| Contact::parse(v).map_err(|_| ParseError::BadHeader(HeaderName::Contact)))
    }

    /// Route values, in order (the next hop first).
    pub fn routes(&self) -> impl Iterator<Item = Result<NameAddr<'a>, ParseError>> + '_ {
        self.name_addrs(HeaderName::Route)
    }

    /// Record-Route values, in order.
    pub fn record_routes(&self) -> impl Iterator<Item = Result<NameAddr<'a>, ParseError>> + '_ {
        self.name_addrs(HeaderName::RecordRoute)
    }

    /// Path values (RFC 3327).
    pub fn paths(&self) -> impl Iterator<Item = Result<NameAddr<'a>, ParseError>> + '_ {
        self.name_addrs(HeaderName::Path)
    }

    /// Service-Route values (RFC 3608).
    pub fn service_routes(&self) -> impl Iterator<Item = Result<NameAddr<'a>, ParseError>> + '_ {
        self.name_addrs(HeaderName::ServiceRoute)
    }

    /// P-Asserted-Identity values (RFC 3325).
    pub fn p_asserted_identities(
        &self,
    ) -> impl Iterator<Item = Result<NameAddr<'a>, ParseError>> + '_ {
        self.name_addrs(HeaderName::PAssertedIdentity)
    }

    /// P-Associated-URI values (RFC 7315).
    pub fn p_associated_uris(&self) -> impl Iterator<Item = Result<NameAddr<'a>, ParseError>> + '_ {
        self.name_addrs(HeaderName::PAssociatedUri)
    }

    /// P-Served-User (RFC 5502), with its `sescase` and `regstate` parameters.
    pub fn p_served_user(&self) -> Result<Option<NameAddr<'a>>, ParseError> {
        self.optional(HeaderName::PServedUser, |v| NameAddr::parse(v).ok())
    }

    /// The values of Require, Proxy-Require, Supported or Unsupported: option tags.
    pub fn option_tags(
        &self,
        name: HeaderName,
    ) -> impl Iterator<Item = Result<&'a [u8], ParseError>> + '_ {
        self.values(name).map(move |tag| {
            if text::all_tokens(tag) {
                Ok(tag)
            } else {
                Err(ParseError::BadHeader(name))
            }
        })
    }

    /// True when a Supported or Require header lists `tag`.
    pub fn supports(&self, tag: &[u8]) -> bool {
        [HeaderName::Supported, HeaderName::Require]
            .into_iter()
            .any(|h| self.values(h).any(|t| t.eq_ignore_ascii_case(tag)))
    }

    /// Authorization, Proxy-Authorization, WWW-Authenticate or Proxy-Authenticate: one
    /// challenge or credential set per header line.
    pub fn auth(
        &self,
        name: HeaderName,
    ) -> impl Iterator<Item = Result<Auth<'a>, ParseError>> + '_ {
        self.headers_named(name)
            .map(move |h| Auth::parse(h.value()).map_err(|_| ParseError::BadHeader(name)))
    }

    /// Event (RFC 6665): the package and its parameters (`id`).
    pub fn event(&self) -> Result<Option<Parameterized<'a>>, ParseError> {
        self.optional(HeaderName::Event, Parameterized::parse)
    }

    /// Subscription-State: the state and its parameters (`expires`, `reason`).
    pub fn subscription_state(&self) -> Result<Option<Parameterized<'a>>, ParseError> {
        self.optional(HeaderName::SubscriptionState, Parameterized::parse)
    }

    /// P-Access-Network-Info (RFC 7315): the access type and its parameters.
    pub fn p_access_network_info(&self) -> Result<Option<Parameterized<'a>>, ParseError> {
        self.optional(HeaderName::PAccessNetworkInfo, Parameterized::parse)
    }

    /// P-Visited-Network-ID values (RFC 7315): a token or quoted string, with parameters.
    pub fn p_visited_network_ids(
        &self,
    ) -> impl Iterator<Item = Result<Parameterized<'a>, ParseError>> + '_ {
        self.values(HeaderName::PVisitedNetworkId).map(|v| {
            Parameterized::parse(v).ok_or(ParseError::BadHeader(HeaderName::PVisitedNetworkId))
        })
    }

    /// P-Charging-Vector (RFC 7315): `icid-value`, `icid-generated-at`, `orig-ioi`, …
    pub fn p_charging_vector(&self) -> Result<Option<Params<'a>>, ParseError> {
        self.optional(HeaderName::PChargingVector, headers::parse_param_list)
    }

    /// P-Charging-Function-Addresses (RFC 7315): `ccf` and `ecf` parameters.
    pub fn p_charging_function_addresses(&self) -> Result<Option<Params<'a>>, ParseError> {
        self.optional(
            HeaderName::PChargingFunctionAddresses,
            headers::parse_param_list,
        )
    }

    fn name_addrs(
        &self,
        name: HeaderName,
    ) -> impl Iterator<Item = Result<NameAddr<'a>, ParseError>> + '_ {
        self.headers_named(name)
            .flat_map(|h| ListElements::new(h.value()))
            .map(move |v| NameAddr::parse(v).map_err(|_| ParseError::BadHeader(name)))
    }

    fn name_addr(&self, name: HeaderName) -> Result<NameAddr<'a>, ParseError> {
        NameAddr::parse(self.single(name)?).map_err(|_| ParseError::BadHeader(name))
    }

    /// The value of a header that must be present.
    fn single(&self, name: HeaderName) -> Result<&'a [u8], ParseError> {
        self.header(name)
            .map(|h| h.value())
            .ok_or(ParseError::MissingHeader(name))
    }

    fn optional<T>(
        &self,
        name: HeaderName,
        parse: impl FnOnce(&'a [u8]) -> Option<T>,
    ) -> Result<Option<T>, ParseError> {
        match self.header(name) {
            None => Ok(None),
            Some(h) => parse(h.value())
                .map(Some)
                .ok_or(ParseError::BadHeader(name)),
        }
    }
}

fn parse_via(value: &[u8]) -> Result<Via<'_>, ParseError> {
    Via::parse(value).map_err(|_| ParseError::BadHeader(HeaderName::Via))
}

#[cfg(test)]
mod tests {
    use crate::{HeaderName, Message, Method};

    const REGISTER: &[u8] = b"REGISTER sip:example.com SIP/2.0\r\n\
Via: SIP/2.0/TCP [2001:db8::1]:5060;branch=z9hG4bKnashds7;rport, SIP/2.0/UDP p.example.com\r\n\
v: SIP/2.0/UDP 10.0.0.1:5062;branch=z9hG4bK1\r\n\
Max-Forwards: 70\r\n\
From: <sip:alice@example.com>;tag=456248\r\n\
To: <sip:alice@example.com>\r\n\
Call-ID: 843817637684230@998sdasdh09\r\n\
CSeq: 1826 REGISTER\r\n\
Contact: <sip:alice@[2001:db8::1]:5060;ob>;+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>\";reg-id=1;expires=7200\r\n\
Supported: path, outbound, gruu\r\n\
Path: <sip:pcscf.example.net;lr>\r\n\
Authorization: Digest username=\"alice@example.com\", realm=\"example.com\", nonce=\"\", uri=\"sip:example.com\", response=\"\"\r\n\
P-Access-Network-Info: 3GPP-E-UTRAN-FDD; utran-cell-id-3gpp=2344521010000001\r\n\
P-Visited-Network-ID: \"Visited network number 1\", other.net\r\n\
P-Charging-Vector: icid-value=\"AyretyU0dm+6O2IrT5tAFrbHLso=023551024\";orig-ioi=home1.net\r\n\
P-Charging-Function-Addresses: ccf=192.1.1.1; ccf=192.1.1.2; ecf=[2001:db8::2]\r\n\
Expires: 7200\r\n\
Content-Length: 0\r\n\
\r\n";

    #[test]
    fn register_fields() {
        let m = Message::parse(REGISTER).unwrap();
        assert_eq!(m.cseq().unwrap().method, Method::Register);
        assert_eq!(m.call_id().unwrap(), b"843817637684230@998sdasdh09");
        assert_eq!(m.max_forwards().unwrap(), Some(70));
        assert_eq!(m.vias().count(), 3);
        assert_eq!(m.top_via().unwrap().rport(), Some(None));
        let contact = m.contacts().next().unwrap().unwrap();
        assert_eq!(contact.reg_id(), Some(1));
        assert_eq!(contact.expires(), Some(7200));
        assert!(m.supports(b"OUTBOUND"));
        assert_eq!(m.paths().count(), 1);
        let auth = m.auth(HeaderName::Authorization).next().unwrap().unwrap();
        assert_eq!(auth.username(), Some(&b"alice@example.com"[..]));
        assert_eq!(auth.nonce(), Some(&b""[..]));
        let pani = m.p_access_network_info().unwrap().unwrap();
        assert_eq!(pani.value(), b"3GPP-E-UTRAN-FDD");
        assert_eq!(m.p_visited_network_ids().count(), 2);
        assert!(
            m.p_charging_vector()
                .unwrap()
                .unwrap()
                .contains(b"orig-ioi")
        );
        let pcfa = m.p_charging_function_addresses().unwrap().unwrap();
        assert_eq!(pcfa.iter().filter(|p| p.name == b"ccf").count(), 2);
        assert_eq!(m.expires().unwrap(), Some(7200));
        assert!(m.to().unwrap().tag().is_none());
    }
}
