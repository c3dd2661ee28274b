//! Limits under concurrency: the per-namespace secret limit holds exactly when many writers,
//! on several replicas, race to add the last names; and with the limit raised, a namespace of
//! 10,000 secrets reads, patches and deletes correctly.
//!
//! `FAULTS_LIMIT_RACES` sets how many races run per store (default 2).

use std::collections::{BTreeMap, BTreeSet};

use reqwest::{Client, Method};
use secrets_adapters::testing::TestDatabase;
use serde_json::{Map, Value, json};

use crate::support::{
    Node, Rng, Scratch, TOKEN, client, count, create_namespace, knob, list_keys, service_env, sql,
};

/// The default `limits.max_secrets_per_namespace`.
const LIMIT: usize = 1000;
/// Racers adding one new name each, and racers adding two new names in one patch.
const SINGLE_RACERS: usize = 40;
const PATCH_RACERS: usize = 10;

async fn send(
    client: &Client,
    base: &str,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    let mut request = client
        .request(method, format!("{base}{path}"))
        .bearer_auth(TOKEN);
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request.send().await.expect("answered");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// One race: a namespace a few names short of the limit, then many writers at once, spread
/// over `bases` (the replicas), each adding new names. Every writer is either refused with
/// 409 `namespace_full` and changes nothing, or adds its names; the namespace ends exactly at
/// the limit (the single-name writers alone outnumber the room, and one of them is refused only
/// when the namespace is full), never past it.
async fn race_to_the_limit(client: &Client, bases: &[String], rng: &mut Rng) -> usize {
    let key = create_namespace(client, &bases[0]).await;
    let room = rng.between(1, 12) as usize;
    let fill: Map<String, Value> = (0..LIMIT - room)
        .map(|i| (format!("FILL_{i}"), json!("f")))
        .collect();
    let (status, body) = send(
        client,
        &bases[0],
        Method::PATCH,
        &format!("/namespaces/{key}"),
        Some(&Value::Object(fill.clone())),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body.as_object().map(Map::len), Some(LIMIT - room));

    let mut racers = Vec::new();
    for i in 0..SINGLE_RACERS + PATCH_RACERS {
        let (client, base, path) = (
            client.clone(),
            bases[i % bases.len()].clone(),
            format!("/namespaces/{key}"),
        );
        racers.push(tokio::spawn(async move {
            if i < SINGLE_RACERS {
                let name = format!("NEW_{i}");
                let body = json!({"key": name, "value": "new"});
                let (status, answer) = send(&client, &base, Method::POST, &path, Some(&body)).await;
                (status, answer, vec![name])
            } else {
                // Two new names and an update of an existing one: all or nothing.
                let names = vec![format!("NEW_{i}_A"), format!("NEW_{i}_B")];
                let body = json!({&names[0]: "new", &names[1]: "new", "FILL_0": "updated"});
                let (status, answer) =
                    send(&client, &base, Method::PATCH, &path, Some(&body)).await;
                (status, answer, names)
            }
        }));
    }
    let mut added = BTreeSet::new();
    let mut refused = 0;
    let mut fill_updated = false;
    for racer in racers {
        let (status, answer, names) = racer.await.expect("a racer panicked");
        match status {
            201 => {
                assert_eq!(answer["created"], true, "{answer}");
                added.extend(names);
            }
            200 => {
                fill_updated = true;
                added.extend(names);
            }
            409 => {
                assert_eq!(answer["error"]["code"], "namespace_full", "{answer}");
                refused += 1;
            }
            _ => panic!("a racer got {status} {answer}"),
        }
    }
    assert!(
        refused >= SINGLE_RACERS - room,
        "{refused} refused with room for {room}"
    );

    let (status, read) = send(
        client,
        &bases[0],
        Method::GET,
        &format!("/namespaces/{key}"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let read = read.as_object().expect("an object");
    assert_eq!(read.len(), LIMIT, "the namespace ends exactly at the limit");
    assert_eq!(
        added.len(),
        room,
        "the writers acknowledged exactly the room there was"
    );
    let expected: BTreeSet<String> = fill.keys().cloned().chain(added).collect();
    let found: BTreeSet<String> = read.keys().cloned().collect();
    assert_eq!(
        found, expected,
        "exactly the acknowledged names, none refused"
    );
    let fill_0 = if fill_updated { "updated" } else { "f" };
    assert_eq!(read["FILL_0"], fill_0, "a refused patch changed nothing");
    for base in bases {
        assert_eq!(list_keys(client, base, &key).await.len(), LIMIT);
    }
    LIMIT
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_racing_over_three_replicas_never_pass_the_secret_limit_on_postgres() {
    let mut rng =
        Rng::from_env("writers_racing_over_three_replicas_never_pass_the_secret_limit_on_postgres");
    let scratch = Scratch::new("limit-pg");
    let db = TestDatabase::create().await;
    let env = service_env(db.url(), &[]);
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(Node::start(&scratch, &env).await);
    }
    let bases: Vec<String> = nodes.iter().map(Node::base).collect();
    let client = client();
    let sql = sql(db.url()).await;
    let mut total = 0;
    for _ in 0..knob("FAULTS_LIMIT_RACES", 2) {
        total += race_to_the_limit(&client, &bases, &mut rng).await;
        assert_eq!(
            count(&sql, "SELECT count(*) FROM secrets").await,
            total as i64
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_racing_never_pass_the_secret_limit_on_sqlite() {
    let mut rng = Rng::from_env("writers_racing_never_pass_the_secret_limit_on_sqlite");
    let scratch = Scratch::new("limit-sqlite");
    let node = Node::start(&scratch, &service_env(&scratch.sqlite_url(), &[])).await;
    let client = client();
    for _ in 0..knob("FAULTS_LIMIT_RACES", 2) {
        race_to_the_limit(&client, &[node.base()], &mut rng).await;
    }
}

/// The settings a namespace of 10,000 secrets needs: a higher limit, and bodies big enough for
/// patches of thousands of names.
fn raised(url: &str) -> Vec<(String, String)> {
    service_env(
        url,
        &[
            (
                "SECRETS__LIMITS__MAX_SECRETS_PER_NAMESPACE",
                "20000".to_owned(),
            ),
            ("SECRETS__LIMITS__MAX_BODY_BYTES", (8 << 20).to_string()),
        ],
    )
}

/// One namespace of a service: requests to its routes.
struct Namespace<'a> {
    client: &'a Client,
    base: &'a str,
    key: String,
}

impl Namespace<'_> {
    /// `method` on `/namespaces/{key}{suffix}`.
    async fn send(&self, method: Method, suffix: &str, body: Option<&Value>) -> (u16, Value) {
        let path = format!("/namespaces/{}{suffix}", self.key);
        send(self.client, self.base, method, &path, body).await
    }

    /// Asserts that the namespace reads as exactly `expected`.
    async fn assert_holds(&self, expected: &BTreeMap<String, Value>, when: &str) {
        let (status, read) = self.send(Method::GET, "", None).await;
        assert_eq!(status, 200, "{when}");
        // Compared whole, but not printed whole: ten thousand values say nothing.
        assert!(read == as_object(expected), "{when}: the read differs");
    }
}

fn as_object(map: &BTreeMap<String, Value>) -> Value {
    Value::Object(map.clone().into_iter().collect())
}

const LARGE: usize = 10_000;

/// Builds a namespace of 10,000 secrets in four patches; reads it whole and lists it.
async fn build_ten_thousand<'a>(
    client: &'a Client,
    base: &'a str,
) -> (Namespace<'a>, BTreeMap<String, Value>) {
    const PATCHES: usize = 4;
    let namespace = Namespace {
        client,
        base,
        key: create_namespace(client, base).await,
    };
    let mut expected: BTreeMap<String, Value> = BTreeMap::new();
    for part in 0..PATCHES {
        let changes: Map<String, Value> = (part * LARGE / PATCHES..(part + 1) * LARGE / PATCHES)
            .map(|i| {
                let value = format!("value-{i}-{}", "x".repeat(i % 64));
                (format!("SECRET_{i:05}"), json!(value))
            })
            .collect();
        expected.extend(changes.clone());
        let (status, body) = namespace
            .send(Method::PATCH, "", Some(&Value::Object(changes)))
            .await;
        assert_eq!(status, 200, "{}", body["error"]);
        assert_eq!(body.as_object().map(Map::len), Some(expected.len()));
    }
    namespace.assert_holds(&expected, "after the build").await;
    let listed = list_keys(client, base, &namespace.key).await;
    let unique: BTreeSet<&String> = listed.iter().collect();
    assert_eq!((listed.len(), unique.len()), (LARGE, LARGE));
    assert!(unique.into_iter().eq(expected.keys()));
    (namespace, expected)
}

/// Builds a namespace of 10,000 secrets, patches a fifth of it (updates, deletes and
/// additions in one patch), reads one secret, deletes one, then deletes the namespace.
async fn ten_thousand_secrets(client: &Client, base: &str) {
    let (namespace, mut expected) = build_ten_thousand(client, base).await;

    let mut changes = Map::new();
    for i in (0..LARGE).step_by(10) {
        let updated = json!(format!("updated-{i}"));
        changes.insert(format!("SECRET_{i:05}"), updated.clone());
        expected.insert(format!("SECRET_{i:05}"), updated);
        changes.insert(format!("SECRET_{:05}", i + 1), Value::Null);
        expected.remove(&format!("SECRET_{:05}", i + 1));
    }
    for j in 0..500 {
        changes.insert(format!("EXTRA_{j}"), json!(format!("extra-{j}")));
        expected.insert(format!("EXTRA_{j}"), json!(format!("extra-{j}")));
    }
    let (status, body) = namespace
        .send(Method::PATCH, "", Some(&Value::Object(changes)))
        .await;
    assert_eq!(status, 200);
    assert!(body == as_object(&expected), "the patch's answer differs");
    assert_eq!(expected.len(), LARGE - 1000 + 500);
    namespace.assert_holds(&expected, "after the patch").await;

    let (status, one) = namespace
        .send(Method::GET, "/secrets/SECRET_09990", None)
        .await;
    assert_eq!((status, &one["value"]), (200, &json!("updated-9990")));
    let (status, _) = namespace
        .send(Method::DELETE, "/secrets/SECRET_09992", None)
        .await;
    assert_eq!(status, 204);
    expected.remove("SECRET_09992");
    let (status, gone) = namespace
        .send(Method::GET, "/secrets/SECRET_09992", None)
        .await;
    assert_eq!(
        (status, &gone["error"]["code"]),
        (404, &json!("secret_not_found"))
    );
    namespace.assert_holds(&expected, "after a delete").await;

    let (status, _) = namespace.send(Method::DELETE, "", None).await;
    assert_eq!(status, 204);
    let (status, _) = namespace.send(Method::GET, "", None).await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_of_ten_thousand_secrets_reads_patches_and_deletes_on_postgres() {
    let scratch = Scratch::new("large-pg");
    let db = TestDatabase::create().await;
    let node = Node::start(&scratch, &raised(db.url())).await;
    ten_thousand_secrets(&client(), &node.base()).await;
    let sql = sql(db.url()).await;
    assert_eq!(
        count(&sql, "SELECT count(*) FROM secrets").await,
        0,
        "deleted with it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_of_ten_thousand_secrets_reads_patches_and_deletes_on_sqlite() {
    let scratch = Scratch::new("large-sqlite");
    let node = Node::start(&scratch, &raised(&scratch.sqlite_url())).await;
    ten_thousand_secrets(&client(), &node.base()).await;
}
