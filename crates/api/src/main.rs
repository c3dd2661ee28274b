//! `secrets-service`: parse the command line, load settings, start logging, run the command.

// The doc comments below are the commands' `--help` text, where backticks would be printed
// as they are.
#![allow(clippy::doc_markdown)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use secrets_api::app::{self, Migrate, StoreUser};
use secrets_api::rotate;
use secrets_api::settings::Mode;
use secrets_api::{Application, KeyMaterial, Settings, StartupError};
use secrets_domain::ports::SecretStore;

/// An internal HTTP service that holds customers' secrets, encrypted per namespace.
///
/// Settings come from the built-in defaults, then a configuration file, then environment
/// variables; docs/configuration.md lists every one.
#[derive(Debug, Parser)]
#[command(version, after_long_help = ENVIRONMENT)]
struct Cli {
    /// A configuration file (TOML) layered over the defaults; also SECRETS_CONFIG.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Address to listen on (overrides server.bind and SECRETS__SERVER__BIND).
    #[arg(long, global = true)]
    bind: Option<String>,
    /// Production mode: every key must be configured; nothing is generated.
    #[arg(long, global = true)]
    production: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

/// The environment variables that are not settings, for `--help`.
const ENVIRONMENT: &str = "\
Environment:
  KEY_ENCRYPTION_KEY           the active key-encryption key, base64 (see gen-key)
  KEY_ENCRYPTION_KEYS_RETIRED  older keys, comma-separated, for unwrapping only
  SERVICE_AUTH_TOKENS          accepted service tokens, comma-separated
      each of these three also as <NAME>_FILE: a file holding the value
  DATABASE_URL                 overrides storage.url (sqlite://<path> or postgres://...)
  SECRETS_CONFIG               a configuration file, when --config is not given
  RUST_LOG                     overrides log.level (a tracing filter, e.g. debug)";

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the HTTP API (the default).
    #[command(long_about = "Serve the HTTP API (the default).\n\n\
        Listens on server.bind until SIGTERM or SIGINT, then stops accepting connections, lets \
        requests in flight finish (for at most server.shutdown_timeout_secs) and exits 0. \
        GET /healthz, /readyz, /metrics (with a service token) and /openapi.json are there to \
        operate it.")]
    Serve,
    /// Apply pending database migrations, then exit.
    Migrate,
    /// Validate the configuration and the key-encryption keys against the store, then exit.
    Check,
    /// Print a fresh random 32-byte key, base64, for KEY_ENCRYPTION_KEY.
    GenKey,
    /// Re-wrap every data key under the active KEY_ENCRYPTION_KEY, online and resumable.
    ///
    /// Run it after making a new key active and listing the old one in
    /// KEY_ENCRYPTION_KEYS_RETIRED (on every replica). Each batch is its own transaction; an
    /// interrupted run is finished by running it again. Replicas keep serving throughout.
    /// When it reports nothing failed, the retired key can be removed from the configuration.
    RotateKek {
        /// Data keys re-wrapped per transaction.
        #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        batch_size: u32,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("secrets-service: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), String> {
    if let Some(Command::GenKey) = cli.command {
        let key = secrets_adapters::crypto::generate_key_base64().map_err(|e| e.to_string())?;
        println!("{}", key.as_str());
        return Ok(());
    }
    let mut env: HashMap<String, String> = std::env::vars().collect();
    if let Some(bind) = &cli.bind {
        env.insert("SECRETS__SERVER__BIND".into(), bind.clone());
    }
    let mut settings = Settings::load(cli.config.as_deref(), &env).map_err(|e| e.to_string())?;
    if cli.production {
        settings.mode = Mode::Production;
    }
    // Held until `run` returns, so that every line is written before the process exits.
    let _log_writer = secrets_api::telemetry::init(&settings.log);
    let keys = KeyMaterial::from_env(&env).map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(async move {
        match cli.command {
            None | Some(Command::Serve) => serve(settings, keys).await,
            Some(Command::Migrate) => app::with_store(&settings, MigrateCommand).await,
            Some(Command::Check) => check(&settings, keys).await,
            Some(Command::RotateKek { batch_size }) => rotate(&settings, keys, batch_size).await,
            Some(Command::GenKey) => Ok(()),
        }
        .map_err(|e| e.to_string())
    })
}

async fn serve(settings: Settings, keys: KeyMaterial) -> Result<(), StartupError> {
    let application = Application::build(settings, keys).await?;
    application
        .run_until_stopped()
        .await
        .map_err(|source| StartupError::Bind {
            address: "the listener".into(),
            source,
        })
}

struct MigrateCommand;

impl StoreUser for MigrateCommand {
    type Output = Result<(), StartupError>;

    async fn run<S: SecretStore + Migrate>(self, store: S) -> Self::Output {
        store.migrate().await.map_err(StartupError::Store)?;
        println!("migrations applied");
        Ok(())
    }
}

async fn check(settings: &Settings, keys: KeyMaterial) -> Result<(), StartupError> {
    let resolved = app::resolve_keys(settings, keys)?;
    app::with_store(
        settings,
        CheckCommand {
            resolved,
            limits: settings.domain_limits(),
        },
    )
    .await
}

async fn rotate(
    settings: &Settings,
    keys: KeyMaterial,
    batch_size: u32,
) -> Result<(), StartupError> {
    let resolved = app::resolve_keys(settings, keys)?;
    app::with_store(
        settings,
        RotateCommand {
            resolved,
            limits: settings.domain_limits(),
            batch_size,
        },
    )
    .await
}

struct RotateCommand {
    resolved: app::ResolvedKeys,
    limits: secrets_domain::Limits,
    batch_size: u32,
}

impl StoreUser for RotateCommand {
    type Output = Result<(), StartupError>;

    async fn run<S: SecretStore + Migrate>(self, store: S) -> Self::Output {
        let service = self.resolved.service(store, self.limits);
        // The same refusals as start-up: never re-wrap with a key that fails its check.
        service.check_keys().await?;
        let report =
            rotate::rotate_kek(&service, self.batch_size, &mut rotate::Console::new()).await?;
        println!(
            "re-wrapped: {}, already current: {}, changed meanwhile: {}, failed: {}",
            report.rewrapped, report.already_current, report.skipped, report.failed
        );
        if report.failed > 0 {
            return Err(StartupError::RotationIncomplete(report.failed));
        }
        Ok(())
    }
}

struct CheckCommand {
    resolved: app::ResolvedKeys,
    limits: secrets_domain::Limits,
}

impl StoreUser for CheckCommand {
    type Output = Result<(), StartupError>;

    async fn run<S: SecretStore + Migrate>(self, store: S) -> Self::Output {
        let service = self.resolved.service(store, self.limits);
        service.check_keys().await?;
        println!("configuration and key-encryption keys check out");
        Ok(())
    }
}
