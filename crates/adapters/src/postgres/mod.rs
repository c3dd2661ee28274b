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
//! # Migrations
//! `migrations/postgres/*.sql` are embedded at build time (`crate::migrations` holds the list
//! and what a run does) and applied by [`PostgresStore::migrate`].
//!
//! # Files
//! - this file: [`PostgresStore`], its lifecycle (build, migrate, pool status, close) and `run`,
//!   which bounds every operation as described above;
//! - `connect`: the connection URL read, and how each connection is opened and driven; `tls`:
//!   `sslmode` and the certificates, as a rustls configuration;
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
mod port;
mod rows;
mod sql;
pub mod tls;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Client, Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use secrets_domain::ports::StoreError;
use tokio::time::{Instant, timeout_at};

use self::connect::{ConnectionSettings, Connector, Target};
use self::error::{Cause, db, db_at, pool_error, timed_out};
use crate::migrations;
use crate::store::{AppliedMigration, MigrationReport, PoolStatus, Store, StoreOptions};

/// The PostgreSQL store. Cloning it is cheap: clones share one pool.
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    /// Where it connects, for messages (no password).
    target: Arc<Target>,
    timeout: Duration,
    /// `timeout` as a PostgreSQL interval setting (`"5000ms"`), for `sql::BOUND_TRANSACTION`.
    server_timeout: String,
}

// The pool's configuration holds the connection URL's password, so `Debug` shows only what is
// safe to log (not even the host: error messages name it where it helps).
impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("timeout", &self.timeout)
            .field("pool", &self.pool_status())
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
        let ConnectionSettings {
            mut config,
            tls,
            target,
        } = ConnectionSettings::parse(url)?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(options.timeout);
        }
        if config.get_application_name().is_none() {
            config.application_name("secrets-service");
        }
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| Cause::internal("the PostgreSQL store needs a Tokio runtime"))?;
        let connector = Connector::new(&tls, runtime)?;
        // `Fast` recycling only checks that the connection is not closed: a test query on every
        // checkout would add a round trip to the hot read. A connection that broke unnoticed
        // fails one operation with `Unavailable` and is then dropped as closed.
        let manager = Manager::from_connect(
            config,
            connector,
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
            .map_err(|e| Cause::internal(e.to_string()))?;
        Ok(Self {
            pool,
            target: Arc::new(target),
            timeout: options.timeout,
            server_timeout: format!("{}ms", options.timeout.as_millis().max(1)),
        })
    }

    /// Why the connection to the database could be read or changed in transit, when it could
    /// (a host not on this machine, reached without `sslmode=verify-full`).
    #[must_use]
    pub fn insecure_transport(&self) -> Option<String> {
        self.target.insecure_transport()
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
        let mut client = match self.pool.get().await {
            Ok(client) => client,
            Err(error) => return Err(pool_error(error, &self.target, self.timeout).await),
        };
        // The errors of a migration name the role and database: a missing grant is the usual
        // one, and its message holds the GRANT that fixes it.
        let db = |error: tokio_postgres::Error| db_at(&error, &self.target);
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

    /// The pool's state, for metrics.
    #[must_use]
    pub fn pool_status(&self) -> PoolStatus {
        PoolStatus::of(self.pool.status())
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
        let mut client = match timeout_at(deadline, self.pool.get()).await {
            Ok(Ok(client)) => client,
            Ok(Err(error)) => return Err(pool_error(error, &self.target, self.timeout).await),
            Err(_elapsed) => {
                return Err(Cause::unavailable(timed_out(&self.target, self.timeout)));
            }
        };
        match timeout_at(deadline, op(&mut client)).await {
            Ok(result) => result,
            Err(_elapsed) => {
                // The operation was abandoned half-way: the connection may still have a
                // statement in flight or an open transaction, or its peer may be gone. Taking
                // it out of the pool and dropping it closes it; the server then rolls back.
                drop(Object::take(client));
                Err(Cause::unavailable(timed_out(&self.target, self.timeout)))
            }
        }
    }
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

    fn close(&self) {
        self.pool.close();
    }
}
