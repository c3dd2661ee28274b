//! Write load with acknowledged-write accounting.
//!
//! Writers are tasks that each own a few names (so every name is written by one task, one
//! request at a time, and its history is a sequence). Before a request goes out, the
//! [`Ledger`] notes the value it would leave; when the answer is a success, that value becomes
//! the name's acknowledged state and everything noted before it is settled. A request without
//! an answer, or answered 503, may or may not have been applied, so its value stays possible
//! until a later write of the name is acknowledged.
//!
//! Reading back then has one rule per name: the value found is the last acknowledged one or
//! one sent after it. An acknowledged write that is missing, or overwritten by an older value,
//! breaks the rule; so does a name nobody wrote. Names written in pairs by one merge patch must
//! also hold the same value: a patch is applied whole or not at all.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::{Client, Method};
use serde_json::{Map, Value, json};
use tokio::sync::watch;

use crate::support::{Rng, TOKEN};

/// What a test knows about one name.
#[derive(Debug, Default)]
struct Entry {
    /// The value the last acknowledged write left; `None` when that was a delete, or before
    /// any write was acknowledged: either way, the name must be absent.
    acked: Option<String>,
    /// States of writes sent after it whose outcome is unknown.
    unknown: Vec<Option<String>>,
}

impl Entry {
    fn allows(&self, found: Option<&str>) -> bool {
        found == self.acked.as_deref() || self.unknown.iter().any(|v| v.as_deref() == found)
    }
}

/// Every write a test sent and what became of it, by (access key, name).
#[derive(Debug, Default)]
pub struct Ledger {
    entries: Mutex<BTreeMap<(String, String), Entry>>,
    pairs: Mutex<Vec<(String, String, String)>>,
    namespaces: Mutex<BTreeSet<String>>,
}

impl Ledger {
    /// A namespace whose creation was acknowledged: it must read back.
    pub fn namespace(&self, key: &str) {
        lock(&self.namespaces).insert(key.to_owned());
    }

    /// Two names only ever written together, by one merge patch.
    pub fn pair(&self, key: &str, a: &str, b: &str) {
        lock(&self.pairs).push((key.to_owned(), a.to_owned(), b.to_owned()));
    }

    /// A write of `value` (`None`: a delete) to `name` is about to be sent.
    pub fn sending(&self, key: &str, name: &str, value: Option<&str>) {
        lock(&self.entries)
            .entry((key.to_owned(), name.to_owned()))
            .or_default()
            .unknown
            .push(value.map(str::to_owned));
    }

    /// That write was acknowledged. The writes of a name go out one at a time, so every
    /// earlier one was answered or abandoned before this one was sent, and this one is now the
    /// state to find.
    pub fn acknowledged(&self, key: &str, name: &str, value: Option<&str>) {
        let mut entries = lock(&self.entries);
        let entry = entries
            .entry((key.to_owned(), name.to_owned()))
            .or_default();
        entry.acked = value.map(str::to_owned);
        entry.unknown.clear();
    }

    /// Every namespace to read back.
    pub fn namespaces(&self) -> Vec<String> {
        lock(&self.namespaces).iter().cloned().collect()
    }

    /// How many names the acknowledged writes left holding a value.
    pub fn names_with_values(&self) -> usize {
        lock(&self.entries)
            .values()
            .filter(|e| e.acked.is_some())
            .count()
    }

    /// What is wrong with `found`, the content of namespace `key` as read back.
    pub fn check(&self, key: &str, found: &Map<String, Value>) -> Vec<String> {
        let short = &key[..8];
        let mut problems = Vec::new();
        let entries = lock(&self.entries);
        let mut known = BTreeSet::new();
        for ((ns, name), entry) in entries.range((key.to_owned(), String::new())..) {
            if ns != key {
                break;
            }
            known.insert(name.as_str());
            let value = found
                .get(name)
                .map(|v| v.as_str().unwrap_or("<not a string>"));
            if !entry.allows(value) {
                problems.push(format!(
                    "{short}../{name}: read {}; acknowledged {}, possibly after it {:?}",
                    describe(value),
                    describe(entry.acked.as_deref()),
                    entry
                        .unknown
                        .iter()
                        .map(|v| describe(v.as_deref()))
                        .collect::<Vec<_>>()
                ));
            }
        }
        for name in found.keys().filter(|name| !known.contains(name.as_str())) {
            problems.push(format!("{short}../{name}: present, but never written"));
        }
        problems.extend(self.check_pairs(key, found));
        problems
    }

    /// What is wrong with the pairs of namespace `key` in `found`: any read of it, at any
    /// moment, must show both names of a pair with the same value.
    pub fn check_pairs(&self, key: &str, found: &Map<String, Value>) -> Vec<String> {
        let short = &key[..8];
        let mut problems = Vec::new();
        for (_, a, b) in lock(&self.pairs).iter().filter(|(ns, ..)| ns == key) {
            let (value_a, value_b) = (found.get(a), found.get(b));
            if value_a != value_b {
                problems.push(format!(
                    "{short}../{a} and {b} were only ever patched together, yet read {} and {}",
                    describe(value_a.and_then(Value::as_str)),
                    describe(value_b.and_then(Value::as_str)),
                ));
            }
        }
        problems
    }
}

/// A value as a problem report shows it: its writer and sequence number, and its length
/// (the rest is padding).
fn describe(value: Option<&str>) -> String {
    match value {
        None => "absent".to_owned(),
        Some(value) => {
            let head: String = value.split('.').take(2).collect::<Vec<_>>().join(".");
            format!("{head:?} ({} bytes)", value.len())
        }
    }
}

/// An error with every cause under it (reqwest's own message rarely says what failed).
fn causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What the load saw: counts, the slowest answer, and everything that should not happen.
#[derive(Debug, Default)]
pub struct Report {
    pub acknowledged: u64,
    pub unavailable: u64,
    /// Answers 500 and above other than an expected 503 (each is also a problem).
    pub server_errors: u64,
    pub slowest: Duration,
    pub problems: Vec<String>,
}

/// What the writers of one test share.
pub struct Load {
    pub client: Client,
    pub ledger: Arc<Ledger>,
    /// Acknowledged requests so far; tests wait on it for "after N acknowledged writes".
    pub acks: watch::Sender<u64>,
    report: Mutex<Report>,
    /// Tells the writers to finish after their current request.
    pub stop: AtomicBool,
    /// The service was killed on purpose: a request that gets no answer ends its writer
    /// quietly instead of being a problem.
    pub killed: AtomicBool,
    /// 503 `unavailable` is an expected answer (the database is being cut away).
    pub unavailable_expected: bool,
}

impl Load {
    pub fn new(client: Client, ledger: Arc<Ledger>, unavailable_expected: bool) -> Arc<Self> {
        Arc::new(Self {
            client,
            ledger,
            acks: watch::channel(0).0,
            report: Mutex::new(Report::default()),
            stop: AtomicBool::new(false),
            killed: AtomicBool::new(false),
            unavailable_expected,
        })
    }

    /// Acknowledged requests so far.
    pub fn acks(&self) -> u64 {
        *self.acks.borrow()
    }

    /// Requests answered 503 `unavailable` so far.
    pub fn unavailable(&self) -> u64 {
        lock(&self.report).unavailable
    }

    /// Waits until `target` requests in all were acknowledged, at most `within`.
    pub async fn await_acks(&self, target: u64, within: Duration) {
        let mut acks = self.acks.subscribe();
        let reached = tokio::time::timeout(within, acks.wait_for(|n| *n >= target)).await;
        assert!(
            reached.is_ok(),
            "only {} of {target} acknowledged writes within {within:?}; problems so far: {:?}",
            self.acks(),
            lock(&self.report).problems
        );
    }

    pub fn problem(&self, problem: String) {
        lock(&self.report).problems.push(problem);
    }

    /// An answer no request expects: a problem, and counted when it is a server error.
    fn unexpected(&self, status: u16, problem: String) {
        let mut report = lock(&self.report);
        if status >= 500 {
            report.server_errors += 1;
        }
        report.problems.push(problem);
    }

    /// Takes the report so far, leaving an empty one.
    pub fn take_report(&self) -> Report {
        std::mem::take(&mut *lock(&self.report))
    }

    fn answered(&self, elapsed: Duration) {
        let mut report = lock(&self.report);
        report.slowest = report.slowest.max(elapsed);
    }

    fn acknowledge(&self) {
        lock(&self.report).acknowledged += 1;
        self.acks.send_modify(|n| *n += 1);
    }
}

/// One request and the state it leaves each name it writes.
struct Op {
    method: Method,
    path: String,
    body: Option<Value>,
    effects: Vec<(String, Option<String>)>,
}

/// A writer: its namespace, the names it alone writes, and where its sequence is.
pub struct Writer {
    id: usize,
    key: String,
    singles: Vec<String>,
    pairs: Vec<(String, String)>,
    rng: Rng,
    seq: u64,
}

impl Writer {
    /// Writer `id` on namespace `key`, owning `singles` names written alone and `pairs` pairs of
    /// names written together.
    pub fn new(
        id: usize,
        key: &str,
        singles: usize,
        pairs: usize,
        rng: Rng,
        ledger: &Ledger,
    ) -> Self {
        let pairs: Vec<(String, String)> = (0..pairs)
            .map(|p| (format!("w{id}-p{p}-a"), format!("w{id}-p{p}-b")))
            .collect();
        for (a, b) in &pairs {
            ledger.pair(key, a, b);
        }
        Self {
            id,
            key: key.to_owned(),
            singles: (0..singles).map(|s| format!("w{id}-s{s}")).collect(),
            pairs,
            rng,
            seq: 0,
        }
    }

    fn value(&mut self) -> String {
        self.seq += 1;
        // Values of varied length, so that a torn write would rarely still parse as a value.
        let pad = self.rng.between(0, 400) as usize;
        format!("w{}.{}.{}", self.id, self.seq, "v".repeat(pad))
    }

    fn next_op(&mut self) -> Op {
        let roll = self.rng.between(0, 99);
        let base = format!("/namespaces/{}", self.key);
        if self.pairs.is_empty() || roll < 80 {
            let name = self.singles[self.rng.index(self.singles.len())].clone();
            if roll < 10 {
                return Op {
                    method: Method::DELETE,
                    path: format!("{base}/secrets/{name}"),
                    body: None,
                    effects: vec![(name, None)],
                };
            }
            let value = self.value();
            return Op {
                method: Method::POST,
                path: base,
                body: Some(json!({"key": name, "value": value})),
                effects: vec![(name, Some(value))],
            };
        }
        let (a, b) = self.pairs[self.rng.index(self.pairs.len())].clone();
        let value = if roll >= 95 { None } else { Some(self.value()) };
        Op {
            method: Method::PATCH,
            path: base,
            body: Some(json!({ &a: value, &b: value })),
            effects: vec![(a, value.clone()), (b, value)],
        }
    }

    /// Writes to the service at `base` until told to stop, or until a request gets no answer
    /// (the process is gone); gives itself back so that the next round continues its sequence.
    pub async fn run(mut self, base: String, load: Arc<Load>) -> Self {
        while !load.stop.load(Ordering::Relaxed) {
            let op = self.next_op();
            for (name, value) in &op.effects {
                load.ledger.sending(&self.key, name, value.as_deref());
            }
            let mut request = load
                .client
                .request(op.method.clone(), format!("{base}{}", op.path))
                .bearer_auth(TOKEN);
            if let Some(body) = &op.body {
                request = request.json(body);
            }
            let started = Instant::now();
            let response = match request.send().await {
                Ok(response) => response,
                Err(error) => {
                    if !load.killed.load(Ordering::SeqCst) {
                        load.problem(format!(
                            "{} {}: no answer after {:?}: {}",
                            op.method,
                            op.path.replace(&self.key, "{key}"),
                            started.elapsed(),
                            causes(&error)
                        ));
                    }
                    return self;
                }
            };
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            load.answered(started.elapsed());
            let code = body["error"]["code"].as_str().unwrap_or_default();
            let success = matches!(
                (&op.method, status, code),
                (&Method::POST, 201, _)
                    | (&Method::PATCH, 200, _)
                    | (&Method::DELETE, 204, _)
                    | (&Method::DELETE, 404, "secret_not_found")
            );
            if success {
                for (name, value) in &op.effects {
                    load.ledger.acknowledged(&self.key, name, value.as_deref());
                }
                load.acknowledge();
            } else if status == 503 && code == "unavailable" && load.unavailable_expected {
                lock(&load.report).unavailable += 1;
            } else {
                let path = op.path.replace(&self.key, "{key}");
                load.unexpected(status, format!("{} {path}: {status} {code}", op.method));
            }
        }
        self
    }
}

/// Creates `count` namespaces through the service at `base`, asserting success, and enters
/// them in the ledger.
pub async fn tracked_namespaces(
    client: &Client,
    base: &str,
    ledger: &Ledger,
    count: usize,
) -> Vec<String> {
    let mut keys = Vec::new();
    for _ in 0..count {
        let response = client
            .post(format!("{base}/namespaces"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("sent");
        assert_eq!(response.status(), 201);
        let body: Value = response.json().await.expect("json");
        let key = body["accessKey"].as_str().expect("accessKey").to_owned();
        ledger.namespace(&key);
        keys.push(key);
    }
    keys
}

/// Creates namespaces one after another, each with one secret, until told to stop: creations
/// are acknowledged writes too.
pub async fn create_namespaces(base: String, load: Arc<Load>) {
    while !load.stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        let Ok(response) = load
            .client
            .post(format!("{base}/namespaces"))
            .bearer_auth(TOKEN)
            .send()
            .await
        else {
            if !load.killed.load(Ordering::SeqCst) {
                load.problem("POST /namespaces: no answer".into());
            }
            return;
        };
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        load.answered(started.elapsed());
        match (status, body["accessKey"].as_str()) {
            (201, Some(key)) => {
                load.ledger.namespace(key);
                load.acknowledge();
                let value = format!("born-{}", load.acks());
                load.ledger.sending(key, "BORN", Some(&value));
                let Ok(response) = load
                    .client
                    .post(format!("{base}/namespaces/{key}"))
                    .bearer_auth(TOKEN)
                    .json(&json!({"key": "BORN", "value": value}))
                    .send()
                    .await
                else {
                    if !load.killed.load(Ordering::SeqCst) {
                        load.problem("POST /namespaces/{key}: no answer".into());
                    }
                    return;
                };
                if response.status() == 201 {
                    load.ledger.acknowledged(key, "BORN", Some(&value));
                    load.acknowledge();
                } else if !(response.status() == 503 && load.unavailable_expected) {
                    let status = response.status();
                    load.unexpected(
                        status.as_u16(),
                        format!("POST /namespaces/{{key}}: {status}"),
                    );
                }
            }
            (503, _) if body["error"]["code"] == "unavailable" && load.unavailable_expected => {
                lock(&load.report).unavailable += 1;
            }
            _ => load.unexpected(status, format!("POST /namespaces: {status} {body}")),
        }
    }
}

/// Reads whole namespaces among `keys`, one after another, until told to stop. Each read is
/// one snapshot, so the names of a pair must agree in every one of them; a read answers 200,
/// or 503 `unavailable` where the test expects it.
pub async fn read_namespaces(base: String, keys: Vec<String>, mut rng: Rng, load: Arc<Load>) {
    while !load.stop.load(Ordering::Relaxed) {
        let key = &keys[rng.index(keys.len())];
        let started = Instant::now();
        let response = match load
            .client
            .get(format!("{base}/namespaces/{key}"))
            .bearer_auth(TOKEN)
            .send()
            .await
        {
            Ok(response) => response,
            Err(error) => {
                if !load.killed.load(Ordering::SeqCst) {
                    load.problem(format!(
                        "GET /namespaces/{{key}}: no answer after {:?}: {}",
                        started.elapsed(),
                        causes(&error)
                    ));
                }
                return;
            }
        };
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        load.answered(started.elapsed());
        let code = body["error"]["code"].as_str().unwrap_or_default();
        match (status, body.as_object()) {
            (200, Some(found)) => {
                let problems = load.ledger.check_pairs(key, found);
                lock(&load.report).problems.extend(problems);
            }
            (503, _) if code == "unavailable" && load.unavailable_expected => {
                lock(&load.report).unavailable += 1;
            }
            _ => load.unexpected(status, format!("GET /namespaces/{{key}}: {status} {code}")),
        }
    }
}

/// What reading every namespace of the ledger back found.
pub struct Readback {
    /// Secrets read in all.
    pub secrets: usize,
    pub problems: Vec<String>,
}

/// Reads every namespace the ledger knows, whole (each name and value is decrypted, so a torn
/// or corrupted row answers 500 `integrity_error`) and as a listing of names (each name must
/// appear once), and checks each against the ledger.
pub async fn read_back(client: &Client, base: &str, ledger: &Ledger) -> Readback {
    let mut readback = Readback {
        secrets: 0,
        problems: Vec::new(),
    };
    for key in ledger.namespaces() {
        let (status, body) = get(client, &format!("{base}/namespaces/{key}")).await;
        let Some(found) = body.as_object().filter(|_| status == 200) else {
            readback
                .problems
                .push(format!("{}..: read answered {status} {body}", &key[..8]));
            continue;
        };
        readback.secrets += found.len();
        readback.problems.extend(ledger.check(&key, found));
        let (status, listing) = get(client, &format!("{base}/namespaces/{key}/keys")).await;
        let listed: Vec<&str> = listing
            .as_array()
            .map(|entries| entries.iter().filter_map(|e| e["key"].as_str()).collect())
            .unwrap_or_default();
        let unique: BTreeSet<&str> = listed.iter().copied().collect();
        let read: BTreeSet<&str> = found.keys().map(String::as_str).collect();
        if status != 200 || unique.len() != listed.len() || unique != read {
            readback.problems.push(format!(
                "{}..: the listing ({status}) {listed:?} does not name each secret read once",
                &key[..8]
            ));
        }
    }
    readback
}

/// A GET with the service token. A 503 is asked again, a few times: reading back checks what
/// is stored, and a store that is slow for a moment on a loaded machine says nothing about
/// that. Any other answer is returned as it is.
async fn get(client: &Client, url: &str) -> (u16, Value) {
    for _ in 0..20 {
        let response = client
            .get(url)
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("the read is answered");
        let status = response.status().as_u16();
        if status != 503 {
            return (status, response.json().await.unwrap_or(Value::Null));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (503, Value::Null)
}
