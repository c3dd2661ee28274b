//! Reads on standbys that are never staler than the primary (`storage.read_urls`).
//!
//! # What "as fresh as the primary" takes
//! A read served by a standby must see every write that was acknowledged before the read
//! began, through any replica of the service: a deleted namespace or a replaced access key
//! must not keep working on a standby (SPEC §5). Replication alone does not give that: an
//! asynchronous standby is behind by whatever it has not replayed yet, and even a synchronous
//! one (`synchronous_commit = on`) has the write on disk before it has applied it. Nor does
//! knowing which standby is synchronous now: Patroni moves that role, and a standby does not
//! know it lost it.
//!
//! So each read proves it, the way a Raft "read index" does:
//! 1. The primary's WAL flush position and timeline are read (`sql::PRIMARY_POSITION`). Every
//!    commit acknowledged so far lies at or before that position: a commit is acknowledged
//!    only once it is flushed (the query also checks that `synchronous_commit` is not `off`,
//!    under which that would not hold).
//! 2. On the standby, in one round trip, `sql::STANDBY_CAUGHT_UP` checks that it has replayed
//!    up to that position, on that timeline (a standby left on the old timeline after a
//!    failover may hold a higher position with other contents), and then the hot read runs as
//!    its own statement, with a snapshot taken after the check: it sees everything replayed by
//!    then, so every acknowledged write.
//! 3. A standby that has not caught up, or cannot be reached, leaves the read to the next
//!    standby, and then to the primary.
//!
//! The reads that go this way are the hot path's (`PostgresStore::hot_read` in `port`): the
//! whole namespace, and the revision check of a conditional read.
//!
//! Step 1 costs the primary a query, but not one per read: readers share it. A reader joins the
//! next position query that has not been sent yet; only one is on the wire at a time, and the
//! next one leaves when it returns, carrying everyone who arrived meanwhile. Every reader's
//! answer is still read after it arrived, which is all the proof needs.
//!
//! With `synchronous_commit = remote_apply` on the primary a write is acknowledged only once
//! the synchronous standby applied it, so that standby has nearly always caught up; without
//! it, a standby is still never stale, but more reads fall back to the primary.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use deadpool_postgres::Client;
use futures_util::FutureExt as _;
use futures_util::future::{BoxFuture, Shared};
use secrets_domain::model::AccessKeyHash;
use secrets_domain::ports::StoreError;
use tokio::time::Instant;
use tokio_postgres::types::PgLsn;

use super::error::db;
use super::pool::Connections;
use super::port::HotRead;
use super::sql;
use crate::store::{ReadRouting, StoreOptions};

/// What a standby gets of a read's timeout; the primary, when the read falls back, the rest.
const STANDBY_SHARE: u32 = 4;
/// How long a standby that failed is left alone before a read tries it again.
const REST_AFTER_FAILURE: Duration = Duration::from_secs(1);

/// The primary's WAL flush position and its timeline, as read at one moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Position {
    lsn: PgLsn,
    timeline: i32,
}

/// The standbys of `storage.read_urls`, and the shared position queries.
pub(super) struct Standbys {
    nodes: Vec<Standby>,
    next: AtomicUsize,
    index: ReadIndex,
    routing: Counters,
}

struct Standby {
    connections: Connections,
    /// Until when this standby is left alone after a failure.
    resting_until: Mutex<Option<Instant>>,
}

#[derive(Default)]
struct Counters {
    served: AtomicU64,
    lagging: AtomicU64,
    unreachable: AtomicU64,
    unproven: AtomicU64,
}

impl Standbys {
    pub(super) fn new(urls: &[&str], options: StoreOptions) -> Result<Self, StoreError> {
        let nodes = urls
            .iter()
            .map(|url| {
                Ok(Standby {
                    connections: Connections::new(url, options)?,
                    resting_until: Mutex::new(None),
                })
            })
            .collect::<Result<_, StoreError>>()?;
        Ok(Self {
            nodes,
            next: AtomicUsize::new(0),
            index: ReadIndex::default(),
            routing: Counters::default(),
        })
    }

    /// `read` on a standby that has caught up with `primary`, or `None` when none has (or none
    /// can be reached, or the primary's position cannot be read): the caller then reads the
    /// primary.
    pub(super) async fn read<T>(
        &self,
        primary: &Connections,
        deadline: Instant,
        access: &AccessKeyHash,
        read: HotRead<T>,
    ) -> Option<T> {
        let position = tokio::time::timeout_at(deadline, self.index.position(primary)).await;
        let Ok(Some(position)) = position else {
            self.routing.unproven.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        let first = self.next.fetch_add(1, Ordering::Relaxed);
        for offset in 0..self.nodes.len() {
            let standby = &self.nodes[(first + offset) % self.nodes.len()];
            if standby.resting() {
                continue;
            }
            let share = Instant::now() + standby.connections.timeout / STANDBY_SHARE;
            let answer = standby
                .connections
                .run_until(share.min(deadline), async |client| {
                    let check = client
                        .prepare_cached(sql::STANDBY_CAUGHT_UP)
                        .await
                        .map_err(db)?;
                    // Sent together; the read's statement starts, and takes its snapshot, only
                    // after the check has run.
                    let (caught_up, answer) = futures_util::future::join(
                        client.query_one(&check, &[&position.lsn, &position.timeline]),
                        read(client, access),
                    )
                    .await;
                    let caught_up: bool = caught_up.map_err(db)?.try_get(0).map_err(db)?;
                    Ok(caught_up.then_some(answer))
                })
                .await;
            match answer {
                Ok(Some(Ok(answer))) => {
                    self.routing.served.fetch_add(1, Ordering::Relaxed);
                    return Some(answer);
                }
                Ok(None) => {
                    self.routing.lagging.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Some(Err(error))) | Err(error) => {
                    tracing::debug!(error = %error, "a standby failed a read; it rests");
                    self.routing.unreachable.fetch_add(1, Ordering::Relaxed);
                    standby.rest();
                }
            }
        }
        None
    }

    pub(super) fn routing(&self) -> ReadRouting {
        ReadRouting {
            standby: self.routing.served.load(Ordering::Relaxed),
            lagging: self.routing.lagging.load(Ordering::Relaxed),
            unreachable: self.routing.unreachable.load(Ordering::Relaxed),
            unproven: self.routing.unproven.load(Ordering::Relaxed),
        }
    }

    /// Why the connection to a standby could be read or changed in transit, when one could.
    pub(super) fn insecure_transport(&self) -> Option<String> {
        self.nodes
            .iter()
            .find_map(|standby| standby.connections.target.insecure_transport())
    }

    pub(super) fn close(&self) {
        for standby in &self.nodes {
            standby.connections.pool.close();
        }
    }
}

impl Standby {
    fn resting(&self) -> bool {
        let mut until = lock(&self.resting_until);
        match *until {
            Some(at) if Instant::now() < at => true,
            Some(_) => {
                *until = None;
                false
            }
            None => false,
        }
    }

    fn rest(&self) {
        *lock(&self.resting_until) = Some(Instant::now() + REST_AFTER_FAILURE);
    }
}

/// One position query, shared by the readers that joined it.
type Fetch = Shared<BoxFuture<'static, Option<Position>>>;

/// The primary's position, read once for many readers (see the module's doc).
#[derive(Default)]
struct ReadIndex {
    state: Arc<Mutex<Batches>>,
}

#[derive(Default)]
struct Batches {
    /// The query readers join now: it has not been sent yet.
    next: Option<Fetch>,
    /// The query sent last; `next` is sent when it has returned.
    sent: Option<Fetch>,
}

impl ReadIndex {
    /// The primary's position, read after this call began; `None` when it cannot be read.
    async fn position(&self, primary: &Connections) -> Option<Position> {
        let primary = primary.clone();
        self.join(move || {
            async move {
                match primary.run(primary_position).await {
                    Ok(position) => position,
                    Err(error) => {
                        tracing::debug!(error = %error, "the primary's position could not be read");
                        None
                    }
                }
            }
            .boxed()
        })
        .await
    }

    /// Joins the query that has not been sent yet, or makes one with `query` (sent once the
    /// one before it returned), and waits for its answer.
    async fn join<Q>(&self, query: Q) -> Option<Position>
    where
        Q: FnOnce() -> BoxFuture<'static, Option<Position>>,
    {
        let fetch = {
            let mut batches = lock(&self.state);
            if let Some(next) = &batches.next {
                next.clone()
            } else {
                let fetch = Self::fetch(Arc::clone(&self.state), batches.sent.clone(), query());
                batches.next = Some(fetch.clone());
                fetch
            }
        };
        fetch.await
    }

    /// A query that waits for `before`, then takes itself out of `next` (readers arriving from
    /// then on need a later one) and sends `query`.
    fn fetch(
        state: Arc<Mutex<Batches>>,
        before: Option<Fetch>,
        query: BoxFuture<'static, Option<Position>>,
    ) -> Fetch {
        async move {
            if let Some(before) = before {
                before.await;
            }
            {
                let mut batches = lock(&state);
                batches.sent = batches.next.take();
            }
            query.await
        }
        .boxed()
        .shared()
    }
}

/// The primary's position; `None` when it cannot prove anything: the server is in recovery
/// (the primary's URL leads to a standby), or commits are acknowledged before they are flushed.
async fn primary_position(client: &mut Client) -> Result<Option<Position>, StoreError> {
    let statement = client
        .prepare_cached(sql::PRIMARY_POSITION)
        .await
        .map_err(db)?;
    let row = client.query_one(&statement, &[]).await.map_err(db)?;
    let lsn: Option<PgLsn> = row.try_get(0).map_err(db)?;
    let wal_file: Option<String> = row.try_get(1).map_err(db)?;
    // A WAL file's name starts with its timeline, eight hexadecimal digits.
    let timeline = wal_file
        .as_deref()
        .and_then(|name| name.get(..8))
        .and_then(|digits| i32::from_str_radix(digits, 16).ok());
    Ok(lsn
        .zip(timeline)
        .map(|(lsn, timeline)| Position { lsn, timeline }))
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use futures_util::FutureExt as _;
    use tokio::sync::Notify;
    use tokio_postgres::types::PgLsn;

    use super::{Position, ReadIndex};

    /// A query whose answer is the number of queries started before it, sent when `release`
    /// says so; `log` records, in order, when each query was sent.
    fn query(
        sent: &Arc<AtomicU64>,
        release: &Arc<Notify>,
        log: &Arc<Mutex<Vec<String>>>,
    ) -> impl FnOnce() -> futures_util::future::BoxFuture<'static, Option<Position>> + use<> {
        let (sent, release, log) = (Arc::clone(sent), Arc::clone(release), Arc::clone(log));
        move || {
            async move {
                let n = sent.fetch_add(1, Ordering::SeqCst) + 1;
                log.lock().expect("log").push(format!("sent {n}"));
                release.notified().await;
                Some(Position {
                    lsn: PgLsn::from(n),
                    timeline: 1,
                })
            }
            .boxed()
        }
    }

    #[tokio::test]
    async fn readers_share_queries_and_each_gets_one_sent_after_it_arrived() {
        let index = Arc::new(ReadIndex::default());
        let sent = Arc::new(AtomicU64::new(0));
        let release = Arc::new(Notify::new());
        let log = Arc::new(Mutex::new(Vec::new()));

        // The first reader's query goes out at once, and stays out.
        let first = tokio::spawn({
            let index = Arc::clone(&index);
            let q = query(&sent, &release, &log);
            async move { index.join(q).await }
        });
        while sent.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        // Fifty readers arrive while it is out: they must not get its answer, which may have
        // been read before they arrived; they share the next query, which is not sent yet.
        let mut later = Vec::new();
        for _ in 0..50 {
            let index = Arc::clone(&index);
            let q = query(&sent, &release, &log);
            later.push(tokio::spawn(async move { index.join(q).await }));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(
            sent.load(Ordering::SeqCst),
            1,
            "one query on the wire at a time"
        );

        release.notify_one();
        let answer = first.await.expect("first reader");
        assert_eq!(answer.map(|p| p.lsn), Some(PgLsn::from(1)));
        // The second query leaves only now, carrying all fifty.
        while sent.load(Ordering::SeqCst) < 2 {
            tokio::task::yield_now().await;
        }
        release.notify_one();
        for reader in later {
            let answer = reader.await.expect("a later reader");
            assert_eq!(answer.map(|p| p.lsn), Some(PgLsn::from(2)));
        }
        assert_eq!(
            sent.load(Ordering::SeqCst),
            2,
            "two queries for fifty-one readers"
        );
        assert_eq!(*log.lock().expect("log"), ["sent 1", "sent 2"]);
    }
}
