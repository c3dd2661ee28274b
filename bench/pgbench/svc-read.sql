-- The service's hot read statement itself (crates/adapters/src/postgres: READ_NAMESPACE), on the
-- service's own seeded database, for a random namespace among :nsn: what PostgreSQL alone does
-- for one READ. bench_access maps 1..N to the namespaces' access hashes (built by run.sh).
\set i random(1, :nsn)
SELECT n.id, n.kek_id, n.wrapped_dek,
       s.name_index, s.name_ct, s.value_ct, s.created_at, s.updated_at
FROM bench_access b
JOIN namespaces n ON n.access_hash = b.h
LEFT JOIN secrets s ON s.namespace_id = n.id
WHERE b.i = :i;
