//! The application: every route, its middleware and the data its handlers share.
//!
//! Unknown routes answer 404 `not_found`, known routes with another method 405
//! `method_not_allowed`, both as JSON; everything under `/namespaces`, `/metrics`, and the
//! original service's routes at the root when they are on (`compat.original_routes`), needs a
//! service token first, so an unauthenticated caller learns nothing about which routes exist.
//! Each route's OpenAPI operation is on its handler; a test checks that the two agree.
//!
//! [`app`] is generic over the service's ports, like the handlers: the server builds it over
//! the configured store and the ring envelope, and `tests/in_memory.rs` over the domain's
//! in-memory fakes.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::web::{self, Data};
use actix_web::{App, Error, middleware};
use secrets_domain::ports::{Envelope, Random, SecretStore};

use crate::audit::Trail;
use crate::auth::{ServiceTokens, require_token};
use crate::handlers::{self, AppState, namespaces, operations, secrets};
use crate::metrics::Metrics;

/// The application one worker serves: the routes, with the handlers' state, the accepted
/// tokens and the metrics as app data, inside the request middleware.
pub fn app<S: SecretStore, C: Envelope, R: Random>(
    state: Data<AppState<S, C, R>>,
    tokens: Data<ServiceTokens>,
    metrics: Data<Metrics>,
    trail: Option<Data<Trail>>,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = Error,
        InitError = (),
    >,
> {
    let original_routes = state.original_routes;
    let mut app = App::new()
        .app_data(state)
        .app_data(tokens)
        .app_data(metrics);
    if let Some(trail) = trail {
        app = app.app_data(trail);
    }
    app.configure(|cfg| routes::<S, C, R>(cfg, original_routes))
        // Around everything but the request log, so that its line is written before any answer
        // leaves, the 401s and 404s included (`crate::audit`).
        .wrap(middleware::from_fn(crate::audit::record))
        // Outermost, so that it sees every answer, the audit trail's 503s included.
        .wrap(middleware::from_fn(crate::middleware::observe))
}

fn routes<S: SecretStore, C: Envelope, R: Random>(
    cfg: &mut web::ServiceConfig,
    original_routes: bool,
) {
    use namespaces::{
        create_namespace, create_namespaces, delete_namespace, read_namespace, rotate_access_key,
    };
    use secrets::{delete_secret, get_secret, list_keys, patch_namespace, put_secret, set_secret};
    let resource =
        |path: &str| web::resource(path).default_service(web::to(handlers::method_not_allowed));
    if original_routes {
        original::<S, C, R>(cfg);
    }
    cfg.service(resource("/healthz").route(web::get().to(operations::healthz)))
        .service(resource("/readyz").route(web::get().to(operations::readyz::<S, C, R>)))
        .service(resource("/openapi.json").route(web::get().to(operations::openapi)))
        .service(
            resource("/metrics")
                .wrap(middleware::from_fn(require_token))
                .route(web::get().to(operations::metrics)),
        )
        .service(
            web::scope("/namespaces")
                .wrap(middleware::from_fn(require_token))
                .service(resource("").route(web::post().to(create_namespace::<S, C, R>)))
                .service(resource("/bulk").route(web::post().to(create_namespaces::<S, C, R>)))
                .service(
                    resource("/{accessKey}")
                        .route(web::get().to(read_namespace::<S, C, R>))
                        .route(web::post().to(put_secret::<S, C, R>))
                        .route(web::patch().to(patch_namespace::<S, C, R>))
                        .route(web::delete().to(delete_namespace::<S, C, R>)),
                )
                .service(resource("/{accessKey}/keys").route(web::get().to(list_keys::<S, C, R>)))
                .service(
                    resource("/{accessKey}/access-key").route(web::post().to(rotate_access_key::<
                        S,
                        C,
                        R,
                    >)),
                )
                .service(
                    resource("/{accessKey}/secrets/{key}")
                        .route(web::get().to(get_secret::<S, C, R>))
                        .route(web::put().to(set_secret::<S, C, R>))
                        .route(web::delete().to(delete_secret::<S, C, R>)),
                )
                .default_service(web::to(handlers::not_found)),
        )
        .default_service(web::to(handlers::not_found));
}

/// The original service's routes at the root (`compat.original_routes`), each behind the token
/// check and answering errors in the original's shape.
fn original<S: SecretStore, C: Envelope, R: Random>(cfg: &mut web::ServiceConfig) {
    use handlers::original::{
        original_create_namespace, original_create_namespaces, original_delete_namespace,
        original_delete_secret, original_errors, original_heartbeat, original_put_secret,
        original_read_secrets,
    };
    let resource = |path: &str| {
        web::resource(path)
            .wrap(middleware::from_fn(require_token))
            .wrap(middleware::from_fn(original_errors))
            .default_service(web::to(handlers::method_not_allowed))
    };
    cfg.service(
        resource("/")
            .route(web::post().to(original_create_namespace::<S, C, R>))
            .route(web::delete().to(original_delete_namespace::<S, C, R>)),
    )
    .service(resource("/bulk").route(web::post().to(original_create_namespaces::<S, C, R>)))
    .service(
        resource("/secrets")
            .route(web::get().to(original_read_secrets::<S, C, R>))
            .route(web::post().to(original_put_secret::<S, C, R>))
            .route(web::delete().to(original_delete_secret::<S, C, R>)),
    )
    .service(resource("/heartbeat").route(web::get().to(original_heartbeat)));
}
