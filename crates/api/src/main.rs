//! `secrets-service`: parse the command line, load settings, start logging, then choose the
//! store once and run the command over it (`run_on::<SqliteStore>` or `run_on::<PostgresStore>`).

// The doc comments below are the commands' `--help` text, where backticks would be printed
// as they are.
#![allow(clippy::doc_markdown)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use secrecy::{ExposeSecret as _, SecretString};
use secrets_adapters::crypto::{OsRandom, RingEnvelope};
use secrets_adapters::original::{OriginalCipher, OriginalDatabase};
use secrets_adapters::postgres::PostgresStore;
use secrets_adapters::sqlite::SqliteStore;
use secrets_adapters::{MigrationReport, Store};
use secrets_api::import::{self, ImportOptions, Target};
use secrets_api::keys::Purpose;
use secrets_api::progress::Console;
use secrets_api::settings::{Backend, Mode};
use secrets_api::startup::{self, Service};
use secrets_api::{Application, KeyMaterial, Settings, StartupError, keys, rotate};
use secrets_domain::import::ImportStore;

/// An internal HTTP service that holds customers' secrets, encrypted per namespace.
///
/// Settings come from the built-in defaults, then a configuration file, then environment
/// variables; docs/configuration.md lists every one.
#[derive(Debug, Parser)]
#[command(name = "secrets-service", version, after_long_help = ENVIRONMENT)]
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
  ORIGINAL_ENCRYPTION_SECRET   import-original: the original service's ENCRYPTION_SECRET
      also as ORIGINAL_ENCRYPTION_SECRET_FILE; ORIGINAL_DATABASE_URL for --from
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
    /// Apply pending database migrations, then exit. Needs no key or token.
    Migrate,
    /// Validate everything serve needs, then exit: the configuration, the keys and service
    /// tokens, and the key-encryption keys against the store.
    Check,
    /// Print a fresh random 32-byte key, base64, for KEY_ENCRYPTION_KEY.
    GenKey,
    /// Print a fresh random service token (32 bytes, base64), for SERVICE_AUTH_TOKENS.
    GenToken,
    /// Re-wrap every data key under the active KEY_ENCRYPTION_KEY, online and resumable.
    ///
    /// Run it after making a new key active and listing the old one in
    /// KEY_ENCRYPTION_KEYS_RETIRED (on every replica). Each batch is its own transaction; an
    /// interrupted run is finished by running it again. Replicas keep serving throughout.
    /// When it reports nothing failed, the retired key can be removed from the configuration.
    /// Needs the keys, not SERVICE_AUTH_TOKENS.
    RotateKek {
        /// Data keys re-wrapped per transaction.
        #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        batch_size: u32,
    },
    /// Import every namespace of the service this one replaces, keeping its access keys.
    ///
    /// Reads the original's PostgreSQL database (--from, or ORIGINAL_DATABASE_URL) in one
    /// read-only snapshot, decrypts it with the original's ENCRYPTION_SECRET (given as
    /// ORIGINAL_ENCRYPTION_SECRET or ORIGINAL_ENCRYPTION_SECRET_FILE), and writes each namespace,
    /// in a transaction of its own, into this service's store through its own envelope. A wrong
    /// secret stops the run before anything is written. Safe to re-run: what is unchanged is
    /// skipped, what changed is merged (names written here since keep this service's state),
    /// what the original deleted is deleted here. Exits non-zero when anything failed.
    /// docs/operations.md has the cut-over runbook.
    ImportOriginal(ImportArgs),
}

#[derive(Debug, clap::Args)]
struct ImportArgs {
    /// The original service's database URL (postgres://...); also ORIGINAL_DATABASE_URL.
    #[arg(long, env = "ORIGINAL_DATABASE_URL", hide_env_values = true)]
    from: String,
    /// Decrypt and check everything, and count what would be done; write nothing anywhere.
    #[arg(long, conflicts_with = "verify")]
    dry_run: bool,
    /// Compare every imported namespace, read back through this service, with the original.
    #[arg(long)]
    verify: bool,
    /// Namespaces read from the original per batch.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    batch_size: u32,
    /// Namespaces imported at once, each in its own transaction.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256))]
    concurrency: u16,
    /// The original's ENCRYPTION_SECRET, read from the environment after parsing.
    #[arg(skip)]
    secret: Option<SecretString>,
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
    let mut command = cli.command.unwrap_or(Command::Serve);
    if let Command::GenKey | Command::GenToken = command {
        // A token is made as a key is: 32 bytes of the OS CSPRNG.
        let key = secrets_adapters::crypto::generate_key_base64().map_err(|e| e.to_string())?;
        println!("{}", key.as_str());
        return Ok(());
    }
    let mut env: HashMap<String, String> = std::env::vars().collect();
    if let Command::ImportOriginal(args) = &mut command {
        args.secret = Some(import::encryption_secret(&env)?);
    }
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
    // The one place the store is chosen; every command after it is generic over the store.
    runtime.block_on(async move {
        match settings.storage.backend.clone() {
            Backend::Sqlite(path) => run_on::<SqliteStore>(&path, command, settings, keys).await,
            Backend::Postgres(url) => {
                let location = settings.storage.postgres_location(url);
                run_on::<PostgresStore>(&location, command, settings, keys).await
            }
        }
        .map_err(|e| e.to_string())
    })
}

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
enum Failure {
    /// The service, or the command's use of the store, could not start.
    #[error(transparent)]
    Startup(#[from] StartupError),
    /// The server failed while serving.
    #[error("serving: {0}")]
    Serving(#[source] std::io::Error),
    /// A use case failed while running a command (with its cause: which database, role, ...).
    #[error("{}", secrets_api::error::chain(.0))]
    Domain(secrets_domain::Error),
    /// `rotate-kek` left data keys it could not re-wrap (each is logged with its namespace id).
    #[error("{0} data keys could not be re-wrapped; see the log for their namespaces' ids")]
    RotationIncomplete(u64),
    /// `import-original` stopped.
    #[error("import-original: {0}")]
    Import(#[from] import::ImportError),
    /// `import-original` left namespaces failed, differing or not imported (each is logged).
    #[error(
        "import-original: {0} namespaces failed, differ or are not imported; see the log for \
         their original ids"
    )]
    ImportIncomplete(u64),
}

/// Runs `command` on the store `S` at `location`.
async fn run_on<S: Store + ImportStore>(
    location: &S::Location,
    command: Command,
    settings: Settings,
    keys: KeyMaterial,
) -> Result<(), Failure> {
    match command {
        Command::Serve => {
            let application = Application::build::<S>(location, settings, keys).await?;
            application
                .run_until_stopped()
                .await
                .map_err(Failure::Serving)
        }
        Command::Migrate => {
            let store: S = startup::open(location, &settings).await?;
            let report = store.migrate().await.map_err(StartupError::Store)?;
            print_migrations(&report);
            Ok(())
        }
        Command::Check => {
            // `check` answers whether `serve` would start, so it wants what `serve` wants,
            // service tokens included.
            checked_service::<S>(location, &settings, keys, Purpose::Serving).await?;
            println!("configuration and key-encryption keys check out");
            Ok(())
        }
        Command::RotateKek { batch_size } => {
            // The same refusals as start-up: never re-wrap with a key that fails its check.
            let service = checked_service::<S>(location, &settings, keys, Purpose::Command).await?;
            let report = rotate::rotate_kek(
                &service,
                batch_size,
                &mut Console::new("re-wrapping data keys"),
            )
            .await
            .map_err(Failure::Domain)?;
            println!(
                "re-wrapped: {}, already current: {}, changed meanwhile: {}, failed: {}",
                report.rewrapped, report.already_current, report.skipped, report.failed
            );
            if report.failed > 0 {
                return Err(Failure::RotationIncomplete(report.failed));
            }
            Ok(())
        }
        Command::ImportOriginal(args) => {
            import_original::<S>(location, &settings, keys, args).await
        }
        // Answered before the settings are loaded: they need none.
        Command::GenKey | Command::GenToken => Ok(()),
    }
}

/// `import-original` on the store `S` at `location` (see [`Command::ImportOriginal`]).
async fn import_original<S: Store + ImportStore>(
    location: &S::Location,
    settings: &Settings,
    keys: KeyMaterial,
    args: ImportArgs,
) -> Result<(), Failure> {
    let secret = args
        .secret
        .ok_or_else(|| StartupError::Missing(vec!["ORIGINAL_ENCRYPTION_SECRET"]))?;
    let source = OriginalDatabase::open(&args.from)
        .await
        .map_err(import::ImportError::from)?;
    let cipher = OriginalCipher::new(secret.expose_secret().as_bytes());
    drop(secret);
    // Before anything is written, even a migration: a wrong secret stops here.
    import::check_secret(&source, &cipher, args.batch_size).await?;
    let options = ImportOptions {
        batch_size: args.batch_size,
        concurrency: usize::from(args.concurrency),
    };
    let what = if args.dry_run {
        "checking the original's namespaces (dry run)"
    } else if args.verify {
        "verifying imported namespaces"
    } else {
        "importing the original's namespaces"
    };
    let mut progress = Console::new(what);
    let report = if args.dry_run {
        let store: S = startup::open(location, settings).await?;
        let pending = store
            .pending_migrations()
            .await
            .map_err(StartupError::Store)?;
        if !pending.is_empty() {
            tracing::warn!(
                pending = pending.len(),
                "the store has pending migrations, and a dry run applies none: it compares \
                 with a store that holds no import yet"
            );
        }
        let target = Target::DryRun {
            store: &store,
            compare: pending.is_empty(),
            limits: settings.domain_limits(),
        };
        import::run::<S, RingEnvelope, OsRandom>(&target, &source, &cipher, options, &mut progress)
            .await?
    } else {
        let store: S = startup::open(location, settings).await?;
        if !args.verify && settings.storage.migrate_on_start {
            print_migrations(&store.migrate().await.map_err(StartupError::Store)?);
        }
        // An import serves nothing: it needs the keys, not the service tokens.
        let keys = keys::resolve(settings, keys, Purpose::Command)?;
        let service = startup::checked_service(store, keys, settings).await?;
        let target = if args.verify {
            Target::Verify(&service)
        } else {
            Target::Import(&service)
        };
        import::run(&target, &source, &cipher, options, &mut progress).await?
    };
    source.close().await.map_err(import::ImportError::from)?;
    if args.verify {
        println!("{}", report.verify_summary());
    } else {
        println!("{}", report.import_summary());
    }
    match report.incomplete() {
        0 => Ok(()),
        n => Err(Failure::ImportIncomplete(n)),
    }
}

/// The use cases over the store at `location`, with the configured keys checked against it.
async fn checked_service<S: Store>(
    location: &S::Location,
    settings: &Settings,
    keys: KeyMaterial,
    purpose: Purpose,
) -> Result<Service<S>, StartupError> {
    let keys = keys::resolve(settings, keys, purpose)?;
    let store = startup::open(location, settings).await?;
    startup::checked_service(store, keys, settings).await
}

fn print_migrations(report: &MigrationReport) {
    if report.applied.is_empty() {
        println!("no migrations were pending");
    }
    for migration in &report.applied {
        println!(
            "applied migration {} ({})",
            migration.version, migration.name
        );
    }
    if let Some(version) = report.newer_in_database {
        println!(
            "the database has migration {version}, newer than this binary knows: a newer release migrated it"
        );
    }
}
