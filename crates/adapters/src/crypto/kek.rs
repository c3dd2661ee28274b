//! Key-encryption keys: parsing from configuration, and their public key ids.

use std::fmt;

use base64::DecodeSliceError;
use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use ring::hmac;
use secrets_domain::model::KeyId;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::KEY_LEN;

/// Decoding accepts both padded and unpadded text: operators paste keys from many tools.
const ANY_PADDING: GeneralPurposeConfig =
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
const STANDARD_ANY_PADDING: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, ANY_PADDING);
const URL_SAFE_ANY_PADDING: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, ANY_PADDING);

/// The message the key id is the HMAC of.
const KEY_ID_MESSAGE: &[u8] = b"kek-id";
/// How many bytes of that HMAC the key id keeps (shown as twice as many hex digits).
const KEY_ID_BYTES: usize = 8;

/// A 32-byte key-encryption key (KEK): it wraps the namespaces' data keys and seals key checks.
///
/// The bytes live in one heap allocation for the key's whole life, so moving a `Kek` around
/// copies a pointer, not the key, and dropping it wipes the only copy. There is no `Clone`,
/// and `Debug` prints `<redacted>`.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct Kek(Box<[u8; KEY_LEN]>);

impl Kek {
    /// Parses a KEK from configuration text: standard base64 or base64url, padded or not, with
    /// surrounding whitespace ignored (a key read from a file usually ends with a newline). It
    /// must decode to exactly 32 bytes.
    ///
    /// # Errors
    /// [`InvalidKek`] says what is wrong with the text, and never repeats it.
    pub fn from_base64(text: &str) -> Result<Self, InvalidKek> {
        let text = text.trim();
        if text.is_empty() {
            return Err(InvalidKek::Empty);
        }
        // One byte of room past 32, so that a longer key is reported as the wrong length
        // rather than as a buffer that is too small. The buffer is wiped when dropped, on every
        // path, including a failed first attempt that wrote part of the key.
        let mut buf = Zeroizing::new([0u8; KEY_LEN + 1]);
        let decoded = match STANDARD_ANY_PADDING.decode_slice(text, buf.as_mut()) {
            Err(DecodeSliceError::DecodeError(_)) => {
                URL_SAFE_ANY_PADDING.decode_slice(text, buf.as_mut())
            }
            other => other,
        };
        match decoded {
            Ok(KEY_LEN) => {
                let mut key = Box::new([0u8; KEY_LEN]);
                key.copy_from_slice(&buf[..KEY_LEN]);
                Ok(Self(key))
            }
            Ok(_) | Err(DecodeSliceError::OutputSliceTooSmall) => Err(InvalidKek::WrongLength),
            Err(DecodeSliceError::DecodeError(_)) => Err(InvalidKek::NotBase64),
        }
    }

    /// The key's public fingerprint: lowercase hex of the first 8 bytes of
    /// HMAC-SHA256(KEK, `"kek-id"`), 16 characters.
    ///
    /// It names the KEK beside everything sealed under it without revealing anything about the
    /// key: the HMAC is a pseudorandom function of the key, and 64 bits of it make an accidental
    /// collision between two configured keys negligible.
    #[must_use]
    pub fn key_id(&self) -> KeyId {
        let tag = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, self.bytes()),
            KEY_ID_MESSAGE,
        );
        let mut id = String::with_capacity(2 * KEY_ID_BYTES);
        for byte in tag.as_ref().iter().take(KEY_ID_BYTES) {
            id.push(char::from(HEX_DIGITS[usize::from(byte >> 4)]));
            id.push(char::from(HEX_DIGITS[usize::from(byte & 0x0f)]));
        }
        KeyId::new(id)
    }

    /// The audit key this KEK derives, for a service with no `AUDIT_KEY` of its own (see
    /// [`crate::audit::key`]).
    #[must_use]
    pub fn audit_key(&self) -> crate::audit::AuditKey {
        crate::audit::AuditKey::derive(self.bytes())
    }

    /// These 32 bytes used as an audit key of their own (`AUDIT_KEY`, parsed as a KEK is).
    #[must_use]
    pub fn as_audit_key(&self) -> crate::audit::AuditKey {
        crate::audit::AuditKey::from_bytes(self.bytes())
    }

    pub(super) fn bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    #[cfg(test)]
    pub(super) fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(Box::new(bytes))
    }
}

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

impl fmt::Debug for Kek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Kek(<redacted>)")
    }
}

/// Why a configured KEK was refused. The message never contains the configured text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InvalidKek {
    /// The text is empty or only whitespace.
    #[error("the key is empty")]
    Empty,
    /// The text is not base64 in either the standard or the URL-safe alphabet.
    #[error("the key is not valid base64 (standard or URL-safe alphabet)")]
    NotBase64,
    /// The text is base64, but not of 32 bytes.
    #[error("the key must decode to exactly 32 bytes (`secrets-service gen-key` prints one)")]
    WrongLength,
}
