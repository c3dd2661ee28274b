//! The outcomes a caller of the use cases can act on.

use crate::model::{KeyId, NamespaceId};
use crate::ports::{CryptoError, RandomError, Source, StoreError};

/// Why a use case did not succeed. Each variant is something a caller acts on differently;
/// the HTTP layer maps every one of them, exhaustively, to a status and an error code.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No namespace has this access key (or the key is malformed).
    #[error("namespace not found")]
    NamespaceNotFound,
    /// The namespace has no secret of that name.
    #[error("secret not found")]
    SecretNotFound,
    /// Adding the secret would pass the per-namespace limit.
    #[error("the namespace already holds its maximum of {limit} secrets")]
    NamespaceFull {
        /// The configured limit.
        limit: u32,
    },
    /// The value is larger than the configured limit.
    #[error("the value is larger than the limit of {limit} bytes")]
    ValueTooLarge {
        /// The configured limit, in bytes.
        limit: usize,
    },
    /// A stored ciphertext of this namespace failed authentication: tampered, copied from
    /// elsewhere, or wrapped under another key. Only the internal id is kept, for the log.
    #[error("stored data of namespace {namespace} failed authentication")]
    Integrity {
        /// The namespace whose data failed.
        namespace: NamespaceId,
    },
    /// A namespace's data key is wrapped under a KEK that is not configured.
    #[error("namespace {namespace} is wrapped under key id {key_id}, which is not configured")]
    UnknownKey {
        /// The namespace whose data key could not be unwrapped.
        namespace: NamespaceId,
        /// The missing KEK's id.
        key_id: KeyId,
    },
    /// The store cannot be reached; retrying later may succeed.
    #[error("the store is unavailable")]
    Unavailable(#[source] Source),
    /// A bug or an unexpected failure; the source chain is for the log only.
    #[error("internal error")]
    Internal(#[source] Source),
}

impl Error {
    /// Maps a store error; `limit` is the secret limit the store enforced, for the message.
    pub(crate) fn from_store(error: StoreError, limit: u32) -> Self {
        match error {
            StoreError::NamespaceNotFound => Self::NamespaceNotFound,
            StoreError::NamespaceFull => Self::NamespaceFull { limit },
            StoreError::Unavailable(source) => Self::Unavailable(source),
            StoreError::Conflict => Self::Internal("unexpected unique key conflict".into()),
            StoreError::Internal(source) => Self::Internal(source),
        }
    }

    /// Maps a crypto error met while working on namespace `ns`.
    pub(crate) fn from_crypto(error: CryptoError, ns: NamespaceId) -> Self {
        match error {
            CryptoError::Integrity => Self::Integrity { namespace: ns },
            CryptoError::UnknownKey(key_id) => Self::UnknownKey {
                namespace: ns,
                key_id,
            },
            CryptoError::Internal(source) => Self::Internal(source),
        }
    }
}

impl From<RandomError> for Error {
    fn from(error: RandomError) -> Self {
        Self::Internal(Box::new(error))
    }
}

/// Why the configured keys do not fit the store (checked at start-up and by `check`).
#[derive(Debug, thiserror::Error)]
pub enum KeyCheckError {
    /// The store holds data wrapped under a KEK that is not configured.
    #[error(
        "the store holds data keys wrapped under key id {0}, which is neither the active nor a \
         retired key-encryption key; configure that key (KEY_ENCRYPTION_KEY or \
         KEY_ENCRYPTION_KEYS_RETIRED)"
    )]
    MissingKey(KeyId),
    /// A configured KEK failed its stored key check: it is not the key that id was made from.
    #[error("the configured key-encryption key with id {0} failed its key check")]
    CheckFailed(KeyId),
    /// The store could not be read.
    #[error("the store is unavailable")]
    Unavailable(#[source] Source),
    /// Anything else.
    #[error("the key check failed unexpectedly")]
    Internal(#[source] Source),
}

impl From<StoreError> for KeyCheckError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(source) => Self::Unavailable(source),
            other => Self::Internal(Box::new(other)),
        }
    }
}
