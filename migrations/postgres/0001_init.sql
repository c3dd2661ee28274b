-- The secrets service's schema on PostgreSQL.
--
-- Nothing here is plaintext. The service hands the store only:
--   * SHA-256 of each access key (the key itself is never stored, so a dump grants nothing);
--   * data keys wrapped under a key-encryption key (KEK), labelled with the KEK's public id;
--   * names and values sealed under the namespace's data key, and each name's blind index
--     (an HMAC), which is what lookups and uniqueness use instead of the name.
--
-- Timestamps come from the database's clock, so every replica of the service agrees on them.
--
-- This file is applied once and recorded in `schema_migrations`; once merged it is never edited,
-- only followed by 0002_*.sql (mirrored in migrations/sqlite/).

-- One row per namespace. `id` is random (it reveals nothing about how many namespaces exist)
-- and is known before the row is written, because the wrapped data key is bound to it.
CREATE TABLE namespaces (
    id          uuid        PRIMARY KEY,
    -- SHA-256 of the access key: the hot read looks namespaces up by it (the UNIQUE index).
    access_hash bytea       NOT NULL UNIQUE CHECK (octet_length(access_hash) = 32),
    -- The public id of the KEK `wrapped_dek` is sealed under.
    kek_id      text        NOT NULL,
    -- The namespace's data key, sealed under that KEK. Deleting the row destroys the key,
    -- which makes copies of the namespace's ciphertexts in old backups unreadable.
    wrapped_dek bytea       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Start-up checks which KEK ids still wrap data and `rotate-kek` looks for keys under retired
-- ones; the distinct ids are read with a skip scan over this index, which stays cheap however
-- many namespaces there are.
CREATE INDEX namespaces_kek_id ON namespaces (kek_id);

-- One row per secret. The primary key makes names unique per namespace (through their blind
-- index), answers the single-secret lookup, and serves the hot read's join and the cascading
-- delete, so no other index is needed.
CREATE TABLE secrets (
    namespace_id uuid        NOT NULL REFERENCES namespaces (id) ON DELETE CASCADE,
    -- HMAC of the name under a key derived from the namespace's data key.
    name_index   bytea       NOT NULL CHECK (octet_length(name_index) = 32),
    -- The sealed name and value.
    name_ct      bytea       NOT NULL,
    value_ct     bytea       NOT NULL,
    -- Set by the store (clock_timestamp()) when the name is first written, and when its value
    -- last changed.
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL,
    PRIMARY KEY (namespace_id, name_index)
);

-- Per KEK id, a value sealed under that KEK at start-up: it proves later that the configured
-- KEK with this id is the one that wrote the data. The first check written for an id stays.
CREATE TABLE key_checks (
    key_id     text        PRIMARY KEY,
    check_ct   bytea       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
