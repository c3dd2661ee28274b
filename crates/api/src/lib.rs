//! The secrets service's HTTP API and the composition root of the `secrets-service` binary.
//!
//! This crate is thin on purpose: it parses HTTP into domain values, calls one use case of
//! `secrets-domain`, and maps the outcome back to HTTP. It also owns configuration and
//! start-up, where the adapters are chosen and wired.
//!
//! # Layout
//! - `main.rs` (the binary): the command line, and the one place the store is chosen
//!   (`match backend { Sqlite(path) => run_on::<SqliteStore>(&path, ..), .. }`),
//!   after which every command is one generic function.
//! - [`settings`]: layered configuration, parsed once into typed values ([`settings::Backend`],
//!   a non-zero pool size), and key material (`_FILE` forms included).
//! - [`startup`]: [`Application::build`] (keys, store, migrations, key check, bind),
//!   `run_until_stopped`, and the service type the binary runs ([`startup::Service`]).
//! - [`shutdown`]: SIGTERM and SIGINT, both drained gracefully.
//! - [`keys`]: KEKs and tokens ready for use; [`keys::dev`], the development keys file.
//! - [`routes`]: the application: every route, its middleware and shared data, generic over
//!   the service's ports.
//! - [`handlers`]: one function per endpoint, by resource ([`handlers::namespaces`],
//!   [`handlers::secrets`], [`handlers::operations`]), each beside its request and response
//!   bodies.
//! - [`body`]: reading a request body (size, time, media type) and decoding it into its derived
//!   type with fixed sentences that never echo input.
//! - [`path`]: path parameters, percent-decoded strictly.
//! - [`conditional`]: `If-Match` and `If-None-Match` read strictly, and the `ETag`, 304 and 412
//!   answers (RFC 9110).
//! - [`auth`]: the service-token middleware (constant-time comparison).
//! - [`audit`]: the audit trail's middleware (one line per request, written before the
//!   answer), what handlers tell it, and the trail commands record actions in.
//! - [`error`]: [`ErrorCode`], [`ApiError`] and the exhaustive mapping of domain errors to
//!   SPEC 3.4.
//! - [`responses`]: the error responses of the OpenAPI document, as shared sets.
//! - [`openapi`]: the OpenAPI document, generated from the handlers and bodies.
//! - [`rotate`]: the `rotate-kek` command's driver and report.
//! - [`import`]: the `import-original` command's driver, its modes and report.
//! - [`progress`]: a long command's progress: a bar on a terminal, log lines otherwise.
//! - [`middleware`]: request id, one log line and metrics per request.
//! - [`metrics`]: the Prometheus registry each application owns.
//! - [`telemetry`]: tracing set-up.
//! - [`tls`]: TLS on the listener: the rustls configuration, client certificates, and the
//!   certificate store that SIGHUP reloads.

pub mod audit;
pub mod auth;
pub mod body;
pub mod conditional;
pub mod error;
pub mod handlers;
pub mod import;
pub mod keys;
pub mod metrics;
pub mod middleware;
pub mod openapi;
pub mod path;
pub mod progress;
pub mod responses;
pub mod rotate;
pub mod routes;
pub mod settings;
pub mod shutdown;
pub mod startup;
pub mod telemetry;
pub mod tls;

pub use error::{ApiError, ErrorCode};
pub use settings::{KeyMaterial, Settings};
pub use startup::{Application, StartupError};
