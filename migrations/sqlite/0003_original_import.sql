-- Namespaces brought over from the service this one replaces; mirrors
-- migrations/postgres/0003_original_import.sql, which explains each column.
--
-- `access_kind`: 0 for this service's own access keys, 1 for the original's 21-character ones;
-- every lookup by access hash matches it too.
ALTER TABLE namespaces ADD COLUMN access_kind INTEGER NOT NULL DEFAULT 0 CHECK (access_kind IN (0, 1));

CREATE TABLE original_imports (
    -- The 16 bytes of the original's namespace id: BLOBs compare with memcmp, as PostgreSQL
    -- compares uuids, so both stores page through imports in the same order.
    original_id  BLOB    NOT NULL PRIMARY KEY CHECK (length(original_id) = 16),
    namespace_id BLOB    UNIQUE REFERENCES namespaces (id) ON DELETE SET NULL,
    source_fp    BLOB    NOT NULL CHECK (length(source_fp) = 32),
    base         BLOB    NOT NULL,
    imported_at  INTEGER NOT NULL
) STRICT;
