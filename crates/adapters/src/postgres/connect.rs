//! The one place connections to PostgreSQL are set up: the connection URL read into the
//! driver's configuration and the TLS settings (`super::tls`), the servers it names (for
//! messages and the transport warning), and how each pooled connection is opened and driven.
//!
//! # Where a connection's task runs
//! A tokio-postgres connection is two halves: the `Client` that sends statements, and a future
//! that does the socket's I/O, which must be polled for as long as the client is used.
//! deadpool-postgres, left to itself, spawns that future on the runtime of whichever task
//! opened the connection. Under actix-web that is one of the workers' runtimes: each worker is
//! a thread with a runtime of its own. The pool is shared by every worker, so a connection
//! opened by worker A serves requests of worker B. At a graceful shutdown each worker stops as
//! soon as its own requests are done, and its runtime ends with it, taking down the connections
//! it opened, while worker B is still in the middle of requests on them: 503 "connection
//! closed", on every rolling restart.
//!
//! So the store keeps a handle on the runtime it was built on (the binary's main runtime,
//! which outlives every worker), and [`Connector`] opens each connection there: both the
//! connecting (the socket is registered with that runtime's I/O driver) and the task that
//! drives it. A connection then lives as long as the pool keeps it, whichever worker asked for
//! it. `crates/api/tests/faults/rolling.rs` is the test.
//!
//! # Notices
//! The driving task also takes the server's asynchronous messages: a NOTICE ("relation already
//! exists, skipping" from an idempotent migration) is logged at `debug`. Left to the driver, it
//! was logged at `info` with every start.
//!
//! # Several hosts
//! The URL may name several hosts (`postgres://h1,h2:5433/db`, as libpq allows); the driver
//! tries them in turn. [`Target`] keeps every host and port, so that messages name them all.

use std::fmt;
use std::future::poll_fn;
use std::net::IpAddr;
use std::path::PathBuf;

use deadpool_postgres::Connect;
use futures_util::future::BoxFuture;
use percent_encoding::percent_decode_str;
use secrets_domain::ports::StoreError;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::runtime::Handle;
use tokio::task::JoinHandle;
use tokio_postgres::config::Host;
use tokio_postgres::{AsyncMessage, Client, Config, Connection};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::error::Cause;
use super::tls::{SslMode, TlsSettings, Written};

/// A connection URL, read: the driver's configuration, the TLS settings, and what it points
/// at.
pub(super) struct ConnectionSettings {
    /// The driver's configuration, TLS settings taken out and its mode set.
    pub config: Config,
    /// `sslmode` and the certificates, as libpq reads them.
    pub tls: TlsSettings,
    /// The servers and the role, for messages.
    pub target: Target,
}

impl ConnectionSettings {
    /// Reads `url`. Messages name the setting at fault and never hold the URL, which may carry
    /// a password.
    pub fn parse(url: &str) -> Result<Self, StoreError> {
        let (rest, written) = take_tls_settings(url)?;
        let tls = TlsSettings::from_written(written).map_err(Cause::internal)?;
        let mut config: Config = rest.parse().map_err(|e| {
            Cause::internal(format!(
                "DATABASE_URL is not a valid PostgreSQL URL: {}",
                driver_message(&e)
            ))
        })?;
        config.ssl_mode(tls.mode.driver_mode());
        let target = Target::of(&config, tls.mode);
        Ok(Self {
            config,
            tls,
            target,
        })
    }
}

/// The driver's own message for an error, with its cause (its `Display` alone is only the
/// kind of error: "invalid connection string").
fn driver_message(error: &tokio_postgres::Error) -> String {
    match std::error::Error::source(error) {
        Some(cause) => format!("{error}: {cause}"),
        None => error.to_string(),
    }
}

/// Takes `sslmode`, `sslrootcert`, `sslcert` and `sslkey` out of the URL's query, leaving the
/// rest as it was written for the driver.
fn take_tls_settings(url: &str) -> Result<(String, Written), StoreError> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_owned(), Written::default()));
    };
    let mut written = Written::default();
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let slot = match key {
            "sslmode" => &mut written.mode,
            "sslrootcert" => &mut written.root_cert,
            "sslcert" => &mut written.cert,
            "sslkey" => &mut written.key,
            _ => {
                kept.push(pair);
                continue;
            }
        };
        let value = percent_decode_str(value).decode_utf8().map_err(|_| {
            Cause::internal(format!("DATABASE_URL: {key} is not UTF-8 once decoded"))
        })?;
        *slot = Some(value.into_owned());
    }
    let rest = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((rest, written))
}

/// What a connection URL points at, without its password: for messages and the warning.
#[derive(Clone, Debug)]
pub(super) struct Target {
    /// Each host and its port: a name or address, or a Unix socket directory.
    pub servers: Vec<(Server, u16)>,
    /// The role, when the URL names one.
    pub user: Option<String>,
    /// The database, when the URL names one (the driver's default is the role's name).
    pub database: Option<String>,
    /// The TLS mode.
    pub mode: SslMode,
}

/// One host of a connection URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Server {
    /// A host name or an IP address.
    Tcp(String),
    /// A Unix socket directory.
    Unix(PathBuf),
}

impl Target {
    fn of(config: &Config, mode: SslMode) -> Self {
        let ports = config.get_ports();
        let servers = config
            .get_hosts()
            .iter()
            .enumerate()
            .map(|(i, host)| {
                // One port for every host, or one each; 5432 when none is given.
                let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
                let server = match host {
                    Host::Tcp(name) => Server::Tcp(name.clone()),
                    #[cfg(unix)]
                    Host::Unix(path) => Server::Unix(path.clone()),
                };
                (server, port)
            })
            .collect();
        Self {
            servers,
            user: config.get_user().map(str::to_owned),
            database: config.get_dbname().map(str::to_owned),
            mode,
        }
    }

    /// The role as messages name it.
    pub fn role(&self) -> &str {
        self.user.as_deref().unwrap_or("<the role in DATABASE_URL>")
    }

    /// When a host name of the URL does not resolve, the words that say so.
    pub async fn unresolved(&self) -> Option<String> {
        for (server, port) in &self.servers {
            if let Server::Tcp(name) = server
                && name.parse::<IpAddr>().is_err()
                && let Err(error) = tokio::net::lookup_host((name.as_str(), *port)).await
            {
                return Some(format!(
                    "the host name {name:?} of DATABASE_URL does not resolve: {error}"
                ));
            }
        }
        None
    }

    /// Why the connection to the database could be read or changed in transit, when it
    /// could: a host that is not on this machine, reached without `sslmode=verify-full`.
    pub fn insecure_transport(&self) -> Option<String> {
        let remote: Vec<String> = self
            .servers
            .iter()
            .filter(|(server, _)| match server {
                Server::Unix(_) => false,
                Server::Tcp(name) => {
                    name != "localhost" && !name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
                }
            })
            .map(|(server, port)| format!("{server}:{port}"))
            .collect();
        let what = match self.mode {
            SslMode::Disable => "unencrypted",
            SslMode::Prefer => {
                "unencrypted if the server does not offer TLS, and otherwise not checked"
            }
            SslMode::Require => "encrypted, but the server's certificate is not checked",
            SslMode::VerifyCa => "encrypted, but the server's host name is not checked",
            SslMode::VerifyFull => return None,
        };
        if remote.is_empty() {
            return None;
        }
        Some(format!(
            "the connection to PostgreSQL at {} is sslmode={}: {what}; set sslmode=verify-full and sslrootcert in DATABASE_URL",
            remote.join(", "),
            self.mode.name()
        ))
    }
}

impl fmt::Display for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp(name) => f.write_str(name),
            Self::Unix(path) => write!(f, "{}", path.display()),
        }
    }
}

impl fmt::Display for Target {
    /// `host:port`, or several of them: where the store connects.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (server, port)) in self.servers.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{server}:{port}")?;
        }
        Ok(())
    }
}

/// Opens the pool's connections on the store's runtime (see the module's doc).
pub(super) struct Connector {
    tls: MakeRustlsConnect,
    runtime: Handle,
}

impl Connector {
    /// The connector for the pool: TLS as `tls` says, each connection opened and driven on
    /// `runtime` (see the module's doc).
    pub fn new(tls: &TlsSettings, runtime: Handle) -> Result<Self, StoreError> {
        let tls = tls.client_config().map_err(Cause::internal)?;
        Ok(Self {
            tls: MakeRustlsConnect::new(tls),
            runtime,
        })
    }
}

impl Connect for Connector {
    fn connect(
        &self,
        config: &Config,
    ) -> BoxFuture<'_, Result<(Client, JoinHandle<()>), tokio_postgres::Error>> {
        let config = config.clone();
        let tls = self.tls.clone();
        let opening = AbortOnDrop(self.runtime.spawn(async move {
            let (client, connection) = config.connect(tls).await?;
            Ok((client, tokio::spawn(drive(connection))))
        }));
        Box::pin(async move {
            let mut opening = opening;
            match (&mut opening.0).await {
                Ok(opened) => opened,
                Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
                // The store's runtime is shutting down, so the process is ending; the pool's
                // create timeout answers the caller.
                Err(_) => std::future::pending().await,
            }
        })
    }
}

/// A task that is aborted when the caller stops waiting for it: a connection attempt whose
/// caller gave up (the pool's create timeout) stops instead of connecting for no one.
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Drives one connection until it closes, logging the server's notices at `debug`.
async fn drive<S, T>(mut connection: Connection<S, T>)
where
    S: AsyncRead + AsyncWrite + Unpin,
    T: AsyncRead + AsyncWrite + Unpin,
{
    loop {
        match poll_fn(|cx| connection.poll_message(cx)).await {
            Some(Ok(AsyncMessage::Notice(notice))) => tracing::debug!(
                severity = notice.severity(),
                code = notice.code().code(),
                "PostgreSQL: {}",
                notice.message()
            ),
            // Nothing LISTENs, so no notification is expected; nothing else is defined.
            Some(Ok(_)) => {}
            Some(Err(error)) => {
                tracing::warn!(error = %driver_message(&error), "a connection to PostgreSQL failed");
                return;
            }
            None => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tls_settings_are_taken_out_and_the_rest_is_kept() {
        let (rest, written) = take_tls_settings(
            "postgres://u:p@h:1/db?sslmode=verify-full&application_name=x&sslrootcert=%2Fetc%2Fca.pem&sslcert=/c&sslkey=/k",
        )
        .expect("parses");
        assert_eq!(rest, "postgres://u:p@h:1/db?application_name=x");
        assert_eq!(written.mode.as_deref(), Some("verify-full"));
        assert_eq!(written.root_cert.as_deref(), Some("/etc/ca.pem"));
        assert_eq!(written.cert.as_deref(), Some("/c"));
        assert_eq!(written.key.as_deref(), Some("/k"));
        let (rest, _) = take_tls_settings("postgres://h/db?sslmode=disable").expect("parses");
        assert_eq!(rest, "postgres://h/db");
    }

    #[test]
    fn the_target_names_every_host_and_never_the_password() {
        let settings = ConnectionSettings::parse(
            "postgres://secrets:hunter2@db1:6000,db2:6001/secrets?sslmode=require",
        )
        .expect("parses");
        let target = &settings.target;
        assert_eq!(target.to_string(), "db1:6000, db2:6001");
        assert_eq!(target.role(), "secrets");
        assert_eq!(target.database.as_deref(), Some("secrets"));
        let warning = target
            .insecure_transport()
            .expect("remote and not verify-full");
        assert!(warning.contains("db1:6000, db2:6001"), "{warning}");
        assert!(warning.contains("sslmode=require"), "{warning}");
        assert!(!format!("{warning}{target:?}").contains("hunter2"));
    }

    #[test]
    fn a_loopback_host_or_verify_full_needs_no_warning() {
        for url in [
            "postgres://u@127.0.0.1/db",
            "postgres://u@localhost/db?sslmode=disable",
            "postgres://u@[::1]/db",
            "postgres://u@%2Frun%2Fpostgresql/db",
        ] {
            let settings = ConnectionSettings::parse(url).expect(url);
            assert_eq!(settings.target.insecure_transport(), None, "{url}");
        }
    }

    #[test]
    fn a_malformed_url_is_named_without_echoing_it() {
        for url in [
            "postgres://u:hunter2@h/db?nonsense=1",
            "postgres://u:hunter2@h:notaport/db",
            "postgres://u:hunter2@h/db?sslmode=hunter2",
            "postgres://u:hunter2@h/db?sslrootcert=%ff",
        ] {
            let error = ConnectionSettings::parse(url).err().expect(url);
            let message = format!(
                "{error}: {}",
                std::error::Error::source(&error)
                    .map(ToString::to_string)
                    .unwrap_or_default()
            );
            assert!(message.contains("DATABASE_URL"), "{url}: {message}");
            assert!(!message.contains("hunter2@"), "{url}: {message}");
            assert!(!message.contains("u:hunter2"), "{url}: {message}");
        }
    }
}
