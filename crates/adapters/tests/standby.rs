//! Reads on standbys (`PostgresStore::with_standbys`, `storage.read_urls`) on a real streaming
//! standby of a throwaway primary: the standby serves the hot read once it has caught up, and
//! never an answer older than the primary's, also while its replay is paused behind a write, a
//! deletion and an access-key replacement; a standby that cannot be reached rests, and reads go
//! to the primary. (`make ha` runs the same over a Patroni cluster, through the real binary.)

#[path = "common/replication.rs"]
mod replication;

use std::time::{Duration, Instant};

use secrets_adapters::postgres::PostgresStore;
use secrets_adapters::testing::TestDatabase;
use secrets_adapters::{ReadRouting, StoreOptions};
use secrets_domain::Condition;
use secrets_domain::model::{AccessKeyHash, KeyId, NamespaceId};
use secrets_domain::ports::{
    Guard, NameIndex, NewNamespace, SealedSecret, SecretStore, WrappedKey,
};

use replication::{Replication, connect};

fn options() -> StoreOptions {
    StoreOptions {
        pool_size: std::num::NonZeroUsize::new(2).expect("non-zero"),
        timeout: Duration::from_secs(5),
    }
}

fn namespace() -> NewNamespace {
    let id = uuid::Uuid::new_v4();
    NewNamespace {
        id: NamespaceId::from_uuid(id),
        access_hash: hash(),
        data_key: WrappedKey {
            key_id: KeyId::new("kek-a"),
            ciphertext: b"wrapped".to_vec(),
        },
    }
}

fn hash() -> AccessKeyHash {
    let mut bytes = [0u8; 32];
    bytes[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    AccessKeyHash::from_bytes(bytes)
}

fn secret(value: &str) -> SealedSecret {
    SealedSecret {
        index: NameIndex([7; 32]),
        name: b"name".to_vec(),
        value: value.as_bytes().to_vec(),
    }
}

/// The value of the one secret the hot read finds for `access`, `None` when there is no
/// namespace.
async fn read(store: &PostgresStore, access: &AccessKeyHash) -> Option<Vec<u8>> {
    let (_, secrets) = store.read_namespace(access).await.expect("the read")?;
    Some(
        secrets
            .first()
            .map(|s| s.sealed.value.clone())
            .unwrap_or_default(),
    )
}

/// Reads until a standby served one, at most ten seconds; every answer must be `expected`.
async fn read_until_a_standby_serves(
    store: &PostgresStore,
    access: &AccessKeyHash,
    expected: Option<&[u8]>,
) -> ReadRouting {
    let before = store.read_routing().standby;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert_eq!(read(store, access).await.as_deref(), expected);
        if store.read_routing().standby > before {
            return store.read_routing();
        }
        assert!(
            Instant::now() < deadline,
            "no read was served by the standby: {:?}",
            store.read_routing()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Pauses the standby's replay, and waits until it has.
async fn pause_replay(standby: &tokio_postgres::Client) {
    standby
        .batch_execute("SELECT pg_wal_replay_pause()")
        .await
        .expect("pause replay");
    let deadline = Instant::now() + Duration::from_secs(10);
    while standby
        .query_one("SELECT pg_get_wal_replay_pause_state()", &[])
        .await
        .expect("pause state")
        .get::<_, String>(0)
        != "paused"
    {
        assert!(Instant::now() < deadline, "replay did not pause");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_serves_the_hot_read_only_when_it_has_caught_up_with_the_primary() {
    let pair = Replication::start();
    connect(&pair.primary_url("postgres"))
        .await
        .batch_execute("CREATE DATABASE secrets")
        .await
        .expect("create the database");
    let store = PostgresStore::with_standbys(
        &pair.primary_url("secrets"),
        &[&pair.standby_url("secrets")],
        options(),
    )
    .expect("pools");
    store.migrate().await.expect("migrate");
    let kept = namespace();
    let deleted = namespace();
    let renamed = namespace();
    store
        .create_namespaces(&[kept.clone(), deleted.clone(), renamed.clone()])
        .await
        .expect("create");
    store
        .upsert_secret(kept.id, &secret("one"), 10, &Guard::default())
        .await
        .expect("write");
    pair.caught_up(Duration::from_secs(10)).await;
    read_until_a_standby_serves(&store, &kept.access_hash, Some(b"one")).await;

    // The standby stops replaying: what the primary does next, it does not see.
    let standby = connect(&pair.standby_url("postgres")).await;
    pause_replay(&standby).await;
    let written = store
        .upsert_secret(kept.id, &secret("two"), 10, &Guard::default())
        .await
        .expect("write");
    assert!(
        store
            .delete_namespace(&deleted.access_hash, &Condition::default())
            .await
            .expect("delete")
            .is_some()
    );
    let new_hash = hash();
    assert!(
        store
            .replace_access_hash(&renamed.access_hash, &new_hash)
            .await
            .expect("replace")
            .is_some()
    );
    let before = store.read_routing();
    assert_eq!(
        read(&store, &kept.access_hash).await.as_deref(),
        Some(&b"two"[..])
    );
    assert_eq!(
        read(&store, &deleted.access_hash).await,
        None,
        "a deleted namespace is gone"
    );
    assert_eq!(
        read(&store, &renamed.access_hash).await,
        None,
        "a replaced access key is refused"
    );
    assert_eq!(read(&store, &new_hash).await.as_deref(), Some(&b""[..]));
    // A conditional read's first step, the revision, is as fresh.
    let revision = store.find_revision(&kept.access_hash).await.expect("find");
    assert_eq!(revision, Some((kept.id, written.revision)));
    assert_eq!(
        store
            .find_revision(&deleted.access_hash)
            .await
            .expect("find"),
        None
    );
    let after = store.read_routing();
    assert_eq!(
        after.standby, before.standby,
        "the paused standby served nothing"
    );
    assert_eq!(
        after.lagging,
        before.lagging + 6,
        "each read found it behind: {after:?}"
    );

    // Replay resumes: once it has caught up, the standby serves again, the new state.
    standby
        .batch_execute("SELECT pg_wal_replay_resume()")
        .await
        .expect("resume replay");
    read_until_a_standby_serves(&store, &kept.access_hash, Some(b"two")).await;
    assert_eq!(read(&store, &deleted.access_hash).await, None);
}

#[tokio::test]
async fn a_standby_that_cannot_be_reached_rests_and_reads_go_to_the_primary() {
    let database = TestDatabase::create().await;
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("a port")
        .local_addr()
        .expect("address")
        .port();
    let store = PostgresStore::with_standbys(
        database.url(),
        &[&format!("postgres://postgres@127.0.0.1:{closed}/secrets")],
        options(),
    )
    .expect("pools");
    store.migrate().await.expect("migrate");
    let ns = namespace();
    store
        .create_namespaces(std::slice::from_ref(&ns))
        .await
        .expect("create");
    store
        .upsert_secret(ns.id, &secret("value"), 10, &Guard::default())
        .await
        .expect("write");

    let started = Instant::now();
    assert_eq!(
        read(&store, &ns.access_hash).await.as_deref(),
        Some(&b"value"[..])
    );
    assert_eq!(
        read(&store, &ns.access_hash).await.as_deref(),
        Some(&b"value"[..])
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let routing = store.read_routing();
    // Tried once, then left alone: the second read went straight to the primary.
    assert_eq!(routing.unreachable, 1, "{routing:?}");
    assert_eq!(routing.standby, 0);
}
