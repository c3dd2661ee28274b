//! Every statement the SQLite store runs, with why it is written the way it is.
//!
//! Parameters are numbered (`?1`); the port's statements run through each connection's
//! prepared statement cache.

// Migrations (see `crate::migrations`).

pub(super) const CREATE_SCHEMA_MIGRATIONS: &str = "\
    CREATE TABLE IF NOT EXISTS schema_migrations ( \
        version    INTEGER NOT NULL PRIMARY KEY, \
        applied_at INTEGER NOT NULL \
    ) STRICT";

pub(super) const RECORDED_MIGRATIONS: &str = "SELECT version FROM schema_migrations";

// Whether the table exists at all (a database never migrated has none), without creating it.
pub(super) const HAS_SCHEMA_MIGRATIONS: &str = "\
    SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations')";

pub(super) const RECORD_MIGRATION: &str = "\
    INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)";

// The writer's group commit (see `writer`).

// `IMMEDIATE` takes the write lock before anything is read (see `writer`'s doc).
pub(super) const BEGIN_GROUP: &str = "BEGIN IMMEDIATE";

pub(super) const COMMIT_GROUP: &str = "COMMIT";

pub(super) const ROLLBACK_GROUP: &str = "ROLLBACK";

// Each write of a group runs inside a savepoint of its own, so that one that fails rolls back
// alone.
pub(super) const BEGIN_WRITE: &str = "SAVEPOINT write";

pub(super) const KEEP_WRITE: &str = "RELEASE write";

pub(super) const UNDO_WRITE: &str = "ROLLBACK TO write; RELEASE write";

// The port's statements, in the order of its methods.

pub(super) const CREATE_NAMESPACE: &str = "\
    INSERT INTO namespaces (id, access_hash, kek_id, wrapped_dek, created_at, access_kind) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6)";

pub(super) const FIND_NAMESPACE: &str = "\
    SELECT id, kek_id, wrapped_dek, revision FROM namespaces \
    WHERE access_hash = ?1 AND access_kind = ?2";

// A conditional read's one lookup, and a conditional delete's: two columns of the namespace's
// row, no secret.
pub(super) const FIND_REVISION: &str = "\
    SELECT id, revision FROM namespaces WHERE access_hash = ?1 AND access_kind = ?2";

// The hot read. One statement is one snapshot: the namespace and its secrets are read
// together, so a concurrent write is seen whole or not at all. The LEFT JOIN still yields the
// namespace (with NULL secret columns) when it has no secrets. Every lookup by access hash
// matches the key's kind too (migrations/sqlite/0003_original_import.sql).
pub(super) const READ_NAMESPACE: &str = "\
    SELECT n.id, n.kek_id, n.wrapped_dek, n.revision, \
           s.name_index, s.name_ct, s.value_ct, s.created_at, s.updated_at, s.version \
    FROM namespaces AS n \
    LEFT JOIN secrets AS s ON s.namespace_id = n.id \
    WHERE n.access_hash = ?1 AND n.access_kind = ?2 \
    ORDER BY s.name_index";

pub(super) const GET_SECRET: &str = "\
    SELECT name_index, name_ct, value_ct, created_at, updated_at, version \
    FROM secrets WHERE namespace_id = ?1 AND name_index = ?2";

// Inside the writer's transaction: whether the namespace exists, and the revision its writes
// move from (no other writer can move it before the transaction ends).
pub(super) const NAMESPACE_REVISION: &str = "SELECT revision FROM namespaces WHERE id = ?1";

pub(super) const SECRET_VERSION: &str = "\
    SELECT version FROM secrets WHERE namespace_id = ?1 AND name_index = ?2";

pub(super) const SET_REVISION: &str = "UPDATE namespaces SET revision = ?2 WHERE id = ?1";

// Inserts or updates one secret in one statement, and says which it did.
//
// An update keeps `created_at` and moves `updated_at` strictly forward, to at least one
// microsecond past its previous value even when the clock has not advanced (or stepped
// back). So an updated row always has `updated_at > created_at` and a new one has them equal,
// which is how the statement itself tells an insert from an update without a prior read.
// The secret's version (?6) is the namespace's next revision, which the caller then sets.
pub(super) const UPSERT_SECRET: &str = "\
    INSERT INTO secrets \
        (namespace_id, name_index, name_ct, value_ct, created_at, updated_at, version) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6) \
    ON CONFLICT (namespace_id, name_index) DO UPDATE SET \
        name_ct = excluded.name_ct, \
        value_ct = excluded.value_ct, \
        updated_at = max(excluded.updated_at, secrets.updated_at + 1), \
        version = excluded.version \
    RETURNING created_at = updated_at";

pub(super) const COUNT_SECRETS: &str = "SELECT count(*) FROM secrets WHERE namespace_id = ?1";

pub(super) const LIST_SECRETS: &str = "\
    SELECT name_index, name_ct, value_ct, created_at, updated_at, version \
    FROM secrets WHERE namespace_id = ?1 ORDER BY name_index";

pub(super) const DELETE_SECRET: &str = "\
    DELETE FROM secrets WHERE namespace_id = ?1 AND name_index = ?2";

// The secrets go with it through ON DELETE CASCADE (foreign_keys is on for every connection),
// in the same statement.
pub(super) const DELETE_NAMESPACE: &str = "\
    DELETE FROM namespaces WHERE access_hash = ?1 AND access_kind = ?2 RETURNING id";

pub(super) const ACCESS_HASH_TAKEN: &str = "\
    SELECT EXISTS (SELECT 1 FROM namespaces WHERE access_hash = ?1)";

// The new key's kind replaces the old one's (rotating an imported namespace's key gives it a
// native one). A rotation is a change inside the namespace: it moves to its next revision.
pub(super) const REPLACE_ACCESS_HASH: &str = "\
    UPDATE namespaces SET access_hash = ?2, access_kind = ?4, revision = revision + 1 \
    WHERE access_hash = ?1 AND access_kind = ?3 \
    RETURNING id";

pub(super) const PING: &str = "SELECT 1";

pub(super) const KEY_CHECKS: &str = "SELECT key_id, check_ct FROM key_checks ORDER BY key_id";

// DO NOTHING keeps the first check written for a key id, so replicas starting at once agree
// on one.
pub(super) const ADD_KEY_CHECK: &str = "\
    INSERT INTO key_checks (key_id, check_ct, created_at) VALUES (?1, ?2, ?3) \
    ON CONFLICT (key_id) DO NOTHING";

// Answered from the kek_id index alone: one step per distinct id.
pub(super) const KEY_IDS_IN_USE: &str = "SELECT DISTINCT kek_id FROM namespaces ORDER BY kek_id";

pub(super) const COUNT_BY_KEY_ID: &str = "\
    SELECT kek_id, count(*) FROM namespaces GROUP BY kek_id ORDER BY kek_id";

// Two statements rather than `(?2 IS NULL OR id > ?2)`, so that each pages along the id index
// instead of scanning from the start.
pub(super) const WRAPPED_NOT_UNDER_FIRST: &str = "\
    SELECT id, kek_id, wrapped_dek, revision FROM namespaces \
    WHERE kek_id <> ?1 ORDER BY id LIMIT ?2";

pub(super) const WRAPPED_NOT_UNDER_AFTER: &str = "\
    SELECT id, kek_id, wrapped_dek, revision FROM namespaces \
    WHERE id > ?3 AND kek_id <> ?1 ORDER BY id LIMIT ?2";

// Compare-and-swap: the WHERE clause matches only a key still as it was read, so a namespace
// deleted or re-wrapped meanwhile is left alone. The revision stays: no data changed.
pub(super) const REPLACE_WRAPPED_KEY: &str = "\
    UPDATE namespaces SET kek_id = ?2, wrapped_dek = ?3 \
    WHERE id = ?1 AND kek_id = ?4 AND wrapped_dek = ?5";
