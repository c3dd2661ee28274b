//! The pooled connections reads run on.
//!
//! Reads never queue behind the writer: WAL serves them from a snapshot, on connections of
//! their own. SQLite calls block the calling thread (on locks and on fsync), so they never run
//! on the async executor's worker threads: reads go through `deadpool-sync`'s `interact`, which
//! runs the closure on tokio's blocking pool with a pooled connection.

use std::path::PathBuf;

use deadpool::Runtime;
use deadpool::managed::{self, Metrics, RecycleError, RecycleResult};
use deadpool_sync::SyncWrapper;
use rusqlite::Connection;
use secrets_domain::ports::StoreError;

use super::connection::configure;
use super::error::{Failure, interact_error, pool_error};
use crate::store::{PoolStatus, StoreOptions};

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
type Hook = managed::Hook<Manager>;
pub(super) type PoolError = managed::PoolError<rusqlite::Error>;
pub(super) type HookError = managed::HookError<rusqlite::Error>;

/// The pool of read connections. Cloning is cheap: clones share one pool.
#[derive(Clone)]
pub(super) struct ReadPool(Pool);

impl ReadPool {
    /// Builds the pool of connections to the database file at `path`. It opens none yet.
    pub(super) fn new(path: PathBuf, options: StoreOptions) -> Result<Self, StoreError> {
        let busy_timeout = options.timeout;
        Pool::builder(Manager { path })
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
            .map(Self)
            .map_err(|e| StoreError::Internal(Box::new(e)))
    }

    /// Runs `f` with a pooled connection on the blocking pool, inside the caller's span.
    pub(super) async fn run<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(&mut Connection) -> Result<T, Failure> + Send + 'static,
        T: Send + 'static,
    {
        let conn = self.0.get().await.map_err(pool_error)?;
        let span = tracing::Span::current();
        conn.interact(move |conn| {
            let _entered = span.enter();
            f(conn)
        })
        .await
        .map_err(|e| interact_error(&e))?
        .map_err(Failure::into_store_error)
    }

    /// The pool's state now.
    pub(super) fn status(&self) -> PoolStatus {
        PoolStatus::of(self.0.status())
    }

    /// Closes the pool: waiting and later calls fail, and connections close as they are
    /// returned.
    pub(super) fn close(&self) {
        self.0.close();
    }
}
