//! Every row of SPEC 3.4: the status, the JSON error, and that a refused request changed
//! nothing.

use reqwest::Method;
use serde_json::json;

use crate::helpers::{Options, assert_error, spawn_app, spawn_app_with};

#[tokio::test]
async fn bad_bodies_are_refused_with_the_documented_status_and_change_nothing() {
    let app = spawn_app().await;
    let key = app.create_namespace().await;
    app.put(&key, "EXISTING", "kept").await;
    let json = "application/json";
    let cases: &[(&str, &str, &str, &str, u16, &str)] = &[
        // (why, method, content type, body, status, code)
        (
            "malformed JSON",
            "POST",
            json,
            "{\"key\": ",
            400,
            "invalid_json",
        ),
        (
            "invalid UTF-8",
            "POST",
            json,
            "{\"key\": \"\u{fffd}",
            400,
            "invalid_json",
        ),
        (
            "wrong type",
            "POST",
            json,
            r#"{"key": "A", "value": 5}"#,
            400,
            "invalid_request",
        ),
        (
            "missing value",
            "POST",
            json,
            r#"{"key": "A"}"#,
            400,
            "invalid_request",
        ),
        (
            "missing key",
            "POST",
            json,
            r#"{"value": "v"}"#,
            400,
            "invalid_request",
        ),
        (
            "not an object",
            "POST",
            json,
            r#"["key", "value"]"#,
            400,
            "invalid_request",
        ),
        (
            "empty name",
            "POST",
            json,
            r#"{"key": "", "value": "v"}"#,
            400,
            "invalid_request",
        ),
        (
            "control character",
            "POST",
            json,
            r#"{"key": "A\u0007", "value": "v"}"#,
            400,
            "invalid_request",
        ),
        (
            "duplicate keys",
            "POST",
            json,
            r#"{"key": "A", "value": "1", "value": "2"}"#,
            400,
            "invalid_request",
        ),
        (
            "text body",
            "POST",
            "text/plain",
            r#"{"key": "A", "value": "v"}"#,
            415,
            "unsupported_media_type",
        ),
        (
            "no content type",
            "POST",
            "",
            r#"{"key": "A", "value": "v"}"#,
            415,
            "unsupported_media_type",
        ),
        (
            "patch number",
            "PATCH",
            json,
            r#"{"EXISTING": 1}"#,
            400,
            "invalid_request",
        ),
        (
            "patch nested",
            "PATCH",
            json,
            r#"{"EXISTING": {"a": "b"}}"#,
            400,
            "invalid_request",
        ),
        (
            "patch duplicate",
            "PATCH",
            json,
            r#"{"A": "1", "A": null}"#,
            400,
            "invalid_request",
        ),
        (
            "patch form",
            "PATCH",
            "application/x-www-form-urlencoded",
            "A=1",
            415,
            "unsupported_media_type",
        ),
    ];
    for (why, method, content_type, body, status, code) in cases {
        let mut request = app
            .request(
                Method::from_bytes(method.as_bytes()).expect("method"),
                &format!("/namespaces/{key}"),
            )
            .body(body.replace('\u{fffd}', "\u{0}").into_bytes());
        if *why == "invalid UTF-8" {
            request = app
                .request(Method::POST, &format!("/namespaces/{key}"))
                .body(b"{\"key\": \"\xff\xfe\", \"value\": \"v\"}".to_vec());
        }
        if !content_type.is_empty() {
            request = request.header("content-type", *content_type);
        }
        let response = request.send().await.expect("sent");
        let message = assert_error(response, *status, code).await;
        assert!(!message.contains("kept"), "{why}: {message}");
    }
    assert_eq!(app.read(&key).await, json!({"EXISTING": "kept"}));
}

#[tokio::test]
async fn error_messages_name_the_field() {
    let app = spawn_app().await;
    let key = app.create_namespace().await;
    let cases = [
        (json!({"key": "A", "value": 5}), "value"),
        (json!({"key": 7, "value": "v"}), "key"),
        (json!({"value": "v"}), "key"),
    ];
    for (body, field) in cases {
        let response = app
            .request(Method::POST, &format!("/namespaces/{key}"))
            .json(&body)
            .send()
            .await
            .expect("sent");
        let message = assert_error(response, 400, "invalid_request").await;
        assert!(message.starts_with(field), "{body}: {message}");
    }
    let response = app
        .request(Method::POST, "/namespaces/bulk")
        .json(&json!({"count": 501}))
        .send()
        .await
        .expect("sent");
    let message = assert_error(response, 400, "invalid_request").await;
    assert!(message.starts_with("count"), "{message}");
}

#[tokio::test]
async fn bulk_counts_outside_one_to_five_hundred_create_nothing() {
    let app = spawn_app().await;
    for body in [
        json!({"count": 0}),
        json!({"count": 501}),
        json!({"count": "3"}),
        json!({}),
    ] {
        let response = app
            .request(Method::POST, "/namespaces/bulk")
            .json(&body)
            .send()
            .await
            .expect("sent");
        assert_error(response, 400, "invalid_request").await;
    }
    assert_eq!(app.namespace_count().await, 0);
}

#[tokio::test]
async fn unknown_and_malformed_access_keys_are_namespace_not_found() {
    let app = spawn_app().await;
    let unknown = "A".repeat(43);
    for key in [
        unknown.as_str(),
        "short",
        "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!",
    ] {
        for (method, path) in [
            (Method::GET, format!("/namespaces/{key}")),
            (Method::DELETE, format!("/namespaces/{key}")),
            (Method::GET, format!("/namespaces/{key}/keys")),
            (Method::POST, format!("/namespaces/{key}/access-key")),
            (Method::GET, format!("/namespaces/{key}/secrets/A")),
        ] {
            let response = app.request(method, &path).send().await.expect("sent");
            assert_error(response, 404, "namespace_not_found").await;
        }
        let response = app
            .request(Method::POST, &format!("/namespaces/{key}"))
            .json(&json!({"key": "A", "value": "v"}))
            .send()
            .await
            .expect("sent");
        assert_error(response, 404, "namespace_not_found").await;
    }
}

#[tokio::test]
async fn unknown_routes_are_404_and_wrong_methods_405() {
    let app = spawn_app().await;
    let key = app.create_namespace().await;
    let response = app
        .request(Method::GET, "/nothing-here")
        .send()
        .await
        .expect("sent");
    assert_error(response, 404, "not_found").await;
    let response = app
        .request(Method::GET, &format!("/namespaces/{key}/secrets/A/extra"))
        .send()
        .await
        .expect("sent");
    assert_error(response, 404, "not_found").await;
    for (method, path) in [
        (Method::GET, "/namespaces".to_owned()),
        (Method::PUT, format!("/namespaces/{key}")),
        (Method::DELETE, format!("/namespaces/{key}/keys")),
        (Method::GET, "/namespaces/bulk".to_owned()),
        (Method::POST, "/healthz".to_owned()),
    ] {
        let response = app
            .request(method.clone(), &path)
            .send()
            .await
            .expect("sent");
        assert_error(response, 405, "method_not_allowed").await;
    }
}

#[tokio::test]
async fn bodies_over_the_limit_are_413_before_parsing() {
    let app = spawn_app_with(Options {
        env: vec![("SECRETS__LIMITS__MAX_BODY_BYTES", "1024".into())],
        ..Options::default()
    })
    .await;
    let key = app.create_namespace().await;
    let big = format!(r#"{{"key": "A", "value": "{}"}}"#, "x".repeat(2000));
    let response = app
        .request(Method::POST, &format!("/namespaces/{key}"))
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .expect("sent");
    assert_error(response, 413, "payload_too_large").await;
    // Not even JSON: still 413, since the size is checked first.
    let response = app
        .request(Method::PATCH, &format!("/namespaces/{key}"))
        .header("content-type", "application/json")
        .body(vec![b'{'; 5000])
        .send()
        .await
        .expect("sent");
    assert_error(response, 413, "payload_too_large").await;
    assert_eq!(app.read(&key).await, json!({}));
}

#[tokio::test]
async fn values_over_their_limit_are_413_and_write_nothing() {
    let app = spawn_app_with(Options {
        env: vec![("SECRETS__LIMITS__MAX_VALUE_BYTES", "8".into())],
        ..Options::default()
    })
    .await;
    let key = app.create_namespace().await;
    app.put(&key, "A", "12345678").await;
    let response = app
        .request(Method::POST, &format!("/namespaces/{key}"))
        .json(&json!({"key": "A", "value": "123456789"}))
        .send()
        .await
        .expect("sent");
    assert_error(response, 413, "payload_too_large").await;
    let response = app
        .request(Method::PATCH, &format!("/namespaces/{key}"))
        .json(&json!({"B": "ok", "A": "123456789"}))
        .send()
        .await
        .expect("sent");
    assert_error(response, 413, "payload_too_large").await;
    assert_eq!(app.read(&key).await, json!({"A": "12345678"}));
}

#[tokio::test]
async fn a_full_namespace_refuses_new_names_with_409_and_a_patch_is_all_or_nothing() {
    let app = spawn_app_with(Options {
        env: vec![("SECRETS__LIMITS__MAX_SECRETS_PER_NAMESPACE", "3".into())],
        ..Options::default()
    })
    .await;
    let key = app.create_namespace().await;
    for name in ["A", "B", "C"] {
        app.put(&key, name, "v").await;
    }
    let response = app
        .request(Method::POST, &format!("/namespaces/{key}"))
        .json(&json!({"key": "D", "value": "v"}))
        .send()
        .await
        .expect("sent");
    assert_error(response, 409, "namespace_full").await;
    assert!(
        !app.put(&key, "A", "updated").await,
        "updates still work when full"
    );
    let response = app
        .request(Method::PATCH, &format!("/namespaces/{key}"))
        .json(&json!({"B": "changed", "D": "d", "E": "e"}))
        .send()
        .await
        .expect("sent");
    assert_error(response, 409, "namespace_full").await;
    assert_eq!(
        app.read(&key).await,
        json!({"A": "updated", "B": "v", "C": "v"})
    );
}

#[tokio::test]
async fn a_secret_name_that_is_not_utf8_once_percent_decoded_is_refused_not_replaced() {
    let app = spawn_app().await;
    let key = app.create_namespace().await;
    // The name a lossy decoding of `%FF` would give.
    app.put(&key, "\u{fffd}", "kept").await;
    for path in ["%FF", "%C3%28", "A%E2%82"] {
        for method in [Method::GET, Method::PUT, Method::DELETE] {
            let response = app
                .request(method.clone(), &format!("/namespaces/{key}/secrets/{path}"))
                .json(&json!({"value": "replaced?"}))
                .send()
                .await
                .expect("sent");
            let message = assert_error(response, 400, "invalid_request").await;
            assert!(message.starts_with("key"), "{method} {path}: {message}");
        }
    }
    assert_eq!(app.read(&key).await, json!({"\u{fffd}": "kept"}));
    // Valid percent-encoding still names the secret.
    let response = app
        .request(Method::GET, &format!("/namespaces/{key}/secrets/%EF%BF%BD"))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);
}
