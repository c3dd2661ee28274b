-- One-statement upsert of an existing name in a random namespace (pgbench -M prepared):
-- the database's own ceiling for the WRITE workload.
\set n random(1, :nsn)
\set k random(0, :nss - 1)
INSERT INTO upsert_limit (namespace_id, name_index, name_ct, value_ct, created_at, updated_at)
VALUES (md5('ns' || :n)::uuid, sha256(('name' || :n || '/' || :k)::bytea),
        sha256(('n' || random())::bytea) || sha256(('n' || random())::bytea),
        sha256(('v' || random())::bytea) || sha256(('v' || random())::bytea),
        clock_timestamp(), clock_timestamp())
ON CONFLICT (namespace_id, name_index) DO UPDATE
SET name_ct = EXCLUDED.name_ct, value_ct = EXCLUDED.value_ct, updated_at = EXCLUDED.updated_at;
