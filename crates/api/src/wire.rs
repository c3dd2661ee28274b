//! Request and response bodies, and the parsing of untrusted bytes into domain values.
//!
//! Every body is read with a size limit and a time limit, checked for its media type, then
//! parsed as a JSON object whose keys must be unique (`serde_json` would silently keep the last
//! of two equal keys, which in a merge patch would hide half of what the caller sent). Field
//! checks are done by hand so that every message names the field and never echoes what was
//! sent: a rejected value may well be a secret.

use std::time::Duration;

use actix_web::HttpRequest;
use actix_web::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use actix_web::web::{Bytes, BytesMut, Payload};
use futures_util::StreamExt as _;
use secrets_domain::{BulkCount, PatchChange, SecretName, SecretValue};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::error::ApiError;

/// The media types a body may be sent as.
#[derive(Debug, Clone, Copy)]
pub enum Accept {
    /// `application/json` only.
    Json,
    /// `application/merge-patch+json` or `application/json`.
    MergePatch,
}

impl Accept {
    fn allows(self, essence: &str) -> bool {
        match self {
            Self::Json => essence == "application/json",
            Self::MergePatch => {
                essence == "application/json" || essence == "application/merge-patch+json"
            }
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Self::Json => "application/json",
            Self::MergePatch => "application/merge-patch+json or application/json",
        }
    }
}

/// Reads the whole body, refusing it with 413 as soon as it is known to pass `limit`: from
/// `Content-Length` before reading anything, else while streaming.
///
/// The whole read must end within `timeout` (`server.body_timeout_ms`), or the request is
/// answered 408. actix bounds only the arrival of the request head; without this bound a client
/// that announces a body and then sends it slowly, or never, would hold its request (and the
/// memory of what it sent so far) for as long as it keeps the connection open. The bound is on
/// the whole body, not on the gap between two reads, so trickling a byte at a time does not
/// extend it. Waiting here is a pending future, not a blocked thread: stalled bodies tie up no
/// worker, whatever their number.
pub async fn read_body(
    req: &HttpRequest,
    mut payload: Payload,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, ApiError> {
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(ApiError::body_too_large(limit));
    }
    let read = async {
        let mut body = BytesMut::new();
        while let Some(chunk) = payload.next().await {
            let chunk = chunk
                .map_err(|_| ApiError::invalid_request("the request body could not be read"))?;
            if body.len() + chunk.len() > limit {
                return Err(ApiError::body_too_large(limit));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    };
    tokio::time::timeout(timeout, read)
        .await
        .unwrap_or_else(|_| Err(ApiError::body_timeout()))
}

/// Checks the media type of a non-empty body.
pub fn check_media_type(req: &HttpRequest, accept: Accept) -> Result<(), ApiError> {
    let essence = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase());
    match essence {
        Some(essence) if accept.allows(&essence) => Ok(()),
        _ => Err(ApiError::unsupported_media_type(accept.describe())),
    }
}

/// A JSON object with unique keys, in the order sent.
struct UniqueObject(Vec<(String, Value)>);

impl<'de> Deserialize<'de> for UniqueObject {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor;

        impl<'de> Visitor<'de> for ObjectVisitor {
            type Value = UniqueObject;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<UniqueObject, A::Error> {
                let mut entries: Vec<(String, Value)> = Vec::new();
                let mut seen = std::collections::HashSet::new();
                while let Some((key, value)) = map.next_entry::<String, Value>()? {
                    if !seen.insert(key.clone()) {
                        return Err(de::Error::custom(DUPLICATE_KEY));
                    }
                    entries.push((key, value));
                }
                Ok(UniqueObject(entries))
            }
        }

        deserializer.deserialize_map(ObjectVisitor)
    }
}

const DUPLICATE_KEY: &str = "duplicate key";

/// Parses a body as a JSON object with unique keys.
fn parse_object(body: &[u8]) -> Result<Vec<(String, Value)>, ApiError> {
    match serde_json::from_slice::<UniqueObject>(body) {
        Ok(UniqueObject(entries)) => Ok(entries),
        Err(error) => Err(match error.classify() {
            serde_json::error::Category::Data if error.to_string().starts_with(DUPLICATE_KEY) => {
                ApiError::invalid_request("the JSON object has the same key twice")
            }
            serde_json::error::Category::Data => {
                ApiError::invalid_request("the request body must be a JSON object")
            }
            // Syntax and EOF messages from serde_json hold a position, never the input.
            _ => ApiError::invalid_json(format!("the request body is not valid JSON: {error}")),
        }),
    }
}

/// Takes the string field `name` out of `fields`.
fn take_string(fields: &mut Vec<(String, Value)>, name: &str) -> Result<String, ApiError> {
    let position = fields
        .iter()
        .position(|(key, _)| key == name)
        .ok_or_else(|| ApiError::invalid_request(format!("{name}: this field is required")))?;
    match fields.swap_remove(position).1 {
        Value::String(text) => Ok(text),
        _ => Err(ApiError::invalid_request(format!(
            "{name}: must be a string"
        ))),
    }
}

fn refuse_unknown(fields: &[(String, Value)], known: &str) -> Result<(), ApiError> {
    if fields.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid_request(format!(
            "unknown field in the request body; the fields are: {known}"
        )))
    }
}

/// Parses a secret name from a body or a path, naming the field in the message.
pub fn parse_name(field: &str, text: String) -> Result<SecretName, ApiError> {
    SecretName::parse(text).map_err(|error| ApiError::invalid_request(format!("{field}: {error}")))
}

/// `POST /namespaces/{accessKey}`: `{"key": "...", "value": "..."}`.
pub fn parse_put(body: &[u8]) -> Result<(SecretName, SecretValue), ApiError> {
    let mut fields = parse_object(body)?;
    let name = take_string(&mut fields, "key")?;
    let value = SecretValue::new(take_string(&mut fields, "value")?);
    refuse_unknown(&fields, "key, value")?;
    Ok((parse_name("key", name)?, value))
}

/// `POST /namespaces`: no body or `{}`.
pub fn parse_create(body: &[u8]) -> Result<(), ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    refuse_unknown(&parse_object(body)?, "none (send no body or {})")
}

/// `POST /namespaces/bulk`: `{"count": n}`.
pub fn parse_bulk(body: &[u8]) -> Result<BulkCount, ApiError> {
    let mut fields = parse_object(body)?;
    let position = fields
        .iter()
        .position(|(key, _)| key == "count")
        .ok_or_else(|| ApiError::invalid_request("count: this field is required"))?;
    let count = fields.swap_remove(position).1;
    refuse_unknown(&fields, "count")?;
    count
        .as_i64()
        .ok_or(secrets_domain::InvalidBulkCount)
        .and_then(BulkCount::parse)
        .map_err(|error| ApiError::invalid_request(format!("count: {error}")))
}

/// `PATCH /namespaces/{accessKey}`: a JSON merge patch of names to strings or `null`.
pub fn parse_patch(body: &[u8]) -> Result<Vec<PatchChange>, ApiError> {
    parse_object(body)?
        .into_iter()
        .map(|(name, value)| {
            let value = match value {
                Value::String(text) => Some(SecretValue::new(text)),
                Value::Null => None,
                _ => {
                    return Err(ApiError::invalid_request(
                        "every value in a merge patch must be a string (to set) or null (to delete)",
                    ));
                }
            };
            Ok((parse_name("patch key", name)?, value))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Request bodies, as the OpenAPI document describes them. The handlers do not deserialise into
// these (see the module doc: bodies are parsed by hand, field by field); they exist so that the
// document is generated from types, next to the parsers they describe.
// ---------------------------------------------------------------------------------------------

/// The body of `POST /namespaces/{accessKey}`: one secret to add or update.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = PutSecretRequest, example = json!({"key": "SECRET_API_KEY", "value": "foobar"}))]
#[expect(
    missing_debug_implementations,
    reason = "describes names and values: never printed"
)]
pub struct PutRequest {
    /// The secret's name: 1 to 256 bytes of UTF-8, without control characters.
    pub key: String,
    /// The secret's value: a UTF-8 string of at most `limits.max_value_bytes` bytes.
    pub value: String,
}

/// The body of `POST /namespaces`: nothing, or an empty object.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = CreateNamespaceRequest, example = json!({}))]
pub struct CreateRequest {}

/// The body of `POST /namespaces/bulk`: how many namespaces to create, in one transaction.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = BulkCreateRequest, example = json!({"count": 10}))]
pub struct BulkRequest {
    /// From 1 to 500.
    #[schema(minimum = 1, maximum = 500)]
    pub count: u32,
}

/// A JSON merge patch (RFC 7396) of a namespace: a string sets the secret of that name, `null`
/// deletes it. Applied in one transaction, all or nothing.
#[derive(ToSchema)]
#[schema(as = NamespacePatch, example = json!({"A": "x", "B": null}))]
#[expect(
    missing_debug_implementations,
    reason = "describes names and values: never printed"
)]
pub struct PatchRequest(pub std::collections::BTreeMap<String, Option<String>>);

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
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(
            self.0
                .iter()
                .map(|(name, value)| (name.as_str(), value.expose())),
        )
    }
}

/// The answer of `/healthz` and `/readyz`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Status)]
pub struct StatusBody {
    /// `ok` (the process serves) or `ready` (the store answers).
    pub status: &'static str,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_put_body_parses_into_a_name_and_a_value() {
        let (name, value) = parse_put(br#"{"key": "API_KEY", "value": "v"}"#).expect("parses");
        assert_eq!(name.as_str(), "API_KEY");
        assert_eq!(value.expose(), "v");
    }

    #[test]
    fn bad_put_bodies_are_refused_with_a_message_naming_the_field() {
        let cases: &[(&str, &[u8], &str, &str)] = &[
            ("not json", b"{", "invalid_json", "not valid JSON"),
            (
                "invalid utf-8",
                b"{\"key\": \"\xff\", \"value\": \"v\"}",
                "invalid_json",
                "JSON",
            ),
            ("array", b"[]", "invalid_request", "JSON object"),
            (
                "missing key",
                br#"{"value": "v"}"#,
                "invalid_request",
                "key: this field is required",
            ),
            (
                "missing value",
                br#"{"key": "K"}"#,
                "invalid_request",
                "value: this field is required",
            ),
            (
                "number value",
                br#"{"key": "K", "value": 5}"#,
                "invalid_request",
                "value: must be a string",
            ),
            (
                "null key",
                br#"{"key": null, "value": "v"}"#,
                "invalid_request",
                "key: must be a string",
            ),
            (
                "empty name",
                br#"{"key": "", "value": "v"}"#,
                "invalid_request",
                "key: a secret name must not be empty",
            ),
            (
                "control char",
                br#"{"key": "a\nb", "value": "v"}"#,
                "invalid_request",
                "control characters",
            ),
            (
                "unknown field",
                br#"{"key": "K", "value": "v", "x": 1}"#,
                "invalid_request",
                "unknown field",
            ),
            (
                "duplicate key",
                br#"{"key": "K", "value": "a", "value": "b"}"#,
                "invalid_request",
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
        let body = br#"{"key": "K", "value": {"nested": "hunter2-secret"}}"#;
        let error = parse_put(body).expect_err("object value");
        assert!(!error.to_string().contains("hunter2"));
        let error = parse_bulk(br#"{"count": "hunter2-secret"}"#).expect_err("string count");
        assert!(!error.to_string().contains("hunter2"));
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
        ] {
            assert_eq!(
                parse_patch(bad).expect_err("non-string").code(),
                "invalid_request"
            );
        }
        assert_eq!(
            parse_patch(br#"{"A": "1", "A": null}"#)
                .expect_err("duplicate")
                .code(),
            "invalid_request"
        );
    }

    #[test]
    fn deeply_nested_json_is_refused_without_overflowing_the_stack() {
        let depth = 100_000;
        let body = format!("{{\"A\": {}{}}}", "[".repeat(depth), "]".repeat(depth));
        let error = parse_patch(body.as_bytes()).expect_err("too deep");
        assert_eq!(error.code(), "invalid_json");
    }

    #[test]
    fn bulk_counts_outside_the_range_are_refused() {
        assert_eq!(parse_bulk(br#"{"count": 3}"#).expect("parses").get(), 3);
        for bad in [
            &br#"{"count": 0}"#[..],
            br#"{"count": 501}"#,
            br#"{"count": 1.5}"#,
            br"{}",
        ] {
            assert_eq!(
                parse_bulk(bad).expect_err("bad count").code(),
                "invalid_request"
            );
        }
    }

    #[test]
    fn a_create_body_may_be_empty_or_an_empty_object() {
        assert!(parse_create(b"").is_ok());
        assert!(parse_create(b"{}").is_ok());
        assert_eq!(
            parse_create(br#"{"a": 1}"#).expect_err("field").code(),
            "invalid_request"
        );
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
