//! What every fault test needs: the real binary as a child process that can be killed, a
//! scratch directory, the PostgreSQL database behind a test, a seeded random source and the
//! knobs `make soak` turns up.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use reqwest::Client;

/// The active key-encryption key of every service the tests start.
pub const KEK: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
/// The key `rotate-kek` moves to.
pub const NEW_KEK: &str = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";
/// The service token every service accepts.
pub const TOKEN: &str = "faults-service-token-0123456789";

/// How long a debug build on a loaded two-core machine may take to start.
const START_TIMEOUT: Duration = Duration::from_mins(1);

/// A setting the soak run turns up: the environment variable `name`, or `default`.
pub fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A small, seeded random source (`SplitMix64`), so that a failing run can be repeated: every
/// test prints its seed, and `FAULTS_SEED=<seed>` replays it.
pub struct Rng(u64);

impl Rng {
    /// The seed of `FAULTS_SEED`, or a fresh one; printed either way (the test harness shows
    /// it with a failure's output).
    pub fn from_env(test: &str) -> Self {
        let seed = std::env::var("FAULTS_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                let nanos = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos() as u64);
                nanos ^ u64::from(std::process::id()).rotate_left(32)
            });
        eprintln!("{test}: FAULTS_SEED={seed}");
        Self(seed)
    }

    /// A generator of its own for a task, derived from this one.
    pub fn fork(&mut self) -> Self {
        Self(self.next_u64())
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `low..=high`.
    pub fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next_u64() % (high - low + 1)
    }

    /// An index into a slice of `len` elements.
    pub fn index(&mut self, len: usize) -> usize {
        (self.next_u64() % len as u64) as usize
    }
}

/// A directory of its own for one test (SQLite files, service logs), removed when dropped,
/// also when the test panics.
pub struct Scratch(PathBuf);

impl Scratch {
    pub fn new(label: &str) -> Self {
        let path =
            std::env::temp_dir().join(format!("secrets-faults-{label}-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&path).expect("create the scratch directory");
        Self(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// The URL of an SQLite database in this directory.
    pub fn sqlite_url(&self) -> String {
        format!("sqlite://{}", self.0.join("secrets.db").display())
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        drop(std::fs::remove_dir_all(&self.0));
    }
}

/// The environment of a `secrets-service` on `database_url` with the test KEK and token,
/// listening on a port of its choosing (it logs which), with JSON logs that hold the
/// `listening` line and every warning or error. `extra` overrides or adds settings.
pub fn service_env(database_url: &str, extra: &[(&str, String)]) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = [
        ("DATABASE_URL", database_url.to_owned()),
        ("KEY_ENCRYPTION_KEY", KEK.to_owned()),
        ("SERVICE_AUTH_TOKENS", TOKEN.to_owned()),
        ("SECRETS__SERVER__BIND", "127.0.0.1:0".to_owned()),
        ("SECRETS__SERVER__WORKERS", "2".to_owned()),
        ("SECRETS__STORAGE__POOL_SIZE", "4".to_owned()),
        ("SECRETS__SERVER__SHUTDOWN_TIMEOUT_SECS", "1".to_owned()),
        ("SECRETS__LOG__FORMAT", "json".to_owned()),
        (
            "SECRETS__LOG__LEVEL",
            "warn,secrets_api::startup=info".to_owned(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    for (key, value) in extra {
        env.retain(|(k, _)| k != key);
        env.push(((*key).to_owned(), value.clone()));
    }
    env
}

/// The `secrets-service` binary with exactly `env` (nothing inherited, so no stray setting of
/// the developer's shell changes a test).
pub fn binary(env: &[(String, String)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_secrets-service"));
    command
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null());
    command
}

/// A running `secrets-service serve`. Dropping it kills it (SIGKILL) and reaps it.
pub struct Node {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Node {
    /// Starts the service with `env`, its output going to a log file of its own in `scratch`,
    /// and waits (bounded) for the `listening` line that names its port: the listener is bound
    /// then, so connections are accepted from that moment on.
    pub async fn start(scratch: &Scratch, env: &[(String, String)]) -> Self {
        static STARTS: AtomicU32 = AtomicU32::new(0);
        let log = scratch.path().join(format!(
            "service-{}.log",
            STARTS.fetch_add(1, Ordering::Relaxed)
        ));
        let file = File::create(&log).expect("create the log file");
        // Every node keeps an audit trail, in a file of its own unless the test names one.
        let mut env = env.to_vec();
        if !env.iter().any(|(k, _)| k.starts_with("SECRETS__AUDIT__")) {
            let trail = log.with_extension("audit.log");
            env.push((
                "SECRETS__AUDIT__PATH".to_owned(),
                trail.display().to_string(),
            ));
        }
        let child = binary(&env)
            .arg("serve")
            .stdout(file.try_clone().expect("log file handle"))
            .stderr(file)
            .spawn()
            .expect("start secrets-service");
        let mut node = Self {
            child,
            port: 0,
            log,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(port) = node.log().lines().find_map(listening_port) {
                node.port = port;
                return node;
            }
            if let Ok(Some(status)) = node.child.try_wait() {
                panic!(
                    "secrets-service exited during start-up ({status}):\n{}",
                    node.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "secrets-service did not start within {START_TIMEOUT:?}:\n{}",
                node.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The base URL, `http://127.0.0.1:<port>`.
    pub fn base(&self) -> String {
        self.url("")
    }

    /// The process id, to tell a restarted process from the same one.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Kills the process with SIGKILL (`Child::kill` on Unix): no signal handler runs, no
    /// request finishes, nothing is flushed. Then reaps it.
    pub fn kill(&mut self) {
        if self.is_running() {
            self.child.kill().expect("SIGKILL the service");
        }
        self.child.wait().expect("reap the service");
    }

    /// Everything the process printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The lines printed before the `listening` line (start-up) that are warnings or errors.
    pub fn start_up_complaints(&self) -> Vec<String> {
        self.log()
            .lines()
            .take_while(|line| listening_port(line).is_none())
            .filter(|line| {
                line.contains("\"level\":\"WARN\"") || line.contains("\"level\":\"ERROR\"")
            })
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if self.is_running() {
            drop(self.child.kill());
            drop(self.child.wait());
        }
    }
}

/// The port of the JSON start-up line `{"message":"listening","port":N,...}`.
fn listening_port(line: &str) -> Option<u16> {
    let json: serde_json::Value = serde_json::from_str(line).ok()?;
    if json["message"] != "listening" {
        return None;
    }
    json["port"].as_u64().and_then(|p| u16::try_from(p).ok())
}

/// A client whose every request is bounded: a service that hangs fails the test instead of
/// stalling it. It keeps an idle connection for less time than the service's keep-alive (actix's
/// five seconds) lets it: a request sent on a connection at the moment the server closes it
/// fails without an answer, which would pass for the service's fault.
pub fn client() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_idle_timeout(Duration::from_secs(2))
        .build()
        .expect("HTTP client")
}

/// A connection to a test's PostgreSQL database, for what only SQL shows.
pub async fn sql(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect to the test database");
    tokio::spawn(connection);
    client
}

/// One number from a query that returns one row of one `bigint`.
pub async fn count(client: &tokio_postgres::Client, query: &str) -> i64 {
    client
        .query_one(query, &[])
        .await
        .unwrap_or_else(|e| panic!("{query}: {e}"))
        .get(0)
}

/// How many names have more than one row in the database `client` is connected to (a torn or doubled write).
pub async fn names_with_more_than_one_row(client: &tokio_postgres::Client) -> i64 {
    count(
        client,
        "SELECT count(*) FROM (SELECT 1 FROM secrets \
         GROUP BY namespace_id, name_index HAVING count(*) > 1) d",
    )
    .await
}

/// Creates a namespace through the service at `base`, asserting 201; its access key.
pub async fn create_namespace(client: &Client, base: &str) -> String {
    let response = client
        .post(format!("{base}/namespaces"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("create answered");
    assert_eq!(response.status(), 201, "create a namespace");
    let body: serde_json::Value = response.json().await.expect("json");
    body["accessKey"].as_str().expect("accessKey").to_owned()
}

/// The `(name, digest)` listing of a namespace, asserting success.
pub async fn list_keys(client: &Client, base: &str, key: &str) -> Vec<String> {
    let response = client
        .get(format!("{base}/namespaces/{key}/keys"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("keys answered");
    assert_eq!(response.status(), 200, "list keys");
    let body: serde_json::Value = response.json().await.expect("json");
    body.as_array()
        .expect("an array")
        .iter()
        .map(|entry| entry["key"].as_str().expect("a name").to_owned())
        .collect()
}

impl Node {
    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Waits (at most `within`) until the process runs `count` HTTP worker threads. A worker's
    /// thread is named `actix-server worker N` (`comm` keeps its first 15 bytes) and ends when
    /// the worker stops.
    pub async fn wait_for_worker_threads(&self, count: usize, within: Duration) -> bool {
        let tasks = format!("/proc/{}/task", self.child.id());
        let workers = || {
            std::fs::read_dir(&tasks)
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|task| std::fs::read_to_string(task.path().join("comm")).ok())
                .filter(|name| name.starts_with("actix-server wo"))
                .count()
        };
        let deadline = Instant::now() + within;
        loop {
            if workers() == count {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Sends SIGTERM: the start of a graceful shutdown.
    pub fn signal_term(&self) {
        let pid = i32::try_from(self.child.id()).expect("a pid fits an i32");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        )
        .expect("send SIGTERM");
    }

    /// Waits (at most `within`) until the listener refuses connections.
    pub async fn stops_accepting(&self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_err()
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }

    /// Waits (at most `within`) for the process to exit; `Some(true)` for exit status 0.
    pub fn wait_exit(&mut self, within: Duration) -> Option<bool> {
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status.success());
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
