//! Black-box tests of the HTTP API: the real application on a random port, a PostgreSQL
//! database of its own per test.

mod helpers;
mod lifecycle;
mod errors;
mod security;
