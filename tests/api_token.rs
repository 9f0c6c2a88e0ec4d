//! The APIs that change subscriber data and bindings (provisioning 8889, management 9886)
//! behind a bearer token: required when bound beyond loopback (the process refuses to
//! start without one), checked on every request when configured; Homestead's read API
//! (8888) keeps Clearwater's contract and asks for none.

mod common;

use std::process::{Command, Stdio};

use common::{free_tcp_port, start_all_in_one, tempdir};
use reqwest::StatusCode;

const TOKEN: &str = "f3a9c1e07b5d42e8a6c0d9b1e2f4a7c3";

/// all-in-one with `options`, expected to refuse to start: what it said.
fn refused_start(options: &[&str]) -> String {
    let data = tempdir();
    let out = Command::new(env!("CARGO_BIN_EXE_whitewater"))
        .arg("all-in-one")
        .args(["--listen", "127.0.0.1:0", "--cores", "0"])
        .args(["--data-dir", data.to_str().expect("utf-8")])
        .args(["--metrics", &format!("127.0.0.1:{}", free_tcp_port())])
        .args([
            "--homestead-http",
            &format!("127.0.0.1:{}", free_tcp_port()),
        ])
        .args(options)
        .stdin(Stdio::null())
        .output()
        .expect("run whitewater");
    assert!(!out.status.success(), "it started with {options:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn an_api_bound_beyond_loopback_without_a_token_stops_the_start() {
    let management = format!("127.0.0.1:{}", free_tcp_port());
    let prov = format!("127.0.0.1:{}", free_tcp_port());
    // The check comes before anything is bound: nothing listens beyond loopback.
    let everywhere = format!("0.0.0.0:{}", free_tcp_port());
    for (prov, management, api) in [
        (everywhere.as_str(), management.as_str(), "provisioning API"),
        (prov.as_str(), everywhere.as_str(), "management API"),
    ] {
        let said = refused_start(&["--prov-http", prov, "--management-http", management]);
        assert!(
            said.contains(api) && said.contains("--api-token-file"),
            "{said}"
        );
    }
    let short = tempdir().join("token");
    std::fs::write(&short, "guessable\n").expect("token file");
    let said = refused_start(&["--api-token-file", short.to_str().expect("utf-8")]);
    assert!(said.contains("at least 16"), "{said}");
}

#[tokio::test]
async fn with_a_token_the_writing_apis_refuse_requests_without_it_and_reads_need_none() {
    let file = tempdir().join("token");
    std::fs::write(&file, format!("{TOKEN}\n")).expect("token file");
    let aio = start_all_in_one(2, &["--api-token-file", file.to_str().expect("utf-8")]);
    let client = reqwest::Client::new();
    let subscriber = format!("http://{}/subscribers/6505551234%40example.com", aio.prov);
    let body = r#"{"impus":["sip:6505551234@example.com"],"password":"secret"}"#;
    let put = |token: Option<&str>| {
        let mut request = client
            .put(&subscriber)
            .header("content-type", "application/json")
            .body(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    let none = put(None).await.expect("PUT");
    assert_eq!(none.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(none.headers()["www-authenticate"], "Bearer");
    let wrong = put(Some("0000000000000000000000000000000"))
        .await
        .expect("PUT");
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(
        wrong.headers()["www-authenticate"]
            .to_str()
            .expect("ASCII")
            .contains("invalid_token")
    );
    // Refused requests changed nothing.
    let absent = client
        .get(&subscriber)
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("GET");
    assert_eq!(absent.status(), StatusCode::NOT_FOUND);
    let created = put(Some(TOKEN)).await.expect("PUT");
    assert!(created.status().is_success(), "{}", created.status());

    let bindings = format!(
        "http://{}/impu/sip%3A6505550000%40example.com/bindings",
        aio.management
    );
    let unauthorised = client.get(&bindings).send().await.expect("GET");
    assert_eq!(unauthorised.status(), StatusCode::UNAUTHORIZED);
    let deregister = client
        .delete(format!(
            "http://{}/impu/sip%3A6505550000%40example.com",
            aio.management
        ))
        .send()
        .await
        .expect("DELETE");
    assert_eq!(deregister.status(), StatusCode::UNAUTHORIZED);
    let authorised = client
        .get(&bindings)
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("GET");
    assert_eq!(
        authorised.status(),
        StatusCode::NOT_FOUND,
        "nothing registered"
    );

    // Homestead's read API, as Sprout and Clearwater's tools call it: no token.
    let digest = client
        .get(format!(
            "http://{}/impi/6505551234%40example.com/av/digest?impu=sip%3A6505551234%40example.com",
            aio.homestead
        ))
        .send()
        .await
        .expect("GET");
    assert_eq!(digest.status(), StatusCode::OK);

    // Homestead's metrics show the refusals.
    let metrics = client
        .get(format!("http://{}/metrics", aio.homestead))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("body");
    assert!(
        metrics.contains(
            "homestead_http_requests_total{api=\"prov\",method=\"PUT\",status=\"4xx\"} 2"
        ),
        "{metrics}"
    );
}

#[test]
fn provision_sends_the_token_and_says_so_when_it_is_missing() {
    let file = tempdir().join("token");
    std::fs::write(&file, format!("{TOKEN}\n")).expect("token file");
    let token = file.to_str().expect("utf-8");
    let aio = start_all_in_one(0, &["--api-token-file", token]);
    let password = tempdir().join("password");
    std::fs::write(&password, "secret\n").expect("password file");
    let provision = |with_token: bool| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_whitewater"));
        cmd.arg("provision")
            .args([
                "--numbers",
                "6505552000-6505552009",
                "--domain",
                "example.com",
            ])
            .args(["--password-file", password.to_str().expect("utf-8")])
            .args(["--server", &format!("http://{}", aio.prov)]);
        if with_token {
            cmd.args(["--api-token-file", token]);
        }
        cmd.stdin(Stdio::null()).output().expect("run provision")
    };
    let refused = provision(false);
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("401"), "{said}");
    let done = provision(true);
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
}
