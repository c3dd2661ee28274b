//! Black-box tests of the HTTP API: the real application on a random port, a PostgreSQL
//! database of its own per test.

mod errors;
mod helpers;
mod keys;
mod lifecycle;
mod operability;
mod security;
mod slow_bodies;
