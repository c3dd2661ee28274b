//! What tells a change made here from the import's own writes.
//!
//! An imported namespace is also written by the platform once it has switched over, and a
//! re-run must not undo those writes. So each import records its [`ImportBase`]: for every name
//! it left in the namespace, a digest of the ciphertexts it wrote there. Ciphertexts are sealed
//! with fresh randomness, so any later write of that name here, even of the same value, changes
//! them. A name is *changed here* when its row no longer matches the base (rewritten or deleted)
//! or has no entry in it (created here). Only ciphertexts are hashed: nothing here reveals a
//! name or a value.
//!
//! [`state_digest`] is the whole namespace's state in one digest (its access hash and every
//! row), read with the rows a merge is computed from and checked again by the store, under the
//! namespace's lock, before the merge is written: a write that slipped in between makes the
//! store refuse, and the merge is computed again.

use std::collections::BTreeMap;

use sha2::{Digest as _, Sha256};

use super::Fingerprint;
use crate::model::AccessKeyHash;
use crate::ports::{NameIndex, SealedSecret, StoredSecret};

/// Bytes of one base entry: the name index, then the digest of the row's ciphertexts.
const ENTRY_BYTES: usize = 64;

/// What an import wrote into a namespace, name by name (see the module doc).
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct ImportBase(BTreeMap<NameIndex, [u8; 32]>);

impl ImportBase {
    /// Records that the import left `sealed` as its name's row.
    pub fn insert(&mut self, sealed: &SealedSecret) {
        self.0.insert(sealed.index, row_digest(sealed));
    }

    /// Carries over `other`'s entry for `index`, if it has one.
    pub(crate) fn keep_from(&mut self, other: &Self, index: &NameIndex) {
        if let Some(entry) = other.0.get(index) {
            self.0.insert(*index, *entry);
        }
    }

    /// The indexes it has an entry for.
    pub(crate) fn indexes(&self) -> impl Iterator<Item = &NameIndex> {
        self.0.keys()
    }

    /// Whether the name `index` was written here since the import: its row is not the one the
    /// import left (`local` is the row now, if any).
    #[must_use]
    pub fn changed_here(&self, index: &NameIndex, local: Option<&SealedSecret>) -> bool {
        match (self.0.get(index), local) {
            (Some(entry), Some(row)) => *entry != row_digest(row),
            (Some(_), None) | (None, Some(_)) => true,
            (None, None) => false,
        }
    }

    /// The stored form: 64 bytes per name, in index order.
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(self.0.len() * ENTRY_BYTES);
        for (index, digest) in &self.0 {
            bytes.extend_from_slice(&index.0);
            bytes.extend_from_slice(digest);
        }
        bytes
    }

    /// Reads the stored form back; `None` when it is not a whole number of entries.
    #[must_use]
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        if !bytes.len().is_multiple_of(ENTRY_BYTES) {
            return None;
        }
        let mut base = BTreeMap::new();
        for entry in bytes.chunks_exact(ENTRY_BYTES) {
            let (index, digest) = entry.split_at(32);
            base.insert(NameIndex(index.try_into().ok()?), digest.try_into().ok()?);
        }
        Some(Self(base))
    }
}

fn row_digest(sealed: &SealedSecret) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update(b"secrets-service/import/v1/row");
    hash.update((sealed.name.len() as u64).to_be_bytes());
    hash.update(&sealed.name);
    hash.update(&sealed.value);
    hash.finalize().into()
}

/// The whole state of a namespace here: its access key's kind and hash and every row's name
/// index and ciphertexts, in index order. Any write to it changes this digest.
#[must_use]
pub fn state_digest(access: &AccessKeyHash, secrets: &[StoredSecret]) -> Fingerprint {
    let mut rows: Vec<&SealedSecret> = secrets.iter().map(|s| &s.sealed).collect();
    rows.sort_by_key(|row| row.index);
    let mut hash = Sha256::new();
    hash.update(b"secrets-service/import/v1/state");
    hash.update(access.kind().code().to_be_bytes());
    hash.update(access.as_bytes());
    for row in rows {
        hash.update(row.index.0);
        hash.update(row_digest(row));
    }
    Fingerprint(hash.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::AccessKind;

    fn sealed(index: u8, name: &[u8], value: &[u8]) -> SealedSecret {
        SealedSecret {
            index: NameIndex([index; 32]),
            name: name.to_vec(),
            value: value.to_vec(),
        }
    }

    #[test]
    fn a_name_is_changed_here_when_its_row_is_not_the_one_the_import_left() {
        let mut base = ImportBase::default();
        let imported = sealed(1, b"n", b"v");
        base.insert(&imported);
        assert!(!base.changed_here(&imported.index, Some(&imported)));
        assert!(base.changed_here(&imported.index, Some(&sealed(1, b"n", b"w"))));
        assert!(base.changed_here(&imported.index, None), "deleted here");
        let created = sealed(2, b"m", b"v");
        assert!(
            base.changed_here(&created.index, Some(&created)),
            "created here"
        );
        assert!(!base.changed_here(&created.index, None));
    }

    #[test]
    fn a_base_round_trips_through_its_stored_form_and_refuses_a_torn_one() {
        let mut base = ImportBase::default();
        base.insert(&sealed(3, b"a", b"b"));
        base.insert(&sealed(1, b"c", b"d"));
        let bytes = base.to_bytes();
        assert_eq!(bytes.len(), 128);
        assert_eq!(ImportBase::from_bytes(&bytes), Some(base));
        assert_eq!(ImportBase::from_bytes(&bytes[..100]), None);
        assert_eq!(ImportBase::from_bytes(&[]), Some(ImportBase::default()));
    }

    #[test]
    fn the_state_digest_changes_with_any_row_or_the_access_hash() {
        let at = time::OffsetDateTime::UNIX_EPOCH;
        let stored = |s: SealedSecret| StoredSecret {
            sealed: s,
            created_at: at,
            updated_at: at,
            version: crate::etag::Revision::INITIAL,
        };
        let access = AccessKeyHash::new(AccessKind::Original, [7; 32]);
        let rows = vec![stored(sealed(1, b"a", b"b")), stored(sealed(2, b"c", b"d"))];
        let digest = state_digest(&access, &rows);
        let reversed: Vec<_> = rows.iter().rev().cloned().collect();
        assert_eq!(
            state_digest(&access, &reversed),
            digest,
            "order does not matter"
        );
        assert_ne!(state_digest(&access, &rows[..1]), digest);
        let rotated = AccessKeyHash::new(AccessKind::Native, [7; 32]);
        assert_ne!(state_digest(&rotated, &rows), digest);
        let rewritten = vec![rows[0].clone(), stored(sealed(2, b"c", b"e"))];
        assert_ne!(state_digest(&access, &rewritten), digest);
    }
}
