//! The domain's [`SecretStore`] port on SQLite: reads on the pool, writes through the writer.

use async_trait::async_trait;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OptionalExtension as _, Params, Row, params};
use secrets_domain::model::{AccessKeyHash, KeyId, NamespaceId};
use secrets_domain::ports::{
    KeyCheck, NameIndex, NamespaceRecord, NewNamespace, SealedSecret, SecretStore, StoreError,
    StoredSecret, Upserted, WrappedKey,
};

use super::SqliteStore;
use super::error::Failure;
use super::rows::{key_check, key_count, namespace_record, now_micros, stored_secret};
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
                    if !matches!(row.get_ref(3)?, ValueRef::Null) {
                        secrets.push(stored_secret(row, 3)?);
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

    #[tracing::instrument(level = "debug", skip_all, fields(ns = %ns))]
    async fn upsert_secret(
        &self,
        ns: NamespaceId,
        secret: &SealedSecret,
        max_secrets: u32,
    ) -> Result<Upserted, StoreError> {
        let secret = secret.clone();
        self.writer
            .write(move |tx| {
                ensure_namespace(tx, ns)?;
                let inserted = upsert(tx, ns, &secret, now_micros()?)?;
                // Counting after the insert, under the write lock, is exact: no other writer can
                // add a name between the insert and the count.
                if inserted && count_secrets(tx, ns)? > i64::from(max_secrets) {
                    return Err(StoreError::NamespaceFull.into());
                }
                Ok(if inserted {
                    Upserted::Created
                } else {
                    Upserted::Updated
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
    ) -> Result<Vec<StoredSecret>, StoreError> {
        let upserts = upserts.to_vec();
        let deletes = deletes.to_vec();
        self.writer
            .write(move |tx| {
                ensure_namespace(tx, ns)?;
                let before = count_secrets(tx, ns)?;
                let mut delete = tx.prepare_cached(sql::DELETE_SECRET)?;
                for index in &deletes {
                    delete.execute(params![ns.as_bytes(), index.0])?;
                }
                let now = now_micros()?;
                for secret in &upserts {
                    upsert(tx, ns, secret, now)?;
                }
                let after = count_secrets(tx, ns)?;
                // A patch that shrinks an over-full namespace (the limit was lowered) may still
                // apply; one that grows it past the limit may not.
                if after > i64::from(max_secrets) && after > before {
                    return Err(StoreError::NamespaceFull.into());
                }
                all_rows(tx, sql::LIST_SECRETS, [ns.as_bytes()], |row| {
                    stored_secret(row, 0)
                })
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(ns = %ns))]
    async fn delete_secret(&self, ns: NamespaceId, index: &NameIndex) -> Result<bool, StoreError> {
        let index = *index;
        self.writer
            .write(move |tx| {
                let deleted = tx
                    .prepare_cached(sql::DELETE_SECRET)?
                    .execute(params![ns.as_bytes(), index.0])?;
                Ok(deleted > 0)
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn delete_namespace(&self, access: &AccessKeyHash) -> Result<bool, StoreError> {
        let access = *access;
        self.writer
            .write(move |tx| {
                let deleted = tx
                    .prepare_cached(sql::DELETE_NAMESPACE)?
                    .execute(params![access.as_bytes(), access.kind().code()])?;
                Ok(deleted > 0)
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn replace_access_hash(
        &self,
        old: &AccessKeyHash,
        new: &AccessKeyHash,
    ) -> Result<bool, StoreError> {
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
                let replaced = tx
                    .prepare_cached(sql::REPLACE_ACCESS_HASH)?
                    .execute(params![
                        old.as_bytes(),
                        new.as_bytes(),
                        old.kind().code(),
                        new.kind().code()
                    ])?;
                Ok(replaced > 0)
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
    ) -> Result<u64, StoreError> {
        if updates.is_empty() {
            return Ok(0);
        }
        let updates = updates.to_vec();
        self.writer
            .write(move |tx| {
                let mut update = tx.prepare_cached(sql::REPLACE_WRAPPED_KEY)?;
                let mut replaced = 0u64;
                for (old, new) in &updates {
                    let changed = update.execute(params![
                        old.id.as_bytes(),
                        new.key_id.as_str(),
                        new.ciphertext,
                        old.data_key.key_id.as_str(),
                        old.data_key.ciphertext,
                    ])?;
                    replaced += changed as u64;
                }
                Ok(replaced)
            })
            .await
    }
}

/// Fails with `NamespaceNotFound` unless namespace `ns` exists. Inside a write transaction
/// this stays true until it commits.
pub(super) fn ensure_namespace(tx: &Connection, ns: NamespaceId) -> Result<(), Failure> {
    let exists: bool = tx
        .prepare_cached(sql::NAMESPACE_EXISTS)?
        .query_row([ns.as_bytes()], |row| row.get(0))?;
    if exists {
        Ok(())
    } else {
        Err(StoreError::NamespaceNotFound.into())
    }
}

/// Inserts or updates one secret in one statement; `true` when the name was new (see
/// `sql::UPSERT_SECRET` for how the statement tells).
pub(super) fn upsert(
    tx: &Connection,
    ns: NamespaceId,
    secret: &SealedSecret,
    now: i64,
) -> Result<bool, Failure> {
    let inserted = tx.prepare_cached(sql::UPSERT_SECRET)?.query_row(
        params![
            ns.as_bytes(),
            secret.index.0,
            secret.name,
            secret.value,
            now
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
