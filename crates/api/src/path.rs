//! Path parameters, percent-decoded strictly.
//!
//! actix decodes a path lossily before routing, and its `Path` extractor does so again: a
//! segment whose percent-encoding is not UTF-8 (`%FF`) arrives as U+FFFD, a different and
//! valid name, so `GET .../secrets/%FF` would read the secret named "\u{FFFD}" and `DELETE`
//! would delete it. So a parameter is taken here from the raw path, at the position its name
//! holds in the matched route's template, and decoded with `percent-encoding`, which refuses
//! what is not UTF-8. (The raw path and the routed one have the same segments: actix leaves
//! `%2F` encoded before routing.)

use std::borrow::Cow;

use actix_web::HttpRequest;
use percent_encoding::percent_decode_str;
use secrets_domain::{AccessKey, SecretName};

use crate::audit;
use crate::error::ApiError;

/// The parameter `name` of the matched route, as sent, percent-decoded; `None` when the route
/// has no such parameter or its bytes are not UTF-8.
fn param<'r>(req: &'r HttpRequest, name: &str) -> Option<Cow<'r, str>> {
    let pattern = req.match_pattern()?;
    let position = pattern.split('/').position(|segment| {
        segment
            .strip_prefix('{')
            .and_then(|rest| rest.strip_suffix('}'))
            == Some(name)
    })?;
    let raw = req.uri().path().split('/').nth(position)?;
    percent_decode_str(raw).decode_utf8().ok()
}

/// The `{accessKey}` parameter. A malformed access key is answered exactly like an unknown one.
pub fn access_key(req: &HttpRequest) -> Result<AccessKey, ApiError> {
    let key = param(req, "accessKey")
        .and_then(|text| AccessKey::parse(&text).ok())
        .ok_or_else(ApiError::namespace_not_found)?;
    audit::access_key(req, &key);
    Ok(key)
}

/// The `{key}` parameter: a secret's name.
pub fn secret_name(req: &HttpRequest) -> Result<SecretName, ApiError> {
    let text = param(req, "key").ok_or_else(|| {
        ApiError::invalid_request("key: the name in the path is not UTF-8 once percent-decoded")
    })?;
    let name = parse_name("key", text.into_owned())?;
    audit::secret(req, &name);
    Ok(name)
}

/// Parses a secret name from a body or a path, naming the field in the message.
pub fn parse_name(field: &str, text: String) -> Result<SecretName, ApiError> {
    SecretName::parse(text).map_err(|error| ApiError::invalid_request(format!("{field}: {error}")))
}
