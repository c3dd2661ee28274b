//! Rows as the port's types, and the port's timestamps as SQLite stores them (integer unix
//! microseconds, from the service's clock).

use rusqlite::Row;
use secrets_domain::etag::Revision;
use secrets_domain::model::{KeyId, NamespaceId};
use secrets_domain::ports::{
    KeyCheck, NameIndex, NamespaceRecord, SealedSecret, StoreError, StoredSecret, WrappedKey,
};
use time::OffsetDateTime;
use uuid::Uuid;

use super::error::Failure;

/// Reads `id, kek_id, wrapped_dek, revision` at columns 0 to 3.
pub(super) fn namespace_record(row: &Row<'_>) -> rusqlite::Result<NamespaceRecord> {
    Ok(NamespaceRecord {
        id: namespace_id(row, 0)?,
        data_key: WrappedKey {
            key_id: KeyId::new(row.get::<_, String>(1)?),
            ciphertext: row.get(2)?,
        },
        revision: revision(row, 3)?,
    })
}

/// Reads a namespace's id at `column`.
pub(super) fn namespace_id(row: &Row<'_>, column: usize) -> rusqlite::Result<NamespaceId> {
    Ok(NamespaceId::from_uuid(Uuid::from_bytes(
        row.get::<_, [u8; 16]>(column)?,
    )))
}

/// Reads a revision (or version) at `column`; the schema's CHECK keeps it at least 1, so
/// anything else is corruption.
pub(super) fn revision(row: &Row<'_>, column: usize) -> rusqlite::Result<Revision> {
    let stored: i64 = row.get(column)?;
    u64::try_from(stored)
        .ok()
        .and_then(Revision::new)
        .ok_or(rusqlite::Error::IntegralValueOutOfRange(column, stored))
}

/// A revision as SQLite stores it.
pub(super) fn stored(revision: Revision) -> i64 {
    i64::try_from(revision.get()).unwrap_or(i64::MAX)
}

/// Reads `name_index, name_ct, value_ct, created_at, updated_at, version` starting at column
/// `first`.
pub(super) fn stored_secret(row: &Row<'_>, first: usize) -> rusqlite::Result<StoredSecret> {
    Ok(StoredSecret {
        sealed: SealedSecret {
            index: NameIndex(row.get(first)?),
            name: row.get(first + 1)?,
            value: row.get(first + 2)?,
        },
        created_at: timestamp(row, first + 3)?,
        updated_at: timestamp(row, first + 4)?,
        version: revision(row, first + 5)?,
    })
}

/// Reads `key_id, check_ct`.
pub(super) fn key_check(row: &Row<'_>) -> rusqlite::Result<KeyCheck> {
    Ok(KeyCheck {
        key_id: KeyId::new(row.get::<_, String>(0)?),
        ciphertext: row.get(1)?,
    })
}

/// Reads `kek_id, count(*)`.
pub(super) fn key_count(row: &Row<'_>) -> rusqlite::Result<(KeyId, u64)> {
    let count: i64 = row.get(1)?;
    Ok((
        KeyId::new(row.get::<_, String>(0)?),
        u64::try_from(count).unwrap_or_default(),
    ))
}

fn timestamp(row: &Row<'_>, column: usize) -> rusqlite::Result<OffsetDateTime> {
    let micros: i64 = row.get(column)?;
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1_000).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(
            column,
            rusqlite::types::Type::Integer,
            Box::new(e),
        )
    })
}

/// The service's clock in unix microseconds, the precision both stores keep.
pub(super) fn now_micros() -> Result<i64, Failure> {
    let micros = OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000;
    i64::try_from(micros).map_err(|e| Failure::Store(StoreError::Internal(Box::new(e))))
}
