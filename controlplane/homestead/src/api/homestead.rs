//! The Clearwater Homestead API (reference §1.1): authentication vectors, registration
//! status, location and reg-data.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use super::{ApiError, method_not_allowed, not_found};
use crate::source::{
    AuthRequest, AuthScheme, AuthVector, RegDataRequest, ServerAssignment, SubscriberSource,
};

type Source = Arc<dyn SubscriberSource>;
type Params = Query<HashMap<String, String>>;

/// The routes of port 8888.
pub fn router(source: Source) -> Router {
    Router::new()
        .route("/ping", get(|| async { "OK" }).fallback(method_not_allowed))
        .route(
            "/impi/{impi}/digest",
            get(legacy_digest).fallback(method_not_allowed),
        )
        .route(
            "/impi/{impi}/av",
            get(av_unknown).fallback(method_not_allowed),
        )
        .route(
            "/impi/{impi}/av/{scheme}",
            get(av_scheme).fallback(method_not_allowed),
        )
        .route(
            "/impi/{impi}/registration-status",
            get(registration_status).fallback(method_not_allowed),
        )
        .route(
            "/impu/{impu}/location",
            get(location).fallback(method_not_allowed),
        )
        .route(
            "/impu/{impu}/reg-data",
            get(get_reg_data)
                .put(put_reg_data)
                .fallback(method_not_allowed),
        )
        .fallback(not_found)
        .with_state(source)
}

#[derive(Serialize)]
struct DigestBody<'a> {
    ha1: &'a str,
    realm: &'a str,
    qop: &'a str,
}

#[derive(Serialize)]
struct AkaBody<'a> {
    challenge: &'a str,
    response: &'a str,
    cryptkey: &'a str,
    integritykey: &'a str,
    version: u8,
}

#[derive(Serialize)]
enum AvBody<'a> {
    #[serde(rename = "digest")]
    Digest(DigestBody<'a>),
    #[serde(rename = "aka")]
    Aka(AkaBody<'a>),
}

fn param(params: &HashMap<String, String>, name: &str) -> Option<String> {
    params.get(name).filter(|v| !v.is_empty()).cloned()
}

async fn av(
    source: &Source,
    impi: String,
    scheme: AuthScheme,
    params: &HashMap<String, String>,
) -> Result<Response, ApiError> {
    let request = AuthRequest {
        impi,
        impu: param(params, "impu").unwrap_or_default(),
        scheme,
        resync_auth: param(params, "resync-auth"),
        server_name: param(params, "server-name"),
    };
    let vector = source.auth_vector(&request).await?;
    let body = match &vector {
        AuthVector::Digest { ha1, realm, qop } => AvBody::Digest(DigestBody { ha1, realm, qop }),
        AuthVector::Aka { vector, version } => AvBody::Aka(AkaBody {
            challenge: &vector.challenge,
            response: &vector.response,
            cryptkey: &vector.cryptkey,
            integritykey: &vector.integritykey,
            version: *version,
        }),
    };
    Ok(Json(body).into_response())
}

async fn av_unknown(
    State(source): State<Source>,
    Path(impi): Path<String>,
    Query(params): Params,
) -> Result<Response, ApiError> {
    av(&source, impi, AuthScheme::Unknown, &params).await
}

async fn av_scheme(
    State(source): State<Source>,
    Path((impi, scheme)): Path<(String, String)>,
    Query(params): Params,
) -> Result<Response, ApiError> {
    let scheme = match scheme.as_str() {
        "digest" => AuthScheme::Digest,
        "aka" => AuthScheme::AkaV1,
        "aka2" => AuthScheme::AkaV2,
        other => {
            return Err(ApiError(
                StatusCode::NOT_FOUND,
                format!("unknown authentication scheme {other:?} (digest, aka or aka2)"),
            ));
        }
    };
    av(&source, impi, scheme, &params).await
}

#[derive(Serialize)]
struct LegacyDigest {
    digest_ha1: String,
}

/// `GET /impi/<impi>/digest?public_id=<impu>`, the pre-`/av` form.
async fn legacy_digest(
    State(source): State<Source>,
    Path(impi): Path<String>,
    Query(params): Params,
) -> Result<Response, ApiError> {
    let request = AuthRequest {
        impi,
        impu: param(&params, "public_id").unwrap_or_default(),
        scheme: AuthScheme::Digest,
        resync_auth: None,
        server_name: param(&params, "server-name"),
    };
    match source.auth_vector(&request).await? {
        AuthVector::Digest { ha1, .. } => {
            Ok(Json(LegacyDigest { digest_ha1: ha1 }).into_response())
        }
        AuthVector::Aka { .. } => Err(ApiError(
            StatusCode::NOT_FOUND,
            "subscriber has no digest credentials".into(),
        )),
    }
}

#[derive(Serialize)]
struct AssignmentBody<'a> {
    #[serde(rename = "result-code")]
    result_code: u32,
    scscf: &'a str,
}

fn assignment(a: &ServerAssignment) -> Response {
    Json(AssignmentBody {
        result_code: a.result_code,
        scscf: &a.scscf,
    })
    .into_response()
}

async fn registration_status(
    State(source): State<Source>,
    Path(impi): Path<String>,
    Query(params): Params,
) -> Result<Response, ApiError> {
    let impu = param(&params, "impu").unwrap_or_default();
    Ok(assignment(&source.registration_status(&impi, &impu).await?))
}

async fn location(
    State(source): State<Source>,
    Path(impu): Path<String>,
) -> Result<Response, ApiError> {
    Ok(assignment(&source.location(&impu).await?))
}

fn xml(body: String) -> Response {
    (StatusCode::OK, [("content-type", "application/xml")], body).into_response()
}

async fn get_reg_data(
    State(source): State<Source>,
    Path(impu): Path<String>,
) -> Result<Response, ApiError> {
    Ok(xml(source.reg_data(&impu).await?.to_xml()))
}

async fn put_reg_data(
    State(source): State<Source>,
    Path(impu): Path<String>,
    Query(params): Params,
    body: String,
) -> Result<Response, ApiError> {
    let bad = |m: String| ApiError(StatusCode::BAD_REQUEST, m);
    let json: serde_json::Value =
        serde_json::from_str(&body).map_err(|e| bad(format!("body is not JSON: {e}")))?;
    let reqtype = json
        .get("reqtype")
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| bad("body needs a \"reqtype\" string".into()))?;
    let request = RegDataRequest::parse(reqtype).ok_or_else(|| {
        bad(format!(
            "unknown reqtype {reqtype:?} (reg, call, dereg-user, dereg-admin, dereg-timeout, \
             dereg-auth-failed, dereg-auth-timeout)"
        ))
    })?;
    let server_name = json.get("server_name").and_then(serde_json::Value::as_str);
    let private_id = param(&params, "private_id");
    let data = source
        .update_reg_data(&impu, private_id.as_deref(), request, server_name)
        .await?;
    Ok(xml(data.to_xml()))
}
