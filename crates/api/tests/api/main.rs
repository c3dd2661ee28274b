//! Black-box tests of the HTTP API: the real application on a random port, a PostgreSQL
//! database of its own per test.

// Scenario tests read top to bottom, as a caller would use the service; splitting them to
// satisfy a line count would hide the story.
#![allow(clippy::too_many_lines)]

mod audit;
mod commands;
#[path = "../common/mod.rs"]
mod common;
mod conditional;
mod devmode;
mod errors;
mod helpers;
mod keys;
mod lifecycle;
mod operability;
mod original;
mod security;
mod slow_bodies;
mod tls;
