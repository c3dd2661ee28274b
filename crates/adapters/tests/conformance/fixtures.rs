//! Opaque stand-ins for what the domain hands a store: random ids and hashes, and byte strings
//! where ciphertexts would be.

use secrets_domain::model::{AccessKeyHash, KeyId, NamespaceId};
use secrets_domain::ports::{NameIndex, NewNamespace, SealedSecret, StoredSecret, WrappedKey};
use uuid::Uuid;

/// A fresh random access hash.
pub fn access_hash() -> AccessKeyHash {
    let mut bytes = [0u8; 32];
    bytes[..16].copy_from_slice(Uuid::new_v4().as_bytes());
    bytes[16..].copy_from_slice(Uuid::new_v4().as_bytes());
    AccessKeyHash::from_bytes(bytes)
}

/// A wrapped data key under `key_id`, its bytes unique to `tag`.
pub fn wrapped(key_id: &str, tag: &[u8]) -> WrappedKey {
    WrappedKey {
        key_id: KeyId::new(key_id),
        ciphertext: [b"\x01wrapped:".as_slice(), key_id.as_bytes(), b":", tag].concat(),
    }
}

/// A namespace with a fresh id and access hash, its data key wrapped under `key_id`.
pub fn namespace(key_id: &str) -> NewNamespace {
    let id = Uuid::new_v4();
    NewNamespace {
        id: NamespaceId::from_uuid(id),
        access_hash: access_hash(),
        data_key: wrapped(key_id, id.as_bytes()),
    }
}

/// The blind index of the `n`th name.
pub fn index(n: u8) -> NameIndex {
    let mut bytes = [n; 32];
    bytes[0] = 0xb1;
    NameIndex(bytes)
}

/// The `n`th secret, its "value ciphertext" the given bytes.
pub fn secret(n: u8, value: &[u8]) -> SealedSecret {
    SealedSecret {
        index: index(n),
        name: vec![0x01, b'n', n, 0x00, 0xff],
        value: value.to_vec(),
    }
}

/// `secrets` in index order, for comparing sets: the contract promises no order.
pub fn by_index(mut secrets: Vec<StoredSecret>) -> Vec<StoredSecret> {
    secrets.sort_by_key(|s| s.sealed.index);
    secrets
}

/// The sealed parts of `secrets` in index order, without the store's timestamps.
pub fn sealed(secrets: Vec<StoredSecret>) -> Vec<SealedSecret> {
    by_index(secrets).into_iter().map(|s| s.sealed).collect()
}
