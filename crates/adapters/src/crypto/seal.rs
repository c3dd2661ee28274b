//! The one seal primitive every ciphertext goes through, and the purposes it is used for.
//!
//! See the parent module's `# Wire format` and `# Invariants`: this file is their
//! implementation, and nothing else in the crate touches AES-GCM directly.

use std::mem;

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::hkdf::{self, HKDF_SHA256};
use secrets_domain::model::{KeyId, NamespaceId};
use secrets_domain::ports::{CryptoError, NameIndex, Random};
use zeroize::Zeroizing;

use super::KEY_LEN;

/// The format version, the first byte of every ciphertext.
pub(super) const VERSION: u8 = 0x01;
/// Length of the random HKDF salt that makes each seal's subkey fresh.
pub(super) const SALT_LEN: usize = 16;
/// Length of the AES-GCM authentication tag.
pub(super) const TAG_LEN: usize = 16;
/// Version, salt and nonce: everything before the AES-GCM ciphertext.
pub(super) const HEADER_LEN: usize = 1 + SALT_LEN + NONCE_LEN;
/// The shortest ciphertext: an empty plaintext.
pub(super) const MIN_SEALED_LEN: usize = HEADER_LEN + TAG_LEN;

/// What a seal is for. Each purpose has its own HKDF info label, so its subkeys are
/// independent of every other purpose's even under the same key, and its own associated data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Purpose {
    /// A data key wrapped under a KEK.
    DataKey,
    /// The key check sealed under a KEK.
    KeyCheck,
    /// A secret's name under its namespace's data key.
    Name,
    /// A secret's value under its namespace's data key.
    Value,
}

impl Purpose {
    /// The HKDF info label of this purpose's per-seal subkeys.
    fn info(self) -> &'static [u8] {
        match self {
            Self::DataKey => b"secrets-service/v1/data-key",
            Self::KeyCheck => b"secrets-service/v1/key-check",
            Self::Name => b"secrets-service/v1/name",
            Self::Value => b"secrets-service/v1/value",
        }
    }
}

/// Associated data of a wrapped data key: `"data-key" || namespace id (16) || key id (ASCII)`.
pub(super) fn data_key_aad(ns: NamespaceId, key_id: &KeyId) -> Vec<u8> {
    concat(&[b"data-key", ns.as_bytes(), key_id.as_str().as_bytes()])
}

/// Associated data of a key check: `"key-check" || key id (ASCII)`.
pub(super) fn key_check_aad(key_id: &KeyId) -> Vec<u8> {
    concat(&[b"key-check", key_id.as_str().as_bytes()])
}

/// Associated data of a secret's name: `"name" || namespace id (16) || name index (32)`.
pub(super) fn name_aad(ns: NamespaceId, index: &NameIndex) -> Vec<u8> {
    concat(&[b"name", ns.as_bytes(), &index.0])
}

/// Associated data of a secret's value: `"value" || namespace id (16) || name index (32)`.
pub(super) fn value_aad(ns: NamespaceId, index: &NameIndex) -> Vec<u8> {
    concat(&[b"value", ns.as_bytes(), &index.0])
}

fn concat(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(parts.iter().map(|p| p.len()).sum());
    for part in parts {
        out.extend_from_slice(part);
    }
    out
}

/// Derives the AES-256-GCM key of one seal: HKDF-SHA256 with the long-lived key as input
/// keying material, the seal's random salt as salt, and the purpose's label as info.
fn subkey(key: &[u8; KEY_LEN], salt: &[u8], purpose: Purpose) -> Option<LessSafeKey> {
    // `expand` only fails for outputs longer than 255 hash lengths; 32 bytes never is.
    // `LessSafeKey` leaves nonce management to the caller; here each subkey seals exactly one
    // message, under a random nonce, which is the simplest management there is.
    hkdf::Salt::new(HKDF_SHA256, salt)
        .extract(key)
        .expand(&[purpose.info()], &AES_256_GCM)
        .ok()
        .map(|okm| LessSafeKey::new(UnboundKey::from(okm)))
}

/// Seals `plaintext` under a fresh subkey of `key`, bound to `aad`.
///
/// The result is `version || salt || nonce || ciphertext || tag`.
///
/// # Errors
/// [`CryptoError::Internal`] when `random` fails or AES-GCM refuses (it only refuses inputs of
/// tens of gigabytes).
pub(super) fn seal(
    random: &impl Random,
    key: &[u8; KEY_LEN],
    purpose: Purpose,
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let mut salt = [0u8; SALT_LEN];
    let mut nonce = [0u8; NONCE_LEN];
    random.fill(&mut salt).map_err(internal)?;
    random.fill(&mut nonce).map_err(internal)?;
    let sealing_key = subkey(key, &salt, purpose).ok_or_else(|| internal(SealFailed))?;

    // The buffer holds the plaintext until it is encrypted in place: it is wiped if sealing
    // fails, and its capacity is exact, so it never reallocates and leaves a plaintext copy
    // behind in freed memory.
    let mut out = Zeroizing::new(Vec::with_capacity(MIN_SEALED_LEN + plaintext.len()));
    out.push(VERSION);
    out.extend_from_slice(&salt);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(plaintext);
    let tag = sealing_key
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut out[HEADER_LEN..],
        )
        .map_err(|_| internal(SealFailed))?;
    out.extend_from_slice(tag.as_ref());
    // Only ciphertext is left: hand the vector out instead of wiping it.
    Ok(mem::take(&mut *out))
}

/// Opens a ciphertext made by [`seal`] with the same key, purpose and associated data.
///
/// # Errors
/// [`CryptoError::Integrity`] for any failure at all: too short, unknown version, wrong key,
/// wrong purpose, wrong associated data, or any modified byte. The caller learns nothing more.
pub(super) fn open(
    key: &[u8; KEY_LEN],
    purpose: Purpose,
    aad: &[u8],
    sealed: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    if sealed.len() < MIN_SEALED_LEN {
        return Err(CryptoError::Integrity);
    }
    let (version, rest) = sealed.split_first().ok_or(CryptoError::Integrity)?;
    if *version != VERSION {
        return Err(CryptoError::Integrity);
    }
    let (salt, rest) = rest
        .split_first_chunk::<SALT_LEN>()
        .ok_or(CryptoError::Integrity)?;
    let (nonce, body) = rest
        .split_first_chunk::<NONCE_LEN>()
        .ok_or(CryptoError::Integrity)?;
    let opening_key = subkey(key, salt, purpose).ok_or(CryptoError::Integrity)?;

    let mut buf = Zeroizing::new(body.to_vec());
    let plaintext_len = opening_key
        .open_in_place(
            Nonce::assume_unique_for_key(*nonce),
            Aad::from(aad),
            &mut buf,
        )
        .map_err(|_| CryptoError::Integrity)?
        .len();
    // Drops the tag; truncating keeps the allocation, so nothing is freed unwiped.
    buf.truncate(plaintext_len);
    Ok(buf)
}

fn internal(error: impl std::error::Error + Send + Sync + 'static) -> CryptoError {
    CryptoError::Internal(Box::new(error))
}

/// AES-GCM or HKDF refused to seal.
#[derive(Debug, thiserror::Error)]
#[error("AES-256-GCM sealing failed")]
struct SealFailed;
