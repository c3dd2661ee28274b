//! The use cases: every operation on namespaces and secrets, over the ports.
//!
//! A request's life here is always the same three steps: find the namespace by the hash of
//! the caller's access key, unwrap its data key, then seal or open secrets with it. The
//! service holds no state of its own between requests (no cache): every replica answers from
//! the store, so a key rotated or a namespace deleted on one replica is refused on all of them
//! at once.
//!
//! # What the results carry
//! Every use case about one namespace answers that namespace's internal id with its result
//! ([`Tagged`], [`Issued`], or the id itself), and every error it can meet once the namespace is
//! found carries the id too ([`Error::namespace`]): the layers above can say which namespace a
//! request touched (a log line, an audit record) without ever holding on to the access key.
//! Reads and writes also answer the entity tag of what they answered about (see
//! [`crate::etag`]), and take the caller's preconditions as a [`Condition`] of entity tags, which
//! the use case turns into revisions of the resource in question before the store compares them
//! inside its write.
//!
//! # Spans
//! Every use case runs in a `debug` span of its own name, with `skip_all`: no argument becomes a
//! field by accident, since arguments are access keys, names and values. The only fields are
//! counts and `ns`, the namespace's internal id, recorded once the namespace is found (it grants
//! nothing, and it is how a log line is tied to a namespace).

use std::collections::HashSet;

use crate::error::{Error, KeyCheckError};
use crate::etag::{Condition, ETag, Failed, Resource, Revision, Tags};
use crate::model::{
    AccessKey, AccessKeyHash, BulkCount, KeyId, KeyInfo, Limits, NamespaceId, Secret, SecretName,
    SecretValue,
};
use crate::ports::{
    CryptoError, Envelope, Guard, NamespaceKeys, NamespaceRecord, NewNamespace, Random,
    SealedSecret, SecretStore, StoreError, StoredSecret, Upserted,
};

/// The outcome of one [`SecretsService::rewrap_batch`].
#[derive(Debug, Default)]
pub struct RewrapBatch {
    /// The namespaces whose data key is now wrapped under the active KEK.
    pub rewrapped: Vec<NamespaceId>,
    /// Namespaces deleted or re-wrapped by someone else while the batch ran.
    pub skipped: u64,
    /// Namespaces whose data key could not be unwrapped, with why.
    pub failed: Vec<(NamespaceId, Error)>,
    /// Where the next batch starts; `None` when this batch found nothing left to do.
    pub next: Option<NamespaceId>,
}

/// One change of a merge patch: set a name to a value, or delete it (`None`).
pub type PatchChange = (SecretName, Option<SecretValue>);

/// Every secret of a namespace, decrypted, ordered by name.
pub type Plaintexts = Vec<(SecretName, SecretValue)>;

/// A use case's answer about one namespace, with what the layers above need besides: the
/// namespace's internal id (for logs and the audit trail, which must never see the access key)
/// and the entity tag of the resource the answer is about, in the state the use case saw or
/// left it.
#[derive(Debug)]
pub struct Tagged<T> {
    /// The namespace's internal id.
    pub namespace: NamespaceId,
    /// The entity tag of the namespace, or of the secret, that the answer is about.
    pub etag: ETag,
    /// The answer.
    pub value: T,
}

/// What a read answers: what was read, or that the state the caller named in `If-None-Match`
/// is still the current one, and then nothing was decrypted.
#[derive(Debug)]
pub enum Conditional<T> {
    /// The data, decrypted.
    Read(T),
    /// Nothing changed since the state the caller named.
    NotModified,
}

/// An access key issued for a namespace, on creation or rotation, and the namespace's internal
/// id. The key is shown to the caller this once.
#[derive(Debug)]
pub struct Issued {
    /// The namespace's internal id.
    pub namespace: NamespaceId,
    /// Its access key.
    pub access_key: AccessKey,
}

/// What a secret's write is conditional on and answers the entity tag of:
/// `POST /namespaces/{accessKey}` writes into the namespace, `PUT .../secrets/{key}` writes the
/// secret itself.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Target {
    /// The namespace: preconditions compare with its revision.
    Namespace,
    /// The secret: preconditions compare with its version, and see it as absent while it does
    /// not exist.
    Secret,
}

/// The secrets service's use cases, generic over its ports.
#[derive(Debug)]
pub struct SecretsService<S, C, R> {
    store: S,
    envelope: C,
    random: R,
    limits: Limits,
}

impl<S, C, R> SecretsService<S, C, R>
where
    S: SecretStore,
    C: Envelope,
    R: Random,
{
    /// Assembles the service from its ports and the configured limits.
    pub fn new(store: S, envelope: C, random: R, limits: Limits) -> Self {
        Self {
            store,
            envelope,
            random,
            limits,
        }
    }

    /// The store, for operations that concern it alone (readiness, key rotation).
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The envelope, for operations that concern it alone (key rotation).
    pub fn envelope(&self) -> &C {
        &self.envelope
    }

    /// The configured limits.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// The randomness source, for the use cases of other modules (the import).
    pub(crate) fn random(&self) -> &R {
        &self.random
    }

    /// Creates one empty namespace and returns its access key, which is shown only this once.
    #[tracing::instrument(level = "debug", skip_all, fields(ns))]
    pub async fn create_namespace(&self) -> Result<Issued, Error> {
        let mut issued = self.create(1).await?;
        let issued = issued
            .pop()
            .ok_or_else(|| Error::Internal("no namespace was created".into()))?;
        record_namespace(issued.namespace);
        Ok(issued)
    }

    /// Creates `count` empty namespaces in one transaction and returns their access keys.
    #[tracing::instrument(level = "debug", skip_all, fields(count = count.get()))]
    pub async fn create_namespaces(&self, count: BulkCount) -> Result<Vec<Issued>, Error> {
        self.create(count.get()).await
    }

    async fn create(&self, count: usize) -> Result<Vec<Issued>, Error> {
        let mut issued = Vec::with_capacity(count);
        let mut namespaces = Vec::with_capacity(count);
        for _ in 0..count {
            let id = NamespaceId::generate(&self.random)?;
            let key = AccessKey::generate(&self.random)?;
            // The data key itself is dropped (and wiped) here: nothing is written under it
            // until the first secret arrives, which unwraps it again.
            let (_, data_key) = self
                .envelope
                .new_data_key(id)
                .map_err(|e| Error::from_crypto(e, id))?;
            namespaces.push(NewNamespace {
                id,
                access_hash: key.hash(),
                data_key,
            });
            issued.push(Issued {
                namespace: id,
                access_key: key,
            });
        }
        self.store
            .create_namespaces(&namespaces)
            .await
            .map_err(|e| self.store_error(e, None))?;
        Ok(issued)
    }

    /// Every secret of the namespace, decrypted, ordered by name, tagged with the namespace's
    /// entity tag. This is the hot path: one store round trip, one unwrap, then only local
    /// decryption.
    ///
    /// With `If-None-Match` naming the namespace's current state, it answers
    /// [`Conditional::NotModified`] after one lookup of the namespace's id and revision: no
    /// secret is read and nothing is decrypted, not even the data key.
    #[tracing::instrument(level = "debug", skip_all, fields(ns))]
    pub async fn read_all(
        &self,
        key: &AccessKey,
        condition: &Condition<ETag>,
    ) -> Result<Tagged<Conditional<Plaintexts>>, Error> {
        self.read_namespace(key, condition, |keys, namespace, stored| {
            open_all(keys, namespace.id, stored)
        })
        .await
    }

    /// Names, digests and timestamps of every secret, ordered by name; never a value. Tagged,
    /// and answered conditionally, exactly as [`SecretsService::read_all`]: a listing is a view
    /// of the same namespace at the same revision, so it carries the namespace's entity tag.
    #[tracing::instrument(level = "debug", skip_all, fields(ns))]
    pub async fn list_keys(
        &self,
        key: &AccessKey,
        condition: &Condition<ETag>,
    ) -> Result<Tagged<Conditional<Vec<KeyInfo>>>, Error> {
        self.read_namespace(key, condition, |keys, namespace, stored| {
            let mut listing = stored
                .iter()
                .map(|secret| {
                    let (name, value) = open_one(keys, namespace.id, secret)?;
                    Ok(KeyInfo {
                        name,
                        digest: keys.digest(&value),
                        created_at: secret.created_at,
                        updated_at: secret.updated_at,
                    })
                })
                .collect::<Result<Vec<_>, Error>>()?;
            listing.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(listing)
        })
        .await
    }

    /// The two reads of a whole namespace: the conditional check on the namespace's row alone,
    /// then the read of everything, which `open` decrypts.
    async fn read_namespace<T>(
        &self,
        key: &AccessKey,
        condition: &Condition<ETag>,
        open: impl FnOnce(&C::Keys, &NamespaceRecord, &[StoredSecret]) -> Result<T, Error>,
    ) -> Result<Tagged<Conditional<T>>, Error> {
        let hash = key.hash();
        if !condition.is_none() {
            let (id, revision) = self.find_revision(&hash).await?;
            let resource = Resource::Namespace(id);
            let current = ETag::new(key, &resource, revision);
            if let Some(answer) = check_read(key, condition, &resource, revision, current)? {
                return Ok(answer);
            }
        }
        let (namespace, stored) = self
            .store
            .read_namespace(&hash)
            .await
            .map_err(|e| self.store_error(e, None))?
            .ok_or(Error::NamespaceNotFound)?;
        // The namespace may have moved on since the lookup: what is answered is checked
        // against the state it was read in.
        let resource = Resource::Namespace(namespace.id);
        let current = ETag::new(key, &resource, namespace.revision);
        if let Some(answer) = check_read(key, condition, &resource, namespace.revision, current)? {
            return Ok(answer);
        }
        let keys = self.unwrap(&namespace)?;
        Ok(Tagged {
            namespace: namespace.id,
            etag: ETag::new(key, &resource, namespace.revision),
            value: Conditional::Read(open(&keys, &namespace, &stored)?),
        })
    }

    /// Adds a secret, or replaces the value of the secret with that name, if `condition` holds
    /// for `target` (the namespace, or the secret) inside the store's write. Answers whether the
    /// name was new, tagged with the target's entity tag after the write.
    #[tracing::instrument(level = "debug", skip_all, fields(ns))]
    pub async fn put_secret(
        &self,
        key: &AccessKey,
        name: &SecretName,
        value: &SecretValue,
        condition: &Condition<ETag>,
        target: Target,
    ) -> Result<Tagged<Upserted>, Error> {
        let (namespace, keys) = self.open_checking(key, value.len()).await?;
        let sealed = seal(&keys, namespace.id, name, value)?;
        let resource = match target {
            Target::Namespace => Resource::Namespace(namespace.id),
            Target::Secret => Resource::Secret(namespace.id, name),
        };
        let condition = condition.map(|tag| tag.revision(key, &resource));
        let guard = match target {
            Target::Namespace => Guard {
                namespace: condition,
                ..Guard::default()
            },
            Target::Secret => Guard {
                secret: condition,
                ..Guard::default()
            },
        };
        let written = self
            .store
            .upsert_secret(
                namespace.id,
                &sealed,
                self.limits.max_secrets_per_namespace,
                &guard,
            )
            .await
            .map_err(|e| self.store_error(e, Some(namespace.id)))?;
        Ok(Tagged {
            namespace: namespace.id,
            etag: ETag::new(key, &resource, written.revision),
            value: written.upserted,
        })
    }

    /// One secret with its metadata, tagged with the secret's entity tag. With `If-None-Match`
    /// naming the secret's current version it answers [`Conditional::NotModified`]: when one of
    /// the tags was made while the namespace was at the revision it is still at, after one
    /// lookup of the namespace's revision, reading no secret and unwrapping nothing (see
    /// [`crate::etag`]); otherwise after reading the secret, opening neither name nor value.
    #[tracing::instrument(level = "debug", skip_all, fields(ns))]
    pub async fn get_secret(
        &self,
        key: &AccessKey,
        name: &SecretName,
        condition: &Condition<ETag>,
    ) -> Result<Tagged<Conditional<Secret>>, Error> {
        if let (None, Some(Tags::List(tags))) = (&condition.if_match, &condition.if_none_match) {
            let (id, revision) = self.find_revision(&key.hash()).await?;
            let resource = Resource::Secret(id, name);
            if let Some(tag) = tags
                .iter()
                .find(|tag| tag.seen(key, &resource) == Some(revision))
            {
                return Ok(Tagged {
                    namespace: id,
                    etag: *tag,
                    value: Conditional::NotModified,
                });
            }
        }
        let (namespace, keys) = self.open(key).await?;
        let index = keys.name_index(name);
        let stored = self
            .store
            .get_secret(namespace.id, &index)
            .await
            .map_err(|e| self.store_error(e, Some(namespace.id)))?
            .ok_or(Error::SecretNotFound {
                namespace: namespace.id,
            })?;
        let resource = Resource::Secret(namespace.id, name);
        let etag = ETag::seen_at(key, &resource, stored.version, namespace.revision);
        if let Some(answer) = check_read(key, condition, &resource, stored.version, etag)? {
            return Ok(answer);
        }
        let (name, value) = open_one(&keys, namespace.id, &stored)?;
        Ok(Tagged {
            namespace: namespace.id,
            etag,
            value: Conditional::Read(Secret {
                name,
                value,
                created_at: stored.created_at,
                updated_at: stored.updated_at,
            }),
        })
    }

    /// Deletes one secret, if `condition` holds for it inside the store's delete. A secret that
    /// does not exist is `SecretNotFound`, whatever the condition says.
    #[tracing::instrument(level = "debug", skip_all, fields(ns))]
    pub async fn delete_secret(
        &self,
        key: &AccessKey,
        name: &SecretName,
        condition: &Condition<ETag>,
    ) -> Result<NamespaceId, Error> {
        let (namespace, keys) = self.open(key).await?;
        let index = keys.name_index(name);
        let resource = Resource::Secret(namespace.id, name);
        let guard = Guard {
            secret: condition.map(|tag| tag.revision(key, &resource)),
            ..Guard::default()
        };
        self.store
            .delete_secret(namespace.id, &index, &guard)
            .await
            .map_err(|e| self.store_error(e, Some(namespace.id)))?
            .map(|_| namespace.id)
            .ok_or(Error::SecretNotFound {
                namespace: namespace.id,
            })
    }

    /// Applies a merge patch (RFC 7396) in one transaction, if `condition` holds for the
    /// namespace inside it, and returns the whole namespace after it, tagged with the
    /// namespace's entity tag. Names must be distinct; the HTTP layer refuses duplicate JSON
    /// keys.
    #[tracing::instrument(level = "debug", skip_all, fields(ns, changes = changes.len()))]
    pub async fn patch(
        &self,
        key: &AccessKey,
        changes: &[PatchChange],
        condition: &Condition<ETag>,
    ) -> Result<Tagged<Plaintexts>, Error> {
        let largest = changes
            .iter()
            .filter_map(|(_, value)| value.as_ref().map(SecretValue::len))
            .max()
            .unwrap_or(0);
        let (namespace, keys) = self.open_checking(key, largest).await?;
        let mut upserts = Vec::new();
        let mut deletes = Vec::new();
        for (name, value) in changes {
            match value {
                Some(value) => upserts.push(seal(&keys, namespace.id, name, value)?),
                None => deletes.push(keys.name_index(name)),
            }
        }
        let resource = Resource::Namespace(namespace.id);
        let patched = self
            .store
            .apply_patch(
                namespace.id,
                &upserts,
                &deletes,
                self.limits.max_secrets_per_namespace,
                &condition.map(|tag| tag.revision(key, &resource)),
            )
            .await
            .map_err(|e| self.store_error(e, Some(namespace.id)))?;
        Ok(Tagged {
            namespace: namespace.id,
            etag: ETag::new(key, &resource, patched.revision),
            value: open_all(&keys, namespace.id, &patched.secrets)?,
        })
    }

    /// Deletes the namespace, its secrets and its wrapped data key (crypto-shredding: copies
    /// of its ciphertexts elsewhere can no longer be opened by anyone), if `condition` holds for
    /// it inside the store's delete.
    #[tracing::instrument(level = "debug", skip_all, fields(ns))]
    pub async fn delete_namespace(
        &self,
        key: &AccessKey,
        condition: &Condition<ETag>,
    ) -> Result<NamespaceId, Error> {
        let hash = key.hash();
        // A tag names the namespace by its id, so a conditional delete learns the id first.
        let (condition, known) = if condition.is_none() {
            (Condition::default(), None)
        } else {
            let (id, _) = self.find_revision(&hash).await?;
            (
                condition.map(|tag| tag.revision(key, &Resource::Namespace(id))),
                Some(id),
            )
        };
        let id = self
            .store
            .delete_namespace(&hash, &condition)
            .await
            .map_err(|e| self.store_error(e, known))?
            .ok_or(Error::NamespaceNotFound)?;
        record_namespace(id);
        Ok(id)
    }

    /// Gives the namespace a new access key; the old one stops working at once.
    #[tracing::instrument(level = "debug", skip_all, fields(ns))]
    pub async fn rotate_access_key(&self, key: &AccessKey) -> Result<Issued, Error> {
        let new_key = AccessKey::generate(&self.random)?;
        let id = self
            .store
            .replace_access_hash(&key.hash(), &new_key.hash())
            .await
            .map_err(|e| self.store_error(e, None))?
            .ok_or(Error::NamespaceNotFound)?;
        record_namespace(id);
        Ok(Issued {
            namespace: id,
            access_key: new_key,
        })
    }

    /// Whether the store answers, for readiness.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn ping(&self) -> Result<(), Error> {
        self.store
            .ping()
            .await
            .map_err(|e| self.store_error(e, None))
    }

    /// Checks the configured KEKs against the store, as start-up and `check` do:
    /// every key id that wraps data must be configured, and every configured KEK that has a
    /// stored key check must pass it. The active KEK's check is written if it has none yet.
    ///
    /// This is what keeps a wrong KEK from ever "working": a wrong key has another id, so the
    /// store's data is found to be wrapped under an id that is not configured, and the service
    /// refuses to start before it writes anything.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn check_keys(&self) -> Result<(), KeyCheckError> {
        let configured: HashSet<_> = self.envelope.key_ids().into_iter().collect();
        let mut in_use = self.store.key_ids_in_use().await?;
        in_use.sort();
        if let Some(missing) = in_use.into_iter().find(|id| !configured.contains(id)) {
            return Err(KeyCheckError::MissingKey(missing));
        }
        let active = self.envelope.active_key_id();
        let mut checks = self.store.key_checks().await?;
        if !checks.iter().any(|check| check.key_id == active) {
            let check = self
                .envelope
                .seal_key_check()
                .map_err(|e| KeyCheckError::Internal(Box::new(e)))?;
            self.store.add_key_check(&check).await?;
            // Another replica may have written its own check first; verify what is stored.
            checks = self.store.key_checks().await?;
        }
        for check in checks.iter().filter(|c| configured.contains(&c.key_id)) {
            self.envelope
                .verify_key_check(check)
                .map_err(|error| match error {
                    CryptoError::Internal(source) => KeyCheckError::Internal(source),
                    CryptoError::Integrity | CryptoError::UnknownKey(_) => {
                        KeyCheckError::CheckFailed(check.key_id.clone())
                    }
                })?;
        }
        Ok(())
    }

    /// How many namespaces each KEK id wraps (for `rotate-kek`'s progress and report).
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn key_usage(&self) -> Result<Vec<(KeyId, u64)>, Error> {
        self.store
            .count_by_key_id()
            .await
            .map_err(|e| self.store_error(e, None))
    }

    /// One batch of KEK rotation: re-wraps up to `limit` data keys that are not under the
    /// active KEK, starting after `after`, and stores them in one transaction.
    ///
    /// Safe while the service is serving: the data key itself does not change (so no secret is
    /// re-encrypted and readers holding the old wrapping still open it under the retired KEK),
    /// and the store replaces each wrapping only if it is still the one read (a namespace
    /// deleted or re-wrapped meanwhile is skipped, never resurrected). Resumable: the batch
    /// reads what is still not under the active KEK, so a run stopped anywhere is finished by
    /// running again.
    #[tracing::instrument(level = "debug", skip_all, fields(limit = limit))]
    pub async fn rewrap_batch(
        &self,
        after: Option<NamespaceId>,
        limit: u32,
    ) -> Result<RewrapBatch, Error> {
        let active = self.envelope.active_key_id();
        let batch = self
            .store
            .wrapped_not_under(&active, after, limit)
            .await
            .map_err(|e| self.store_error(e, None))?;
        let mut updates = Vec::with_capacity(batch.len());
        let mut failed = Vec::new();
        for namespace in &batch {
            match self.envelope.rewrap(namespace.id, &namespace.data_key) {
                Ok(wrapped) => updates.push((namespace.clone(), wrapped)),
                Err(error) => failed.push((namespace.id, Error::from_crypto(error, namespace.id))),
            }
        }
        let rewrapped = self
            .store
            .replace_wrapped_keys(&updates)
            .await
            .map_err(|e| self.store_error(e, None))?;
        Ok(RewrapBatch {
            skipped: (updates.len() - rewrapped.len()) as u64,
            rewrapped,
            failed,
            next: batch.last().map(|namespace| namespace.id),
        })
    }

    /// Finds the id and revision of the namespace of `hash`, recording the id in the span.
    async fn find_revision(&self, hash: &AccessKeyHash) -> Result<(NamespaceId, Revision), Error> {
        let (id, revision) = self
            .store
            .find_revision(hash)
            .await
            .map_err(|e| self.store_error(e, None))?
            .ok_or(Error::NamespaceNotFound)?;
        record_namespace(id);
        Ok((id, revision))
    }

    /// Finds the namespace of `key` and unwraps its data key.
    async fn open(&self, key: &AccessKey) -> Result<(NamespaceRecord, C::Keys), Error> {
        self.open_checking(key, 0).await
    }

    /// Finds the namespace of `key`, checks that the largest value to write (`largest` bytes) is
    /// within the limit, and unwraps the data key. A value over the limit is refused as such
    /// whether or not the namespace exists, as it was before the namespace was looked up; when
    /// it exists, the refusal names it.
    async fn open_checking(
        &self,
        key: &AccessKey,
        largest: usize,
    ) -> Result<(NamespaceRecord, C::Keys), Error> {
        let found = self
            .store
            .find_namespace(&key.hash())
            .await
            .map_err(|e| self.store_error(e, None))?;
        let limit = self.limits.max_value_bytes;
        if largest > limit {
            return Err(Error::ValueTooLarge {
                limit,
                namespace: found.map(|namespace| namespace.id),
            });
        }
        let namespace = found.ok_or(Error::NamespaceNotFound)?;
        let keys = self.unwrap(&namespace)?;
        Ok((namespace, keys))
    }

    /// Unwraps the namespace's data key, and records its internal id (which is safe to log) as
    /// the `ns` field of the use case's span.
    pub(crate) fn unwrap(&self, namespace: &NamespaceRecord) -> Result<C::Keys, Error> {
        record_namespace(namespace.id);
        self.envelope
            .open_data_key(namespace.id, &namespace.data_key)
            .map_err(|e| Error::from_crypto(e, namespace.id))
    }

    pub(crate) fn store_error(&self, error: StoreError, ns: Option<NamespaceId>) -> Error {
        Error::from_store(error, self.limits.max_secrets_per_namespace, ns)
    }
}

/// Records the namespace's internal id as the `ns` field of the current use case's span.
fn record_namespace(id: NamespaceId) {
    tracing::Span::current().record("ns", tracing::field::display(id));
}

/// Checks a read's `condition` against `resource` at `revision`: `None` to go on and read it,
/// or the answer that the caller's copy is current (a failed `If-None-Match`). A failed
/// `If-Match` is `PreconditionFailed`.
fn check_read<T>(
    key: &AccessKey,
    condition: &Condition<ETag>,
    resource: &Resource<'_>,
    revision: Revision,
    current: ETag,
) -> Result<Option<Tagged<Conditional<T>>>, Error> {
    let namespace = match resource {
        Resource::Namespace(id) | Resource::Secret(id, _) => *id,
    };
    let condition = condition.map(|tag| tag.revision(key, resource));
    match condition.check(Some(&revision)) {
        Ok(()) => Ok(None),
        Err(Failed::IfNoneMatch) => Ok(Some(Tagged {
            namespace,
            etag: current,
            value: Conditional::NotModified,
        })),
        Err(Failed::IfMatch) => Err(Error::PreconditionFailed { namespace }),
    }
}

pub(crate) fn seal<K: NamespaceKeys>(
    keys: &K,
    ns: NamespaceId,
    name: &SecretName,
    value: &SecretValue,
) -> Result<SealedSecret, Error> {
    let index = keys.name_index(name);
    Ok(SealedSecret {
        name: keys
            .seal_name(&index, name)
            .map_err(|e| Error::from_crypto(e, ns))?,
        value: keys
            .seal_value(&index, value)
            .map_err(|e| Error::from_crypto(e, ns))?,
        index,
    })
}

pub(crate) fn open_one<K: NamespaceKeys>(
    keys: &K,
    ns: NamespaceId,
    stored: &StoredSecret,
) -> Result<(SecretName, SecretValue), Error> {
    let sealed = &stored.sealed;
    let name = keys
        .open_name(&sealed.index, &sealed.name)
        .map_err(|e| Error::from_crypto(e, ns))?;
    let value = keys
        .open_value(&sealed.index, &sealed.value)
        .map_err(|e| Error::from_crypto(e, ns))?;
    Ok((name, value))
}

fn open_all<K: NamespaceKeys>(
    keys: &K,
    ns: NamespaceId,
    stored: &[StoredSecret],
) -> Result<Vec<(SecretName, SecretValue)>, Error> {
    let mut secrets = stored
        .iter()
        .map(|secret| open_one(keys, ns, secret))
        .collect::<Result<Vec<_>, _>>()?;
    secrets.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(secrets)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::etag::Tags;
    use crate::model::KeyId;
    use crate::ports::{KeyCheck, MockSecretStore};
    use crate::testing::{CountingRandom, FakeEnvelope, InMemoryStore};

    type Service = SecretsService<InMemoryStore, FakeEnvelope, CountingRandom>;

    fn service_with(limits: Limits) -> Service {
        SecretsService::new(
            InMemoryStore::new(),
            FakeEnvelope::default(),
            CountingRandom::default(),
            limits,
        )
    }

    fn service() -> Service {
        service_with(Limits::default())
    }

    /// A service on `store` whose envelope has the `active` KEK and the `retired` ones: what a
    /// replica looks like before, during and after a KEK rotation.
    fn with_keys(store: InMemoryStore, active: &str, retired: &[&str]) -> Service {
        SecretsService::new(
            store,
            FakeEnvelope::new(active, retired),
            CountingRandom::default(),
            Limits::default(),
        )
    }

    fn name(text: &str) -> SecretName {
        SecretName::parse(text).expect("valid name")
    }

    fn value(text: &str) -> SecretValue {
        SecretValue::new(text.to_owned())
    }

    /// The use cases without preconditions, answering only what they answered before entity
    /// tags: what most tests here are about.
    trait Plain {
        async fn new_namespace(&self) -> Result<AccessKey, Error>;
        async fn create_many(&self, count: BulkCount) -> Result<Vec<AccessKey>, Error>;
        async fn put(
            &self,
            key: &AccessKey,
            n: &SecretName,
            v: &SecretValue,
        ) -> Result<Upserted, Error>;
        async fn read(&self, key: &AccessKey) -> Result<Vec<(SecretName, SecretValue)>, Error>;
        async fn get(&self, key: &AccessKey, n: &SecretName) -> Result<Secret, Error>;
        async fn keys(&self, key: &AccessKey) -> Result<Vec<KeyInfo>, Error>;
        async fn remove(&self, key: &AccessKey, n: &SecretName) -> Result<(), Error>;
        async fn apply(
            &self,
            key: &AccessKey,
            changes: &[PatchChange],
        ) -> Result<Vec<(SecretName, SecretValue)>, Error>;
        async fn delete(&self, key: &AccessKey) -> Result<(), Error>;
        async fn rotate(&self, key: &AccessKey) -> Result<AccessKey, Error>;
    }

    fn read<T>(tagged: Tagged<Conditional<T>>) -> T {
        match tagged.value {
            Conditional::Read(value) => value,
            Conditional::NotModified => panic!("an unconditional read is never 304"),
        }
    }

    impl<S: SecretStore> Plain for SecretsService<S, FakeEnvelope, CountingRandom> {
        async fn new_namespace(&self) -> Result<AccessKey, Error> {
            Ok(self.create_namespace().await?.access_key)
        }
        async fn create_many(&self, count: BulkCount) -> Result<Vec<AccessKey>, Error> {
            let issued = self.create_namespaces(count).await?;
            Ok(issued.into_iter().map(|i| i.access_key).collect())
        }
        async fn put(
            &self,
            key: &AccessKey,
            n: &SecretName,
            v: &SecretValue,
        ) -> Result<Upserted, Error> {
            let none = Condition::default();
            let tagged = self.put_secret(key, n, v, &none, Target::Namespace).await?;
            Ok(tagged.value)
        }
        async fn read(&self, key: &AccessKey) -> Result<Vec<(SecretName, SecretValue)>, Error> {
            Ok(read(self.read_all(key, &Condition::default()).await?))
        }
        async fn get(&self, key: &AccessKey, n: &SecretName) -> Result<Secret, Error> {
            Ok(read(self.get_secret(key, n, &Condition::default()).await?))
        }
        async fn keys(&self, key: &AccessKey) -> Result<Vec<KeyInfo>, Error> {
            Ok(read(self.list_keys(key, &Condition::default()).await?))
        }
        async fn remove(&self, key: &AccessKey, n: &SecretName) -> Result<(), Error> {
            self.delete_secret(key, n, &Condition::default())
                .await
                .map(drop)
        }
        async fn apply(
            &self,
            key: &AccessKey,
            changes: &[PatchChange],
        ) -> Result<Vec<(SecretName, SecretValue)>, Error> {
            Ok(self.patch(key, changes, &Condition::default()).await?.value)
        }
        async fn delete(&self, key: &AccessKey) -> Result<(), Error> {
            self.delete_namespace(key, &Condition::default())
                .await
                .map(drop)
        }
        async fn rotate(&self, key: &AccessKey) -> Result<AccessKey, Error> {
            Ok(self.rotate_access_key(key).await?.access_key)
        }
    }

    fn plain(secrets: &[(SecretName, SecretValue)]) -> Vec<(String, String)> {
        secrets
            .iter()
            .map(|(n, v)| (n.as_str().to_owned(), v.expose().to_owned()))
            .collect()
    }

    #[tokio::test]
    async fn a_new_namespace_is_empty_and_its_key_is_fresh() {
        let service = service();
        let first = service.new_namespace().await.expect("created");
        let second = service.new_namespace().await.expect("created");
        assert_ne!(first, second);
        assert!(service.read(&first).await.expect("read").is_empty());
    }

    #[tokio::test]
    async fn put_creates_then_updates_and_read_all_returns_plaintexts_by_name() {
        let service = service();
        let key = service.new_namespace().await.expect("created");
        let put = |n: &'static str, v: &'static str| {
            let service = &service;
            let key = &key;
            async move { service.put(key, &name(n), &value(v)).await }
        };
        assert_eq!(put("B", "1").await.expect("put"), Upserted::Created);
        assert_eq!(put("A", "2").await.expect("put"), Upserted::Created);
        assert_eq!(put("B", "3").await.expect("put"), Upserted::Updated);
        let all = service.read(&key).await.expect("read");
        assert_eq!(
            plain(&all),
            [("A".into(), "2".into()), ("B".into(), "3".into())]
        );
    }

    #[tokio::test]
    async fn one_secret_reads_with_its_metadata_and_a_missing_one_is_not_found() {
        let service = service();
        let key = service.new_namespace().await.expect("created");
        service
            .put(&key, &name("TOKEN"), &value("t0"))
            .await
            .expect("put");
        let secret = service.get(&key, &name("TOKEN")).await.expect("get");
        assert_eq!(secret.value.expose(), "t0");
        assert!(secret.updated_at >= secret.created_at);
        assert!(matches!(
            service.get(&key, &name("OTHER")).await,
            Err(Error::SecretNotFound { .. })
        ));
    }

    #[tokio::test]
    async fn an_unknown_access_key_is_namespace_not_found_everywhere() {
        let service = service();
        let stranger = AccessKey::generate(&CountingRandom::default()).expect("key");
        let n = name("A");
        assert!(matches!(
            service.read(&stranger).await,
            Err(Error::NamespaceNotFound)
        ));
        assert!(matches!(
            service.put(&stranger, &n, &value("x")).await,
            Err(Error::NamespaceNotFound)
        ));
        assert!(matches!(
            service.get(&stranger, &n).await,
            Err(Error::NamespaceNotFound)
        ));
        assert!(matches!(
            service.keys(&stranger).await,
            Err(Error::NamespaceNotFound)
        ));
        assert!(matches!(
            service.delete(&stranger).await,
            Err(Error::NamespaceNotFound)
        ));
        assert!(matches!(
            service.rotate(&stranger).await,
            Err(Error::NamespaceNotFound)
        ));
    }

    #[tokio::test]
    async fn a_value_over_the_limit_is_refused_and_nothing_is_written() {
        let service = service_with(Limits {
            max_value_bytes: 4,
            max_secrets_per_namespace: 10,
        });
        let key = service.new_namespace().await.expect("created");
        assert!(service.put(&key, &name("A"), &value("1234")).await.is_ok());
        let refused = service.put(&key, &name("A"), &value("12345")).await;
        assert!(matches!(
            refused,
            Err(Error::ValueTooLarge { limit: 4, .. })
        ));
        let refused = service
            .apply(
                &key,
                &[
                    (name("B"), Some(value("x"))),
                    (name("A"), Some(value("too long"))),
                ],
            )
            .await;
        assert!(matches!(
            refused,
            Err(Error::ValueTooLarge { limit: 4, .. })
        ));
        assert_eq!(
            plain(&service.read(&key).await.expect("read")),
            [("A".into(), "1234".into())]
        );
    }

    #[tokio::test]
    async fn the_secret_limit_refuses_new_names_but_not_updates() {
        let service = service_with(Limits {
            max_value_bytes: 100,
            max_secrets_per_namespace: 2,
        });
        let key = service.new_namespace().await.expect("created");
        for n in ["A", "B"] {
            service.put(&key, &name(n), &value("v")).await.expect("put");
        }
        assert!(matches!(
            service.put(&key, &name("C"), &value("v")).await,
            Err(Error::NamespaceFull { limit: 2, .. })
        ));
        assert_eq!(
            service
                .put(&key, &name("A"), &value("w"))
                .await
                .expect("update"),
            Upserted::Updated
        );
        // A patch that deletes one name and adds another stays within the limit.
        let after = service
            .apply(&key, &[(name("A"), None), (name("C"), Some(value("c")))])
            .await
            .expect("patch");
        assert_eq!(
            plain(&after),
            [("B".into(), "v".into()), ("C".into(), "c".into())]
        );
        // One that adds more than it deletes is refused whole.
        let refused = service
            .apply(
                &key,
                &[
                    (name("B"), Some(value("changed"))),
                    (name("D"), Some(value("d"))),
                ],
            )
            .await;
        assert!(matches!(
            refused,
            Err(Error::NamespaceFull { limit: 2, .. })
        ));
        assert_eq!(
            plain(&service.read(&key).await.expect("read")),
            plain(&after)
        );
    }

    #[tokio::test]
    async fn a_patch_sets_and_deletes_and_answers_the_whole_namespace() {
        let service = service();
        let key = service.new_namespace().await.expect("created");
        service
            .put(&key, &name("KEEP"), &value("k"))
            .await
            .expect("put");
        service
            .put(&key, &name("DROP"), &value("d"))
            .await
            .expect("put");
        let after = service
            .apply(
                &key,
                &[
                    (name("DROP"), None),
                    (name("NEW"), Some(value("n"))),
                    (name("ABSENT"), None),
                ],
            )
            .await
            .expect("patch");
        assert_eq!(
            plain(&after),
            [("KEEP".into(), "k".into()), ("NEW".into(), "n".into())]
        );
    }

    #[tokio::test]
    async fn deleting_a_secret_twice_is_not_found_the_second_time() {
        let service = service();
        let key = service.new_namespace().await.expect("created");
        service
            .put(&key, &name("A"), &value("a"))
            .await
            .expect("put");
        service.remove(&key, &name("A")).await.expect("deleted");
        assert!(matches!(
            service.remove(&key, &name("A")).await,
            Err(Error::SecretNotFound { .. })
        ));
        assert!(service.read(&key).await.expect("read").is_empty());
    }

    #[tokio::test]
    async fn key_listings_carry_digests_that_follow_the_value() {
        let service = service();
        let key = service.new_namespace().await.expect("created");
        service
            .put(&key, &name("A"), &value("one"))
            .await
            .expect("put");
        let before = service.keys(&key).await.expect("list");
        service
            .put(&key, &name("A"), &value("two"))
            .await
            .expect("put");
        let after = service.keys(&key).await.expect("list");
        assert_eq!(before.len(), 1);
        assert_eq!(after[0].name.as_str(), "A");
        assert_ne!(before[0].digest, after[0].digest);
    }

    #[tokio::test]
    async fn a_deleted_namespace_is_gone() {
        let service = service();
        let key = service.new_namespace().await.expect("created");
        service
            .put(&key, &name("A"), &value("a"))
            .await
            .expect("put");
        service.delete(&key).await.expect("deleted");
        assert!(matches!(
            service.read(&key).await,
            Err(Error::NamespaceNotFound)
        ));
    }

    #[tokio::test]
    async fn a_rotated_access_key_replaces_the_old_one_at_once() {
        let service = service();
        let old = service.new_namespace().await.expect("created");
        service
            .put(&old, &name("A"), &value("a"))
            .await
            .expect("put");
        let new = service.rotate(&old).await.expect("rotated");
        assert!(matches!(
            service.read(&old).await,
            Err(Error::NamespaceNotFound)
        ));
        assert_eq!(
            plain(&service.read(&new).await.expect("read")),
            [("A".into(), "a".into())]
        );
    }

    #[tokio::test]
    async fn bulk_creation_returns_distinct_working_keys() {
        let service = service();
        let keys = service
            .create_many(BulkCount::parse(25).expect("count"))
            .await
            .expect("created");
        assert_eq!(keys.len(), 25);
        for key in &keys {
            assert!(service.read(key).await.expect("read").is_empty());
        }
        let hashes: HashSet<_> = keys
            .iter()
            .map(AccessKey::hash)
            .map(|h| *h.as_bytes())
            .collect();
        assert_eq!(hashes.len(), 25);
    }

    /// A store that answers every read with data sealed for another namespace, as if a row had
    /// been copied across namespaces in the database.
    #[tokio::test]
    async fn a_ciphertext_from_another_namespace_is_an_integrity_error_naming_the_namespace() {
        let envelope = FakeEnvelope::default();
        let random = CountingRandom::default();
        let victim = NamespaceId::generate(&random).expect("id");
        let other = NamespaceId::generate(&random).expect("id");
        let (other_keys, _) = envelope.new_data_key(other).expect("key");
        let (_, victim_wrapped) = envelope.new_data_key(victim).expect("key");
        let n = name("A");
        let index = other_keys.name_index(&n);
        let copied = StoredSecret {
            sealed: SealedSecret {
                index,
                name: other_keys.seal_name(&index, &n).expect("seal"),
                value: other_keys
                    .seal_value(&index, &value("theirs"))
                    .expect("seal"),
            },
            created_at: time::OffsetDateTime::UNIX_EPOCH,
            updated_at: time::OffsetDateTime::UNIX_EPOCH,
            version: Revision::INITIAL,
        };
        let mut store = MockSecretStore::new();
        store.expect_read_namespace().returning(move |_| {
            Ok(Some((
                NamespaceRecord {
                    id: victim,
                    data_key: victim_wrapped.clone(),
                    revision: Revision::INITIAL,
                },
                vec![copied.clone()],
            )))
        });
        let service = SecretsService::new(store, envelope, random, Limits::default());
        let key = AccessKey::generate(&CountingRandom::default()).expect("key");
        match service.read(&key).await {
            Err(Error::Integrity { namespace }) => assert_eq!(namespace, victim),
            other => panic!("expected an integrity error, got {other:?}"),
        }
    }

    /// A service whose store answers exactly `lookups` revision lookups (namespace `id` at
    /// `revision`) and fails the test if a namespace or secret is read or a data key opened.
    fn revision_lookups_only(
        random: CountingRandom,
        id: NamespaceId,
        revision: Revision,
        lookups: usize,
    ) -> SecretsService<MockSecretStore, crate::ports::MockEnvelope, CountingRandom> {
        let mut store = MockSecretStore::new();
        store
            .expect_find_revision()
            .times(lookups)
            .returning(move |_| Ok(Some((id, revision))));
        store.expect_read_namespace().never();
        store.expect_find_namespace().never();
        store.expect_get_secret().never();
        let mut envelope = crate::ports::MockEnvelope::new();
        envelope.expect_open_data_key().never();
        SecretsService::new(store, envelope, random, Limits::default())
    }

    /// `If-None-Match: <tag>`.
    fn if_none_match(tag: ETag) -> Condition<ETag> {
        Condition {
            if_match: None,
            if_none_match: Some(Tags::List(vec![tag])),
        }
    }

    /// The worker's re-read of an unchanged namespace: one lookup of the namespace's id and
    /// revision, then 304. The mocks fail the test if a secret is read or anything decrypted.
    #[tokio::test]
    async fn an_unchanged_namespace_is_not_modified_without_reading_or_decrypting_anything() {
        let random = CountingRandom::default();
        let id = NamespaceId::generate(&random).expect("id");
        let key = AccessKey::generate(&random).expect("key");
        let revision = Revision::new(7).expect("revision");
        let current = ETag::new(&key, &Resource::Namespace(id), revision);
        let service = revision_lookups_only(random, id, revision, 2);
        let condition = if_none_match(current);
        let read = service.read_all(&key, &condition).await.expect("read");
        assert!(matches!(read.value, Conditional::NotModified));
        assert_eq!((read.namespace, read.etag), (id, current));
        let listed = service.list_keys(&key, &condition).await.expect("list");
        assert!(matches!(listed.value, Conditional::NotModified));
    }

    #[tokio::test]
    async fn an_unchanged_secret_is_not_modified_after_one_lookup_of_its_namespace() {
        let random = CountingRandom::default();
        let id = NamespaceId::generate(&random).expect("id");
        let key = AccessKey::generate(&random).expect("key");
        let name = name("DB_URL");
        let resource = Resource::Secret(id, &name);
        let revision = Revision::new(9).expect("revision");
        // Read when the namespace was at 9; the secret was last written at 4.
        let current = ETag::seen_at(&key, &resource, Revision::new(4).expect("v"), revision);
        let service = revision_lookups_only(random, id, revision, 1);
        let condition = if_none_match(current);
        let read = service
            .get_secret(&key, &name, &condition)
            .await
            .expect("read");
        assert!(matches!(read.value, Conditional::NotModified));
        assert_eq!((read.namespace, read.etag), (id, current));
    }

    #[tokio::test]
    async fn a_secret_read_after_another_write_is_not_modified_when_it_did_not_change() {
        let service = service();
        let key = service.new_namespace().await.expect("created");
        service
            .put(&key, &name("A"), &value("1"))
            .await
            .expect("put");
        let first = service
            .get_secret(&key, &name("A"), &Condition::default())
            .await
            .expect("read");
        // Another secret is written: the namespace moves on, A does not.
        service
            .put(&key, &name("B"), &value("2"))
            .await
            .expect("put");
        let condition = if_none_match(first.etag);
        let again = service
            .get_secret(&key, &name("A"), &condition)
            .await
            .expect("read");
        assert!(matches!(again.value, Conditional::NotModified));
        // Now A changes: the old tag no longer holds.
        service
            .put(&key, &name("A"), &value("3"))
            .await
            .expect("put");
        let changed = service
            .get_secret(&key, &name("A"), &condition)
            .await
            .expect("read");
        assert!(matches!(changed.value, Conditional::Read(_)));
    }

    #[tokio::test]
    async fn a_write_with_the_entity_tag_it_read_goes_through_once() {
        let service = service();
        let key = service.new_namespace().await.expect("created");
        service
            .put(&key, &name("A"), &value("1"))
            .await
            .expect("put");
        let read = service
            .read_all(&key, &Condition::default())
            .await
            .expect("read");
        let if_match = Condition {
            if_match: Some(Tags::List(vec![read.etag])),
            if_none_match: None,
        };
        let written = service
            .put_secret(&key, &name("B"), &value("2"), &if_match, Target::Namespace)
            .await
            .expect("the tag is current");
        assert_eq!(written.namespace, read.namespace);
        assert_ne!(written.etag, read.etag, "the write moved the namespace");
        match service
            .put_secret(&key, &name("C"), &value("3"), &if_match, Target::Namespace)
            .await
        {
            Err(Error::PreconditionFailed { namespace }) => assert_eq!(namespace, read.namespace),
            other => panic!("expected a failed precondition, got {other:?}"),
        }
        match service.remove(&key, &name("NONE")).await {
            Err(error) => assert_eq!(error.namespace(), Some(read.namespace)),
            Ok(()) => panic!("there is no such secret"),
        }
        assert_eq!(
            plain(&service.read(&key).await.expect("read")),
            [("A".into(), "1".into()), ("B".into(), "2".into())]
        );
        // The tag of the namespace now: the write answered it.
        let now = service
            .read_all(&key, &Condition::default())
            .await
            .expect("read");
        assert_eq!(now.etag, written.etag);
    }

    #[tokio::test]
    async fn every_refusal_after_the_namespace_was_found_names_it() {
        let service = service_with(Limits {
            max_value_bytes: 4,
            max_secrets_per_namespace: 1,
        });
        let issued = service.create_namespace().await.expect("created");
        let (key, id) = (&issued.access_key, Some(issued.namespace));
        service
            .put(key, &name("A"), &value("a"))
            .await
            .expect("put");
        let stranger = AccessKey::generate(&CountingRandom::default()).expect("key");
        let none = Condition::default();
        let refusals = [
            (
                "too large",
                service.put(key, &name("A"), &value("12345")).await.err(),
            ),
            (
                "full",
                service.put(key, &name("B"), &value("b")).await.err(),
            ),
            ("no such secret", service.get(key, &name("B")).await.err()),
            (
                "no such secret to delete",
                service.remove(key, &name("B")).await.err(),
            ),
        ];
        for (why, error) in refusals {
            assert_eq!(error.expect(why).namespace(), id, "{why}");
        }
        let patched = service
            .patch(key, &[(name("B"), Some(value("b")))], &none)
            .await;
        assert_eq!(patched.expect_err("full").namespace(), id);
        // Refused before any namespace is found: nothing to name.
        let too_large = service.put(&stranger, &name("A"), &value("12345")).await;
        assert!(matches!(
            too_large,
            Err(Error::ValueTooLarge {
                namespace: None,
                ..
            })
        ));
        let unknown = service.read_all(&stranger, &none).await;
        assert_eq!(unknown.expect_err("unknown").namespace(), None);
    }

    #[tokio::test]
    async fn an_unreachable_store_is_unavailable_not_internal() {
        let mut store = MockSecretStore::new();
        store
            .expect_find_namespace()
            .returning(|_| Err(StoreError::Unavailable("connection refused".into())));
        store
            .expect_create_namespaces()
            .returning(|_| Err(StoreError::Unavailable("connection refused".into())));
        let service = SecretsService::new(
            store,
            FakeEnvelope::default(),
            CountingRandom::default(),
            Limits::default(),
        );
        let key = AccessKey::generate(&CountingRandom::default()).expect("key");
        assert!(matches!(
            service.put(&key, &name("A"), &value("a")).await,
            Err(Error::Unavailable(_))
        ));
        assert!(matches!(
            service.new_namespace().await,
            Err(Error::Unavailable(_))
        ));
    }

    #[tokio::test]
    async fn a_namespace_wrapped_under_an_unconfigured_key_names_that_key() {
        let old = with_keys(InMemoryStore::new(), "old-kek", &[]);
        let key = old.new_namespace().await.expect("created");
        let SecretsService { store, .. } = old;
        let new = with_keys(store, "new-kek", &[]);
        match new.read(&key).await {
            Err(Error::UnknownKey { key_id, .. }) => assert_eq!(key_id, KeyId::new("old-kek")),
            other => panic!("expected an unknown key error, got {other:?}"),
        }
        match new.check_keys().await {
            Err(KeyCheckError::MissingKey(id)) => assert_eq!(id, KeyId::new("old-kek")),
            other => panic!("expected a missing key, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn the_key_check_is_written_once_and_verified() {
        let service = service();
        service
            .check_keys()
            .await
            .expect("first start writes the check");
        let checks = service.store().key_checks().await.expect("checks");
        assert_eq!(checks.len(), 1);
        assert_eq!(checks[0].key_id, KeyId::new("fake-kek"));
        service
            .check_keys()
            .await
            .expect("second start verifies it");
        assert_eq!(service.store().key_checks().await.expect("checks"), checks);
    }

    #[tokio::test]
    async fn a_key_check_that_fails_refuses_naming_the_key_id() {
        let service = service();
        service
            .store()
            .add_key_check(&KeyCheck {
                key_id: KeyId::new("fake-kek"),
                ciphertext: b"sealed by another key".to_vec(),
            })
            .await
            .expect("stored");
        match service.check_keys().await {
            Err(KeyCheckError::CheckFailed(id)) => assert_eq!(id, KeyId::new("fake-kek")),
            other => panic!("expected a failed check, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn rotation_rewraps_every_data_key_in_batches_and_secrets_still_read() {
        let old = with_keys(InMemoryStore::new(), "old-kek", &[]);
        let keys = old
            .create_many(BulkCount::parse(7).expect("count"))
            .await
            .expect("created");
        old.put(&keys[0], &name("A"), &value("a"))
            .await
            .expect("put");
        let before = old
            .read_all(&keys[0], &Condition::default())
            .await
            .expect("read")
            .etag;
        let SecretsService { store, .. } = old;
        let rotated = with_keys(store, "new-kek", &["old-kek"]);
        rotated
            .check_keys()
            .await
            .expect("old key is configured as retired");
        assert_eq!(
            rotated.key_usage().await.expect("usage"),
            [(KeyId::new("old-kek"), 7)]
        );
        let mut after = None;
        let mut rewrapped = 0;
        let mut batches = 0;
        loop {
            let batch = rotated.rewrap_batch(after, 3).await.expect("batch");
            assert!(batch.failed.is_empty());
            rewrapped += batch.rewrapped.len() as u64;
            batches += 1;
            match batch.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        assert_eq!((rewrapped, batches), (7, 4));
        assert_eq!(
            rotated.key_usage().await.expect("usage"),
            [(KeyId::new("new-kek"), 7)]
        );
        // The retired key is no longer needed.
        let SecretsService { store, .. } = rotated;
        let current = with_keys(store, "new-kek", &[]);
        current
            .check_keys()
            .await
            .expect("nothing is wrapped under old-kek any more");
        assert_eq!(
            plain(&current.read(&keys[0]).await.expect("read")),
            [("A".into(), "a".into())]
        );
        let after = current
            .read_all(&keys[0], &Condition::default())
            .await
            .expect("read");
        assert_eq!(after.etag, before, "a KEK rotation changes no entity tag");
    }
}
