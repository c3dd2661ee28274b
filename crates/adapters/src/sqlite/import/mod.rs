//! The domain's [`ImportStore`] port on SQLite: reads on the pool, writes through the writer,
//! each write one savepoint of the writer's group (so one transaction of its own).
//!
//! Merges and removals are compare-and-swaps: under the writer's lock, the namespace's rows are
//! read and the write happens only when their state digest is the one the merge was computed
//! from; otherwise the store answers `Changed` and the merge is computed again.
//!
//! Revisions as the port's (`secrets_domain::etag`): a namespace imported whole starts at the
//! first revision, its secrets at the first version; a merge that changes anything moves the
//! namespace to its next revision, which the secrets it writes take as their version.

mod sql;

use async_trait::async_trait;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OptionalExtension as _, Row, params};
use secrets_domain::etag::Revision;
use secrets_domain::import::{
    Applied, Fingerprint, ImportBase, ImportRecord, ImportStore, ImportUpdate, ImportedState,
    NewImport, OriginalId, state_digest,
};
use secrets_domain::model::{AccessKeyHash, AccessKind, NamespaceId};
use secrets_domain::ports::{StoreError, StoredSecret};
use uuid::Uuid;

use super::SqliteStore;
use super::error::Failure;
use super::port::{all_rows, namespace_revision, set_revision, upsert};
use super::rows::{namespace_record, now_micros, stored_secret};
use super::sql as port_sql;

#[async_trait]
impl ImportStore for SqliteStore {
    #[tracing::instrument(level = "debug", skip_all)]
    async fn imports_between(
        &self,
        after: Option<OriginalId>,
        until: Option<OriginalId>,
    ) -> Result<Vec<ImportRecord>, StoreError> {
        let until = until.map_or(Uuid::max(), |id| id.as_uuid()).into_bytes();
        self.reads
            .run(move |conn| match after {
                None => all_rows(conn, sql::IMPORTS_FIRST, [until], import_record),
                Some(after) => all_rows(
                    conn,
                    sql::IMPORTS_AFTER,
                    params![after.as_uuid().as_bytes(), until],
                    import_record,
                ),
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(original = %import.original, ns = %import.namespace.id))]
    async fn create_imported(&self, import: &NewImport) -> Result<(), StoreError> {
        let import = import.clone();
        self.writer
            .write(move |tx| {
                let now = now_micros()?;
                let ns = &import.namespace;
                tx.prepare_cached(sql::CREATE_NAMESPACE)?.execute(params![
                    ns.id.as_bytes(),
                    ns.access_hash.as_bytes(),
                    ns.access_hash.kind().code(),
                    ns.data_key.key_id.as_str(),
                    ns.data_key.ciphertext,
                    now,
                ])?;
                for secret in &import.secrets {
                    upsert(tx, ns.id, secret, now, Revision::INITIAL)?;
                }
                tx.prepare_cached(sql::CREATE_RECORD)?.execute(params![
                    import.original.as_uuid().as_bytes(),
                    ns.id.as_bytes(),
                    import.source.0,
                    import.base.to_bytes(),
                    now,
                ])?;
                Ok(())
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(original = %original))]
    async fn read_imported(
        &self,
        original: OriginalId,
    ) -> Result<Option<ImportedState>, StoreError> {
        self.reads
            .run(move |conn| {
                let mut stmt = conn.prepare_cached(sql::READ_IMPORTED)?;
                let mut rows = stmt.query([original.as_uuid().as_bytes()])?;
                let mut found: Option<ImportedState> = None;
                while let Some(row) = rows.next()? {
                    let state = match &mut found {
                        Some(state) => state,
                        None => found.insert(imported_state(row, original)?),
                    };
                    if let Some((_, _, secrets)) = &mut state.namespace
                        && !matches!(row.get_ref(8)?, ValueRef::Null)
                    {
                        secrets.push(stored_secret(row, 8)?);
                    }
                }
                Ok(found)
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(original = %update.original, ns = %update.namespace))]
    async fn update_imported(&self, update: &ImportUpdate) -> Result<Applied, StoreError> {
        let update = update.clone();
        self.writer
            .write(move |tx| {
                if let Some(refused) =
                    check_state(tx, update.original, update.namespace, update.expected)?
                {
                    return Ok(refused);
                }
                let ns = update.namespace;
                let was = namespace_revision(tx, ns)?;
                let mut delete = tx.prepare_cached(port_sql::DELETE_SECRET)?;
                let mut deleted = 0;
                for index in &update.deletes {
                    deleted += delete.execute(params![ns.as_bytes(), index.0])?;
                }
                let changed = deleted > 0 || !update.upserts.is_empty() || update.access.is_some();
                let revision = if changed { was.next() } else { was };
                let now = now_micros()?;
                for secret in &update.upserts {
                    upsert(tx, ns, secret, now, revision)?;
                }
                set_revision(tx, ns, revision)?;
                if let Some(access) = &update.access {
                    tx.prepare_cached(sql::SET_ACCESS)?.execute(params![
                        ns.as_bytes(),
                        access.as_bytes(),
                        access.kind().code()
                    ])?;
                }
                tx.prepare_cached(sql::UPDATE_RECORD)?.execute(params![
                    update.original.as_uuid().as_bytes(),
                    update.source.0,
                    update.base.to_bytes(),
                    now,
                ])?;
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
        self.writer
            .write(move |tx| {
                if let Some(refused) = check_state(tx, original, namespace, expected)? {
                    return Ok(refused);
                }
                tx.prepare_cached(sql::DELETE_NAMESPACE)?
                    .execute([namespace.as_bytes()])?;
                Ok(Applied::Applied)
            })
            .await
    }
}

/// Checks, inside the writer's transaction (which holds the database's write lock), that
/// `namespace` is still `original`'s and in the `expected` state: `None` when it is, else what
/// to answer.
fn check_state(
    tx: &Connection,
    original: OriginalId,
    namespace: NamespaceId,
    expected: Fingerprint,
) -> Result<Option<Applied>, Failure> {
    let access = tx
        .prepare_cached(sql::ACCESS)?
        .query_row([namespace.as_bytes()], |row| access_hash(row, 0))
        .optional()?;
    let Some(access) = access else {
        return Ok(Some(Applied::Gone));
    };
    let held: bool = tx.prepare_cached(sql::RECORD_HOLDS)?.query_row(
        params![original.as_uuid().as_bytes(), namespace.as_bytes()],
        |row| row.get(0),
    )?;
    if !held {
        return Ok(Some(Applied::Gone));
    }
    let secrets: Vec<StoredSecret> =
        all_rows(tx, port_sql::LIST_SECRETS, [namespace.as_bytes()], |row| {
            stored_secret(row, 0)
        })?;
    Ok((state_digest(&access, &secrets) != expected).then_some(Applied::Changed))
}

/// A record from the columns `original_id, namespace_id, source_fp`.
fn import_record(row: &Row<'_>) -> rusqlite::Result<ImportRecord> {
    Ok(ImportRecord {
        original: OriginalId::from_uuid(Uuid::from_bytes(row.get(0)?)),
        namespace: row
            .get::<_, Option<[u8; 16]>>(1)?
            .map(|id| NamespaceId::from_uuid(Uuid::from_bytes(id))),
        source: Fingerprint(row.get(2)?),
    })
}

/// The record and namespace of `READ_IMPORTED`'s first row, without secrets yet.
fn imported_state(row: &Row<'_>, original: OriginalId) -> Result<ImportedState, Failure> {
    let namespace = match row.get::<_, Option<[u8; 16]>>(0)? {
        None => None,
        Some(_) => Some((namespace_record(row)?, access_hash(row, 6)?, Vec::new())),
    };
    let base: Vec<u8> = row.get(5)?;
    Ok(ImportedState {
        record: ImportRecord {
            original,
            namespace: namespace.as_ref().map(|(record, _, _)| record.id),
            source: Fingerprint(row.get(4)?),
        },
        namespace,
        base: ImportBase::from_bytes(&base)
            .ok_or_else(|| StoreError::Internal("a stored import base is torn".into()))?,
    })
}

/// An access hash from the columns `access_kind, access_hash` starting at `at`.
fn access_hash(row: &Row<'_>, at: usize) -> rusqlite::Result<AccessKeyHash> {
    let kind = AccessKind::from_code(row.get(at)?).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            at,
            rusqlite::types::Type::Integer,
            "a stored access kind is unknown".into(),
        )
    })?;
    Ok(AccessKeyHash::new(kind, row.get(at + 1)?))
}
