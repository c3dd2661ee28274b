//! Start-up: from settings to a bound, running server. With `main.rs`, the composition root:
//! `main.rs` chooses the store once (`run_on::<SqliteStore>` or `run_on::<PostgresStore>`),
//! and this module wires it to the ring envelope and the OS randomness source ([`Service`]).
//!
//! [`Application::build`] does everything that can fail before serving, in order: resolve the
//! keys (or generate development ones), read the listener's TLS files, open the store, apply
//! migrations, check the configured KEKs against the store, bind the listener. Only then does the server run, so a service with
//! a wrong key never answers a request.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::HttpServer;
use actix_web::dev::{Server, ServerHandle};
use actix_web::web::Data;
use secrets_adapters::Store;
use secrets_adapters::audit::AuditKey;
use secrets_adapters::crypto::{InvalidKek, OsRandom, RingEnvelope};
use secrets_domain::ports::StoreError;
use secrets_domain::{KeyCheckError, SecretsService};

use crate::audit::Trail;
use crate::auth::ServiceTokens;
use crate::body::BodyLimits;
use crate::handlers::AppState;
use crate::keys::{self, ResolvedKeys, dev::DevKeysError};
use crate::metrics::Metrics;
use crate::settings::{KeyMaterial, Mode, Settings};
use crate::shutdown::Reloader;

/// The use cases as the service runs them: the chosen store, ring envelope encryption and the
/// OS randomness source.
pub type Service<S> = SecretsService<S, RingEnvelope, OsRandom>;

/// Why the service did not start. Every message names what to fix.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// Required settings are missing: all of them, named at once.
    #[error(
        "{} not set; required in production mode and with any store but the embedded one (set each, or its _FILE form)",
        missing_list(.0)
    )]
    Missing(Vec<&'static str>),
    /// A KEK does not parse.
    #[error("{variable}: {source}")]
    InvalidKek {
        /// Which variable held it.
        variable: &'static str,
        /// What is wrong.
        source: InvalidKek,
    },
    /// Development keys.
    #[error(transparent)]
    DevKeys(#[from] DevKeysError),
    /// The store could not be opened or migrated. The message is the whole chain: the store's
    /// cause in words (which database, role, host, handshake or grant).
    #[error("{}", crate::error::chain(.0))]
    Store(StoreError),
    /// The KEKs do not fit the store, or the store could not be read to tell (then with the
    /// store's cause).
    #[error("{}", crate::error::chain(.0))]
    Keys(KeyCheckError),
    /// The metrics could not be registered (a bug: two metrics share a name).
    #[error("metrics: {0}")]
    Metrics(#[source] prometheus::Error),
    /// The listener's TLS files cannot be used.
    #[error("TLS on the listener: {0}")]
    Tls(#[from] crate::tls::TlsError),
    /// The audit trail is configured wrongly, or its sink cannot be written.
    #[error("the audit trail: {0}")]
    Audit(String),
    /// The listener could not be bound.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// The address.
        address: String,
        /// Why.
        source: std::io::Error,
    },
}

impl From<KeyCheckError> for StartupError {
    fn from(error: KeyCheckError) -> Self {
        Self::Keys(error)
    }
}

/// `A is`, `A and B are`: the missing settings in a sentence.
fn missing_list(missing: &[&'static str]) -> String {
    match missing {
        [one] => format!("{one} is"),
        [init @ .., last] => format!("{} and {last} are", init.join(", ")),
        [] => "a required setting is".to_owned(),
    }
}

/// Opens the store at `location` with the configured pool. In production mode, a connection
/// to the database that could be read or changed in transit is logged as a warning.
pub async fn open<S: Store>(
    location: &S::Location,
    settings: &Settings,
) -> Result<S, StartupError> {
    let store = S::open(location, settings.storage.options())
        .await
        .map_err(StartupError::Store)?;
    if settings.mode == Mode::Production
        && let Some(warning) = store.insecure_transport()
    {
        tracing::warn!("{warning}");
    }
    Ok(store)
}

/// Opens the audit trail `settings.audit` names for `process`, sealed with `key`, and writes
/// its first line; `None` when the trail is off.
pub fn open_trail(
    settings: &Settings,
    key: &Arc<AuditKey>,
    process: &'static str,
) -> Result<Option<Trail>, StartupError> {
    let Some(sink) = settings
        .audit
        .sink(&settings.storage.backend)
        .map_err(StartupError::Audit)?
    else {
        return Ok(None);
    };
    let trail = Trail::open(&sink, Arc::clone(key), settings.audit.timeout(), process)
        .map_err(|error| StartupError::Audit(error.to_string()))?;
    Ok(Some(trail))
}

/// The use cases over `store` with `keys`, once the keys have checked out against the store:
/// the same refusals for serving, `check` and `rotate-kek`.
pub async fn checked_service<S: Store>(
    store: S,
    keys: ResolvedKeys,
    settings: &Settings,
) -> Result<Service<S>, StartupError> {
    let service = keys.service(store, settings.domain_limits());
    service.check_keys().await?;
    Ok(service)
}

/// A built, bound server, ready to run.
pub struct Application {
    port: u16,
    server: Server,
    /// Reloads the listener's certificate and reopens the audit file on SIGHUP; `None` when
    /// there is neither.
    reloader: Option<Reloader>,
    close_store: Box<dyn FnOnce() + Send>,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

/// How long a connection the server is closing waits for the client to close its end.
const CLIENT_DISCONNECT_TIMEOUT: Duration = Duration::from_secs(1);

impl Application {
    /// Does all of start-up (see the module doc) on the store `S` at `location` (the one
    /// `settings.storage.backend` names, as the composition root matched it) and binds the
    /// listener; port 0 picks a free port, which [`Application::port`] then tells.
    pub async fn build<S: Store>(
        location: &S::Location,
        settings: Settings,
        keys: KeyMaterial,
    ) -> Result<Self, StartupError> {
        let keys = keys::resolve(&settings, keys, keys::Purpose::Serving)?;
        // Read before the store is touched: a TLS file that cannot be used stops start-up
        // before anything is migrated.
        let tls = settings
            .server
            .tls()
            .map(|tls| crate::tls::server_config(&tls))
            .transpose()?;
        let tokens = Data::new(ServiceTokens::new(&keys.tokens));
        // Before the store is touched: an audit sink that cannot be written stops start-up.
        let trail = open_trail(&settings, &keys.audit.active, "serve")?.map(Data::new);
        let store: S = open(location, &settings).await?;
        if settings.storage.migrate_on_start {
            store.migrate().await.map_err(StartupError::Store)?;
        }
        let (pool, reads) = (store.clone(), store.clone());
        let metrics = Data::new(
            Metrics::new(S::BACKEND, move || pool.pool_status())
                .map_err(StartupError::Metrics)?
                .with_read_routing(move || reads.read_routing()),
        );
        let closing = store.clone();
        let service = checked_service(store, keys, &settings).await?;
        let bind_error = |source| StartupError::Bind {
            address: settings.server.bind.to_string(),
            source,
        };
        let listener = TcpListener::bind(settings.server.bind).map_err(bind_error)?;
        let port = listener.local_addr().map_err(bind_error)?.port();
        let state = Data::new(AppState {
            service,
            body: BodyLimits {
                max_bytes: settings.limits.max_body_bytes,
                timeout: settings.server.body_timeout(),
            },
            original_routes: settings.compat.original_routes,
        });
        let app_trail = trail.clone();
        let mut server = HttpServer::new(move || {
            crate::routes::app(
                state.clone(),
                tokens.clone(),
                metrics.clone(),
                app_trail.clone(),
            )
        })
        .shutdown_timeout(settings.server.shutdown_timeout_secs)
        // Signals are handled by `Application::run_until_stopped`; see `crate::shutdown`.
        .disable_signals()
        // Slow clients are bounded at every stage, so that none can hold a connection open for
        // free: the request head must arrive within `server.body_timeout_ms` (actix answers a
        // bare 408 otherwise), then the body within the same time again (`body::read`
        // answers 408 `request_timeout`), and a client told to go away gets one second to
        // close its end before the connection is dropped.
        .client_request_timeout(settings.server.body_timeout())
        .client_disconnect_timeout(CLIENT_DISCONNECT_TIMEOUT);
        if settings.server.workers > 0 {
            server = server.workers(settings.server.workers);
        }
        let (server, certificates) = match tls {
            Some((config, certificates)) => {
                let server = server
                    .listen_rustls_0_23(listener, config)
                    .map_err(bind_error)?;
                (server, Some(certificates))
            }
            None => (server.listen(listener).map_err(bind_error)?, None),
        };
        let server = server.run();
        let tls = certificates.is_some();
        let reloader = Reloader::new(certificates, trail.clone());
        tracing::info!(port, tls, audit = trail.is_some(), "listening");
        Ok(Self {
            port,
            server,
            reloader,
            close_store: Box::new(move || {
                if let Some(trail) = trail {
                    trail.close();
                }
                closing.close();
            }),
        })
    }

    /// The bound port.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A handle to stop the server gracefully.
    #[must_use]
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Serves until SIGTERM or SIGINT (or the handle's `stop`), then stops accepting
    /// connections, lets the requests in flight finish within `server.shutdown_timeout_secs`,
    /// and closes the audit trail and the store. SIGHUP reloads the listener's certificate and
    /// reopens the audit file.
    ///
    /// # Errors
    /// An I/O error of the server while serving.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let handle = self.server.handle();
        let signals = tokio::spawn(async move {
            if let Some(signal) = crate::shutdown::signal().await {
                tracing::info!(signal, "starting graceful shutdown");
                handle.stop(true).await;
            }
        });
        let reloads = self.reloader.map(|reloader| tokio::spawn(reloader.run()));
        let served = self.server.await;
        signals.abort();
        if let Some(reloads) = reloads {
            reloads.abort();
        }
        (self.close_store)();
        served
    }
}
