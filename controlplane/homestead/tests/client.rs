//! The data plane's client: called from a glommio executor (as a Sprout core would),
//! in-process and over HTTP, with the same answers and the same errors.

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use homestead::model::RegistrationState;
use homestead::provisioning::subscribers::SubscriberSpec;
use homestead::source::{AuthRequest, AuthScheme, AuthVector, LookupError, RegDataRequest};
use homestead::store::StoreError;
use homestead::{Homestead, HomesteadClient, HomesteadConfig, StoreConfig};

struct ControlPlane {
    runtime: tokio::runtime::Handle,
    in_process: HomesteadClient,
    direct: HomesteadClient,
    http: HomesteadClient,
    _stop: tokio::sync::oneshot::Sender<()>,
    _dir: tempfile::TempDir,
}

/// Homestead on its own tokio runtime thread, with alice provisioned.
fn control_plane() -> ControlPlane {
    let dir = tempfile::tempdir().unwrap();
    let mut config = HomesteadConfig::new(StoreConfig::Embedded {
        path: dir.path().join("h.redb"),
    });
    config.http = "127.0.0.1:0".parse().unwrap();
    config.prov_http = "127.0.0.1:0".parse().unwrap();
    config.scscf = "sip:scscf.example.com".into();
    let (ready, started) = mpsc::channel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let handle = runtime.handle().clone();
        runtime.block_on(async move {
            let homestead = Homestead::start(config).await.unwrap();
            let spec = SubscriberSpec {
                impus: vec!["sip:alice@example.com".into()],
                password: Some("secret".into()),
                ..SubscriberSpec::default()
            };
            homestead
                .provisioning
                .put_subscriber("alice@example.com", spec)
                .await
                .unwrap();
            ready
                .send((handle, homestead.source.clone(), homestead.http))
                .unwrap();
            let _ = stopped.await;
        });
    });
    let (runtime, source, http) = started.recv().unwrap();
    ControlPlane {
        in_process: HomesteadClient::in_process(runtime.clone(), source.clone()),
        direct: HomesteadClient::in_process_direct(runtime.clone(), source),
        http: HomesteadClient::http(
            runtime.clone(),
            &format!("http://{http}"),
            Duration::from_secs(2),
        )
        .unwrap(),
        runtime,
        _stop: stop,
        _dir: dir,
    }
}

fn request(impu: &str) -> AuthRequest {
    AuthRequest {
        impi: "alice@example.com".into(),
        impu: impu.into(),
        scheme: AuthScheme::Digest,
        resync_auth: None,
        server_name: None,
    }
}

/// Runs `f` on a glommio executor, the data plane's runtime.
fn on_glommio<T: Send + 'static>(f: impl AsyncFnOnce() -> T + Send + 'static) -> T {
    glommio::LocalExecutorBuilder::default()
        .spawn(move || async move { f().await })
        .unwrap()
        .join()
        .unwrap()
}

#[test]
fn glommio_core_gets_the_same_answers_in_process_and_over_http() {
    let plane = control_plane();
    // In process on the control plane's runtime, in process in the core's own task (no
    // tokio reactor there: the embedded store needs none), and over HTTP.
    let clients = [
        plane.in_process.clone(),
        plane.direct.clone(),
        plane.http.clone(),
    ];
    let answers = on_glommio(async move || {
        let mut answers = Vec::new();
        for client in clients {
            let vector = client
                .auth_vector(request("sip:alice@example.com"))
                .await
                .unwrap();
            let registered = client
                .update_reg_data(
                    "sip:alice@example.com".into(),
                    Some("alice@example.com".into()),
                    RegDataRequest::Register,
                    Some("sip:scscf-1.example.com".into()),
                )
                .await
                .unwrap();
            let read = client
                .reg_data("sip:alice@example.com".into())
                .await
                .unwrap();
            let location = client
                .location("sip:alice@example.com".into())
                .await
                .unwrap();
            let dereg = client
                .update_reg_data(
                    "sip:alice@example.com".into(),
                    None,
                    RegDataRequest::DeregUser,
                    None,
                )
                .await
                .unwrap();
            answers.push((vector, registered, read, location, dereg));
        }
        answers
    });
    let (vector, registered, read, location, dereg) = &answers[0];
    assert!(matches!(vector, AuthVector::Digest { qop, .. } if qop == "auth"));
    assert_eq!(registered.state, RegistrationState::Registered);
    assert_eq!(registered.previous, Some(RegistrationState::NotRegistered));
    assert!(
        registered
            .ims_subscription
            .contains("<Identity>sip:alice@example.com</Identity>")
    );
    assert_eq!(read.state, RegistrationState::Registered);
    assert_eq!(location.scscf, "sip:scscf-1.example.com");
    assert_eq!(dereg.state, RegistrationState::NotRegistered);
    assert_eq!(
        answers[0], answers[1],
        "in-process and direct answers differ"
    );
    assert_eq!(answers[0], answers[2], "in-process and HTTP answers differ");
}

#[test]
fn errors_keep_their_kind_across_http() {
    let plane = control_plane();
    let (local, remote) = (plane.in_process.clone(), plane.http.clone());
    on_glommio(async move || {
        for client in [local, remote] {
            match client.auth_vector(request("sip:nobody@example.com")).await {
                Err(LookupError::NotFound(reason)) => {
                    assert!(reason.contains("nobody"), "{reason}")
                }
                other => panic!("expected not found, got {other:?}"),
            }
            match client
                .update_reg_data(
                    "sip:alice@example.com".into(),
                    None,
                    RegDataRequest::DeregAdmin,
                    None,
                )
                .await
            {
                Err(LookupError::BadRequest(reason)) => {
                    assert!(reason.contains("not registered"), "{reason}")
                }
                other => panic!("expected bad request, got {other:?}"),
            }
        }
    });
}

#[test]
fn unreachable_homestead_is_unavailable_not_not_found() {
    let plane = control_plane();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dead = HomesteadClient::http(
        plane.runtime.clone(),
        &format!("http://127.0.0.1:{port}"),
        Duration::from_secs(1),
    )
    .unwrap();
    on_glommio(
        async move || match dead.auth_vector(request("sip:alice@example.com")).await {
            Err(LookupError::Store(StoreError::Unavailable(reason))) => {
                assert!(reason.contains("unreachable"), "{reason}");
            }
            other => panic!("expected unavailable, got {other:?}"),
        },
    );
}

#[test]
fn a_core_keeps_working_while_a_lookup_is_pending() {
    let plane = control_plane();
    // A Homestead that accepts connections and never answers: the lookup stays pending
    // until the client's timeout.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = silent.local_addr().unwrap();
    let slow = HomesteadClient::http(
        plane.runtime.clone(),
        &format!("http://{address}"),
        Duration::from_millis(800),
    )
    .unwrap();
    let (ticks, outcome) = on_glommio(async move || {
        let ticks = std::rc::Rc::new(std::cell::Cell::new(0u32));
        let counter = std::rc::Rc::clone(&ticks);
        let lookup = glommio::spawn_local(async move {
            slow.auth_vector(request("sip:alice@example.com")).await
        });
        // Other work on the same core runs while the lookup waits.
        for _ in 0..20 {
            glommio::timer::sleep(Duration::from_millis(10)).await;
            counter.set(counter.get() + 1);
        }
        let outcome = lookup.await;
        (ticks.get(), outcome)
    });
    drop(silent);
    assert_eq!(ticks, 20, "the core was blocked by the lookup");
    assert!(
        matches!(outcome, Err(LookupError::Store(StoreError::Timeout(_)))),
        "{outcome:?}"
    );
}
