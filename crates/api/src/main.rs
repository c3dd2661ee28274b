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
use secrets_adapters::audit::{AuditLog, TokenId, Verifier};
use secrets_adapters::crypto::{OsRandom, RingEnvelope};
use secrets_adapters::original::{OriginalCipher, OriginalDatabase};
use secrets_adapters::postgres::PostgresStore;
use secrets_adapters::sqlite::SqliteStore;
use secrets_adapters::{MigrationReport, Store};
use secrets_api::import::{self, ImportOptions, Target};
use secrets_api::keys::Purpose;
use secrets_api::progress::Console;
use secrets_api::settings::{AuditSinkKind, Backend, Mode};
use secrets_api::startup;
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
  AUDIT_KEY                    the audit trail's key, base64 (see gen-key); derived from the
                               active KEK when unset
      each of these four also as <NAME>_FILE: a file holding the value
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
    /// The audit trail: check its files, or compute the identifiers to search it for.
    #[command(subcommand)]
    Audit(AuditCommand),
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Check trail files, oldest first: names the first line that was changed, removed,
    /// inserted or reordered, and a tail that was cut off. Exits 1 when anything was edited.
    ///
    /// Needs the audit key the trail was sealed with: AUDIT_KEY, or the KEY_ENCRYPTION_KEY (or a
    /// retired one) it was derived from.
    Verify {
        /// The files, in the order they were written (rotated ones first).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Print what an investigator searches the trail for, from a value read on standard input
    /// (one line; never an argument, which other users of the machine could see).
    ///
    /// --access-key: the access key's tag (the "access_key" field). --secret-name NAMESPACE_ID:
    /// the tag of that secret's name in that namespace (the "secret" field, beside
    /// "namespace"). --token: the service token's id (the "caller" field). A tag is printed for
    /// every configured audit key, by its id (the "key_id" of a chain's first line).
    Hash(HashArgs),
}

#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
struct HashArgs {
    /// Standard input holds an access key.
    #[arg(long)]
    access_key: bool,
    /// Standard input holds a secret's name, in the namespace of this internal id.
    #[arg(long, value_name = "NAMESPACE_ID")]
    secret_name: Option<uuid::Uuid>,
    /// Standard input holds a service token.
    #[arg(long)]
    token: bool,
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
        if let Command::GenToken = command {
            eprintln!(
                "its id in the audit trail (the \"caller\" field): {}",
                TokenId::of(key.as_bytes())
            );
        }
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
    if let Command::Audit(audit) = command {
        return audit_command(&audit, &settings, keys);
    }
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
    /// `rotate-kek` left data keys it could not re-wrap (each is logged with its namespace id).
    #[error("{0} data keys could not be re-wrapped; see the log for their namespaces' ids")]
    RotationIncomplete(u64),
    /// `import-original` stopped.
    #[error("import-original: {0}")]
    Import(#[from] import::ImportError),
    /// `rotate-kek` stopped.
    #[error("rotate-kek: {0}")]
    Rotation(#[from] rotate::RotationError),
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
            print_migrations(&report, &settings);
            Ok(())
        }
        Command::Check => {
            // `check` answers whether `serve` would start, so it wants what `serve` wants,
            // service tokens included, and reads what it reads, in the same order: the keys,
            // the listener's TLS files, the audit sink, then the store.
            let keys = keys::resolve(&settings, keys, Purpose::Serving)?;
            if let Some(tls) = settings.server.tls() {
                secrets_api::tls::server_config(&tls).map_err(StartupError::Tls)?;
            }
            if let Some(sink) = settings
                .audit
                .sink(&settings.storage.backend)
                .map_err(StartupError::Audit)?
            {
                AuditLog::check(&sink).map_err(|e| StartupError::Audit(e.to_string()))?;
            }
            let store: S = startup::open(location, &settings).await?;
            startup::checked_service(store, keys, &settings).await?;
            println!("configuration and key-encryption keys check out");
            Ok(())
        }
        Command::RotateKek { batch_size } => {
            // The same refusals as start-up: never re-wrap with a key that fails its check.
            let keys = keys::resolve(&settings, keys, Purpose::Command)?;
            let trail = startup::open_trail(&settings, &keys.audit.active, "rotate-kek")?;
            let store: S = startup::open(location, &settings).await?;
            let service = startup::checked_service(store, keys, &settings).await?;
            let report = rotate::rotate_kek(
                &service,
                batch_size,
                trail.as_ref(),
                &mut Console::new("re-wrapping data keys"),
            )
            .await;
            if let Some(trail) = &trail {
                trail.close();
            }
            let report = report?;
            say(
                &settings,
                format_args!(
                    "re-wrapped: {}, already current: {}, changed meanwhile: {}, failed: {}",
                    report.rewrapped, report.already_current, report.skipped, report.failed
                ),
            );
            if report.failed > 0 {
                return Err(Failure::RotationIncomplete(report.failed));
            }
            Ok(())
        }
        Command::ImportOriginal(args) => {
            import_original::<S>(location, &settings, keys, args).await
        }
        // Answered before the store is chosen: they need none.
        Command::GenKey | Command::GenToken | Command::Audit(_) => Ok(()),
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
        let (store, compare) = dry_run_store::<S>(location, settings).await?;
        let target = Target::DryRun {
            store: store.as_ref(),
            compare,
            limits: settings.domain_limits(),
        };
        import::run::<S, RingEnvelope, OsRandom>(
            &target,
            &source,
            &cipher,
            options,
            None,
            &mut progress,
        )
        .await?
    } else {
        // An import serves nothing: it needs the keys, not the service tokens. The audit trail
        // opens before the store is touched, as for serve.
        let keys = keys::resolve(settings, keys, Purpose::Command)?;
        let process = if args.verify {
            "import-original --verify"
        } else {
            "import-original"
        };
        let trail = startup::open_trail(settings, &keys.audit.active, process)?;
        let store: S = startup::open(location, settings).await?;
        if !args.verify && settings.storage.migrate_on_start {
            print_migrations(
                &store.migrate().await.map_err(StartupError::Store)?,
                settings,
            );
        }
        let service = startup::checked_service(store, keys, settings).await?;
        let target = if args.verify {
            Target::Verify(&service)
        } else {
            Target::Import(&service)
        };
        let report = import::run(
            &target,
            &source,
            &cipher,
            options,
            trail.as_ref(),
            &mut progress,
        )
        .await;
        if let Some(trail) = &trail {
            trail.close();
        }
        report?
    };
    source.close().await.map_err(import::ImportError::from)?;
    if args.verify {
        say(settings, report.verify_summary());
    } else {
        say(settings, report.import_summary());
    }
    match report.incomplete() {
        0 => Ok(()),
        n => Err(Failure::ImportIncomplete(n)),
    }
}

/// The store a dry run compares with, and whether it holds import records to compare with. An
/// embedded database that does not exist yet is not created (it holds no import), and one whose
/// schema is behind this binary's is not migrated.
async fn dry_run_store<S: Store + ImportStore>(
    location: &S::Location,
    settings: &Settings,
) -> Result<(Option<S>, bool), StartupError> {
    if matches!(&settings.storage.backend, Backend::Sqlite(path) if !path.exists()) {
        return Ok((None, false));
    }
    let store: S = startup::open(location, settings).await?;
    let pending = store
        .pending_migrations()
        .await
        .map_err(StartupError::Store)?;
    if !pending.is_empty() {
        tracing::warn!(
            pending = pending.len(),
            "the store has pending migrations, and a dry run applies none: it compares with a \
             store that holds no import yet"
        );
    }
    let compare = pending.is_empty();
    Ok((Some(store), compare))
}

/// `audit verify` and `audit hash`: they need the keys, not the store.
fn audit_command(
    command: &AuditCommand,
    settings: &Settings,
    keys: KeyMaterial,
) -> Result<(), String> {
    if let AuditCommand::Hash(HashArgs { token: true, .. }) = command {
        // A token's id is a fingerprint of the token alone: no key is needed.
        let line = read_stdin_line()?;
        println!("caller {}", TokenId::of(line.as_bytes()));
        return Ok(());
    }
    let keys = keys::resolve(settings, keys, Purpose::Command).map_err(|e| e.to_string())?;
    let all = keys.audit.all();
    match command {
        AuditCommand::Verify { files } => {
            let mut verifier = Verifier::new(all);
            for file in files {
                let name = file.display().to_string();
                let input =
                    std::fs::File::open(file).map_err(|e| format!("cannot read {name}: {e}"))?;
                verifier
                    .read(&name, std::io::BufReader::new(input))
                    .map_err(|e| format!("cannot read {name}: {e}"))?;
            }
            let result = verifier.finish();
            println!("{}", result.report());
            if result.intact() {
                Ok(())
            } else {
                Err("the audit trail was edited; see the lines named above".to_owned())
            }
        }
        AuditCommand::Hash(args) => {
            let line = read_stdin_line()?;
            let value = line.as_str();
            for key in all {
                let tag = if let Some(namespace) = args.secret_name {
                    let name = secrets_domain::SecretName::parse(value)
                        .map_err(|e| format!("standard input is not a secret's name: {e}"))?;
                    key.secret_name_tag(secrets_domain::NamespaceId::from_uuid(namespace), &name)
                } else {
                    let access = secrets_domain::AccessKey::parse(value).map_err(|_| {
                        "standard input is not an access key (43 characters of base64url, or \
                         an imported namespace's 21)"
                            .to_owned()
                    })?;
                    key.access_key_tag(&access.hash())
                };
                let field = if args.secret_name.is_some() {
                    "secret"
                } else {
                    "access_key"
                };
                println!("key_id {} {field} {tag}", key.id());
            }
            Ok(())
        }
    }
}

/// One line of standard input, without its line break; wiped when dropped.
fn read_stdin_line() -> Result<zeroize::Zeroizing<String>, String> {
    let mut line = zeroize::Zeroizing::new(String::new());
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| format!("cannot read standard input: {e}"))?;
    let end = line.trim_end_matches(['\n', '\r']).len();
    line.truncate(end);
    Ok(line)
}

/// Prints a command's result: on standard output, unless the audit trail goes there
/// (`audit.sink = "stdout"`), which then holds audit lines alone.
fn say(settings: &Settings, text: impl std::fmt::Display) {
    if settings.audit.sink == AuditSinkKind::Stdout {
        eprintln!("{text}");
    } else {
        println!("{text}");
    }
}

fn print_migrations(report: &MigrationReport, settings: &Settings) {
    if report.applied.is_empty() {
        say(settings, "no migrations were pending");
    }
    for migration in &report.applied {
        say(
            settings,
            format_args!(
                "applied migration {} ({})",
                migration.version, migration.name
            ),
        );
    }
    if let Some(version) = report.newer_in_database {
        say(
            settings,
            format_args!(
                "the database has migration {version}, newer than this binary knows: a newer \
                 release migrated it"
            ),
        );
    }
}
