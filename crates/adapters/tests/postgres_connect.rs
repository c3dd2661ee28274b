//! Connecting to PostgreSQL: TLS in libpq's terms against a real server with `ssl = on`
//! (a throwaway cluster with certificates made at test time), and one test for each way a
//! connection can fail, each checking that the message says what happened and never holds the
//! password.
//!
//! Every URL here carries the password `hunter2` (trust authentication ignores it), so that
//! every message can be searched for it.

use std::sync::Arc;
use std::time::Duration;

use secrets_adapters::StoreOptions;
use secrets_adapters::postgres::PostgresStore;
use secrets_adapters::testing::{TestCa, TestDatabase, ThrowawayCluster};
use secrets_domain::ports::{SecretStore, StoreError};

const PASSWORD: &str = "hunter2";

fn options(timeout: Duration) -> StoreOptions {
    StoreOptions {
        pool_size: std::num::NonZeroUsize::new(2).expect("non-zero"),
        timeout,
    }
}

/// The whole message an operator reads: the error and its causes.
fn message(error: &StoreError) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    assert!(
        !text.contains(PASSWORD),
        "the password in a message: {text}"
    );
    text
}

/// Pings the store at `url`; answers the failure's message.
async fn refusal(url: &str, timeout: Duration) -> String {
    let store = PostgresStore::new(url, options(timeout)).expect("the URL is valid");
    let error = store.ping().await.expect_err("the connection is refused");
    assert!(
        matches!(error, StoreError::Unavailable(_)),
        "a failure to connect is Unavailable: {error:?}"
    );
    message(&error)
}

/// `postgres://postgres:hunter2@<host>:<port>/postgres?<query>` on the TLS cluster.
fn url(cluster: &ThrowawayCluster, host: &str, query: &str) -> String {
    format!(
        "postgres://postgres:{PASSWORD}@{host}:{}/postgres?{query}",
        cluster.port()
    )
}

fn tls_cluster() -> Arc<ThrowawayCluster> {
    ThrowawayCluster::shared(true)
}

/// Whether the store's own connections to `cluster` are encrypted (the server's view).
fn store_connections_use_tls(cluster: &ThrowawayCluster) -> bool {
    let output = std::process::Command::new("psql")
        .args(["-X", "-At", "-d"])
        .arg(cluster.admin_url("postgres"))
        .args([
            "-c",
            "SELECT bool_and(s.ssl) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
             WHERE a.application_name = 'secrets-service'",
        ])
        .output()
        .expect("psql");
    String::from_utf8_lossy(&output.stdout).trim() == "t"
}

#[tokio::test]
async fn verify_full_connects_with_the_right_ca_and_host_name() {
    let cluster = tls_cluster();
    let dir = cluster.scratch();
    let ca = cluster.ca().write(&dir, "ca");
    let store = PostgresStore::new(
        &url(
            &cluster,
            "127.0.0.1",
            &format!("sslmode=verify-full&sslrootcert={}", ca.display()),
        ),
        options(Duration::from_secs(10)),
    )
    .expect("valid");
    store.ping().await.expect("verify-full connects");
    assert!(
        store_connections_use_tls(&cluster),
        "the connection is encrypted"
    );
    assert_eq!(store.insecure_transport(), None);
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_refused_naming_the_unknown_issuer() {
    let cluster = tls_cluster();
    let dir = cluster.scratch();
    let other = TestCa::new("another CA").write(&dir, "other-ca");
    for mode in ["verify-full", "verify-ca"] {
        let message = refusal(
            &url(
                &cluster,
                "127.0.0.1",
                &format!("sslmode={mode}&sslrootcert={}", other.display()),
            ),
            Duration::from_secs(10),
        )
        .await;
        assert!(message.contains("TLS handshake"), "{mode}: {message}");
        assert!(
            message.contains("not signed by a CA in sslrootcert"),
            "{mode}: {message}"
        );
        assert!(
            message.contains(&format!("127.0.0.1:{}", cluster.port())),
            "{message}"
        );
    }
}

#[tokio::test]
async fn a_certificate_for_another_host_name_is_refused_under_verify_full_only() {
    let cluster = tls_cluster();
    let dir = cluster.scratch();
    let ca = cluster.ca().write(&dir, "ca");
    // The server's certificate names db.test and 127.0.0.1, not localhost.
    let query = |mode: &str| format!("sslmode={mode}&sslrootcert={}", ca.display());
    let message = refusal(
        &url(&cluster, "localhost", &query("verify-full")),
        Duration::from_secs(10),
    )
    .await;
    assert!(message.contains("not valid for the host name"), "{message}");
    // verify-ca checks the CA alone.
    let store = PostgresStore::new(
        &url(&cluster, "localhost", &query("verify-ca")),
        options(Duration::from_secs(10)),
    )
    .expect("valid");
    store.ping().await.expect("verify-ca ignores the host name");
}

#[tokio::test]
async fn a_server_without_tls_is_refused_under_require_and_used_plainly_under_prefer() {
    let cluster = ThrowawayCluster::shared(false);
    let message = refusal(
        &url(&cluster, "127.0.0.1", "sslmode=require"),
        Duration::from_secs(10),
    )
    .await;
    assert!(
        message.contains("does not accept TLS, and sslmode=require requires it"),
        "{message}"
    );
    let store = PostgresStore::new(
        &url(&cluster, "127.0.0.1", "sslmode=prefer"),
        options(Duration::from_secs(10)),
    )
    .expect("valid");
    store.ping().await.expect("prefer falls back to plaintext");
}

#[tokio::test]
async fn a_client_certificate_authenticates_where_the_server_asks_for_one() {
    let cluster = tls_cluster();
    cluster.psql("postgres", "CREATE ROLE certuser LOGIN");
    let dir = cluster.scratch();
    let ca = cluster.ca().write(&dir, "ca");
    let (cert, key) = cluster.ca().issue("certuser", &[]).write(&dir, "client");
    let base = format!(
        "postgres://certuser@127.0.0.1:{}/postgres?sslmode=verify-full&sslrootcert={}",
        cluster.port(),
        ca.display()
    );
    let store = PostgresStore::new(
        &format!("{base}&sslcert={}&sslkey={}", cert.display(), key.display()),
        options(Duration::from_secs(10)),
    )
    .expect("valid");
    store
        .ping()
        .await
        .expect("the client certificate is accepted");
    // Without it, the server refuses the role, and the message says what the server said.
    let message = refusal(&base, Duration::from_secs(10)).await;
    assert!(message.contains("SQLSTATE 28000"), "{message}");
    assert!(message.contains("certificate"), "{message}");
}

#[tokio::test]
async fn a_database_that_does_not_exist_is_named() {
    let db = TestDatabase::create().await;
    let missing = format!("{}_missing", db.name());
    let url = db.url().replace(db.name(), &missing).replacen(
        "postgres://postgres@",
        &format!("postgres://postgres:{PASSWORD}@"),
        1,
    );
    let message = refusal(&url, Duration::from_secs(10)).await;
    assert!(
        message.contains(&format!(
            "database \"{missing}\" does not exist (SQLSTATE 3D000)"
        )),
        "{message}"
    );
}

#[tokio::test]
async fn an_unknown_role_or_a_wrong_password_is_named() {
    let cluster = tls_cluster();
    let message = refusal(
        &format!(
            "postgres://nosuchrole:{PASSWORD}@127.0.0.1:{}/postgres?sslmode=disable",
            cluster.port()
        ),
        Duration::from_secs(10),
    )
    .await;
    assert!(
        message.contains("role \"nosuchrole\" does not exist (SQLSTATE 28000)"),
        "{message}"
    );
    cluster.psql(
        "postgres",
        "DO $$ BEGIN CREATE ROLE pwuser LOGIN PASSWORD 'the-right-one'; \
         EXCEPTION WHEN duplicate_object THEN NULL; END $$",
    );
    let message = refusal(
        &format!(
            "postgres://pwuser:{PASSWORD}@127.0.0.1:{}/postgres?sslmode=disable",
            cluster.port()
        ),
        Duration::from_secs(10),
    )
    .await;
    assert!(message.contains("SQLSTATE 28P01"), "{message}");
    assert!(
        message.contains("the password is wrong, or the role does not exist"),
        "{message}"
    );
}

#[tokio::test]
async fn a_refused_connection_names_the_host_and_port() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let message = refusal(
        &format!("postgres://postgres:{PASSWORD}@127.0.0.1:{port}/postgres"),
        Duration::from_secs(10),
    )
    .await;
    assert!(
        message.contains(&format!("connection refused at 127.0.0.1:{port}")),
        "{message}"
    );
}

#[tokio::test]
async fn a_host_name_that_does_not_resolve_is_named() {
    let message = refusal(
        &format!("postgres://postgres:{PASSWORD}@db.nonexistent.invalid:5432/postgres"),
        Duration::from_secs(10),
    )
    .await;
    assert!(
        message
            .contains("the host name \"db.nonexistent.invalid\" of DATABASE_URL does not resolve"),
        "{message}"
    );
}

#[tokio::test]
async fn a_missing_grant_on_schema_public_is_named_with_the_grant_that_fixes_it() {
    let cluster = tls_cluster();
    let database = format!("grants_{}", uuid::Uuid::new_v4().simple());
    let role = format!("app_{}", uuid::Uuid::new_v4().simple());
    cluster.psql("postgres", &format!("CREATE ROLE {role} LOGIN"));
    cluster.psql("postgres", &format!("CREATE DATABASE {database}"));
    let store = PostgresStore::new(
        &format!(
            "postgres://{role}:{PASSWORD}@127.0.0.1:{}/{database}?sslmode=disable",
            cluster.port()
        ),
        options(Duration::from_secs(10)),
    )
    .expect("valid");
    // PostgreSQL 15 and later: an ordinary role may not create tables in schema public.
    let error = store
        .migrate()
        .await
        .expect_err("no CREATE on schema public");
    let message = message(&error);
    assert!(
        message.contains("permission denied for schema public (SQLSTATE 42501)"),
        "{message}"
    );
    let grant = format!("GRANT USAGE, CREATE ON SCHEMA public TO {role};");
    assert!(message.contains(&grant), "{message}");
    assert!(
        message.contains(&format!("connected to database {database}")),
        "{message}"
    );
    // The GRANT in the message is the fix.
    cluster.psql(&database, &grant);
    let report = store.migrate().await.expect("migrates once granted");
    assert!(!report.applied.is_empty());
}

#[tokio::test]
async fn a_server_that_never_answers_is_a_timeout() {
    // Accepts connections and never says a word.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("address").port();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let message = refusal(
        &format!("postgres://postgres:{PASSWORD}@127.0.0.1:{port}/postgres?sslmode=disable"),
        Duration::from_millis(300),
    )
    .await;
    silent.abort();
    assert!(message.contains("timed out after 300 ms"), "{message}");
    assert!(message.contains(&format!("127.0.0.1:{port}")), "{message}");
}

#[tokio::test]
async fn tls_settings_that_cannot_work_are_refused_before_connecting() {
    let cases = [
        ("sslmode=verify-full", "needs sslrootcert"),
        ("sslmode=sometimes", "sslmode=sometimes is not one of"),
        (
            "sslmode=verify-full&sslrootcert=/nonexistent/ca.crt",
            "sslrootcert (/nonexistent/ca.crt)",
        ),
        ("sslcert=/c.crt", "sslkey is missing"),
    ];
    for (query, expected) in cases {
        let error = PostgresStore::new(
            &format!("postgres://postgres:{PASSWORD}@db.test/postgres?{query}"),
            options(Duration::from_secs(1)),
        )
        .expect_err(query);
        let message = message(&error);
        assert!(message.contains(expected), "{query}: {message}");
    }
}
