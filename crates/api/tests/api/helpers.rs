//! Starts the real application on a random port against a database of its own.

use std::collections::HashMap;

use reqwest::{Client, Method, RequestBuilder, Response};
use secrecy::SecretString;
use secrets_adapters::postgres::PostgresStore;
use secrets_adapters::sqlite::SqliteStore;
use secrets_adapters::testing::TestDatabase;
use secrets_api::settings::Backend;
use secrets_api::{Application, KeyMaterial, Settings, StartupError};
use serde_json::Value;

/// The KEK every test app uses unless a test says otherwise.
pub const TEST_KEK: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
/// The service token every test app accepts.
pub const TOKEN: &str = "test-service-token-0123456789";

/// Creates a namespace through the service at `base` (`http://host:port`), asserting 201; its
/// access key.
pub async fn create_namespace_at(client: &Client, base: &str) -> String {
    let response = client
        .post(format!("{base}/namespaces"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.expect("json");
    body["accessKey"].as_str().expect("accessKey").to_owned()
}

/// A running application and what a test needs to talk to it and to its database.
pub struct TestApp {
    pub address: String,
    pub client: Client,
    pub db: TestDatabase,
    pub server: ServerGuard,
}

/// Stops the server when dropped.
pub struct ServerGuard(pub actix_web::dev::ServerHandle);

impl Drop for ServerGuard {
    fn drop(&mut self) {
        drop(self.0.stop(false));
    }
}

/// What is left of a test app once its server is stopped: its database, to start another
/// application on.
pub struct TestAppParts {
    pub db: TestDatabase,
}

/// How a test wants its application configured.
pub struct Options {
    pub env: Vec<(&'static str, String)>,
    pub kek: String,
    pub retired: Vec<String>,
    pub tokens: Vec<String>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            env: Vec::new(),
            kek: TEST_KEK.into(),
            retired: Vec::new(),
            tokens: vec![TOKEN.into()],
        }
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(Options::default()).await
}

pub fn settings_for(db: &TestDatabase, extra: &[(&'static str, String)]) -> Settings {
    let mut env: HashMap<String, String> = HashMap::from([
        ("DATABASE_URL".into(), db.url().to_owned()),
        ("SECRETS__SERVER__BIND".into(), "127.0.0.1:0".into()),
        ("SECRETS__SERVER__WORKERS".into(), "2".into()),
        ("SECRETS__STORAGE__POOL_SIZE".into(), "4".into()),
        ("SECRETS__SERVER__SHUTDOWN_TIMEOUT_SECS".into(), "1".into()),
        (
            "SECRETS__AUDIT__PATH".into(),
            db.audit_file().display().to_string(),
        ),
    ]);
    env.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
    Settings::load(None, &env).expect("test settings load")
}

pub fn key_material(options: &Options) -> KeyMaterial {
    KeyMaterial {
        kek: Some(SecretString::from(options.kek.clone())),
        retired: options
            .retired
            .iter()
            .cloned()
            .map(SecretString::from)
            .collect(),
        tokens: options
            .tokens
            .iter()
            .cloned()
            .map(SecretString::from)
            .collect(),
        audit: None,
    }
}

/// Start-up as the binary runs it, on the store `settings` names.
pub async fn build(settings: Settings, keys: KeyMaterial) -> Result<Application, StartupError> {
    match settings.storage.backend.clone() {
        Backend::Sqlite(path) => Application::build::<SqliteStore>(&path, settings, keys).await,
        Backend::Postgres(url) => {
            let location = settings.storage.postgres_location(url);
            Application::build::<PostgresStore>(&location, settings, keys).await
        }
    }
}

pub async fn spawn_app_with(options: Options) -> TestApp {
    let db = TestDatabase::create().await;
    spawn_app_on(db, options).await
}

pub async fn spawn_app_on(db: TestDatabase, options: Options) -> TestApp {
    let settings = settings_for(&db, &options.env);
    let application = build(settings, key_material(&options))
        .await
        .expect("the application starts");
    let address = format!("http://127.0.0.1:{}", application.port());
    let handle = application.handle();
    tokio::spawn(application.run_until_stopped());
    TestApp {
        address,
        client: Client::new(),
        db,
        server: ServerGuard(handle),
    }
}

impl TestApp {
    /// Stops the server and keeps the database.
    pub async fn into_parts(self) -> TestAppParts {
        let TestApp { db, server, .. } = self;
        server.0.stop(true).await;
        TestAppParts { db }
    }

    /// A request with the service token.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.client
            .request(method, format!("{}{path}", self.address))
            .bearer_auth(TOKEN)
    }

    /// Creates a namespace and returns its access key.
    pub async fn create_namespace(&self) -> String {
        create_namespace_at(&self.client, &self.address).await
    }

    /// Sets one secret, asserting success; returns the `created` flag.
    pub async fn put(&self, key: &str, name: &str, value: &str) -> bool {
        let response = self
            .request(Method::POST, &format!("/namespaces/{key}"))
            .json(&serde_json::json!({ "key": name, "value": value }))
            .send()
            .await
            .expect("sent");
        assert_eq!(response.status(), 201, "put {name}");
        let body: Value = response.json().await.expect("json");
        body["created"].as_bool().expect("created flag")
    }

    /// Reads a whole namespace, asserting success.
    pub async fn read(&self, key: &str) -> Value {
        let response = self
            .request(Method::GET, &format!("/namespaces/{key}"))
            .send()
            .await
            .expect("sent");
        assert_eq!(response.status(), 200);
        response.json().await.expect("json")
    }

    /// A client connected to the test's database.
    pub async fn db_client(&self) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(self.db.url(), tokio_postgres::NoTls)
            .await
            .expect("connect to the test database");
        tokio::spawn(connection);
        client
    }

    /// How many namespaces the database holds.
    pub async fn namespace_count(&self) -> i64 {
        self.db_client()
            .await
            .query_one("SELECT count(*) FROM namespaces", &[])
            .await
            .expect("count")
            .get(0)
    }

    /// Every row of every table of the public schema, as PostgreSQL prints it (bytea as hex).
    pub async fn dump_tables(&self) -> String {
        let client = self.db_client().await;
        let tables = client
            .query(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'",
                &[],
            )
            .await
            .expect("tables");
        let mut dump = String::new();
        for row in tables {
            let table: String = row.get(0);
            let rows = client
                .query(&format!("SELECT t::text FROM \"{table}\" t"), &[])
                .await
                .expect("rows");
            for row in rows {
                dump.push_str(&row.get::<_, String>(0));
                dump.push('\n');
            }
        }
        dump
    }
}

/// Asserts an error response: status, JSON shape and code.
pub async fn assert_error(response: Response, status: u16, code: &str) -> String {
    assert_eq!(response.status(), status, "status for {code}");
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        content_type.starts_with("application/json"),
        "content type {content_type}"
    );
    let body: Value = response.json().await.expect("error body is JSON");
    assert_eq!(body["error"]["code"], code, "{body}");
    let message = body["error"]["message"]
        .as_str()
        .expect("message")
        .to_owned();
    assert!(!message.is_empty());
    message
}

/// The real `secrets-service` binary with an empty environment but `PATH`.
pub fn binary() -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_secrets-service"));
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    command
}

/// A temporary directory for an SQLite database, removed when dropped.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("secrets-keys-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        Self(dir)
    }

    pub fn url(&self) -> String {
        format!("sqlite://{}", self.0.join("secrets.db").display())
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        drop(std::fs::remove_dir_all(&self.0));
    }
}
