//! Connections to one PostgreSQL endpoint: how a pool is built from a URL (with `connect`, the
//! one place connections are set up), and [`Connections::run`], the one deadline over waiting
//! for a connection and the whole operation (see the store's doc, `# Connections and failure`).

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Client, Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use secrets_domain::ports::StoreError;
use tokio::time::{Instant, timeout_at};

use super::connect::{ConnectionSettings, Connector, Target};
use super::error::{Cause, pool_error, spoils_connection, timed_out};
use crate::store::StoreOptions;

/// A pool of connections to one endpoint (a primary, or one standby), and the timeout that
/// bounds what a caller waits for it. Cloning it is cheap: clones share the pool.
#[derive(Clone)]
pub(super) struct Connections {
    pub(super) pool: Pool,
    /// Where it connects, for messages (no password).
    pub(super) target: Arc<Target>,
    pub(super) timeout: Duration,
}

impl Connections {
    /// Builds the pool for `url`. It does not connect yet; connections are opened on first
    /// use.
    ///
    /// A URL may name several hosts (`postgres://h1:5432,h2:5432,h3:5432/db`); each new
    /// connection tries them in order. With `target_session_attrs=read-write` it keeps only a
    /// server that takes writes, so after a failover the next connection finds the new primary
    /// by itself; a connection to the demoted primary is not kept either (see [`Self::run`]).
    pub(super) fn new(url: &str, options: StoreOptions) -> Result<Self, StoreError> {
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
        })
    }

    /// Runs `op` on a pooled connection, all of it (waiting for the connection included)
    /// bounded by the timeout.
    pub(super) async fn run<T>(
        &self,
        op: impl AsyncFnOnce(&mut Client) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.run_until(Instant::now() + self.timeout, op).await
    }

    /// Runs `op` on a pooled connection, all of it bounded by `deadline`.
    ///
    /// A connection leaves the pool, closed, when it cannot be trusted with the next caller:
    /// when `op` was abandoned at the deadline (it may still have a statement in flight or an
    /// open transaction, or its peer may be gone; the server then rolls back), and when the
    /// server refused a write as read-only (SQLSTATE 25006: the connection is on a standby, or
    /// on a primary that was demoted; `target_session_attrs` is checked only when connecting,
    /// so only a new connection finds the primary). Then every idle connection goes too.
    pub(super) async fn run_until<T>(
        &self,
        deadline: Instant,
        op: impl AsyncFnOnce(&mut Client) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
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
            Ok(Err(error)) if spoils_connection(&error) => {
                // The server is read-only now: after a failover, so are the other connections
                // opened to it. The idle ones go too, at once, rather than each failing one more
                // caller (one opened to the new primary meanwhile goes with them, and is opened
                // again: a reconnection is cheaper than a refused write). New connections look
                // for the primary, as `target_session_attrs` asks.
                drop(Object::take(client));
                let closed = self.pool.retain(|_, _| false);
                tracing::warn!(
                    target_db = %self.target,
                    closed = closed.removed.len() + 1,
                    "the server refused a write as read-only (SQLSTATE 25006): its connections \
                     are closed; new ones look for the primary"
                );
                Err(error)
            }
            Ok(result) => result,
            Err(_elapsed) => {
                drop(Object::take(client));
                Err(Cause::unavailable(timed_out(&self.target, self.timeout)))
            }
        }
    }
}
