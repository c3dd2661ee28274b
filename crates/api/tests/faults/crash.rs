//! Crash: writers hammer the real binary while it is killed with SIGKILL at a random moment,
//! round after round, on PostgreSQL and on SQLite. After every restart, each acknowledged write
//! reads back (or a later one of the same name), every secret decrypts (a torn row would fail
//! authentication and answer `integrity_error`), each name is one row, and start-up logged no
//! warning.
//!
//! `FAULTS_CRASH_ROUNDS` sets the number of rounds (default 3; `make soak` runs many).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use secrets_adapters::StoreOptions;
use secrets_adapters::sqlite::SqliteStore;
use secrets_adapters::testing::TestDatabase;

use crate::load::{Ledger, Load, Writer, create_namespaces, read_back, tracked_namespaces};
use crate::support::{
    Node, Rng, Scratch, client, count, knob, names_with_more_than_one_row, service_env, sql,
};

/// Writers per round, spread over this many namespaces.
const WRITERS: usize = 6;
const NAMESPACES: usize = 3;
/// The kill comes after a random number of acknowledged writes in this range.
const KILL_AFTER: (u64, u64) = (40, 500);

/// The store under test, and how to look at it below the API.
enum Store<'a> {
    Postgres(&'a TestDatabase),
    Sqlite(&'a Scratch),
}

impl Store<'_> {
    fn url(&self) -> String {
        match self {
            Store::Postgres(db) => db.url().to_owned(),
            Store::Sqlite(scratch) => scratch.sqlite_url(),
        }
    }

    /// Checks the store as the crash left it, before the service starts again.
    async fn after_crash(&self) {
        if let Store::Sqlite(scratch) = self {
            // SQLite's own consistency check of every page and index of the file (after it
            // recovered the write-ahead log, as any opener does).
            let store = <SqliteStore as secrets_adapters::Store>::open(
                &scratch.path().join("secrets.db"),
                StoreOptions {
                    pool_size: std::num::NonZeroUsize::MIN,
                    timeout: Duration::from_secs(10),
                },
            )
            .await
            .expect("the file opens after the crash");
            let verdict = store
                .pragma("integrity_check")
                .await
                .expect("integrity_check");
            assert_eq!(verdict, "ok", "the database file after a crash");
            secrets_adapters::Store::close(&store);
        }
    }

    /// Checks, below the API, that there is one row per name and no row the API did not show.
    async fn rows_match(&self, secrets_read: usize) {
        if let Store::Postgres(db) = self {
            let sql = sql(db.url()).await;
            let duplicated = names_with_more_than_one_row(&sql).await;
            assert_eq!(duplicated, 0, "names with more than one row");
            // Namespaces whose creation was not answered hold no secrets: their one secret is
            // written only after the answer. So every row is one the API read.
            let rows = count(&sql, "SELECT count(*) FROM secrets").await;
            assert_eq!(
                rows, secrets_read as i64,
                "secret rows against secrets read"
            );
        }
    }
}

async fn kill_repeatedly_under_write_load(store: Store<'_>, scratch: &Scratch, test: &str) {
    let mut rng = Rng::from_env(test);
    let rounds = knob("FAULTS_CRASH_ROUNDS", 3);
    let env = service_env(&store.url(), &[]);
    let client = client();
    let ledger = Arc::new(Ledger::default());

    let mut node = Node::start(scratch, &env).await;
    let keys = tracked_namespaces(&client, &node.base(), &ledger, NAMESPACES).await;
    let mut writers: Vec<Writer> = (0..WRITERS)
        .map(|id| Writer::new(id, &keys[id % NAMESPACES], 6, 2, rng.fork(), &ledger))
        .collect();

    let mut acknowledged = 0;
    for round in 1..=rounds {
        let load = Load::new(client.clone(), Arc::clone(&ledger), false);
        let kill_after = rng.between(KILL_AFTER.0, KILL_AFTER.1);
        let tasks: Vec<_> = writers
            .drain(..)
            .map(|writer| tokio::spawn(writer.run(node.base(), Arc::clone(&load))))
            .collect();
        let creator = tokio::spawn(create_namespaces(node.base(), Arc::clone(&load)));

        load.await_acks(kill_after, Duration::from_mins(1)).await;
        load.killed.store(true, Ordering::SeqCst);
        let pid = node.pid();
        node.kill();
        for task in tasks {
            writers.push(task.await.expect("a writer panicked"));
        }
        creator.await.expect("the creator panicked");
        let report = load.take_report();
        assert!(
            report.problems.is_empty(),
            "round {round}, before the kill: {:#?}",
            report.problems
        );
        acknowledged += report.acknowledged;

        store.after_crash().await;
        node = Node::start(scratch, &env).await;
        assert_ne!(node.pid(), pid);
        let complaints = node.start_up_complaints();
        assert!(
            complaints.is_empty(),
            "round {round}: start-up after the crash complained: {complaints:#?}"
        );
        let readback = read_back(&client, &node.base(), &ledger).await;
        assert!(
            readback.problems.is_empty(),
            "round {round}, killed after {kill_after} acknowledged writes: {:#?}",
            readback.problems
        );
        store.rows_match(readback.secrets).await;
    }
    eprintln!(
        "{rounds} kills; {acknowledged} acknowledged writes; {} names hold a value",
        ledger.names_with_values()
    );
    // The checks above had something to check.
    assert!(acknowledged >= rounds * KILL_AFTER.0);
    assert!(ledger.names_with_values() >= WRITERS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_repeated_sigkill_on_postgres() {
    let scratch = Scratch::new("crash-pg");
    let db = TestDatabase::create().await;
    kill_repeatedly_under_write_load(
        Store::Postgres(&db),
        &scratch,
        "acknowledged_writes_survive_repeated_sigkill_on_postgres",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_repeated_sigkill_on_sqlite() {
    let scratch = Scratch::new("crash-sqlite");
    kill_repeatedly_under_write_load(
        Store::Sqlite(&scratch),
        &scratch,
        "acknowledged_writes_survive_repeated_sigkill_on_sqlite",
    )
    .await;
}
