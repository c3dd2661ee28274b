//! Conditional requests (RFC 9110, section 13): `If-Match` and `If-None-Match` read into the
//! domain's [`Condition`], and the answers that go with them: `ETag`, 304 and 412.
//!
//! # Which routes
//! The routes whose resource has a representation evaluate both headers: `GET`, `POST`, `PATCH`
//! and `DELETE /namespaces/{accessKey}` and `GET .../keys` against the namespace's entity tag;
//! `GET`, `PUT` and `DELETE .../secrets/{key}` against the secret's. The others (`POST
//! /namespaces`, `/bulk`, `.../access-key`, the operations endpoints) select no representation
//! to compare with, and ignore them (RFC 9110, section 13.2.1). A request with neither header is
//! answered exactly as it was before entity tags existed.
//!
//! # Parsing
//! A field is `*` or a comma-separated list of entity tags (`"opaque"` or `W/"opaque"`), over
//! one header line or several, empty list elements allowed (sections 8.8.3, 13.1.1, 13.1.2 and
//! 5.6.1). A field that is not that is refused with 400 `invalid_request` naming the header:
//! ignoring it, as RFC 9110 would let a recipient do with a construct it cannot use, would turn
//! a conditional write into an unconditional one, which is the lost update the header is sent to
//! prevent. (actix-web's typed `IfMatch` parser drops the elements it cannot parse, so a
//! malformed `If-None-Match: *` would silently mean no condition at all; hence the few lines
//! here.) `*` together with tags is malformed too.
//!
//! `If-Match` compares strongly: a weak tag matches nothing. `If-None-Match` compares weakly:
//! `W/"t"` matches `"t"`. A tag this service did not make, or made for another resource,
//! matches nothing (the domain checks each against the resource it names).

use actix_web::http::StatusCode;
use actix_web::http::header::{self, EntityTag, HeaderName};
use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder};
use secrets_domain::{Condition, Conditional, ETag, Tagged, Tags};

use crate::error::ApiError;

/// The preconditions of `req`: its `If-Match` and `If-None-Match`, each absent, `*` or a list of
/// the entity tags this service could have made.
pub fn conditions(req: &HttpRequest) -> Result<Condition<ETag>, ApiError> {
    Ok(Condition {
        if_match: field(req, &header::IF_MATCH, Comparison::Strong)?,
        if_none_match: field(req, &header::IF_NONE_MATCH, Comparison::Weak)?,
    })
}

/// How a field's tags compare with the current one (RFC 9110, section 8.8.3.2).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Comparison {
    /// Both strong and the same characters: a weak tag matches nothing.
    Strong,
    /// The same characters, weak or not.
    Weak,
}

fn field(
    req: &HttpRequest,
    name: &HeaderName,
    comparison: Comparison,
) -> Result<Option<Tags<ETag>>, ApiError> {
    let mut lines = req.headers().get_all(name).peekable();
    if lines.peek().is_none() {
        return Ok(None);
    }
    let malformed = || {
        ApiError::invalid_request(format!(
            "{}: must be `*` or a comma-separated list of entity tags (\"...\" or W/\"...\")",
            canonical(name)
        ))
    };
    let joined = lines
        .map(header::HeaderValue::as_bytes)
        .collect::<Vec<_>>()
        .join(&b',');
    let list = entity_tags(&joined).ok_or_else(malformed)?;
    Ok(Some(match list {
        List::Any => Tags::Any,
        List::Tags(tags) => Tags::List(
            tags.into_iter()
                .filter(|(weak, _)| comparison == Comparison::Weak || !weak)
                .filter_map(|(_, opaque)| std::str::from_utf8(opaque).ok().and_then(ETag::parse))
                .collect(),
        ),
    }))
}

/// A field's value: `*`, or its tags (weak or not, and the opaque part between the quotes).
#[derive(Debug, PartialEq, Eq)]
enum List<'a> {
    Any,
    Tags(Vec<(bool, &'a [u8])>),
}

/// Parses `"*" / #entity-tag`; `None` when the value is neither.
fn entity_tags(value: &[u8]) -> Option<List<'_>> {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let trimmed = value.trim_ascii();
    if trimmed == b"*" {
        return Some(List::Any);
    }
    let mut tags = Vec::new();
    let mut rest = trimmed;
    loop {
        // Empty elements and the whitespace around commas are allowed.
        while let Some((first, tail)) = rest.split_first() {
            if *first == b',' || is_ows(first) {
                rest = tail;
            } else {
                break;
            }
        }
        if rest.is_empty() {
            return Some(List::Tags(tags));
        }
        let (weak, quoted) = match rest.strip_prefix(b"W/") {
            Some(tail) => (true, tail),
            None => (false, rest),
        };
        let body = quoted.strip_prefix(b"\"")?;
        let end = body.iter().position(|b| *b == b'"')?;
        let opaque = &body[..end];
        // etagc = %x21 / %x23-7E / obs-text: visible characters but the quote, and bytes >= 0x80.
        if !opaque
            .iter()
            .all(|b| *b == 0x21 || (0x23..=0x7e).contains(b) || *b >= 0x80)
        {
            return None;
        }
        tags.push((weak, opaque));
        rest = &body[end + 1..];
        // A tag ends the field or is followed by a comma, after optional whitespace.
        let after = rest.iter().position(|b| !is_ows(b)).unwrap_or(rest.len());
        rest = &rest[after..];
        if !rest.is_empty() && rest[0] != b',' {
            return None;
        }
    }
}

fn canonical(name: &HeaderName) -> &'static str {
    if *name == header::IF_MATCH {
        "If-Match"
    } else {
        "If-None-Match"
    }
}

/// The `ETag` header of a response.
#[must_use]
pub fn etag(tag: &ETag) -> header::ETag {
    header::ETag(EntityTag::new_strong(tag.to_string()))
}

/// A read's answer: 304 with the `ETag` and no body when the caller's copy is current, or
/// `status` with the `ETag` and the body `respond` makes of what was read.
pub fn answer<T>(
    tagged: Tagged<Conditional<T>>,
    respond: impl FnOnce(&mut HttpResponseBuilder, T) -> HttpResponse,
) -> HttpResponse {
    match tagged.value {
        // RFC 9110, section 15.4.5: a 304 carries the ETag a 200 would have.
        Conditional::NotModified => HttpResponse::NotModified()
            .insert_header(etag(&tagged.etag))
            .finish(),
        Conditional::Read(value) => {
            let mut builder = HttpResponse::build(StatusCode::OK);
            builder.insert_header(etag(&tagged.etag));
            respond(&mut builder, value)
        }
    }
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    #[test]
    fn entity_tag_lists_parse_as_rfc_9110_writes_them() {
        let tags = |v: &[(bool, &'static str)]| {
            Some(List::Tags(
                v.iter().map(|(w, t)| (*w, t.as_bytes())).collect(),
            ))
        };
        let cases: &[(&str, Option<List<'static>>)] = &[
            ("*", Some(List::Any)),
            ("  * ", Some(List::Any)),
            (r#""a""#, tags(&[(false, "a")])),
            (r#"W/"a""#, tags(&[(true, "a")])),
            (
                r#""a", W/"b" ,"c""#,
                tags(&[(false, "a"), (true, "b"), (false, "c")]),
            ),
            (r#", "a",, ,"b","#, tags(&[(false, "a"), (false, "b")])),
            (r#""""#, tags(&[(false, "")])),
            ("", tags(&[])),
            (",", tags(&[])),
            ("a", None),
            (r#""a"b"#, None),
            (r#""a" "b""#, None),
            (r#""a"#, None),
            (r#"w/"a""#, None),
            (r#"W/ "a""#, None),
            (r#"*, "a""#, None),
            ("\"a b\"", None),
            ("\"a\tb\"", None),
        ];
        for (value, expected) in cases {
            assert_eq!(entity_tags(value.as_bytes()), *expected, "{value:?}");
        }
    }

    #[test]
    fn a_malformed_precondition_is_refused_naming_its_header() {
        for (name, value) in [("If-Match", "abc"), ("If-None-Match", "'*'")] {
            let req = TestRequest::default()
                .insert_header((name, value))
                .to_http_request();
            let error = conditions(&req).expect_err("malformed");
            assert_eq!(error.code(), crate::error::ErrorCode::InvalidRequest);
            assert!(error.to_string().contains(name), "{error}");
        }
    }

    #[test]
    fn only_tags_this_service_makes_are_kept_and_if_match_keeps_no_weak_one() {
        let ours = "A".repeat(43);
        let req = TestRequest::default()
            .insert_header(("If-Match", format!(r#""foreign", W/"{ours}""#)))
            .append_header(("If-None-Match", format!(r#"W/"{ours}""#)))
            .append_header(("If-None-Match", format!(r#""{ours}""#)))
            .to_http_request();
        let condition = conditions(&req).expect("parses");
        assert_eq!(condition.if_match, Some(Tags::List(vec![])));
        let tag = ETag::parse(&ours).expect("32 bytes");
        assert_eq!(condition.if_none_match, Some(Tags::List(vec![tag, tag])));
        let none = conditions(&TestRequest::default().to_http_request()).expect("none");
        assert!(none.is_none());
    }
}
