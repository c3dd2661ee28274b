//! The values a caller hands the service, parsed once at the edge.
//!
//! Every type here has private fields and a `parse` (or `generate`) constructor, so a value of
//! the type is valid by construction: a `SecretName` always has 1 to 256 bytes and no control
//! characters, an `AccessKey` always decodes to 32 bytes. Types that hold something secret have
//! a redacted `Debug` and wipe their memory on drop.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;
use time::OffsetDateTime;
use uuid::Uuid;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::import::key::ORIGINAL_KEY_CHARS;
use crate::ports::{Random, RandomError};

/// The internal, never-published identity of a namespace.
///
/// It is random rather than sequential so that it reveals nothing about how many namespaces
/// exist, and it is known before the namespace is stored, which lets the data key's wrapping
/// bind to it. It is safe to log: it grants nothing.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct NamespaceId(Uuid);

impl NamespaceId {
    /// A fresh random id.
    pub fn generate(random: &impl Random) -> Result<Self, RandomError> {
        let mut bytes = [0u8; 16];
        random.fill(&mut bytes)?;
        Ok(Self(uuid::Builder::from_random_bytes(bytes).into_uuid()))
    }

    /// Wraps an id read back from a store.
    #[must_use]
    pub fn from_uuid(id: Uuid) -> Self {
        Self(id)
    }

    /// The id as a UUID, for storing.
    #[must_use]
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }

    /// The id's 16 bytes, for binding ciphertexts to it.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8; 16] {
        self.0.as_bytes()
    }
}

impl fmt::Display for NamespaceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The number of random bytes in an access key.
pub const ACCESS_KEY_BYTES: usize = 32;
/// The length of an access key's text form: 32 bytes in base64url without padding.
pub const ACCESS_KEY_CHARS: usize = 43;

/// The bearer credential of one namespace.
///
/// Two forms are recognised, each only exactly as it is written:
/// - **native**: 32 random bytes, shown as 43 base64url characters. Every namespace this
///   service creates gets one, and rotating any key yields one.
/// - **original**: the 21-character key of a namespace brought over from the service this one
///   replaces (see [`crate::import::key`]), so that the keys the platform already holds keep
///   working.
///
/// The service hands a key out once and keeps only its [`AccessKeyHash`], whose
/// [`AccessKind`] says which form it was: a store matches on both, so a key of one form can
/// never reach a namespace whose key has the other.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct AccessKey(KeyBytes);

#[derive(Zeroize)]
enum KeyBytes {
    Native([u8; ACCESS_KEY_BYTES]),
    Original([u8; ORIGINAL_KEY_CHARS]),
}

impl AccessKey {
    /// A fresh native key from the randomness port (the OS CSPRNG in production).
    pub fn generate(random: &impl Random) -> Result<Self, RandomError> {
        let mut bytes = [0u8; ACCESS_KEY_BYTES];
        random.fill(&mut bytes)?;
        Ok(Self(KeyBytes::Native(bytes)))
    }

    /// Parses the text form: exactly 43 base64url characters decoding to 32 bytes (native),
    /// or exactly 21 characters of `A-Z a-z 0-9 _ -` (original). Anything else is refused;
    /// callers treat that like an unknown key.
    pub fn parse(text: &str) -> Result<Self, InvalidAccessKey> {
        if let Some(original) = crate::import::key::parse(text) {
            return Ok(Self(KeyBytes::Original(original)));
        }
        if text.len() != ACCESS_KEY_CHARS {
            return Err(InvalidAccessKey);
        }
        let mut bytes = Zeroizing::new([0u8; ACCESS_KEY_BYTES]);
        match URL_SAFE_NO_PAD.decode_slice(text, bytes.as_mut()) {
            Ok(ACCESS_KEY_BYTES) => Ok(Self(KeyBytes::Native(*bytes))),
            _ => Err(InvalidAccessKey),
        }
    }

    /// The text form, to give to the caller once.
    #[must_use]
    pub fn expose(&self) -> Zeroizing<String> {
        match &self.0 {
            KeyBytes::Native(bytes) => Zeroizing::new(URL_SAFE_NO_PAD.encode(bytes)),
            // Parsing checked every byte is ASCII.
            KeyBytes::Original(chars) => {
                Zeroizing::new(chars.iter().copied().map(char::from).collect())
            }
        }
    }

    /// The key's bytes (the 32 random bytes of a native key, the 21 characters of an original
    /// one), to key the entity tags of its namespace (`crate::etag`).
    pub(crate) fn secret_bytes(&self) -> &[u8] {
        match &self.0 {
            KeyBytes::Native(bytes) => bytes,
            KeyBytes::Original(chars) => chars,
        }
    }

    /// Which form the key has.
    #[must_use]
    pub fn kind(&self) -> AccessKind {
        match self.0 {
            KeyBytes::Native(_) => AccessKind::Native,
            KeyBytes::Original(_) => AccessKind::Original,
        }
    }

    /// What the store keeps and looks up by: the key's form and SHA-256 of its bytes (of the
    /// 32 random bytes for a native key; of the 21 characters, as the original service
    /// stored it, for an original one).
    ///
    /// A fast hash is enough here: a native key has 256 bits of entropy, an original one 126,
    /// so there is nothing to brute-force, and it keeps the hot read to one cheap hash.
    #[must_use]
    pub fn hash(&self) -> AccessKeyHash {
        match &self.0 {
            KeyBytes::Native(bytes) => {
                AccessKeyHash::new(AccessKind::Native, Sha256::digest(bytes).into())
            }
            KeyBytes::Original(chars) => {
                AccessKeyHash::new(AccessKind::Original, Sha256::digest(chars).into())
            }
        }
    }
}

impl PartialEq for AccessKey {
    fn eq(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            (KeyBytes::Native(a), KeyBytes::Native(b)) => a.ct_eq(b).into(),
            (KeyBytes::Original(a), KeyBytes::Original(b)) => a.ct_eq(b).into(),
            _ => false,
        }
    }
}

impl fmt::Debug for AccessKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccessKey(<redacted>)")
    }
}

/// An access key in neither recognised form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a well-formed access key")]
pub struct InvalidAccessKey;

/// Which form an access key has, and so which namespaces it can reach.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub enum AccessKind {
    /// This service's own 43-character keys.
    Native,
    /// The 21-character keys of namespaces imported from the original service.
    Original,
}

impl AccessKind {
    /// The number a store keeps for the kind (`namespaces.access_kind`).
    #[must_use]
    pub fn code(self) -> i16 {
        match self {
            Self::Native => 0,
            Self::Original => 1,
        }
    }

    /// The kind a store's number stands for; `None` for a number no kind has.
    #[must_use]
    pub fn from_code(code: i64) -> Option<Self> {
        match code {
            0 => Some(Self::Native),
            1 => Some(Self::Original),
            _ => None,
        }
    }
}

/// What a store keeps of an access key: its kind and SHA-256 digest. Both are matched, so a
/// native key never finds an imported namespace and an original key never finds a native one,
/// by construction rather than by the improbability of a hash collision.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct AccessKeyHash {
    kind: AccessKind,
    digest: [u8; 32],
}

impl AccessKeyHash {
    /// A hash of the given kind.
    #[must_use]
    pub fn new(kind: AccessKind, digest: [u8; 32]) -> Self {
        Self { kind, digest }
    }

    /// A native key's hash, as read back from a store.
    #[must_use]
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self::new(AccessKind::Native, bytes)
    }

    /// The kind of key it is the hash of.
    #[must_use]
    pub fn kind(&self) -> AccessKind {
        self.kind
    }

    /// The digest's bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.digest
    }
}

/// The largest secret name, in bytes of UTF-8.
pub const MAX_NAME_BYTES: usize = 256;

/// The name of a secret: 1 to 256 bytes of UTF-8 without control characters.
///
/// Names are encrypted at rest (they can tell which services a customer uses), so `Debug`
/// does not print them either.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Zeroize, ZeroizeOnDrop)]
pub struct SecretName(String);

impl SecretName {
    /// Parses a name, saying what is wrong with it when it is not one.
    pub fn parse(name: impl Into<String>) -> Result<Self, InvalidName> {
        let name = Zeroizing::new(name.into());
        if name.is_empty() {
            return Err(InvalidName::Empty);
        }
        if name.len() > MAX_NAME_BYTES {
            return Err(InvalidName::TooLong);
        }
        if name.chars().any(|c| c <= '\u{1f}' || c == '\u{7f}') {
            return Err(InvalidName::ControlCharacter);
        }
        Ok(Self(name.to_string()))
    }

    /// The name as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretName(<redacted>)")
    }
}

/// Why a secret name was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InvalidName {
    /// The name is the empty string.
    #[error("a secret name must not be empty")]
    Empty,
    /// The name is longer than [`MAX_NAME_BYTES`].
    #[error("a secret name must be at most 256 bytes of UTF-8")]
    TooLong,
    /// The name holds U+0000–U+001F or U+007F.
    #[error("a secret name must not contain control characters")]
    ControlCharacter,
}

/// A secret's plaintext value. Wiped from memory when dropped; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(Zeroizing<String>);

impl SecretValue {
    /// Wraps a plaintext. Its size is checked against the configured limit by the use case,
    /// since the limit is configuration, not part of what a value is.
    #[must_use]
    pub fn new(value: String) -> Self {
        Self(Zeroizing::new(value))
    }

    /// The plaintext, to encrypt or to answer with.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The plaintext's length in bytes.
    #[must_use]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the plaintext is the empty string (a valid value).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretValue(<redacted>)")
    }
}

/// The public fingerprint of a key-encryption key, recorded beside everything wrapped under
/// it so that the right KEK is chosen for unwrapping and a missing one is named.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct KeyId(String);

impl KeyId {
    /// Wraps a key id (lowercase hex) computed by the crypto adapter or read from a store.
    #[must_use]
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    /// The id as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How many namespaces one bulk request may create.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct BulkCount(u16);

impl BulkCount {
    /// The most namespaces one bulk request creates.
    pub const MAX: u16 = 500;

    /// Parses a count, which must lie in `1..=500`.
    pub fn parse(count: i64) -> Result<Self, InvalidBulkCount> {
        match u16::try_from(count) {
            Ok(n @ 1..=Self::MAX) => Ok(Self(n)),
            _ => Err(InvalidBulkCount),
        }
    }

    /// The count.
    #[must_use]
    pub fn get(self) -> usize {
        usize::from(self.0)
    }
}

/// A bulk count outside `1..=500`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("count must be an integer from 1 to 500")]
pub struct InvalidBulkCount;

/// The configured limits the use cases enforce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The largest value, in bytes of UTF-8.
    pub max_value_bytes: usize,
    /// The most secrets one namespace may hold.
    pub max_secrets_per_namespace: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_value_bytes: 65_536,
            max_secrets_per_namespace: 1_000,
        }
    }
}

/// One secret as a caller reads it, with its metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Secret {
    /// The secret's name.
    pub name: SecretName,
    /// The secret's plaintext.
    pub value: SecretValue,
    /// When the name was first written.
    pub created_at: OffsetDateTime,
    /// When the value last changed.
    pub updated_at: OffsetDateTime,
}

/// One entry of a namespace's key listing: everything but the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    /// The secret's name.
    pub name: SecretName,
    /// HMAC-SHA256 of the value under a per-namespace key: shows that a value changed without
    /// letting anyone test guesses of it.
    pub digest: [u8; 32],
    /// When the name was first written.
    pub created_at: OffsetDateTime,
    /// When the value last changed.
    pub updated_at: OffsetDateTime,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_access_key_round_trips_through_its_text_form() {
        let key = AccessKey(KeyBytes::Native([7u8; 32]));
        let text = key.expose();
        assert_eq!(text.len(), ACCESS_KEY_CHARS);
        let parsed = AccessKey::parse(&text).expect("parses");
        assert_eq!(parsed, key);
        assert_eq!(parsed.hash(), key.hash());
    }

    #[test]
    fn malformed_access_keys_are_refused() {
        let good = AccessKey(KeyBytes::Native([1u8; 32])).expose().to_string();
        let cases = [
            ("empty", String::new()),
            ("one short", good[..42].to_string()),
            ("one long", format!("{good}A")),
            ("standard base64 alphabet", good.replace('A', "+")),
            ("padding", format!("{}=", &good[..42])),
            ("non-ascii", format!("{}é", &good[..41])),
        ];
        for (why, text) in cases {
            assert_eq!(AccessKey::parse(&text), Err(InvalidAccessKey), "{why}");
        }
    }

    #[test]
    fn an_access_key_hash_is_sha256_of_its_bytes() {
        let key = AccessKey(KeyBytes::Native([0u8; 32]));
        // SHA-256 of 32 zero bytes.
        let expected = [
            0x66, 0x68, 0x7a, 0xad, 0xf8, 0x62, 0xbd, 0x77, 0x6c, 0x8f, 0xc1, 0x8b, 0x8e, 0x9f,
            0x8e, 0x20, 0x08, 0x97, 0x14, 0x85, 0x6e, 0xe2, 0x33, 0xb3, 0x90, 0x2a, 0x59, 0x1d,
            0x0d, 0x5f, 0x29, 0x25,
        ];
        assert_eq!(key.hash().as_bytes(), &expected);
    }

    #[test]
    fn secret_names_are_checked() {
        assert!(SecretName::parse("SECRET_API_KEY").is_ok());
        assert!(SecretName::parse("ключ 🔑").is_ok());
        assert!(SecretName::parse("a".repeat(256)).is_ok());
        assert_eq!(SecretName::parse(""), Err(InvalidName::Empty));
        assert_eq!(
            SecretName::parse("a".repeat(257)),
            Err(InvalidName::TooLong)
        );
        // 86 three-byte characters are 258 bytes: the limit counts bytes, not characters.
        assert_eq!(SecretName::parse("€".repeat(86)), Err(InvalidName::TooLong));
        for bad in ["a\nb", "\u{0}", "tab\t", "del\u{7f}", "\u{1f}"] {
            assert_eq!(
                SecretName::parse(bad),
                Err(InvalidName::ControlCharacter),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn secrets_are_redacted_in_debug_output() {
        let name = SecretName::parse("STRIPE_KEY").expect("valid");
        let value = SecretValue::new("sk_live_123".into());
        let key = AccessKey(KeyBytes::Native([9u8; 32]));
        let printed = format!("{name:?} {value:?} {key:?}");
        assert!(!printed.contains("STRIPE_KEY"));
        assert!(!printed.contains("sk_live_123"));
        assert!(!printed.contains(key.expose().as_str()));
    }

    #[test]
    fn bulk_counts_are_bounded() {
        assert_eq!(BulkCount::parse(1).map(BulkCount::get), Ok(1));
        assert_eq!(BulkCount::parse(500).map(BulkCount::get), Ok(500));
        for bad in [0, -1, 501, i64::MAX] {
            assert_eq!(BulkCount::parse(bad), Err(InvalidBulkCount), "{bad}");
        }
    }
}
