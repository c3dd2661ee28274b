//! Bringing namespaces over from the service this one replaces (`import-original`).
//!
//! The original service is a small Node application on a PostgreSQL database of its own. Its
//! namespaces are imported one at a time, each in one transaction, through this service's own
//! envelope: a fresh data key per namespace, every name and value sealed like any other. The
//! original's format (its AES-CBC, its Latin-1 text) is the adapters' business; what arrives
//! here is an [`OriginalNamespace`] already decrypted, and the rules of what to make of it.
//!
//! # The rules
//! - **Access keys** keep working: an imported namespace keeps the original's SHA-256 of its
//!   21-character key, as a hash of kind [`AccessKind::Original`] ([`key`] says which texts are
//!   such keys). Native keys never reach it and its key never reaches a native namespace: the
//!   kind is part of what a store matches. Rotating its key yields a native key.
//! - **Duplicates**: the original's unlocked update can leave two rows with one name in a
//!   namespace. The newest `createdAt` wins; on a tie, the row the original itself answered
//!   with (the last in its index, which orders by the name's ciphertext). Counted.
//! - **Refusals**: a name this service refuses ([`crate::SecretName`]'s rules), a value over
//!   the value limit, a row that does not decrypt, and `__proto__` (stored by the original but
//!   never returned by it) are left out and reported by the namespace's original id and the
//!   reason, never by content. Nothing else of that namespace is lost. The secret-count limit is
//!   not applied: an imported namespace keeps everything it had, like one whose limit was
//!   lowered.
//! - **Re-runs**: each imported namespace records the original's namespace id, a fingerprint of
//!   the original's rows for it ([`Fingerprint`]: ciphertexts only, so no plaintext is kept) and
//!   what the import wrote ([`ImportBase`]). A re-run skips a namespace whose fingerprint is
//!   unchanged. For a changed one it merges, name by name: a name written (or deleted) here since
//!   the import keeps this service's state, every other name takes the original's. A namespace
//!   deleted in the original is deleted here too (its data key with it: crypto-shredding),
//!   unless it was written here since the import; one deleted here stays deleted.
//!
//! # Layout
//! - [`key`]: the original keys' form.
//! - `plan`: [`OriginalNamespace`] and [`plan`], which applies the duplicate and refusal rules.
//! - `state`: [`ImportBase`] and [`state_digest`], what tells a change made here.
//! - `port`: [`ImportStore`], what a store does for the import, and its records.
//! - `service`: the use cases, on [`crate::SecretsService`].

pub mod key;
mod plan;
mod port;
mod service;
mod state;

use std::fmt;

use uuid::Uuid;

pub use plan::{ImportPlan, OriginalNamespace, OriginalSecret, Refusal, plan};
pub use port::{Applied, ImportRecord, ImportStore, ImportUpdate, ImportedState, NewImport};
pub use service::{ImportOutcome, RemoveOutcome, VerifyOutcome};
pub use state::{ImportBase, state_digest};

#[cfg(doc)]
use crate::model::AccessKind;

/// The id of a namespace in the original service's database. It identifies an imported
/// namespace across runs; like this service's internal ids, it grants nothing and is safe to log.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct OriginalId(Uuid);

impl OriginalId {
    /// Wraps the original's id.
    #[must_use]
    pub fn from_uuid(id: Uuid) -> Self {
        Self(id)
    }

    /// The id as a UUID, for storing.
    #[must_use]
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl fmt::Display for OriginalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A SHA-256 fingerprint: of the original's rows for one namespace (to tell a changed one), or
/// of a namespace's state here (to tell a concurrent change). Computed over ciphertexts only.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Fingerprint(pub [u8; 32]);
