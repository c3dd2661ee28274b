//! Hot reads on standbys (`storage.read_urls`), never staler than the primary.
//!
//! First the hazard, shown with the real binary: a service whose database URL is the
//! asynchronous replica answers reads from whatever that replica has replayed, so right after
//! a write, a key rotation or a deletion made through another replica of the service it can
//! still return the old value, the old key's namespace, the deleted namespace. Then the
//! configured path: a service with both standbys in `storage.read_urls`, read right after the
//! same changes, never returns the old state, with the standbys serving reads (the
//! `secrets_store_standby_reads_total` metric says so); with the replica's replay paused, and
//! with a standby lost, reads go to the primary and stay fresh. Last, READ throughput and CPU
//! per request, primary alone against primary and standbys, in one run.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use reqwest::{Client, Method};
use secrets_adapters::testing::TestDatabase;
use serde_json::{Value, json};

use crate::cluster::{Cluster, cpu_of_process_tree, postmaster_pid};
use crate::support::{Node, Scratch, TOKEN, client, knob, service_env, sql};

/// Sends a request, answering the status and the body (`Null` when empty).
async fn call(
    client: &Client,
    node: &Node,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = client.request(method, node.url(path)).bearer_auth(TOKEN);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("the service answers");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn create(client: &Client, node: &Node) -> String {
    let (status, body) = call(client, node, Method::POST, "/namespaces", None).await;
    assert_eq!(status, 201, "{body}");
    body["accessKey"].as_str().expect("accessKey").to_owned()
}

/// One value of `secrets_store_standby_reads_total` of the service at `node`.
async fn standby_reads(client: &Client, node: &Node, outcome: &str) -> u64 {
    let text = client
        .get(node.url("/metrics"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let prefix = format!("secrets_store_standby_reads_total{{outcome=\"{outcome}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// The three services of a freshness test: one that writes (the primary only), one that reads
/// only the asynchronous replica (the hazard), one with both standbys in `storage.read_urls`.
struct Services {
    writer: Node,
    replica_reader: Node,
    configured: Node,
}

impl Services {
    async fn start(scratch: &Scratch, cluster: &Cluster, db: &TestDatabase) -> Self {
        let roles = cluster.roles().await;
        let standby = |role: &str| {
            roles
                .iter()
                .find(|r| r.role == role)
                .map_or_else(|| panic!("no {role} in {roles:?}"), |r| r.name.clone())
        };
        let (sync, replica) = (standby("sync_standby"), standby("replica"));
        let writer = Node::start(scratch, &service_env(db.url(), &[])).await;
        let replica_url = cluster.node_url(&replica, db.name());
        // The replica-only service starts once the replica has replayed the new database, its
        // schema and the writer's key check: it checks its key against them, and writes nothing.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok((client, connection)) =
                tokio_postgres::connect(&replica_url, tokio_postgres::NoTls).await
            {
                tokio::spawn(connection);
                let checks = client
                    .query_one("SELECT count(*) FROM key_checks", &[])
                    .await;
                if checks.is_ok_and(|row| row.get::<_, i64>(0) > 0) {
                    break;
                }
            }
            assert!(
                Instant::now() < deadline,
                "{replica} did not replay the test database within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let replica_reader = Node::start(
            scratch,
            &service_env(
                &replica_url,
                &[("SECRETS__STORAGE__MIGRATE_ON_START", "false".to_owned())],
            ),
        )
        .await;
        let read_urls = format!("{},{}", cluster.node_url(&sync, db.name()), replica_url);
        let configured = Node::start(
            scratch,
            &service_env(db.url(), &[("SECRETS__STORAGE__READ_URLS", read_urls)]),
        )
        .await;
        Self {
            writer,
            replica_reader,
            configured,
        }
    }
}

/// What write-then-read loops found.
#[derive(Debug, Default)]
struct Staleness {
    /// Reads through the replica-only service that returned the old state.
    replica: u64,
    /// The same through the configured service: must stay 0.
    configured: u64,
    elapsed: Duration,
}

/// `loops` rounds of: a write through the writer, then the same namespace read through both
/// readers at once; every fifth round the access key is replaced first, every twenty-fifth
/// the namespace is deleted (and the next round starts a new one).
async fn write_then_read(client: &Client, services: &Services, loops: u64) -> Staleness {
    let mut found = Staleness::default();
    let started = Instant::now();
    let mut key = create(client, &services.writer).await;
    for i in 0..loops {
        let path = format!("/namespaces/{key}");
        let (expected, gone): (Option<Value>, Option<String>) = if i % 25 == 24 {
            let (status, _) = call(client, &services.writer, Method::DELETE, &path, None).await;
            assert_eq!(status, 204);
            (
                None,
                Some(std::mem::replace(
                    &mut key,
                    create(client, &services.writer).await,
                )),
            )
        } else if i % 5 == 4 {
            let rotate = format!("{path}/access-key");
            let (status, body) = call(client, &services.writer, Method::POST, &rotate, None).await;
            assert_eq!(status, 201, "{body}");
            let new = body["accessKey"].as_str().expect("accessKey").to_owned();
            (None, Some(std::mem::replace(&mut key, new)))
        } else {
            let value = format!("value-{i}");
            let body = json!({"key": "S", "value": value});
            let (status, _) = call(client, &services.writer, Method::POST, &path, Some(body)).await;
            assert_eq!(status, 201);
            (Some(json!({"S": value})), None)
        };
        // The old key, or the deleted namespace's, must be refused; the new value read.
        let read_path = format!("/namespaces/{}", gone.as_deref().unwrap_or(&key));
        let (replica, configured) = tokio::join!(
            call(
                client,
                &services.replica_reader,
                Method::GET,
                &read_path,
                None
            ),
            call(client, &services.configured, Method::GET, &read_path, None),
        );
        let stale = |(status, body): &(u16, Value)| match &expected {
            Some(expected) => *status != 200 || body != expected,
            None => *status != 404,
        };
        found.replica += u64::from(stale(&replica));
        if stale(&configured) {
            found.configured += 1;
            eprintln!("stale on the configured path, round {i}: {configured:?}");
        }
    }
    found.elapsed = started.elapsed();
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_on_standbys_are_never_staler_than_the_primary_where_a_replica_read_is() {
    let test = "reads_on_standbys_are_never_staler_than_the_primary_where_a_replica_read_is";
    let Some(cluster) = Cluster::from_env(test) else {
        return;
    };
    let loops = knob("HA_STALE_LOOPS", 1000);
    cluster.wait_whole(Duration::from_mins(2)).await;
    let scratch = Scratch::new("ha-reads");
    let db = TestDatabase::create().await;
    let client = client();

    // With the cluster's default, synchronous_commit = on.
    let services = Services::start(&scratch, &cluster, &db).await;
    let on = write_then_read(&client, &services, loops).await;
    let served_on = standby_reads(&client, &services.configured, "served").await;
    let lagging_on = standby_reads(&client, &services.configured, "lagging").await;
    drop(services);

    // With synchronous_commit = remote_apply for the service's sessions: a commit returns once
    // the synchronous standby has applied it.
    let admin = sql(db.url()).await;
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {} SET synchronous_commit = remote_apply",
            db.name()
        ))
        .await
        .expect("remote_apply");
    let services = Services::start(&scratch, &cluster, &db).await;
    let remote_apply = write_then_read(&client, &services, loops).await;
    let served_apply = standby_reads(&client, &services.configured, "served").await;
    let lagging_apply = standby_reads(&client, &services.configured, "lagging").await;

    // The replica stops replaying: a replica read is stale at once; the configured path
    // finds it behind and reads elsewhere.
    let replica = cluster
        .roles()
        .await
        .into_iter()
        .find(|r| r.role == "replica")
        .expect("a replica")
        .name;
    let replica_admin = sql(&cluster.node_url(&replica, "postgres")).await;
    replica_admin
        .batch_execute("SELECT pg_wal_replay_pause()")
        .await
        .expect("pause replay");
    let paused = write_then_read(&client, &services, 50).await;
    replica_admin
        .batch_execute("SELECT pg_wal_replay_resume()")
        .await
        .expect("resume replay");

    eprintln!(
        "write-then-read loops: {loops} each.\n\
         synchronous_commit = on: stale reads through the replica {}, through read_urls {}; \
         standbys served {served_on}, found lagging {lagging_on}; {:.2?} per loop\n\
         synchronous_commit = remote_apply: stale through the replica {}, through read_urls {}; \
         standbys served {served_apply}, found lagging {lagging_apply}; {:.2?} per loop\n\
         replica's replay paused, 50 loops: stale through the replica {}, through read_urls {}",
        on.replica,
        on.configured,
        on.elapsed / u32::try_from(loops).expect("loops"),
        remote_apply.replica,
        remote_apply.configured,
        remote_apply.elapsed / u32::try_from(loops).expect("loops"),
        paused.replica,
        paused.configured,
    );
    assert_eq!(
        on.configured + remote_apply.configured + paused.configured,
        0,
        "stale reads through read_urls"
    );
    assert!(
        paused.replica > 0,
        "a paused replica serves stale reads to a service reading it"
    );
    assert!(
        served_on > 0 && served_apply > 0,
        "the standbys served reads"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_standby_leaves_reads_to_the_primary_and_they_stay_fresh() {
    let test = "a_lost_standby_leaves_reads_to_the_primary_and_they_stay_fresh";
    let Some(cluster) = Cluster::from_env(test) else {
        return;
    };
    cluster.wait_whole(Duration::from_mins(2)).await;
    let scratch = Scratch::new("ha-lost-standby");
    let db = TestDatabase::create().await;
    let client = client();
    let services = Services::start(&scratch, &cluster, &db).await;
    let lost = cluster.sync_standby().await.expect("a synchronous standby");
    cluster.kill(&lost).await;
    let key = create(&client, &services.writer).await;
    let path = format!("/namespaces/{key}");
    let mut slowest = Duration::ZERO;
    for i in 0..200 {
        let value = format!("value-{i}");
        let body = json!({"key": "S", "value": value});
        let (status, _) = call(&client, &services.writer, Method::POST, &path, Some(body)).await;
        assert_eq!(status, 201, "writes go on without the lost standby");
        let started = Instant::now();
        let (status, body) = call(&client, &services.configured, Method::GET, &path, None).await;
        slowest = slowest.max(started.elapsed());
        assert_eq!((status, body), (200, json!({"S": value})), "round {i}");
    }
    let unreachable = standby_reads(&client, &services.configured, "unreachable").await;
    let served = standby_reads(&client, &services.configured, "served").await;
    eprintln!(
        "{lost} lost: 200 fresh reads, slowest {slowest:.2?}; standby attempts that failed {unreachable}, reads the other standby served {served}"
    );
    assert!(unreachable > 0, "the lost standby was tried and left alone");
    cluster.start(&lost).await;
    cluster.wait_whole(Duration::from_mins(2)).await;
}

/// Reads random namespaces of `keys` through `node` with `concurrency` tasks for `duration`;
/// answers how many were served. Every answer must be 200.
async fn read_load(
    node: &Node,
    keys: &Arc<Vec<String>>,
    concurrency: usize,
    duration: Duration,
) -> u64 {
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicU64::new(0));
    let client = client();
    let mut tasks = Vec::new();
    for task in 0..concurrency {
        let (client, keys, stop, served) = (
            client.clone(),
            Arc::clone(keys),
            Arc::clone(&stop),
            Arc::clone(&served),
        );
        let base = node.base();
        tasks.push(tokio::spawn(async move {
            let mut i = task;
            while !stop.load(Ordering::Relaxed) {
                i = (i * 7 + 13) % keys.len();
                let response = client
                    .get(format!("{base}/namespaces/{}", keys[i]))
                    .bearer_auth(TOKEN)
                    .send()
                    .await
                    .expect("answered");
                assert_eq!(response.status(), 200);
                response.bytes().await.expect("body");
                served.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.expect("a reader failed");
    }
    served.load(Ordering::Relaxed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_throughput_with_the_primary_alone_and_with_standbys() {
    let test = "read_throughput_with_the_primary_alone_and_with_standbys";
    let Some(cluster) = Cluster::from_env(test) else {
        return;
    };
    let seconds = knob("HA_READ_SECS", 10);
    cluster.wait_whole(Duration::from_mins(2)).await;
    let scratch = Scratch::new("ha-throughput");
    let db = TestDatabase::create().await;
    let roles = cluster.roles().await;
    let leader = roles
        .iter()
        .find(|r| r.role == "leader")
        .expect("leader")
        .name
        .clone();
    let standbys: Vec<String> = roles
        .iter()
        .filter(|r| r.role != "leader")
        .map(|r| r.name.clone())
        .collect();
    let read_urls: Vec<String> = standbys
        .iter()
        .map(|s| cluster.node_url(s, db.name()))
        .collect();
    let tuned = |extra: Vec<(&'static str, String)>| {
        let mut settings = vec![("SECRETS__STORAGE__POOL_SIZE", "8".to_owned())];
        settings.extend(extra);
        service_env(db.url(), &settings)
    };
    let primary_only = Node::start(&scratch, &tuned(vec![])).await;
    let with_standbys = Node::start(
        &scratch,
        &tuned(vec![("SECRETS__STORAGE__READ_URLS", read_urls.join(","))]),
    )
    .await;

    // 200 namespaces of five secrets each.
    let client = client();
    let mut keys = Vec::new();
    for _ in 0..200 {
        let key = create(&client, &primary_only).await;
        let body = json!(
            (0..5)
                .map(|n| (format!("S{n}"), json!(format!("value-{n}"))))
                .collect::<serde_json::Map<_, _>>()
        );
        let (status, _) = call(
            &client,
            &primary_only,
            Method::PATCH,
            &format!("/namespaces/{key}"),
            Some(body),
        )
        .await;
        assert_eq!(status, 200);
        keys.push(key);
    }
    let keys = Arc::new(keys);
    // Warm both: every connection open, every statement prepared.
    read_load(&primary_only, &keys, 16, Duration::from_secs(1)).await;
    read_load(&with_standbys, &keys, 16, Duration::from_secs(1)).await;

    // Turn about, twice each, so that neither configuration gets the quieter moments.
    let configurations = [
        ("primary alone", &primary_only),
        ("primary + 2 standbys", &with_standbys),
    ];
    let mut totals = [Sample::default(); 2];
    for _ in 0..2 {
        for (total, (_, node)) in totals.iter_mut().zip(configurations) {
            let sample = measure(
                node,
                &keys,
                &leader,
                &standbys,
                Duration::from_secs(seconds),
            )
            .await;
            total.add(sample);
        }
    }
    let lines: Vec<String> = configurations
        .iter()
        .zip(totals)
        .map(|((label, _), total)| total.describe(label))
        .collect();
    let served = standby_reads(&client, &with_standbys, "served").await;
    let lagging = standby_reads(&client, &with_standbys, "lagging").await;
    eprintln!(
        "READ, 16 concurrent clients, {seconds} s each, one run:\n{}\nstandbys served {served}, found lagging {lagging}",
        lines.join("\n")
    );
    assert!(served > 0, "the standbys served reads");
}

/// Reads served and the CPU they took, by where it was spent.
#[derive(Clone, Copy, Default)]
struct Sample {
    served: u64,
    elapsed: Duration,
    primary: Duration,
    standbys: Duration,
    service: Duration,
}

impl Sample {
    fn add(&mut self, other: Self) {
        self.served += other.served;
        self.elapsed += other.elapsed;
        self.primary += other.primary;
        self.standbys += other.standbys;
        self.service += other.service;
    }

    fn describe(&self, label: &str) -> String {
        let per = |d: Duration| d / u32::try_from(self.served.max(1)).unwrap_or(u32::MAX);
        format!(
            "{label}: {} reads in {:.1?}, {:.0}/s; CPU per read: primary {:.1?}, standbys {:.1?}, service {:.1?}",
            self.served,
            self.elapsed,
            self.served as f64 / self.elapsed.as_secs_f64(),
            per(self.primary),
            per(self.standbys),
            per(self.service),
        )
    }
}

/// One read load through `node`, with the CPU the leader, the standbys and the service spent.
async fn measure(
    node: &Node,
    keys: &Arc<Vec<String>>,
    leader: &str,
    standbys: &[String],
    duration: Duration,
) -> Sample {
    let cpu = |name: &str| postmaster_pid(name).map_or(Duration::ZERO, cpu_of_process_tree);
    let standbys_cpu = || standbys.iter().map(|s| cpu(s)).sum::<Duration>();
    let (primary, standby, service) =
        (cpu(leader), standbys_cpu(), cpu_of_process_tree(node.pid()));
    let started = Instant::now();
    let served = read_load(node, keys, 16, duration).await;
    let sample = Sample {
        served,
        elapsed: started.elapsed(),
        primary: cpu(leader).saturating_sub(primary),
        standbys: standbys_cpu().saturating_sub(standby),
        service: cpu_of_process_tree(node.pid()).saturating_sub(service),
    };
    assert!(served > 0, "reads were served");
    sample
}
