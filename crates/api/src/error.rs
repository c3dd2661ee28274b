//! Errors as the HTTP API answers them: `{"error": {"code", "message"}}` (SPEC 3.4).
//!
//! The mapping from the domain's errors is one exhaustive `match` with no catch-all arm, so a
//! new domain variant does not compile until it has a status and a code here. Messages are
//! fixed sentences: they never carry a secret value, a name, an access key, a token, SQL or a
//! path. The detail of a 500 or 503 goes to the log, once, with internal ids only.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use secrets_domain::{Error as DomainError, NamespaceId};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

// The one list of codes: the HTTP mapping below, the OpenAPI document (the `code` field's
// schema is this enum) and the docs all use it.
/// Every code an error answer carries (SPEC 3.4): stable, to act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// 400: the body is not JSON (or not UTF-8).
    InvalidJson,
    /// 400: well-formed JSON, or a path, that does not fit the request.
    InvalidRequest,
    /// 401: missing, wrong or ambiguous service token.
    Unauthorized,
    /// 404: no namespace has this access key (or it is malformed).
    NamespaceNotFound,
    /// 404: the namespace has no secret of that name.
    SecretNotFound,
    /// 404: no such route.
    NotFound,
    /// 405: the route does not accept this method.
    MethodNotAllowed,
    /// 408: the body did not arrive within `server.body_timeout_ms`.
    RequestTimeout,
    /// 409: the namespace holds its maximum number of secrets.
    NamespaceFull,
    /// 412: `If-Match` or `If-None-Match` did not hold; nothing was changed.
    PreconditionFailed,
    /// 413: the body, or a value, is over its limit.
    PayloadTooLarge,
    /// 415: the body is not sent as a media type the route accepts.
    UnsupportedMediaType,
    /// 500: stored data failed its integrity check.
    IntegrityError,
    /// 500: a bug.
    Internal,
    /// 503: the store cannot be reached; retry later.
    Unavailable,
    /// 503: the request's audit line could not be written; nothing was answered. Retry later.
    AuditUnavailable,
}

impl ErrorCode {
    /// The code as it is sent, e.g. `namespace_not_found`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidJson => "invalid_json",
            Self::InvalidRequest => "invalid_request",
            Self::Unauthorized => "unauthorized",
            Self::NamespaceNotFound => "namespace_not_found",
            Self::SecretNotFound => "secret_not_found",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::RequestTimeout => "request_timeout",
            Self::NamespaceFull => "namespace_full",
            Self::PreconditionFailed => "precondition_failed",
            Self::PayloadTooLarge => "payload_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::IntegrityError => "integrity_error",
            Self::Internal => "internal",
            Self::Unavailable => "unavailable",
            Self::AuditUnavailable => "audit_unavailable",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error response.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: ErrorCode,
    message: String,
    /// The namespace the refused request reached, for the audit trail (never in the body).
    namespace: Option<NamespaceId>,
}

/// Every error answer: `{"error": {"code", "message"}}`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(
    as = Error,
    example = json!({"error": {"code": "namespace_not_found", "message": "no namespace has this access key"}})
)]
pub struct ErrorBody<'a> {
    /// What went wrong.
    pub error: ErrorDetail<'a>,
}

/// The code and message of an error.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ErrorDetail)]
pub struct ErrorDetail<'a> {
    /// What went wrong, as a stable code to act on.
    pub code: ErrorCode,
    /// A sentence for people. It names the offending field where there is one, and never holds
    /// a secret's value, an access key or an internal detail.
    pub message: &'a str,
}

/// An error as the original service's routes answer it: the original's `{"message", "name"}`,
/// which the platform's client passes through, around this service's own `error` object. `name`
/// is the code (the original put a JavaScript class name there).
#[derive(Debug, Serialize, ToSchema)]
#[schema(
    as = OriginalError,
    example = json!({"name": "namespace_not_found", "message": "no namespace has this access key", "error": {"code": "namespace_not_found", "message": "no namespace has this access key"}})
)]
pub struct OriginalErrorBody<'a> {
    /// The error's code.
    pub name: ErrorCode,
    /// A sentence for people (as `error.message`).
    pub message: &'a str,
    /// The error as every other route answers it.
    pub error: ErrorDetail<'a>,
}

/// What an error response carries in its extensions, so that a middleware can answer it in
/// another shape (see `handlers::original`) and the audit trail can record it.
#[derive(Debug, Clone)]
pub struct Answered {
    /// The error's code.
    pub code: ErrorCode,
    /// Its message.
    pub message: String,
    /// The namespace the refused request reached, if it reached one.
    pub namespace: Option<NamespaceId>,
}

impl Answered {
    /// What `error` answers.
    #[must_use]
    pub fn of(error: &ApiError) -> Self {
        Self {
            code: error.code,
            message: error.message.clone(),
            namespace: error.namespace,
        }
    }

    /// The error in the original service's shape.
    #[must_use]
    pub fn original_body(&self) -> OriginalErrorBody<'_> {
        OriginalErrorBody {
            name: self.code,
            message: &self.message,
            error: ErrorDetail {
                code: self.code,
                message: &self.message,
            },
        }
    }
}

impl ApiError {
    fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            namespace: None,
        }
    }

    /// 503 `audit_unavailable`: the request's audit line could not be written.
    #[must_use]
    pub fn audit_unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::AuditUnavailable,
            "the request could not be recorded in the audit trail, so it is not answered; retry \
             later",
        )
    }

    /// 400 `invalid_json`: the body is not JSON.
    #[must_use]
    pub fn invalid_json(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidJson, message)
    }

    /// 400 `invalid_request`: well-formed JSON, or a path, that does not fit the request.
    #[must_use]
    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidRequest, message)
    }

    /// 401 `unauthorized`.
    #[must_use]
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::Unauthorized,
            "a valid service token is required (Authorization: Bearer <token>)",
        )
    }

    /// 404 `namespace_not_found`.
    #[must_use]
    pub fn namespace_not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NamespaceNotFound,
            "no namespace has this access key",
        )
    }

    /// 404 `not_found`: no such route.
    #[must_use]
    pub fn route_not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, "no such route")
    }

    /// 405 `method_not_allowed`.
    #[must_use]
    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::MethodNotAllowed,
            "this route does not accept this method",
        )
    }

    /// 413 `payload_too_large` for a body over `limits.max_body_bytes`.
    #[must_use]
    pub fn body_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::PayloadTooLarge,
            format!("the request body is larger than the limit of {limit} bytes"),
        )
    }

    /// 408 `request_timeout`: the body did not arrive within `server.body_timeout_ms`.
    ///
    /// SPEC 3.4 has no row for a slow body; 408 is HTTP's status for a request the client did
    /// not finish sending in time (RFC 9110, 15.5.9), and it tells a retrying caller that the
    /// request was not processed.
    #[must_use]
    pub fn body_timeout() -> Self {
        Self::new(
            StatusCode::REQUEST_TIMEOUT,
            ErrorCode::RequestTimeout,
            "the request body did not arrive in time",
        )
    }

    /// 415 `unsupported_media_type`.
    #[must_use]
    pub fn unsupported_media_type(expected: &str) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::UnsupportedMediaType,
            format!("the request body must be sent as {expected}"),
        )
    }

    /// 503 `unavailable`, for when the service itself is not ready.
    #[must_use]
    pub fn unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Unavailable,
            "the service cannot reach its store; retry later",
        )
    }

    fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            "an internal error occurred",
        )
    }

    fn integrity() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::IntegrityError,
            "stored data failed its integrity check",
        )
    }

    /// 500 `internal` for a failure outside the domain (a bug), logged once with its chain.
    pub fn internal_from(error: &(dyn std::error::Error + 'static)) -> Self {
        log_chain(tracing::Level::ERROR, "internal error", error);
        Self::internal()
    }

    /// The error's code.
    #[must_use]
    pub fn code(&self) -> ErrorCode {
        self.code
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status).json(ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: &self.message,
            },
        });
        response.extensions_mut().insert(Answered::of(self));
        response
    }
}

/// An error and its causes, `error: cause: cause`, as an operator reads it.
#[must_use]
pub fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut chain = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        chain.push_str(": ");
        chain.push_str(&cause.to_string());
        source = cause.source();
    }
    chain
}

/// Logs the full source chain of an error that is answered opaquely.
fn log_chain(level: tracing::Level, what: &str, error: &(dyn std::error::Error + 'static)) {
    let chain = chain(error);
    if level == tracing::Level::ERROR {
        tracing::error!(error = %chain, "{what}");
    } else {
        tracing::warn!(error = %chain, "{what}");
    }
}

impl From<DomainError> for ApiError {
    fn from(error: DomainError) -> Self {
        let namespace = error.namespace();
        let mut answer = Self::answer(error);
        answer.namespace = namespace;
        answer
    }
}

impl ApiError {
    /// The answer to a domain error (the one exhaustive mapping).
    fn answer(error: DomainError) -> Self {
        match error {
            DomainError::NamespaceNotFound => Self::namespace_not_found(),
            DomainError::SecretNotFound { .. } => Self::new(
                StatusCode::NOT_FOUND,
                ErrorCode::SecretNotFound,
                "the namespace has no secret of that name",
            ),
            DomainError::NamespaceFull { limit, .. } => Self::new(
                StatusCode::CONFLICT,
                ErrorCode::NamespaceFull,
                format!("the namespace already holds its maximum of {limit} secrets"),
            ),
            DomainError::ValueTooLarge { limit, .. } => Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::PayloadTooLarge,
                format!("value: larger than the limit of {limit} bytes"),
            ),
            DomainError::PreconditionFailed { .. } => Self::new(
                StatusCode::PRECONDITION_FAILED,
                ErrorCode::PreconditionFailed,
                "the resource is not in the state If-Match or If-None-Match requires; nothing \
                 was changed",
            ),
            DomainError::Integrity { namespace } => {
                tracing::error!(
                    namespace = %namespace,
                    "a stored ciphertext failed authentication (tampered, copied or wrong key)"
                );
                Self::integrity()
            }
            DomainError::UnknownKey { namespace, key_id } => {
                tracing::error!(
                    namespace = %namespace,
                    key_id = %key_id,
                    "a data key is wrapped under a key-encryption key that is not configured"
                );
                Self::integrity()
            }
            DomainError::Unavailable(source) => {
                log_chain(
                    tracing::Level::WARN,
                    "the store is unavailable",
                    source.as_ref(),
                );
                Self::unavailable()
            }
            DomainError::Internal(source) => {
                log_chain(tracing::Level::ERROR, "internal error", source.as_ref());
                Self::internal()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every code the OpenAPI document lists (from this enum's schema).
    fn documented_codes() -> Vec<String> {
        let document: serde_json::Value =
            serde_json::from_str(crate::openapi::document()).expect("the document is JSON");
        document["components"]["schemas"]["ErrorCode"]["enum"]
            .as_array()
            .expect("the codes are an enum")
            .iter()
            .map(|code| code.as_str().expect("a code").to_owned())
            .collect()
    }

    #[test]
    fn every_code_is_spelled_one_way_and_named_in_the_readme() {
        let readme = include_str!("../../../README.md");
        let codes = documented_codes();
        assert!(!codes.is_empty());
        for code in &codes {
            let parsed: ErrorCode = serde_json::from_value(serde_json::Value::String(code.clone()))
                .expect("the document's code is the enum's");
            assert_eq!(parsed.as_str(), code, "as_str spells it as serde does");
            assert!(
                readme.contains(&format!("`{code}`")),
                "README.md does not name `{code}`"
            );
        }
    }
}
