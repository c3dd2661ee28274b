//! The outermost middleware: request id, one log line per request, and request metrics.
//!
//! It wraps the whole application, so every answer passes through it: 404s for unknown routes,
//! 405s, the 401s of the token check and errors a middleware returns instead of a response.
//!
//! # Request id
//! An `X-Request-Id` sent by the caller is kept when it is a sane short token (1 to
//! [`MAX_REQUEST_ID_LEN`] characters of `A-Z a-z 0-9 . _ -`), so a caller's id follows the
//! request through this service's log; anything else is replaced by a fresh UUID v4 rather than
//! echoed, so a log line never carries arbitrary bytes a caller chose. The id is echoed back on
//! every response, errors included, and is a field of the `request` span, so whatever the
//! handlers and the store log for this request carries it too.
//!
//! # What is logged
//! Method, route *template*, status, latency and request id, and nothing else: the raw path
//! holds the access key and possibly a secret's name, and headers hold the service token, so
//! neither is ever read here. A request that matched no route is logged with
//! [`UNMATCHED_ROUTE`] instead of its path.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::error::InternalError;
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage as _, web};
use secrets_adapters::audit::RequestId;
use tracing::Instrument as _;

use crate::metrics::{Metrics, UNMATCHED_ROUTE, method_label};

/// The request id header, lowercase as HTTP/2 and actix store header names.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The longest caller-chosen request id that is kept.
pub const MAX_REQUEST_ID_LEN: usize = RequestId::MAX_LEN;

/// The caller's request id when it is sane, else a fresh UUID v4.
fn request_id(sent: Option<&HeaderValue>) -> RequestId {
    sent.and_then(|value| value.to_str().ok())
        .and_then(RequestId::new)
        .unwrap_or_else(RequestId::fresh)
}

/// Middleware: see the module doc.
pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let started = Instant::now();
    let request_id = request_id(req.headers().get(&REQUEST_ID));
    let id = request_id.as_str().to_owned();
    // For the audit trail's line (`crate::audit`).
    req.extensions_mut().insert(request_id);
    let method = method_label(req.method());
    // The template comes from the application's route table, matched against the path; it is
    // `None` for a path no resource matches (scope defaults included).
    let route = req
        .match_pattern()
        .unwrap_or_else(|| UNMATCHED_ROUTE.to_owned());
    let metrics = req.app_data::<web::Data<Metrics>>().cloned();
    let span = tracing::info_span!("request", request_id = %id, method = %method, route = %route);
    // The request moves into the inner services, which need it to themselves (routing takes
    // it mutably), so nothing of it is kept here beyond what was copied above.
    let header = HeaderValue::from_str(&id).ok();
    let (result, status) = match next.call(req).instrument(span).await {
        Ok(mut response) => {
            if let Some(header) = header {
                response.headers_mut().insert(REQUEST_ID, header);
            }
            let status = response.status();
            (Ok(response), status)
        }
        // An inner middleware failed instead of answering. Without the request there is no
        // `ServiceResponse` to build, so the error's own response, with the request id added,
        // travels on inside the error; the server writes it as it is.
        Err(error) => {
            let mut response = error.error_response();
            if let Some(header) = header {
                response.headers_mut().insert(REQUEST_ID, header);
            }
            let status = response.status();
            let error = InternalError::from_response(error.to_string(), response);
            (Err(error.into()), status)
        }
    };
    let elapsed = started.elapsed();
    // Whole microseconds, so the field prints as e.g. `1.234` rather than a float's tail.
    let latency_ms = elapsed.as_micros() as f64 / 1000.0;
    let code = status.as_u16();
    if status.is_server_error() {
        tracing::warn!(method = %method, route = %route, status = code, latency_ms, request_id = %id, "request");
    } else {
        tracing::info!(method = %method, route = %route, status = code, latency_ms, request_id = %id, "request");
    }
    if let Some(metrics) = metrics {
        metrics.observe_request(method, &route, code, elapsed);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sane_request_id_is_kept_and_anything_else_replaced() {
        let kept = ["abc", "req-1.2_3", &"a".repeat(MAX_REQUEST_ID_LEN)];
        for id in kept {
            let value = HeaderValue::from_str(id).expect("a header value");
            assert_eq!(request_id(Some(&value)).as_str(), id);
        }
        let long = "a".repeat(MAX_REQUEST_ID_LEN + 1);
        let replaced = ["", "has space", "semi;colon", "quote\"", "caf\u{e9}", &long];
        for id in replaced {
            let value = HeaderValue::from_bytes(id.as_bytes()).expect("a header value");
            let got = request_id(Some(&value));
            let got = got.as_str();
            assert_ne!(got, id);
            assert!(uuid::Uuid::parse_str(got).is_ok(), "{got}");
        }
        let fresh = request_id(None);
        assert_eq!(
            uuid::Uuid::parse_str(fresh.as_str()).map(|u| u.get_version_num()),
            Ok(4)
        );
        assert_ne!(fresh, request_id(None));
    }
}
