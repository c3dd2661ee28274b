//! Reading the service this one replaces: its PostgreSQL database and its encryption, for
//! `secrets-service import-original` (see `secrets_domain::import` for the import's rules).
//!
//! - `source`: [`OriginalDatabase`], a read-only snapshot of the original's database, in
//!   batches of namespaces with their secret rows; [`SourceNamespace::fingerprint`].
//! - `cipher`: [`OriginalKey`], the original's AES-256-CBC (the `aes` and `cbc` crates: ring
//!   has no CBC), and Latin-1 as the original returns text.
//! - this file: [`OriginalCipher`], which turns a [`SourceNamespace`] into the domain's
//!   [`OriginalNamespace`], decrypted.

mod cipher;
mod source;

use secrets_domain::import::{OriginalId, OriginalNamespace, OriginalSecret};
use secrets_domain::model::{AccessKeyHash, AccessKind, SecretValue};

pub use cipher::{OriginalKey, Undecryptable, latin1};
pub use source::{OriginalDatabase, SourceError, SourceNamespace, SourceSecret};

/// Why a namespace of the original cannot be imported at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NamespaceFailure {
    /// Its `"accessKeyHash"` is not 64 hex digits.
    #[error("its stored access key hash is not 64 hex digits")]
    AccessHash,
    /// Its key does not decrypt under `ENCRYPTION_SECRET` to a namespace key.
    #[error("its key does not decrypt under ORIGINAL_ENCRYPTION_SECRET")]
    NamespaceKey,
}

/// The original's `ENCRYPTION_SECRET`, ready to decrypt namespaces.
#[derive(Debug)]
pub struct OriginalCipher(OriginalKey);

impl OriginalCipher {
    /// The cipher of the secret's bytes.
    #[must_use]
    pub fn new(encryption_secret: &[u8]) -> Self {
        Self(OriginalKey::derive(encryption_secret))
    }

    /// Whether the namespace's key decrypts to a namespace key (the wrong-secret check).
    #[must_use]
    pub fn opens(&self, namespace: &SourceNamespace) -> bool {
        self.0.open_namespace_key(&namespace.encryption_key).is_ok()
    }

    /// Decrypts a namespace and its secrets. A secret row that does not decrypt is counted in
    /// `undecryptable`, and the rest are kept.
    pub fn decrypt(
        &self,
        namespace: &SourceNamespace,
    ) -> Result<OriginalNamespace, NamespaceFailure> {
        let mut digest = [0u8; 32];
        hex::decode_to_slice(&namespace.access_hash, &mut digest)
            .map_err(|_| NamespaceFailure::AccessHash)?;
        let key = self
            .0
            .open_namespace_key(&namespace.encryption_key)
            .map_err(|_| NamespaceFailure::NamespaceKey)?;
        let mut secrets = Vec::with_capacity(namespace.secrets.len());
        let mut undecryptable = 0;
        for row in &namespace.secrets {
            match (key.open(&row.key), key.open(&row.value)) {
                (Ok(name), Ok(value)) => {
                    let mut value = latin1(&value);
                    secrets.push(OriginalSecret {
                        name: latin1(&name),
                        value: SecretValue::new(std::mem::take(&mut *value)),
                        created_at: row.created_at,
                        listed_at: row.key.clone(),
                    });
                }
                _ => undecryptable += 1,
            }
        }
        Ok(OriginalNamespace {
            id: OriginalId::from_uuid(namespace.id),
            access_hash: AccessKeyHash::new(AccessKind::Original, digest),
            fingerprint: namespace.fingerprint(),
            secrets,
            undecryptable,
        })
    }
}
