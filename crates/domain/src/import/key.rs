//! The original service's access keys: their one recognised form.
//!
//! The service this one replaces made its access keys (and its namespaces' own keys) with
//! `nanoid`: 21 characters of the URL-safe alphabet `A-Z a-z 0-9 _ -`, about 126 bits of
//! entropy. It stored the lowercase hex SHA-256 of the key's characters. An imported namespace
//! keeps that hash, so the keys the platform holds keep working; this module says exactly which
//! texts are such keys. Nothing looser is accepted: a key one character short or long, or with
//! one character outside the alphabet, is not an original key (and not a native one either).

/// The length of an original key: `nanoid`'s default size.
pub const ORIGINAL_KEY_CHARS: usize = 21;

/// Whether `bytes` have the original keys' shape: exactly 21 characters of `A-Z a-z 0-9 _ -`.
/// (The import also checks each decrypted namespace key against it: a wrong
/// `ENCRYPTION_SECRET` yields bytes of no such shape.)
#[must_use]
pub fn has_original_form(bytes: &[u8]) -> bool {
    bytes.len() == ORIGINAL_KEY_CHARS
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
}

/// The key's characters, when `text` is an original key.
pub(crate) fn parse(text: &str) -> Option<[u8; ORIGINAL_KEY_CHARS]> {
    if !has_original_form(text.as_bytes()) {
        return None;
    }
    text.as_bytes().try_into().ok()
}

#[cfg(test)]
mod tests {
    use sha2::{Digest as _, Sha256};

    use super::*;
    use crate::model::{AccessKey, AccessKind};

    const KEY: &str = "V1StGXR8_Z5jdHi6B-myT";

    #[test]
    fn an_original_key_is_recognised_only_in_its_exact_form() {
        assert!(has_original_form(KEY.as_bytes()));
        let cases = [
            ("one short", KEY[..20].to_owned()),
            ("one long", format!("{KEY}a")),
            ("a dot", KEY.replace('_', ".")),
            ("a plus", KEY.replace('-', "+")),
            ("a space", KEY.replace('V', " ")),
            ("non-ascii", format!("{}é", &KEY[..19])),
            ("empty", String::new()),
        ];
        for (why, text) in cases {
            assert!(AccessKey::parse(&text).is_err(), "{why}");
        }
    }

    #[test]
    fn an_original_key_hashes_as_the_original_stored_it_and_is_told_apart() {
        let key = AccessKey::parse(KEY).expect("an original key");
        assert_eq!(key.kind(), AccessKind::Original);
        assert_eq!(key.expose().as_str(), KEY);
        let hash = key.hash();
        assert_eq!(hash.kind(), AccessKind::Original);
        let expected: [u8; 32] = Sha256::digest(KEY.as_bytes()).into();
        assert_eq!(hash.as_bytes(), &expected);
        // The same digest under the other kind is another hash: what stores match on.
        assert_ne!(hash, crate::model::AccessKeyHash::from_bytes(expected));
    }

    #[test]
    fn a_native_key_never_equals_an_original_one() {
        let native = AccessKey::parse(&"A".repeat(43)).expect("native");
        let original = AccessKey::parse(KEY).expect("original");
        assert_eq!(native.kind(), AccessKind::Native);
        assert_ne!(native, original);
        assert_eq!(original, AccessKey::parse(KEY).expect("original"));
    }
}
