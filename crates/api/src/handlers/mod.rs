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

// The precondition headers and the `ETag` answer, as the OpenAPI document describes them (see
// `crate::conditional`).

/// `If-None-Match` on a read.
const IF_NONE_MATCH_READ: &str = "Entity tags the caller holds (or `*`). When one is the current \
    one, the answer is 304 with no body and the `ETag`: nothing is decrypted. Compared weakly; \
    malformed is 400.";
/// `If-Match` on a read.
const IF_MATCH_READ: &str = "Entity tags (or `*`): answer only if one is the current one, 412 \
    otherwise. Compared strongly; malformed is 400.";
/// `If-Match` on a write to the namespace.
const IF_MATCH_NAMESPACE: &str = "The namespace's entity tag as the caller last read it (or \
    `*`): the request changes anything only if the namespace is still in that state, and \
    answers 412 otherwise. Compared strongly, inside the store's write; malformed is 400.";
/// `If-None-Match` on a write to the namespace.
const IF_NONE_MATCH_NAMESPACE: &str = "Entity tags (or `*`, which always fails on an existing \
    namespace): 412 when one is the namespace's current one. Malformed is 400.";
/// `If-Match` on a write of one secret.
const IF_MATCH_SECRET: &str = "The secret's entity tag as the caller last read it (or `*`: \
    the secret must exist): the request changes anything only if the secret is still in that \
    state, and answers 412 otherwise. Compared strongly, inside the store's write; malformed is \
    400.";
/// `If-None-Match` on a write of one secret.
const IF_NONE_MATCH_SECRET: &str = "`*`: write only if the secret does not exist yet (412 when \
    it does). Or entity tags: 412 when one is the secret's current one. Malformed is 400.";

/// Any route that does not exist.
pub async fn not_found() -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::route_not_found())
}

/// A route that exists, with a method it does not accept.
pub async fn method_not_allowed() -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::method_not_allowed())
}
