-- The write limit's table: shaped like the service's `secrets` (a uuid namespace id and a
-- 32-byte name index as the primary key, two ciphertext columns, two timestamps), seeded with
-- :n namespaces of :s secrets each.
DROP TABLE IF EXISTS upsert_limit;
CREATE TABLE upsert_limit (
    namespace_id uuid        NOT NULL,
    name_index   bytea       NOT NULL,
    name_ct      bytea       NOT NULL,
    value_ct     bytea       NOT NULL,
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL,
    PRIMARY KEY (namespace_id, name_index)
);
INSERT INTO upsert_limit
SELECT md5('ns' || n)::uuid, sha256(('name' || n || '/' || k)::bytea),
       sha256(('n' || random())::bytea) || sha256(('n' || random())::bytea),
       sha256(('v' || random())::bytea) || sha256(('v' || random())::bytea),
       now(), now()
FROM generate_series(1, :n) AS n, generate_series(0, :s - 1) AS k;
VACUUM ANALYZE upsert_limit;
