//! Sprout's management HTTP API (reference §1.3, Clearwater's port 9886): an operator
//! inspects and clears a subscriber's registration.
//!
//! - `GET /impu/<impu>/bindings`: `{"bindings":{<id>:{uri,cid,cseq,expires,priority,params,
//!   paths,timer_id,private_id,emergency_reg}}}`, 404 when nothing is registered.
//! - `GET /impu/<impu>/subscriptions`: `{"subscriptions":{<to_tag>:{req_uri,from_uri,
//!   from_tag,to_uri,to_tag,cid,routes,expires,timer_id}}}`, 404 when nothing is known.
//! - `DELETE /impu/<impu>`: removes every binding and tells Homestead (`dereg-admin`); 404
//!   when nothing was registered, 502 when Homestead did not take it.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use engine::scscf::{RegistrationChange, Registrations, Subscribers};
use serde_json::{Value, json};

#[derive(Clone)]
struct Api {
    registrations: Registrations,
    subscribers: Arc<dyn Subscribers>,
}

/// The management API's routes.
pub(crate) fn app(registrations: Registrations, subscribers: Arc<dyn Subscribers>) -> Router {
    Router::new()
        .route("/impu/{impu}/bindings", get(bindings))
        .route("/impu/{impu}/subscriptions", get(subscriptions))
        .route("/impu/{impu}", axum::routing::delete(deregister))
        .with_state(Api {
            registrations,
            subscribers,
        })
}

/// An IMPU as the path gives it: `sip:` is assumed when no scheme is written.
fn aor(impu: &str) -> String {
    if impu.contains(':') {
        impu.to_owned()
    } else {
        format!("sip:{impu}")
    }
}

fn error(status: StatusCode, why: impl std::fmt::Display) -> Response {
    (status, format!("{why}\n")).into_response()
}

async fn bindings(State(api): State<Api>, Path(impu): Path<String>) -> Response {
    match api.registrations.get(&aor(&impu)).await {
        Ok(state) if state.is_unregistered() => error(StatusCode::NOT_FOUND, "not registered"),
        Ok(state) => {
            let mut out = serde_json::Map::new();
            for (id, binding) in state.bindings {
                let mut value = serde_json::to_value(binding).unwrap_or(Value::Null);
                if let Value::Object(fields) = &mut value {
                    // Clearwater's field, kept for clients that read it: expiry timers are
                    // the engine's own, not Chronos's.
                    fields.insert("timer_id".into(), json!("Deprecated"));
                }
                out.insert(id, value);
            }
            axum::Json(json!({ "bindings": out })).into_response()
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

async fn subscriptions(State(api): State<Api>, Path(impu): Path<String>) -> Response {
    match api.registrations.get(&aor(&impu)).await {
        Ok(state) if state.is_empty() => error(StatusCode::NOT_FOUND, "nothing known"),
        Ok(state) => {
            let mut out = serde_json::Map::new();
            for (tag, subscription) in state.subscriptions {
                let mut value = serde_json::to_value(subscription).unwrap_or(Value::Null);
                if let Value::Object(fields) = &mut value {
                    fields.remove("notify_cseq");
                    fields.insert("timer_id".into(), json!("Deprecated"));
                }
                out.insert(tag, value);
            }
            axum::Json(json!({ "subscriptions": out })).into_response()
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

async fn deregister(State(api): State<Api>, Path(impu): Path<String>) -> Response {
    let aor = aor(&impu);
    let removed = match api.registrations.remove(&aor).await {
        Ok(removed) => removed,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e),
    };
    let Some(impi) = removed
        .bindings
        .values()
        .next()
        .map(|b| b.private_id.clone())
    else {
        return error(StatusCode::NOT_FOUND, "not registered");
    };
    match api
        .subscribers
        .registration(aor, impi, RegistrationChange::DeregisterAdmin)
        .await
    {
        Ok(_) => StatusCode::OK.into_response(),
        Err(e) => error(
            StatusCode::BAD_GATEWAY,
            format!("bindings removed; Homestead did not take the deregistration: {e}"),
        ),
    }
}
