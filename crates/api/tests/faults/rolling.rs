//! A rolling restart sheds nothing: the real binary with two workers on PostgreSQL gets SIGTERM
//! while writes are in flight, and every write it had accepted is answered as if nothing had
//! happened (201, `created: true`) and is in the database afterwards.
//!
//! What used to fail: the pool's connections are shared by every worker, but each connection's
//! task ran on the runtime of the worker that had opened it. A worker with nothing left to do
//! stops at once on SIGTERM, its runtime ends, and the connections it opened die with it, in
//! the middle of another worker's writes (503 `unavailable`, "connection closed").
//!
//! The test sets that up on purpose, and leaves nothing to timing:
//! - It opens its HTTP connections one after another; the server hands them to its two workers
//!   in turn, so the even ones reach one worker (A) and the odd ones the other (B).
//! - Through A, with every namespace row locked by the test, it sends as many writes as the
//!   pool has connections: all wait on the lock at once, so the pool fills with connections A
//!   opened. It lets the lock go and closes A's HTTP connections: A is idle.
//! - It locks again and sends twice as many writes through B: they run on A's connections, and
//!   the test sees them all waiting (on the lock in the database, or for a connection).
//! - SIGTERM. A, idle, stops at once (its thread ends); B drains. While the lock is still held,
//!   no write may be answered (a failure shows at once: the connection under it is gone); then
//!   the test lets the lock go, and every write must be answered 201.

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use secrets_adapters::testing::TestDatabase;
use serde_json::Value;
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;

use crate::support::{Node, Scratch, TOKEN, count, service_env, sql};

/// Connections in the service's pool.
const POOL_SIZE: usize = 4;
/// Writes through worker B at the signal: as many wait on the lock as the pool has
/// connections, the rest for a connection.
const IN_FLIGHT: usize = 2 * POOL_SIZE;
/// How long the test gives a failure to show after the drained worker stopped. A pass does
/// not depend on it; a failure (an answer while the lock is held) shows within it.
const FAILURE_WINDOW: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_writes_in_flight_on_two_workers_answers_every_accepted_write() {
    let db = TestDatabase::create().await;
    let scratch = Scratch::new("rolling");
    let env = service_env(
        db.url(),
        &[
            ("SECRETS__SERVER__WORKERS", "2".to_owned()),
            ("SECRETS__STORAGE__POOL_SIZE", POOL_SIZE.to_string()),
            ("SECRETS__SERVER__SHUTDOWN_TIMEOUT_SECS", "60".to_owned()),
            ("SECRETS__STORAGE__TIMEOUT_MS", "60000".to_owned()),
            // The workers' own lines say when one has stopped.
            (
                "SECRETS__LOG__LEVEL",
                "warn,secrets_api::startup=info,actix_server::worker=info".to_owned(),
            ),
        ],
    );
    let node = Node::start(&scratch, &env).await;
    let observer = sql(db.url()).await;

    // Alternate connections reach alternate workers.
    let mut on_a = Vec::new();
    let mut on_b = Vec::new();
    for i in 0..2 * IN_FLIGHT {
        let mut connection = Http::open(node.port()).await;
        let (status, _) = connection.send("GET", "/healthz", None).await;
        assert_eq!(status, 200);
        if i % 2 == 0 {
            on_a.push(connection);
        } else {
            on_b.push(connection);
        }
    }
    on_a.truncate(POOL_SIZE);
    let (status, body) = on_a[0].send("POST", "/namespaces", None).await;
    assert_eq!(status, 201, "{body}");
    let key = body["accessKey"].as_str().expect("accessKey").to_owned();
    let path = format!("/namespaces/{key}");

    fill_the_pool_through(on_a, &path, &db, &observer).await;

    // Writes through worker B, on the connections A opened, all waiting inside the service.
    let lock = Lock::take(db.url()).await;
    let mut writes: Vec<_> = on_b
        .into_iter()
        .enumerate()
        .map(|(i, connection)| {
            let path = path.clone();
            tokio::spawn(async move { connection.write(&path, &format!("B{i}")).await })
        })
        .collect();
    wait_until_waiting(&observer, &db, POOL_SIZE).await;

    stop_with_worker_a_idle(&node).await;
    // With the lock held, every write must still be waiting; one answered now has failed.
    let early = tokio::time::timeout(
        FAILURE_WINDOW,
        futures_util::future::select_all(&mut writes),
    )
    .await;
    if let Ok((answer, index, _)) = early {
        let (status, body, _) = answer.expect("writer task");
        panic!(
            "write B{index} was answered {status} while the lock was still held: {body}\n{}",
            node.log()
        );
    }
    lock.release().await;

    let answers = join_all(writes).await;
    let failed: Vec<_> = answers
        .into_iter()
        .map(|answer| answer.expect("writer task"))
        .filter(|(status, body, _)| *status != 201 || body["created"] != true)
        .map(|(status, body, _)| (status, body))
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {IN_FLIGHT} accepted writes were not answered 201: {failed:?}\n{}",
        failed.len(),
        node.log()
    );
    let mut node = node;
    assert_eq!(
        node.wait_exit(Duration::from_secs(30)),
        Some(true),
        "exit status 0 after the drain:\n{}",
        node.log()
    );
    let rows = count(&observer, "SELECT count(*) FROM secrets").await;
    assert_eq!(
        rows,
        (POOL_SIZE + IN_FLIGHT) as i64,
        "every answered write is stored"
    );
}

/// SIGTERM, then waits until the idle worker has stopped and the listener is closed. A worker
/// that stops ends its thread. The listener is probed only afterwards: a probe accepted in the
/// moment before the listener closes would be handed to worker A, which would then not be idle.
async fn stop_with_worker_a_idle(node: &Node) {
    assert!(
        node.wait_for_worker_threads(2, Duration::from_secs(5))
            .await,
        "two worker threads before the signal"
    );
    node.signal_term();
    assert!(
        node.wait_for_worker_threads(1, Duration::from_secs(30))
            .await,
        "worker A did not stop:\n{}",
        node.log()
    );
    assert!(
        node.stops_accepting(Duration::from_secs(30)).await,
        "the listener was still open after SIGTERM:\n{}",
        node.log()
    );
}

/// Writes through worker A's connections, as many as the pool has connections, all waiting on
/// the lock at once: the pool fills with connections worker A opened. Then A's HTTP
/// connections are closed, so that A is idle.
async fn fill_the_pool_through(
    on_a: Vec<Http>,
    path: &str,
    db: &TestDatabase,
    observer: &tokio_postgres::Client,
) {
    let lock = Lock::take(db.url()).await;
    let writes: Vec<_> = on_a
        .into_iter()
        .enumerate()
        .map(|(i, connection)| {
            let path = path.to_owned();
            tokio::spawn(async move { connection.write(&path, &format!("A{i}")).await })
        })
        .collect();
    wait_until_waiting(observer, db, POOL_SIZE).await;
    lock.release().await;
    for answer in join_all(writes).await {
        let (status, body, connection) = answer.expect("writer task");
        assert_eq!(status, 201, "a write through worker A: {body}");
        drop(connection);
    }
}

/// Every namespace row locked in an open transaction of the test's own.
struct Lock(tokio_postgres::Client);

impl Lock {
    async fn take(url: &str) -> Self {
        let client = sql(url).await;
        client
            .batch_execute("BEGIN; SELECT 1 FROM namespaces FOR UPDATE")
            .await
            .expect("lock every namespace");
        Self(client)
    }

    async fn release(self) {
        self.0
            .batch_execute("COMMIT")
            .await
            .expect("release the lock");
    }
}

/// Waits (bounded) until `on_lock` of the service's sessions wait on the test's lock and, when
/// writes outnumber them, the rest wait for a connection (the pool's `waiting` gauge).
async fn wait_until_waiting(observer: &tokio_postgres::Client, db: &TestDatabase, on_lock: usize) {
    let query = format!(
        "SELECT count(*) FROM pg_stat_activity \
         WHERE datname = '{}' AND wait_event_type = 'Lock'",
        db.name()
    );
    let deadline = Instant::now() + Duration::from_mins(1);
    loop {
        let waiting = count(observer, &query).await;
        if waiting == on_lock as i64 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{waiting} sessions wait on the lock, not {on_lock}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One HTTP/1.1 connection, kept alive, with requests written by hand: which connection a
/// request travels on decides which worker serves it.
struct Http(TcpStream);

impl Http {
    async fn open(port: u16) -> Self {
        Self(
            TcpStream::connect(("127.0.0.1", port))
                .await
                .expect("connect to the service"),
        )
    }

    /// A write of secret `name` to the namespace at `path`; answers the connection back.
    async fn write(mut self, path: &str, name: &str) -> (u16, Value, Self) {
        let body = format!(r#"{{"key":"{name}","value":"v"}}"#);
        let (status, answer) = self.send("POST", path, Some(&body)).await;
        (status, answer, self)
    }

    /// Sends one request and reads its answer: the status and the JSON body (`Null` when the
    /// connection closed first, status 0).
    async fn send(&mut self, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
        let body = body.unwrap_or("");
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {TOKEN}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if self.0.write_all(request.as_bytes()).await.is_err() {
            return (0, Value::Null);
        }
        match crate::common::read_http_response(&mut self.0).await {
            Some(answer) => (
                answer.status,
                serde_json::from_slice(&answer.body).unwrap_or(Value::Null),
            ),
            None => (0, Value::Null),
        }
    }
}
