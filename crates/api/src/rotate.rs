//! `secrets-service rotate-kek`: re-wrap every data key under the active KEK, online.
//!
//! The work is the domain's [`SecretsService::rewrap_batch`], repeated until nothing is left;
//! this module drives it and reports. Each batch is its own transaction, so the run can be
//! stopped at any point (Ctrl-C, a crash, a deploy) and simply started again: it picks up what
//! is still wrapped under a retired KEK. Replicas keep serving throughout: a data key keeps
//! its value, only its wrapping changes, and both wrappings open while the retired KEK is
//! still configured.

use std::io::IsTerminal as _;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use secrets_domain::ports::{Envelope, Random, SecretStore};
use secrets_domain::{Error, SecretsService};

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

/// Where progress goes: a bar on a terminal, periodic log lines otherwise, nothing in tests.
pub trait Progress {
    /// The run found `total` data keys to re-wrap.
    fn start(&mut self, total: u64);
    /// `done` more were handled.
    fn advance(&mut self, done: u64);
    /// The run ended.
    fn finish(&mut self);
}

/// No progress output.
#[derive(Debug, Default)]
pub struct Quiet;

impl Progress for Quiet {
    fn start(&mut self, _: u64) {}
    fn advance(&mut self, _: u64) {}
    fn finish(&mut self) {}
}

/// A progress bar on standard error when it is a terminal; otherwise a log line every few
/// seconds.
#[derive(Debug)]
pub enum Console {
    /// Interactive.
    Bar(ProgressBar),
    /// Logged.
    Log {
        /// Keys to do.
        total: u64,
        /// Keys done.
        done: u64,
        /// When the last line was written.
        last: Instant,
    },
}

impl Console {
    /// Chooses the bar or the log by whether standard error is a terminal.
    #[must_use]
    pub fn new() -> Self {
        if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new(0);
            if let Ok(style) = ProgressStyle::with_template(
                "{spinner} re-wrapping data keys [{bar:40}] {pos}/{len} ({per_sec}, eta {eta})",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
            Self::Bar(bar)
        } else {
            Self::Log {
                total: 0,
                done: 0,
                last: Instant::now(),
            }
        }
    }
}

impl Default for Console {
    fn default() -> Self {
        Self::new()
    }
}

impl Progress for Console {
    fn start(&mut self, to_do: u64) {
        match self {
            Self::Bar(bar) => bar.set_length(to_do),
            Self::Log { total, .. } => {
                *total = to_do;
                tracing::info!(
                    to_do,
                    "re-wrapping data keys under the active key-encryption key"
                );
            }
        }
    }

    fn advance(&mut self, n: u64) {
        match self {
            Self::Bar(bar) => bar.inc(n),
            Self::Log { total, done, last } => {
                *done += n;
                if last.elapsed() >= Duration::from_secs(5) {
                    *last = Instant::now();
                    tracing::info!(done = *done, total = *total, "re-wrapping data keys");
                }
            }
        }
    }

    fn finish(&mut self) {
        if let Self::Bar(bar) = self {
            bar.finish();
        }
    }
}

/// Re-wraps every data key that is not under the active KEK, `batch_size` per transaction.
pub async fn rotate_kek<S: SecretStore, C: Envelope, R: Random>(
    service: &SecretsService<S, C, R>,
    batch_size: u32,
    progress: &mut impl Progress,
) -> Result<RotationReport, Error> {
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
        }
        let failed = batch.failed.len() as u64;
        report.rewrapped += batch.rewrapped;
        report.skipped += batch.skipped;
        report.failed += failed;
        progress.advance(batch.rewrapped + batch.skipped + failed);
        match batch.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    progress.finish();
    Ok(report)
}
