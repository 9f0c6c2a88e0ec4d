//! Homestead's HTTP APIs: the Clearwater Homestead API ([`homestead`], port 8888) and the
//! provisioning API ([`prov`], port 8889: Clearwater's Homestead-prov routes plus our own
//! `/subscribers`). Errors carry the status Clearwater gives and a body saying what was
//! wrong.

pub mod homestead;
pub mod prov;

use std::time::Duration;

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tower::ServiceBuilder;

use crate::provisioning::ProvError;
use crate::source::LookupError;
use crate::store::StoreError;

/// An HTTP error: a status and a plain-text reason.
#[derive(Debug)]
pub struct ApiError(pub StatusCode, pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.0,
            [("content-type", "text/plain; charset=utf-8")],
            self.1 + "\n",
        )
            .into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let status = match e {
            StoreError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            StoreError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            StoreError::Backend(_) => StatusCode::BAD_GATEWAY,
        };
        Self(status, e.to_string())
    }
}

impl From<LookupError> for ApiError {
    fn from(e: LookupError) -> Self {
        match e {
            LookupError::NotFound(m) => Self(StatusCode::NOT_FOUND, m),
            LookupError::BadRequest(m) => Self(StatusCode::BAD_REQUEST, m),
            LookupError::Store(e) => e.into(),
        }
    }
}

impl From<ProvError> for ApiError {
    fn from(e: ProvError) -> Self {
        match e {
            ProvError::BadRequest(m) => Self(StatusCode::BAD_REQUEST, m),
            ProvError::Forbidden(m) => Self(StatusCode::FORBIDDEN, m),
            ProvError::NotFound(m) => Self(StatusCode::NOT_FOUND, m),
            ProvError::Conflict(m) => Self(StatusCode::CONFLICT, m),
            ProvError::Store(e) => e.into(),
        }
    }
}

pub(crate) async fn not_found() -> ApiError {
    ApiError(StatusCode::NOT_FOUND, "no such resource".into())
}

pub(crate) async fn method_not_allowed() -> ApiError {
    ApiError(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed on this resource".into(),
    )
}

/// Load shedding shared by both APIs: beyond `max_in_flight` concurrent requests, new ones
/// get 503 at once rather than queueing into timeouts (Clearwater's Homestead answers 503
/// when overloaded), and a request that takes longer than `timeout` gets 504.
pub(crate) fn protect(router: Router, max_in_flight: usize, timeout: Duration) -> Router {
    router.layer(
        ServiceBuilder::new()
            .layer(HandleErrorLayer::new(|e: tower::BoxError| async move {
                if e.is::<tower::timeout::error::Elapsed>() {
                    ApiError(StatusCode::GATEWAY_TIMEOUT, "request timed out".into())
                } else {
                    ApiError(StatusCode::SERVICE_UNAVAILABLE, format!("overloaded: {e}"))
                }
            }))
            .load_shed()
            .concurrency_limit(max_in_flight)
            .timeout(timeout),
    )
}
