//! Every statement the PostgreSQL store runs, with why it is written the way it is.

// Migrations (see `crate::migrations`).

// A transaction-scoped advisory lock on `MIGRATION_LOCK`: migrators take turns, and each looks
// at `schema_migrations` only once it holds the lock.
pub(super) const LOCK_MIGRATIONS: &str = "SELECT pg_advisory_xact_lock($1)";

pub(super) const CREATE_SCHEMA_MIGRATIONS: &str = "\
    CREATE TABLE IF NOT EXISTS schema_migrations ( \
        version    bigint      PRIMARY KEY, \
        applied_at timestamptz NOT NULL DEFAULT now() \
    )";

pub(super) const RECORDED_MIGRATIONS: &str = "SELECT version FROM schema_migrations";

// Whether the table exists at all (a database never migrated has none), without creating it.
pub(super) const HAS_SCHEMA_MIGRATIONS: &str = "\
    SELECT to_regclass('schema_migrations') IS NOT NULL";

pub(super) const RECORD_MIGRATION: &str = "INSERT INTO schema_migrations (version) VALUES ($1)";

// Transactions sent as one pipeline (see `port`'s `upsert_secret`).

pub(super) const BEGIN: &str = "BEGIN";

pub(super) const COMMIT: &str = "COMMIT";

// The port's statements, in the order of its methods.

pub(super) const CREATE_NAMESPACES: &str = "\
    INSERT INTO namespaces (id, access_hash, kek_id, wrapped_dek, access_kind) \
    SELECT * FROM unnest($1::uuid[], $2::bytea[], $3::text[], $4::bytea[], $5::smallint[])";

pub(super) const FIND_NAMESPACE: &str = "\
    SELECT id, kek_id, wrapped_dek, revision FROM namespaces \
    WHERE access_hash = $1 AND access_kind = $2";

// A conditional read's one lookup: the namespace's row, two of its columns, no secret.
pub(super) const FIND_REVISION: &str = "\
    SELECT id, revision FROM namespaces WHERE access_hash = $1 AND access_kind = $2";

// The hot path. One statement, so one round trip and one snapshot: the namespace and its
// secrets cannot disagree. The LEFT JOIN yields one row of NULL secret columns for an empty
// namespace, and none at all for an unknown access hash. Every lookup by access hash matches
// the key's kind too (migrations/postgres/0003_original_import.sql).
pub(super) const READ_NAMESPACE: &str = "\
    SELECT n.id, n.kek_id, n.wrapped_dek, n.revision, \
           s.name_index, s.name_ct, s.value_ct, s.created_at, s.updated_at, s.version \
    FROM namespaces n LEFT JOIN secrets s ON s.namespace_id = n.id \
    WHERE n.access_hash = $1 AND n.access_kind = $2";

// Reads on standbys (see `standby`). The primary's WAL flush position, which every
// acknowledged commit precedes, and the name of its WAL file, whose first eight hex digits are
// the primary's timeline; both NULL when the server is in recovery (the primary's URL leads to
// a standby) and the position NULL when commits are acknowledged before they are flushed
// (`synchronous_commit = off`): neither proves anything then.
pub(super) const PRIMARY_POSITION: &str = "\
    SELECT CASE WHEN NOT pg_is_in_recovery() AND current_setting('synchronous_commit') <> 'off' \
                THEN pg_current_wal_flush_lsn() END, \
           CASE WHEN NOT pg_is_in_recovery() \
                THEN pg_walfile_name(pg_current_wal_flush_lsn()) END";

// On a standby: whether it has replayed up to the primary's position ($1), receiving on the
// primary's timeline ($2). On a server not in recovery, the replay position is NULL, and so is
// the answer; a role without `pg_read_all_stats` sees NULL timelines in pg_stat_wal_receiver:
// both read as "not caught up", and the read goes to the primary.
pub(super) const STANDBY_CAUGHT_UP: &str = "\
    SELECT coalesce(pg_last_wal_replay_lsn() >= $1 AND EXISTS ( \
               SELECT 1 FROM pg_stat_wal_receiver \
               WHERE status = 'streaming' AND received_tli = $2), false)";

pub(super) const GET_SECRET: &str = "\
    SELECT name_index, name_ct, value_ct, created_at, updated_at, version \
    FROM secrets WHERE namespace_id = $1 AND name_index = $2";

// The first statement of every transaction but the migrations': the server ends, on its own,
// what the service abandons at its deadline (see the store's doc, `# Connections and failure`).
// `set_config(.., true)` is `SET LOCAL`: it lasts as long as the transaction, so it leaves
// nothing behind on a connection, also behind a pooler in transaction mode. It is sent in the
// same round trip as the statements after it, and runs before them. (Where the `BEGIN` before it
// is a round trip of its own, a session cut off between the two holds no lock and no snapshot,
// only its connection, until the server's TCP keepalive ends it.)
pub(super) const BOUND_TRANSACTION: &str = "\
    SELECT set_config('statement_timeout', $1, true), \
           set_config('idle_in_transaction_session_timeout', $1, true)";

// Serialises the writers of one namespace (see `port`'s `# Concurrency`), tells a missing
// namespace (no row) from a present one, and gives the revision a precondition compares with:
// under the lock, no other writer can move it until this transaction ends.
pub(super) const LOCK_NAMESPACE: &str = "SELECT revision FROM namespaces WHERE id = $1 FOR UPDATE";

// The same, for a delete that finds the namespace by its access hash.
pub(super) const LOCK_NAMESPACE_BY_ACCESS: &str = "\
    SELECT revision FROM namespaces WHERE access_hash = $1 AND access_kind = $2 FOR UPDATE";

// The version a secret's precondition compares with. Its own statement after the lock, for the
// same reason as the count in UPSERT_SECRET: it must see what the writer the lock waited for
// committed.
pub(super) const SECRET_VERSION: &str = "\
    SELECT version FROM secrets WHERE namespace_id = $1 AND name_index = $2";

// Inserts the secret only when its name exists already (then ON CONFLICT turns the insert into
// an update) or the namespace has room; otherwise it returns no row. It must run as its own
// statement after LOCK_NAMESPACE: under READ COMMITTED each statement takes a fresh snapshot, so
// this one's count includes every secret committed by the writer the lock waited for. (A CTE in
// the locking statement would count with the snapshot taken before the wait, and miss them.)
// For the same reason `next` reads the revision the last writer left, and since this transaction
// holds the row's lock, nobody moves it meanwhile: the secret's version is that revision plus
// one, and `bumped` moves the namespace there, in the same statement, only when a row was written
// (a full namespace writes nothing, and its revision stays).
//
// `created` is the existence check's answer, negated: every part of one statement reads the
// snapshot taken when it started, so `existing` is the state before this insert, and under the
// namespace lock no other writer can add the name meanwhile. (PostgreSQL's own tell, `xmax = 0`
// on a freshly inserted row version, is a system column that CockroachDB and YugabyteDB do not
// have; this form reads the same and costs nothing more: the check is needed for the limit
// anyway, and a CTE referenced twice is evaluated once.) `clock_timestamp()` rather than
// `now()`: it is read after the lock is held, so timestamps follow the order writes happen in;
// GREATEST keeps `updated_at` from moving backwards should the database's clock step back.
pub(super) const UPSERT_SECRET: &str = "\
    WITH next AS (SELECT revision + 1 AS version FROM namespaces WHERE id = $1), \
    existing AS (SELECT 1 FROM secrets WHERE namespace_id = $1 AND name_index = $2), \
    written AS ( \
        INSERT INTO secrets \
            (namespace_id, name_index, name_ct, value_ct, created_at, updated_at, version) \
        SELECT $1, $2, $3, $4, t.at, t.at, next.version \
        FROM (SELECT clock_timestamp() AS at) t, next \
        WHERE EXISTS (SELECT 1 FROM existing) \
           OR (SELECT count(*) FROM secrets WHERE namespace_id = $1) < $5 \
        ON CONFLICT (namespace_id, name_index) DO UPDATE \
        SET name_ct = EXCLUDED.name_ct, value_ct = EXCLUDED.value_ct, \
            updated_at = GREATEST(secrets.updated_at, EXCLUDED.updated_at), \
            version = EXCLUDED.version \
        RETURNING version \
    ), \
    bumped AS ( \
        UPDATE namespaces SET revision = written.version FROM written WHERE namespaces.id = $1 \
    ) \
    SELECT NOT EXISTS (SELECT 1 FROM existing) AS created, version FROM written";

pub(super) const COUNT_SECRETS: &str = "SELECT count(*) FROM secrets WHERE namespace_id = $1";

// A patch's deletes, and its move to the next revision: when it will upsert anything ($3) or
// deletes anything here. It returns the new revision, or no row when the patch changes nothing.
// Runs after LOCK_NAMESPACE, so the namespace's row is this transaction's already.
pub(super) const DELETE_SECRETS: &str = "\
    WITH deleted AS ( \
        DELETE FROM secrets WHERE namespace_id = $1 AND name_index = ANY($2) RETURNING 1 \
    ) \
    UPDATE namespaces SET revision = revision + 1 \
    WHERE id = $1 AND ($3 OR EXISTS (SELECT 1 FROM deleted)) \
    RETURNING revision";

// A patch's upserts as one statement, after DELETE_SECRETS moved the revision: every secret
// written takes it as its version. The caller removes duplicate indexes first: one INSERT ..
// ON CONFLICT may not update the same row twice. One timestamp for the whole patch.
pub(super) const UPSERT_SECRETS: &str = "\
    INSERT INTO secrets \
        (namespace_id, name_index, name_ct, value_ct, created_at, updated_at, version) \
    SELECT $1, u.name_index, u.name_ct, u.value_ct, t.at, t.at, n.revision \
    FROM unnest($2::bytea[], $3::bytea[], $4::bytea[]) AS u (name_index, name_ct, value_ct), \
         (SELECT clock_timestamp() AS at) t, \
         (SELECT revision FROM namespaces WHERE id = $1) n \
    ON CONFLICT (namespace_id, name_index) DO UPDATE \
    SET name_ct = EXCLUDED.name_ct, value_ct = EXCLUDED.value_ct, \
        updated_at = GREATEST(secrets.updated_at, EXCLUDED.updated_at), \
        version = EXCLUDED.version";

pub(super) const LIST_SECRETS: &str = "\
    SELECT name_index, name_ct, value_ct, created_at, updated_at, version \
    FROM secrets WHERE namespace_id = $1";

// Deletes one secret and, when there was one, moves the namespace to its next revision, which
// it returns. Runs after LOCK_NAMESPACE: writers of a namespace lock its row before any secret
// row, all in the same order, so none of them can wait for another in a cycle.
pub(super) const DELETE_SECRET: &str = "\
    WITH deleted AS ( \
        DELETE FROM secrets WHERE namespace_id = $1 AND name_index = $2 RETURNING 1 \
    ) \
    UPDATE namespaces SET revision = revision + 1 \
    WHERE id = $1 AND EXISTS (SELECT 1 FROM deleted) \
    RETURNING revision";

// The secrets go with the namespace through ON DELETE CASCADE, in the same statement.
pub(super) const DELETE_NAMESPACE: &str = "\
    DELETE FROM namespaces WHERE access_hash = $1 AND access_kind = $2 RETURNING id";

// A taken `new` violates the unique index: 23505, a Conflict. The new key's kind replaces the
// old one's (rotating an imported namespace's key gives it a native one). A rotation is a change
// inside the namespace: it moves to its next revision.
pub(super) const REPLACE_ACCESS_HASH: &str = "\
    UPDATE namespaces SET access_hash = $2, access_kind = $4, revision = revision + 1 \
    WHERE access_hash = $1 AND access_kind = $3 \
    RETURNING id";

pub(super) const PING: &str = "SELECT 1";

pub(super) const KEY_CHECKS: &str = "SELECT key_id, check_ct FROM key_checks ORDER BY key_id";

// First write wins, also between replicas starting at the same moment.
pub(super) const ADD_KEY_CHECK: &str = "\
    INSERT INTO key_checks (key_id, check_ct) VALUES ($1, $2) ON CONFLICT (key_id) DO NOTHING";

// The distinct KEK ids, by a skip scan over `namespaces_kek_id`: each step is one index probe
// for the next larger id, so this costs (distinct ids + 1) probes. There are a handful of ids
// (the active KEK and those not yet rotated away), and a million namespaces: `SELECT DISTINCT`
// or GROUP BY would read the whole index (or table) at every start-up, since PostgreSQL before
// 18 has no skip scan of its own.
pub(super) const KEY_IDS_IN_USE: &str = "\
    WITH RECURSIVE ids (kek_id) AS ( \
        (SELECT kek_id FROM namespaces ORDER BY kek_id LIMIT 1) \
        UNION ALL \
        SELECT (SELECT n.kek_id FROM namespaces n WHERE n.kek_id > ids.kek_id \
                ORDER BY n.kek_id LIMIT 1) \
        FROM ids WHERE ids.kek_id IS NOT NULL \
    ) \
    SELECT kek_id FROM ids WHERE kek_id IS NOT NULL";

// Counting reads every row (a parallel sequential scan, about 0.2 s per million namespaces on
// a small server); it runs once per `rotate-kek`, not per request.
pub(super) const COUNT_BY_KEY_ID: &str = "\
    SELECT kek_id, count(*) FROM namespaces GROUP BY kek_id ORDER BY kek_id";

// Two statements rather than `$2 IS NULL OR id > $2`, so each has a plan that walks the
// primary key from the right place. Every uuid is a valid id, so there is no sentinel to start
// "after" either.
pub(super) const WRAPPED_NOT_UNDER_FIRST: &str = "\
    SELECT id, kek_id, wrapped_dek, revision FROM namespaces \
    WHERE kek_id <> $1 ORDER BY id LIMIT $2";

pub(super) const WRAPPED_NOT_UNDER_AFTER: &str = "\
    SELECT id, kek_id, wrapped_dek, revision FROM namespaces \
    WHERE kek_id <> $1 AND id > $2 ORDER BY id LIMIT $3";

// Every compare-and-swap of a batch in one statement: one round trip, and atomic without an
// explicit transaction. A row changed by a concurrent writer is re-checked against the new
// version after the writer commits (READ COMMITTED's re-check of UPDATE's conditions), so a key
// re-wrapped or a namespace deleted meanwhile is left alone and not counted. It leaves
// `revision` alone: a namespace's data does not change when its data key is re-wrapped, so
// neither do its entity tags.
pub(super) const REPLACE_WRAPPED_KEYS: &str = "\
    UPDATE namespaces n SET kek_id = u.new_kek_id, wrapped_dek = u.new_dek \
    FROM unnest($1::uuid[], $2::text[], $3::bytea[], $4::text[], $5::bytea[]) \
         AS u (id, old_kek_id, old_dek, new_kek_id, new_dek) \
    WHERE n.id = u.id AND n.kek_id = u.old_kek_id AND n.wrapped_dek = u.old_dek \
    RETURNING n.id";
