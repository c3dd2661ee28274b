//! How a driver error becomes what the contract names.
//!
//! A unique violation (SQLSTATE 23505) is the one expected database error: it means an id or
//! access hash is taken, [`StoreError::Conflict`]. Errors that say the database cannot be
//! reached (I/O, a closed connection, connection-class SQLSTATEs, a server shutting down or out
//! of connections, pool timeouts) are [`StoreError::Unavailable`]. Anything else is a bug or
//! corruption, [`StoreError::Internal`]. The driver's error is kept as the `source()` for the
//! logs; no message is built from SQL parameters, which are all ciphertexts or hashes anyway.

use deadpool_postgres::PoolError;
use secrets_domain::ports::StoreError;
use tokio_postgres::error::SqlState;

/// Classifies a driver error (see the module's doc).
pub(super) fn db(error: tokio_postgres::Error) -> StoreError {
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

/// Whether an error says its connection must not serve another caller: the server refused a
/// write as read-only (SQLSTATE 25006), so the connection is on a standby or a demoted primary.
pub(super) fn spoils_connection(error: &StoreError) -> bool {
    let StoreError::Unavailable(source) = error else {
        return false;
    };
    source
        .downcast_ref::<tokio_postgres::Error>()
        .and_then(tokio_postgres::Error::code)
        == Some(&SqlState::READ_ONLY_SQL_TRANSACTION)
}

/// Classifies a failure to get a connection from the pool.
pub(super) fn pool_error(error: PoolError) -> StoreError {
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

pub(super) fn internal(error: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Internal(Box::new(error))
}
