//! In-process costs of the two hot Homestead requests Sprout makes: a digest vector
//! (`GET /impi/<impi>/av/digest`) and a re-registration (`PUT /impu/<impu>/reg-data`),
//! both through the source (what `all-in-one` calls) and through the HTTP router
//! (routing, query parsing, JSON/XML bodies; no sockets).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Body;
use axum::http::Request;
use criterion::{Criterion, criterion_group, criterion_main};
use homestead::source::{AuthRequest, AuthScheme, RegDataRequest};
use homestead::{Homestead, HomesteadConfig, StoreConfig};
use tower::ServiceExt;

const SUBSCRIBERS: u64 = 10_000;

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut config = HomesteadConfig::new(StoreConfig::Embedded {
        path: dir.path().join("h.redb"),
    });
    config.http = "127.0.0.1:0".parse().unwrap();
    config.prov_http = "127.0.0.1:0".parse().unwrap();
    let homestead = runtime.block_on(async {
        let homestead = Homestead::start(config).await.unwrap();
        let mut tasks = tokio::task::JoinSet::new();
        for n in 0..SUBSCRIBERS {
            let provisioning = Arc::clone(&homestead.provisioning);
            tasks.spawn(async move {
                let spec = homestead::provisioning::subscribers::SubscriberSpec {
                    impus: vec![format!("sip:{n}@example.com")],
                    password: Some("pw".into()),
                    ..Default::default()
                };
                provisioning
                    .put_subscriber(&format!("{n}@example.com"), spec)
                    .await
                    .unwrap();
            });
        }
        tasks.join_all().await;
        // Registered once, so the benchmarked PUTs are re-registrations.
        for n in 0..SUBSCRIBERS {
            homestead
                .source
                .update_reg_data(
                    &format!("sip:{n}@example.com"),
                    None,
                    RegDataRequest::Register,
                    Some("sip:scscf"),
                )
                .await
                .unwrap();
        }
        homestead
    });
    let next = AtomicU64::new(0);
    let subscriber = || next.fetch_add(1, Ordering::Relaxed) % SUBSCRIBERS;

    let source = Arc::clone(&homestead.source);
    c.bench_function("source: digest vector", |b| {
        b.to_async(&runtime).iter(|| {
            let n = subscriber();
            let source = Arc::clone(&source);
            async move {
                let request = AuthRequest {
                    impi: format!("{n}@example.com"),
                    impu: format!("sip:{n}@example.com"),
                    scheme: AuthScheme::Digest,
                    resync_auth: None,
                    server_name: None,
                };
                source.auth_vector(&request).await.unwrap()
            }
        });
    });
    c.bench_function("source: re-registration reg-data", |b| {
        b.to_async(&runtime).iter(|| {
            let n = subscriber();
            let source = Arc::clone(&source);
            async move {
                source
                    .update_reg_data(
                        &format!("sip:{n}@example.com"),
                        None,
                        RegDataRequest::Register,
                        Some("sip:scscf"),
                    )
                    .await
                    .unwrap()
            }
        });
    });

    let router = homestead::api::homestead::router(Arc::clone(&homestead.source));
    c.bench_function("http router: GET av/digest", |b| {
        b.to_async(&runtime).iter(|| {
            let n = subscriber();
            let router = router.clone();
            async move {
                let request = Request::get(format!(
                    "/impi/{n}%40example.com/av/digest?impu=sip%3A{n}%40example.com"
                ))
                .body(Body::empty())
                .unwrap();
                let response = router.oneshot(request).await.unwrap();
                assert!(response.status().is_success());
                axum::body::to_bytes(response.into_body(), 4096)
                    .await
                    .unwrap()
            }
        });
    });
    c.bench_function("http router: PUT reg-data (re-registration)", |b| {
        b.to_async(&runtime).iter(|| {
            let n = subscriber();
            let router = router.clone();
            async move {
                let request = Request::put(format!("/impu/sip%3A{n}%40example.com/reg-data"))
                    .body(Body::from(r#"{"reqtype":"reg","server_name":"sip:scscf"}"#))
                    .unwrap();
                let response = router.oneshot(request).await.unwrap();
                assert!(response.status().is_success());
                axum::body::to_bytes(response.into_body(), 8192)
                    .await
                    .unwrap()
            }
        });
    });
    drop(homestead);
}

criterion_group!(benches, bench);
criterion_main!(benches);
