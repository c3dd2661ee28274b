//! Slow and never-finished request bodies: each is answered 408 `request_timeout` once
//! `server.body_timeout_ms` has passed, and while they wait the server goes on serving others.
//!
//! These talk raw HTTP/1.1 over a `TcpStream`, since an HTTP client library always sends the
//! body it announced. Times are measured and bounded both ways: never answered before the
//! timeout, always answered within the timeout and a margin for a loaded machine.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::helpers::{Options, TOKEN, TestApp, spawn_app_with};

/// Slack between the configured timeout and the answer, for a machine busy with other tests.
const MARGIN: Duration = Duration::from_secs(3);

async fn spawn_with_body_timeout(timeout: Duration) -> TestApp {
    spawn_app_with(Options {
        env: vec![(
            "SECRETS__SERVER__BODY_TIMEOUT_MS",
            timeout.as_millis().to_string(),
        )],
        ..Options::default()
    })
    .await
}

fn port(app: &TestApp) -> u16 {
    app.address
        .rsplit(':')
        .next()
        .and_then(|port| port.parse().ok())
        .expect("the address ends with a port")
}

/// The head of a request that announces a 100-byte JSON body.
fn head(path: &str, framing: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/json\r\n{framing}\r\n"
    )
}

const ANNOUNCED: &str = "Content-Length: 100\r\n";

/// Connects and sends `head` followed by `partial`, then sends nothing more.
async fn stall(port: u16, head: &str, partial: &str) -> TcpStream {
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    stream
        .write_all(format!("{head}{partial}").as_bytes())
        .await
        .expect("write");
    stream.flush().await.expect("flush");
    stream
}

/// A response read off the wire.
struct Answer {
    status: u16,
    head: String,
    body: Value,
}

/// Reads one response with a `Content-Length` body, failing the test if it does not come
/// within `within`.
async fn answer(stream: &mut TcpStream, within: Duration) -> Answer {
    tokio::time::timeout(within, read_answer(stream))
        .await
        .unwrap_or_else(|_| panic!("no answer within {within:?}"))
}

async fn read_answer(stream: &mut TcpStream) -> Answer {
    let answer = crate::common::read_http_response(stream)
        .await
        .expect("a whole response before the connection closed");
    Answer {
        status: answer.status,
        head: answer.head,
        body: serde_json::from_slice(&answer.body).unwrap_or(Value::Null),
    }
}

fn assert_request_timeout(answer: &Answer) {
    assert_eq!(answer.status, 408, "{}", answer.head);
    assert!(
        answer
            .head
            .to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{}",
        answer.head
    );
    assert_eq!(
        answer.body["error"]["code"], "request_timeout",
        "{}",
        answer.body
    );
}

/// Whether the server has closed the connection (after its answer), within `within`.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut byte = [0u8; 1];
    matches!(
        tokio::time::timeout(within, stream.read(&mut byte)).await,
        Ok(Ok(0) | Err(_))
    )
}

#[tokio::test]
async fn a_body_that_stops_arriving_is_answered_408_within_the_timeout_and_changes_nothing() {
    let timeout = Duration::from_millis(500);
    let app = spawn_with_body_timeout(timeout).await;
    let key = app.create_namespace().await;

    let started = Instant::now();
    let mut stream = stall(
        port(&app),
        &head(&format!("/namespaces/{key}"), ANNOUNCED),
        r#"{"key": "A"#,
    )
    .await;
    let answer = answer(&mut stream, timeout + MARGIN).await;
    let took = started.elapsed();

    assert_request_timeout(&answer);
    assert!(took >= timeout, "answered before the timeout: {took:?}");
    // The rest of the announced body may still come; the server does not wait to read it as
    // the next request, it closes the connection.
    assert!(
        closed_within(&mut stream, MARGIN).await,
        "the connection stays open"
    );
    assert_eq!(app.read(&key).await, serde_json::json!({}));
}

#[tokio::test]
async fn a_chunked_body_that_never_ends_is_answered_408() {
    let timeout = Duration::from_millis(500);
    let app = spawn_with_body_timeout(timeout).await;

    let started = Instant::now();
    let mut stream = stall(
        port(&app),
        &head("/namespaces/bulk", "Transfer-Encoding: chunked\r\n"),
        "5\r\n{\"cou\r\n",
    )
    .await;
    let answer = answer(&mut stream, timeout + MARGIN).await;

    assert_request_timeout(&answer);
    assert!(started.elapsed() >= timeout);
}

#[tokio::test]
async fn a_body_trickled_a_byte_at_a_time_is_cut_off_at_the_timeout_for_the_whole_body() {
    let timeout = Duration::from_millis(500);
    let app = spawn_with_body_timeout(timeout).await;
    let stream = stall(port(&app), &head("/namespaces", ANNOUNCED), "").await;
    let (mut reader, mut writer) = stream.into_split();

    // One byte every 50 ms would take 5 s for the 100 announced: no single read ever waits
    // long, but the whole body is far slower than the timeout allows.
    let started = Instant::now();
    let trickle = async {
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        for _ in 0..100 {
            tick.tick().await;
            if writer.write_all(b" ").await.is_err() {
                break;
            }
        }
        std::future::pending::<()>().await;
    };
    let read = async {
        let mut buffer = Vec::new();
        let mut chunk = [0u8; 4096];
        while !buffer.windows(4).any(|w| w == b"\r\n\r\n") {
            let read = reader.read(&mut chunk).await.expect("read");
            assert!(read > 0, "closed without an answer");
            buffer.extend_from_slice(&chunk[..read]);
        }
        String::from_utf8_lossy(&buffer).into_owned()
    };
    let response = tokio::time::timeout(timeout + MARGIN, async {
        tokio::select! {
            response = read => response,
            () = trickle => unreachable!("the trickle never ends by itself"),
        }
    })
    .await
    .expect("answered within the timeout and a margin, long before the body is complete");

    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    assert!(started.elapsed() >= timeout);
}

#[tokio::test]
async fn stalled_bodies_on_more_connections_than_workers_do_not_stop_other_requests() {
    // Long enough that the other requests below are surely served before any stalled one times
    // out, which the test then checks rather than assumes.
    let timeout = Duration::from_secs(3);
    let app = spawn_with_body_timeout(timeout).await;
    let port = port(&app);

    // The test app runs 2 workers; stall four times as many connections, each in a handler
    // waiting for the rest of its body.
    let mut stalled = Vec::new();
    for _ in 0..8 {
        stalled.push(stall(port, &head("/namespaces", ANNOUNCED), r#"{"count""#).await);
    }
    let started = Instant::now();

    // Requests on new connections are served, one that reads a body included.
    let health = app
        .client
        .get(format!("{}/healthz", app.address))
        .send()
        .await
        .expect("sent");
    assert_eq!(health.status(), 200);
    let key = app.create_namespace().await;
    let put = app
        .request(Method::POST, &format!("/namespaces/{key}"))
        .json(&serde_json::json!({"key": "A", "value": "v"}))
        .send()
        .await
        .expect("sent");
    assert_eq!(put.status(), 201);
    let served_after = started.elapsed();

    // None of the stalled requests had been answered yet: they were all still waiting while
    // the others were served.
    let mut probe = [0u8; 1];
    for stream in &stalled {
        assert!(
            matches!(stream.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
            "a stalled request was answered before the timeout (others served after {served_after:?})"
        );
    }

    // And each of them is answered 408 in time.
    for stream in &mut stalled {
        let answer = answer(stream, timeout + MARGIN).await;
        assert_request_timeout(&answer);
    }
    assert!(started.elapsed() < timeout + MARGIN);
}
