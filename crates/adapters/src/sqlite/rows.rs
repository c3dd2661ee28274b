//! Rows as the port's types, and the port's timestamps as SQLite stores them (integer unix
//! microseconds, from the service's clock).

use rusqlite::Row;
use secrets_domain::model::{KeyId, NamespaceId};
use secrets_domain::ports::{
    KeyCheck, NameIndex, NamespaceRecord, SealedSecret, StoreError, StoredSecret, WrappedKey,
};
use time::OffsetDateTime;
use uuid::Uuid;

use super::error::Failure;

/// Reads `id, kek_id, wrapped_dek` at columns 0 to 2.
pub(super) fn namespace_record(row: &Row<'_>) -> rusqlite::Result<NamespaceRecord> {
    Ok(NamespaceRecord {
        id: NamespaceId::from_uuid(Uuid::from_bytes(row.get::<_, [u8; 16]>(0)?)),
        data_key: WrappedKey {
            key_id: KeyId::new(row.get::<_, String>(1)?),
            ciphertext: row.get(2)?,
        },
    })
}

/// Reads `name_index, name_ct, value_ct, created_at, updated_at` starting at column `first`.
pub(super) fn stored_secret(row: &Row<'_>, first: usize) -> rusqlite::Result<StoredSecret> {
    Ok(StoredSecret {
        sealed: SealedSecret {
            index: NameIndex(row.get(first)?),
            name: row.get(first + 1)?,
            value: row.get(first + 2)?,
        },
        created_at: timestamp(row, first + 3)?,
        updated_at: timestamp(row, first + 4)?,
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
