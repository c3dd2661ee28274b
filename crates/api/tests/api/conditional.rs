//! Entity tags and conditional requests: `ETag`, 304 on `If-None-Match`, 412 on a failed
//! `If-Match` or `If-None-Match`, and exactly one winner among writers holding the same tag, on
//! both stores.

use reqwest::header::{ETAG, HeaderValue};
use reqwest::{Method, Response};
use serde_json::{Value, json};

use crate::helpers::{Options, TempDir, TestApp, assert_error, spawn_app, spawn_app_with};

fn etag(response: &Response) -> HeaderValue {
    response
        .headers()
        .get(ETAG)
        .unwrap_or_else(|| panic!("an ETag on a {} answer", response.status()))
        .clone()
}

impl TestApp {
    /// A request with the service token and one precondition header.
    fn conditional(
        &self,
        method: Method,
        path: &str,
        header: &'static str,
        value: HeaderValue,
    ) -> reqwest::RequestBuilder {
        self.request(method, path).header(header, value)
    }

    /// The entity tag of `path`, read with a plain `GET`.
    async fn etag_of(&self, path: &str) -> HeaderValue {
        let response = self.request(Method::GET, path).send().await.expect("sent");
        assert_eq!(response.status(), 200, "GET {path}");
        etag(&response)
    }
}

#[tokio::test]
async fn reads_carry_a_strong_etag_and_if_none_match_answers_304_with_no_body() {
    let app = spawn_app().await;
    let key = app.create_namespace().await;
    app.put(&key, "A", "1").await;
    let ns = format!("/namespaces/{key}");
    let keys = format!("{ns}/keys");
    let secret = format!("{ns}/secrets/A");

    let tag = app.etag_of(&ns).await;
    let text = tag.to_str().expect("ascii");
    assert!(
        text.starts_with('"') && text.ends_with('"'),
        "strong: {text}"
    );
    assert_eq!(
        app.etag_of(&keys).await,
        tag,
        "the listing is the same state"
    );
    assert_eq!(app.etag_of(&ns).await, tag, "stable while nothing changes");
    let secret_tag = app.etag_of(&secret).await;
    assert_ne!(secret_tag, tag, "a secret is a resource of its own");

    let weak = HeaderValue::from_str(&format!("W/{text}")).expect("header");
    for (path, sent, expected) in [
        (&ns, tag.clone(), &tag),
        (&ns, weak, &tag),
        (&keys, tag.clone(), &tag),
        (&secret, secret_tag.clone(), &secret_tag),
        (&ns, HeaderValue::from_static("*"), &tag),
    ] {
        let response = app
            .conditional(Method::GET, path, "If-None-Match", sent)
            .send()
            .await
            .expect("sent");
        assert_eq!(response.status(), 304, "{path}");
        assert_eq!(&etag(&response), expected, "a 304 carries the ETag");
        assert!(response.bytes().await.expect("body").is_empty());
    }

    // Another namespace in the same state has another tag, which matches nothing here.
    let other = app.create_namespace().await;
    app.put(&other, "A", "1").await;
    let other_tag = app.etag_of(&format!("/namespaces/{other}")).await;
    assert_ne!(other_tag, tag);
    let response = app
        .conditional(Method::GET, &ns, "If-None-Match", other_tag)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);

    // A write changes the namespace's tag, and the written secret's, not the others'.
    app.put(&key, "B", "2").await;
    let response = app
        .conditional(Method::GET, &ns, "If-None-Match", tag.clone())
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);
    assert_ne!(etag(&response), tag);
    assert_eq!(
        response.json::<Value>().await.expect("json"),
        json!({"A": "1", "B": "2"})
    );
    // A did not change: the tag read before still names its state (a fresh read's tag differs,
    // made at the namespace's new revision, and names the same version).
    let response = app
        .conditional(Method::GET, &secret, "If-None-Match", secret_tag.clone())
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 304, "A did not change");
    let fresh = etag(&response);
    assert_ne!(fresh, secret_tag);
    let response = app
        .conditional(Method::GET, &secret, "If-None-Match", fresh)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 304);

    // If-Match on a read: 412 when it is not the current state.
    let response = app
        .conditional(Method::GET, &ns, "If-Match", tag)
        .send()
        .await
        .expect("sent");
    assert_error(response, 412, "precondition_failed").await;
}

#[tokio::test]
async fn writes_to_a_namespace_with_a_stale_if_match_are_412_and_change_nothing() {
    let app = spawn_app().await;
    let key = app.create_namespace().await;
    let ns = format!("/namespaces/{key}");
    app.put(&key, "A", "1").await;
    let stale = app.etag_of(&ns).await;

    // A write with the current tag goes through, and answers the tag after it.
    let response = app
        .conditional(Method::POST, &ns, "If-Match", stale.clone())
        .json(&json!({"key": "B", "value": "2"}))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 201);
    let current = etag(&response);
    assert_eq!(app.etag_of(&ns).await, current);

    let refused = [
        (Method::POST, Some(json!({"key": "C", "value": "3"}))),
        (Method::PATCH, Some(json!({"A": null, "C": "3"}))),
        (Method::DELETE, None),
    ];
    for (method, body) in refused {
        let mut request = app.conditional(method.clone(), &ns, "If-Match", stale.clone());
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("sent");
        assert_error(response, 412, "precondition_failed").await;
        assert_eq!(
            app.read(&key).await,
            json!({"A": "1", "B": "2"}),
            "{method}"
        );
    }
    let response = app
        .conditional(
            Method::POST,
            &ns,
            "If-None-Match",
            HeaderValue::from_static("*"),
        )
        .json(&json!({"key": "C", "value": "3"}))
        .send()
        .await
        .expect("sent");
    assert_error(response, 412, "precondition_failed").await;
    assert_eq!(app.etag_of(&ns).await, current, "nothing moved");

    // PATCH with the current tag, then DELETE with the tag it answered.
    let response = app
        .conditional(Method::PATCH, &ns, "If-Match", current)
        .json(&json!({"A": null}))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);
    let after_patch = etag(&response);
    let response = app
        .conditional(Method::DELETE, &ns, "If-Match", after_patch)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 204);
    assert_eq!(app.namespace_count().await, 0);
    // A namespace that does not exist is 404, whatever the precondition.
    let response = app
        .conditional(
            Method::DELETE,
            &ns,
            "If-Match",
            HeaderValue::from_static("*"),
        )
        .send()
        .await
        .expect("sent");
    assert_error(response, 404, "namespace_not_found").await;
}

#[tokio::test]
async fn put_writes_one_secret_with_if_match_and_if_none_match_on_that_secret() {
    let app = spawn_app().await;
    let key = app.create_namespace().await;
    let secret = format!("/namespaces/{key}/secrets/A%20B");
    let put = |header: Option<(&'static str, HeaderValue)>, value: &str| {
        let mut request = app.request(Method::PUT, &secret);
        if let Some((name, tag)) = header {
            request = request.header(name, tag);
        }
        request.json(&json!({ "value": value })).send()
    };

    let created = put(Some(("If-None-Match", HeaderValue::from_static("*"))), "1")
        .await
        .expect("sent");
    assert_eq!(created.status(), 201);
    assert!(created.headers().get(ETAG).is_none(), "RFC 9110, 9.3.4");
    assert_eq!(
        created.json::<Value>().await.expect("json"),
        json!({"key": "A B", "created": true})
    );
    let again = put(Some(("If-None-Match", HeaderValue::from_static("*"))), "2")
        .await
        .expect("sent");
    assert_error(again, 412, "precondition_failed").await;

    let first = app.etag_of(&secret).await;
    // Another secret's write moves the namespace, not this secret's tag.
    app.put(&key, "OTHER", "x").await;
    let updated = put(Some(("If-Match", first.clone())), "3")
        .await
        .expect("sent");
    assert_eq!(updated.status(), 200);
    assert_eq!(
        updated.json::<Value>().await.expect("json"),
        json!({"key": "A B", "created": false})
    );
    let stale = put(Some(("If-Match", first.clone())), "4")
        .await
        .expect("sent");
    assert_error(stale, 412, "precondition_failed").await;
    let unconditional = put(None, "5").await.expect("sent");
    assert_eq!(unconditional.status(), 200);
    assert_eq!(app.read(&key).await, json!({"A B": "5", "OTHER": "x"}));

    let response = app
        .conditional(Method::DELETE, &secret, "If-Match", first)
        .send()
        .await
        .expect("sent");
    assert_error(response, 412, "precondition_failed").await;
    let current = app.etag_of(&secret).await;
    let response = app
        .conditional(Method::DELETE, &secret, "If-Match", current.clone())
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 204);
    // Gone: 404 whatever the precondition; a new write never brings back an old tag.
    let response = app
        .conditional(Method::DELETE, &secret, "If-Match", current.clone())
        .send()
        .await
        .expect("sent");
    assert_error(response, 404, "secret_not_found").await;
    let missing = put(Some(("If-Match", HeaderValue::from_static("*"))), "6")
        .await
        .expect("sent");
    assert_error(missing, 412, "precondition_failed").await;
    assert_eq!(put(None, "7").await.expect("sent").status(), 201);
    assert_ne!(app.etag_of(&secret).await, current);
}

#[tokio::test]
async fn malformed_preconditions_are_400_naming_the_header_and_change_nothing() {
    let app = spawn_app().await;
    let key = app.create_namespace().await;
    let ns = format!("/namespaces/{key}");
    for (header, value) in [
        ("If-Match", "not-a-tag"),
        ("If-None-Match", "'*'"),
        ("If-Match", "*, \"a\""),
        ("If-None-Match", "\"unterminated"),
    ] {
        let response = app
            .conditional(Method::POST, &ns, header, HeaderValue::from_static(value))
            .json(&json!({"key": "A", "value": "1"}))
            .send()
            .await
            .expect("sent");
        let message = assert_error(response, 400, "invalid_request").await;
        assert!(message.contains(header), "{message}");
        let response = app
            .conditional(Method::GET, &ns, header, HeaderValue::from_static(value))
            .send()
            .await
            .expect("sent");
        assert_error(response, 400, "invalid_request").await;
    }
    assert_eq!(app.read(&key).await, json!({}));
}

/// A hundred writers hold the same entity tag and write at once, three times over: a merge
/// patch of the namespace with `If-Match`, a `PUT` of one secret with `If-Match`, and a `PUT`
/// of a new secret with `If-None-Match: *`. Each time exactly one wins and the others get 412.
async fn of_a_hundred_writers_holding_one_etag_exactly_one_wins(app: &TestApp) {
    const WRITERS: usize = 100;
    let key = app.create_namespace().await;
    let ns = format!("/namespaces/{key}");
    app.put(&key, "A", "initial").await;

    let race = async |requests: Vec<reqwest::RequestBuilder>| -> Vec<(u16, usize)> {
        let answers =
            futures_util::future::join_all(requests.into_iter().map(reqwest::RequestBuilder::send))
                .await;
        answers
            .into_iter()
            .enumerate()
            .map(|(n, answer)| (answer.expect("sent").status().as_u16(), n))
            .collect()
    };
    let winner = |answers: &[(u16, usize)], ok: u16| -> usize {
        let winners: Vec<_> = answers.iter().filter(|(s, _)| *s == ok).collect();
        let refused = answers.iter().filter(|(s, _)| *s == 412).count();
        assert_eq!((winners.len(), refused), (1, WRITERS - 1), "{answers:?}");
        winners[0].1
    };

    let tag = app.etag_of(&ns).await;
    let patches = (0..WRITERS)
        .map(|n| {
            app.conditional(Method::PATCH, &ns, "If-Match", tag.clone())
                .json(&json!({ "A": format!("patch {n}") }))
        })
        .collect();
    let won = winner(&race(patches).await, 200);
    assert_eq!(app.read(&key).await, json!({ "A": format!("patch {won}") }));

    let secret = format!("{ns}/secrets/A");
    let tag = app.etag_of(&secret).await;
    let puts = (0..WRITERS)
        .map(|n| {
            app.conditional(Method::PUT, &secret, "If-Match", tag.clone())
                .json(&json!({ "value": format!("put {n}") }))
        })
        .collect();
    let won = winner(&race(puts).await, 200);
    assert_eq!(app.read(&key).await, json!({ "A": format!("put {won}") }));

    let new = format!("{ns}/secrets/NEW");
    let creates = (0..WRITERS)
        .map(|n| {
            app.conditional(
                Method::PUT,
                &new,
                "If-None-Match",
                HeaderValue::from_static("*"),
            )
            .json(&json!({ "value": format!("create {n}") }))
        })
        .collect();
    let won = winner(&race(creates).await, 201);
    let read = app.read(&key).await;
    assert_eq!(read["NEW"], json!(format!("create {won}")), "{read}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_a_hundred_writers_holding_one_etag_exactly_one_wins_on_postgres() {
    let app = spawn_app().await;
    of_a_hundred_writers_holding_one_etag_exactly_one_wins(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_a_hundred_writers_holding_one_etag_exactly_one_wins_on_sqlite() {
    let dir = TempDir::new();
    let app = spawn_app_with(Options {
        env: vec![("DATABASE_URL", dir.url())],
        ..Options::default()
    })
    .await;
    of_a_hundred_writers_holding_one_etag_exactly_one_wins(&app).await;
}
