//! The secrets service's HTTP API and the composition root of the `secrets-service` binary.
//!
//! This crate is thin on purpose: it parses HTTP into domain values, calls one use case of
//! `secrets-domain`, and maps the outcome back to HTTP. It also owns configuration and
//! start-up, where the adapters are chosen and wired.
//!
//! # Layout
//! - [`settings`]: layered configuration and key material (`_FILE` forms included).
//! - [`app`]: start-up ([`Application::build`]), the routes, the one place a store is chosen.
//! - [`handlers`]: one function per endpoint.
//! - [`wire`]: request parsing and response bodies.
//! - [`auth`]: the service-token middleware (constant-time comparison).
//! - [`error`]: [`ApiError`] and the exhaustive mapping of domain errors to SPEC 3.4.
//! - [`devkeys`]: generated keys for zero-setup development on the embedded store.
//! - [`rotate`]: the `rotate-kek` command's driver and progress report.
//! - [`middleware`]: request id, one log line and metrics per request.
//! - [`metrics`]: the Prometheus registry each application owns.
//! - [`openapi`]: the OpenAPI document, generated from the handlers and bodies.
//! - [`telemetry`]: tracing set-up.

pub mod app;
pub mod auth;
pub mod devkeys;
pub mod error;
pub mod handlers;
pub mod metrics;
pub mod middleware;
pub mod openapi;
pub mod rotate;
pub mod settings;
pub mod telemetry;
pub mod wire;

pub use app::{Application, StartupError};
pub use error::ApiError;
pub use settings::{KeyMaterial, Settings};
