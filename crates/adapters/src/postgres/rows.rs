//! Rows as the port's types.

use secrets_domain::etag::Revision;
use secrets_domain::model::{KeyId, NamespaceId};
use secrets_domain::ports::{
    KeyCheck, NameIndex, NamespaceRecord, SealedSecret, StoreError, StoredSecret, WrappedKey,
};
use tokio_postgres::Row;

use super::error::db;

/// A namespace from a row whose first four columns are `id, kek_id, wrapped_dek, revision`.
pub(super) fn namespace_record(row: &Row) -> Result<NamespaceRecord, StoreError> {
    Ok(NamespaceRecord {
        id: NamespaceId::from_uuid(row.try_get(0).map_err(db)?),
        data_key: WrappedKey {
            key_id: KeyId::new(row.try_get::<_, String>(1).map_err(db)?),
            ciphertext: row.try_get(2).map_err(db)?,
        },
        revision: revision(row, 3)?,
    })
}

/// A revision (or version) from column `at`.
pub(super) fn revision(row: &Row, at: usize) -> Result<Revision, StoreError> {
    let stored: i64 = row.try_get(at).map_err(db)?;
    // The schema's CHECK keeps it at least 1; anything else is corruption, not input.
    u64::try_from(stored)
        .ok()
        .and_then(Revision::new)
        .ok_or_else(|| StoreError::Internal("a stored revision is below 1".into()))
}

/// A secret from the six columns `name_index, name_ct, value_ct, created_at, updated_at,
/// version` starting at column `at`.
pub(super) fn stored_secret(row: &Row, at: usize) -> Result<StoredSecret, StoreError> {
    let index: &[u8] = row.try_get(at).map_err(db)?;
    // The schema's CHECK keeps this at 32 bytes; anything else is corruption, not input.
    let index = <[u8; 32]>::try_from(index)
        .map_err(|_| StoreError::Internal("a stored name index is not 32 bytes long".into()))?;
    Ok(StoredSecret {
        sealed: SealedSecret {
            index: NameIndex(index),
            name: row.try_get(at + 1).map_err(db)?,
            value: row.try_get(at + 2).map_err(db)?,
        },
        created_at: row.try_get(at + 3).map_err(db)?,
        updated_at: row.try_get(at + 4).map_err(db)?,
        version: revision(row, at + 5)?,
    })
}

/// A key check from the columns `key_id, check_ct`.
pub(super) fn key_check(row: &Row) -> Result<KeyCheck, StoreError> {
    Ok(KeyCheck {
        key_id: KeyId::new(row.try_get::<_, String>(0).map_err(db)?),
        ciphertext: row.try_get(1).map_err(db)?,
    })
}

/// A key id and how many namespaces it wraps the data key of, from `kek_id, count(*)`.
pub(super) fn key_count(row: &Row) -> Result<(KeyId, u64), StoreError> {
    let id = row.try_get::<_, String>(0).map_err(db)?;
    let count = row.try_get::<_, i64>(1).map_err(db)?;
    Ok((KeyId::new(id), u64::try_from(count).unwrap_or_default()))
}
