//! Many replicas, one database: three `secrets-service` processes on one PostgreSQL behave as
//! one service. A change made through one is seen through the others on the very next request
//! (no cache anywhere can serve a deleted namespace or a replaced access key); concurrent
//! writers spread over the replicas end with one row per name holding the last write; and
//! `rotate-kek` runs while all three serve, without a client seeing an error.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::{Client, Method, StatusCode};
use secrets_adapters::crypto::Kek;
use secrets_adapters::testing::TestDatabase;
use serde_json::{Value, json};

use crate::support::{
    KEK, NEW_KEK, Node, Rng, Scratch, TOKEN, binary, client, count, list_keys, service_env, sql,
};

/// Three replicas on one database, and the client that talks to them.
struct Cluster {
    nodes: Vec<Node>,
    client: Client,
}

impl Cluster {
    async fn start(scratch: &Scratch, env: &[(String, String)]) -> Self {
        let mut nodes = Vec::new();
        for _ in 0..3 {
            nodes.push(Node::start(scratch, env).await);
        }
        Self {
            nodes,
            client: client(),
        }
    }

    /// Sends a request to replica `n`; answers the status and the body (`Null` when empty).
    async fn call(
        &self,
        n: usize,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .client
            .request(method, self.nodes[n].url(path))
            .bearer_auth(TOKEN);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("the replica answers");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn create_namespace(&self, n: usize) -> String {
        let (status, body) = self.call(n, Method::POST, "/namespaces", None).await;
        assert_eq!(status, 201);
        body["accessKey"].as_str().expect("accessKey").to_owned()
    }
}

impl Cluster {
    /// Sends a request to replica `by`, asserting that it answers `status`; answers the body.
    async fn call_expecting(
        &self,
        by: usize,
        method: Method,
        path: &str,
        body: Option<Value>,
        status: u16,
    ) -> Value {
        let (got, body) = self.call(by, method.clone(), path, body).await;
        assert_eq!(got, status, "{method} {path} on replica {by}: {body}");
        body
    }

    /// Asserts that every replica but `except` reads namespace `key` as `expected` on its very
    /// next request (`None`: 404 `namespace_not_found`).
    async fn all_read(&self, except: usize, key: &str, expected: Option<&Value>, after: &str) {
        for n in (0..self.nodes.len()).filter(|n| *n != except) {
            let (status, body) = self
                .call(n, Method::GET, &format!("/namespaces/{key}"), None)
                .await;
            if let Some(expected) = expected {
                assert_eq!(status, 200, "{after}, read on replica {n}: {body}");
                assert_eq!(&body, expected, "{after}, read on replica {n}");
            } else {
                assert_eq!(status, 404, "{after}, read on replica {n}: {body}");
                assert_eq!(body["error"]["code"], "namespace_not_found", "{after}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_made_through_one_replica_is_seen_through_the_others_at_once() {
    let scratch = Scratch::new("replicas-change");
    let db = TestDatabase::create().await;
    let cluster = Cluster::start(&scratch, &service_env(db.url(), &[])).await;
    // Each replica takes each role once: the one that changes, and the others that must see
    // the change on their very next request, right after having served the old state (so
    // that any cache would now be stale).
    for by in 0..3 {
        let key = cluster.create_namespace(by).await;
        let path = format!("/namespaces/{key}");
        cluster
            .all_read(by, &key, Some(&json!({})), &format!("created on {by}"))
            .await;

        let body = json!({"key": "TOKEN", "value": "one"});
        cluster
            .call_expecting(by, Method::POST, &path, Some(body), 201)
            .await;
        let expected = json!({"TOKEN": "one"});
        cluster
            .all_read(by, &key, Some(&expected), &format!("written on {by}"))
            .await;

        let body = json!({"TOKEN": "two", "OTHER": "x"});
        cluster
            .call_expecting(by, Method::PATCH, &path, Some(body), 200)
            .await;
        let expected = json!({"TOKEN": "two", "OTHER": "x"});
        cluster
            .all_read(by, &key, Some(&expected), &format!("patched on {by}"))
            .await;

        let secret = format!("{path}/secrets/OTHER");
        cluster
            .call_expecting(by, Method::DELETE, &secret, None, 204)
            .await;
        let expected = json!({"TOKEN": "two"});
        let after = format!("secret deleted on {by}");
        cluster.all_read(by, &key, Some(&expected), &after).await;

        // The access key is replaced: the old one is refused everywhere at once, for reads
        // and writes, and the new one works everywhere.
        let rotate = format!("{path}/access-key");
        let answer = cluster
            .call_expecting(by, Method::POST, &rotate, None, 201)
            .await;
        let new_key = answer["accessKey"].as_str().expect("accessKey").to_owned();
        let after = format!("access key replaced on {by}");
        cluster.all_read(by, &key, None, &after).await;
        cluster
            .all_read(by, &new_key, Some(&expected), &after)
            .await;
        for n in 0..3 {
            let late = json!({"key": "LATE", "value": "write"});
            cluster
                .call_expecting(n, Method::POST, &path, Some(late), 404)
                .await;
        }

        // The namespace is deleted through another replica than the one that made it.
        let deleter = (by + 1) % 3;
        let path = format!("/namespaces/{new_key}");
        cluster
            .call_expecting(deleter, Method::DELETE, &path, None, 204)
            .await;
        cluster
            .all_read(deleter, &new_key, None, &format!("deleted on {deleter}"))
            .await;
        for n in (0..3).filter(|n| *n != deleter) {
            let write = json!({"key": "K", "value": "v"});
            cluster
                .call_expecting(n, Method::GET, &format!("{path}/keys"), None, 404)
                .await;
            cluster
                .call_expecting(n, Method::GET, &format!("{path}/secrets/TOKEN"), None, 404)
                .await;
            cluster
                .call_expecting(n, Method::POST, &path, Some(write), 404)
                .await;
        }
    }
    let sql = sql(db.url()).await;
    assert_eq!(count(&sql, "SELECT count(*) FROM namespaces").await, 0);
    assert_eq!(count(&sql, "SELECT count(*) FROM secrets").await, 0);
}

/// One acknowledged write, with when it was sent and when its answer came.
struct Timed {
    value: String,
    sent: Instant,
    answered: Instant,
}

/// Every acknowledged write, by name.
type Writes = BTreeMap<String, Vec<Timed>>;

const RACED_NAMES: usize = 6;

/// Four writers per replica, each writing 40 times to names of `key` chosen at random; every
/// write must be acknowledged.
async fn race_over_replicas(cluster: &Arc<Cluster>, key: &str, rng: &mut Rng) -> Writes {
    const TASKS_PER_REPLICA: usize = 4;
    const WRITES_PER_TASK: usize = 40;
    let writes: Arc<Mutex<Writes>> = Arc::default();
    let mut tasks = Vec::new();
    for replica in 0..3 {
        for task in 0..TASKS_PER_REPLICA {
            let (cluster, writes) = (Arc::clone(cluster), Arc::clone(&writes));
            let (path, mut rng) = (format!("/namespaces/{key}"), rng.fork());
            tasks.push(tokio::spawn(async move {
                for seq in 0..WRITES_PER_TASK {
                    let name = format!("NAME_{}", rng.index(RACED_NAMES));
                    let value = format!("replica{replica}-task{task}-{seq}");
                    let body = json!({"key": name, "value": value});
                    let sent = Instant::now();
                    cluster
                        .call_expecting(replica, Method::POST, &path, Some(body), 201)
                        .await;
                    let answered = Instant::now();
                    let mut writes = writes.lock().expect("writes");
                    writes.entry(name).or_default().push(Timed {
                        value,
                        sent,
                        answered,
                    });
                }
            }));
        }
    }
    for task in tasks {
        task.await.expect("a writer failed");
    }
    std::mem::take(&mut *writes.lock().expect("writes"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_across_replicas_end_in_last_writer_wins_with_one_row_per_name() {
    let mut rng = Rng::from_env(
        "concurrent_writers_across_replicas_end_in_last_writer_wins_with_one_row_per_name",
    );
    let scratch = Scratch::new("replicas-lww");
    let db = TestDatabase::create().await;
    let cluster = Arc::new(Cluster::start(&scratch, &service_env(db.url(), &[])).await);
    let key = cluster.create_namespace(0).await;
    let path = format!("/namespaces/{key}");
    let writes = race_over_replicas(&cluster, &key, &mut rng).await;

    let mut reads = Vec::new();
    for n in 0..3 {
        reads.push(
            cluster
                .call_expecting(n, Method::GET, &path, None, 200)
                .await,
        );
    }
    assert!(
        reads.iter().all(|r| r == &reads[0]),
        "the replicas disagree: {reads:?}"
    );
    let read = reads[0].as_object().expect("an object");
    assert_eq!(read.len(), writes.len(), "one secret per name written");
    for (name, timed) in &writes {
        let value = read[name].as_str().expect("a value");
        let winner = timed
            .iter()
            .find(|t| t.value == value)
            .unwrap_or_else(|| panic!("{name} holds {value}, which no writer sent"));
        // Last writer wins: no write of this name started after the one found was answered,
        // since that write committed later and would have replaced it.
        let latest_start = timed.iter().map(|t| t.sent).max().expect("writes");
        assert!(
            latest_start <= winner.answered,
            "{name} holds {value}, though a write of it was sent {:?} after that one was answered",
            latest_start - winner.answered
        );
    }
    let listed = list_keys(&cluster.client, &cluster.nodes[1].base(), &key).await;
    assert_eq!(
        listed.len(),
        writes.len(),
        "each name listed once: {listed:?}"
    );
    let sql = sql(db.url()).await;
    assert_eq!(
        count(&sql, "SELECT count(*) FROM secrets").await,
        writes.len() as i64,
        "one row per name"
    );

    // And in sequence, across replicas: each write replaces the one before, wherever it ran.
    for (n, value) in ["first", "second", "third"].iter().enumerate() {
        let body = json!({"key": "NAME_0", "value": value});
        let answer = cluster
            .call_expecting(n, Method::POST, &path, Some(body), 201)
            .await;
        assert_eq!(answer["created"], false);
        for m in 0..3 {
            let one = format!("{path}/secrets/NAME_0");
            let secret = cluster
                .call_expecting(m, Method::GET, &one, None, 200)
                .await;
            assert_eq!(secret["value"], *value, "written on {n}, read on {m}");
        }
    }
}

/// Namespaces written under the old KEK before the rotation, and how many of them hold a secret.
const ROTATED_SEEDED: usize = 2400;
const ROTATED_WITH_SECRETS: usize = 30;

/// Reads seeded namespaces through replica `replica` until `stop`, each exactly as written.
async fn read_seeded(
    cluster: Arc<Cluster>,
    replica: usize,
    keys: Arc<Vec<String>>,
    mut rng: Rng,
    stop: Arc<AtomicBool>,
    served: Arc<AtomicU64>,
) {
    while !stop.load(Ordering::Relaxed) {
        let i = rng.index(ROTATED_WITH_SECRETS);
        let (status, body) = cluster
            .call(
                replica,
                Method::GET,
                &format!("/namespaces/{}", keys[i]),
                None,
            )
            .await;
        assert_eq!(status, 200, "a read during the rotation: {body}");
        assert_eq!(body, json!({"S": format!("value-{i}")}));
        served.fetch_add(1, Ordering::Relaxed);
    }
}

/// Through replica `replica` until `stop`: updates one secret, creates a namespace and reads
/// it; finally reads the secret back as last written.
async fn write_and_create(
    cluster: Arc<Cluster>,
    replica: usize,
    stop: Arc<AtomicBool>,
    served: Arc<AtomicU64>,
) {
    let key = cluster.create_namespace(replica).await;
    let mut writes = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let (status, body) = cluster
            .call(
                replica,
                Method::POST,
                &format!("/namespaces/{key}"),
                Some(json!({"key": "W", "value": format!("write-{writes}")})),
            )
            .await;
        assert_eq!(status, 201, "a write during the rotation: {body}");
        writes += 1;
        let fresh = cluster.create_namespace(replica).await;
        let (status, body) = cluster
            .call(replica, Method::GET, &format!("/namespaces/{fresh}"), None)
            .await;
        assert_eq!((status.as_u16(), body), (200, json!({})));
        served.fetch_add(1, Ordering::Relaxed);
    }
    let (status, body) = cluster
        .call(replica, Method::GET, &format!("/namespaces/{key}"), None)
        .await;
    assert_eq!(status, 200);
    if writes > 0 {
        assert_eq!(body, json!({"W": format!("write-{}", writes - 1)}));
    }
}

/// The audit trail the commands of a test write to.
fn commands_trail(scratch: &Scratch) -> std::path::PathBuf {
    scratch.path().join("commands.audit.log")
}

/// Runs a command of the binary to its end, off the async threads, its audit trail in
/// [`commands_trail`].
async fn run_command(
    scratch: &Scratch,
    mut env: Vec<(String, String)>,
    args: &[&str],
) -> std::process::Output {
    env.push((
        "SECRETS__AUDIT__PATH".to_owned(),
        commands_trail(scratch).display().to_string(),
    ));
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        binary(&env).args(&args).output().expect("the command runs")
    })
    .await
    .expect("the command's thread")
}

/// Namespaces written under the old KEK by three replicas that know only it.
async fn seed_under_the_old_kek(scratch: &Scratch, db: &TestDatabase) -> Vec<String> {
    let old = Cluster::start(scratch, &service_env(db.url(), &[])).await;
    let mut keys: Vec<String> = Vec::new();
    for batch in 0..ROTATED_SEEDED / 300 {
        let body = json!({"count": 300});
        let answer = old
            .call_expecting(batch % 3, Method::POST, "/namespaces/bulk", Some(body), 201)
            .await;
        let created = answer["accessKeys"].as_array().expect("keys");
        keys.extend(
            created
                .iter()
                .map(|k| k.as_str().expect("a key").to_owned()),
        );
    }
    for (i, key) in keys.iter().take(ROTATED_WITH_SECRETS).enumerate() {
        let body = json!({"key": "S", "value": format!("value-{i}")});
        let path = format!("/namespaces/{key}");
        old.call_expecting(i % 3, Method::POST, &path, Some(body), 201)
            .await;
    }
    keys
}

/// Nothing is wrapped under the old key any more: `check` passes with the new key alone, and
/// a replica that knows only the new key reads every seeded secret.
async fn assert_all_under_the_new_kek(scratch: &Scratch, db: &TestDatabase, keys: &[String]) {
    let new_only = service_env(db.url(), &[("KEY_ENCRYPTION_KEY", NEW_KEK.to_owned())]);
    let check = run_command(scratch, new_only.clone(), &["check"]).await;
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let new_id = Kek::from_base64(NEW_KEK).expect("kek").key_id();
    let sql = sql(db.url()).await;
    let rows = sql
        .query_one(
            "SELECT count(*) FROM namespaces WHERE kek_id <> $1",
            &[&new_id.as_str()],
        )
        .await
        .expect("count");
    assert_eq!(rows.get::<_, i64>(0), 0);
    let fresh = Node::start(scratch, &new_only).await;
    let client = client();
    for (i, key) in keys.iter().take(ROTATED_WITH_SECRETS).enumerate() {
        let body: Value = client
            .get(fresh.url(&format!("/namespaces/{key}")))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("sent")
            .json()
            .await
            .expect("json");
        assert_eq!(body, json!({"S": format!("value-{i}")}));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_kek_runs_while_three_replicas_serve_without_a_client_seeing_an_error() {
    let mut rng = Rng::from_env(
        "rotate_kek_runs_while_three_replicas_serve_without_a_client_seeing_an_error",
    );
    let scratch = Scratch::new("replicas-kek");
    let db = TestDatabase::create().await;

    let keys = seed_under_the_old_kek(&scratch, &db).await;

    // Every replica now has the new KEK active and the old one retired (docs/operations.md).
    let both = service_env(
        db.url(),
        &[
            ("KEY_ENCRYPTION_KEY", NEW_KEK.to_owned()),
            ("KEY_ENCRYPTION_KEYS_RETIRED", KEK.to_owned()),
        ],
    );
    let cluster = Arc::new(Cluster::start(&scratch, &both).await);
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicU64::new(0));
    let keys = Arc::new(keys);
    let mut clients = Vec::new();
    for replica in 0..3 {
        // A reader of the seeded namespaces, and a writer that also creates namespaces.
        clients.push(tokio::spawn(read_seeded(
            Arc::clone(&cluster),
            replica,
            Arc::clone(&keys),
            rng.fork(),
            Arc::clone(&stop),
            Arc::clone(&served),
        )));
        clients.push(tokio::spawn(write_and_create(
            Arc::clone(&cluster),
            replica,
            Arc::clone(&stop),
            Arc::clone(&served),
        )));
    }

    // The clients are under way before the rotation starts.
    let deadline = Instant::now() + Duration::from_secs(30);
    while served.load(Ordering::Relaxed) < 30 {
        assert!(
            Instant::now() < deadline,
            "the clients are not being served"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Small batches, so that the run takes many transactions while the clients keep going.
    let served_before = served.load(Ordering::Relaxed);
    let rotation = run_command(
        &scratch,
        both.clone(),
        &["rotate-kek", "--batch-size", "25"],
    )
    .await;
    let served_during = served.load(Ordering::Relaxed) - served_before;
    let stdout = String::from_utf8_lossy(&rotation.stdout);
    assert!(
        rotation.status.success(),
        "rotate-kek failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&rotation.stderr)
    );
    assert!(
        stdout.contains(&format!("re-wrapped: {ROTATED_SEEDED},")) && stdout.contains("failed: 0"),
        "{stdout}"
    );
    // Each data key re-wrapped is one line of the audit trail.
    let trail = std::fs::read_to_string(commands_trail(&scratch)).expect("the trail");
    let rewrapped = trail
        .lines()
        .filter(|line| line.contains(r#""operation":"rewrap_data_key""#))
        .filter(|line| line.contains(r#""outcome":"done""#))
        .count();
    assert_eq!(rewrapped, ROTATED_SEEDED, "rewrap lines");
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.expect("a client saw an error");
    }
    eprintln!("{served_during} client requests served while rotate-kek ran");
    assert!(
        served_during > 0,
        "the clients were served while the rotation ran"
    );

    assert_all_under_the_new_kek(&scratch, &db, &keys).await;
}
