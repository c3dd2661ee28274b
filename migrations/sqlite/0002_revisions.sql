-- Revisions of namespaces and versions of secrets, for entity tags and conditional requests;
-- mirrors migrations/postgres/0002_revisions.sql, which says what they mean.
--
-- The defaults are valid values: a row inserted without them starts at 1. SQLite adds a column
-- with a constant default without rewriting the table; STRICT keeps them integers.

ALTER TABLE namespaces ADD COLUMN revision INTEGER NOT NULL DEFAULT 1 CHECK (revision >= 1);

ALTER TABLE secrets ADD COLUMN version INTEGER NOT NULL DEFAULT 1 CHECK (version >= 1);
