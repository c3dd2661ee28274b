//! What every connection is set up with, and the database file they open.
//!
//! # Durability
//! Every connection runs with `journal_mode=WAL` and `synchronous=FULL`. WAL lets readers (the
//! worker's hot read) proceed while a write commits, instead of blocking on a rollback
//! journal's exclusive lock. `synchronous=FULL` fsyncs the log at every commit, so an
//! acknowledged write survives a power cut; `NORMAL` would be faster and could lose the last
//! commits, which a secrets store must not trade away. `foreign_keys=ON` is what makes deleting
//! a namespace delete its secrets (it is off by default in SQLite, per connection).

use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;
use rusqlite::types::ValueRef;
use secrets_domain::ports::StoreError;

use super::error::{Failure, pool_error, sql_error};
use super::pool::{HookError, PoolError};

/// Prepared statements kept per connection. Above the number of distinct statements this
/// store runs (see `sql`), so the hot ones are never re-parsed.
const STATEMENT_CACHE: usize = 48;

/// Each connection's page cache, in KiB. SQLite's default is 2 MiB per connection, which a full
/// pool multiplies into most of the process's memory; the pages a read needs come from the
/// operating system's file cache when they are not here, at the cost of a `pread` each.
const PAGE_CACHE_KIB: i64 = 512;

/// Creates the database file if it is missing and opens the store's first connection to it,
/// configured. Blocks.
pub(super) fn create(path: &Path, busy_timeout: Duration) -> Result<Connection, StoreError> {
    create_private(path).map_err(|e| StoreError::Unavailable(Box::new(e)))?;
    let mut conn = Connection::open(path).map_err(sql_error)?;
    configure(&mut conn, busy_timeout).map_err(|e| pool_error(PoolError::PostCreateHook(e)))?;
    Ok(conn)
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
pub(super) fn configure(conn: &mut Connection, busy_timeout: Duration) -> Result<(), HookError> {
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

/// `name`, checked to be a plain identifier, since a pragma's name cannot be a parameter.
pub(super) fn pragma_name(name: &str) -> Result<String, StoreError> {
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(StoreError::Internal(
            "a pragma name is a plain identifier".into(),
        ));
    }
    Ok(name.to_owned())
}

/// The value of pragma `name` on `conn`, as text.
pub(super) fn pragma_value(conn: &Connection, name: &str) -> Result<String, Failure> {
    Ok(conn.pragma_query_value(None, name, |row| {
        Ok(match row.get_ref(0)? {
            ValueRef::Null => String::new(),
            ValueRef::Integer(i) => i.to_string(),
            ValueRef::Real(r) => r.to_string(),
            ValueRef::Text(t) | ValueRef::Blob(t) => String::from_utf8_lossy(t).into(),
        })
    })?)
}
