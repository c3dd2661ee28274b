//! `secrets-service rotate-kek`: re-wrap every data key under the active KEK, online.
//!
//! The work is the domain's [`SecretsService::rewrap_batch`], repeated until nothing is left;
//! this module drives it and reports. Each batch is its own transaction, so the run can be
//! stopped at any point (Ctrl-C, a crash, a deploy) and simply started again: it picks up what
//! is still wrapped under a retired KEK. Replicas keep serving throughout: a data key keeps
//! its value, only its wrapping changes, and both wrappings open while the retired KEK is
//! still configured.
//!
//! Each data key re-wrapped, and each that could not be, is one line of the audit trail
//! (`rewrap_data_key`, `done` or `failed`), written before the next batch starts; a line that
//! cannot be written stops the run.

use secrets_adapters::audit::{ActionEvent, AuditError};
use secrets_domain::ports::{Envelope, Random, SecretStore};
use secrets_domain::{Error, NamespaceId, SecretsService};

use crate::audit::Trail;
use crate::progress::Progress;

/// Why a rotation stopped.
#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    /// The store failed (with its cause).
    #[error("{}", crate::error::chain(.0))]
    Domain(#[from] Error),
    /// An action could not be recorded in the audit trail.
    #[error("stopped: {0}")]
    Audit(#[from] AuditError),
}

/// What a rotation did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RotationReport {
    /// Data keys re-wrapped under the active KEK by this run.
    pub rewrapped: u64,
    /// Data keys that were under the active KEK already when the run started.
    pub already_current: u64,
    /// Namespaces deleted or re-wrapped by someone else during the run.
    pub skipped: u64,
    /// Data keys that could not be unwrapped (each logged with its namespace's internal id).
    pub failed: u64,
}

/// Re-wraps every data key that is not under the active KEK, `batch_size` per transaction.
pub async fn rotate_kek<S: SecretStore, C: Envelope, R: Random>(
    service: &SecretsService<S, C, R>,
    batch_size: u32,
    trail: Option<&Trail>,
    progress: &mut impl Progress,
) -> Result<RotationReport, RotationError> {
    let recorded = async |namespace: NamespaceId, outcome: &'static str| match trail {
        Some(trail) => {
            trail
                .action(ActionEvent {
                    operation: "rewrap_data_key",
                    namespace: Some(namespace),
                    original: None,
                    outcome,
                })
                .await
        }
        None => Ok(()),
    };
    let active = service.envelope().active_key_id();
    let usage = service.key_usage().await?;
    let (current, to_do): (Vec<_>, Vec<_>) = usage.into_iter().partition(|(id, _)| *id == active);
    let mut report = RotationReport {
        already_current: current.iter().map(|(_, n)| n).sum(),
        ..RotationReport::default()
    };
    progress.start(to_do.iter().map(|(_, n)| n).sum());
    let mut after = None;
    loop {
        let batch = service.rewrap_batch(after, batch_size).await?;
        for (namespace, error) in &batch.failed {
            tracing::error!(%namespace, %error, "cannot re-wrap this namespace's data key");
            recorded(*namespace, "failed").await?;
        }
        for namespace in &batch.rewrapped {
            recorded(*namespace, "done").await?;
        }
        let failed = batch.failed.len() as u64;
        let rewrapped = batch.rewrapped.len() as u64;
        report.rewrapped += rewrapped;
        report.skipped += batch.skipped;
        report.failed += failed;
        progress.advance(rewrapped + batch.skipped + failed);
        match batch.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    progress.finish();
    Ok(report)
}
