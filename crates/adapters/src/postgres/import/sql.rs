//! The statements of the import's port on PostgreSQL (see `migrations/postgres/0003_*.sql`).
//! Writes to a namespace's secrets reuse the port's own statements (`super::super::sql`).

// Records in original-id order, from the start or after a given id, up to a bound (the largest
// uuid when there is none): each walks the primary key from the right place.
pub(super) const IMPORTS_FIRST: &str = "\
    SELECT original_id, namespace_id, source_fp FROM original_imports \
    WHERE original_id <= $1 ORDER BY original_id";

pub(super) const IMPORTS_AFTER: &str = "\
    SELECT original_id, namespace_id, source_fp FROM original_imports \
    WHERE original_id > $1 AND original_id <= $2 ORDER BY original_id";

pub(super) const CREATE_NAMESPACE: &str = "\
    INSERT INTO namespaces (id, access_hash, access_kind, kek_id, wrapped_dek) \
    VALUES ($1, $2, $3, $4, $5)";

// All of a new namespace's secrets in one statement, with one timestamp. The namespace and its
// secrets start at the columns' defaults: the first revision, and the first version.
pub(super) const INSERT_SECRETS: &str = "\
    INSERT INTO secrets (namespace_id, name_index, name_ct, value_ct, created_at, updated_at) \
    SELECT $1, u.name_index, u.name_ct, u.value_ct, t.at, t.at \
    FROM unnest($2::bytea[], $3::bytea[], $4::bytea[]) AS u (name_index, name_ct, value_ct), \
         (SELECT clock_timestamp() AS at) t";

pub(super) const CREATE_RECORD: &str = "\
    INSERT INTO original_imports (original_id, namespace_id, source_fp, base) \
    VALUES ($1, $2, $3, $4)";

// One statement, so one snapshot: the record, its namespace and the namespace's secrets. The
// LEFT JOINs keep the record when its namespace was deleted here, and the namespace when it has
// no secrets.
pub(super) const READ_IMPORTED: &str = "\
    SELECT r.namespace_id, r.source_fp, r.base, \
           n.kek_id, n.wrapped_dek, n.access_kind, n.access_hash, n.revision, \
           s.name_index, s.name_ct, s.value_ct, s.created_at, s.updated_at, s.version \
    FROM original_imports r \
    LEFT JOIN namespaces n ON n.id = r.namespace_id \
    LEFT JOIN secrets s ON s.namespace_id = n.id \
    WHERE r.original_id = $1";

// Locks the namespace's row, as every write to its secrets does first (see `port`'s
// `# Concurrency`), and reads its access hash for the state digest.
pub(super) const LOCK_ACCESS: &str = "\
    SELECT access_kind, access_hash FROM namespaces WHERE id = $1 FOR UPDATE";

pub(super) const RECORD_HOLDS: &str = "\
    SELECT 1 FROM original_imports WHERE original_id = $1 AND namespace_id = $2";

pub(super) const SET_ACCESS: &str = "\
    UPDATE namespaces SET access_hash = $2, access_kind = $3 WHERE id = $1";

pub(super) const UPDATE_RECORD: &str = "\
    UPDATE original_imports SET source_fp = $2, base = $3, imported_at = now() \
    WHERE original_id = $1";

// The secrets go through ON DELETE CASCADE, the record's namespace_id through ON DELETE SET
// NULL, in the same statement.
pub(super) const DELETE_NAMESPACE: &str = "DELETE FROM namespaces WHERE id = $1";
