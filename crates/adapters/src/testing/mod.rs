//! What tests need from outside: throwaway PostgreSQL databases, one per test, so tests run in
//! parallel and clean up; throwaway PostgreSQL servers with the settings a test needs
//! ([`ThrowawayCluster`]); certificates made at test time ([`TestCa`]).
//!
//! The server is the one `TEST_DATABASE_URL` names (default: the local server with trust
//! auth, `postgres://postgres@127.0.0.1:5432/postgres`). `make test` starts a private server
//! and sets the variable when none answers there.

mod certs;
mod cluster;

use std::sync::atomic::{AtomicU32, Ordering};

pub use self::certs::{Issued, TestCa};
pub use self::cluster::ThrowawayCluster;

use tokio_postgres::NoTls;

const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A database created for one test and dropped (with its connections) when this is dropped.
#[derive(Debug)]
pub struct TestDatabase {
    admin_url: String,
    name: String,
    url: String,
}

impl TestDatabase {
    /// Creates a fresh, empty database with a unique name.
    ///
    /// # Panics
    /// When the server cannot be reached, with a message that says what to do: this is test
    /// set-up, where a loud failure is the useful outcome.
    pub async fn create() -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let admin_url =
            std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_ADMIN_URL.to_owned());
        let name = format!(
            "secrets_test_{}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            uuid::Uuid::new_v4().simple()
        );
        let (client, connection) = tokio_postgres::connect(&admin_url, NoTls)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "cannot reach PostgreSQL at TEST_DATABASE_URL ({admin_url}): {e}; \
                     run the tests with `make test`, which starts one when none answers"
                )
            });
        tokio::spawn(connection);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create the test database");
        let url = with_database(&admin_url, &name);
        Self {
            admin_url,
            name,
            url,
        }
    }

    /// The connection URL of this test's database.
    #[must_use]
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The database's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A file for the audit trail of a service on this database, removed with it.
    #[must_use]
    pub fn audit_file(&self) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("{}.audit.log", self.name))
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Drop may run inside a runtime (a test's) or outside one, so the clean-up gets a thread
        // and a small runtime of its own, and this waits for it: the database is gone when the
        // test ends.
        drop(std::fs::remove_file(self.audit_file()));
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        let cleanup = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                // Best effort: a test database the server could not drop is left behind, and
                // takes nothing from the test's outcome.
                if let Ok((client, connection)) = tokio_postgres::connect(&admin_url, NoTls).await {
                    tokio::spawn(connection);
                    drop(
                        client
                            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                            .await,
                    );
                }
            });
        });
        // A clean-up that panicked has been reported by the panic hook; nothing is left to do.
        drop(cleanup.join());
    }
}

/// `url` with its database path replaced by `database`.
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    let mut out = format!("{}/{database}", &base[..host_end]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn the_database_is_replaced_in_a_url() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "t1"),
            "postgres://postgres@127.0.0.1:5432/t1"
        );
        assert_eq!(
            with_database("postgres://u:p@h:1/db?sslmode=disable", "t2"),
            "postgres://u:p@h:1/t2?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h", "t3"), "postgres://h/t3");
    }
}
