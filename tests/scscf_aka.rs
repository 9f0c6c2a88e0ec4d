//! Digest AKA (RFC 3310, RFC 4169) at the S-CSCF of `whitewater all-in-one`: a UE whose
//! subscriber has K and OPc registers with AKAv1 and AKAv2, computing RES with Milenage
//! from the challenge's RAND; a wrong RES is refused.

mod common;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::start_all_in_one;
use common::ue::{DOMAIN, Ue};
use ims::auth::aka::{AkaVersion, PendingAka};
use ims::auth::digest::{self, ResponseInput};
use milenage::Milenage;
use sip::Auth;

const USER: &str = "akauser";
const K: [u8; 16] = [
    0x46, 0x5b, 0x5c, 0xe8, 0xb1, 0x99, 0xb4, 0x9f, 0xaa, 0x5f, 0x0a, 0x2e, 0xe2, 0x38, 0xa6, 0xbc,
];
const OPC: [u8; 16] = [
    0xcd, 0x63, 0xcb, 0x71, 0x95, 0x4a, 0x9f, 0x4e, 0x48, 0xa5, 0x99, 0x4e, 0x37, 0xa0, 0x2b, 0xaf,
];

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn provision(prov: std::net::SocketAddr) {
    let body = serde_json::json!({
        "impus": [format!("sip:{USER}@{DOMAIN}")],
        "realm": DOMAIN,
        "aka": {"k": hex(&K), "opc": hex(&OPC), "amf": "8000"},
    });
    let url = format!("http://{prov}/subscribers/{USER}%40{DOMAIN}");
    let answer = reqwest::Client::new()
        .put(url)
        .json(&body)
        .send()
        .await
        .expect("PUT subscriber");
    assert!(answer.status().is_success(), "{:?}", answer.text().await);
}

/// The first REGISTER of an IMS UE: its IMPI and the algorithm, no nonce yet.
fn first(version: AkaVersion) -> String {
    format!(
        "Authorization: Digest username=\"{USER}@{DOMAIN}\",realm=\"{DOMAIN}\",nonce=\"\",\
         uri=\"sip:{DOMAIN}\",response=\"\",algorithm={}",
        version.algorithm()
    )
}

/// The UE's answer to an AKA challenge: RES from Milenage, the response from it.
fn answer(challenge: &str, version: AkaVersion, spoil: bool) -> (String, String, String) {
    let auth = Auth::parse(challenge.as_bytes()).expect("challenge parses");
    let nonce = String::from_utf8_lossy(auth.nonce().expect("nonce")).into_owned();
    let raw = STANDARD.decode(&nonce).expect("base64 nonce");
    let rand: [u8; 16] = raw[..16].try_into().expect("RAND");
    let mut m = Milenage::new_with_opc(K, OPC);
    let (mut res, ck, ik, _ak) = m.f2345(&rand);
    if spoil {
        res[0] ^= 1;
    }
    let ue_side = PendingAka {
        impi: format!("{USER}@{DOMAIN}"),
        nonce: nonce.clone(),
        xres: hex(&res),
        ck: hex(&ck),
        ik: hex(&ik),
        version,
        expires: 0,
    };
    let password = ue_side.password().expect("password");
    let impi = format!("{USER}@{DOMAIN}");
    let ha1 = digest::ha1(impi.as_bytes(), DOMAIN.as_bytes(), &password);
    let uri = format!("sip:{DOMAIN}");
    let response = digest::expected_response(
        &ha1,
        &ResponseInput {
            method: b"REGISTER",
            uri: uri.as_bytes(),
            nonce: nonce.as_bytes(),
            qop: Some((b"auth", b"00000001", b"0a4f113b")),
        },
    );
    let line = format!(
        "Authorization: Digest username=\"{impi}\",realm=\"{DOMAIN}\",nonce=\"{nonce}\",\
         uri=\"{uri}\",response=\"{}\",algorithm={},qop=auth,nc=00000001,cnonce=\"0a4f113b\"",
        String::from_utf8_lossy(&response),
        version.algorithm()
    );
    (line, hex(&ck), hex(&ik))
}

fn param(challenge: &str, name: &str) -> String {
    let auth = Auth::parse(challenge.as_bytes()).expect("parses");
    String::from_utf8_lossy(auth.param(name.as_bytes()).unwrap_or_default()).into_owned()
}

#[tokio::test]
async fn a_ue_registers_with_akav1_and_akav2_and_a_wrong_res_is_refused() {
    let aio = start_all_in_one(1, &[]);
    provision(aio.prov).await;
    for version in [AkaVersion::V1, AkaVersion::V2] {
        let mut ue = Ue::new(aio.listen, USER);
        let contact = format!("Contact: {}", ue.contact());
        let challenge = ue.register(&[contact.clone(), "Expires: 300".into(), first(version)]);
        assert_eq!(challenge.status(), 401, "{}", challenge.text());
        let value = challenge.header("WWW-Authenticate");
        assert_eq!(param(&value, "algorithm"), version.algorithm());
        assert_eq!(param(&value, "qop"), "auth");
        let (line, ck, ik) = answer(&value, version, false);
        assert_eq!(param(&value, "ck"), ck, "CK for the P-CSCF");
        assert_eq!(param(&value, "ik"), ik, "IK for the P-CSCF");
        let ok = ue.register(&[contact, "Expires: 300".into(), line]);
        assert_eq!(ok.status(), 200, "{:?}: {}", version, ok.text());
    }
    let mut ue = Ue::new(aio.listen, USER);
    let contact = format!("Contact: {}", ue.contact());
    let challenge = ue.register(&[contact.clone(), first(AkaVersion::V1)]);
    let (wrong, _, _) = answer(&challenge.header("WWW-Authenticate"), AkaVersion::V1, true);
    assert_eq!(ue.register(&[contact, wrong]).status(), 403);
}

#[tokio::test]
async fn a_ue_out_of_step_resynchronises_with_auts_then_registers() {
    let aio = start_all_in_one(1, &[]);
    provision(aio.prov).await;
    let mut ue = Ue::new(aio.listen, USER);
    let contact = format!("Contact: {}", ue.contact());
    let first_challenge = ue.register(&[contact.clone(), first(AkaVersion::V1)]);
    assert_eq!(first_challenge.status(), 401);
    let value = first_challenge.header("WWW-Authenticate");
    let nonce1 = param(&value, "nonce");
    let rand1: [u8; 16] = STANDARD.decode(&nonce1).expect("base64")[..16]
        .try_into()
        .expect("RAND");
    // The UE's sequence number is ahead of the network's: it answers with AUTS
    // (TS 33.102 §6.3.3: SQN_MS xor AK*, then MAC-S over a zero AMF).
    let sqn_ms: [u8; 6] = [0, 0, 0x10, 0, 0, 0];
    let mut m = Milenage::new_with_opc(K, OPC);
    let ak_star = m.f5star(&rand1);
    let mac_s = m.f1star(&rand1, &sqn_ms, &[0, 0]);
    let mut auts = Vec::with_capacity(14);
    auts.extend(sqn_ms.iter().zip(ak_star).map(|(s, a)| s ^ a));
    auts.extend(mac_s);
    let resync = format!(
        "Authorization: Digest username=\"{USER}@{DOMAIN}\",realm=\"{DOMAIN}\",\
         nonce=\"{nonce1}\",uri=\"sip:{DOMAIN}\",response=\"\",algorithm=AKAv1-MD5,\
         auts=\"{}\"",
        STANDARD.encode(&auts)
    );
    let second = ue.register(&[contact.clone(), resync]);
    assert_eq!(
        second.status(),
        401,
        "a new challenge after resynchronising"
    );
    let value = second.header("WWW-Authenticate");
    let nonce2 = STANDARD.decode(param(&value, "nonce")).expect("base64");
    assert_ne!(&nonce2[..16], &rand1[..], "a new RAND");
    // The new vector's SQN is past the UE's.
    let rand2: [u8; 16] = nonce2[..16].try_into().expect("RAND");
    let (_, _, _, ak) = Milenage::new_with_opc(K, OPC).f2345(&rand2);
    let sqn: Vec<u8> = nonce2[16..22].iter().zip(ak).map(|(x, a)| x ^ a).collect();
    assert!(
        sqn.as_slice() > &sqn_ms[..],
        "SQN {sqn:02x?} not after {sqn_ms:02x?}"
    );
    let (line, _, _) = answer(&value, AkaVersion::V1, false);
    let ok = ue.register(&[contact, "Expires: 300".into(), line]);
    assert_eq!(ok.status(), 200, "{}", ok.text());
}

#[tokio::test]
async fn another_challenge_for_the_same_impi_does_not_spoil_the_first() {
    let aio = start_all_in_one(1, &[]);
    provision(aio.prov).await;
    let mut ue = Ue::new(aio.listen, USER);
    let contact = format!("Contact: {}", ue.contact());
    let mine = ue.register(&[contact.clone(), first(AkaVersion::V1)]);
    // Someone else asks for a challenge for the same IMPI meanwhile.
    let mut other = Ue::new(aio.listen, USER);
    let theirs = other.register(&[first(AkaVersion::V1)]);
    assert_eq!((mine.status(), theirs.status()), (401, 401));
    let (line, _, _) = answer(&mine.header("WWW-Authenticate"), AkaVersion::V1, false);
    let ok = ue.register(&[contact, "Expires: 300".into(), line]);
    assert_eq!(ok.status(), 200, "{}", ok.text());
}
