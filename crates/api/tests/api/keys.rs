//! Key lifecycle: KEK rotation online on both stores, start-up refusals, `check` and `gen-key`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use reqwest::{Client, Method};
use secrecy::SecretString;
use secrets_adapters::crypto::{Kek, OsRandom, RingEnvelope};
use secrets_adapters::postgres::PostgresStore;
use secrets_adapters::sqlite::SqliteStore;
use secrets_adapters::testing::TestDatabase;
use secrets_adapters::{Store, StoreOptions};
use secrets_api::progress::Quiet;
use secrets_api::rotate::rotate_kek;
use secrets_api::{KeyMaterial, Settings};
use secrets_domain::ports::SecretStore;
use secrets_domain::{KeyId, Limits, SecretsService};
use serde_json::{Value, json};

use crate::helpers::{ServerGuard, TEST_KEK, TOKEN, TempDir, binary, build};

const NEW_KEK: &str = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";

fn key_id(kek: &str) -> KeyId {
    Kek::from_base64(kek).expect("valid KEK").key_id()
}

fn settings(url: &str, extra: &[(&str, &str)]) -> Settings {
    let mut env: HashMap<String, String> = HashMap::from([
        ("DATABASE_URL".into(), url.to_owned()),
        ("SECRETS__SERVER__BIND".into(), "127.0.0.1:0".into()),
        ("SECRETS__SERVER__WORKERS".into(), "2".into()),
        ("SECRETS__STORAGE__POOL_SIZE".into(), "4".into()),
        ("SECRETS__SERVER__SHUTDOWN_TIMEOUT_SECS".into(), "1".into()),
        // The trail's lines of a rotation are tested in `audit.rs`.
        ("SECRETS__AUDIT__SINK".into(), "off".into()),
    ]);
    env.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    Settings::load(None, &env).expect("settings")
}

fn keys(active: Option<&str>, retired: &[&str], tokens: &[&str]) -> KeyMaterial {
    KeyMaterial {
        kek: active.map(|k| SecretString::from(k.to_owned())),
        retired: retired
            .iter()
            .map(|k| SecretString::from((*k).to_owned()))
            .collect(),
        tokens: tokens
            .iter()
            .map(|t| SecretString::from((*t).to_owned()))
            .collect(),
        audit: None,
    }
}

/// A running replica: its address and the guard that stops it.
struct Replica {
    address: String,
    _server: ServerGuard,
}

async fn start(url: &str, active: &str, retired: &[&str]) -> Replica {
    let application = build(settings(url, &[]), keys(Some(active), retired, &[TOKEN]))
        .await
        .expect("the replica starts");
    let address = format!("http://127.0.0.1:{}", application.port());
    let server = ServerGuard(application.handle());
    tokio::spawn(application.run_until_stopped());
    Replica {
        address,
        _server: server,
    }
}

fn call(client: &Client, replica: &Replica, method: Method, path: &str) -> reqwest::RequestBuilder {
    client
        .request(method, format!("{}{path}", replica.address))
        .bearer_auth(TOKEN)
}

const NAMESPACES: usize = 10_000;
const WITH_SECRETS: usize = 20;

/// Seeds 10,000 namespaces under the old KEK, then rotates to a new one with a replica serving
/// reads and writes throughout: first half of the batches (as if the run were interrupted),
/// then a full run that finishes the rest. Finally the old KEK is removed from the
/// configuration and everything still reads.
async fn rotate_under_load<S: SecretStore>(url: &str, store: S) {
    let client = Client::new();
    let old = start(url, TEST_KEK, &[]).await;
    let mut keys: Vec<String> = Vec::new();
    for _ in 0..NAMESPACES / 500 {
        let body: Value = call(&client, &old, Method::POST, "/namespaces/bulk")
            .json(&json!({"count": 500}))
            .send()
            .await
            .expect("sent")
            .json()
            .await
            .expect("json");
        keys.extend(
            body["accessKeys"]
                .as_array()
                .expect("keys")
                .iter()
                .map(|k| k.as_str().expect("key").to_owned()),
        );
    }
    assert_eq!(keys.len(), NAMESPACES);
    for (i, key) in keys.iter().take(WITH_SECRETS).enumerate() {
        let response = call(&client, &old, Method::POST, &format!("/namespaces/{key}"))
            .json(&json!({"key": "S", "value": format!("value-{i}")}))
            .send()
            .await
            .expect("sent");
        assert_eq!(response.status(), 201);
    }
    // The entity tags before the rotation: it changes no data, so it must change none of them.
    let mut etags = Vec::new();
    for key in keys.iter().take(WITH_SECRETS) {
        let response = call(&client, &old, Method::GET, &format!("/namespaces/{key}"))
            .send()
            .await
            .expect("sent");
        assert_eq!(response.status(), 200);
        etags.push(response.headers()["etag"].clone());
    }
    drop(old);

    // Every replica now runs with the new KEK active and the old one retired.
    let replica = start(url, NEW_KEK, &[TEST_KEK]).await;
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let (client, done, keys) = (client.clone(), done.clone(), keys.clone());
        let address = replica.address.clone();
        tokio::spawn(async move {
            let mut reads = 0u32;
            while !done.load(Ordering::Relaxed) {
                let i = reads as usize % WITH_SECRETS;
                let response = client
                    .get(format!("{address}/namespaces/{}", keys[i]))
                    .bearer_auth(TOKEN)
                    .send()
                    .await
                    .expect("sent");
                assert_eq!(response.status(), 200, "read during rotation");
                let body: Value = response.json().await.expect("json");
                assert_eq!(
                    body,
                    json!({"S": format!("value-{i}")}),
                    "read during rotation"
                );
                reads += 1;
            }
            reads
        })
    };
    let writer = {
        let (client, done, key) = (client.clone(), done.clone(), keys[NAMESPACES - 1].clone());
        let address = replica.address.clone();
        tokio::spawn(async move {
            let mut writes = 0u32;
            while !done.load(Ordering::Relaxed) {
                let response = client
                    .post(format!("{address}/namespaces/{key}"))
                    .bearer_auth(TOKEN)
                    .json(&json!({"key": "W", "value": format!("write-{writes}")}))
                    .send()
                    .await
                    .expect("sent");
                assert_eq!(response.status(), 201, "write during rotation");
                writes += 1;
            }
            writes
        })
    };

    let service = SecretsService::new(
        store,
        RingEnvelope::new(
            Kek::from_base64(NEW_KEK).expect("kek"),
            vec![Kek::from_base64(TEST_KEK).expect("kek")],
        ),
        OsRandom::default(),
        Limits::default(),
    );
    // An interrupted run: half of the batches, then it stops.
    let mut after = None;
    let mut first_run = 0;
    for _ in 0..NAMESPACES / 1000 {
        let batch = service.rewrap_batch(after, 500).await.expect("batch");
        assert!(batch.failed.is_empty());
        first_run += batch.rewrapped.len() as u64;
        after = batch.next;
    }
    assert_eq!(first_run, NAMESPACES as u64 / 2);
    // Run again: it finishes the rest.
    let report = rotate_kek(&service, 500, None, &mut Quiet)
        .await
        .expect("rotation");
    assert_eq!(report.failed, 0);
    assert_eq!(report.already_current, NAMESPACES as u64 / 2);
    assert_eq!(report.rewrapped + report.skipped, NAMESPACES as u64 / 2);
    assert_eq!(
        service.key_usage().await.expect("usage"),
        [(key_id(NEW_KEK), NAMESPACES as u64)]
    );

    done.store(true, Ordering::Relaxed);
    let read_count = reader.await.expect("the reader saw no error");
    let write_count = writer.await.expect("the writer saw no error");
    assert!(
        read_count > 0 && write_count > 0,
        "reads {read_count}, writes {write_count}"
    );
    drop(replica);

    // The old KEK is removed from the configuration: the service starts and everything reads.
    let current = start(url, NEW_KEK, &[]).await;
    for (i, key) in keys.iter().take(WITH_SECRETS).enumerate() {
        let body: Value = call(
            &client,
            &current,
            Method::GET,
            &format!("/namespaces/{key}"),
        )
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
        assert_eq!(body, json!({"S": format!("value-{i}")}));
    }
    let body: Value = call(
        &client,
        &current,
        Method::GET,
        &format!("/namespaces/{}", keys[NAMESPACES - 1]),
    )
    .send()
    .await
    .expect("sent")
    .json()
    .await
    .expect("json");
    assert_eq!(body, json!({"W": format!("write-{}", write_count - 1)}));
    for (key, etag) in keys.iter().zip(&etags) {
        let response = call(
            &client,
            &current,
            Method::GET,
            &format!("/namespaces/{key}"),
        )
        .header("If-None-Match", etag)
        .send()
        .await
        .expect("sent");
        assert_eq!(
            response.status(),
            304,
            "a KEK rotation changes no entity tag"
        );
        assert_eq!(&response.headers()["etag"], etag);
    }
}

fn two_connections() -> StoreOptions {
    StoreOptions {
        pool_size: std::num::NonZeroUsize::new(2).expect("non-zero"),
        timeout: std::time::Duration::from_secs(10),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kek_rotates_online_on_postgres_and_survives_an_interrupted_run() {
    let db = TestDatabase::create().await;
    let store = <PostgresStore as Store>::open(&db.url().to_owned().into(), two_connections())
        .await
        .expect("store");
    rotate_under_load(db.url(), store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kek_rotates_online_on_sqlite_and_survives_an_interrupted_run() {
    let dir = TempDir::new();
    let url = dir.url();
    // The replica creates the file and its schema; the rotation opens it afterwards.
    let replica = start(&url, TEST_KEK, &[]).await;
    drop(replica);
    let store = <SqliteStore as Store>::open(&dir.0.join("secrets.db"), two_connections())
        .await
        .expect("store");
    rotate_under_load(&url, store).await;
}

#[tokio::test]
async fn start_up_refuses_a_store_wrapped_under_an_unconfigured_key_and_names_its_id() {
    let db = TestDatabase::create().await;
    let old = start(db.url(), TEST_KEK, &[]).await;
    let response = call(&Client::new(), &old, Method::POST, "/namespaces")
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 201);
    drop(old);
    let error = build(settings(db.url(), &[]), keys(Some(NEW_KEK), &[], &[TOKEN]))
        .await
        .expect_err("must refuse");
    let message = error.to_string();
    assert!(message.contains(key_id(TEST_KEK).as_str()), "{message}");
    assert!(message.contains("KEY_ENCRYPTION_KEYS_RETIRED"), "{message}");
}

#[tokio::test]
async fn start_up_refuses_a_kek_that_fails_its_key_check() {
    let db = TestDatabase::create().await;
    drop(start(db.url(), TEST_KEK, &[]).await);
    let (client, connection) = tokio_postgres::connect(db.url(), tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    // Replace the stored check with one sealed by some other key under the same id.
    let changed = client
        .execute(
            "UPDATE key_checks SET check_ct = set_byte(check_ct, 20, get_byte(check_ct, 20) # 1)",
            &[],
        )
        .await
        .expect("tamper");
    assert_eq!(changed, 1);
    let error = build(settings(db.url(), &[]), keys(Some(TEST_KEK), &[], &[TOKEN]))
        .await
        .expect_err("must refuse");
    let message = error.to_string();
    assert!(message.contains("failed its key check"), "{message}");
    assert!(message.contains(key_id(TEST_KEK).as_str()), "{message}");
}

#[tokio::test]
async fn production_mode_and_postgres_refuse_to_start_without_keys_naming_what_is_missing() {
    let db = TestDatabase::create().await;
    let dir = TempDir::new();
    let sqlite_production = settings(&dir.url(), &[("SECRETS__MODE", "production")]);
    let cases = [
        (
            "production, no KEK",
            sqlite_production.clone(),
            keys(None, &[], &[TOKEN]),
            "KEY_ENCRYPTION_KEY",
        ),
        (
            "production, no token",
            sqlite_production.clone(),
            keys(Some(TEST_KEK), &[], &[]),
            "SERVICE_AUTH_TOKENS",
        ),
        (
            "production, nothing: both named at once",
            sqlite_production,
            keys(None, &[], &[]),
            "KEY_ENCRYPTION_KEY and SERVICE_AUTH_TOKENS are not set",
        ),
        (
            "postgres, nothing: both named at once",
            settings(db.url(), &[]),
            keys(None, &[], &[]),
            "KEY_ENCRYPTION_KEY and SERVICE_AUTH_TOKENS are not set",
        ),
        (
            "postgres, no token",
            settings(db.url(), &[]),
            keys(Some(TEST_KEK), &[], &[]),
            "SERVICE_AUTH_TOKENS",
        ),
        (
            "bad KEK",
            settings(db.url(), &[]),
            keys(Some("c2hvcnQ="), &[], &[TOKEN]),
            "KEY_ENCRYPTION_KEY",
        ),
    ];
    for (why, settings, keys, named) in cases {
        let error = build(settings, keys).await.expect_err(why);
        let message = error.to_string();
        assert!(message.contains(named), "{why}: {message}");
        assert!(
            !message.contains("c2hvcnQ"),
            "{why}: the key itself is never echoed"
        );
    }
    assert!(
        !dir.0.join(secrets_api::keys::dev::FILE_NAME).exists(),
        "production mode generates nothing"
    );
}

#[test]
fn gen_key_prints_a_fresh_base64_32_byte_key() {
    let run = || {
        let output = binary().arg("gen-key").output().expect("runs");
        assert!(output.status.success());
        String::from_utf8(output.stdout)
            .expect("utf-8")
            .trim()
            .to_owned()
    };
    let (first, second) = (run(), run());
    assert_ne!(first, second);
    for key in [&first, &second] {
        Kek::from_base64(key).expect("a valid 32-byte key");
    }
}

#[tokio::test]
async fn the_check_command_passes_with_the_right_kek_and_fails_naming_the_missing_id() {
    let db = TestDatabase::create().await;
    drop(start(db.url(), TEST_KEK, &[]).await);
    let response = {
        let replica = start(db.url(), TEST_KEK, &[]).await;
        call(&Client::new(), &replica, Method::POST, "/namespaces")
            .send()
            .await
            .expect("sent")
    };
    assert_eq!(response.status(), 201);
    let check = |kek: &str| {
        binary()
            .arg("check")
            .env("SECRETS__AUDIT__SINK", "off")
            .env("DATABASE_URL", db.url())
            .env("KEY_ENCRYPTION_KEY", kek)
            .env("SERVICE_AUTH_TOKENS", TOKEN)
            .output()
            .expect("runs")
    };
    let good = check(TEST_KEK);
    assert!(
        good.status.success(),
        "{}",
        String::from_utf8_lossy(&good.stderr)
    );
    let bad = check(NEW_KEK);
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(stderr.contains(key_id(TEST_KEK).as_str()), "{stderr}");
}
