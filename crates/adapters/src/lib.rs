//! Implementations of the domain's ports.
//!
//! # Layout
//! - [`audit`]: the audit trail: lines chained by MACs, the writer's group commit, the sinks,
//!   and `audit verify`.
//! - [`crypto`]: envelope encryption with `ring` (KEKs wrap per-namespace data keys; AES-256-GCM
//!   with a fresh subkey per seal) and the OS randomness source.
//! - [`store`]: [`Store`], what both stores do beyond the domain's port (open, migrate, pool
//!   status, close), so the binary is generic over the backend.
//! - `migrations`: both stores' embedded migrations (from `migrations/<store>/`, so the one
//!   binary carries them) and what a run means on either: which are pending, whether the
//!   database is newer, the report. Each store adds only its own transaction and locking.
//! - [`postgres`]: the production store on PostgreSQL (`tokio-postgres` + `deadpool-postgres`):
//!   `mod.rs` the store, its lifecycle and the timeout every operation runs under; `port.rs` the
//!   domain's port; `sql.rs` its statements; `rows.rs` rows as the port's types; `error.rs` how
//!   driver errors are classified.
//! - [`sqlite`]: the zero-setup embedded store on SQLite: `mod.rs` the store and its lifecycle;
//!   `pool.rs` the read connections; `writer.rs` the one writer and its group commit;
//!   `connection.rs` per-connection settings and the database file; `port.rs`, `sql.rs`,
//!   `rows.rs` and `error.rs` as for PostgreSQL.
//! - [`original`]: reading the service this one replaces, for `import-original`: its database
//!   in one read-only snapshot, its AES-256-CBC (the `aes` and `cbc` crates), Latin-1 text.
//! - `testing` (feature `testing`): throwaway PostgreSQL databases and servers, and
//!   certificates made at test time, for tests.
//!
//! Tests: `tests/conformance.rs` (with `tests/conformance/`) holds the storage contract's suite,
//! run on the in-memory store, SQLite and PostgreSQL; `tests/sqlite.rs` and `tests/postgres.rs`
//! what only one store has; `tests/crypto_props.rs` property tests of the envelope decoder.

pub mod audit;
pub mod crypto;
mod migrations;
pub mod original;
pub mod postgres;
pub mod sqlite;
pub mod store;
#[cfg(feature = "testing")]
pub mod testing;

pub use store::{AppliedMigration, MigrationReport, PoolStatus, ReadRouting, Store, StoreOptions};
