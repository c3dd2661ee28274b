//! The writer: one thread owns the sink and writes lines in groups, one `fsync` per group, and
//! only then answers the requests that queued them, as the SQLite writer does with commits.
//!
//! A request queues its line without blocking ([`AuditLog::record`]) and waits for the answer
//! at most for its time bound. The queue is bounded: when it is full, or the wait runs out, or
//! the write fails, the request is told so at once, and the server answers it 503. So a sink
//! that is stuck, full or gone never hangs a request, never grows memory without bound, and is
//! noticed the moment it fails.
//!
//! # Failures and recovery
//! After a failed write (a full disk, a file system gone read-only, a sink that timed out), the
//! trail is *unhealthy* until a write succeeds: [`AuditLog::healthy`] says so, and the server
//! refuses requests before running them rather than after. While unhealthy, the writer tries
//! every [`IDLE`] on its own to reopen the sink and write a `reopen` line (`reason`
//! `recovered`, and `lost_from`: the first line of the failed group, which may be missing or cut
//! short). The chain's sequence numbers go on across the gap, so a verifier sees exactly which
//! lines a failure took, and that they were refused, not hidden.
//!
//! # The file sink
//! Opened append-only, created with mode 0600. Before each group, and every [`IDLE`] when
//! there is none, the writer compares the file it holds with what the path names now: a file
//! deleted or replaced under it is noticed (a warning in the log), and the path is opened
//! anew, the chain going on there with a `reopen` line (`deleted` or `replaced`). SIGHUP asks
//! for the same ([`AuditLog::reopen`]), for log rotation: move the file, send SIGHUP, and no
//! line is written to the old file after the next group.

use std::fs::{File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;

use super::key::{AuditKey, AuditKeyId};
use super::record::{Chain, Event};

/// How long the writer waits for lines before it checks the sink on its own.
pub const IDLE: Duration = Duration::from_millis(200);
/// Lines queued at most; past it a request is refused at once.
const QUEUE: usize = 8192;
/// Lines written per group at most.
const GROUP: usize = 1024;
/// How long closing waits for the writer to write its last line.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// Where the lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sink {
    /// A file, append-only.
    File(PathBuf),
    /// Standard output (not synced: a pipe or a terminal has nothing to sync).
    Stdout,
}

impl std::fmt::Display for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File(path) => write!(f, "audit.path {}", path.display()),
            Self::Stdout => f.write_str("standard output"),
        }
    }
}

/// Why a line was not written.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AuditError {
    /// The sink could not be opened, or its first line written, at start.
    #[error("the audit trail cannot use {sink}: {cause}")]
    Open {
        /// The file, or standard output.
        sink: String,
        /// Why.
        cause: String,
    },
    /// The write failed.
    #[error("the audit trail's write failed: {0}")]
    Write(String),
    /// The write did not finish within its time bound.
    #[error("the audit trail did not write within its time bound")]
    TimedOut,
    /// The queue is full.
    #[error("the audit trail's queue is full")]
    Full,
    /// The trail was closed.
    #[error("the audit trail is closed")]
    Closed,
}

enum Message {
    Line(Event, oneshot::Sender<Result<(), AuditError>>),
    Close,
}

#[derive(Debug)]
struct Shared {
    healthy: AtomicBool,
    reopen: AtomicBool,
}

/// An audit trail being written: the handle requests and commands record their lines through.
pub struct AuditLog {
    shared: Arc<Shared>,
    sender: SyncSender<Message>,
    done: Mutex<Option<Receiver<()>>>,
    key_id: AuditKeyId,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("key_id", &self.key_id)
            .field("healthy", &self.healthy())
            .finish_non_exhaustive()
    }
}

impl AuditLog {
    /// Opens `sink` and writes the chain's first line (`start`, naming `process` and the
    /// key's id) before returning, so a sink that cannot be written stops start-up.
    pub fn open(
        sink: &Sink,
        key: Arc<AuditKey>,
        process: &'static str,
    ) -> Result<Self, AuditError> {
        let open_error = |cause: io::Error| AuditError::Open {
            sink: sink.to_string(),
            cause: cause.to_string(),
        };
        let mut output = Output::open(sink).map_err(open_error)?;
        let mut chain = Chain::new();
        let mut first = Vec::new();
        let key_id = key.id().clone();
        chain.seal(
            &key,
            &now(),
            &Event::Start {
                process,
                pid: std::process::id(),
                key_id: key_id.clone(),
            },
            &mut first,
        );
        output.append(&first).map_err(open_error)?;
        let shared = Arc::new(Shared {
            healthy: AtomicBool::new(true),
            reopen: AtomicBool::new(false),
        });
        let (sender, receiver) = mpsc::sync_channel(QUEUE);
        let (done_sender, done) = mpsc::channel();
        let writer = Writer {
            output,
            chain,
            key,
            shared: Arc::clone(&shared),
            lost_from: None,
            outage_logged: false,
            buffer: Vec::new(),
        };
        std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || {
                writer.run(&receiver);
                let _ = done_sender.send(());
            })
            .map_err(open_error)?;
        Ok(Self {
            shared,
            sender,
            done: Mutex::new(Some(done)),
            key_id,
        })
    }

    /// Whether `sink` can be opened for writing (created, mode 0600, when missing), without
    /// writing to it: what `check` asks.
    pub fn check(sink: &Sink) -> Result<(), AuditError> {
        Output::open(sink)
            .map(drop)
            .map_err(|cause| AuditError::Open {
                sink: sink.to_string(),
                cause: cause.to_string(),
            })
    }

    /// Writes `event` and waits, at most `within`, until it is on the sink (synced, for a
    /// file). An error means the line may not have been written: the caller must not be
    /// answered with data.
    pub async fn record(&self, event: Event, within: Duration) -> Result<(), AuditError> {
        let (answer, answered) = oneshot::channel();
        self.sender
            .try_send(Message::Line(event, answer))
            .map_err(|error| match error {
                TrySendError::Full(_) => AuditError::Full,
                TrySendError::Disconnected(_) => AuditError::Closed,
            })?;
        match tokio::time::timeout(within, answered).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(AuditError::Closed),
            Err(_) => {
                // The sink is stuck: refuse what comes next up front, until a write succeeds.
                self.shared.healthy.store(false, Ordering::Release);
                Err(AuditError::TimedOut)
            }
        }
    }

    /// Whether the last write succeeded (see the module doc).
    #[must_use]
    pub fn healthy(&self) -> bool {
        self.shared.healthy.load(Ordering::Acquire)
    }

    /// Asks the writer to open the file anew before its next group (SIGHUP, log rotation).
    pub fn reopen(&self) {
        self.shared.reopen.store(true, Ordering::Release);
    }

    /// Writes what is queued and the chain's `end` line, and stops the writer. Waits at most a
    /// few seconds (a stuck sink must not hang the process's exit). Later lines are refused.
    pub fn close(&self) {
        let done = self.done.lock().map(|mut done| done.take());
        if let Ok(Some(done)) = done
            && self.sender.try_send(Message::Close).is_ok()
        {
            let _ = done.recv_timeout(CLOSE_WAIT);
        }
    }
}

/// The sink as the writer holds it.
enum Output {
    File {
        path: PathBuf,
        file: File,
        identity: (u64, u64),
    },
    Stdout,
}

fn identity_of(metadata: &std::fs::Metadata) -> (u64, u64) {
    (metadata.dev(), metadata.ino())
}

fn open_file(path: &Path) -> io::Result<(File, (u64, u64))> {
    // As the embedded store does for its database: a missing folder is made, owner-only.
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)?;
    }
    let file = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)?;
    let identity = identity_of(&file.metadata()?);
    Ok((file, identity))
}

impl Output {
    fn open(sink: &Sink) -> io::Result<Self> {
        Ok(match sink {
            Sink::File(path) => {
                let (file, identity) = open_file(path)?;
                Self::File {
                    path: path.clone(),
                    file,
                    identity,
                }
            }
            Sink::Stdout => Self::Stdout,
        })
    }

    /// `deleted` or `replaced` when the path no longer names the file held.
    fn changed(&self) -> Option<&'static str> {
        match self {
            Self::File { path, identity, .. } => match std::fs::metadata(path) {
                Ok(now) if identity_of(&now) == *identity => None,
                Ok(_) => Some("replaced"),
                Err(error) if error.kind() == io::ErrorKind::NotFound => Some("deleted"),
                // Unreadable for another reason: the write will tell.
                Err(_) => None,
            },
            Self::Stdout => None,
        }
    }

    fn reopen(&mut self) -> io::Result<()> {
        if let Self::File {
            path,
            file,
            identity,
        } = self
        {
            (*file, *identity) = open_file(path)?;
        }
        Ok(())
    }

    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Self::File { file, .. } => {
                file.write_all(bytes)?;
                file.sync_data()
            }
            Self::Stdout => {
                let mut out = io::stdout().lock();
                out.write_all(bytes)?;
                out.flush()
            }
        }
    }
}

/// The writer thread's state.
struct Writer {
    output: Output,
    chain: Chain,
    key: Arc<AuditKey>,
    shared: Arc<Shared>,
    /// Set while writes fail: the first line that may be missing.
    lost_from: Option<u64>,
    outage_logged: bool,
    /// The bytes of a group, reused.
    buffer: Vec<u8>,
}

impl Writer {
    fn run(mut self, receiver: &Receiver<Message>) {
        let mut group = Vec::new();
        loop {
            let mut closing = false;
            match receiver.recv_timeout(IDLE) {
                Ok(message) => closing = take(message, &mut group),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => closing = true,
            }
            while !closing && group.len() < GROUP {
                match receiver.try_recv() {
                    Ok(message) => closing = take(message, &mut group),
                    Err(_) => break,
                }
            }
            self.write(std::mem::take(&mut group));
            if closing {
                self.write_end();
                return;
            }
        }
    }

    /// Seals and writes a group, after opening the sink anew when it must be, and answers
    /// every line of it.
    fn write(&mut self, group: Vec<(Event, oneshot::Sender<Result<(), AuditError>>)>) {
        let reason = if !self.shared.healthy.load(Ordering::Acquire) {
            Some("recovered")
        } else if self.shared.reopen.swap(false, Ordering::AcqRel) {
            Some("sighup")
        } else {
            self.output.changed()
        };
        if reason.is_none() && group.is_empty() {
            return;
        }
        let time = now();
        let mut bytes = std::mem::take(&mut self.buffer);
        bytes.clear();
        let first = self.chain.next_seq();
        if let Some(reason) = reason {
            if matches!(reason, "deleted" | "replaced") {
                tracing::warn!(
                    reason,
                    "the audit file was {reason} while in use: opening audit.path anew"
                );
            }
            if let Err(error) = self.output.reopen() {
                return self.failed(&error, group);
            }
            if self.lost_from.is_some() {
                // A failed write may have left a line cut short: end it.
                bytes.push(b'\n');
            }
            let event = Event::Reopen {
                reason,
                key_id: self.key.id().clone(),
                lost_from: self.lost_from,
            };
            self.chain.seal(&self.key, &time, &event, &mut bytes);
        }
        for (event, _) in &group {
            self.chain.seal(&self.key, &time, event, &mut bytes);
        }
        let appended = self.output.append(&bytes);
        // The buffer is kept for the next group: one allocation for the writer's life.
        self.buffer = bytes;
        match appended {
            Ok(()) => {
                self.lost_from = None;
                if !self.shared.healthy.swap(true, Ordering::AcqRel) {
                    tracing::info!("the audit trail writes again; requests are answered");
                }
                self.outage_logged = false;
                for (_, answer) in group {
                    drop(answer.send(Ok(())));
                }
            }
            Err(error) => {
                self.lost_from.get_or_insert(first);
                self.failed(&error, group);
            }
        }
    }

    fn failed(
        &mut self,
        error: &io::Error,
        group: Vec<(Event, oneshot::Sender<Result<(), AuditError>>)>,
    ) {
        self.shared.healthy.store(false, Ordering::Release);
        if !self.outage_logged {
            self.outage_logged = true;
            tracing::error!(
                %error,
                "the audit trail cannot write: requests are answered 503 audit_unavailable until it can"
            );
        }
        let error = AuditError::Write(error.to_string());
        for (_, answer) in group {
            drop(answer.send(Err(error.clone())));
        }
    }

    fn write_end(&mut self) {
        let mut bytes = Vec::new();
        self.chain.seal(&self.key, &now(), &Event::End, &mut bytes);
        if let Err(error) = self.output.append(&bytes) {
            tracing::error!(%error, "the audit trail's end line could not be written");
        }
    }
}

/// Adds a message to the group; `true` when it asks the writer to close.
fn take(
    message: Message,
    group: &mut Vec<(Event, oneshot::Sender<Result<(), AuditError>>)>,
) -> bool {
    match message {
        Message::Line(event, answer) => {
            group.push((event, answer));
            false
        }
        Message::Close => true,
    }
}

/// Now, in RFC 3339, UTC, to the microsecond.
fn now() -> String {
    const FORMAT: &[time::format_description::BorrowedFormatItem<'_>] = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
    );
    time::OffsetDateTime::now_utc()
        .format(FORMAT)
        .unwrap_or_default()
}
