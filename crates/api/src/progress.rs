//! Progress of a long command (`rotate-kek`, `import-original`): a bar on a terminal, a log
//! line every few seconds otherwise, nothing in tests.

use std::io::IsTerminal as _;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

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
        /// What is being done, for the log lines ("re-wrapping data keys").
        what: &'static str,
        /// Items to do.
        total: u64,
        /// Items done.
        done: u64,
        /// When the last line was written.
        last: Instant,
    },
}

impl Console {
    /// Chooses the bar or the log by whether standard error is a terminal; `what` says what is
    /// being done, e.g. "re-wrapping data keys".
    #[must_use]
    pub fn new(what: &'static str) -> Self {
        if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new(0);
            if let Ok(style) = ProgressStyle::with_template(&format!(
                "{{spinner}} {what} [{{bar:40}}] {{pos}}/{{len}} ({{per_sec}}, eta {{eta}})"
            )) {
                bar.set_style(style.progress_chars("=> "));
            }
            Self::Bar(bar)
        } else {
            Self::Log {
                what,
                total: 0,
                done: 0,
                last: Instant::now(),
            }
        }
    }
}

impl Progress for Console {
    fn start(&mut self, to_do: u64) {
        match self {
            Self::Bar(bar) => bar.set_length(to_do),
            Self::Log { what, total, .. } => {
                *total = to_do;
                tracing::info!(to_do, "{what}: starting");
            }
        }
    }

    fn advance(&mut self, n: u64) {
        match self {
            Self::Bar(bar) => bar.inc(n),
            Self::Log {
                what,
                total,
                done,
                last,
            } => {
                *done += n;
                if last.elapsed() >= Duration::from_secs(5) {
                    *last = Instant::now();
                    tracing::info!(done = *done, total = *total, "{what}");
                }
            }
        }
    }

    fn finish(&mut self) {
        match self {
            Self::Bar(bar) => bar.finish(),
            Self::Log {
                what, total, done, ..
            } => tracing::info!(done = *done, total = *total, "{what}: done"),
        }
    }
}
