//! The provisioning API (port 8889): Clearwater's Homestead-prov routes (reference §1.2,
//! as crest's code answers them) and our own `/subscribers`.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use super::{ApiError, method_not_allowed, not_found};
use crate::provisioning::subscribers::{PutOutcome, SubscriberSpec};
use crate::provisioning::{Credentials, Provisioning, public_ids_of};

type Prov = Arc<Provisioning>;

/// The routes of port 8889.
pub fn router(prov: Prov) -> Router {
    let m = || method_not_allowed;
    Router::new()
        .route("/ping", get(|| async { "OK" }).fallback(m()))
        .route(
            "/private/{impi}",
            put(put_private)
                .get(get_private)
                .delete(delete_private)
                .fallback(m()),
        )
        .route(
            "/private/{impi}/associated_implicit_registration_sets",
            get(private_sets).fallback(m()),
        )
        .route(
            "/private/{impi}/associated_implicit_registration_sets/{irs}",
            put(associate_private)
                .delete(dissociate_private)
                .fallback(m()),
        )
        .route(
            "/private/{impi}/associated_public_ids",
            get(private_public_ids).fallback(m()),
        )
        .route("/irs", post(create_set).fallback(m()))
        .route(
            "/irs/{irs}",
            axum::routing::delete(delete_set).fallback(m()),
        )
        .route("/irs/{irs}/public_ids", get(set_public_ids).fallback(m()))
        .route("/irs/{irs}/private_ids", get(set_private_ids).fallback(m()))
        .route(
            "/irs/{irs}/private_ids/{impi}",
            put(associate_set).delete(dissociate_set).fallback(m()),
        )
        .route(
            "/irs/{irs}/service_profiles",
            post(create_profile).fallback(m()),
        )
        .route(
            "/irs/{irs}/service_profiles/{sp}",
            axum::routing::delete(delete_profile).fallback(m()),
        )
        .route(
            "/irs/{irs}/service_profiles/{sp}/public_ids",
            get(profile_public_ids).fallback(m()),
        )
        .route(
            "/irs/{irs}/service_profiles/{sp}/public_ids/{impu}",
            put(put_public).delete(delete_public).fallback(m()),
        )
        .route(
            "/irs/{irs}/service_profiles/{sp}/filter_criteria",
            put(put_filter_criteria)
                .get(get_filter_criteria)
                .fallback(m()),
        )
        .route("/public/", get(list_public).fallback(m()))
        .route(
            "/public/{impu}/service_profile",
            get(public_profile).fallback(m()),
        )
        .route("/public/{impu}/irs", get(public_set).fallback(m()))
        .route("/public/{impu}/irs/", get(public_set).fallback(m()))
        .route(
            "/public/{impu}/associated_private_ids",
            get(public_private_ids).fallback(m()),
        )
        .route("/subscribers", get(list_subscribers).fallback(m()))
        .route(
            "/subscribers/{impi}",
            put(put_subscriber)
                .get(get_subscriber)
                .delete(delete_subscriber)
                .fallback(m()),
        )
        .fallback(not_found)
        .with_state(prov)
}

fn id(text: &str, what: &str) -> Result<Uuid, ApiError> {
    Uuid::try_parse(text).map_err(|_| {
        ApiError(
            StatusCode::NOT_FOUND,
            format!("{text:?} is not a {what} id"),
        )
    })
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, message.into())
}

fn parse_json<T: for<'de> Deserialize<'de>>(body: &str) -> Result<T, ApiError> {
    if body.trim().is_empty() {
        return Err(bad("the body is empty; a JSON object is required"));
    }
    serde_json::from_str(body)
        .map_err(|e| bad(format!("body is not valid JSON for this resource: {e}")))
}

fn require_empty(body: &str) -> Result<(), ApiError> {
    if body.trim().is_empty() {
        Ok(())
    } else {
        Err(bad("this request takes no body"))
    }
}

fn deleted(existed: bool) -> StatusCode {
    // Homestead-prov answers a DELETE of something absent with 204.
    if existed {
        StatusCode::OK
    } else {
        StatusCode::NO_CONTENT
    }
}

fn created(location: String) -> Response {
    (StatusCode::CREATED, [(header::LOCATION, location)]).into_response()
}

fn see_other(location: String) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response()
}

// Private identities.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PrivateBody {
    digest_ha1: Option<String>,
    plaintext_password: Option<String>,
    realm: Option<String>,
}

async fn put_private(
    State(p): State<Prov>,
    Path(impi): Path<String>,
    body: String,
) -> Result<StatusCode, ApiError> {
    let body: PrivateBody = parse_json(&body)?;
    let credentials = match (body.digest_ha1, body.plaintext_password) {
        (Some(ha1), None) => Credentials::DigestHa1(ha1),
        (None, Some(password)) => Credentials::Password(password),
        (Some(_), Some(_)) => return Err(bad("give digest_ha1 or plaintext_password, not both")),
        (None, None) => return Err(bad("digest_ha1 or plaintext_password is required")),
    };
    p.put_private(&impi, credentials, body.realm.as_deref())
        .await?;
    Ok(StatusCode::OK)
}

#[derive(Serialize)]
struct PrivateView {
    digest_ha1: String,
    realm: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    plaintext_password: Option<String>,
}

async fn get_private(
    State(p): State<Prov>,
    Path(impi): Path<String>,
) -> Result<Response, ApiError> {
    let private = p.get_private(&impi).await?;
    Ok(Json(PrivateView {
        digest_ha1: private.digest_ha1.unwrap_or_default(),
        realm: private.realm,
        plaintext_password: private.plaintext_password,
    })
    .into_response())
}

async fn delete_private(
    State(p): State<Prov>,
    Path(impi): Path<String>,
) -> Result<StatusCode, ApiError> {
    Ok(deleted(p.delete_private(&impi).await?))
}

async fn private_sets(
    State(p): State<Prov>,
    Path(impi): Path<String>,
) -> Result<Response, ApiError> {
    let sets = p.private_sets(&impi).await?;
    Ok(Json(json!({ "associated_implicit_registration_sets": sets })).into_response())
}

async fn associate_private(
    State(p): State<Prov>,
    Path((impi, irs)): Path<(String, String)>,
    body: String,
) -> Result<StatusCode, ApiError> {
    require_empty(&body)?;
    p.associate(&impi, id(&irs, "registration set")?, true)
        .await?;
    Ok(StatusCode::OK)
}

async fn dissociate_private(
    State(p): State<Prov>,
    Path((impi, irs)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    Ok(deleted(
        p.associate(&impi, id(&irs, "registration set")?, false)
            .await?,
    ))
}

async fn private_public_ids(
    State(p): State<Prov>,
    Path(impi): Path<String>,
) -> Result<Response, ApiError> {
    let ids = p.private_public_ids(&impi).await?;
    Ok(Json(json!({ "associated_public_ids": ids })).into_response())
}

// Implicit registration sets.

async fn create_set(State(p): State<Prov>, body: String) -> Result<Response, ApiError> {
    require_empty(&body)?;
    Ok(created(format!("/irs/{}", p.create_set().await?)))
}

async fn delete_set(
    State(p): State<Prov>,
    Path(irs): Path<String>,
) -> Result<StatusCode, ApiError> {
    Ok(deleted(p.delete_set(id(&irs, "registration set")?).await?))
}

async fn set_public_ids(
    State(p): State<Prov>,
    Path(irs): Path<String>,
) -> Result<Response, ApiError> {
    let set = p.get_set(id(&irs, "registration set")?).await?;
    Ok(Json(json!({ "public_ids": public_ids_of(&set).collect::<Vec<_>>() })).into_response())
}

async fn set_private_ids(
    State(p): State<Prov>,
    Path(irs): Path<String>,
) -> Result<Response, ApiError> {
    let set = p.get_set(id(&irs, "registration set")?).await?;
    Ok(Json(json!({ "private_ids": set.private_ids })).into_response())
}

/// The same link as `/private/<impi>/associated_implicit_registration_sets/<irs>`, named
/// from the set's side.
async fn associate_set(
    prov: State<Prov>,
    Path((irs, impi)): Path<(String, String)>,
    body: String,
) -> Result<StatusCode, ApiError> {
    associate_private(prov, Path((impi, irs)), body).await
}

async fn dissociate_set(
    prov: State<Prov>,
    Path((irs, impi)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    dissociate_private(prov, Path((impi, irs))).await
}

// Service profiles.

async fn create_profile(
    State(p): State<Prov>,
    Path(irs): Path<String>,
    body: String,
) -> Result<Response, ApiError> {
    require_empty(&body)?;
    let set = id(&irs, "registration set")?;
    let profile = p.create_service_profile(set).await?;
    Ok(created(format!("/irs/{set}/service_profiles/{profile}")))
}

fn set_and_profile(irs: &str, sp: &str) -> Result<(Uuid, Uuid), ApiError> {
    Ok((id(irs, "registration set")?, id(sp, "service profile")?))
}

async fn delete_profile(
    State(p): State<Prov>,
    Path((irs, sp)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let (set, profile) = set_and_profile(&irs, &sp)?;
    p.delete_service_profile(set, profile).await?;
    Ok(StatusCode::OK)
}

async fn profile_public_ids(
    State(p): State<Prov>,
    Path((irs, sp)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let (set, profile) = set_and_profile(&irs, &sp)?;
    let profile = p.get_service_profile(set, profile).await?;
    let ids: Vec<_> = profile.public_ids.into_iter().map(|p| p.impu).collect();
    Ok(Json(json!({ "public_ids": ids })).into_response())
}

async fn put_public(
    State(p): State<Prov>,
    Path((irs, sp, impu)): Path<(String, String, String)>,
    body: String,
) -> Result<StatusCode, ApiError> {
    let (set, profile) = set_and_profile(&irs, &sp)?;
    p.put_public_identity(set, profile, &impu, &body).await?;
    Ok(StatusCode::OK)
}

async fn delete_public(
    State(p): State<Prov>,
    Path((irs, sp, impu)): Path<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    let (set, profile) = set_and_profile(&irs, &sp)?;
    p.delete_public_identity(set, profile, &impu).await?;
    Ok(StatusCode::OK)
}

async fn put_filter_criteria(
    State(p): State<Prov>,
    Path((irs, sp)): Path<(String, String)>,
    body: String,
) -> Result<StatusCode, ApiError> {
    let (set, profile) = set_and_profile(&irs, &sp)?;
    p.put_filter_criteria(set, profile, &body).await?;
    Ok(StatusCode::OK)
}

async fn get_filter_criteria(
    State(p): State<Prov>,
    Path((irs, sp)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let (set, profile) = set_and_profile(&irs, &sp)?;
    let profile = p.get_service_profile(set, profile).await?;
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/xml")],
        profile.filter_criteria_xml,
    )
        .into_response())
}

// Public identities.

async fn public_profile(
    State(p): State<Prov>,
    Path(impu): Path<String>,
) -> Result<Response, ApiError> {
    let index = p.locate_public(&impu).await?;
    Ok(see_other(format!(
        "/irs/{}/service_profiles/{}",
        index.registration_set, index.service_profile
    )))
}

async fn public_set(State(p): State<Prov>, Path(impu): Path<String>) -> Result<Response, ApiError> {
    let index = p.locate_public(&impu).await?;
    Ok(see_other(format!("/irs/{}", index.registration_set)))
}

async fn public_private_ids(
    State(p): State<Prov>,
    Path(impu): Path<String>,
) -> Result<Response, ApiError> {
    Ok(Json(json!({ "private_ids": p.public_private_ids(&impu).await? })).into_response())
}

/// `GET /public/?excludeuuids=true&chunk-proportion=N&chunk=I`: every public identity, or
/// the I-th of N disjoint chunks (by hash), as Homestead-prov lists them for Ellis.
async fn list_public(
    State(p): State<Prov>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let number = |name: &str, default: u64| -> Result<u64, ApiError> {
        params.get(name).map_or(Ok(default), |v| {
            v.parse()
                .map_err(|_| bad(format!("{name} must be a number")))
        })
    };
    let proportion = number("chunk-proportion", 256)?.max(1);
    let chunk = params
        .get("chunk")
        .map(|_| number("chunk", 0))
        .transpose()?;
    let exclude_ids = params.get("excludeuuids").is_some_and(|v| v == "true");
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = p
            .store()
            .list_public_identities(after.as_deref(), 1000)
            .await?;
        let Some(last) = page.last().cloned() else {
            break;
        };
        for impu in page {
            if let Some(chunk) = chunk {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                impu.hash(&mut h);
                if h.finish() % proportion != chunk {
                    continue;
                }
            }
            if exclude_ids {
                out.push(json!({ "public_id": impu }));
            } else if let Some(index) = p.store().authoritative().public_identity(&impu).await? {
                out.push(json!({ "public_id": impu, "sp": index.service_profile, "irs": index.registration_set }));
            }
        }
        after = Some(last);
    }
    Ok(Json(json!({ "public_ids": out })).into_response())
}

// Our subscriber API.

async fn put_subscriber(
    State(p): State<Prov>,
    Path(impi): Path<String>,
    body: String,
) -> Result<Response, ApiError> {
    let spec: SubscriberSpec = parse_json(&body)?;
    let status = match p.put_subscriber(&impi, spec).await? {
        PutOutcome::Created => StatusCode::CREATED,
        PutOutcome::Updated | PutOutcome::Unchanged => StatusCode::OK,
    };
    Ok(status.into_response())
}

async fn get_subscriber(
    State(p): State<Prov>,
    Path(impi): Path<String>,
) -> Result<Response, ApiError> {
    Ok(Json(p.get_subscriber(&impi).await?).into_response())
}

async fn delete_subscriber(
    State(p): State<Prov>,
    Path(impi): Path<String>,
) -> Result<StatusCode, ApiError> {
    if p.delete_subscriber(&impi).await? {
        Ok(StatusCode::OK)
    } else {
        Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no subscriber {impi}"),
        ))
    }
}

#[derive(Deserialize)]
struct ListParams {
    after: Option<String>,
    limit: Option<usize>,
}

/// `GET /subscribers?after=<impi>&limit=N`: a page of private identities; `next` is the
/// `after` of the following page, null once a page comes back short (a full last page
/// is followed by an empty one).
async fn list_subscribers(
    State(p): State<Prov>,
    Query(params): Query<ListParams>,
) -> Result<Response, ApiError> {
    let limit = params.limit.unwrap_or(100).clamp(1, 10_000);
    let page = p.list_subscribers(params.after.as_deref(), limit).await?;
    let next = if page.len() == limit {
        page.last().cloned()
    } else {
        None
    };
    Ok(Json(json!({ "subscribers": page, "next": next })).into_response())
}
