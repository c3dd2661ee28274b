//! The use cases: every operation on namespaces and secrets, over the ports.
//!
//! A request's life here is always the same three steps: find the namespace by the hash of
//! the caller's access key, unwrap its data key, then seal or open secrets with it. The
//! service holds no state of its own between requests (no cache): every replica answers from
//! the store, so a key rotated or a namespace deleted on one replica is refused on all of them
//! at once.

use std::collections::HashSet;

use crate::error::{Error, KeyCheckError};
use crate::model::{
    AccessKey, BulkCount, KeyInfo, Limits, NamespaceId, Secret, SecretName, SecretValue,
};
use crate::ports::{
    CryptoError, Envelope, NamespaceKeys, NamespaceRecord, NewNamespace, Random, SealedSecret,
    SecretStore, StoreError, StoredSecret, Upserted,
};

/// One change of a merge patch: set a name to a value, or delete it (`None`).
pub type PatchChange = (SecretName, Option<SecretValue>);

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

    /// Creates one empty namespace and returns its access key, which is shown only this once.
    pub async fn create_namespace(&self) -> Result<AccessKey, Error> {
        let mut keys = self.create(1).await?;
        keys.pop()
            .ok_or_else(|| Error::Internal("no namespace was created".into()))
    }

    /// Creates `count` empty namespaces in one transaction and returns their access keys.
    pub async fn create_namespaces(&self, count: BulkCount) -> Result<Vec<AccessKey>, Error> {
        self.create(count.get()).await
    }

    async fn create(&self, count: usize) -> Result<Vec<AccessKey>, Error> {
        let mut keys = Vec::with_capacity(count);
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
            keys.push(key);
        }
        self.store
            .create_namespaces(&namespaces)
            .await
            .map_err(|e| self.store_error(e))?;
        Ok(keys)
    }

    /// Every secret of the namespace, decrypted, ordered by name. This is the hot path: one
    /// store round trip, one unwrap, then only local decryption.
    pub async fn read_all(&self, key: &AccessKey) -> Result<Vec<(SecretName, SecretValue)>, Error> {
        let (namespace, stored) = self
            .store
            .read_namespace(&key.hash())
            .await
            .map_err(|e| self.store_error(e))?
            .ok_or(Error::NamespaceNotFound)?;
        let keys = self.unwrap(&namespace)?;
        open_all(&keys, namespace.id, &stored)
    }

    /// Adds a secret, or replaces the value of the secret with that name.
    pub async fn put_secret(
        &self,
        key: &AccessKey,
        name: &SecretName,
        value: &SecretValue,
    ) -> Result<Upserted, Error> {
        self.check_value(value)?;
        let (namespace, keys) = self.open(key).await?;
        let sealed = seal(&keys, namespace.id, name, value)?;
        self.store
            .upsert_secret(namespace.id, &sealed, self.limits.max_secrets_per_namespace)
            .await
            .map_err(|e| self.store_error(e))
    }

    /// One secret with its metadata.
    pub async fn get_secret(&self, key: &AccessKey, name: &SecretName) -> Result<Secret, Error> {
        let (namespace, keys) = self.open(key).await?;
        let index = keys.name_index(name);
        let stored = self
            .store
            .get_secret(namespace.id, &index)
            .await
            .map_err(|e| self.store_error(e))?
            .ok_or(Error::SecretNotFound)?;
        let (name, value) = open_one(&keys, namespace.id, &stored)?;
        Ok(Secret {
            name,
            value,
            created_at: stored.created_at,
            updated_at: stored.updated_at,
        })
    }

    /// Deletes one secret.
    pub async fn delete_secret(&self, key: &AccessKey, name: &SecretName) -> Result<(), Error> {
        let (namespace, keys) = self.open(key).await?;
        let deleted = self
            .store
            .delete_secret(namespace.id, &keys.name_index(name))
            .await
            .map_err(|e| self.store_error(e))?;
        if deleted {
            Ok(())
        } else {
            Err(Error::SecretNotFound)
        }
    }

    /// Applies a merge patch (RFC 7396) in one transaction and returns the whole namespace
    /// after it. Names must be distinct; the HTTP layer refuses duplicate JSON keys.
    pub async fn patch(
        &self,
        key: &AccessKey,
        changes: &[PatchChange],
    ) -> Result<Vec<(SecretName, SecretValue)>, Error> {
        for (_, value) in changes {
            if let Some(value) = value {
                self.check_value(value)?;
            }
        }
        let (namespace, keys) = self.open(key).await?;
        let mut upserts = Vec::new();
        let mut deletes = Vec::new();
        for (name, value) in changes {
            match value {
                Some(value) => upserts.push(seal(&keys, namespace.id, name, value)?),
                None => deletes.push(keys.name_index(name)),
            }
        }
        let stored = self
            .store
            .apply_patch(
                namespace.id,
                &upserts,
                &deletes,
                self.limits.max_secrets_per_namespace,
            )
            .await
            .map_err(|e| self.store_error(e))?;
        open_all(&keys, namespace.id, &stored)
    }

    /// Names, digests and timestamps of every secret, ordered by name; never a value.
    pub async fn list_keys(&self, key: &AccessKey) -> Result<Vec<KeyInfo>, Error> {
        let (namespace, stored) = self
            .store
            .read_namespace(&key.hash())
            .await
            .map_err(|e| self.store_error(e))?
            .ok_or(Error::NamespaceNotFound)?;
        let keys = self.unwrap(&namespace)?;
        let mut listing = stored
            .iter()
            .map(|secret| {
                let (name, value) = open_one(&keys, namespace.id, secret)?;
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
    }

    /// Deletes the namespace, its secrets and its wrapped data key (crypto-shredding: copies
    /// of its ciphertexts elsewhere can no longer be opened by anyone).
    pub async fn delete_namespace(&self, key: &AccessKey) -> Result<(), Error> {
        let deleted = self
            .store
            .delete_namespace(&key.hash())
            .await
            .map_err(|e| self.store_error(e))?;
        if deleted {
            Ok(())
        } else {
            Err(Error::NamespaceNotFound)
        }
    }

    /// Gives the namespace a new access key; the old one stops working at once.
    pub async fn rotate_access_key(&self, key: &AccessKey) -> Result<AccessKey, Error> {
        let new_key = AccessKey::generate(&self.random)?;
        let replaced = self
            .store
            .replace_access_hash(&key.hash(), &new_key.hash())
            .await
            .map_err(|e| self.store_error(e))?;
        if replaced {
            Ok(new_key)
        } else {
            Err(Error::NamespaceNotFound)
        }
    }

    /// Whether the store answers, for readiness.
    pub async fn ping(&self) -> Result<(), Error> {
        self.store.ping().await.map_err(|e| self.store_error(e))
    }

    /// Checks the configured KEKs against the store, as start-up and `check` do:
    /// every key id that wraps data must be configured, and every configured KEK that has a
    /// stored key check must pass it. The active KEK's check is written if it has none yet.
    ///
    /// This is what keeps a wrong KEK from ever "working": a wrong key has another id, so the
    /// store's data is found to be wrapped under an id that is not configured, and the service
    /// refuses to start before it writes anything.
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

    /// Finds the namespace of `key` and unwraps its data key.
    async fn open(&self, key: &AccessKey) -> Result<(NamespaceRecord, C::Keys), Error> {
        let namespace = self
            .store
            .find_namespace(&key.hash())
            .await
            .map_err(|e| self.store_error(e))?
            .ok_or(Error::NamespaceNotFound)?;
        let keys = self.unwrap(&namespace)?;
        Ok((namespace, keys))
    }

    fn unwrap(&self, namespace: &NamespaceRecord) -> Result<C::Keys, Error> {
        self.envelope
            .open_data_key(namespace.id, &namespace.data_key)
            .map_err(|e| Error::from_crypto(e, namespace.id))
    }

    fn check_value(&self, value: &SecretValue) -> Result<(), Error> {
        if value.len() > self.limits.max_value_bytes {
            return Err(Error::ValueTooLarge {
                limit: self.limits.max_value_bytes,
            });
        }
        Ok(())
    }

    fn store_error(&self, error: StoreError) -> Error {
        Error::from_store(error, self.limits.max_secrets_per_namespace)
    }
}

fn seal<K: NamespaceKeys>(
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

fn open_one<K: NamespaceKeys>(
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
