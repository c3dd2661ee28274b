//! The zero-setup embedded store on SQLite: one file on one machine.
//!
//! # Durability
//! Every connection runs with `journal_mode=WAL` and `synchronous=FULL`. WAL lets readers (the
//! worker's hot read) proceed while a write commits, instead of blocking on a rollback
//! journal's exclusive lock. `synchronous=FULL` fsyncs the log at every commit, so an
//! acknowledged write survives a power cut; `NORMAL` would be faster and could lose the last
//! commits, which a secrets store must not trade away. `foreign_keys=ON` is what makes deleting
//! a namespace delete its secrets (it is off by default in SQLite, per connection).
//!
//! # Concurrency
//! SQLite allows one writer at a time, so a store has one: a thread of its own with a
//! connection of its own, fed by a first-come-first-served queue. It commits writes in groups.
//! It takes every write waiting in the queue (up to [`MAX_BATCH`]), runs them in one
//! `BEGIN IMMEDIATE` transaction, each inside a `SAVEPOINT` of its own, commits once, and only
//! then answers their callers. A write that fails (a full namespace, a missing one, a taken
//! access hash) rolls back to its savepoint and leaves the others in the group untouched, so
//! each caller sees exactly what a transaction of its own would have given it. The group shares
//! one commit, hence one fsync: under load, writes cost a fraction of an fsync each, with
//! `synchronous=FULL` kept and nothing acknowledged before it is on disk.
//!
//! `IMMEDIATE` takes the write lock before reading anything. A plain (deferred) transaction that
//! reads and then writes can fail at the upgrade with `SQLITE_BUSY` no matter how long it waits,
//! because another writer committed after its snapshot was taken. One writer that holds the lock
//! for the whole group is also what makes the per-namespace secret count exact: a new name is
//! inserted, the namespace counted, and the write rolled back when the count passes the limit,
//! with no other write able to slip in between. Other processes on the same file (a `migrate`
//! or `rotate-kek` run beside the server) take turns through SQLite's busy handler, bounded by
//! `busy_timeout`; past it the group's writes answer `Unavailable`.
//!
//! A caller waits for its answer at most the store's timeout, and then answers `Unavailable`. A
//! write whose caller has stopped waiting before its turn came is dropped unrun; one already
//! running is finished, and may commit, like a PostgreSQL commit whose answer was lost. Reads
//! never queue: WAL serves them from a snapshot, on pooled connections of their own.
//!
//! SQLite calls block the calling thread (on locks and on fsync), so they never run on the
//! async executor's worker threads: reads go through `deadpool-sync`'s `interact`, which runs
//! the closure on tokio's blocking pool with a pooled connection, and writes run on the writer's
//! thread.
//!
//! # Layout on disk
//! See `migrations/sqlite/`: the schema mirrors PostgreSQL's, with ids and hashes as BLOBs and
//! timestamps as integer unix microseconds from the service's clock.

use std::collections::VecDeque;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use deadpool::Runtime;
use deadpool::managed::{self, Metrics, RecycleError, RecycleResult};
use deadpool_sync::{InteractError, SyncWrapper};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, ErrorCode, OptionalExtension as _, Row, ffi, params};
use secrets_domain::model::{AccessKeyHash, KeyId, NamespaceId};
use secrets_domain::ports::{
    KeyCheck, NameIndex, NamespaceRecord, NewNamespace, SealedSecret, SecretStore, StoreError,
    StoredSecret, Upserted, WrappedKey,
};
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::store::{AppliedMigration, MigrationReport, PoolStatus, Store, StoreOptions};

/// Every migration, in the order they apply, embedded so that the one binary carries its
/// schema. Append only: a released migration is never edited, only followed (mirrored in
/// `migrations/postgres/`).
const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "init",
    sql: include_str!("../../../migrations/sqlite/0001_init.sql"),
}];

/// Prepared statements kept per connection. Above the number of distinct statements this
/// module runs, so the hot ones are never re-parsed.
const STATEMENT_CACHE: usize = 48;

/// Each connection's page cache, in KiB. SQLite's default is 2 MiB per connection, which a full
/// pool multiplies into most of the process's memory; the pages a read needs come from the
/// operating system's file cache when they are not here, at the cost of a `pread` each.
const PAGE_CACHE_KIB: i64 = 512;

/// The most writes one transaction commits together. Past a few dozen, a bigger group saves
/// little (the fsync is shared already) and keeps the write lock longer.
const MAX_BATCH: usize = 64;

struct Migration {
    version: i64,
    name: &'static str,
    sql: &'static str,
}

/// Opens and checks the pool's connections (with `deadpool`'s managed pool and
/// `deadpool-sync`'s wrapper, which runs a connection's calls on the blocking pool).
///
/// A connection comes back to the pool after every read, and is checked before it is handed
/// out again. `deadpool-sqlite`'s manager checks with a query, which costs every read a second
/// trip to the blocking pool and back; a connection to a local file does not go stale the way
/// a network connection does, so the check here is only that no call panicked while holding
/// it. A call that fails leaves the connection usable, as SQLite's errors are per statement.
#[derive(Debug)]
struct Manager {
    path: PathBuf,
}

impl managed::Manager for Manager {
    type Type = SyncWrapper<Connection>;
    type Error = rusqlite::Error;

    async fn create(&self) -> Result<Self::Type, Self::Error> {
        let path = self.path.clone();
        SyncWrapper::new(Runtime::Tokio1, move || Connection::open(path)).await
    }

    async fn recycle(&self, conn: &mut Self::Type, _: &Metrics) -> RecycleResult<Self::Error> {
        if conn.is_mutex_poisoned() {
            Err(RecycleError::message(
                "a call panicked holding the connection",
            ))
        } else {
            Ok(())
        }
    }
}

type Pool = managed::Pool<Manager>;
type PoolError = managed::PoolError<rusqlite::Error>;
type Hook = managed::Hook<Manager>;
type HookError = managed::HookError<rusqlite::Error>;

/// The SQLite store. Cloning is cheap: clones share one pool.
#[derive(Clone)]
pub struct SqliteStore {
    pool: Pool,
    /// The writer's queue (see the module's doc); `None` once the store is closed.
    writer: Arc<Mutex<Option<WriteQueue>>>,
    timeout: Duration,
    path: Arc<Path>,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .field("timeout", &self.timeout)
            .field("pool", &self.pool_status())
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating the file and its parent directory if missing) the database at `path`,
    /// and starts the store's writer thread.
    ///
    /// The writer's connection and one pooled connection are opened before this returns, so a
    /// path that cannot be opened fails here.
    pub async fn open(path: &Path, options: StoreOptions) -> Result<Self, StoreError> {
        let path: Arc<Path> = Arc::from(path);
        let file = path.to_path_buf();
        let busy_timeout = options.timeout;
        // Creating files and opening a connection block; keep them off the executor's threads
        // like the rest. The writer's connection is the first, so the file is switched to WAL
        // before the pool's connections race to do it.
        let conn = tokio::task::spawn_blocking(move || -> Result<Connection, StoreError> {
            create_private(&file).map_err(|e| StoreError::Unavailable(Box::new(e)))?;
            let mut conn = Connection::open(&file).map_err(sql_error)?;
            configure(&mut conn, busy_timeout)
                .map_err(|e| pool_error(PoolError::PostCreateHook(e)))?;
            Ok(conn)
        })
        .await
        .map_err(|e| StoreError::Internal(Box::new(e)))??;
        let (queue, writes) = mpsc::unbounded_channel();
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || write_loop(&conn, writes))
            .map_err(|e| StoreError::Internal(Box::new(e)))?;
        let pool = Pool::builder(Manager {
            path: PathBuf::from(&*path),
        })
        .runtime(Runtime::Tokio1)
        .max_size(options.pool_size.get())
        .wait_timeout(Some(options.timeout))
        .create_timeout(Some(options.timeout))
        .recycle_timeout(Some(options.timeout))
        .post_create(Hook::async_fn(move |conn, _metrics| {
            Box::pin(async move {
                conn.interact(move |conn| configure(conn, busy_timeout))
                    .await
                    .map_err(|e| HookError::message(format!("configuring a connection: {e}")))?
            })
        }))
        .build()
        .map_err(|e| StoreError::Internal(Box::new(e)))?;
        let store = Self {
            pool,
            writer: Arc::new(Mutex::new(Some(queue))),
            timeout: options.timeout,
            path,
        };
        store.ping().await?;
        Ok(store)
    }

    /// Applies migrations/sqlite/*.sql (embedded with `include_str!`) not applied yet, recorded
    /// in `schema_migrations`.
    ///
    /// All of it runs in one `IMMEDIATE` transaction, so two processes migrating at once take
    /// turns and the second finds nothing left to do; a failing migration leaves no trace.
    pub async fn migrate(&self) -> Result<MigrationReport, StoreError> {
        let (applied, newer) = self
            .write(|tx| {
                tx.execute_batch(
                    "CREATE TABLE IF NOT EXISTS schema_migrations (
                        version    INTEGER NOT NULL PRIMARY KEY,
                        applied_at INTEGER NOT NULL
                    ) STRICT",
                )?;
                let recorded = tx
                    .prepare("SELECT version FROM schema_migrations")?
                    .query_map([], |row| row.get::<_, i64>(0))?
                    .collect::<Result<Vec<_>, _>>()?;
                let known = MIGRATIONS.last().map_or(0, |m| m.version);
                let newer = recorded.iter().copied().filter(|v| *v > known).max();
                let mut applied = Vec::new();
                for migration in MIGRATIONS.iter().filter(|m| !recorded.contains(&m.version)) {
                    tx.execute_batch(migration.sql)?;
                    tx.execute(
                        "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
                        params![migration.version, now_micros()?],
                    )?;
                    applied.push(migration);
                }
                Ok((applied, newer))
            })
            .await?;
        if let Some(newer) = newer {
            tracing::warn!(
                database = newer,
                binary = MIGRATIONS.last().map_or(0, |m| m.version),
                "the database schema is newer than this binary's migrations"
            );
        }
        for migration in &applied {
            tracing::info!(
                version = migration.version,
                name = migration.name,
                "applied migration"
            );
        }
        Ok(MigrationReport {
            applied: applied
                .into_iter()
                .map(|m| AppliedMigration {
                    version: m.version,
                    name: m.name,
                })
                .collect(),
            newer_in_database: newer,
        })
    }

    /// Pool state for metrics.
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

    /// Closes the store: waiting and later reads, and later writes, fail with `Unavailable`;
    /// pooled connections close as they are returned, and the writer's once it has finished
    /// the writes already queued.
    pub fn close(&self) {
        self.pool.close();
        self.writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
    }

    /// The value of pragma `name` on a pooled connection, as text. For tests that check the
    /// connection settings are in force.
    #[doc(hidden)]
    pub async fn pragma(&self, name: &str) -> Result<String, StoreError> {
        let name = pragma_name(name)?;
        self.run(move |conn| pragma_value(conn, &name)).await
    }

    /// The value of pragma `name` on the writer's connection, as text (see [`Self::pragma`]).
    #[doc(hidden)]
    pub async fn writer_pragma(&self, name: &str) -> Result<String, StoreError> {
        let name = pragma_name(name)?;
        self.write(move |conn| pragma_value(conn, &name)).await
    }

    /// Runs `f` with a pooled connection on the blocking pool, inside the caller's span.
    async fn run<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(&mut Connection) -> Result<T, Failure> + Send + 'static,
        T: Send + 'static,
    {
        let conn = self.pool.get().await.map_err(pool_error)?;
        let span = tracing::Span::current();
        conn.interact(move |conn| {
            let _entered = span.enter();
            f(conn)
        })
        .await
        .map_err(|e| interact_error(&e))?
        .map_err(Failure::into_store_error)
    }

    /// Has the writer run `f` inside a write transaction, in a savepoint of its own (see the
    /// module's doc), and answers once that transaction has committed. An error from `f`, or a
    /// panic, rolls back what `f` did and nothing else.
    async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(&Connection) -> Result<T, Failure> + Send + 'static,
        T: Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let queued = self
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .is_some_and(|queue| {
                queue
                    .send(Box::new(Pending {
                        f,
                        reply,
                        span: tracing::Span::current(),
                    }))
                    .is_ok()
            });
        if !queued {
            return Err(StoreError::Unavailable("the store is closed".into()));
        }
        match tokio::time::timeout(self.timeout, answer).await {
            Ok(Ok(result)) => result,
            // The write panicked; the panic hook has reported it.
            Ok(Err(_)) => Err(StoreError::Internal(
                "a database write ended without an answer".into(),
            )),
            Err(elapsed) => Err(StoreError::Unavailable(Box::new(elapsed))),
        }
    }
}

type WriteQueue = mpsc::UnboundedSender<Box<dyn Write>>;

/// A write waiting in the writer's queue, its result type erased.
trait Write: Send {
    /// Whether its caller has stopped waiting for it.
    fn abandoned(&self) -> bool;

    /// Runs it on the writer's connection, inside the group's transaction.
    fn run(self: Box<Self>, conn: &Connection) -> Ran;

    /// Answers its caller without running it.
    fn refuse(self: Box<Self>, error: StoreError);
}

/// A write that has run: whether its changes are to be kept, and how to answer its caller once
/// the group's commit has succeeded or failed.
struct Ran {
    keep: bool,
    answer: Box<dyn FnOnce(Result<(), StoreError>) + Send>,
}

struct Pending<F, T> {
    f: F,
    reply: oneshot::Sender<Result<T, StoreError>>,
    span: tracing::Span,
}

impl<F, T> Write for Pending<F, T>
where
    F: FnOnce(&Connection) -> Result<T, Failure> + Send + 'static,
    T: Send + 'static,
{
    fn abandoned(&self) -> bool {
        self.reply.is_closed()
    }

    fn run(self: Box<Self>, conn: &Connection) -> Ran {
        let Pending { f, reply, span } = *self;
        let result = span.in_scope(|| f(conn));
        Ran {
            keep: result.is_ok(),
            answer: Box::new(move |committed| {
                let answer = match (result, committed) {
                    (Ok(value), Ok(())) => Ok(value),
                    (Ok(_), Err(error)) => Err(error),
                    (Err(failure), _) => Err(failure.into_store_error()),
                };
                // The caller may have stopped waiting; then there is no one to tell.
                let _ = reply.send(answer);
            }),
        }
    }

    fn refuse(self: Box<Self>, error: StoreError) {
        let _ = self.reply.send(Err(error));
    }
}

/// The writer thread: takes what is queued, up to [`MAX_BATCH`] writes at a time, and commits
/// it in groups until the queue is closed and empty.
fn write_loop(conn: &Connection, mut queue: mpsc::UnboundedReceiver<Box<dyn Write>>) {
    let mut group = VecDeque::with_capacity(MAX_BATCH);
    while let Some(first) = queue.blocking_recv() {
        group.push_back(first);
        while group.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(write) => group.push_back(write),
                Err(_) => break,
            }
        }
        while !group.is_empty() {
            commit_group(conn, &mut group);
        }
    }
}

/// Runs writes from the front of `group` in one transaction, each in a savepoint of its own,
/// commits, and answers each caller. Takes at least one write off `group`: the ones it leaves
/// were not run, because the transaction was lost (SQLite rolls a whole transaction back on some
/// errors, such as a full disk) and they need a new one.
fn commit_group(conn: &Connection, group: &mut VecDeque<Box<dyn Write>>) {
    group.retain(|write| !write.abandoned());
    if group.is_empty() {
        return;
    }
    if let Err(error) = conn.execute_batch("BEGIN IMMEDIATE") {
        let error = Arc::new(error);
        for write in group.drain(..) {
            write.refuse(shared_sql_error(&error));
        }
        return;
    }
    let mut kept = Vec::with_capacity(group.len());
    let mut lost = None;
    while let Some(write) = group.pop_front() {
        if write.abandoned() {
            continue;
        }
        if let Err(error) = conn.execute_batch("SAVEPOINT write") {
            let error = Arc::new(error);
            write.refuse(shared_sql_error(&error));
            lost = Some(error);
            break;
        }
        let ran = catch_unwind(AssertUnwindSafe(|| write.run(conn)));
        let keep = matches!(&ran, Ok(ran) if ran.keep);
        let ended = if keep {
            conn.execute_batch("RELEASE write")
        } else {
            conn.execute_batch("ROLLBACK TO write; RELEASE write")
        };
        match ran {
            Ok(ran) if ran.keep => kept.push(ran.answer),
            // Its own failure: answered now, whatever becomes of the group.
            Ok(ran) => (ran.answer)(Ok(())),
            // A panic dropped the reply, which tells the caller.
            Err(_) => {}
        }
        if let Err(error) = ended {
            lost = Some(Arc::new(error));
            break;
        }
        if conn.is_autocommit() {
            lost = Some(Arc::new(rusqlite::Error::SqliteFailure(
                ffi::Error::new(ffi::SQLITE_ABORT),
                Some("the write transaction was rolled back".into()),
            )));
            break;
        }
    }
    let outcome = match lost {
        Some(error) => Err(error),
        None => conn.execute_batch("COMMIT").map_err(Arc::new),
    };
    if outcome.is_err() && !conn.is_autocommit() {
        // Nothing of it may stay: its writes are about to be answered with an error. When even
        // the rollback fails the connection is unusable, and SQLite rolls back when it closes;
        // the next group's BEGIN fails and says so.
        let _ = conn.execute_batch("ROLLBACK");
    }
    for answer in kept {
        answer(outcome.as_ref().copied().map_err(shared_sql_error));
    }
}

fn pragma_name(name: &str) -> Result<String, StoreError> {
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(StoreError::Internal(
            "a pragma name is a plain identifier".into(),
        ));
    }
    Ok(name.to_owned())
}

fn pragma_value(conn: &Connection, name: &str) -> Result<String, Failure> {
    Ok(conn.pragma_query_value(None, name, |row| {
        Ok(match row.get_ref(0)? {
            ValueRef::Null => String::new(),
            ValueRef::Integer(i) => i.to_string(),
            ValueRef::Real(r) => r.to_string(),
            ValueRef::Text(t) | ValueRef::Blob(t) => String::from_utf8_lossy(t).into(),
        })
    })?)
}

/// Creates the database file (and its directory) readable by its owner only, when it does not
/// exist yet. It holds only ciphertexts and hashes, but there is no reason for anyone else to
/// read them; SQLite gives the `-wal` and `-shm` files the database file's permissions.
fn create_private(path: &Path) -> std::io::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(error) => Err(error),
    }
}

/// Settings every connection needs; SQLite keeps them per connection, so they are applied
/// whenever the pool opens one.
fn configure(conn: &mut Connection, busy_timeout: Duration) -> Result<(), HookError> {
    let apply = |conn: &mut Connection| -> rusqlite::Result<String> {
        // First, so that the statements below wait for a lock rather than fail on it.
        conn.busy_timeout(busy_timeout)?;
        let mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.pragma_update(None, "cache_size", -PAGE_CACHE_KIB)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        Ok(mode)
    };
    let mode = apply(conn).map_err(HookError::Backend)?;
    if mode.eq_ignore_ascii_case("wal") {
        Ok(())
    } else {
        // An in-memory database, for one, cannot use WAL; refuse rather than run without it.
        Err(HookError::message(format!(
            "the database refused WAL journaling (its journal mode is {mode})"
        )))
    }
}

#[async_trait]
impl SecretStore for SqliteStore {
    #[tracing::instrument(level = "debug", skip_all, fields(count = namespaces.len()))]
    async fn create_namespaces(&self, namespaces: &[NewNamespace]) -> Result<(), StoreError> {
        if namespaces.is_empty() {
            return Ok(());
        }
        let namespaces = namespaces.to_vec();
        self.write(move |tx| {
            let now = now_micros()?;
            let mut insert = tx.prepare_cached(
                "INSERT INTO namespaces (id, access_hash, kek_id, wrapped_dek, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for ns in &namespaces {
                insert.execute(params![
                    ns.id.as_bytes(),
                    ns.access_hash.as_bytes(),
                    ns.data_key.key_id.as_str(),
                    ns.data_key.ciphertext,
                    now,
                ])?;
            }
            Ok(())
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn find_namespace(
        &self,
        access: &AccessKeyHash,
    ) -> Result<Option<NamespaceRecord>, StoreError> {
        let access = *access;
        self.run(move |conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT id, kek_id, wrapped_dek FROM namespaces WHERE access_hash = ?1",
                )?
                .query_row([access.as_bytes()], namespace_record)
                .optional()?)
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn read_namespace(
        &self,
        access: &AccessKeyHash,
    ) -> Result<Option<(NamespaceRecord, Vec<StoredSecret>)>, StoreError> {
        let access = *access;
        self.run(move |conn| {
            // One statement is one snapshot: the namespace and its secrets are read together,
            // so a concurrent write is seen whole or not at all. The LEFT JOIN still yields the
            // namespace (with NULL secret columns) when it has no secrets.
            let mut stmt = conn.prepare_cached(
                "SELECT n.id, n.kek_id, n.wrapped_dek, \
                        s.name_index, s.name_ct, s.value_ct, s.created_at, s.updated_at \
                 FROM namespaces AS n \
                 LEFT JOIN secrets AS s ON s.namespace_id = n.id \
                 WHERE n.access_hash = ?1 \
                 ORDER BY s.name_index",
            )?;
            let mut rows = stmt.query([access.as_bytes()])?;
            let mut found: Option<(NamespaceRecord, Vec<StoredSecret>)> = None;
            while let Some(row) = rows.next()? {
                let (_, secrets) = match &mut found {
                    Some(found) => found,
                    None => found.insert((namespace_record(row)?, Vec::new())),
                };
                if !matches!(row.get_ref(3)?, ValueRef::Null) {
                    secrets.push(stored_secret(row, 3)?);
                }
            }
            Ok(found)
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(ns = %ns))]
    async fn get_secret(
        &self,
        ns: NamespaceId,
        index: &NameIndex,
    ) -> Result<Option<StoredSecret>, StoreError> {
        let index = *index;
        self.run(move |conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT name_index, name_ct, value_ct, created_at, updated_at \
                     FROM secrets WHERE namespace_id = ?1 AND name_index = ?2",
                )?
                .query_row(params![ns.as_bytes(), index.0], |row| stored_secret(row, 0))
                .optional()?)
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(ns = %ns))]
    async fn upsert_secret(
        &self,
        ns: NamespaceId,
        secret: &SealedSecret,
        max_secrets: u32,
    ) -> Result<Upserted, StoreError> {
        let secret = secret.clone();
        self.write(move |tx| {
            ensure_namespace(tx, ns)?;
            let inserted = upsert(tx, ns, &secret, now_micros()?)?;
            // Counting after the insert, under the write lock, is exact: no other writer can
            // add a name between the insert and the count.
            if inserted && count_secrets(tx, ns)? > i64::from(max_secrets) {
                return Err(StoreError::NamespaceFull.into());
            }
            Ok(if inserted {
                Upserted::Created
            } else {
                Upserted::Updated
            })
        })
        .await
    }

    #[tracing::instrument(
        level = "debug",
        skip_all,
        fields(ns = %ns, upserts = upserts.len(), deletes = deletes.len())
    )]
    async fn apply_patch(
        &self,
        ns: NamespaceId,
        upserts: &[SealedSecret],
        deletes: &[NameIndex],
        max_secrets: u32,
    ) -> Result<Vec<StoredSecret>, StoreError> {
        let upserts = upserts.to_vec();
        let deletes = deletes.to_vec();
        self.write(move |tx| {
            ensure_namespace(tx, ns)?;
            let before = count_secrets(tx, ns)?;
            let mut delete = tx.prepare_cached(
                "DELETE FROM secrets WHERE namespace_id = ?1 AND name_index = ?2",
            )?;
            for index in &deletes {
                delete.execute(params![ns.as_bytes(), index.0])?;
            }
            let now = now_micros()?;
            for secret in &upserts {
                upsert(tx, ns, secret, now)?;
            }
            let after = count_secrets(tx, ns)?;
            // A patch that shrinks an over-full namespace (the limit was lowered) may still
            // apply; one that grows it past the limit may not.
            if after > i64::from(max_secrets) && after > before {
                return Err(StoreError::NamespaceFull.into());
            }
            let mut select = tx.prepare_cached(
                "SELECT name_index, name_ct, value_ct, created_at, updated_at \
                 FROM secrets WHERE namespace_id = ?1 ORDER BY name_index",
            )?;
            let secrets = select
                .query_map([ns.as_bytes()], |row| stored_secret(row, 0))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(secrets)
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(ns = %ns))]
    async fn delete_secret(&self, ns: NamespaceId, index: &NameIndex) -> Result<bool, StoreError> {
        let index = *index;
        self.write(move |tx| {
            let deleted = tx
                .prepare_cached("DELETE FROM secrets WHERE namespace_id = ?1 AND name_index = ?2")?
                .execute(params![ns.as_bytes(), index.0])?;
            Ok(deleted > 0)
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn delete_namespace(&self, access: &AccessKeyHash) -> Result<bool, StoreError> {
        let access = *access;
        self.write(move |tx| {
            // The secrets go with it through ON DELETE CASCADE (foreign_keys is on for every
            // connection), in the same statement.
            let deleted = tx
                .prepare_cached("DELETE FROM namespaces WHERE access_hash = ?1")?
                .execute([access.as_bytes()])?;
            Ok(deleted > 0)
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn replace_access_hash(
        &self,
        old: &AccessKeyHash,
        new: &AccessKeyHash,
    ) -> Result<bool, StoreError> {
        let (old, new) = (*old, *new);
        self.write(move |tx| {
            // Checked first so that a taken `new` is a conflict whether or not `old` exists;
            // the write lock keeps the check true until the update.
            let taken: bool = tx
                .prepare_cached("SELECT EXISTS (SELECT 1 FROM namespaces WHERE access_hash = ?1)")?
                .query_row([new.as_bytes()], |row| row.get(0))?;
            if taken {
                return Err(StoreError::Conflict.into());
            }
            let replaced = tx
                .prepare_cached("UPDATE namespaces SET access_hash = ?2 WHERE access_hash = ?1")?
                .execute([old.as_bytes(), new.as_bytes()])?;
            Ok(replaced > 0)
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn ping(&self) -> Result<(), StoreError> {
        self.run(|conn| {
            conn.prepare_cached("SELECT 1")?.query_row([], |_| Ok(()))?;
            Ok(())
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn key_checks(&self) -> Result<Vec<KeyCheck>, StoreError> {
        self.run(|conn| {
            let mut stmt =
                conn.prepare_cached("SELECT key_id, check_ct FROM key_checks ORDER BY key_id")?;
            let checks = stmt
                .query_map([], |row| {
                    Ok(KeyCheck {
                        key_id: KeyId::new(row.get::<_, String>(0)?),
                        ciphertext: row.get(1)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(checks)
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(key_id = %check.key_id))]
    async fn add_key_check(&self, check: &KeyCheck) -> Result<(), StoreError> {
        let check = check.clone();
        self.write(move |tx| {
            // DO NOTHING keeps the first check written for a key id, so replicas starting at
            // once agree on one.
            tx.prepare_cached(
                "INSERT INTO key_checks (key_id, check_ct, created_at) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (key_id) DO NOTHING",
            )?
            .execute(params![
                check.key_id.as_str(),
                check.ciphertext,
                now_micros()?
            ])?;
            Ok(())
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn key_ids_in_use(&self) -> Result<Vec<KeyId>, StoreError> {
        self.run(|conn| {
            // Answered from the kek_id index alone: one step per distinct id.
            let mut stmt =
                conn.prepare_cached("SELECT DISTINCT kek_id FROM namespaces ORDER BY kek_id")?;
            let ids = stmt
                .query_map([], |row| row.get::<_, String>(0).map(KeyId::new))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(ids)
        })
        .await
    }

    async fn count_by_key_id(&self) -> Result<Vec<(KeyId, u64)>, StoreError> {
        self.run(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT kek_id, count(*) FROM namespaces GROUP BY kek_id ORDER BY kek_id",
            )?;
            let counts = stmt
                .query_map([], |row| {
                    let count: i64 = row.get(1)?;
                    Ok((
                        KeyId::new(row.get::<_, String>(0)?),
                        u64::try_from(count).unwrap_or_default(),
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(counts)
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(active = %active))]
    async fn wrapped_not_under(
        &self,
        active: &KeyId,
        after: Option<NamespaceId>,
        limit: u32,
    ) -> Result<Vec<NamespaceRecord>, StoreError> {
        let active = active.clone();
        self.run(move |conn| {
            // Two statements rather than `(?2 IS NULL OR id > ?2)`, so that each pages along
            // the id index instead of scanning from the start.
            let mut stmt;
            let rows = match after {
                None => {
                    stmt = conn.prepare_cached(
                        "SELECT id, kek_id, wrapped_dek FROM namespaces \
                         WHERE kek_id <> ?1 ORDER BY id LIMIT ?2",
                    )?;
                    stmt.query_map(params![active.as_str(), limit], wrapped_namespace)?
                }
                Some(after) => {
                    stmt = conn.prepare_cached(
                        "SELECT id, kek_id, wrapped_dek FROM namespaces \
                         WHERE id > ?3 AND kek_id <> ?1 ORDER BY id LIMIT ?2",
                    )?;
                    stmt.query_map(
                        params![active.as_str(), limit, after.as_bytes()],
                        wrapped_namespace,
                    )?
                }
            };
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(count = updates.len()))]
    async fn replace_wrapped_keys(
        &self,
        updates: &[(NamespaceRecord, WrappedKey)],
    ) -> Result<u64, StoreError> {
        if updates.is_empty() {
            return Ok(0);
        }
        let updates = updates.to_vec();
        self.write(move |tx| {
            // Compare-and-swap: the WHERE clause matches only a key still as it was read, so a
            // namespace deleted or re-wrapped meanwhile is left alone.
            let mut update = tx.prepare_cached(
                "UPDATE namespaces SET kek_id = ?2, wrapped_dek = ?3 \
                 WHERE id = ?1 AND kek_id = ?4 AND wrapped_dek = ?5",
            )?;
            let mut replaced = 0u64;
            for (old, new) in &updates {
                let changed = update.execute(params![
                    old.id.as_bytes(),
                    new.key_id.as_str(),
                    new.ciphertext,
                    old.data_key.key_id.as_str(),
                    old.data_key.ciphertext,
                ])?;
                replaced += changed as u64;
            }
            Ok(replaced)
        })
        .await
    }
}

/// Fails with `NamespaceNotFound` unless namespace `ns` exists. Inside a write transaction
/// this stays true until it commits.
fn ensure_namespace(tx: &Connection, ns: NamespaceId) -> Result<(), Failure> {
    let exists: bool = tx
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM namespaces WHERE id = ?1)")?
        .query_row([ns.as_bytes()], |row| row.get(0))?;
    if exists {
        Ok(())
    } else {
        Err(StoreError::NamespaceNotFound.into())
    }
}

/// Inserts or updates one secret in one statement; `true` when the name was new.
///
/// An update keeps `created_at` and moves `updated_at` strictly forward, to at least one
/// microsecond past its previous value even when the clock has not advanced (or stepped
/// back). So an updated row always has `updated_at > created_at` and a new one has them equal,
/// which is how the statement itself tells an insert from an update without a prior read.
fn upsert(
    tx: &Connection,
    ns: NamespaceId,
    secret: &SealedSecret,
    now: i64,
) -> Result<bool, Failure> {
    let inserted = tx
        .prepare_cached(
            "INSERT INTO secrets \
                (namespace_id, name_index, name_ct, value_ct, created_at, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?5) \
             ON CONFLICT (namespace_id, name_index) DO UPDATE SET \
                name_ct = excluded.name_ct, \
                value_ct = excluded.value_ct, \
                updated_at = max(excluded.updated_at, secrets.updated_at + 1) \
             RETURNING created_at = updated_at",
        )?
        .query_row(
            params![
                ns.as_bytes(),
                secret.index.0,
                secret.name,
                secret.value,
                now
            ],
            |row| row.get(0),
        )?;
    Ok(inserted)
}

fn count_secrets(tx: &Connection, ns: NamespaceId) -> Result<i64, Failure> {
    Ok(tx
        .prepare_cached("SELECT count(*) FROM secrets WHERE namespace_id = ?1")?
        .query_row([ns.as_bytes()], |row| row.get(0))?)
}

/// Reads `id, kek_id, wrapped_dek` at columns 0 to 2.
fn namespace_record(row: &Row<'_>) -> rusqlite::Result<NamespaceRecord> {
    let wrapped = wrapped_namespace(row)?;
    Ok(NamespaceRecord {
        id: wrapped.id,
        data_key: wrapped.data_key,
    })
}

/// Reads `id, kek_id, wrapped_dek` at columns 0 to 2.
fn wrapped_namespace(row: &Row<'_>) -> rusqlite::Result<NamespaceRecord> {
    Ok(NamespaceRecord {
        id: NamespaceId::from_uuid(Uuid::from_bytes(row.get::<_, [u8; 16]>(0)?)),
        data_key: WrappedKey {
            key_id: KeyId::new(row.get::<_, String>(1)?),
            ciphertext: row.get(2)?,
        },
    })
}

/// Reads `name_index, name_ct, value_ct, created_at, updated_at` starting at column `first`.
fn stored_secret(row: &Row<'_>, first: usize) -> rusqlite::Result<StoredSecret> {
    Ok(StoredSecret {
        sealed: SealedSecret {
            index: NameIndex(row.get(first)?),
            name: row.get(first + 1)?,
            value: row.get(first + 2)?,
        },
        created_at: timestamp(row, first + 3)?,
        updated_at: timestamp(row, first + 4)?,
    })
}

fn timestamp(row: &Row<'_>, column: usize) -> rusqlite::Result<OffsetDateTime> {
    let micros: i64 = row.get(column)?;
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1_000).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(
            column,
            rusqlite::types::Type::Integer,
            Box::new(e),
        )
    })
}

/// The service's clock in unix microseconds, the precision both stores keep.
fn now_micros() -> Result<i64, Failure> {
    let micros = OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000;
    i64::try_from(micros).map_err(|e| Failure::Store(StoreError::Internal(Box::new(e))))
}

/// What a closure run on a connection fails with: a driver error, still to be classified, or
/// an outcome the contract names.
#[derive(Debug)]
enum Failure {
    Sql(rusqlite::Error),
    Store(StoreError),
}

impl From<rusqlite::Error> for Failure {
    fn from(e: rusqlite::Error) -> Self {
        Self::Sql(e)
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

impl Failure {
    fn into_store_error(self) -> StoreError {
        match self {
            Self::Sql(e) => sql_error(e),
            Self::Store(e) => e,
        }
    }
}

/// How the contract sees a driver error.
enum Kind {
    Unavailable,
    Conflict,
    Internal,
}

fn kind(e: &rusqlite::Error) -> Kind {
    let Some(failure) = e.sqlite_error() else {
        return Kind::Internal;
    };
    match failure.code {
        // Locks held past busy_timeout, and the file or its disk failing: conditions of the
        // machine, from which the service recovers by itself once they pass.
        ErrorCode::DatabaseBusy
        | ErrorCode::DatabaseLocked
        | ErrorCode::SystemIoFailure
        | ErrorCode::CannotOpen
        | ErrorCode::DiskFull
        | ErrorCode::ReadOnly
        | ErrorCode::FileLockingProtocolFailed => Kind::Unavailable,
        ErrorCode::ConstraintViolation
            if matches!(
                failure.extended_code,
                ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY
            ) =>
        {
            Kind::Conflict
        }
        _ => Kind::Internal,
    }
}

/// Translates a driver error shared by several callers (a group's failed commit), keeping it as
/// the source.
fn shared_sql_error(e: &Arc<rusqlite::Error>) -> StoreError {
    match kind(e) {
        Kind::Unavailable => StoreError::Unavailable(Box::new(Arc::clone(e))),
        Kind::Conflict => StoreError::Conflict,
        Kind::Internal => StoreError::Internal(Box::new(Arc::clone(e))),
    }
}

/// Translates a driver error, keeping it as the source. SQLite's messages name tables and
/// columns, never bound values, so the source carries no secret or parameter.
fn sql_error(e: rusqlite::Error) -> StoreError {
    match kind(&e) {
        Kind::Unavailable => StoreError::Unavailable(Box::new(e)),
        Kind::Conflict => StoreError::Conflict,
        Kind::Internal => StoreError::Internal(Box::new(e)),
    }
}

fn pool_error(e: PoolError) -> StoreError {
    let unavailable = match &e {
        PoolError::Timeout(_) | PoolError::Closed => true,
        PoolError::Backend(sql) | PoolError::PostCreateHook(HookError::Backend(sql)) => {
            matches!(kind(sql), Kind::Unavailable)
        }
        PoolError::PostCreateHook(HookError::Message(_)) | PoolError::NoRuntimeSpecified => false,
    };
    if unavailable {
        StoreError::Unavailable(Box::new(e))
    } else {
        StoreError::Internal(Box::new(e))
    }
}

fn interact_error(e: &InteractError) -> StoreError {
    // The panic payload is neither `Sync` nor useful to a caller; the panic itself has already
    // been reported by the panic hook.
    let what = match e {
        InteractError::Panic(_) => "a database call panicked",
        InteractError::Cancelled => "a database call was cancelled",
    };
    StoreError::Internal(what.into())
}

impl Store for SqliteStore {
    const BACKEND: &'static str = "sqlite";
    type Location = PathBuf;

    fn open(
        location: &PathBuf,
        options: StoreOptions,
    ) -> impl Future<Output = Result<Self, StoreError>> + Send {
        SqliteStore::open(location, options)
    }

    fn migrate(&self) -> impl Future<Output = Result<MigrationReport, StoreError>> + Send {
        SqliteStore::migrate(self)
    }

    fn pool_status(&self) -> PoolStatus {
        SqliteStore::pool_status(self)
    }

    fn close(&self) {
        SqliteStore::close(self);
    }
}
