//! PostgreSQL-specific tests of the production store: migrations, its pool, and how it behaves
//! when the database is slow, gone, or back. The behaviour every store shares is checked by the
//! conformance suite (`tests/conformance.rs`).
//!
//! Each test that needs a database gets one of its own ([`TestDatabase`]), dropped when the
//! test ends.

#[path = "common/unconditional.rs"]
mod unconditional;

use std::net::SocketAddr;
use std::time::Duration;

use self::unconditional::Unconditional as _;
use secrets_domain::model::{KeyId, NamespaceId};
use secrets_domain::ports::{
    NameIndex, NewNamespace, SealedSecret, SecretStore, StoreError, Upserted, WrappedKey,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tokio_postgres::NoTls;

use secrets_adapters::postgres::PostgresStore;
use secrets_adapters::testing::TestDatabase;
use secrets_adapters::{PoolStatus, StoreOptions};

fn options(pool_size: usize, timeout: Duration) -> StoreOptions {
    StoreOptions {
        pool_size: std::num::NonZeroUsize::new(pool_size).expect("non-zero"),
        timeout,
    }
}

fn namespace() -> NewNamespace {
    let id = uuid::Uuid::new_v4();
    let mut access = [0u8; 32];
    access[..16].copy_from_slice(id.as_bytes());
    NewNamespace {
        id: NamespaceId::from_uuid(id),
        access_hash: secrets_domain::model::AccessKeyHash::from_bytes(access),
        data_key: WrappedKey {
            key_id: KeyId::new("kek-a"),
            ciphertext: b"wrapped".to_vec(),
        },
    }
}

fn secret() -> SealedSecret {
    SealedSecret {
        index: NameIndex([7; 32]),
        name: b"name".to_vec(),
        value: b"value".to_vec(),
    }
}

/// The address of the test server, for proxies in front of it.
async fn server_address(database: &TestDatabase) -> SocketAddr {
    let config: tokio_postgres::Config = database.url().parse().expect("a valid URL");
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        _ => "127.0.0.1".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    tokio::net::lookup_host((host.as_str(), port))
        .await
        .expect("resolve the test server")
        .next()
        .expect("an address")
}

/// The test database's connection string, but through `127.0.0.1:port`.
fn via_port(database: &TestDatabase, port: u16) -> String {
    let config: tokio_postgres::Config = database.url().parse().expect("a valid URL");
    let quote = |value: &str| format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"));
    let mut parts = vec![
        "host=127.0.0.1".to_owned(),
        format!("port={port}"),
        format!("dbname={}", quote(database.name())),
    ];
    if let Some(user) = config.get_user() {
        parts.push(format!("user={}", quote(user)));
    }
    if let Some(password) = config.get_password() {
        parts.push(format!(
            "password={}",
            quote(&String::from_utf8_lossy(password))
        ));
    }
    parts.join(" ")
}

/// A TCP proxy to `target` on `listener`. Aborting the task drops the listener and every
/// proxied connection with it: the database "goes away" without touching the real server.
fn proxy(listener: TcpListener, target: SocketAddr) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut connections = JoinSet::new();
        while let Ok((mut inbound, _)) = listener.accept().await {
            connections.spawn(async move {
                if let Ok(mut outbound) = TcpStream::connect(target).await {
                    // Either side ending the connection, cleanly or not, ends the copy; which
                    // one it was is of no interest to the tests.
                    drop(tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await);
                }
            });
        }
    })
}

fn assert_unavailable<T: std::fmt::Debug>(result: &Result<T, StoreError>) {
    assert!(
        matches!(result, Err(StoreError::Unavailable(_))),
        "{result:?}"
    );
}

#[tokio::test]
async fn migrations_apply_once_even_when_replicas_run_them_at_once() {
    let database = TestDatabase::create().await;
    let stores: Vec<_> = (0..4)
        .map(|_| {
            PostgresStore::new(database.url(), options(1, Duration::from_secs(10))).expect("pool")
        })
        .collect();
    // Every embedded migration is pending on a fresh database, and none once it is migrated.
    let embedded: Vec<i64> = stores[0]
        .pending_migrations()
        .await
        .expect("read what is pending")
        .iter()
        .map(|m| m.version)
        .collect();
    assert_eq!(embedded.first(), Some(&1));

    let results = futures_util::future::join_all(stores.iter().map(PostgresStore::migrate)).await;
    for result in results {
        result.expect("every migrator succeeds");
    }
    stores[0].migrate().await.expect("and again later");

    let client = connect(&database).await;
    let versions: Vec<i64> = client
        .query(
            "SELECT version FROM schema_migrations ORDER BY version",
            &[],
        )
        .await
        .expect("read the record")
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(versions, embedded, "each applied exactly once");
    assert!(
        stores[0]
            .pending_migrations()
            .await
            .expect("read what is pending")
            .is_empty()
    );
    stores[0].ping().await.expect("the store works");
}

#[tokio::test]
async fn building_the_store_does_not_connect() {
    // Nothing listens on port 1: only using the store finds that out.
    let store = PostgresStore::new(
        "postgres://secrets@127.0.0.1:1/secrets",
        options(4, Duration::from_secs(2)),
    )
    .expect("the pool is built without the database");
    assert_eq!(
        store.pool_status(),
        PoolStatus {
            max_size: 4,
            size: 0,
            available: 0,
            waiting: 0
        }
    );
    let start = Instant::now();
    assert_unavailable(&store.ping().await);
    assert!(start.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn bad_settings_are_refused_when_the_store_is_built() {
    let result = PostgresStore::new(
        "postgres://h/db?port=notanumber",
        options(4, Duration::from_secs(1)),
    );
    assert!(matches!(result, Err(StoreError::Internal(_))), "{result:?}");
}

#[tokio::test]
async fn debug_output_shows_no_url_or_password() {
    let store = PostgresStore::new(
        "postgres://admin:hunter2@db.internal:5432/secrets",
        options(4, Duration::from_secs(1)),
    )
    .expect("pool");
    let printed = format!("{store:?}");
    for leak in ["hunter2", "admin", "db.internal", "5432"] {
        assert!(!printed.contains(leak), "{printed}");
    }
}

#[tokio::test]
async fn a_server_that_never_answers_is_unavailable_within_the_timeout() {
    // Accepts connections and never says a word: a hung server, or a black-holed network.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("address").port();
    let silent = tokio::spawn(async move {
        let mut held = vec![];
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let timeout = Duration::from_millis(500);
    let store = PostgresStore::new(
        &format!("host=127.0.0.1 port={port} user=secrets dbname=secrets"),
        options(2, timeout),
    )
    .expect("pool");

    let start = Instant::now();
    assert_unavailable(&store.read_namespace(&namespace().access_hash).await);
    let elapsed = start.elapsed();
    assert!(
        elapsed >= timeout / 2 && elapsed < timeout * 3,
        "{elapsed:?}"
    );
    silent.abort();
}

#[tokio::test]
async fn an_operation_that_overruns_the_timeout_is_unavailable_and_writes_nothing() {
    let database = TestDatabase::create().await;
    // Another session holds the namespace's lock, so the upsert waits past its timeout.
    let (store, ns, blocker) =
        store_with_a_locked_namespace(&database, Duration::from_millis(700)).await;

    let start = Instant::now();
    assert_unavailable(&store.upsert(ns.id, &secret(), 10).await);
    assert!(start.elapsed() < Duration::from_secs(2));
    // Two deadlines race here, both the store's timeout: ours, which closes the connection so
    // that it leaves the pool, and the server's (`statement_timeout`), which cancels the lock
    // statement, after which the COMMIT sent in the same pipeline ends the aborted transaction.
    // Either way no session of the store is left inside a transaction, and a connection the
    // pool still holds serves the next caller. (The blocker is idle in its transaction too.)
    let blocker_pid: i32 = blocker
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .expect("pid")
        .get(0);
    let observer = connect(&database).await;
    let stuck: i64 = observer
        .query_one(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> $1 \
               AND state LIKE 'idle in transaction%'",
            &[&blocker_pid],
        )
        .await
        .expect("sessions")
        .get(0);
    assert_eq!(stuck, 0);
    assert!(store.pool_status().size <= 1);
    assert!(
        store
            .find_namespace(&ns.access_hash)
            .await
            .expect("read")
            .is_some()
    );

    blocker
        .batch_execute("ROLLBACK")
        .await
        .expect("release the lock");
    assert_eq!(
        store.get_secret(ns.id, &secret().index).await.expect("get"),
        None
    );
    assert_eq!(
        store.upsert(ns.id, &secret(), 10).await.expect("upsert"),
        Upserted::Created
    );
}

#[tokio::test]
async fn writes_abandoned_at_the_timeout_stop_waiting_on_the_server_too() {
    let database = TestDatabase::create().await;
    let timeout = Duration::from_millis(500);
    // Another session holds the namespace's lock for as long as this test wants.
    let (store, ns, blocker) = store_with_a_locked_namespace(&database, timeout).await;
    for _ in 0..3 {
        assert_unavailable(&store.upsert(ns.id, &secret(), 10).await);
    }

    // The server does not see the store close a connection while the session waits for a
    // lock; the transaction's own statement timeout ends the wait instead, so abandoned writes
    // do not pile up as waiting sessions while the lock is held.
    // (Observed from a session of its own: one in a transaction sees a frozen view.)
    let observer = connect(&database).await;
    let deadline = Instant::now() + timeout * 10;
    loop {
        let waiters = lock_waiters(&observer).await;
        if waiters == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{waiters} abandoned writes still wait for the lock"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    blocker
        .batch_execute("ROLLBACK")
        .await
        .expect("release the lock");
    assert_eq!(
        store.get_secret(ns.id, &secret().index).await.expect("get"),
        None,
        "no abandoned write was applied"
    );
}

/// A session of its own on `database`.
async fn connect(database: &TestDatabase) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(database.url(), NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    client
}

/// A migrated store of one connection holding one namespace, and another session inside a
/// transaction that holds the namespace's row lock (`ROLLBACK` on it releases the lock).
async fn store_with_a_locked_namespace(
    database: &TestDatabase,
    timeout: Duration,
) -> (PostgresStore, NewNamespace, tokio_postgres::Client) {
    let store = PostgresStore::new(database.url(), options(1, timeout)).expect("pool");
    store.migrate().await.expect("migrate");
    let ns = namespace();
    store
        .create_namespaces(std::slice::from_ref(&ns))
        .await
        .expect("create");
    let blocker = connect(database).await;
    blocker.batch_execute("BEGIN").await.expect("begin");
    blocker
        .execute(
            "SELECT 1 FROM namespaces WHERE id = $1 FOR UPDATE",
            &[&ns.id.as_uuid()],
        )
        .await
        .expect("lock");
    (store, ns, blocker)
}

/// Sessions of the current database waiting for a lock.
async fn lock_waiters(client: &tokio_postgres::Client) -> i64 {
    client
        .query_one(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
            &[],
        )
        .await
        .expect("pg_stat_activity")
        .get(0)
}

#[tokio::test]
async fn the_pool_recovers_by_itself_when_the_database_comes_back() {
    let database = TestDatabase::create().await;
    let target = server_address(&database).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("address").port();
    let running = proxy(listener, target);

    let timeout = Duration::from_secs(1);
    let store = PostgresStore::new(&via_port(&database, port), options(2, timeout)).expect("pool");
    store.migrate().await.expect("migrate");
    let ns = namespace();
    store
        .create_namespaces(std::slice::from_ref(&ns))
        .await
        .expect("create");

    // Down: the listener and every open connection go.
    running.abort();
    assert!(running.await.is_err_and(|e| e.is_cancelled()));
    for _ in 0..2 {
        let start = Instant::now();
        assert_unavailable(&store.read_namespace(&ns.access_hash).await);
        assert!(start.elapsed() < timeout * 2);
    }

    // Back, on the same address: the same store works again, no restart.
    let listener = TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind again");
    let running = proxy(listener, target);
    assert_eq!(
        store.upsert(ns.id, &secret(), 10).await.expect("upsert"),
        Upserted::Created
    );
    let (_, secrets) = store
        .read_namespace(&ns.access_hash)
        .await
        .expect("read")
        .expect("the namespace");
    assert_eq!(secrets.len(), 1);
    running.abort();
}

#[tokio::test]
async fn the_pool_reports_its_connections() {
    let database = TestDatabase::create().await;
    let store =
        PostgresStore::new(database.url(), options(3, Duration::from_secs(5))).expect("pool");
    store.ping().await.expect("ping");
    assert_eq!(
        store.pool_status(),
        PoolStatus {
            max_size: 3,
            size: 1,
            available: 1,
            waiting: 0
        }
    );
}

#[tokio::test]
async fn a_connection_on_a_read_only_server_is_unavailable_and_is_not_used_again() {
    let database = TestDatabase::create().await;
    PostgresStore::new(database.url(), options(1, Duration::from_secs(5)))
        .expect("pool")
        .migrate()
        .await
        .expect("migrate");
    // From now on the database's sessions are read-only, as on a standby or a demoted primary.
    let admin = connect(&database).await;
    let name = database.name();
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {name} SET default_transaction_read_only = on"
        ))
        .await
        .expect("read-only sessions");
    // One connection, so that a read-only one kept in the pool would serve the next caller.
    let store =
        PostgresStore::new(database.url(), options(1, Duration::from_secs(5))).expect("pool");
    let ns = namespace();
    assert_unavailable(&store.create_namespaces(std::slice::from_ref(&ns)).await);
    let guard = secrets_domain::ports::Guard::default();
    assert_unavailable(&store.upsert_secret(ns.id, &secret(), 10, &guard).await);

    // Several connections to the read-only server (reads work there): the first refused write
    // closes them all, not one per failed caller.
    let wide =
        PostgresStore::new(database.url(), options(4, Duration::from_secs(5))).expect("pool");
    let read = || wide.find_namespace(&ns.access_hash);
    let (a, b, c, d) = tokio::join!(read(), read(), read(), read());
    for found in [a, b, c, d] {
        assert!(found.expect("a read on a read-only server").is_none());
    }
    let opened = wide.pool_status().size;
    assert!(opened >= 2, "{opened} connections opened");
    assert_unavailable(&wide.create_namespaces(std::slice::from_ref(&ns)).await);
    assert_eq!(
        wide.pool_status().size,
        0,
        "every connection to it was closed"
    );

    // The server takes writes again (as the new primary would): a fresh connection writes.
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {name} RESET default_transaction_read_only"
        ))
        .await
        .expect("writable sessions");
    store
        .create_namespaces(std::slice::from_ref(&ns))
        .await
        .expect("a new connection, not the read-only one, takes the write");
    assert_eq!(
        store
            .upsert_secret(ns.id, &secret(), 10, &guard)
            .await
            .expect("upsert")
            .upserted,
        Upserted::Created
    );
    let rows = admin
        .query_one("SELECT count(*) FROM namespaces", &[])
        .await
        .expect("count");
    assert_eq!(rows.get::<_, i64>(0), 1);
}

/// A database that 0001 made and filled (an older binary, or anything that writes rows without
/// naming the new columns, such as an import) is migrated to revisions in place: its namespaces
/// start at revision 1 and its secrets at version 1, both valid, and the next write moves on.
#[tokio::test]
async fn rows_written_before_revisions_existed_start_at_a_valid_revision() {
    let database = TestDatabase::create().await;
    let client = connect(&database).await;
    client
        .batch_execute(concat!(
            "CREATE TABLE schema_migrations (version bigint PRIMARY KEY, \
             applied_at timestamptz NOT NULL DEFAULT now());",
            include_str!("../../../migrations/postgres/0001_init.sql"),
            "INSERT INTO schema_migrations (version) VALUES (1);"
        ))
        .await
        .expect("the schema as 0001 left it");
    let ns = namespace();
    let old = secret();
    client
        .execute(
            "INSERT INTO namespaces (id, access_hash, kek_id, wrapped_dek) VALUES ($1, $2, $3, $4)",
            &[
                &ns.id.as_uuid(),
                &ns.access_hash.as_bytes().as_slice(),
                &ns.data_key.key_id.as_str(),
                &ns.data_key.ciphertext,
            ],
        )
        .await
        .expect("a namespace");
    client
        .execute(
            "INSERT INTO secrets (namespace_id, name_index, name_ct, value_ct, created_at, \
             updated_at) VALUES ($1, $2, $3, $4, now(), now())",
            &[
                &ns.id.as_uuid(),
                &old.index.0.as_slice(),
                &old.name,
                &old.value,
            ],
        )
        .await
        .expect("a secret");

    let store =
        PostgresStore::new(database.url(), options(2, Duration::from_secs(10))).expect("pool");
    let report = store.migrate().await.expect("migrate");
    assert!(
        report.applied.iter().any(|m| m.version == 2),
        "the revisions' migration ran"
    );
    let (id, revision) = store
        .find_revision(&ns.access_hash)
        .await
        .expect("find")
        .expect("the namespace is there");
    assert_eq!((id, revision.get()), (ns.id, 1));
    let stored = store.get_secret(ns.id, &old.index).await.expect("get");
    assert_eq!(stored.map(|s| s.version.get()), Some(1));
    let written = store
        .upsert_secret(
            ns.id,
            &secret(),
            10,
            &secrets_domain::ports::Guard::default(),
        )
        .await
        .expect("a write");
    assert_eq!(written.revision.get(), 2);
}
