//! In-memory fakes of the ports, for unit tests here and the adapters' conformance suite.
//!
//! [`InMemoryStore`] is a real implementation of the storage contract (it passes the same
//! conformance suite as the database adapters); [`FakeEnvelope`] keeps the binding rules of
//! the crypto contract (namespace, name index, role) without any secrecy, so the use cases'
//! handling of integrity failures can be tested without a cipher.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::etag::{Condition, Revision};
use crate::import::{
    Applied, Fingerprint, ImportBase, ImportRecord, ImportStore, ImportUpdate, ImportedState,
    NewImport, OriginalId, state_digest,
};
use crate::model::{AccessKeyHash, KeyId, NamespaceId, SecretName, SecretValue};
use crate::ports::{
    CryptoError, Envelope, Guard, KeyCheck, NameIndex, NamespaceKeys, NamespaceRecord,
    NewNamespace, Patched, Random, RandomError, SealedSecret, SecretStore, StoreError,
    StoredSecret, Upserted, WrappedKey, Written, patch_fits,
};

/// Deterministic "randomness": a counter spread over the buffer. Distinct calls give
/// distinct bytes, which is all the use cases rely on.
#[derive(Debug, Default)]
pub struct CountingRandom(AtomicU64);

impl Random for CountingRandom {
    fn fill(&self, dest: &mut [u8]) -> Result<(), RandomError> {
        let n = self.0.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
        for (i, byte) in dest.iter_mut().enumerate() {
            *byte = n.to_le_bytes()[i % 8] ^ (i as u8).wrapping_mul(31);
        }
        Ok(())
    }
}

/// A transparent stand-in for envelope encryption that still enforces its bindings: every
/// "ciphertext" carries the namespace, the name index and the role it was sealed for, and
/// opening checks them.
#[derive(Debug)]
pub struct FakeEnvelope {
    active: KeyId,
    retired: Vec<KeyId>,
}

impl FakeEnvelope {
    /// An envelope whose active key is `active` and which can also unwrap under `retired`.
    #[must_use]
    pub fn new(active: &str, retired: &[&str]) -> Self {
        Self {
            active: KeyId::new(active),
            retired: retired.iter().map(|id| KeyId::new(*id)).collect(),
        }
    }

    fn knows(&self, id: &KeyId) -> bool {
        *id == self.active || self.retired.contains(id)
    }
}

impl Default for FakeEnvelope {
    fn default() -> Self {
        Self::new("fake-kek", &[])
    }
}

fn bound(ns: NamespaceId, label: &[u8], payload: &[u8]) -> Vec<u8> {
    [ns.as_bytes().as_slice(), label, payload].concat()
}

fn unbind(ns: NamespaceId, label: &[u8], ciphertext: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let prefix = [ns.as_bytes().as_slice(), label].concat();
    ciphertext
        .strip_prefix(prefix.as_slice())
        .map(<[u8]>::to_vec)
        .ok_or(CryptoError::Integrity)
}

impl Envelope for FakeEnvelope {
    type Keys = FakeKeys;

    fn active_key_id(&self) -> KeyId {
        self.active.clone()
    }

    fn key_ids(&self) -> Vec<KeyId> {
        std::iter::once(self.active.clone())
            .chain(self.retired.iter().cloned())
            .collect()
    }

    fn new_data_key(&self, ns: NamespaceId) -> Result<(FakeKeys, WrappedKey), CryptoError> {
        let wrapped = WrappedKey {
            key_id: self.active.clone(),
            ciphertext: bound(ns, self.active.as_str().as_bytes(), b"dek"),
        };
        Ok((FakeKeys { ns }, wrapped))
    }

    fn open_data_key(
        &self,
        ns: NamespaceId,
        wrapped: &WrappedKey,
    ) -> Result<FakeKeys, CryptoError> {
        if !self.knows(&wrapped.key_id) {
            return Err(CryptoError::UnknownKey(wrapped.key_id.clone()));
        }
        unbind(ns, wrapped.key_id.as_str().as_bytes(), &wrapped.ciphertext)?;
        Ok(FakeKeys { ns })
    }

    fn rewrap(&self, ns: NamespaceId, wrapped: &WrappedKey) -> Result<WrappedKey, CryptoError> {
        self.open_data_key(ns, wrapped)?;
        Ok(self.new_data_key(ns)?.1)
    }

    fn seal_key_check(&self) -> Result<KeyCheck, CryptoError> {
        Ok(KeyCheck {
            key_id: self.active.clone(),
            ciphertext: [b"check:", self.active.as_str().as_bytes()].concat(),
        })
    }

    fn verify_key_check(&self, check: &KeyCheck) -> Result<(), CryptoError> {
        if !self.knows(&check.key_id) {
            return Err(CryptoError::UnknownKey(check.key_id.clone()));
        }
        if check.ciphertext == [b"check:", check.key_id.as_str().as_bytes()].concat() {
            Ok(())
        } else {
            Err(CryptoError::Integrity)
        }
    }
}

/// The fake's per-namespace keys.
#[derive(Debug)]
pub struct FakeKeys {
    ns: NamespaceId,
}

impl NamespaceKeys for FakeKeys {
    fn name_index(&self, name: &SecretName) -> NameIndex {
        // Not a MAC, only distinct per (namespace, name), which is all the fake needs.
        let mut index = [0u8; 32];
        for (i, byte) in self
            .ns
            .as_bytes()
            .iter()
            .chain(name.as_str().as_bytes())
            .enumerate()
        {
            index[i % 32] = index[i % 32].wrapping_mul(31).wrapping_add(*byte);
        }
        index[31] = name.as_str().len() as u8;
        NameIndex(index)
    }

    fn seal_name(&self, index: &NameIndex, name: &SecretName) -> Result<Vec<u8>, CryptoError> {
        Ok(bound(
            self.ns,
            &[b"n".as_slice(), &index.0].concat(),
            name.as_str().as_bytes(),
        ))
    }

    fn open_name(&self, index: &NameIndex, ciphertext: &[u8]) -> Result<SecretName, CryptoError> {
        let bytes = unbind(self.ns, &[b"n".as_slice(), &index.0].concat(), ciphertext)?;
        let text = String::from_utf8(bytes).map_err(|_| CryptoError::Integrity)?;
        SecretName::parse(text).map_err(|_| CryptoError::Integrity)
    }

    fn seal_value(&self, index: &NameIndex, value: &SecretValue) -> Result<Vec<u8>, CryptoError> {
        Ok(bound(
            self.ns,
            &[b"v".as_slice(), &index.0].concat(),
            value.expose().as_bytes(),
        ))
    }

    fn open_value(&self, index: &NameIndex, ciphertext: &[u8]) -> Result<SecretValue, CryptoError> {
        let bytes = unbind(self.ns, &[b"v".as_slice(), &index.0].concat(), ciphertext)?;
        String::from_utf8(bytes)
            .map(SecretValue::new)
            .map_err(|_| CryptoError::Integrity)
    }

    fn digest(&self, value: &SecretValue) -> [u8; 32] {
        let mut digest = [0u8; 32];
        for (i, byte) in value.expose().bytes().enumerate() {
            digest[i % 32] ^= byte;
        }
        digest
    }
}

#[derive(Debug, Clone)]
struct Namespace {
    access_hash: AccessKeyHash,
    data_key: WrappedKey,
    revision: Revision,
    secrets: BTreeMap<NameIndex, StoredSecret>,
}

impl Namespace {
    fn record(&self, id: NamespaceId) -> NamespaceRecord {
        NamespaceRecord {
            id,
            data_key: self.data_key.clone(),
            revision: self.revision,
        }
    }
}

#[derive(Debug, Default)]
struct State {
    namespaces: BTreeMap<NamespaceId, Namespace>,
    by_access: HashMap<AccessKeyHash, NamespaceId>,
    key_checks: BTreeMap<KeyId, Vec<u8>>,
    imports: BTreeMap<OriginalId, Import>,
}

/// An import record: the namespace (`None` once deleted), the source fingerprint, the base.
#[derive(Debug)]
struct Import {
    namespace: Option<NamespaceId>,
    source: Fingerprint,
    base: ImportBase,
}

impl State {
    /// Deletes a namespace; its import record, if any, stays without it.
    fn remove_namespace(&mut self, id: NamespaceId) {
        if let Some(ns) = self.namespaces.remove(&id) {
            self.by_access.remove(&ns.access_hash);
        }
        for import in self.imports.values_mut() {
            if import.namespace == Some(id) {
                import.namespace = None;
            }
        }
    }
}

/// A complete, in-memory implementation of [`SecretStore`]. One mutex makes every method
/// atomic, which is the contract's transactionality in its simplest form.
#[derive(Debug, Default)]
pub struct InMemoryStore {
    state: Mutex<State>,
}

impl InMemoryStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        // A poisoned lock means a test already panicked; keep going with the data as is.
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut state)
    }
}

/// Writes `secret` at version `version` (the namespace's next revision).
fn upsert(
    ns: &mut Namespace,
    secret: &SealedSecret,
    now: OffsetDateTime,
    version: Revision,
) -> Upserted {
    if let Some(existing) = ns.secrets.get_mut(&secret.index) {
        existing.sealed.value.clone_from(&secret.value);
        existing.sealed.name.clone_from(&secret.name);
        existing.updated_at = now;
        existing.version = version;
        return Upserted::Updated;
    }
    ns.secrets.insert(
        secret.index,
        StoredSecret {
            sealed: secret.clone(),
            created_at: now,
            updated_at: now,
            version,
        },
    );
    Upserted::Created
}

#[async_trait]
impl SecretStore for InMemoryStore {
    async fn create_namespaces(&self, namespaces: &[NewNamespace]) -> Result<(), StoreError> {
        self.with(|state| {
            let taken = namespaces.iter().any(|ns| {
                state.namespaces.contains_key(&ns.id)
                    || state.by_access.contains_key(&ns.access_hash)
            });
            let mut seen = std::collections::HashSet::new();
            if taken || !namespaces.iter().all(|ns| seen.insert(ns.access_hash)) {
                return Err(StoreError::Conflict);
            }
            for ns in namespaces {
                state.by_access.insert(ns.access_hash, ns.id);
                state.namespaces.insert(
                    ns.id,
                    Namespace {
                        access_hash: ns.access_hash,
                        data_key: ns.data_key.clone(),
                        revision: Revision::INITIAL,
                        secrets: BTreeMap::new(),
                    },
                );
            }
            Ok(())
        })
    }

    async fn find_namespace(
        &self,
        access: &AccessKeyHash,
    ) -> Result<Option<NamespaceRecord>, StoreError> {
        Ok(self.with(|state| {
            let id = *state.by_access.get(access)?;
            Some(state.namespaces.get(&id)?.record(id))
        }))
    }

    async fn find_revision(
        &self,
        access: &AccessKeyHash,
    ) -> Result<Option<(NamespaceId, Revision)>, StoreError> {
        Ok(self.with(|state| {
            let id = *state.by_access.get(access)?;
            Some((id, state.namespaces.get(&id)?.revision))
        }))
    }

    async fn read_namespace(
        &self,
        access: &AccessKeyHash,
    ) -> Result<Option<(NamespaceRecord, Vec<StoredSecret>)>, StoreError> {
        Ok(self.with(|state| {
            let id = *state.by_access.get(access)?;
            let ns = state.namespaces.get(&id)?;
            Some((ns.record(id), ns.secrets.values().cloned().collect()))
        }))
    }

    async fn get_secret(
        &self,
        ns: NamespaceId,
        index: &NameIndex,
    ) -> Result<Option<StoredSecret>, StoreError> {
        Ok(self.with(|state| state.namespaces.get(&ns)?.secrets.get(index).cloned()))
    }

    async fn upsert_secret(
        &self,
        ns: NamespaceId,
        secret: &SealedSecret,
        max_secrets: u32,
        guard: &Guard,
    ) -> Result<Written, StoreError> {
        self.with(|state| {
            let namespace = state
                .namespaces
                .get_mut(&ns)
                .ok_or(StoreError::NamespaceNotFound)?;
            let current = namespace.secrets.get(&secret.index).map(|s| s.version);
            if !guard.holds(namespace.revision, current) {
                return Err(StoreError::PreconditionFailed);
            }
            if current.is_none() && namespace.secrets.len() >= max_secrets as usize {
                return Err(StoreError::NamespaceFull);
            }
            let revision = namespace.revision.next();
            namespace.revision = revision;
            let upserted = upsert(namespace, secret, OffsetDateTime::now_utc(), revision);
            Ok(Written { upserted, revision })
        })
    }

    async fn apply_patch(
        &self,
        ns: NamespaceId,
        upserts: &[SealedSecret],
        deletes: &[NameIndex],
        max_secrets: u32,
        condition: &Condition<Revision>,
    ) -> Result<Patched, StoreError> {
        self.with(|state| {
            let namespace = state
                .namespaces
                .get_mut(&ns)
                .ok_or(StoreError::NamespaceNotFound)?;
            if !condition.holds(Some(&namespace.revision)) {
                return Err(StoreError::PreconditionFailed);
            }
            let before = namespace.secrets.len();
            let mut scratch = namespace.clone();
            let mut changed = !upserts.is_empty();
            for index in deletes {
                changed |= scratch.secrets.remove(index).is_some();
            }
            if changed {
                scratch.revision = scratch.revision.next();
            }
            let (now, revision) = (OffsetDateTime::now_utc(), scratch.revision);
            for secret in upserts {
                upsert(&mut scratch, secret, now, revision);
            }
            if !patch_fits(before as u64, scratch.secrets.len() as u64, max_secrets) {
                return Err(StoreError::NamespaceFull);
            }
            *namespace = scratch;
            Ok(Patched {
                revision: namespace.revision,
                secrets: namespace.secrets.values().cloned().collect(),
            })
        })
    }

    async fn delete_secret(
        &self,
        ns: NamespaceId,
        index: &NameIndex,
        guard: &Guard,
    ) -> Result<Option<Revision>, StoreError> {
        self.with(|state| {
            let Some(namespace) = state.namespaces.get_mut(&ns) else {
                return Ok(None);
            };
            let Some(current) = namespace.secrets.get(index).map(|s| s.version) else {
                return Ok(None);
            };
            if !guard.holds(namespace.revision, Some(current)) {
                return Err(StoreError::PreconditionFailed);
            }
            namespace.secrets.remove(index);
            namespace.revision = namespace.revision.next();
            Ok(Some(namespace.revision))
        })
    }

    async fn delete_namespace(
        &self,
        access: &AccessKeyHash,
        condition: &Condition<Revision>,
    ) -> Result<Option<NamespaceId>, StoreError> {
        self.with(|state| {
            let Some(id) = state.by_access.get(access).copied() else {
                return Ok(None);
            };
            let revision = state.namespaces.get(&id).map(|ns| ns.revision);
            if !condition.holds(revision.as_ref()) {
                return Err(StoreError::PreconditionFailed);
            }
            state.remove_namespace(id);
            Ok(Some(id))
        })
    }

    async fn replace_access_hash(
        &self,
        old: &AccessKeyHash,
        new: &AccessKeyHash,
    ) -> Result<Option<NamespaceId>, StoreError> {
        self.with(|state| {
            if state.by_access.contains_key(new) {
                return Err(StoreError::Conflict);
            }
            let Some(id) = state.by_access.remove(old) else {
                return Ok(None);
            };
            state.by_access.insert(*new, id);
            if let Some(ns) = state.namespaces.get_mut(&id) {
                ns.access_hash = *new;
                ns.revision = ns.revision.next();
            }
            Ok(Some(id))
        })
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn key_checks(&self) -> Result<Vec<KeyCheck>, StoreError> {
        Ok(self.with(|state| {
            state
                .key_checks
                .iter()
                .map(|(key_id, ciphertext)| KeyCheck {
                    key_id: key_id.clone(),
                    ciphertext: ciphertext.clone(),
                })
                .collect()
        }))
    }

    async fn add_key_check(&self, check: &KeyCheck) -> Result<(), StoreError> {
        self.with(|state| {
            state
                .key_checks
                .entry(check.key_id.clone())
                .or_insert_with(|| check.ciphertext.clone());
        });
        Ok(())
    }

    async fn key_ids_in_use(&self) -> Result<Vec<KeyId>, StoreError> {
        Ok(self.with(|state| {
            let mut ids: Vec<_> = state
                .namespaces
                .values()
                .map(|ns| ns.data_key.key_id.clone())
                .collect();
            ids.sort();
            ids.dedup();
            ids
        }))
    }

    async fn count_by_key_id(&self) -> Result<Vec<(KeyId, u64)>, StoreError> {
        Ok(self.with(|state| {
            let mut counts = BTreeMap::<KeyId, u64>::new();
            for ns in state.namespaces.values() {
                *counts.entry(ns.data_key.key_id.clone()).or_default() += 1;
            }
            counts.into_iter().collect()
        }))
    }

    async fn wrapped_not_under(
        &self,
        active: &KeyId,
        after: Option<NamespaceId>,
        limit: u32,
    ) -> Result<Vec<NamespaceRecord>, StoreError> {
        Ok(self.with(|state| {
            state
                .namespaces
                .iter()
                .filter(|(id, ns)| after.is_none_or(|a| **id > a) && ns.data_key.key_id != *active)
                .take(limit as usize)
                .map(|(id, ns)| ns.record(*id))
                .collect()
        }))
    }

    async fn replace_wrapped_keys(
        &self,
        updates: &[(NamespaceRecord, WrappedKey)],
    ) -> Result<Vec<NamespaceId>, StoreError> {
        Ok(self.with(|state| {
            let mut replaced = Vec::new();
            for (old, new) in updates {
                if let Some(ns) = state.namespaces.get_mut(&old.id)
                    && ns.data_key == old.data_key
                {
                    ns.data_key = new.clone();
                    replaced.push(old.id);
                }
            }
            replaced
        }))
    }
}

#[async_trait]
impl ImportStore for InMemoryStore {
    async fn imports_between(
        &self,
        after: Option<OriginalId>,
        until: Option<OriginalId>,
    ) -> Result<Vec<ImportRecord>, StoreError> {
        Ok(self.with(|state| {
            state
                .imports
                .iter()
                .filter(|(id, _)| after.is_none_or(|a| **id > a) && until.is_none_or(|u| **id <= u))
                .map(|(id, import)| ImportRecord {
                    original: *id,
                    namespace: import.namespace,
                    source: import.source,
                })
                .collect()
        }))
    }

    async fn create_imported(&self, import: &NewImport) -> Result<(), StoreError> {
        self.with(|state| {
            let ns = &import.namespace;
            if state.imports.contains_key(&import.original)
                || state.namespaces.contains_key(&ns.id)
                || state.by_access.contains_key(&ns.access_hash)
            {
                return Err(StoreError::Conflict);
            }
            let now = OffsetDateTime::now_utc();
            // A namespace imported whole starts as a created one does, its secrets with it.
            let mut namespace = Namespace {
                access_hash: ns.access_hash,
                data_key: ns.data_key.clone(),
                revision: Revision::INITIAL,
                secrets: BTreeMap::new(),
            };
            for secret in &import.secrets {
                upsert(&mut namespace, secret, now, Revision::INITIAL);
            }
            state.by_access.insert(ns.access_hash, ns.id);
            state.namespaces.insert(ns.id, namespace);
            state.imports.insert(
                import.original,
                Import {
                    namespace: Some(ns.id),
                    source: import.source,
                    base: import.base.clone(),
                },
            );
            Ok(())
        })
    }

    async fn read_imported(
        &self,
        original: OriginalId,
    ) -> Result<Option<ImportedState>, StoreError> {
        Ok(self.with(|state| {
            let import = state.imports.get(&original)?;
            let namespace = import.namespace.and_then(|id| {
                let ns = state.namespaces.get(&id)?;
                Some((
                    ns.record(id),
                    ns.access_hash,
                    ns.secrets.values().cloned().collect(),
                ))
            });
            Some(ImportedState {
                record: ImportRecord {
                    original,
                    namespace: import.namespace,
                    source: import.source,
                },
                namespace,
                base: import.base.clone(),
            })
        }))
    }

    async fn update_imported(&self, update: &ImportUpdate) -> Result<Applied, StoreError> {
        self.with(|state| {
            let Some(ns) = state.namespaces.get(&update.namespace) else {
                return Ok(Applied::Gone);
            };
            if !state.imports.contains_key(&update.original) {
                return Ok(Applied::Gone);
            }
            let secrets: Vec<_> = ns.secrets.values().cloned().collect();
            if state_digest(&ns.access_hash, &secrets) != update.expected {
                return Ok(Applied::Changed);
            }
            if let Some(access) = update.access {
                if state.by_access.contains_key(&access) {
                    return Err(StoreError::Conflict);
                }
                let old = ns.access_hash;
                state.by_access.remove(&old);
                state.by_access.insert(access, update.namespace);
            }
            let ns = state
                .namespaces
                .get_mut(&update.namespace)
                .ok_or(StoreError::NamespaceNotFound)?;
            // A merge is a change inside the namespace: it moves to its next revision, which
            // the secrets it writes take as their version.
            let mut changed = !update.upserts.is_empty();
            if let Some(access) = update.access {
                ns.access_hash = access;
                changed = true;
            }
            for index in &update.deletes {
                changed |= ns.secrets.remove(index).is_some();
            }
            if changed {
                ns.revision = ns.revision.next();
            }
            let (now, revision) = (OffsetDateTime::now_utc(), ns.revision);
            for secret in &update.upserts {
                upsert(ns, secret, now, revision);
            }
            if let Some(import) = state.imports.get_mut(&update.original) {
                import.source = update.source;
                import.base = update.base.clone();
            }
            Ok(Applied::Applied)
        })
    }

    async fn remove_imported(
        &self,
        original: OriginalId,
        namespace: NamespaceId,
        expected: Fingerprint,
    ) -> Result<Applied, StoreError> {
        Ok(self.with(|state| {
            let Some(ns) = state.namespaces.get(&namespace) else {
                return Applied::Gone;
            };
            if state.imports.get(&original).and_then(|i| i.namespace) != Some(namespace) {
                return Applied::Gone;
            }
            let secrets: Vec<_> = ns.secrets.values().cloned().collect();
            if state_digest(&ns.access_hash, &secrets) != expected {
                return Applied::Changed;
            }
            state.remove_namespace(namespace);
            Applied::Applied
        }))
    }
}
