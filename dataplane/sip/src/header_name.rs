//! Header names: the ones Whitewater reads, their compact forms, and case-insensitive lookup.

macro_rules! header_names {
    ($( $variant:ident => $canonical:literal, $lower:literal $(| $compact:literal)? ; )*) => {
        /// A header name the stack knows, or [`HeaderName::Other`] for every extension header
        /// (which passes through a proxy byte for byte).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum HeaderName {
            $(
                #[doc = $canonical]
                $variant,
            )*
            /// Any header not listed above; compare its raw name with [`crate::Header::name`].
            Other,
        }

        impl HeaderName {
            /// The canonical spelling, as Whitewater writes it.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $canonical,)*
                    Self::Other => "(extension header)",
                }
            }

            /// Looks a name up case-insensitively, compact forms included (RFC 3261 §7.3.3).
            pub fn from_bytes(name: &[u8]) -> Self {
                let mut lower = [0u8; MAX_KNOWN_LEN];
                let Some(slot) = lower.get_mut(..name.len()) else {
                    return Self::Other;
                };
                for (out, &c) in slot.iter_mut().zip(name) {
                    *out = c.to_ascii_lowercase();
                }
                match &*slot {
                    $($lower $(| $compact)? => Self::$variant,)*
                    _ => Self::Other,
                }
            }
        }
    };
}

/// Longer than any known name, so anything longer is an extension header.
const MAX_KNOWN_LEN: usize = 32;

header_names! {
    Accept => "Accept", b"accept";
    AcceptContact => "Accept-Contact", b"accept-contact" | b"a";
    AllowEvents => "Allow-Events", b"allow-events" | b"u";
    Allow => "Allow", b"allow";
    AuthenticationInfo => "Authentication-Info", b"authentication-info";
    Authorization => "Authorization", b"authorization";
    CallId => "Call-ID", b"call-id" | b"i";
    Contact => "Contact", b"contact" | b"m";
    ContentEncoding => "Content-Encoding", b"content-encoding" | b"e";
    ContentLength => "Content-Length", b"content-length" | b"l";
    ContentType => "Content-Type", b"content-type" | b"c";
    CSeq => "CSeq", b"cseq";
    Event => "Event", b"event" | b"o";
    Expires => "Expires", b"expires";
    From => "From", b"from" | b"f";
    Identity => "Identity", b"identity" | b"y";
    MaxForwards => "Max-Forwards", b"max-forwards";
    MinExpires => "Min-Expires", b"min-expires";
    PAccessNetworkInfo => "P-Access-Network-Info", b"p-access-network-info";
    PAssertedIdentity => "P-Asserted-Identity", b"p-asserted-identity";
    PAssociatedUri => "P-Associated-URI", b"p-associated-uri";
    PCalledPartyId => "P-Called-Party-ID", b"p-called-party-id";
    PChargingFunctionAddresses => "P-Charging-Function-Addresses", b"p-charging-function-addresses";
    PChargingVector => "P-Charging-Vector", b"p-charging-vector";
    PPreferredIdentity => "P-Preferred-Identity", b"p-preferred-identity";
    PServedUser => "P-Served-User", b"p-served-user";
    PVisitedNetworkId => "P-Visited-Network-ID", b"p-visited-network-id";
    Path => "Path", b"path";
    ProxyAuthenticate => "Proxy-Authenticate", b"proxy-authenticate";
    ProxyAuthorization => "Proxy-Authorization", b"proxy-authorization";
    ProxyRequire => "Proxy-Require", b"proxy-require";
    RAck => "RAck", b"rack";
    Reason => "Reason", b"reason";
    RecordRoute => "Record-Route", b"record-route";
    ReferTo => "Refer-To", b"refer-to" | b"r";
    ReferredBy => "Referred-By", b"referred-by" | b"b";
    RejectContact => "Reject-Contact", b"reject-contact" | b"j";
    RequestDisposition => "Request-Disposition", b"request-disposition" | b"d";
    Require => "Require", b"require";
    RetryAfter => "Retry-After", b"retry-after";
    Route => "Route", b"route";
    RSeq => "RSeq", b"rseq";
    ServiceRoute => "Service-Route", b"service-route";
    SessionExpires => "Session-Expires", b"session-expires" | b"x";
    Subject => "Subject", b"subject" | b"s";
    SubscriptionState => "Subscription-State", b"subscription-state";
    Supported => "Supported", b"supported" | b"k";
    To => "To", b"to" | b"t";
    Unsupported => "Unsupported", b"unsupported";
    UserAgent => "User-Agent", b"user-agent";
    Via => "Via", b"via" | b"v";
    WwwAuthenticate => "WWW-Authenticate", b"www-authenticate";
}

impl HeaderName {
    /// Headers that may appear at most once (RFC 3261 §7.3.1: not a comma-separated list).
    pub const fn is_single(self) -> bool {
        matches!(
            self,
            Self::CallId
                | Self::ContentLength
                | Self::ContentType
                | Self::CSeq
                | Self::Expires
                | Self::From
                | Self::MaxForwards
                | Self::MinExpires
                | Self::To
        )
    }
}

impl std::fmt::Display for HeaderName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::HeaderName;

    #[test]
    fn lookup_is_case_insensitive_with_compact_forms() {
        assert_eq!(
            HeaderName::from_bytes(b"MaX-fOrWaRdS"),
            HeaderName::MaxForwards
        );
        assert_eq!(HeaderName::from_bytes(b"v"), HeaderName::Via);
        assert_eq!(HeaderName::from_bytes(b"L"), HeaderName::ContentLength);
        assert_eq!(HeaderName::from_bytes(b"C%6Fntact"), HeaderName::Other);
        assert_eq!(HeaderName::from_bytes(&[b'x'; 200]), HeaderName::Other);
    }
}
