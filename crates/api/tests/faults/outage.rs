//! Database outage under write load: the service reaches PostgreSQL through a proxy that the
//! test takes away and brings back while writers and readers keep going. In the gap every
//! request is answered 503 `unavailable` within the storage timeout (plus a margin for a
//! loaded machine), the process keeps answering and never exits; when the database is back,
//! writes succeed again without a restart; and afterwards every acknowledged write reads back.
//!
//! The database goes away in two ways, in turn (see `proxy`): cut (the server is gone, and
//! both ends know) and partitioned (the network goes silent; when it heals, the server still
//! holds the sessions the service abandoned meanwhile). After either, every namespace takes
//! writes again within a bound, and the server holds nothing for the abandoned sessions.
//!
//! (Readiness while the store is away is `api::operability`'s; this is about the writes.)
//!
//! `FAULTS_OUTAGES` sets how many times the database goes away (default 2: one of each).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use reqwest::Client;
use secrets_adapters::testing::TestDatabase;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use crate::load::{
    Ledger, Load, Writer, create_namespaces, read_back, read_namespaces, tracked_namespaces,
};
use crate::proxy::Proxy;
use crate::support::{Node, Rng, Scratch, TOKEN, client, count, knob, service_env, sql};

/// `storage.timeout_ms` of the service under test.
const TIMEOUT: Duration = Duration::from_secs(1);
/// What a request may take beyond the timeout on a noisy two-core machine: scheduling, the
/// answer's own way back. A request held past it is a request the timeout did not bound.
const MARGIN: Duration = Duration::from_secs(3);
/// How long after the database is back every namespace must take writes again.
const HEAL_WITHIN: Duration = Duration::from_secs(10);
/// `storage.pool_size` of the service under test.
const POOL_SIZE: u64 = 4;
const WRITERS: usize = 6;
const NAMESPACES: usize = 3;

/// The service behind the proxy, and what the test knows about its data.
/// (Fields drop in this order: the process first, the database last.)
struct Subject {
    node: Node,
    proxy: Proxy,
    client: Client,
    ledger: Arc<Ledger>,
    keys: Vec<String>,
    db: TestDatabase,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_under_write_load_is_503_in_time_loses_nothing_and_heals_in_place() {
    let mut rng = Rng::from_env(
        "a_database_outage_under_write_load_is_503_in_time_loses_nothing_and_heals_in_place",
    );
    let outages = knob("FAULTS_OUTAGES", 2);
    let scratch = Scratch::new("outage");
    let db = TestDatabase::create().await;
    let (proxy, proxied) = Proxy::in_front_of(db.url()).await;
    let env = service_env(
        &proxied,
        &[
            (
                "SECRETS__STORAGE__TIMEOUT_MS",
                TIMEOUT.as_millis().to_string(),
            ),
            ("SECRETS__STORAGE__POOL_SIZE", POOL_SIZE.to_string()),
        ],
    );
    let node = Node::start(&scratch, &env).await;
    let client = client();
    let ledger = Arc::new(Ledger::default());
    let keys = tracked_namespaces(&client, &node.base(), &ledger, NAMESPACES).await;
    let mut subject = Subject {
        node,
        proxy,
        client,
        ledger,
        keys,
        db,
    };
    let pid = subject.node.pid();

    let load = Load::new(subject.client.clone(), Arc::clone(&subject.ledger), true);
    let tasks = start_load(&subject, &load, &mut rng);
    load.await_acks(200, Duration::from_mins(1)).await;
    for outage in 1..=outages {
        // Odd outages cut the database away, even ones partition the network.
        let partition = outage % 2 == 0;
        let gap = TIMEOUT * u32::try_from(rng.between(2, 4)).expect("small");
        go_away_and_come_back(&mut subject, &load, outage, partition, gap).await;
        // Service resumes by itself: writes are acknowledged again, by the same process.
        let acks = load.acks();
        load.await_acks(acks + 100, Duration::from_secs(30)).await;
        assert!(subject.node.is_running());
        assert_eq!(subject.node.pid(), pid, "the same process serves");
    }

    load.stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.expect("a load task panicked");
    }
    let report = load.take_report();
    eprintln!(
        "{outages} outages; {} acknowledged, {} answered 503, slowest answer {:?}",
        report.acknowledged, report.unavailable, report.slowest
    );
    assert!(report.problems.is_empty(), "{:#?}", report.problems);
    assert!(
        report.slowest < TIMEOUT + MARGIN,
        "the slowest answer took {:?}, with a storage timeout of {TIMEOUT:?}",
        report.slowest
    );
    assert!(report.unavailable > 0 && report.acknowledged > 0);
    assert_nothing_lost(&subject).await;
}

/// Writers on the tracked namespaces, a creator of new ones, and two readers.
fn start_load(subject: &Subject, load: &Arc<Load>, rng: &mut Rng) -> Vec<JoinHandle<()>> {
    let base = subject.node.base();
    let mut tasks = Vec::new();
    for id in 0..WRITERS {
        let key = &subject.keys[id % NAMESPACES];
        let writer = Writer::new(id, key, 6, 2, rng.fork(), &subject.ledger);
        let (base, load) = (base.clone(), Arc::clone(load));
        tasks.push(tokio::spawn(async move {
            writer.run(base, load).await;
        }));
    }
    tasks.push(tokio::spawn(create_namespaces(
        base.clone(),
        Arc::clone(load),
    )));
    for _ in 0..2 {
        let keys = subject.keys.clone();
        tasks.push(tokio::spawn(read_namespaces(
            base.clone(),
            keys,
            rng.fork(),
            Arc::clone(load),
        )));
    }
    tasks
}

/// One outage of `gap`: the database goes away, requests answer 503 while the process keeps
/// serving, it comes back, and every namespace heals.
async fn go_away_and_come_back(
    subject: &mut Subject,
    load: &Load,
    outage: u64,
    partition: bool,
    gap: Duration,
) {
    let unavailable_before = load.unavailable();
    if partition {
        subject.proxy.partition();
    } else {
        subject.proxy.cut().await;
    }
    // The gap lasts a few timeouts, so that requests are caught in every state: waiting for a
    // connection, connecting, and in the middle of a transaction when it broke.
    let away = Instant::now();
    while away.elapsed() < gap {
        // The process keeps serving what needs no database, promptly.
        let started = Instant::now();
        let health = subject
            .client
            .get(subject.node.url("/healthz"))
            .timeout(MARGIN)
            .send()
            .await
            .expect("healthz answers while the database is away");
        assert_eq!(health.status(), 200);
        assert!(started.elapsed() < MARGIN);
        assert!(
            subject.node.is_running(),
            "the service exited in outage {outage}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let unavailable = load.unavailable() - unavailable_before;
    assert!(
        unavailable > 0,
        "outage {outage}: no request was answered 503 while the database was away"
    );

    if partition {
        subject.proxy.heal();
    } else {
        subject.proxy.restore().await;
    }
    let back = Instant::now();
    // Every namespace takes writes again, not just most: a lock left behind by a session the
    // service abandoned would keep one refusing.
    for key in &subject.keys {
        probe_until_written(subject, key, outage).await;
    }
    // And the server holds nothing for the sessions the service abandoned: none is left inside
    // a transaction (holding its locks) or in a statement (waiting for a lock that is never
    // released) for longer than the timeout. Sessions that hold nothing and whose client is
    // gone stay until the server's TCP keepalive reaps them (docs/scaling.md): at most one
    // pool's worth per partition.
    let sql = sql(subject.db.url()).await;
    let partitions = outage / 2;
    let sessions = loop {
        let (stuck, sessions) = sessions(&sql).await;
        if stuck.is_empty() && sessions <= POOL_SIZE * (1 + partitions) {
            break sessions;
        }
        assert!(
            back.elapsed() < HEAL_WITHIN,
            "outage {outage}: {HEAL_WITHIN:?} after the database came back, the server holds \
             {sessions} sessions of the service, stuck: {stuck:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    eprintln!(
        "outage {outage} ({}): {unavailable} answered 503 in the gap; every namespace writable \
         again {:?} after it; {sessions} sessions",
        if partition { "partition" } else { "cut" },
        back.elapsed()
    );
}

/// Writes the name `PROBE` of namespace `key` until it is acknowledged, for at most
/// [`HEAL_WITHIN`]; 503 `unavailable` is the only other answer allowed meanwhile.
async fn probe_until_written(subject: &Subject, key: &str, outage: u64) {
    let deadline = Instant::now() + HEAL_WITHIN;
    for attempt in 0.. {
        let value = format!("probe.{outage}.{attempt}");
        subject.ledger.sending(key, "PROBE", Some(&value));
        let response = subject
            .client
            .post(subject.node.url(&format!("/namespaces/{key}")))
            .bearer_auth(TOKEN)
            .json(&json!({"key": "PROBE", "value": value}))
            .send()
            .await
            .expect("the probe is answered");
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if status == 201 {
            subject.ledger.acknowledged(key, "PROBE", Some(&value));
            return;
        }
        assert_eq!(
            (status.as_u16(), &body["error"]["code"]),
            (503, &Value::from("unavailable")),
            "a probe write after outage {outage}"
        );
        assert!(
            Instant::now() < deadline,
            "outage {outage}: a namespace still refuses writes {HEAL_WITHIN:?} after the \
             database came back"
        );
    }
}

/// The service's sessions on the test's database that are stuck (as `state: query`), and how
/// many sessions it has in all. Stuck: for longer than twice the timeout in a transaction or a
/// statement while holding something others need: a transaction id (its row locks), a snapshot
/// (which holds back vacuum), or a place in a lock's queue. (A session cut off right after
/// `BEGIN` holds none of these; like an idle one, it only takes a connection slot until the
/// server's TCP keepalive reaps it.)
async fn sessions(sql: &tokio_postgres::Client) -> (Vec<String>, u64) {
    let rows = sql
        .query(
            "SELECT state, left(query, 60), \
                    state <> 'idle' AND now() - state_change > $1::text::interval \
                    AND (backend_xid IS NOT NULL OR backend_xmin IS NOT NULL \
                         OR wait_event_type = 'Lock') \
             FROM pg_stat_activity \
             WHERE datname = current_database() AND application_name = 'secrets-service'",
            &[&format!("{} milliseconds", 2 * TIMEOUT.as_millis())],
        )
        .await
        .expect("pg_stat_activity");
    let stuck = rows
        .iter()
        .filter(|row| row.get::<_, Option<bool>>(2) == Some(true))
        .map(|row| {
            format!(
                "{}: {}",
                row.get::<_, Option<String>>(0).unwrap_or_default(),
                row.get::<_, Option<String>>(1).unwrap_or_default()
            )
        })
        .collect();
    (stuck, rows.len() as u64)
}

/// Every acknowledged write reads back, and each name is one row.
async fn assert_nothing_lost(subject: &Subject) {
    let readback = read_back(&subject.client, &subject.node.base(), &subject.ledger).await;
    assert!(readback.problems.is_empty(), "{:#?}", readback.problems);
    let sql = sql(subject.db.url()).await;
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
}

/// A readiness failure's log line says what happened: here, the connection refused at the
/// address the service connects to (the proxy, cut), with no password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_readiness_failure_logs_the_cause_in_words() {
    let scratch = Scratch::new("readiness-cause");
    let db = TestDatabase::create().await;
    let (mut proxy, url) = Proxy::in_front_of(db.url()).await;
    let url = url.replacen("postgres://postgres@", "postgres://postgres:hunter2@", 1);
    let node = Node::start(&scratch, &service_env(&url, &[])).await;
    let http = client();
    let ready = http
        .get(node.url("/readyz"))
        .send()
        .await
        .expect("answered");
    assert_eq!(ready.status(), 200);
    proxy.cut().await;
    let port = url
        .split('@')
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .expect("host:port in the URL")
        .to_owned();
    let expected = format!("connection refused at {port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    // The first probe may meet a pooled connection that just closed; the next ones connect,
    // and are refused.
    while !node.log().contains(&expected) {
        let answer = http
            .get(node.url("/readyz"))
            .send()
            .await
            .expect("answered");
        assert_eq!(answer.status(), 503, "readiness with the database cut");
        assert!(
            Instant::now() < deadline,
            "no line says {expected:?}:\n{}",
            node.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!node.log().contains("hunter2"), "{}", node.log());
}
