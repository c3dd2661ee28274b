//! Operating the service (SPEC 3.3): health, readiness, metrics and the OpenAPI document.

use actix_web::HttpResponse;
use actix_web::http::header::ContentType;
use actix_web::web::Data;
use secrets_domain::ports::{Envelope, Random, SecretStore};
use serde::Serialize;
use utoipa::ToSchema;

use super::State;
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::responses::{AuditErrors, StoreErrors, TokenErrors};

/// The answer of `/healthz` and `/readyz`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Status)]
pub struct StatusBody {
    /// `ok` (the process serves) or `ready` (the store answers).
    pub status: &'static str,
}

/// Answers while the process serves; touches nothing else.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    responses(
        (status = 200, description = "The process serves.", body = StatusBody, example = json!({"status": "ok"})),
    )
)]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(StatusBody { status: "ok" })
}

/// Answers 200 while the store answers and the audit trail can be written, 503 otherwise.
///
/// The key-encryption key was checked against the store before the server started.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    responses(
        (status = 200, description = "The store answers and the audit trail can be written; the key-encryption key was checked at start-up.", body = StatusBody, example = json!({"status": "ready"})),
        StoreErrors,
    )
)]
pub async fn readyz<S: SecretStore, C: Envelope, R: Random>(
    state: State<S, C, R>,
    req: actix_web::HttpRequest,
) -> Result<HttpResponse, ApiError> {
    state.service.ping().await?;
    if req
        .app_data::<Data<crate::audit::Trail>>()
        .is_some_and(|trail| !trail.healthy())
    {
        return Err(ApiError::audit_unavailable());
    }
    Ok(HttpResponse::Ok().json(StatusBody { status: "ready" }))
}

/// Prometheus metrics: requests by route template and status, latency, the store's pool.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    security(("serviceToken" = [])),
    responses(
        (status = 200, description = "Prometheus text format: requests by route template and status, latency histograms, the store's pool, build information.", body = String, content_type = "text/plain; version=0.0.4"),
        TokenErrors,
    )
)]
pub async fn metrics(metrics: Data<Metrics>) -> Result<HttpResponse, ApiError> {
    let text = metrics
        .render()
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
        AuditErrors,
    )
)]
pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok()
        .content_type(ContentType::json())
        .body(crate::openapi::document())
}
