//! Operating the service (SPEC 3.3 and 7): the OpenAPI document, metrics, request ids,
//! readiness while the store comes and goes, and graceful shutdown of the real binary.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::{Method, Response, StatusCode};
use secrets_adapters::testing::TestDatabase;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::helpers::{
    Options, TEST_KEK, TOKEN, assert_error, create_namespace_at, spawn_app, spawn_app_on,
};

// ---------------------------------------------------------------------------------------------
// OpenAPI
// ---------------------------------------------------------------------------------------------

/// The committed copy of the document.
const COMMITTED_OPENAPI: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json");

#[tokio::test]
async fn the_served_openapi_document_matches_the_committed_copy() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(format!("{}/openapi.json", app.address))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);
    let served = response.text().await.expect("body");
    let served_json: Value = serde_json::from_str(&served).expect("the document is JSON");
    assert_eq!(served_json["openapi"], "3.1.0");
    if std::env::var_os("UPDATE_OPENAPI").is_some_and(|v| v == "1") {
        std::fs::write(COMMITTED_OPENAPI, &served).expect("write docs/openapi.json");
        return;
    }
    let committed = std::fs::read_to_string(COMMITTED_OPENAPI).unwrap_or_default();
    assert!(
        committed == served,
        "docs/openapi.json differs from the document the service serves (the API changed, or \
         the file was edited by hand). Regenerate it with\n    UPDATE_OPENAPI=1 \
         scripts/with-postgres.sh cargo test -p secrets-api --test api openapi\nand commit \
         the result."
    );
}

/// Every operation of SPEC 3, and the write of one secret by its name (`PUT`), as (method,
/// path template).
const SPEC_OPERATIONS: &[(&str, &str)] = &[
    ("POST", "/namespaces"),
    ("POST", "/namespaces/bulk"),
    ("GET", "/namespaces/{accessKey}"),
    ("POST", "/namespaces/{accessKey}"),
    ("PATCH", "/namespaces/{accessKey}"),
    ("DELETE", "/namespaces/{accessKey}"),
    ("GET", "/namespaces/{accessKey}/keys"),
    ("POST", "/namespaces/{accessKey}/access-key"),
    ("GET", "/namespaces/{accessKey}/secrets/{key}"),
    ("PUT", "/namespaces/{accessKey}/secrets/{key}"),
    ("DELETE", "/namespaces/{accessKey}/secrets/{key}"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
];

/// The original service's routes (`compat.original_routes`), tagged `original`.
const ORIGINAL_OPERATIONS: &[(&str, &str)] = &[
    ("POST", "/"),
    ("DELETE", "/"),
    ("POST", "/bulk"),
    ("GET", "/secrets"),
    ("POST", "/secrets"),
    ("DELETE", "/secrets"),
    ("GET", "/heartbeat"),
];

#[tokio::test]
async fn the_document_covers_exactly_the_routes_the_service_answers() {
    let app = crate::helpers::spawn_app_with(Options {
        env: vec![("SECRETS__COMPAT__ORIGINAL_ROUTES", "true".into())],
        ..Options::default()
    })
    .await;
    let doc: Value = app
        .client
        .get(format!("{}/openapi.json", app.address))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("path item") {
            documented.insert((method.to_uppercase(), path.clone()));
            let responses = operation["responses"].as_object().expect("responses");
            let secured = operation["security"][0]["serviceToken"].is_array();
            let original = operation["tags"][0] == "original";
            assert_eq!(
                original,
                ORIGINAL_OPERATIONS.contains(&(method.to_uppercase().as_str(), path.as_str())),
                "{method} {path}: tag"
            );
            assert_eq!(
                secured,
                path.starts_with("/namespaces") || path == "/metrics" || original,
                "{method} {path}: security"
            );
            if secured {
                assert!(
                    responses.contains_key("401"),
                    "{method} {path}: 401 documented"
                );
            }
            for (status, response) in responses {
                if status.starts_with('4') || status.starts_with('5') {
                    let body = if original { "OriginalError" } else { "Error" };
                    assert_eq!(
                        response["content"]["application/json"]["schema"]["$ref"],
                        format!("#/components/schemas/{body}"),
                        "{method} {path} {status}: the error body"
                    );
                }
            }
        }
    }
    let expected: BTreeSet<_> = SPEC_OPERATIONS
        .iter()
        .chain(ORIGINAL_OPERATIONS)
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    assert_eq!(documented, expected);
    // Each documented operation reaches a handler: no 405 (a route without that method) and no
    // `not_found` (no such route); a 404 `namespace_not_found` is the handler answering.
    for (method, path) in &documented {
        let concrete = path
            .replace("{accessKey}", &"A".repeat(43))
            .replace("{key}", "NAME");
        let response = app
            .request(
                Method::from_bytes(method.as_bytes()).expect("method"),
                &concrete,
            )
            .send()
            .await
            .expect("sent");
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        // The document itself lists `not_found` among the codes; only an error answer counts.
        // (The original's routes carry the same `error` object beside their own fields.)
        let code = serde_json::from_str::<Value>(&body).map(|json| json["error"]["code"].clone());
        assert_ne!(
            code.ok(),
            Some(json!("not_found")),
            "{method} {path}: {body}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Metrics and request ids
// ---------------------------------------------------------------------------------------------

async fn metrics_text(app: &crate::helpers::TestApp) -> String {
    let response = app
        .request(Method::GET, "/metrics")
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    response.text().await.expect("body")
}

/// The value of the sample whose line starts with `series` (name and labels), if any.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn requests_are_counted_under_their_route_template_and_status() {
    let app = spawn_app().await;
    let key = app.create_namespace().await;
    app.put(&key, "METRIC_NAME", "metric-value").await;
    for _ in 0..3 {
        app.read(&key).await;
    }
    let unknown = "B".repeat(43);
    let response = app
        .request(Method::GET, &format!("/namespaces/{unknown}"))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 404);
    let response = app
        .request(Method::GET, "/no/such/route")
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 404);
    let text = metrics_text(&app).await;
    let read = r#"{method="GET",route="/namespaces/{accessKey}",status="200"}"#;
    let counts = [
        (format!("secrets_http_requests_total{read}"), 3.0),
        (format!("secrets_http_request_duration_seconds_count{read}"), 3.0),
        (r#"secrets_http_requests_total{method="GET",route="/namespaces/{accessKey}",status="404"}"#.to_owned(), 1.0),
        (r#"secrets_http_requests_total{method="POST",route="/namespaces/{accessKey}",status="201"}"#.to_owned(), 1.0),
        (r#"secrets_http_requests_total{method="POST",route="/namespaces",status="201"}"#.to_owned(), 1.0),
        (r#"secrets_http_requests_total{method="GET",route="<unmatched>",status="404"}"#.to_owned(), 1.0),
        // The test apps run with `storage.pool_size` 4.
        (r#"secrets_store_pool_connections{state="max"}"#.to_owned(), 4.0),
        (r#"secrets_build_info{backend="postgres",version=""#.to_owned() + env!("CARGO_PKG_VERSION") + r#""}"#, 1.0),
    ];
    for (series, expected) in counts {
        assert_eq!(
            sample(&text, &series),
            Some(expected),
            "{series} in\n{text}"
        );
    }
    let latency_sum = sample(
        &text,
        &format!("secrets_http_request_duration_seconds_sum{read}"),
    );
    assert!(latency_sum.is_some_and(|s| s > 0.0), "latency recorded");
    let open = sample(&text, r#"secrets_store_pool_connections{state="open"}"#).expect("open");
    assert!((1.0..=4.0).contains(&open), "open connections: {open}");
    assert!(sample(&text, "secrets_store_pool_waiting").is_some());
    for secret in [
        key.as_str(),
        &unknown,
        "METRIC_NAME",
        "metric-value",
        TOKEN,
        "/no/such/route",
    ] {
        assert!(!text.contains(secret), "{secret} in the metrics");
    }
}

#[tokio::test]
async fn metrics_need_the_service_token() {
    let app = spawn_app().await;
    for request in [
        app.client.get(format!("{}/metrics", app.address)),
        app.client
            .get(format!("{}/metrics", app.address))
            .bearer_auth("wrong"),
    ] {
        let response = request.send().await.expect("sent");
        assert_error(response, 401, "unauthorized").await;
    }
}

fn request_id(response: &Response) -> String {
    response
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .expect("every response carries X-Request-Id")
        .to_owned()
}

#[tokio::test]
async fn a_sane_request_id_is_echoed_on_every_answer_and_otherwise_one_is_generated() {
    let app = spawn_app().await;
    let key = app.create_namespace().await;
    let url = |path: &str| format!("{}{path}", app.address);
    let requests = [
        ("201", app.request(Method::POST, "/namespaces")),
        (
            "200",
            app.request(Method::GET, &format!("/namespaces/{key}")),
        ),
        ("401", app.client.get(url(&format!("/namespaces/{key}")))),
        ("404 unknown route", app.request(Method::GET, "/nowhere")),
        (
            "404 unknown namespace",
            app.request(Method::GET, &format!("/namespaces/{}", "C".repeat(43))),
        ),
        (
            "405",
            app.request(Method::PUT, &format!("/namespaces/{key}")),
        ),
        (
            "415",
            app.request(Method::POST, &format!("/namespaces/{key}"))
                .body("{}"),
        ),
        ("healthz", app.client.get(url("/healthz"))),
    ];
    for (n, (why, request)) in requests.into_iter().enumerate() {
        let sent = format!("caller-id.{n}_x");
        let response = request
            .try_clone()
            .expect("no streaming body")
            .header("x-request-id", &sent)
            .send()
            .await
            .expect("sent");
        assert_eq!(request_id(&response), sent, "{why}: echoed");
        let generated = request_id(&request.send().await.expect("sent"));
        let uuid = uuid::Uuid::parse_str(&generated).expect("a generated id is a UUID");
        assert_eq!(uuid.get_version_num(), 4, "{why}");
    }
    let long = "a".repeat(65);
    for insane in ["has space", "semi;colon", long.as_str()] {
        let response = app
            .client
            .get(url("/healthz"))
            .header("x-request-id", insane)
            .send()
            .await
            .expect("sent");
        let id = request_id(&response);
        assert_ne!(id, insane);
        assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
    }
    let one = request_id(&app.client.get(url("/healthz")).send().await.expect("sent"));
    let two = request_id(&app.client.get(url("/healthz")).send().await.expect("sent"));
    assert_ne!(one, two, "ids are per request");
}

// ---------------------------------------------------------------------------------------------
// Readiness while the store goes away and comes back
// ---------------------------------------------------------------------------------------------

/// What the proxy does to the connections between the application and PostgreSQL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Link {
    /// Forwards bytes both ways.
    Up,
    /// Closes every connection, and every new one as soon as it is accepted: a database that
    /// is down (connection refused or reset).
    Down,
    /// Keeps connections open and forwards nothing: a database that hangs, or a network that
    /// drops packets.
    Silent,
}

/// A TCP proxy on 127.0.0.1 between the application and PostgreSQL, whose link the test
/// switches.
struct StoreProxy {
    port: u16,
    link: watch::Sender<Link>,
}

impl StoreProxy {
    async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let (link, watcher) = watch::channel(Link::Up);
        let upstream = Arc::<str>::from(upstream);
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                tokio::spawn(relay(inbound, Arc::clone(&upstream), watcher.clone()));
            }
        });
        Self { port, link }
    }

    fn set(&self, link: Link) {
        self.link.send_replace(link);
    }
}

/// Serves one connection according to the link: forwards while it is up, and when it changes,
/// drops the connection (down, or back up: the bytes in between are lost, so the connection
/// is dead either way) or holds it open in silence.
async fn relay(mut inbound: TcpStream, upstream: Arc<str>, mut link: watch::Receiver<Link>) {
    let state = *link.borrow_and_update();
    match state {
        Link::Down => return,
        Link::Silent => {
            drop(link.wait_for(|l| *l != Link::Silent).await);
            return;
        }
        Link::Up => {}
    }
    let Ok(mut outbound) = TcpStream::connect(&*upstream).await else {
        return;
    };
    let changed = tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => None,
        changed = link.wait_for(|l| *l != Link::Up) => changed.ok().map(|l| *l),
    };
    if changed == Some(Link::Silent) {
        drop(link.wait_for(|l| *l != Link::Silent).await);
    }
}

/// A PostgreSQL URL split around its `host:port`: (before, host:port, after).
fn split_host(url: &str) -> (&str, String, &str) {
    let scheme_end = url.find("://").expect("a URL") + 3;
    let authority_end = url[scheme_end..]
        .find(['/', '?'])
        .map_or(url.len(), |i| scheme_end + i);
    let host_start = url[scheme_end..authority_end]
        .rfind('@')
        .map_or(scheme_end, |i| scheme_end + i + 1);
    let host = &url[host_start..authority_end];
    let host = if host.contains(':') {
        host.to_owned()
    } else {
        format!("{host}:5432")
    };
    (&url[..host_start], host, &url[authority_end..])
}

/// Polls `/readyz` until it answers `status`, for at most ten seconds.
async fn await_readiness(app: &crate::helpers::TestApp, status: u16) -> Response {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let response = app
            .client
            .get(format!("{}/readyz", app.address))
            .send()
            .await
            .expect("readyz answers");
        if response.status() == status {
            return response;
        }
        assert!(
            Instant::now() < deadline,
            "readyz stayed {} instead of {status}",
            response.status()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn readiness_follows_the_store_and_requests_answer_503_within_the_timeout_meanwhile() {
    // Long enough that a loaded machine still writes within it once the store is back.
    const TIMEOUT_MS: u64 = 1000;
    let db = TestDatabase::create().await;
    let (before, upstream, after) = split_host(db.url());
    let proxy = StoreProxy::start(upstream).await;
    let proxied = format!("{before}127.0.0.1:{}{after}", proxy.port);
    let app = spawn_app_on(
        db,
        Options {
            env: vec![
                ("DATABASE_URL", proxied),
                ("SECRETS__STORAGE__TIMEOUT_MS", TIMEOUT_MS.to_string()),
            ],
            ..Options::default()
        },
    )
    .await;
    let key = app.create_namespace().await;
    app.put(&key, "KEPT", "across-the-outage").await;
    await_readiness(&app, 200).await;

    // The database goes down: readiness turns 503, and requests answer 503 `unavailable`.
    proxy.set(Link::Down);
    assert_error(await_readiness(&app, 503).await, 503, "unavailable").await;
    for (method, path, body) in [
        (Method::GET, format!("/namespaces/{key}"), None),
        (
            Method::POST,
            format!("/namespaces/{key}"),
            Some(json!({"key": "NEW", "value": "v"})),
        ),
        (Method::POST, "/namespaces".to_owned(), None),
    ] {
        let mut request = app
            .request(method.clone(), &path)
            .timeout(Duration::from_secs(10));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let started = Instant::now();
        let response = request.send().await.expect("answered");
        assert_error(response, 503, "unavailable").await;
        assert!(
            started.elapsed() < Duration::from_millis(TIMEOUT_MS * 4),
            "{method} {path}"
        );
    }

    // The database hangs: nothing answers, and the timeout is what ends each request.
    proxy.set(Link::Silent);
    for path in [format!("/namespaces/{key}"), "/readyz".to_owned()] {
        let started = Instant::now();
        let response = app
            .request(Method::GET, &path)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .expect("answered, not hung");
        let elapsed = started.elapsed();
        assert_error(response, 503, "unavailable").await;
        // Ended by the store's timeout (not by a quick failure), and not long after it.
        assert!(
            elapsed >= Duration::from_millis(TIMEOUT_MS / 2)
                && elapsed < Duration::from_millis(TIMEOUT_MS * 4),
            "{path} took {elapsed:?} with a timeout of {TIMEOUT_MS} ms"
        );
    }

    // It comes back: ready again, without a restart, and nothing was lost or half-written.
    proxy.set(Link::Up);
    await_readiness(&app, 200).await;
    assert_eq!(app.read(&key).await, json!({"KEPT": "across-the-outage"}));
    app.put(&key, "AFTER", "the-outage").await;
    assert_eq!(
        app.read(&key).await,
        json!({"KEPT": "across-the-outage", "AFTER": "the-outage"})
    );
}

// ---------------------------------------------------------------------------------------------
// Graceful shutdown of the real binary
// ---------------------------------------------------------------------------------------------

/// The environment of a binary on a fresh embedded store in `dir`.
fn sqlite_env(dir: &std::path::Path, shutdown_secs: u64) -> Vec<(&'static str, String)> {
    vec![
        (
            "DATABASE_URL",
            format!("sqlite://{}", dir.join("secrets.db").display()),
        ),
        ("KEY_ENCRYPTION_KEY", TEST_KEK.to_owned()),
        ("SERVICE_AUTH_TOKENS", TOKEN.to_owned()),
        ("SECRETS__SERVER__BIND", "127.0.0.1:0".to_owned()),
        ("SECRETS__SERVER__WORKERS", "1".to_owned()),
        (
            "SECRETS__SERVER__SHUTDOWN_TIMEOUT_SECS",
            shutdown_secs.to_string(),
        ),
        ("SECRETS__LOG__FORMAT", "json".to_owned()),
    ]
}

/// A temporary directory, removed when dropped.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new() -> Self {
        let path = std::env::temp_dir().join(format!("secrets-op-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&path).expect("temp dir");
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        drop(std::fs::remove_dir_all(&self.0));
    }
}

/// Reads one HTTP/1.1 response with a `Content-Length` body from `stream`.
async fn read_response(stream: &mut TcpStream) -> String {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&buffer).into_owned();
        if let Some(head_end) = text.find("\r\n\r\n") {
            let length = text[..head_end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().to_owned())
                })
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
            if buffer.len() >= head_end + 4 + length {
                return text;
            }
        }
        let read = tokio::time::timeout(Duration::from_secs(20), stream.read(&mut chunk))
            .await
            .expect("the response arrives")
            .expect("read");
        assert!(
            read > 0,
            "the connection closed before a whole response: {text:?}"
        );
        buffer.extend_from_slice(&chunk[..read]);
    }
}

/// Reads the interim `100 Continue` the server sends once it has parsed a request head with
/// `Expect: 100-continue` and called its handler: from then on the request is in flight.
async fn await_continue(stream: &mut TcpStream) {
    let mut buffer = Vec::new();
    let mut byte = [0u8; 1];
    // Byte by byte, so that nothing after the interim response is consumed.
    while !buffer.ends_with(b"\r\n\r\n") {
        let read = tokio::time::timeout(Duration::from_secs(20), stream.read(&mut byte))
            .await
            .expect("100 Continue arrives")
            .expect("read");
        assert!(read > 0, "the connection closed before 100 Continue");
        buffer.push(byte[0]);
    }
    assert!(buffer.starts_with(b"HTTP/1.1 100 Continue"), "{buffer:?}");
}

/// Sends the head of a `POST /namespaces/{key}` whose body is to follow, and waits until the
/// server is handling it.
async fn start_slow_put(stream: &mut TcpStream, key: &str, length: usize) {
    let head = format!(
        "POST /namespaces/{key} HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: {length}\r\n\
         Expect: 100-continue\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    await_continue(stream).await;
}

/// Whether a new connection to `port` is refused (the listener is closed).
async fn refuses_connections(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).await.is_err()
}

/// The whole graceful shutdown, for one signal: the listener closes at once, the request in
/// flight is answered and committed, and the exit status is 0.
#[cfg(unix)]
async fn a_signal_drains_the_request_in_flight(signal: nix::sys::signal::Signal) {
    let dir = TempDir::new();
    let service = crate::common::ServiceProcess::start(&["serve"], &sqlite_env(&dir.0, 30));
    let client = reqwest::Client::new();
    let key = create_namespace_at(&client, &service.url("")).await;

    let mut stream = TcpStream::connect(("127.0.0.1", service.port()))
        .await
        .expect("connect");
    let body = r#"{"key": "IN_FLIGHT", "value": "finished after the signal"}"#;
    let (start, rest) = body.split_at(body.len() / 2);
    start_slow_put(&mut stream, &key, body.len()).await;
    stream.write_all(start.as_bytes()).await.expect("write");
    stream.flush().await.expect("flush");

    service.signal(signal);
    assert!(
        service.wait_for_output("starting graceful shutdown", Duration::from_secs(20)),
        "the server logs the signal:\n{}",
        service.output()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !refuses_connections(service.port()).await {
        assert!(Instant::now() < deadline, "still accepting after {signal}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The request in flight completes, and is answered.
    stream
        .write_all(rest.as_bytes())
        .await
        .expect("the connection is still open");
    let response = read_response(&mut stream).await;
    assert!(response.starts_with("HTTP/1.1 201"), "{response}");
    assert!(response.contains(r#""key":"IN_FLIGHT""#), "{response}");
    drop(stream);

    let (status, output) = service.finish(Duration::from_secs(20));
    assert_eq!(status.code(), Some(0), "exit status; output:\n{output}");
    assert!(
        output.contains(&format!(r#""signal":"{signal}""#)),
        "{output}"
    );

    // The write was committed: a new process on the same store reads it back.
    let service = crate::common::ServiceProcess::start(&["serve"], &sqlite_env(&dir.0, 1));
    let read: Value = client
        .get(service.url(&format!("/namespaces/{key}")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(read, json!({"IN_FLIGHT": "finished after the signal"}));
    service.signal(nix::sys::signal::Signal::SIGTERM);
    let (status, _) = service.finish(Duration::from_secs(20));
    assert_eq!(status.code(), Some(0));
}

#[cfg(unix)]
#[tokio::test]
async fn sigterm_stops_accepting_lets_the_request_in_flight_finish_and_exits_0() {
    a_signal_drains_the_request_in_flight(nix::sys::signal::Signal::SIGTERM).await;
}

#[cfg(unix)]
#[tokio::test]
async fn sigint_drains_the_same_way_as_sigterm() {
    a_signal_drains_the_request_in_flight(nix::sys::signal::Signal::SIGINT).await;
}

#[cfg(unix)]
#[tokio::test]
async fn a_request_that_never_finishes_delays_exit_only_by_the_shutdown_timeout() {
    let dir = TempDir::new();
    let service = crate::common::ServiceProcess::start(&["serve"], &sqlite_env(&dir.0, 1));
    let key = create_namespace_at(&reqwest::Client::new(), &service.url("")).await;
    let mut stream = TcpStream::connect(("127.0.0.1", service.port()))
        .await
        .expect("connect");
    // A body that never comes.
    start_slow_put(&mut stream, &key, 100).await;
    let started = Instant::now();
    service.signal(nix::sys::signal::Signal::SIGTERM);
    let (status, output) = service.finish(Duration::from_secs(20));
    let took = started.elapsed();
    assert_eq!(status.code(), Some(0), "exit status; output:\n{output}");
    assert!(
        took >= Duration::from_millis(900),
        "waited for the request in flight: {took:?}"
    );
    assert!(
        took < Duration::from_secs(10),
        "bounded by the 1 s timeout: {took:?}"
    );
    drop(stream);
}
