//! Shared helpers for the HTTP API tests: a real `Homestead` on ephemeral ports over an
//! embedded store in a temporary directory, driven with reqwest.

#![allow(dead_code)]

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;

use homestead::{Homestead, HomesteadConfig, StoreConfig};
use reqwest::header::HeaderMap;
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};
use tempfile::TempDir;
use uuid::Uuid;

/// The S-CSCF the test servers are configured with.
pub(crate) const SCSCF: &str = "sip:scscf.test.example:5054;transport=TCP";
/// The digest realm for an IMPI that has no domain and names no realm.
pub(crate) const DEFAULT_REALM: &str = "default.test.example";

/// An iFC document that passes validation (TS 29.228 shape).
pub(crate) const IFC: &str = "<ServiceProfile><InitialFilterCriteria><Priority>1</Priority>\
    <TriggerPoint><ConditionTypeCNF>0</ConditionTypeCNF><SPT><ConditionNegated>0</ConditionNegated>\
    <Group>0</Group><Method>INVITE</Method><Extension/></SPT></TriggerPoint>\
    <ApplicationServer><ServerName>sip:mmtel.example.com</ServerName>\
    <DefaultHandling>0</DefaultHandling></ApplicationServer></InitialFilterCriteria></ServiceProfile>";

/// A running Homestead and an HTTP client that does not follow redirects.
pub(crate) struct Server {
    pub(crate) homestead: Homestead,
    pub(crate) client: Client,
    _dir: TempDir,
}

impl Server {
    pub(crate) async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub(crate) async fn start_with(tweak: impl FnOnce(&mut HomesteadConfig)) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let mut config = HomesteadConfig::new(StoreConfig::Embedded {
            path: dir.path().join("homestead.redb"),
        });
        config.http = SocketAddr::from(([127, 0, 0, 1], 0));
        config.prov_http = SocketAddr::from(([127, 0, 0, 1], 0));
        config.scscf = SCSCF.into();
        config.default_realm = DEFAULT_REALM.into();
        tweak(&mut config);
        let homestead = Homestead::start(config).await.expect("homestead starts");
        assert_ne!(homestead.http.port(), 0, "the bound port is reported");
        assert_ne!(homestead.prov_http.port(), 0, "the bound port is reported");
        let client = Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .expect("HTTP client");
        Self {
            homestead,
            client,
            _dir: dir,
        }
    }

    pub(crate) async fn request(&self, method: Method, url: String, body: Option<&str>) -> Reply {
        let mut request = self.client.request(method.clone(), &url);
        if let Some(body) = body {
            request = request.body(body.to_owned());
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.text().await.expect("response body");
        Reply {
            what: format!("{method} {url}"),
            status,
            headers,
            body,
        }
    }

    /// A URL on the Homestead API (port 8888).
    pub(crate) fn hs_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.homestead.http)
    }

    /// A URL on the provisioning API (port 8889).
    pub(crate) fn prov_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.homestead.prov_http)
    }

    pub(crate) async fn hs(&self, method: Method, path: &str, body: Option<&str>) -> Reply {
        self.request(method, self.hs_url(path), body).await
    }

    pub(crate) async fn hs_get(&self, path: &str) -> Reply {
        self.hs(Method::GET, path, None).await
    }

    pub(crate) async fn prov(&self, method: Method, path: &str, body: Option<&str>) -> Reply {
        self.request(method, self.prov_url(path), body).await
    }

    pub(crate) async fn prov_get(&self, path: &str) -> Reply {
        self.prov(Method::GET, path, None).await
    }

    pub(crate) async fn prov_put(&self, path: &str, body: &str) -> Reply {
        self.prov(Method::PUT, path, Some(body)).await
    }

    pub(crate) async fn prov_post(&self, path: &str, body: &str) -> Reply {
        self.prov(Method::POST, path, Some(body)).await
    }

    pub(crate) async fn prov_delete(&self, path: &str) -> Reply {
        self.prov(Method::DELETE, path, None).await
    }

    /// `PUT /subscribers/<impi>` with a JSON spec.
    pub(crate) async fn put_subscriber(&self, impi: &str, spec: &Value) -> Reply {
        self.prov_put(&format!("/subscribers/{}", enc(impi)), &spec.to_string())
            .await
    }

    /// Provisions a subscriber that must not exist yet.
    pub(crate) async fn create_subscriber(&self, impi: &str, spec: &Value) {
        self.put_subscriber(impi, spec)
            .await
            .expect_empty(StatusCode::CREATED);
    }

    /// `PUT /impu/<impu>/reg-data[?private_id=..]` with a JSON body.
    pub(crate) async fn reg_data_put(
        &self,
        impu: &str,
        private_id: Option<&str>,
        body: &str,
    ) -> Reply {
        let mut path = format!("/impu/{}/reg-data", enc(impu));
        if let Some(impi) = private_id {
            path.push_str("?private_id=");
            path.push_str(&enc(impi));
        }
        self.hs(Method::PUT, &path, Some(body)).await
    }

    pub(crate) async fn reg_data_get(&self, impu: &str) -> Reply {
        self.hs_get(&format!("/impu/{}/reg-data", enc(impu))).await
    }
}

/// A response read in full.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) what: String,
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: String,
}

impl Reply {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("ASCII header"))
    }

    pub(crate) fn expect_status(&self, status: StatusCode) -> &Self {
        assert_eq!(self.status, status, "{}: body {:?}", self.what, self.body);
        self
    }

    /// A success with an empty body (Homestead-prov's PUT/DELETE answers).
    pub(crate) fn expect_empty(&self, status: StatusCode) -> &Self {
        self.expect_status(status);
        assert_eq!(self.body, "", "{}: the body should be empty", self.what);
        self
    }

    /// A 200 whose body is JSON equal to `expected`; returns the raw body.
    pub(crate) fn expect_json(&self, expected: &Value) -> &str {
        self.expect_status(StatusCode::OK);
        assert_eq!(
            self.header("content-type"),
            Some("application/json"),
            "{}",
            self.what
        );
        assert_eq!(&self.json(), expected, "{}", self.what);
        &self.body
    }

    /// A 200 whose body is JSON; returns the raw body, for exact text comparisons.
    pub(crate) fn expect_json_text(&self) -> &str {
        self.expect_json(&self.json())
    }

    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("{}: body is not JSON ({e}): {:?}", self.what, self.body))
    }

    /// A 200 with `application/xml`; returns the body.
    pub(crate) fn expect_xml(&self) -> &str {
        self.expect_status(StatusCode::OK);
        assert_eq!(
            self.header("content-type"),
            Some("application/xml"),
            "{}",
            self.what
        );
        &self.body
    }

    /// An error: exactly `status`, with a plain-text body that contains `reason`.
    pub(crate) fn expect_error(&self, status: StatusCode, reason: &str) {
        self.expect_status(status);
        assert!(
            self.header("content-type")
                .is_some_and(|t| t.starts_with("text/plain")),
            "{}: error content-type {:?}",
            self.what,
            self.header("content-type")
        );
        assert!(
            !self.body.trim().is_empty(),
            "{}: the error body should say what was wrong",
            self.what
        );
        assert!(
            self.body.contains(reason),
            "{}: error body {:?} should mention {reason:?}",
            self.what,
            self.body
        );
    }

    /// A redirect: exactly `status` and `Location`.
    pub(crate) fn expect_location(&self, status: StatusCode, location: &str) {
        self.expect_status(status);
        assert_eq!(self.header("location"), Some(location), "{}", self.what);
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters, as Sprout escapes
/// identities in URLs.
pub(crate) fn enc(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// MD5(impi:realm:password) computed here, checked against `homestead::auth::digest_ha1`.
pub(crate) fn ha1(impi: &str, realm: &str, password: &str) -> String {
    use md5::Digest as _;
    let ours = hex::encode(md5::Md5::digest(format!("{impi}:{realm}:{password}")));
    assert_eq!(ours, homestead::auth::digest_ha1(impi, realm, password));
    ours
}

/// A digest-only subscriber spec.
pub(crate) fn password_spec(impus: &[&str], password: &str) -> Value {
    json!({ "impus": impus, "password": password })
}

/// A copy of the provisioning lock keys (`LockKey` in src/provisioning/mod.rs), hashed as
/// the striped locks hash them, to find identities whose stripe (of 1024) is a set's.
#[derive(Hash)]
pub(crate) enum LockKey<'a> {
    Private(&'a str),
    Public(&'a str),
    Set(Uuid),
}

fn stripe(key: &LockKey<'_>) -> u64 {
    let mut h = DefaultHasher::new();
    key.hash(&mut h);
    h.finish() % 1024
}

/// The first name from `names` whose lock key shares the stripe of registration set `irs`.
pub(crate) fn sharing_a_stripe(
    irs: &str,
    names: impl Fn(u32) -> String,
    key: impl Fn(&str) -> LockKey<'_>,
) -> String {
    let target = stripe(&LockKey::Set(Uuid::try_parse(irs).unwrap()));
    (0..100_000)
        .map(names)
        .find(|name| stripe(&key(name)) == target)
        .expect("a name in the set's stripe")
}

// Homestead-prov helpers.

pub(crate) fn public_xml(impu: &str) -> String {
    format!("<PublicIdentity><Identity>{impu}</Identity></PublicIdentity>")
}

pub(crate) fn private(impi: &str) -> String {
    format!("/private/{}", enc(impi))
}

pub(crate) fn public(impu: &str, rest: &str) -> String {
    format!("/public/{}/{rest}", enc(impu))
}

pub(crate) fn sp_path(irs: &str, sp: &str, rest: &str) -> String {
    format!("/irs/{irs}/service_profiles/{sp}{rest}")
}

/// POST /irs: 201 with `Location: /irs/<uuid>`.
pub(crate) async fn new_irs(server: &Server) -> String {
    let reply = server.prov_post("/irs", "").await;
    reply.expect_empty(StatusCode::CREATED);
    let location = reply.header("location").expect("Location").to_owned();
    let id = location.strip_prefix("/irs/").expect("a /irs/ path");
    assert_eq!(Uuid::try_parse(id).expect("a UUID").to_string(), id);
    id.to_owned()
}

/// POST /irs/<irs>/service_profiles: 201 with the profile's path.
pub(crate) async fn new_sp(server: &Server, irs: &str) -> String {
    let reply = server
        .prov_post(&format!("/irs/{irs}/service_profiles"), "")
        .await;
    reply.expect_empty(StatusCode::CREATED);
    let location = reply.header("location").expect("Location");
    let prefix = format!("/irs/{irs}/service_profiles/");
    let id = location.strip_prefix(&prefix).expect("the profile's path");
    Uuid::try_parse(id).expect("a UUID");
    id.to_owned()
}

pub(crate) async fn put_public(
    server: &Server,
    irs: &str,
    sp: &str,
    impu: &str,
    xml: &str,
) -> Reply {
    let path = sp_path(irs, sp, &format!("/public_ids/{}", enc(impu)));
    server.prov_put(&path, xml).await
}

pub(crate) async fn put_password(server: &Server, impi: &str, password: &str) {
    let body = json!({ "plaintext_password": password }).to_string();
    server
        .prov_put(&private(impi), &body)
        .await
        .expect_empty(StatusCode::OK);
}

// Fixtures shared by the Homestead API tests.

pub(crate) const ALICE: &str = "alice@example.com";
pub(crate) const ALICE_SIP: &str = "sip:alice@example.com";
pub(crate) const ALICE_TEL: &str = "tel:+15550001";
pub(crate) const PASSWORD: &str = "correct horse";
pub(crate) const BOB: &str = "bob@example.com";
pub(crate) const BOB_SIP: &str = "sip:bob@example.com";

/// Alice: a digest subscriber with a SIP and a tel identity.
pub(crate) async fn with_alice(server: &Server) {
    server
        .create_subscriber(ALICE, &password_spec(&[ALICE_SIP, ALICE_TEL], PASSWORD))
        .await;
}
