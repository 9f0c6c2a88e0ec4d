//! One conformance suite for every store backend: always the embedded store (bare and
//! behind the cache); ScyllaDB/Cassandra when `WW_SCYLLA_NODES` names a cluster (none can
//! be installed on the CI machine; see docs/operations/homestead.md).

use std::sync::Arc;
use std::time::Duration;

use homestead::model::{
    AkaCredentials, PrivateIdentity, PublicIdentity, PublicIndex, Registration, RegistrationSet,
    RegistrationState, ServiceProfile,
};
use homestead::store::{
    CacheConfig, CachedStore, EmbeddedStore, ScyllaConfig, ScyllaStore, StoreError,
    SubscriberStore, Write,
};
use uuid::Uuid;

fn private(impi: &str, sets: Vec<Uuid>) -> PrivateIdentity {
    PrivateIdentity {
        impi: impi.into(),
        realm: "example.com".into(),
        digest_ha1: Some("0123456789abcdef0123456789abcdef".into()),
        plaintext_password: None,
        aka: Some(AkaCredentials {
            k: [1; 16],
            opc: [2; 16],
            amf: [0x80, 0],
        }),
        registration_sets: sets,
    }
}

fn set(id: Uuid, impi: &str, impus: &[&str]) -> RegistrationSet {
    RegistrationSet {
        id,
        private_ids: vec![impi.into()],
        service_profiles: vec![ServiceProfile {
            id: Uuid::new_v4(),
            filter_criteria_xml: "<ServiceProfile/>".into(),
            public_ids: impus
                .iter()
                .map(|u| PublicIdentity {
                    impu: (*u).into(),
                    xml: format!("<PublicIdentity><Identity>{u}</Identity></PublicIdentity>"),
                })
                .collect(),
        }],
    }
}

/// Every backend must pass all of these. Keys are prefixed so that a shared cluster can
/// run the suite repeatedly.
async fn conformance(store: Arc<dyn SubscriberStore>, prefix: &str) {
    records_round_trip_and_batches_are_atomic(&*store, prefix).await;
    sqn_compare_and_set(&*store, prefix).await;
    registration_compare_and_set(Arc::clone(&store)).await;
    concurrent_sqn_claims_never_repeat(Arc::clone(&store), prefix).await;
    listing_pages_visit_each_once(&*store, prefix).await;
    concurrent_batches_all_land(Arc::clone(&store), prefix).await;
}

async fn records_round_trip_and_batches_are_atomic(store: &dyn SubscriberStore, prefix: &str) {
    let impi = format!("{prefix}alice@example.com");
    let impu = format!("sip:{prefix}alice@example.com");
    let id = Uuid::new_v4();
    assert_eq!(store.private_identity(&impi).await.unwrap(), None);
    assert_eq!(store.public_identity(&impu).await.unwrap(), None);
    assert_eq!(store.registration_set(id).await.unwrap(), None);
    assert_eq!(store.registration(id).await.unwrap(), None);

    let p = private(&impi, vec![id]);
    let s = set(id, &impi, &[&impu]);
    let index = PublicIndex {
        registration_set: id,
        service_profile: s.service_profiles[0].id,
    };
    let registration = Registration {
        state: RegistrationState::Registered,
        server_name: Some("sip:scscf.example.com".into()),
        private_id: Some(impi.clone()),
    };
    store
        .apply(vec![
            Write::PutPrivate(p.clone()),
            Write::PutRegistrationSet(s.clone()),
            Write::PutPublic(impu.clone(), index),
            Write::PutRegistration(id, registration.clone()),
        ])
        .await
        .unwrap();
    assert_eq!(
        store.private_identity(&impi).await.unwrap(),
        Some(p.clone())
    );
    assert_eq!(store.registration_set(id).await.unwrap(), Some(s));
    assert_eq!(store.public_identity(&impu).await.unwrap(), Some(index));
    assert_eq!(store.registration(id).await.unwrap(), Some(registration));

    let mut changed = p.clone();
    changed.digest_ha1 = None;
    store
        .apply(vec![Write::PutPrivate(changed.clone())])
        .await
        .unwrap();
    assert_eq!(
        store.private_identity(&impi).await.unwrap(),
        Some(changed),
        "an update replaces"
    );

    assert!(store.compare_and_set_sqn(&impi, 0, 32).await.unwrap());
    store
        .apply(vec![
            Write::DeletePrivate(impi.clone()),
            Write::DeletePublic(impu.clone()),
            Write::DeleteRegistrationSet(id),
            Write::DeleteRegistration(id),
        ])
        .await
        .unwrap();
    assert_eq!(store.private_identity(&impi).await.unwrap(), None);
    assert_eq!(store.public_identity(&impu).await.unwrap(), None);
    assert_eq!(store.registration_set(id).await.unwrap(), None);
    assert_eq!(store.registration(id).await.unwrap(), None);
    assert_eq!(
        store.sqn(&impi).await.unwrap(),
        0,
        "deleting a private identity resets its SQN"
    );
    store
        .apply(vec![Write::DeletePrivate(impi)])
        .await
        .expect("deleting the absent is fine");

    // Deleting a set alone takes its registration state with it.
    let other = Uuid::new_v4();
    store
        .apply(vec![
            Write::PutRegistrationSet(set(other, "x@example.com", &[])),
            Write::PutRegistration(other, Registration::default()),
        ])
        .await
        .unwrap();
    store
        .apply(vec![Write::DeleteRegistrationSet(other)])
        .await
        .unwrap();
    assert_eq!(
        store.registration(other).await.unwrap(),
        None,
        "registration outlived its set"
    );
}

fn registered(server: &str) -> Registration {
    Registration {
        state: RegistrationState::Registered,
        server_name: Some(server.into()),
        private_id: None,
    }
}

async fn registration_compare_and_set(store: Arc<dyn SubscriberStore>) {
    let set = Uuid::new_v4();
    let first = registered("sip:scscf-1");
    assert!(
        !store
            .compare_and_set_registration(set, Some(&first), None)
            .await
            .unwrap(),
        "absent is not `first`"
    );
    assert!(
        store
            .compare_and_set_registration(set, None, Some(&first))
            .await
            .unwrap()
    );
    assert!(
        !store
            .compare_and_set_registration(set, None, Some(&first))
            .await
            .unwrap(),
        "present now"
    );
    let second = registered("sip:scscf-2");
    assert!(
        !store
            .compare_and_set_registration(set, Some(&second), Some(&first))
            .await
            .unwrap(),
        "stale current"
    );
    assert!(
        store
            .compare_and_set_registration(set, Some(&first), Some(&second))
            .await
            .unwrap()
    );
    assert_eq!(store.registration(set).await.unwrap(), Some(second.clone()));
    assert!(
        store
            .compare_and_set_registration(set, Some(&second), None)
            .await
            .unwrap()
    );
    assert_eq!(store.registration(set).await.unwrap(), None);
    assert!(
        store
            .compare_and_set_registration(set, None, None)
            .await
            .unwrap()
    );

    // Concurrent read-modify-write increments lose nothing.
    let counter = Uuid::new_v4();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let store = Arc::clone(&store);
        tasks.spawn(async move {
            let mut done = 0;
            while done < 25 {
                let current = store.registration(counter).await.unwrap();
                let n: u32 = current
                    .as_ref()
                    .and_then(|r| r.server_name.as_deref())
                    .map_or(0, |s| s.parse().unwrap());
                let next = registered(&(n + 1).to_string());
                if store
                    .compare_and_set_registration(counter, current.as_ref(), Some(&next))
                    .await
                    .unwrap()
                {
                    done += 1;
                }
            }
        });
    }
    tasks.join_all().await;
    let last = store.registration(counter).await.unwrap().unwrap();
    assert_eq!(
        last.server_name.as_deref(),
        Some("200"),
        "an update was lost"
    );
}

async fn sqn_compare_and_set(store: &dyn SubscriberStore, prefix: &str) {
    let impi = format!("{prefix}sqn@example.com");
    assert_eq!(store.sqn(&impi).await.unwrap(), 0);
    assert!(
        !store.compare_and_set_sqn(&impi, 5, 64).await.unwrap(),
        "wrong current refused"
    );
    assert!(store.compare_and_set_sqn(&impi, 0, 32).await.unwrap());
    assert!(
        !store.compare_and_set_sqn(&impi, 0, 64).await.unwrap(),
        "stale current refused"
    );
    assert!(store.compare_and_set_sqn(&impi, 32, 64).await.unwrap());
    assert_eq!(store.sqn(&impi).await.unwrap(), 64);
}

async fn concurrent_sqn_claims_never_repeat(store: Arc<dyn SubscriberStore>, prefix: &str) {
    let impi = format!("{prefix}race@example.com");
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (store, impi) = (Arc::clone(&store), impi.clone());
        tasks.spawn(async move {
            let mut claimed = Vec::new();
            while claimed.len() < 25 {
                let current = store.sqn(&impi).await.unwrap();
                if store
                    .compare_and_set_sqn(&impi, current, current + 32)
                    .await
                    .unwrap()
                {
                    claimed.push(current + 32);
                }
            }
            claimed
        });
    }
    let mut all: Vec<u64> = tasks.join_all().await.into_iter().flatten().collect();
    all.sort_unstable();
    let before = all.len();
    all.dedup();
    assert_eq!(all.len(), before, "two claims got the same SQN");
    assert_eq!(store.sqn(&impi).await.unwrap(), 200 * 32);
}

async fn listing_pages_visit_each_once(store: &dyn SubscriberStore, prefix: &str) {
    let mut batch = Vec::new();
    let mut expected = Vec::new();
    for i in 0..25 {
        let impi = format!("{prefix}list{i:02}@example.com");
        batch.push(Write::PutPrivate(private(&impi, vec![])));
        let impu = format!("sip:{impi}");
        batch.push(Write::PutPublic(
            impu,
            PublicIndex {
                registration_set: Uuid::nil(),
                service_profile: Uuid::nil(),
            },
        ));
        expected.push(impi);
    }
    store.apply(batch).await.unwrap();
    for public in [false, true] {
        let mut seen = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = if public {
                store
                    .list_public_identities(after.as_deref(), 7)
                    .await
                    .unwrap()
            } else {
                store
                    .list_private_identities(after.as_deref(), 7)
                    .await
                    .unwrap()
            };
            assert!(page.len() <= 7);
            let Some(last) = page.last().cloned() else {
                break;
            };
            seen.extend(page);
            after = Some(last);
        }
        let mut mine: Vec<String> = seen
            .into_iter()
            .filter(|k| k.contains(&format!("{prefix}list")))
            .map(|k| k.trim_start_matches("sip:").to_owned())
            .collect();
        let total = mine.len();
        mine.sort();
        mine.dedup();
        assert_eq!(mine.len(), total, "a page repeated an identity");
        assert_eq!(mine, expected, "public={public}");
    }
}

async fn concurrent_batches_all_land(store: Arc<dyn SubscriberStore>, prefix: &str) {
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..200 {
        let store = Arc::clone(&store);
        let impi = format!("{prefix}bulk{i}@example.com");
        tasks.spawn(async move {
            store
                .apply(vec![Write::PutPrivate(private(&impi, vec![]))])
                .await
                .map(|()| impi)
        });
    }
    for impi in tasks.join_all().await {
        let impi = impi.expect("every batch acknowledged");
        assert!(
            store.private_identity(&impi).await.unwrap().is_some(),
            "{impi} lost"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(&dir.path().join("h.redb")).unwrap();
    conformance(Arc::new(store), "").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_embedded_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn SubscriberStore> =
        Arc::new(EmbeddedStore::open(&dir.path().join("h.redb")).unwrap());
    let cached = CachedStore::new(
        store,
        CacheConfig {
            capacity: 1000,
            ttl: Duration::from_secs(60),
        },
    );
    conformance(Arc::new(cached), "").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scylla_store_conforms_when_a_cluster_is_given() {
    let Ok(nodes) = std::env::var("WW_SCYLLA_NODES") else {
        eprintln!(
            "WW_SCYLLA_NODES is not set: the ScyllaDB run of the conformance suite is for hosts with a cluster"
        );
        return;
    };
    let store = ScyllaStore::start(ScyllaConfig {
        nodes: nodes.split(',').map(str::to_owned).collect(),
        keyspace: "homestead_conformance".into(),
        replication_factor: 1,
        consistency: scylla::statement::Consistency::One,
        ..ScyllaConfig::default()
    });
    for _ in 0..300 {
        if store.is_connected() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(store.is_connected(), "could not reach {nodes}");
    let prefix = format!("{}-", Uuid::new_v4().simple());
    conformance(store, &prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_store_survives_reopening_and_reports_corrupt_records() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.redb");
    {
        let store = EmbeddedStore::open(&path).unwrap();
        store
            .apply(vec![Write::PutPrivate(private("kept@example.com", vec![]))])
            .await
            .unwrap();
    }
    // The writer thread closes the file shortly after the store is dropped.
    let raw = retry_open(|| redb::Database::create(&path)).await;
    {
        let txn = raw.begin_write().unwrap();
        txn.open_table(redb::TableDefinition::<&str, &[u8]>::new("private_ids"))
            .unwrap()
            .insert("bad@example.com", b"{not json".as_slice())
            .unwrap();
        txn.commit().unwrap();
    }
    drop(raw);
    let store = retry_open(|| EmbeddedStore::open(&path)).await;
    assert!(
        store
            .private_identity("kept@example.com")
            .await
            .unwrap()
            .is_some()
    );
    match store.private_identity("bad@example.com").await {
        Err(StoreError::Backend(reason)) => assert!(reason.contains("does not decode"), "{reason}"),
        other => panic!("expected a backend error, got {other:?}"),
    }
}

async fn retry_open<T, E: std::fmt::Debug>(mut open: impl FnMut() -> Result<T, E>) -> T {
    let mut last = None;
    for _ in 0..100 {
        match open() {
            Ok(t) => return t,
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("could not reopen: {last:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_cluster_is_unavailable_with_the_reason() {
    // A port nothing listens on: bind, note it, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let store = ScyllaStore::start(ScyllaConfig {
        nodes: vec![format!("127.0.0.1:{port}")],
        retry_interval: Duration::from_millis(100),
        request_timeout: Duration::from_millis(500),
        ..ScyllaConfig::default()
    });
    // Wait until at least one connection attempt has failed so the reason is known.
    let mut reason = String::new();
    for _ in 0..100 {
        match store.private_identity("alice@example.com").await {
            Err(StoreError::Unavailable(r)) if !r.contains("not yet tried") => {
                reason = r;
                break;
            }
            Err(StoreError::Unavailable(_)) => tokio::time::sleep(Duration::from_millis(50)).await,
            other => panic!("expected unavailable, got {other:?}"),
        }
    }
    assert!(reason.contains(&format!("127.0.0.1:{port}")), "{reason}");
    assert!(!store.is_connected());
    let write = store
        .apply(vec![Write::DeletePrivate("alice@example.com".into())])
        .await;
    assert!(
        matches!(write, Err(StoreError::Unavailable(_))),
        "{write:?}"
    );
    assert!(matches!(
        store.compare_and_set_sqn("a", 0, 32).await,
        Err(StoreError::Unavailable(_))
    ));
}
