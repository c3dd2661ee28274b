//! Tests of the envelope format. The frozen vectors were computed independently of this code,
//! with Python's `hmac`, `hashlib` and `cryptography` (HKDF, AESGCM), from the spec in the
//! module doc:
//!
//! ```python
//! def hkdf(ikm, salt, info): return HKDF(hashes.SHA256(), 32, salt, info).derive(ikm)
//! def seal(key, info, aad, pt, salt, nonce):
//!     return b"\x01" + salt + nonce + AESGCM(hkdf(key, salt, info)).encrypt(nonce, pt, aad)
//! kek = bytes(range(32)); dek = bytes(range(0x40, 0x60))
//! key_id = hmac.new(kek, b"kek-id", hashlib.sha256).digest()[:8].hex().encode()
//! ns = uuid.UUID("6ba7b810-9dad-11d1-80b4-00c04fd430c8").bytes
//! wrapped = seal(kek, b"secrets-service/v1/data-key", b"data-key" + ns + key_id, dek,
//!                bytes(range(0xa0, 0xb0)), bytes(range(0xc0, 0xcc)))
//! index = hmac.new(hkdf(dek, b"", b"secrets-service/v1/name-index"), b"SECRET_API_KEY",
//!                  hashlib.sha256).digest()
//! name_ct = seal(dek, b"secrets-service/v1/name", b"name" + ns + index, b"SECRET_API_KEY",
//!                bytes(range(0x10, 0x20)), bytes(range(0x30, 0x3c)))
//! value_ct = seal(dek, b"secrets-service/v1/value", b"value" + ns + index, b"foobar",
//!                 bytes(range(0x70, 0x80)), bytes(range(0x90, 0x9c)))
//! check = seal(kek, b"secrets-service/v1/key-check", b"key-check" + key_id,
//!              b"secrets-service key check v1", bytes(16), bytes(12))
//! digest = hmac.new(hkdf(dek, None, b"secrets-service/v1/digest"), b"foobar",
//!                   hashlib.sha256).digest()
//! ```

use std::fmt::Write as _;
use std::sync::Mutex;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use secrets_domain::model::{KeyId, NamespaceId, SecretName, SecretValue};
use secrets_domain::ports::{
    CryptoError, Envelope, KeyCheck, NameIndex, NamespaceKeys, Random, RandomError, WrappedKey,
};
use uuid::Uuid;

use super::generate_key_base64;
use super::seal::{HEADER_LEN, MIN_SEALED_LEN, Purpose, SALT_LEN, data_key_aad, name_aad};
use super::seal::{open, seal, value_aad};
use super::{DataKeys, InvalidKek, KEY_LEN, Kek, OsRandom, RingEnvelope, RingKeys};

// ---------------------------------------------------------------------------------------------
// Frozen vectors (see the module doc for how they were computed)
// ---------------------------------------------------------------------------------------------

/// The frozen KEK: bytes 0x00..=0x1f.
const FROZEN_KEK: [u8; 32] = counting(0x00);
const FROZEN_KEK_BASE64: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const FROZEN_KEY_ID: &str = "8b8341e8a322319f";
/// The frozen DEK: bytes 0x40..=0x5f.
const FROZEN_DEK: [u8; 32] = counting(0x40);
const FROZEN_NS: &str = "6ba7b810-9dad-11d1-80b4-00c04fd430c8";
const FROZEN_WRAPPED: &str = "01a0a1a2a3a4a5a6a7a8a9aaabacadaeafc0c1c2c3c4c5c6c7c8c9cacb5cb69ba1de\
                              42bdd6ff21554d1b981589f144a1e1d5fc044a9d220bc21901b2e51e52f755a89d4d\
                              ddd7c1b5407cce14c4";
const FROZEN_NAME: &str = "SECRET_API_KEY";
const FROZEN_INDEX: &str = "73e76f5913703693cb6346e1d0eeda9d547b6c1ea8c3a1292ae4077029536543";
const FROZEN_NAME_CT: &str = "01101112131415161718191a1b1c1d1e1f303132333435363738393a3bf9b3b4905d\
                              eb47693aa367b2bae51c8d4852f1a9733417c23a6d7beb9d53";
const FROZEN_VALUE: &str = "foobar";
const FROZEN_VALUE_CT: &str = "01707172737475767778797a7b7c7d7e7f909192939495969798999a9b3d876112\
                               70103b1c7d479d5e986b16a1dcc9b6c8c747";
const FROZEN_DIGEST: &str = "789bbf0859aabc7915e4bf1b8b38729baee9092682a598fc90da649d869cfe80";
const FROZEN_CHECK: &str = "0100000000000000000000000000000000000000000000000000000000\
                            94af0cf14a2d12a272e4cd575ab007e7bc9639381a59688980dd90b022a8319c\
                            43d855b2b768b7bfea8d1c2a";

const fn counting(start: u8) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        out[i] = start + i as u8;
        i += 1;
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

fn unhex(text: &str) -> Vec<u8> {
    assert!(text.len().is_multiple_of(2), "odd hex length");
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}

fn ns(text: &str) -> NamespaceId {
    NamespaceId::from_uuid(Uuid::parse_str(text).expect("uuid"))
}

fn ns_x() -> NamespaceId {
    ns("00000000-0000-4000-8000-0000000000aa")
}

fn ns_y() -> NamespaceId {
    ns("00000000-0000-4000-8000-0000000000bb")
}

fn kek(fill: u8) -> Kek {
    Kek::from_bytes([fill; 32])
}

fn name(text: &str) -> SecretName {
    SecretName::parse(text).expect("valid name")
}

fn value(text: &str) -> SecretValue {
    SecretValue::new(text.to_owned())
}

/// Keys of namespace `ns` holding `dek`, built directly, to test bindings independently of
/// the wrapping.
fn keys_with(ns: NamespaceId, dek: [u8; 32]) -> RingKeys {
    let mut keys = Box::new(DataKeys::zeroed());
    keys.dek = dek;
    RingKeys::new(ns, keys).expect("derives")
}

/// A randomness source that hands out a fixed script of bytes, then fails.
struct Scripted(Mutex<Vec<u8>>);

impl Scripted {
    fn new(bytes: &[u8]) -> Self {
        Self(Mutex::new(bytes.to_vec()))
    }
}

impl Random for Scripted {
    fn fill(&self, dest: &mut [u8]) -> Result<(), RandomError> {
        let mut script = self.0.lock().map_err(|_| RandomError)?;
        if script.len() < dest.len() {
            return Err(RandomError);
        }
        let rest = script.split_off(dest.len());
        dest.copy_from_slice(&script);
        *script = rest;
        Ok(())
    }
}

#[track_caller]
fn assert_integrity<T>(result: Result<T, CryptoError>, why: &str) {
    match result {
        Err(CryptoError::Integrity) => {}
        Err(other) => panic!("{why}: expected Integrity, got {other:?}"),
        Ok(_) => panic!("{why}: expected Integrity, but it opened"),
    }
}

#[track_caller]
fn assert_unknown_key<T>(result: Result<T, CryptoError>, id: &KeyId, why: &str) {
    match result {
        Err(CryptoError::UnknownKey(got)) => assert_eq!(&got, id, "{why}"),
        Err(other) => panic!("{why}: expected UnknownKey, got {other:?}"),
        Ok(_) => panic!("{why}: expected UnknownKey, but it opened"),
    }
}

// ---------------------------------------------------------------------------------------------
// Frozen vectors: the wire format, pinned
// ---------------------------------------------------------------------------------------------

#[test]
fn the_key_id_of_the_frozen_kek_is_pinned() {
    assert_eq!(Kek::from_bytes(FROZEN_KEK).key_id().as_str(), FROZEN_KEY_ID);
    let parsed = Kek::from_base64(FROZEN_KEK_BASE64).expect("valid");
    assert_eq!(parsed.key_id().as_str(), FROZEN_KEY_ID);
}

#[test]
fn frozen_ciphertexts_still_open() {
    let envelope = RingEnvelope::new(Kek::from_bytes(FROZEN_KEK), Vec::new());
    let wrapped = WrappedKey {
        key_id: KeyId::new(FROZEN_KEY_ID),
        ciphertext: unhex(FROZEN_WRAPPED),
    };
    let keys = envelope
        .open_data_key(ns(FROZEN_NS), &wrapped)
        .expect("the frozen wrapped key opens");
    assert_eq!(keys.keys.dek, FROZEN_DEK);

    let index = keys.name_index(&name(FROZEN_NAME));
    assert_eq!(hex(&index.0), FROZEN_INDEX);
    let opened_name = keys
        .open_name(&index, &unhex(FROZEN_NAME_CT))
        .expect("the frozen name opens");
    assert_eq!(opened_name.as_str(), FROZEN_NAME);
    let opened_value = keys
        .open_value(&index, &unhex(FROZEN_VALUE_CT))
        .expect("the frozen value opens");
    assert_eq!(opened_value.expose(), FROZEN_VALUE);
    assert_eq!(hex(&keys.digest(&value(FROZEN_VALUE))), FROZEN_DIGEST);

    let check = KeyCheck {
        key_id: KeyId::new(FROZEN_KEY_ID),
        ciphertext: unhex(FROZEN_CHECK),
    };
    envelope
        .verify_key_check(&check)
        .expect("the frozen key check verifies");
}

#[test]
fn sealing_with_the_frozen_randomness_reproduces_the_frozen_bytes() {
    // The other direction: given the same salt and nonce, this code writes exactly the bytes
    // the independent implementation wrote.
    let ns = ns(FROZEN_NS);
    let key_id = KeyId::new(FROZEN_KEY_ID);
    let script: Vec<u8> = (0xa0..0xb0).chain(0xc0..0xcc).collect();
    let wrapped = seal(
        &Scripted::new(&script),
        &FROZEN_KEK,
        Purpose::DataKey,
        &data_key_aad(ns, &key_id),
        &FROZEN_DEK,
    )
    .expect("seals");
    assert_eq!(hex(&wrapped), FROZEN_WRAPPED);

    let index = NameIndex(unhex(FROZEN_INDEX).try_into().expect("32 bytes"));
    let script: Vec<u8> = (0x70..0x80).chain(0x90..0x9c).collect();
    let value_ct = seal(
        &Scripted::new(&script),
        &FROZEN_DEK,
        Purpose::Value,
        &value_aad(ns, &index),
        FROZEN_VALUE.as_bytes(),
    )
    .expect("seals");
    assert_eq!(hex(&value_ct), FROZEN_VALUE_CT);
}

// ---------------------------------------------------------------------------------------------
// Round trips
// ---------------------------------------------------------------------------------------------

#[test]
fn a_new_data_key_round_trips_through_its_wrapping() {
    let envelope = RingEnvelope::new(kek(1), Vec::new());
    let (keys, wrapped) = envelope.new_data_key(ns_x()).expect("new key");
    assert_eq!(wrapped.key_id, envelope.active_key_id());
    assert_eq!(wrapped.ciphertext.len(), MIN_SEALED_LEN + KEY_LEN);
    let reopened = envelope.open_data_key(ns_x(), &wrapped).expect("opens");
    assert_eq!(reopened.keys.dek, keys.keys.dek);
    let n = name("API_TOKEN");
    assert_eq!(reopened.name_index(&n), keys.name_index(&n));
    assert_eq!(reopened.digest(&value("x")), keys.digest(&value("x")));
}

#[test]
fn new_data_keys_are_random() {
    let envelope = RingEnvelope::new(kek(1), Vec::new());
    let (a, _) = envelope.new_data_key(ns_x()).expect("new key");
    let (b, _) = envelope.new_data_key(ns_x()).expect("new key");
    assert_ne!(a.keys.dek, b.keys.dek);
    assert_ne!(a.keys.dek, [0u8; 32]);
}

#[test]
fn a_key_check_round_trips() {
    let envelope = RingEnvelope::new(kek(1), Vec::new());
    let check = envelope.seal_key_check().expect("seals");
    assert_eq!(check.key_id, envelope.active_key_id());
    envelope.verify_key_check(&check).expect("verifies");
}

#[test]
fn names_and_values_round_trip() {
    let keys = keys_with(ns_x(), [7; 32]);
    for (n, v) in [
        ("SECRET_API_KEY", "foobar"),
        ("empty value", ""),
        ("ключ 🔑", "значение ✓"),
        (&"n".repeat(256)[..], &"v".repeat(65_536)[..]),
    ] {
        let n = name(n);
        let v = value(v);
        let index = keys.name_index(&n);
        let name_ct = keys.seal_name(&index, &n).expect("seals");
        let value_ct = keys.seal_value(&index, &v).expect("seals");
        assert_eq!(keys.open_name(&index, &name_ct).expect("opens"), n);
        assert_eq!(keys.open_value(&index, &value_ct).expect("opens"), v);
        assert_eq!(value_ct.len(), MIN_SEALED_LEN + v.len());
    }
}

#[test]
fn blind_indexes_and_digests_are_deterministic_per_namespace_and_unlinkable_across() {
    let x = keys_with(ns_x(), [7; 32]);
    let y = keys_with(ns_y(), [8; 32]);
    let n = name("SECRET_API_KEY");
    assert_eq!(x.name_index(&n), x.name_index(&n));
    assert_ne!(x.name_index(&n), x.name_index(&name("SECRET_API_KEY2")));
    assert_ne!(x.name_index(&n), y.name_index(&n));

    let v = value("hunter2");
    assert_eq!(x.digest(&v), x.digest(&v));
    assert_ne!(x.digest(&v), x.digest(&value("hunter3")));
    assert_ne!(x.digest(&v), y.digest(&v));
    // The two HMAC keys are distinct: a name and an equal value do not share a fingerprint.
    assert_ne!(x.name_index(&n).0, x.digest(&value("SECRET_API_KEY")));
}

// ---------------------------------------------------------------------------------------------
// Freshness
// ---------------------------------------------------------------------------------------------

#[test]
fn every_seal_uses_a_fresh_salt_and_nonce() {
    let keys = keys_with(ns_x(), [7; 32]);
    let n = name("SECRET");
    let v = value("same plaintext");
    let index = keys.name_index(&n);
    let a = keys.seal_value(&index, &v).expect("seals");
    let b = keys.seal_value(&index, &v).expect("seals");
    assert_ne!(a, b);
    assert_ne!(a[1..=SALT_LEN], b[1..=SALT_LEN], "salts differ");
    assert_ne!(
        a[1 + SALT_LEN..HEADER_LEN],
        b[1 + SALT_LEN..HEADER_LEN],
        "nonces differ"
    );
    assert_ne!(
        keys.seal_name(&index, &n).expect("seals"),
        keys.seal_name(&index, &n).expect("seals")
    );

    let envelope = RingEnvelope::new(kek(1), Vec::new());
    let (_, wrapped) = envelope.new_data_key(ns_x()).expect("new key");
    let again = envelope.rewrap(ns_x(), &wrapped).expect("rewraps");
    assert_ne!(wrapped.ciphertext, again.ciphertext);
    assert_ne!(
        envelope.seal_key_check().expect("seals").ciphertext,
        envelope.seal_key_check().expect("seals").ciphertext
    );
}

#[test]
fn a_failing_randomness_source_is_an_internal_error() {
    for script in [&[][..], &[0u8; SALT_LEN][..]] {
        let result = seal(&Scripted::new(script), &[7; 32], Purpose::Value, b"", b"x");
        assert!(
            matches!(result, Err(CryptoError::Internal(_))),
            "{} random bytes: {result:?}",
            script.len()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Tampering
// ---------------------------------------------------------------------------------------------

/// Every way of damaging a sealed message: each part of the envelope, truncation, extension.
fn tamperings(sealed: &[u8]) -> Vec<(String, Vec<u8>)> {
    let flip = |at: usize| {
        let mut copy = sealed.to_vec();
        copy[at] ^= 0x01;
        copy
    };
    let last = sealed.len() - 1;
    let mut cases = vec![
        ("empty".to_owned(), Vec::new()),
        ("version byte only".to_owned(), sealed[..1].to_vec()),
        (
            "one byte short of the minimum".to_owned(),
            sealed[..MIN_SEALED_LEN - 1].to_vec(),
        ),
        ("last byte cut".to_owned(), sealed[..last].to_vec()),
        ("tag cut".to_owned(), sealed[..sealed.len() - 16].to_vec()),
        ("one byte appended".to_owned(), [sealed, &[0]].concat()),
        ("version 0".to_owned(), [&[0x00], &sealed[1..]].concat()),
        ("version 2".to_owned(), [&[0x02], &sealed[1..]].concat()),
        ("first salt byte".to_owned(), flip(1)),
        ("last salt byte".to_owned(), flip(SALT_LEN)),
        ("first nonce byte".to_owned(), flip(1 + SALT_LEN)),
        ("last nonce byte".to_owned(), flip(HEADER_LEN - 1)),
        ("first tag byte".to_owned(), flip(sealed.len() - 16)),
        ("last tag byte".to_owned(), flip(last)),
    ];
    // A ciphertext body exists only for a non-empty plaintext.
    if sealed.len() > MIN_SEALED_LEN {
        cases.push(("first ciphertext byte".to_owned(), flip(HEADER_LEN)));
        cases.push(("last ciphertext byte".to_owned(), flip(sealed.len() - 17)));
    }
    cases
}

#[test]
fn tampering_with_any_part_of_a_value_or_name_fails_integrity() {
    let keys = keys_with(ns_x(), [7; 32]);
    let n = name("SECRET_API_KEY");
    let index = keys.name_index(&n);
    let value_ct = keys.seal_value(&index, &value("foobar")).expect("seals");
    for (why, damaged) in tamperings(&value_ct) {
        assert_integrity(keys.open_value(&index, &damaged), &format!("value: {why}"));
    }
    let name_ct = keys.seal_name(&index, &n).expect("seals");
    for (why, damaged) in tamperings(&name_ct) {
        assert_integrity(keys.open_name(&index, &damaged), &format!("name: {why}"));
    }
    let empty_ct = keys.seal_value(&index, &value("")).expect("seals");
    for (why, damaged) in tamperings(&empty_ct) {
        assert_integrity(
            keys.open_value(&index, &damaged),
            &format!("empty value: {why}"),
        );
    }
}

#[test]
fn tampering_with_a_wrapped_key_or_key_check_fails_integrity() {
    let envelope = RingEnvelope::new(kek(1), Vec::new());
    let (_, wrapped) = envelope.new_data_key(ns_x()).expect("new key");
    for (why, ciphertext) in tamperings(&wrapped.ciphertext) {
        let damaged = WrappedKey {
            key_id: wrapped.key_id.clone(),
            ciphertext,
        };
        assert_integrity(
            envelope.open_data_key(ns_x(), &damaged),
            &format!("open: {why}"),
        );
        assert_integrity(envelope.rewrap(ns_x(), &damaged), &format!("rewrap: {why}"));
    }
    let check = envelope.seal_key_check().expect("seals");
    for (why, ciphertext) in tamperings(&check.ciphertext) {
        let damaged = KeyCheck {
            key_id: check.key_id.clone(),
            ciphertext,
        };
        assert_integrity(
            envelope.verify_key_check(&damaged),
            &format!("check: {why}"),
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Associated data and purpose binding
// ---------------------------------------------------------------------------------------------

#[test]
fn a_value_does_not_open_as_a_name_nor_a_name_as_a_value() {
    let keys = keys_with(ns_x(), [7; 32]);
    let n = name("SECRET_API_KEY");
    let index = keys.name_index(&n);
    // A value that is a valid name, so only the binding can refuse it.
    let value_ct = keys
        .seal_value(&index, &value("ANOTHER_NAME"))
        .expect("seals");
    assert_integrity(keys.open_name(&index, &value_ct), "value opened as a name");
    let name_ct = keys.seal_name(&index, &n).expect("seals");
    assert_integrity(keys.open_value(&index, &name_ct), "name opened as a value");
}

#[test]
fn a_value_moved_to_another_name_fails_integrity() {
    let keys = keys_with(ns_x(), [7; 32]);
    let a = keys.name_index(&name("A"));
    let b = keys.name_index(&name("B"));
    let value_of_a = keys.seal_value(&a, &value("a's value")).expect("seals");
    assert_integrity(keys.open_value(&b, &value_of_a), "value of A under B");
    let name_a = keys.seal_name(&a, &name("A")).expect("seals");
    assert_integrity(keys.open_name(&b, &name_a), "name of A under B");
}

#[test]
fn a_value_moved_to_another_namespace_fails_integrity() {
    let x = keys_with(ns_x(), [7; 32]);
    let index = x.name_index(&name("A"));
    let value_ct = x.seal_value(&index, &value("x's value")).expect("seals");
    let name_ct = x.seal_name(&index, &name("A")).expect("seals");

    // Namespace Y's own keys.
    let y = keys_with(ns_y(), [8; 32]);
    assert_integrity(y.open_value(&index, &value_ct), "value of X with Y's keys");
    assert_integrity(y.open_name(&index, &name_ct), "name of X with Y's keys");

    // Even with the same data key, the namespace id in the associated data refuses it.
    let same_dek = keys_with(ns_y(), [7; 32]);
    assert_integrity(
        same_dek.open_value(&index, &value_ct),
        "value of X as Y, same DEK",
    );
    assert_integrity(
        same_dek.open_name(&index, &name_ct),
        "name of X as Y, same DEK",
    );
}

#[test]
fn a_data_key_unwrapped_for_another_namespace_fails_integrity() {
    let envelope = RingEnvelope::new(kek(1), Vec::new());
    let (_, wrapped) = envelope.new_data_key(ns_x()).expect("new key");
    assert_integrity(envelope.open_data_key(ns_y(), &wrapped), "open for Y");
    assert_integrity(envelope.rewrap(ns_y(), &wrapped), "rewrap for Y");
}

#[test]
fn a_wrapped_key_relabelled_with_another_key_id_fails() {
    let envelope = RingEnvelope::new(kek(1), vec![kek(2)]);
    let (_, wrapped) = envelope.new_data_key(ns_x()).expect("new key");
    let retired_id = kek(2).key_id();

    let relabelled = WrappedKey {
        key_id: retired_id.clone(),
        ciphertext: wrapped.ciphertext.clone(),
    };
    assert_integrity(
        envelope.open_data_key(ns_x(), &relabelled),
        "relabelled to retired",
    );

    let unknown = kek(3).key_id();
    let relabelled = WrappedKey {
        key_id: unknown.clone(),
        ciphertext: wrapped.ciphertext,
    };
    assert_unknown_key(
        envelope.open_data_key(ns_x(), &relabelled),
        &unknown,
        "relabelled",
    );
}

#[test]
fn a_key_check_relabelled_or_of_another_purpose_fails_integrity() {
    let envelope = RingEnvelope::new(kek(1), vec![kek(2)]);
    let check = envelope.seal_key_check().expect("seals");
    let relabelled = KeyCheck {
        key_id: kek(2).key_id(),
        ciphertext: check.ciphertext.clone(),
    };
    assert_integrity(
        envelope.verify_key_check(&relabelled),
        "relabelled key check",
    );

    // A wrapped data key is a ciphertext under the same KEK, but not a key check.
    let (_, wrapped) = envelope.new_data_key(ns_x()).expect("new key");
    let wrong_purpose = KeyCheck {
        key_id: wrapped.key_id,
        ciphertext: wrapped.ciphertext,
    };
    assert_integrity(
        envelope.verify_key_check(&wrong_purpose),
        "data key as check",
    );

    // An authentic seal of the wrong plaintext is refused too.
    let id = kek(1).key_id();
    let other = seal(
        &OsRandom::new(),
        kek(1).bytes(),
        Purpose::KeyCheck,
        &super::seal::key_check_aad(&id),
        b"secrets-service key check v2",
    )
    .expect("seals");
    let wrong_plaintext = KeyCheck {
        key_id: id,
        ciphertext: other,
    };
    assert_integrity(
        envelope.verify_key_check(&wrong_plaintext),
        "wrong plaintext",
    );
}

#[test]
fn authentic_plaintexts_that_are_not_names_or_utf8_fail_integrity() {
    let keys = keys_with(ns_x(), [7; 32]);
    let index = keys.name_index(&name("A"));
    let seal_raw = |purpose, aad: &[u8], plaintext: &[u8]| {
        seal(&OsRandom::new(), &[7; 32], purpose, aad, plaintext).expect("seals")
    };
    for bad_name in [&b""[..], b"a\nb", &[b'a'; 257], b"\xff\xfe"] {
        let ct = seal_raw(Purpose::Name, &name_aad(ns_x(), &index), bad_name);
        assert_integrity(keys.open_name(&index, &ct), &format!("name {bad_name:?}"));
    }
    let ct = seal_raw(Purpose::Value, &value_aad(ns_x(), &index), b"ok \xc3\x28");
    assert_integrity(keys.open_value(&index, &ct), "value not UTF-8");
}

#[test]
fn a_wrapped_data_key_of_the_wrong_length_fails_integrity() {
    let envelope = RingEnvelope::new(kek(1), Vec::new());
    let id = envelope.active_key_id();
    for len in [0, 31, 33, 64] {
        let ciphertext = seal(
            &OsRandom::new(),
            kek(1).bytes(),
            Purpose::DataKey,
            &data_key_aad(ns_x(), &id),
            &vec![9u8; len],
        )
        .expect("seals");
        let wrapped = WrappedKey {
            key_id: id.clone(),
            ciphertext,
        };
        assert_integrity(
            envelope.open_data_key(ns_x(), &wrapped),
            &format!("{len} bytes"),
        );
    }
}

#[test]
fn seals_of_one_purpose_do_not_open_as_another() {
    let key = [7u8; 32];
    let aad = b"same associated data";
    let purposes = [
        Purpose::DataKey,
        Purpose::KeyCheck,
        Purpose::Name,
        Purpose::Value,
    ];
    for sealed_as in purposes {
        let ct = seal(&OsRandom::new(), &key, sealed_as, aad, b"plaintext").expect("seals");
        for opened_as in purposes {
            let result = open(&key, opened_as, aad, &ct);
            if sealed_as == opened_as {
                assert_eq!(result.expect("opens").as_slice(), b"plaintext");
            } else {
                assert_integrity(result, &format!("{sealed_as:?} opened as {opened_as:?}"));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// KEKs: wrong keys, rotation
// ---------------------------------------------------------------------------------------------

#[test]
fn a_wrong_kek_is_an_unknown_key_or_an_integrity_failure() {
    let right = RingEnvelope::new(kek(1), Vec::new());
    let (_, wrapped) = right.new_data_key(ns_x()).expect("new key");
    let check = right.seal_key_check().expect("seals");

    let wrong = RingEnvelope::new(kek(2), Vec::new());
    let missing = kek(1).key_id();
    assert_unknown_key(wrong.open_data_key(ns_x(), &wrapped), &missing, "open");
    assert_unknown_key(wrong.rewrap(ns_x(), &wrapped), &missing, "rewrap");
    assert_unknown_key(wrong.verify_key_check(&check), &missing, "check");

    // Under the wrong KEK's own id (as if the label had been rewritten), it fails to open.
    let under_wrong_id = WrappedKey {
        key_id: wrong.active_key_id(),
        ciphertext: wrapped.ciphertext,
    };
    assert_integrity(wrong.open_data_key(ns_x(), &under_wrong_id), "wrong KEK");
    let check_wrong_id = KeyCheck {
        key_id: wrong.active_key_id(),
        ciphertext: check.ciphertext,
    };
    assert_integrity(wrong.verify_key_check(&check_wrong_id), "wrong KEK check");
}

#[test]
fn rewrap_moves_a_data_key_to_the_active_kek_without_changing_it() {
    let old = RingEnvelope::new(kek(1), Vec::new());
    let (keys, wrapped) = old.new_data_key(ns_x()).expect("new key");
    let n = name("SECRET_API_KEY");
    let index = keys.name_index(&n);
    let value_ct = keys.seal_value(&index, &value("foobar")).expect("seals");

    let rotated = RingEnvelope::new(kek(2), vec![kek(1)]);
    let rewrapped = rotated.rewrap(ns_x(), &wrapped).expect("rewraps");
    assert_eq!(rewrapped.key_id, kek(2).key_id());
    assert_ne!(rewrapped.key_id, wrapped.key_id);

    let after = rotated.open_data_key(ns_x(), &rewrapped).expect("opens");
    let before = rotated
        .open_data_key(ns_x(), &wrapped)
        .expect("retired KEK still opens");
    assert_eq!(after.name_index(&n), index);
    assert_eq!(before.name_index(&n), index);
    assert_eq!(
        after.open_value(&index, &value_ct).expect("opens").expose(),
        "foobar"
    );

    // The old configuration does not know the new KEK.
    assert_unknown_key(
        old.open_data_key(ns_x(), &rewrapped),
        &kek(2).key_id(),
        "old",
    );
}

#[test]
fn key_ids_list_the_active_kek_first_then_the_retired_without_duplicates() {
    let envelope = RingEnvelope::new(kek(1), vec![kek(2), kek(1), kek(3), kek(2)]);
    assert_eq!(envelope.active_key_id(), kek(1).key_id());
    assert_eq!(
        envelope.key_ids(),
        vec![kek(1).key_id(), kek(2).key_id(), kek(3).key_id()]
    );
    let id = kek(1).key_id();
    assert_eq!(id.as_str().len(), 16);
    assert!(
        id.as_str()
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    );
    assert_ne!(kek(1).key_id(), kek(2).key_id());
}

// ---------------------------------------------------------------------------------------------
// Parsing KEKs
// ---------------------------------------------------------------------------------------------

#[test]
fn a_kek_parses_from_every_accepted_base64_form() {
    // 0xfb 0xff... encodes with `+` and `/` in the standard alphabet, `-` and `_` in base64url.
    let mut bytes = [0xfbu8; 32];
    bytes[31] = 0xff;
    let expected = Kek::from_bytes(bytes).key_id();
    let standard = STANDARD.encode(bytes);
    assert!(
        standard.contains('+') && standard.contains('/'),
        "{standard}"
    );
    for (why, text) in [
        ("standard, padded", standard.clone()),
        ("standard, unpadded", STANDARD_NO_PAD.encode(bytes)),
        ("url-safe, padded", URL_SAFE.encode(bytes)),
        ("url-safe, unpadded", URL_SAFE_NO_PAD.encode(bytes)),
        ("trailing newline", format!("{standard}\n")),
        ("surrounding whitespace", format!(" \t{standard}\r\n ")),
    ] {
        let kek = Kek::from_base64(&text).unwrap_or_else(|e| panic!("{why}: {e}"));
        assert_eq!(kek.key_id(), expected, "{why}");
    }
}

#[test]
fn malformed_keks_are_refused_without_repeating_them() {
    let good = STANDARD.encode([0x5au8; 32]);
    let cases = [
        ("empty", String::new(), InvalidKek::Empty),
        ("only whitespace", " \n\t".to_owned(), InvalidKek::Empty),
        (
            "31 bytes",
            STANDARD.encode([0x5au8; 31]),
            InvalidKek::WrongLength,
        ),
        (
            "33 bytes",
            STANDARD.encode([0x5au8; 33]),
            InvalidKek::WrongLength,
        ),
        (
            "64 bytes",
            STANDARD.encode([0x5au8; 64]),
            InvalidKek::WrongLength,
        ),
        ("1 byte", STANDARD.encode([0x5au8]), InvalidKek::WrongLength),
        ("hex of 32 bytes", "5a".repeat(32), InvalidKek::WrongLength),
        (
            "not base64 at all",
            "this is not a key!".to_owned(),
            InvalidKek::NotBase64,
        ),
        (
            "whitespace inside",
            format!("{} {}", &good[..20], &good[20..]),
            InvalidKek::NotBase64,
        ),
        (
            "mixed alphabets",
            format!("+-{}", &good[2..]),
            InvalidKek::NotBase64,
        ),
        (
            "too much padding",
            format!("{good}="),
            InvalidKek::NotBase64,
        ),
        ("one character", "A".to_owned(), InvalidKek::NotBase64),
        (
            "non-ascii",
            format!("{}é", &good[..42]),
            InvalidKek::NotBase64,
        ),
    ];
    for (why, text, expected) in cases {
        let error = Kek::from_base64(&text).expect_err(why);
        assert_eq!(error, expected, "{why}");
        let message = error.to_string();
        assert!(!message.is_empty(), "{why}");
        let trimmed = text.trim();
        if !trimmed.is_empty() {
            assert!(
                !message.contains(trimmed),
                "{why}: message repeats the input"
            );
        }
    }
}

#[test]
fn generated_keys_are_fresh_valid_keks() {
    let a = generate_key_base64().expect("random");
    let b = generate_key_base64().expect("random");
    assert_ne!(*a, *b);
    assert_eq!(a.len(), 44);
    let kek = Kek::from_base64(&a).expect("a generated key parses");
    assert_ne!(kek.key_id(), Kek::from_base64(&b).expect("parses").key_id());
}

// ---------------------------------------------------------------------------------------------
// Redaction
// ---------------------------------------------------------------------------------------------

#[test]
fn debug_output_holds_no_key_material() {
    let kek_bytes = FROZEN_KEK;
    let active = Kek::from_bytes(kek_bytes);
    let retired = Kek::from_bytes([0x5a; 32]);
    let keys = keys_with(ns_x(), FROZEN_DEK);
    let envelope = RingEnvelope::new(active, vec![retired]);

    let printed = [
        format!("{:?}", Kek::from_bytes(kek_bytes)),
        format!("{envelope:?}"),
        format!("{envelope:#?}"),
        format!("{keys:?}"),
        format!("{keys:#?}"),
    ];
    let kek_bytes_debug = format!("{kek_bytes:?}");
    let forbidden = [
        hex(&kek_bytes),
        STANDARD.encode(kek_bytes),
        URL_SAFE_NO_PAD.encode(kek_bytes),
        hex(&[0x5a; 32]),
        STANDARD.encode([0x5a; 32]),
        hex(&FROZEN_DEK),
        STANDARD.encode(FROZEN_DEK),
        hex(&keys.keys.name_index),
        hex(&keys.keys.digest),
        // The derived `Debug` form of a byte array, and runs of it.
        kek_bytes_debug[1..kek_bytes_debug.len() - 1].to_owned(),
        "90, 90, 90".to_owned(),
        "64, 65, 66".to_owned(),
    ];
    for output in &printed {
        for secret in &forbidden {
            assert!(
                !output.contains(secret.as_str()),
                "{output} contains {secret}"
            );
        }
    }
    // What is printed is useful: the key ids and the namespace.
    assert!(printed[1].contains(FROZEN_KEY_ID), "{}", printed[1]);
    assert!(printed[3].contains(&ns_x().to_string()), "{}", printed[3]);
    assert!(printed[0].contains("<redacted>"), "{}", printed[0]);
}
