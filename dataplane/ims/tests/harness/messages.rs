//! SIP text for the chain and what to read in its steps: requests built from header
//! lines, digest credentials computed as a UE does, and the parts of responses and
//! forwards the tests look at.

use ims::auth::digest::{self, ResponseInput};
use ims::sproutlet::{Response, Step};
use proxy::Target;
use sip::Message;

use super::{AOR, CONTACT, HOME, PATH};

pub fn parse(raw: &str) -> Message<'_> {
    Message::parse(raw.as_bytes()).unwrap_or_else(|e| panic!("{e:?} in:\n{raw}"))
}

/// A request from its start line and header lines, without a body.
pub fn request(lines: &[&str]) -> String {
    let mut text = lines.join("\r\n");
    text.push_str("\r\nContent-Length: 0\r\n\r\n");
    text
}

/// A REGISTER for an AoR, from the UE at `CONTACT` through the P-CSCF at `PATH`.
#[derive(Debug, Clone)]
pub struct RegisterRequest {
    pub aor: String,
    pub call_id: String,
    pub cseq: u32,
    pub contacts: Vec<String>,
    pub expires: Option<u32>,
    pub path: Option<String>,
    pub authorization: Option<String>,
}

impl Default for RegisterRequest {
    fn default() -> Self {
        Self {
            aor: AOR.to_owned(),
            call_id: "reg-1".to_owned(),
            cseq: 1,
            contacts: vec![CONTACT.to_owned()],
            expires: Some(300),
            path: Some(PATH.to_owned()),
            authorization: None,
        }
    }
}

impl RegisterRequest {
    pub fn text(&self) -> String {
        let mut lines = vec![
            format!("REGISTER sip:{HOME} SIP/2.0"),
            format!(
                "Via: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bK-{}-{}",
                self.call_id, self.cseq
            ),
            "Max-Forwards: 70".to_owned(),
            format!("From: <{}>;tag=ue", self.aor),
            format!("To: <{}>", self.aor),
            format!("Call-ID: {}", self.call_id),
            format!("CSeq: {} REGISTER", self.cseq),
        ];
        lines.extend(self.contacts.iter().map(|c| format!("Contact: {c}")));
        lines.extend(self.path.iter().map(|p| format!("Path: {p}")));
        lines.extend(self.expires.iter().map(|e| format!("Expires: {e}")));
        lines.extend(
            self.authorization
                .iter()
                .map(|a| format!("Authorization: {a}")),
        );
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        request(&lines)
    }

    /// The same REGISTER with these credentials.
    pub fn with_authorization(&self, authorization: String) -> Self {
        Self {
            authorization: Some(authorization),
            ..self.clone()
        }
    }
}

/// The digest-uri the UEs of these tests send.
pub const DIGEST_URI: &str = "sip:example.com";

/// Digest credentials answering `nonce` with `password`, as a UE computes them, for a
/// request to [`DIGEST_URI`] (a REGISTER's Request-URI here).
pub fn credentials(
    impi: &str,
    password: &[u8],
    nonce: &str,
    nc: u32,
    method: &str,
    algorithm: &str,
) -> String {
    credentials_for(DIGEST_URI, impi, password, nonce, nc, method, algorithm)
}

/// Digest credentials for a request to `uri`.
pub fn credentials_for(
    uri: &str,
    impi: &str,
    password: &[u8],
    nonce: &str,
    nc: u32,
    method: &str,
    algorithm: &str,
) -> String {
    let ha1 = digest::ha1(impi.as_bytes(), HOME.as_bytes(), password);
    let nc = format!("{nc:08x}");
    let cnonce = "0a4f113b";
    let response = digest::expected_response(
        &ha1,
        &ResponseInput {
            method: method.as_bytes(),
            uri: uri.as_bytes(),
            nonce: nonce.as_bytes(),
            qop: Some((b"auth", nc.as_bytes(), cnonce.as_bytes())),
        },
    );
    let response = String::from_utf8_lossy(&response);
    format!(
        "Digest username=\"{impi}\",realm=\"{HOME}\",nonce=\"{nonce}\",uri=\"{uri}\",\
         response=\"{response}\",algorithm={algorithm},qop=auth,nc={nc},cnonce=\"{cnonce}\""
    )
}

/// MD5 digest credentials for a REGISTER.
pub fn register_credentials(impi: &str, password: &str, nonce: &str, nc: u32) -> String {
    credentials(impi, password.as_bytes(), nonce, nc, "REGISTER", "MD5")
}

pub fn response(step: &Step) -> &Response {
    match step {
        Step::Respond(response) => response,
        other => panic!("a response expected, got {other:?}"),
    }
}

pub fn status(step: &Step) -> u16 {
    response(step).status
}

/// The value of the response's first header `name`.
pub fn header<'s>(step: &'s Step, name: &str) -> Option<&'s str> {
    response(step)
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| std::str::from_utf8(v).expect("header values are ASCII"))
}

pub fn targets(step: &Step) -> &[Target] {
    match step {
        Step::Forward(targets) => targets,
        other => panic!("a forward expected, got {other:?}"),
    }
}

/// Parameter `name` of a challenge or credentials value, unquoted.
pub fn auth_param(value: &str, name: &str) -> Option<String> {
    let auth = sip::Auth::parse(value.as_bytes()).expect("a digest value parses");
    auth.param(name.as_bytes())
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

/// The nonce of a 401's or 407's challenge.
pub fn nonce_of(step: &Step) -> String {
    let challenge = header(step, "WWW-Authenticate")
        .or_else(|| header(step, "Proxy-Authenticate"))
        .expect("a challenge header");
    auth_param(challenge, "nonce").expect("a nonce")
}
