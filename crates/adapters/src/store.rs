//! [`Store`]: what a storage backend does beyond the domain's port.
//!
//! The domain's [`SecretStore`] is what the use cases need from a store while serving. Around it,
//! each backend has a life of its own: it is opened from a location and options, it migrates its
//! own schema, it reports its connection pool for metrics, and it closes at shutdown. `Store`
//! is that life, written once as a trait so that the binary is generic over it: the composition
//! root chooses the backend once (`match backend { .. => run::<SqliteStore>(..) }`) and every
//! command after that is one generic function, statically dispatched.

use std::future::Future;
use std::num::NonZeroUsize;
use std::time::Duration;

use secrets_domain::ports::{SecretStore, StoreError};

/// How a store uses its connections, whichever the backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreOptions {
    /// The most connections the pool opens. (SQLite's pool serves reads; its writer has one
    /// connection of its own besides.)
    pub pool_size: NonZeroUsize,
    /// The longest a caller waits for anything: a connection, or a whole store operation.
    pub timeout: Duration,
}

/// A store's connection pool state, for metrics (both stores report the same shape).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolStatus {
    /// The most connections the pool opens. (SQLite's pool serves reads; its writer's own
    /// connection is not counted.)
    pub max_size: usize,
    /// The connections open now, in use or idle.
    pub size: usize,
    /// The idle connections, ready to be handed out.
    pub available: usize,
    /// The callers waiting for a connection.
    pub waiting: usize,
}

impl PoolStatus {
    /// The status of a `deadpool` pool, which both stores' pools are.
    pub(crate) fn of(status: deadpool::Status) -> Self {
        Self {
            max_size: status.max_size,
            size: status.size,
            available: status.available,
            waiting: status.waiting,
        }
    }
}

/// Where the hot read went, counted since the store was opened (PostgreSQL with
/// `storage.read_urls`; zero elsewhere).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadRouting {
    /// Reads a standby served, having proved it had caught up with the primary.
    pub standby: u64,
    /// Standby attempts that found it behind the primary; the read went on elsewhere.
    pub lagging: u64,
    /// Standby attempts that failed (unreachable, too slow); the standby rests a moment.
    pub unreachable: u64,
    /// Reads whose freshness could not be proved (the primary's position could not be read);
    /// they went to the primary.
    pub unproven: u64,
}

/// One migration a [`Store::migrate`] run applied (or, from [`Store::pending_migrations`], one
/// it would apply).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppliedMigration {
    /// Its version: the number its file name starts with.
    pub version: i64,
    /// Its name: the rest of its file name.
    pub name: &'static str,
}

/// What a [`Store::migrate`] run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MigrationReport {
    /// The migrations this run applied, in order; empty when nothing was pending.
    pub applied: Vec<AppliedMigration>,
    /// The newest version the database has recorded, when it is newer than any this binary
    /// knows (a newer release migrated it; this one runs on a schema it does not know).
    pub newer_in_database: Option<i64>,
}

/// A storage backend: the domain's port, plus opening, migrating, pool status and closing.
pub trait Store: SecretStore + Clone {
    /// The backend's name, for logs and the metrics' `backend` label.
    const BACKEND: &'static str;

    /// Where the store lives: a file for SQLite, a connection string for PostgreSQL.
    type Location: Send + Sync;

    /// Opens the store. A backend that can start while its database is down (PostgreSQL) does
    /// not connect yet; one whose database is a local file (SQLite) opens it now, so that a path
    /// that cannot be opened fails here.
    fn open(
        location: &Self::Location,
        options: StoreOptions,
    ) -> impl Future<Output = Result<Self, StoreError>> + Send;

    /// Applies the backend's embedded migrations that the database has not recorded yet. Safe
    /// when several processes run it at once: each migration is applied exactly once.
    fn migrate(&self) -> impl Future<Output = Result<MigrationReport, StoreError>> + Send;

    /// The embedded migrations the database has not recorded yet (every one, on an empty
    /// database), without applying any: for commands that must write nothing.
    fn pending_migrations(
        &self,
    ) -> impl Future<Output = Result<Vec<AppliedMigration>, StoreError>> + Send;

    /// The connection pool's state now.
    fn pool_status(&self) -> PoolStatus;

    /// Where hot reads went so far; a store without standbys counts nothing.
    fn read_routing(&self) -> ReadRouting {
        ReadRouting::default()
    }

    /// Why the connection to the database could be read or changed in transit, when it could
    /// (a database on another host reached without full certificate checks); `None` for a
    /// store that is a local file.
    fn insecure_transport(&self) -> Option<String> {
        None
    }

    /// Closes the store: later calls fail with [`StoreError::Unavailable`], and connections
    /// close as they are returned.
    fn close(&self);
}
