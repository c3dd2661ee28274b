//! [`ImportStore`]: what a store does for `import-original`, beside the [`SecretStore`] port.
//!
//! [`SecretStore`]: crate::ports::SecretStore

use async_trait::async_trait;

use super::{Fingerprint, ImportBase, OriginalId};
use crate::model::{AccessKeyHash, NamespaceId};
use crate::ports::{
    NameIndex, NamespaceRecord, NewNamespace, SealedSecret, StoreError, StoredSecret,
};

/// What a store remembers of one imported namespace. It outlives the namespace: when the
/// namespace is deleted here, `namespace` becomes `None` and the record stays, so that a later
/// run does not bring back what was deleted.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ImportRecord {
    /// The namespace's id in the original.
    pub original: OriginalId,
    /// The namespace here; `None` once it was deleted here.
    pub namespace: Option<NamespaceId>,
    /// The fingerprint of the original's rows when it was last imported.
    pub source: Fingerprint,
}

/// A namespace imported for the first time.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct NewImport {
    /// Its id in the original.
    pub original: OriginalId,
    /// The namespace: its id, its original access hash, its wrapped data key.
    pub namespace: NewNamespace,
    /// Its secrets, sealed under its data key.
    pub secrets: Vec<SealedSecret>,
    /// The fingerprint of the original's rows.
    pub source: Fingerprint,
    /// What the import wrote (see [`ImportBase`]).
    pub base: ImportBase,
}

/// An imported namespace as it is here, read in one snapshot, for a re-run to merge into.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ImportedState {
    /// The record.
    pub record: ImportRecord,
    /// The namespace, its access hash and its rows; `None` once it was deleted here.
    pub namespace: Option<(NamespaceRecord, AccessKeyHash, Vec<StoredSecret>)>,
    /// What the last import wrote.
    pub base: ImportBase,
}

/// A re-run's changes to one imported namespace.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ImportUpdate {
    /// Its id in the original.
    pub original: OriginalId,
    /// The namespace here.
    pub namespace: NamespaceId,
    /// [`super::state_digest`] of the state the changes were computed from.
    pub expected: Fingerprint,
    /// Secrets to write (insert, or replace the row of the same index).
    pub upserts: Vec<SealedSecret>,
    /// Secrets to delete.
    pub deletes: Vec<NameIndex>,
    /// A new access hash, when the original's changed.
    pub access: Option<AccessKeyHash>,
    /// The fingerprint of the original's rows now.
    pub source: Fingerprint,
    /// What the import has written, after these changes.
    pub base: ImportBase,
}

/// Whether a compare-and-swap write of an import took place.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Applied {
    /// It did.
    Applied,
    /// The namespace's state is no longer the expected one; nothing was written.
    Changed,
    /// The namespace is no longer here; nothing was written.
    Gone,
}

/// What a store does for the import. Every method is one transaction; as for
/// [`crate::ports::SecretStore`], every method MUST return [`StoreError::Unavailable`] when the
/// database cannot be reached and [`StoreError::Internal`] for anything unexpected.
#[async_trait]
pub trait ImportStore: Send + Sync + 'static {
    /// The records whose original id is greater than `after` (all, for `None`) and at most
    /// `until` (no bound, for `None`), in original-id order.
    async fn imports_between(
        &self,
        after: Option<OriginalId>,
        until: Option<OriginalId>,
    ) -> Result<Vec<ImportRecord>, StoreError>;

    /// Creates the namespace, its secrets and its record, all or nothing. The namespace's
    /// access hash keeps its kind. It starts at [`crate::etag::Revision::INITIAL`], its secrets
    /// at the same version, as a namespace created through `SecretStore` does.
    ///
    /// # Errors
    /// MUST return [`StoreError::Conflict`] when the original id already has a record, or the
    /// namespace id or access hash is taken (nothing is created).
    async fn create_imported(&self, import: &NewImport) -> Result<(), StoreError>;

    /// The record of `original` with its namespace's state, in one snapshot; `None` when
    /// `original` was never imported.
    async fn read_imported(
        &self,
        original: OriginalId,
    ) -> Result<Option<ImportedState>, StoreError>;

    /// Applies `update` in one transaction, with the namespace's row locked, only when the
    /// namespace's [`super::state_digest`] is still `update.expected`: [`Applied::Changed`]
    /// otherwise, and [`Applied::Gone`] when the namespace (or its record) is gone. The secret
    /// limit is not applied. An update that changes anything (a secret written or deleted, the
    /// access hash) moves the namespace to its next revision, which the secrets it writes take
    /// as their version, as every write through `SecretStore` does.
    async fn update_imported(&self, update: &ImportUpdate) -> Result<Applied, StoreError>;

    /// Deletes the imported namespace `namespace` (its secrets and wrapped data key with it)
    /// and keeps `original`'s record without it, in one transaction, only when the namespace's
    /// state digest is still `expected` (as [`ImportStore::update_imported`]).
    async fn remove_imported(
        &self,
        original: OriginalId,
        namespace: NamespaceId,
        expected: Fingerprint,
    ) -> Result<Applied, StoreError>;
}
