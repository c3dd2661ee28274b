//! Nothing secret reaches the output, at any log level (SPEC 7).
//!
//! The real binary runs with `RUST_LOG=trace`, the most verbose level there is, for the
//! dependencies as much as for this code, and every endpoint is called, on its success paths
//! and on its error paths, the original service's routes included (they carry access keys and
//! names in the query string). Then everything the process printed from start-up to exit, standard
//! error and standard output, is searched for every access key, token, key-encryption key,
//! secret name and value it was given or gave out, in the encodings a careless log line would
//! use: as is, percent-encoded (as in a path), hex, base64, base64url, and a 16-character
//! prefix of each.
//!
//! The keys and the token are configured explicitly: with none configured, a development
//! instance prints its generated token on purpose (SPEC 6), and that banner is not a log line.
//!
//! The audit trail is searched the same way: on the embedded store it is the file beside the
//! database, on PostgreSQL it goes to standard output, with the logs on standard error.
//!
//! This is a test binary of its own so that nothing else runs in the process under test; it
//! runs once on the embedded store with text logs and once on PostgreSQL with JSON logs.

// The scenario walks every endpoint in order; splitting it to meet a line count would hide it.
#![allow(clippy::too_many_lines)]

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use base64::Engine as _;
use common::ServiceProcess;
use reqwest::{Client, Method};
use secrets_adapters::testing::TestDatabase;
use serde_json::{Value, json};

/// Every route template the service has, and the placeholder of an unmatched one; the run
/// must log a request under each.
const ROUTES: &[&str] = &[
    "/namespaces",
    "/namespaces/bulk",
    "/namespaces/{accessKey}",
    "/namespaces/{accessKey}/keys",
    "/namespaces/{accessKey}/access-key",
    "/namespaces/{accessKey}/secrets/{key}",
    "/healthz",
    "/readyz",
    "/metrics",
    "/openapi.json",
    "/",
    "/bulk",
    "/secrets",
    "/heartbeat",
    "<unmatched>",
];

/// What the run must never print, collected as it goes.
#[derive(Default)]
struct Needles(Vec<String>);

impl Needles {
    fn add(&mut self, secret: impl Into<String>) -> String {
        let secret = secret.into();
        self.0.push(secret.clone());
        secret
    }

    /// Each secret in every encoding a log line might use.
    fn encodings(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for secret in &self.0 {
            let bytes = secret.as_bytes();
            let mut forms = vec![
                secret.clone(),
                percent_encode(secret),
                hex(bytes),
                base64::engine::general_purpose::STANDARD.encode(bytes),
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes),
                secret.chars().take(16).collect(),
            ];
            // Access keys and keys are base64 of random bytes: their bytes' hex too.
            for engine in [
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                &base64::engine::general_purpose::STANDARD,
            ] {
                if let Ok(raw) = engine.decode(secret)
                    && raw.len() >= 16
                {
                    forms.push(hex(&raw));
                }
            }
            out.extend(forms.into_iter().map(|form| (secret.clone(), form)));
        }
        out
    }
}

/// Lowercase hex.
fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A fresh key from the binary's own `gen-key` command.
fn generate_kek() -> String {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_secrets-service"))
        .arg("gen-key")
        .env_clear()
        .output()
        .expect("run gen-key");
    assert!(output.status.success());
    String::from_utf8(output.stdout)
        .expect("utf-8")
        .trim()
        .to_owned()
}

struct Caller<'a> {
    client: Client,
    service: &'a ServiceProcess,
    token: String,
}

impl Caller<'_> {
    /// Sends a request; answers the status and the body.
    async fn send(&self, method: Method, path: &str, body: Option<(&str, String)>) -> (u16, Value) {
        self.send_as(&self.token, method, path, body).await
    }

    async fn send_as(
        &self,
        token: &str,
        method: Method,
        path: &str,
        body: Option<(&str, String)>,
    ) -> (u16, Value) {
        let mut request = self
            .client
            .request(method, self.service.url(path))
            .bearer_auth(token);
        if let Some((content_type, body)) = body {
            request = request.header("content-type", content_type).body(body);
        }
        let response = request.send().await.expect("sent");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
}

fn json_body(value: &Value) -> (&'static str, String) {
    ("application/json", value.to_string())
}

fn access_key(body: &Value) -> String {
    body["accessKey"].as_str().expect("accessKey").to_owned()
}

/// Calls every endpoint on its success paths, recording every secret involved.
async fn exercise_successes(caller: &Caller<'_>, needles: &mut Needles) -> Exercised {
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let tag = &tag[..10];
    let name = needles.add(format!("REDACT_NAME_{tag}"));
    let unicode = needles.add(format!("ключ/REDACT_{tag}"));
    let patched = needles.add(format!("PATCHED_{tag}"));
    let value = needles.add(format!("redact-value-{tag}"));
    let updated = needles.add(format!("redact-updated-{tag}"));
    let other = needles.add(format!("redact-other-{tag}"));
    let patch_value = needles.add(format!("redact-patch-{tag}"));

    let (status, body) = caller.send(Method::POST, "/namespaces", None).await;
    assert_eq!(status, 201);
    let key = needles.add(access_key(&body));
    let (status, body) = caller
        .send(Method::POST, "/namespaces", Some(json_body(&json!({}))))
        .await;
    assert_eq!(status, 201);
    let doomed = needles.add(access_key(&body));
    let (status, body) = caller
        .send(
            Method::POST,
            "/namespaces/bulk",
            Some(json_body(&json!({"count": 2}))),
        )
        .await;
    assert_eq!(status, 201);
    let bulk: Vec<String> = body["accessKeys"]
        .as_array()
        .expect("accessKeys")
        .iter()
        .map(|k| needles.add(k.as_str().expect("key")))
        .collect();

    let path = format!("/namespaces/{key}");
    for (n, v, status) in [
        (&name, &value, 201),
        (&name, &updated, 201),
        (&unicode, &other, 201),
    ] {
        let (got, _) = caller
            .send(
                Method::POST,
                &path,
                Some(json_body(&json!({"key": n, "value": v}))),
            )
            .await;
        assert_eq!(got, status);
    }
    let (status, body) = caller.send(Method::GET, &path, None).await;
    assert_eq!((status, &body[&name]), (200, &json!(updated)));
    let one = format!("/namespaces/{key}/secrets/{}", percent_encode(&unicode));
    let (status, body) = caller.send(Method::GET, &one, None).await;
    assert_eq!((status, &body["value"]), (200, &json!(other)));
    let (status, _) = caller
        .send(Method::GET, &format!("/namespaces/{key}/keys"), None)
        .await;
    assert_eq!(status, 200);
    let merge = json!({ patched.clone(): patch_value, name.clone(): null });
    let (status, _) = caller
        .send(
            Method::PATCH,
            &path,
            Some(("application/merge-patch+json", merge.to_string())),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = caller.send(Method::DELETE, &one, None).await;
    assert_eq!(status, 204);
    let (status, _) = caller.send(Method::DELETE, &one, None).await;
    assert_eq!(status, 404, "secret_not_found");
    let (status, body) = caller
        .send(Method::POST, &format!("/namespaces/{key}/access-key"), None)
        .await;
    assert_eq!(status, 201);
    let rotated = needles.add(access_key(&body));
    let (status, _) = caller.send(Method::GET, &path, None).await;
    assert_eq!(status, 404, "the old key no longer works");
    let (status, _) = caller
        .send(Method::DELETE, &format!("/namespaces/{doomed}"), None)
        .await;
    assert_eq!(status, 204);
    Exercised {
        tag: tag.to_owned(),
        value,
        rotated,
        spare: bulk[0].clone(),
    }
}

/// What the error paths reuse from the success paths.
struct Exercised {
    tag: String,
    value: String,
    rotated: String,
    spare: String,
}

/// Calls the endpoints on their error paths, each request carrying something secret in its
/// path or body.
async fn exercise_errors(
    caller: &Caller<'_>,
    needles: &mut Needles,
    done: &Exercised,
    db_url: Option<&str>,
) {
    let Exercised {
        tag,
        value,
        rotated,
        spare,
    } = done;
    let rotated_path = format!("/namespaces/{rotated}");
    let wrong = needles.add(format!("wrong-token-{tag}"));
    let (status, _) = caller
        .send_as(&wrong, Method::GET, &rotated_path, None)
        .await;
    assert_eq!(status, 401);
    let broken = needles.add(format!("redact-broken-{tag}"));
    let cases = [
        (
            Method::POST,
            rotated_path.clone(),
            "application/json",
            format!(r#"{{"key": "A", "value": "{broken}"#),
            400,
        ),
        (
            Method::POST,
            rotated_path.clone(),
            "application/json",
            json!({"key": "A", "value": {"nested": broken}}).to_string(),
            400,
        ),
        (
            Method::POST,
            rotated_path.clone(),
            "text/plain",
            json!({"key": "A", "value": broken}).to_string(),
            415,
        ),
        (
            Method::POST,
            rotated_path.clone(),
            "application/json",
            json!({"key": "A", "value": format!("{broken}{}", "x".repeat(64))}).to_string(),
            413,
        ),
        (
            Method::PATCH,
            rotated_path.clone(),
            "application/json",
            json!({ broken.clone(): 5 }).to_string(),
            400,
        ),
        (
            Method::POST,
            "/namespaces/bulk".to_owned(),
            "application/json",
            json!({"count": broken}).to_string(),
            400,
        ),
        (
            Method::PUT,
            rotated_path.clone(),
            "application/json",
            "{}".to_owned(),
            405,
        ),
        (
            Method::GET,
            format!("/nowhere/{broken}"),
            "application/json",
            String::new(),
            404,
        ),
        (
            Method::GET,
            format!("/namespaces/{broken}"),
            "application/json",
            String::new(),
            404,
        ),
    ];
    for (method, path, content_type, body, status) in cases {
        let (got, answer) = caller
            .send(method.clone(), &path, Some((content_type, body)))
            .await;
        assert_eq!(got, status, "{method} {path}: {answer}");
    }
    // A full namespace (the limit is 3 in this run).
    let full = format!("/namespaces/{spare}");
    for n in 0..4 {
        let filler = needles.add(format!("FULL_{n}_{tag}"));
        let (status, _) = caller
            .send(
                Method::POST,
                &full,
                Some(json_body(&json!({"key": filler, "value": value}))),
            )
            .await;
        assert_eq!(status, if n < 3 { 201 } else { 409 });
    }

    if let Some(url) = db_url {
        tamper_then_read(caller, url, &rotated_path).await;
    }
    for path in ["/healthz", "/readyz", "/metrics", "/openapi.json"] {
        let (status, _) = caller.send(Method::GET, path, None).await;
        assert_eq!(status, 200, "{path}");
    }
}

/// Makes a stored ciphertext fail authentication, then reads it: the 500 path, which logs the
/// namespace's internal id.
async fn tamper_then_read(caller: &Caller<'_>, db_url: &str, path: &str) {
    let (client, connection) = tokio_postgres::connect(db_url, tokio_postgres::NoTls)
        .await
        .expect("connect to the test database");
    tokio::spawn(connection);
    let flipped = client
        .execute(
            "UPDATE secrets SET value_ct = set_byte(value_ct, length(value_ct) - 1, \
             get_byte(value_ct, length(value_ct) - 1) # 1)",
            &[],
        )
        .await
        .expect("tamper");
    assert!(flipped > 0);
    let (status, body) = caller.send(Method::GET, path, None).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (500, &json!("integrity_error"))
    );
}

/// Calls every route of the original service's contract, where access keys and names travel in
/// the query string, on its success and error paths.
async fn exercise_original(caller: &Caller<'_>, needles: &mut Needles) {
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let name = needles.add(format!("ORIGINAL_NAME_{}", &tag[..10]));
    let value = needles.add(format!("original-value-{}", &tag[..10]));
    let (status, body) = caller.send(Method::POST, "/", None).await;
    assert_eq!(status, 201);
    let key = needles.add(access_key(&body));
    let (status, body) = caller
        .send(Method::POST, "/bulk", Some(json_body(&json!({"n": 2}))))
        .await;
    assert_eq!(status, 200);
    for bulk in body["accessKeys"].as_array().expect("keys") {
        needles.add(bulk.as_str().expect("key"));
    }
    let put = json_body(&json!({"key": name, "value": value}));
    let (status, _) = caller
        .send(
            Method::POST,
            &format!("/secrets?accessKey={key}"),
            Some(put),
        )
        .await;
    assert_eq!(status, 201);
    for mode in ["private", "public"] {
        let path = format!("/secrets?accessKey={key}&mode={mode}");
        assert_eq!(caller.send(Method::GET, &path, None).await.0, 200);
    }
    // An original-form key nobody holds, twice, a bad mode, a name that is refused.
    let stranger = needles.add(format!("Zz{}_-", &tag[..17]));
    let errors = [
        (format!("/secrets?accessKey={stranger}&mode=private"), 404),
        (
            format!("/secrets?accessKey={key}&accessKey={key}&mode=private"),
            400,
        ),
        (format!("/secrets?accessKey={key}&mode={value}"), 400),
        (format!("/secrets?accessKey={key}&key={name}%0A"), 400),
    ];
    for (path, expected) in errors {
        let method = if path.contains("&key=") {
            Method::DELETE
        } else {
            Method::GET
        };
        assert_eq!(caller.send(method, &path, None).await.0, expected, "{path}");
    }
    let path = format!("/secrets?accessKey={key}&key={name}");
    assert_eq!(caller.send(Method::DELETE, &path, None).await.0, 202);
    assert_eq!(caller.send(Method::GET, "/heartbeat", None).await.0, 200);
    let path = format!("/?accessKey={key}");
    assert_eq!(caller.send(Method::DELETE, &path, None).await.0, 202);
}

/// Runs the whole exercise against a binary started with `env` and checks its output.
async fn run(
    mut env: Vec<(&'static str, String)>,
    json_logs: bool,
    db: Option<&TestDatabase>,
    audit_file: Option<&std::path::Path>,
) {
    let mut needles = Needles::default();
    let kek = needles.add(generate_kek());
    let token = needles.add(format!("redaction-token-{}", uuid::Uuid::new_v4().simple()));
    env.extend([
        ("KEY_ENCRYPTION_KEY", kek),
        ("SERVICE_AUTH_TOKENS", token.clone()),
        ("RUST_LOG", "trace".to_owned()),
        ("SECRETS__SERVER__BIND", "127.0.0.1:0".to_owned()),
        ("SECRETS__SERVER__WORKERS", "1".to_owned()),
        ("SECRETS__SERVER__SHUTDOWN_TIMEOUT_SECS", "5".to_owned()),
        ("SECRETS__LIMITS__MAX_VALUE_BYTES", "64".to_owned()),
        ("SECRETS__LIMITS__MAX_SECRETS_PER_NAMESPACE", "3".to_owned()),
        ("SECRETS__COMPAT__ORIGINAL_ROUTES", "true".to_owned()),
        (
            "SECRETS__LOG__FORMAT",
            if json_logs { "json" } else { "text" }.to_owned(),
        ),
    ]);
    let service = ServiceProcess::start(&["serve"], &env);
    let caller = Caller {
        client: Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client"),
        service: &service,
        token,
    };
    let done = exercise_successes(&caller, &mut needles).await;
    exercise_errors(&caller, &mut needles, &done, db.map(TestDatabase::url)).await;
    exercise_original(&caller, &mut needles).await;
    drop(caller);
    service.signal(nix::sys::signal::Signal::SIGTERM);
    let (status, output) = service.finish(Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "exit status");

    // The capture is real: trace-level lines, and a request line under every route template.
    let trace_marker = if json_logs {
        r#""level":"TRACE""#
    } else {
        " TRACE "
    };
    assert!(
        output.contains(trace_marker),
        "no trace-level line was captured"
    );
    let mut routes = BTreeSet::new();
    for line in output.lines() {
        if json_logs {
            let event: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("a line that is not JSON ({e}): {line}"));
            if event["message"] == "request" {
                routes.insert(event["route"].as_str().expect("route").to_owned());
            }
        } else if line.contains(" request ")
            && let Some(at) = line.find(" route=")
        {
            let rest = &line[at + " route=".len()..];
            routes.insert(rest.split(' ').next().unwrap_or_default().to_owned());
        }
    }
    let expected: BTreeSet<String> = ROUTES.iter().map(|r| (*r).to_owned()).collect();
    assert_eq!(routes, expected, "request lines by route template");

    // The audit trail: a line for every request but the probes, none of them with a secret.
    let trail = match audit_file {
        Some(file) => std::fs::read_to_string(file).expect("the audit file"),
        None => output
            .lines()
            .filter(|line| line.starts_with(r#"{"v":1,"#))
            .collect::<Vec<_>>()
            .join("\n"),
    };
    let requests = trail
        .lines()
        .filter(|line| line.contains(r#""type":"request""#))
        .count();
    assert!(requests > 40, "{requests} request lines in the audit trail");
    for (name, text) in [("the output", &output), ("the audit trail", &trail)] {
        for (secret, form) in needles.encodings() {
            assert!(
                !text.contains(&form),
                "{name} holds a secret ({secret:?} as {form:?}) at line:\n{}",
                text.lines().find(|l| l.contains(&form)).unwrap_or_default()
            );
        }
    }
}

#[cfg(unix)]
#[tokio::test]
async fn at_trace_level_nothing_secret_is_printed_with_the_embedded_store_and_text_logs() {
    let dir = std::env::temp_dir().join(format!("secrets-redaction-{}", uuid::Uuid::new_v4()));
    let url = format!("sqlite://{}", dir.join("secrets.db").display());
    run(
        vec![("DATABASE_URL", url)],
        false,
        None,
        Some(&dir.join("audit.log")),
    )
    .await;
    drop(std::fs::remove_dir_all(&dir));
}

#[cfg(unix)]
#[tokio::test]
async fn at_trace_level_nothing_secret_is_printed_with_postgresql_and_json_logs() {
    let db = TestDatabase::create().await;
    run(
        vec![
            ("DATABASE_URL", db.url().to_owned()),
            ("SECRETS__AUDIT__SINK", "stdout".to_owned()),
        ],
        true,
        Some(&db),
        None,
    )
    .await;
}
