//! Password guessing against the S-CSCF of `whitewater all-in-one`, with the tools an
//! attacker uses: sipvicious `svcrack` and SIPp. Failed digest attempts lock the address
//! that sends them out, and enough of them on one identity lock that identity, but never
//! its real user at an address of their own.

mod common;

use std::fmt::Write as _;
use std::process::Command;

use common::ue::{ALICE, DOMAIN, Ue};
use common::{
    AllInOne, DEMO_PASSWORD, column, free_udp_ports, metric, scrape_until, sipp, sipp_turn,
    start_all_in_one, tempdir,
};

/// `svcrack`, trying 30 wrong passwords for alice and then the right one. Its output.
/// It sends from 127.0.0.1 (sipvicious 0.3 binds no address of its choosing).
fn svcrack(aio: &AllInOne) -> String {
    let dir = tempdir();
    let mut dictionary: String = (1..=30).map(|i| format!("wrong{i}\n")).collect();
    dictionary.push_str(DEMO_PASSWORD);
    dictionary.push('\n');
    let words = dir.join("dictionary.txt");
    std::fs::write(&words, dictionary).expect("dictionary");
    let local = free_udp_ports(0).to_string();
    let out = Command::new("svcrack")
        .args(["-u", &format!("{ALICE}@{DOMAIN}"), "-e", ALICE])
        .args(["--domain", DOMAIN, "-d", words.to_str().expect("utf-8")])
        .args(["-x", "127.0.0.1", "-P", &local])
        .args(["-p", &aio.listen.port().to_string(), "-v"])
        .arg("127.0.0.1")
        .output()
        .expect("run svcrack (Debian package sipvicious)");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn svcrack_cracks_a_password_without_the_limits_and_finds_nothing_with_them() {
    // The control: with no limit, the dictionary's last word is found.
    let open = start_all_in_one(
        5,
        &[
            "--auth-failures-per-source",
            "0",
            "--auth-failures-per-identity",
            "0",
        ],
    );
    let text = svcrack(&open);
    assert!(text.contains(DEMO_PASSWORD), "svcrack output:\n{text}");
    drop(open);

    let aio = start_all_in_one(5, &[]);
    let text = svcrack(&aio);
    assert!(text.contains("found nothing"), "svcrack output:\n{text}");
    assert!(!text.contains(DEMO_PASSWORD), "svcrack output:\n{text}");
    let metrics = scrape_until(aio.metrics, "the refusals", |t| {
        metric(t, "ww_auth_guessing_refused_total") >= 21
    });
    assert_eq!(metric(&metrics, "ww_auth_guessing_lockouts_total"), 1);
    // Ten wrong answers were checked; everything after, the right one included, was
    // refused without a lookup.
    assert_eq!(metric(&metrics, "ww_auth_failures_total"), 10);
    // Alice at her own address is not locked out.
    let mut alice = Ue::at(aio.listen, ALICE, [127, 0, 0, 2]);
    let contact = vec![format!("Contact: {}", alice.contact())];
    let ok = alice.register_with(DEMO_PASSWORD, &contact);
    assert_eq!(ok.status(), 200, "{}", ok.text());
}

/// SIPp from `address` registers alice `attempts` times with a wrong password; the
/// calls that failed.
fn sipp_guesses(aio: &AllInOne, address: &str, attempts: u32) -> u64 {
    let dir = tempdir();
    let mut users = String::from("SEQUENTIAL\n");
    for i in 0..attempts {
        let _ = writeln!(
            users,
            "{ALICE};{DOMAIN};[authentication username={ALICE}@{DOMAIN} password=guess{i}]"
        );
    }
    std::fs::write(dir.join("users.csv"), users).expect("users.csv");
    let scenario = common::scenarios().join("register-digest.xml");
    let port = free_udp_ports(0).to_string();
    let out = sipp()
        .current_dir(&dir)
        .arg(aio.listen.to_string())
        .args(["-sf", scenario.to_str().expect("utf-8")])
        .args(["-inf", "users.csv", "-i", address, "-p", &port])
        .args(["-auth_uri", DOMAIN])
        .args(["-m", &attempts.to_string(), "-r", "20", "-l", "1"])
        .args(["-trace_stat", "-stf", "stats.csv", "-fd", "1"])
        .args(["-timeout", "60", "-timeout_error"])
        .output()
        .expect("run sipp (Debian package sip-tester)");
    let stats = std::fs::read_to_string(dir.join("stats.csv")).unwrap_or_default();
    assert_eq!(
        column(&stats, "SuccessfulCall(C)"),
        0,
        "{stats}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    column(&stats, "FailedCall(C)")
}

#[test]
fn guessing_spread_over_addresses_locks_the_identity_but_not_its_user_at_a_clean_address() {
    let _turn = sipp_turn();
    let aio = start_all_in_one(5, &[]);
    // Two addresses, 15 wrong guesses each: each is locked out after 10, and the
    // identity after 20 failures in all.
    assert_eq!(sipp_guesses(&aio, "127.0.0.3", 15), 15);
    assert_eq!(sipp_guesses(&aio, "127.0.0.4", 15), 15);
    // The cores publish their counts a few times a second: wait for the last refusal.
    let metrics = scrape_until(aio.metrics, "ten refusals", |t| {
        metric(t, "ww_auth_guessing_refused_total") >= 10
    });
    assert_eq!(metric(&metrics, "ww_auth_guessing_refused_total"), 10);
    assert_eq!(metric(&metrics, "ww_auth_guessing_lockouts_total"), 3);
    assert_eq!(metric(&metrics, "ww_auth_failures_total"), 20);
    // A new address guessing wrong while the identity is locked is locked out at once:
    // its next attempt, with the right password, is refused.
    let mut guesser = Ue::at(aio.listen, ALICE, [127, 0, 0, 5]);
    let contact = vec![format!("Contact: {}", guesser.contact())];
    assert_eq!(guesser.register_with("guess", &contact).status(), 403);
    let refused = guesser.register_with(DEMO_PASSWORD, &contact);
    assert_eq!(refused.status(), 403);
    assert!(
        refused.header("Warning").contains("failed authentication"),
        "{}",
        refused.text()
    );
    // Alice, at an address with no failure against it, gets in.
    let mut alice = Ue::at(aio.listen, ALICE, [127, 0, 0, 1]);
    let contact = vec![format!("Contact: {}", alice.contact())];
    let ok = alice.register_with(DEMO_PASSWORD, &contact);
    assert_eq!(ok.status(), 200, "{}", ok.text());
}
