//! The domain's [`ImportStore`] port on PostgreSQL: the records of imported namespaces, and
//! the transactions that create, merge into and remove them.
//!
//! Merges and removals are compare-and-swaps: each transaction takes the namespace's row lock
//! (as every write to it does), reads its rows, and writes only when their state digest is the
//! one the merge was computed from. So a write the platform makes while a re-run computes a
//! merge is never overwritten: the store answers `Changed`, and the merge is computed again.

mod sql;

use async_trait::async_trait;
use secrets_domain::import::{
    Applied, Fingerprint, ImportBase, ImportRecord, ImportStore, ImportUpdate, ImportedState,
    NewImport, OriginalId, state_digest,
};
use secrets_domain::model::{AccessKeyHash, AccessKind, KeyId, NamespaceId};
use secrets_domain::ports::{NamespaceRecord, StoreError, StoredSecret, WrappedKey};
use tokio_postgres::Row;
use uuid::Uuid;

use super::PostgresStore;
use super::error::db;
use super::port::query;
use super::rows::{revision, stored_secret};
use super::sql as port_sql;

#[async_trait]
impl ImportStore for PostgresStore {
    #[tracing::instrument(level = "debug", skip_all)]
    async fn imports_between(
        &self,
        after: Option<OriginalId>,
        until: Option<OriginalId>,
    ) -> Result<Vec<ImportRecord>, StoreError> {
        let until = until.map_or(Uuid::max(), |id| id.as_uuid());
        self.run(async |client| {
            let rows = match after {
                None => query(client, sql::IMPORTS_FIRST, &[&until]).await?,
                Some(after) => {
                    query(client, sql::IMPORTS_AFTER, &[&after.as_uuid(), &until]).await?
                }
            };
            rows.iter().map(import_record).collect()
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(original = %import.original, ns = %import.namespace.id))]
    async fn create_imported(&self, import: &NewImport) -> Result<(), StoreError> {
        let ns = &import.namespace;
        let id = ns.id.as_uuid();
        let indexes: Vec<&[u8]> = import
            .secrets
            .iter()
            .map(|s| s.index.0.as_slice())
            .collect();
        let names: Vec<&[u8]> = import.secrets.iter().map(|s| s.name.as_slice()).collect();
        let values: Vec<&[u8]> = import.secrets.iter().map(|s| s.value.as_slice()).collect();
        let base = import.base.to_bytes();
        self.run(async |client| {
            let tx = client.transaction().await.map_err(db)?;
            bound(&tx, &self.server_timeout).await?;
            tx.execute(
                sql::CREATE_NAMESPACE,
                &[
                    &id,
                    &ns.access_hash.as_bytes().as_slice(),
                    &ns.access_hash.kind().code(),
                    &ns.data_key.key_id.as_str(),
                    &ns.data_key.ciphertext,
                ],
            )
            .await
            .map_err(db)?;
            tx.execute(sql::INSERT_SECRETS, &[&id, &indexes, &names, &values])
                .await
                .map_err(db)?;
            tx.execute(
                sql::CREATE_RECORD,
                &[
                    &import.original.as_uuid(),
                    &id,
                    &import.source.0.as_slice(),
                    &base,
                ],
            )
            .await
            .map_err(db)?;
            tx.commit().await.map_err(db)
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(original = %original))]
    async fn read_imported(
        &self,
        original: OriginalId,
    ) -> Result<Option<ImportedState>, StoreError> {
        self.run(async |client| {
            let rows = query(client, sql::READ_IMPORTED, &[&original.as_uuid()]).await?;
            let Some(first) = rows.first() else {
                return Ok(None);
            };
            let namespace: Option<Uuid> = first.try_get(0).map_err(db)?;
            let record = ImportRecord {
                original,
                namespace: namespace.map(NamespaceId::from_uuid),
                source: fingerprint(first.try_get(1).map_err(db)?)?,
            };
            let base = ImportBase::from_bytes(first.try_get(2).map_err(db)?)
                .ok_or_else(|| StoreError::Internal("a stored import base is torn".into()))?;
            let namespace = match record.namespace {
                None => None,
                Some(id) => {
                    let mut secrets = Vec::with_capacity(rows.len());
                    for row in &rows {
                        if row.try_get::<_, Option<&[u8]>>(8).map_err(db)?.is_some() {
                            secrets.push(stored_secret(row, 8)?);
                        }
                    }
                    Some((namespace_at(first, id)?, access_hash(first, 5)?, secrets))
                }
            };
            Ok(Some(ImportedState {
                record,
                namespace,
                base,
            }))
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(original = %update.original, ns = %update.namespace))]
    async fn update_imported(&self, update: &ImportUpdate) -> Result<Applied, StoreError> {
        let id = update.namespace.as_uuid();
        let indexes: Vec<&[u8]> = update
            .upserts
            .iter()
            .map(|s| s.index.0.as_slice())
            .collect();
        let names: Vec<&[u8]> = update.upserts.iter().map(|s| s.name.as_slice()).collect();
        let values: Vec<&[u8]> = update.upserts.iter().map(|s| s.value.as_slice()).collect();
        let deletes: Vec<&[u8]> = update.deletes.iter().map(|i| i.0.as_slice()).collect();
        let base = update.base.to_bytes();
        self.run(async |client| {
            let tx = client.transaction().await.map_err(db)?;
            bound(&tx, &self.server_timeout).await?;
            if let Some(refused) =
                check_state(&tx, update.original, update.namespace, update.expected).await?
            {
                return Ok(refused);
            }
            // The deletes move the namespace to its next revision when the merge changes
            // anything (see `port_sql::DELETE_SECRETS`); the upserts take it as their version.
            let writes = !update.upserts.is_empty() || update.access.is_some();
            tx.execute(port_sql::DELETE_SECRETS, &[&id, &deletes, &writes])
                .await
                .map_err(db)?;
            tx.execute(port_sql::UPSERT_SECRETS, &[&id, &indexes, &names, &values])
                .await
                .map_err(db)?;
            if let Some(access) = &update.access {
                tx.execute(
                    sql::SET_ACCESS,
                    &[&id, &access.as_bytes().as_slice(), &access.kind().code()],
                )
                .await
                .map_err(db)?;
            }
            tx.execute(
                sql::UPDATE_RECORD,
                &[
                    &update.original.as_uuid(),
                    &update.source.0.as_slice(),
                    &base,
                ],
            )
            .await
            .map_err(db)?;
            tx.commit().await.map_err(db)?;
            Ok(Applied::Applied)
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(original = %original, ns = %namespace))]
    async fn remove_imported(
        &self,
        original: OriginalId,
        namespace: NamespaceId,
        expected: Fingerprint,
    ) -> Result<Applied, StoreError> {
        self.run(async |client| {
            let tx = client.transaction().await.map_err(db)?;
            bound(&tx, &self.server_timeout).await?;
            if let Some(refused) = check_state(&tx, original, namespace, expected).await? {
                return Ok(refused);
            }
            tx.execute(sql::DELETE_NAMESPACE, &[&namespace.as_uuid()])
                .await
                .map_err(db)?;
            tx.commit().await.map_err(db)?;
            Ok(Applied::Applied)
        })
        .await
    }
}

/// Bounds the transaction on the server's side, as every write transaction of the store is
/// (see `port_sql::BOUND_TRANSACTION`).
async fn bound(tx: &tokio_postgres::Transaction<'_>, timeout: &str) -> Result<(), StoreError> {
    tx.query_one(port_sql::BOUND_TRANSACTION, &[&timeout])
        .await
        .map_err(db)?;
    Ok(())
}

/// Locks `namespace` and checks that it is still `original`'s and in the `expected` state:
/// `None` when it is, else what to answer (the transaction is then dropped, which rolls it
/// back).
async fn check_state(
    tx: &tokio_postgres::Transaction<'_>,
    original: OriginalId,
    namespace: NamespaceId,
    expected: Fingerprint,
) -> Result<Option<Applied>, StoreError> {
    let id = namespace.as_uuid();
    let Some(locked) = tx.query_opt(sql::LOCK_ACCESS, &[&id]).await.map_err(db)? else {
        return Ok(Some(Applied::Gone));
    };
    let held = tx
        .query_opt(sql::RECORD_HOLDS, &[&original.as_uuid(), &id])
        .await
        .map_err(db)?;
    if held.is_none() {
        return Ok(Some(Applied::Gone));
    }
    let access = access_hash(&locked, 0)?;
    let secrets = tx
        .query(port_sql::LIST_SECRETS, &[&id])
        .await
        .map_err(db)?
        .iter()
        .map(|row| stored_secret(row, 0))
        .collect::<Result<Vec<StoredSecret>, _>>()?;
    Ok((state_digest(&access, &secrets) != expected).then_some(Applied::Changed))
}

/// A record from the columns `original_id, namespace_id, source_fp`.
fn import_record(row: &Row) -> Result<ImportRecord, StoreError> {
    let namespace: Option<Uuid> = row.try_get(1).map_err(db)?;
    Ok(ImportRecord {
        original: OriginalId::from_uuid(row.try_get(0).map_err(db)?),
        namespace: namespace.map(NamespaceId::from_uuid),
        source: fingerprint(row.try_get(2).map_err(db)?)?,
    })
}

fn fingerprint(bytes: &[u8]) -> Result<Fingerprint, StoreError> {
    <[u8; 32]>::try_from(bytes)
        .map(Fingerprint)
        .map_err(|_| StoreError::Internal("a stored fingerprint is not 32 bytes long".into()))
}

/// An access hash from the columns `access_kind, access_hash` starting at `at`.
fn access_hash(row: &Row, at: usize) -> Result<AccessKeyHash, StoreError> {
    let kind: i16 = row.try_get(at).map_err(db)?;
    let kind = AccessKind::from_code(kind.into())
        .ok_or_else(|| StoreError::Internal("a stored access kind is unknown".into()))?;
    let digest: &[u8] = row.try_get(at + 1).map_err(db)?;
    let digest = <[u8; 32]>::try_from(digest)
        .map_err(|_| StoreError::Internal("a stored access hash is not 32 bytes long".into()))?;
    Ok(AccessKeyHash::new(kind, digest))
}

/// The namespace of `READ_IMPORTED`'s first row (`kek_id, wrapped_dek` at 3 and 4, `revision`
/// at 7).
fn namespace_at(row: &Row, id: NamespaceId) -> Result<NamespaceRecord, StoreError> {
    Ok(NamespaceRecord {
        id,
        data_key: WrappedKey {
            key_id: KeyId::new(row.try_get::<_, String>(3).map_err(db)?),
            ciphertext: row.try_get(4).map_err(db)?,
        },
        revision: revision(row, 7)?,
    })
}
