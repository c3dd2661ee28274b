//! Envelope encryption with `ring`: key-encryption keys (KEKs) wrap per-namespace data keys
//! (DEKs), and a namespace's data key encrypts its secrets' names and values.
//!
//! [`RingEnvelope`] implements the domain's [`Envelope`] port and [`RingKeys`] its
//! [`NamespaceKeys`] port; [`OsRandom`] implements [`Random`] with the OS CSPRNG. This doc is
//! the format's specification: the tests pin it with vectors computed independently of this
//! code, and a change to anything below is a new format version, not an edit.
//!
//! # Wire format
//!
//! Every ciphertext, whatever it holds, is made by one primitive:
//!
//! ```text
//! version (1 byte, 0x01) || salt (16) || nonce (12) || AES-256-GCM ciphertext || tag (16)
//! ```
//!
//! The AES key of each seal is a fresh subkey, never the long-lived key itself:
//! `subkey = HKDF-SHA256(ikm = key, salt = the 16 salt bytes, info = purpose label)`, 32 bytes.
//! The salt and the nonce are fresh random bytes from the OS CSPRNG on every seal. The
//! shortest ciphertext (an empty plaintext) is 45 bytes.
//!
//! | purpose | key | HKDF info | associated data | plaintext |
//! | --- | --- | --- | --- | --- |
//! | data key | KEK | `secrets-service/v1/data-key` | `"data-key" \|\| ns id (16) \|\| key id (ASCII)` | the 32-byte DEK |
//! | key check | KEK | `secrets-service/v1/key-check` | `"key-check" \|\| key id (ASCII)` | `"secrets-service key check v1"` |
//! | name | DEK | `secrets-service/v1/name` | `"name" \|\| ns id (16) \|\| name index (32)` | the name, UTF-8 |
//! | value | DEK | `secrets-service/v1/value` | `"value" \|\| ns id (16) \|\| name index (32)` | the value, UTF-8 |
//!
//! Two more keys are derived from the DEK, once per opened namespace, with HKDF-SHA256 and an
//! empty salt, to 32 bytes:
//! - the **blind index** of a name is HMAC-SHA256 under the key with info
//!   `secrets-service/v1/name-index`, over the name's UTF-8 bytes;
//! - the **digest** of a value is HMAC-SHA256 under the key with info
//!   `secrets-service/v1/digest`, over the value's UTF-8 bytes.
//!
//! A KEK's **key id** is lowercase hex of the first 8 bytes of HMAC-SHA256(KEK, `"kek-id"`).
//! The namespace id is the 16 bytes of its UUID.
//!
//! # Invariants
//!
//! - **No key performs more than one random-nonce encryption.** NIST SP 800-38D allows at
//!   most 2^32 AES-GCM encryptions with random 96-bit nonces under one key (SPEC 4). Counting
//!   encryptions per data key would need shared mutable state across replicas; instead, as
//!   Kubernetes KMS v2 does, every seal derives its own subkey from a 128-bit random salt, so
//!   each AES key encrypts once. Two seals share a subkey only if their salts collide: even
//!   after 2^32 seals under one key that chance is below 2^-64, and a nonce collision would
//!   be needed on top of it. A namespace written billions of times is therefore safe without
//!   re-keying.
//! - **Sealing the same plaintext twice gives different ciphertexts** (fresh salt and nonce).
//! - **Every ciphertext is bound to where it belongs.** The HKDF info separates purposes (a
//!   value cannot open as a name, nor a data key as a key check), and the associated data
//!   binds a wrapped data key to its namespace and its KEK's id, and a name or value to its
//!   namespace and its name's blind index. A ciphertext copied into another row, another
//!   namespace or the other column, or a wrapped key relabelled with another key id, fails to
//!   open; it never opens as another secret.
//! - **Opening fails in one way.** A short input, an unknown version, a wrong key, a wrong
//!   purpose, wrong associated data and a flipped bit are all [`CryptoError::Integrity`], with
//!   no detail. Only an unconfigured key id is told apart ([`CryptoError::UnknownKey`]), since
//!   the id is public and names what the operator must configure.
//! - **Blind indexes and digests are per namespace.** Their keys come from the namespace's
//!   DEK, so the same name or value in two namespaces gives unrelated indexes and digests,
//!   and a short value cannot be guessed from its digest without the DEK.
//! - **Key material is wiped.** A KEK, and a namespace's DEK together with its two derived
//!   HMAC keys, each live in one heap allocation that never moves and is zeroized on drop;
//!   transient copies (a DEK being re-wrapped, decrypted plaintexts) sit in `Zeroizing`
//!   buffers; `Debug` never prints key bytes. (`ring` does not wipe its own AES key schedules
//!   and HMAC states, so none is kept: each lives for the duration of one call.)
//! - **Work is split by how often it happens.** The hot read opens one data key and then
//!   many names and values: everything per namespace (unwrapping the DEK, the HKDF
//!   derivations of the index and digest keys) is done once in [`Envelope::open_data_key`];
//!   only per-ciphertext work (the subkey derivation, the AES and HMAC key set-up) is
//!   repeated per ciphertext.

mod kek;
mod seal;

#[cfg(test)]
mod tests;

use std::fmt;
use std::mem;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ring::hkdf::{self, HKDF_SHA256};
use ring::hmac;
use ring::rand::{SecureRandom as _, SystemRandom};
use secrets_domain::model::{KeyId, NamespaceId, SecretName, SecretValue};
use secrets_domain::ports::{
    CryptoError, Envelope, KeyCheck, NameIndex, NamespaceKeys, Random, RandomError, WrappedKey,
};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

pub use kek::{InvalidKek, Kek};

use seal::{Purpose, data_key_aad, key_check_aad, name_aad, open, seal, value_aad};

/// The length of every long-lived key here: KEKs, DEKs and the derived HMAC keys.
const KEY_LEN: usize = 32;

/// The plaintext of a key check. It is public: what proves the KEK is that it authenticates.
const KEY_CHECK_PLAINTEXT: &[u8] = b"secrets-service key check v1";

/// HKDF info of the blind-index HMAC key.
const NAME_INDEX_INFO: &[u8] = b"secrets-service/v1/name-index";
/// HKDF info of the value-digest HMAC key.
const DIGEST_INFO: &[u8] = b"secrets-service/v1/digest";

/// Generates a fresh 32-byte key from the OS CSPRNG, as standard base64 (the `gen-key`
/// command's output, and a valid [`Kek::from_base64`] input).
///
/// # Errors
/// [`RandomError`] when the OS randomness source fails.
pub fn generate_key_base64() -> Result<Zeroizing<String>, RandomError> {
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    OsRandom::new().fill(key.as_mut())?;
    Ok(Zeroizing::new(STANDARD.encode(key.as_ref())))
}

/// The domain's [`Random`] port on the OS CSPRNG (`ring::rand::SystemRandom`).
#[derive(Clone, Debug)]
pub struct OsRandom(SystemRandom);

impl OsRandom {
    /// The OS randomness source.
    #[must_use]
    pub fn new() -> Self {
        Self(SystemRandom::new())
    }
}

impl Default for OsRandom {
    fn default() -> Self {
        Self::new()
    }
}

impl Random for OsRandom {
    fn fill(&self, dest: &mut [u8]) -> Result<(), RandomError> {
        self.0.fill(dest).map_err(|_| RandomError)
    }
}

/// A configured KEK with its key id, computed once.
struct ConfiguredKek {
    id: KeyId,
    kek: Kek,
}

impl ConfiguredKek {
    fn new(kek: Kek) -> Self {
        Self {
            id: kek.key_id(),
            kek,
        }
    }
}

/// The [`Envelope`] port on `ring`: one active KEK that wraps new data keys and key checks,
/// and retired KEKs that still unwrap what was wrapped under them.
pub struct RingEnvelope {
    active: ConfiguredKek,
    retired: Vec<ConfiguredKek>,
    random: OsRandom,
}

impl RingEnvelope {
    /// An envelope that wraps under `active` and unwraps under `active` or any of `retired`.
    ///
    /// A retired KEK that is the active one, or that is listed twice, is dropped: it would add
    /// nothing but a duplicate id to [`Envelope::key_ids`].
    #[must_use]
    pub fn new(active: Kek, retired: Vec<Kek>) -> Self {
        let active = ConfiguredKek::new(active);
        let mut kept: Vec<ConfiguredKek> = Vec::with_capacity(retired.len());
        for kek in retired {
            let kek = ConfiguredKek::new(kek);
            if kek.id != active.id && kept.iter().all(|k| k.id != kek.id) {
                kept.push(kek);
            }
        }
        Self {
            active,
            retired: kept,
            random: OsRandom::new(),
        }
    }

    /// The configured KEK with id `id`.
    fn kek(&self, id: &KeyId) -> Result<&ConfiguredKek, CryptoError> {
        std::iter::once(&self.active)
            .chain(&self.retired)
            .find(|k| k.id == *id)
            .ok_or_else(|| CryptoError::UnknownKey(id.clone()))
    }

    /// Unwraps namespace `ns`'s data key into `dek`.
    fn unwrap_into(
        &self,
        ns: NamespaceId,
        wrapped: &WrappedKey,
        dek: &mut [u8; KEY_LEN],
    ) -> Result<(), CryptoError> {
        let kek = self.kek(&wrapped.key_id)?;
        let plaintext = open(
            kek.kek.bytes(),
            Purpose::DataKey,
            &data_key_aad(ns, &kek.id),
            &wrapped.ciphertext,
        )?;
        // Only this code seals data keys, always of 32 bytes; anything else authenticating
        // would mean a format this version does not know.
        let bytes: &[u8; KEY_LEN] = plaintext
            .as_slice()
            .try_into()
            .map_err(|_| CryptoError::Integrity)?;
        dek.copy_from_slice(bytes);
        Ok(())
    }

    /// Wraps `dek` for namespace `ns` under the active KEK.
    fn wrap(&self, ns: NamespaceId, dek: &[u8; KEY_LEN]) -> Result<WrappedKey, CryptoError> {
        let ciphertext = seal(
            &self.random,
            self.active.kek.bytes(),
            Purpose::DataKey,
            &data_key_aad(ns, &self.active.id),
            dek,
        )?;
        Ok(WrappedKey {
            key_id: self.active.id.clone(),
            ciphertext,
        })
    }
}

impl fmt::Debug for RingEnvelope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RingEnvelope")
            .field("active", &self.active.id.as_str())
            .field(
                "retired",
                &self
                    .retired
                    .iter()
                    .map(|k| k.id.as_str())
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl Envelope for RingEnvelope {
    type Keys = RingKeys;

    fn active_key_id(&self) -> KeyId {
        self.active.id.clone()
    }

    fn key_ids(&self) -> Vec<KeyId> {
        std::iter::once(&self.active)
            .chain(&self.retired)
            .map(|k| k.id.clone())
            .collect()
    }

    fn new_data_key(&self, ns: NamespaceId) -> Result<(RingKeys, WrappedKey), CryptoError> {
        let mut keys = Box::new(DataKeys::zeroed());
        self.random
            .fill(&mut keys.dek)
            .map_err(|e| CryptoError::Internal(Box::new(e)))?;
        let wrapped = self.wrap(ns, &keys.dek)?;
        Ok((RingKeys::new(ns, keys)?, wrapped))
    }

    fn open_data_key(
        &self,
        ns: NamespaceId,
        wrapped: &WrappedKey,
    ) -> Result<RingKeys, CryptoError> {
        let mut keys = Box::new(DataKeys::zeroed());
        self.unwrap_into(ns, wrapped, &mut keys.dek)?;
        RingKeys::new(ns, keys)
    }

    fn rewrap(&self, ns: NamespaceId, wrapped: &WrappedKey) -> Result<WrappedKey, CryptoError> {
        let mut dek = Zeroizing::new([0u8; KEY_LEN]);
        self.unwrap_into(ns, wrapped, &mut dek)?;
        self.wrap(ns, &dek)
    }

    fn seal_key_check(&self) -> Result<KeyCheck, CryptoError> {
        let ciphertext = seal(
            &self.random,
            self.active.kek.bytes(),
            Purpose::KeyCheck,
            &key_check_aad(&self.active.id),
            KEY_CHECK_PLAINTEXT,
        )?;
        Ok(KeyCheck {
            key_id: self.active.id.clone(),
            ciphertext,
        })
    }

    fn verify_key_check(&self, check: &KeyCheck) -> Result<(), CryptoError> {
        let kek = self.kek(&check.key_id)?;
        let plaintext = open(
            kek.kek.bytes(),
            Purpose::KeyCheck,
            &key_check_aad(&kek.id),
            &check.ciphertext,
        )?;
        // The plaintext is public, so an ordinary comparison leaks nothing.
        if plaintext.as_slice() == KEY_CHECK_PLAINTEXT {
            Ok(())
        } else {
            Err(CryptoError::Integrity)
        }
    }
}

/// A namespace's data key and the two HMAC keys derived from it, in one heap allocation that
/// is wiped on drop and never moves.
#[derive(Zeroize, ZeroizeOnDrop)]
struct DataKeys {
    dek: [u8; KEY_LEN],
    name_index: [u8; KEY_LEN],
    digest: [u8; KEY_LEN],
}

impl DataKeys {
    /// Zeroed keys, to be boxed and then have the data key written into them in place.
    fn zeroed() -> Self {
        Self {
            dek: [0; KEY_LEN],
            name_index: [0; KEY_LEN],
            digest: [0; KEY_LEN],
        }
    }
}

/// The [`NamespaceKeys`] port on `ring`: one namespace's unwrapped data key, bound to the
/// namespace's id.
///
/// Made by [`Envelope::open_data_key`] or [`Envelope::new_data_key`]; dropping it wipes the
/// data key and the keys derived from it. `Debug` prints the namespace id only.
pub struct RingKeys {
    ns: NamespaceId,
    keys: Box<DataKeys>,
    random: OsRandom,
}

impl RingKeys {
    /// Takes `keys` with `dek` filled in, and derives the HMAC keys from it once.
    fn new(ns: NamespaceId, mut keys: Box<DataKeys>) -> Result<Self, CryptoError> {
        let DataKeys {
            dek,
            name_index,
            digest,
        } = &mut *keys;
        derive_hmac_key(dek, NAME_INDEX_INFO, name_index)?;
        derive_hmac_key(dek, DIGEST_INFO, digest)?;
        Ok(Self {
            ns,
            keys,
            random: OsRandom::new(),
        })
    }
}

/// Writes HKDF-SHA256(ikm = `dek`, empty salt, `info`) into `out`.
///
/// # Errors
/// [`CryptoError::Internal`] if HKDF refuses, which it does only for outputs over 255 hash
/// lengths: never for a 32-byte key, but a zeroed key must not be used if it ever did.
fn derive_hmac_key(
    dek: &[u8; KEY_LEN],
    info: &[u8],
    out: &mut [u8; KEY_LEN],
) -> Result<(), CryptoError> {
    // An empty salt is HKDF's default (RFC 5869: HashLen zero bytes, which HMAC treats the
    // same). The salt's job is extraction from weak input; the DEK is already uniform.
    hkdf::Salt::new(HKDF_SHA256, &[])
        .extract(dek)
        .expand(&[info], hmac::HMAC_SHA256)
        .and_then(|okm| okm.fill(out))
        .map_err(|_| CryptoError::Internal(Box::new(DerivationFailed)))
}

/// HKDF refused to derive a key.
#[derive(Debug, thiserror::Error)]
#[error("HKDF key derivation failed")]
struct DerivationFailed;

/// HMAC-SHA256 of `message` under `key`.
fn hmac_sha256(key: &[u8; KEY_LEN], message: &[u8]) -> [u8; 32] {
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), message);
    let mut out = [0u8; 32];
    // SHA-256 tags are 32 bytes; `zip` copies without a length assertion.
    for (o, t) in out.iter_mut().zip(tag.as_ref()) {
        *o = *t;
    }
    out
}

/// Moves a decrypted plaintext into a string, wiping it if it is not UTF-8.
fn into_utf8(mut plaintext: Zeroizing<Vec<u8>>) -> Result<String, CryptoError> {
    match String::from_utf8(mem::take(&mut *plaintext)) {
        Ok(text) => Ok(text),
        Err(error) => {
            error.into_bytes().zeroize();
            Err(CryptoError::Integrity)
        }
    }
}

impl fmt::Debug for RingKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RingKeys")
            .field("namespace", &self.ns)
            .field("keys", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl NamespaceKeys for RingKeys {
    fn name_index(&self, name: &SecretName) -> NameIndex {
        NameIndex(hmac_sha256(&self.keys.name_index, name.as_str().as_bytes()))
    }

    fn seal_name(&self, index: &NameIndex, name: &SecretName) -> Result<Vec<u8>, CryptoError> {
        seal(
            &self.random,
            &self.keys.dek,
            Purpose::Name,
            &name_aad(self.ns, index),
            name.as_str().as_bytes(),
        )
    }

    fn open_name(&self, index: &NameIndex, ciphertext: &[u8]) -> Result<SecretName, CryptoError> {
        let plaintext = open(
            &self.keys.dek,
            Purpose::Name,
            &name_aad(self.ns, index),
            ciphertext,
        )?;
        // `parse` wipes the string it is given, valid or not.
        SecretName::parse(into_utf8(plaintext)?).map_err(|_| CryptoError::Integrity)
    }

    fn seal_value(&self, index: &NameIndex, value: &SecretValue) -> Result<Vec<u8>, CryptoError> {
        seal(
            &self.random,
            &self.keys.dek,
            Purpose::Value,
            &value_aad(self.ns, index),
            value.expose().as_bytes(),
        )
    }

    fn open_value(&self, index: &NameIndex, ciphertext: &[u8]) -> Result<SecretValue, CryptoError> {
        let plaintext = open(
            &self.keys.dek,
            Purpose::Value,
            &value_aad(self.ns, index),
            ciphertext,
        )?;
        Ok(SecretValue::new(into_utf8(plaintext)?))
    }

    fn digest(&self, value: &SecretValue) -> [u8; 32] {
        hmac_sha256(&self.keys.digest, value.expose().as_bytes())
    }
}
