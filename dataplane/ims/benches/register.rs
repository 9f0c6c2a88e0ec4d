//! The S-CSCF's per-REGISTER work in the `ims` crate: nonce issue and check, digest
//! verification, the registrar's rules on an AoR, the 200's Contact lines, reginfo.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use ims::auth::digest::{self, ResponseInput};
use ims::auth::{AuthConfig, Authenticator, ChallengeKind, Presented};
use ims::regevent;
use ims::registrar::{self, AorState, Register, RegisterPolicy};
use sip::Message;

const NOW: u64 = 1_700_000_000;
const IMPI: &str = "6505550000@example.com";

fn register_text(cseq: u32, authorization: &str) -> String {
    format!(
        "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK-{cseq}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:{IMPI}>;tag=a\r\nTo: <sip:{IMPI}>\r\nCall-ID: c1\r\n\
         CSeq: {cseq} REGISTER\r\n\
         Contact: <sip:ue@10.0.0.1:5060>;+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-000a95a0e128>\";reg-id=1\r\n\
         Path: <sip:pcscf.example.com;lr>\r\nExpires: 300\r\n{authorization}Content-Length: 0\r\n\r\n"
    )
}

fn bench(c: &mut Criterion) {
    let config = AuthConfig {
        realm: "example.com".into(),
        secret: b"a cluster secret, 32 bytes long!".to_vec(),
        ..AuthConfig::default()
    };
    let mut auth = Authenticator::new(&config, NOW);
    c.bench_function("ims/challenge", |b| {
        let mut out = Vec::with_capacity(256);
        b.iter(|| {
            out.clear();
            auth.challenge(NOW, 7, black_box(IMPI.as_bytes()), false, &mut out);
        });
    });

    let mut challenge = Vec::new();
    auth.challenge(NOW, 7, IMPI.as_bytes(), false, &mut challenge);
    let nonce = String::from_utf8_lossy(
        sip::Auth::parse(&challenge)
            .expect("parses")
            .nonce()
            .expect("nonce"),
    )
    .into_owned();
    let ha1 = digest::ha1(IMPI.as_bytes(), b"example.com", b"7kkzTyGW");
    let mut nc = 0u32;
    c.bench_function("ims/verify_digest", |b| {
        b.iter(|| {
            nc += 1;
            let nc_text = format!("{nc:08x}");
            let response = digest::expected_response(
                &ha1,
                &ResponseInput {
                    method: b"REGISTER",
                    uri: b"sip:example.com",
                    nonce: nonce.as_bytes(),
                    qop: Some((b"auth", nc_text.as_bytes(), b"c")),
                },
            );
            let line = format!(
                "Authorization: Digest username=\"{IMPI}\",realm=\"example.com\",nonce=\"{nonce}\",\
                 uri=\"sip:example.com\",response=\"{}\",qop=auth,nc={nc_text},cnonce=\"c\"\r\n",
                String::from_utf8_lossy(&response)
            );
            let text = register_text(2, &line);
            let msg = Message::parse(text.as_bytes()).expect("parses");
            let Presented::Verify {
                credentials, nonce, ..
            } = auth.inspect(&msg, ChallengeKind::Register, NOW)
            else {
                panic!("credentials expected");
            };
            black_box(auth.verify(&credentials, nonce, b"REGISTER", &ha1, NOW));
        });
    });

    let text = register_text(2, "");
    let msg = Message::parse(text.as_bytes()).expect("parses");
    let register = Register::from_message(&msg, IMPI).expect("reads");
    let state = registrar::apply(
        &AorState::default(),
        &register,
        NOW,
        RegisterPolicy::default(),
    )
    .expect("applies")
    .state;
    c.bench_function("ims/registrar_refresh", |b| {
        let refresh = Register {
            cseq: 3,
            ..register.clone()
        };
        b.iter(|| {
            registrar::apply(
                black_box(&state),
                &refresh,
                NOW + 60,
                RegisterPolicy::default(),
            )
            .expect("applies")
        });
    });
    c.bench_function("ims/read_register", |b| {
        b.iter(|| Register::from_message(black_box(&msg), IMPI).expect("reads"));
    });
    c.bench_function("ims/contact_values", |b| {
        b.iter(|| {
            registrar::contact_values(black_box(&state), "sip:6505550000@example.com", NOW, true)
        });
    });
    c.bench_function("ims/state_json_round_trip", |b| {
        b.iter(|| {
            let json = serde_json::to_vec(black_box(&state)).expect("serializes");
            let back: AorState = serde_json::from_slice(&json).expect("parses");
            back
        });
    });
    c.bench_function("ims/reginfo", |b| {
        b.iter(|| regevent::reginfo("sip:6505550000@example.com", black_box(&state), &[], 3, NOW));
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
