//! The original service's routes (`compat.original_routes`), as the platform's client calls
//! them: every function of its `secret.remote.ts`, the errors it passes through, the token.

use reqwest::{Method, Response};
use serde_json::{Value, json};

use crate::helpers::{Options, TestApp, spawn_app, spawn_app_with};

async fn compat_app() -> TestApp {
    spawn_app_with(Options {
        env: vec![("SECRETS__COMPAT__ORIGINAL_ROUTES", "true".into())],
        ..Options::default()
    })
    .await
}

/// A request as the platform's client sends it: JSON content type, the service token.
fn call(app: &TestApp, method: Method, path: &str) -> reqwest::RequestBuilder {
    app.request(method, path)
        .header("content-type", "application/json")
}

async fn json(response: Response, status: u16) -> Value {
    assert_eq!(response.status(), status);
    response.json().await.expect("a JSON body")
}

/// Asserts an error in the original's shape, with this service's code beside it.
async fn original_error(response: Response, status: u16, code: &str) -> Value {
    let body = json(response, status).await;
    assert_eq!(body["name"], code, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert_eq!(body["error"]["code"], code, "{body}");
    body
}

#[tokio::test]
async fn the_platforms_client_works_against_the_original_routes() {
    let app = compat_app().await;
    // createNamespace
    let created = json(
        call(&app, Method::POST, "/").send().await.expect("sent"),
        201,
    )
    .await;
    let key = created["accessKey"].as_str().expect("accessKey").to_owned();
    assert_eq!(key.len(), 43, "new namespaces get native keys");
    // setSecret, twice for one name: add, then overwrite.
    for (name, value) in [
        ("API_KEY", "one"),
        ("API_KEY", "two"),
        ("OTHER", "caf\u{e9}"),
    ] {
        let answer = call(&app, Method::POST, &format!("/secrets?accessKey={key}"))
            .json(&json!({"key": name, "value": value}))
            .send()
            .await
            .expect("sent");
        assert_eq!(json(answer, 201).await, json!({}));
    }
    // _dangerouslyExpose...: the values.
    let private = call(
        &app,
        Method::GET,
        &format!("/secrets?accessKey={key}&mode=private"),
    )
    .send()
    .await
    .expect("sent");
    assert_eq!(
        json(private, 200).await,
        json!({"secrets": {"API_KEY": "two", "OTHER": "caf\u{e9}"}})
    );
    // getSecretsForNamespace: this service's keyed digests, the same as /keys gives.
    let public = call(
        &app,
        Method::GET,
        &format!("/secrets?mode=public&accessKey={key}"),
    )
    .send()
    .await
    .expect("sent");
    let public = json(public, 200).await;
    let keys = json(
        app.request(Method::GET, &format!("/namespaces/{key}/keys"))
            .send()
            .await
            .expect("sent"),
        200,
    )
    .await;
    for entry in keys.as_array().expect("a list") {
        let name = entry["key"].as_str().expect("name");
        assert_eq!(public["secrets"][name], entry["digest"], "{name}");
    }
    // Not the original's bare SHA-256 of the value ("two").
    assert_ne!(
        public["secrets"]["API_KEY"],
        "3fc4ccfe745870e2c0d99f71f30ff0656c8dedd41cc1d7d3d376b0dbe685e2f3"
    );
    // deleteSecret: present, then absent; both 202.
    for _ in 0..2 {
        let answer = call(
            &app,
            Method::DELETE,
            &format!("/secrets?accessKey={key}&key=API_KEY"),
        )
        .send()
        .await
        .expect("sent");
        assert_eq!(json(answer, 202).await, json!({"deleted": true}));
    }
    // deleteNamespace, though it still holds a secret (the original answered 500 here).
    let answer = call(&app, Method::DELETE, &format!("/?accessKey={key}"))
        .send()
        .await
        .expect("sent");
    assert_eq!(json(answer, 202).await, json!({"deleted": true}));
    assert_eq!(app.namespace_count().await, 0);
    let gone = call(
        &app,
        Method::GET,
        &format!("/secrets?accessKey={key}&mode=private"),
    )
    .send()
    .await
    .expect("sent");
    original_error(gone, 404, "namespace_not_found").await;
    // The health check.
    let beat = call(&app, Method::GET, "/heartbeat")
        .send()
        .await
        .expect("sent");
    assert_eq!(json(beat, 200).await, json!({"ok": true}));
}

#[tokio::test]
async fn bulk_answers_exactly_n_keys_that_all_work() {
    let app = compat_app().await;
    let answer = call(&app, Method::POST, "/bulk")
        .json(&json!({"n": 250}))
        .send()
        .await
        .expect("sent");
    let body = json(answer, 200).await;
    let keys: Vec<&str> = body["accessKeys"]
        .as_array()
        .expect("keys")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(keys.len(), 250);
    assert_eq!(app.namespace_count().await, 250);
    for key in [keys[0], keys[249]] {
        let read = call(
            &app,
            Method::GET,
            &format!("/secrets?accessKey={key}&mode=private"),
        )
        .send()
        .await
        .expect("sent");
        assert_eq!(json(read, 200).await, json!({"secrets": {}}));
    }
    for bad in [
        json!({"n": 0}),
        json!({"n": 501}),
        json!({"count": 3}),
        json!({"n": "3"}),
    ] {
        let answer = call(&app, Method::POST, "/bulk")
            .json(&bad)
            .send()
            .await
            .expect("sent");
        original_error(answer, 400, "invalid_request").await;
    }
    assert_eq!(
        app.namespace_count().await,
        250,
        "refused requests changed nothing"
    );
}

#[tokio::test]
async fn bad_queries_are_refused_in_the_originals_shape_without_echoing_them() {
    let app = compat_app().await;
    let key = app.create_namespace().await;
    let cases = [
        (
            Method::GET,
            "/secrets?mode=private".to_owned(),
            400,
            "invalid_request",
            "accessKey",
        ),
        (
            Method::GET,
            format!("/secrets?accessKey={key}"),
            400,
            "invalid_request",
            "mode",
        ),
        (
            Method::GET,
            format!("/secrets?accessKey={key}&mode=secret"),
            400,
            "invalid_request",
            "mode",
        ),
        (
            Method::GET,
            format!("/secrets?accessKey={key}&accessKey={key}&mode=private"),
            400,
            "invalid_request",
            "once",
        ),
        (
            Method::DELETE,
            format!("/secrets?accessKey={key}"),
            400,
            "invalid_request",
            "key",
        ),
        (
            Method::DELETE,
            "/".to_owned(),
            400,
            "invalid_request",
            "accessKey",
        ),
        (
            Method::GET,
            "/secrets?accessKey=hunter2hunter2&mode=private".to_owned(),
            404,
            "namespace_not_found",
            "",
        ),
        (
            Method::DELETE,
            format!("/secrets?accessKey={key}&key=a%0Ab"),
            400,
            "invalid_request",
            "control characters",
        ),
        (
            Method::PUT,
            "/secrets".to_owned(),
            405,
            "method_not_allowed",
            "",
        ),
    ];
    for (method, path, status, code, named) in cases {
        let answer = call(&app, method.clone(), &path)
            .send()
            .await
            .expect("sent");
        let body = original_error(answer, status, code).await;
        let message = body["message"].as_str().expect("message");
        assert!(message.contains(named), "{method} {path}: {message}");
        assert!(
            !message.contains(&key) && !message.contains("hunter2"),
            "{message}"
        );
    }
    let put = call(&app, Method::POST, &format!("/secrets?accessKey={key}"))
        .json(&json!({"key": "", "value": "v"}))
        .send()
        .await
        .expect("sent");
    original_error(put, 400, "invalid_request").await;
}

#[tokio::test]
async fn every_original_route_needs_the_service_token() {
    let app = compat_app().await;
    let key = app.create_namespace().await;
    let routes = [
        (Method::POST, "/".to_owned()),
        (Method::DELETE, format!("/?accessKey={key}")),
        (Method::POST, "/bulk".to_owned()),
        (
            Method::GET,
            format!("/secrets?accessKey={key}&mode=private"),
        ),
        (Method::POST, format!("/secrets?accessKey={key}")),
        (Method::DELETE, format!("/secrets?accessKey={key}&key=A")),
        (Method::GET, "/heartbeat".to_owned()),
    ];
    for (method, path) in routes {
        for token in [None, Some("wrong-token")] {
            let mut request = app
                .client
                .request(method.clone(), format!("{}{path}", app.address))
                .header("content-type", "application/json")
                .body("{}");
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            let answer = request.send().await.expect("sent");
            original_error(answer, 401, "unauthorized").await;
        }
    }
    assert_eq!(
        app.namespace_count().await,
        1,
        "nothing was created or deleted"
    );
}

#[tokio::test]
async fn the_original_routes_are_off_unless_configured() {
    let app = spawn_app().await;
    for (method, path) in [
        (Method::POST, "/"),
        (Method::GET, "/secrets?accessKey=x&mode=private"),
        (Method::GET, "/heartbeat"),
    ] {
        let answer = call(&app, method, path).send().await.expect("sent");
        let body = json(answer, 404).await;
        assert_eq!(body["error"]["code"], "not_found", "{path}");
    }
}

#[tokio::test]
async fn requests_on_the_original_routes_are_counted_by_route_template() {
    let app = compat_app().await;
    let key = app.create_namespace().await;
    let read = call(
        &app,
        Method::GET,
        &format!("/secrets?accessKey={key}&mode=private"),
    )
    .send()
    .await
    .expect("sent");
    assert_eq!(read.status(), 200);
    let metrics = app
        .request(Method::GET, "/metrics")
        .send()
        .await
        .expect("sent")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains(r#"route="/secrets""#),
        "the template is the label"
    );
    assert!(!metrics.contains(&key), "no access key in a label");
}
