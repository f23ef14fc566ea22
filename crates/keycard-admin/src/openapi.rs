//! The route table and the OpenAPI 3.1 document served at `/openapi.json`, derived from the
//! handlers.
//!
//! Every handler carries a `#[utoipa::path]` (method, path, parameters, request body, every
//! answer with its body) and the bodies are the types the handlers serialise and parse, deriving
//! `utoipa::ToSchema`. The route table registers handlers only through utoipa-axum's `routes!`,
//! which mounts a handler at the method and path of its own annotation and adds the operation to
//! the document in the same step: a handler without documentation does not compile into the
//! table, and a route cannot move without its documentation moving too.
//!
//! Why utoipa (with utoipa-axum) rather than aide: the handlers answer `Response` and build their
//! errors at run time, so there is no typed output for aide's inference to read; utoipa states
//! each answer in the attribute next to the handler, and its axum router binds route and
//! documentation together. aide's current line is a pre-release (0.16 alpha) on schemars, utoipa
//! is a stable release with a released axum 0.8 binding.
//!
//! The stored types (`SessionRecord`, `Policy`) derive `ToSchema` in keycard-core behind its
//! `openapi` feature, which this crate enables: their schemas come from the fields and doc
//! comments themselves, so a field added there is documented here without anyone remembering
//! to, and crates that do not serve the API do not build utoipa.

use std::sync::OnceLock;

use axum::Router;
use axum::response::Response;
use http::StatusCode;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ComponentsBuilder, OpenApi};
use utoipa::{Modify, OpenApi as _};
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouter};
use utoipa_axum::routes;

use crate::error::{Auth0Error, TykError, json};
use crate::state::SharedState;
use crate::{oauth, sessions, tyk};

/// The route table: a router that takes documented routes only and remembers the paths it
/// mounted.
pub(crate) struct Routes {
    router: OpenApiRouter<SharedState>,
    paths: Vec<String>,
}

impl Routes {
    fn new() -> Self {
        Self {
            router: OpenApiRouter::with_openapi(Document::openapi()),
            paths: Vec::new(),
        }
    }

    /// Mounts `routes!(handler, ...)`: handlers of one path, each at its annotated method.
    fn add(mut self, routes: UtoipaMethodRouter<SharedState>) -> Self {
        self.paths.extend(routes.1.paths.keys().cloned());
        self.router = self.router.routes(routes);
        self
    }

    /// The paths mounted, in order.
    #[cfg(test)]
    pub(crate) fn paths(&self) -> &[String] {
        &self.paths
    }

    /// The router and the document of its routes.
    pub(crate) fn split(self) -> (Router<SharedState>, OpenApi) {
        self.router.split_for_parts()
    }
}

/// Every route of the API.
pub(crate) fn routes() -> Routes {
    Routes::new()
        .add(routes!(serve_document))
        .add(routes!(tyk::list_keys, tyk::create_generated))
        .add(routes!(tyk::create_generated_alias))
        .add(routes!(
            tyk::create_custom,
            tyk::get_key,
            tyk::put_key,
            tyk::delete_key
        ))
        .add(routes!(tyk::reset_quota))
        .add(routes!(tyk::preview_key))
        .add(routes!(tyk::set_key_policies))
        .add(routes!(tyk::list_policies, tyk::create_policy))
        .add(routes!(
            tyk::get_policy,
            tyk::put_policy,
            tyk::delete_policy
        ))
        .add(routes!(oauth::clients::create_client))
        .add(routes!(oauth::clients::list_clients))
        .add(routes!(
            oauth::clients::get_client,
            oauth::clients::put_client,
            oauth::clients::delete_client
        ))
        .add(routes!(oauth::clients::rotate_client))
        .add(routes!(oauth::clients::client_tokens))
        .add(routes!(oauth::authorize::authorize_client))
        .add(routes!(
            sessions::get_session,
            sessions::patch_session,
            sessions::delete_session
        ))
        .add(routes!(sessions::revoke_session))
        .add(routes!(
            sessions::list_user_sessions,
            sessions::delete_user_sessions
        ))
}

/// The client-facing OAuth endpoints ([`AdminApi::oauth_router`](crate::AdminApi::oauth_router)):
/// RFC 6749 / RFC 7009 endpoints for OAuth clients, served on the public listener, so not part
/// of the management API's document.
pub(crate) fn oauth_routes() -> Router<SharedState> {
    use axum::routing::post;
    Router::new()
        .route("/oauth/token", post(oauth::token))
        .route("/oauth/revoke", post(oauth::revoke))
        .route("/oauth/revoke_all", post(oauth::revoke_all))
}

/// What the routes do not say: the title, the security schemes, the tags and the error bodies
/// (the shared refusals reference them without registering them).
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "keycard management API",
        description = "Tyk-compatible keys and policies API, Auth0-compatible sessions API. Keys are stored hashed; the raw key is returned once, when it is created."
    ),
    components(schemas(TykError, Auth0Error, oauth::OAuthError)),
    modifiers(&SecuritySchemes),
    tags(
        (name = "tyk", description = "Tyk-compatible keys and policies (`X-Tyk-Authorization`)"),
        (name = "sessions", description = "Auth0-compatible sessions (bearer admin tokens with scopes)"),
        (name = "meta", description = "About the API"),
    )
)]
struct Document;

/// `tykSecret` and `bearer`, the names the handlers' `security(...)` use.
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut OpenApi) {
        let components = openapi
            .components
            .get_or_insert_with(|| ComponentsBuilder::new().build());
        components.add_security_scheme(
            "tykSecret",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-Tyk-Authorization",
                "The Tyk secret the API was built with",
            ))),
        );
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An admin token; an operation lists the scopes it accepts (any one of them): read:sessions, update:sessions (or update:session), delete:sessions",
                    ))
                    .build(),
            ),
        );
    }
}

/// The document, as served.
pub(crate) fn document() -> &'static OpenApi {
    static DOCUMENT: OnceLock<OpenApi> = OnceLock::new();
    DOCUMENT.get_or_init(|| routes().split().1)
}

/// Get this document
///
/// Public: it describes the API and holds no data.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "meta",
    responses((status = OK, description = "The OpenAPI 3.1 document", body = Object, content_type = "application/json")),
)]
async fn serve_document() -> Response {
    json(StatusCode::OK, document())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use axum::body::Body;
    use http::{Method, Request};
    use http_body_util::BodyExt;
    use keycard_core::store::MemoryStore;
    use serde_json::Value;
    use tower::ServiceExt;

    use super::*;

    /// Every method a route could answer; axum answers `HEAD` with the `GET` handler.
    const METHODS: [Method; 8] = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::OPTIONS,
        Method::TRACE,
    ];

    /// `/tyk/keys/{key}` → `/tyk/keys/x`.
    fn concrete(path: &str) -> String {
        path.split('/')
            .map(|segment| {
                if segment.starts_with('{') {
                    "x"
                } else {
                    segment
                }
            })
            .collect::<Vec<_>>()
            .join("/")
    }

    async fn call(router: &Router, method: Method, uri: &str) -> (StatusCode, bytes::Bytes) {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .body(Body::empty())
            .unwrap();
        let response = router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        (
            status,
            response.into_body().collect().await.unwrap().to_bytes(),
        )
    }

    /// `(METHOD, path)` of every operation of the document the live router serves.
    async fn documented(router: &Router) -> BTreeSet<(String, String)> {
        let (status, body) = call(router, Method::GET, "/openapi.json").await;
        assert_eq!(status, StatusCode::OK);
        let doc: Value = serde_json::from_slice(&body).unwrap();
        let mut operations = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for method in item.as_object().expect("path item").keys() {
                let method = method.to_uppercase();
                assert!(
                    METHODS.iter().any(|m| m.as_str() == method),
                    "{path}: {method} is not an operation"
                );
                operations.insert((method, path.clone()));
            }
        }
        operations
    }

    /// `(METHOD, path)` of every operation the live router answers at the paths of the route
    /// table: a method is served when the router does not refuse it itself. axum's own refusals
    /// are a 404 or 405 with an empty body; every handler answers a request without credentials
    /// with a JSON body (or, for `HEAD`, a status that is not 404/405).
    async fn served(router: &Router) -> BTreeSet<(String, String)> {
        let mut operations = BTreeSet::new();
        for path in routes().paths() {
            for method in METHODS {
                let (status, body) = call(router, method.clone(), &concrete(path)).await;
                let refused_by_router = matches!(
                    status,
                    StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED
                ) && body.is_empty();
                // A GET route answers HEAD too; OpenAPI documents it as the GET operation.
                if !refused_by_router && method != Method::HEAD {
                    operations.insert((method.to_string(), path.clone()));
                }
            }
        }
        operations
    }

    #[tokio::test]
    async fn every_served_route_is_documented_and_every_documented_operation_is_served() {
        let router = crate::AdminApi::builder(MemoryStore::new())
            .build()
            .expect("the default configuration builds")
            .into_router();
        let table = routes();
        let unique: BTreeSet<&String> = table.paths().iter().collect();
        assert_eq!(unique.len(), table.paths().len(), "a path is mounted twice");
        let documented = documented(&router).await;
        let served = served(&router).await;
        assert!(
            served.len() >= 18,
            "only {} operations served",
            served.len()
        );
        let undocumented: Vec<_> = served.difference(&documented).collect();
        let unserved: Vec<_> = documented.difference(&served).collect();
        assert!(
            undocumented.is_empty(),
            "served but not documented: {undocumented:?}"
        );
        assert!(
            unserved.is_empty(),
            "documented but not served: {unserved:?}"
        );
    }

    /// The router refuses, with 405, every method a documented path does not document (and
    /// answers HEAD exactly where GET is documented).
    #[tokio::test]
    async fn undocumented_methods_are_refused_with_405() {
        let router = crate::AdminApi::builder(MemoryStore::new())
            .build()
            .expect("the default configuration builds")
            .into_router();
        let documented = documented(&router).await;
        let paths: BTreeSet<&String> = documented.iter().map(|(_, path)| path).collect();
        for path in paths {
            let has = |method: &Method| documented.contains(&(method.to_string(), path.clone()));
            for method in METHODS {
                let (status, _) = call(&router, method.clone(), &concrete(path)).await;
                let expected = if method == Method::HEAD {
                    has(&Method::GET)
                } else {
                    has(&method)
                };
                assert_eq!(
                    status != StatusCode::METHOD_NOT_ALLOWED,
                    expected,
                    "{method} {path}: {status}"
                );
            }
        }
    }
}
