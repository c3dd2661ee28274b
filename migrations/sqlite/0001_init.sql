-- The embedded store's schema. It mirrors migrations/postgres/0001_init.sql: the same tables
-- and column names, so the two adapters read alike and a dump of either means the same thing.
--
-- Nothing here is plaintext: names and values are ciphertexts, access keys are SHA-256 hashes,
-- data keys are wrapped under a key-encryption key. Timestamps are unix microseconds (UTC)
-- written by the service's clock, not SQLite's, so both stores keep the same precision.
--
-- Tables are STRICT so that a value of the wrong type is refused instead of silently stored
-- (SQLite's default column affinity would accept text in a BLOB column), and the CHECKs pin
-- the sizes of ids and hashes: a bug that writes a truncated key fails loudly.

CREATE TABLE namespaces (
    -- The 16 bytes of the namespace's UUID. BLOBs compare with memcmp, so id order is the
    -- UUID's byte order: the order `rotate-kek` pages in.
    id          BLOB    NOT NULL PRIMARY KEY CHECK (length(id) = 16),
    -- SHA-256 of the access key; the hot read looks namespaces up by it.
    access_hash BLOB    NOT NULL UNIQUE CHECK (length(access_hash) = 32),
    -- The id of the KEK that wraps this namespace's data key.
    kek_id      TEXT    NOT NULL,
    wrapped_dek BLOB    NOT NULL,
    created_at  INTEGER NOT NULL
) STRICT;

-- Start-up asks which KEK ids are in use (SELECT DISTINCT kek_id), which this index answers
-- without reading the table.
CREATE INDEX namespaces_kek_id ON namespaces (kek_id);

-- WITHOUT ROWID stores each row inside the primary key's b-tree, so a namespace's secrets are
-- contiguous and read in one range scan, and an upsert touches one b-tree instead of two.
CREATE TABLE secrets (
    namespace_id BLOB    NOT NULL REFERENCES namespaces (id) ON DELETE CASCADE,
    -- Blind index of the name: HMAC under a key derived from the namespace's data key.
    name_index   BLOB    NOT NULL CHECK (length(name_index) = 32),
    -- The sealed name and value.
    name_ct      BLOB    NOT NULL,
    value_ct     BLOB    NOT NULL,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    PRIMARY KEY (namespace_id, name_index)
) STRICT, WITHOUT ROWID;

-- One value sealed under each KEK that ever wrote to this store, to recognise that KEK later.
CREATE TABLE key_checks (
    key_id     TEXT    NOT NULL PRIMARY KEY,
    check_ct   BLOB    NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;
