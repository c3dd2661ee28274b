//! The original service's encryption, for reading only.
//!
//! # Format
//! `encrypt(text, secret)` in the original is AES-256-CBC with PKCS#7 padding under
//! `key = SHA-256(UTF-8 bytes of secret)` and a random 16-byte IV, stored as lowercase hex of
//! `IV || ciphertext`: no MAC, no version. Its plaintext is the text as Latin-1 (Node's
//! `"binary"`): each UTF-16 code unit truncated to its low byte. So decrypted bytes are read
//! back as Latin-1 (ISO-8859-1: byte `b` is U+00bb), which gives exactly the string the original
//! itself returned, `€` already turned into `¬` when it was stored. (WHATWG's "latin1" label
//! means windows-1252, which maps 0x80–0x9F elsewhere; that is not what Node does.)
//!
//! Namespace keys are `encrypt(namespaceKey, ENCRYPTION_SECRET)` and a secret's name and value
//! are `encrypt(.., namespaceKey)`.
//!
//! # Judging a key without a MAC
//! CBC authenticates nothing: under a wrong key a ciphertext decrypts to noise, whose padding
//! is valid about once in 256. So a namespace key counts as decrypted only when its padding is
//! valid *and* the plaintext has a namespace key's shape, 21 characters of `nanoid`'s alphabet
//! (a chance below 2^-130 for noise). A wrong `ENCRYPTION_SECRET` fails that for every namespace.

use aes::Aes256;
use cbc::cipher::block_padding::Pkcs7;
use cbc::cipher::{BlockDecryptMut as _, KeyIvInit as _};
use secrets_domain::import::key::has_original_form;
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

/// The AES block size, and the IV's length.
const BLOCK: usize = 16;

/// A ciphertext of the original that does not decrypt: not hex, the wrong length, bad padding,
/// or (for a namespace key) not the shape of one. One variant: why does not matter, and it
/// never says more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a ciphertext of the original does not decrypt")]
pub struct Undecryptable;

/// An AES-256 key as the original derives it from a secret string. Wiped on drop.
pub struct OriginalKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for OriginalKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OriginalKey(<redacted>)")
    }
}

impl OriginalKey {
    /// The key of `secret` (the bytes of `ENCRYPTION_SECRET`, or of a namespace key).
    #[must_use]
    pub fn derive(secret: &[u8]) -> Self {
        Self(Zeroizing::new(Sha256::digest(secret).into()))
    }

    /// Decrypts one stored ciphertext into its plaintext bytes.
    pub fn open(&self, stored: &str) -> Result<Zeroizing<Vec<u8>>, Undecryptable> {
        let bytes = Zeroizing::new(hex::decode(stored).map_err(|_| Undecryptable)?);
        if bytes.len() < 2 * BLOCK || bytes.len() % BLOCK != 0 {
            return Err(Undecryptable);
        }
        let (iv, ciphertext) = bytes.split_at(BLOCK);
        let mut buffer = Zeroizing::new(ciphertext.to_vec());
        let decryptor = cbc::Decryptor::<Aes256>::new(self.0.as_ref().into(), iv.into());
        let plaintext = decryptor
            .decrypt_padded_mut::<Pkcs7>(&mut buffer)
            .map_err(|_| Undecryptable)?;
        Ok(Zeroizing::new(plaintext.to_vec()))
    }

    /// Decrypts a namespace's stored key and checks its shape (see the module doc): the key
    /// that opens that namespace's secrets.
    pub fn open_namespace_key(&self, stored: &str) -> Result<Self, Undecryptable> {
        let key = self.open(stored)?;
        if !has_original_form(&key) {
            return Err(Undecryptable);
        }
        Ok(Self::derive(&key))
    }
}

/// Bytes read as Latin-1 (ISO-8859-1), as the original returns its text.
#[must_use]
pub fn latin1(bytes: &[u8]) -> Zeroizing<String> {
    Zeroizing::new(bytes.iter().copied().map(char::from).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Made by the original's own `encrypt`, run in Node with fixed IVs: a namespace key under
    // the secret "correct horse", and "café €😀" under that namespace key.
    const NAMESPACE_KEY: &str = "000102030405060708090a0b0c0d0e0f\
        0979019de20851fcd654b8b10f44c12bc20269ad0bc80b0d9617ff669834807d";
    const VALUE: &str = "0f0e0d0c0b0a0908070605040302010010a98788cf2b879f9c479772f202175f";

    #[test]
    fn the_originals_ciphertexts_open_to_the_text_it_returned() {
        let secret = OriginalKey::derive(b"correct horse");
        assert_eq!(
            secret.open(NAMESPACE_KEY).expect("opens").as_slice(),
            b"V1StGXR8_Z5jdHi6B-myT"
        );
        let namespace = secret.open_namespace_key(NAMESPACE_KEY).expect("a key");
        let value = namespace.open(VALUE).expect("opens");
        // What Node answers for it: "€" truncated to 0xAC, "😀" to "=" and U+0000.
        assert_eq!(latin1(&value).as_str(), "caf\u{e9} \u{ac}=\u{0}");
    }

    #[test]
    fn a_wrong_secret_or_a_damaged_ciphertext_does_not_decrypt() {
        let wrong = OriginalKey::derive(b"correct horse battery");
        assert_eq!(
            wrong.open_namespace_key(NAMESPACE_KEY).map(drop),
            Err(Undecryptable)
        );
        let right = OriginalKey::derive(b"correct horse");
        let cases = [
            ("not hex", "zz".repeat(32)),
            ("odd length", format!("{NAMESPACE_KEY}0")),
            ("only an IV", NAMESPACE_KEY[..32].to_owned()),
            ("not whole blocks", NAMESPACE_KEY[..90].to_owned()),
            ("empty", String::new()),
        ];
        for (why, stored) in cases {
            assert_eq!(right.open(&stored).map(drop), Err(Undecryptable), "{why}");
        }
        // A flipped bit in the last block breaks the padding (or the shape).
        let mut flipped = NAMESPACE_KEY.to_owned();
        flipped.replace_range(94..96, "7c");
        assert_eq!(
            right.open_namespace_key(&flipped).map(drop),
            Err(Undecryptable)
        );
    }

    #[test]
    fn latin1_maps_every_byte_to_the_code_point_of_its_value() {
        let all: Vec<u8> = (0..=255).collect();
        let text = latin1(&all);
        assert!(text.chars().map(u32::from).eq(0..=255));
        assert_eq!(latin1(&[0x80, 0x9f]).as_str(), "\u{80}\u{9f}");
    }
}
