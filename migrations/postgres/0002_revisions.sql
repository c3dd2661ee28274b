-- Revisions of namespaces and versions of secrets, for entity tags and conditional requests.
--
-- A namespace's revision grows by one with every change inside it (a secret written or deleted,
-- a merge patch, an access-key rotation); a secret's version is the revision of its namespace
-- that last wrote it. Both are counters the store keeps, never derived from a clock, so every
-- replica reads the same ones. A KEK rotation (`rotate-kek`) changes neither.
--
-- The defaults are valid values: a namespace or a secret inserted by anything that does not
-- name them (an older binary, an import) starts at 1, and 1 is at most the revision of any
-- namespace. Adding a column with a constant default rewrites no rows.

ALTER TABLE namespaces ADD COLUMN revision bigint NOT NULL DEFAULT 1 CHECK (revision >= 1);

ALTER TABLE secrets ADD COLUMN version bigint NOT NULL DEFAULT 1 CHECK (version >= 1);
