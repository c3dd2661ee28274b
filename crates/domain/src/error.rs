//! The outcomes a caller of the use cases can act on.

use crate::model::{KeyId, NamespaceId};
use crate::ports::{CryptoError, RandomError, Source, StoreError};

/// Why a use case did not succeed. Each variant is something a caller acts on differently;
/// the HTTP layer maps every one of them, exhaustively, to a status and an error code.
///
/// Every variant that can only happen once the namespace was found carries its internal id
/// (safe to log: it grants nothing), so that a log line or an audit record can name the
/// namespace a refused request touched; [`Error::namespace`] reads it. `NamespaceNotFound` has
/// none to give; `Unavailable` and `Internal` carry none, since they can happen before the
/// namespace is known.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No namespace has this access key (or the key is malformed).
    #[error("namespace not found")]
    NamespaceNotFound,
    /// The namespace has no secret of that name.
    #[error("secret not found")]
    SecretNotFound {
        /// The namespace that was searched.
        namespace: NamespaceId,
    },
    /// Adding the secret would pass the per-namespace limit.
    #[error("the namespace already holds its maximum of {limit} secrets")]
    NamespaceFull {
        /// The configured limit.
        limit: u32,
        /// The namespace that is full.
        namespace: NamespaceId,
    },
    /// The value is larger than the configured limit.
    #[error("the value is larger than the limit of {limit} bytes")]
    ValueTooLarge {
        /// The configured limit, in bytes.
        limit: usize,
        /// The namespace written to, when one has that access key (a value over the limit is
        /// refused as such whether or not the namespace exists).
        namespace: Option<NamespaceId>,
    },
    /// A precondition of the request (`If-Match`, `If-None-Match`) did not hold; nothing was
    /// changed.
    #[error("a precondition of the request did not hold")]
    PreconditionFailed {
        /// The namespace the request was for.
        namespace: NamespaceId,
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
    /// The internal id of the namespace the failed use case had found, if it had found one.
    #[must_use]
    pub fn namespace(&self) -> Option<NamespaceId> {
        match self {
            Self::SecretNotFound { namespace }
            | Self::NamespaceFull { namespace, .. }
            | Self::PreconditionFailed { namespace }
            | Self::Integrity { namespace }
            | Self::UnknownKey { namespace, .. } => Some(*namespace),
            Self::ValueTooLarge { namespace, .. } => *namespace,
            Self::NamespaceNotFound | Self::Unavailable(_) | Self::Internal(_) => None,
        }
    }

    /// Maps a store error met while working on namespace `ns` (`None` before it was found);
    /// `limit` is the secret limit the store enforced, for the message.
    pub(crate) fn from_store(error: StoreError, limit: u32, ns: Option<NamespaceId>) -> Self {
        match (error, ns) {
            (StoreError::NamespaceNotFound, _) => Self::NamespaceNotFound,
            (StoreError::NamespaceFull, Some(namespace)) => {
                Self::NamespaceFull { limit, namespace }
            }
            (StoreError::PreconditionFailed, Some(namespace)) => {
                Self::PreconditionFailed { namespace }
            }
            // Only a write to a namespace found first can meet these.
            (error @ (StoreError::NamespaceFull | StoreError::PreconditionFailed), None) => {
                Self::Internal(Box::new(error))
            }
            (StoreError::Unavailable(source), _) => Self::Unavailable(source),
            (StoreError::Conflict, _) => Self::Internal("unexpected unique key conflict".into()),
            (StoreError::Internal(source), _) => Self::Internal(source),
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
