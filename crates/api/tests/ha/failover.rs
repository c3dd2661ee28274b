//! Failover under write load: three `secrets-service` replicas on the cluster's multi-host URL
//! (`target_session_attrs=read-write`), writers and readers through all three, while the leader
//! is lost (its Patroni and PostgreSQL killed with SIGKILL at once), or its PostgreSQL alone is
//! killed with SIGKILL (its Patroni restarts it, or another node takes over), or it is handed
//! over with `patronictl switchover`, round after round (`HA_ROUNDS`, default 5).
//!
//! Each write is entered in the fault tests' ledger (`faults/load.rs`) before it is sent, so
//! afterwards every acknowledged write must read back, through every replica: none lost. No
//! request may answer anything but success or 503 `unavailable` (no 500). Per round the test
//! prints what a client saw: 503s, the gap (the longest pause between two acknowledged writes
//! around the fault), and how long until the cluster was whole again (the old leader back as a
//! replica, a synchronous standby in place).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use secrets_adapters::testing::TestDatabase;
use tokio::task::JoinHandle;

use crate::cluster::{Cluster, median_and_max};
use crate::load::{
    Ledger, Load, Writer, create_namespaces, read_back, read_namespaces, tracked_namespaces,
};
use crate::support::{
    Node, Rng, Scratch, client, knob, names_with_more_than_one_row, service_env, sql,
};

const WRITERS: usize = 6;
const NAMESPACES: usize = 3;
/// `storage.timeout_ms` of the replicas.
const TIMEOUT: Duration = Duration::from_secs(2);
/// What an answer may take beyond the timeout on a loaded two-core machine (as in the fault
/// tests): an answer held past it is one the timeout did not bound.
const MARGIN: Duration = Duration::from_secs(3);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    /// SIGKILL to the leader's Patroni and PostgreSQL; the node is started again once another
    /// leads.
    Kill,
    /// SIGKILL to the leader's PostgreSQL alone; its Patroni lives on and restarts it, or
    /// another node takes over.
    KillPostgres,
    /// `patronictl switchover` to the synchronous standby.
    Switchover,
}

/// What one round measured.
struct Round {
    from: String,
    to: String,
    unavailable: u64,
    gap: Duration,
    recovered: Duration,
}

/// When writes were acknowledged, to find the pauses.
#[derive(Default)]
struct AckTimes(Mutex<Vec<Instant>>);

impl AckTimes {
    /// Records the moment of every acknowledged write of `load` until the load is dropped.
    fn record(load: &Arc<Load>) -> Arc<Self> {
        let times = Arc::new(Self::default());
        let mut acks = load.acks.subscribe();
        let recorded = Arc::clone(&times);
        tokio::spawn(async move {
            while acks.changed().await.is_ok() {
                let now = Instant::now();
                recorded.0.lock().expect("ack times").push(now);
            }
        });
        times
    }

    /// The longest time between two acknowledgements in `from..=to`.
    fn longest_pause(&self, from: Instant, to: Instant) -> Duration {
        let times = self.0.lock().expect("ack times");
        let window: Vec<Instant> = times
            .iter()
            .copied()
            .filter(|t| *t >= from && *t <= to)
            .collect();
        window
            .windows(2)
            .map(|pair| pair[1] - pair[0])
            .max()
            .unwrap_or_default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leaders_loss_under_write_load_loses_no_acknowledged_write_and_answers_no_500() {
    rounds_under_write_load(
        Fault::Kill,
        "the_leaders_loss_under_write_load_loses_no_acknowledged_write_and_answers_no_500",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leaders_postgres_killed_under_write_load_loses_no_acknowledged_write_and_answers_no_500()
 {
    rounds_under_write_load(
        Fault::KillPostgres,
        "the_leaders_postgres_killed_under_write_load_loses_no_acknowledged_write_and_answers_no_500",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switchovers_under_write_load_lose_no_acknowledged_write_and_answer_no_500() {
    rounds_under_write_load(
        Fault::Switchover,
        "switchovers_under_write_load_lose_no_acknowledged_write_and_answer_no_500",
    )
    .await;
}

async fn rounds_under_write_load(fault: Fault, test: &str) {
    let Some(cluster) = Cluster::from_env(test) else {
        return;
    };
    let mut rng = Rng::from_env(test);
    let rounds = knob("HA_ROUNDS", 5);
    cluster.wait_whole(Duration::from_mins(2)).await;
    let scratch = Scratch::new("ha-failover");
    let db = TestDatabase::create().await;
    let env = service_env(
        db.url(),
        &[(
            "SECRETS__STORAGE__TIMEOUT_MS",
            TIMEOUT.as_millis().to_string(),
        )],
    );
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(Node::start(&scratch, &env).await);
    }
    let client = client();
    let ledger = Arc::new(Ledger::default());
    let keys = tracked_namespaces(&client, &nodes[0].base(), &ledger, NAMESPACES).await;
    let load = Load::new(client.clone(), Arc::clone(&ledger), true);
    let acks = AckTimes::record(&load);
    let tasks = start_load(&nodes, &keys, &ledger, &load, &mut rng);

    let mut measured = Vec::new();
    for number in 1..=rounds {
        let round = one_round(&cluster, fault, &load, &acks).await;
        eprintln!(
            "{fault:?} round {number}: {} -> {}; {} answered 503; gap {:.2?}; whole again after {:.2?}",
            round.from, round.to, round.unavailable, round.gap, round.recovered,
        );
        measured.push(round);
    }

    load.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for task in tasks {
        task.await.expect("a load task panicked");
    }
    let report = load.take_report();
    // Every acknowledged write reads back, through every replica.
    let mut lost = Vec::new();
    for node in &nodes {
        lost.extend(read_back(&client, &node.base(), &ledger).await.problems);
    }
    let sql = sql(db.url()).await;
    let duplicated = names_with_more_than_one_row(&sql).await;

    let gaps: Vec<Duration> = measured.iter().map(|r| r.gap).collect();
    let recoveries: Vec<Duration> = measured.iter().map(|r| r.recovered).collect();
    let (gap_median, gap_max) = median_and_max(&gaps);
    let (recovery_median, recovery_max) = median_and_max(&recoveries);
    eprintln!(
        "{fault:?}, {rounds} rounds: {} acknowledged writes, {} lost, {} answered 500 or worse, \
         {} answered 503, slowest answer {:.2?}; gap median {gap_median:.2?}, max {gap_max:.2?}; \
         whole again after median {recovery_median:.2?}, max {recovery_max:.2?}",
        report.acknowledged,
        lost.len(),
        report.server_errors,
        report.unavailable,
        report.slowest,
    );
    if !(lost.is_empty() && report.problems.is_empty()) {
        // What the replicas said about it.
        for (n, node) in nodes.iter().enumerate() {
            let complaints: Vec<String> = node
                .log()
                .lines()
                .filter(|l| !l.contains("\"level\":\"INFO\""))
                .map(str::to_owned)
                .collect();
            eprintln!("replica {n} logged:\n{}", complaints.join("\n"));
        }
    }
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:#?}");
    assert_eq!(report.server_errors, 0, "{:#?}", report.problems);
    assert!(report.problems.is_empty(), "{:#?}", report.problems);
    assert_eq!(duplicated, 0, "names with more than one row");
    assert!(
        report.slowest < TIMEOUT + MARGIN,
        "the slowest answer took {:?}, with a storage timeout of {TIMEOUT:?}",
        report.slowest
    );
    assert!(
        report.acknowledged >= rounds * 70,
        "writes went on between the faults"
    );
    for node in &mut nodes {
        assert!(node.is_running(), "a replica exited");
    }
}

/// One fault while the load goes on: the leader is lost or switched over, another leads,
/// writes are acknowledged again, the cluster is whole again.
async fn one_round(cluster: &Cluster, fault: Fault, load: &Load, acks: &AckTimes) -> Round {
    load.await_acks(load.acks() + 50, Duration::from_mins(1))
        .await;
    let from = cluster.leader().await.expect("a leader before the round");
    let unavailable_before = load.unavailable();
    let started = Instant::now();
    match fault {
        Fault::Kill => cluster.kill(&from).await,
        Fault::KillPostgres => cluster.kill_postgres(&from).await,
        Fault::Switchover => {
            let to = cluster
                .sync_standby()
                .await
                .expect("a synchronous standby to switch over to");
            cluster.switchover(&from, &to).await;
        }
    }
    // With its Patroni alive, the node may keep leading once PostgreSQL is back.
    let to = if fault == Fault::KillPostgres {
        load.await_acks(load.acks() + 1, Duration::from_mins(1))
            .await;
        cluster.leader().await.expect("a leader after the restart")
    } else {
        cluster
            .wait_new_leader(&from, Duration::from_secs(90))
            .await
    };
    if fault == Fault::Kill {
        // As a supervisor would: the lost node comes back once another leads (before that,
        // its Patroni would find its own leader key and simply restart it as the primary).
        cluster.start(&from).await;
    }
    load.await_acks(load.acks() + 20, Duration::from_mins(1))
        .await;
    let writes_back = Instant::now();
    cluster.wait_whole(Duration::from_mins(2)).await;
    let window = started
        .checked_sub(Duration::from_secs(2))
        .unwrap_or(started);
    Round {
        from,
        to,
        unavailable: load.unavailable() - unavailable_before,
        gap: acks.longest_pause(window, writes_back),
        recovered: started.elapsed(),
    }
}

/// Writers spread over the three replicas, a creator of namespaces and a reader.
fn start_load(
    nodes: &[Node],
    keys: &[String],
    ledger: &Ledger,
    load: &Arc<Load>,
    rng: &mut Rng,
) -> Vec<JoinHandle<()>> {
    let mut tasks = Vec::new();
    for id in 0..WRITERS {
        let writer = Writer::new(id, &keys[id % NAMESPACES], 4, 1, rng.fork(), ledger);
        let (base, load) = (nodes[id % nodes.len()].base(), Arc::clone(load));
        tasks.push(tokio::spawn(async move {
            writer.run(base, load).await;
        }));
    }
    tasks.push(tokio::spawn(create_namespaces(
        nodes[0].base(),
        Arc::clone(load),
    )));
    tasks.push(tokio::spawn(read_namespaces(
        nodes[1].base(),
        keys.to_vec(),
        rng.fork(),
        Arc::clone(load),
    )));
    tasks
}
