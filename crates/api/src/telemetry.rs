//! Tracing set-up: text or JSON lines on standard error, filtered by `log.level` or `RUST_LOG`.
//!
//! What reaches a log line is decided where events are written: handlers and adapters log
//! internal ids, key ids, routes and statuses, never an access key, a token, a secret name or
//! a value (the types that hold those have redacted `Debug` output as a second line of defence).
//! The one line per request (method, route template, status, latency, request id) is written
//! by [`crate::middleware`]. `tests/redaction.rs` runs every endpoint with the binary at `trace`
//! and searches everything it printed for the secrets it was sent.
//!
//! Lines are written by a thread of their own: a request only queues its line, and the thread
//! writes what has queued through a buffer, flushed whenever the queue is empty. So the request
//! path makes no `write(2)`, and a busy server makes one per batch of lines instead of one per
//! line. No line is dropped: when the queue is full, events wait for room.

use std::io::{BufWriter, IsTerminal as _};

use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

use crate::settings::{LogFormat, LogSettings};

/// Installs the global subscriber. Calling it twice keeps the first (tests start many apps).
///
/// Lines still queued are written when the returned guard is dropped: keep it until the
/// process is about to exit.
#[must_use = "dropping the guard stops the log writer"]
pub fn init(settings: &LogSettings) -> WorkerGuard {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&settings.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(false)
        .thread_name("log-writer")
        .finish(BufWriter::new(std::io::stderr()));
    // Colours only for a person at a terminal: escape codes in a file or a log pipeline are
    // noise that every reader must strip.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(writer);
    let installed = match settings.format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
    // An error means a subscriber is installed already, which then stays.
    drop(installed);
    guard
}
