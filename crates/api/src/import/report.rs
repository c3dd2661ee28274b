//! What a run of `import-original` did, counted.

use std::fmt;

/// The counts of one run. Which of them a run fills depends on its mode.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ImportReport {
    /// Namespaces in the original.
    pub namespaces: u64,
    /// Namespaces imported for the first time (or, in a dry run, that would be).
    pub imported: u64,
    /// Namespaces imported before and changed in the original since, merged.
    pub updated: u64,
    /// Namespaces unchanged in the original since they were imported: skipped.
    pub unchanged: u64,
    /// Namespaces deleted here since they were imported: skipped, they stay deleted.
    pub deleted_here: u64,
    /// Namespaces deleted in the original since they were imported, deleted here too.
    pub removed: u64,
    /// Namespaces deleted in the original but written here since they were imported: kept.
    pub kept: u64,
    /// Secrets written (or that would be).
    pub secrets: u64,
    /// Rows dropped because a newer row of the original had the same name.
    pub duplicates: u64,
    /// Secrets left out by the import's rules (each logged with its namespace and reason).
    pub refused: u64,
    /// Names that kept this service's state because they were written here since the import.
    pub kept_here: u64,
    /// Namespaces holding more secrets than `limits.max_secrets_per_namespace` (imported whole).
    pub over_limit: u64,
    /// Namespaces that could not be imported (each logged with its original id and why).
    pub failed: u64,
    /// Verify: namespaces that match the original.
    pub matched: u64,
    /// Verify: namespaces that differ from the original (each logged with its original id).
    pub differed: u64,
    /// Verify: namespaces changed in the original since their import.
    pub stale: u64,
    /// Verify: namespaces of the original not imported yet.
    pub not_imported: u64,
}

impl ImportReport {
    /// Whether the run left something undone that needs the operator: a namespace that failed,
    /// or (verify) one that differs or is missing.
    #[must_use]
    pub fn incomplete(&self) -> u64 {
        self.failed + self.differed + self.not_imported + self.stale
    }

    /// The one-line summary of an import or a dry run.
    #[must_use]
    pub fn import_summary(&self) -> Summary<'_> {
        Summary(self, false)
    }

    /// The one-line summary of a verify run.
    #[must_use]
    pub fn verify_summary(&self) -> Summary<'_> {
        Summary(self, true)
    }
}

/// A report's summary line (see [`ImportReport::import_summary`]).
#[derive(Debug)]
pub struct Summary<'a>(&'a ImportReport, bool);

impl fmt::Display for Summary<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = self.0;
        if self.1 {
            write!(
                f,
                "namespaces: {}, matching: {}, differing: {}, changed in the original since \
                 imported: {}, not imported: {}, deleted here: {}, names written here since the \
                 import: {}, deleted in the original but still here: {}, failed: {}",
                r.namespaces,
                r.matched,
                r.differed,
                r.stale,
                r.not_imported,
                r.deleted_here,
                r.kept_here,
                r.kept,
                r.failed
            )
        } else {
            write!(
                f,
                "namespaces: {} (imported: {}, updated: {}, unchanged: {}, deleted here: {}), \
                 removed as deleted in the original: {}, kept as written here: {}, secrets \
                 written: {}, duplicates resolved: {}, refused: {}, names kept as written here: \
                 {}, over the secret limit: {}, failed: {}",
                r.namespaces,
                r.imported,
                r.updated,
                r.unchanged,
                r.deleted_here,
                r.removed,
                r.kept,
                r.secrets,
                r.duplicates,
                r.refused,
                r.kept_here,
                r.over_limit,
                r.failed
            )
        }
    }
}
