//! The HTTP handlers, by resource: parse the request into domain values, call one use case,
//! shape the answer. Nothing here decides anything about secrets; the use cases do.
//!
//! Every handler is generic over the service's ports (store `S`, envelope `C`, randomness `R`),
//! so the same routes run over the real adapters and over the domain's in-memory fakes
//! (`tests/in_memory.rs`). Each carries its OpenAPI operation (`#[utoipa::path]`): its path,
//! bodies, success and the shared set of errors it answers ([`crate::responses`]), next to the
//! code that answers them; its request and response bodies are beside it, derived once for both
//! parsing and the document. [`crate::openapi`] gathers the operations, [`crate::routes`] mounts
//! them, and a test checks that the two list the same operations. The first line of a
//! handler's doc is the operation's summary.
//!
//! - [`namespaces`]: creating (one or many), reading, re-keying and deleting namespaces.
//! - [`secrets`]: the secrets of one namespace: add or update, merge patch, list, read, delete.
//! - [`operations`]: health, readiness, metrics and the OpenAPI document.
//! - [`original`]: the original service's wire contract at the root (opt-in).

pub mod namespaces;
pub mod operations;
pub mod original;
pub mod secrets;

use actix_web::web::Data;
use secrets_domain::SecretsService;

use crate::body::BodyLimits;
use crate::error::ApiError;

/// What every handler shares.
#[derive(Debug)]
pub struct AppState<S, C, R> {
    /// The use cases.
    pub service: SecretsService<S, C, R>,
    /// How much of a request body is read, and for how long.
    pub body: BodyLimits,
    /// Whether the original service's routes are served (`compat.original_routes`).
    pub original_routes: bool,
}

type State<S, C, R> = Data<AppState<S, C, R>>;

/// The access key's path parameter, as the OpenAPI document describes it.
const ACCESS_KEY_PARAM: &str = "The namespace's access key: 43 characters of base64url, or an \
    imported namespace's 21 characters of A-Z a-z 0-9 _ -.";

/// Any route that does not exist.
pub async fn not_found() -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::route_not_found())
}

/// A route that exists, with a method it does not accept.
pub async fn method_not_allowed() -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::method_not_allowed())
}
