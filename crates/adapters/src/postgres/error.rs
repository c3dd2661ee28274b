//! How a driver error becomes what the contract names, and what an operator reads.
//!
//! # Classes
//! A unique violation (SQLSTATE 23505) is the one expected database error: it means an id or
//! access hash is taken, [`StoreError::Conflict`]. Errors that say the database cannot be
//! reached (I/O, a closed connection, connection-class SQLSTATEs, a server shutting down or out
//! of connections, pool timeouts, any failure to open a connection) are
//! [`StoreError::Unavailable`]. Anything else is a bug or corruption, [`StoreError::Internal`].
//!
//! # Words
//! The source of each of these is a [`Cause`]: what happened, in words, as libpq would say it,
//! with the SQLSTATE where the server sent one and, where there is one, the fix: the database
//! does not exist; the role does not exist or its password is wrong; the connection was
//! refused at `host:port`; the host name does not resolve; the TLS handshake failed, and why;
//! permission denied on a schema, with the `GRANT` that fixes it; timed out. The start-up
//! message, a command's message and a readiness failure's log line all print it. It names
//! hosts, ports, the role and the database, and never a password or the URL; no message is
//! built from SQL parameters (all ciphertexts or hashes anyway).

use std::fmt;
use std::time::Duration;

use deadpool_postgres::{PoolError, TimeoutType};
use rustls::CertificateError;
use secrets_domain::ports::StoreError;
use tokio_postgres::error::{DbError, SqlState};

use super::connect::Target;

/// What went wrong, in words (see the module's doc), and the server's SQLSTATE when it sent
/// one.
#[derive(Debug)]
pub(super) struct Cause {
    words: String,
    code: Option<SqlState>,
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.words)
    }
}

impl std::error::Error for Cause {}

impl Cause {
    pub fn internal(words: impl fmt::Display) -> StoreError {
        StoreError::Internal(Box::new(Self::words(words, None)))
    }

    pub fn unavailable(words: impl fmt::Display) -> StoreError {
        StoreError::Unavailable(Box::new(Self::words(words, None)))
    }

    fn words(words: impl fmt::Display, code: Option<SqlState>) -> Self {
        Self {
            words: words.to_string(),
            code,
        }
    }
}

/// Whether an error says its connection must not serve another caller: the server refused a
/// write as read-only (SQLSTATE 25006), so the connection is on a standby or a demoted primary.
pub(super) fn spoils_connection(error: &StoreError) -> bool {
    let StoreError::Unavailable(source) = error else {
        return false;
    };
    source
        .downcast_ref::<Cause>()
        .is_some_and(|cause| cause.code == Some(SqlState::READ_ONLY_SQL_TRANSACTION))
}

/// Classifies a statement's error (see the module's doc).
#[allow(
    clippy::needless_pass_by_value,
    reason = "written to be passed to `map_err` as it is"
)]
pub(super) fn db(error: tokio_postgres::Error) -> StoreError {
    classify(&error, explain(&error, None))
}

/// Classifies an error with `target` to name in the words.
pub(super) fn db_at(error: &tokio_postgres::Error, target: &Target) -> StoreError {
    classify(error, explain(error, Some(target)))
}

fn classify(error: &tokio_postgres::Error, words: String) -> StoreError {
    let cause = Cause::words(words, error.code().cloned());
    if error.code() == Some(&SqlState::UNIQUE_VIOLATION) {
        StoreError::Conflict
    } else if is_unreachable(error) {
        StoreError::Unavailable(Box::new(cause))
    } else {
        StoreError::Internal(Box::new(cause))
    }
}

/// Classifies a failure to get a connection from the pool. Opening a connection fails for
/// many reasons (refused, timed out, a rejected password, a missing database): each is a store
/// that cannot be reached, and the words say which.
pub(super) async fn pool_error(error: PoolError, target: &Target, timeout: Duration) -> StoreError {
    let ms = timeout.as_millis();
    match error {
        PoolError::Timeout(TimeoutType::Wait) => Cause::unavailable(format!(
            "timed out after {ms} ms waiting for a free connection to PostgreSQL at {target}: \
             every connection of the pool (storage.pool_size) is in use"
        )),
        PoolError::Timeout(TimeoutType::Create | TimeoutType::Recycle) => {
            Cause::unavailable(format!(
                "timed out after {ms} ms (storage.timeout_ms) connecting to PostgreSQL at {target}"
            ))
        }
        PoolError::Backend(error) => {
            let mut words = explain(&error, Some(target));
            if unexplained_io(&error)
                && let Some(unresolved) = target.unresolved().await
            {
                words = unresolved;
            }
            Cause::unavailable(words)
        }
        PoolError::Closed => Cause::unavailable("the store is closed"),
        PoolError::NoRuntimeSpecified | PoolError::PostCreateHook(_) => {
            Cause::internal(error.to_string())
        }
    }
}

/// The words for the whole deadline of an operation, or of opening a connection, passing.
pub(super) fn timed_out(target: &Target, timeout: Duration) -> String {
    format!(
        "timed out after {} ms (storage.timeout_ms) waiting for PostgreSQL at {target}",
        timeout.as_millis()
    )
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
    io_cause(error).is_some()
}

/// The I/O error under a driver error, if that is what it is.
fn io_cause(error: &tokio_postgres::Error) -> Option<&std::io::Error> {
    std::error::Error::source(error)?.downcast_ref::<std::io::Error>()
}

/// An I/O error when connecting that is none of the kinds [`explain`] names: a name that does
/// not resolve is one (the standard library gives it no kind of its own).
fn unexplained_io(error: &tokio_postgres::Error) -> bool {
    use std::io::ErrorKind;
    io_cause(error).is_some_and(|io| {
        !matches!(
            io.kind(),
            ErrorKind::ConnectionRefused
                | ErrorKind::TimedOut
                | ErrorKind::ConnectionReset
                | ErrorKind::ConnectionAborted
                | ErrorKind::BrokenPipe
                | ErrorKind::UnexpectedEof
        )
    })
}

/// The words for a driver error; `target`, when known, names where.
fn explain(error: &tokio_postgres::Error, target: Option<&Target>) -> String {
    use std::io::ErrorKind;
    let at = target.map(|t| format!(" at {t}")).unwrap_or_default();
    if let Some(db_error) = error.as_db_error() {
        return explain_db(db_error, target);
    }
    if error.is_closed() {
        return format!("the connection to PostgreSQL{at} closed");
    }
    let kind = error.to_string();
    if kind == "error performing TLS handshake" {
        return explain_tls(error, &at, target);
    }
    if kind == "timeout waiting for server" {
        return format!("timed out connecting to PostgreSQL{at} (connect_timeout)");
    }
    if let Some(io) = io_cause(error) {
        return match io.kind() {
            ErrorKind::ConnectionRefused => format!(
                "connection refused{at}: nothing listens there (is PostgreSQL running, and are the host and port right?)"
            ),
            ErrorKind::TimedOut => format!("timed out connecting to PostgreSQL{at}"),
            ErrorKind::ConnectionReset
            | ErrorKind::ConnectionAborted
            | ErrorKind::BrokenPipe
            | ErrorKind::UnexpectedEof => {
                format!("the connection to PostgreSQL{at} was cut: {io}")
            }
            _ => format!("cannot reach PostgreSQL{at}: {io}"),
        };
    }
    match std::error::Error::source(error) {
        Some(cause) => format!("PostgreSQL{at}: {kind}: {cause}"),
        None => format!("PostgreSQL{at}: {kind}"),
    }
}

fn explain_db(error: &DbError, target: Option<&Target>) -> String {
    let code = error.code().code();
    let message = error.message();
    let said = format!("{message} (SQLSTATE {code})");
    match code {
        "3D000" => {
            format!("{said}: create it (docs/deploy.md), or correct the database in DATABASE_URL")
        }
        "28P01" => format!("{said}: the password is wrong, or the role does not exist"),
        "28000" => format!(
            "{said}: the role does not exist, or the server's pg_hba.conf does not let it in this way"
        ),
        "42501" => explain_permission(&said, message, target),
        _ => format!("{}: {said}", error.severity()),
    }
}

/// Permission denied: on a schema, the `GRANT` that fixes it.
fn explain_permission(said: &str, message: &str, target: Option<&Target>) -> String {
    let role = target.map_or("<the role in DATABASE_URL>", Target::role);
    let Some(schema) = message.strip_prefix("permission denied for schema ") else {
        return format!(
            "{said}: the role {} lacks a privilege it needs (docs/deploy.md lists them)",
            quote_ident(role)
        );
    };
    let database = target.and_then(|t| t.database.as_deref()).unwrap_or(role);
    format!(
        "{said}: the role {role_id} may not create tables in schema {schema}; as the database's owner or a superuser, \
         connected to database {database_id}, run: GRANT USAGE, CREATE ON SCHEMA {schema} TO {role_id};",
        role_id = quote_ident(role),
        database_id = quote_ident(database),
    )
}

/// An identifier as SQL needs it written: bare when it is lower-case letters, digits and
/// underscores, otherwise double-quoted.
fn quote_ident(name: &str) -> String {
    let bare = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if bare {
        name.to_owned()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

fn explain_tls(error: &tokio_postgres::Error, at: &str, target: Option<&Target>) -> String {
    let mode = target.map_or("require", |t| t.mode.name());
    let Some(cause) = std::error::Error::source(error) else {
        return format!("the TLS handshake with PostgreSQL{at} failed");
    };
    if cause.to_string() == "server does not support TLS" {
        return format!(
            "the server{at} does not accept TLS, and sslmode={mode} requires it (is ssl = on in its postgresql.conf?)"
        );
    }
    let failed = format!("the TLS handshake with PostgreSQL{at} failed");
    let Some(rustls) = rustls_cause(cause) else {
        return format!("{failed}: {cause}");
    };
    match rustls {
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => format!(
            "{failed}: the server's certificate is not signed by a CA in sslrootcert (unknown issuer)"
        ),
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => format!(
            "{failed}: the server's certificate is not valid for the host name it was reached by \
             (sslmode=verify-full checks it): {rustls}"
        ),
        rustls::Error::InvalidCertificate(
            CertificateError::Expired | CertificateError::ExpiredContext { .. },
        ) => format!("{failed}: the server's certificate has expired: {rustls}"),
        rustls::Error::InvalidCertificate(other) => {
            format!("{failed}: the server's certificate was refused: {other:?}")
        }
        rustls::Error::AlertReceived(alert) => format!(
            "{failed}: the server ended it ({alert:?}); it may want a client certificate it trusts (sslcert and sslkey)"
        ),
        other => format!("{failed}: {other}"),
    }
}

/// The rustls error under a TLS failure: tokio-rustls wraps it in an I/O error.
fn rustls_cause<'a>(cause: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    if let Some(rustls) = cause.downcast_ref::<rustls::Error>() {
        return Some(rustls);
    }
    cause
        .downcast_ref::<std::io::Error>()?
        .get_ref()?
        .downcast_ref::<rustls::Error>()
}

#[cfg(test)]
mod tests {
    use super::quote_ident;

    #[test]
    fn identifiers_are_quoted_only_when_they_must_be() {
        assert_eq!(quote_ident("secrets"), "secrets");
        assert_eq!(quote_ident("app_2"), "app_2");
        assert_eq!(quote_ident("Secrets"), "\"Secrets\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_ident("2x"), "\"2x\"");
    }
}
