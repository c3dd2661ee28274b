//! Configuration: typed, layered, validated once, then passed down.
//!
//! Layers, later ones winning: `config/default.toml` (compiled in), an optional file (`--config`
//! or `SECRETS_CONFIG`), environment variables `SECRETS__SECTION__KEY`, then `DATABASE_URL`.
//! Key material never goes through these layers: [`KeyMaterial`] reads `KEY_ENCRYPTION_KEY`,
//! `KEY_ENCRYPTION_KEYS_RETIRED` and `SERVICE_AUTH_TOKENS` (each also as `<NAME>_FILE`, a path to
//! a file holding the value) straight into [`SecretString`]s.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::Duration;

use config::{Config, Environment, File, FileFormat};
use secrecy::{ExposeSecret, SecretString};
use secrets_adapters::StoreOptions;
use secrets_adapters::audit::Sink;
use secrets_adapters::postgres::PostgresLocation;
use serde::Deserialize;

const DEFAULTS: &str = include_str!("../../../config/default.toml");

/// Whether missing keys may be generated (development) or are a start-up error (production).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Generated keys are allowed on the embedded store.
    Development,
    /// Every key must be configured.
    Production,
}

/// `log.format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The `[server]` section.
#[derive(Debug, Clone, Deserialize)]
pub struct ServerSettings {
    /// Address to listen on.
    pub bind: SocketAddr,
    /// Worker threads; 0 means one per core.
    pub workers: usize,
    /// Grace period for in-flight requests at shutdown.
    pub shutdown_timeout_secs: u64,
    /// How long a client may take to send a request's head, and then its body, in
    /// milliseconds; past it the request is answered 408 `request_timeout`.
    pub body_timeout_ms: u64,
    /// `[server.tls]`: TLS on the listener, when its files are set.
    #[serde(default)]
    pub tls: TlsSection,
}

/// The `[server.tls]` section as written: every field optional, so that a half-filled section
/// is refused by [`Settings::validate`] naming what is missing, not by a parse error.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct TlsSection {
    /// The server's certificate chain, PEM.
    pub cert_file: Option<PathBuf>,
    /// Its private key, PEM.
    pub key_file: Option<PathBuf>,
    /// CAs whose client certificates are accepted, PEM.
    pub client_ca_file: Option<PathBuf>,
    /// `required` (the default with `client_ca_file`) or `optional`.
    pub client_auth: Option<ClientAuth>,
}

/// `server.tls.client_auth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    /// A handshake without a client certificate fails.
    Required,
    /// A client certificate is checked when one is sent.
    Optional,
}

/// TLS on the listener, validated: a certificate and its key, and perhaps client CAs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerTls {
    /// `server.tls.cert_file`.
    pub cert_file: PathBuf,
    /// `server.tls.key_file`.
    pub key_file: PathBuf,
    /// `server.tls.client_ca_file` and `client_auth`.
    pub client_ca: Option<(PathBuf, ClientAuth)>,
}

impl TlsSection {
    /// The listener's TLS, or `None` for plain HTTP; the problems of a section that cannot
    /// be used are pushed to `problems`.
    fn validated(&self, problems: &mut Vec<&'static str>) -> Option<ListenerTls> {
        if self.client_auth.is_some() && self.client_ca_file.is_none() {
            problems.push("server.tls.client_auth needs server.tls.client_ca_file");
        }
        match (&self.cert_file, &self.key_file) {
            (Some(cert_file), Some(key_file)) => Some(ListenerTls {
                cert_file: cert_file.clone(),
                key_file: key_file.clone(),
                client_ca: self
                    .client_ca_file
                    .clone()
                    .map(|file| (file, self.client_auth.unwrap_or(ClientAuth::Required))),
            }),
            (Some(_), None) => {
                problems.push("server.tls.cert_file is set but server.tls.key_file is not");
                None
            }
            (None, Some(_)) => {
                problems.push("server.tls.key_file is set but server.tls.cert_file is not");
                None
            }
            (None, None) => {
                if self.client_ca_file.is_some() {
                    problems
                        .push("server.tls.client_ca_file needs server.tls.cert_file and key_file");
                }
                None
            }
        }
    }
}

impl ServerSettings {
    /// TLS on the listener, when `[server.tls]` sets it (validated at load).
    #[must_use]
    pub fn tls(&self) -> Option<ListenerTls> {
        self.tls.validated(&mut Vec::new())
    }

    /// The bound on receiving a request head, and then a request body.
    #[must_use]
    pub fn body_timeout(&self) -> Duration {
        Duration::from_millis(self.body_timeout_ms)
    }
}

/// The `[storage]` section. The URL may carry a password, so `Debug` is written by hand.
#[derive(Clone, Deserialize)]
pub struct StorageSettings {
    /// `storage.url` (`sqlite://<path>` or `postgres://...`), parsed once into the store it
    /// names.
    #[serde(rename = "url")]
    pub backend: Backend,
    /// Connections in the pool: at least 1, which deserialising checks.
    pub pool_size: NonZeroUsize,
    /// Bound on waiting for the store, in milliseconds.
    pub timeout_ms: u64,
    /// Whether `serve` applies pending migrations first.
    pub migrate_on_start: bool,
    /// `storage.read_urls`: PostgreSQL standbys that serve the hot read whenever they have
    /// caught up with the primary (each URL may hold a password).
    #[serde(default)]
    pub read_urls: Vec<SecretString>,
}

impl std::fmt::Debug for StorageSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StorageSettings")
            .field("backend", &self.backend.name())
            .field("pool_size", &self.pool_size)
            .field("timeout_ms", &self.timeout_ms)
            .field("migrate_on_start", &self.migrate_on_start)
            .field("read_urls", &self.read_urls.len())
            .finish_non_exhaustive()
    }
}

/// Which store `storage.url` names, and where it is. (`Debug` shows a PostgreSQL URL
/// redacted: `SecretString` prints no content.)
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "SecretString")]
pub enum Backend {
    /// The embedded store at this path.
    Sqlite(PathBuf),
    /// A PostgreSQL server, at this URL (it may hold a password).
    Postgres(SecretString),
}

impl Backend {
    /// A short name for logs.
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            Self::Sqlite(_) => "sqlite",
            Self::Postgres(_) => "postgres",
        }
    }
}

impl TryFrom<SecretString> for Backend {
    type Error = &'static str;

    /// Parses the URL's scheme. The messages never hold the URL: it may carry a password.
    fn try_from(url: SecretString) -> Result<Self, Self::Error> {
        let text = url.expose_secret();
        if let Some(path) = text.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err(
                    "storage.url: sqlite:// needs a file path, e.g. sqlite://data/secrets.db",
                );
            }
            Ok(Self::Sqlite(PathBuf::from(path)))
        } else if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            Ok(Self::Postgres(url))
        } else {
            Err("storage.url (or DATABASE_URL) must start with sqlite:// or postgres://")
        }
    }
}

impl StorageSettings {
    /// What is wrong with `storage.read_urls`, if anything. The message never holds a URL: it
    /// may carry a password.
    fn read_urls_problem(&self) -> Option<String> {
        if self.read_urls.is_empty() {
            return None;
        }
        if !matches!(self.backend, Backend::Postgres(_)) {
            return Some(
                "storage.read_urls needs a PostgreSQL storage.url: standbys are PostgreSQL's"
                    .into(),
            );
        }
        let position = self.read_urls.iter().position(|url| {
            let url = url.expose_secret();
            !(url.starts_with("postgres://") || url.starts_with("postgresql://"))
        })?;
        Some(format!(
            "storage.read_urls: entry {} must start with postgres://",
            position + 1
        ))
    }

    /// Where the PostgreSQL store at `url` lives: that primary, and the standbys of
    /// `storage.read_urls`.
    #[must_use]
    pub fn postgres_location(&self, url: SecretString) -> PostgresLocation {
        PostgresLocation {
            url,
            read_urls: self.read_urls.clone(),
        }
    }

    /// How the store uses its connections.
    #[must_use]
    pub fn options(&self) -> StoreOptions {
        StoreOptions {
            pool_size: self.pool_size,
            timeout: Duration::from_millis(self.timeout_ms),
        }
    }
}

/// The `[limits]` section.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct LimitSettings {
    /// Largest secret value in bytes.
    pub max_value_bytes: usize,
    /// Most secrets per namespace.
    pub max_secrets_per_namespace: u32,
    /// Largest request body in bytes.
    pub max_body_bytes: usize,
}

/// The `[log]` section.
#[derive(Debug, Clone, Deserialize)]
pub struct LogSettings {
    /// Line format.
    pub format: LogFormat,
    /// Default filter directive.
    pub level: String,
}

/// The `[compat]` section: surfaces kept for callers of the service this one replaces.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct CompatSettings {
    /// Serve the original service's routes at the root (`handlers::original`).
    pub original_routes: bool,
}

/// `audit.sink`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditSinkKind {
    /// A file, `audit.path`.
    File,
    /// Standard output.
    Stdout,
    /// No audit trail.
    Off,
}

/// The `[audit]` section: where the audit trail goes (operator configuration only; nothing in
/// the API changes it).
#[derive(Debug, Clone, Deserialize)]
pub struct AuditSettings {
    /// `file`, `stdout` or `off`.
    pub sink: AuditSinkKind,
    /// The file, for `file`; with the embedded store it defaults to `audit.log` beside the
    /// database.
    pub path: Option<PathBuf>,
    /// How long a request waits for its line to be written, in milliseconds; past it, the
    /// request is answered 503 `audit_unavailable`.
    pub timeout_ms: u64,
}

impl AuditSettings {
    /// Where the trail goes with the store `backend`, or `None` when it is off.
    ///
    /// # Errors
    /// A file sink with no `audit.path` on PostgreSQL: there is no database file to put it
    /// beside, and no other place is safe to guess.
    pub fn sink(&self, backend: &Backend) -> Result<Option<Sink>, String> {
        match (self.sink, &self.path, backend) {
            (AuditSinkKind::Off, _, _) => Ok(None),
            (AuditSinkKind::Stdout, _, _) => Ok(Some(Sink::Stdout)),
            (AuditSinkKind::File, Some(path), _) => Ok(Some(Sink::File(path.clone()))),
            (AuditSinkKind::File, None, Backend::Sqlite(database)) => Ok(Some(Sink::File(
                database
                    .parent()
                    .unwrap_or_else(|| Path::new("."))
                    .join("audit.log"),
            ))),
            (AuditSinkKind::File, None, Backend::Postgres(_)) => Err(
                "audit.path is not set (SECRETS__AUDIT__PATH): with a PostgreSQL store, name \
                 the audit file, or set audit.sink to stdout or off"
                    .to_owned(),
            ),
        }
    }

    /// The bound on waiting for a line to be written.
    #[must_use]
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

/// Every non-secret setting.
#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    /// Development or production.
    pub mode: Mode,
    /// HTTP server.
    pub server: ServerSettings,
    /// The store.
    pub storage: StorageSettings,
    /// Limits on requests and namespaces.
    pub limits: LimitSettings,
    /// Logging.
    pub log: LogSettings,
    /// Compatibility with the service this one replaces.
    pub compat: CompatSettings,
    /// The audit trail.
    pub audit: AuditSettings,
}

/// A configuration problem, named so an operator can fix it.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The layers could not be read or do not fit the schema.
    #[error("configuration: {0}")]
    Load(#[from] config::ConfigError),
    /// A value is out of range or malformed.
    #[error("configuration: {0}")]
    Invalid(String),
    /// A `<NAME>_FILE` could not be read.
    #[error("configuration: cannot read {variable} ({path}): {source}")]
    File {
        /// The variable that named the file.
        variable: String,
        /// The file.
        path: String,
        /// Why it failed.
        source: std::io::Error,
    },
}

impl Settings {
    /// Loads the layers. `env` is the process environment (a map, so tests need not touch
    /// the real one).
    pub fn load(file: Option<&Path>, env: &HashMap<String, String>) -> Result<Self, SettingsError> {
        let mut builder = Config::builder().add_source(File::from_str(DEFAULTS, FileFormat::Toml));
        let file = file
            .map(Path::to_path_buf)
            .or_else(|| env.get("SECRETS_CONFIG").map(PathBuf::from));
        if let Some(file) = file {
            builder = builder.add_source(File::from(file).required(true));
        }
        builder = builder.add_source(
            Environment::with_prefix("SECRETS")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true)
                // One URL per standby, each naming one host, so a comma separates them.
                .list_separator(",")
                .with_list_parse_key("storage.read_urls")
                .source(Some(env.clone())),
        );
        if let Some(url) = env.get("DATABASE_URL").filter(|u| !u.is_empty()) {
            builder = builder.set_override("storage.url", url.as_str())?;
        }
        let settings: Self = builder.build()?.try_deserialize()?;
        settings.validate()?;
        Ok(settings)
    }

    /// Fails fast on values that would only fail later, naming every such setting at once.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let checks = [
            (
                self.storage.timeout_ms == 0,
                "storage.timeout_ms must be at least 1",
            ),
            (
                self.server.body_timeout_ms == 0,
                "server.body_timeout_ms must be at least 1",
            ),
            (
                self.limits.max_body_bytes == 0,
                "limits.max_body_bytes must be at least 1",
            ),
            (
                self.limits.max_secrets_per_namespace == 0,
                "limits.max_secrets_per_namespace must be at least 1",
            ),
            (
                self.audit.timeout_ms == 0,
                "audit.timeout_ms must be at least 1",
            ),
        ];
        let mut failed: Vec<&str> = checks
            .into_iter()
            .filter(|(failed, _)| *failed)
            .map(|(_, message)| message)
            .collect();
        self.server.tls.validated(&mut failed);
        let failed: Vec<String> = failed
            .into_iter()
            .map(str::to_owned)
            .chain(self.storage.read_urls_problem())
            .collect();
        if failed.is_empty() {
            Ok(())
        } else {
            Err(SettingsError::Invalid(failed.join("; ")))
        }
    }

    /// The domain's view of the limits.
    #[must_use]
    pub fn domain_limits(&self) -> secrets_domain::Limits {
        secrets_domain::Limits {
            max_value_bytes: self.limits.max_value_bytes,
            max_secrets_per_namespace: self.limits.max_secrets_per_namespace,
        }
    }
}

/// Keys and tokens, as configured (before dev mode may fill them in).
pub struct KeyMaterial {
    /// The active KEK, base64.
    pub kek: Option<SecretString>,
    /// Retired KEKs, base64, for unwrapping only.
    pub retired: Vec<SecretString>,
    /// Accepted service tokens.
    pub tokens: Vec<SecretString>,
    /// The audit key, base64, when it is set on its own (otherwise the active KEK derives it).
    pub audit: Option<SecretString>,
}

impl std::fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyMaterial")
            .field("kek", &self.kek.as_ref().map(|_| "<redacted>"))
            .field("retired", &self.retired.len())
            .field("tokens", &self.tokens.len())
            .field("audit", &self.audit.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl KeyMaterial {
    /// Reads `KEY_ENCRYPTION_KEY`, `KEY_ENCRYPTION_KEYS_RETIRED`, `SERVICE_AUTH_TOKENS` and
    /// `AUDIT_KEY`, each from the variable itself or from the file its `_FILE` variant names.
    pub fn from_env(env: &HashMap<String, String>) -> Result<Self, SettingsError> {
        Ok(Self {
            kek: read_secret(env, "KEY_ENCRYPTION_KEY")?,
            retired: read_list(env, "KEY_ENCRYPTION_KEYS_RETIRED")?,
            tokens: read_list(env, "SERVICE_AUTH_TOKENS")?,
            audit: read_secret(env, "AUDIT_KEY")?,
        })
    }
}

fn read_secret(
    env: &HashMap<String, String>,
    name: &str,
) -> Result<Option<SecretString>, SettingsError> {
    let file_variable = format!("{name}_FILE");
    let raw = match (env.get(name), env.get(&file_variable)) {
        (Some(_), Some(_)) => {
            return Err(SettingsError::Invalid(format!(
                "set either {name} or {file_variable}, not both"
            )));
        }
        (Some(value), None) => value.clone(),
        (None, Some(path)) => {
            std::fs::read_to_string(path).map_err(|source| SettingsError::File {
                variable: file_variable,
                path: path.clone(),
                source,
            })?
        }
        (None, None) => return Ok(None),
    };
    let value = zeroize::Zeroizing::new(raw);
    let trimmed = value.trim();
    Ok((!trimmed.is_empty()).then(|| SecretString::from(trimmed.to_owned())))
}

fn read_list(
    env: &HashMap<String, String>,
    name: &str,
) -> Result<Vec<SecretString>, SettingsError> {
    Ok(read_secret(env, name)?
        .map(|joined| {
            joined
                .expose_secret()
                .split([',', '\n'])
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(|item| SecretString::from(item.to_owned()))
                .collect()
        })
        .unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn the_defaults_load_with_no_file_and_no_environment() {
        let settings = Settings::load(None, &env(&[])).expect("defaults load");
        assert_eq!(settings.mode, Mode::Development);
        assert_eq!(settings.server.bind.to_string(), "127.0.0.1:8080");
        assert!(
            matches!(&settings.storage.backend, Backend::Sqlite(path) if path == Path::new("data/secrets.db"))
        );
        assert_eq!(settings.limits.max_value_bytes, 65_536);
        assert_eq!(settings.limits.max_secrets_per_namespace, 1_000);
        assert_eq!(settings.limits.max_body_bytes, 1_048_576);
        assert_eq!(settings.server.body_timeout(), Duration::from_secs(10));
        assert!(
            !settings.compat.original_routes,
            "the original's routes are opt-in"
        );
    }

    #[test]
    fn environment_variables_override_sections_and_database_url_overrides_the_store() {
        let settings = Settings::load(
            None,
            &env(&[
                ("SECRETS__SERVER__BIND", "0.0.0.0:9000"),
                ("SECRETS__LIMITS__MAX_SECRETS_PER_NAMESPACE", "7"),
                ("SECRETS__MODE", "production"),
                ("SECRETS__COMPAT__ORIGINAL_ROUTES", "true"),
                ("DATABASE_URL", "postgres://db.internal/secrets"),
            ]),
        )
        .expect("loads");
        assert!(settings.compat.original_routes);
        assert_eq!(settings.server.bind.to_string(), "0.0.0.0:9000");
        assert_eq!(settings.limits.max_secrets_per_namespace, 7);
        assert_eq!(settings.mode, Mode::Production);
        assert!(
            matches!(&settings.storage.backend, Backend::Postgres(url) if url.expose_secret() == "postgres://db.internal/secrets")
        );
    }

    #[test]
    fn invalid_settings_are_refused_naming_the_setting() {
        let cases = [
            ("SECRETS__STORAGE__POOL_SIZE", "0", "storage.pool_size"),
            ("DATABASE_URL", "mysql://x", "DATABASE_URL"),
            (
                "SECRETS__LIMITS__MAX_BODY_BYTES",
                "0",
                "limits.max_body_bytes",
            ),
            (
                "SECRETS__SERVER__BODY_TIMEOUT_MS",
                "0",
                "server.body_timeout_ms",
            ),
        ];
        for (variable, value, named) in cases {
            let error = Settings::load(None, &env(&[(variable, value)])).expect_err(variable);
            assert!(error.to_string().contains(named), "{variable}: {error}");
        }
    }

    #[test]
    fn read_urls_are_a_comma_separated_list_of_postgres_urls_for_a_postgres_store() {
        let settings = Settings::load(
            None,
            &env(&[
                (
                    "DATABASE_URL",
                    "postgres://a:1,b:2/secrets?target_session_attrs=read-write",
                ),
                (
                    "SECRETS__STORAGE__READ_URLS",
                    "postgres://u:pw@b:2/secrets,postgres://c:3/secrets",
                ),
            ]),
        )
        .expect("loads");
        let urls: Vec<&str> = settings
            .storage
            .read_urls
            .iter()
            .map(ExposeSecret::expose_secret)
            .collect();
        assert_eq!(
            urls,
            ["postgres://u:pw@b:2/secrets", "postgres://c:3/secrets"]
        );
        assert!(!format!("{settings:?}").contains("pw@"));
        assert!(
            Settings::load(None, &env(&[]))
                .expect("defaults")
                .storage
                .read_urls
                .is_empty()
        );

        let cases = [
            (
                vec![("SECRETS__STORAGE__READ_URLS", "postgres://b/secrets")],
                "needs a PostgreSQL storage.url",
            ),
            (
                vec![
                    ("DATABASE_URL", "postgres://a/secrets"),
                    (
                        "SECRETS__STORAGE__READ_URLS",
                        "postgres://b/s,mysql://hunter2@c/s",
                    ),
                ],
                "entry 2 must start with postgres://",
            ),
        ];
        for (variables, expected) in cases {
            let error = Settings::load(None, &env(&variables)).expect_err(expected);
            let message = error.to_string();
            assert!(message.contains(expected), "{message}");
            assert!(!message.contains("hunter2"), "{message}");
        }
    }

    #[test]
    fn every_invalid_setting_is_named_at_once() {
        let error = Settings::load(
            None,
            &env(&[
                ("SECRETS__STORAGE__TIMEOUT_MS", "0"),
                ("SECRETS__LIMITS__MAX_BODY_BYTES", "0"),
            ]),
        )
        .expect_err("two invalid settings");
        let message = error.to_string();
        assert!(message.contains("storage.timeout_ms"), "{message}");
        assert!(message.contains("limits.max_body_bytes"), "{message}");
    }

    #[test]
    fn a_half_filled_tls_section_is_refused_naming_what_is_missing() {
        let cases = [
            (
                "SECRETS__SERVER__TLS__CERT_FILE",
                "server.tls.key_file is not",
            ),
            (
                "SECRETS__SERVER__TLS__KEY_FILE",
                "server.tls.cert_file is not",
            ),
            (
                "SECRETS__SERVER__TLS__CLIENT_CA_FILE",
                "needs server.tls.cert_file",
            ),
        ];
        for (variable, expected) in cases {
            let error =
                Settings::load(None, &env(&[(variable, "/etc/x.pem")])).expect_err(variable);
            assert!(error.to_string().contains(expected), "{variable}: {error}");
        }
        let settings = Settings::load(
            None,
            &env(&[
                ("SECRETS__SERVER__TLS__CERT_FILE", "/c.pem"),
                ("SECRETS__SERVER__TLS__KEY_FILE", "/k.pem"),
                ("SECRETS__SERVER__TLS__CLIENT_CA_FILE", "/ca.pem"),
            ]),
        )
        .expect("loads");
        let tls = settings.server.tls().expect("TLS on");
        assert_eq!(
            tls.client_ca,
            Some((PathBuf::from("/ca.pem"), ClientAuth::Required))
        );
        assert!(
            Settings::load(None, &env(&[]))
                .expect("defaults")
                .server
                .tls()
                .is_none()
        );
    }

    #[test]
    fn a_refused_storage_url_is_never_echoed() {
        for url in ["mysql://user:hunter2@db/x", "hunter2"] {
            let error = Settings::load(None, &env(&[("DATABASE_URL", url)])).expect_err(url);
            let message = error.to_string();
            assert!(message.contains("DATABASE_URL"), "{message}");
            assert!(!message.contains("hunter2"), "{message}");
        }
        let error =
            Settings::load(None, &env(&[("DATABASE_URL", "sqlite://")])).expect_err("no path");
        assert!(error.to_string().contains("needs a file path"), "{error}");
    }

    #[test]
    fn a_config_file_overrides_the_defaults_and_the_environment_overrides_the_file() {
        let dir = std::env::temp_dir().join(format!("secrets-settings-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("service.toml");
        std::fs::write(&file, "[server]\nbind = \"127.0.0.1:7000\"\nworkers = 3\n").expect("write");
        let settings =
            Settings::load(Some(&file), &env(&[("SECRETS__SERVER__WORKERS", "5")])).expect("loads");
        std::fs::remove_dir_all(&dir).expect("clean up");
        assert_eq!(settings.server.bind.to_string(), "127.0.0.1:7000");
        assert_eq!(settings.server.workers, 5);
    }

    #[test]
    fn key_material_is_read_from_variables_or_files() {
        let dir = std::env::temp_dir().join(format!("secrets-keys-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("dir");
        let kek_file = dir.join("kek");
        std::fs::write(&kek_file, "a2VrLWZyb20tZmlsZQ==\n").expect("write");
        let keys = KeyMaterial::from_env(&env(&[
            (
                "KEY_ENCRYPTION_KEY_FILE",
                kek_file.to_str().expect("utf-8 path"),
            ),
            ("SERVICE_AUTH_TOKENS", "one, two,,three"),
        ]))
        .expect("loads");
        std::fs::remove_dir_all(&dir).expect("clean up");
        assert_eq!(
            keys.kek.as_ref().map(|k| k.expose_secret().to_owned()),
            Some("a2VrLWZyb20tZmlsZQ==".to_owned())
        );
        let tokens: Vec<_> = keys
            .tokens
            .iter()
            .map(|t| t.expose_secret().to_owned())
            .collect();
        assert_eq!(tokens, ["one", "two", "three"]);
        assert!(keys.retired.is_empty());
        assert!(!format!("{keys:?}").contains("a2Vr"));
    }

    #[test]
    fn a_variable_and_its_file_form_together_are_refused() {
        let error = KeyMaterial::from_env(&env(&[
            ("SERVICE_AUTH_TOKENS", "x"),
            ("SERVICE_AUTH_TOKENS_FILE", "/nonexistent"),
        ]))
        .expect_err("ambiguous");
        assert!(error.to_string().contains("SERVICE_AUTH_TOKENS_FILE"));
    }
}
