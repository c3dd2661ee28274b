//! Property tests of the envelope decoder, through the public API only.
//!
//! The stored ciphertexts are the one input of the crypto code that an attacker with write
//! access to the database (or to a backup) controls. Whatever bytes they put there, every open
//! path — a value, a name, a wrapped data key (opened or re-wrapped), a key check — must
//! return an error and never panic, and a ciphertext opens only if it is byte for byte one
//! that was sealed for that very place. The unit tests in `src/crypto/tests.rs` pin the
//! format with frozen vectors and one tampering per part; these check the same promises over
//! many random inputs and mutations.
//!
//! Each property runs a modest number of cases by default so that `make test` stays fast;
//! `PROPTEST_CASES` raises it (`make fuzz` does).

use std::sync::LazyLock;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use proptest::prelude::*;
use proptest::sample::Index;
use secrets_adapters::crypto::{Kek, RingEnvelope, RingKeys};
use secrets_domain::model::{KeyId, NamespaceId, SecretName, SecretValue};
use secrets_domain::ports::{
    CryptoError, Envelope, KeyCheck, NameIndex, NamespaceKeys, WrappedKey,
};
use uuid::Uuid;

/// `cases` unless `PROPTEST_CASES` says otherwise.
fn config(cases: u32) -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = cases;
    }
    config
}

fn envelope(kek: [u8; 32]) -> RingEnvelope {
    let kek = Kek::from_base64(&STANDARD.encode(kek)).expect("32 bytes of base64 is a KEK");
    RingEnvelope::new(kek, Vec::new())
}

// ---------------------------------------------------------------------------------------------
// A fixed namespace with one valid ciphertext of each kind, sealed twice
// ---------------------------------------------------------------------------------------------

/// Every way a stored ciphertext is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Path {
    /// `Envelope::open_data_key`.
    OpenDataKey,
    /// `Envelope::rewrap`, which unwraps first.
    Rewrap,
    /// `Envelope::verify_key_check`.
    KeyCheck,
    /// `NamespaceKeys::open_name`.
    Name,
    /// `NamespaceKeys::open_value`.
    Value,
}

const PATHS: [Path; 5] = [
    Path::OpenDataKey,
    Path::Rewrap,
    Path::KeyCheck,
    Path::Name,
    Path::Value,
];

/// The kinds of ciphertext there are. Both data key paths open the same kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    DataKey,
    KeyCheck,
    Name,
    Value,
}

const KINDS: [Kind; 4] = [Kind::DataKey, Kind::KeyCheck, Kind::Name, Kind::Value];

impl Path {
    fn kind(self) -> Kind {
        match self {
            Self::OpenDataKey | Self::Rewrap => Kind::DataKey,
            Self::KeyCheck => Kind::KeyCheck,
            Self::Name => Kind::Name,
            Self::Value => Kind::Value,
        }
    }
}

struct Fixture {
    envelope: RingEnvelope,
    key_id: KeyId,
    ns: NamespaceId,
    keys: RingKeys,
    index: NameIndex,
    name: SecretName,
    value: SecretValue,
    /// Two independent seals of each kind (fresh salt and nonce each), so that splices of two
    /// valid ciphertexts of the same kind and place are tried too.
    sealed: Vec<(Kind, [Vec<u8>; 2])>,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let envelope = envelope(*b"0123456789abcdef0123456789abcdef");
    let key_id = envelope.active_key_id();
    let ns = NamespaceId::from_uuid(Uuid::from_u128(0x6ba7_b810_9dad_11d1_80b4_00c0_4fd4_30c8));
    let name = SecretName::parse("SECRET_API_KEY").expect("a name");
    let value = SecretValue::new("a value of some length, to have bytes to flip".into());
    let (keys, first_key) = envelope.new_data_key(ns).expect("a data key");
    let second_key = envelope.rewrap(ns, &first_key).expect("re-wrapped");
    let index = keys.name_index(&name);
    let twice = |seal: &dyn Fn() -> Vec<u8>| [seal(), seal()];
    let sealed = vec![
        (Kind::DataKey, [first_key.ciphertext, second_key.ciphertext]),
        (
            Kind::KeyCheck,
            twice(&|| envelope.seal_key_check().expect("sealed").ciphertext),
        ),
        (
            Kind::Name,
            twice(&|| keys.seal_name(&index, &name).expect("sealed")),
        ),
        (
            Kind::Value,
            twice(&|| keys.seal_value(&index, &value).expect("sealed")),
        ),
    ];
    Fixture {
        envelope,
        key_id,
        ns,
        keys,
        index,
        name,
        value,
        sealed,
    }
});

impl Fixture {
    fn sealed(&self, kind: Kind) -> &[Vec<u8>; 2] {
        &self
            .sealed
            .iter()
            .find(|(k, _)| *k == kind)
            .expect("every kind is sealed")
            .1
    }

    /// Opens `ciphertext` on `path`, in this fixture's namespace under this fixture's name, and
    /// checks that whatever opens is the plaintext sealed there.
    fn open(&self, path: Path, ciphertext: &[u8]) -> Result<(), CryptoError> {
        match path {
            Path::OpenDataKey => {
                let keys = self
                    .envelope
                    .open_data_key(self.ns, &self.wrapped(ciphertext))?;
                // The data key that opened must be the namespace's: its name opens under it.
                let name = keys.open_name(&self.index, &self.sealed(Kind::Name)[0])?;
                assert!(name == self.name, "an unwrapped data key is another key");
                Ok(())
            }
            Path::Rewrap => {
                let rewrapped = self.envelope.rewrap(self.ns, &self.wrapped(ciphertext))?;
                let keys = self.envelope.open_data_key(self.ns, &rewrapped)?;
                let name = keys.open_name(&self.index, &self.sealed(Kind::Name)[0])?;
                assert!(name == self.name, "a re-wrapped data key is another key");
                Ok(())
            }
            Path::KeyCheck => self.envelope.verify_key_check(&KeyCheck {
                key_id: self.key_id.clone(),
                ciphertext: ciphertext.to_vec(),
            }),
            Path::Name => {
                let name = self.keys.open_name(&self.index, ciphertext)?;
                assert!(name == self.name, "a name opened as another name");
                Ok(())
            }
            Path::Value => {
                let value = self.keys.open_value(&self.index, ciphertext)?;
                assert!(value == self.value, "a value opened as another value");
                Ok(())
            }
        }
    }

    fn wrapped(&self, ciphertext: &[u8]) -> WrappedKey {
        WrappedKey {
            key_id: self.key_id.clone(),
            ciphertext: ciphertext.to_vec(),
        }
    }

    /// Whether `ciphertext` is exactly one of the valid ones for `path`.
    fn is_valid_for(&self, path: Path, ciphertext: &[u8]) -> bool {
        self.sealed(path.kind())
            .iter()
            .any(|valid| valid == ciphertext)
    }
}

fn assert_refused(result: Result<(), CryptoError>, what: &str) -> Result<(), TestCaseError> {
    match result {
        Err(CryptoError::Integrity) => Ok(()),
        Ok(()) => Err(TestCaseError::fail(format!("{what}: opened"))),
        Err(other) => Err(TestCaseError::fail(format!(
            "{what}: {other} instead of an integrity error"
        ))),
    }
}

// ---------------------------------------------------------------------------------------------
// Mutations
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
enum Mutation {
    /// Flips one bit.
    FlipBit(Index, u8),
    /// Cuts the ciphertext short (to any length below its own).
    Truncate(Index),
    /// Appends bytes.
    Extend(Vec<u8>),
    /// Overwrites bytes from a position with others (may also extend).
    Overwrite(Index, Vec<u8>),
    /// Keeps a prefix and continues with the suffix of another valid ciphertext.
    Splice(Index, Kind, bool, Index),
}

fn kind() -> impl Strategy<Value = Kind> {
    proptest::sample::select(KINDS.to_vec())
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<Index>(), 0u8..8).prop_map(|(at, bit)| Mutation::FlipBit(at, bit)),
        2 => any::<Index>().prop_map(Mutation::Truncate),
        1 => proptest::collection::vec(any::<u8>(), 1..48).prop_map(Mutation::Extend),
        2 => (any::<Index>(), proptest::collection::vec(any::<u8>(), 1..48))
            .prop_map(|(at, bytes)| Mutation::Overwrite(at, bytes)),
        3 => (any::<Index>(), kind(), any::<bool>(), any::<Index>())
            .prop_map(|(at, kind, second, from)| Mutation::Splice(at, kind, second, from)),
    ]
}

fn apply(fixture: &Fixture, mut bytes: Vec<u8>, mutation: &Mutation) -> Vec<u8> {
    match mutation {
        Mutation::FlipBit(at, bit) => {
            if !bytes.is_empty() {
                let at = at.index(bytes.len());
                bytes[at] ^= 1 << bit;
            }
        }
        Mutation::Truncate(at) => {
            if !bytes.is_empty() {
                bytes.truncate(at.index(bytes.len()));
            }
        }
        Mutation::Extend(more) => bytes.extend_from_slice(more),
        Mutation::Overwrite(at, with) => {
            let at = at.index(bytes.len() + 1);
            for (offset, byte) in with.iter().enumerate() {
                match bytes.get_mut(at + offset) {
                    Some(slot) => *slot = *byte,
                    None => bytes.push(*byte),
                }
            }
        }
        Mutation::Splice(at, kind, second, from) => {
            let other = &fixture.sealed(*kind)[usize::from(*second)];
            bytes.truncate(at.index(bytes.len() + 1));
            bytes.extend_from_slice(&other[from.index(other.len() + 1)..]);
        }
    }
    bytes
}

// ---------------------------------------------------------------------------------------------
// Strategies for plaintexts
// ---------------------------------------------------------------------------------------------

/// Valid names: printable ASCII up to the 256-byte limit, or any non-control characters.
fn name() -> impl Strategy<Value = SecretName> {
    prop_oneof!["[ -~]{1,256}", "[^\\x00-\\x1f\\x7f]{1,64}",]
        .prop_filter_map("a valid secret name", |text| SecretName::parse(text).ok())
}

fn value() -> impl Strategy<Value = SecretValue> {
    prop_oneof![
        "\\PC{0,64}",
        any::<String>(),
        proptest::collection::vec(any::<char>(), 0..2048).prop_map(String::from_iter),
    ]
    .prop_map(SecretValue::new)
}

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(512))]

    /// Random bytes, with or without the right version byte in front, open on no path.
    #[test]
    fn arbitrary_bytes_open_on_no_path(
        versioned in any::<bool>(),
        bytes in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        let fixture = &*FIXTURE;
        let mut ciphertext = bytes;
        if versioned {
            ciphertext.insert(0, 0x01);
        }
        for path in PATHS {
            prop_assume!(!fixture.is_valid_for(path, &ciphertext));
            assert_refused(fixture.open(path, &ciphertext), &format!("{path:?}"))?;
        }
    }

    /// Any mutation of a valid ciphertext (bit flips, truncations, extensions, overwrites,
    /// splices with another valid ciphertext, up to four at once), given to every open path,
    /// opens only where the result is, byte for byte, a ciphertext sealed for that path.
    #[test]
    fn a_mutated_ciphertext_opens_only_if_it_is_unchanged(
        start in kind(),
        second in any::<bool>(),
        mutations in proptest::collection::vec(mutation(), 1..4),
    ) {
        let fixture = &*FIXTURE;
        let original = fixture.sealed(start)[usize::from(second)].clone();
        let mutated = mutations
            .iter()
            .fold(original, |bytes, mutation| apply(fixture, bytes, mutation));
        for path in PATHS {
            let result = fixture.open(path, &mutated);
            if fixture.is_valid_for(path, &mutated) {
                prop_assert!(result.is_ok(), "{path:?}: a valid ciphertext failed to open");
            } else {
                assert_refused(result, &format!("{path:?} after {mutations:?}"))?;
            }
        }
    }

    /// A valid ciphertext moved to another namespace or another name, or a wrapped key or key
    /// check relabelled with another key id, does not open.
    #[test]
    fn a_valid_ciphertext_opens_nowhere_else(
        other_ns in any::<u128>(),
        other_index in any::<[u8; 32]>(),
        other_key_id in "[0-9a-f]{16}|\\PC{0,40}",
    ) {
        let fixture = &*FIXTURE;
        let ns = NamespaceId::from_uuid(Uuid::from_u128(other_ns));
        prop_assume!(ns != fixture.ns && other_index != fixture.index.0);
        let wrapped = fixture.wrapped(&fixture.sealed(Kind::DataKey)[0]);
        assert_refused(
            fixture.envelope.open_data_key(ns, &wrapped).map(drop),
            "a data key in another namespace",
        )?;
        assert_refused(
            fixture.envelope.rewrap(ns, &wrapped).map(drop),
            "a data key re-wrapped for another namespace",
        )?;
        let index = NameIndex(other_index);
        assert_refused(
            fixture.keys.open_name(&index, &fixture.sealed(Kind::Name)[0]).map(drop),
            "a name under another name index",
        )?;
        assert_refused(
            fixture.keys.open_value(&index, &fixture.sealed(Kind::Value)[0]).map(drop),
            "a value under another name index",
        )?;
        let (other_keys, _) = fixture.envelope.new_data_key(ns)?;
        assert_refused(
            other_keys.open_value(&fixture.index, &fixture.sealed(Kind::Value)[0]).map(drop),
            "a value under another namespace's data key",
        )?;

        // An unknown key id is told apart (it names what to configure); it never opens.
        let key_id = KeyId::new(other_key_id);
        prop_assume!(key_id != fixture.key_id);
        let relabelled = WrappedKey { key_id: key_id.clone(), ciphertext: wrapped.ciphertext };
        let unknown = |result: Result<(), CryptoError>| {
            matches!(result, Err(CryptoError::UnknownKey(ref id)) if *id == key_id)
        };
        prop_assert!(unknown(fixture.envelope.open_data_key(fixture.ns, &relabelled).map(drop)));
        prop_assert!(unknown(fixture.envelope.rewrap(fixture.ns, &relabelled).map(drop)));
        let check = KeyCheck {
            key_id: key_id.clone(),
            ciphertext: fixture.sealed(Kind::KeyCheck)[0].clone(),
        };
        prop_assert!(unknown(fixture.envelope.verify_key_check(&check)));
    }
}

proptest! {
    #![proptest_config(config(256))]

    /// Whatever the KEK, namespace, name and value, everything sealed opens to what it was,
    /// through a data key that was wrapped and unwrapped again; sealing twice never gives the
    /// same bytes; the blind index and digest do not depend on which copy of the keys made them.
    #[test]
    fn names_and_values_round_trip(
        kek in any::<[u8; 32]>(),
        ns in any::<u128>(),
        name in name(),
        value in value(),
    ) {
        let envelope = envelope(kek);
        let ns = NamespaceId::from_uuid(Uuid::from_u128(ns));
        let (keys, wrapped) = envelope.new_data_key(ns)?;
        let index = keys.name_index(&name);
        let sealed_name = keys.seal_name(&index, &name)?;
        let sealed_value = keys.seal_value(&index, &value)?;
        prop_assert_ne!(&sealed_value, &keys.seal_value(&index, &value)?);

        let reopened = envelope.open_data_key(ns, &wrapped)?;
        prop_assert_eq!(reopened.name_index(&name), index);
        prop_assert_eq!(reopened.digest(&value), keys.digest(&value));
        prop_assert!(reopened.open_name(&index, &sealed_name)? == name);
        prop_assert!(reopened.open_value(&index, &sealed_value)? == value);

        let check = envelope.seal_key_check()?;
        envelope.verify_key_check(&check)?;
    }

    /// Parsing a KEK from configuration text never panics, and its error never repeats the
    /// text.
    #[test]
    fn any_kek_text_parses_or_is_refused_without_echo(text in "\\PC{0,80}|[A-Za-z0-9+/=_-]{40,48}") {
        match Kek::from_base64(&text) {
            Ok(kek) => prop_assert_eq!(kek.key_id().as_str().len(), 16),
            Err(error) => {
                let trimmed = text.trim();
                prop_assert!(
                    trimmed.len() < 12 || !error.to_string().contains(trimmed),
                    "the error repeats the key text"
                );
            }
        }
    }
}
