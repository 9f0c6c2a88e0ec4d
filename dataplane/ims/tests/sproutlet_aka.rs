//! Digest AKA REGISTER through the S-CSCF chain: the vector fetched and kept with the AoR,
//! the challenge carrying the keys for the P-CSCF, and the UE's answer checked against
//! the kept vector.

mod harness;

use harness::*;
use ims::auth::aka::AkaVersion;
use ims::sproutlet::{AkaVector, Query, Step};

/// base64(RAND ‖ AUTN) of bytes 0 to 31.
const AKA_NONCE: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const XRES: &str = "a54211d5e3ba50bf";
const CK: &str = "b40ba9a3c58b2a05bbf0d987b21bf8cb";
const IK: &str = "f769bcd751044604127672711c6d3441";

fn vector() -> AkaVector {
    AkaVector {
        nonce: AKA_NONCE.to_owned(),
        xres: XRES.to_owned(),
        ck: CK.to_owned(),
        ik: IK.to_owned(),
    }
}

/// An AKAv1 UE's password is its RES itself (RFC 3310), as bytes.
fn res(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect()
}

/// The first REGISTER of an IMS UE: its IMPI and the algorithm, no nonce yet.
fn first_register() -> RegisterRequest {
    RegisterRequest::default().with_authorization(format!(
        "Digest username=\"{IMPI}\",realm=\"{HOME}\",nonce=\"\",uri=\"{DIGEST_URI}\",\
         response=\"\",algorithm=AKAv1-MD5"
    ))
}

/// The REGISTER answering the AKA challenge with `res` as the password.
fn answer(res: &[u8]) -> String {
    RegisterRequest {
        cseq: 2,
        ..RegisterRequest::default()
    }
    .with_authorization(credentials(
        IMPI,
        res,
        AKA_NONCE,
        1,
        "REGISTER",
        "AKAv1-MD5",
    ))
    .text()
}

fn aka_harness() -> Harness {
    let mut h = Harness::new(NOW);
    h.homestead.aka.insert(IMPI.to_owned(), vector());
    h
}

fn challenged(h: &mut Harness) -> Step {
    h.drive(&first_register().text())
}

#[test]
fn a_first_aka_register_is_challenged_with_a_vector_kept_with_the_aor() {
    let mut h = aka_harness();
    let step = challenged(&mut h);
    assert_eq!(
        h.asked(),
        ["ReadAor", "AkaVector v1", "ReadAor", "WriteAor"]
    );
    assert_eq!(
        h.queries[1],
        Query::AkaVector {
            impi: IMPI.to_owned(),
            impu: AOR.to_owned(),
            version: 1,
            resync: None,
        }
    );
    assert_eq!(status(&step), 401);
    assert_eq!(
        header(&step, "WWW-Authenticate"),
        Some(
            format!(
                "Digest realm=\"{HOME}\",nonce=\"{AKA_NONCE}\",algorithm=AKAv1-MD5,\
                 qop=\"auth\",ck=\"{CK}\",ik=\"{IK}\""
            )
            .as_str()
        )
    );
    let stored = h.store.read(AOR).state;
    assert!(stored.bindings.is_empty(), "a challenge registers nothing");
    let [pending] = stored.pending_aka.as_slice() else {
        panic!("one vector kept, not {:?}", stored.pending_aka);
    };
    assert_eq!(pending.impi, IMPI);
    assert_eq!(pending.nonce, AKA_NONCE);
    assert_eq!(pending.xres, XRES);
    assert_eq!(pending.version, AkaVersion::V1);
    assert!(pending.expires > h.now_s);
}

#[test]
fn the_right_res_authenticates_and_the_registrar_registers() {
    let mut h = aka_harness();
    assert_eq!(status(&challenged(&mut h)), 401);
    h.now_s += 5;
    let step = h.drive(&answer(&res(XRES)));
    assert_eq!(
        h.asked(),
        ["ReadAor", "ReadAor", "Registration reg", "WriteAor"]
    );
    assert_eq!(status(&step), 200);
    assert_eq!(
        header(&step, "Service-Route"),
        Some(format!("<{SCSCF_URI};lr;orig>").as_str())
    );
    let stored = h.store.read(AOR).state;
    assert_eq!(stored.bindings.len(), 1);
    assert!(
        stored.pending_aka.is_empty(),
        "the answered challenge is consumed"
    );
    // Kept with the AoR, so the same answer replayed to another core or node is refused
    // by the registrar's compare-and-swap, as for digest.
    let last = stored
        .last_auth
        .expect("the answer's nonce and count are kept");
    assert_eq!(last.nc, 1);
    assert!(!last.nonce.is_empty());
}

#[test]
fn a_wrong_res_is_forbidden() {
    let mut h = aka_harness();
    assert_eq!(status(&challenged(&mut h)), 401);
    let step = h.drive(&answer(&res("0000000000000000")));
    assert_eq!(status(&step), 403);
    assert_eq!(h.asked(), ["ReadAor"]);
    assert!(h.store.read(AOR).state.bindings.is_empty());
}

#[test]
fn a_digest_subscriber_naming_aka_gets_a_digest_challenge() {
    let mut h = Harness::new(NOW);
    let step = challenged(&mut h);
    assert_eq!(h.asked(), ["ReadAor", "AkaVector v1"]);
    assert_eq!(status(&step), 401);
    let challenge = header(&step, "WWW-Authenticate").expect("a challenge");
    assert_eq!(auth_param(challenge, "algorithm").as_deref(), Some("MD5"));
    assert_eq!(auth_param(challenge, "ck"), None);
    assert_eq!(auth_param(challenge, "realm").as_deref(), Some(HOME));
    assert!(h.store.read(AOR).state.pending_aka.is_empty());
}

#[test]
fn auts_for_a_nonce_never_issued_is_forbidden() {
    let mut h = aka_harness();
    let resync = RegisterRequest::default().with_authorization(format!(
        "Digest username=\"{IMPI}\",realm=\"{HOME}\",nonce=\"{AKA_NONCE}\",\
         uri=\"{DIGEST_URI}\",response=\"\",algorithm=AKAv1-MD5,auts=\"yMnKy8zNzs/Q0dLT1NU=\""
    ));
    let step = h.drive(&resync.text());
    assert_eq!(status(&step), 403);
    assert_eq!(h.asked(), ["ReadAor"]);
}
