//! `secrets-service import-original`, end to end: a database in the original's format (made by
//! `import_original/fixture.rs` from the facts of its source), imported by the real binary into
//! both stores, every secret read back with the original access keys through the native and
//! the original's routes; re-runs, changes picked up and merged with writes made here, a
//! deleted namespace shredded, a resume after SIGKILL, a wrong secret, a dry run, verify.
//!
//! `IMPORT_TEST_NAMESPACES` sets the fixture's size (1,000 by default).

// Scenario tests read top to bottom; splitting them to satisfy a line count would hide them.
#![allow(clippy::too_many_lines)]

#[path = "import_original/fixture.rs"]
mod fixture;

use std::collections::{BTreeMap, HashMap};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use fixture::{Namespace, Rng, Totals};
use reqwest::{Client, Method};
use secrecy::SecretString;
use secrets_adapters::postgres::PostgresStore;
use secrets_adapters::sqlite::SqliteStore;
use secrets_adapters::testing::TestDatabase;
use secrets_api::settings::Backend;
use secrets_api::{Application, KeyMaterial, Settings};
use serde_json::Value;

const KEK: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const TOKEN: &str = "import-test-service-token";

fn size() -> usize {
    std::env::var("IMPORT_TEST_NAMESPACES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000)
}

async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    client
}

/// An original's database with `n` generated namespaces.
struct Original {
    db: TestDatabase,
    client: tokio_postgres::Client,
    rng: Rng,
    namespaces: Vec<Namespace>,
}

impl Original {
    async fn new(n: usize, seed: u64) -> Self {
        let db = TestDatabase::create().await;
        let client = connect(db.url()).await;
        client.batch_execute(fixture::SCHEMA).await.expect("schema");
        let mut rng = Rng::new(seed);
        let namespaces = fixture::generate(&mut rng, n);
        fixture::write(&client, &mut rng, &namespaces).await;
        Self {
            db,
            client,
            rng,
            namespaces,
        }
    }

    /// Every row of both tables, to tell that a run wrote nothing there.
    async fn rows(&self) -> (i64, i64) {
        let count = |table: &'static str| async move {
            self.client
                .query_one(&format!("SELECT count(*) FROM {table}"), &[])
                .await
                .expect("count")
                .get::<_, i64>(0)
        };
        (count("namespace").await, count("secret").await)
    }
}

/// Where this service's data goes: a PostgreSQL database or an SQLite file.
enum Target {
    Postgres(TestDatabase),
    Sqlite(tempdir::Dir),
}

mod tempdir {
    /// A directory removed when dropped.
    pub struct Dir(pub std::path::PathBuf);

    impl Dir {
        pub fn new() -> Self {
            let path = std::env::temp_dir().join(format!("import-test-{}", uuid::Uuid::new_v4()));
            std::fs::create_dir_all(&path).expect("a temporary directory");
            Self(path)
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            drop(std::fs::remove_dir_all(&self.0));
        }
    }
}

impl Target {
    async fn postgres() -> Self {
        Self::Postgres(TestDatabase::create().await)
    }

    fn sqlite() -> Self {
        Self::Sqlite(tempdir::Dir::new())
    }

    fn url(&self) -> String {
        match self {
            Self::Postgres(db) => db.url().to_owned(),
            Self::Sqlite(dir) => format!("sqlite://{}", dir.0.join("secrets.db").display()),
        }
    }

    /// The audit trail of the runs and the service on this target.
    fn audit_file(&self) -> std::path::PathBuf {
        match self {
            Self::Postgres(db) => db.audit_file(),
            Self::Sqlite(dir) => dir.0.join("audit.log"),
        }
    }

    /// Rows of this service's tables, to tell that a run wrote nothing.
    fn counts_sql() -> &'static str {
        "SELECT (SELECT count(*) FROM namespaces), (SELECT count(*) FROM secrets), \
                (SELECT count(*) FROM original_imports)"
    }

    async fn counts(&self) -> Option<(i64, i64, i64)> {
        match self {
            Self::Postgres(db) => {
                let client = connect(db.url()).await;
                let row = client.query_one(Self::counts_sql(), &[]).await.ok()?;
                Some((row.get(0), row.get(1), row.get(2)))
            }
            Self::Sqlite(dir) => {
                let path = dir.0.join("secrets.db");
                if !path.exists() {
                    return None;
                }
                let conn = rusqlite_open(&path)?;
                conn.query_row(Self::counts_sql(), [], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .ok()
            }
        }
    }
}

/// A read-only connection to the SQLite file.
fn rusqlite_open(path: &std::path::Path) -> Option<rusqlite::Connection> {
    rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).ok()
}

/// The environment of a run of the binary: exactly these variables.
fn env(original: &Original, target: &Target, secret: &str) -> Vec<(&'static str, String)> {
    vec![
        ("DATABASE_URL", target.url()),
        ("KEY_ENCRYPTION_KEY", KEK.to_owned()),
        ("SERVICE_AUTH_TOKENS", TOKEN.to_owned()),
        ("ORIGINAL_ENCRYPTION_SECRET", secret.to_owned()),
        ("ORIGINAL_DATABASE_URL", original.db.url().to_owned()),
        ("SECRETS__STORAGE__POOL_SIZE", "4".to_owned()),
        ("SECRETS__LOG__FORMAT", "json".to_owned()),
        (
            "SECRETS__AUDIT__PATH",
            target.audit_file().display().to_string(),
        ),
    ]
}

fn command(env: &[(&'static str, String)], args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_secrets-service"));
    command
        .arg("import-original")
        .args(args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null());
    command
}

/// Runs `import-original` with `args` to its end.
fn run(env: &[(&'static str, String)], args: &[&str]) -> Output {
    command(env, args).output().expect("run secrets-service")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The counts of the summary line, by their names.
fn summary(output: &Output) -> BTreeMap<String, u64> {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .find(|line| line.starts_with("namespaces: "))
        .unwrap_or_else(|| panic!("no summary line in:\n{}", text(output)));
    let mut counts = BTreeMap::new();
    for part in line.split([',', '(', ')']) {
        if let Some((name, value)) = part.rsplit_once(": ")
            && let Ok(value) = value.trim().parse()
        {
            counts.insert(name.trim().to_owned(), value);
        }
    }
    counts
}

fn assert_success(output: &Output) {
    assert!(output.status.success(), "the run failed:\n{}", text(output));
}

/// The service on `target`, with the original's routes on.
async fn serve(target: &Target) -> (String, actix_web::dev::ServerHandle) {
    let env: HashMap<String, String> = HashMap::from([
        ("DATABASE_URL".into(), target.url()),
        ("SECRETS__SERVER__BIND".into(), "127.0.0.1:0".into()),
        ("SECRETS__SERVER__WORKERS".into(), "2".into()),
        ("SECRETS__STORAGE__POOL_SIZE".into(), "4".into()),
        ("SECRETS__COMPAT__ORIGINAL_ROUTES".into(), "true".into()),
        (
            "SECRETS__AUDIT__PATH".into(),
            target.audit_file().display().to_string(),
        ),
    ]);
    let settings = Settings::load(None, &env).expect("settings");
    let keys = KeyMaterial {
        kek: Some(SecretString::from(KEK)),
        retired: Vec::new(),
        tokens: vec![SecretString::from(TOKEN)],
        audit: None,
    };
    let application = match settings.storage.backend.clone() {
        Backend::Sqlite(path) => Application::build::<SqliteStore>(&path, settings, keys).await,
        Backend::Postgres(url) => {
            let location = settings.storage.postgres_location(url);
            Application::build::<PostgresStore>(&location, settings, keys).await
        }
    }
    .expect("the service starts");
    let address = format!("http://127.0.0.1:{}", application.port());
    let handle = application.handle();
    tokio::spawn(application.run_until_stopped());
    (address, handle)
}

async fn get(client: &Client, url: String) -> (u16, Value) {
    let response = client
        .request(Method::GET, url)
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("sent");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Reads every namespace of `namespaces` with its original key through the native route and
/// the original's, and compares each with what the import must have made of it.
async fn assert_every_secret(address: &str, namespaces: &[Namespace]) {
    let client = Client::new();
    for ns in namespaces {
        let expected: serde_json::Map<String, Value> = ns
            .expected
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        let key = &ns.access_key;
        let (status, native) = get(&client, format!("{address}/namespaces/{key}")).await;
        assert_eq!(status, 200, "native read of {}", ns.id);
        assert_eq!(
            native,
            Value::Object(expected.clone()),
            "native read of {}",
            ns.id
        );
        let (status, original) = get(
            &client,
            format!("{address}/secrets?accessKey={key}&mode=private"),
        )
        .await;
        assert_eq!(status, 200, "original read of {}", ns.id);
        assert_eq!(
            original["secrets"],
            Value::Object(expected),
            "original read of {}",
            ns.id
        );
    }
}

async fn import_into(target: Target, n: usize) {
    let original = Original::new(n, 7).await;
    let totals = Totals::of(&original.namespaces);
    assert!(totals.empty > 0 && totals.duplicates > 0 && totals.refused > 0);
    let before = original.rows().await;
    let env = env(&original, &target, fixture::SECRET);
    let started = Instant::now();
    let output = run(&env, &[]);
    let elapsed = started.elapsed();
    assert_success(&output);
    let counts = summary(&output);
    eprintln!(
        "imported {n} namespaces in {:.2} s ({:.0} namespaces/s, {} build)",
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64(),
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    assert_eq!(counts["namespaces"], n as u64, "{counts:?}");
    assert_eq!(counts["imported"], n as u64, "{counts:?}");
    assert_eq!(counts["secrets written"], totals.secrets, "{counts:?}");
    assert_eq!(
        counts["duplicates resolved"], totals.duplicates,
        "{counts:?}"
    );
    assert_eq!(counts["refused"], totals.refused, "{counts:?}");
    assert_eq!(counts["failed"], 0, "{counts:?}");
    assert_eq!(original.rows().await, before, "the original is only read");
    assert_eq!(
        target.counts().await,
        Some((n as i64, totals.secrets as i64, n as i64))
    );
    // Refusals are logged by namespace id and reason, never by content.
    let log = text(&output);
    assert!(
        log.contains("never_returned_by_the_original") && log.contains("name_control_character")
    );
    for ns in original.namespaces.iter().take(50) {
        assert!(!log.contains(&ns.access_key) && !log.contains(&ns.own_key));
        // Short values ("v", "kept") are words the log may well hold; the rest are distinctive.
        for (name, value) in ns.expected.iter().filter(|(_, v)| v.len() >= 8) {
            assert!(!log.contains(&format!("\"{name}\"")), "{name}");
            assert!(!log.contains(value.as_str()), "the value of {name}");
        }
    }
    assert!(!log.contains(fixture::SECRET));
    // One audit line per namespace imported, naming it here and in the original.
    let trail = std::fs::read_to_string(target.audit_file()).expect("the audit trail");
    let imported: Vec<Value> = trail
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).expect("a JSON line"))
        .filter(|line| line["operation"] == "import_namespace")
        .collect();
    assert_eq!(imported.len(), n, "import lines");
    assert!(
        imported
            .iter()
            .all(|line| line["namespace"].is_string() && line["original"].is_string())
    );

    let (address, server) = serve(&target).await;
    assert_every_secret(&address, &original.namespaces).await;

    // A second run finds nothing new and writes nothing.
    let again = run(&env, &[]);
    assert_success(&again);
    let counts = summary(&again);
    assert_eq!(counts["unchanged"], n as u64, "{counts:?}");
    assert_eq!(counts["secrets written"], 0, "{counts:?}");
    // And verify finds every namespace as the original has it.
    let verified = run(&env, &["--verify"]);
    assert_success(&verified);
    assert_eq!(summary(&verified)["matching"], n as u64);
    server.stop(true).await;
}

#[tokio::test]
async fn every_secret_of_the_original_is_read_back_from_postgres_with_its_original_key() {
    import_into(Target::postgres().await, size()).await;
}

#[tokio::test]
async fn every_secret_of_the_original_is_read_back_from_sqlite_with_its_original_key() {
    import_into(Target::sqlite(), size()).await;
}

#[tokio::test]
async fn a_second_run_picks_up_the_originals_changes_and_keeps_what_was_written_here() {
    let mut original = Original::new(40, 11).await;
    let target = Target::postgres().await;
    let env = env(&original, &target, fixture::SECRET);
    assert_success(&run(&env, &[]));
    let (address, server) = serve(&target).await;
    let client = Client::new();

    // After the first run, in the original: a secret changed, one added, a namespace deleted,
    // and a new namespace.
    let rng = &mut original.rng;
    let mut changed = original.namespaces.remove(1);
    fixture::set_secret(&original.client, rng, &mut changed, "API_KEY_0", "rotated").await;
    fixture::set_secret(&original.client, rng, &mut changed, "ADDED", "caf\u{e9}").await;
    let deleted = original.namespaces.remove(1);
    fixture::delete_namespace(&original.client, &deleted).await;
    let mut both = original.namespaces.remove(2);
    fixture::set_secret(&original.client, rng, &mut both, "TOKEN", "changed there").await;
    let fresh = fixture::generate(rng, 1).pop().expect("one");
    fixture::write(&original.client, rng, std::slice::from_ref(&fresh)).await;
    // And here, through the original's routes: `both` gets a secret of its own.
    let write = client
        .post(format!("{address}/secrets?accessKey={}", both.access_key))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"key": "KEEP", "value": "written here"}))
        .send()
        .await
        .expect("sent");
    assert_eq!(write.status(), 201);
    both.expected.insert("KEEP".into(), "written here".into());

    let output = run(&env, &[]);
    assert_success(&output);
    let counts = summary(&output);
    assert_eq!(counts["imported"], 1, "{counts:?}");
    assert_eq!(counts["updated"], 2, "{counts:?}");
    assert_eq!(
        counts["removed as deleted in the original"], 1,
        "{counts:?}"
    );
    assert_eq!(counts["names kept as written here"], 1, "{counts:?}");
    assert_eq!(counts["unchanged"], 37, "{counts:?}");
    // Each change of the second run is a line of the audit trail: the namespace here and the
    // original's.
    let trail = std::fs::read_to_string(target.audit_file()).expect("the audit trail");
    let actions = |operation: &str| -> Vec<Value> {
        trail
            .lines()
            .map(|line| serde_json::from_str::<Value>(line).expect("a JSON line"))
            .filter(|line| line["operation"] == operation)
            .collect()
    };
    assert_eq!(actions("import_namespace").len(), 41);
    assert_eq!(actions("import_changes").len(), 2);
    let removals = actions("import_removal");
    assert_eq!(removals.len(), 1);
    assert_eq!(removals[0]["original"], deleted.id.to_string());
    assert!(removals[0]["namespace"].is_string(), "{}", removals[0]);
    original.namespaces.extend([changed, both, fresh]);
    assert_every_secret(&address, &original.namespaces).await;
    // The deleted namespace is gone here too, its data key with it.
    let (status, _) = get(
        &client,
        format!("{address}/namespaces/{}", deleted.access_key),
    )
    .await;
    assert_eq!(status, 404);
    if let Target::Postgres(db) = &target {
        let kept = connect(db.url())
            .await
            .query_one(
                "SELECT count(*) FROM original_imports WHERE original_id = $1 AND namespace_id IS NULL",
                &[&deleted.id],
            )
            .await
            .expect("count")
            .get::<_, i64>(0);
        assert_eq!(kept, 1, "its record stays, so no later run brings it back");
    }
    // Verify: every name matches but the one written here, which is not compared.
    let verified = run(&env, &["--verify"]);
    assert_success(&verified);
    let counts = summary(&verified);
    assert_eq!(counts["matching"], 40, "{counts:?}");
    assert_eq!(
        counts["names written here since the import"], 1,
        "{counts:?}"
    );
    server.stop(true).await;
}

#[tokio::test]
async fn a_wrong_secret_stops_the_run_before_anything_is_written() {
    let original = Original::new(20, 3).await;
    let target = Target::postgres().await;
    let output = run(&env(&original, &target, "not the secret"), &[]);
    assert!(!output.status.success());
    let message = text(&output);
    assert!(
        message
            .contains("ORIGINAL_ENCRYPTION_SECRET is not the original service's ENCRYPTION_SECRET"),
        "{message}"
    );
    assert!(
        message.contains("none of the 20 namespace keys"),
        "{message}"
    );
    assert!(
        !message.contains("not the secret"),
        "the secret is never printed"
    );
    // Not a row, not even the schema.
    assert_eq!(target.counts().await, None);
}

#[tokio::test]
async fn a_dry_run_decrypts_and_counts_everything_and_writes_nothing() {
    let original = Original::new(30, 5).await;
    let totals = Totals::of(&original.namespaces);
    for target in [Target::postgres().await, Target::sqlite()] {
        // Migrated first, so that rows can be counted before and after.
        let migrated = Command::new(env!("CARGO_BIN_EXE_secrets-service"))
            .arg("migrate")
            .env_clear()
            .envs(env(&original, &target, fixture::SECRET))
            .output()
            .expect("migrate");
        assert!(migrated.status.success(), "{}", text(&migrated));
        let before = (original.rows().await, target.counts().await);
        let output = run(&env(&original, &target, fixture::SECRET), &["--dry-run"]);
        assert_success(&output);
        let counts = summary(&output);
        assert_eq!(counts["imported"], 30, "{counts:?}");
        assert_eq!(counts["secrets written"], totals.secrets, "{counts:?}");
        assert_eq!(counts["refused"], totals.refused, "{counts:?}");
        assert_eq!(before, (original.rows().await, target.counts().await));
        assert_eq!(before.1, Some((0, 0, 0)));
        // Nor a line of the audit trail.
        let trail = std::fs::read_to_string(target.audit_file()).unwrap_or_default();
        assert!(!trail.contains("import_"), "{trail}");
    }
    // On a store never migrated, too: it applies no migration.
    let fresh = Target::postgres().await;
    let output = run(&env(&original, &fresh, fixture::SECRET), &["--dry-run"]);
    assert_success(&output);
    assert_eq!(fresh.counts().await, None, "no table was created");
    // And an embedded database that does not exist yet is not created.
    let absent = Target::sqlite();
    let output = run(&env(&original, &absent, fixture::SECRET), &["--dry-run"]);
    assert_success(&output);
    assert_eq!(summary(&output)["imported"], 30);
    let Target::Sqlite(dir) = &absent else {
        unreachable!("made as SQLite")
    };
    let left: Vec<_> = std::fs::read_dir(&dir.0)
        .expect("the directory")
        .map(|entry| entry.expect("entry").file_name())
        .collect();
    assert!(left.is_empty(), "a dry run wrote {left:?}");
}

#[tokio::test]
async fn an_import_killed_halfway_resumes_losing_and_duplicating_nothing() {
    let n = size();
    let original = Original::new(n, 13).await;
    let target = Target::postgres().await;
    let env = env(&original, &target, fixture::SECRET);
    // One namespace at a time, so that the kill lands in the middle.
    let mut child = command(&env, &["--batch-size", "1", "--concurrency", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the import");
    let deadline = Instant::now() + Duration::from_mins(2);
    let imported = loop {
        if let Some((_, _, imported)) = target.counts().await
            && imported >= 10
        {
            break imported;
        }
        assert!(Instant::now() < deadline, "the import made no progress");
        assert!(
            child.try_wait().expect("poll").is_none(),
            "the import ended early"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");
    let after_kill = target.counts().await.expect("counts");
    assert!(
        after_kill.2 >= imported && after_kill.2 < n as i64,
        "killed halfway: {after_kill:?} of {n}"
    );
    assert_eq!(
        after_kill.0, after_kill.2,
        "every namespace with its record, no more"
    );

    let output = run(&env, &[]);
    assert_success(&output);
    let counts = summary(&output);
    assert_eq!(
        counts["imported"] + counts["unchanged"],
        n as u64,
        "{counts:?}"
    );
    assert_eq!(counts["unchanged"], after_kill.2 as u64, "{counts:?}");
    let totals = Totals::of(&original.namespaces);
    assert_eq!(
        target.counts().await,
        Some((n as i64, totals.secrets as i64, n as i64)),
        "nothing lost, nothing twice"
    );
    let (address, server) = serve(&target).await;
    assert_every_secret(&address, &original.namespaces).await;
    server.stop(true).await;
}
