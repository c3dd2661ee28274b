//! High availability (docs/scaling.md): the real `secrets-service` binary on a three-node
//! PostgreSQL cluster under Patroni, synchronous mode on.
//!
//! - `failover`: writers through three service replicas while the leader is lost (SIGKILL) and,
//!   separately, during planned switchovers, round after round: no acknowledged write is lost,
//!   no request answers 500, and the figures (503s, the gap, the time to recover) are printed.
//! - `reads`: `storage.read_urls`: reads on standbys are never staler than the primary, a lagging
//!   or lost standby falls back to the primary, and read throughput with and without standbys.
//!
//! These tests need the cluster that `make ha` (scripts/ha/run.sh) starts and describes in
//! `HA_NODES`; without it each one says so and passes without testing anything, so that
//! `make test` stays fast. They must run one at a time (`--test-threads=1`): they take the
//! cluster's leader away.

#[path = "ha/cluster.rs"]
mod cluster;
#[path = "ha/failover.rs"]
mod failover;
#[path = "ha/reads.rs"]
mod reads;
// The fault tests' load and process helpers; this binary uses a part of them.
#[allow(
    dead_code,
    reason = "shared with the faults tests; this binary uses a part"
)]
#[path = "faults/load.rs"]
mod load;
#[allow(
    dead_code,
    reason = "shared with the faults tests; this binary uses a part"
)]
#[path = "faults/support.rs"]
mod support;
