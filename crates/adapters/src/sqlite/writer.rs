//! The store's one writer, and its group commit.
//!
//! SQLite allows one writer at a time, so a store has one: a thread of its own with a
//! connection of its own, fed by a first-come-first-served queue. It commits writes in groups.
//! It takes every write waiting in the queue (up to [`MAX_BATCH`]), runs them in one
//! `BEGIN IMMEDIATE` transaction, each inside a `SAVEPOINT` of its own, commits once, and only
//! then answers their callers. A write that fails (a full namespace, a missing one, a taken
//! access hash, a failed precondition) rolls back to its savepoint and leaves the others in the
//! group untouched, so each caller sees exactly what a transaction of its own would have given
//! it. The group shares one commit, hence one fsync: under load, writes cost a fraction of an
//! fsync each, with `synchronous=FULL` kept and nothing acknowledged before it is on disk.
//!
//! `IMMEDIATE` takes the write lock before reading anything. A plain (deferred) transaction that
//! reads and then writes can fail at the upgrade with `SQLITE_BUSY` no matter how long it waits,
//! because another writer committed after its snapshot was taken. One writer that holds the lock
//! for the whole group is also what makes the per-namespace secret count exact: a new name is
//! inserted, the namespace counted, and the write rolled back when the count passes the limit,
//! with no other write able to slip in between. Other processes on the same file (a `migrate`
//! or `rotate-kek` run beside the server) take turns through SQLite's busy handler, bounded by
//! `busy_timeout`; past it the group's writes answer `Unavailable`.
//!
//! A caller waits for its answer at most the store's timeout, and then answers `Unavailable`. A
//! write whose caller has stopped waiting before its turn came is dropped unrun; one already
//! running is finished, and may commit, like a PostgreSQL commit whose answer was lost. Writes
//! run on the writer's thread, never on the async executor's.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rusqlite::{Connection, ffi};
use secrets_domain::ports::StoreError;
use tokio::sync::{mpsc, oneshot};

use super::error::{Failure, shared_sql_error};
use super::sql;

/// The most writes one transaction commits together. Past a few dozen, a bigger group saves
/// little (the fsync is shared already) and keeps the write lock longer.
const MAX_BATCH: usize = 64;

/// The handle to the writer thread: its queue, and how long a caller waits for its answer.
pub(super) struct Writer {
    /// The writer's queue; `None` once the store is closed.
    queue: Mutex<Option<WriteQueue>>,
    timeout: Duration,
}

type WriteQueue = mpsc::UnboundedSender<Box<dyn Write>>;

impl Writer {
    /// Starts the writer thread on `conn`, the writer's own connection. The thread ends, and
    /// closes the connection, once the writer is closed (or dropped) and its queue is empty.
    pub(super) fn start(conn: Connection, timeout: Duration) -> Result<Self, StoreError> {
        let (queue, writes) = mpsc::unbounded_channel();
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || write_loop(&conn, writes))
            .map_err(|e| StoreError::Internal(Box::new(e)))?;
        Ok(Self {
            queue: Mutex::new(Some(queue)),
            timeout,
        })
    }

    /// How long a caller waits for its answer.
    pub(super) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Has the writer run `f` inside a write transaction, in a savepoint of its own (see the
    /// module's doc), and answers once that transaction has committed. An error from `f`, or a
    /// panic, rolls back what `f` did and nothing else.
    pub(super) async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(&Connection) -> Result<T, Failure> + Send + 'static,
        T: Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let queued = self
            .queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .is_some_and(|queue| {
                queue
                    .send(Box::new(Pending {
                        f,
                        reply,
                        span: tracing::Span::current(),
                    }))
                    .is_ok()
            });
        if !queued {
            return Err(StoreError::Unavailable("the store is closed".into()));
        }
        match tokio::time::timeout(self.timeout, answer).await {
            Ok(Ok(result)) => result,
            // The write panicked; the panic hook has reported it.
            Ok(Err(_)) => Err(StoreError::Internal(
                "a database write ended without an answer".into(),
            )),
            Err(elapsed) => Err(StoreError::Unavailable(Box::new(elapsed))),
        }
    }

    /// Closes the queue: later writes fail with `Unavailable`; the thread finishes the writes
    /// already queued, then ends.
    pub(super) fn close(&self) {
        self.queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
    }
}

/// A write waiting in the writer's queue, its result type erased.
trait Write: Send {
    /// Whether its caller has stopped waiting for it.
    fn abandoned(&self) -> bool;

    /// Runs it on the writer's connection, inside the group's transaction.
    fn run(self: Box<Self>, conn: &Connection) -> Ran;

    /// Answers its caller without running it.
    fn refuse(self: Box<Self>, error: StoreError);
}

/// A write that has run: whether its changes are to be kept, and how to answer its caller once
/// the group's commit has succeeded or failed.
struct Ran {
    keep: bool,
    answer: Box<dyn FnOnce(Result<(), StoreError>) + Send>,
}

struct Pending<F, T> {
    f: F,
    reply: oneshot::Sender<Result<T, StoreError>>,
    span: tracing::Span,
}

impl<F, T> Write for Pending<F, T>
where
    F: FnOnce(&Connection) -> Result<T, Failure> + Send + 'static,
    T: Send + 'static,
{
    fn abandoned(&self) -> bool {
        self.reply.is_closed()
    }

    fn run(self: Box<Self>, conn: &Connection) -> Ran {
        let Pending { f, reply, span } = *self;
        let result = span.in_scope(|| f(conn));
        Ran {
            keep: result.is_ok(),
            answer: Box::new(move |committed| {
                let answer = match (result, committed) {
                    (Ok(value), Ok(())) => Ok(value),
                    (Ok(_), Err(error)) => Err(error),
                    (Err(failure), _) => Err(failure.into_store_error()),
                };
                // The caller may have stopped waiting; then there is no one to tell, and the
                // answer `send` hands back is dropped.
                drop(reply.send(answer));
            }),
        }
    }

    fn refuse(self: Box<Self>, error: StoreError) {
        // As in `run`: a caller that has stopped waiting needs no answer.
        drop(self.reply.send(Err(error)));
    }
}

/// The writer thread: takes what is queued, up to [`MAX_BATCH`] writes at a time, and commits
/// it in groups until the queue is closed and empty.
fn write_loop(conn: &Connection, mut queue: mpsc::UnboundedReceiver<Box<dyn Write>>) {
    let mut group = VecDeque::with_capacity(MAX_BATCH);
    while let Some(first) = queue.blocking_recv() {
        group.push_back(first);
        while group.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(write) => group.push_back(write),
                Err(_) => break,
            }
        }
        while !group.is_empty() {
            commit_group(conn, &mut group);
        }
    }
}

/// Runs writes from the front of `group` in one transaction, each in a savepoint of its own,
/// commits, and answers each caller. Takes at least one write off `group`: the ones it leaves
/// were not run, because the transaction was lost (SQLite rolls a whole transaction back on some
/// errors, such as a full disk) and they need a new one.
fn commit_group(conn: &Connection, group: &mut VecDeque<Box<dyn Write>>) {
    group.retain(|write| !write.abandoned());
    if group.is_empty() {
        return;
    }
    if let Err(error) = conn.execute_batch(sql::BEGIN_GROUP) {
        let error = Arc::new(error);
        for write in group.drain(..) {
            write.refuse(shared_sql_error(&error));
        }
        return;
    }
    let mut kept = Vec::with_capacity(group.len());
    let mut lost = None;
    while let Some(write) = group.pop_front() {
        if write.abandoned() {
            continue;
        }
        if let Err(error) = conn.execute_batch(sql::BEGIN_WRITE) {
            let error = Arc::new(error);
            write.refuse(shared_sql_error(&error));
            lost = Some(error);
            break;
        }
        let ran = catch_unwind(AssertUnwindSafe(|| write.run(conn)));
        let keep = matches!(&ran, Ok(ran) if ran.keep);
        let ended = if keep {
            conn.execute_batch(sql::KEEP_WRITE)
        } else {
            conn.execute_batch(sql::UNDO_WRITE)
        };
        match ran {
            Ok(ran) if ran.keep => kept.push(ran.answer),
            // Its own failure: answered now, whatever becomes of the group.
            Ok(ran) => (ran.answer)(Ok(())),
            // A panic dropped the reply, which tells the caller.
            Err(_) => {}
        }
        if let Err(error) = ended {
            lost = Some(Arc::new(error));
            break;
        }
        if conn.is_autocommit() {
            lost = Some(Arc::new(rusqlite::Error::SqliteFailure(
                ffi::Error::new(ffi::SQLITE_ABORT),
                Some("the write transaction was rolled back".into()),
            )));
            break;
        }
    }
    let outcome = match lost {
        Some(error) => Err(error),
        None => conn.execute_batch(sql::COMMIT_GROUP).map_err(Arc::new),
    };
    if outcome.is_err() && !conn.is_autocommit() {
        // Nothing of it may stay: its writes are about to be answered with an error. When even
        // the rollback fails the connection is unusable, and SQLite rolls back when it closes;
        // the next group's BEGIN fails and says so, so this one's error is dropped.
        drop(conn.execute_batch(sql::ROLLBACK_GROUP));
    }
    for answer in kept {
        answer(outcome.as_ref().copied().map_err(shared_sql_error));
    }
}
