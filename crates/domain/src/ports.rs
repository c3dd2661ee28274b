//! The ports: what the use cases need from the outside world, as documented contracts.
//!
//! Adapters implement these traits; the use cases are generic over them, so the composition
//! root picks a backend once and everything is statically dispatched. Every method documents
//! the errors an adapter MUST return for each situation: the shared conformance suite checks
//! exactly these sentences.
//!
//! No driver type crosses a port. An adapter translates its driver's errors into
//! [`StoreError`] or [`CryptoError`], keeping the original as the `source()` for logs.

use std::error::Error as StdError;

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::etag::{Condition, Revision};
use crate::model::{AccessKeyHash, KeyId, NamespaceId, SecretName, SecretValue};

/// A boxed error kept for logs: the full chain is logged once, never shown to callers.
pub type Source = Box<dyn StdError + Send + Sync + 'static>;

// ---------------------------------------------------------------------------------------------
// Randomness
// ---------------------------------------------------------------------------------------------

/// A cryptographically secure source of random bytes (the OS CSPRNG in production).
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait Random: Send + Sync + 'static {
    /// Fills `dest` with random bytes.
    ///
    /// # Errors
    /// MUST return [`RandomError`] when the source fails; it MUST NOT fall back to anything weaker.
    fn fill(&self, dest: &mut [u8]) -> Result<(), RandomError>;
}

/// The randomness source failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the system's random number generator failed")]
pub struct RandomError;

// ---------------------------------------------------------------------------------------------
// Envelope cryptography
// ---------------------------------------------------------------------------------------------

/// A data key wrapped (encrypted) under a key-encryption key, as it is stored.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct WrappedKey {
    /// The id of the KEK this data key is wrapped under.
    pub key_id: KeyId,
    /// The wrapped key's bytes, in the crypto adapter's versioned wire format.
    pub ciphertext: Vec<u8>,
}

/// A value encrypted under a KEK at start-up, proving later that the configured KEK with
/// that id is the one that wrote the store's data.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct KeyCheck {
    /// The id of the KEK the check is sealed under.
    pub key_id: KeyId,
    /// The sealed check value.
    pub ciphertext: Vec<u8>,
}

/// The blind index of a secret name: HMAC of the name under a key derived from the namespace's
/// data key. The store finds and deduplicates names by it without ever seeing a name.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct NameIndex(pub [u8; 32]);

/// Envelope encryption: key-encryption keys (KEKs) that wrap per-namespace data keys (DEKs).
///
/// # Invariants an adapter MUST keep
/// - A wrapped data key is bound to its namespace id and key id: unwrapping it for another
///   namespace, or relabelled with another key id, fails with [`CryptoError::Integrity`].
/// - Nothing here returns or logs key material; `Debug` of an implementation is redacted.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock(type Keys = MockNamespaceKeys;))]
pub trait Envelope: Send + Sync + 'static {
    /// The unwrapped keys of one namespace.
    type Keys: NamespaceKeys;

    /// The id of the active KEK: the one new data keys are wrapped under.
    fn active_key_id(&self) -> KeyId;

    /// The ids of every configured KEK: the active one first, then the retired ones.
    fn key_ids(&self) -> Vec<KeyId>;

    /// Generates a fresh random data key for namespace `ns` and wraps it under the active KEK.
    ///
    /// # Errors
    /// MUST return [`CryptoError::Internal`] when randomness or sealing fails.
    fn new_data_key(&self, ns: NamespaceId) -> Result<(Self::Keys, WrappedKey), CryptoError>;

    /// Unwraps the data key of namespace `ns`, under whichever configured KEK `wrapped.key_id`
    /// names.
    ///
    /// # Errors
    /// - MUST return [`CryptoError::UnknownKey`] when no configured KEK has that id.
    /// - MUST return [`CryptoError::Integrity`] when the ciphertext fails authentication,
    ///   including when it belongs to another namespace or was relabelled.
    fn open_data_key(
        &self,
        ns: NamespaceId,
        wrapped: &WrappedKey,
    ) -> Result<Self::Keys, CryptoError>;

    /// Re-wraps namespace `ns`'s data key under the active KEK. The data key itself does not
    /// change, so the namespace's secrets need no re-encryption.
    ///
    /// # Errors
    /// As [`Envelope::open_data_key`], and [`CryptoError::Internal`] when sealing fails.
    fn rewrap(&self, ns: NamespaceId, wrapped: &WrappedKey) -> Result<WrappedKey, CryptoError>;

    /// Seals a fresh key check under the active KEK.
    ///
    /// # Errors
    /// MUST return [`CryptoError::Internal`] when randomness or sealing fails.
    fn seal_key_check(&self) -> Result<KeyCheck, CryptoError>;

    /// Verifies a key check sealed under the configured KEK of the same id.
    ///
    /// # Errors
    /// - MUST return [`CryptoError::UnknownKey`] when no configured KEK has that id.
    /// - MUST return [`CryptoError::Integrity`] when the configured KEK did not seal it.
    fn verify_key_check(&self, check: &KeyCheck) -> Result<(), CryptoError>;
}

/// The unwrapped keys of one namespace, bound to its id. Dropping them wipes them.
///
/// # Invariants an adapter MUST keep
/// - Every ciphertext is bound (as associated data) to the namespace and to the name's blind
///   index, and name and value ciphertexts to their role: a ciphertext moved to another row,
///   another namespace or the other column fails with [`CryptoError::Integrity`]; it never
///   opens as another secret's plaintext.
/// - Every seal uses fresh randomness, so sealing the same plaintext twice gives different
///   ciphertexts, and no key performs anywhere near 2^32 random-nonce encryptions.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait NamespaceKeys: Send + Sync {
    /// The name's blind index. Deterministic for one namespace; unlinkable across namespaces.
    fn name_index(&self, name: &SecretName) -> NameIndex;

    /// Encrypts a name.
    ///
    /// # Errors
    /// MUST return [`CryptoError::Internal`] when randomness or sealing fails.
    fn seal_name(&self, index: &NameIndex, name: &SecretName) -> Result<Vec<u8>, CryptoError>;

    /// Decrypts a name.
    ///
    /// # Errors
    /// MUST return [`CryptoError::Integrity`] when the ciphertext fails authentication or does
    /// not hold a valid name.
    fn open_name(&self, index: &NameIndex, ciphertext: &[u8]) -> Result<SecretName, CryptoError>;

    /// Encrypts a value.
    ///
    /// # Errors
    /// MUST return [`CryptoError::Internal`] when randomness or sealing fails.
    fn seal_value(&self, index: &NameIndex, value: &SecretValue) -> Result<Vec<u8>, CryptoError>;

    /// Decrypts a value.
    ///
    /// # Errors
    /// MUST return [`CryptoError::Integrity`] when the ciphertext fails authentication or is
    /// not UTF-8.
    fn open_value(&self, index: &NameIndex, ciphertext: &[u8]) -> Result<SecretValue, CryptoError>;

    /// The value's digest for key listings: HMAC-SHA256 under a key derived from the data key.
    fn digest(&self, value: &SecretValue) -> [u8; 32];
}

/// What can go wrong in envelope cryptography.
///
/// A failed authentication is one detail-free variant on purpose: a bad tag, a wrong key and
/// wrong associated data must look the same from outside.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// A ciphertext failed authentication.
    #[error("a ciphertext failed authentication")]
    Integrity,
    /// Data is wrapped under a KEK that is not configured.
    #[error("no key-encryption key with id {0} is configured")]
    UnknownKey(KeyId),
    /// Randomness or sealing failed.
    #[error("a cryptographic operation failed")]
    Internal(#[source] Source),
}

// ---------------------------------------------------------------------------------------------
// Storage
// ---------------------------------------------------------------------------------------------

/// A namespace to create: everything the store keeps about it, all of it opaque. It starts at
/// [`Revision::INITIAL`], however it is created: a store's default for a new namespace is a valid
/// revision, so nothing that creates namespaces (an import included) has to choose one.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct NewNamespace {
    /// The namespace's internal id.
    pub id: NamespaceId,
    /// SHA-256 of its access key.
    pub access_hash: AccessKeyHash,
    /// Its data key, wrapped.
    pub data_key: WrappedKey,
}

/// A stored namespace as the use cases need it: to reach its secrets, to tag it, and for
/// `rotate-kek` to re-wrap its data key.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct NamespaceRecord {
    /// The namespace's internal id.
    pub id: NamespaceId,
    /// Its data key, wrapped.
    pub data_key: WrappedKey,
    /// Its revision (see [`crate::etag`]).
    pub revision: Revision,
}

/// A secret as written to a store: only the blind index is not encrypted.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct SealedSecret {
    /// The name's blind index: the secret's identity within its namespace.
    pub index: NameIndex,
    /// The encrypted name.
    pub name: Vec<u8>,
    /// The encrypted value.
    pub value: Vec<u8>,
}

/// A secret as read back from a store.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct StoredSecret {
    /// The sealed name and value.
    pub sealed: SealedSecret,
    /// When the name was first written, as the store's clock saw it.
    pub created_at: OffsetDateTime,
    /// When the value last changed, as the store's clock saw it.
    pub updated_at: OffsetDateTime,
    /// Its version: the revision of its namespace that last wrote it.
    pub version: Revision,
}

/// Whether an upsert added a name or replaced the value of an existing one.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Upserted {
    /// The name is new in the namespace.
    Created,
    /// The name existed; its value (and `updated_at`) changed.
    Updated,
}

impl Upserted {
    /// `Created` when the write inserted the name, `Updated` when it replaced a value: what a
    /// store's upsert statement tells.
    #[must_use]
    pub fn new(created: bool) -> Self {
        if created {
            Self::Created
        } else {
            Self::Updated
        }
    }
}

/// The secret limit as it applies to a merge patch: a patch that leaves `after` secrets where
/// there were `before` fits when it stays within `max_secrets`, or does not grow the namespace
/// (one already over a limit that was lowered may still be patched, as long as it does not grow).
/// Every store applies this one rule.
#[must_use]
pub fn patch_fits(before: u64, after: u64, max_secrets: u32) -> bool {
    after <= u64::from(max_secrets) || after <= before
}

/// What a secret's write requires, checked by the store inside the write's transaction, before
/// anything else it checks: a condition on the namespace's revision, and one on the secret's
/// version (which sees a secret that does not exist as absent). The default requires nothing.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Guard {
    /// On the namespace's revision.
    pub namespace: Condition<Revision>,
    /// On the secret's version.
    pub secret: Condition<Revision>,
}

impl Guard {
    /// Whether it requires nothing, so the store may write without reading first.
    #[must_use]
    pub fn is_none(&self) -> bool {
        self.namespace.is_none() && self.secret.is_none()
    }

    /// Whether it holds for a namespace at `revision` whose secret is at `version` (`None`:
    /// absent).
    #[must_use]
    pub fn holds(&self, revision: Revision, version: Option<Revision>) -> bool {
        self.namespace.holds(Some(&revision)) && self.secret.holds(version.as_ref())
    }
}

/// What a secret's upsert did: created or updated it, and the namespace's revision after it,
/// which is the secret's version now.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Written {
    /// Whether the name was new.
    pub upserted: Upserted,
    /// The namespace's revision after the write, and the secret's version.
    pub revision: Revision,
}

/// What a merge patch left: the namespace's revision, and all its secrets.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Patched {
    /// The namespace's revision after the patch (unchanged when it changed nothing).
    pub revision: Revision,
    /// Every secret of the namespace after the patch.
    pub secrets: Vec<StoredSecret>,
}

/// Durable storage of namespaces and their sealed secrets.
///
/// The store never sees a plaintext: names, values and data keys arrive encrypted, access keys
/// as hashes. It owns atomicity: every method is one statement or one transaction, and a
/// method that returns an error has changed nothing.
///
/// # Revisions
/// The store keeps every namespace's [`Revision`] and every secret's version (see
/// [`crate::etag`]). A namespace starts at [`Revision::INITIAL`]; every method that changes
/// something inside it (`upsert_secret`, `apply_patch` when it writes or deletes anything,
/// `delete_secret` when it deletes, `replace_access_hash`) moves its revision to the next one, in
/// the same transaction, and gives every secret it writes that new revision as its version.
/// Nothing else changes a revision: a refused write does not, and neither does
/// `replace_wrapped_keys` (a KEK rotation changes no data).
///
/// # Preconditions
/// The conditional writes (a [`Guard`] or a [`Condition`]) compare inside the write's
/// transaction, under whatever serialises the namespace's writers, never before it: among
/// concurrent writers holding the same revision exactly one succeeds. A precondition that
/// fails is [`StoreError::PreconditionFailed`], and nothing is written.
///
/// Every method MUST return [`StoreError::Unavailable`] when the database cannot be reached
/// (refused, timed out, pool exhausted past its wait), and [`StoreError::Internal`] for anything
/// else unexpected; the errors listed per method are the expected outcomes.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait SecretStore: Send + Sync + 'static {
    /// Creates all `namespaces` in one transaction: all or none, each at
    /// [`Revision::INITIAL`].
    ///
    /// # Errors
    /// MUST return [`StoreError::Conflict`] when an id or access hash is already taken
    /// (nothing is created).
    async fn create_namespaces(&self, namespaces: &[NewNamespace]) -> Result<(), StoreError>;

    /// Finds the namespace whose access key hashes to `access`.
    async fn find_namespace(
        &self,
        access: &AccessKeyHash,
    ) -> Result<Option<NamespaceRecord>, StoreError>;

    /// The id and revision of the namespace whose access key hashes to `access`, and nothing
    /// else: all a conditional read needs to answer that nothing changed. One lookup of the
    /// namespace's row; no secret is read.
    async fn find_revision(
        &self,
        access: &AccessKeyHash,
    ) -> Result<Option<(NamespaceId, Revision)>, StoreError>;

    /// Reads the namespace whose access key hashes to `access` together with all its secrets,
    /// in one consistent snapshot (one round trip where the database allows): its revision is
    /// the one those secrets are at. `None` when no namespace has that key.
    async fn read_namespace(
        &self,
        access: &AccessKeyHash,
    ) -> Result<Option<(NamespaceRecord, Vec<StoredSecret>)>, StoreError>;

    /// Reads one secret of namespace `ns`. `None` when the namespace has no such name (or no
    /// longer exists).
    async fn get_secret(
        &self,
        ns: NamespaceId,
        index: &NameIndex,
    ) -> Result<Option<StoredSecret>, StoreError>;

    /// Writes one secret of namespace `ns` atomically: inserts it, or replaces the value of
    /// the secret with the same index (`created_at` is kept, `updated_at` moves), and moves the
    /// namespace to its next revision, which becomes the secret's version. Concurrent upserts
    /// of one name leave exactly one row, holding one of the written values.
    ///
    /// # Errors
    /// - MUST return [`StoreError::NamespaceNotFound`] when `ns` does not exist (for example,
    ///   it was deleted concurrently).
    /// - MUST return [`StoreError::PreconditionFailed`] when `guard` does not hold for the
    ///   namespace's revision and the secret's version (absent when the name is new), as they
    ///   are when the write would happen; nothing is written.
    /// - MUST return [`StoreError::NamespaceFull`] when the name is new and the namespace
    ///   already holds `max_secrets` secrets, even under concurrent inserts; nothing is written.
    async fn upsert_secret(
        &self,
        ns: NamespaceId,
        secret: &SealedSecret,
        max_secrets: u32,
        guard: &Guard,
    ) -> Result<Written, StoreError>;

    /// Applies a merge patch to namespace `ns` in one transaction: upserts every secret in
    /// `upserts`, deletes every index in `deletes` (absent ones are ignored), and returns the
    /// namespace's secrets after the change, read inside the same transaction. A patch that
    /// writes or deletes anything moves the namespace to its next revision (the version of
    /// every secret it writes); one that changes nothing leaves the revision as it was.
    ///
    /// # Errors
    /// - MUST return [`StoreError::NamespaceNotFound`] when `ns` does not exist.
    /// - MUST return [`StoreError::PreconditionFailed`] when `namespace` does not hold for the
    ///   namespace's revision before the patch; nothing is written.
    /// - MUST return [`StoreError::NamespaceFull`] when the result would not fit the secret
    ///   limit ([`patch_fits`]); nothing is written.
    async fn apply_patch(
        &self,
        ns: NamespaceId,
        upserts: &[SealedSecret],
        deletes: &[NameIndex],
        max_secrets: u32,
        namespace: &Condition<Revision>,
    ) -> Result<Patched, StoreError>;

    /// Deletes one secret of namespace `ns` and moves the namespace to its next revision, which
    /// it returns; `None` when there was no such secret (whatever `guard` says: an absent
    /// secret is answered as absent, and nothing changes).
    ///
    /// # Errors
    /// MUST return [`StoreError::PreconditionFailed`] when the secret exists and `guard` does
    /// not hold for the namespace's revision and the secret's version; nothing is deleted.
    async fn delete_secret(
        &self,
        ns: NamespaceId,
        index: &NameIndex,
        guard: &Guard,
    ) -> Result<Option<Revision>, StoreError>;

    /// Deletes the namespace whose access key hashes to `access`, with its wrapped data key
    /// and all its secrets, and returns its id; `None` when there was no such namespace.
    ///
    /// # Errors
    /// MUST return [`StoreError::PreconditionFailed`] when the namespace exists and
    /// `namespace` does not hold for its revision; nothing is deleted.
    async fn delete_namespace(
        &self,
        access: &AccessKeyHash,
        namespace: &Condition<Revision>,
    ) -> Result<Option<NamespaceId>, StoreError>;

    /// Replaces a namespace's access hash `old` by `new`, atomically, and moves it to its next
    /// revision: from the moment this returns, `old` finds nothing. Returns the namespace's id;
    /// `None` when no namespace has `old`.
    ///
    /// # Errors
    /// MUST return [`StoreError::Conflict`] when `new` is already taken.
    async fn replace_access_hash(
        &self,
        old: &AccessKeyHash,
        new: &AccessKeyHash,
    ) -> Result<Option<NamespaceId>, StoreError>;

    /// Answers whether the database is reachable, for readiness.
    async fn ping(&self) -> Result<(), StoreError>;

    /// The key checks stored, one per KEK id that ever sealed one.
    async fn key_checks(&self) -> Result<Vec<KeyCheck>, StoreError>;

    /// Stores `check` unless a check for its key id exists already (then it changes nothing:
    /// the first check written for a key id stays, so replicas starting at once agree).
    async fn add_key_check(&self, check: &KeyCheck) -> Result<(), StoreError>;

    /// The distinct KEK ids that wrap at least one stored data key.
    async fn key_ids_in_use(&self) -> Result<Vec<KeyId>, StoreError>;

    /// How many namespaces' data keys each KEK id wraps, for `rotate-kek`'s progress and report.
    async fn count_by_key_id(&self) -> Result<Vec<(KeyId, u64)>, StoreError>;

    /// Up to `limit` namespaces whose data key is wrapped under a KEK other than `active`,
    /// in id order, starting after `after`.
    async fn wrapped_not_under(
        &self,
        active: &KeyId,
        after: Option<NamespaceId>,
        limit: u32,
    ) -> Result<Vec<NamespaceRecord>, StoreError>;

    /// Replaces wrapped data keys in one transaction, each only where the stored key still
    /// equals the one it was re-wrapped from (a compare-and-swap, so a namespace deleted or
    /// re-wrapped meanwhile is left alone). Returns the namespaces whose key was replaced, in
    /// any order. It changes no revision: the namespaces' data did not change (the revision in
    /// each record is ignored).
    async fn replace_wrapped_keys(
        &self,
        updates: &[(NamespaceRecord, WrappedKey)],
    ) -> Result<Vec<NamespaceId>, StoreError>;
}

/// What a store can answer besides success.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The namespace does not exist.
    #[error("namespace not found")]
    NamespaceNotFound,
    /// The namespace holds as many secrets as it may.
    #[error("namespace is full")]
    NamespaceFull,
    /// A conditional write's precondition did not hold.
    #[error("a precondition failed")]
    PreconditionFailed,
    /// A unique id or access hash is already taken.
    #[error("a unique key is already taken")]
    Conflict,
    /// The database cannot be reached.
    #[error("the store is unavailable")]
    Unavailable(#[source] Source),
    /// Anything else.
    #[error("the store failed")]
    Internal(#[source] Source),
}
