//! The HTTP handlers: parse the request into domain values, call one use case, shape the
//! answer. Nothing here decides anything about secrets; the use cases do.
//!
//! Each handler carries its OpenAPI operation (`#[utoipa::path]`): its path, bodies and every
//! status it answers, next to the code that answers them. [`crate::openapi`] gathers them; the
//! routes themselves are in [`crate::app`], and a test checks that the two list the same
//! operations. The first line of a handler's doc is the operation's summary.

use actix_web::http::header::ContentType;
use actix_web::web::{Data, Path, Payload};
use actix_web::{HttpRequest, HttpResponse};
use secrets_domain::ports::{SecretStore, Upserted};
use secrets_domain::{AccessKey, SecretsService};

use secrets_adapters::crypto::{OsRandom, RingEnvelope};

use crate::error::{ApiError, ErrorBody};
use crate::metrics::{Metrics, PoolState};
use crate::wire::{self, Accept};

/// The use cases as the API runs them: the chosen store, ring envelope encryption and the
/// OS randomness source.
pub type Service<S> = SecretsService<S, RingEnvelope, OsRandom>;

/// What every handler shares.
#[derive(Debug)]
pub struct AppState<S> {
    /// The use cases.
    pub service: Service<S>,
    /// `limits.max_body_bytes`.
    pub max_body_bytes: usize,
    /// `server.body_timeout_ms`: how long a request body may take to arrive.
    pub body_timeout: std::time::Duration,
}

type State<S> = Data<AppState<S>>;

/// A malformed access key is answered exactly like an unknown one.
fn access_key(text: &str) -> Result<AccessKey, ApiError> {
    AccessKey::parse(text).map_err(|_| ApiError::namespace_not_found())
}

async fn json_body<S>(
    req: &HttpRequest,
    payload: Payload,
    state: &AppState<S>,
    accept: Accept,
) -> Result<actix_web::web::Bytes, ApiError> {
    let body = wire::read_body(req, payload, state.max_body_bytes, state.body_timeout).await?;
    wire::check_media_type(req, accept)?;
    Ok(body)
}

/// Creates a namespace and answers its access key.
#[utoipa::path(
    post,
    path = "/namespaces",
    tag = "namespaces",
    request_body(content = Option<wire::CreateRequest>, content_type = "application/json", description = "No body, or `{}`."),
    security(("serviceToken" = [])),
    responses(
        (status = 201, description = "The new namespace's access key.", body = wire::AccessKeyBody),
        (status = 400, description = "`invalid_json` or `invalid_request`: the message names the field.", body = ErrorBody),
        (status = 401, description = "`unauthorized`: missing or wrong service token.", body = ErrorBody),
        (status = 413, description = "`payload_too_large`: the body (or a value) is over its limit.", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: the body is not JSON.", body = ErrorBody),
        (status = 408, description = "`request_timeout`: the body did not arrive within `server.body_timeout_ms`.", body = ErrorBody),
        (status = 500, description = "`integrity_error`: stored data failed its integrity check; `internal`: a bug.", body = ErrorBody),
        (status = 503, description = "`unavailable`: the store cannot be reached; retry later.", body = ErrorBody),
    )
)]
pub async fn create_namespace<S: SecretStore>(
    state: State<S>,
    req: HttpRequest,
    payload: Payload,
) -> Result<HttpResponse, ApiError> {
    let body = wire::read_body(&req, payload, state.max_body_bytes, state.body_timeout).await?;
    if !body.is_empty() {
        wire::check_media_type(&req, Accept::Json)?;
    }
    wire::parse_create(&body)?;
    let key = state.service.create_namespace().await?;
    Ok(HttpResponse::Created().json(wire::AccessKeyBody {
        access_key: key.expose().to_string(),
    }))
}

/// Creates 1 to 500 namespaces in one transaction, to pre-provision a pool of them.
#[utoipa::path(
    post,
    path = "/namespaces/bulk",
    tag = "namespaces",
    request_body(content = wire::BulkRequest, content_type = "application/json"),
    security(("serviceToken" = [])),
    responses(
        (status = 201, description = "The new namespaces' access keys, created in one transaction.", body = wire::AccessKeysBody),
        (status = 400, description = "`invalid_json` or `invalid_request`: the message names the field.", body = ErrorBody),
        (status = 401, description = "`unauthorized`: missing or wrong service token.", body = ErrorBody),
        (status = 413, description = "`payload_too_large`: the body (or a value) is over its limit.", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: the body is not JSON.", body = ErrorBody),
        (status = 408, description = "`request_timeout`: the body did not arrive within `server.body_timeout_ms`.", body = ErrorBody),
        (status = 500, description = "`integrity_error`: stored data failed its integrity check; `internal`: a bug.", body = ErrorBody),
        (status = 503, description = "`unavailable`: the store cannot be reached; retry later.", body = ErrorBody),
    )
)]
pub async fn create_namespaces<S: SecretStore>(
    state: State<S>,
    req: HttpRequest,
    payload: Payload,
) -> Result<HttpResponse, ApiError> {
    let body = json_body(&req, payload, &state, Accept::Json).await?;
    let count = wire::parse_bulk(&body)?;
    let keys = state.service.create_namespaces(count).await?;
    Ok(HttpResponse::Created().json(wire::AccessKeysBody {
        access_keys: keys.iter().map(|key| key.expose().to_string()).collect(),
    }))
}

/// Reads every secret of a namespace, as one flat object of name to value.
///
/// The worker's hot path: one round trip to the store.
#[utoipa::path(
    get,
    path = "/namespaces/{accessKey}",
    tag = "namespaces",
    params(("accessKey" = String, Path, description = "The namespace's access key (43 characters of base64url).")),
    security(("serviceToken" = [])),
    responses(
        (status = 200, description = "Every secret of the namespace, name to value.", body = wire::NamespaceBody),
        (status = 401, description = "`unauthorized`: missing or wrong service token.", body = ErrorBody),
        (status = 404, description = "`namespace_not_found`: no namespace has this access key (or it is malformed).", body = ErrorBody),
        (status = 500, description = "`integrity_error`: stored data failed its integrity check; `internal`: a bug.", body = ErrorBody),
        (status = 503, description = "`unavailable`: the store cannot be reached; retry later.", body = ErrorBody),
    )
)]
pub async fn read_namespace<S: SecretStore>(
    state: State<S>,
    path: Path<String>,
) -> Result<HttpResponse, ApiError> {
    let key = access_key(&path)?;
    let secrets = state.service.read_all(&key).await?;
    Ok(HttpResponse::Ok().json(wire::NamespaceBody(&secrets)))
}

/// Adds a secret, or updates the one of that name.
#[utoipa::path(
    post,
    path = "/namespaces/{accessKey}",
    tag = "secrets",
    params(("accessKey" = String, Path, description = "The namespace's access key (43 characters of base64url).")),
    request_body(content = wire::PutRequest, content_type = "application/json"),
    security(("serviceToken" = [])),
    responses(
        (status = 201, description = "The secret was added (`created`: true) or updated (false).", body = wire::PutBody),
        (status = 400, description = "`invalid_json` or `invalid_request`: the message names the field.", body = ErrorBody),
        (status = 401, description = "`unauthorized`: missing or wrong service token.", body = ErrorBody),
        (status = 404, description = "`namespace_not_found`: no namespace has this access key (or it is malformed).", body = ErrorBody),
        (status = 409, description = "`namespace_full`: the namespace holds its maximum number of secrets.", body = ErrorBody),
        (status = 413, description = "`payload_too_large`: the body (or a value) is over its limit.", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: the body is not JSON.", body = ErrorBody),
        (status = 408, description = "`request_timeout`: the body did not arrive within `server.body_timeout_ms`.", body = ErrorBody),
        (status = 500, description = "`integrity_error`: stored data failed its integrity check; `internal`: a bug.", body = ErrorBody),
        (status = 503, description = "`unavailable`: the store cannot be reached; retry later.", body = ErrorBody),
    )
)]
pub async fn put_secret<S: SecretStore>(
    state: State<S>,
    path: Path<String>,
    req: HttpRequest,
    payload: Payload,
) -> Result<HttpResponse, ApiError> {
    let body = json_body(&req, payload, &state, Accept::Json).await?;
    let (name, value) = wire::parse_put(&body)?;
    let key = access_key(&path)?;
    let outcome = state.service.put_secret(&key, &name, &value).await?;
    Ok(HttpResponse::Created().json(wire::PutBody {
        key: name.as_str(),
        created: outcome == Upserted::Created,
    }))
}

/// Applies a JSON merge patch to a namespace, all of it or none of it.
#[utoipa::path(
    patch,
    path = "/namespaces/{accessKey}",
    tag = "secrets",
    params(("accessKey" = String, Path, description = "The namespace's access key (43 characters of base64url).")),
    request_body(content((wire::PatchRequest = "application/merge-patch+json"), (wire::PatchRequest = "application/json"))),
    security(("serviceToken" = [])),
    responses(
        (status = 200, description = "The whole namespace after the change.", body = wire::NamespaceBody),
        (status = 400, description = "`invalid_json` or `invalid_request`: the message names the field.", body = ErrorBody),
        (status = 401, description = "`unauthorized`: missing or wrong service token.", body = ErrorBody),
        (status = 404, description = "`namespace_not_found`: no namespace has this access key (or it is malformed).", body = ErrorBody),
        (status = 409, description = "`namespace_full`: the namespace holds its maximum number of secrets.", body = ErrorBody),
        (status = 413, description = "`payload_too_large`: the body (or a value) is over its limit.", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: the body is not JSON.", body = ErrorBody),
        (status = 408, description = "`request_timeout`: the body did not arrive within `server.body_timeout_ms`.", body = ErrorBody),
        (status = 500, description = "`integrity_error`: stored data failed its integrity check; `internal`: a bug.", body = ErrorBody),
        (status = 503, description = "`unavailable`: the store cannot be reached; retry later.", body = ErrorBody),
    )
)]
pub async fn patch_namespace<S: SecretStore>(
    state: State<S>,
    path: Path<String>,
    req: HttpRequest,
    payload: Payload,
) -> Result<HttpResponse, ApiError> {
    let body = json_body(&req, payload, &state, Accept::MergePatch).await?;
    let changes = wire::parse_patch(&body)?;
    let key = access_key(&path)?;
    let secrets = state.service.patch(&key, &changes).await?;
    Ok(HttpResponse::Ok().json(wire::NamespaceBody(&secrets)))
}

/// Deletes a namespace and its secrets, destroying its data key.
#[utoipa::path(
    delete,
    path = "/namespaces/{accessKey}",
    tag = "namespaces",
    params(("accessKey" = String, Path, description = "The namespace's access key (43 characters of base64url).")),
    security(("serviceToken" = [])),
    responses(
        (status = 204, description = "The namespace, its secrets and its data key are gone."),
        (status = 401, description = "`unauthorized`: missing or wrong service token.", body = ErrorBody),
        (status = 404, description = "`namespace_not_found`: no namespace has this access key (or it is malformed).", body = ErrorBody),
        (status = 500, description = "`integrity_error`: stored data failed its integrity check; `internal`: a bug.", body = ErrorBody),
        (status = 503, description = "`unavailable`: the store cannot be reached; retry later.", body = ErrorBody),
    )
)]
pub async fn delete_namespace<S: SecretStore>(
    state: State<S>,
    path: Path<String>,
) -> Result<HttpResponse, ApiError> {
    let key = access_key(&path)?;
    state.service.delete_namespace(&key).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Lists the names, digests and timestamps of a namespace's secrets, never their values.
#[utoipa::path(
    get,
    path = "/namespaces/{accessKey}/keys",
    tag = "secrets",
    params(("accessKey" = String, Path, description = "The namespace's access key (43 characters of base64url).")),
    security(("serviceToken" = [])),
    responses(
        (status = 200, description = "Every secret's name, digest and timestamps; never a value.", body = Vec<wire::KeyInfoBody>),
        (status = 401, description = "`unauthorized`: missing or wrong service token.", body = ErrorBody),
        (status = 404, description = "`namespace_not_found`: no namespace has this access key (or it is malformed).", body = ErrorBody),
        (status = 500, description = "`integrity_error`: stored data failed its integrity check; `internal`: a bug.", body = ErrorBody),
        (status = 503, description = "`unavailable`: the store cannot be reached; retry later.", body = ErrorBody),
    )
)]
pub async fn list_keys<S: SecretStore>(
    state: State<S>,
    path: Path<String>,
) -> Result<HttpResponse, ApiError> {
    let key = access_key(&path)?;
    let listing = state.service.list_keys(&key).await?;
    let body: Vec<_> = listing
        .iter()
        .map(|info| wire::KeyInfoBody {
            key: info.name.as_str(),
            digest: wire::hex(&info.digest),
            created_at: info.created_at,
            updated_at: info.updated_at,
        })
        .collect();
    Ok(HttpResponse::Ok().json(body))
}

/// Gives a namespace a new access key; the old one stops working at once.
#[utoipa::path(
    post,
    path = "/namespaces/{accessKey}/access-key",
    tag = "namespaces",
    params(("accessKey" = String, Path, description = "The namespace's access key (43 characters of base64url).")),
    security(("serviceToken" = [])),
    responses(
        (status = 201, description = "The namespace's new access key; the old one stopped working.", body = wire::AccessKeyBody),
        (status = 401, description = "`unauthorized`: missing or wrong service token.", body = ErrorBody),
        (status = 404, description = "`namespace_not_found`: no namespace has this access key (or it is malformed).", body = ErrorBody),
        (status = 500, description = "`integrity_error`: stored data failed its integrity check; `internal`: a bug.", body = ErrorBody),
        (status = 503, description = "`unavailable`: the store cannot be reached; retry later.", body = ErrorBody),
    )
)]
pub async fn rotate_access_key<S: SecretStore>(
    state: State<S>,
    path: Path<String>,
) -> Result<HttpResponse, ApiError> {
    let key = access_key(&path)?;
    let new_key = state.service.rotate_access_key(&key).await?;
    Ok(HttpResponse::Created().json(wire::AccessKeyBody {
        access_key: new_key.expose().to_string(),
    }))
}

/// Reads one secret, with its timestamps.
#[utoipa::path(
    get,
    path = "/namespaces/{accessKey}/secrets/{key}",
    tag = "secrets",
    params(("accessKey" = String, Path, description = "The namespace's access key (43 characters of base64url)."), ("key" = String, Path, description = "The secret's name, percent-encoded.")),
    security(("serviceToken" = [])),
    responses(
        (status = 200, description = "The secret.", body = wire::SecretBody),
        (status = 400, description = "`invalid_request`: the name is not a valid secret name.", body = ErrorBody),
        (status = 401, description = "`unauthorized`: missing or wrong service token.", body = ErrorBody),
        (status = 404, description = "`namespace_not_found`, or `secret_not_found`: the namespace has no secret of that name.", body = ErrorBody),
        (status = 500, description = "`integrity_error`: stored data failed its integrity check; `internal`: a bug.", body = ErrorBody),
        (status = 503, description = "`unavailable`: the store cannot be reached; retry later.", body = ErrorBody),
    )
)]
pub async fn get_secret<S: SecretStore>(
    state: State<S>,
    path: Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (access, name) = path.into_inner();
    let key = access_key(&access)?;
    let name = wire::parse_name("key", name)?;
    let secret = state.service.get_secret(&key, &name).await?;
    Ok(HttpResponse::Ok().json(wire::SecretBody {
        key: secret.name.as_str(),
        value: secret.value.expose(),
        created_at: secret.created_at,
        updated_at: secret.updated_at,
    }))
}

/// Deletes one secret.
#[utoipa::path(
    delete,
    path = "/namespaces/{accessKey}/secrets/{key}",
    tag = "secrets",
    params(("accessKey" = String, Path, description = "The namespace's access key (43 characters of base64url)."), ("key" = String, Path, description = "The secret's name, percent-encoded.")),
    security(("serviceToken" = [])),
    responses(
        (status = 204, description = "The secret is gone."),
        (status = 400, description = "`invalid_request`: the name is not a valid secret name.", body = ErrorBody),
        (status = 401, description = "`unauthorized`: missing or wrong service token.", body = ErrorBody),
        (status = 404, description = "`namespace_not_found`, or `secret_not_found`: the namespace has no secret of that name.", body = ErrorBody),
        (status = 500, description = "`integrity_error`: stored data failed its integrity check; `internal`: a bug.", body = ErrorBody),
        (status = 503, description = "`unavailable`: the store cannot be reached; retry later.", body = ErrorBody),
    )
)]
pub async fn delete_secret<S: SecretStore>(
    state: State<S>,
    path: Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (access, name) = path.into_inner();
    let key = access_key(&access)?;
    let name = wire::parse_name("key", name)?;
    state.service.delete_secret(&key, &name).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Answers while the process serves; touches nothing else.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    responses(
        (status = 200, description = "The process serves.", body = wire::StatusBody, example = json!({"status": "ok"})),
    )
)]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(wire::StatusBody { status: "ok" })
}

/// Answers 200 while the store answers and 503 while it cannot be reached.
///
/// The key-encryption key was checked against the store before the server started.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    responses(
        (status = 200, description = "The store answers; the key-encryption key was checked at start-up.", body = wire::StatusBody, example = json!({"status": "ready"})),
        (status = 503, description = "`unavailable`: the store cannot be reached; retry later.", body = ErrorBody),
    )
)]
pub async fn readyz<S: SecretStore>(state: State<S>) -> Result<HttpResponse, ApiError> {
    state.service.ping().await?;
    Ok(HttpResponse::Ok().json(wire::StatusBody { status: "ready" }))
}

/// Prometheus metrics: requests by route template and status, latency, the store's pool.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    security(("serviceToken" = [])),
    responses(
        (status = 200, description = "Prometheus text format: requests by route template and status, latency histograms, the store's pool, build information.", body = String, content_type = "text/plain; version=0.0.4"),
        (status = 401, description = "`unauthorized`: missing or wrong service token.", body = ErrorBody),
    )
)]
pub async fn metrics<S: SecretStore + PoolState>(
    state: State<S>,
    metrics: Data<Metrics>,
) -> Result<HttpResponse, ApiError> {
    let text = metrics
        .render(state.service.store().pool_state())
        .map_err(|error| ApiError::internal_from(&error))?;
    Ok(HttpResponse::Ok()
        .content_type(crate::metrics::CONTENT_TYPE)
        .body(text))
}

/// This OpenAPI document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    responses(
        (status = 200, description = "The OpenAPI 3.1 document of this API.", body = Object, content_type = "application/json"),
    )
)]
pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok()
        .content_type(ContentType::json())
        .body(crate::openapi::document())
}

/// Any route that does not exist.
pub async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::route_not_found())
}

/// A route that exists, with a method it does not accept.
pub async fn method_not_allowed() -> Result<HttpResponse, ApiError> {
    Err(ApiError::method_not_allowed())
}
