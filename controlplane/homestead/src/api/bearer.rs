//! A bearer token (RFC 6750) in front of the APIs that change subscriber data and
//! bindings: the provisioning API (8889) and Sprout's management API (9886). They need one
//! when bound to an address beyond loopback ([`ApiToken::required_for`]); Homestead's read
//! API (8888) keeps Clearwater's contract and needs none.
//!
//! Written here rather than taken from tower-http's `ValidateRequestHeaderLayer::bearer`:
//! that compares the header with `==` (its time depends on how much of a guess is right)
//! and answers 401 without the `WWW-Authenticate` challenge RFC 6750 §3 asks for.

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};

/// The shortest token accepted: 128 bits of hex or base64 is 22 to 32 characters.
pub const MIN_TOKEN_LEN: usize = 16;

/// A secret that clients present as `Authorization: Bearer <token>`.
#[derive(Clone)]
pub struct ApiToken(Arc<str>);

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiToken(..)")
    }
}

impl ApiToken {
    /// The token in `text`, trimmed of surrounding whitespace.
    pub fn new(text: &str) -> Result<Self, String> {
        let token = text.trim();
        if token.len() < MIN_TOKEN_LEN {
            return Err(format!(
                "the API token is {} characters long; it needs at least {MIN_TOKEN_LEN}",
                token.len()
            ));
        }
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("the API token must be printable ASCII without spaces".into());
        }
        Ok(Self(token.into()))
    }

    /// The token in the first line of `path`.
    pub fn from_file(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the API token file {}: {e}", path.display()))?;
        Self::new(text.lines().next().unwrap_or_default())
            .map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The token `api` bound to `address` requires: `token` if given; none for a
    /// loopback address; an error for any other, which anyone on the network could use.
    pub fn required_for(
        api: &str,
        address: SocketAddr,
        token: Option<&Self>,
    ) -> Result<Option<Self>, String> {
        match token {
            Some(token) => Ok(Some(token.clone())),
            None if address.ip().is_loopback() => Ok(None),
            None => Err(format!(
                "the {api} on {address} changes subscriber data and is reachable beyond this \
                 host: give it a bearer token (--api-token-file), or bind it to loopback"
            )),
        }
    }

    /// `Authorization`'s value for a client presenting this token.
    pub fn authorization(&self) -> String {
        format!("Bearer {}", self.0)
    }

    /// The header value is `Bearer <this token>`, compared in time that does not depend
    /// on where a guess goes wrong.
    fn admits(&self, authorization: &[u8]) -> bool {
        let Some(presented) = strip_scheme(authorization) else {
            return false;
        };
        let expected = self.0.as_bytes();
        let mut difference = u8::from(presented.len() != expected.len());
        for (i, e) in expected.iter().enumerate() {
            difference |= e ^ presented.get(i).copied().unwrap_or(0);
        }
        difference == 0
    }
}

/// The credentials after `Bearer ` (the scheme is case-insensitive, RFC 7235 §2.1).
fn strip_scheme(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = value.split_at_checked(7)?;
    scheme
        .eq_ignore_ascii_case(b"bearer ")
        .then(|| rest.trim_ascii())
}

/// `router` with every request required to carry `token`; as it is without one.
pub fn require(router: Router, token: Option<ApiToken>) -> Router {
    match token {
        Some(token) => router.layer(middleware::from_fn_with_state(token, check)),
        None => router,
    }
}

async fn check(State(token): State<ApiToken>, request: Request, next: Next) -> Response {
    let authorization = request.headers().get(header::AUTHORIZATION);
    match authorization {
        Some(value) if token.admits(value.as_bytes()) => next.run(request).await,
        Some(_) => refuse(
            "Bearer error=\"invalid_token\"",
            "the bearer token is not this API's",
        ),
        None => refuse("Bearer", "this API needs Authorization: Bearer <token>"),
    }
}

fn refuse(challenge: &'static str, why: &str) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [
            (header::WWW_AUTHENTICATE, challenge),
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
        ],
        format!("{why}\n"),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123";

    #[test]
    fn only_the_exact_token_after_the_bearer_scheme_is_admitted() {
        let token = ApiToken::new(SECRET).expect("long enough");
        assert!(token.admits(format!("Bearer {SECRET}").as_bytes()));
        assert!(token.admits(format!("bearer {SECRET}").as_bytes()));
        for wrong in [
            format!("Bearer {SECRET}x"),
            format!("Bearer {}", &SECRET[..SECRET.len() - 1]),
            format!("Basic {SECRET}"),
            "Bearer ".to_owned(),
            String::new(),
        ] {
            assert!(!token.admits(wrong.as_bytes()), "{wrong:?}");
        }
    }

    #[test]
    fn a_short_or_spaced_token_is_refused_and_never_printed() {
        assert!(ApiToken::new("short").is_err());
        assert!(ApiToken::new("has a space in the middle").is_err());
        let token = ApiToken::new(&format!("  {SECRET}\n")).expect("trimmed");
        assert_eq!(format!("{token:?}"), "ApiToken(..)");
    }

    #[test]
    fn beyond_loopback_an_api_needs_a_token() {
        let token = ApiToken::new(SECRET).expect("long enough");
        let loopback: SocketAddr = "127.0.0.1:8889".parse().expect("address");
        let anywhere: SocketAddr = "0.0.0.0:8889".parse().expect("address");
        let lan: SocketAddr = "[2001:db8::1]:8889".parse().expect("address");
        assert!(matches!(
            ApiToken::required_for("x", loopback, None),
            Ok(None)
        ));
        assert!(matches!(
            ApiToken::required_for("x", loopback, Some(&token)),
            Ok(Some(_))
        ));
        for address in [anywhere, lan] {
            let e = ApiToken::required_for("provisioning API", address, None)
                .expect_err("no token beyond loopback");
            assert!(e.contains("--api-token-file"), "{e}");
            assert!(ApiToken::required_for("x", address, Some(&token)).is_ok());
        }
    }
}
