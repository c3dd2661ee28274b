//! Implementations of the domain's ports.
//!
//! # Layout
//! - [`crypto`]: envelope encryption with `ring` (KEKs wrap per-namespace data keys; AES-256-GCM
//!   with a fresh subkey per seal) and the OS randomness source.
//! - [`postgres`]: the production store on PostgreSQL (`tokio-postgres` + `deadpool-postgres`).
//! - [`sqlite`]: the zero-setup embedded store on SQLite.
//! - `testing` (feature `testing`): throwaway PostgreSQL databases for tests.
//!
//! Each store applies its own migrations from `migrations/<store>/`, embedded at build time so
//! the one binary carries them.

/// A store's connection pool state, for metrics (both stores report the same shape).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolStatus {
    /// The most connections the pool opens. (SQLite's pool serves reads; its writer's own
    /// connection is not counted.)
    pub max_size: usize,
    /// The connections open now, in use or idle.
    pub size: usize,
    /// The idle connections, ready to be handed out.
    pub available: usize,
    /// The callers waiting for a connection.
    pub waiting: usize,
}

pub mod crypto;
pub mod postgres;
pub mod sqlite;
#[cfg(feature = "testing")]
pub mod testing;
