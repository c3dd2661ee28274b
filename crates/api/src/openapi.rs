//! The OpenAPI 3.1 document of the whole API, generated from the code.
//!
//! Each handler carries its operation (`#[utoipa::path]` in [`crate::handlers`]) and each body
//! its schema (`ToSchema` beside the handler that uses it, and in [`crate::error`]); the error
//! rows are the shared sets of [`crate::responses`]. [`ApiDoc`] gathers them, and
//! [`Operability`] adds what is common to every operation: the bearer security scheme and the
//! `X-Request-Id` header (see [`crate::middleware`]). The document is rendered once per process
//! and served at `GET /openapi.json`.
//!
//! A copy is committed at `docs/openapi.json`; a test compares it with the served document and
//! fails on any difference. To regenerate the copy after changing the API, run that test with
//! `UPDATE_OPENAPI=1`:
//!
//! ```text
//! UPDATE_OPENAPI=1 scripts/with-postgres.sh cargo test -p secrets-api --test api openapi
//! ```

use std::sync::LazyLock;

use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{Operation, ParameterBuilder, ParameterIn};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ObjectBuilder, Required, Type};
use utoipa::{Modify, OpenApi};

use crate::error::{ErrorBody, OriginalErrorBody};
use crate::handlers::{namespaces, operations, original, secrets};
use crate::middleware::MAX_REQUEST_ID_LEN;

/// The name of the security scheme every authenticated operation refers to.
pub const SECURITY_SCHEME: &str = "serviceToken";

/// The API's operations and schemas.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Secrets service",
        description = "An internal HTTP service that holds customers' secrets, encrypted per \
            namespace. A namespace is known outside the service only by its access key. Every \
            route under `/namespaces`, `/metrics`, and the compatibility routes tagged \
            `original`, needs `Authorization: Bearer <service token>`. Every error is `{\"error\": {\"code\", \"message\"}}`; a route that exists \
            answers another method with 405 `method_not_allowed`, and an unknown route is 404 \
            `not_found`. Every response carries an `X-Request-Id`. Reads answer with a strong `ETag`; \
            `If-None-Match` makes a read answer 304 when nothing changed, and `If-Match` / \
            `If-None-Match` make a write answer 412 `precondition_failed` (changing nothing) \
            when the resource is not in the state they name. A request with neither is \
            unconditional."
    ),
    paths(
        namespaces::create_namespace,
        namespaces::create_namespaces,
        namespaces::read_namespace,
        secrets::put_secret,
        secrets::patch_namespace,
        namespaces::delete_namespace,
        secrets::list_keys,
        namespaces::rotate_access_key,
        secrets::get_secret,
        secrets::set_secret,
        secrets::delete_secret,
        operations::healthz,
        operations::readyz,
        operations::metrics,
        operations::openapi,
        original::original_create_namespace,
        original::original_create_namespaces,
        original::original_read_secrets,
        original::original_put_secret,
        original::original_delete_secret,
        original::original_delete_namespace,
        original::original_heartbeat,
    ),
    // The shared error sets refer to the error bodies by name; they are listed here so that the
    // document defines them.
    components(schemas(ErrorBody<'_>, OriginalErrorBody<'_>)),
    modifiers(&Operability),
    tags(
        (name = "namespaces", description = "Creating, reading, re-keying and deleting namespaces."),
        (name = "secrets", description = "The secrets of one namespace."),
        (name = "operations", description = "Health, readiness, metrics and this document."),
        (name = "original", description = "The compatibility surface: the wire contract of the \
            service this one replaces, at the root, served only with `compat.original_routes = \
            true` and behind the service token like every route. Access keys and names travel in \
            the query string; errors come in the original's shape (`OriginalError`). \
            `mode=public` answers this service's keyed digests, not the original's SHA-256."),
    )
)]
#[derive(Debug)]
pub struct ApiDoc;

/// Adds what every operation shares; see the module doc.
#[derive(Debug)]
pub struct Operability;

impl Modify for Operability {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.security_schemes.insert(
            SECURITY_SCHEME.to_owned(),
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A service token, one of those configured in SERVICE_AUTH_TOKENS.",
                    ))
                    .build(),
            ),
        );
        let sent = ParameterBuilder::new()
            .name("X-Request-Id")
            .parameter_in(ParameterIn::Header)
            .required(Required::False)
            .description(Some(format!(
                "Kept as this request's id when it is 1 to {MAX_REQUEST_ID_LEN} characters of \
                 A-Z a-z 0-9 . _ -; otherwise a UUID v4 is generated."
            )))
            .schema(Some(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .max_length(Some(MAX_REQUEST_ID_LEN)),
            ))
            .build();
        let echoed = HeaderBuilder::new()
            .schema(ObjectBuilder::new().schema_type(Type::String))
            .description(Some(
                "The request's id: the one sent, or the one generated.",
            ))
            .build();
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.options,
                &mut item.head,
                &mut item.patch,
                &mut item.trace,
            ];
            for operation in operations.into_iter().flatten() {
                add_request_id(operation, &sent, &echoed);
            }
        }
    }
}

fn add_request_id(
    operation: &mut Operation,
    sent: &utoipa::openapi::path::Parameter,
    echoed: &utoipa::openapi::header::Header,
) {
    operation
        .parameters
        .get_or_insert_with(Vec::new)
        .push(sent.clone());
    for response in operation.responses.responses.values_mut() {
        if let utoipa::openapi::RefOr::T(response) = response {
            response
                .headers
                .insert("X-Request-Id".to_owned(), echoed.clone());
        }
    }
}

static DOCUMENT: LazyLock<String> = LazyLock::new(|| {
    // Serialising a document of plain maps and strings cannot fail; should it ever, the
    // endpoint serves an empty object rather than taking the process down.
    let mut json = ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|_| "{}".to_owned());
    json.push('\n');
    json
});

/// The document as served, pretty-printed JSON with a final newline (the committed copy is
/// byte for byte the same).
#[must_use]
pub fn document() -> &'static str {
    &DOCUMENT
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_is_openapi_3_1_with_the_bearer_scheme() {
        let doc: serde_json::Value = serde_json::from_str(document()).expect("valid JSON");
        assert_eq!(doc["openapi"], "3.1.0");
        assert_eq!(
            doc["components"]["securitySchemes"][SECURITY_SCHEME]["scheme"],
            "bearer"
        );
        for schema in [
            "Error",
            "ErrorDetail",
            "ErrorCode",
            "AccessKey",
            "Namespace",
            "NamespacePatch",
        ] {
            assert!(doc["components"]["schemas"][schema].is_object(), "{schema}");
        }
        let read = &doc["paths"]["/namespaces/{accessKey}"]["get"];
        assert_eq!(read["security"][0][SECURITY_SCHEME], serde_json::json!([]));
        assert!(read["responses"]["200"]["headers"]["X-Request-Id"].is_object());
        assert!(doc["paths"]["/healthz"]["get"]["security"].is_null());
    }
}
