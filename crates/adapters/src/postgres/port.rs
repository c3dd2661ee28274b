//! The domain's [`SecretStore`] port on PostgreSQL.
//!
//! # Concurrency
//! Every write to one namespace's secrets first takes the namespace row's lock
//! (`SELECT .. FOR UPDATE`), so writers of one namespace run one after another and the secret
//! count each of them sees is exact under PostgreSQL's default READ COMMITTED isolation. Readers
//! never wait: the hot read is one statement, hence one snapshot.

use async_trait::async_trait;
use deadpool_postgres::Client;
use secrets_domain::model::{AccessKeyHash, KeyId, NamespaceId};
use secrets_domain::ports::{
    KeyCheck, NameIndex, NamespaceRecord, NewNamespace, SealedSecret, SecretStore, StoreError,
    StoredSecret, Upserted, WrappedKey,
};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::PostgresStore;
use super::error::db;
use super::rows::{key_check, key_count, namespace_record, stored_secret};
use super::sql;

#[async_trait]
impl SecretStore for PostgresStore {
    #[tracing::instrument(level = "debug", skip_all, fields(count = namespaces.len()))]
    async fn create_namespaces(&self, namespaces: &[NewNamespace]) -> Result<(), StoreError> {
        if namespaces.is_empty() {
            return Ok(());
        }
        let ids: Vec<_> = namespaces.iter().map(|ns| ns.id.as_uuid()).collect();
        let hashes: Vec<&[u8]> = namespaces
            .iter()
            .map(|ns| ns.access_hash.as_bytes().as_slice())
            .collect();
        let key_ids: Vec<&str> = namespaces
            .iter()
            .map(|ns| ns.data_key.key_id.as_str())
            .collect();
        let keys: Vec<&[u8]> = namespaces
            .iter()
            .map(|ns| ns.data_key.ciphertext.as_slice())
            .collect();
        let kinds: Vec<i16> = namespaces
            .iter()
            .map(|ns| ns.access_hash.kind().code())
            .collect();
        // One statement is all or nothing, so a bulk create needs no explicit transaction.
        self.run(async |client| {
            execute(
                client,
                sql::CREATE_NAMESPACES,
                &[&ids, &hashes, &key_ids, &keys, &kinds],
            )
            .await?;
            Ok(())
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn find_namespace(
        &self,
        access: &AccessKeyHash,
    ) -> Result<Option<NamespaceRecord>, StoreError> {
        self.run(async |client| {
            let row = query_opt(
                client,
                sql::FIND_NAMESPACE,
                &[&access.as_bytes().as_slice(), &access.kind().code()],
            )
            .await?;
            row.as_ref().map(namespace_record).transpose()
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn read_namespace(
        &self,
        access: &AccessKeyHash,
    ) -> Result<Option<(NamespaceRecord, Vec<StoredSecret>)>, StoreError> {
        self.run(async |client| {
            let rows = query(
                client,
                sql::READ_NAMESPACE,
                &[&access.as_bytes().as_slice(), &access.kind().code()],
            )
            .await?;
            let Some(first) = rows.first() else {
                return Ok(None);
            };
            let record = namespace_record(first)?;
            let mut secrets = Vec::with_capacity(rows.len());
            for row in &rows {
                // Only an empty namespace's single row has no secret in it.
                if row.try_get::<_, Option<&[u8]>>(3).map_err(db)?.is_some() {
                    secrets.push(stored_secret(row, 3)?);
                }
            }
            Ok(Some((record, secrets)))
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(ns = %ns))]
    async fn get_secret(
        &self,
        ns: NamespaceId,
        index: &NameIndex,
    ) -> Result<Option<StoredSecret>, StoreError> {
        self.run(async |client| {
            let row = query_opt(
                client,
                sql::GET_SECRET,
                &[&ns.as_uuid(), &index.0.as_slice()],
            )
            .await?;
            row.map(|row| stored_secret(&row, 0)).transpose()
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
        let id = ns.as_uuid();
        let max = i64::from(max_secrets);
        self.run(async |client| {
            let bound = client
                .prepare_cached(sql::BOUND_TRANSACTION)
                .await
                .map_err(db)?;
            let lock = client
                .prepare_cached(sql::LOCK_NAMESPACE)
                .await
                .map_err(db)?;
            let upsert = client
                .prepare_cached(sql::UPSERT_SECRET)
                .await
                .map_err(db)?;
            // The whole transaction goes out in one round trip: tokio-postgres pipelines
            // requests that are polled together, and `join5` first polls them in this order.
            // The server still runs them one after the other, so the upsert starts, and takes
            // its snapshot, only once the lock is held. Whatever happens, the COMMIT ends the
            // transaction, also when this future is dropped half-way (the requests are sent
            // already): a full namespace makes the upsert write nothing and return no row, and
            // the COMMIT commits nothing; a missing namespace makes the upsert fail on the
            // foreign key, which aborts the transaction, and the COMMIT then rolls it back.
            let (begun, bounded, locked, written, committed) = futures_util::future::join5(
                client.batch_execute(sql::BEGIN),
                client.query_one(&bound, &[&self.server_timeout]),
                client.query_opt(&lock, &[&id]),
                client.query_opt(
                    &upsert,
                    &[
                        &id,
                        &secret.index.0.as_slice(),
                        &secret.name,
                        &secret.value,
                        &max,
                    ],
                ),
                client.batch_execute(sql::COMMIT),
            )
            .await;
            begun.map_err(db)?;
            bounded.map_err(db)?;
            // The lock's empty answer says why the upsert failed.
            if locked.map_err(db)?.is_none() {
                return Err(StoreError::NamespaceNotFound);
            }
            let Some(row) = written.map_err(db)? else {
                return Err(StoreError::NamespaceFull);
            };
            committed.map_err(db)?;
            let created: bool = row.try_get(0).map_err(db)?;
            Ok(if created {
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
        let id = ns.as_uuid();
        // The last write of an index wins, as if the upserts ran one by one.
        let mut seen = std::collections::HashSet::with_capacity(upserts.len());
        let upserts: Vec<&SealedSecret> = upserts
            .iter()
            .rev()
            .filter(|secret| seen.insert(secret.index))
            .collect();
        let indexes: Vec<&[u8]> = upserts.iter().map(|s| s.index.0.as_slice()).collect();
        let names: Vec<&[u8]> = upserts.iter().map(|s| s.name.as_slice()).collect();
        let values: Vec<&[u8]> = upserts.iter().map(|s| s.value.as_slice()).collect();
        let deletes: Vec<&[u8]> = deletes.iter().map(|index| index.0.as_slice()).collect();
        self.run(async |client| {
            let tx = client.transaction().await.map_err(db)?;
            let bound = tx
                .prepare_cached(sql::BOUND_TRANSACTION)
                .await
                .map_err(db)?;
            let lock = tx.prepare_cached(sql::LOCK_NAMESPACE).await.map_err(db)?;
            let count = tx.prepare_cached(sql::COUNT_SECRETS).await.map_err(db)?;
            let delete = tx.prepare_cached(sql::DELETE_SECRETS).await.map_err(db)?;
            let upsert = tx.prepare_cached(sql::UPSERT_SECRETS).await.map_err(db)?;
            let list = tx.prepare_cached(sql::LIST_SECRETS).await.map_err(db)?;
            // Pipelined as in `upsert_secret`: sent together, run in this order, each statement
            // after the lock with its own fresh snapshot. The count is the one before the patch,
            // the list the state after it, read inside this transaction.
            // (`join` polls the bound first, then `join5` its five in order.)
            let (bounded, (locked, before, removed, upserted, after)) = futures_util::future::join(
                tx.query_one(&bound, &[&self.server_timeout]),
                futures_util::future::join5(
                    tx.query_opt(&lock, &[&id]),
                    tx.query_one(&count, &[&id]),
                    tx.execute(&delete, &[&id, &deletes]),
                    tx.execute(&upsert, &[&id, &indexes, &names, &values]),
                    tx.query(&list, &[&id]),
                ),
            )
            .await;
            bounded.map_err(db)?;
            if locked.map_err(db)?.is_none() {
                return Err(StoreError::NamespaceNotFound);
            }
            let before: i64 = before.map_err(db)?.try_get(0).map_err(db)?;
            removed.map_err(db)?;
            upserted.map_err(db)?;
            let after = after.map_err(db)?;
            let count = after.len() as i64;
            // A namespace already over a lowered limit may still be patched, as long as the
            // patch does not grow it.
            if count > i64::from(max_secrets) && count > before {
                return Err(StoreError::NamespaceFull);
            }
            let secrets = after
                .iter()
                .map(|row| stored_secret(row, 0))
                .collect::<Result<Vec<_>, _>>()?;
            tx.commit().await.map_err(db)?;
            Ok(secrets)
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(ns = %ns))]
    async fn delete_secret(&self, ns: NamespaceId, index: &NameIndex) -> Result<bool, StoreError> {
        // No namespace lock: a delete never makes room for more than the limit allows.
        self.run(async |client| {
            let deleted = execute(
                client,
                sql::DELETE_SECRET,
                &[&ns.as_uuid(), &index.0.as_slice()],
            )
            .await?;
            Ok(deleted > 0)
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn delete_namespace(&self, access: &AccessKeyHash) -> Result<bool, StoreError> {
        self.run(async |client| {
            let deleted = execute(
                client,
                sql::DELETE_NAMESPACE,
                &[&access.as_bytes().as_slice(), &access.kind().code()],
            )
            .await?;
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
        self.run(async |client| {
            let replaced = execute(
                client,
                sql::REPLACE_ACCESS_HASH,
                &[
                    &old.as_bytes().as_slice(),
                    &new.as_bytes().as_slice(),
                    &old.kind().code(),
                    &new.kind().code(),
                ],
            )
            .await?;
            Ok(replaced > 0)
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn ping(&self) -> Result<(), StoreError> {
        self.run(async |client| {
            query(client, sql::PING, &[]).await?;
            Ok(())
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn key_checks(&self) -> Result<Vec<KeyCheck>, StoreError> {
        self.run(async |client| {
            let rows = query(client, sql::KEY_CHECKS, &[]).await?;
            rows.iter().map(key_check).collect()
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(key_id = %check.key_id))]
    async fn add_key_check(&self, check: &KeyCheck) -> Result<(), StoreError> {
        self.run(async |client| {
            execute(
                client,
                sql::ADD_KEY_CHECK,
                &[&check.key_id.as_str(), &check.ciphertext],
            )
            .await?;
            Ok(())
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn key_ids_in_use(&self) -> Result<Vec<KeyId>, StoreError> {
        self.run(async |client| {
            let rows = query(client, sql::KEY_IDS_IN_USE, &[]).await?;
            rows.iter()
                .map(|row| row.try_get::<_, String>(0).map(KeyId::new).map_err(db))
                .collect()
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn count_by_key_id(&self) -> Result<Vec<(KeyId, u64)>, StoreError> {
        self.run(async |client| {
            let rows = query(client, sql::COUNT_BY_KEY_ID, &[]).await?;
            rows.iter().map(key_count).collect()
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(active = %active, limit))]
    async fn wrapped_not_under(
        &self,
        active: &KeyId,
        after: Option<NamespaceId>,
        limit: u32,
    ) -> Result<Vec<NamespaceRecord>, StoreError> {
        let limit = i64::from(limit);
        self.run(async |client| {
            let rows = match after {
                None => {
                    query(
                        client,
                        sql::WRAPPED_NOT_UNDER_FIRST,
                        &[&active.as_str(), &limit],
                    )
                    .await?
                }
                Some(after) => {
                    query(
                        client,
                        sql::WRAPPED_NOT_UNDER_AFTER,
                        &[&active.as_str(), &after.as_uuid(), &limit],
                    )
                    .await?
                }
            };
            rows.iter().map(namespace_record).collect()
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
        let ids: Vec<_> = updates.iter().map(|(old, _)| old.id.as_uuid()).collect();
        let old_ids: Vec<&str> = updates
            .iter()
            .map(|(old, _)| old.data_key.key_id.as_str())
            .collect();
        let old_keys: Vec<&[u8]> = updates
            .iter()
            .map(|(old, _)| old.data_key.ciphertext.as_slice())
            .collect();
        let new_ids: Vec<&str> = updates.iter().map(|(_, new)| new.key_id.as_str()).collect();
        let new_keys: Vec<&[u8]> = updates
            .iter()
            .map(|(_, new)| new.ciphertext.as_slice())
            .collect();
        self.run(async |client| {
            execute(
                client,
                sql::REPLACE_WRAPPED_KEYS,
                &[&ids, &old_ids, &old_keys, &new_ids, &new_keys],
            )
            .await
        })
        .await
    }
}

/// Runs `sql` (prepared once per connection, then cached) with `params`, and returns its rows.
pub(super) async fn query(
    client: &Client,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<Row>, StoreError> {
    let stmt = client.prepare_cached(sql).await.map_err(db)?;
    client.query(&stmt, params).await.map_err(db)
}

/// Runs `sql` as [`query`] does, for a statement that yields at most one row.
pub(super) async fn query_opt(
    client: &Client,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Option<Row>, StoreError> {
    let stmt = client.prepare_cached(sql).await.map_err(db)?;
    client.query_opt(&stmt, params).await.map_err(db)
}

/// Runs `sql` as [`query`] does, for a statement that yields no rows: how many it changed.
pub(super) async fn execute(
    client: &Client,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<u64, StoreError> {
    let stmt = client.prepare_cached(sql).await.map_err(db)?;
    client.execute(&stmt, params).await.map_err(db)
}
