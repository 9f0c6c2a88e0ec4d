//! Homestead's Prometheus metrics, served at `GET /metrics` on the Homestead API port:
//! requests per API, method and status class, and their latency as a histogram (so that
//! it aggregates across nodes). Kept with `prometheus-client`, the Prometheus project's
//! own crate: its families and histograms are what this needs, and they encode the text
//! format the data plane's `/metrics` speaks.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{Method, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Which API a request came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// The Homestead API (8888).
    Homestead,
    /// The provisioning API (8889).
    Provisioning,
}

impl Api {
    const fn label(self) -> &'static str {
        match self {
            Self::Homestead => "homestead",
            Self::Provisioning => "prov",
        }
    }
}

/// A request's labels: static strings, so counting one allocates nothing.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    api: &'static str,
    method: &'static str,
    status: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ApiLabel {
    api: &'static str,
}

/// Upper bounds of the latency buckets, seconds: 0.5 ms (a cached read) to 10 s (past
/// any request timeout).
const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The counters both APIs record into.
#[derive(Clone)]
pub struct Metrics {
    /// Only read once built: the families inside count on their own.
    registry: Arc<Registry>,
    requests: Family<RequestLabels, Counter>,
    latency: Family<ApiLabel, Histogram>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Nothing counted yet.
    pub fn new() -> Self {
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<ApiLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(LATENCY_BUCKETS.iter().copied())
        });
        let mut registry = Registry::default();
        registry.register(
            "homestead_http_requests",
            "HTTP requests answered, by API, method and status class",
            requests.clone(),
        );
        registry.register(
            "homestead_http_request_duration_seconds",
            "time from a request's arrival to its answer, by API",
            latency.clone(),
        );
        Self {
            registry: Arc::new(registry),
            requests,
            latency,
        }
    }

    /// `router` with every request it answers counted under `api`.
    pub fn count(&self, router: Router, api: Api) -> Router {
        router.layer(middleware::from_fn_with_state((self.clone(), api), record))
    }

    /// `router` with `GET /metrics` added.
    pub fn serve(&self, router: Router) -> Router {
        let metrics = self.clone();
        router.route(
            "/metrics",
            get(move || async move { metrics.exposition().into_response() }),
        )
    }

    /// The text exposition format.
    pub fn exposition(&self) -> Response {
        let mut body = String::new();
        match encode(&mut body, &self.registry) {
            Ok(()) => (
                [(
                    header::CONTENT_TYPE,
                    "text/plain; version=0.0.4; charset=utf-8",
                )],
                body,
            )
                .into_response(),
            Err(_) => axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        }
    }
}

fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::PUT => "PUT",
        Method::POST => "POST",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        _ => "other",
    }
}

fn class_label(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

async fn record(
    State((metrics, api)): State<(Metrics, Api)>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = method_label(request.method());
    let response = next.run(request).await;
    let class = class_label(response.status().as_u16());
    metrics
        .requests
        .get_or_create(&RequestLabels {
            api: api.label(),
            method,
            status: class,
        })
        .inc();
    metrics
        .latency
        .get_or_create(&ApiLabel { api: api.label() })
        .observe(started.elapsed().as_secs_f64());
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::{Body, to_bytes};
    use axum::http::StatusCode;
    use tower::ServiceExt;

    #[tokio::test]
    async fn requests_are_counted_by_class_and_timed_in_a_histogram() {
        let metrics = Metrics::new();
        let app = metrics.serve(
            metrics.count(
                Router::new()
                    .route("/ok", get(|| async { "fine" }))
                    .route("/gone", get(|| async { StatusCode::NOT_FOUND })),
                Api::Homestead,
            ),
        );
        for path in ["/ok", "/ok", "/gone"] {
            let request = Request::get(path).body(Body::empty()).expect("request");
            app.clone().oneshot(request).await.expect("answer");
        }
        let request = Request::get("/metrics")
            .body(Body::empty())
            .expect("request");
        let response = app.oneshot(request).await.expect("answer");
        assert_eq!(response.status(), StatusCode::OK);
        let body = to_bytes(response.into_body(), 1 << 20).await.expect("body");
        let text = String::from_utf8(body.to_vec()).expect("UTF-8");
        assert!(
            text.contains(
                "homestead_http_requests_total{api=\"homestead\",method=\"GET\",status=\"2xx\"} 2"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "homestead_http_requests_total{api=\"homestead\",method=\"GET\",status=\"4xx\"} 1"
            ),
            "{text}"
        );
        assert!(text.contains("# TYPE homestead_http_request_duration_seconds histogram"));
        assert!(
            text.contains(
                "homestead_http_request_duration_seconds_bucket{le=\"+Inf\",api=\"homestead\"} 3"
            ),
            "{text}"
        );
        assert!(
            text.contains("homestead_http_request_duration_seconds_count{api=\"homestead\"} 3")
        );
    }
}
