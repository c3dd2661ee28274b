-- Namespaces brought over from the service this one replaces (`secrets-service import-original`).
--
-- An imported namespace keeps the original's SHA-256 of its 21-character access key, so that
-- the keys the platform holds keep working. `access_kind` says which kind of key a hash is of:
-- 0 for this service's own keys, 1 for the original's. Every lookup by access hash matches the
-- kind too, so a key of one kind never reaches a namespace of the other, whatever the digests.
-- (The constant default makes the new column instant on a large table; the check is NOT VALID
-- so that adding it does not scan rows that all hold the default.)
ALTER TABLE namespaces ADD COLUMN access_kind smallint NOT NULL DEFAULT 0;
ALTER TABLE namespaces ADD CONSTRAINT namespaces_access_kind CHECK (access_kind IN (0, 1)) NOT VALID;

-- One row per namespace ever imported, kept when the namespace is deleted here (then
-- `namespace_id` is NULL) so that a later run never brings back what was deleted. Nothing here
-- is plaintext: `source_fp` is SHA-256 over the original's ciphertext rows of the namespace (a
-- re-run skips it while that is unchanged), `base` holds, per name the import wrote, its blind
-- index and a digest of the ciphertexts it wrote (so that a re-run tells a name written here
-- since; see crates/domain/src/import/state.rs).
CREATE TABLE original_imports (
    original_id  uuid        PRIMARY KEY,
    -- UNIQUE also indexes it, which the ON DELETE action of every namespace delete needs.
    namespace_id uuid        UNIQUE REFERENCES namespaces (id) ON DELETE SET NULL,
    source_fp    bytea       NOT NULL CHECK (octet_length(source_fp) = 32),
    base         bytea       NOT NULL,
    imported_at  timestamptz NOT NULL DEFAULT now()
);
