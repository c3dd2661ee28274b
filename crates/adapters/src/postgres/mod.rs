//! The PostgreSQL store: the production implementation of [`SecretStore`].
//!
//! # Connections and failure
//! Connections come from a `deadpool-postgres` pool that is built without connecting, so the
//! service starts (and answers readiness with 503) while the database is down. One `timeout`
//! bounds everything a caller can wait for: waiting for a pooled connection, opening one,
//! recycling one, and each store operation as a whole. When it elapses the caller gets
//! [`StoreError::Unavailable`], and the connection the operation was using is closed instead of
//! being returned to the pool: it may be in the middle of a statement, or talking to a peer
//! that vanished, and the next caller must not inherit either. Closed connections are dropped
//! when they are next taken from the pool, so the pool heals by itself when the database comes
//! back; nothing needs a restart.
//!
//! The server does not notice a closed connection while it runs a statement or waits for a
//! lock, nor at all when the network between the two is gone (a partition): the closing never
//! reaches it. So every transaction bounds itself on the server too, with the same timeout
//! (see `BOUND_TRANSACTION`): a statement that overruns it is cancelled, and a session left
//! idle inside the transaction that long, whose client is gone, is ended and its locks
//! released. Without that, a session abandoned in a partition keeps its namespace's lock until
//! TCP keepalive notices (hours, by default), every write to that namespace times out on it,
//! and each leaves one more session waiting behind it until the server runs out of connections.
//!
//! # Error classification
//! A unique violation (SQLSTATE 23505) is the one expected database error: it means an id or
//! access hash is taken, [`StoreError::Conflict`]. Errors that say the database cannot be
//! reached (I/O, a closed connection, connection-class SQLSTATEs, a server shutting down or out
//! of connections, pool timeouts) are [`StoreError::Unavailable`]. Anything else is a bug or
//! corruption, [`StoreError::Internal`]. The driver's error is kept as the `source()` for the
//! logs; no message is built from SQL parameters, which are all ciphertexts or hashes anyway.
//!
//! # Concurrency
//! Every write to one namespace's secrets first takes the namespace row's lock
//! (`SELECT .. FOR UPDATE`), so writers of one namespace run one after another and the secret
//! count each of them sees is exact under PostgreSQL's default READ COMMITTED isolation. Readers
//! never wait: the hot read is one statement, hence one snapshot.
//!
//! # Migrations
//! `migrations/postgres/*.sql` are embedded at build time and applied by [`PostgresStore::migrate`].

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{
    Client, Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime,
};
use secrets_domain::model::{AccessKeyHash, KeyId, NamespaceId};
use secrets_domain::ports::{
    KeyCheck, NameIndex, NamespaceRecord, NewNamespace, SealedSecret, SecretStore, StoreError,
    StoredSecret, Upserted, WrappedKey,
};
use tokio::time::{Instant, timeout_at};
use tokio_postgres::error::SqlState;
use tokio_postgres::{NoTls, Row};

use crate::store::{AppliedMigration, MigrationReport, PoolStatus, Store, StoreOptions};

#[cfg(all(test, feature = "testing"))]
mod tests;

/// The PostgreSQL store. Cloning it is cheap: clones share one pool.
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    timeout: Duration,
    /// `timeout` as a PostgreSQL interval setting (`"5000ms"`), for `BOUND_TRANSACTION`.
    server_timeout: String,
}

// The pool's configuration holds the connection URL's password, so `Debug` shows only what is
// safe to log.
impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("timeout", &self.timeout)
            .field("pool", &self.pool_status())
            .finish_non_exhaustive()
    }
}

/// One migration, embedded at build time.
struct Migration {
    version: i64,
    name: &'static str,
    sql: &'static str,
}

/// Every migration, in the order they apply. Append only: a released migration is never
/// edited, only followed.
const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "init",
    sql: include_str!("../../../../migrations/postgres/0001_init.sql"),
}];

/// The advisory lock every migrator takes, so that replicas starting at once apply each
/// migration exactly once. Any fixed number works; this one spells "secrets" in ASCII.
const MIGRATION_LOCK: i64 = 0x0073_6563_7265_7473;

impl PostgresStore {
    /// Builds the pool. It does not connect yet, so the service starts even while the
    /// database is down; connections are opened on first use.
    ///
    /// # Errors
    /// [`StoreError::Internal`] when `url` is not a valid PostgreSQL connection string.
    pub fn new(url: &str, options: StoreOptions) -> Result<Self, StoreError> {
        let mut config: tokio_postgres::Config = url.parse().map_err(internal)?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(options.timeout);
        }
        if config.get_application_name().is_none() {
            config.application_name("secrets-service");
        }
        // `Fast` recycling only checks that the connection is not closed: a test query on every
        // checkout would add a round trip to the hot read. A connection that broke unnoticed
        // fails one operation with `Unavailable` and is then dropped as closed.
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.get())
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(options.timeout))
            .create_timeout(Some(options.timeout))
            .recycle_timeout(Some(options.timeout))
            .build()
            .map_err(internal)?;
        Ok(Self {
            pool,
            timeout: options.timeout,
            server_timeout: format!("{}ms", options.timeout.as_millis().max(1)),
        })
    }

    /// Applies the embedded migrations that the database has not recorded yet, in one
    /// transaction, recording each in `schema_migrations`.
    ///
    /// Several processes may run this at once: each takes the same transaction-scoped advisory
    /// lock before it even looks at `schema_migrations`, so they apply one after another and the
    /// later ones find nothing left to do. Only obtaining the connection is bounded by the
    /// timeout: a migration on a large table, or waiting for another process's migration, may
    /// rightly take longer.
    pub async fn migrate(&self) -> Result<MigrationReport, StoreError> {
        let mut client = self.pool.get().await.map_err(pool_error)?;
        let tx = client.transaction().await.map_err(db)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(db)?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                 version    bigint      PRIMARY KEY,
                 applied_at timestamptz NOT NULL DEFAULT now()
             )",
        )
        .await
        .map_err(db)?;
        let applied: Vec<i64> = tx
            .query("SELECT version FROM schema_migrations", &[])
            .await
            .map_err(db)?
            .iter()
            .map(|row| row.try_get(0))
            .collect::<Result<_, _>>()
            .map_err(db)?;
        let known = MIGRATIONS.last().map_or(0, |m| m.version);
        let newer = applied.iter().copied().filter(|v| *v > known).max();
        if let Some(newer) = newer {
            tracing::warn!(
                database = newer,
                binary = known,
                "the database schema is newer than this binary's migrations"
            );
        }
        let mut report = MigrationReport {
            applied: Vec::new(),
            newer_in_database: newer,
        };
        for migration in MIGRATIONS.iter().filter(|m| !applied.contains(&m.version)) {
            tx.batch_execute(migration.sql).await.map_err(db)?;
            tx.execute(
                "INSERT INTO schema_migrations (version) VALUES ($1)",
                &[&migration.version],
            )
            .await
            .map_err(db)?;
            tracing::info!(
                version = migration.version,
                name = migration.name,
                "applied migration"
            );
            report.applied.push(AppliedMigration {
                version: migration.version,
                name: migration.name,
            });
        }
        tx.commit().await.map_err(db)?;
        Ok(report)
    }

    /// The pool's state, for metrics.
    #[must_use]
    pub fn pool_status(&self) -> PoolStatus {
        let status = self.pool.status();
        PoolStatus {
            max_size: status.max_size,
            size: status.size,
            available: status.available,
            waiting: status.waiting,
        }
    }

    /// Runs `op` on a pooled connection, all of it (waiting for the connection included)
    /// bounded by the store's timeout.
    async fn run<T>(
        &self,
        op: impl AsyncFnOnce(&mut Client) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let deadline = Instant::now() + self.timeout;
        // The pool's own timeouts bound this already; the deadline makes the whole operation,
        // not each of its steps, what the timeout bounds.
        let mut client = timeout_at(deadline, self.pool.get())
            .await
            .map_err(|elapsed| StoreError::Unavailable(Box::new(elapsed)))?
            .map_err(pool_error)?;
        match timeout_at(deadline, op(&mut client)).await {
            Ok(result) => result,
            Err(elapsed) => {
                // The operation was abandoned half-way: the connection may still have a
                // statement in flight or an open transaction, or its peer may be gone. Taking
                // it out of the pool and dropping it closes it; the server then rolls back.
                drop(Object::take(client));
                Err(StoreError::Unavailable(Box::new(elapsed)))
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// SQL
// ---------------------------------------------------------------------------------------------

const CREATE_NAMESPACES: &str = "\
    INSERT INTO namespaces (id, access_hash, kek_id, wrapped_dek) \
    SELECT * FROM unnest($1::uuid[], $2::bytea[], $3::text[], $4::bytea[])";

const FIND_NAMESPACE: &str = "\
    SELECT id, kek_id, wrapped_dek FROM namespaces WHERE access_hash = $1";

// The hot path. One statement, so one round trip and one snapshot: the namespace and its
// secrets cannot disagree. The LEFT JOIN yields one row of NULL secret columns for an empty
// namespace, and none at all for an unknown access hash.
const READ_NAMESPACE: &str = "\
    SELECT n.id, n.kek_id, n.wrapped_dek, \
           s.name_index, s.name_ct, s.value_ct, s.created_at, s.updated_at \
    FROM namespaces n LEFT JOIN secrets s ON s.namespace_id = n.id \
    WHERE n.access_hash = $1";

const GET_SECRET: &str = "\
    SELECT name_index, name_ct, value_ct, created_at, updated_at \
    FROM secrets WHERE namespace_id = $1 AND name_index = $2";

// The first statement of every transaction but the migrations': the server ends, on its own,
// what the service abandons at its deadline (see the module's `# Connections and failure`).
// `set_config(.., true)` is `SET LOCAL`: it lasts as long as the transaction, so it leaves
// nothing behind on a connection, also behind a pooler in transaction mode. It is sent in the
// same round trip as the statements after it, and runs before them. (Where the `BEGIN` before it
// is a round trip of its own, a session cut off between the two holds no lock and no snapshot,
// only its connection, until the server's TCP keepalive ends it.)
const BOUND_TRANSACTION: &str = "\
    SELECT set_config('statement_timeout', $1, true), \
           set_config('idle_in_transaction_session_timeout', $1, true)";

// Serialises the writers of one namespace (see the module's `# Concurrency`), and tells a
// missing namespace (no row) from a present one.
const LOCK_NAMESPACE: &str = "SELECT 1 FROM namespaces WHERE id = $1 FOR UPDATE";

// Inserts the secret only when its name exists already (then ON CONFLICT turns the insert into
// an update) or the namespace has room; otherwise it returns no row. It must run as its own
// statement after LOCK_NAMESPACE: under READ COMMITTED each statement takes a fresh snapshot, so
// this one's count includes every secret committed by the writer the lock waited for. (A CTE in
// the locking statement would count with the snapshot taken before the wait, and miss them.)
//
// `xmax = 0` is true only for a freshly inserted row version; the row version an ON CONFLICT
// update writes carries the updating transaction's id there. `clock_timestamp()` rather than
// `now()`: it is read after the lock is held, so timestamps follow the order writes happen in;
// GREATEST keeps `updated_at` from moving backwards should the database's clock step back.
const UPSERT_SECRET: &str = "\
    INSERT INTO secrets (namespace_id, name_index, name_ct, value_ct, created_at, updated_at) \
    SELECT $1, $2, $3, $4, t.at, t.at FROM (SELECT clock_timestamp() AS at) t \
    WHERE EXISTS (SELECT 1 FROM secrets WHERE namespace_id = $1 AND name_index = $2) \
       OR (SELECT count(*) FROM secrets WHERE namespace_id = $1) < $5 \
    ON CONFLICT (namespace_id, name_index) DO UPDATE \
    SET name_ct = EXCLUDED.name_ct, value_ct = EXCLUDED.value_ct, \
        updated_at = GREATEST(secrets.updated_at, EXCLUDED.updated_at) \
    RETURNING (xmax = 0) AS created";

const COUNT_SECRETS: &str = "SELECT count(*) FROM secrets WHERE namespace_id = $1";

const DELETE_SECRETS: &str = "\
    DELETE FROM secrets WHERE namespace_id = $1 AND name_index = ANY($2)";

// A patch's upserts as one statement. The caller removes duplicate indexes first: one INSERT ..
// ON CONFLICT may not update the same row twice. One timestamp for the whole patch.
const UPSERT_SECRETS: &str = "\
    INSERT INTO secrets (namespace_id, name_index, name_ct, value_ct, created_at, updated_at) \
    SELECT $1, u.name_index, u.name_ct, u.value_ct, t.at, t.at \
    FROM unnest($2::bytea[], $3::bytea[], $4::bytea[]) AS u (name_index, name_ct, value_ct), \
         (SELECT clock_timestamp() AS at) t \
    ON CONFLICT (namespace_id, name_index) DO UPDATE \
    SET name_ct = EXCLUDED.name_ct, value_ct = EXCLUDED.value_ct, \
        updated_at = GREATEST(secrets.updated_at, EXCLUDED.updated_at)";

const LIST_SECRETS: &str = "\
    SELECT name_index, name_ct, value_ct, created_at, updated_at \
    FROM secrets WHERE namespace_id = $1";

const DELETE_SECRET: &str = "\
    DELETE FROM secrets WHERE namespace_id = $1 AND name_index = $2";

// The secrets go with the namespace through ON DELETE CASCADE, in the same statement.
const DELETE_NAMESPACE: &str = "DELETE FROM namespaces WHERE access_hash = $1";

// A taken `new` violates the unique index: 23505, a Conflict.
const REPLACE_ACCESS_HASH: &str = "\
    UPDATE namespaces SET access_hash = $2 WHERE access_hash = $1";

const PING: &str = "SELECT 1";

const KEY_CHECKS: &str = "SELECT key_id, check_ct FROM key_checks ORDER BY key_id";

// First write wins, also between replicas starting at the same moment.
const ADD_KEY_CHECK: &str = "\
    INSERT INTO key_checks (key_id, check_ct) VALUES ($1, $2) ON CONFLICT (key_id) DO NOTHING";

// The distinct KEK ids, by a skip scan over `namespaces_kek_id`: each step is one index probe
// for the next larger id, so this costs (distinct ids + 1) probes. There are a handful of ids
// (the active KEK and those not yet rotated away), and a million namespaces: `SELECT DISTINCT`
// or GROUP BY would read the whole index (or table) at every start-up, since PostgreSQL before
// 18 has no skip scan of its own.
const KEY_IDS_IN_USE: &str = "\
    WITH RECURSIVE ids (kek_id) AS ( \
        (SELECT kek_id FROM namespaces ORDER BY kek_id LIMIT 1) \
        UNION ALL \
        SELECT (SELECT n.kek_id FROM namespaces n WHERE n.kek_id > ids.kek_id \
                ORDER BY n.kek_id LIMIT 1) \
        FROM ids WHERE ids.kek_id IS NOT NULL \
    ) \
    SELECT kek_id FROM ids WHERE kek_id IS NOT NULL";

// Two statements rather than `$2 IS NULL OR id > $2`, so each has a plan that walks the
// primary key from the right place. Every uuid is a valid id, so there is no sentinel to start
// "after" either.
const WRAPPED_NOT_UNDER_FIRST: &str = "\
    SELECT id, kek_id, wrapped_dek FROM namespaces \
    WHERE kek_id <> $1 ORDER BY id LIMIT $2";

const WRAPPED_NOT_UNDER_AFTER: &str = "\
    SELECT id, kek_id, wrapped_dek FROM namespaces \
    WHERE kek_id <> $1 AND id > $2 ORDER BY id LIMIT $3";

// Every compare-and-swap of a batch in one statement: one round trip, and atomic without an
// explicit transaction. A row changed by a concurrent writer is re-checked against the new
// version after the writer commits (READ COMMITTED's re-check of UPDATE's conditions), so a key
// re-wrapped or a namespace deleted meanwhile is left alone and not counted.
const REPLACE_WRAPPED_KEYS: &str = "\
    UPDATE namespaces n SET kek_id = u.new_kek_id, wrapped_dek = u.new_dek \
    FROM unnest($1::uuid[], $2::text[], $3::bytea[], $4::text[], $5::bytea[]) \
         AS u (id, old_kek_id, old_dek, new_kek_id, new_dek) \
    WHERE n.id = u.id AND n.kek_id = u.old_kek_id AND n.wrapped_dek = u.old_dek";

// ---------------------------------------------------------------------------------------------
// The port
// ---------------------------------------------------------------------------------------------

#[async_trait]
impl SecretStore for PostgresStore {
    async fn create_namespaces(&self, namespaces: &[NewNamespace]) -> Result<(), StoreError> {
        if namespaces.is_empty() {
            return Ok(());
        }
        let ids: Vec<_> = namespaces.iter().map(|ns| ns.id.as_uuid()).collect();
        let hashes: Vec<&[u8]> = namespaces
            .iter()
            .map(|ns| ns.access_hash.as_bytes().as_slice())
            .collect();
        let key_ids: Vec<&str> = namespaces
            .iter()
            .map(|ns| ns.data_key.key_id.as_str())
            .collect();
        let keys: Vec<&[u8]> = namespaces
            .iter()
            .map(|ns| ns.data_key.ciphertext.as_slice())
            .collect();
        // One statement is all or nothing, so a bulk create needs no explicit transaction.
        self.run(async |client| {
            let stmt = client.prepare_cached(CREATE_NAMESPACES).await.map_err(db)?;
            client
                .execute(&stmt, &[&ids, &hashes, &key_ids, &keys])
                .await
                .map_err(db)?;
            Ok(())
        })
        .await
    }

    async fn find_namespace(
        &self,
        access: &AccessKeyHash,
    ) -> Result<Option<NamespaceRecord>, StoreError> {
        self.run(async |client| {
            let stmt = client.prepare_cached(FIND_NAMESPACE).await.map_err(db)?;
            let row = client
                .query_opt(&stmt, &[&access.as_bytes().as_slice()])
                .await
                .map_err(db)?;
            row.as_ref().map(namespace_record).transpose()
        })
        .await
    }

    async fn read_namespace(
        &self,
        access: &AccessKeyHash,
    ) -> Result<Option<(NamespaceRecord, Vec<StoredSecret>)>, StoreError> {
        self.run(async |client| {
            let stmt = client.prepare_cached(READ_NAMESPACE).await.map_err(db)?;
            let rows = client
                .query(&stmt, &[&access.as_bytes().as_slice()])
                .await
                .map_err(db)?;
            let Some(first) = rows.first() else {
                return Ok(None);
            };
            let record = namespace_record(first)?;
            let mut secrets = Vec::with_capacity(rows.len());
            for row in &rows {
                // Only an empty namespace's single row has no secret in it.
                if row.try_get::<_, Option<&[u8]>>(3).map_err(db)?.is_some() {
                    secrets.push(stored_secret(row, 3)?);
                }
            }
            Ok(Some((record, secrets)))
        })
        .await
    }

    async fn get_secret(
        &self,
        ns: NamespaceId,
        index: &NameIndex,
    ) -> Result<Option<StoredSecret>, StoreError> {
        self.run(async |client| {
            let stmt = client.prepare_cached(GET_SECRET).await.map_err(db)?;
            let row = client
                .query_opt(&stmt, &[&ns.as_uuid(), &index.0.as_slice()])
                .await
                .map_err(db)?;
            row.map(|row| stored_secret(&row, 0)).transpose()
        })
        .await
    }

    async fn upsert_secret(
        &self,
        ns: NamespaceId,
        secret: &SealedSecret,
        max_secrets: u32,
    ) -> Result<Upserted, StoreError> {
        let id = ns.as_uuid();
        let max = i64::from(max_secrets);
        self.run(async |client| {
            let bound = client.prepare_cached(BOUND_TRANSACTION).await.map_err(db)?;
            let lock = client.prepare_cached(LOCK_NAMESPACE).await.map_err(db)?;
            let upsert = client.prepare_cached(UPSERT_SECRET).await.map_err(db)?;
            // The whole transaction goes out in one round trip: tokio-postgres pipelines
            // requests that are polled together, and `join5` first polls them in this order.
            // The server still runs them one after the other, so the upsert starts, and takes
            // its snapshot, only once the lock is held. Whatever happens, the COMMIT ends the
            // transaction, also when this future is dropped half-way (the requests are sent
            // already): a full namespace makes the upsert write nothing and return no row, and
            // the COMMIT commits nothing; a missing namespace makes the upsert fail on the
            // foreign key, which aborts the transaction, and the COMMIT then rolls it back.
            let (begun, bounded, locked, written, committed) = futures_util::future::join5(
                client.batch_execute("BEGIN"),
                client.query_one(&bound, &[&self.server_timeout]),
                client.query_opt(&lock, &[&id]),
                client.query_opt(
                    &upsert,
                    &[
                        &id,
                        &secret.index.0.as_slice(),
                        &secret.name,
                        &secret.value,
                        &max,
                    ],
                ),
                client.batch_execute("COMMIT"),
            )
            .await;
            begun.map_err(db)?;
            bounded.map_err(db)?;
            // The lock's empty answer says why the upsert failed.
            if locked.map_err(db)?.is_none() {
                return Err(StoreError::NamespaceNotFound);
            }
            let Some(row) = written.map_err(db)? else {
                return Err(StoreError::NamespaceFull);
            };
            committed.map_err(db)?;
            let created: bool = row.try_get(0).map_err(db)?;
            Ok(if created {
                Upserted::Created
            } else {
                Upserted::Updated
            })
        })
        .await
    }

    async fn apply_patch(
        &self,
        ns: NamespaceId,
        upserts: &[SealedSecret],
        deletes: &[NameIndex],
        max_secrets: u32,
    ) -> Result<Vec<StoredSecret>, StoreError> {
        let id = ns.as_uuid();
        // The last write of an index wins, as if the upserts ran one by one.
        let mut seen = std::collections::HashSet::with_capacity(upserts.len());
        let upserts: Vec<&SealedSecret> = upserts
            .iter()
            .rev()
            .filter(|secret| seen.insert(secret.index))
            .collect();
        let indexes: Vec<&[u8]> = upserts.iter().map(|s| s.index.0.as_slice()).collect();
        let names: Vec<&[u8]> = upserts.iter().map(|s| s.name.as_slice()).collect();
        let values: Vec<&[u8]> = upserts.iter().map(|s| s.value.as_slice()).collect();
        let deletes: Vec<&[u8]> = deletes.iter().map(|index| index.0.as_slice()).collect();
        self.run(async |client| {
            let tx = client.transaction().await.map_err(db)?;
            let bound = tx.prepare_cached(BOUND_TRANSACTION).await.map_err(db)?;
            let lock = tx.prepare_cached(LOCK_NAMESPACE).await.map_err(db)?;
            let count = tx.prepare_cached(COUNT_SECRETS).await.map_err(db)?;
            let delete = tx.prepare_cached(DELETE_SECRETS).await.map_err(db)?;
            let upsert = tx.prepare_cached(UPSERT_SECRETS).await.map_err(db)?;
            let list = tx.prepare_cached(LIST_SECRETS).await.map_err(db)?;
            // Pipelined as in `upsert_secret`: sent together, run in this order, each statement
            // after the lock with its own fresh snapshot. The count is the one before the patch,
            // the list the state after it, read inside this transaction.
            // (`join` polls the bound first, then `join5` its five in order.)
            let (bounded, (locked, before, removed, upserted, after)) = futures_util::future::join(
                tx.query_one(&bound, &[&self.server_timeout]),
                futures_util::future::join5(
                    tx.query_opt(&lock, &[&id]),
                    tx.query_one(&count, &[&id]),
                    tx.execute(&delete, &[&id, &deletes]),
                    tx.execute(&upsert, &[&id, &indexes, &names, &values]),
                    tx.query(&list, &[&id]),
                ),
            )
            .await;
            bounded.map_err(db)?;
            if locked.map_err(db)?.is_none() {
                return Err(StoreError::NamespaceNotFound);
            }
            let before: i64 = before.map_err(db)?.try_get(0).map_err(db)?;
            removed.map_err(db)?;
            upserted.map_err(db)?;
            let after = after.map_err(db)?;
            let count = after.len() as i64;
            // A namespace already over a lowered limit may still be patched, as long as the
            // patch does not grow it.
            if count > i64::from(max_secrets) && count > before {
                return Err(StoreError::NamespaceFull);
            }
            let secrets = after
                .iter()
                .map(|row| stored_secret(row, 0))
                .collect::<Result<Vec<_>, _>>()?;
            tx.commit().await.map_err(db)?;
            Ok(secrets)
        })
        .await
    }

    async fn delete_secret(&self, ns: NamespaceId, index: &NameIndex) -> Result<bool, StoreError> {
        // No namespace lock: a delete never makes room for more than the limit allows.
        self.run(async |client| {
            let stmt = client.prepare_cached(DELETE_SECRET).await.map_err(db)?;
            let deleted = client
                .execute(&stmt, &[&ns.as_uuid(), &index.0.as_slice()])
                .await
                .map_err(db)?;
            Ok(deleted > 0)
        })
        .await
    }

    async fn delete_namespace(&self, access: &AccessKeyHash) -> Result<bool, StoreError> {
        self.run(async |client| {
            let stmt = client.prepare_cached(DELETE_NAMESPACE).await.map_err(db)?;
            let deleted = client
                .execute(&stmt, &[&access.as_bytes().as_slice()])
                .await
                .map_err(db)?;
            Ok(deleted > 0)
        })
        .await
    }

    async fn replace_access_hash(
        &self,
        old: &AccessKeyHash,
        new: &AccessKeyHash,
    ) -> Result<bool, StoreError> {
        self.run(async |client| {
            let stmt = client
                .prepare_cached(REPLACE_ACCESS_HASH)
                .await
                .map_err(db)?;
            let replaced = client
                .execute(
                    &stmt,
                    &[&old.as_bytes().as_slice(), &new.as_bytes().as_slice()],
                )
                .await
                .map_err(db)?;
            Ok(replaced > 0)
        })
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.run(async |client| {
            let stmt = client.prepare_cached(PING).await.map_err(db)?;
            client.query_one(&stmt, &[]).await.map_err(db)?;
            Ok(())
        })
        .await
    }

    async fn key_checks(&self) -> Result<Vec<KeyCheck>, StoreError> {
        self.run(async |client| {
            let stmt = client.prepare_cached(KEY_CHECKS).await.map_err(db)?;
            let rows = client.query(&stmt, &[]).await.map_err(db)?;
            rows.iter()
                .map(|row| {
                    Ok(KeyCheck {
                        key_id: KeyId::new(row.try_get::<_, String>(0).map_err(db)?),
                        ciphertext: row.try_get(1).map_err(db)?,
                    })
                })
                .collect()
        })
        .await
    }

    async fn add_key_check(&self, check: &KeyCheck) -> Result<(), StoreError> {
        self.run(async |client| {
            let stmt = client.prepare_cached(ADD_KEY_CHECK).await.map_err(db)?;
            client
                .execute(&stmt, &[&check.key_id.as_str(), &check.ciphertext])
                .await
                .map_err(db)?;
            Ok(())
        })
        .await
    }

    async fn key_ids_in_use(&self) -> Result<Vec<KeyId>, StoreError> {
        self.run(async |client| {
            let stmt = client.prepare_cached(KEY_IDS_IN_USE).await.map_err(db)?;
            let rows = client.query(&stmt, &[]).await.map_err(db)?;
            rows.iter()
                .map(|row| row.try_get::<_, String>(0).map(KeyId::new).map_err(db))
                .collect()
        })
        .await
    }

    async fn count_by_key_id(&self) -> Result<Vec<(KeyId, u64)>, StoreError> {
        self.run(async |client| {
            // Counting reads every row (a parallel sequential scan, about 0.2 s per million
            // namespaces on a small server); it runs once per `rotate-kek`, not per request.
            let stmt = client
                .prepare_cached(
                    "SELECT kek_id, count(*) FROM namespaces GROUP BY kek_id ORDER BY kek_id",
                )
                .await
                .map_err(db)?;
            let rows = client.query(&stmt, &[]).await.map_err(db)?;
            rows.iter()
                .map(|row| {
                    let id = row.try_get::<_, String>(0).map_err(db)?;
                    let count = row.try_get::<_, i64>(1).map_err(db)?;
                    Ok((KeyId::new(id), u64::try_from(count).unwrap_or_default()))
                })
                .collect()
        })
        .await
    }

    async fn wrapped_not_under(
        &self,
        active: &KeyId,
        after: Option<NamespaceId>,
        limit: u32,
    ) -> Result<Vec<NamespaceRecord>, StoreError> {
        let limit = i64::from(limit);
        self.run(async |client| {
            let rows = match after {
                None => {
                    let stmt = client
                        .prepare_cached(WRAPPED_NOT_UNDER_FIRST)
                        .await
                        .map_err(db)?;
                    client.query(&stmt, &[&active.as_str(), &limit]).await
                }
                Some(after) => {
                    let stmt = client
                        .prepare_cached(WRAPPED_NOT_UNDER_AFTER)
                        .await
                        .map_err(db)?;
                    client
                        .query(&stmt, &[&active.as_str(), &after.as_uuid(), &limit])
                        .await
                }
            }
            .map_err(db)?;
            rows.iter()
                .map(|row| {
                    let record = namespace_record(row)?;
                    Ok(NamespaceRecord {
                        id: record.id,
                        data_key: record.data_key,
                    })
                })
                .collect()
        })
        .await
    }

    async fn replace_wrapped_keys(
        &self,
        updates: &[(NamespaceRecord, WrappedKey)],
    ) -> Result<u64, StoreError> {
        if updates.is_empty() {
            return Ok(0);
        }
        let ids: Vec<_> = updates.iter().map(|(old, _)| old.id.as_uuid()).collect();
        let old_ids: Vec<&str> = updates
            .iter()
            .map(|(old, _)| old.data_key.key_id.as_str())
            .collect();
        let old_keys: Vec<&[u8]> = updates
            .iter()
            .map(|(old, _)| old.data_key.ciphertext.as_slice())
            .collect();
        let new_ids: Vec<&str> = updates.iter().map(|(_, new)| new.key_id.as_str()).collect();
        let new_keys: Vec<&[u8]> = updates
            .iter()
            .map(|(_, new)| new.ciphertext.as_slice())
            .collect();
        self.run(async |client| {
            let stmt = client
                .prepare_cached(REPLACE_WRAPPED_KEYS)
                .await
                .map_err(db)?;
            client
                .execute(&stmt, &[&ids, &old_ids, &old_keys, &new_ids, &new_keys])
                .await
                .map_err(db)
        })
        .await
    }
}

// ---------------------------------------------------------------------------------------------
// Rows
// ---------------------------------------------------------------------------------------------

/// A namespace from a row whose first three columns are `id, kek_id, wrapped_dek`.
fn namespace_record(row: &Row) -> Result<NamespaceRecord, StoreError> {
    Ok(NamespaceRecord {
        id: NamespaceId::from_uuid(row.try_get(0).map_err(db)?),
        data_key: WrappedKey {
            key_id: KeyId::new(row.try_get::<_, String>(1).map_err(db)?),
            ciphertext: row.try_get(2).map_err(db)?,
        },
    })
}

/// A secret from the five columns `name_index, name_ct, value_ct, created_at, updated_at`
/// starting at column `at`.
fn stored_secret(row: &Row, at: usize) -> Result<StoredSecret, StoreError> {
    let index: &[u8] = row.try_get(at).map_err(db)?;
    // The schema's CHECK keeps this at 32 bytes; anything else is corruption, not input.
    let index = <[u8; 32]>::try_from(index)
        .map_err(|_| StoreError::Internal("a stored name index is not 32 bytes long".into()))?;
    Ok(StoredSecret {
        sealed: SealedSecret {
            index: NameIndex(index),
            name: row.try_get(at + 1).map_err(db)?,
            value: row.try_get(at + 2).map_err(db)?,
        },
        created_at: row.try_get(at + 3).map_err(db)?,
        updated_at: row.try_get(at + 4).map_err(db)?,
    })
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// Classifies a driver error (see the module's `# Error classification`).
fn db(error: tokio_postgres::Error) -> StoreError {
    if error.code() == Some(&SqlState::UNIQUE_VIOLATION) {
        StoreError::Conflict
    } else if is_unreachable(&error) {
        StoreError::Unavailable(Box::new(error))
    } else {
        StoreError::Internal(Box::new(error))
    }
}

/// Whether an error says the database cannot be reached now, as opposed to a failed statement.
fn is_unreachable(error: &tokio_postgres::Error) -> bool {
    if error.is_closed() {
        return true;
    }
    if let Some(db_error) = error.as_db_error() {
        let code = db_error.code().code();
        // 08: connection exceptions. 57P01-57P03: the server is shutting down, crashed, or
        // not accepting connections yet. 53300: too many connections. 57014: a statement
        // cancelled, such as by `statement_timeout`: the database is too slow to answer.
        // 25006: a read-only transaction, as on a standby during a failover.
        return code.starts_with("08")
            || matches!(
                code,
                "57P01" | "57P02" | "57P03" | "53300" | "57014" | "25006"
            );
    }
    // Without a database error, an I/O error underneath means the socket failed (refused,
    // reset, timed out); other driver errors (a type conversion, a protocol surprise) are bugs.
    std::error::Error::source(error).is_some_and(<dyn std::error::Error>::is::<std::io::Error>)
}

/// Classifies a failure to get a connection from the pool.
fn pool_error(error: PoolError) -> StoreError {
    match error {
        // A connection that cannot be opened, for whatever reason (refused, timed out, a
        // rejected password, a missing database), is a store that cannot be reached; the
        // source says which, for the operator.
        PoolError::Timeout(_) | PoolError::Backend(_) | PoolError::Closed => {
            StoreError::Unavailable(Box::new(error))
        }
        PoolError::NoRuntimeSpecified | PoolError::PostCreateHook(_) => {
            StoreError::Internal(Box::new(error))
        }
    }
}

fn internal(error: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Internal(Box::new(error))
}

impl Store for PostgresStore {
    const BACKEND: &'static str = "postgres";
    type Location = secrecy::SecretString;

    async fn open(
        location: &secrecy::SecretString,
        options: StoreOptions,
    ) -> Result<Self, StoreError> {
        PostgresStore::new(secrecy::ExposeSecret::expose_secret(location), options)
    }

    fn migrate(&self) -> impl Future<Output = Result<MigrationReport, StoreError>> + Send {
        PostgresStore::migrate(self)
    }

    fn pool_status(&self) -> PoolStatus {
        PostgresStore::pool_status(self)
    }

    fn close(&self) {
        self.pool.close();
    }
}
