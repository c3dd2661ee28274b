//! `secrets-service import-original`: bring every namespace of the service this one replaces
//! into this service's store, keeping its access keys (the rules are `secrets_domain::import`'s;
//! the original's format is `secrets_adapters::original`'s).
//!
//! # A run
//! 1. The original's database is opened as one read-only snapshot.
//! 2. **The secret is judged first**, over the whole input and before anything is written: every
//!    namespace's key is decrypted under `ORIGINAL_ENCRYPTION_SECRET`. CBC has no MAC, so a key
//!    counts only when its padding is valid and it has a namespace key's shape. When none does
//!    (and there is at least one), the secret is wrong and the run stops, saying so. A namespace
//!    whose key alone fails is counted as failed later and the others are imported.
//! 3. Then batches of namespaces, in the original's id order, each with its secret rows, and the
//!    import records this store holds for the same range of ids. Per namespace: new (no record)
//!    is imported; changed (its fingerprint differs) is merged; unchanged is skipped without
//!    decrypting; deleted here stays deleted. A record in the range whose namespace is no longer
//!    in the original was deleted there: it is removed here too, unless written here since.
//!    Up to `--concurrency` namespaces of a batch are in flight at once, each its own
//!    transaction: a crash loses at most those in flight, and a re-run finds what committed.
//! 4. Counts at the end ([`ImportReport`]); each refusal and failure is logged with the
//!    namespace's original id and the reason, never with a name, a value or a key.
//!
//! `--dry-run` does all of it but the writes (it reads this store's records, and applies no
//! migration), and `--verify` reads every namespace back through this service and compares it
//! with the original.

mod report;

use std::collections::HashSet;
use std::fmt;

use futures_util::StreamExt as _;
use futures_util::stream;
use secrecy::SecretString;
use secrets_adapters::audit::{ActionEvent, AuditError};
use secrets_adapters::original::{OriginalCipher, OriginalDatabase, SourceError, SourceNamespace};
use secrets_domain::import::{
    ImportOutcome, ImportPlan, ImportRecord, ImportStore, OriginalId, OriginalNamespace,
    RemoveOutcome, VerifyOutcome, plan,
};
use secrets_domain::ports::{Envelope, Random, SecretStore, StoreError};
use secrets_domain::{Error, Limits, NamespaceId, SecretsService};
use uuid::Uuid;

use crate::audit::Trail;
use crate::progress::Progress;
pub use report::{ImportReport, Summary};

/// What a run does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Import what is new or changed, remove what the original deleted.
    Import,
    /// Decrypt and check everything, count what an import would do, write nothing.
    DryRun,
    /// Compare every imported namespace with the original.
    Verify,
}

/// How a run goes.
#[derive(Debug, Clone, Copy)]
pub struct ImportOptions {
    /// Namespaces read from the original per batch.
    pub batch_size: u32,
    /// Namespaces of a batch imported at once.
    pub concurrency: usize,
}

impl Default for ImportOptions {
    fn default() -> Self {
        Self {
            batch_size: 200,
            concurrency: 8,
        }
    }
}

/// Where a run writes or reads: the use cases (to import or verify), or only the store's
/// records (a dry run, which needs no key-encryption key). `compare` is false for a dry run on
/// a store whose schema is behind this binary's: it holds no import record yet.
#[derive(Debug)]
pub enum Target<'a, S, C, R> {
    /// Import through the use cases.
    Import(&'a SecretsService<S, C, R>),
    /// Count what an import would do.
    DryRun {
        /// The store whose records are compared with; `None` for an embedded database that
        /// does not exist yet.
        store: Option<&'a S>,
        /// Whether the store holds records to compare with (it exists, and its schema is
        /// this binary's).
        compare: bool,
        /// The limits an import would apply.
        limits: Limits,
    },
    /// Verify through the use cases.
    Verify(&'a SecretsService<S, C, R>),
}

/// Why a run stopped.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// `ORIGINAL_ENCRYPTION_SECRET` decrypts none of the namespace keys.
    #[error(
        "ORIGINAL_ENCRYPTION_SECRET is not the original service's ENCRYPTION_SECRET: none of \
         the {0} namespace keys decrypts under it (nothing was written)"
    )]
    WrongSecret(u64),
    /// The original's database.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// This service's store.
    #[error("this service's store: {0}")]
    Store(#[source] Error),
}

impl From<StoreError> for ImportError {
    fn from(error: StoreError) -> Self {
        Self::Store(match error {
            StoreError::Unavailable(source) => Error::Unavailable(source),
            other => Error::Internal(Box::new(other)),
        })
    }
}

/// Checks `ORIGINAL_ENCRYPTION_SECRET` against every namespace key of the original (see the
/// module doc), before anything is written. Returns how many namespaces the original holds.
pub async fn check_secret(
    source: &OriginalDatabase,
    cipher: &OriginalCipher,
    batch_size: u32,
) -> Result<u64, ImportError> {
    let (mut total, mut opened) = (0u64, 0u64);
    let mut after = None;
    loop {
        let batch = source
            .namespaces_after(after, i64::from(batch_size.max(1000)))
            .await?;
        let Some(last) = batch.last() else { break };
        after = Some(last.id);
        total += batch.len() as u64;
        opened += batch.iter().filter(|ns| cipher.opens(ns)).count() as u64;
    }
    if total > 0 && opened == 0 {
        return Err(ImportError::WrongSecret(total));
    }
    if opened < total {
        tracing::warn!(
            undecryptable = total - opened,
            total,
            "some namespace keys do not decrypt under ORIGINAL_ENCRYPTION_SECRET; those \
             namespaces will fail, the others are imported"
        );
    }
    Ok(total)
}

/// Runs the import, dry run or verification of every namespace of `source` (see the module
/// doc).
pub async fn run<S, C, R>(
    target: &Target<'_, S, C, R>,
    source: &OriginalDatabase,
    cipher: &OriginalCipher,
    options: ImportOptions,
    trail: Option<&Trail>,
    progress: &mut impl Progress,
) -> Result<ImportReport, ImportError>
where
    S: SecretStore + ImportStore,
    C: Envelope,
    R: Random,
{
    let batch_size = options.batch_size.max(1);
    progress.start(source.count().await?);
    let mut report = ImportReport::default();
    let mut after: Option<Uuid> = None;
    loop {
        let batch = source.namespaces(after, i64::from(batch_size)).await?;
        let full = batch.len() == batch_size as usize;
        // The records of the same range of ids: up to this batch's last id, or to the end once
        // the original has no more namespaces.
        let until = if full {
            batch.last().map(|ns| ns.id)
        } else {
            None
        };
        let records = records_between(target, after, until).await?;
        report.namespaces += batch.len() as u64;
        let in_batch: HashSet<Uuid> = batch.iter().map(|ns| ns.id).collect();
        let outcomes: Vec<Counts> = stream::iter(batch.iter().map(|ns| {
            let record = records.iter().find(|r| r.original.as_uuid() == ns.id);
            one(target, cipher, ns, record, trail)
        }))
        .buffer_unordered(options.concurrency.max(1))
        .collect()
        .await;
        for counts in &outcomes {
            counts.add_to(&mut report);
        }
        progress.advance(outcomes.len() as u64);
        for record in records
            .iter()
            .filter(|r| !in_batch.contains(&r.original.as_uuid()))
        {
            deleted_in_original(target, record, trail)
                .await
                .add_to(&mut report);
        }
        match until {
            Some(last) => after = Some(last),
            None => break,
        }
    }
    progress.finish();
    Ok(report)
}

async fn records_between<S, C, R>(
    target: &Target<'_, S, C, R>,
    after: Option<Uuid>,
    until: Option<Uuid>,
) -> Result<Vec<ImportRecord>, ImportError>
where
    S: SecretStore + ImportStore,
    C: Envelope,
    R: Random,
{
    let store = match target {
        Target::Import(service) | Target::Verify(service) => service.store(),
        Target::DryRun {
            store: Some(store),
            compare: true,
            ..
        } => *store,
        Target::DryRun { .. } => return Ok(Vec::new()),
    };
    Ok(store
        .imports_between(
            after.map(OriginalId::from_uuid),
            until.map(OriginalId::from_uuid),
        )
        .await?)
}

/// What one namespace added to the report.
#[derive(Debug, Default)]
struct Counts(ImportReport);

impl Counts {
    fn add_to(&self, report: &mut ImportReport) {
        let c = &self.0;
        report.imported += c.imported;
        report.updated += c.updated;
        report.unchanged += c.unchanged;
        report.deleted_here += c.deleted_here;
        report.removed += c.removed;
        report.kept += c.kept;
        report.secrets += c.secrets;
        report.duplicates += c.duplicates;
        report.refused += c.refused;
        report.kept_here += c.kept_here;
        report.over_limit += c.over_limit;
        report.failed += c.failed;
        report.matched += c.matched;
        report.differed += c.differed;
        report.stale += c.stale;
        report.not_imported += c.not_imported;
    }

    /// A change that committed but whose audit line could not be written: a failure of the
    /// run, so that it exits non-zero.
    fn unrecorded(original: Uuid, error: &AuditError) -> Self {
        Self::failed(
            original,
            &format_args!("changed, but not recorded in the audit trail: {error}"),
        )
    }

    fn failed(original: Uuid, why: &dyn fmt::Display) -> Self {
        tracing::error!(original = %original, error = %why, "cannot import this namespace");
        Self(ImportReport {
            failed: 1,
            ..ImportReport::default()
        })
    }
}

/// Whether a namespace is new here, changed in the original, or neither.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    New,
    Changed,
    Unchanged,
    DeletedHere,
}

fn classify(ns: &SourceNamespace, record: Option<&ImportRecord>) -> Class {
    match record {
        None => Class::New,
        Some(record) if record.namespace.is_none() => Class::DeletedHere,
        Some(record) if record.source == ns.fingerprint() => Class::Unchanged,
        Some(_) => Class::Changed,
    }
}

/// Handles one namespace of the original.
async fn one<S, C, R>(
    target: &Target<'_, S, C, R>,
    cipher: &OriginalCipher,
    ns: &SourceNamespace,
    record: Option<&ImportRecord>,
    trail: Option<&Trail>,
) -> Counts
where
    S: SecretStore + ImportStore,
    C: Envelope,
    R: Random,
{
    let class = classify(ns, record);
    let mut counts = Counts::default();
    let skip = match (target, class) {
        (Target::Verify(_), _) => false,
        (_, Class::Unchanged) => {
            counts.0.unchanged = 1;
            true
        }
        (_, Class::DeletedHere) => {
            counts.0.deleted_here = 1;
            true
        }
        _ => false,
    };
    if skip {
        return counts;
    }
    let limits = match target {
        Target::Import(service) | Target::Verify(service) => service.limits(),
        Target::DryRun { limits, .. } => *limits,
    };
    let original = match cipher.decrypt(ns) {
        Ok(original) => original,
        Err(why) => return Counts::failed(ns.id, &why),
    };
    let plan = plan(&original, limits);
    if !matches!(target, Target::Verify(_)) {
        log_refusals(&original, &plan);
        counts.0.duplicates = plan.duplicates;
        counts.0.refused = plan.refused.len() as u64;
        counts.0.over_limit = u64::from(plan.over_limit(limits));
    }
    let outcome = match target {
        Target::DryRun { .. } => {
            match class {
                Class::New => counts.0.imported = 1,
                _ => counts.0.updated = 1,
            }
            counts.0.secrets = plan.secrets.len() as u64;
            return counts;
        }
        Target::Verify(service) => return verify(service, &original, &plan).await,
        Target::Import(service) => match class {
            Class::New => service.import_new(&original, &plan).await,
            _ => service.import_changed(&original, &plan).await,
        },
    };
    match outcome {
        Ok(ImportOutcome::Imported {
            namespace,
            written,
            kept_here,
        }) => {
            match class {
                Class::New => counts.0.imported = 1,
                _ => counts.0.updated = 1,
            }
            let action = if class == Class::New {
                "import_namespace"
            } else {
                "import_changes"
            };
            if let Err(error) = acted(trail, action, Some(namespace), ns.id).await {
                return Counts::unrecorded(ns.id, &error);
            }
            counts.0.secrets = written;
            counts.0.kept_here = kept_here;
            counts
        }
        Ok(ImportOutcome::DeletedHere) => Counts(ImportReport {
            deleted_here: 1,
            ..ImportReport::default()
        }),
        Err(error) => Counts::failed(ns.id, &ErrorChain(&error)),
    }
}

async fn verify<S, C, R>(
    service: &SecretsService<S, C, R>,
    original: &OriginalNamespace,
    plan: &ImportPlan,
) -> Counts
where
    S: SecretStore + ImportStore,
    C: Envelope,
    R: Random,
{
    let mut counts = ImportReport::default();
    match service.verify_imported(original, plan).await {
        Ok(VerifyOutcome::Matches { changed_here }) => {
            counts.matched = 1;
            counts.kept_here = changed_here;
        }
        Ok(VerifyOutcome::Differs {
            mismatched,
            changed_here,
        }) => {
            tracing::error!(
                original = %original.id,
                mismatched,
                "this imported namespace differs from the original"
            );
            counts.differed = 1;
            counts.kept_here = changed_here;
        }
        Ok(VerifyOutcome::Stale) => {
            tracing::warn!(original = %original.id, "changed in the original since it was imported");
            counts.stale = 1;
        }
        Ok(VerifyOutcome::NotImported) => {
            tracing::warn!(original = %original.id, "not imported yet");
            counts.not_imported = 1;
        }
        Ok(VerifyOutcome::DeletedHere) => counts.deleted_here = 1,
        Err(error) => return Counts::failed(original.id.as_uuid(), &ErrorChain(&error)),
    }
    Counts(counts)
}

/// Handles a record whose namespace the original no longer has.
async fn deleted_in_original<S, C, R>(
    target: &Target<'_, S, C, R>,
    record: &ImportRecord,
    trail: Option<&Trail>,
) -> Counts
where
    S: SecretStore + ImportStore,
    C: Envelope,
    R: Random,
{
    let mut counts = ImportReport::default();
    if record.namespace.is_none() {
        return Counts(counts);
    }
    match target {
        Target::DryRun { .. } => counts.removed = 1,
        Target::Verify(_) => counts.kept = 1,
        Target::Import(service) => match service.remove_imported(record.original).await {
            Ok(RemoveOutcome::Removed) => {
                let original = record.original.as_uuid();
                if let Err(error) = acted(trail, "import_removal", record.namespace, original).await
                {
                    return Counts::unrecorded(original, &error);
                }
                counts.removed = 1;
            }
            Ok(RemoveOutcome::KeptWrittenHere) => {
                tracing::warn!(
                    original = %record.original,
                    "deleted in the original but written here since it was imported: kept"
                );
                counts.kept = 1;
            }
            Ok(RemoveOutcome::AlreadyGone) => {}
            Err(error) => return Counts::failed(record.original.as_uuid(), &ErrorChain(&error)),
        },
    }
    Counts(counts)
}

/// Every write an import makes to a namespace (`import_namespace`, `import_changes`,
/// `import_removal`) passes here once it committed: a line of the audit trail, with the
/// namespace's id here and the original's.
async fn acted(
    trail: Option<&Trail>,
    operation: &'static str,
    namespace: Option<NamespaceId>,
    original: Uuid,
) -> Result<(), AuditError> {
    tracing::debug!(operation, original = %original, "import-original changed a namespace");
    match trail {
        Some(trail) => {
            trail
                .action(ActionEvent {
                    operation,
                    namespace,
                    original: Some(original),
                    outcome: "done",
                })
                .await
        }
        None => Ok(()),
    }
}

fn log_refusals(original: &OriginalNamespace, plan: &ImportPlan) {
    for refusal in &plan.refused {
        tracing::warn!(
            original = %original.id,
            reason = %refusal,
            "a secret of the original is not imported"
        );
    }
}

/// An error with its source chain, for the log (the chain holds internal ids at most).
struct ErrorChain<'a>(&'a Error);

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = std::error::Error::source(self.0);
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

/// Reads `ORIGINAL_ENCRYPTION_SECRET`, or the file `ORIGINAL_ENCRYPTION_SECRET_FILE` names.
///
/// The original used its variable exactly as set, so the value is not trimmed; from a file,
/// one final line break (`\n` or `\r\n`) is dropped, as editors add one.
pub fn encryption_secret<H: std::hash::BuildHasher>(
    env: &std::collections::HashMap<String, String, H>,
) -> Result<SecretString, String> {
    const NAME: &str = "ORIGINAL_ENCRYPTION_SECRET";
    const FILE: &str = "ORIGINAL_ENCRYPTION_SECRET_FILE";
    let value = match (env.get(NAME), env.get(FILE)) {
        (Some(_), Some(_)) => return Err(format!("set either {NAME} or {FILE}, not both")),
        (Some(value), None) => zeroize::Zeroizing::new(value.clone()),
        (None, Some(path)) => {
            let mut text = zeroize::Zeroizing::new(
                std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read {FILE} ({path}): {e}"))?,
            );
            if text.ends_with('\n') {
                text.pop();
                if text.ends_with('\r') {
                    text.pop();
                }
            }
            text
        }
        (None, None) => String::new().into(),
    };
    if value.is_empty() {
        return Err(format!(
            "{NAME} is not set: import-original needs the original service's ENCRYPTION_SECRET \
             (or {FILE}, a file holding it)"
        ));
    }
    Ok(SecretString::from(value.to_string()))
}
