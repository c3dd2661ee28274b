//! Service authentication, nothing plaintext at rest, and integrity of stored ciphertexts.

use base64::Engine as _;
use reqwest::Method;
use serde_json::json;

use crate::helpers::{Options, TOKEN, assert_error, spawn_app, spawn_app_with};

#[tokio::test]
async fn namespace_routes_need_a_valid_service_token() {
    let app = spawn_app().await;
    let key = app.create_namespace().await;
    let url = |path: &str| format!("{}{path}", app.address);
    let without = [
        app.client.post(url("/namespaces")),
        app.client.get(url(&format!("/namespaces/{key}"))),
        app.client.get(url("/namespaces/anything/at/all")),
        app.client
            .post(url("/namespaces"))
            .bearer_auth("wrong-token"),
        app.client
            .post(url("/namespaces"))
            .bearer_auth(format!("{TOKEN}x")),
        app.client
            .post(url("/namespaces"))
            .header("authorization", TOKEN),
        app.client
            .post(url("/namespaces"))
            .basic_auth(TOKEN, Some("")),
    ];
    for request in without {
        let response = request.send().await.expect("sent");
        assert_error(response, 401, "unauthorized").await;
    }
    assert_eq!(app.namespace_count().await, 1);
}

#[tokio::test]
async fn two_authorization_headers_are_refused_whichever_comes_first() {
    let app = spawn_app().await;
    let key = app.create_namespace().await;
    let right = format!("Bearer {TOKEN}");
    for (first, second) in [
        (right.as_str(), "Bearer wrong-token"),
        ("Bearer wrong-token", right.as_str()),
        (right.as_str(), right.as_str()),
    ] {
        for (method, path) in [
            (Method::GET, format!("/namespaces/{key}")),
            (Method::POST, "/namespaces".to_owned()),
            (Method::GET, "/metrics".to_owned()),
        ] {
            let response = app
                .client
                .request(method.clone(), format!("{}{path}", app.address))
                .header("authorization", first)
                .header("authorization", second)
                .send()
                .await
                .expect("sent");
            assert_error(response, 401, "unauthorized").await;
        }
    }
    assert_eq!(app.namespace_count().await, 1);
}

#[tokio::test]
async fn every_configured_token_is_accepted_and_a_removed_one_is_refused() {
    let app = spawn_app_with(Options {
        tokens: vec!["token-old".into(), "token-new".into()],
        ..Options::default()
    })
    .await;
    for token in ["token-old", "token-new"] {
        let response = app
            .client
            .post(format!("{}/namespaces", app.address))
            .bearer_auth(token)
            .send()
            .await
            .expect("sent");
        assert_eq!(response.status(), 201, "{token}");
    }
    // The same database served with the old token removed from the configuration.
    let helpers::TestAppParts { db } = app.into_parts().await;
    let app = helpers::spawn_app_on(
        db,
        Options {
            tokens: vec!["token-new".into()],
            ..Options::default()
        },
    )
    .await;
    let refused = app
        .client
        .post(format!("{}/namespaces", app.address))
        .bearer_auth("token-old")
        .send()
        .await
        .expect("sent");
    assert_error(refused, 401, "unauthorized").await;
    let accepted = app
        .client
        .post(format!("{}/namespaces", app.address))
        .bearer_auth("token-new")
        .send()
        .await
        .expect("sent");
    assert_eq!(accepted.status(), 201);
}

use crate::helpers;

fn encodings(plain: &str) -> Vec<String> {
    let bytes = plain.as_bytes();
    let hex = secrets_api::handlers::secrets::hex(bytes);
    vec![
        plain.to_owned(),
        hex,
        base64::engine::general_purpose::STANDARD.encode(bytes),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes),
    ]
}

#[tokio::test]
async fn the_database_holds_no_plaintext_name_value_or_access_key() {
    let app = spawn_app().await;
    let mut needles = Vec::new();
    let mut keys = Vec::new();
    for n in 0..3 {
        let key = app.create_namespace().await;
        for s in 0..4 {
            let name = format!("SERVICE_NAME_{n}_{s}_Zq8w");
            let value = format!("plaintext-value-{n}-{s}-Hj3kLm9p");
            app.put(&key, &name, &value).await;
            needles.push(name);
            needles.push(value);
        }
        let response = app
            .request(Method::PATCH, &format!("/namespaces/{key}"))
            .json(&json!({ format!("PATCHED_NAME_{n}_Xy7"): format!("patched-value-{n}-Qw2e") }))
            .send()
            .await
            .expect("sent");
        assert_eq!(response.status(), 200);
        needles.push(format!("PATCHED_NAME_{n}_Xy7"));
        needles.push(format!("patched-value-{n}-Qw2e"));
        keys.push(key);
    }
    let rotated = app
        .request(Method::POST, &format!("/namespaces/{}/access-key", keys[0]))
        .send()
        .await
        .expect("sent")
        .json::<serde_json::Value>()
        .await
        .expect("json")["accessKey"]
        .as_str()
        .expect("key")
        .to_owned();
    keys.push(rotated);
    let dump = app.dump_tables().await;
    assert!(dump.len() > 1000, "the dump holds the rows");
    for needle in &needles {
        for encoded in encodings(needle) {
            assert!(!dump.contains(&encoded), "found {encoded} at rest");
        }
    }
    for key in &keys {
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(key)
            .expect("access keys are base64url");
        let raw_hex = secrets_api::handlers::secrets::hex(&raw);
        for encoded in [key.clone(), raw_hex] {
            assert!(!dump.contains(&encoded), "access key found at rest");
        }
    }
}

#[tokio::test]
async fn a_tampered_ciphertext_fails_that_read_only_with_integrity_error() {
    let app = spawn_app().await;
    let victim = app.create_namespace().await;
    let bystander = app.create_namespace().await;
    app.put(&victim, "A", "tamper-victim-value").await;
    app.put(&bystander, "B", "b").await;
    let client = app.db_client().await;
    // Flip one bit of the last byte (the GCM tag) of the oldest value: the victim's.
    let flipped = client
        .execute(
            "UPDATE secrets SET value_ct = set_byte(value_ct, length(value_ct) - 1, \
             get_byte(value_ct, length(value_ct) - 1) # 1) \
             WHERE namespace_id = (SELECT namespace_id FROM secrets ORDER BY created_at LIMIT 1)",
            &[],
        )
        .await
        .expect("tamper");
    assert_eq!(flipped, 1);
    for path in [
        format!("/namespaces/{victim}"),
        format!("/namespaces/{victim}/secrets/A"),
    ] {
        let response = app.request(Method::GET, &path).send().await.expect("sent");
        let message = assert_error(response, 500, "integrity_error").await;
        assert!(!message.contains("tamper-victim-value"));
    }
    assert_eq!(app.read(&bystander).await, json!({"B": "b"}));
}

#[tokio::test]
async fn a_ciphertext_copied_from_another_namespace_never_yields_its_plaintext() {
    let app = spawn_app().await;
    let victim = app.create_namespace().await;
    let attacker = app.create_namespace().await;
    app.put(&victim, "SECRET", "victim-value").await;
    app.put(&attacker, "SECRET", "attacker-value").await;
    let client = app.db_client().await;
    // Copy the victim's name and value ciphertexts over the attacker's row of the same name.
    let copied = client
        .execute(
            "WITH v AS (SELECT namespace_id, name_ct, value_ct FROM secrets ORDER BY created_at LIMIT 1) \
             UPDATE secrets SET name_ct = v.name_ct, value_ct = v.value_ct FROM v \
             WHERE secrets.namespace_id <> v.namespace_id",
            &[],
        )
        .await
        .expect("copy");
    assert_eq!(copied, 1);
    let response = app
        .request(Method::GET, &format!("/namespaces/{attacker}"))
        .send()
        .await
        .expect("sent");
    assert_error(response, 500, "integrity_error").await;
    assert_eq!(app.read(&victim).await, json!({"SECRET": "victim-value"}));
}

#[tokio::test]
async fn a_value_moved_to_another_name_of_the_same_namespace_fails_to_decrypt() {
    let app = spawn_app().await;
    let key = app.create_namespace().await;
    app.put(&key, "FIRST", "first-value").await;
    app.put(&key, "SECOND", "second-value").await;
    let client = app.db_client().await;
    let moved = client
        .execute(
            "UPDATE secrets SET value_ct = (SELECT value_ct FROM secrets ORDER BY created_at LIMIT 1) \
             WHERE created_at = (SELECT max(created_at) FROM secrets)",
            &[],
        )
        .await
        .expect("move");
    assert_eq!(moved, 1);
    let response = app
        .request(Method::GET, &format!("/namespaces/{key}/secrets/SECOND"))
        .send()
        .await
        .expect("sent");
    assert_error(response, 500, "integrity_error").await;
    let response = app
        .request(Method::GET, &format!("/namespaces/{key}/secrets/FIRST"))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn a_wrong_kek_refuses_to_start_and_writes_nothing() {
    let app = spawn_app().await;
    let key = app.create_namespace().await;
    app.put(&key, "A", "a").await;
    let before = app.dump_tables().await;
    let helpers::TestAppParts { db } = app.into_parts().await;
    let settings = helpers::settings_for(&db, &[]);
    let wrong = Options {
        kek: "ZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmY=".into(),
        ..Options::default()
    };
    let error = helpers::build(settings, helpers::key_material(&wrong))
        .await
        .expect_err("a wrong KEK must not start");
    let message = error.to_string();
    assert!(message.contains("key id"), "{message}");
    let app = helpers::spawn_app_on(db, Options::default()).await;
    assert_eq!(app.dump_tables().await, before);
    assert_eq!(app.read(&key).await, json!({"A": "a"}));
}
