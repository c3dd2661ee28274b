//! SQLite-specific tests of the embedded store: connection settings, durability across
//! reopening, concurrency, and the error mapping. The behaviour every store shares is checked by
//! the conformance suite; the round trips here are a smaller, SQLite-flavoured set.
//!
//! Each test works on its own database file under the system's temp directory, removed (with
//! its `-wal` and `-shm` companions) when the test ends, also when it panics.

// A test crate's root looks for modules beside it, hence the path.
#[path = "common/sqlite_file.rs"]
mod sqlite_file;
#[path = "common/unconditional.rs"]
mod unconditional;

use std::collections::BTreeMap;
use std::time::Duration;

use self::unconditional::Unconditional as _;
use secrets_adapters::StoreOptions;
use secrets_adapters::sqlite::SqliteStore;
use secrets_domain::model::{AccessKeyHash, KeyId, NamespaceId};
use secrets_domain::ports::{
    KeyCheck, NameIndex, NamespaceRecord, NewNamespace, SealedSecret, SecretStore, StoreError,
    Upserted, WrappedKey,
};
use uuid::Uuid;

use self::sqlite_file::TempDb;

fn options() -> StoreOptions {
    StoreOptions {
        pool_size: std::num::NonZeroUsize::new(4).expect("non-zero"),
        timeout: Duration::from_secs(10),
    }
}

async fn open(db: &TempDb) -> SqliteStore {
    let store = SqliteStore::open(db.path(), options()).await.expect("open");
    store.migrate().await.expect("migrate");
    store
}

/// A migrated store holding one empty namespace.
async fn open_with_namespace(db: &TempDb) -> (SqliteStore, NewNamespace) {
    let store = open(db).await;
    let ns = namespace("kek-a");
    store
        .create_namespaces(std::slice::from_ref(&ns))
        .await
        .expect("create");
    (store, ns)
}

fn namespace(key_id: &str) -> NewNamespace {
    NewNamespace {
        id: NamespaceId::from_uuid(Uuid::new_v4()),
        access_hash: AccessKeyHash::from_bytes(random32()),
        data_key: WrappedKey {
            key_id: KeyId::new(key_id),
            ciphertext: Uuid::new_v4().as_bytes().to_vec(),
        },
    }
}

fn random32() -> [u8; 32] {
    let mut bytes = [0u8; 32];
    bytes[..16].copy_from_slice(Uuid::new_v4().as_bytes());
    bytes[16..].copy_from_slice(Uuid::new_v4().as_bytes());
    bytes
}

fn index(n: u32) -> NameIndex {
    secret(n, "").index
}

fn secret(n: u32, value: &str) -> SealedSecret {
    let mut index = [0u8; 32];
    index[..4].copy_from_slice(&n.to_be_bytes());
    SealedSecret {
        index: NameIndex(index),
        name: format!("name-{n}").into_bytes(),
        value: value.as_bytes().to_vec(),
    }
}

async fn values(store: &SqliteStore, ns: &NewNamespace) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let (_, secrets) = store
        .read_namespace(&ns.access_hash)
        .await
        .expect("read")
        .expect("namespace exists");
    secrets
        .into_iter()
        .map(|s| (s.sealed.name, s.sealed.value))
        .collect()
}

#[tokio::test]
async fn every_connection_runs_with_wal_full_sync_and_foreign_keys() {
    let db = TempDb::new();
    let store = open(&db).await;
    // Hold several connections at once so the pool has to open more than the first one.
    let mut answers = futures_join(&store).await;
    // And the writer's own connection, where every write commits.
    answers.push((
        store.writer_pragma("journal_mode").await.expect("pragma"),
        store.writer_pragma("synchronous").await.expect("pragma"),
        store.writer_pragma("foreign_keys").await.expect("pragma"),
        store.writer_pragma("busy_timeout").await.expect("pragma"),
        store.writer_pragma("cache_size").await.expect("pragma"),
    ));
    for (journal, sync, fks, busy, cache) in answers {
        assert_eq!(journal, "wal");
        assert_eq!(sync, "2", "synchronous=FULL");
        assert_eq!(fks, "1");
        assert_eq!(busy, "10000");
        assert_eq!(cache, "-512", "a page cache of 512 KiB");
    }
    assert!(store.pool_status().size >= 1);
    assert_eq!(store.pool_status().max_size, 4);
}

async fn futures_join(store: &SqliteStore) -> Vec<(String, String, String, String, String)> {
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            (
                store.pragma("journal_mode").await.expect("pragma"),
                store.pragma("synchronous").await.expect("pragma"),
                store.pragma("foreign_keys").await.expect("pragma"),
                store.pragma("busy_timeout").await.expect("pragma"),
                store.pragma("cache_size").await.expect("pragma"),
            )
        }));
    }
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.expect("task"));
    }
    answers
}

#[tokio::test]
async fn a_pragma_name_must_be_an_identifier() {
    let db = TempDb::new();
    let store = open(&db).await;
    assert!(matches!(
        store.pragma("journal_mode; DROP TABLE secrets").await,
        Err(StoreError::Internal(_))
    ));
}

#[tokio::test]
async fn the_file_and_its_directory_are_created_and_data_survives_reopening() {
    let dir = TempDb::new();
    let path = dir.path().join("nested").join("secrets.db");
    let ns = namespace("kek-a");
    {
        let store = SqliteStore::open(&path, options()).await.expect("open");
        store.migrate().await.expect("migrate");
        store
            .create_namespaces(std::slice::from_ref(&ns))
            .await
            .expect("create");
        store
            .upsert(ns.id, &secret(1, "v1"), 10)
            .await
            .expect("upsert");
        store
            .add_key_check(&KeyCheck {
                key_id: KeyId::new("kek-a"),
                ciphertext: b"check".to_vec(),
            })
            .await
            .expect("check");
        store.close();
    }
    let store = SqliteStore::open(&path, options()).await.expect("reopen");
    store.migrate().await.expect("migrate again");
    assert_eq!(
        values(&store, &ns).await,
        BTreeMap::from([(b"name-1".to_vec(), b"v1".to_vec())])
    );
    assert_eq!(store.key_checks().await.expect("checks").len(), 1);
}

#[cfg(unix)]
#[tokio::test]
async fn the_database_and_its_companion_files_are_readable_by_their_owner_only() {
    use std::os::unix::fs::PermissionsExt as _;
    let db = TempDb::new();
    // A write, so that the `-wal` file exists; the store stays open while the files are checked.
    let (_store, _ns) = open_with_namespace(&db).await;
    for suffix in ["", "-wal"] {
        let mut file = db.path().to_path_buf().into_os_string();
        file.push(suffix);
        let mode = std::fs::metadata(&file)
            .expect("exists")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{}", file.to_string_lossy());
    }
}

#[tokio::test]
async fn migrating_twice_changes_nothing() {
    let db = TempDb::new();
    let (store, ns) = open_with_namespace(&db).await;
    store
        .upsert(ns.id, &secret(1, "v"), 10)
        .await
        .expect("upsert");
    store.migrate().await.expect("second migrate");
    store.migrate().await.expect("third migrate");
    assert_eq!(values(&store, &ns).await.len(), 1);
}

#[tokio::test]
async fn a_path_that_cannot_be_a_database_is_unavailable() {
    // A directory cannot be opened as a database file.
    let dir = std::env::temp_dir();
    let err = SqliteStore::open(&dir, options())
        .await
        .expect_err("not a file");
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
}

#[tokio::test]
async fn namespaces_are_found_by_their_access_hash() {
    let db = TempDb::new();
    let (store, ns) = open_with_namespace(&db).await;

    let found = store.find_namespace(&ns.access_hash).await.expect("find");
    let found = found.expect("found");
    assert_eq!((found.id, &found.data_key), (ns.id, &ns.data_key));
    let read = store.read_namespace(&ns.access_hash).await.expect("read");
    assert_eq!(read, Some((found, Vec::new())));

    let unknown = namespace("x").access_hash;
    assert_eq!(store.find_namespace(&unknown).await.expect("find"), None);
    assert_eq!(store.read_namespace(&unknown).await.expect("read"), None);
    store.ping().await.expect("ping");
}

#[tokio::test]
async fn secrets_round_trip_with_their_timestamps() {
    let db = TempDb::new();
    let (store, ns) = open_with_namespace(&db).await;
    let upsert = |n, value| {
        let store = store.clone();
        async move { store.upsert(ns.id, &secret(n, value), 10).await }
    };
    let get = |n| {
        let store = store.clone();
        async move { store.get_secret(ns.id, &index(n)).await.expect("get") }
    };

    assert_eq!(upsert(1, "a").await.expect("insert"), Upserted::Created);
    let first = get(1).await.expect("found");
    assert_eq!(first.sealed, secret(1, "a"));
    assert_eq!(first.created_at, first.updated_at);
    // Stored with microsecond precision.
    assert_eq!(first.created_at.nanosecond() % 1_000, 0);

    assert_eq!(upsert(1, "b").await.expect("update"), Upserted::Updated);
    let second = get(1).await.expect("found");
    assert_eq!(second.sealed, secret(1, "b"));
    assert_eq!(second.created_at, first.created_at);
    assert!(second.updated_at > first.updated_at);

    // The hot read returns everything, in name-index order.
    upsert(3, "c").await.expect("insert");
    upsert(2, "d").await.expect("insert");
    let (_, secrets) = store
        .read_namespace(&ns.access_hash)
        .await
        .expect("read")
        .expect("found");
    let indexes: Vec<_> = secrets.iter().map(|s| s.sealed.index).collect();
    assert_eq!(indexes, [index(1), index(2), index(3)]);
    assert_eq!(secrets[0], second);

    let delete = |n| {
        let store = store.clone();
        async move { store.delete(ns.id, &index(n)).await.expect("delete") }
    };
    assert!(delete(2).await);
    assert!(!delete(2).await, "already gone");
    assert_eq!(get(2).await, None);
    assert!(get(3).await.is_some());
}

#[tokio::test]
async fn writes_to_a_missing_namespace_are_refused() {
    let db = TempDb::new();
    let store = open(&db).await;
    let missing = NamespaceId::from_uuid(Uuid::new_v4());
    assert!(matches!(
        store.upsert(missing, &secret(1, "a"), 10).await,
        Err(StoreError::NamespaceNotFound)
    ));
    assert!(matches!(
        store.patch(missing, &[secret(1, "a")], &[], 10).await,
        Err(StoreError::NamespaceNotFound)
    ));
    assert!(!store.delete(missing, &index(1)).await.expect("delete"));
}

#[tokio::test]
async fn a_patch_is_applied_whole_or_not_at_all() {
    let db = TempDb::new();
    let (store, ns) = open_with_namespace(&db).await;
    for n in 1..=3 {
        store
            .upsert(ns.id, &secret(n, "old"), 3)
            .await
            .expect("insert");
    }

    let after = store
        .patch(
            ns.id,
            &[secret(1, "new"), secret(4, "four")],
            &[index(2), index(9)],
            3,
        )
        .await
        .expect("patch");
    let seen: Vec<_> = after
        .iter()
        .map(|s| (s.sealed.name.clone(), s.sealed.value.clone()))
        .collect();
    assert_eq!(
        seen,
        [
            (b"name-1".to_vec(), b"new".to_vec()),
            (b"name-3".to_vec(), b"old".to_vec()),
            (b"name-4".to_vec(), b"four".to_vec()),
        ]
    );
    let (_, read) = store
        .read_namespace(&ns.access_hash)
        .await
        .expect("read")
        .expect("found");
    assert_eq!(read, after, "the patch's answer is what is stored");

    // Growing past the limit fails and leaves everything as it was.
    let err = store
        .patch(ns.id, &[secret(1, "lost"), secret(5, "five")], &[], 3)
        .await
        .expect_err("full");
    assert!(matches!(err, StoreError::NamespaceFull));
    assert_eq!(
        store
            .read_namespace(&ns.access_hash)
            .await
            .expect("read")
            .expect("found")
            .1,
        after
    );

    // Shrinking an over-full namespace (the limit was lowered) is allowed.
    let shrunk = store
        .patch(ns.id, &[secret(1, "x")], &[index(3)], 1)
        .await
        .expect("shrink");
    assert_eq!(shrunk.len(), 2);
}

#[tokio::test]
async fn deleting_a_namespace_deletes_its_secrets() {
    let db = TempDb::new();
    let (store, ns) = open_with_namespace(&db).await;
    store
        .upsert(ns.id, &secret(1, "a"), 10)
        .await
        .expect("insert");
    assert!(store.drop_namespace(&ns.access_hash).await.expect("delete"));
    assert!(
        !store
            .drop_namespace(&ns.access_hash)
            .await
            .expect("delete again")
    );
    assert!(
        store
            .get_secret(ns.id, &index(1))
            .await
            .expect("get")
            .is_none()
    );
    // Recreating the same id shows the old secrets are gone, not merely hidden.
    store
        .create_namespaces(std::slice::from_ref(&ns))
        .await
        .expect("recreate");
    assert!(values(&store, &ns).await.is_empty());
}

#[tokio::test]
async fn taken_ids_and_access_hashes_conflict_and_create_nothing() {
    let db = TempDb::new();
    let store = open(&db).await;
    let a = namespace("kek-a");
    store
        .create_namespaces(std::slice::from_ref(&a))
        .await
        .expect("create");

    let fresh = namespace("kek-a");
    let same_hash = NewNamespace {
        access_hash: a.access_hash,
        ..namespace("kek-a")
    };
    let same_id = NewNamespace {
        id: a.id,
        ..namespace("kek-a")
    };
    for batch in [
        vec![fresh.clone(), same_hash],
        vec![fresh.clone(), same_id],
        vec![fresh.clone(), fresh.clone()],
    ] {
        let err = store.create_namespaces(&batch).await.expect_err("conflict");
        assert!(matches!(err, StoreError::Conflict), "{err:?}");
        assert!(
            store
                .find_namespace(&fresh.access_hash)
                .await
                .expect("find")
                .is_none()
        );
    }
    store
        .create_namespaces(&[])
        .await
        .expect("an empty batch is fine");
}

#[tokio::test]
async fn an_access_hash_is_replaced_atomically() {
    let db = TempDb::new();
    let store = open(&db).await;
    let a = namespace("kek-a");
    let b = namespace("kek-a");
    store
        .create_namespaces(&[a.clone(), b.clone()])
        .await
        .expect("create");
    let new = namespace("x").access_hash;

    assert!(store.rehash(&a.access_hash, &new).await.expect("replace"));
    assert!(
        store
            .find_namespace(&a.access_hash)
            .await
            .expect("find")
            .is_none()
    );
    assert_eq!(
        store
            .find_namespace(&new)
            .await
            .expect("find")
            .expect("found")
            .id,
        a.id
    );
    assert!(
        !store
            .rehash(&a.access_hash, &namespace("y").access_hash)
            .await
            .expect("gone")
    );
    assert!(matches!(
        store.rehash(&new, &b.access_hash).await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(
        store
            .find_namespace(&new)
            .await
            .expect("find")
            .expect("found")
            .id,
        a.id
    );
}

#[tokio::test]
async fn key_checks_keep_the_first_write() {
    let db = TempDb::new();
    let store = open(&db).await;
    let check = |id: &str, ct: &[u8]| KeyCheck {
        key_id: KeyId::new(id),
        ciphertext: ct.to_vec(),
    };
    store
        .add_key_check(&check("b", b"first"))
        .await
        .expect("add");
    store
        .add_key_check(&check("b", b"second"))
        .await
        .expect("add again");
    store
        .add_key_check(&check("a", b"other"))
        .await
        .expect("add");
    assert_eq!(
        store.key_checks().await.expect("checks"),
        [check("a", b"other"), check("b", b"first")]
    );
}

#[tokio::test]
async fn data_keys_are_paged_by_id_and_replaced_by_compare_and_swap() {
    let db = TempDb::new();
    let store = open(&db).await;
    let mut all: Vec<_> = (0..5)
        .map(|i| namespace(if i == 2 { "new" } else { "old" }))
        .collect();
    store.create_namespaces(&all).await.expect("create");
    all.sort_by_key(|ns| ns.id);
    assert_eq!(
        store.key_ids_in_use().await.expect("ids"),
        [KeyId::new("new"), KeyId::new("old")]
    );

    let active = KeyId::new("new");
    let old: Vec<_> = all
        .iter()
        .filter(|ns| ns.data_key.key_id != active)
        .map(|ns| ns.id)
        .collect();
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .wrapped_not_under(&active, after, 3)
            .await
            .expect("page");
        if page.is_empty() {
            break;
        }
        after = page.last().map(|w| w.id);
        seen.extend(page);
    }
    assert_eq!(seen.iter().map(|w| w.id).collect::<Vec<_>>(), old);

    let rewrapped = |w: &NamespaceRecord| WrappedKey {
        key_id: active.clone(),
        ciphertext: [w.data_key.ciphertext.as_slice(), b"!"].concat(),
    };
    let mut updates: Vec<_> = seen.iter().map(|w| (w.clone(), rewrapped(w))).collect();
    // A stale read: this namespace's key no longer matches what the update expects.
    updates[0].0.data_key.ciphertext = b"stale".to_vec();
    assert_eq!(
        store
            .replace_wrapped_keys(&updates)
            .await
            .expect("replace")
            .len(),
        3
    );
    assert_eq!(
        store
            .replace_wrapped_keys(&updates)
            .await
            .expect("replace again"),
        vec![]
    );
    let left = store
        .wrapped_not_under(&active, None, 10)
        .await
        .expect("page");
    assert_eq!(left, [seen[0].clone()]);
    assert_eq!(
        store.replace_wrapped_keys(&[]).await.expect("nothing"),
        vec![]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_lose_no_acknowledged_write() {
    let db = TempDb::new();
    let (store, ns) = open_with_namespace(&db).await;

    let mut tasks = Vec::new();
    for task in 0..8u32 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..50u32 {
                // Every task also rewrites one shared name, so updates contend as well.
                let own = secret(task * 1_000 + i, &format!("{task}-{i}"));
                store.upsert(ns.id, &own, 10_000).await.expect("upsert");
                store
                    .upsert(ns.id, &secret(999_999, &format!("{task}-{i}")), 10_000)
                    .await
                    .expect("upsert shared");
            }
        }));
    }
    for task in tasks {
        task.await.expect("writer");
    }

    let stored = values(&store, &ns).await;
    assert_eq!(stored.len(), 8 * 50 + 1);
    for task in 0..8u32 {
        for i in 0..50u32 {
            let own = secret(task * 1_000 + i, &format!("{task}-{i}"));
            assert_eq!(stored.get(&own.name), Some(&own.value));
        }
    }
    let shared = stored.get(b"name-999999".as_slice()).expect("shared");
    assert!(
        shared.ends_with(b"-49"),
        "the shared name holds one task's last write"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_committed_together_succeed_or_fail_each_on_its_own() {
    let db = TempDb::new();
    let store = open(&db).await;
    let ns = namespace("kek-a");
    let missing = namespace("kek-a");
    store
        .create_namespaces(std::slice::from_ref(&ns))
        .await
        .expect("create");

    // Many writes in flight at once, so the writer commits them in groups; every third one
    // goes to a namespace that does not exist and must fail without taking the others along.
    let tasks: Vec<_> = (0..60u32)
        .map(|n| {
            let store = store.clone();
            let target = if n % 3 == 0 { missing.id } else { ns.id };
            tokio::spawn(async move {
                (
                    n,
                    store
                        .upsert(target, &secret(n, &format!("v{n}")), 1_000)
                        .await,
                )
            })
        })
        .collect();
    for task in tasks {
        match task.await.expect("task") {
            (n, Err(StoreError::NamespaceNotFound)) if n % 3 == 0 => {}
            (n, Ok(Upserted::Created)) if n % 3 != 0 => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    let stored = values(&store, &ns).await;
    assert_eq!(stored.len(), 40);
    for n in (0..60u32).filter(|n| n % 3 != 0) {
        let written = secret(n, &format!("v{n}"));
        assert_eq!(stored.get(&written.name), Some(&written.value));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_limit_is_exact_under_concurrent_inserts() {
    let db = TempDb::new();
    let (store, ns) = open_with_namespace(&db).await;

    let tasks: Vec<_> = (0..40u32)
        .map(|n| {
            let store = store.clone();
            tokio::spawn(async move { store.upsert(ns.id, &secret(n, "v"), 10).await })
        })
        .collect();
    let (mut created, mut full) = (0, 0);
    for task in tasks {
        match task.await.expect("task") {
            Ok(Upserted::Created) => created += 1,
            Err(StoreError::NamespaceFull) => full += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((created, full), (10, 30));
    assert_eq!(values(&store, &ns).await.len(), 10);
    // An existing name can still be updated at the limit.
    let (_, secrets) = store
        .read_namespace(&ns.access_hash)
        .await
        .expect("read")
        .expect("found");
    let mut again = secrets[0].sealed.clone();
    again.value = b"updated".to_vec();
    assert_eq!(
        store.upsert(ns.id, &again, 10).await.expect("update"),
        Upserted::Updated
    );
}

#[tokio::test]
async fn a_write_lock_held_past_the_timeout_is_unavailable_and_then_recovers() {
    let db = TempDb::new();
    open(&db).await.close();
    let store = SqliteStore::open(
        db.path(),
        StoreOptions {
            pool_size: std::num::NonZeroUsize::new(2).expect("non-zero"),
            timeout: Duration::from_millis(200),
        },
    )
    .await
    .expect("open");
    let ns = namespace("kek-a");
    store
        .create_namespaces(std::slice::from_ref(&ns))
        .await
        .expect("create");

    // Another process (here, a plain connection) holds the write lock.
    let path = db.path().to_path_buf();
    let locker = tokio::task::spawn_blocking(move || {
        let conn = rusqlite::Connection::open(path).expect("open");
        conn.execute_batch("BEGIN IMMEDIATE")
            .expect("take the write lock");
        conn
    })
    .await
    .expect("locker");
    let err = store
        .upsert(ns.id, &secret(1, "a"), 10)
        .await
        .expect_err("busy");
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    // Readers are not blocked by a writer in WAL mode.
    assert!(
        store
            .find_namespace(&ns.access_hash)
            .await
            .expect("read")
            .is_some()
    );
    // Closing the connection rolls its transaction back and releases the lock.
    drop(locker);
    assert_eq!(
        store
            .upsert(ns.id, &secret(1, "a"), 10)
            .await
            .expect("recovered"),
        Upserted::Created
    );
}

/// As on PostgreSQL: a file that 0001 made and filled is migrated to revisions in place, its
/// namespaces at revision 1 and its secrets at version 1, and the next write moves on.
#[tokio::test]
async fn rows_written_before_revisions_existed_start_at_a_valid_revision() {
    let db = TempDb::new();
    let ns = namespace("kek-a");
    let old = secret(1, "old");
    {
        let conn = rusqlite::Connection::open(db.path()).expect("open");
        conn.execute_batch(concat!(
            "CREATE TABLE schema_migrations (version INTEGER NOT NULL PRIMARY KEY, \
             applied_at INTEGER NOT NULL) STRICT;",
            include_str!("../../../migrations/sqlite/0001_init.sql"),
            "INSERT INTO schema_migrations (version, applied_at) VALUES (1, 0);"
        ))
        .expect("the schema as 0001 left it");
        conn.execute(
            "INSERT INTO namespaces (id, access_hash, kek_id, wrapped_dek, created_at) \
             VALUES (?1, ?2, ?3, ?4, 0)",
            rusqlite::params![
                ns.id.as_bytes(),
                ns.access_hash.as_bytes(),
                ns.data_key.key_id.as_str(),
                ns.data_key.ciphertext
            ],
        )
        .expect("a namespace");
        conn.execute(
            "INSERT INTO secrets (namespace_id, name_index, name_ct, value_ct, created_at, \
             updated_at) VALUES (?1, ?2, ?3, ?4, 0, 0)",
            rusqlite::params![ns.id.as_bytes(), old.index.0, old.name, old.value],
        )
        .expect("a secret");
    }
    let store = open(&db).await;
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
            &secret(2, "new"),
            10,
            &secrets_domain::ports::Guard::default(),
        )
        .await
        .expect("a write");
    assert_eq!(written.revision.get(), 2);
}
