//! The error answers of the OpenAPI document, as shared response sets.
//!
//! Each error row (a status, the codes it carries and when) is written once below, and each
//! set lists the rows that a kind of operation can answer; a handler's `#[utoipa::path]` names
//! its set beside its success row (`responses((status = 200, ..), NamespaceErrors)`). Every
//! row's body is the [`ErrorBody`] schema, so the document cannot show an error in another
//! shape; the original service's routes have sets of their own, whose body is
//! [`OriginalErrorBody`] (the original's fields around the same error).

use std::collections::BTreeMap;

use utoipa::openapi::{ContentBuilder, Ref, RefOr, Response, ResponseBuilder};
use utoipa::{IntoResponses, ToSchema as _};

use crate::error::{ErrorBody, OriginalErrorBody};

/// One error row of the document.
struct Row {
    status: u16,
    description: &'static str,
}

const BAD_BODY: Row = Row {
    status: 400,
    description: "`invalid_json` or `invalid_request`: the message names the field (or the \
        malformed `If-Match` or `If-None-Match`).",
};
const BAD_QUERY: Row = Row {
    status: 400,
    description: "`invalid_request` (in `name`): a query parameter is missing, repeated, not UTF-8 or not valid; the message names it.",
};
const BAD_NAME: Row = Row {
    status: 400,
    description: "`invalid_request`: the name is not a valid secret name, or `If-Match` or \
        `If-None-Match` is malformed; the message says which.",
};
const BAD_PRECONDITION: Row = Row {
    status: 400,
    description: "`invalid_request`: `If-Match` or `If-None-Match` is malformed; the message \
        names it.",
};
const UNAUTHORIZED: Row = Row {
    status: 401,
    description: "`unauthorized`: missing, wrong or ambiguous service token.",
};
const NAMESPACE_NOT_FOUND: Row = Row {
    status: 404,
    description: "`namespace_not_found`: no namespace has this access key (or it is malformed).",
};
const SECRET_NOT_FOUND: Row = Row {
    status: 404,
    description: "`namespace_not_found`, or `secret_not_found`: the namespace has no secret of that name.",
};
const BODY_TIMEOUT: Row = Row {
    status: 408,
    description: "`request_timeout`: the body did not arrive within `server.body_timeout_ms`.",
};
const NAMESPACE_FULL: Row = Row {
    status: 409,
    description: "`namespace_full`: the namespace holds its maximum number of secrets.",
};
const TOO_LARGE: Row = Row {
    status: 413,
    description: "`payload_too_large`: the body (or a value) is over its limit.",
};
const MEDIA_TYPE: Row = Row {
    status: 415,
    description: "`unsupported_media_type`: the body is not JSON.",
};
const PRECONDITION_FAILED: Row = Row {
    status: 412,
    description: "`precondition_failed`: `If-Match` or `If-None-Match` did not hold (the \
        resource changed since its entity tag was read, or `If-None-Match: *` found it existing); \
        nothing was changed.",
};
const INTERNAL: Row = Row {
    status: 500,
    description: "`integrity_error`: stored data failed its integrity check; `internal`: a bug.",
};
const UNAVAILABLE: Row = Row {
    status: 503,
    description: "`unavailable`: the store cannot be reached; `audit_unavailable`: the request \
        could not be recorded in the audit trail, so it was not answered. Retry later.",
};
const AUDIT_UNAVAILABLE: Row = Row {
    status: 503,
    description: "`audit_unavailable`: the request could not be recorded in the audit trail, so \
        it was not answered; retry later.",
};

fn rows(schema: &str, rows: &[Row]) -> BTreeMap<String, RefOr<Response>> {
    let schema = Ref::from_schema_name(schema);
    rows.iter()
        .map(|row| {
            let response = ResponseBuilder::new()
                .description(row.description)
                .content(
                    "application/json",
                    ContentBuilder::new().schema(Some(schema.clone())).build(),
                )
                .build();
            (row.status.to_string(), RefOr::T(response))
        })
        .collect()
}

macro_rules! response_set {
    ($(#[$doc:meta])* $name:ident: $($row:ident),+) => {
        response_set!($(#[$doc])* $name(ErrorBody::name()): $($row),+);
    };
    ($(#[$doc:meta])* $name:ident($schema:expr): $($row:ident),+) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $name;

        impl IntoResponses for $name {
            fn responses() -> BTreeMap<String, RefOr<Response>> {
                rows(&$schema, &[$($row),+])
            }
        }
    };
}

response_set!(
    /// An operation on a namespace that takes no body.
    NamespaceErrors: UNAUTHORIZED, NAMESPACE_NOT_FOUND, INTERNAL, UNAVAILABLE
);
response_set!(
    /// An operation on a namespace that takes no body and evaluates `If-Match` and
    /// `If-None-Match` against the namespace's entity tag.
    ConditionalNamespaceErrors: BAD_PRECONDITION, UNAUTHORIZED, NAMESPACE_NOT_FOUND,
        PRECONDITION_FAILED, INTERNAL, UNAVAILABLE
);
response_set!(
    /// An operation that takes a body and creates namespaces.
    CreateErrors: BAD_BODY, UNAUTHORIZED, BODY_TIMEOUT, TOO_LARGE, MEDIA_TYPE, INTERNAL, UNAVAILABLE
);
response_set!(
    /// An operation that takes a body and writes secrets into a namespace, conditionally.
    WriteErrors: BAD_BODY, UNAUTHORIZED, NAMESPACE_NOT_FOUND, BODY_TIMEOUT, NAMESPACE_FULL,
        PRECONDITION_FAILED, TOO_LARGE, MEDIA_TYPE, INTERNAL, UNAVAILABLE
);
response_set!(
    /// An operation on one secret, named in the path, conditionally.
    SecretErrors: BAD_NAME, UNAUTHORIZED, SECRET_NOT_FOUND, PRECONDITION_FAILED, INTERNAL,
        UNAVAILABLE
);
response_set!(
    /// An operation behind the service token that touches no store.
    TokenErrors: UNAUTHORIZED, AUDIT_UNAVAILABLE
);
response_set!(
    /// An operation without a token that asks the store (and, for readiness, the audit trail).
    StoreErrors: UNAVAILABLE
);
response_set!(
    /// An operation without a token that touches no store, recorded in the audit trail.
    AuditErrors: AUDIT_UNAVAILABLE
);

// The original service's routes answer errors in its shape (`OriginalError`).
response_set!(
    /// An original route that reads a namespace named in the query.
    OriginalReadErrors(OriginalErrorBody::name()): BAD_QUERY, UNAUTHORIZED, NAMESPACE_NOT_FOUND,
        INTERNAL, UNAVAILABLE
);
response_set!(
    /// An original route that takes a body and writes into a namespace named in the query.
    OriginalWriteErrors(OriginalErrorBody::name()): BAD_BODY, UNAUTHORIZED, NAMESPACE_NOT_FOUND,
        BODY_TIMEOUT, NAMESPACE_FULL, TOO_LARGE, MEDIA_TYPE, INTERNAL, UNAVAILABLE
);
response_set!(
    /// An original route that creates namespaces.
    OriginalCreateErrors(OriginalErrorBody::name()): BAD_BODY, UNAUTHORIZED, BODY_TIMEOUT,
        TOO_LARGE, MEDIA_TYPE, INTERNAL, UNAVAILABLE
);
response_set!(
    /// An original route behind the service token that touches no store.
    OriginalTokenErrors(OriginalErrorBody::name()): UNAUTHORIZED, AUDIT_UNAVAILABLE
);
