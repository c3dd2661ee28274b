//! The HTTP handlers: parse the request into domain values, call one use case, shape the
//! answer. Nothing here decides anything about secrets; the use cases do.

use actix_web::web::{Data, Path, Payload};
use actix_web::{HttpRequest, HttpResponse};
use secrets_domain::ports::{SecretStore, Upserted};
use secrets_domain::{AccessKey, SecretsService};

use secrets_adapters::crypto::{OsRandom, RingEnvelope};

use crate::error::ApiError;
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
}

type State<S> = Data<AppState<S>>;

/// A malformed access key is answered exactly like an unknown one.
fn access_key(text: &str) -> Result<AccessKey, ApiError> {
    AccessKey::parse(text).map_err(|_| ApiError::namespace_not_found())
}

async fn json_body(
    req: &HttpRequest,
    payload: Payload,
    limit: usize,
    accept: Accept,
) -> Result<actix_web::web::Bytes, ApiError> {
    let body = wire::read_body(req, payload, limit).await?;
    wire::check_media_type(req, accept)?;
    Ok(body)
}

/// `POST /namespaces`
pub async fn create_namespace<S: SecretStore>(
    state: State<S>,
    req: HttpRequest,
    payload: Payload,
) -> Result<HttpResponse, ApiError> {
    let body = wire::read_body(&req, payload, state.max_body_bytes).await?;
    if !body.is_empty() {
        wire::check_media_type(&req, Accept::Json)?;
    }
    wire::parse_create(&body)?;
    let key = state.service.create_namespace().await?;
    Ok(HttpResponse::Created().json(wire::AccessKeyBody {
        access_key: key.expose().to_string(),
    }))
}

/// `POST /namespaces/bulk`
pub async fn create_namespaces<S: SecretStore>(
    state: State<S>,
    req: HttpRequest,
    payload: Payload,
) -> Result<HttpResponse, ApiError> {
    let body = json_body(&req, payload, state.max_body_bytes, Accept::Json).await?;
    let count = wire::parse_bulk(&body)?;
    let keys = state.service.create_namespaces(count).await?;
    Ok(HttpResponse::Created().json(wire::AccessKeysBody {
        access_keys: keys.iter().map(|key| key.expose().to_string()).collect(),
    }))
}

/// `GET /namespaces/{accessKey}`: every secret as one flat object. The worker's hot path.
pub async fn read_namespace<S: SecretStore>(
    state: State<S>,
    path: Path<String>,
) -> Result<HttpResponse, ApiError> {
    let key = access_key(&path)?;
    let secrets = state.service.read_all(&key).await?;
    Ok(HttpResponse::Ok().json(wire::NamespaceBody(&secrets)))
}

/// `POST /namespaces/{accessKey}`: add or update one secret.
pub async fn put_secret<S: SecretStore>(
    state: State<S>,
    path: Path<String>,
    req: HttpRequest,
    payload: Payload,
) -> Result<HttpResponse, ApiError> {
    let body = json_body(&req, payload, state.max_body_bytes, Accept::Json).await?;
    let (name, value) = wire::parse_put(&body)?;
    let key = access_key(&path)?;
    let outcome = state.service.put_secret(&key, &name, &value).await?;
    Ok(HttpResponse::Created().json(wire::PutBody {
        key: name.as_str(),
        created: outcome == Upserted::Created,
    }))
}

/// `PATCH /namespaces/{accessKey}`: a JSON merge patch, all or nothing.
pub async fn patch_namespace<S: SecretStore>(
    state: State<S>,
    path: Path<String>,
    req: HttpRequest,
    payload: Payload,
) -> Result<HttpResponse, ApiError> {
    let body = json_body(&req, payload, state.max_body_bytes, Accept::MergePatch).await?;
    let changes = wire::parse_patch(&body)?;
    let key = access_key(&path)?;
    let secrets = state.service.patch(&key, &changes).await?;
    Ok(HttpResponse::Ok().json(wire::NamespaceBody(&secrets)))
}

/// `DELETE /namespaces/{accessKey}`
pub async fn delete_namespace<S: SecretStore>(
    state: State<S>,
    path: Path<String>,
) -> Result<HttpResponse, ApiError> {
    let key = access_key(&path)?;
    state.service.delete_namespace(&key).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `GET /namespaces/{accessKey}/keys`: names, digests and timestamps, never values.
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

/// `POST /namespaces/{accessKey}/access-key`: a new key; the old one stops working.
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

/// `GET /namespaces/{accessKey}/secrets/{key}`
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

/// `DELETE /namespaces/{accessKey}/secrets/{key}`
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

/// `GET /healthz`: the process serves.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

/// `GET /readyz`: the store answers (the KEK was checked before the server started).
pub async fn readyz<S: SecretStore>(state: State<S>) -> Result<HttpResponse, ApiError> {
    state.service.ping().await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "status": "ready" })))
}

/// Any route that does not exist.
pub async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::route_not_found())
}

/// A route that exists, with a method it does not accept.
pub async fn method_not_allowed() -> Result<HttpResponse, ApiError> {
    Err(ApiError::method_not_allowed())
}
