//! The original service's wire contract, served at the root so that the platform's main server
//! works unchanged but for its `SECRETS_URL` and an `Authorization` header. Opt-in:
//! `compat.original_routes = true`.
//!
//! | the platform's client calls | answered |
//! | --- | --- |
//! | `POST /` | 201 `{"accessKey"}` (a native key: new namespaces always get one) |
//! | `POST /bulk` `{"n": k}` | 200 `{"accessKeys": [...]}`, exactly `k` (1 to 500) |
//! | `GET /secrets?accessKey=K&mode=private` | 200 `{"secrets": {"NAME": "value"}}` |
//! | `GET /secrets?accessKey=K&mode=public` | 200 `{"secrets": {"NAME": "<digest>"}}` |
//! | `POST /secrets?accessKey=K` `{"key", "value"}` | 201 `{}`, add or overwrite |
//! | `DELETE /secrets?accessKey=K&key=NAME` | 202 `{"deleted": true}`, also for an absent name |
//! | `DELETE /?accessKey=K` | 202 `{"deleted": true}`, secrets and data key with it |
//! | `GET /heartbeat` | 200 `{"ok": true}` |
//!
//! Every route needs the service token, as every other does. The same use cases, limits,
//! metrics and request log serve them; the access key is either form (a 21-character key of an
//! imported namespace, or a native one). Differences from the original, on purpose: bulk
//! answers exactly `n` keys that all work; a namespace holding secrets can be deleted; the
//! digests of `mode=public` are this service's keyed HMAC of each value (as in `/keys`), not a
//! bare SHA-256, which anyone could test guesses of a short value against.
//!
//! # Query strings
//! They carry the access key and a secret's name, so they are read here only, strictly: each
//! parameter once (a repeated one is refused, not guessed at), `+` and percent-decoded, refused
//! when not UTF-8. The request log and the metrics name the route template (`/secrets`), which
//! has no query; no message ever quotes a value.
//!
//! # Errors
//! In the original's shape, which the platform's client passes through: `{"message", "name"}`,
//! with this service's `error` object beside them ([`crate::error::OriginalErrorBody`]).
//! [`original_errors`] rewrites every error answer of these routes, the 401 of the token check
//! and the 405s included.

use std::collections::BTreeMap;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::web::Payload;
use actix_web::{Error, HttpRequest, HttpResponse};
use percent_encoding::percent_decode_str;
use secrets_domain::ports::{Envelope, Random, SecretStore};
use secrets_domain::{
    AccessKey, BulkCount, Condition, Conditional, Error as DomainError, KeyInfo, Tagged, Target,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use zeroize::Zeroizing;

use super::State;
use super::namespaces::{AccessKeysBody, NamespaceBody};
use super::secrets::{hex, parse_put};
use crate::audit;
use crate::body::{self, Accept, Body};
use crate::error::{Answered, ApiError};
use crate::path::parse_name;
use crate::responses::{
    OriginalCreateErrors, OriginalReadErrors, OriginalTokenErrors, OriginalWriteErrors,
};

/// The OpenAPI tag of these routes.
pub const TAG: &str = "original";

const ACCESS_KEY: &str = "The namespace's access key: an imported namespace's 21 characters, \
    or a native 43.";

// ---------------------------------------------------------------------------------------------
// Query parameters
// ---------------------------------------------------------------------------------------------

/// The values of the query parameters `names`, in that order (see the module doc): `None` for
/// one that is absent. Other parameters are ignored, as the original ignored them.
fn query<const N: usize>(
    req: &HttpRequest,
    names: [&'static str; N],
) -> Result<[Option<Zeroizing<String>>; N], ApiError> {
    let mut found: [Option<Zeroizing<String>>; N] = std::array::from_fn(|_| None);
    for pair in req.query_string().split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let Some(name) = decode(name) else { continue };
        let Some(at) = names.iter().position(|n| *n == name.as_str()) else {
            continue;
        };
        if found[at].is_some() {
            return Err(ApiError::invalid_request(format!(
                "{}: this query parameter must be given once",
                names[at]
            )));
        }
        found[at] = Some(decode(value).ok_or_else(|| {
            ApiError::invalid_request(format!("{}: not UTF-8 once percent-decoded", names[at]))
        })?);
    }
    Ok(found)
}

/// One `application/x-www-form-urlencoded` component: `+` is a space, then percent-decoding,
/// strictly (not UTF-8 is `None`, never replaced).
fn decode(component: &str) -> Option<Zeroizing<String>> {
    let spaced = Zeroizing::new(component.replace('+', " "));
    percent_decode_str(&spaced)
        .decode_utf8()
        .ok()
        .map(|text| Zeroizing::new(text.into_owned()))
}

fn required(name: &str, value: Option<Zeroizing<String>>) -> Result<Zeroizing<String>, ApiError> {
    value.ok_or_else(|| {
        ApiError::invalid_request(format!("{name}: this query parameter is required"))
    })
}

/// The `accessKey` parameter; a malformed key is answered like an unknown one.
fn access_key(req: &HttpRequest, value: Option<Zeroizing<String>>) -> Result<AccessKey, ApiError> {
    let text = required("accessKey", value)?;
    let key = AccessKey::parse(&text).map_err(|_| ApiError::namespace_not_found())?;
    audit::access_key(req, &key);
    Ok(key)
}

// ---------------------------------------------------------------------------------------------
// Bodies
// ---------------------------------------------------------------------------------------------

/// The body of `POST /bulk`: how many namespaces to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = OriginalBulkRequest, example = json!({"n": 250}))]
pub struct BulkRequest {
    /// From 1 to 500.
    #[schema(minimum = 1, maximum = 500)]
    pub n: u32,
}

impl Body for BulkRequest {
    const FIELDS: Option<&'static [&'static str]> = Some(&["n"]);

    fn invalid(field: &str) -> String {
        format!("{field}: {}", secrets_domain::InvalidBulkCount)
    }
}

/// `POST /bulk`: `{"n": k}`.
pub fn parse_bulk(body: &[u8]) -> Result<BulkCount, ApiError> {
    let BulkRequest { n } = body::decode(body)?;
    BulkCount::parse(i64::from(n)).map_err(|_| ApiError::invalid_request(BulkRequest::invalid("n")))
}

/// `mode` of `GET /secrets`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Names and values.
    Private,
    /// Names and keyed digests of the values.
    Public,
}

/// `{"secrets": {...}}`: a namespace's secrets, name to value (`mode=private`) or name to
/// digest (`mode=public`).
#[derive(Serialize, ToSchema)]
#[schema(as = OriginalSecrets, example = json!({"secrets": {"SECRET_API_KEY": "foobar"}}))]
#[expect(
    missing_debug_implementations,
    reason = "holds names, values or keys: never printed"
)]
pub struct SecretsBody<T: Serialize> {
    /// Name to value, or name to hex HMAC-SHA256 digest of the value.
    #[schema(value_type = BTreeMap<String, String>)]
    pub secrets: T,
}

/// Name to hex digest, serialised straight from the listing.
struct Digests<'a>(&'a [KeyInfo]);

impl Serialize for Digests<'_> {
    fn serialize<Ser: serde::Serializer>(&self, serializer: Ser) -> Result<Ser::Ok, Ser::Error> {
        serializer.collect_map(
            self.0
                .iter()
                .map(|info| (info.name.as_str(), hex(&info.digest))),
        )
    }
}

/// `{"deleted": true}`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = OriginalDeleted)]
pub struct DeletedBody {
    /// Always true.
    pub deleted: bool,
}

/// `{"ok": true}`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = OriginalHeartbeat)]
pub struct HeartbeatBody {
    /// Always true.
    pub ok: bool,
}

/// `{}`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = OriginalEmpty)]
pub struct EmptyBody {}

// ---------------------------------------------------------------------------------------------
// Handlers
// ---------------------------------------------------------------------------------------------

/// Creates a namespace (`createNamespace`); its key is a native one.
#[utoipa::path(
    post,
    path = "/",
    tag = TAG,
    request_body(content = Option<super::namespaces::CreateRequest>, content_type = "application/json", description = "No body, or `{}`."),
    security(("serviceToken" = [])),
    responses(
        (status = 201, description = "The new namespace's access key.", body = super::namespaces::AccessKeyBody),
        OriginalCreateErrors,
    )
)]
pub async fn original_create_namespace<S: SecretStore, C: Envelope, R: Random>(
    state: State<S, C, R>,
    req: HttpRequest,
    payload: Payload,
) -> Result<HttpResponse, ApiError> {
    super::namespaces::create_namespace(state, req, payload).await
}

/// Creates 1 to 500 namespaces in one transaction (`bulkCreateNamespaces`).
#[utoipa::path(
    post,
    path = "/bulk",
    tag = TAG,
    request_body(content = BulkRequest, content_type = "application/json"),
    security(("serviceToken" = [])),
    responses(
        (status = 200, description = "Exactly `n` access keys, each of a new namespace.", body = AccessKeysBody),
        OriginalCreateErrors,
    )
)]
pub async fn original_create_namespaces<S: SecretStore, C: Envelope, R: Random>(
    state: State<S, C, R>,
    req: HttpRequest,
    payload: Payload,
) -> Result<HttpResponse, ApiError> {
    let body = body::read_json(&req, payload, state.body, Accept::Json).await?;
    let count = parse_bulk(&body)?;
    let issued = state.service.create_namespaces(count).await?;
    audit::created(&req, &issued);
    // 200, as the original answered (the native route answers 201).
    Ok(HttpResponse::Ok().json(AccessKeysBody::of(&issued)))
}

/// Reads a namespace's secrets: values (`mode=private`, every hook run) or digests
/// (`mode=public`, the platform's list of secrets).
#[utoipa::path(
    get,
    path = "/secrets",
    tag = TAG,
    params(
        ("accessKey" = String, Query, description = ACCESS_KEY),
        ("mode" = Mode, Query, description = "`private`: the values. `public`: hex HMAC-SHA256 of each value under a per-namespace key, as `/namespaces/{accessKey}/keys` gives (the original answered a bare SHA-256)."),
    ),
    security(("serviceToken" = [])),
    responses(
        (status = 200, description = "The namespace's secrets, name to value or name to digest.", body = SecretsBody<BTreeMap<String, String>>),
        OriginalReadErrors,
    )
)]
pub async fn original_read_secrets<S: SecretStore, C: Envelope, R: Random>(
    state: State<S, C, R>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let [key, mode] = query(&req, ["accessKey", "mode"])?;
    let mode = match required("mode", mode)?.as_str() {
        "private" => Mode::Private,
        "public" => Mode::Public,
        _ => return Err(ApiError::invalid_request("mode: must be public or private")),
    };
    let key = access_key(&req, key)?;
    Ok(match mode {
        Mode::Private => {
            let read = state.service.read_all(&key, &Condition::default()).await?;
            audit::namespace(&req, read.namespace);
            let secrets = unconditional(read)?;
            HttpResponse::Ok().json(SecretsBody {
                secrets: NamespaceBody(&secrets),
            })
        }
        Mode::Public => {
            let listing = state.service.list_keys(&key, &Condition::default()).await?;
            audit::namespace(&req, listing.namespace);
            let listing = unconditional(listing)?;
            HttpResponse::Ok().json(SecretsBody {
                secrets: Digests(&listing),
            })
        }
    })
}

/// Adds a secret, or overwrites the one of that name (`setSecret`).
#[utoipa::path(
    post,
    path = "/secrets",
    tag = TAG,
    params(("accessKey" = String, Query, description = ACCESS_KEY)),
    request_body(content = super::secrets::PutRequest, content_type = "application/json"),
    security(("serviceToken" = [])),
    responses(
        (status = 201, description = "Written.", body = EmptyBody, example = json!({})),
        OriginalWriteErrors,
    )
)]
pub async fn original_put_secret<S: SecretStore, C: Envelope, R: Random>(
    state: State<S, C, R>,
    req: HttpRequest,
    payload: Payload,
) -> Result<HttpResponse, ApiError> {
    let body = body::read_json(&req, payload, state.body, Accept::Json).await?;
    let (name, value) = parse_put(&body)?;
    audit::secret(&req, &name);
    let [key] = query(&req, ["accessKey"])?;
    let key = access_key(&req, key)?;
    let none = Condition::default();
    let written = state
        .service
        .put_secret(&key, &name, &value, &none, Target::Namespace)
        .await?;
    audit::namespace(&req, written.namespace);
    Ok(HttpResponse::Created().json(EmptyBody {}))
}

/// Deletes a secret (`deleteSecret`); a name the namespace does not hold is answered the same.
#[utoipa::path(
    delete,
    path = "/secrets",
    tag = TAG,
    params(
        ("accessKey" = String, Query, description = ACCESS_KEY),
        ("key" = String, Query, description = "The secret's name."),
    ),
    security(("serviceToken" = [])),
    responses(
        (status = 202, description = "The secret is gone, or was never there.", body = DeletedBody, example = json!({"deleted": true})),
        OriginalReadErrors,
    )
)]
pub async fn original_delete_secret<S: SecretStore, C: Envelope, R: Random>(
    state: State<S, C, R>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let [key, name] = query(&req, ["accessKey", "key"])?;
    let name = parse_name("key", required("key", name)?.to_string())?;
    audit::secret(&req, &name);
    let key = access_key(&req, key)?;
    match state
        .service
        .delete_secret(&key, &name, &Condition::default())
        .await
    {
        Ok(namespace) | Err(DomainError::SecretNotFound { namespace }) => {
            audit::namespace(&req, namespace);
        }
        Err(error) => return Err(error.into()),
    }
    Ok(HttpResponse::Accepted().json(DeletedBody { deleted: true }))
}

/// Deletes a namespace with its secrets and data key (`deleteNamespace`).
#[utoipa::path(
    delete,
    path = "/",
    tag = TAG,
    params(("accessKey" = String, Query, description = ACCESS_KEY)),
    security(("serviceToken" = [])),
    responses(
        (status = 202, description = "The namespace, its secrets and its data key are gone.", body = DeletedBody, example = json!({"deleted": true})),
        OriginalReadErrors,
    )
)]
pub async fn original_delete_namespace<S: SecretStore, C: Envelope, R: Random>(
    state: State<S, C, R>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let [key] = query(&req, ["accessKey"])?;
    let key = access_key(&req, key)?;
    let deleted = state
        .service
        .delete_namespace(&key, &Condition::default())
        .await?;
    audit::namespace(&req, deleted);
    Ok(HttpResponse::Accepted().json(DeletedBody { deleted: true }))
}

/// The original's health check. It needs the service token, like every route here; `/healthz`
/// needs none.
#[utoipa::path(
    get,
    path = "/heartbeat",
    tag = TAG,
    security(("serviceToken" = [])),
    responses(
        (status = 200, description = "The process serves.", body = HeartbeatBody, example = json!({"ok": true})),
        OriginalTokenErrors,
    )
)]
pub async fn original_heartbeat() -> HttpResponse {
    HttpResponse::Ok().json(HeartbeatBody { ok: true })
}

/// Middleware: answers every error of these routes in the original's shape (see the module
/// doc).
pub async fn original_errors(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    let response = next.call(req).await?;
    let Some(answered) = response.response().extensions().get::<Answered>().cloned() else {
        return Ok(response.map_into_left_body());
    };
    let status = response.status();
    let (req, _) = response.into_parts();
    let mut rewritten = HttpResponse::build(status).json(answered.original_body());
    // Kept for the audit trail, which records the code and the namespace.
    rewritten.extensions_mut().insert(answered);
    Ok(ServiceResponse::new(req, rewritten).map_into_right_body())
}

/// What an unconditional read read: the original's routes send no preconditions, so the use
/// case never answers that nothing changed.
fn unconditional<T>(tagged: Tagged<Conditional<T>>) -> Result<T, ApiError> {
    match tagged.value {
        Conditional::Read(value) => Ok(value),
        Conditional::NotModified => Err(ApiError::internal_from(&std::io::Error::other(
            "a read without preconditions answered that nothing changed",
        ))),
    }
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;
    use crate::body::tests::fields_match_the_schema;
    use crate::error::ErrorCode;

    #[test]
    fn the_bulk_body_field_list_is_its_schema() {
        fields_match_the_schema::<BulkRequest>();
    }

    #[test]
    fn bulk_counts_outside_the_range_are_refused() {
        assert_eq!(parse_bulk(br#"{"n": 250}"#).expect("parses").get(), 250);
        for bad in [
            &br#"{"n": 0}"#[..],
            br#"{"n": 501}"#,
            br#"{"count": 3}"#,
            br"{}",
        ] {
            assert_eq!(
                parse_bulk(bad).expect_err("refused").code(),
                ErrorCode::InvalidRequest
            );
        }
    }

    #[test]
    fn query_parameters_are_decoded_strictly_and_each_taken_once() {
        let req = TestRequest::with_uri("/secrets?accessKey=a%2Bb+c&other=1&key=%C3%A9")
            .to_http_request();
        let [key, name, missing] = query(&req, ["accessKey", "key", "mode"]).expect("parses");
        assert_eq!(key.as_deref().map(String::as_str), Some("a+b c"));
        assert_eq!(name.as_deref().map(String::as_str), Some("\u{e9}"));
        assert!(missing.is_none());
        let cases = [
            (
                "/secrets?accessKey=a&accessKey=b",
                "accessKey: this query parameter must be given once",
            ),
            ("/secrets?accessKey=%FF", "accessKey: not UTF-8"),
        ];
        for (uri, message) in cases {
            let req = TestRequest::with_uri(uri).to_http_request();
            let error = query(&req, ["accessKey"]).expect_err(uri);
            assert!(error.to_string().contains(message), "{uri}: {error}");
        }
    }

    #[test]
    fn a_refused_query_value_is_never_echoed() {
        let req =
            TestRequest::with_uri("/secrets?accessKey=hunter2&accessKey=hunter2").to_http_request();
        let error = query(&req, ["accessKey"]).expect_err("repeated");
        assert!(!error.to_string().contains("hunter2"), "{error}");
        let error = access_key(
            &TestRequest::default().to_http_request(),
            Some(Zeroizing::new("hunter2".into())),
        )
        .expect_err("malformed");
        assert_eq!(error.code(), ErrorCode::NamespaceNotFound);
        assert!(!error.to_string().contains("hunter2"), "{error}");
    }
}
