//! Start-up: from settings to a bound, running server.
//!
//! [`Application::build`] does everything that can fail before serving, in order: resolve the
//! keys (or generate development ones), open the store the URL names, apply migrations, check
//! the configured KEKs against the store, bind the listener. Only then does the server run, so
//! a service with a wrong key never answers a request. The backend is chosen once, here; the
//! rest of the program is monomorphised over it.

use std::net::TcpListener;

use actix_web::dev::{Server, ServerHandle};
use actix_web::{App, HttpServer, middleware, web};
use secrecy::{ExposeSecret as _, SecretString};
use secrets_adapters::crypto::{InvalidKek, Kek, OsRandom, RingEnvelope};
use secrets_adapters::postgres::PostgresStore;
use secrets_adapters::sqlite::SqliteStore;
use secrets_adapters::{Store as _, StoreOptions};
use secrets_domain::ports::{SecretStore, StoreError};
use secrets_domain::{KeyCheckError, SecretsService};

use crate::auth::{ServiceTokens, require_token};
use crate::devkeys::{self, DevKeysError};
use crate::handlers::{self, AppState};
use crate::metrics::{Metrics, PoolState};
use crate::settings::{Backend, KeyMaterial, Mode, Settings};

/// Why the service did not start. Every message names what to fix.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// A required setting is missing.
    #[error(
        "{0} is not set; it is required in production mode and with any store but the embedded one (set it, or its _FILE form)"
    )]
    Missing(&'static str),
    /// A KEK does not parse.
    #[error("{variable}: {source}")]
    InvalidKek {
        /// Which variable held it.
        variable: &'static str,
        /// What is wrong.
        source: InvalidKek,
    },
    /// Configuration problem.
    #[error(transparent)]
    Settings(#[from] crate::settings::SettingsError),
    /// Development keys.
    #[error(transparent)]
    DevKeys(#[from] DevKeysError),
    /// The store could not be opened or migrated.
    #[error("the store: {0}")]
    Store(#[source] StoreError),
    /// The KEKs do not fit the store.
    #[error(transparent)]
    Keys(#[from] KeyCheckError),
    /// The metrics could not be registered (a bug: two metrics share a name).
    #[error("metrics: {0}")]
    Metrics(#[source] prometheus::Error),
    /// A use case failed while running a command.
    #[error("{0}")]
    Domain(#[from] secrets_domain::Error),
    /// `rotate-kek` left data keys it could not re-wrap (each is logged with its namespace id).
    #[error("{0} data keys could not be re-wrapped; see the log for their namespaces' ids")]
    RotationIncomplete(u64),
    /// The listener could not be bound.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// The address.
        address: String,
        /// Why.
        source: std::io::Error,
    },
}

/// Keys ready for use.
pub struct ResolvedKeys {
    /// The envelope built from the active and retired KEKs.
    pub envelope: RingEnvelope,
    /// The accepted service tokens.
    pub tokens: Vec<SecretString>,
}

impl std::fmt::Debug for ResolvedKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResolvedKeys")
            .field("envelope", &self.envelope)
            .field("tokens", &self.tokens.len())
            .finish()
    }
}

impl ResolvedKeys {
    /// The use cases over `store`, with these keys and the OS randomness source.
    pub fn service<S: SecretStore>(
        self,
        store: S,
        limits: secrets_domain::Limits,
    ) -> handlers::Service<S> {
        SecretsService::new(store, self.envelope, OsRandom::default(), limits)
    }
}

/// Turns the configured key material into an envelope and tokens, generating development keys
/// where that is allowed, and refusing with the missing setting's name otherwise.
pub fn resolve_keys(settings: &Settings, keys: KeyMaterial) -> Result<ResolvedKeys, StartupError> {
    let backend = settings.storage.backend()?;
    let KeyMaterial {
        mut kek,
        retired,
        mut tokens,
    } = keys;
    if let (Mode::Development, Backend::Sqlite(path), None, true) =
        (settings.mode, &backend, &kek, tokens.is_empty())
    {
        let dev = devkeys::load_or_create(path)?;
        devkeys::announce(&dev);
        kek = Some(dev.kek.clone());
        tokens = vec![dev.token.clone()];
    }
    let kek = kek.ok_or(StartupError::Missing("KEY_ENCRYPTION_KEY"))?;
    if tokens.is_empty() {
        return Err(StartupError::Missing("SERVICE_AUTH_TOKENS"));
    }
    let active =
        Kek::from_base64(kek.expose_secret()).map_err(|source| StartupError::InvalidKek {
            variable: "KEY_ENCRYPTION_KEY",
            source,
        })?;
    let retired = retired
        .iter()
        .map(|key| Kek::from_base64(key.expose_secret()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| StartupError::InvalidKek {
            variable: "KEY_ENCRYPTION_KEYS_RETIRED",
            source,
        })?;
    Ok(ResolvedKeys {
        envelope: RingEnvelope::new(active, retired),
        tokens,
    })
}

/// Opens the store `settings` names and hands it to `f`: the one place the backend is chosen.
/// Every command that needs a store goes through here, so each is written once, generically.
pub async fn with_store<T, F>(settings: &Settings, f: F) -> Result<T, StartupError>
where
    F: StoreUser<Output = Result<T, StartupError>>,
{
    match settings.storage.backend()? {
        Backend::Sqlite(path) => {
            let store = SqliteStore::open(&path, store_options(settings)?)
                .await
                .map_err(StartupError::Store)?;
            f.run(store).await
        }
        Backend::Postgres => {
            let store = PostgresStore::open(&settings.storage.url, store_options(settings)?)
                .await
                .map_err(StartupError::Store)?;
            f.run(store).await
        }
    }
}

fn store_options(settings: &Settings) -> Result<StoreOptions, StartupError> {
    let pool_size = std::num::NonZeroUsize::new(settings.storage.pool_size).ok_or_else(|| {
        crate::settings::SettingsError::Invalid("storage.pool_size must be at least 1".into())
    })?;
    Ok(StoreOptions {
        pool_size,
        timeout: settings.storage.timeout(),
    })
}

/// Something to do with a store, whichever it is (a generic closure, which Rust cannot write
/// as a closure).
pub trait StoreUser {
    /// What it returns.
    type Output;
    /// Does it.
    fn run<S: SecretStore + Migrate + PoolState>(
        self,
        store: S,
    ) -> impl Future<Output = Self::Output>;
}

/// Stores that carry their own migrations.
pub trait Migrate {
    /// Applies pending migrations.
    fn migrate(&self) -> impl Future<Output = Result<(), StoreError>>;
}

impl Migrate for SqliteStore {
    async fn migrate(&self) -> Result<(), StoreError> {
        SqliteStore::migrate(self).await.map(drop)
    }
}

impl Migrate for PostgresStore {
    async fn migrate(&self) -> Result<(), StoreError> {
        PostgresStore::migrate(self).await.map(drop)
    }
}

/// A built, bound server, ready to run.
pub struct Application {
    port: u16,
    server: Server,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl Application {
    /// Does all of start-up (see the module doc) and binds the listener; port 0 picks a free
    /// port, which [`Application::port`] then tells.
    pub async fn build(settings: Settings, keys: KeyMaterial) -> Result<Self, StartupError> {
        let resolved = resolve_keys(&settings, keys)?;
        let settings_for_store = settings.clone();
        with_store(&settings_for_store, Launch { settings, resolved }).await
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
    /// connections and lets the requests in flight finish within
    /// `server.shutdown_timeout_secs`.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let handle = self.server.handle();
        let signals = tokio::spawn(async move {
            if let Some(signal) = shutdown_signal().await {
                tracing::info!(signal, "starting graceful shutdown");
                handle.stop(true).await;
            }
        });
        let served = self.server.await;
        signals.abort();
        served
    }
}

/// Waits for SIGTERM or SIGINT and names it; `None` when the signals cannot be listened to
/// (then only the handle stops the server).
///
/// The server's own signal handling is off (`disable_signals`): actix-server treats SIGINT as
/// a forced stop that drops the requests in flight, and SPEC 7 wants both signals to drain.
async fn shutdown_signal() -> Option<&'static str> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => tokio::select! {
                _ = term.recv() => Some("SIGTERM"),
                _ = int.recv() => Some("SIGINT"),
            },
            (Err(error), _) | (_, Err(error)) => {
                tracing::warn!(%error, "cannot listen for SIGTERM and SIGINT");
                None
            }
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await.ok().map(|()| "Ctrl-C")
    }
}

/// How long a connection the server is closing waits for the client to close its end.
const CLIENT_DISCONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

struct Launch {
    settings: Settings,
    resolved: ResolvedKeys,
}

impl StoreUser for Launch {
    type Output = Result<Application, StartupError>;

    async fn run<S: SecretStore + Migrate + PoolState>(self, store: S) -> Self::Output {
        let Self { settings, resolved } = self;
        if settings.storage.migrate_on_start {
            store.migrate().await.map_err(StartupError::Store)?;
        }
        let tokens = web::Data::new(ServiceTokens::new(&resolved.tokens));
        let service = resolved.service(store, settings.domain_limits());
        service.check_keys().await?;
        let listener =
            TcpListener::bind(settings.server.bind).map_err(|source| StartupError::Bind {
                address: settings.server.bind.to_string(),
                source,
            })?;
        let port = listener
            .local_addr()
            .map_err(|source| StartupError::Bind {
                address: settings.server.bind.to_string(),
                source,
            })?
            .port();
        let state = web::Data::new(AppState {
            service,
            max_body_bytes: settings.limits.max_body_bytes,
            body_timeout: settings.server.body_timeout(),
        });
        let metrics = web::Data::new(
            Metrics::new(settings.storage.backend()?.name()).map_err(StartupError::Metrics)?,
        );
        let mut server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .app_data(tokens.clone())
                .app_data(metrics.clone())
                .configure(routes::<S>)
                // Outermost, so that it sees every answer, the 401s and 404s included.
                .wrap(middleware::from_fn(crate::middleware::observe))
        })
        .shutdown_timeout(settings.server.shutdown_timeout_secs)
        // Signals are handled by `Application::run_until_stopped`; see `shutdown_signal`.
        .disable_signals()
        // Slow clients are bounded at every stage, so that none can hold a connection open for
        // free: the request head must arrive within `server.body_timeout_ms` (actix answers a
        // bare 408 otherwise), then the body within the same time again (`wire::read_body`
        // answers 408 `request_timeout`), and a client told to go away gets one second to
        // close its end before the connection is dropped.
        .client_request_timeout(settings.server.body_timeout())
        .client_disconnect_timeout(CLIENT_DISCONNECT_TIMEOUT);
        if settings.server.workers > 0 {
            server = server.workers(settings.server.workers);
        }
        let server = server
            .listen(listener)
            .map_err(|source| StartupError::Bind {
                address: settings.server.bind.to_string(),
                source,
            })?
            .run();
        tracing::info!(port, "listening");
        Ok(Application { port, server })
    }
}

/// Every route. Unknown routes answer 404 `not_found`, known routes with another method 405
/// `method_not_allowed`, both as JSON; everything under `/namespaces`, and `/metrics`, needs a
/// service token first, so an unauthenticated caller learns nothing about which routes exist.
/// Each route's OpenAPI operation is on its handler; a test checks that the two agree.
fn routes<S: SecretStore + PoolState>(cfg: &mut web::ServiceConfig) {
    use handlers::{
        create_namespace, create_namespaces, delete_namespace, delete_secret, get_secret,
        list_keys, method_not_allowed, not_found, patch_namespace, put_secret, read_namespace,
        rotate_access_key,
    };
    let resource = |path: &str| web::resource(path).default_service(web::to(method_not_allowed));
    cfg.service(resource("/healthz").route(web::get().to(handlers::healthz)))
        .service(resource("/readyz").route(web::get().to(handlers::readyz::<S>)))
        .service(resource("/openapi.json").route(web::get().to(handlers::openapi)))
        .service(
            resource("/metrics")
                .wrap(middleware::from_fn(require_token))
                .route(web::get().to(handlers::metrics::<S>)),
        )
        .service(
            web::scope("/namespaces")
                .wrap(middleware::from_fn(require_token))
                .service(resource("").route(web::post().to(create_namespace::<S>)))
                .service(resource("/bulk").route(web::post().to(create_namespaces::<S>)))
                .service(
                    resource("/{accessKey}")
                        .route(web::get().to(read_namespace::<S>))
                        .route(web::post().to(put_secret::<S>))
                        .route(web::patch().to(patch_namespace::<S>))
                        .route(web::delete().to(delete_namespace::<S>)),
                )
                .service(resource("/{accessKey}/keys").route(web::get().to(list_keys::<S>)))
                .service(
                    resource("/{accessKey}/access-key")
                        .route(web::post().to(rotate_access_key::<S>)),
                )
                .service(
                    resource("/{accessKey}/secrets/{key}")
                        .route(web::get().to(get_secret::<S>))
                        .route(web::delete().to(delete_secret::<S>)),
                )
                .default_service(web::to(not_found)),
        )
        .default_service(web::to(not_found));
}
