//! The audit key, and what it computes: the MACs that chain the lines, the keyed identifiers
//! that stand in a line for an access key or a secret's name, and the public ids of audit keys
//! and service tokens.
//!
//! # Derivation
//! The audit key is 32 bytes: `AUDIT_KEY` when it is set on its own, otherwise derived from the
//! active KEK (HKDF-SHA256, salt `secrets-service audit`, info `audit-key`), so that a
//! service with no audit key configured still keeps a keyed trail. Two subkeys come from it by
//! HKDF-SHA256 (salt `secrets-service audit v1`): `chain` keys the lines' MACs, `identifiers`
//! keys the tags, so neither use can be turned against the other.
//!
//! # Identifiers
//! - An access key's tag: the first 16 bytes of HMAC(identifiers, `"access-key" || SHA-256 of the
//!   key as stored`), in hex. The same key always gives the same tag under one audit key, so an
//!   investigator holding an access key finds every request made with it, failed ones included.
//! - A secret name's tag: the first 16 bytes of HMAC(identifiers, `"secret-name" || namespace id
//!   (16 bytes) || name`). It is scoped to its namespace: one name used in many namespaces does
//!   not show as the same tag.
//! - A service token's id: the first 8 bytes of HMAC-SHA256(token, `"service-token-id"`), as the
//!   KEK's key id is made from the KEK. It needs no audit key: it is a public fingerprint, shown
//!   by `gen-token` and `audit hash`, and it reveals nothing of the token.
//!
//! Without the audit key, none of the tags can be computed, so a leaked trail cannot be searched
//! for a guessed name.

use std::fmt;

use ring::{hkdf, hmac};
use secrets_domain::{AccessKeyHash, NamespaceId, SecretName};
use serde::{Serialize, Serializer};

/// How many bytes of an HMAC a tag keeps.
const TAG_BYTES: usize = 16;
/// How many bytes of an HMAC a public id keeps.
const ID_BYTES: usize = 8;

/// The key that chains and tags an audit trail. No `Clone`, no key bytes in `Debug`; the
/// subkeys live in `ring`'s HMAC keys, which are kept for the process's life.
pub struct AuditKey {
    chain: hmac::Key,
    identifiers: hmac::Key,
    id: AuditKeyId,
}

impl fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AuditKey({})", self.id)
    }
}

/// The public id of an audit key, as a chain's first line names it (16 hex digits).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct AuditKeyId(String);

impl AuditKeyId {
    /// The id as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AuditKeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// HKDF's output length for a subkey: one HMAC-SHA256 key.
struct SubkeyLen;

impl hkdf::KeyType for SubkeyLen {
    fn len(&self) -> usize {
        32
    }
}

impl AuditKey {
    /// The audit key of 32 bytes of key material (`AUDIT_KEY`, or what [`AuditKey::derive`]
    /// made).
    #[must_use]
    pub fn from_bytes(material: &[u8; 32]) -> Self {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"secrets-service audit v1").extract(material);
        let subkey = |info: &'static [u8]| {
            let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
            // Only an output longer than 255 hash lengths fails; 32 bytes never does.
            let info = [info];
            let okm = prk
                .expand(&info, SubkeyLen)
                .expect("32 bytes is a valid HKDF-SHA256 output length");
            okm.fill(bytes.as_mut())
                .expect("the buffer is the length asked for");
            hmac::Key::new(hmac::HMAC_SHA256, bytes.as_ref())
        };
        let chain = subkey(b"chain");
        let identifiers = subkey(b"identifiers");
        let id = AuditKeyId(hex_prefix(
            hmac::sign(&identifiers, b"audit-key-id").as_ref(),
            ID_BYTES,
        ));
        Self {
            chain,
            identifiers,
            id,
        }
    }

    /// The audit key derived from a KEK's bytes, for a service with no `AUDIT_KEY` of its own.
    #[must_use]
    pub fn derive(kek: &[u8; 32]) -> Self {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"secrets-service audit").extract(kek);
        let mut material = zeroize::Zeroizing::new([0u8; 32]);
        prk.expand(&[b"audit-key"], SubkeyLen)
            .expect("32 bytes is a valid HKDF-SHA256 output length")
            .fill(material.as_mut())
            .expect("the buffer is the length asked for");
        Self::from_bytes(&material)
    }

    /// This key's public id.
    #[must_use]
    pub fn id(&self) -> &AuditKeyId {
        &self.id
    }

    /// The tag of an access key, from its stored hash.
    #[must_use]
    pub fn access_key_tag(&self, hash: &AccessKeyHash) -> Tag {
        let mut context = hmac::Context::with_key(&self.identifiers);
        context.update(b"access-key");
        context.update(hash.as_bytes());
        Tag::of(context.sign().as_ref())
    }

    /// The tag of a secret's name in a namespace.
    #[must_use]
    pub fn secret_name_tag(&self, namespace: NamespaceId, name: &SecretName) -> Tag {
        let mut context = hmac::Context::with_key(&self.identifiers);
        context.update(b"secret-name");
        context.update(namespace.as_bytes());
        context.update(name.as_str().as_bytes());
        Tag::of(context.sign().as_ref())
    }

    /// The MAC of a line's body (which holds the previous line's MAC).
    pub(super) fn mac(&self, body: &[u8]) -> hmac::Tag {
        hmac::sign(&self.chain, body)
    }

    /// Whether `mac` is the MAC of `body`, compared in constant time.
    pub(super) fn verify(&self, body: &[u8], mac: &[u8]) -> bool {
        hmac::verify(&self.chain, body, mac).is_ok()
    }
}

/// A keyed identifier in a line: 16 bytes, written as 32 hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tag([u8; TAG_BYTES]);

impl Tag {
    fn of(mac: &[u8]) -> Self {
        let mut tag = [0u8; TAG_BYTES];
        tag.copy_from_slice(&mac[..TAG_BYTES]);
        Self(tag)
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl Serialize for Tag {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// A service token's public id (16 hex digits): who called, without the token. Copied, not
/// allocated, into every line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenId([u8; ID_BYTES]);

impl TokenId {
    /// The id of `token`.
    #[must_use]
    pub fn of(token: &[u8]) -> Self {
        let tag = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, token),
            b"service-token-id",
        );
        let mut id = [0u8; ID_BYTES];
        id.copy_from_slice(&tag.as_ref()[..ID_BYTES]);
        Self(id)
    }
}

impl fmt::Display for TokenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl Serialize for TokenId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

fn hex_prefix(bytes: &[u8], len: usize) -> String {
    hex::encode(&bytes[..len])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_keyed_scoped_and_stable() {
        let key = AuditKey::from_bytes(&[7; 32]);
        let other = AuditKey::from_bytes(&[8; 32]);
        let name = SecretName::parse("DATABASE_URL").expect("name");
        let a = NamespaceId::from_uuid(uuid::Uuid::from_u128(1));
        let b = NamespaceId::from_uuid(uuid::Uuid::from_u128(2));
        assert_eq!(key.secret_name_tag(a, &name), key.secret_name_tag(a, &name));
        assert_ne!(key.secret_name_tag(a, &name), key.secret_name_tag(b, &name));
        assert_ne!(
            key.secret_name_tag(a, &name),
            other.secret_name_tag(a, &name)
        );
        assert_eq!(key.secret_name_tag(a, &name).to_string().len(), 32);
        assert_ne!(key.id(), other.id());
        assert_eq!(key.id().as_str().len(), 16);
    }

    #[test]
    fn a_derived_key_differs_from_its_material_used_directly() {
        let kek = [9; 32];
        assert_ne!(AuditKey::derive(&kek).id(), AuditKey::from_bytes(&kek).id());
        assert_eq!(AuditKey::derive(&kek).id(), AuditKey::derive(&kek).id());
    }

    #[test]
    fn a_token_id_is_a_short_fingerprint() {
        let id = TokenId::of(b"a-service-token");
        assert_eq!(id.to_string().len(), 16);
        assert_eq!(id, TokenId::of(b"a-service-token"));
        assert_ne!(id, TokenId::of(b"another-token"));
        assert!(!id.to_string().contains("token"));
    }
}
