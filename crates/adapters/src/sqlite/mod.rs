//! The zero-setup embedded store on SQLite: one file on one machine.
//!
//! Every connection runs with `journal_mode=WAL` and `synchronous=FULL`, so that readers
//! proceed while a write commits and an acknowledged write survives a power cut (see
//! `connection`'s `# Durability`). SQLite allows one writer at a time, so a store has one: a
//! thread of its own with a connection of its own, which commits the writes that have queued as
//! one group, each in a savepoint of its own, with one fsync (see `writer`). Reads never queue:
//! WAL serves them from a snapshot, on pooled connections of their own, on tokio's blocking
//! pool (see `pool`). SQLite calls block the calling thread (on locks and on fsync), so none
//! runs on the async executor's worker threads.
//!
//! # Layout on disk
//! See `migrations/sqlite/`: the schema mirrors PostgreSQL's, with ids and hashes as BLOBs and
//! timestamps as integer unix microseconds from the service's clock.
//!
//! # Files
//! - this file: [`SqliteStore`] and its lifecycle (open, migrate, pool status, close);
//! - `pool`: the pooled connections reads run on;
//! - `writer`: the writer thread and its group commit;
//! - `connection`: what every connection is set up with, and creating the file;
//! - `port`: the domain's [`SecretStore`] port, with `sql` its statements and `rows` the
//!   mapping of rows to the port's types;
//! - `import`: the domain's `ImportStore` port (`import-original`'s records and transactions),
//!   with its own statements;
//! - `error`: how a driver error becomes a [`StoreError`].

mod connection;
mod error;
mod import;
mod pool;
mod port;
mod rows;
mod sql;
mod writer;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rusqlite::params;
use secrets_domain::ports::{SecretStore, StoreError};

use self::pool::ReadPool;
use self::writer::Writer;
use crate::migrations;
use crate::store::{AppliedMigration, MigrationReport, PoolStatus, Store, StoreOptions};

/// The SQLite store. Cloning is cheap: clones share one pool and one writer.
#[derive(Clone)]
pub struct SqliteStore {
    /// The pooled connections reads run on.
    reads: ReadPool,
    /// The one writer every write goes through (see the module's doc).
    writer: Arc<Writer>,
    path: Arc<Path>,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .field("timeout", &self.writer.timeout())
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
        // Creating files and opening a connection block; keep them off the executor's threads
        // like the rest. The writer's connection is the first, so the file is switched to WAL
        // before the pool's connections race to do it.
        let conn = tokio::task::spawn_blocking(move || connection::create(&file, options.timeout))
            .await
            .map_err(|e| StoreError::Internal(Box::new(e)))??;
        let writer = Writer::start(conn, options.timeout)?;
        let reads = ReadPool::new(PathBuf::from(&*path), options)?;
        let store = Self {
            reads,
            writer: Arc::new(writer),
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
        let plan = self
            .writer
            .write(|tx| {
                tx.execute_batch(sql::CREATE_SCHEMA_MIGRATIONS)?;
                let recorded = tx
                    .prepare(sql::RECORDED_MIGRATIONS)?
                    .query_map([], |row| row.get::<_, i64>(0))?
                    .collect::<Result<Vec<_>, _>>()?;
                let plan = migrations::plan(migrations::SQLITE, &recorded);
                for migration in &plan.pending {
                    tx.execute_batch(migration.sql)?;
                    tx.execute(
                        sql::RECORD_MIGRATION,
                        params![migration.version, rows::now_micros()?],
                    )?;
                }
                Ok(plan)
            })
            .await?;
        Ok(plan.finish())
    }

    /// The migrations the database has not recorded, without applying any.
    pub async fn pending_migrations(&self) -> Result<Vec<AppliedMigration>, StoreError> {
        self.reads
            .run(|conn| {
                let exists: bool =
                    conn.query_row(sql::HAS_SCHEMA_MIGRATIONS, [], |row| row.get(0))?;
                let recorded = if exists {
                    conn.prepare(sql::RECORDED_MIGRATIONS)?
                        .query_map([], |row| row.get::<_, i64>(0))?
                        .collect::<Result<Vec<_>, _>>()?
                } else {
                    Vec::new()
                };
                Ok(migrations::plan(migrations::SQLITE, &recorded).pending())
            })
            .await
    }

    /// Pool state for metrics.
    #[must_use]
    pub fn pool_status(&self) -> PoolStatus {
        self.reads.status()
    }

    /// Closes the store: waiting and later reads, and later writes, fail with `Unavailable`;
    /// pooled connections close as they are returned, and the writer's once it has finished
    /// the writes already queued.
    pub fn close(&self) {
        self.reads.close();
        self.writer.close();
    }

    /// The value of pragma `name` on a pooled connection, as text. For tests that check the
    /// connection settings are in force.
    #[doc(hidden)]
    pub async fn pragma(&self, name: &str) -> Result<String, StoreError> {
        let name = connection::pragma_name(name)?;
        self.reads
            .run(move |conn| connection::pragma_value(conn, &name))
            .await
    }

    /// The value of pragma `name` on the writer's connection, as text (see [`Self::pragma`]).
    #[doc(hidden)]
    pub async fn writer_pragma(&self, name: &str) -> Result<String, StoreError> {
        let name = connection::pragma_name(name)?;
        self.writer
            .write(move |conn| connection::pragma_value(conn, &name))
            .await
    }
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

    fn pending_migrations(
        &self,
    ) -> impl Future<Output = Result<Vec<AppliedMigration>, StoreError>> + Send {
        SqliteStore::pending_migrations(self)
    }

    fn pool_status(&self) -> PoolStatus {
        SqliteStore::pool_status(self)
    }

    fn close(&self) {
        SqliteStore::close(self);
    }
}
