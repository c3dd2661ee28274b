//! Faults and scale-out (docs/reliability.md): the real `secrets-service` binary as child
//! processes, killed with SIGKILL under write load, cut off from PostgreSQL under write load,
//! run as three replicas on one database, and raced against its secret limit.
//!
//! Every write a test sends is accounted for (see `load`): after each fault, each acknowledged
//! write must read back. Random choices (when to kill, what to write) come from a seed that
//! each test prints; `FAULTS_SEED=<seed>` repeats a run. `make soak` runs the long version
//! (`FAULTS_CRASH_ROUNDS`, `FAULTS_OUTAGES`, `FAULTS_LIMIT_RACES`); `make test` a short one.

// A test crate's root looks for modules beside it, hence the paths.
#[path = "faults/audit.rs"]
mod audit;
#[path = "common/mod.rs"]
mod common;
#[path = "faults/crash.rs"]
mod crash;
#[path = "faults/limits.rs"]
mod limits;
#[path = "faults/load.rs"]
mod load;
#[path = "faults/outage.rs"]
mod outage;
#[path = "faults/proxy.rs"]
mod proxy;
#[path = "faults/replicas.rs"]
mod replicas;
#[path = "faults/rolling.rs"]
mod rolling;
#[path = "faults/support.rs"]
mod support;
