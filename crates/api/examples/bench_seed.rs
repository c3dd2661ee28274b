//! `bench_seed`: fills a PostgreSQL database with namespaces and secrets for the benchmark's
//! scaling run, in minutes where seeding over HTTP takes hours.
//!
//! Benchmark tooling only: it is not part of the service and must never be pointed at a
//! database holding real data. `bench/run.sh` runs it for the large database of its scaling run
//! (`SCALE_N` namespaces of `SECRETS` secrets each): `bench/seed.py`, which fills one namespace
//! per PATCH over HTTP, did about 550 namespaces a second in the run `docs/benchmarks.md`
//! reports, which is half an hour for a million.
//!
//! Every row is made by the product's own code. This builds the service's use cases as the
//! server does (the same `SecretsService`), over the real PostgreSQL store and the real `ring`
//! envelope, from the same base64 key-encryption key the server is started with, read from
//! `KEY_ENCRYPTION_KEY` (never from the command line, never printed). It applies the store's
//! migrations and the service's key check first, as the server's start-up does, so a database
//! holding data under another key is refused before anything is written. Then, by `--via`:
//!
//! - `use-cases` (the default): namespaces are created with the bulk-create use case (one
//!   transaction per batch of at most 500) and given their secrets with the patch use case, one
//!   transaction per namespace, many at once: what `POST /namespaces/bulk` and
//!   `PATCH /namespaces/{accessKey}` run, without the HTTP. Every row is written by the store's
//!   own statements. 2,400 to 3,900 namespaces a second on the benchmark's two-core machine: a
//!   million in four to seven minutes.
//! - `copy`: each namespace's id, access key and its hash, wrapped data key, and each secret's
//!   blind index and sealed name and value are made by the service's own types and crypto
//!   exactly as those two use cases make them (`NamespaceId::generate`, `AccessKey::generate`
//!   and `hash`, `Envelope::new_data_key`, `NamespaceKeys::name_index`, `seal_name` and
//!   `seal_value`), and loaded with PostgreSQL's binary `COPY` into the tables of
//!   `migrations/postgres/`, one transaction per batch of namespaces with their secrets. Only
//!   the store's SQL statements are bypassed (secrets' timestamps come from this process's
//!   clock, one per batch, rather than the database's). About five times faster: a million in
//!   under a minute and a half.
//!
//! Either way it then reads a sample of the namespaces (`--verify`) back through the read use
//! case, which is what `GET /namespaces/{accessKey}` runs, and compares every name and value
//! with what it wrote; `--sample-out` writes that sample out, to check it through the server.
//!
//! Values are random printable text as `bench/seed.py` makes them: the first `--value-bytes`
//! characters of base64url of fresh OS randomness. The access keys go to `--out`, one per
//! line, in a file created with mode 0600 (they open the namespaces); one JSON line of timings
//! goes to stdout, progress to stderr.
//!
//! ```text
//! KEY_ENCRYPTION_KEY=... DATABASE_URL=postgres://user:password@127.0.0.1:5432/db \
//!     target/release/examples/bench_seed --namespaces 1000000 --secrets 10 --out keys.txt
//! ```

// The doc comments on `Cli` are the command's `--help` text, where backticks would be printed
// as they are.
#![allow(clippy::doc_markdown)]

use std::error::Error as StdError;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write as _};
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use clap::{Parser, ValueEnum};
use secrets_adapters::crypto::{Kek, OsRandom, RingEnvelope};
use secrets_adapters::postgres::PostgresStore;
use secrets_adapters::{Store, StoreOptions};
use secrets_api::startup::Service;
use secrets_domain::ports::{Envelope as _, NamespaceKeys as _, Random as _};
use secrets_domain::{
    AccessKey, BulkCount, Condition, Conditional, Limits, NamespaceId, PatchChange, SecretName,
    SecretValue,
};
use tokio::task::JoinSet;
use tokio_postgres::NoTls;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::Type;
use zeroize::Zeroizing;

/// Fills a PostgreSQL database with namespaces of secrets for the benchmark, through the
/// service's own crypto (and, with --via use-cases, its own store). Bench only.
///
/// The key-encryption key is read from KEY_ENCRYPTION_KEY: the same base64 key the server is
/// started with.
#[derive(Debug, Parser)]
#[command(name = "bench_seed")]
struct Cli {
    /// The database, postgres://...; also DATABASE_URL.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: String,
    /// Namespaces to create.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    namespaces: u64,
    /// Secrets per namespace, named KEY_0 .. KEY_<S-1>.
    #[arg(long, default_value_t = 10)]
    secrets: u32,
    /// Length of each value, in characters (bytes) of base64url.
    #[arg(long, default_value_t = 32)]
    value_bytes: usize,
    /// How the rows reach the database (see the top of bench_seed.rs).
    #[arg(long, value_enum, default_value_t = Via::UseCases)]
    via: Via,
    /// Batches in flight at once (use-cases: 32, each patching one namespace at a time;
    /// copy: 4).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=256))]
    concurrency: Option<u64>,
    /// Namespaces per transaction (use-cases: at most 500, the bulk-create limit).
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    batch: u64,
    /// Where the access keys go, one per line (created 0600; an existing file is replaced).
    #[arg(long)]
    out: PathBuf,
    /// Namespaces, spread over the run, read back through the read use case and compared at
    /// the end.
    #[arg(long, default_value_t = 20)]
    verify: u64,
    /// Also write those namespaces' access keys and secrets here, one JSON object a line
    /// ({"accessKey": .., "secrets": {name: value}}), to check them through the server
    /// (created 0600).
    #[arg(long)]
    sample_out: Option<PathBuf>,
}

/// How the rows reach the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Via {
    /// The bulk-create and patch use cases over the PostgreSQL store.
    UseCases,
    /// Rows made by the service's types and crypto, loaded with COPY.
    Copy,
}

impl Via {
    fn name(self) -> &'static str {
        match self {
            Self::UseCases => "use-cases",
            Self::Copy => "copy",
        }
    }
}

/// The use cases as the server builds them, over the PostgreSQL store.
type Seeder = Service<PostgresStore>;

/// The longest any one store operation may take; generous, since the machine is busy.
const STORE_TIMEOUT: Duration = Duration::from_mins(2);

/// How often the tables' statistics are refreshed while patches run (see `analyze`).
const ANALYZE_EVERY: Duration = Duration::from_mins(1);

/// How often progress is reported on stderr.
const PROGRESS_EVERY: Duration = Duration::from_secs(30);

/// Loads rows of `namespaces` (its `created_at` takes its default, `now()`, as the store's own
/// insert does); `NAMESPACE_TYPES` are the types of the columns it names, in order.
const COPY_NAMESPACES: &str =
    "COPY namespaces (id, access_hash, kek_id, wrapped_dek) FROM STDIN (FORMAT binary)";
const NAMESPACE_TYPES: &[Type] = &[Type::UUID, Type::BYTEA, Type::TEXT, Type::BYTEA];

/// Loads rows of `secrets`; `SECRET_TYPES` are the types of the columns it names, in order.
const COPY_SECRETS: &str = "COPY secrets (namespace_id, name_index, name_ct, value_ct, \
     created_at, updated_at) FROM STDIN (FORMAT binary)";
const SECRET_TYPES: &[Type] = &[
    Type::UUID,
    Type::BYTEA,
    Type::BYTEA,
    Type::BYTEA,
    Type::TIMESTAMPTZ,
    Type::TIMESTAMPTZ,
];

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("bench_seed: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("bench_seed: {message}");
            ExitCode::FAILURE
        }
    }
}

/// A namespace kept to be read back at the end: its access key and what it should hold.
struct Sample {
    key: Zeroizing<String>,
    secrets: Vec<(SecretName, SecretValue)>,
}

/// What every task shares: the work left, the progress, and where the results go.
struct Plan {
    namespaces: u64,
    names: Vec<SecretName>,
    value_bytes: usize,
    batch: u64,
    /// The first namespace of the next batch to hand out.
    next: AtomicU64,
    /// Namespaces written and committed.
    done: AtomicU64,
    /// Every `stride`-th namespace is a sample, up to `verify` of them.
    stride: u64,
    verify: u64,
    samples: Mutex<Vec<Sample>>,
    keys: Mutex<BufWriter<File>>,
}

impl Plan {
    /// The next batch: its first namespace's number and its size; `None` when all are taken.
    fn take(&self) -> Option<(u64, u64)> {
        let first = self.next.fetch_add(self.batch, Ordering::Relaxed);
        (first < self.namespaces).then(|| (first, self.batch.min(self.namespaces - first)))
    }

    fn is_sample(&self, number: u64) -> bool {
        number.is_multiple_of(self.stride) && number / self.stride < self.verify
    }

    /// Fresh values for one namespace's secrets, one OS randomness call for all of them.
    fn values(&self, random: &OsRandom) -> Result<Vec<SecretValue>, String> {
        let raw = self.value_bytes * 3 / 4 + 3;
        let mut bytes = Zeroizing::new(vec![0u8; raw * self.names.len()]);
        random
            .fill(&mut bytes)
            .map_err(|e| format!("values: {}", chain(&e)))?;
        Ok(bytes
            .chunks(raw)
            .map(|chunk| {
                let mut text = URL_SAFE_NO_PAD.encode(chunk);
                text.truncate(self.value_bytes);
                SecretValue::new(text)
            })
            .collect())
    }

    /// Records a committed batch: its access keys to the keys file, its samples, its count.
    fn committed(&self, keys: &[Zeroizing<String>], samples: Vec<Sample>) -> Result<(), String> {
        let mut out = lock(&self.keys);
        for key in keys {
            writeln!(out, "{}", key.as_str()).map_err(|e| format!("writing the keys: {e}"))?;
        }
        drop(out);
        lock(&self.samples).extend(samples);
        self.done.fetch_add(keys.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}

/// Locks `mutex`, also after another task panicked while holding it (what it guards stays
/// usable: a buffered writer, or a list).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn run(cli: Cli) -> Result<String, String> {
    let limits = Limits::default();
    check_args(&cli, limits)?;
    let concurrency = cli.concurrency.unwrap_or(match cli.via {
        Via::UseCases => 32,
        Via::Copy => 4,
    });
    let service = Arc::new(open_service(&cli.database_url, concurrency, limits).await?);
    let names = (0..cli.secrets)
        .map(|i| SecretName::parse(format!("KEY_{i}")))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("secret names: {e}"))?;
    let plan = Arc::new(Plan {
        namespaces: cli.namespaces,
        names,
        value_bytes: cli.value_bytes,
        batch: cli.batch,
        next: AtomicU64::new(0),
        done: AtomicU64::new(0),
        stride: cli
            .namespaces
            .checked_div(cli.verify)
            .map_or(1, |stride| stride.max(1)),
        verify: cli.verify,
        samples: Mutex::new(Vec::new()),
        keys: Mutex::new(BufWriter::new(create_private(&cli.out)?)),
    });

    // Statistics for what the database holds already; then, while patches run, fresh ones
    // every minute (see `analyze`).
    let maintenance = Arc::new(connect(&cli.database_url).await?);
    analyze(&maintenance).await?;
    let analyzing =
        (cli.via == Via::UseCases).then(|| tokio::spawn(keep_analyzing(Arc::clone(&maintenance))));
    let started = Instant::now();
    let filled = fill(&cli, &service, &plan, concurrency).await;
    if let Some(analyzing) = analyzing {
        analyzing.abort();
    }
    filled?;
    let seconds = started.elapsed().as_secs_f64();

    // The read use case's statement is planned with statistics of the filled tables.
    analyze(&maintenance).await?;
    let samples = std::mem::take(&mut *lock(&plan.samples));
    verify(&service, &samples).await?;
    if let Some(path) = &cli.sample_out {
        write_samples(path, &samples)?;
    }
    let done = plan.done.load(Ordering::Relaxed);
    let secrets = done * u64::from(cli.secrets);
    Ok(serde_json::json!({
        "via": cli.via.name(),
        "namespaces": done,
        "secrets_per_namespace": cli.secrets,
        "secrets": secrets,
        "concurrency": concurrency,
        "seconds": (seconds * 100.0).round() / 100.0,
        "per_second": (done as f64 / seconds).round() as u64,
        "secrets_per_second": (secrets as f64 / seconds).round() as u64,
        "verified": samples.len(),
    })
    .to_string())
}

/// Refuses what the server would refuse, before anything is written.
fn check_args(cli: &Cli, limits: Limits) -> Result<(), String> {
    if cli.value_bytes > limits.max_value_bytes {
        return Err(format!(
            "--value-bytes {} is over the server's default limit of {}",
            cli.value_bytes, limits.max_value_bytes
        ));
    }
    if cli.secrets > limits.max_secrets_per_namespace {
        return Err(format!(
            "--secrets {} is over the server's default limit of {} per namespace",
            cli.secrets, limits.max_secrets_per_namespace
        ));
    }
    if cli.via == Via::UseCases && cli.batch > u64::from(BulkCount::MAX) {
        return Err(format!(
            "--batch {} is over the bulk-create limit of {} (--via use-cases)",
            cli.batch,
            BulkCount::MAX
        ));
    }
    Ok(())
}

/// The use cases as the server's start-up builds them: the key from `KEY_ENCRYPTION_KEY`, the
/// store migrated, and the key checked against what the store holds.
async fn open_service(url: &str, concurrency: u64, limits: Limits) -> Result<Seeder, String> {
    let kek = {
        let text = Zeroizing::new(std::env::var("KEY_ENCRYPTION_KEY").map_err(|_| {
            "KEY_ENCRYPTION_KEY is not set (the server's key-encryption key, base64)".to_owned()
        })?);
        Kek::from_base64(&text).map_err(|e| format!("KEY_ENCRYPTION_KEY: {e}"))?
    };
    let store = <PostgresStore as Store>::open(
        &url.to_owned().into(),
        StoreOptions {
            // One connection per task, and one for the key check and the reads at the end.
            pool_size: std::num::NonZeroUsize::MIN
                .saturating_add(usize::try_from(concurrency).unwrap_or(1)),
            timeout: STORE_TIMEOUT,
        },
    )
    .await
    .map_err(|e| format!("the database URL: {}", chain(&e)))?;
    Store::migrate(&store)
        .await
        .map_err(|e| format!("migrating the database: {}", chain(&e)))?;
    let service = secrets_domain::SecretsService::new(
        store,
        RingEnvelope::new(kek, Vec::new()),
        OsRandom::default(),
        limits,
    );
    // Refuses a database with data under another key, and writes this key's check if there
    // is none yet.
    service
        .check_keys()
        .await
        .map_err(|e| format!("checking the key against the database: {}", chain(&e)))?;
    Ok(service)
}

/// Runs `concurrency` tasks until every namespace is written, then makes the keys file durable.
async fn fill(
    cli: &Cli,
    service: &Arc<Seeder>,
    plan: &Arc<Plan>,
    concurrency: u64,
) -> Result<(), String> {
    let progress = tokio::spawn(report_progress(Arc::clone(plan), Instant::now()));
    let mut tasks = JoinSet::new();
    for _ in 0..concurrency {
        let (service, plan) = (Arc::clone(service), Arc::clone(plan));
        match cli.via {
            Via::UseCases => tasks.spawn(use_case_task(service, plan)),
            Via::Copy => tasks.spawn(copy_task(service, plan, cli.database_url.clone())),
        };
    }
    let outcome = join_all(&mut tasks).await;
    progress.abort();
    outcome?;
    let mut out = lock(&plan.keys);
    out.flush()
        .and_then(|()| out.get_ref().sync_all())
        .map_err(|e| format!("writing the keys: {e}"))
}

/// Waits for every task; at the first failure, stops the others and answers it.
async fn join_all(tasks: &mut JoinSet<Result<(), String>>) -> Result<(), String> {
    while let Some(joined) = tasks.join_next().await {
        let failure = match joined {
            Ok(Ok(())) => continue,
            Ok(Err(message)) => message,
            Err(error) => format!("a task failed: {error}"),
        };
        tasks.abort_all();
        return Err(failure);
    }
    Ok(())
}

async fn report_progress(plan: Arc<Plan>, started: Instant) {
    let mut ticks =
        tokio::time::interval_at(tokio::time::Instant::now() + PROGRESS_EVERY, PROGRESS_EVERY);
    loop {
        ticks.tick().await;
        let done = plan.done.load(Ordering::Relaxed);
        let rate = done as f64 / started.elapsed().as_secs_f64();
        eprintln!(
            "  ... {done} of {} namespaces filled ({rate:.0}/s)",
            plan.namespaces
        );
    }
}

/// Refreshes the planner's statistics of the service's two big tables.
///
/// Autovacuum may be off (it is on the benchmark machine), and then nothing else does this
/// while the tables grow. The store prepares its statements once per connection; planned
/// without statistics, a patch's per-namespace queries expect thousands of rows per namespace
/// once the tables are large, and run with parallel workers and JIT compilation: in a trial on
/// a database of a million namespaces, each patch was ten times slower than with statistics.
/// (An `ANALYZE` also invalidates the plans already prepared, so they are made again.)
async fn analyze(client: &tokio_postgres::Client) -> Result<(), String> {
    client
        .batch_execute("ANALYZE namespaces, secrets")
        .await
        .map_err(|e| format!("analyzing the tables: {}", chain(&e)))
}

async fn keep_analyzing(client: Arc<tokio_postgres::Client>) {
    let mut ticks =
        tokio::time::interval_at(tokio::time::Instant::now() + ANALYZE_EVERY, ANALYZE_EVERY);
    loop {
        ticks.tick().await;
        if let Err(message) = analyze(&client).await {
            eprintln!("bench_seed: {message}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// --via copy
// ---------------------------------------------------------------------------------------------

/// One namespace's row of `namespaces`.
struct NamespaceRow {
    id: uuid::Uuid,
    access_hash: [u8; 32],
    kek_id: String,
    wrapped_dek: Vec<u8>,
}

/// One secret's row of `secrets`.
struct SecretRow {
    namespace_id: uuid::Uuid,
    name_index: [u8; 32],
    name_ct: Vec<u8>,
    value_ct: Vec<u8>,
}

/// One batch, sealed and ready to load.
struct Rows {
    namespaces: Vec<NamespaceRow>,
    secrets: Vec<SecretRow>,
    keys: Vec<Zeroizing<String>>,
    samples: Vec<Sample>,
}

/// Builds and loads batches on one connection until none are left.
async fn copy_task(service: Arc<Seeder>, plan: Arc<Plan>, url: String) -> Result<(), String> {
    let mut client = connect(&url).await?;
    while let Some((first, count)) = plan.take() {
        // Sealing is CPU work: off the runtime's threads, so the other tasks' I/O goes on.
        let rows = {
            let (service, plan) = (Arc::clone(&service), Arc::clone(&plan));
            tokio::task::spawn_blocking(move || build_rows(&service, &plan, first, count))
                .await
                .map_err(|e| format!("building rows: {e}"))??
        };
        load(&mut client, &rows)
            .await
            .map_err(|e| format!("loading namespaces {first}..: {}", chain(&e)))?;
        plan.committed(&rows.keys, rows.samples)?;
    }
    Ok(())
}

/// Namespaces `first .. first + count` with their secrets, made as the bulk-create and patch
/// use cases make them (`SecretsService::create` and `seal` in crates/domain/src/service.rs).
fn build_rows(service: &Seeder, plan: &Plan, first: u64, count: u64) -> Result<Rows, String> {
    let random = OsRandom::new();
    let envelope = service.envelope();
    let capacity = usize::try_from(count).unwrap_or(0);
    let mut rows = Rows {
        namespaces: Vec::with_capacity(capacity),
        secrets: Vec::with_capacity(capacity * plan.names.len()),
        keys: Vec::with_capacity(capacity),
        samples: Vec::new(),
    };
    for number in first..first + count {
        let id = NamespaceId::generate(&random).map_err(|e| format!("namespace id: {e}"))?;
        let key = AccessKey::generate(&random).map_err(|e| format!("access key: {e}"))?;
        let (keys, wrapped) = envelope
            .new_data_key(id)
            .map_err(|e| format!("data key: {}", chain(&e)))?;
        let values = plan.values(&random)?;
        for (name, value) in plan.names.iter().zip(&values) {
            let index = keys.name_index(name);
            rows.secrets.push(SecretRow {
                namespace_id: id.as_uuid(),
                name_index: index.0,
                name_ct: keys
                    .seal_name(&index, name)
                    .map_err(|e| format!("sealing a name: {}", chain(&e)))?,
                value_ct: keys
                    .seal_value(&index, value)
                    .map_err(|e| format!("sealing a value: {}", chain(&e)))?,
            });
        }
        rows.namespaces.push(NamespaceRow {
            id: id.as_uuid(),
            access_hash: *key.hash().as_bytes(),
            kek_id: wrapped.key_id.as_str().to_owned(),
            wrapped_dek: wrapped.ciphertext,
        });
        if plan.is_sample(number) {
            rows.samples.push(Sample {
                key: key.expose(),
                secrets: plan.names.iter().cloned().zip(values).collect(),
            });
        }
        rows.keys.push(key.expose());
    }
    Ok(rows)
}

/// Loads one batch in one transaction: its namespaces, then their secrets.
async fn load(
    client: &mut tokio_postgres::Client,
    rows: &Rows,
) -> Result<(), tokio_postgres::Error> {
    let tx = client.transaction().await?;
    let sink = tx.copy_in(COPY_NAMESPACES).await?;
    let mut writer = pin!(BinaryCopyInWriter::new(sink, NAMESPACE_TYPES));
    for row in &rows.namespaces {
        writer
            .as_mut()
            .write(&[
                &row.id,
                &row.access_hash.as_slice(),
                &row.kek_id,
                &row.wrapped_dek,
            ])
            .await?;
    }
    writer.finish().await?;
    if !rows.secrets.is_empty() {
        let at = time::OffsetDateTime::now_utc();
        let sink = tx.copy_in(COPY_SECRETS).await?;
        let mut writer = pin!(BinaryCopyInWriter::new(sink, SECRET_TYPES));
        for row in &rows.secrets {
            writer
                .as_mut()
                .write(&[
                    &row.namespace_id,
                    &row.name_index.as_slice(),
                    &row.name_ct,
                    &row.value_ct,
                    &at,
                    &at,
                ])
                .await?;
        }
        writer.finish().await?;
    }
    tx.commit().await
}

/// A connection of its own, for COPY and ANALYZE: the store's pool does not lend one out.
async fn connect(url: &str) -> Result<tokio_postgres::Client, String> {
    let mut config: tokio_postgres::Config = url
        .parse()
        .map_err(|e| format!("the database URL: {}", chain(&e)))?;
    if config.get_application_name().is_none() {
        config.application_name("bench_seed");
    }
    let (client, connection) = config
        .connect(NoTls)
        .await
        .map_err(|e| format!("connecting to the database: {}", chain(&e)))?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            eprintln!("bench_seed: database connection: {}", chain(&error));
        }
    });
    Ok(client)
}

// ---------------------------------------------------------------------------------------------
// --via use-cases
// ---------------------------------------------------------------------------------------------

/// Creates batches with the bulk-create use case and fills each namespace with the patch use
/// case, until no batch is left.
async fn use_case_task(service: Arc<Seeder>, plan: Arc<Plan>) -> Result<(), String> {
    let random = OsRandom::new();
    while let Some((first, count)) = plan.take() {
        let bulk = i64::try_from(count)
            .ok()
            .and_then(|count| BulkCount::parse(count).ok())
            .ok_or_else(|| format!("batch of {count}: not a bulk count"))?;
        let created = service
            .create_namespaces(bulk)
            .await
            .map_err(|e| format!("creating namespaces {first}..: {}", chain(&e)))?;
        let mut keys = Vec::with_capacity(created.len());
        let mut samples = Vec::new();
        for (number, issued) in (first..).zip(&created) {
            let key = &issued.access_key;
            let values = plan.values(&random)?;
            if !plan.names.is_empty() {
                let changes: Vec<PatchChange> = plan
                    .names
                    .iter()
                    .cloned()
                    .zip(values.iter().cloned().map(Some))
                    .collect();
                service
                    .patch(key, &changes, &Condition::default())
                    .await
                    .map_err(|e| format!("filling namespace {number}: {}", chain(&e)))?;
            }
            if plan.is_sample(number) {
                samples.push(Sample {
                    key: key.expose(),
                    secrets: plan.names.iter().cloned().zip(values).collect(),
                });
            }
            keys.push(key.expose());
        }
        plan.committed(&keys, samples)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Checking and output
// ---------------------------------------------------------------------------------------------

/// Reads every sample back through the read use case and compares it with what was written.
async fn verify(service: &Seeder, samples: &[Sample]) -> Result<(), String> {
    for (i, sample) in samples.iter().enumerate() {
        let key = AccessKey::parse(&sample.key).map_err(|e| format!("sample {i}: {e}"))?;
        let read = service
            .read_all(&key, &Condition::default())
            .await
            .map_err(|e| format!("reading sample {i} back: {}", chain(&e)))?;
        let Conditional::Read(read) = read.value else {
            return Err(format!("sample {i}: an unconditional read answered 304"));
        };
        let mut expected = sample.secrets.clone();
        expected.sort_by(|a, b| a.0.cmp(&b.0));
        if read != expected {
            return Err(format!(
                "sample {i} read back {} secrets that differ from the {} written",
                read.len(),
                expected.len()
            ));
        }
    }
    Ok(())
}

fn write_samples(path: &Path, samples: &[Sample]) -> Result<(), String> {
    let mut out = BufWriter::new(create_private(path)?);
    for sample in samples {
        let secrets: serde_json::Map<String, serde_json::Value> = sample
            .secrets
            .iter()
            .map(|(name, value)| (name.as_str().to_owned(), value.expose().into()))
            .collect();
        let line = serde_json::json!({ "accessKey": sample.key.as_str(), "secrets": secrets });
        writeln!(out, "{line}").map_err(|e| format!("{}: {e}", path.display()))?;
    }
    out.flush().map_err(|e| format!("{}: {e}", path.display()))
}

/// Creates (or empties) a file only its owner can read: it will hold access keys.
fn create_private(path: &Path) -> Result<File, String> {
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let file = options
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    // An existing file keeps its mode through `open`; narrow it too.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(file)
}

/// An error with its sources, for the message: the drivers keep the detail in the sources.
fn chain(error: &(dyn StdError + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
