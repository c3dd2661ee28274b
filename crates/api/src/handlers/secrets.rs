//! The secrets of one namespace: add or update one (into the namespace, or as the secret's own
//! resource), apply a merge patch, list names and digests, read one, delete one; with their
//! request and response bodies.

use std::collections::BTreeMap;

use actix_web::http::StatusCode;
use actix_web::web::Payload;
use actix_web::{HttpRequest, HttpResponse};
use secrets_domain::ports::{Envelope, Random, SecretStore, Upserted};
use secrets_domain::{PatchChange, SecretName, SecretValue, Target};
use serde::{Deserialize, Serialize};
use serde_with::{As, MapPreventDuplicates, Same};
use utoipa::ToSchema;

use super::namespaces::NamespaceBody;
use super::{
    ACCESS_KEY_PARAM, IF_MATCH_NAMESPACE, IF_MATCH_READ, IF_MATCH_SECRET, IF_NONE_MATCH_NAMESPACE,
    IF_NONE_MATCH_READ, IF_NONE_MATCH_SECRET, State,
};
use crate::audit;
use crate::body::{self, Accept, Body};
use crate::conditional;
use crate::error::ApiError;
use crate::path::{self, parse_name};
use crate::responses::{ConditionalNamespaceErrors, SecretErrors, WriteErrors};

/// The secret-name path parameter, as the OpenAPI document describes it.
const NAME_PARAM: &str = "The secret's name, percent-encoded.";

// ---------------------------------------------------------------------------------------------
// Request bodies
// ---------------------------------------------------------------------------------------------

/// The body of `POST /namespaces/{accessKey}`: one secret to add or update.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = PutSecretRequest, example = json!({"key": "SECRET_API_KEY", "value": "foobar"}))]
#[expect(
    missing_debug_implementations,
    reason = "holds names and values: never printed"
)]
pub struct PutRequest {
    /// The secret's name: 1 to 256 bytes of UTF-8, without control characters.
    #[schema(min_length = 1)]
    pub key: String,
    /// The secret's value: a UTF-8 string of at most `limits.max_value_bytes` bytes.
    pub value: String,
}

impl Body for PutRequest {
    const FIELDS: Option<&'static [&'static str]> = Some(&["key", "value"]);
}

/// `POST /namespaces/{accessKey}`: `{"key": "...", "value": "..."}`.
pub fn parse_put(body: &[u8]) -> Result<(SecretName, SecretValue), ApiError> {
    let PutRequest { key, value } = body::decode(body)?;
    let value = SecretValue::new(value);
    Ok((parse_name("key", key)?, value))
}

/// The body of `PUT /namespaces/{accessKey}/secrets/{key}`: the secret's value (its name is
/// in the path).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = SetSecretRequest, example = json!({"value": "foobar"}))]
#[expect(
    missing_debug_implementations,
    reason = "holds names and values: never printed"
)]
pub struct SetRequest {
    /// The secret's value: a UTF-8 string of at most `limits.max_value_bytes` bytes.
    pub value: String,
}

impl Body for SetRequest {
    const FIELDS: Option<&'static [&'static str]> = Some(&["value"]);
}

/// `PUT /namespaces/{accessKey}/secrets/{key}`: `{"value": "..."}`.
pub fn parse_set(body: &[u8]) -> Result<SecretValue, ApiError> {
    let SetRequest { value } = body::decode(body)?;
    Ok(SecretValue::new(value))
}

/// A JSON merge patch (RFC 7396) of a namespace: a string sets the secret of that name, `null`
/// deletes it. Applied in one transaction, all or nothing.
#[derive(Deserialize, ToSchema)]
#[schema(as = NamespacePatch, example = json!({"A": "x", "B": null}))]
#[expect(
    missing_debug_implementations,
    reason = "holds names and values: never printed"
)]
pub struct PatchRequest(
    // serde_json keeps the last of two equal keys, which would hide half of what was sent.
    #[serde(with = "As::<MapPreventDuplicates<Same, Same>>")] pub BTreeMap<String, Option<String>>,
);

impl Body for PatchRequest {
    const FIELDS: Option<&'static [&'static str]> = None;

    fn invalid(_: &str) -> String {
        "every value in a merge patch must be a string (to set) or null (to delete)".to_owned()
    }
}

/// `PATCH /namespaces/{accessKey}`: a JSON merge patch of names to strings or `null`.
pub fn parse_patch(body: &[u8]) -> Result<Vec<PatchChange>, ApiError> {
    let PatchRequest(changes) = body::decode(body)?;
    changes
        .into_iter()
        .map(|(name, value)| Ok((parse_name("patch key", name)?, value.map(SecretValue::new))))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Response bodies
// ---------------------------------------------------------------------------------------------

/// The outcome of adding or updating one secret.
#[derive(Serialize, ToSchema)]
#[schema(as = PutSecretResult, example = json!({"key": "SECRET_API_KEY", "created": true}))]
#[expect(
    missing_debug_implementations,
    reason = "holds names, values or keys: never printed"
)]
pub struct PutBody<'a> {
    /// The secret's name.
    pub key: &'a str,
    /// Whether the name is new (`false`: an update).
    pub created: bool,
}

/// One secret, with its timestamps.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Secret)]
#[expect(
    missing_debug_implementations,
    reason = "holds names, values or keys: never printed"
)]
pub struct SecretBody<'a> {
    /// The secret's name.
    pub key: &'a str,
    /// Its value.
    pub value: &'a str,
    /// When the name was first written (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: time::OffsetDateTime,
    /// When the value last changed (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: time::OffsetDateTime,
}

/// One secret's name and metadata, without its value.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = KeyInfo)]
#[expect(
    missing_debug_implementations,
    reason = "holds names, values or keys: never printed"
)]
pub struct KeyInfoBody<'a> {
    /// The secret's name.
    pub key: &'a str,
    /// Hex HMAC-SHA256 of the value under a per-namespace key: it changes when the value
    /// changes, and cannot be brute-forced back to a short value.
    #[schema(min_length = 64, max_length = 64, pattern = "^[0-9a-f]{64}$")]
    pub digest: String,
    /// When the name was first written (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: time::OffsetDateTime,
    /// When the value last changed (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: time::OffsetDateTime,
}

/// Lowercase hex.
#[must_use]
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
}

// ---------------------------------------------------------------------------------------------
// Handlers
// ---------------------------------------------------------------------------------------------

/// Adds a secret, or updates the one of that name.
///
/// `If-Match` and `If-None-Match` compare with the namespace's entity tag; the answer carries
/// the namespace's entity tag after the write.
#[utoipa::path(
    post,
    path = "/namespaces/{accessKey}",
    tag = "secrets",
    params(
        ("accessKey" = String, Path, description = ACCESS_KEY_PARAM),
        ("If-Match" = Option<String>, Header, description = IF_MATCH_NAMESPACE),
        ("If-None-Match" = Option<String>, Header, description = IF_NONE_MATCH_NAMESPACE),
    ),
    request_body(content = PutRequest, content_type = "application/json"),
    security(("serviceToken" = [])),
    responses(
        (status = 201, description = "The secret was added (`created`: true) or updated (false).", body = PutBody<'_>,
            headers(("ETag" = String, description = "The namespace's entity tag in the state answered (see `If-None-Match` and `If-Match`)."))),
        WriteErrors,
    )
)]
pub async fn put_secret<S: SecretStore, C: Envelope, R: Random>(
    state: State<S, C, R>,
    req: HttpRequest,
    payload: Payload,
) -> Result<HttpResponse, ApiError> {
    let conditions = conditional::conditions(&req)?;
    let body = body::read_json(&req, payload, state.body, Accept::Json).await?;
    let (name, value) = parse_put(&body)?;
    audit::secret(&req, &name);
    let key = path::access_key(&req)?;
    let written = state
        .service
        .put_secret(&key, &name, &value, &conditions, Target::Namespace)
        .await?;
    audit::namespace(&req, written.namespace);
    Ok(HttpResponse::Created()
        .insert_header(conditional::etag(&written.etag))
        .json(PutBody {
            key: name.as_str(),
            created: written.value == Upserted::Created,
        }))
}

/// Writes one secret, named in the path: creates it (201) or replaces its value (200).
///
/// `If-Match` and `If-None-Match` compare with the secret's entity tag: `If-Match` with the tag
/// of a `GET` writes only if nobody changed the secret since; `If-None-Match: *` creates it only
/// if it does not exist. The answer carries no `ETag` (RFC 9110, section 9.3.4: the secret's
/// representation is not the body sent); a `GET` gives the new one.
#[utoipa::path(
    put,
    path = "/namespaces/{accessKey}/secrets/{key}",
    tag = "secrets",
    params(
        ("accessKey" = String, Path, description = ACCESS_KEY_PARAM),
        ("key" = String, Path, description = NAME_PARAM),
        ("If-Match" = Option<String>, Header, description = IF_MATCH_SECRET),
        ("If-None-Match" = Option<String>, Header, description = IF_NONE_MATCH_SECRET),
    ),
    request_body(content = SetRequest, content_type = "application/json"),
    security(("serviceToken" = [])),
    responses(
        (status = 200, description = "The secret's value was replaced (`created`: false).", body = PutBody<'_>),
        (status = 201, description = "The secret was created (`created`: true).", body = PutBody<'_>),
        WriteErrors,
    )
)]
pub async fn set_secret<S: SecretStore, C: Envelope, R: Random>(
    state: State<S, C, R>,
    req: HttpRequest,
    payload: Payload,
) -> Result<HttpResponse, ApiError> {
    let conditions = conditional::conditions(&req)?;
    let body = body::read_json(&req, payload, state.body, Accept::Json).await?;
    let value = parse_set(&body)?;
    let key = path::access_key(&req)?;
    let name = path::secret_name(&req)?;
    let written = state
        .service
        .put_secret(&key, &name, &value, &conditions, Target::Secret)
        .await?;
    audit::namespace(&req, written.namespace);
    let created = written.value == Upserted::Created;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(HttpResponse::build(status).json(PutBody {
        key: name.as_str(),
        created,
    }))
}

/// Applies a JSON merge patch to a namespace, all of it or none of it.
#[utoipa::path(
    patch,
    path = "/namespaces/{accessKey}",
    tag = "secrets",
    params(
        ("accessKey" = String, Path, description = ACCESS_KEY_PARAM),
        ("If-Match" = Option<String>, Header, description = IF_MATCH_NAMESPACE),
        ("If-None-Match" = Option<String>, Header, description = IF_NONE_MATCH_NAMESPACE),
    ),
    request_body(content((PatchRequest = "application/merge-patch+json"), (PatchRequest = "application/json"))),
    security(("serviceToken" = [])),
    responses(
        (status = 200, description = "The whole namespace after the change.", body = NamespaceBody<'_>,
            headers(("ETag" = String, description = "The namespace's entity tag in the state answered (see `If-None-Match` and `If-Match`)."))),
        WriteErrors,
    )
)]
pub async fn patch_namespace<S: SecretStore, C: Envelope, R: Random>(
    state: State<S, C, R>,
    req: HttpRequest,
    payload: Payload,
) -> Result<HttpResponse, ApiError> {
    let conditions = conditional::conditions(&req)?;
    let body = body::read_json(&req, payload, state.body, Accept::MergePatch).await?;
    let changes = parse_patch(&body)?;
    let key = path::access_key(&req)?;
    let patched = state.service.patch(&key, &changes, &conditions).await?;
    audit::namespace(&req, patched.namespace);
    Ok(HttpResponse::Ok()
        .insert_header(conditional::etag(&patched.etag))
        .json(NamespaceBody(&patched.value)))
}

/// Lists the names, digests and timestamps of a namespace's secrets, never their values.
///
/// The listing carries the namespace's entity tag: a view of the same state, so a caller can
/// list, then write with `If-Match`.
#[utoipa::path(
    get,
    path = "/namespaces/{accessKey}/keys",
    tag = "secrets",
    params(
        ("accessKey" = String, Path, description = ACCESS_KEY_PARAM),
        ("If-None-Match" = Option<String>, Header, description = IF_NONE_MATCH_READ),
        ("If-Match" = Option<String>, Header, description = IF_MATCH_READ),
    ),
    security(("serviceToken" = [])),
    responses(
        (status = 200, description = "Every secret's name, digest and timestamps; never a value.", body = Vec<KeyInfoBody<'_>>,
            headers(("ETag" = String, description = "The namespace's entity tag in the state answered (see `If-None-Match` and `If-Match`)."))),
        (status = 304, description = "Nothing changed since the entity tag sent in `If-None-Match`; no body.",
            headers(("ETag" = String, description = "The namespace's entity tag in the state answered (see `If-None-Match` and `If-Match`)."))),
        ConditionalNamespaceErrors,
    )
)]
pub async fn list_keys<S: SecretStore, C: Envelope, R: Random>(
    state: State<S, C, R>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let conditions = conditional::conditions(&req)?;
    let key = path::access_key(&req)?;
    let listing = state.service.list_keys(&key, &conditions).await?;
    audit::namespace(&req, listing.namespace);
    Ok(conditional::answer(listing, |ok, listing| {
        let body: Vec<_> = listing
            .iter()
            .map(|info| KeyInfoBody {
                key: info.name.as_str(),
                digest: hex(&info.digest),
                created_at: info.created_at,
                updated_at: info.updated_at,
            })
            .collect();
        ok.json(body)
    }))
}

/// Reads one secret, with its timestamps.
///
/// With `If-None-Match` holding the secret's current entity tag it answers 304 without opening
/// the name or the value.
#[utoipa::path(
    get,
    path = "/namespaces/{accessKey}/secrets/{key}",
    tag = "secrets",
    params(
        ("accessKey" = String, Path, description = ACCESS_KEY_PARAM),
        ("key" = String, Path, description = NAME_PARAM),
        ("If-None-Match" = Option<String>, Header, description = IF_NONE_MATCH_READ),
        ("If-Match" = Option<String>, Header, description = IF_MATCH_READ),
    ),
    security(("serviceToken" = [])),
    responses(
        (status = 200, description = "The secret.", body = SecretBody<'_>,
            headers(("ETag" = String, description = "The secret's entity tag in the state answered (see `If-None-Match` and `If-Match`)."))),
        (status = 304, description = "The secret did not change since the entity tag sent in `If-None-Match`; no body.",
            headers(("ETag" = String, description = "The secret's entity tag in the state answered (see `If-None-Match` and `If-Match`)."))),
        SecretErrors,
    )
)]
pub async fn get_secret<S: SecretStore, C: Envelope, R: Random>(
    state: State<S, C, R>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let conditions = conditional::conditions(&req)?;
    let key = path::access_key(&req)?;
    let name = path::secret_name(&req)?;
    let secret = state.service.get_secret(&key, &name, &conditions).await?;
    audit::namespace(&req, secret.namespace);
    Ok(conditional::answer(secret, |ok, secret| {
        ok.json(SecretBody {
            key: secret.name.as_str(),
            value: secret.value.expose(),
            created_at: secret.created_at,
            updated_at: secret.updated_at,
        })
    }))
}

/// Deletes one secret.
#[utoipa::path(
    delete,
    path = "/namespaces/{accessKey}/secrets/{key}",
    tag = "secrets",
    params(
        ("accessKey" = String, Path, description = ACCESS_KEY_PARAM),
        ("key" = String, Path, description = NAME_PARAM),
        ("If-Match" = Option<String>, Header, description = IF_MATCH_SECRET),
        ("If-None-Match" = Option<String>, Header, description = IF_NONE_MATCH_SECRET),
    ),
    security(("serviceToken" = [])),
    responses(
        (status = 204, description = "The secret is gone."),
        SecretErrors,
    )
)]
pub async fn delete_secret<S: SecretStore, C: Envelope, R: Random>(
    state: State<S, C, R>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let conditions = conditional::conditions(&req)?;
    let key = path::access_key(&req)?;
    let name = path::secret_name(&req)?;
    let deleted = state
        .service
        .delete_secret(&key, &name, &conditions)
        .await?;
    audit::namespace(&req, deleted);
    Ok(HttpResponse::NoContent().finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::tests::fields_match_the_schema;
    use crate::error::ErrorCode;

    #[test]
    fn the_put_body_field_lists_are_their_schemas() {
        fields_match_the_schema::<PutRequest>();
        fields_match_the_schema::<SetRequest>();
    }

    #[test]
    fn a_set_body_is_one_value() {
        assert_eq!(
            parse_set(br#"{"value": "v"}"#).expect("parses").expose(),
            "v"
        );
        for (bad, message) in [
            (&br#"{"value": 5}"#[..], "value: must be a string"),
            (br"{}", "value: this field is required"),
            (br#"{"value": "v", "key": "K"}"#, "unknown field"),
        ] {
            let error = parse_set(bad).expect_err("refused");
            assert_eq!(error.code(), ErrorCode::InvalidRequest);
            assert!(error.to_string().contains(message), "{error}");
        }
    }

    #[test]
    fn a_put_body_parses_into_a_name_and_a_value() {
        let (name, value) = parse_put(br#"{"key": "API_KEY", "value": "v"}"#).expect("parses");
        assert_eq!(name.as_str(), "API_KEY");
        assert_eq!(value.expose(), "v");
    }

    #[test]
    fn bad_put_bodies_are_refused_with_a_message_naming_the_field() {
        let cases: &[(&str, &[u8], ErrorCode, &str)] = &[
            ("not json", b"{", ErrorCode::InvalidJson, "not valid JSON"),
            (
                "invalid utf-8",
                b"{\"key\": \"\xff\", \"value\": \"v\"}",
                ErrorCode::InvalidJson,
                "JSON",
            ),
            ("array", b"[]", ErrorCode::InvalidRequest, "JSON object"),
            (
                "array of the fields",
                br#"["K", "v"]"#,
                ErrorCode::InvalidRequest,
                "JSON object",
            ),
            (
                "missing key",
                br#"{"value": "v"}"#,
                ErrorCode::InvalidRequest,
                "key: this field is required",
            ),
            (
                "missing value",
                br#"{"key": "K"}"#,
                ErrorCode::InvalidRequest,
                "value: this field is required",
            ),
            (
                "number value",
                br#"{"key": "K", "value": 5}"#,
                ErrorCode::InvalidRequest,
                "value: must be a string",
            ),
            (
                "null key",
                br#"{"key": null, "value": "v"}"#,
                ErrorCode::InvalidRequest,
                "key: must be a string",
            ),
            (
                "empty name",
                br#"{"key": "", "value": "v"}"#,
                ErrorCode::InvalidRequest,
                "key: a secret name must not be empty",
            ),
            (
                "control char",
                br#"{"key": "a\nb", "value": "v"}"#,
                ErrorCode::InvalidRequest,
                "control characters",
            ),
            (
                "unknown field",
                br#"{"key": "K", "value": "v", "x": 1}"#,
                ErrorCode::InvalidRequest,
                "unknown field",
            ),
            (
                "duplicate key",
                br#"{"key": "K", "value": "a", "value": "b"}"#,
                ErrorCode::InvalidRequest,
                "same key twice",
            ),
        ];
        for (why, body, code, message) in cases {
            let error = parse_put(body).expect_err(why);
            assert_eq!(error.code(), *code, "{why}");
            assert!(error.to_string().contains(message), "{why}: {error}");
        }
    }

    #[test]
    fn rejected_values_are_never_echoed() {
        for body in [
            &br#"{"key": "K", "value": {"nested": "hunter2-secret"}}"#[..],
            br#"{"key": "K", "value": "v", "hunter2-secret": 1}"#,
            br#"{"key": "hunter2-secret", "value": 5}"#,
        ] {
            let error = parse_put(body).expect_err("refused");
            assert!(!error.to_string().contains("hunter2"), "{error}");
        }
        let error = super::super::namespaces::parse_bulk(br#"{"count": "hunter2-secret"}"#)
            .expect_err("string count");
        assert!(!error.to_string().contains("hunter2"), "{error}");
        let error = parse_patch(br#"{"hunter2-secret": 1}"#).expect_err("number");
        assert!(!error.to_string().contains("hunter2"), "{error}");
    }

    #[test]
    fn a_merge_patch_parses_strings_and_nulls_and_refuses_other_values() {
        let changes = parse_patch(br#"{"A": "x", "B": null}"#).expect("parses");
        assert_eq!(changes.len(), 2);
        assert_eq!(changes[0].1.as_ref().map(SecretValue::expose), Some("x"));
        assert!(changes[1].1.is_none());
        for bad in [
            &br#"{"A": 1}"#[..],
            br#"{"A": {"b": "c"}}"#,
            br#"{"A": true}"#,
            br#"{"A": ["x"]}"#,
            br"[]",
        ] {
            assert_eq!(
                parse_patch(bad).expect_err("non-string").code(),
                ErrorCode::InvalidRequest
            );
        }
        let error = parse_patch(br#"{"A": "1", "A": null}"#).expect_err("duplicate");
        assert_eq!(error.code(), ErrorCode::InvalidRequest);
        assert!(error.to_string().contains("same key twice"), "{error}");
    }

    #[test]
    fn deeply_nested_json_is_refused_without_overflowing_the_stack() {
        let depth = 100_000;
        let body = format!("{{\"A\": {}{}}}", "[".repeat(depth), "]".repeat(depth));
        let error = parse_patch(body.as_bytes()).expect_err("too deep");
        assert_eq!(error.code(), ErrorCode::InvalidJson);
    }
}
