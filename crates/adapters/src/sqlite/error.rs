//! How a driver error becomes what the contract names.
//!
//! A unique or primary key violation means an id or access hash is taken:
//! [`StoreError::Conflict`]. Locks held past `busy_timeout` and a file or disk that fails are
//! conditions of the machine, [`StoreError::Unavailable`]. Anything else is a bug or corruption,
//! [`StoreError::Internal`]. SQLite's messages name tables and columns, never bound values, so
//! the driver's error is kept as the source and carries no secret or parameter.

use std::sync::Arc;

use deadpool_sync::InteractError;
use rusqlite::{ErrorCode, ffi};
use secrets_domain::ports::StoreError;

use super::pool::{HookError, PoolError};

/// What a closure run on a connection fails with: a driver error, still to be classified, or
/// an outcome the contract names.
#[derive(Debug)]
pub(super) enum Failure {
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
    pub(super) fn into_store_error(self) -> StoreError {
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

impl Kind {
    fn of(e: &rusqlite::Error) -> Self {
        let Some(failure) = e.sqlite_error() else {
            return Self::Internal;
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
            | ErrorCode::FileLockingProtocolFailed => Self::Unavailable,
            ErrorCode::ConstraintViolation
                if matches!(
                    failure.extended_code,
                    ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY
                ) =>
            {
                Self::Conflict
            }
            _ => Self::Internal,
        }
    }

    /// The store error of this kind, with `source` (the driver's error) kept as its source.
    fn with_source(self, source: impl std::error::Error + Send + Sync + 'static) -> StoreError {
        match self {
            Self::Unavailable => StoreError::Unavailable(Box::new(source)),
            Self::Conflict => StoreError::Conflict,
            Self::Internal => StoreError::Internal(Box::new(source)),
        }
    }
}

/// Translates a driver error, keeping it as the source.
pub(super) fn sql_error(e: rusqlite::Error) -> StoreError {
    Kind::of(&e).with_source(e)
}

/// Translates a driver error shared by several callers (a group's failed commit), keeping it as
/// the source.
pub(super) fn shared_sql_error(e: &Arc<rusqlite::Error>) -> StoreError {
    Kind::of(e).with_source(Arc::clone(e))
}

/// Translates a failure to get a connection from the pool.
pub(super) fn pool_error(e: PoolError) -> StoreError {
    let unavailable = match &e {
        PoolError::Timeout(_) | PoolError::Closed => true,
        PoolError::Backend(sql) | PoolError::PostCreateHook(HookError::Backend(sql)) => {
            matches!(Kind::of(sql), Kind::Unavailable)
        }
        PoolError::PostCreateHook(HookError::Message(_)) | PoolError::NoRuntimeSpecified => false,
    };
    if unavailable {
        StoreError::Unavailable(Box::new(e))
    } else {
        StoreError::Internal(Box::new(e))
    }
}

/// Translates a call on a pooled connection that ended without a result.
pub(super) fn interact_error(e: &InteractError) -> StoreError {
    // The panic payload is neither `Sync` nor useful to a caller; the panic itself has already
    // been reported by the panic hook.
    let what = match e {
        InteractError::Panic(_) => "a database call panicked",
        InteractError::Cancelled => "a database call was cancelled",
    };
    StoreError::Internal(what.into())
}
