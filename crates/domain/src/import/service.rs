//! The import's use cases, on [`SecretsService`]: import a namespace new to this store, merge
//! the original's changes into one imported before, remove one the original deleted, and
//! verify one against the original.
//!
//! Each runs in a `debug` span with `skip_all`, like every use case; its fields are the
//! original's namespace id and this service's (`original`, `ns`), which grant nothing.

use std::collections::{BTreeMap, HashSet};

use super::{
    Applied, ImportBase, ImportPlan, ImportStore, ImportUpdate, ImportedState, NewImport,
    OriginalId, OriginalNamespace, state_digest,
};
use crate::error::Error;
use crate::model::{AccessKind, NamespaceId};
use crate::ports::{
    Envelope, NameIndex, NamespaceKeys as _, NewNamespace, Random, SecretStore, StoredSecret,
};
use crate::service::{SecretsService, open_one, seal};

/// How often a merge is computed again when the namespace changed while it was computed.
const MAX_ATTEMPTS: usize = 5;

/// What importing one namespace did.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ImportOutcome {
    /// The namespace is here as the original has it, but for the names written here since
    /// the last import, which kept this service's state.
    Imported {
        /// The namespace here.
        namespace: NamespaceId,
        /// Secrets written.
        written: u64,
        /// Names whose state here was kept because they were written here since the import.
        kept_here: u64,
    },
    /// The namespace was deleted here since it was imported; it stays deleted.
    DeletedHere,
}

/// What removing a namespace the original deleted did.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum RemoveOutcome {
    /// It is deleted here too, its data key with it.
    Removed,
    /// It was written here since it was imported, so it stays.
    KeptWrittenHere,
    /// It was deleted here already.
    AlreadyGone,
}

/// How an imported namespace compares with the original.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum VerifyOutcome {
    /// It was never imported.
    NotImported,
    /// The original changed since it was imported; import again, then verify.
    Stale,
    /// It was deleted here since it was imported.
    DeletedHere,
    /// Every name not written here since the import holds the original's value, and its
    /// original key reaches it (unless that key was rotated here).
    Matches {
        /// Names not compared because they were written here since the import.
        changed_here: u64,
    },
    /// Some names differ from the original, or its original key does not reach it.
    Differs {
        /// How many names (or the access key) differ.
        mismatched: u64,
        /// Names not compared because they were written here since the import.
        changed_here: u64,
    },
}

impl<S, C, R> SecretsService<S, C, R>
where
    S: SecretStore + ImportStore,
    C: Envelope,
    R: Random,
{
    /// Imports a namespace that has no record here: a new namespace with a fresh data key and
    /// the original's access hash, its secrets sealed under that key, and its record, all in
    /// one transaction. A crash before it commits leaves nothing; after, a re-run finds the
    /// record and skips it.
    #[tracing::instrument(level = "debug", skip_all, fields(original = %namespace.id, ns))]
    pub async fn import_new(
        &self,
        namespace: &OriginalNamespace,
        plan: &ImportPlan,
    ) -> Result<ImportOutcome, Error> {
        if namespace.access_hash.kind() != AccessKind::Original {
            return Err(Error::Internal(
                "an imported namespace must keep an original access hash".into(),
            ));
        }
        let id = NamespaceId::generate(self.random())?;
        tracing::Span::current().record("ns", tracing::field::display(id));
        let (keys, data_key) = self
            .envelope()
            .new_data_key(id)
            .map_err(|e| Error::from_crypto(e, id))?;
        let mut base = ImportBase::default();
        let mut secrets = Vec::with_capacity(plan.secrets.len());
        for (name, value) in &plan.secrets {
            let sealed = seal(&keys, id, name, value)?;
            base.insert(&sealed);
            secrets.push(sealed);
        }
        let import = NewImport {
            original: namespace.id,
            namespace: NewNamespace {
                id,
                access_hash: namespace.access_hash,
                data_key,
            },
            secrets,
            source: namespace.fingerprint,
            base,
        };
        self.store()
            .create_imported(&import)
            .await
            .map_err(|e| self.store_error(e, None))?;
        Ok(ImportOutcome::Imported {
            namespace: id,
            written: import.secrets.len() as u64,
            kept_here: 0,
        })
    }

    /// Merges the original's current state of a namespace imported before (see the module doc
    /// of [`crate::import`]): a name written here since the last import keeps this service's
    /// state; every other name takes the original's, and a name the original no longer has is
    /// deleted. The merge is written only if the namespace did not change meanwhile, and
    /// computed again if it did.
    #[tracing::instrument(level = "debug", skip_all, fields(original = %namespace.id, ns))]
    pub async fn import_changed(
        &self,
        namespace: &OriginalNamespace,
        plan: &ImportPlan,
    ) -> Result<ImportOutcome, Error> {
        for _ in 0..MAX_ATTEMPTS {
            let state = self.imported_state(namespace.id).await?;
            let Some((record, access, stored)) = &state.namespace else {
                return Ok(ImportOutcome::DeletedHere);
            };
            let keys = self.unwrap(record)?;
            let local = by_index(stored);
            let mut update = ImportUpdate {
                original: namespace.id,
                namespace: record.id,
                expected: state_digest(access, stored),
                upserts: Vec::new(),
                deletes: Vec::new(),
                access: None,
                source: namespace.fingerprint,
                base: ImportBase::default(),
            };
            let mut kept_here = 0;
            let mut wanted = HashSet::with_capacity(plan.secrets.len());
            for (name, value) in &plan.secrets {
                let index = keys.name_index(name);
                wanted.insert(index);
                let row = local.get(&index).copied();
                if state.base.changed_here(&index, row.map(|s| &s.sealed)) {
                    kept_here += 1;
                    update.base.keep_from(&state.base, &index);
                    continue;
                }
                if let Some(row) = row
                    && open_one(&keys, record.id, row)?.1 == *value
                {
                    update.base.insert(&row.sealed);
                    continue;
                }
                let sealed = seal(&keys, record.id, name, value)?;
                update.base.insert(&sealed);
                update.upserts.push(sealed);
            }
            for (index, row) in &local {
                if wanted.contains(index) {
                    continue;
                }
                if state.base.changed_here(index, Some(&row.sealed)) {
                    kept_here += 1;
                } else {
                    update.deletes.push(*index);
                }
            }
            // A key rotated here is a native one now, and stays.
            if access.kind() == AccessKind::Original && *access != namespace.access_hash {
                update.access = Some(namespace.access_hash);
            }
            match self
                .store()
                .update_imported(&update)
                .await
                .map_err(|e| self.store_error(e, None))?
            {
                Applied::Applied => {
                    return Ok(ImportOutcome::Imported {
                        namespace: update.namespace,
                        written: update.upserts.len() as u64,
                        kept_here,
                    });
                }
                Applied::Gone => return Ok(ImportOutcome::DeletedHere),
                Applied::Changed => {}
            }
        }
        Err(Error::Internal(
            "the namespace kept changing while its import was merged".into(),
        ))
    }

    /// Deletes an imported namespace that the original deleted since it was imported, with its
    /// secrets and its data key (crypto-shredding), unless it was written here since the import.
    /// Its record stays, so that it is never imported again.
    #[tracing::instrument(level = "debug", skip_all, fields(original = %original, ns))]
    pub async fn remove_imported(&self, original: OriginalId) -> Result<RemoveOutcome, Error> {
        for _ in 0..MAX_ATTEMPTS {
            let state = self.imported_state(original).await?;
            let Some((record, access, stored)) = &state.namespace else {
                return Ok(RemoveOutcome::AlreadyGone);
            };
            tracing::Span::current().record("ns", tracing::field::display(record.id));
            let local = by_index(stored);
            let written_here = access.kind() == AccessKind::Native
                || local.values().any(|row| {
                    state
                        .base
                        .changed_here(&row.sealed.index, Some(&row.sealed))
                })
                || state.base.indexes().any(|index| !local.contains_key(index));
            if written_here {
                return Ok(RemoveOutcome::KeptWrittenHere);
            }
            match self
                .store()
                .remove_imported(original, record.id, state_digest(access, stored))
                .await
                .map_err(|e| self.store_error(e, None))?
            {
                Applied::Applied => return Ok(RemoveOutcome::Removed),
                Applied::Gone => return Ok(RemoveOutcome::AlreadyGone),
                Applied::Changed => {}
            }
        }
        Err(Error::Internal(
            "the namespace kept changing while it was removed".into(),
        ))
    }

    /// Compares an imported namespace, read back and decrypted by this service, with the
    /// original's (as planned): every name not written here since the import must hold the
    /// original's value, and the original access key must reach the namespace through the
    /// read every request uses (unless it was rotated here).
    #[tracing::instrument(level = "debug", skip_all, fields(original = %namespace.id, ns))]
    pub async fn verify_imported(
        &self,
        namespace: &OriginalNamespace,
        plan: &ImportPlan,
    ) -> Result<VerifyOutcome, Error> {
        let Some(state) = self
            .store()
            .read_imported(namespace.id)
            .await
            .map_err(|e| self.store_error(e, None))?
        else {
            return Ok(VerifyOutcome::NotImported);
        };
        if state.record.source != namespace.fingerprint {
            return Ok(VerifyOutcome::Stale);
        }
        let Some((record, access, stored)) = &state.namespace else {
            return Ok(VerifyOutcome::DeletedHere);
        };
        let keys = self.unwrap(record)?;
        let mut mismatched = 0;
        let mut changed_here = 0;
        if access.kind() == AccessKind::Original {
            let reached = self
                .store()
                .find_namespace(&namespace.access_hash)
                .await
                .map_err(|e| self.store_error(e, None))?;
            if reached.map(|found| found.id) != Some(record.id) {
                mismatched += 1;
            }
        }
        let local = by_index(stored);
        let mut wanted = HashSet::with_capacity(plan.secrets.len());
        for (name, value) in &plan.secrets {
            let index = keys.name_index(name);
            wanted.insert(index);
            let row = local.get(&index).copied();
            if state.base.changed_here(&index, row.map(|s| &s.sealed)) {
                changed_here += 1;
                continue;
            }
            match row {
                Some(row) if open_one(&keys, record.id, row)? == (name.clone(), value.clone()) => {}
                _ => mismatched += 1,
            }
        }
        for (index, row) in &local {
            if !wanted.contains(index) {
                if state.base.changed_here(index, Some(&row.sealed)) {
                    changed_here += 1;
                } else {
                    mismatched += 1;
                }
            }
        }
        Ok(if mismatched == 0 {
            VerifyOutcome::Matches { changed_here }
        } else {
            VerifyOutcome::Differs {
                mismatched,
                changed_here,
            }
        })
    }

    /// The state of an imported namespace; every caller has seen its record already.
    async fn imported_state(&self, original: OriginalId) -> Result<ImportedState, Error> {
        let state = self
            .store()
            .read_imported(original)
            .await
            .map_err(|e| self.store_error(e, None))?
            .ok_or_else(|| Error::Internal("an imported namespace has no record".into()))?;
        if let Some((record, _, _)) = &state.namespace {
            tracing::Span::current().record("ns", tracing::field::display(record.id));
        }
        Ok(state)
    }
}

fn by_index(stored: &[StoredSecret]) -> BTreeMap<NameIndex, &StoredSecret> {
    stored.iter().map(|s| (s.sealed.index, s)).collect()
}

#[cfg(test)]
mod tests {
    use sha2::{Digest as _, Sha256};
    use time::OffsetDateTime;
    use zeroize::Zeroizing;

    use super::*;
    use crate::import::{Fingerprint, OriginalSecret, plan};
    use crate::model::{AccessKey, AccessKeyHash, Limits, SecretName, SecretValue};
    use crate::testing::{CountingRandom, FakeEnvelope, InMemoryStore};
    use crate::{Condition, Conditional, Target};

    type Service = SecretsService<InMemoryStore, FakeEnvelope, CountingRandom>;

    const KEY: &str = "V1StGXR8_Z5jdHi6B-myT";

    fn service() -> Service {
        SecretsService::new(
            InMemoryStore::new(),
            FakeEnvelope::default(),
            CountingRandom::default(),
            Limits::default(),
        )
    }

    fn original(version: u8, secrets: &[(&str, &str)]) -> OriginalNamespace {
        OriginalNamespace {
            id: OriginalId::from_uuid(uuid::Uuid::from_u128(7)),
            access_hash: AccessKeyHash::new(AccessKind::Original, Sha256::digest(KEY).into()),
            fingerprint: Fingerprint([version; 32]),
            secrets: secrets
                .iter()
                .map(|(name, value)| OriginalSecret {
                    name: Zeroizing::new((*name).to_owned()),
                    value: SecretValue::new((*value).to_owned()),
                    created_at: OffsetDateTime::UNIX_EPOCH,
                    listed_at: String::new(),
                })
                .collect(),
            undecryptable: 0,
        }
    }

    fn key() -> AccessKey {
        AccessKey::parse(KEY).expect("an original key")
    }

    fn name(text: &str) -> SecretName {
        SecretName::parse(text).expect("a name")
    }

    async fn read(service: &Service, key: &AccessKey) -> Vec<(String, String)> {
        let read = service
            .read_all(key, &Condition::default())
            .await
            .expect("read");
        let Conditional::Read(secrets) = read.value else {
            panic!("an unconditional read is never 304");
        };
        secrets
            .iter()
            .map(|(n, v)| (n.as_str().to_owned(), v.expose().to_owned()))
            .collect()
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect()
    }

    async fn import(service: &Service, ns: &OriginalNamespace) -> ImportOutcome {
        let plan = plan(ns, service.limits());
        if service
            .store()
            .read_imported(ns.id)
            .await
            .expect("read")
            .is_some()
        {
            service.import_changed(ns, &plan).await.expect("merged")
        } else {
            service.import_new(ns, &plan).await.expect("imported")
        }
    }

    #[tokio::test]
    async fn an_imported_namespace_answers_its_original_key_and_a_rotation_makes_it_native() {
        let service = service();
        let ns = original(1, &[("A", "1"), ("B", "2")]);
        let outcome = import(&service, &ns).await;
        assert!(matches!(
            outcome,
            ImportOutcome::Imported {
                written: 2,
                kept_here: 0,
                ..
            }
        ));
        assert_eq!(
            read(&service, &key()).await,
            pairs(&[("A", "1"), ("B", "2")])
        );
        // The same digest as a native hash reaches nothing.
        let native = AccessKeyHash::from_bytes(*ns.access_hash.as_bytes());
        assert!(
            service
                .store()
                .find_namespace(&native)
                .await
                .expect("find")
                .is_none()
        );
        let rotated = service
            .rotate_access_key(&key())
            .await
            .expect("rotated")
            .access_key;
        assert_eq!(rotated.kind(), AccessKind::Native);
        assert!(matches!(
            service.read_all(&key(), &Condition::default()).await,
            Err(Error::NamespaceNotFound)
        ));
        assert_eq!(read(&service, &rotated).await.len(), 2);
        let plan = plan(&ns, service.limits());
        assert_eq!(
            service.verify_imported(&ns, &plan).await.expect("verified"),
            VerifyOutcome::Matches { changed_here: 0 }
        );
    }

    #[tokio::test]
    async fn a_rerun_takes_the_originals_changes_and_keeps_what_was_written_here() {
        let service = service();
        import(
            &service,
            &original(1, &[("A", "1"), ("B", "2"), ("C", "3"), ("D", "4")]),
        )
        .await;
        // Written here after the import: B updated, D deleted, E created.
        service
            .put_secret(
                &key(),
                &name("B"),
                &SecretValue::new("here".into()),
                &Condition::default(),
                Target::Namespace,
            )
            .await
            .expect("put");
        service
            .delete_secret(&key(), &name("D"), &Condition::default())
            .await
            .expect("delete");
        service
            .put_secret(
                &key(),
                &name("E"),
                &SecretValue::new("new here".into()),
                &Condition::default(),
                Target::Namespace,
            )
            .await
            .expect("put");
        // Meanwhile in the original: A changed, B and D changed, C deleted, F added.
        let changed = original(2, &[("A", "1b"), ("B", "2b"), ("D", "4b"), ("F", "6")]);
        let outcome = import(&service, &changed).await;
        assert!(matches!(
            outcome,
            ImportOutcome::Imported {
                written: 2,
                kept_here: 3,
                ..
            }
        ));
        assert_eq!(
            read(&service, &key()).await,
            pairs(&[("A", "1b"), ("B", "here"), ("E", "new here"), ("F", "6")])
        );
        let plan = plan(&changed, service.limits());
        assert_eq!(
            service
                .verify_imported(&changed, &plan)
                .await
                .expect("verified"),
            VerifyOutcome::Matches { changed_here: 3 }
        );
        // Unchanged again: a third run writes nothing.
        assert!(matches!(
            import(&service, &changed).await,
            ImportOutcome::Imported {
                written: 0,
                kept_here: 3,
                ..
            }
        ));
    }

    #[tokio::test]
    async fn a_namespace_deleted_in_the_original_is_removed_unless_written_here() {
        let service = service();
        let ns = original(1, &[("A", "1")]);
        import(&service, &ns).await;
        assert_eq!(
            service.remove_imported(ns.id).await.expect("removed"),
            RemoveOutcome::Removed
        );
        assert!(matches!(
            service.read_all(&key(), &Condition::default()).await,
            Err(Error::NamespaceNotFound)
        ));
        assert_eq!(
            service.remove_imported(ns.id).await.expect("again"),
            RemoveOutcome::AlreadyGone
        );
        // Deleted here: a later run does not bring it back.
        assert_eq!(
            import(&service, &original(2, &[("A", "2")])).await,
            ImportOutcome::DeletedHere
        );

        let other = OriginalNamespace {
            id: OriginalId::from_uuid(uuid::Uuid::from_u128(8)),
            access_hash: AccessKeyHash::new(AccessKind::Original, [9; 32]),
            ..original(1, &[("A", "1")])
        };
        service
            .import_new(&other, &plan(&other, service.limits()))
            .await
            .expect("imported");
        let stored = service
            .store()
            .read_imported(other.id)
            .await
            .expect("read")
            .and_then(|s| s.namespace)
            .expect("there");
        let keys = service.unwrap(&stored.0).expect("keys");
        let sealed = seal(
            &keys,
            stored.0.id,
            &name("B"),
            &SecretValue::new("x".into()),
        )
        .expect("sealed");
        service
            .store()
            .upsert_secret(stored.0.id, &sealed, 10, &crate::ports::Guard::default())
            .await
            .expect("written here");
        assert_eq!(
            service.remove_imported(other.id).await.expect("kept"),
            RemoveOutcome::KeptWrittenHere
        );
    }

    #[tokio::test]
    async fn verify_tells_a_difference_and_a_stale_import() {
        let service = service();
        let ns = original(1, &[("A", "1")]);
        import(&service, &ns).await;
        let plan_now = |ns: &OriginalNamespace| plan(ns, service.limits());
        let differs = OriginalNamespace {
            secrets: original(1, &[("A", "other")]).secrets,
            ..original(1, &[])
        };
        assert_eq!(
            service
                .verify_imported(&differs, &plan_now(&differs))
                .await
                .expect("verify"),
            VerifyOutcome::Differs {
                mismatched: 1,
                changed_here: 0
            }
        );
        let stale = original(2, &[("A", "1")]);
        assert_eq!(
            service
                .verify_imported(&stale, &plan_now(&stale))
                .await
                .expect("verify"),
            VerifyOutcome::Stale
        );
        let never = OriginalNamespace {
            id: OriginalId::from_uuid(uuid::Uuid::from_u128(99)),
            ..original(1, &[])
        };
        assert_eq!(
            service
                .verify_imported(&never, &plan_now(&never))
                .await
                .expect("verify"),
            VerifyOutcome::NotImported
        );
    }
}
