//! The audit trail as a caller and an investigator see it: one line per request, every route
//! and outcome, on both stores; the fields an investigator searches; a sink that fails answers
//! 503 and counts it, then recovers by itself; `audit verify` and `audit hash` as an operator
//! runs them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use reqwest::{Client, Method, StatusCode};
use secrets_adapters::audit::{AuditKey, TokenId};
use secrets_adapters::crypto::Kek;
use secrets_adapters::testing::TestDatabase;
use secrets_api::Settings;
use secrets_domain::{AccessKey, NamespaceId, SecretName};
use serde_json::{Value, json};

use crate::helpers::{
    Options, ServerGuard, TEST_KEK, TOKEN, TempDir, binary, build, create_namespace_at,
    key_material, spawn_app_on,
};

/// The audit key the test KEK derives (no `AUDIT_KEY` is set).
fn audit_key() -> AuditKey {
    Kek::from_base64(TEST_KEK)
        .expect("the test KEK")
        .audit_key()
}

/// Runs `secrets-service audit verify` on `files` with the store of `dir`, the test KEK and
/// `extra`; whether it passed, and its report.
fn audit_verify(dir: &TempDir, files: &[&Path], extra: &[(&str, &str)]) -> (bool, String) {
    let output = binary()
        .args(["audit", "verify"])
        .args(files)
        .env("KEY_ENCRYPTION_KEY", TEST_KEK)
        .env("DATABASE_URL", dir.url())
        .envs(extra.iter().copied())
        .output()
        .expect("runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

/// The trail's lines, by request id (each request id must have exactly one line).
fn lines_by_request(file: &Path) -> HashMap<String, Value> {
    let text = std::fs::read_to_string(file).expect("the audit file");
    let mut by_id = HashMap::new();
    for line in text.lines() {
        let line: Value = serde_json::from_str(line).expect("a JSON line");
        if line["type"] == "request" {
            let id = line["request_id"].as_str().expect("request_id").to_owned();
            assert!(
                by_id.insert(id.clone(), line).is_none(),
                "two lines for {id}"
            );
        }
    }
    by_id
}

/// A service on the embedded store in `dir`, with the audit file at its default place.
async fn spawn_sqlite(dir: &TempDir, extra: &[(&str, &str)]) -> (String, ServerGuard) {
    let mut env: HashMap<String, String> = HashMap::from([
        ("DATABASE_URL".into(), dir.url()),
        ("SECRETS__SERVER__BIND".into(), "127.0.0.1:0".into()),
        ("SECRETS__SERVER__WORKERS".into(), "2".into()),
        ("SECRETS__COMPAT__ORIGINAL_ROUTES".into(), "true".into()),
    ]);
    env.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    let settings = Settings::load(None, &env).expect("settings");
    let application = build(settings, key_material(&Options::default()))
        .await
        .expect("starts");
    let address = format!("http://127.0.0.1:{}", application.port());
    let handle = application.handle();
    tokio::spawn(application.run_until_stopped());
    (address, ServerGuard(handle))
}

struct Caller {
    client: Client,
    address: String,
    sent: u32,
}

/// What one request is expected to leave in the trail.
struct Expected {
    operation: &'static str,
    route: &'static str,
    status: u16,
    error: Option<&'static str>,
    /// Whether the line names a namespace, and its access key's tag.
    namespace: bool,
    /// The secret name the line's tag is of.
    secret: Option<&'static str>,
    /// Whether the service token was accepted.
    authorized: bool,
}

impl Caller {
    /// Sends a request with a request id of its own; returns the id and the answer.
    async fn send(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Value>,
        token: Option<&str>,
    ) -> (String, StatusCode, Value) {
        self.sent += 1;
        let id = format!("audit-test-{}", self.sent);
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.address))
            .header("X-Request-Id", &id);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("sent");
        let status = response.status();
        let body = response.json().await.unwrap_or(Value::Null);
        (id, status, body)
    }
}

/// Calls every route, on success and error paths, and checks each request's one line.
async fn every_route_and_outcome(address: String, file: &Path, original_routes: bool) {
    let key = audit_key();
    let mut caller = Caller {
        client: Client::new(),
        address,
        sent: 0,
    };
    let token = Some(TOKEN);
    let mut expected: Vec<(String, Expected)> = Vec::new();
    let expect = |operation, route, status, error, namespace, secret| Expected {
        operation,
        route,
        status,
        error,
        namespace,
        secret,
        authorized: true,
    };

    let (id, status, body) = caller.send(Method::POST, "/namespaces", None, token).await;
    assert_eq!(status, 201);
    let access = body["accessKey"].as_str().expect("key").to_owned();
    expected.push((
        id,
        expect("create_namespace", "/namespaces", 201, None, true, None),
    ));
    let ns = format!("/namespaces/{access}");
    let route_ns = "/namespaces/{accessKey}";
    let route_secret = "/namespaces/{accessKey}/secrets/{key}";
    let calls: Vec<(Method, String, Option<Value>, Expected)> = vec![
        (
            Method::POST,
            "/namespaces/bulk".into(),
            Some(json!({"count": 2})),
            expect(
                "create_namespaces",
                "/namespaces/bulk",
                201,
                None,
                false,
                None,
            ),
        ),
        (
            Method::POST,
            ns.clone(),
            Some(json!({"key": "DB_URL", "value": "v1"})),
            expect("write_secret", route_ns, 201, None, true, Some("DB_URL")),
        ),
        (
            Method::PUT,
            format!("{ns}/secrets/OTHER"),
            Some(json!({"value": "v2"})),
            expect("put_secret", route_secret, 201, None, true, Some("OTHER")),
        ),
        (
            Method::GET,
            ns.clone(),
            None,
            expect("read_namespace", route_ns, 200, None, true, None),
        ),
        (
            Method::GET,
            format!("{ns}/secrets/DB_URL"),
            None,
            expect("read_secret", route_secret, 200, None, true, Some("DB_URL")),
        ),
        (
            Method::GET,
            format!("{ns}/secrets/MISSING"),
            None,
            expect(
                "read_secret",
                route_secret,
                404,
                Some("secret_not_found"),
                true,
                Some("MISSING"),
            ),
        ),
        (
            Method::GET,
            format!("{ns}/keys"),
            None,
            expect(
                "list_keys",
                "/namespaces/{accessKey}/keys",
                200,
                None,
                true,
                None,
            ),
        ),
        (
            Method::PATCH,
            ns.clone(),
            Some(json!({"NEW": "x", "OTHER": null})),
            expect("patch_namespace", route_ns, 200, None, true, None),
        ),
        (
            Method::POST,
            ns.clone(),
            Some(json!({"key": "", "value": "v"})),
            expect(
                "write_secret",
                route_ns,
                400,
                Some("invalid_request"),
                false,
                None,
            ),
        ),
        (
            Method::DELETE,
            format!("{ns}/secrets/NEW"),
            None,
            expect("delete_secret", route_secret, 204, None, true, Some("NEW")),
        ),
        (
            Method::PUT,
            ns.clone(),
            None,
            expect(
                "method_not_allowed",
                route_ns,
                405,
                Some("method_not_allowed"),
                false,
                None,
            ),
        ),
        (
            Method::GET,
            "/namespaces/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into(),
            None,
            expect(
                "read_namespace",
                route_ns,
                404,
                Some("namespace_not_found"),
                false,
                None,
            ),
        ),
        (
            Method::GET,
            "/nowhere".into(),
            None,
            // An unknown route outside `/namespaces` is not behind the token: no caller.
            Expected {
                authorized: false,
                ..expect(
                    "unknown_route",
                    "<unmatched>",
                    404,
                    Some("not_found"),
                    false,
                    None,
                )
            },
        ),
        (
            Method::GET,
            "/metrics".into(),
            None,
            expect("read_metrics", "/metrics", 200, None, false, None),
        ),
        (
            Method::GET,
            "/openapi.json".into(),
            None,
            // The document needs no token: no caller.
            Expected {
                authorized: false,
                ..expect("read_openapi", "/openapi.json", 200, None, false, None)
            },
        ),
    ];
    for (method, path, body, want) in calls {
        let (id, status, _) = caller.send(method, &path, body, token).await;
        assert_eq!(status.as_u16(), want.status, "{} {path}", want.operation);
        expected.push((id, want));
    }
    // Without the token: 401, and the line has no caller.
    let (id, status, _) = caller.send(Method::GET, &ns, None, Some("wrong")).await;
    assert_eq!(status, 401);
    expected.push((
        id,
        Expected {
            authorized: false,
            ..expect(
                "read_namespace",
                route_ns,
                401,
                Some("unauthorized"),
                false,
                None,
            )
        },
    ));
    if original_routes {
        let query = format!("/secrets?accessKey={access}");
        let (id, status, _) = caller
            .send(Method::GET, &format!("{query}&mode=private"), None, token)
            .await;
        assert_eq!(status, 200);
        expected.push((
            id,
            expect("original_read_secrets", "/secrets", 200, None, true, None),
        ));
        let (id, status, _) = caller
            .send(
                Method::POST,
                &query,
                Some(json!({"key": "VIA_ORIGINAL", "value": "x"})),
                token,
            )
            .await;
        assert_eq!(status, 201);
        expected.push((
            id,
            expect(
                "original_write_secret",
                "/secrets",
                201,
                None,
                true,
                Some("VIA_ORIGINAL"),
            ),
        ));
        let (id, status, _) = caller
            .send(
                Method::DELETE,
                "/?accessKey=AAAAAAAAAAAAAAAAAAAAA",
                None,
                token,
            )
            .await;
        assert_eq!(status, 404);
        expected.push((
            id,
            expect(
                "original_delete_namespace",
                "/",
                404,
                Some("namespace_not_found"),
                false,
                None,
            ),
        ));
    }
    let (id, status, _) = caller
        .send(Method::POST, &format!("{ns}/access-key"), None, token)
        .await;
    assert_eq!(status, 201);
    expected.push((
        id,
        expect(
            "rotate_access_key",
            "/namespaces/{accessKey}/access-key",
            201,
            None,
            true,
            None,
        ),
    ));
    // Probes are not recorded.
    for probe in ["/healthz", "/readyz"] {
        let (id, status, _) = caller.send(Method::GET, probe, None, None).await;
        assert_eq!(status, 200);
        assert!(!lines_by_request(file).contains_key(&id), "{probe}");
    }

    // Every answer above was sent after its line was written: no waiting.
    let lines = lines_by_request(file);
    assert_eq!(lines.len(), expected.len(), "one line per request");
    let namespace_id = lines[&expected[0].0]["namespace"]
        .as_str()
        .expect("the created namespace's id")
        .to_owned();
    let namespace = NamespaceId::from_uuid(namespace_id.parse().expect("a UUID"));
    let access_tag = key
        .access_key_tag(&AccessKey::parse(&access).expect("access key").hash())
        .to_string();
    let caller_id = TokenId::of(TOKEN.as_bytes()).to_string();
    for (id, want) in &expected {
        let line = &lines[id];
        let what = format!("{id} ({}): {line}", want.operation);
        assert_eq!(line["operation"], want.operation, "{what}");
        assert_eq!(line["route"], want.route, "{what}");
        assert_eq!(line["status"], want.status, "{what}");
        assert_eq!(line["error"].as_str(), want.error, "{what}");
        assert!(line["latency_us"].as_u64().is_some(), "{what}");
        assert!(
            line["time"]
                .as_str()
                .is_some_and(|t| t.len() == 27 && t.ends_with('Z')),
            "{what}"
        );
        assert_eq!(
            line["caller"].as_str(),
            want.authorized.then_some(caller_id.as_str()),
            "{what}"
        );
        if want.namespace {
            assert_eq!(line["namespace"], namespace_id, "{what}");
            if want.operation != "create_namespace" {
                assert_eq!(line["access_key"], access_tag, "{what}");
            }
        } else {
            assert_eq!(line["namespace"], Value::Null, "{what}");
        }
        let secret = want.secret.map(|name| {
            key.secret_name_tag(namespace, &SecretName::parse(name).expect("name"))
                .to_string()
        });
        assert_eq!(line["secret"].as_str(), secret.as_deref(), "{what}");
    }
    let bulk = &lines[&expected[1].0];
    assert_eq!(bulk["created"].as_array().map(Vec::len), Some(2), "{bulk}");
}

#[tokio::test]
async fn every_route_and_outcome_writes_one_line_on_postgresql() {
    let db = TestDatabase::create().await;
    let file = db.audit_file();
    let app = spawn_app_on(
        db,
        Options {
            env: vec![("SECRETS__COMPAT__ORIGINAL_ROUTES", "true".into())],
            ..Options::default()
        },
    )
    .await;
    every_route_and_outcome(app.address.clone(), &file, true).await;
}

#[tokio::test]
async fn every_route_and_outcome_writes_one_line_on_sqlite_beside_the_database() {
    let dir = TempDir::new();
    let (address, _server) = spawn_sqlite(&dir, &[]).await;
    every_route_and_outcome(address, &dir.0.join("audit.log"), true).await;
}

/// Waits until `/readyz` answers `status`.
async fn ready_becomes(client: &Client, address: &str, status: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answered = client
            .get(format!("{address}/readyz"))
            .send()
            .await
            .expect("sent")
            .status();
        if answered == status {
            return;
        }
        assert!(Instant::now() < deadline, "readyz stayed {answered}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn refusals(metrics: &str) -> u64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix("secrets_audit_refusals_total "))
        .and_then(|n| n.trim().parse().ok())
        .expect("the refusal counter")
}

#[tokio::test]
async fn a_full_sink_answers_503_with_the_metric_and_the_trail_recovers_by_itself() {
    let dir = TempDir::new();
    let (address, _server) = spawn_sqlite(&dir, &[("SECRETS__AUDIT__TIMEOUT_MS", "1000")]).await;
    let file = dir.0.join("audit.log");
    let client = Client::new();
    let request = |method: Method, path: &str| {
        client
            .request(method, format!("{address}{path}"))
            .bearer_auth(TOKEN)
    };
    let ns = format!(
        "/namespaces/{}",
        create_namespace_at(&client, &address).await
    );

    // The disk fills: every write to /dev/full fails with ENOSPC.
    let before = dir.0.join("audit.log.1");
    std::fs::rename(&file, &before).expect("move the trail");
    std::os::unix::fs::symlink("/dev/full", &file).expect("symlink");
    let refused = request(Method::POST, &ns)
        .json(&json!({"key": "A", "value": "1"}))
        .send()
        .await
        .expect("sent");
    assert_eq!(refused.status(), 503);
    let body: Value = refused.json().await.expect("json");
    assert_eq!(body["error"]["code"], "audit_unavailable");
    // While it fails, requests are refused before they run: nothing changes unrecorded.
    let read = request(Method::GET, &ns).send().await.expect("sent");
    assert_eq!(read.status(), 503);
    ready_becomes(&client, &address, 503).await;
    let metrics = request(Method::GET, "/metrics").send().await.expect("sent");
    assert_eq!(
        metrics.status(),
        503,
        "metrics are a request like any other"
    );

    // Room again: the trail comes back by itself.
    std::fs::remove_file(&file).expect("unlink");
    ready_becomes(&client, &address, 200).await;
    let read = request(Method::GET, &ns).send().await.expect("sent");
    assert_eq!(read.status(), 200);
    let metrics = request(Method::GET, "/metrics")
        .send()
        .await
        .expect("sent")
        .text()
        .await
        .expect("text");
    assert_eq!(refusals(&metrics), 3, "{metrics}");
    let after = std::fs::read_to_string(&file).expect("the new file");
    assert!(after.contains(r#""reason":"recovered""#), "{after}");
    // The two files verify as one trail, the gap announced by the chain itself.
    let (ok, report) = audit_verify(&dir, &[&before, &file], &[]);
    assert!(ok, "{report}");
    assert!(report.contains("lost to a failed write"), "{report}");
}

#[tokio::test]
async fn audit_verify_names_an_edited_line_and_audit_hash_finds_a_key_and_a_name() {
    let dir = TempDir::new();
    let (address, server) = spawn_sqlite(&dir, &[]).await;
    let client = Client::new();
    let access = create_namespace_at(&client, &address).await;
    let read = client
        .get(format!("{address}/namespaces/{access}/secrets/WHO_READ_ME"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("sent");
    assert_eq!(read.status(), 404);
    server.0.stop(true).await;
    let file: PathBuf = dir.0.join("audit.log");
    let text = std::fs::read_to_string(&file).expect("trail");
    assert!(
        text.lines()
            .last()
            .is_some_and(|l| l.contains(r#""type":"end""#))
    );

    let run = |args: &[&str], stdin: &str| {
        use std::io::Write as _;
        let mut child = binary()
            .args(args)
            .env("KEY_ENCRYPTION_KEY", TEST_KEK)
            .env("DATABASE_URL", dir.url())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("runs");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin.as_bytes())
            .expect("written");
        let output = child.wait_with_output().expect("ends");
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
        )
    };
    let path = file.display().to_string();
    let (code, report) = run(&["audit", "verify", &path], "");
    assert_eq!(code, Some(0), "{report}");
    assert!(report.contains("1 chains (1 ended)"), "{report}");

    // The investigator's identifiers, as the lines hold them.
    let (code, hashed) = run(&["audit", "hash", "--access-key"], &format!("{access}\n"));
    assert_eq!(code, Some(0));
    let tag = hashed
        .split_whitespace()
        .nth(3)
        .expect("key_id <id> access_key <tag>");
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    let reads: Vec<&Value> = lines.iter().filter(|l| l["access_key"] == tag).collect();
    assert_eq!(reads.len(), 1, "{hashed}");
    let namespace = reads[0]["namespace"].as_str().expect("namespace");
    let (_, hashed) = run(
        &["audit", "hash", "--secret-name", namespace],
        "WHO_READ_ME\n",
    );
    let tag = hashed.split_whitespace().nth(3).expect("a tag");
    assert_eq!(reads[0]["secret"], tag, "{hashed}");
    let (_, hashed) = run(&["audit", "hash", "--token"], &format!("{TOKEN}\n"));
    assert_eq!(
        hashed.trim(),
        format!("caller {}", TokenId::of(TOKEN.as_bytes()))
    );

    // One character changed: named by its line.
    let edited = text.replacen(r#""status":404"#, r#""status":200"#, 1);
    std::fs::write(&file, edited).expect("edit");
    let (code, report) = run(&["audit", "verify", &path], "");
    assert_eq!(code, Some(1), "{report}");
    assert!(
        report.contains(&format!("{path}:3: changed or inserted")),
        "{report}"
    );
}

#[tokio::test]
async fn a_stuck_sink_never_hangs_a_request_and_the_trail_recovers_when_it_drains() {
    use std::io::Read as _;
    let dir = TempDir::new();
    let log = dir.0.join("service.log");
    // Standard output is a pipe nobody reads yet: once its buffer is full, the writer blocks.
    let mut child = binary()
        .arg("serve")
        .env("DATABASE_URL", dir.url())
        .env("KEY_ENCRYPTION_KEY", TEST_KEK)
        .env("SERVICE_AUTH_TOKENS", TOKEN)
        .env("SECRETS__SERVER__BIND", "127.0.0.1:0")
        .env("SECRETS__AUDIT__SINK", "stdout")
        .env("SECRETS__AUDIT__TIMEOUT_MS", "300")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("starts");
    let deadline = Instant::now() + Duration::from_secs(30);
    let port = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(port) = text.lines().find_map(crate::common::listening_port) {
            break port;
        }
        assert!(Instant::now() < deadline, "did not start:\n{text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let address = format!("http://127.0.0.1:{port}");
    let client = Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let read = || async {
        let started = Instant::now();
        let response = client
            .get(format!("{address}/metrics"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("answered, never hung");
        (response.status(), started.elapsed())
    };
    let mut answered = 0;
    let refused_after = loop {
        let (status, took) = read().await;
        if status == 503 {
            break took;
        }
        assert_eq!(status, 200);
        answered += 1;
        assert!(answered < 5_000, "the pipe never filled");
    };
    assert!(answered > 10, "{answered} answered before the pipe filled");
    assert!(
        refused_after < Duration::from_secs(3),
        "a stuck sink held a request for {refused_after:?}"
    );
    // Refused at once while the trail is stuck, without waiting on it.
    let (status, took) = read().await;
    assert_eq!(status, 503);
    assert!(took < Duration::from_secs(1), "{took:?}");

    // The pipe drains: the trail recovers by itself.
    let mut stdout = child.stdout.take().expect("stdout");
    let drained = std::thread::spawn(move || {
        let mut text = String::new();
        drop(stdout.read_to_string(&mut text));
        text
    });
    ready_becomes(&client, &address, 200).await;
    let (status, _) = read().await;
    assert_eq!(status, 200);
    child.kill().expect("kill");
    child.wait().expect("reaped");
    let trail = drained.join().expect("drained");
    let written = trail
        .lines()
        .filter(|l| l.contains(r#""type":"request""#))
        .count();
    // Every answered request's line went out, the refused ones' too once the pipe drained.
    assert!(written > answered, "{written} lines for {answered} answers");
}

#[tokio::test]
async fn an_audit_key_of_its_own_seals_and_tags_the_trail() {
    let own = "qM8nqjDvLkR9Sxq3RvD3mG0wVv8b9q8h9b4g8V2PZ1Q=";
    let dir = TempDir::new();
    let env: HashMap<String, String> = HashMap::from([
        ("DATABASE_URL".into(), dir.url()),
        ("SECRETS__SERVER__BIND".into(), "127.0.0.1:0".into()),
    ]);
    let mut keys = key_material(&Options::default());
    keys.audit = Some(secrecy::SecretString::from(own));
    let application = build(Settings::load(None, &env).expect("settings"), keys)
        .await
        .expect("starts");
    let address = format!("http://127.0.0.1:{}", application.port());
    let server = ServerGuard(application.handle());
    tokio::spawn(application.run_until_stopped());
    let access = create_namespace_at(&Client::new(), &address).await;
    let read = Client::new()
        .get(format!("{address}/namespaces/{access}"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("sent");
    assert_eq!(read.status(), 200);
    server.0.stop(true).await;

    let key = Kek::from_base64(own).expect("a key").as_audit_key();
    assert_ne!(key.id(), audit_key().id(), "not the KEK's");
    let text = std::fs::read_to_string(dir.0.join("audit.log")).expect("trail");
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(lines[0]["type"], "start");
    assert_eq!(lines[0]["key_id"], key.id().as_str());
    let tag = key
        .access_key_tag(&AccessKey::parse(&access).expect("key").hash())
        .to_string();
    assert!(lines.iter().any(|l| l["access_key"] == tag), "{text}");
    // Verified with that key alone, and not with the KEK's.
    let file = dir.0.join("audit.log");
    assert!(audit_verify(&dir, &[&file], &[("AUDIT_KEY", own)]).0);
    let (ok, report) = audit_verify(&dir, &[&file], &[]);
    assert!(!ok);
    assert!(report.contains("not configured"), "{report}");
}

#[tokio::test]
async fn check_reads_the_audit_sink_as_serve_would() {
    let keys = [
        ("KEY_ENCRYPTION_KEY", TEST_KEK),
        ("SERVICE_AUTH_TOKENS", TOKEN),
    ];
    let check = |env: &[(&str, &str)]| {
        let output = binary()
            .arg("check")
            .envs(keys)
            .envs(env.iter().copied())
            .output()
            .expect("runs");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    // On PostgreSQL, a file sink needs its path.
    let db = TestDatabase::create().await;
    let migrated = binary()
        .arg("migrate")
        .env("DATABASE_URL", db.url())
        .output()
        .expect("runs");
    assert!(migrated.status.success(), "migrate needs no audit trail");
    let (ok, said) = check(&[("DATABASE_URL", db.url())]);
    assert!(!ok);
    assert!(said.contains("audit.path is not set"), "{said}");
    let file = db.audit_file();
    let (ok, said) = check(&[
        ("DATABASE_URL", db.url()),
        ("SECRETS__AUDIT__PATH", file.to_str().expect("path")),
    ]);
    assert!(ok, "{said}");
    assert!(file.exists(), "check creates the file, as serve would");
    // A path that cannot be a file is named.
    let dir = TempDir::new();
    let blocked = dir.0.join("a-file");
    std::fs::write(&blocked, "").expect("file");
    let path = blocked.join("audit.log");
    let (ok, said) = check(&[
        ("DATABASE_URL", &dir.url()),
        ("SECRETS__AUDIT__PATH", path.to_str().expect("path")),
    ]);
    assert!(!ok);
    assert!(
        said.contains(&format!("audit.path {}", path.display())),
        "{said}"
    );
}

#[tokio::test]
async fn with_the_trail_on_standard_output_a_command_s_result_goes_to_standard_error() {
    let dir = TempDir::new();
    let run = |args: &[&str]| {
        binary()
            .args(args)
            .env("DATABASE_URL", dir.url())
            .env("KEY_ENCRYPTION_KEY", TEST_KEK)
            .env("SECRETS__AUDIT__SINK", "stdout")
            .output()
            .expect("runs")
    };
    assert!(run(&["migrate"]).status.success());
    let rotated = run(&["rotate-kek"]);
    assert!(rotated.status.success());
    let stdout = String::from_utf8_lossy(&rotated.stdout);
    let lines: Vec<Value> = stdout
        .lines()
        .map(|line| serde_json::from_str(line).expect("only audit lines"))
        .collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert_eq!(lines[0]["process"], "rotate-kek");
    assert_eq!(lines[1]["type"], "end");
    assert!(String::from_utf8_lossy(&rotated.stderr).contains("re-wrapped: 0"));
    let trail = dir.0.join("trail.log");
    std::fs::write(&trail, stdout.as_bytes()).expect("saved");
    let (ok, report) = audit_verify(&dir, &[&trail], &[]);
    assert!(ok, "{report}");
}

#[cfg(unix)]
#[tokio::test]
async fn sighup_opens_the_audit_file_anew_and_the_chain_goes_on() {
    let dir = TempDir::new();
    let file = dir.0.join("audit.log");
    let service = crate::common::ServiceProcess::start(
        &["serve"],
        &[
            ("DATABASE_URL", dir.url()),
            ("KEY_ENCRYPTION_KEY", TEST_KEK.to_owned()),
            ("SERVICE_AUTH_TOKENS", TOKEN.to_owned()),
            ("SECRETS__SERVER__BIND", "127.0.0.1:0".to_owned()),
        ],
    );
    let metrics = Client::new()
        .get(service.url("/metrics"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("sent");
    assert_eq!(metrics.status(), 200);
    service.signal(nix::sys::signal::Signal::SIGHUP);
    // The writer opens the path anew on its own within an idle round, with or without traffic.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&file)
        .unwrap_or_default()
        .contains(r#""reason":"sighup""#)
    {
        assert!(Instant::now() < deadline, "no reopen line after SIGHUP");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(service.output().contains("SIGHUP"), "{}", service.output());
    service.signal(nix::sys::signal::Signal::SIGTERM);
    let (status, _) = service.finish(Duration::from_secs(30));
    assert!(status.success());
    let (ok, report) = audit_verify(&dir, &[&file], &[]);
    assert!(ok, "{report}");
    assert!(report.contains("1 chains (1 ended)"), "{report}");
}
