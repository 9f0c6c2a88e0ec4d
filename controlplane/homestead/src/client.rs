//! How the data plane asks Homestead: auth vectors, reg-data and location, either
//! in-process (inside `all-in-one`, no HTTP hop) or over HTTP to a remote Homestead.
//!
//! By default every call runs on the control plane's tokio runtime and is awaited through
//! its join handle, which any executor can poll: a glommio data-plane core awaits the answer
//! without blocking and without running tokio itself. [`HomesteadClient::in_process_direct`]
//! instead runs the source's code in the caller's task: no thread hop, for a source that
//! needs no tokio reactor (the embedded store's: memory and a writer thread).

use std::sync::Arc;
use std::time::Duration;

use tokio::runtime::Handle;

use crate::auth::AkaVector;
use crate::model::{ChargingAddresses, RegistrationState};
use crate::source::{
    AuthRequest, AuthScheme, AuthVector, LookupError, RegData, RegDataRequest, ServerAssignment,
    SubscriberSource,
};
use crate::store::StoreError;

/// A handle on Homestead for the data plane. Cheap to clone: one per core.
#[derive(Clone)]
pub struct HomesteadClient {
    runtime: Handle,
    target: Target,
    /// Run in-process calls in the caller's task instead of on `runtime`.
    direct: bool,
}

#[derive(Clone)]
enum Target {
    InProcess(Arc<dyn SubscriberSource>),
    Http {
        base: Arc<str>,
        http: reqwest::Client,
    },
}

impl HomesteadClient {
    /// Calls `source` directly on `runtime`.
    pub fn in_process(runtime: Handle, source: Arc<dyn SubscriberSource>) -> Self {
        Self {
            runtime,
            target: Target::InProcess(source),
            direct: false,
        }
    }

    /// Calls `source` in the caller's own task, on whatever executor polls it: for a
    /// source whose store needs no tokio reactor (the embedded store). `runtime` still
    /// serves HTTP clients of the same handle type.
    pub fn in_process_direct(runtime: Handle, source: Arc<dyn SubscriberSource>) -> Self {
        Self {
            direct: true,
            ..Self::in_process(runtime, source)
        }
    }

    /// Calls the Homestead API at `base` (`http://host:8888`) from `runtime`.
    pub fn http(runtime: Handle, base: &str, timeout: Duration) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder().timeout(timeout).build()?;
        Ok(Self {
            runtime,
            target: Target::Http {
                base: base.trim_end_matches('/').into(),
                http,
            },
            direct: false,
        })
    }

    async fn run<T, F>(&self, call: impl FnOnce(Target) -> F) -> Result<T, LookupError>
    where
        F: Future<Output = Result<T, LookupError>> + Send + 'static,
        T: Send + 'static,
    {
        if self.direct {
            return call(self.target.clone()).await;
        }
        self.runtime
            .spawn(call(self.target.clone()))
            .await
            .unwrap_or_else(|e| {
                Err(
                    StoreError::Unavailable(format!("Homestead lookup did not complete: {e}"))
                        .into(),
                )
            })
    }

    pub async fn auth_vector(&self, request: AuthRequest) -> Result<AuthVector, LookupError> {
        self.run(|target| async move {
            match target {
                Target::InProcess(source) => source.auth_vector(&request).await,
                Target::Http { base, http } => http_auth_vector(&http, &base, &request).await,
            }
        })
        .await
    }

    pub async fn location(&self, impu: String) -> Result<ServerAssignment, LookupError> {
        self.run(|target| async move {
            match target {
                Target::InProcess(source) => source.location(&impu).await,
                Target::Http { base, http } => {
                    let url = format!("{base}/impu/{}/location", encode(&impu));
                    let json: serde_json::Value = check(http.get(url).send().await)
                        .await?
                        .json()
                        .await
                        .map_err(garbled)?;
                    assignment(&json)
                }
            }
        })
        .await
    }

    pub async fn reg_data(&self, impu: String) -> Result<RegData, LookupError> {
        self.run(|target| async move {
            match target {
                Target::InProcess(source) => source.reg_data(&impu).await,
                Target::Http { base, http } => {
                    let url = format!("{base}/impu/{}/reg-data", encode(&impu));
                    parse_reg_data(
                        &check(http.get(url).send().await)
                            .await?
                            .text()
                            .await
                            .map_err(garbled)?,
                    )
                }
            }
        })
        .await
    }

    pub async fn update_reg_data(
        &self,
        impu: String,
        private_id: Option<String>,
        request: RegDataRequest,
        server_name: Option<String>,
    ) -> Result<RegData, LookupError> {
        self.run(|target| async move {
            match target {
                Target::InProcess(source) => {
                    source.update_reg_data(&impu, private_id.as_deref(), request, server_name.as_deref()).await
                }
                Target::Http { base, http } => {
                    let mut url = format!("{base}/impu/{}/reg-data", encode(&impu));
                    if let Some(impi) = &private_id {
                        url.push_str("?private_id=");
                        url.push_str(&encode(impi));
                    }
                    let body = serde_json::json!({ "reqtype": request.as_str(), "server_name": server_name });
                    let response = check(http.put(url).json(&body).send().await).await?;
                    parse_reg_data(&response.text().await.map_err(garbled)?)
                }
            }
        })
        .await
    }
}

/// Percent-encodes a path segment or query value (`sip:a@b` → `sip%3Aa%40b`).
fn encode(segment: &str) -> String {
    percent_encoding::utf8_percent_encode(segment, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn garbled(e: impl std::fmt::Display) -> LookupError {
    StoreError::Backend(format!("Homestead answered something unreadable: {e}")).into()
}

/// Turns transport failures and error statuses back into the errors the source gave.
async fn check(
    result: reqwest::Result<reqwest::Response>,
) -> Result<reqwest::Response, LookupError> {
    let response = result.map_err(|e| -> LookupError {
        if e.is_timeout() {
            StoreError::Timeout(format!("Homestead did not answer in time: {e}")).into()
        } else {
            StoreError::Unavailable(format!("Homestead unreachable: {e}")).into()
        }
    })?;
    let status = response.status().as_u16();
    if status < 300 {
        return Ok(response);
    }
    let reason = response.text().await.unwrap_or_default().trim().to_owned();
    Err(match status {
        404 => LookupError::NotFound(reason),
        400 => LookupError::BadRequest(reason),
        503 => StoreError::Unavailable(reason).into(),
        504 => StoreError::Timeout(reason).into(),
        _ => StoreError::Backend(format!("Homestead answered {status}: {reason}")).into(),
    })
}

async fn http_auth_vector(
    http: &reqwest::Client,
    base: &str,
    request: &AuthRequest,
) -> Result<AuthVector, LookupError> {
    let suffix = match request.scheme {
        AuthScheme::Unknown => "",
        AuthScheme::Digest => "/digest",
        AuthScheme::AkaV1 => "/aka",
        AuthScheme::AkaV2 => "/aka2",
    };
    let mut url = format!(
        "{base}/impi/{}/av{suffix}?impu={}",
        encode(&request.impi),
        encode(&request.impu)
    );
    if let Some(resync) = &request.resync_auth {
        url.push_str("&resync-auth=");
        url.push_str(&encode(resync));
    }
    if let Some(server) = &request.server_name {
        url.push_str("&server-name=");
        url.push_str(&encode(server));
    }
    let json: serde_json::Value = check(http.get(url).send().await)
        .await?
        .json()
        .await
        .map_err(garbled)?;
    let field = |object: &serde_json::Value, name: &str| -> Result<String, LookupError> {
        object
            .get(name)
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| garbled(format!("no {name}")))
    };
    if let Some(d) = json.get("digest") {
        return Ok(AuthVector::Digest {
            ha1: field(d, "ha1")?,
            realm: field(d, "realm")?,
            qop: field(d, "qop")?,
        });
    }
    let a = json
        .get("aka")
        .ok_or_else(|| garbled("neither digest nor aka"))?;
    Ok(AuthVector::Aka {
        vector: AkaVector {
            challenge: field(a, "challenge")?,
            response: field(a, "response")?,
            cryptkey: field(a, "cryptkey")?,
            integritykey: field(a, "integritykey")?,
        },
        version: a
            .get("version")
            .and_then(serde_json::Value::as_u64)
            .map_or(1, |v| if v == 2 { 2 } else { 1 }),
    })
}

fn assignment(json: &serde_json::Value) -> Result<ServerAssignment, LookupError> {
    Ok(ServerAssignment {
        result_code: json
            .get("result-code")
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| garbled("no result-code"))? as u32,
        scscf: json
            .get("scscf")
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_owned(),
    })
}

/// Reads a `ClearwaterRegData` document back into [`RegData`].
pub fn parse_reg_data(text: &str) -> Result<RegData, LookupError> {
    let doc = roxmltree::Document::parse(text).map_err(garbled)?;
    let root = doc.root_element();
    let child = |name: &str| root.children().find(|c| c.has_tag_name(name));
    let state = |name: &str| -> Result<Option<RegistrationState>, LookupError> {
        child(name)
            .map(|n| match n.text().unwrap_or("").trim() {
                "REGISTERED" => Ok(RegistrationState::Registered),
                "UNREGISTERED" => Ok(RegistrationState::Unregistered),
                "NOT_REGISTERED" => Ok(RegistrationState::NotRegistered),
                other => Err(garbled(format!("registration state {other:?}"))),
            })
            .transpose()
    };
    let mut charging = ChargingAddresses::default();
    if let Some(addresses) = child("ChargingAddresses") {
        for a in addresses.children().filter(roxmltree::Node::is_element) {
            let value = a.text().unwrap_or("").trim().to_owned();
            match a.tag_name().name() {
                "CCF" => charging.ccfs.push(value),
                "ECF" => charging.ecfs.push(value),
                _ => {}
            }
        }
    }
    Ok(RegData {
        state: state("RegistrationState")?.ok_or_else(|| garbled("no RegistrationState"))?,
        previous: state("PreviousRegistrationState")?,
        ims_subscription: child("IMSSubscription")
            .map(|n| format!("\t{}\n", &text[n.range()]))
            .unwrap_or_default(),
        charging,
    })
}
