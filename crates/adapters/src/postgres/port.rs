//! The domain's [`SecretStore`] port on PostgreSQL.
//!
//! # Concurrency
//! Every write to one namespace's secrets first takes the namespace row's lock
//! (`SELECT .. FOR UPDATE`), so writers of one namespace run one after another and the secret
//! count each of them sees is exact under PostgreSQL's default READ COMMITTED isolation. Readers
//! never wait: the hot read is one statement, hence one snapshot.
//!
//! # Preconditions
//! A conditional write reads the revision (and the secret's version) it compares with under
//! that lock, in its own transaction, and commits only when the precondition holds: nobody can
//! move either between the comparison and the commit, so of many writers holding the same
//! revision exactly one gets through. An unconditional write reads nothing first and keeps its
//! one round trip; a conditional one takes three (`BEGIN`; the lock, the read and the write
//! pipelined; `COMMIT`), and a failed precondition rolls back what the write did.

use async_trait::async_trait;
use deadpool_postgres::Client;
use futures_util::FutureExt as _;
use futures_util::future::BoxFuture;
use secrets_domain::etag::{Condition, Revision};
use secrets_domain::model::{AccessKeyHash, KeyId, NamespaceId};
use secrets_domain::ports::{
    Guard, KeyCheck, NameIndex, NamespaceRecord, NewNamespace, Patched, SealedSecret, SecretStore,
    StoreError, StoredSecret, Upserted, WrappedKey, Written, patch_fits,
};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::PostgresStore;
use super::error::db;
use super::rows::{key_check, key_count, namespace_record, revision, stored_secret};
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
    async fn find_revision(
        &self,
        access: &AccessKeyHash,
    ) -> Result<Option<(NamespaceId, Revision)>, StoreError> {
        // A conditional hot read starts here: a standby may answer it, as the read itself.
        self.hot_read(access, |client, access| {
            find_revision_on(client, access).boxed()
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn read_namespace(
        &self,
        access: &AccessKeyHash,
    ) -> Result<Option<(NamespaceRecord, Vec<StoredSecret>)>, StoreError> {
        self.hot_read(access, |client, access| {
            read_namespace_on(client, access).boxed()
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

    #[tracing::instrument(level = "debug", skip_all, fields(ns = %ns, conditional = !guard.is_none()))]
    async fn upsert_secret(
        &self,
        ns: NamespaceId,
        secret: &SealedSecret,
        max_secrets: u32,
        guard: &Guard,
    ) -> Result<Written, StoreError> {
        let id = ns.as_uuid();
        let index = secret.index.0.as_slice();
        let max = i64::from(max_secrets);
        let params: [&(dyn ToSql + Sync); 5] = [&id, &index, &secret.name, &secret.value, &max];
        // A full namespace makes the upsert write nothing and return no row (then the COMMIT
        // commits nothing); a missing one makes the lock and the upsert find nothing.
        let found = self
            .secret_write(
                sql::UPSERT_SECRET,
                &id,
                index,
                &params,
                |revision, version| {
                    if guard.holds(revision, version) {
                        Ok(true)
                    } else {
                        Err(StoreError::PreconditionFailed)
                    }
                },
                guard.is_none(),
            )
            .await?;
        written_row(found.ok_or(StoreError::NamespaceNotFound)?)
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
        let id = ns.as_uuid();
        // The last write of an index wins, as if the upserts ran one by one.
        let mut seen = std::collections::HashSet::with_capacity(upserts.len());
        let upserts: Vec<&SealedSecret> = upserts
            .iter()
            .rev()
            .filter(|secret| seen.insert(secret.index))
            .collect();
        let writes = !upserts.is_empty();
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
            // after the lock with its own fresh snapshot. The lock gives the revision before the
            // patch and the count the size before it; the deletes move the revision when the
            // patch changes anything, the upserts take the moved one as their version, and the
            // list is the state after it, read inside this transaction. A precondition or the
            // limit that fails rolls all of it back when `tx` is dropped.
            // (`join` polls the bound first, then `join5` its five in order.)
            let (bounded, (locked, before, moved, upserted, after)) = futures_util::future::join(
                tx.query_one(&bound, &[&self.server_timeout]),
                futures_util::future::join5(
                    tx.query_opt(&lock, &[&id]),
                    tx.query_one(&count, &[&id]),
                    tx.query_opt(&delete, &[&id, &deletes, &writes]),
                    tx.execute(&upsert, &[&id, &indexes, &names, &values]),
                    tx.query(&list, &[&id]),
                ),
            )
            .await;
            bounded.map_err(db)?;
            let Some(locked) = locked.map_err(db)? else {
                return Err(StoreError::NamespaceNotFound);
            };
            let was = revision(&locked, 0)?;
            if !condition.holds(Some(&was)) {
                return Err(StoreError::PreconditionFailed);
            }
            let before: i64 = before.map_err(db)?.try_get(0).map_err(db)?;
            let moved = moved.map_err(db)?;
            upserted.map_err(db)?;
            let after = after.map_err(db)?;
            if !patch_fits(before as u64, after.len() as u64, max_secrets) {
                return Err(StoreError::NamespaceFull);
            }
            let secrets = after
                .iter()
                .map(|row| stored_secret(row, 0))
                .collect::<Result<Vec<_>, _>>()?;
            let revision = moved
                .map(|row| revision(&row, 0))
                .transpose()?
                .unwrap_or(was);
            tx.commit().await.map_err(db)?;
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
        let id = ns.as_uuid();
        let index = index.0.as_slice();
        let found = self
            .secret_write(
                sql::DELETE_SECRET,
                &id,
                index,
                &[&id, &index],
                |revision, version| {
                    // An absent secret is answered as absent, whatever the guard says.
                    let Some(version) = version else {
                        return Ok(false);
                    };
                    if guard.holds(revision, Some(version)) {
                        Ok(true)
                    } else {
                        Err(StoreError::PreconditionFailed)
                    }
                },
                guard.is_none(),
            )
            .await?;
        found.flatten().map(|row| revision(&row, 0)).transpose()
    }

    #[tracing::instrument(level = "debug", skip_all, fields(conditional = !condition.is_none()))]
    async fn delete_namespace(
        &self,
        access: &AccessKeyHash,
        condition: &Condition<Revision>,
    ) -> Result<Option<NamespaceId>, StoreError> {
        let (hash, kind) = (access.as_bytes().as_slice(), access.kind().code());
        let id = |row: Option<Row>| -> Result<Option<NamespaceId>, StoreError> {
            row.map(|row| row.try_get(0).map(NamespaceId::from_uuid).map_err(db))
                .transpose()
        };
        self.run(async |client| {
            if condition.is_none() {
                return id(query_opt(client, sql::DELETE_NAMESPACE, &[&hash, &kind]).await?);
            }
            let bound = client
                .prepare_cached(sql::BOUND_TRANSACTION)
                .await
                .map_err(db)?;
            let lock = client
                .prepare_cached(sql::LOCK_NAMESPACE_BY_ACCESS)
                .await
                .map_err(db)?;
            let delete = client
                .prepare_cached(sql::DELETE_NAMESPACE)
                .await
                .map_err(db)?;
            let tx = client.transaction().await.map_err(db)?;
            let (bounded, locked, deleted) = futures_util::future::join3(
                tx.query_one(&bound, &[&self.server_timeout]),
                tx.query_opt(&lock, &[&hash, &kind]),
                tx.query_opt(&delete, &[&hash, &kind]),
            )
            .await;
            bounded.map_err(db)?;
            let Some(locked) = locked.map_err(db)? else {
                return Ok(None);
            };
            if !condition.holds(Some(&revision(&locked, 0)?)) {
                return Err(StoreError::PreconditionFailed);
            }
            let deleted = id(deleted.map_err(db)?)?;
            tx.commit().await.map_err(db)?;
            Ok(deleted)
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn replace_access_hash(
        &self,
        old: &AccessKeyHash,
        new: &AccessKeyHash,
    ) -> Result<Option<NamespaceId>, StoreError> {
        self.run(async |client| {
            let row = query_opt(
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
            row.map(|row| row.try_get(0).map(NamespaceId::from_uuid).map_err(db))
                .transpose()
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
    ) -> Result<Vec<NamespaceId>, StoreError> {
        if updates.is_empty() {
            return Ok(Vec::new());
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
        let rows = self
            .run(async |client| {
                query(
                    client,
                    sql::REPLACE_WRAPPED_KEYS,
                    &[&ids, &old_ids, &old_keys, &new_ids, &new_keys],
                )
                .await
            })
            .await?;
        rows.iter()
            .map(|row| Ok(NamespaceId::from_uuid(row.try_get(0).map_err(db)?)))
            .collect()
    }
}

impl PostgresStore {
    /// Runs `write` (a statement on one secret of namespace `id`, yielding at most one row) in a
    /// transaction of its own, after the namespace's lock (see the module's `# Concurrency`).
    /// `None` when the namespace does not exist; otherwise the write's row, if it made one.
    ///
    /// `unconditional`: the whole transaction goes out in one round trip. tokio-postgres
    /// pipelines requests that are polled together, and `join5` first polls them in this order;
    /// the server still runs them one after the other, so the write starts, and takes its
    /// snapshot, only once the lock is held. Whatever happens, the COMMIT ends the transaction,
    /// also when this future is dropped half-way (the requests are sent already).
    ///
    /// Otherwise (see the module's `# Preconditions`) the write is sent with the reads of the
    /// namespace's revision and of the secret's version (`None`: absent), and `keep` decides from
    /// them whether it stays: `Ok(true)` commits, `Ok(false)` rolls back and answers as if no
    /// row was written, an error rolls back and is the answer. The transaction also rolls back
    /// when it is dropped, on every early return.
    async fn secret_write(
        &self,
        write: &str,
        id: &uuid::Uuid,
        index: &[u8],
        params: &[&(dyn ToSql + Sync)],
        keep: impl FnOnce(Revision, Option<Revision>) -> Result<bool, StoreError>,
        unconditional: bool,
    ) -> Result<Option<Option<Row>>, StoreError> {
        self.run(async |client| {
            let bound = client
                .prepare_cached(sql::BOUND_TRANSACTION)
                .await
                .map_err(db)?;
            let lock = client
                .prepare_cached(sql::LOCK_NAMESPACE)
                .await
                .map_err(db)?;
            let write = client.prepare_cached(write).await.map_err(db)?;
            if unconditional {
                let (begun, bounded, locked, written, committed) = futures_util::future::join5(
                    client.batch_execute(sql::BEGIN),
                    client.query_one(&bound, &[&self.server_timeout]),
                    client.query_opt(&lock, &[id]),
                    client.query_opt(&write, params),
                    client.batch_execute(sql::COMMIT),
                )
                .await;
                begun.map_err(db)?;
                bounded.map_err(db)?;
                let locked = locked.map_err(db)?;
                let written = written.map_err(db)?;
                committed.map_err(db)?;
                return Ok(locked.map(|_| written));
            }
            let version = client
                .prepare_cached(sql::SECRET_VERSION)
                .await
                .map_err(db)?;
            let tx = client.transaction().await.map_err(db)?;
            let (bounded, locked, current, written) = futures_util::future::join4(
                tx.query_one(&bound, &[&self.server_timeout]),
                tx.query_opt(&lock, &[id]),
                tx.query_opt(&version, &[id, &index]),
                tx.query_opt(&write, params),
            )
            .await;
            bounded.map_err(db)?;
            let Some(locked) = locked.map_err(db)? else {
                return Ok(None);
            };
            let current = current
                .map_err(db)?
                .map(|row| revision(&row, 0))
                .transpose()?;
            if !keep(revision(&locked, 0)?, current)? {
                return Ok(Some(None));
            }
            let written = written.map_err(db)?;
            tx.commit().await.map_err(db)?;
            Ok(Some(written))
        })
        .await
    }
}

/// What an upsert's row says: `created, version` (no row: the namespace was full).
fn written_row(row: Option<Row>) -> Result<Written, StoreError> {
    let row = row.ok_or(StoreError::NamespaceFull)?;
    Ok(Written {
        upserted: Upserted::new(row.try_get(0).map_err(db)?),
        revision: revision(&row, 1)?,
    })
}

impl PostgresStore {
    /// A read of the hot path (`read_namespace`, `find_revision`): on a standby that has caught
    /// up with the primary when there are standbys (see `standby`), on the primary otherwise,
    /// within what is left of the one deadline.
    async fn hot_read<T>(&self, access: &AccessKeyHash, read: HotRead<T>) -> Result<T, StoreError> {
        let deadline = self.deadline();
        if let Some(standbys) = &self.standbys
            && let Some(answer) = standbys.read(&self.primary, deadline, access, read).await
        {
            return Ok(answer);
        }
        self.primary
            .run_until(deadline, async |client| read(client, access).await)
            .await
    }
}

/// A read of the hot path on one connection, for the namespace of an access hash.
pub(super) type HotRead<T> =
    for<'a> fn(&'a Client, &'a AccessKeyHash) -> BoxFuture<'a, Result<T, StoreError>>;

/// The id and revision of the namespace of `access`: a conditional read's first step.
async fn find_revision_on(
    client: &Client,
    access: &AccessKeyHash,
) -> Result<Option<(NamespaceId, Revision)>, StoreError> {
    let row = query_opt(
        client,
        sql::FIND_REVISION,
        &[&access.as_bytes().as_slice(), &access.kind().code()],
    )
    .await?;
    row.map(|row| {
        Ok((
            NamespaceId::from_uuid(row.try_get(0).map_err(db)?),
            revision(&row, 1)?,
        ))
    })
    .transpose()
}

/// The hot read on one connection: the namespace of `access` and all its secrets, in one
/// statement.
pub(super) async fn read_namespace_on(
    client: &Client,
    access: &AccessKeyHash,
) -> Result<Option<(NamespaceRecord, Vec<StoredSecret>)>, StoreError> {
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
        if row.try_get::<_, Option<&[u8]>>(4).map_err(db)?.is_some() {
            secrets.push(stored_secret(row, 4)?);
        }
    }
    Ok(Some((record, secrets)))
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
