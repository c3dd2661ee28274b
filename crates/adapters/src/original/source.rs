//! The original service's database, read in one snapshot and never written.
//!
//! # Reading without getting in the original's way
//! Everything is read inside one `REPEATABLE READ READ ONLY` transaction: one snapshot, so the
//! pre-pass over every namespace key and the batches after it see the same rows, and no row the
//! original writes meanwhile tears a batch. Plain reads take only `ACCESS SHARE` locks, which
//! conflict with nothing the original does while serving (its reads, inserts and deletes); only
//! DDL (`ALTER`, `DROP`, `VACUUM FULL`) would wait for them. `lock_timeout` bounds how long the
//! import itself waits for a lock, so it never queues behind such DDL for long, holding others
//! up behind it. The transaction stays open between batches while this service writes, so the
//! server's `idle_in_transaction_session_timeout` is lifted for it; a crashed import's
//! connection closes with its process, which ends the transaction. The original's database
//! keeps its old row versions until the run ends (its vacuum horizon waits for the snapshot).

use std::fmt;

use secrets_domain::import::Fingerprint;
use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls, Row};
use uuid::Uuid;

/// The session settings of the import's snapshot (see the module doc).
const BEGIN: &str = "\
    BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; \
    SET LOCAL lock_timeout = '10s'; \
    SET LOCAL idle_in_transaction_session_timeout = 0";

// Columns the import reads; also the check that the database is the original's.
const NAMESPACES_FIRST: &str = "\
    SELECT id, \"accessKeyHash\", \"encryptionKey\" FROM namespace ORDER BY id LIMIT $1";
const NAMESPACES_AFTER: &str = "\
    SELECT id, \"accessKeyHash\", \"encryptionKey\" FROM namespace \
    WHERE id > $1 ORDER BY id LIMIT $2";
// The ("namespaceId", "key") unique index answers this by its first column.
const SECRETS_OF: &str = "\
    SELECT \"namespaceId\", id, \"key\", \"value\", \"createdAt\" FROM secret \
    WHERE \"namespaceId\" = ANY($1) ORDER BY \"namespaceId\", id";
const COUNT: &str = "SELECT count(*) FROM namespace";

/// Why the original's database could not be read. The connection URL is never part of it.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The server could not be reached, or refused the connection.
    #[error("cannot connect to the original's database: {0}")]
    Connect(#[source] tokio_postgres::Error),
    /// The database has no `namespace` and `secret` tables of the original's shape.
    #[error(
        "the database named by --from does not hold the original service's tables \
         (namespace and secret, with the columns of its migrations): {0}"
    )]
    Schema(#[source] tokio_postgres::Error),
    /// A query failed.
    #[error("reading the original's database: {0}")]
    Query(#[source] tokio_postgres::Error),
}

/// One namespace row of the original.
pub struct SourceNamespace {
    /// Its id.
    pub id: Uuid,
    /// `"accessKeyHash"`: lowercase hex SHA-256 of its access key.
    pub access_hash: String,
    /// `"encryptionKey"`: its key, encrypted under `ENCRYPTION_SECRET`.
    pub encryption_key: String,
    /// Its secret rows, in id order (only when read with [`OriginalDatabase::namespaces`]).
    pub secrets: Vec<SourceSecret>,
}

/// One secret row of the original (ciphertexts only, so `Debug` may print it).
#[derive(Debug)]
pub struct SourceSecret {
    /// Its id.
    pub id: Uuid,
    /// `"key"`: the name, encrypted.
    pub key: String,
    /// `"value"`: the value, encrypted.
    pub value: String,
    /// `"createdAt"`.
    pub created_at: OffsetDateTime,
}

impl SourceNamespace {
    /// SHA-256 over everything the original stores of the namespace, its ciphertexts included:
    /// any write to it in the original changes it (every encryption has a fresh IV).
    #[must_use]
    pub fn fingerprint(&self) -> Fingerprint {
        let mut hash = Sha256::new();
        let mut field = |bytes: &[u8]| {
            hash.update((bytes.len() as u64).to_be_bytes());
            hash.update(bytes);
        };
        field(b"secrets-service/original-rows/v1");
        field(self.id.as_bytes());
        field(self.access_hash.as_bytes());
        field(self.encryption_key.as_bytes());
        for secret in &self.secrets {
            field(secret.id.as_bytes());
            field(secret.key.as_bytes());
            field(secret.value.as_bytes());
            field(&secret.created_at.unix_timestamp_nanos().to_be_bytes());
        }
        Fingerprint(hash.finalize().into())
    }
}

impl fmt::Debug for SourceNamespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SourceNamespace")
            .field("id", &self.id)
            .field("secrets", &self.secrets.len())
            .finish_non_exhaustive()
    }
}

/// A read-only snapshot of the original's database (see the module doc).
pub struct OriginalDatabase {
    client: Client,
}

impl fmt::Debug for OriginalDatabase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OriginalDatabase")
    }
}

impl OriginalDatabase {
    /// Connects to the database at `url`, opens the snapshot and checks the tables.
    pub async fn open(url: &str) -> Result<Self, SourceError> {
        let mut config: tokio_postgres::Config = url.parse().map_err(SourceError::Connect)?;
        config.application_name("secrets-service import-original");
        let (client, connection) = config.connect(NoTls).await.map_err(SourceError::Connect)?;
        // The connection ends when the client is dropped; its error, if any, surfaces as the
        // next query's.
        tokio::spawn(async move { drop(connection.await) });
        client
            .batch_execute(BEGIN)
            .await
            .map_err(SourceError::Query)?;
        let database = Self { client };
        database.namespaces_after(None, 0).await?;
        database.secrets_of(&[]).await?;
        Ok(database)
    }

    /// How many namespaces the snapshot holds.
    pub async fn count(&self) -> Result<u64, SourceError> {
        let row = self
            .client
            .query_one(COUNT, &[])
            .await
            .map_err(SourceError::Query)?;
        let count: i64 = row.try_get(0).map_err(SourceError::Query)?;
        Ok(u64::try_from(count).unwrap_or_default())
    }

    /// Up to `limit` namespaces after `after` in id order, without their secrets.
    pub async fn namespaces_after(
        &self,
        after: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<SourceNamespace>, SourceError> {
        let rows = match after {
            None => self.client.query(NAMESPACES_FIRST, &[&limit]).await,
            Some(after) => self.client.query(NAMESPACES_AFTER, &[&after, &limit]).await,
        }
        .map_err(classify)?;
        rows.iter().map(namespace).collect()
    }

    /// As [`Self::namespaces_after`], each with its secrets.
    pub async fn namespaces(
        &self,
        after: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<SourceNamespace>, SourceError> {
        let mut namespaces = self.namespaces_after(after, limit).await?;
        let ids: Vec<Uuid> = namespaces.iter().map(|ns| ns.id).collect();
        let mut secrets = self.secrets_of(&ids).await?.into_iter().peekable();
        // Both are in namespace-id order: one merge pass hands each namespace its rows.
        for ns in &mut namespaces {
            while let Some((owner, _)) = secrets.peek() {
                if *owner != ns.id {
                    break;
                }
                if let Some((_, secret)) = secrets.next() {
                    ns.secrets.push(secret);
                }
            }
        }
        Ok(namespaces)
    }

    async fn secrets_of(&self, ids: &[Uuid]) -> Result<Vec<(Uuid, SourceSecret)>, SourceError> {
        let rows = self
            .client
            .query(SECRETS_OF, &[&ids])
            .await
            .map_err(classify)?;
        rows.iter()
            .map(|row| {
                let get = |e| SourceError::Schema(e);
                Ok((
                    row.try_get(0).map_err(get)?,
                    SourceSecret {
                        id: row.try_get(1).map_err(get)?,
                        key: row.try_get(2).map_err(get)?,
                        value: row.try_get(3).map_err(get)?,
                        created_at: row.try_get(4).map_err(get)?,
                    },
                ))
            })
            .collect()
    }

    /// Ends the snapshot (it wrote nothing) and closes the connection.
    pub async fn close(self) -> Result<(), SourceError> {
        self.client
            .batch_execute("COMMIT")
            .await
            .map_err(SourceError::Query)
    }
}

fn namespace(row: &Row) -> Result<SourceNamespace, SourceError> {
    Ok(SourceNamespace {
        id: row.try_get(0).map_err(SourceError::Schema)?,
        access_hash: row.try_get(1).map_err(SourceError::Schema)?,
        encryption_key: row.try_get(2).map_err(SourceError::Schema)?,
        secrets: Vec::new(),
    })
}

/// A missing table or column says the database is not the original's.
fn classify(error: tokio_postgres::Error) -> SourceError {
    match error.code() {
        Some(code) if *code == SqlState::UNDEFINED_TABLE || *code == SqlState::UNDEFINED_COLUMN => {
            SourceError::Schema(error)
        }
        _ => SourceError::Query(error),
    }
}
