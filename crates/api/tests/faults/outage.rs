//! Database outage under write load: the service reaches PostgreSQL through a proxy that the
//! test cuts and restores while writers and readers keep going. In the gap every request is
//! answered 503 `unavailable` within the storage timeout (plus a margin for a loaded machine),
//! the process keeps answering and never exits; when the database is back, writes succeed
//! again without a restart; and afterwards every acknowledged write reads back.
//!
//! (Readiness while the store is away is `api::operability`'s; this is about the writes.)
//!
//! `FAULTS_OUTAGES` sets how many times the database goes away (default 2).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use secrets_adapters::testing::TestDatabase;
use serde_json::Value;

use crate::load::{Ledger, Load, Writer, create_namespaces, read_back, read_namespaces};
use crate::proxy::Proxy;
use crate::support::{Node, Rng, Scratch, TOKEN, client, count, knob, service_env, sql};

/// `storage.timeout_ms` of the service under test.
const TIMEOUT: Duration = Duration::from_millis(1000);
/// What a request may take beyond the timeout on a noisy two-core machine: scheduling, the
/// answer's own way back. A request held past it is a request the timeout did not bound.
const MARGIN: Duration = Duration::from_secs(3);
const WRITERS: usize = 6;
const NAMESPACES: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_under_write_load_is_503_in_time_loses_nothing_and_heals_in_place() {
    let mut rng = Rng::from_env(
        "a_database_outage_under_write_load_is_503_in_time_loses_nothing_and_heals_in_place",
    );
    let outages = knob("FAULTS_OUTAGES", 2);
    let scratch = Scratch::new("outage");
    let db = TestDatabase::create().await;
    let (mut proxy, proxied) = Proxy::in_front_of(db.url()).await;
    let env = service_env(
        &proxied,
        &[(
            "SECRETS__STORAGE__TIMEOUT_MS",
            TIMEOUT.as_millis().to_string(),
        )],
    );
    let mut node = Node::start(&scratch, &env).await;
    let pid = node.pid();
    let client = client();
    let ledger = Arc::new(Ledger::default());
    let mut keys = Vec::new();
    for _ in 0..NAMESPACES {
        let body: Value = client
            .post(node.url("/namespaces"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("sent")
            .json()
            .await
            .expect("json");
        let key = body["accessKey"].as_str().expect("accessKey").to_owned();
        ledger.namespace(&key);
        keys.push(key);
    }

    let load = Load::new(client.clone(), Arc::clone(&ledger), true);
    let mut tasks = Vec::new();
    for id in 0..WRITERS {
        let writer = Writer::new(id, &keys[id % NAMESPACES], 6, 2, rng.fork(), &ledger);
        tasks.push(tokio::spawn({
            let (base, load) = (node.base(), Arc::clone(&load));
            async move {
                writer.run(base, load).await;
            }
        }));
    }
    tasks.push(tokio::spawn(create_namespaces(
        node.base(),
        Arc::clone(&load),
    )));
    for _ in 0..2 {
        tasks.push(tokio::spawn(read_namespaces(
            node.base(),
            keys.clone(),
            rng.fork(),
            Arc::clone(&load),
        )));
    }
    load.await_acks(200, Duration::from_secs(60)).await;

    for outage in 1..=outages {
        let unavailable_before = load.unavailable();
        proxy.cut().await;
        // The gap lasts a few timeouts, so that requests are caught in every state: waiting
        // for a connection, connecting, and in the middle of a transaction when it broke.
        let gap = TIMEOUT * u32::try_from(rng.between(2, 4)).expect("small");
        let cut_at = Instant::now();
        while cut_at.elapsed() < gap {
            // The process keeps serving what needs no database, promptly.
            let started = Instant::now();
            let health = client
                .get(node.url("/healthz"))
                .timeout(MARGIN)
                .send()
                .await
                .expect("healthz answers while the database is away");
            assert_eq!(health.status(), 200);
            assert!(started.elapsed() < MARGIN);
            assert!(node.is_running(), "the service exited in outage {outage}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let unavailable = load.unavailable() - unavailable_before;
        assert!(
            unavailable > 0,
            "outage {outage}: no request was answered 503 while the database was away"
        );

        proxy.restore().await;
        // Service resumes by itself: writes are acknowledged again, by the same process.
        let acks = load.acks();
        load.await_acks(acks + 100, Duration::from_secs(30)).await;
        assert!(node.is_running());
        assert_eq!(node.pid(), pid, "the same process serves");
    }

    load.stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.expect("a load task panicked");
    }
    let report = load.take_report();
    assert!(report.problems.is_empty(), "{:#?}", report.problems);
    assert!(
        report.slowest < TIMEOUT + MARGIN,
        "the slowest answer took {:?}, with a storage timeout of {TIMEOUT:?}",
        report.slowest
    );
    assert!(report.unavailable > 0 && report.acknowledged > 0);

    let readback = read_back(&client, &node.base(), &ledger).await;
    assert!(readback.problems.is_empty(), "{:#?}", readback.problems);
    let sql = sql(db.url()).await;
    let duplicated = count(
        &sql,
        "SELECT count(*) FROM (SELECT 1 FROM secrets \
         GROUP BY namespace_id, name_index HAVING count(*) > 1) d",
    )
    .await;
    assert_eq!(duplicated, 0, "names with more than one row");
    assert_eq!(
        count(&sql, "SELECT count(*) FROM secrets").await,
        readback.secrets as i64,
        "secret rows against secrets read"
    );
    assert!(node.is_running());
    drop(proxy);
}
