//! Request bodies: read with a size limit and a time limit, checked for their media type, then
//! decoded into the derived type that describes them.
//!
//! # Decoding
//! A body is decoded in two passes, each by a crate:
//! 1. `serde_json` into a [`Value`]: whatever is not JSON (a syntax error, invalid UTF-8, the
//!    end of the body too early, nesting past `serde_json`'s recursion limit of 128, refused
//!    without using up the stack) is `invalid_json`, with `serde_json`'s message, which holds a
//!    position and never the input. So a syntax error anywhere wins over any other complaint,
//!    and the second pass only ever sees a well-formed JSON object.
//! 2. The body's own type ([`Body`]: `Deserialize` with `deny_unknown_fields`, and `ToSchema`,
//!    so the OpenAPI document describes exactly what parses), through `serde_path_to_error`,
//!    which names the field that failed. A derived struct refuses a repeated field itself, and
//!    the merge patch's map refuses a repeated key through `serde_with`'s
//!    `MapPreventDuplicates`.
//!
//! serde's own messages quote what was sent (`invalid type: string "hunter2"`, or the name of
//! an unknown field), and a rejected value, or a key in the wrong place, may well be a secret.
//! So no serde message reaches a response: each refusal becomes one of the fixed sentences
//! below, chosen by where the error is (the failing field, known or not, or the object
//! itself) and never by its text.

use std::time::Duration;

use actix_web::HttpRequest;
use actix_web::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use actix_web::web::{Bytes, BytesMut, Payload};
use futures_util::StreamExt as _;
use serde::de::DeserializeOwned;
use serde_json::Value;
use serde_path_to_error::Segment;

use crate::error::ApiError;

/// How much of a body is read, and for how long (`limits.max_body_bytes`,
/// `server.body_timeout_ms`).
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    /// The largest body, in bytes.
    pub max_bytes: usize,
    /// How long the whole body may take to arrive.
    pub timeout: Duration,
}

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

/// Reads the whole body, refusing it with 413 as soon as it is known to pass the limit: from
/// `Content-Length` before reading anything, else while streaming.
///
/// The whole read must end within the time limit (`server.body_timeout_ms`), or the request is
/// answered 408. actix bounds only the arrival of the request head; without this bound a client
/// that announces a body and then sends it slowly, or never, would hold its request (and the
/// memory of what it sent so far) for as long as it keeps the connection open. The bound is on
/// the whole body, not on the gap between two reads, so trickling a byte at a time does not
/// extend it. Waiting here is a pending future, not a blocked thread: stalled bodies tie up no
/// worker, whatever their number.
pub async fn read(
    req: &HttpRequest,
    mut payload: Payload,
    limits: BodyLimits,
) -> Result<Bytes, ApiError> {
    let limit = limits.max_bytes;
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
    tokio::time::timeout(limits.timeout, read)
        .await
        .unwrap_or_else(|_| Err(ApiError::body_timeout()))
}

/// Checks the media type of a body.
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

/// Reads a body that must be sent as `accept`: the size and time limits first, then the media
/// type.
pub async fn read_json(
    req: &HttpRequest,
    payload: Payload,
    limits: BodyLimits,
    accept: Accept,
) -> Result<Bytes, ApiError> {
    let body = read(req, payload, limits).await?;
    check_media_type(req, accept)?;
    Ok(body)
}

/// A request body's type: derived, and able to say in a fixed sentence what is wrong with one
/// of its fields.
pub trait Body: DeserializeOwned {
    /// The body's fields, as serde names them; `None` for a map, whose every key is a field.
    /// Every field listed is required. (A test checks the list against the OpenAPI schema the
    /// type derives.)
    const FIELDS: Option<&'static [&'static str]>;

    /// The sentence for a field whose value does not fit: it names the field (or, in a map,
    /// describes every entry: its keys are the caller's) and never quotes the value.
    #[must_use]
    fn invalid(field: &str) -> String {
        format!("{field}: must be a string")
    }
}

/// Decodes `body` as `T`; see the module doc.
pub fn decode<T: Body>(body: &[u8]) -> Result<T, ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(|error| {
        ApiError::invalid_json(format!("the request body is not valid JSON: {error}"))
    })?;
    let Value::Object(object) = value else {
        return Err(ApiError::invalid_request(
            "the request body must be a JSON object",
        ));
    };
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        match error.path().iter().next() {
            Some(Segment::Map { key }) => match T::FIELDS {
                Some(fields) if !fields.contains(&key.as_str()) => unknown_field(fields),
                _ => ApiError::invalid_request(T::invalid(key)),
            },
            // The object itself: a required field is missing, or a key came twice.
            _ => match T::FIELDS
                .unwrap_or_default()
                .iter()
                .find(|field| !object.contains_key(**field))
            {
                Some(missing) => {
                    ApiError::invalid_request(format!("{missing}: this field is required"))
                }
                None => ApiError::invalid_request("the JSON object has the same key twice"),
            },
        }
    })
}

fn unknown_field(fields: &[&str]) -> ApiError {
    let known = if fields.is_empty() {
        "none (send no body or {})".to_owned()
    } else {
        fields.join(", ")
    };
    ApiError::invalid_request(format!(
        "unknown field in the request body; the fields are: {known}"
    ))
}

#[cfg(test)]
pub(crate) mod tests {
    //! The decoder's behaviour is tested through each body's parser (in the handler modules),
    //! where the sentences are; here, that each body's field list is its schema's.

    use utoipa::openapi::{RefOr, Schema};

    use super::Body;

    /// Asserts that `T::FIELDS` lists exactly the properties of `T`'s OpenAPI schema, all of
    /// them required.
    pub(crate) fn fields_match_the_schema<T: Body + utoipa::ToSchema>() {
        let RefOr::T(Schema::Object(schema)) = T::schema() else {
            panic!("{} is described as an object", T::name());
        };
        let properties: Vec<&str> = schema.properties.keys().map(String::as_str).collect();
        let required: Vec<&str> = schema.required.iter().map(String::as_str).collect();
        assert_eq!(T::FIELDS, Some(properties.as_slice()), "{}", T::name());
        assert_eq!(
            properties,
            required,
            "{}: every field is required",
            T::name()
        );
    }
}
