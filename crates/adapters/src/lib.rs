//! Implementations of the domain's ports.
//!
//! # Layout
//! - [`crypto`]: envelope encryption with `ring` (KEKs wrap per-namespace data keys; AES-256-GCM
//!   with a fresh subkey per seal) and the OS randomness source.
//! - [`postgres`]: the production store on PostgreSQL (`tokio-postgres` + `deadpool-postgres`).
//! - [`sqlite`]: the zero-setup embedded store on SQLite.
//! - [`store`]: [`Store`], what both stores do beyond the domain's port (open, migrate, pool
//!   status, close), so the binary is generic over the backend.
//! - `testing` (feature `testing`): throwaway PostgreSQL databases for tests.
//!
//! Each store applies its own migrations from `migrations/<store>/`, embedded at build time so
//! the one binary carries them.

pub mod crypto;
mod migrations;
pub mod postgres;
pub mod sqlite;
pub mod store;
#[cfg(feature = "testing")]
pub mod testing;

pub use store::{AppliedMigration, MigrationReport, PoolStatus, Store, StoreOptions};
