//! The real routes, handlers, middleware and error mapping over the domain's in-memory store,
//! fake envelope and counting randomness (`secrets_domain::testing`), driven in-process with
//! `actix_web::test`: the main success and error paths of SPEC 3, with no database.
//!
//! The black-box tests in `tests/api/` do the same against PostgreSQL through a bound server;
//! these show that the HTTP layer depends on the ports alone. The one piece of the application
//! that is the store's own, its pool status for `/metrics`, is a fixed reader here (the
//! in-memory store has no pool).

use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::ServiceResponse;
use actix_web::http::header::{AUTHORIZATION, CONTENT_TYPE};
use actix_web::test::{self, TestRequest};
use actix_web::web::Data;
use secrecy::SecretString;
use secrets_adapters::PoolStatus;
use secrets_api::auth::ServiceTokens;
use secrets_api::body::BodyLimits;
use secrets_api::handlers::AppState;
use secrets_api::metrics::Metrics;
use secrets_api::routes;
use secrets_domain::testing::{CountingRandom, FakeEnvelope, InMemoryStore};
use secrets_domain::{Limits, SecretsService};
use serde_json::{Value, json};

const TOKEN: &str = "in-memory-token";
const BEARER: &str = "Bearer in-memory-token";

/// What the application over the fakes shares: its state, tokens and metrics.
type Parts = (
    Data<AppState<InMemoryStore, FakeEnvelope, CountingRandom>>,
    Data<ServiceTokens>,
    Data<Metrics>,
);

/// The application's parts over the fakes: at most 3 secrets a namespace, values of at most
/// 16 bytes, bodies of at most 256 bytes. Each test mounts them with `routes::app`.
fn in_memory() -> Parts {
    let service = SecretsService::new(
        InMemoryStore::new(),
        FakeEnvelope::new("key-1", &[]),
        CountingRandom::default(),
        Limits {
            max_value_bytes: 16,
            max_secrets_per_namespace: 3,
        },
    );
    let state = Data::new(AppState {
        service,
        body: BodyLimits {
            max_bytes: 256,
            timeout: Duration::from_secs(5),
        },
        original_routes: true,
    });
    let tokens = Data::new(ServiceTokens::new(&[SecretString::from(TOKEN)]));
    let metrics = Metrics::new("memory", || PoolStatus {
        max_size: 0,
        size: 0,
        available: 0,
        waiting: 0,
    })
    .expect("metrics register");
    (state, tokens, Data::new(metrics))
}

/// A request with the service token.
fn authed(request: TestRequest) -> TestRequest {
    request.insert_header((AUTHORIZATION, BEARER))
}

/// A request with the token and a JSON body.
fn with_json(request: TestRequest, body: &Value) -> TestRequest {
    authed(request).set_json(body)
}

/// The status and the body, as JSON (`Null` when empty).
async fn answer(response: ServiceResponse<impl MessageBody>) -> (u16, Value) {
    let status = response.status().as_u16();
    let body = test::read_body(response).await;
    let json = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body).expect("a JSON body")
    };
    (status, json)
}

/// Asserts an error answer's status and code, and returns its message.
fn error(answer: &(u16, Value), status: u16, code: &str) -> String {
    assert_eq!(answer.0, status, "{}", answer.1);
    assert_eq!(answer.1["error"]["code"], code, "{}", answer.1);
    answer.1["error"]["message"]
        .as_str()
        .expect("a message")
        .to_owned()
}

#[actix_web::test]
async fn a_namespace_lives_from_creation_to_deletion() {
    let (state, tokens, metrics) = in_memory();
    let app = test::init_service(routes::app(state, tokens, metrics, None)).await;
    let call = async |request: TestRequest| {
        answer(test::call_service(&app, request.to_request()).await).await
    };

    let (status, created) = call(authed(TestRequest::post().uri("/namespaces"))).await;
    assert_eq!(status, 201);
    let key = created["accessKey"].as_str().expect("accessKey").to_owned();
    assert_eq!(key.len(), 43);
    let ns = format!("/namespaces/{key}");

    let put = |name: &str, value: &str| {
        with_json(
            TestRequest::post().uri(&ns),
            &json!({"key": name, "value": value}),
        )
    };
    assert_eq!(
        call(put("API_KEY", "one")).await,
        (201, json!({"key": "API_KEY", "created": true}))
    );
    assert_eq!(
        call(put("API_KEY", "two")).await,
        (201, json!({"key": "API_KEY", "created": false}))
    );
    assert_eq!(
        call(authed(TestRequest::get().uri(&ns))).await,
        (200, json!({"API_KEY": "two"}))
    );

    let (status, secret) = call(authed(
        TestRequest::get().uri(&format!("{ns}/secrets/API_KEY")),
    ))
    .await;
    assert_eq!(status, 200);
    assert_eq!(secret["key"], "API_KEY");
    assert_eq!(secret["value"], "two");
    assert!(secret["createdAt"].is_string() && secret["updatedAt"].is_string());

    let patch = authed(TestRequest::patch().uri(&ns))
        .insert_header((CONTENT_TYPE, "application/merge-patch+json"))
        .set_payload(r#"{"OTHER": "x", "API_KEY": null}"#);
    assert_eq!(call(patch).await, (200, json!({"OTHER": "x"})));

    let (status, keys) = call(authed(TestRequest::get().uri(&format!("{ns}/keys")))).await;
    assert_eq!(status, 200);
    assert_eq!(keys[0]["key"], "OTHER");
    assert_eq!(keys[0]["digest"].as_str().map(str::len), Some(64));
    assert!(keys[0].get("value").is_none(), "{keys}");

    let secret_path = format!("{ns}/secrets/OTHER");
    assert_eq!(
        call(authed(TestRequest::delete().uri(&secret_path))).await,
        (204, Value::Null)
    );
    let gone = call(authed(TestRequest::delete().uri(&secret_path))).await;
    error(&gone, 404, "secret_not_found");

    let (status, rotated) =
        call(authed(TestRequest::post().uri(&format!("{ns}/access-key")))).await;
    assert_eq!(status, 201);
    let new_ns = format!(
        "/namespaces/{}",
        rotated["accessKey"].as_str().expect("new key")
    );
    error(
        &call(authed(TestRequest::get().uri(&ns))).await,
        404,
        "namespace_not_found",
    );
    assert_eq!(
        call(authed(TestRequest::get().uri(&new_ns))).await,
        (200, json!({}))
    );

    assert_eq!(
        call(authed(TestRequest::delete().uri(&new_ns))).await,
        (204, Value::Null)
    );
    error(
        &call(authed(TestRequest::get().uri(&new_ns))).await,
        404,
        "namespace_not_found",
    );

    let (status, bulk) = call(with_json(
        TestRequest::post().uri("/namespaces/bulk"),
        &json!({"count": 3}),
    ))
    .await;
    assert_eq!(status, 201);
    assert_eq!(bulk["accessKeys"].as_array().map(Vec::len), Some(3));
}

#[actix_web::test]
async fn refusals_have_the_documented_status_and_code() {
    let (state, tokens, metrics) = in_memory();
    let app = test::init_service(routes::app(state, tokens, metrics, None)).await;
    let call = async |request: TestRequest| {
        answer(test::call_service(&app, request.to_request()).await).await
    };
    let (_, created) = call(authed(TestRequest::post().uri("/namespaces"))).await;
    let ns = format!(
        "/namespaces/{}",
        created["accessKey"].as_str().expect("key")
    );

    // The service token: missing, wrong, or ambiguous.
    error(
        &call(TestRequest::get().uri(&ns)).await,
        401,
        "unauthorized",
    );
    let wrong = TestRequest::get()
        .uri(&ns)
        .insert_header((AUTHORIZATION, "Bearer nope"));
    error(&call(wrong).await, 401, "unauthorized");
    let twice = TestRequest::get()
        .uri(&ns)
        .append_header((AUTHORIZATION, BEARER))
        .append_header((AUTHORIZATION, "Bearer nope"));
    error(&call(twice).await, 401, "unauthorized");
    error(
        &call(TestRequest::get().uri("/metrics")).await,
        401,
        "unauthorized",
    );

    // Bodies.
    let post = || TestRequest::post().uri(&ns);
    let bad_json = authed(post())
        .insert_header((CONTENT_TYPE, "application/json"))
        .set_payload("{\"key\": ");
    error(&call(bad_json).await, 400, "invalid_json");
    let message = error(
        &call(with_json(post(), &json!({"key": "A", "value": 5}))).await,
        400,
        "invalid_request",
    );
    assert!(message.starts_with("value"), "{message}");
    let message = error(
        &call(with_json(post(), &json!({"value": "v"}))).await,
        400,
        "invalid_request",
    );
    assert!(message.starts_with("key"), "{message}");
    let text = authed(post())
        .insert_header((CONTENT_TYPE, "text/plain"))
        .set_payload(r#"{"key": "A", "value": "v"}"#);
    error(&call(text).await, 415, "unsupported_media_type");
    let large = with_json(post(), &json!({"key": "A", "value": "x".repeat(300)}));
    error(&call(large).await, 413, "payload_too_large");
    let long_value = with_json(post(), &json!({"key": "A", "value": "x".repeat(17)}));
    error(&call(long_value).await, 413, "payload_too_large");
    let count = with_json(
        TestRequest::post().uri("/namespaces/bulk"),
        &json!({"count": 501}),
    );
    error(&call(count).await, 400, "invalid_request");

    // The secret limit.
    for name in ["A", "B", "C"] {
        assert_eq!(
            call(with_json(post(), &json!({"key": name, "value": "v"})))
                .await
                .0,
            201
        );
    }
    let fourth = with_json(post(), &json!({"key": "D", "value": "v"}));
    error(&call(fourth).await, 409, "namespace_full");

    // Names in the path: not UTF-8 once decoded, or not a valid name.
    for name in ["%FF", "%C3%28", "a%0Ab"] {
        let get = authed(TestRequest::get().uri(&format!("{ns}/secrets/{name}")));
        let message = error(&call(get).await, 400, "invalid_request");
        assert!(message.starts_with("key"), "{name}: {message}");
        let delete = authed(TestRequest::delete().uri(&format!("{ns}/secrets/{name}")));
        error(&call(delete).await, 400, "invalid_request");
        let put = with_json(
            TestRequest::put().uri(&format!("{ns}/secrets/{name}")),
            &json!({"value": "v"}),
        );
        error(&call(put).await, 400, "invalid_request");
    }
    let encoded = authed(TestRequest::get().uri(&format!("{ns}/secrets/%41")));
    assert_eq!(call(encoded).await.1["key"], "A");

    // Unknown and malformed namespaces, routes and methods.
    let unknown = format!("/namespaces/{}", "A".repeat(43));
    error(
        &call(authed(TestRequest::get().uri(&unknown))).await,
        404,
        "namespace_not_found",
    );
    let malformed = authed(TestRequest::get().uri("/namespaces/%FF"));
    error(&call(malformed).await, 404, "namespace_not_found");
    error(
        &call(authed(TestRequest::get().uri("/nothing"))).await,
        404,
        "not_found",
    );
    error(
        &call(authed(TestRequest::put().uri(&ns))).await,
        405,
        "method_not_allowed",
    );

    assert_eq!(
        call(authed(TestRequest::get().uri(&ns))).await,
        (200, json!({"A": "v", "B": "v", "C": "v"})),
        "a refused request changes nothing"
    );
}

#[actix_web::test]
async fn the_operations_endpoints_answer() {
    let (state, tokens, metrics) = in_memory();
    let app = test::init_service(routes::app(state, tokens, metrics, None)).await;
    let call = async |request: TestRequest| {
        answer(test::call_service(&app, request.to_request()).await).await
    };
    assert_eq!(
        call(TestRequest::get().uri("/healthz")).await,
        (200, json!({"status": "ok"}))
    );
    assert_eq!(
        call(TestRequest::get().uri("/readyz")).await,
        (200, json!({"status": "ready"}))
    );
    let (status, document) = call(TestRequest::get().uri("/openapi.json")).await;
    assert_eq!(status, 200);
    assert_eq!(document["openapi"], "3.1.0");

    let response = test::call_service(
        &app,
        authed(TestRequest::get().uri("/metrics"))
            .insert_header(("x-request-id", "in-memory-1"))
            .to_request(),
    )
    .await;
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        response
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok()),
        Some("in-memory-1")
    );
    let text = String::from_utf8(test::read_body(response).await.to_vec()).expect("text");
    for line in [
        r#"secrets_http_requests_total{method="GET",route="/healthz",status="200"} 1"#,
        r#"secrets_store_pool_connections{state="max"} 0"#,
    ] {
        assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
    }
}
