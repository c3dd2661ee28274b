//! Errors as the HTTP API answers them: `{"error": {"code", "message"}}` (SPEC 3.4).
//!
//! The mapping from the domain's errors is one exhaustive `match` with no catch-all arm, so a
//! new domain variant does not compile until it has a status and a code here. Messages are
//! fixed sentences: they never carry a secret value, a name, an access key, a token, SQL or a
//! path. The detail of a 500 or 503 goes to the log, once, with internal ids only.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use secrets_domain::Error as DomainError;
use serde::Serialize;
use utoipa::ToSchema;

/// An error response.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
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
    /// A stable `snake_case` code to act on: `invalid_json`, `invalid_request`,
    /// `unauthorized`, `namespace_not_found`, `secret_not_found`, `not_found`,
    /// `method_not_allowed`, `request_timeout`, `namespace_full`, `payload_too_large`,
    /// `unsupported_media_type`, `integrity_error`, `internal` or `unavailable`.
    #[schema(example = "namespace_not_found")]
    pub code: &'a str,
    /// A sentence for people. It names the offending field where there is one, and never holds
    /// a secret's value, an access key or an internal detail.
    pub message: &'a str,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// 400 `invalid_json`: the body is not JSON.
    #[must_use]
    pub fn invalid_json(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_json", message)
    }

    /// 400 `invalid_request`: well-formed JSON that does not fit the request.
    #[must_use]
    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    /// 401 `unauthorized`.
    #[must_use]
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid service token is required (Authorization: Bearer <token>)",
        )
    }

    /// 404 `namespace_not_found`.
    #[must_use]
    pub fn namespace_not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "namespace_not_found",
            "no namespace has this access key",
        )
    }

    /// 404 `not_found`: no such route.
    #[must_use]
    pub fn route_not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "no such route")
    }

    /// 405 `method_not_allowed`.
    #[must_use]
    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "this route does not accept this method",
        )
    }

    /// 413 `payload_too_large` for a body over `limits.max_body_bytes`.
    #[must_use]
    pub fn body_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
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
            "request_timeout",
            "the request body did not arrive in time",
        )
    }

    /// 415 `unsupported_media_type`.
    #[must_use]
    pub fn unsupported_media_type(expected: &str) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("the request body must be sent as {expected}"),
        )
    }

    /// 503 `unavailable`, for when the service itself is not ready.
    #[must_use]
    pub fn unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the service cannot reach its store; retry later",
        )
    }

    fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "an internal error occurred",
        )
    }

    /// 500 `internal` for a failure outside the domain (a bug), logged once with its chain.
    pub fn internal_from(error: &(dyn std::error::Error + 'static)) -> Self {
        log_chain(tracing::Level::ERROR, "internal error", error);
        Self::internal()
    }

    /// The error's code, e.g. `namespace_not_found`.
    #[must_use]
    pub fn code(&self) -> &'static str {
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
        HttpResponse::build(self.status).json(ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: &self.message,
            },
        })
    }
}

/// Logs the full source chain of an error that is answered opaquely.
fn log_chain(level: tracing::Level, what: &str, error: &(dyn std::error::Error + 'static)) {
    let mut chain = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        chain.push_str(": ");
        chain.push_str(&cause.to_string());
        source = cause.source();
    }
    if level == tracing::Level::ERROR {
        tracing::error!(error = %chain, "{what}");
    } else {
        tracing::warn!(error = %chain, "{what}");
    }
}

impl From<DomainError> for ApiError {
    fn from(error: DomainError) -> Self {
        match error {
            DomainError::NamespaceNotFound => Self::namespace_not_found(),
            DomainError::SecretNotFound => Self::new(
                StatusCode::NOT_FOUND,
                "secret_not_found",
                "the namespace has no secret of that name",
            ),
            DomainError::NamespaceFull { limit } => Self::new(
                StatusCode::CONFLICT,
                "namespace_full",
                format!("the namespace already holds its maximum of {limit} secrets"),
            ),
            DomainError::ValueTooLarge { limit } => Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("value: larger than the limit of {limit} bytes"),
            ),
            DomainError::Integrity { namespace } => {
                tracing::error!(
                    namespace = %namespace,
                    "a stored ciphertext failed authentication (tampered, copied or wrong key)"
                );
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "integrity_error",
                    "stored data failed its integrity check",
                )
            }
            DomainError::UnknownKey { namespace, key_id } => {
                tracing::error!(
                    namespace = %namespace,
                    key_id = %key_id,
                    "a data key is wrapped under a key-encryption key that is not configured"
                );
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "integrity_error",
                    "stored data failed its integrity check",
                )
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
