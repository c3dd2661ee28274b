//! The secrets service's core: its model, its ports and its use cases.
//!
//! This crate is pure: no I/O, no HTTP, no SQL, no cipher implementation. It says *what* the
//! service does (namespaces of encrypted secrets reached by a hashed access key) and *what it
//! needs* from the outside (a store, envelope encryption, randomness), as traits the adapters
//! implement.
//!
//! # Layout
//! - [`model`]: the parsed values callers hand in (`AccessKey`, `SecretName`, ...).
//! - [`etag`]: revisions, entity tags and the preconditions of conditional requests.
//! - [`ports`]: the traits adapters implement, each method with the errors it MUST return.
//! - [`service`]: [`SecretsService`], the use cases, generic over the ports.
//! - [`error`]: what a use case can answer besides success.
//! - [`import`]: bringing namespaces over from the service this one replaces: the original's
//!   key form, the import's rules, its store port and its use cases.
//! - `testing` (feature `testing`): in-memory fakes of the ports.

pub mod error;
pub mod etag;
pub mod import;
pub mod model;
pub mod ports;
pub mod service;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use error::{Error, KeyCheckError};
pub use etag::{Condition, ETag, Revision, Tags};
pub use model::{
    AccessKey, AccessKeyHash, AccessKind, BulkCount, InvalidAccessKey, InvalidBulkCount,
    InvalidName, KeyId, KeyInfo, Limits, NamespaceId, Secret, SecretName, SecretValue,
};
pub use service::{
    Conditional, Issued, PatchChange, Plaintexts, RewrapBatch, SecretsService, Tagged, Target,
};
