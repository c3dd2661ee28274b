//! Namespaces: create one or many, read all of one's secrets, give one a new access key,
//! delete one; with their request and response bodies.

use actix_web::web::Payload;
use actix_web::{HttpRequest, HttpResponse};
use secrets_domain::ports::{Envelope, Random, SecretStore};
use secrets_domain::{AccessKey, BulkCount, Issued, SecretName, SecretValue};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{
    ACCESS_KEY_PARAM, IF_MATCH_NAMESPACE, IF_MATCH_READ, IF_NONE_MATCH_NAMESPACE,
    IF_NONE_MATCH_READ, State,
};
use crate::audit;
use crate::body::{self, Accept, Body};
use crate::conditional;
use crate::error::ApiError;
use crate::path;
use crate::responses::{ConditionalNamespaceErrors, CreateErrors, NamespaceErrors};

// ---------------------------------------------------------------------------------------------
// Request bodies
// ---------------------------------------------------------------------------------------------

/// The body of `POST /namespaces`: nothing, or an empty object.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = CreateNamespaceRequest, example = json!({}))]
pub struct CreateRequest {}

impl Body for CreateRequest {
    const FIELDS: Option<&'static [&'static str]> = Some(&[]);
}

/// `POST /namespaces`: no body (or only whitespace), or `{}`.
pub fn parse_create(body: &[u8]) -> Result<(), ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    body::decode::<CreateRequest>(body).map(drop)
}

/// The body of `POST /namespaces/bulk`: how many namespaces to create, in one transaction.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = BulkCreateRequest, example = json!({"count": 10}))]
pub struct BulkRequest {
    /// From 1 to 500.
    #[schema(minimum = 1, maximum = 500)]
    pub count: u32,
}

impl Body for BulkRequest {
    const FIELDS: Option<&'static [&'static str]> = Some(&["count"]);

    fn invalid(field: &str) -> String {
        format!("{field}: {}", secrets_domain::InvalidBulkCount)
    }
}

/// `POST /namespaces/bulk`: `{"count": n}`.
pub fn parse_bulk(body: &[u8]) -> Result<BulkCount, ApiError> {
    let BulkRequest { count } = body::decode(body)?;
    BulkCount::parse(i64::from(count))
        .map_err(|_| ApiError::invalid_request(BulkRequest::invalid("count")))
}

// ---------------------------------------------------------------------------------------------
// Response bodies
// ---------------------------------------------------------------------------------------------

/// A namespace's access key. Only the service's caller ever holds it: the service keeps its
/// SHA-256 alone.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = AccessKey)]
#[expect(
    missing_debug_implementations,
    reason = "holds names, values or keys: never printed"
)]
pub struct AccessKeyBody {
    /// 32 random bytes, base64url without padding (43 characters).
    #[schema(min_length = 43, max_length = 43, pattern = "^[A-Za-z0-9_-]{43}$")]
    pub access_key: String,
}

impl AccessKeyBody {
    fn of(key: &AccessKey) -> Self {
        Self {
            access_key: key.expose().to_string(),
        }
    }
}

/// The access keys of namespaces created together.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = AccessKeys)]
#[expect(
    missing_debug_implementations,
    reason = "holds names, values or keys: never printed"
)]
pub struct AccessKeysBody {
    /// One access key per new namespace, each 43 characters of base64url.
    pub access_keys: Vec<String>,
}

impl AccessKeysBody {
    /// The body of new namespaces' keys.
    #[must_use]
    pub fn of(issued: &[Issued]) -> Self {
        Self {
            access_keys: issued
                .iter()
                .map(|i| i.access_key.expose().to_string())
                .collect(),
        }
    }
}

/// Every secret of a namespace as one flat JSON object of name to value, serialised straight
/// from the decrypted pairs without an intermediate map.
#[derive(ToSchema)]
#[schema(
    as = Namespace,
    value_type = std::collections::BTreeMap<String, String>,
    example = json!({"SECRET_API_KEY": "foobar"})
)]
#[expect(
    missing_debug_implementations,
    reason = "holds names, values or keys: never printed"
)]
pub struct NamespaceBody<'a>(pub &'a [(SecretName, SecretValue)]);

impl Serialize for NamespaceBody<'_> {
    fn serialize<Ser: serde::Serializer>(&self, serializer: Ser) -> Result<Ser::Ok, Ser::Error> {
        serializer.collect_map(
            self.0
                .iter()
                .map(|(name, value)| (name.as_str(), value.expose())),
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Handlers
// ---------------------------------------------------------------------------------------------

/// Creates a namespace and answers its access key.
#[utoipa::path(
    post,
    path = "/namespaces",
    tag = "namespaces",
    request_body(content = Option<CreateRequest>, content_type = "application/json", description = "No body, or `{}`."),
    security(("serviceToken" = [])),
    responses(
        (status = 201, description = "The new namespace's access key.", body = AccessKeyBody),
        CreateErrors,
    )
)]
pub async fn create_namespace<S: SecretStore, C: Envelope, R: Random>(
    state: State<S, C, R>,
    req: HttpRequest,
    payload: Payload,
) -> Result<HttpResponse, ApiError> {
    let body = body::read(&req, payload, state.body).await?;
    if !body.is_empty() {
        body::check_media_type(&req, Accept::Json)?;
    }
    parse_create(&body)?;
    let issued = state.service.create_namespace().await?;
    audit::namespace(&req, issued.namespace);
    Ok(HttpResponse::Created().json(AccessKeyBody::of(&issued.access_key)))
}

/// Creates 1 to 500 namespaces in one transaction, to pre-provision a pool of them.
#[utoipa::path(
    post,
    path = "/namespaces/bulk",
    tag = "namespaces",
    request_body(content = BulkRequest, content_type = "application/json"),
    security(("serviceToken" = [])),
    responses(
        (status = 201, description = "The new namespaces' access keys, created in one transaction.", body = AccessKeysBody),
        CreateErrors,
    )
)]
pub async fn create_namespaces<S: SecretStore, C: Envelope, R: Random>(
    state: State<S, C, R>,
    req: HttpRequest,
    payload: Payload,
) -> Result<HttpResponse, ApiError> {
    let body = body::read_json(&req, payload, state.body, Accept::Json).await?;
    let count = parse_bulk(&body)?;
    let issued = state.service.create_namespaces(count).await?;
    audit::created(&req, &issued);
    Ok(HttpResponse::Created().json(AccessKeysBody::of(&issued)))
}

/// Reads every secret of a namespace, as one flat object of name to value.
///
/// The worker's hot path: one round trip to the store. With `If-None-Match` holding the
/// namespace's current entity tag it answers 304 after one lookup of the namespace, decrypting
/// nothing.
#[utoipa::path(
    get,
    path = "/namespaces/{accessKey}",
    tag = "namespaces",
    params(
        ("accessKey" = String, Path, description = ACCESS_KEY_PARAM),
        ("If-None-Match" = Option<String>, Header, description = IF_NONE_MATCH_READ),
        ("If-Match" = Option<String>, Header, description = IF_MATCH_READ),
    ),
    security(("serviceToken" = [])),
    responses(
        (status = 200, description = "Every secret of the namespace, name to value.", body = NamespaceBody<'_>,
            headers(("ETag" = String, description = "The namespace's entity tag in the state answered (see `If-None-Match` and `If-Match`)."))),
        (status = 304, description = "Nothing changed since the entity tag sent in `If-None-Match`; no body.",
            headers(("ETag" = String, description = "The namespace's entity tag in the state answered (see `If-None-Match` and `If-Match`)."))),
        ConditionalNamespaceErrors,
    )
)]
pub async fn read_namespace<S: SecretStore, C: Envelope, R: Random>(
    state: State<S, C, R>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let conditions = conditional::conditions(&req)?;
    let key = path::access_key(&req)?;
    let read = state.service.read_all(&key, &conditions).await?;
    audit::namespace(&req, read.namespace);
    Ok(conditional::answer(read, |ok, secrets| {
        ok.json(NamespaceBody(&secrets))
    }))
}

/// Deletes a namespace and its secrets, destroying its data key.
#[utoipa::path(
    delete,
    path = "/namespaces/{accessKey}",
    tag = "namespaces",
    params(
        ("accessKey" = String, Path, description = ACCESS_KEY_PARAM),
        ("If-Match" = Option<String>, Header, description = IF_MATCH_NAMESPACE),
        ("If-None-Match" = Option<String>, Header, description = IF_NONE_MATCH_NAMESPACE),
    ),
    security(("serviceToken" = [])),
    responses(
        (status = 204, description = "The namespace, its secrets and its data key are gone."),
        ConditionalNamespaceErrors,
    )
)]
pub async fn delete_namespace<S: SecretStore, C: Envelope, R: Random>(
    state: State<S, C, R>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let conditions = conditional::conditions(&req)?;
    let key = path::access_key(&req)?;
    let deleted = state.service.delete_namespace(&key, &conditions).await?;
    audit::namespace(&req, deleted);
    Ok(HttpResponse::NoContent().finish())
}

/// Gives a namespace a new access key; the old one stops working at once.
#[utoipa::path(
    post,
    path = "/namespaces/{accessKey}/access-key",
    tag = "namespaces",
    params(("accessKey" = String, Path, description = ACCESS_KEY_PARAM)),
    security(("serviceToken" = [])),
    responses(
        (status = 201, description = "The namespace's new access key; the old one stopped working.", body = AccessKeyBody),
        NamespaceErrors,
    )
)]
pub async fn rotate_access_key<S: SecretStore, C: Envelope, R: Random>(
    state: State<S, C, R>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let key = path::access_key(&req)?;
    let issued = state.service.rotate_access_key(&key).await?;
    audit::namespace(&req, issued.namespace);
    Ok(HttpResponse::Created().json(AccessKeyBody::of(&issued.access_key)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::tests::fields_match_the_schema;
    use crate::error::ErrorCode;

    #[test]
    fn the_bodies_field_lists_are_their_schemas() {
        fields_match_the_schema::<CreateRequest>();
        fields_match_the_schema::<BulkRequest>();
    }

    #[test]
    fn bulk_counts_outside_the_range_are_refused() {
        assert_eq!(parse_bulk(br#"{"count": 3}"#).expect("parses").get(), 3);
        for bad in [
            &br#"{"count": 0}"#[..],
            br#"{"count": 501}"#,
            br#"{"count": 1.5}"#,
            br#"{"count": -1}"#,
            br#"{"count": "3"}"#,
            br"{}",
        ] {
            let error = parse_bulk(bad).expect_err("bad count");
            assert_eq!(error.code(), ErrorCode::InvalidRequest);
            assert!(
                error.to_string().starts_with("400 invalid_request: count"),
                "{error}"
            );
        }
    }

    #[test]
    fn a_create_body_may_be_empty_or_an_empty_object() {
        assert!(parse_create(b"").is_ok());
        assert!(parse_create(b" \n").is_ok());
        assert!(parse_create(b"{}").is_ok());
        let error = parse_create(br#"{"a": 1}"#).expect_err("field");
        assert_eq!(error.code(), ErrorCode::InvalidRequest);
        assert!(error.to_string().contains("unknown field"), "{error}");
    }

    #[test]
    fn a_namespace_serialises_as_a_flat_object() {
        let secrets = vec![
            (
                SecretName::parse("A").expect("name"),
                SecretValue::new("1".into()),
            ),
            (
                SecretName::parse("B\"").expect("name"),
                SecretValue::new("2".into()),
            ),
        ];
        let json = serde_json::to_string(&NamespaceBody(&secrets)).expect("serialises");
        assert_eq!(json, r#"{"A":"1","B\"":"2"}"#);
    }
}
