//! A throwaway primary and a streaming hot standby of it, made with `initdb` and
//! `pg_basebackup` in a temporary directory on free ports of 127.0.0.1, stopped and removed when
//! dropped (also when the test panics). Run as root, the servers belong to the `postgres` user.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A primary and its standby.
pub struct Replication {
    dir: PathBuf,
    bin: PathBuf,
    pub primary_port: u16,
    pub standby_port: u16,
}

impl Replication {
    /// Starts both and waits until the standby accepts connections.
    ///
    /// # Panics
    /// When PostgreSQL's server binaries are not installed, saying what to install.
    pub fn start() -> Self {
        let bin = server_binaries();
        let dir = std::env::temp_dir().join(format!(
            "secrets-replication-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).expect("create the directory");
        if running_as_root() {
            run(Command::new("chown").arg("postgres").arg(&dir));
        }
        let ports = free_ports();
        let pair = Self {
            dir,
            bin,
            primary_port: ports[0],
            standby_port: ports[1],
        };
        let primary = pair.dir.join("primary");
        let standby = pair.dir.join("standby");
        run(pair.tool("initdb").arg("-D").arg(&primary).args([
            "-U",
            "postgres",
            "-A",
            "trust",
            "--no-sync",
        ]));
        pair.start_server(
            &primary,
            pair.primary_port,
            "-c wal_level=replica -c max_wal_senders=4",
        );
        run(pair
            .tool("pg_basebackup")
            .arg("-D")
            .arg(&standby)
            .args(["-R", "-X", "stream", "-h", "127.0.0.1", "-U", "postgres"])
            .arg("-p")
            .arg(pair.primary_port.to_string()));
        pair.start_server(&standby, pair.standby_port, "-c hot_standby=on");
        pair
    }

    /// The URL of `database` on the primary.
    pub fn primary_url(&self, database: &str) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/{database}",
            self.primary_port
        )
    }

    /// The URL of `database` on the standby.
    pub fn standby_url(&self, database: &str) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/{database}",
            self.standby_port
        )
    }

    /// A command of PostgreSQL's, as the user that owns the servers.
    fn tool(&self, name: &str) -> Command {
        let program = self.bin.join(name);
        if running_as_root() {
            let mut command = Command::new("setpriv");
            command
                .args(["--reuid=postgres", "--regid=postgres", "--init-groups"])
                .arg(program);
            command
        } else {
            Command::new(program)
        }
    }

    /// Starts the server of `data` on `port` and waits (`pg_ctl -w`) until it accepts
    /// connections.
    fn start_server(&self, data: &Path, port: u16, settings: &str) {
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off {settings}",
            self.dir.display()
        );
        let log = data.with_extension("log");
        run(self
            .tool("pg_ctl")
            .arg("-D")
            .arg(data)
            .arg("-l")
            .arg(&log)
            .args(["-w", "-t", "60", "-o", &options, "start"]));
    }

    /// Waits, at most `within`, until the standby has replayed everything the primary has
    /// flushed so far.
    pub async fn caught_up(&self, within: Duration) {
        let primary = connect(&self.primary_url("postgres")).await;
        let standby = connect(&self.standby_url("postgres")).await;
        let target: tokio_postgres::types::PgLsn = primary
            .query_one("SELECT pg_current_wal_flush_lsn()", &[])
            .await
            .expect("the primary's position")
            .get(0);
        let deadline = Instant::now() + within;
        loop {
            let replayed: Option<tokio_postgres::types::PgLsn> = standby
                .query_one("SELECT pg_last_wal_replay_lsn()", &[])
                .await
                .expect("the standby's position")
                .get(0);
            if replayed.is_some_and(|lsn| lsn >= target) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the standby did not catch up within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for Replication {
    fn drop(&mut self) {
        for data in ["standby", "primary"] {
            drop(
                self.tool("pg_ctl")
                    .arg("-D")
                    .arg(self.dir.join(data))
                    .args(["-m", "immediate", "stop"])
                    .output(),
            );
        }
        drop(std::fs::remove_dir_all(&self.dir));
    }
}

/// A connection, its driver task spawned.
pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"));
    tokio::spawn(connection);
    client
}

fn run(command: &mut Command) {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A directory with all of `initdb`, `pg_ctl` and `pg_basebackup`: on the PATH, or the newest of
/// Debian's `/usr/lib/postgresql/<version>/bin`.
fn server_binaries() -> PathBuf {
    let complete = |dir: &Path| {
        ["initdb", "pg_ctl", "pg_basebackup"]
            .iter()
            .all(|tool| dir.join(tool).is_file())
    };
    let on_path = std::env::var_os("PATH")
        .and_then(|path| std::env::split_paths(&path).find(|dir| complete(dir)));
    let debian = || {
        let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .flatten()
            .filter_map(|entry| {
                let version = entry.file_name().to_str()?.parse().ok()?;
                let bin = entry.path().join("bin");
                complete(&bin).then_some((version, bin))
            })
            .collect();
        versions.sort();
        versions.pop().map(|(_, bin)| bin)
    };
    on_path.or_else(debian).unwrap_or_else(|| {
        panic!(
            "initdb, pg_ctl and pg_basebackup are not installed together: install PostgreSQL's \
             server (Debian: apt-get install postgresql)"
        )
    })
}

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .find_map(|line| line.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().next())
            == Some("0")
    })
}

/// Two free ports, both bound at once so that they differ.
fn free_ports() -> [u16; 2] {
    let a = TcpListener::bind("127.0.0.1:0").expect("a free port");
    let b = TcpListener::bind("127.0.0.1:0").expect("a free port");
    [
        a.local_addr().expect("address").port(),
        b.local_addr().expect("address").port(),
    ]
}
