//! A throwaway PostgreSQL server of a test's own: `initdb` in a temporary directory, started on
//! a free port of 127.0.0.1 with the settings a test needs (TLS on or off), stopped and removed
//! when the last test using it lets go.
//!
//! With TLS on, its certificate is issued at start-up by a CA of its own ([`TestCa`]) for
//! `db.test` and `127.0.0.1` only, so that `localhost` is a host name it is not valid for. Its
//! `pg_hba.conf`:
//!
//! ```text
//! local   all  all                   trust
//! hostssl all  certuser  127.0.0.1/32  cert            (a client certificate, CN = role)
//! host    all  pwuser    127.0.0.1/32  scram-sha-256   (a password)
//! host    all  all       127.0.0.1/32  trust
//! ```
//!
//! The roles are the tests' to create. `initdb` refuses to run as root; as root, the server
//! runs as the `postgres` user.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, Weak};

use super::certs::TestCa;

/// A running throwaway server.
pub struct ThrowawayCluster {
    dir: PathBuf,
    port: u16,
    ca: TestCa,
    tls: bool,
    run_as: Option<String>,
}

impl std::fmt::Debug for ThrowawayCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThrowawayCluster")
            .field("port", &self.port)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

impl ThrowawayCluster {
    /// The cluster with TLS `tls` that tests running now share, started when none runs.
    /// It stops when the last test holding it drops it.
    #[must_use]
    pub fn shared(tls: bool) -> Arc<Self> {
        static RUNNING: Mutex<Vec<(bool, Weak<ThrowawayCluster>)>> = Mutex::new(Vec::new());
        let mut running = RUNNING
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(cluster) = running
            .iter()
            .filter(|(with_tls, _)| *with_tls == tls)
            .find_map(|(_, cluster)| cluster.upgrade())
        {
            return cluster;
        }
        let cluster = Arc::new(Self::start(tls));
        running.retain(|(with_tls, _)| *with_tls != tls);
        running.push((tls, Arc::downgrade(&cluster)));
        cluster
    }

    /// Starts a cluster of its own.
    ///
    /// # Panics
    /// When `initdb` or `pg_ctl` is missing or fails, saying what to install: test set-up.
    #[must_use]
    pub fn start(tls: bool) -> Self {
        let dir = std::env::temp_dir().join(format!("secrets-pg-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("create the cluster's directory");
        let run_as = is_root().then(|| "postgres".to_owned());
        let cluster = Self {
            dir,
            port: free_port(),
            ca: TestCa::new("throwaway PostgreSQL CA"),
            tls,
            run_as,
        };
        cluster.init();
        cluster
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn init(&self) {
        self.give_to_server(&self.dir);
        self.run(
            "initdb",
            &[
                "-D",
                path_str(&self.data()),
                "-U",
                "postgres",
                "-A",
                "trust",
                "--no-sync",
            ],
        );
        let data = self.data();
        let mut conf = format!(
            "\nport = {}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n\
             fsync = off\nmax_connections = 100\n",
            self.port,
            self.dir.display()
        );
        if self.tls {
            let server = self.ca.issue("db.test", &["db.test", "127.0.0.1"]);
            let (cert, key) = server.write(&data, "server");
            let ca = self.ca.write(&data, "ca");
            for file in [&cert, &key, &ca] {
                self.give_to_server(file);
            }
            let _ = write!(
                conf,
                "ssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'\nssl_ca_file = '{}'\n",
                cert.display(),
                key.display(),
                ca.display()
            );
        } else {
            conf.push_str("ssl = off\n");
        }
        append(&data.join("postgresql.conf"), &conf);
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\n\
             hostssl all certuser 127.0.0.1/32 cert\n\
             host all pwuser 127.0.0.1/32 scram-sha-256\n\
             host all all 127.0.0.1/32 trust\n",
        )
        .expect("write pg_hba.conf");
        let log = self.dir.join("server.log");
        self.run(
            "pg_ctl",
            &["-D", path_str(&data), "-l", path_str(&log), "-w", "start"],
        );
    }

    /// The port it listens on (127.0.0.1 only).
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A URL for the superuser `postgres` to database `database`, without TLS.
    #[must_use]
    pub fn admin_url(&self, database: &str) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/{database}?sslmode=disable",
            self.port
        )
    }

    /// The CA that signed the server's certificate.
    #[must_use]
    pub fn ca(&self) -> &TestCa {
        &self.ca
    }

    /// A directory for a test's files (certificates, keys), removed with the cluster.
    ///
    /// # Panics
    /// When it cannot be created.
    #[must_use]
    pub fn scratch(&self) -> PathBuf {
        let dir = self.dir.join(format!("scratch-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("create a scratch directory");
        dir
    }

    /// Runs `sql` as the superuser in `database` with `psql`, asserting success.
    ///
    /// # Panics
    /// When `psql` fails.
    pub fn psql(&self, database: &str, sql: &str) {
        let output = Command::new("psql")
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d"])
            .arg(self.admin_url(database))
            .args(["-c", sql])
            .output()
            .expect("run psql (install the PostgreSQL client)");
        assert!(
            output.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    fn give_to_server(&self, path: &Path) {
        if let Some(user) = &self.run_as {
            let status = Command::new("chown")
                .arg(user)
                .arg(path)
                .status()
                .expect("chown");
            assert!(status.success(), "chown {user} {}", path.display());
        }
    }

    /// `tool` as the server's user.
    fn command(&self, tool: &str) -> Command {
        let program = pg_binary(tool);
        match &self.run_as {
            Some(user) => {
                let mut command = Command::new("runuser");
                command.args(["-u", user, "--"]).arg(&program);
                command
            }
            None => Command::new(&program),
        }
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let mut command = self.command(tool);
        let output = command
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("{tool}: {e}"));
        assert!(
            output.status.success(),
            "{tool} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

impl Drop for ThrowawayCluster {
    fn drop(&mut self) {
        let data = self.data();
        let mut command = self.command("pg_ctl");
        drop(
            command
                .args(["-D", path_str(&data), "-m", "immediate", "stop"])
                .output(),
        );
        drop(std::fs::remove_dir_all(&self.dir));
    }
}

/// `tool` of the newest PostgreSQL installed: on `PATH`, or under `/usr/lib/postgresql`.
fn pg_binary(tool: &str) -> PathBuf {
    if let Ok(path) = std::env::var("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join(tool);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|version| version.path().join("bin").join(tool))
        .filter(|candidate| candidate.is_file())
        .collect();
    found.sort();
    found.pop().unwrap_or_else(|| {
        panic!("{tool} is not installed: install the PostgreSQL server (Debian: apt-get install postgresql)")
    })
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| String::from_utf8_lossy(&output.stdout).trim() == "0")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 temporary path")
}

fn append(path: &Path, text: &str) {
    use std::io::Write as _;
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .expect("open postgresql.conf");
    file.write_all(text.as_bytes())
        .expect("write postgresql.conf");
}
