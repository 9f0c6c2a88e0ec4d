//! Homestead's HTTP APIs: the Clearwater Homestead API ([`homestead`], port 8888) and the
//! provisioning API ([`prov`], port 8889: Clearwater's Homestead-prov routes plus our own
//! `/subscribers`). Errors carry the status Clearwater gives and a body saying what was
//! wrong.

pub mod bearer;
pub mod homestead;
pub mod metrics;
pub mod prov;

use std::time::Duration;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

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

/// The limits every request of an API passes.
struct Limits {
    in_flight: Semaphore,
    max_in_flight: usize,
    timeout: Duration,
}

/// Load shedding shared by every route of an API: beyond `max_in_flight` concurrent
/// requests, new ones get 503 at once rather than queueing into timeouts (Clearwater's
/// Homestead answers 503 when overloaded), and a request that takes longer than `timeout`
/// gets 504.
pub(crate) fn protect(router: Router, max_in_flight: usize, timeout: Duration) -> Router {
    let limits = Arc::new(Limits {
        in_flight: Semaphore::new(max_in_flight),
        max_in_flight,
        timeout,
    });
    router.layer(middleware::from_fn_with_state(limits, guard))
}

async fn guard(State(limits): State<Arc<Limits>>, request: Request, next: Next) -> Response {
    let Ok(_permit) = limits.in_flight.try_acquire() else {
        return ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "overloaded: {} requests already in progress",
                limits.max_in_flight
            ),
        )
        .into_response();
    };
    match tokio::time::timeout(limits.timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError(
            StatusCode::GATEWAY_TIMEOUT,
            format!("request timed out after {} ms", limits.timeout.as_millis()),
        )
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt;

    fn slow_router(delay: Duration, max_in_flight: usize, timeout: Duration) -> Router {
        let router = Router::new().route(
            "/slow",
            get(move || async move {
                tokio::time::sleep(delay).await;
                "done"
            }),
        );
        protect(router, max_in_flight, timeout)
    }

    async fn status_and_body(router: Router) -> (StatusCode, String) {
        let response = router
            .oneshot(Request::get("/slow").body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .unwrap();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn a_request_over_the_time_limit_is_504_with_a_reason() {
        let router = slow_router(Duration::from_secs(5), 10, Duration::from_millis(20));
        let (status, body) = status_and_body(router).await;
        assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
        assert!(body.contains("timed out"), "{body}");
    }

    #[tokio::test]
    async fn requests_beyond_the_in_flight_limit_are_503_at_once() {
        let router = slow_router(Duration::from_millis(300), 1, Duration::from_secs(5));
        let first = tokio::spawn(status_and_body(router.clone()));
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (status, body) = status_and_body(router).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("overloaded"), "{body}");
        assert_eq!(first.await.unwrap(), (StatusCode::OK, "done".into()));
    }
}
