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
//! (see `sql::BOUND_TRANSACTION`): a statement that overruns it is cancelled, and a session left
//! idle inside the transaction that long, whose client is gone, is ended and its locks
//! released. Without that, a session abandoned in a partition keeps its namespace's lock until
//! TCP keepalive notices (hours, by default), every write to that namespace times out on it,
//! and each leaves one more session waiting behind it until the server runs out of connections.
//!
//! # Connecting
//! `connect` is where connections are set up: the URL read (libpq's TLS settings translated
//! for the driver, see `tls`), and each pooled connection opened and driven on the runtime the
//! store was built on, which outlives the HTTP workers (why that matters is in `connect`'s
//! doc). Failures are said in words (`error`): which database, role, host, handshake or grant.
//!
//! # Failover and standbys
//! The primary's URL may name every node of a cluster with `target_session_attrs=read-write`:
//! each new connection then goes to whichever node takes writes now, so after a failover the
//! pool finds the new primary by itself. A connection to the old primary is closed when it is
//! restarted as a standby; one that is still open on a server refusing writes as read-only
//! (SQLSTATE 25006) fails that operation with [`StoreError::Unavailable`] (503, never 500) and
//! leaves the pool, so that it never serves another write. `storage.read_urls` adds standbys
//! that serve the hot read only when they have provably caught up with the primary (`standby`).
//!
//! # Migrations
//! `migrations/postgres/*.sql` are embedded at build time (`crate::migrations` holds the list
//! and what a run does) and applied by [`PostgresStore::migrate`].
//!
//! # Files
//! - this file: [`PostgresStore`] and [`PostgresLocation`], its lifecycle (build, migrate, pool
//!   status, close);
//! - `pool`: one endpoint's pool, built from its URL, and `Connections::run`, which bounds every
//!   operation as described above and drops connections that must not be used again;
//! - `connect`: the connection URL read, and how each connection is opened and driven; `tls`:
//!   `sslmode` and the certificates, as a rustls configuration;
//! - `standby`: reads on standbys, and how each proves it is as fresh as the primary;
//! - `port`: the domain's [`SecretStore`] port, and how its writes serialise (`# Concurrency`);
//! - `import`: the domain's `ImportStore` port (`import-original`'s records and transactions),
//!   with its own statements;
//! - `sql`: every statement, with why it is written the way it is; `rows`: rows as the port's
//!   types;
//! - `error`: how a driver error becomes a [`StoreError`] (unique violation, unreachable
//!   database, anything else), with its cause in words.
//!
//! [`SecretStore`]: secrets_domain::ports::SecretStore

mod connect;
mod error;
mod import;
mod pool;
mod port;
mod rows;
mod sql;
mod standby;
pub mod tls;

use std::fmt;
use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};
use secrets_domain::ports::StoreError;
use tokio::time::Instant;

use self::error::{db, db_at, pool_error};
use self::pool::Connections;
use self::standby::Standbys;
use crate::migrations;
use crate::store::{
    AppliedMigration, MigrationReport, PoolStatus, ReadRouting, Store, StoreOptions,
};

/// Where the PostgreSQL store lives: the primary's URL (several hosts with
/// `target_session_attrs=read-write` find whichever is primary now), and the standbys that may
/// serve the hot read (`storage.read_urls`; none by default). Each URL may hold a password.
#[derive(Clone)]
pub struct PostgresLocation {
    /// The primary.
    pub url: SecretString,
    /// Standbys for the hot read, each one host.
    pub read_urls: Vec<SecretString>,
}

impl From<String> for PostgresLocation {
    /// The primary alone.
    fn from(url: String) -> Self {
        Self {
            url: url.into(),
            read_urls: Vec::new(),
        }
    }
}

impl fmt::Debug for PostgresLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresLocation")
            .field("read_urls", &self.read_urls.len())
            .finish_non_exhaustive()
    }
}

/// The PostgreSQL store. Cloning it is cheap: clones share one pool.
#[derive(Clone)]
pub struct PostgresStore {
    primary: Connections,
    /// The standbys of `storage.read_urls`, when there are any.
    standbys: Option<Arc<Standbys>>,
    /// The timeout as a PostgreSQL interval setting (`"5000ms"`), for `sql::BOUND_TRANSACTION`.
    server_timeout: String,
}

// The pool's configuration holds the connection URL's password, so `Debug` shows only what is
// safe to log (not even the host: error messages name it where it helps).
impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("timeout", &self.primary.timeout)
            .field("pool", &self.pool_status())
            .field("standbys", &self.standbys.is_some())
            .finish_non_exhaustive()
    }
}

/// The advisory lock every migrator takes, so that replicas starting at once apply each
/// migration exactly once. Any fixed number works; this one spells "secrets" in ASCII.
const MIGRATION_LOCK: i64 = 0x0073_6563_7265_7473;

impl PostgresStore {
    /// Builds the pool. It does not connect yet, so the service starts even while the
    /// database is down; connections are opened on first use, on the runtime this is called
    /// on (see `connect`): the caller's main runtime, not an HTTP worker's.
    ///
    /// # Errors
    /// [`StoreError::Internal`] when `url` is not a valid PostgreSQL connection string, its TLS
    /// settings cannot work or name files that cannot be read, or there is no Tokio runtime.
    pub fn new(url: &str, options: StoreOptions) -> Result<Self, StoreError> {
        Self::with_standbys(url, &[], options)
    }

    /// Builds the primary's pool and one per standby in `read_urls`, which then serve the hot
    /// read whenever they have caught up with the primary (see `standby`). None connects yet.
    ///
    /// # Errors
    /// As [`PostgresStore::new`], for any of the URLs.
    pub fn with_standbys(
        url: &str,
        read_urls: &[&str],
        options: StoreOptions,
    ) -> Result<Self, StoreError> {
        let standbys = if read_urls.is_empty() {
            None
        } else {
            Some(Arc::new(Standbys::new(read_urls, options)?))
        };
        Ok(Self {
            primary: Connections::new(url, options)?,
            standbys,
            server_timeout: format!("{}ms", options.timeout.as_millis().max(1)),
        })
    }

    /// Why the connection to the database could be read or changed in transit, when it could
    /// (a host not on this machine, reached without `sslmode=verify-full`).
    #[must_use]
    pub fn insecure_transport(&self) -> Option<String> {
        self.primary.target.insecure_transport().or_else(|| {
            self.standbys
                .as_ref()
                .and_then(|standbys| standbys.insecure_transport())
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
        let primary = &self.primary;
        let mut client = match primary.pool.get().await {
            Ok(client) => client,
            Err(error) => return Err(pool_error(error, &primary.target, primary.timeout).await),
        };
        // The errors of a migration name the role and database: a missing grant is the usual
        // one, and its message holds the GRANT that fixes it.
        let db = |error: tokio_postgres::Error| db_at(&error, &primary.target);
        let tx = client.transaction().await.map_err(db)?;
        tx.execute(sql::LOCK_MIGRATIONS, &[&MIGRATION_LOCK])
            .await
            .map_err(db)?;
        tx.batch_execute(sql::CREATE_SCHEMA_MIGRATIONS)
            .await
            .map_err(db)?;
        let recorded: Vec<i64> = tx
            .query(sql::RECORDED_MIGRATIONS, &[])
            .await
            .map_err(db)?
            .iter()
            .map(|row| row.try_get(0))
            .collect::<Result<_, _>>()
            .map_err(db)?;
        let plan = migrations::plan(migrations::POSTGRES, &recorded);
        for migration in &plan.pending {
            tx.batch_execute(migration.sql).await.map_err(db)?;
            tx.execute(sql::RECORD_MIGRATION, &[&migration.version])
                .await
                .map_err(db)?;
        }
        tx.commit().await.map_err(db)?;
        Ok(plan.finish())
    }

    /// The migrations the database has not recorded, without applying any.
    pub async fn pending_migrations(&self) -> Result<Vec<AppliedMigration>, StoreError> {
        self.run(async |client| {
            let exists: bool = client
                .query_one(sql::HAS_SCHEMA_MIGRATIONS, &[])
                .await
                .map_err(db)?
                .try_get(0)
                .map_err(db)?;
            let mut recorded = Vec::new();
            if exists {
                for row in client
                    .query(sql::RECORDED_MIGRATIONS, &[])
                    .await
                    .map_err(db)?
                {
                    recorded.push(row.try_get(0).map_err(db)?);
                }
            }
            Ok(migrations::plan(migrations::POSTGRES, &recorded).pending())
        })
        .await
    }

    /// The primary's pool state, for metrics.
    #[must_use]
    pub fn pool_status(&self) -> PoolStatus {
        PoolStatus::of(self.primary.pool.status())
    }

    /// Where hot reads went, for metrics; all zero without standbys.
    #[must_use]
    pub fn read_routing(&self) -> ReadRouting {
        self.standbys
            .as_ref()
            .map(|standbys| standbys.routing())
            .unwrap_or_default()
    }

    /// Runs `op` on a connection to the primary, bounded by the store's timeout (see
    /// `pool::Connections::run`).
    async fn run<T>(
        &self,
        op: impl AsyncFnOnce(&mut deadpool_postgres::Client) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.primary.run(op).await
    }

    /// The deadline of an operation that starts now.
    fn deadline(&self) -> Instant {
        Instant::now() + self.primary.timeout
    }
}

impl Store for PostgresStore {
    const BACKEND: &'static str = "postgres";
    type Location = PostgresLocation;

    async fn open(location: &PostgresLocation, options: StoreOptions) -> Result<Self, StoreError> {
        let read_urls: Vec<&str> = location
            .read_urls
            .iter()
            .map(ExposeSecret::expose_secret)
            .collect();
        PostgresStore::with_standbys(location.url.expose_secret(), &read_urls, options)
    }

    fn migrate(&self) -> impl Future<Output = Result<MigrationReport, StoreError>> + Send {
        PostgresStore::migrate(self)
    }

    fn pending_migrations(
        &self,
    ) -> impl Future<Output = Result<Vec<AppliedMigration>, StoreError>> + Send {
        PostgresStore::pending_migrations(self)
    }

    fn pool_status(&self) -> PoolStatus {
        PostgresStore::pool_status(self)
    }

    fn insecure_transport(&self) -> Option<String> {
        PostgresStore::insecure_transport(self)
    }

    fn read_routing(&self) -> ReadRouting {
        PostgresStore::read_routing(self)
    }

    fn close(&self) {
        self.primary.pool.close();
        if let Some(standbys) = &self.standbys {
            standbys.close();
        }
    }
}
