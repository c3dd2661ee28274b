//! A database in the original service's format, made from the facts of its source: its two
//! tables, its AES-256-CBC under SHA-256 of a secret string, its Latin-1 truncation of text, and
//! the damage its unlocked updates leave (two rows of one name). Each namespace is generated
//! with what the import must make of it, so a test can compare every secret.

use std::collections::BTreeMap;

use aes::Aes256;
use cbc::cipher::block_padding::Pkcs7;
use cbc::cipher::{BlockEncryptMut as _, KeyIvInit as _};
use sha2::{Digest as _, Sha256};
use time::{Duration, OffsetDateTime};
use tokio_postgres::Client;
use uuid::Uuid;

/// The original's schema, as its migrations create it (ids given explicitly here, so no
/// extension is needed).
pub const SCHEMA: &str = r#"
    CREATE TABLE migration (name text PRIMARY KEY, hash text, date timestamptz DEFAULT now());
    CREATE TABLE namespace (
        id uuid PRIMARY KEY,
        "accessKeyHash" varchar NOT NULL UNIQUE,
        "encryptionKey" varchar NOT NULL UNIQUE,
        "createdAt" timestamptz NOT NULL DEFAULT now()
    );
    CREATE TABLE secret (
        id uuid PRIMARY KEY,
        "namespaceId" uuid NOT NULL REFERENCES namespace(id),
        "key" varchar NOT NULL,
        "value" varchar NOT NULL,
        "createdAt" timestamptz NOT NULL DEFAULT now(),
        UNIQUE ("namespaceId", "key")
    );
"#;

/// The `ENCRYPTION_SECRET` of the generated databases.
pub const SECRET: &str = "the original's ENCRYPTION_SECRET, any string";

/// A small, seeded generator: the fixture is the same on every run.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn bytes<const N: usize>(&mut self) -> [u8; N] {
        std::array::from_fn(|_| self.next() as u8)
    }

    /// A `nanoid`: 21 characters of its alphabet.
    pub fn nanoid(&mut self) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
        (0..21)
            .map(|_| char::from(ALPHABET[(self.next() % 64) as usize]))
            .collect()
    }

    pub fn uuid(&mut self) -> Uuid {
        uuid::Builder::from_random_bytes(self.bytes()).into_uuid()
    }
}

/// The original's `encrypt(text, secret)`: Latin-1 truncation of each UTF-16 code unit, then
/// AES-256-CBC under SHA-256(secret), stored as hex of IV and ciphertext.
pub fn encrypt(rng: &mut Rng, text: &str, secret: &str) -> String {
    let key: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
    let iv: [u8; 16] = rng.bytes();
    let plaintext = truncated(text);
    let mut buffer = plaintext.clone();
    buffer.resize(plaintext.len() + 16, 0);
    let ciphertext = cbc::Encryptor::<Aes256>::new(&key.into(), &iv.into())
        .encrypt_padded_mut::<Pkcs7>(&mut buffer, plaintext.len())
        .expect("room for the padding");
    format!("{}{}", hex::encode(iv), hex::encode(ciphertext))
}

/// Node's `"binary"` encoding: each UTF-16 code unit's low byte.
pub fn truncated(text: &str) -> Vec<u8> {
    text.encode_utf16().map(|unit| unit as u8).collect()
}

/// The string the original returned for `text`: its truncated bytes read as Latin-1.
pub fn as_returned(text: &str) -> String {
    truncated(text).into_iter().map(char::from).collect()
}

/// One secret row to write.
pub struct Row {
    pub id: Uuid,
    pub name: String,
    pub value: String,
    pub created_at: OffsetDateTime,
}

/// One generated namespace and what the import must make of it.
pub struct Namespace {
    pub id: Uuid,
    /// Its 21-character access key, as the platform holds it.
    pub access_key: String,
    /// Its own key (`encryptionKey`, decrypted).
    pub own_key: String,
    pub rows: Vec<Row>,
    /// Every secret as this service must return it after the import.
    pub expected: BTreeMap<String, String>,
    /// Rows the import drops for a newer one of the same name.
    pub duplicates: u64,
    /// Rows the import refuses.
    pub refused: u64,
}

/// What the fixture holds in all.
#[derive(Default)]
pub struct Totals {
    pub duplicates: u64,
    pub refused: u64,
    pub secrets: u64,
    pub empty: u64,
}

/// Generates `n` namespaces: empty ones, Latin-1 text, text the original truncated, duplicate
/// names (newest wins), names this service refuses, and `__proto__`.
pub fn generate(rng: &mut Rng, n: usize) -> Vec<Namespace> {
    let base = OffsetDateTime::from_unix_timestamp(1_650_000_000).expect("a time");
    (0..n)
        .map(|i| {
            let mut ns = Namespace {
                id: rng.uuid(),
                access_key: rng.nanoid(),
                own_key: rng.nanoid(),
                rows: Vec::new(),
                expected: BTreeMap::new(),
                duplicates: 0,
                refused: 0,
            };
            let at = |s: i64| base + Duration::seconds(s);
            let mut add = |ns: &mut Namespace, name: String, value: String, when: i64| {
                ns.rows.push(Row {
                    id: rng.uuid(),
                    name,
                    value,
                    created_at: at(when),
                });
            };
            match i % 10 {
                // Empty.
                0 => {}
                // Plain ASCII.
                1 | 2 => {
                    for k in 0..3 {
                        add(
                            &mut ns,
                            format!("API_KEY_{k}"),
                            format!("sk_live_{i}_{k}"),
                            1,
                        );
                    }
                }
                // Latin-1, and text the original truncated (€ is 0x20AC, 😀 two surrogates).
                3 | 4 => {
                    add(
                        &mut ns,
                        format!("caf\u{e9}_{i}"),
                        "na\u{ef}ve \u{fc}ber \u{ff}".into(),
                        1,
                    );
                    add(&mut ns, "PRICE".into(), "10 \u{20ac}".into(), 1);
                    add(&mut ns, "EMOJI".into(), "ok \u{1f600}".into(), 1);
                }
                // Two rows of one name: the newest wins.
                5 | 6 => {
                    add(&mut ns, "TOKEN".into(), format!("old {i}"), 1);
                    add(&mut ns, "TOKEN".into(), format!("new {i}"), 5);
                    add(&mut ns, "KEEP".into(), "kept".into(), 2);
                    ns.duplicates = 1;
                }
                // A name with a character above U+00FF, updated: the original compared the
                // truncated stored name with the new one and inserted a second row.
                7 => {
                    add(&mut ns, "\u{20ac}_RATE".into(), "1.1".into(), 1);
                    add(&mut ns, "\u{20ac}_RATE".into(), "1.2".into(), 9);
                    ns.duplicates = 1;
                }
                // Names this service refuses, beside one it keeps.
                8 => {
                    add(&mut ns, "line\nbreak".into(), "v".into(), 1);
                    add(&mut ns, "\u{1f600}".into(), "v".into(), 1);
                    add(&mut ns, "__proto__".into(), "v".into(), 1);
                    add(&mut ns, "GOOD".into(), "value".into(), 1);
                    ns.refused = 3;
                }
                // One long value.
                _ => add(&mut ns, "LONG".into(), "x".repeat(1000), 1),
            }
            expect(&mut ns);
            ns
        })
        .collect()
}

/// What the import must keep of a namespace's rows: per returned name the newest row, without
/// the names this service refuses.
fn expect(ns: &mut Namespace) {
    let mut newest: BTreeMap<String, (OffsetDateTime, String)> = BTreeMap::new();
    for row in &ns.rows {
        let name = as_returned(&row.name);
        let value = as_returned(&row.value);
        match newest.get(&name) {
            Some((at, _)) if *at >= row.created_at => {}
            _ => {
                newest.insert(name, (row.created_at, value));
            }
        }
    }
    ns.expected = newest
        .into_iter()
        .filter(|(name, _)| {
            name != "__proto__" && !name.chars().any(|c| c <= '\u{1f}' || c == '\u{7f}')
        })
        .map(|(name, (_, value))| (name, value))
        .collect();
}

impl Totals {
    pub fn of(namespaces: &[Namespace]) -> Self {
        let mut totals = Self::default();
        for ns in namespaces {
            totals.duplicates += ns.duplicates;
            totals.refused += ns.refused;
            totals.secrets += ns.expected.len() as u64;
            totals.empty += u64::from(ns.rows.is_empty());
        }
        totals
    }
}

/// Writes `namespaces` into the original's tables, encrypted as the original does.
pub async fn write(client: &Client, rng: &mut Rng, namespaces: &[Namespace]) {
    for chunk in namespaces.chunks(500) {
        let ids: Vec<Uuid> = chunk.iter().map(|ns| ns.id).collect();
        let hashes: Vec<String> = chunk
            .iter()
            .map(|ns| hex::encode(Sha256::digest(ns.access_key.as_bytes())))
            .collect();
        let keys: Vec<String> = chunk
            .iter()
            .map(|ns| encrypt(rng, &ns.own_key, SECRET))
            .collect();
        client
            .execute(
                r#"INSERT INTO namespace (id, "accessKeyHash", "encryptionKey")
                   SELECT * FROM unnest($1::uuid[], $2::varchar[], $3::varchar[])"#,
                &[&ids, &hashes, &keys],
            )
            .await
            .expect("insert namespaces");
        let mut secret_ids = Vec::new();
        let mut owners = Vec::new();
        let mut names = Vec::new();
        let mut values = Vec::new();
        let mut times = Vec::new();
        for ns in chunk {
            for row in &ns.rows {
                secret_ids.push(row.id);
                owners.push(ns.id);
                names.push(encrypt(rng, &row.name, &ns.own_key));
                values.push(encrypt(rng, &row.value, &ns.own_key));
                times.push(row.created_at);
            }
        }
        client
            .execute(
                r#"INSERT INTO secret (id, "namespaceId", "key", "value", "createdAt")
                   SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::varchar[], $4::varchar[],
                                        $5::timestamptz[])"#,
                &[&secret_ids, &owners, &names, &values, &times],
            )
            .await
            .expect("insert secrets");
    }
}

/// Sets a secret as the original did: deletes the row of that name, inserts a new one.
pub async fn set_secret(
    client: &Client,
    rng: &mut Rng,
    ns: &mut Namespace,
    name: &str,
    value: &str,
) {
    let at = OffsetDateTime::now_utc();
    if let Some(position) = ns
        .rows
        .iter()
        .position(|row| as_returned(&row.name) == as_returned(name))
    {
        let old = ns.rows.remove(position);
        client
            .execute("DELETE FROM secret WHERE id = $1", &[&old.id])
            .await
            .expect("delete the old row");
    }
    let row = Row {
        id: rng.uuid(),
        name: name.to_owned(),
        value: value.to_owned(),
        created_at: at,
    };
    client
        .execute(
            r#"INSERT INTO secret (id, "namespaceId", "key", "value", "createdAt")
               VALUES ($1, $2, $3, $4, $5)"#,
            &[
                &row.id,
                &ns.id,
                &encrypt(rng, name, &ns.own_key),
                &encrypt(rng, value, &ns.own_key),
                &at,
            ],
        )
        .await
        .expect("insert the new row");
    ns.rows.push(row);
    expect(ns);
}

/// Deletes a namespace as the original did (its secrets first: its own delete failed on them).
pub async fn delete_namespace(client: &Client, ns: &Namespace) {
    client
        .execute(r#"DELETE FROM secret WHERE "namespaceId" = $1"#, &[&ns.id])
        .await
        .expect("delete secrets");
    client
        .execute("DELETE FROM namespace WHERE id = $1", &[&ns.id])
        .await
        .expect("delete the namespace");
}
