//! The domain's [`SecretStore`] port on SQLite: reads on the pool, writes through the writer.
//!
//! Every write runs on the one writer, inside its transaction, which already holds SQLite's
//! write lock: what a write reads there (a namespace's revision, a secret's version, a count)
//! stays true until it commits. So a precondition is compared there, and of many writers holding
//! the same revision exactly one gets through.

use async_trait::async_trait;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OptionalExtension as _, Params, Row, params};
use secrets_domain::etag::{Condition, Revision};
use secrets_domain::model::{AccessKeyHash, KeyId, NamespaceId};
use secrets_domain::ports::{
    Guard, KeyCheck, NameIndex, NamespaceRecord, NewNamespace, Patched, SealedSecret, SecretStore,
    StoreError, StoredSecret, Upserted, WrappedKey, Written, patch_fits,
};

use super::SqliteStore;
use super::error::Failure;
use super::rows::{
    key_check, key_count, namespace_id, namespace_record, now_micros, revision, stored,
    stored_secret,
};
use super::sql;

#[async_trait]
impl SecretStore for SqliteStore {
    #[tracing::instrument(level = "debug", skip_all, fields(count = namespaces.len()))]
    async fn create_namespaces(&self, namespaces: &[NewNamespace]) -> Result<(), StoreError> {
        if namespaces.is_empty() {
            return Ok(());
        }
        let namespaces = namespaces.to_vec();
        self.writer
            .write(move |tx| {
                let now = now_micros()?;
                let mut insert = tx.prepare_cached(sql::CREATE_NAMESPACE)?;
                for ns in &namespaces {
                    insert.execute(params![
                        ns.id.as_bytes(),
                        ns.access_hash.as_bytes(),
                        ns.data_key.key_id.as_str(),
                        ns.data_key.ciphertext,
                        now,
                        ns.access_hash.kind().code(),
                    ])?;
                }
                Ok(())
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn find_namespace(
        &self,
        access: &AccessKeyHash,
    ) -> Result<Option<NamespaceRecord>, StoreError> {
        let access = *access;
        self.reads
            .run(move |conn| {
                Ok(conn
                    .prepare_cached(sql::FIND_NAMESPACE)?
                    .query_row(
                        params![access.as_bytes(), access.kind().code()],
                        namespace_record,
                    )
                    .optional()?)
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn find_revision(
        &self,
        access: &AccessKeyHash,
    ) -> Result<Option<(NamespaceId, Revision)>, StoreError> {
        let access = *access;
        self.reads
            .run(move |conn| Ok(find_revision(conn, &access)?))
            .await
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn read_namespace(
        &self,
        access: &AccessKeyHash,
    ) -> Result<Option<(NamespaceRecord, Vec<StoredSecret>)>, StoreError> {
        let access = *access;
        self.reads
            .run(move |conn| {
                let mut stmt = conn.prepare_cached(sql::READ_NAMESPACE)?;
                let mut rows = stmt.query(params![access.as_bytes(), access.kind().code()])?;
                let mut found: Option<(NamespaceRecord, Vec<StoredSecret>)> = None;
                while let Some(row) = rows.next()? {
                    let (_, secrets) = match &mut found {
                        Some(found) => found,
                        None => found.insert((namespace_record(row)?, Vec::new())),
                    };
                    // Only an empty namespace's single row has no secret in it.
                    if !matches!(row.get_ref(4)?, ValueRef::Null) {
                        secrets.push(stored_secret(row, 4)?);
                    }
                }
                Ok(found)
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(ns = %ns))]
    async fn get_secret(
        &self,
        ns: NamespaceId,
        index: &NameIndex,
    ) -> Result<Option<StoredSecret>, StoreError> {
        let index = *index;
        self.reads
            .run(move |conn| {
                Ok(conn
                    .prepare_cached(sql::GET_SECRET)?
                    .query_row(params![ns.as_bytes(), index.0], |row| stored_secret(row, 0))
                    .optional()?)
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(ns = %ns, conditional = !guard.is_none()))]
    async fn upsert_secret(
        &self,
        ns: NamespaceId,
        secret: &SealedSecret,
        max_secrets: u32,
        guard: &Guard,
    ) -> Result<Written, StoreError> {
        let secret = secret.clone();
        let guard = guard.clone();
        self.writer
            .write(move |tx| {
                let was = namespace_revision(tx, ns)?;
                if !guard.is_none() {
                    let current = secret_version(tx, ns, &secret.index)?;
                    if !guard.holds(was, current) {
                        return Err(StoreError::PreconditionFailed.into());
                    }
                }
                let revision = was.next();
                let inserted = upsert(tx, ns, &secret, now_micros()?, revision)?;
                // Counting after the insert, under the write lock, is exact: no other writer can
                // add a name between the insert and the count.
                if inserted && count_secrets(tx, ns)? > i64::from(max_secrets) {
                    return Err(StoreError::NamespaceFull.into());
                }
                set_revision(tx, ns, revision)?;
                Ok(Written {
                    upserted: Upserted::new(inserted),
                    revision,
                })
            })
            .await
    }

    #[tracing::instrument(
        level = "debug",
        skip_all,
        fields(ns = %ns, upserts = upserts.len(), deletes = deletes.len())
    )]
    async fn apply_patch(
        &self,
        ns: NamespaceId,
        upserts: &[SealedSecret],
        deletes: &[NameIndex],
        max_secrets: u32,
        condition: &Condition<Revision>,
    ) -> Result<Patched, StoreError> {
        let upserts = upserts.to_vec();
        let deletes = deletes.to_vec();
        let condition = condition.clone();
        self.writer
            .write(move |tx| {
                let was = namespace_revision(tx, ns)?;
                if !condition.holds(Some(&was)) {
                    return Err(StoreError::PreconditionFailed.into());
                }
                let before = count_secrets(tx, ns)?;
                let mut delete = tx.prepare_cached(sql::DELETE_SECRET)?;
                let mut deleted = 0;
                for index in &deletes {
                    deleted += delete.execute(params![ns.as_bytes(), index.0])?;
                }
                // A patch that changes anything moves the revision, once for all of it.
                let revision = if deleted > 0 || !upserts.is_empty() {
                    was.next()
                } else {
                    was
                };
                let now = now_micros()?;
                for secret in &upserts {
                    upsert(tx, ns, secret, now, revision)?;
                }
                let after = count_secrets(tx, ns)?;
                if !patch_fits(before as u64, after as u64, max_secrets) {
                    return Err(StoreError::NamespaceFull.into());
                }
                set_revision(tx, ns, revision)?;
                let secrets = all_rows(tx, sql::LIST_SECRETS, [ns.as_bytes()], |row| {
                    stored_secret(row, 0)
                })?;
                Ok(Patched { revision, secrets })
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(ns = %ns, conditional = !guard.is_none()))]
    async fn delete_secret(
        &self,
        ns: NamespaceId,
        index: &NameIndex,
        guard: &Guard,
    ) -> Result<Option<Revision>, StoreError> {
        let index = *index;
        let guard = guard.clone();
        self.writer
            .write(move |tx| {
                let Some(was) = find_namespace_revision(tx, ns)? else {
                    return Ok(None);
                };
                // An absent secret is answered as absent, whatever the guard says.
                let Some(current) = secret_version(tx, ns, &index)? else {
                    return Ok(None);
                };
                if !guard.holds(was, Some(current)) {
                    return Err(StoreError::PreconditionFailed.into());
                }
                tx.prepare_cached(sql::DELETE_SECRET)?
                    .execute(params![ns.as_bytes(), index.0])?;
                let revision = was.next();
                set_revision(tx, ns, revision)?;
                Ok(Some(revision))
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(conditional = !condition.is_none()))]
    async fn delete_namespace(
        &self,
        access: &AccessKeyHash,
        condition: &Condition<Revision>,
    ) -> Result<Option<NamespaceId>, StoreError> {
        let access = *access;
        let condition = condition.clone();
        self.writer
            .write(move |tx| {
                let Some((_, revision)) = find_revision(tx, &access)? else {
                    return Ok(None);
                };
                if !condition.holds(Some(&revision)) {
                    return Err(StoreError::PreconditionFailed.into());
                }
                Ok(tx
                    .prepare_cached(sql::DELETE_NAMESPACE)?
                    .query_row(params![access.as_bytes(), access.kind().code()], |row| {
                        namespace_id(row, 0)
                    })
                    .optional()?)
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn replace_access_hash(
        &self,
        old: &AccessKeyHash,
        new: &AccessKeyHash,
    ) -> Result<Option<NamespaceId>, StoreError> {
        let (old, new) = (*old, *new);
        self.writer
            .write(move |tx| {
                // Checked first so that a taken `new` is a conflict whether or not `old` exists;
                // the write lock keeps the check true until the update.
                let taken: bool = tx
                    .prepare_cached(sql::ACCESS_HASH_TAKEN)?
                    .query_row([new.as_bytes()], |row| row.get(0))?;
                if taken {
                    return Err(StoreError::Conflict.into());
                }
                Ok(tx
                    .prepare_cached(sql::REPLACE_ACCESS_HASH)?
                    .query_row(
                        params![
                            old.as_bytes(),
                            new.as_bytes(),
                            old.kind().code(),
                            new.kind().code()
                        ],
                        |row| namespace_id(row, 0),
                    )
                    .optional()?)
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn ping(&self) -> Result<(), StoreError> {
        self.reads
            .run(|conn| {
                conn.prepare_cached(sql::PING)?.query_row([], |_| Ok(()))?;
                Ok(())
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn key_checks(&self) -> Result<Vec<KeyCheck>, StoreError> {
        self.reads
            .run(|conn| all_rows(conn, sql::KEY_CHECKS, [], key_check))
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(key_id = %check.key_id))]
    async fn add_key_check(&self, check: &KeyCheck) -> Result<(), StoreError> {
        let check = check.clone();
        self.writer
            .write(move |tx| {
                tx.prepare_cached(sql::ADD_KEY_CHECK)?.execute(params![
                    check.key_id.as_str(),
                    check.ciphertext,
                    now_micros()?
                ])?;
                Ok(())
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn key_ids_in_use(&self) -> Result<Vec<KeyId>, StoreError> {
        self.reads
            .run(|conn| {
                all_rows(conn, sql::KEY_IDS_IN_USE, [], |row| {
                    row.get::<_, String>(0).map(KeyId::new)
                })
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn count_by_key_id(&self) -> Result<Vec<(KeyId, u64)>, StoreError> {
        self.reads
            .run(|conn| all_rows(conn, sql::COUNT_BY_KEY_ID, [], key_count))
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(active = %active, limit))]
    async fn wrapped_not_under(
        &self,
        active: &KeyId,
        after: Option<NamespaceId>,
        limit: u32,
    ) -> Result<Vec<NamespaceRecord>, StoreError> {
        let active = active.clone();
        self.reads
            .run(move |conn| match after {
                None => all_rows(
                    conn,
                    sql::WRAPPED_NOT_UNDER_FIRST,
                    params![active.as_str(), limit],
                    namespace_record,
                ),
                Some(after) => all_rows(
                    conn,
                    sql::WRAPPED_NOT_UNDER_AFTER,
                    params![active.as_str(), limit, after.as_bytes()],
                    namespace_record,
                ),
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(count = updates.len()))]
    async fn replace_wrapped_keys(
        &self,
        updates: &[(NamespaceRecord, WrappedKey)],
    ) -> Result<Vec<NamespaceId>, StoreError> {
        if updates.is_empty() {
            return Ok(Vec::new());
        }
        let updates = updates.to_vec();
        self.writer
            .write(move |tx| {
                let mut update = tx.prepare_cached(sql::REPLACE_WRAPPED_KEY)?;
                let mut replaced = Vec::new();
                for (old, new) in &updates {
                    let changed = update.execute(params![
                        old.id.as_bytes(),
                        new.key_id.as_str(),
                        new.ciphertext,
                        old.data_key.key_id.as_str(),
                        old.data_key.ciphertext,
                    ])?;
                    if changed > 0 {
                        replaced.push(old.id);
                    }
                }
                Ok(replaced)
            })
            .await
    }
}

/// The id and revision of the namespace of `access`.
fn find_revision(
    conn: &Connection,
    access: &AccessKeyHash,
) -> rusqlite::Result<Option<(NamespaceId, Revision)>> {
    conn.prepare_cached(sql::FIND_REVISION)?
        .query_row(params![access.as_bytes(), access.kind().code()], |row| {
            Ok((namespace_id(row, 0)?, revision(row, 1)?))
        })
        .optional()
}

/// The revision of namespace `ns`, `None` when it does not exist. Inside a write transaction
/// this stays true until it commits.
fn find_namespace_revision(tx: &Connection, ns: NamespaceId) -> Result<Option<Revision>, Failure> {
    Ok(tx
        .prepare_cached(sql::NAMESPACE_REVISION)?
        .query_row([ns.as_bytes()], |row| revision(row, 0))
        .optional()?)
}

/// The revision of namespace `ns`; `NamespaceNotFound` when it does not exist.
pub(super) fn namespace_revision(tx: &Connection, ns: NamespaceId) -> Result<Revision, Failure> {
    find_namespace_revision(tx, ns)?.ok_or_else(|| StoreError::NamespaceNotFound.into())
}

/// The version of one secret, `None` when it does not exist.
pub(super) fn secret_version(
    tx: &Connection,
    ns: NamespaceId,
    index: &NameIndex,
) -> Result<Option<Revision>, Failure> {
    Ok(tx
        .prepare_cached(sql::SECRET_VERSION)?
        .query_row(params![ns.as_bytes(), index.0], |row| revision(row, 0))
        .optional()?)
}

pub(super) fn set_revision(
    tx: &Connection,
    ns: NamespaceId,
    revision: Revision,
) -> Result<(), Failure> {
    tx.prepare_cached(sql::SET_REVISION)?
        .execute(params![ns.as_bytes(), stored(revision)])?;
    Ok(())
}

/// Inserts or updates one secret at `version` in one statement; `true` when the name was new
/// (see `sql::UPSERT_SECRET` for how the statement tells).
pub(super) fn upsert(
    tx: &Connection,
    ns: NamespaceId,
    secret: &SealedSecret,
    now: i64,
    version: Revision,
) -> Result<bool, Failure> {
    let inserted = tx.prepare_cached(sql::UPSERT_SECRET)?.query_row(
        params![
            ns.as_bytes(),
            secret.index.0,
            secret.name,
            secret.value,
            now,
            stored(version)
        ],
        |row| row.get(0),
    )?;
    Ok(inserted)
}

pub(super) fn count_secrets(tx: &Connection, ns: NamespaceId) -> Result<i64, Failure> {
    Ok(tx
        .prepare_cached(sql::COUNT_SECRETS)?
        .query_row([ns.as_bytes()], |row| row.get(0))?)
}

/// Every row `sql` yields for `params`, each read by `read`.
pub(super) fn all_rows<T>(
    conn: &Connection,
    sql: &str,
    params: impl Params,
    read: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
) -> Result<Vec<T>, Failure> {
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map(params, read)?.collect::<Result<_, _>>()?;
    Ok(rows)
}
