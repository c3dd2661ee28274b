//! The whole life of a namespace, endpoint by endpoint (SPEC 3.1 and 3.2).

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{assert_error, spawn_app};

#[tokio::test]
async fn creating_a_namespace_returns_a_43_character_access_key() {
    let app = spawn_app().await;
    let key = app.create_namespace().await;
    assert_eq!(key.len(), 43);
    assert!(
        key.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    );
    assert_eq!(app.read(&key).await, json!({}));
}

#[tokio::test]
async fn creating_with_an_empty_object_body_works_too() {
    let app = spawn_app().await;
    let response = app
        .request(Method::POST, "/namespaces")
        .json(&json!({}))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 201);
}

#[tokio::test]
async fn adding_then_updating_a_secret_reports_created_then_not_and_reads_back() {
    let app = spawn_app().await;
    let key = app.create_namespace().await;
    assert!(app.put(&key, "SECRET_API_KEY", "foobar").await);
    assert!(app.put(&key, "OTHER", "x").await);
    assert!(!app.put(&key, "SECRET_API_KEY", "bazqux").await);
    assert_eq!(
        app.read(&key).await,
        json!({"SECRET_API_KEY": "bazqux", "OTHER": "x"})
    );
}

#[tokio::test]
async fn the_put_answer_has_the_documented_shape() {
    let app = spawn_app().await;
    let key = app.create_namespace().await;
    let response = app
        .request(Method::POST, &format!("/namespaces/{key}"))
        .json(&json!({"key": "SECRET_API_KEY", "value": "foobar"}))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body, json!({"key": "SECRET_API_KEY", "created": true}));
}

#[tokio::test]
async fn one_secret_reads_with_timestamps_and_unicode_names_work_in_paths() {
    let app = spawn_app().await;
    let key = app.create_namespace().await;
    app.put(&key, "ключ/with slash", "v1").await;
    let response = app
        .request(
            Method::GET,
            &format!("/namespaces/{key}/secrets/%D0%BA%D0%BB%D1%8E%D1%87%2Fwith%20slash"),
        )
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["key"], "ключ/with slash");
    assert_eq!(body["value"], "v1");
    let created = body["createdAt"].as_str().expect("createdAt");
    let updated = body["updatedAt"].as_str().expect("updatedAt");
    assert!(
        time::OffsetDateTime::parse(created, &time::format_description::well_known::Rfc3339)
            .is_ok()
    );
    assert!(updated >= created);
}

#[tokio::test]
async fn updating_a_value_keeps_created_at_and_moves_updated_at() {
    let app = spawn_app().await;
    let key = app.create_namespace().await;
    app.put(&key, "A", "1").await;
    let get = || async {
        app.request(Method::GET, &format!("/namespaces/{key}/secrets/A"))
            .send()
            .await
            .expect("sent")
            .json::<Value>()
            .await
            .expect("json")
    };
    let before = get().await;
    app.put(&key, "A", "2").await;
    let after = get().await;
    assert_eq!(after["value"], "2");
    assert_eq!(after["createdAt"], before["createdAt"]);
    let parse = |v: &Value| {
        time::OffsetDateTime::parse(
            v.as_str().expect("string"),
            &time::format_description::well_known::Rfc3339,
        )
        .expect("rfc3339")
    };
    assert!(parse(&after["updatedAt"]) >= parse(&before["updatedAt"]));
}

#[tokio::test]
async fn deleting_a_secret_answers_204_then_404() {
    let app = spawn_app().await;
    let key = app.create_namespace().await;
    app.put(&key, "A", "1").await;
    app.put(&key, "B", "2").await;
    let delete = || {
        app.request(Method::DELETE, &format!("/namespaces/{key}/secrets/A"))
            .send()
    };
    assert_eq!(delete().await.expect("sent").status(), 204);
    assert_error(delete().await.expect("sent"), 404, "secret_not_found").await;
    assert_eq!(app.read(&key).await, json!({"B": "2"}));
}

#[tokio::test]
async fn a_merge_patch_sets_and_deletes_in_one_go_and_answers_the_namespace() {
    let app = spawn_app().await;
    let key = app.create_namespace().await;
    app.put(&key, "KEEP", "k").await;
    app.put(&key, "B", "old").await;
    let response = app
        .request(Method::PATCH, &format!("/namespaces/{key}"))
        .header("content-type", "application/merge-patch+json")
        .body(r#"{"A": "x", "B": null, "NEVER_THERE": null}"#)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body, json!({"A": "x", "KEEP": "k"}));
    assert_eq!(app.read(&key).await, body);
}

#[tokio::test]
async fn key_listings_show_names_and_digests_but_never_values() {
    let app = spawn_app().await;
    let key = app.create_namespace().await;
    app.put(&key, "A", "value-one").await;
    app.put(&key, "B", "value-one").await;
    let list = || async {
        let response = app
            .request(Method::GET, &format!("/namespaces/{key}/keys"))
            .send()
            .await
            .expect("sent");
        assert_eq!(response.status(), 200);
        response.json::<Value>().await.expect("json")
    };
    let before = list().await;
    let entries = before.as_array().expect("array");
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["key"], "A");
    assert!(!before.to_string().contains("value-one"));
    let digest = entries[0]["digest"].as_str().expect("digest");
    assert_eq!(digest.len(), 64);
    assert!(digest.bytes().all(|b| b.is_ascii_hexdigit()));
    // Same value, same namespace: same digest. A changed value: another digest.
    assert_eq!(entries[0]["digest"], entries[1]["digest"]);
    app.put(&key, "A", "value-two").await;
    let after = list().await;
    assert_ne!(after[0]["digest"], before[0]["digest"]);
    assert_eq!(after[1]["digest"], before[1]["digest"]);
    for field in ["createdAt", "updatedAt"] {
        assert!(after[0][field].is_string(), "{field}");
    }
}

#[tokio::test]
async fn digests_differ_across_namespaces_for_the_same_value() {
    let app = spawn_app().await;
    let first = app.create_namespace().await;
    let second = app.create_namespace().await;
    app.put(&first, "A", "same").await;
    app.put(&second, "A", "same").await;
    let digest = |key: String| {
        let app = &app;
        async move {
            app.request(Method::GET, &format!("/namespaces/{key}/keys"))
                .send()
                .await
                .expect("sent")
                .json::<Value>()
                .await
                .expect("json")[0]["digest"]
                .clone()
        }
    };
    assert_ne!(digest(first).await, digest(second).await);
}

#[tokio::test]
async fn a_deleted_namespace_is_gone_with_its_secrets() {
    let app = spawn_app().await;
    let key = app.create_namespace().await;
    app.put(&key, "A", "1").await;
    let delete = || {
        app.request(Method::DELETE, &format!("/namespaces/{key}"))
            .send()
    };
    assert_eq!(delete().await.expect("sent").status(), 204);
    assert_error(delete().await.expect("sent"), 404, "namespace_not_found").await;
    let response = app
        .request(Method::GET, &format!("/namespaces/{key}"))
        .send()
        .await
        .expect("sent");
    assert_error(response, 404, "namespace_not_found").await;
    let client = app.db_client().await;
    for table in ["namespaces", "secrets"] {
        let count: i64 = client
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await
            .expect("count")
            .get(0);
        assert_eq!(count, 0, "{table} after delete");
    }
}

#[tokio::test]
async fn rotating_the_access_key_moves_the_namespace_to_the_new_key_at_once() {
    let app = spawn_app().await;
    let old = app.create_namespace().await;
    app.put(&old, "A", "1").await;
    let response = app
        .request(Method::POST, &format!("/namespaces/{old}/access-key"))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 201);
    let new = response.json::<Value>().await.expect("json")["accessKey"]
        .as_str()
        .expect("accessKey")
        .to_owned();
    assert_eq!(new.len(), 43);
    assert_ne!(new, old);
    assert_eq!(app.read(&new).await, json!({"A": "1"}));
    let response = app
        .request(Method::GET, &format!("/namespaces/{old}"))
        .send()
        .await
        .expect("sent");
    assert_error(response, 404, "namespace_not_found").await;
}

#[tokio::test]
async fn bulk_creation_returns_that_many_working_keys() {
    let app = spawn_app().await;
    let response = app
        .request(Method::POST, "/namespaces/bulk")
        .json(&json!({"count": 50}))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.expect("json");
    let keys = body["accessKeys"].as_array().expect("accessKeys");
    assert_eq!(keys.len(), 50);
    let distinct: std::collections::HashSet<_> = keys.iter().map(Value::to_string).collect();
    assert_eq!(distinct.len(), 50);
    let first = keys[0].as_str().expect("key");
    app.put(first, "A", "1").await;
    assert_eq!(app.read(first).await, json!({"A": "1"}));
    assert_eq!(app.namespace_count().await, 50);
}

#[tokio::test]
async fn health_needs_no_token_and_readiness_reports_the_store() {
    let app = spawn_app().await;
    for path in ["/healthz", "/readyz"] {
        let response = app
            .client
            .get(format!("{}{path}", app.address))
            .send()
            .await
            .expect("sent");
        assert_eq!(response.status(), 200, "{path}");
    }
}

#[tokio::test]
async fn concurrent_writers_of_one_name_leave_one_row_holding_one_of_the_values() {
    let app = spawn_app().await;
    let key = app.create_namespace().await;
    let writers = (0..24).map(|i| {
        let request = app
            .request(Method::POST, &format!("/namespaces/{key}"))
            .json(&json!({"key": "RACE", "value": format!("value-{i}")}));
        async move { request.send().await.expect("sent").status().as_u16() }
    });
    let statuses = futures_util::future::join_all(writers).await;
    assert!(statuses.iter().all(|s| *s == 201), "{statuses:?}");
    let body = app.read(&key).await;
    let value = body["RACE"].as_str().expect("one value");
    assert!(value.starts_with("value-"));
    let rows: i64 = app
        .db_client()
        .await
        .query_one("SELECT count(*) FROM secrets", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(rows, 1);
}
