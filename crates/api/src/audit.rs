//! The API's audit trail: one line per request, written before the answer leaves the server
//! (the line format, the chain and the writer are `secrets_adapters::audit`'s).
//!
//! [`record`] wraps the application inside the request log ([`crate::middleware`]), so it sees
//! every answer: the 401s of the token check, 404s and 405s, every handler's success and error.
//! What a line holds is gathered on the way: the request id (from the request log), the caller
//! (the id of the token the token check accepted, [`Caller`]), and what the handlers learned
//! ([`access_key`], [`secret`], [`namespace`], [`created`]): the access key's *hash* and the
//! secret's name stay in the request's memory and reach the line only as keyed tags; the
//! namespace is its internal id. An error answer carries its namespace in its [`Answered`]
//! extension. The operation and route come from a fixed table ([`operation`]), never from the
//! request.
//!
//! A request whose line is not written within `audit.timeout_ms` (a stuck, full or missing
//! sink, a full queue) is answered 503 `audit_unavailable` instead of its answer, and counted in
//! `secrets_audit_refusals_total`. While the trail is failing, requests are refused before they
//! run, so nothing changes unrecorded; the writer recovers on its own when the sink does.
//!
//! `GET /healthz` and `GET /readyz` are not recorded: probes carry no caller and touch no
//! secret, and `/readyz` answers 503 while the trail is failing, so that load balancers move
//! traffic away.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::web::Data;
use actix_web::{Error, HttpMessage as _, HttpRequest, HttpResponse, ResponseError as _};
use secrets_adapters::audit::{
    ActionEvent, AuditError, AuditKey, AuditLog, Event, RequestEvent, RequestId, Sink, TokenId,
};
use secrets_domain::{AccessKey, AccessKeyHash, Issued, NamespaceId, SecretName};

use crate::error::{Answered, ApiError};
use crate::metrics::{Metrics, UNMATCHED_ROUTE, method_label};

/// An audit trail being written, and how long a request waits for its line.
pub struct Trail {
    log: AuditLog,
    key: Arc<AuditKey>,
    timeout: Duration,
}

impl std::fmt::Debug for Trail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trail")
            .field("log", &self.log)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Trail {
    /// Opens the sink and writes the chain's first line, naming `process`.
    pub fn open(
        sink: &Sink,
        key: Arc<AuditKey>,
        timeout: Duration,
        process: &'static str,
    ) -> Result<Self, AuditError> {
        let log = AuditLog::open(sink, Arc::clone(&key), process)?;
        Ok(Self { log, key, timeout })
    }

    /// Records a command's action on a namespace.
    pub async fn action(&self, action: ActionEvent) -> Result<(), AuditError> {
        self.log.record(Event::Action(action), self.timeout).await
    }

    /// Whether the last write succeeded.
    #[must_use]
    pub fn healthy(&self) -> bool {
        self.log.healthy()
    }

    /// Opens the file anew before the next line (SIGHUP).
    pub fn reopen(&self) {
        self.log.reopen();
    }

    /// Writes the chain's `end` line and stops the writer.
    pub fn close(&self) {
        self.log.close();
    }
}

/// The id of the service token a request was accepted with (set by [`crate::auth`]).
#[derive(Debug, Clone, Copy)]
pub struct Caller(pub TokenId);

/// What the handlers learned about a request, for its line.
#[derive(Clone, Default)]
struct Facts {
    access_key: Option<AccessKeyHash>,
    secret: Option<SecretName>,
    namespace: Option<NamespaceId>,
    created: Vec<NamespaceId>,
}

fn with_facts(req: &HttpRequest, update: impl FnOnce(&mut Facts)) {
    if req.app_data::<Data<Trail>>().is_none() {
        return;
    }
    let mut extensions = req.extensions_mut();
    if !extensions.contains::<Facts>() {
        extensions.insert(Facts::default());
    }
    if let Some(facts) = extensions.get_mut::<Facts>() {
        update(facts);
    }
}

/// The request named this access key (kept as its hash, tagged in the line).
pub fn access_key(req: &HttpRequest, key: &AccessKey) {
    with_facts(req, |facts| facts.access_key = Some(key.hash()));
}

/// The request is about this one secret (tagged in the line, with its namespace).
pub fn secret(req: &HttpRequest, name: &SecretName) {
    with_facts(req, |facts| facts.secret = Some(name.clone()));
}

/// The request reached this namespace.
pub fn namespace(req: &HttpRequest, id: NamespaceId) {
    with_facts(req, |facts| facts.namespace = Some(id));
}

/// The request created these namespaces.
pub fn created(req: &HttpRequest, issued: &[Issued]) {
    with_facts(req, |facts| {
        facts.created = issued.iter().map(|issued| issued.namespace).collect();
    });
}

/// Every audited route: method, template, operation, and whether it is the original service's.
const ROUTES: &[(Method, &str, &str)] = &[
    (Method::POST, "/namespaces", "create_namespace"),
    (Method::POST, "/namespaces/bulk", "create_namespaces"),
    (Method::GET, "/namespaces/{accessKey}", "read_namespace"),
    (Method::POST, "/namespaces/{accessKey}", "write_secret"),
    (Method::PATCH, "/namespaces/{accessKey}", "patch_namespace"),
    (
        Method::DELETE,
        "/namespaces/{accessKey}",
        "delete_namespace",
    ),
    (Method::GET, "/namespaces/{accessKey}/keys", "list_keys"),
    (
        Method::POST,
        "/namespaces/{accessKey}/access-key",
        "rotate_access_key",
    ),
    (
        Method::GET,
        "/namespaces/{accessKey}/secrets/{key}",
        "read_secret",
    ),
    (
        Method::PUT,
        "/namespaces/{accessKey}/secrets/{key}",
        "put_secret",
    ),
    (
        Method::DELETE,
        "/namespaces/{accessKey}/secrets/{key}",
        "delete_secret",
    ),
    (Method::GET, "/metrics", "read_metrics"),
    (Method::GET, "/openapi.json", "read_openapi"),
    (Method::POST, "/", "original_create_namespace"),
    (Method::DELETE, "/", "original_delete_namespace"),
    (Method::POST, "/bulk", "original_create_namespaces"),
    (Method::GET, "/secrets", "original_read_secrets"),
    (Method::POST, "/secrets", "original_write_secret"),
    (Method::DELETE, "/secrets", "original_delete_secret"),
    (Method::GET, "/heartbeat", "original_heartbeat"),
];

/// The routes that are not recorded: the probes.
const PROBES: &[&str] = &["/healthz", "/readyz"];

/// The operation and route template a request is recorded under; `None` for a probe.
#[must_use]
pub fn operation(method: &Method, pattern: Option<&str>) -> Option<(&'static str, &'static str)> {
    let Some(pattern) = pattern else {
        return Some(("unknown_route", UNMATCHED_ROUTE));
    };
    if PROBES.contains(&pattern) {
        return None;
    }
    let mut route = None;
    for (allowed, template, operation) in ROUTES {
        if *template == pattern {
            if allowed == method {
                return Some((operation, template));
            }
            route = Some(*template);
        }
    }
    Some(match route {
        Some(template) => ("method_not_allowed", template),
        None => ("unknown_route", UNMATCHED_ROUTE),
    })
}

/// Whether an operation is one of the original service's routes (answered in its error shape).
fn original(operation: &str) -> bool {
    operation.starts_with("original_")
}

/// The 503 of a request whose line could not be written, in the shape its route answers
/// errors in.
fn refusal(original_route: bool) -> HttpResponse {
    let error = ApiError::audit_unavailable();
    let response = error.error_response();
    if original_route {
        let answered = Answered::of(&error);
        HttpResponse::build(response.status()).json(answered.original_body())
    } else {
        response
    }
}

/// Middleware: see the module doc.
pub async fn record(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    let started = Instant::now();
    let trail = req.app_data::<Data<Trail>>().cloned();
    let pattern = req.match_pattern();
    let (Some(trail), Some((operation, route))) =
        (trail, operation(req.method(), pattern.as_deref()))
    else {
        return Ok(next.call(req).await?.map_into_left_body());
    };
    let metrics = req.app_data::<Data<Metrics>>().cloned();
    let refused = || {
        if let Some(metrics) = &metrics {
            metrics.audit_refused();
        }
    };
    if !trail.healthy() {
        refused();
        return Ok(req
            .into_response(refusal(original(operation)))
            .map_into_right_body());
    }
    let method = method_label(req.method());
    // Taken, not copied: the request log keeps its own.
    let request_id = req
        .extensions_mut()
        .remove::<RequestId>()
        .unwrap_or_else(RequestId::fresh);
    let response = next.call(req).await;
    let (status, answered, facts, caller) = match &response {
        Ok(response) => {
            let mut extensions = response.request().extensions_mut();
            (
                response.status(),
                response.response().extensions().get::<Answered>().cloned(),
                extensions.remove::<Facts>().unwrap_or_default(),
                extensions.get::<Caller>().map(|caller| caller.0),
            )
        }
        Err(error) => (
            error.as_response_error().status_code(),
            None,
            Facts::default(),
            None,
        ),
    };
    let namespace = facts
        .namespace
        .or_else(|| answered.as_ref().and_then(|answered| answered.namespace));
    let event = RequestEvent {
        request_id,
        caller,
        operation,
        method,
        route,
        namespace,
        created: facts.created,
        access_key: facts.access_key.map(|hash| trail.key.access_key_tag(&hash)),
        secret: namespace
            .zip(facts.secret)
            .map(|(namespace, name)| trail.key.secret_name_tag(namespace, &name)),
        status: status.as_u16(),
        error: answered.map(|answered| answered.code.as_str()),
        latency_us: u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
    };
    let written = trail.log.record(Event::Request(event), trail.timeout).await;
    match (written, response) {
        (Ok(()), Ok(response)) => Ok(response.map_into_left_body()),
        (Ok(()), Err(error)) => Err(error),
        (Err(error), response) => {
            refused();
            tracing::warn!(%error, operation, "answered 503 audit_unavailable");
            match response {
                Ok(response) => {
                    let (req, _) = response.into_parts();
                    Ok(ServiceResponse::new(req, refusal(original(operation)))
                        .map_into_right_body())
                }
                Err(_) => Err(ApiError::audit_unavailable().into()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_has_one_operation_and_probes_none() {
        assert_eq!(
            operation(&Method::GET, Some("/namespaces/{accessKey}/secrets/{key}")),
            Some(("read_secret", "/namespaces/{accessKey}/secrets/{key}"))
        );
        assert_eq!(
            operation(&Method::PUT, Some("/namespaces/{accessKey}")),
            Some(("method_not_allowed", "/namespaces/{accessKey}"))
        );
        assert_eq!(
            operation(&Method::GET, None),
            Some(("unknown_route", UNMATCHED_ROUTE))
        );
        assert_eq!(operation(&Method::GET, Some("/healthz")), None);
        assert_eq!(operation(&Method::GET, Some("/readyz")), None);
        let mut seen = std::collections::HashSet::new();
        for (method, template, operation) in ROUTES {
            assert!(seen.insert((method.clone(), *template)), "{template}");
            assert!(seen.insert((Method::OPTIONS, *operation)), "{operation}");
        }
    }
}
