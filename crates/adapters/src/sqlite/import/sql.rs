//! The statements of the import's port on SQLite (see `migrations/sqlite/0003_*.sql`). Writes
//! to a namespace's secrets reuse the port's own statements (`super::super::sql`).

// Records in original-id order, from the start or after a given id, up to a bound (the largest
// id when there is none), each paging along the primary key.
pub(super) const IMPORTS_FIRST: &str = "\
    SELECT original_id, namespace_id, source_fp FROM original_imports \
    WHERE original_id <= ?1 ORDER BY original_id";

pub(super) const IMPORTS_AFTER: &str = "\
    SELECT original_id, namespace_id, source_fp FROM original_imports \
    WHERE original_id > ?1 AND original_id <= ?2 ORDER BY original_id";

pub(super) const CREATE_NAMESPACE: &str = "\
    INSERT INTO namespaces (id, access_hash, access_kind, kek_id, wrapped_dek, created_at) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6)";

pub(super) const CREATE_RECORD: &str = "\
    INSERT INTO original_imports (original_id, namespace_id, source_fp, base, imported_at) \
    VALUES (?1, ?2, ?3, ?4, ?5)";

// One statement, so one snapshot: the record, its namespace and the namespace's secrets. The
// LEFT JOINs keep the record when its namespace was deleted here, and the namespace when it has
// no secrets. Columns 0 to 3 are what `rows::namespace_record` reads.
pub(super) const READ_IMPORTED: &str = "\
    SELECT r.namespace_id, n.kek_id, n.wrapped_dek, n.revision, r.source_fp, r.base, \
           n.access_kind, n.access_hash, \
           s.name_index, s.name_ct, s.value_ct, s.created_at, s.updated_at, s.version \
    FROM original_imports AS r \
    LEFT JOIN namespaces AS n ON n.id = r.namespace_id \
    LEFT JOIN secrets AS s ON s.namespace_id = n.id \
    WHERE r.original_id = ?1";

pub(super) const ACCESS: &str = "SELECT access_kind, access_hash FROM namespaces WHERE id = ?1";

pub(super) const RECORD_HOLDS: &str = "\
    SELECT EXISTS (SELECT 1 FROM original_imports WHERE original_id = ?1 AND namespace_id = ?2)";

pub(super) const SET_ACCESS: &str = "\
    UPDATE namespaces SET access_hash = ?2, access_kind = ?3 WHERE id = ?1";

pub(super) const UPDATE_RECORD: &str = "\
    UPDATE original_imports SET source_fp = ?2, base = ?3, imported_at = ?4 \
    WHERE original_id = ?1";

// The secrets go through ON DELETE CASCADE, the record's namespace_id through ON DELETE SET
// NULL (foreign keys are on for every connection), in the same statement.
pub(super) const DELETE_NAMESPACE: &str = "DELETE FROM namespaces WHERE id = ?1";
