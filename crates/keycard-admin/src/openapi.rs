//! The route table and the OpenAPI 3 document served at `/openapi.json`.
//!
//! The document is written by hand with `serde_json` rather than derived with `utoipa`: the
//! session and policy types live in `keycard-core`, which would have to take a `utoipa`
//! dependency (and derive annotations) for a document only this crate serves, and the exact
//! error bodies of `docs/statuses.md` are easier to state as examples here than through macro
//! attributes.
//! What keeps it honest is [`Routes`]: every route is registered through it, and a test walks
//! both the registered routes and the document and fails when they differ.

use std::sync::OnceLock;

use axum::Router;
use axum::handler::Handler;
use axum::response::Response;
use axum::routing::{MethodFilter, on};
use http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::error::json;
use crate::state::SharedState;
use crate::{sessions, tyk};

/// A router that remembers which `(method, path)` pairs were registered.
pub(crate) struct Routes {
    router: Router<SharedState>,
    table: Vec<(Method, &'static str)>,
}

impl Routes {
    fn new() -> Self {
        Self {
            router: Router::new(),
            table: Vec::new(),
        }
    }

    fn add<H, T>(mut self, method: Method, path: &'static str, handler: H) -> Self
    where
        H: Handler<T, SharedState>,
        T: 'static,
    {
        let filter = MethodFilter::try_from(method.clone())
            .expect("routes are registered with standard methods");
        self.router = self.router.route(path, on(filter, handler));
        self.table.push((method, path));
        self
    }

    pub(crate) fn into_router(self) -> Router<SharedState> {
        self.router
    }

    #[cfg(test)]
    fn table(&self) -> &[(Method, &'static str)] {
        &self.table
    }
}

/// Every route of the API.
pub(crate) fn routes() -> Routes {
    Routes::new()
        .add(Method::GET, "/openapi.json", serve_document)
        .add(Method::GET, "/tyk/keys", tyk::list_keys)
        .add(Method::POST, "/tyk/keys", tyk::create_generated)
        .add(Method::POST, "/tyk/keys/create", tyk::create_generated)
        .add(Method::POST, "/tyk/keys/{key}", tyk::create_custom)
        .add(Method::GET, "/tyk/keys/{key}", tyk::get_key)
        .add(Method::PUT, "/tyk/keys/{key}", tyk::put_key)
        .add(Method::DELETE, "/tyk/keys/{key}", tyk::delete_key)
        .add(Method::GET, "/tyk/policies", tyk::list_policies)
        .add(Method::POST, "/tyk/policies", tyk::create_policy)
        .add(Method::GET, "/tyk/policies/{id}", tyk::get_policy)
        .add(Method::PUT, "/tyk/policies/{id}", tyk::put_policy)
        .add(Method::DELETE, "/tyk/policies/{id}", tyk::delete_policy)
        .add(Method::GET, "/api/v2/sessions/{id}", sessions::get_session)
        .add(
            Method::PATCH,
            "/api/v2/sessions/{id}",
            sessions::patch_session,
        )
        .add(
            Method::DELETE,
            "/api/v2/sessions/{id}",
            sessions::delete_session,
        )
        .add(
            Method::GET,
            "/api/v2/users/{user_id}/sessions",
            sessions::list_user_sessions,
        )
        .add(
            Method::DELETE,
            "/api/v2/users/{user_id}/sessions",
            sessions::delete_user_sessions,
        )
}

async fn serve_document() -> Response {
    static DOCUMENT: OnceLock<Value> = OnceLock::new();
    json(StatusCode::OK, DOCUMENT.get_or_init(document))
}

fn schema(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn content(name: &str) -> Value {
    json!({ "application/json": { "schema": schema(name) } })
}

fn reply(description: &str, schema_name: &str) -> Value {
    json!({ "description": description, "content": content(schema_name) })
}

fn tyk_error(description: &str, message: &str) -> Value {
    json!({
        "description": description,
        "content": { "application/json": {
            "schema": schema("TykError"),
            "example": { "status": "error", "message": message },
        }},
    })
}

fn auth0_error(status: StatusCode, message: &str) -> Value {
    json!({
        "description": status.canonical_reason(),
        "content": { "application/json": {
            "schema": schema("Auth0Error"),
            "example": {
                "statusCode": status.as_u16(),
                "error": status.canonical_reason(),
                "message": message,
            },
        }},
    })
}

fn param(name: &str, location: &str, description: &str, schema: Value) -> Value {
    json!({
        "name": name,
        "in": location,
        "required": location == "path",
        "description": description,
        "schema": schema,
    })
}

fn tyk_op(summary: &str, parameters: Vec<Value>, body: Option<&str>, responses: Value) -> Value {
    let mut responses = responses;
    responses["403"] = tyk_error(
        "Wrong or missing X-Tyk-Authorization",
        "Attempted administrative access with invalid or missing key!",
    );
    responses["503"] = tyk_error("Session store unavailable", crate::error::STORE_UNAVAILABLE);
    let mut op = json!({
        "tags": ["tyk"],
        "summary": summary,
        "security": [{ "tykSecret": [] }],
        "parameters": parameters,
        "responses": responses,
    });
    if let Some(body) = body {
        op["requestBody"] = json!({ "required": true, "content": content(body) });
    }
    op
}

fn auth0_op(summary: &str, scopes: &[&str], parameters: Vec<Value>, responses: Value) -> Value {
    let mut responses = responses;
    responses["401"] = auth0_error(StatusCode::UNAUTHORIZED, "Missing authentication");
    responses["403"] = auth0_error(
        StatusCode::FORBIDDEN,
        &format!("Insufficient scope, expected any of: {}", scopes.join(",")),
    );
    responses["503"] = auth0_error(
        StatusCode::SERVICE_UNAVAILABLE,
        crate::error::STORE_UNAVAILABLE,
    );
    json!({
        "tags": ["sessions"],
        "summary": summary,
        "description": format!("Scopes (any of): {}", scopes.join(", ")),
        "security": [{ "bearer": scopes }],
        "parameters": parameters,
        "responses": responses,
    })
}

/// The OpenAPI 3.0 document.
pub(crate) fn document() -> Value {
    let string = json!({ "type": "string" });
    let key = param(
        "key",
        "path",
        "The raw key, or its SHA-256 hex with ?hashed=true",
        string.clone(),
    );
    let hashed = param(
        "hashed",
        "query",
        "The path holds the key hash",
        json!({ "type": "boolean" }),
    );
    let policy_id = param("id", "path", "Policy id", string.clone());
    let session_id = param("id", "path", "Session id (the key hash)", string.clone());
    let user_id = param(
        "user_id",
        "path",
        "User id (the session alias)",
        string.clone(),
    );
    let from = param(
        "from",
        "query",
        "Cursor: the `next` of the previous page",
        string,
    );
    let not_found_session = auth0_error(StatusCode::NOT_FOUND, "The session does not exist");
    let ok = |description: &str, schema_name: &str| reply(description, schema_name);
    let patch_session = {
        let mut op = auth0_op(
            "Replace a session's metadata",
            &["update:sessions", "update:session"],
            vec![session_id.clone()],
            json!({
                "200": ok("The updated session", "Auth0Session"),
                "400": auth0_error(StatusCode::BAD_REQUEST, "Metadata must not exceed 25 entries. Each key and value must be ≤ 255 characters."),
                "404": not_found_session.clone(),
                "415": auth0_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "Content-Type must be application/json"),
            }),
        );
        op["requestBody"] = json!({ "required": true, "content": content("Auth0SessionPatch") });
        op
    };

    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "keycard management API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Tyk-compatible keys and policies API, Auth0-compatible sessions API. Keys are stored hashed; the raw key is returned once, when it is created.",
        },
        "paths": {
            "/openapi.json": { "get": {
                "summary": "This document",
                "responses": { "200": { "description": "The OpenAPI document", "content": { "application/json": {} } } },
            }},
            "/tyk/keys": {
                "get": tyk_op("List key hashes", vec![from.clone(), param("take", "query", "Page size, 1..=1000 (default 100)", json!({"type": "integer"}))], None, json!({
                    "200": ok("Key hashes", "KeyList"),
                    "400": tyk_error("Bad take", "take must be an integer between 1 and 1000"),
                })),
                "post": tyk_op("Create a key with a generated value", vec![], Some("TykSession"), json!({
                    "200": ok("Created; `key` is the raw key, shown only here", "TykAction"),
                    "400": tyk_error("Malformed body or metadata over limits", "Request malformed"),
                })),
            },
            "/tyk/keys/create": {
                "post": tyk_op("Create a key with a generated value (Tyk's alias of POST /tyk/keys)", vec![], Some("TykSession"), json!({
                    "200": ok("Created; `key` is the raw key, shown only here", "TykAction"),
                    "400": tyk_error("Malformed body or metadata over limits", "Request malformed"),
                })),
            },
            "/tyk/keys/{key}": {
                "post": tyk_op("Create a key with a custom value", vec![key.clone()], Some("TykSession"), json!({
                    "200": ok("Created", "TykAction"),
                    "400": tyk_error("Key too short, malformed body or metadata over limits", "Request malformed"),
                    "409": tyk_error("Key exists", "Key already exists"),
                })),
                "get": tyk_op("Get a key's session, policies applied", vec![key.clone(), hashed.clone()], None, json!({
                    "200": ok("The session", "TykSession"),
                    "404": tyk_error("No such key", "Key not found"),
                })),
                "put": tyk_op("Replace a key's session", vec![key.clone(), hashed.clone()], Some("TykSession"), json!({
                    "200": ok("Replaced", "TykAction"),
                    "400": tyk_error("Malformed body or metadata over limits", "Request malformed"),
                    "404": tyk_error("No such key", "Key is not found"),
                    "409": tyk_error("Version conflict", "Key was changed concurrently: reload it and retry"),
                })),
                "delete": tyk_op("Delete a key (sends back-channel logout)", vec![key, hashed], None, json!({
                    "200": ok("Deleted", "TykAction"),
                    "404": tyk_error("No such key", "There is no such key found"),
                })),
            },
            "/tyk/policies": {
                "get": tyk_op("List policies", vec![], None, json!({
                    "200": { "description": "Every policy", "content": { "application/json": { "schema": { "type": "array", "items": schema("Policy") } } } },
                })),
                "post": tyk_op("Create a policy", vec![], Some("Policy"), json!({
                    "200": ok("Created", "TykAction"),
                    "400": tyk_error("Malformed body or metadata over limits", "Request malformed"),
                    "409": tyk_error("Policy exists", "Policy already exists"),
                })),
            },
            "/tyk/policies/{id}": {
                "get": tyk_op("Get a policy", vec![policy_id.clone()], None, json!({
                    "200": ok("The policy", "Policy"),
                    "404": tyk_error("No such policy", "Policy not found"),
                })),
                "put": tyk_op("Replace a policy", vec![policy_id.clone()], Some("Policy"), json!({
                    "200": ok("Replaced", "TykAction"),
                    "400": tyk_error("Malformed body or metadata over limits", "Request malformed"),
                    "404": tyk_error("No such policy", "Policy not found"),
                })),
                "delete": tyk_op("Delete a policy", vec![policy_id], None, json!({
                    "200": ok("Deleted", "TykAction"),
                    "404": tyk_error("No such policy", "Policy not found"),
                })),
            },
            "/api/v2/sessions/{id}": {
                "get": auth0_op("Get a session", &["read:sessions"], vec![session_id.clone()], json!({
                    "200": ok("The session", "Auth0Session"),
                    "404": not_found_session,
                })),
                "patch": patch_session,
                "delete": auth0_op("Delete a session (sends back-channel logout)", &["delete:sessions"], vec![session_id], json!({
                    "202": { "description": "Deleted" },
                    "404": not_found_session,
                })),
            },
            "/api/v2/users/{user_id}/sessions": {
                "get": auth0_op("List a user's sessions", &["read:sessions"], vec![user_id.clone(), from, param("take", "query", "Page size, 1..=100 (default 50)", json!({"type": "integer"}))], json!({
                    "200": ok("A page of sessions", "Auth0SessionList"),
                    "400": auth0_error(StatusCode::BAD_REQUEST, "Query validation error: 'take' must be an integer between 1 and 100."),
                })),
                "delete": auth0_op("Delete every session of a user (sends back-channel logout)", &["delete:sessions"], vec![user_id], json!({
                    "202": { "description": "Deleted" },
                })),
            },
        },
        "components": {
            "securitySchemes": {
                "tykSecret": { "type": "apiKey", "in": "header", "name": "X-Tyk-Authorization" },
                "bearer": { "type": "http", "scheme": "bearer" },
            },
            "schemas": {
                "TykSession": {
                    "type": "object",
                    "additionalProperties": true,
                    "properties": {
                        "alias": { "type": "string" },
                        "org_id": { "type": "string" },
                        "expires": { "type": "integer", "description": "Unix seconds; 0 = never" },
                        "is_inactive": { "type": "boolean" },
                        "apply_policies": { "type": "array", "items": { "type": "string" } },
                        "tags": { "type": "array", "items": { "type": "string" } },
                        "rate": { "type": "number" },
                        "per": { "type": "number" },
                        "quota_max": { "type": "integer" },
                        "quota_remaining": { "type": "integer" },
                        "quota_renewal_rate": { "type": "integer" },
                        "quota_renews": { "type": "integer" },
                        "meta_data": { "type": "object", "additionalProperties": true },
                        "date_created": { "type": "integer" },
                        "last_updated": { "type": "integer" },
                        "version": { "type": "integer", "description": "Send the version you read to make PUT conditional; 0 = unconditional" },
                        "key_id": { "type": "string", "readOnly": true },
                    },
                },
                "TykAction": {
                    "type": "object",
                    "required": ["key", "status", "action"],
                    "properties": {
                        "key": { "type": "string" },
                        "status": { "type": "string", "enum": ["ok"] },
                        "action": { "type": "string", "enum": ["added", "modified", "deleted"] },
                        "key_hash": { "type": "string" },
                    },
                },
                "KeyList": {
                    "type": "object",
                    "required": ["keys"],
                    "properties": {
                        "keys": { "type": "array", "items": { "type": "string" } },
                        "next": { "type": "string" },
                    },
                },
                "Policy": {
                    "type": "object",
                    "additionalProperties": true,
                    "properties": {
                        "id": { "type": "string" },
                        "name": { "type": "string" },
                        "meta_data": { "type": "object", "additionalProperties": true },
                        "tags": { "type": "array", "items": { "type": "string" } },
                        "is_inactive": { "type": "boolean" },
                        "rate": { "type": "number" },
                        "per": { "type": "number" },
                        "quota_max": { "type": "integer" },
                        "quota_renewal_rate": { "type": "integer" },
                    },
                },
                "TykError": {
                    "type": "object",
                    "required": ["status", "message"],
                    "properties": { "status": { "type": "string", "enum": ["error"] }, "message": { "type": "string" } },
                },
                "Auth0Session": {
                    "type": "object",
                    "required": ["id", "user_id", "created_at", "updated_at", "expires_at", "session_metadata"],
                    "properties": {
                        "id": { "type": "string" },
                        "user_id": { "type": "string" },
                        "created_at": { "type": "string", "format": "date-time" },
                        "updated_at": { "type": "string", "format": "date-time" },
                        "expires_at": { "type": "string", "format": "date-time", "nullable": true },
                        "session_metadata": { "type": "object", "additionalProperties": { "type": "string" } },
                    },
                },
                "Auth0SessionPatch": {
                    "type": "object",
                    "required": ["session_metadata"],
                    "additionalProperties": false,
                    "properties": {
                        "session_metadata": {
                            "type": "object",
                            "nullable": true,
                            "maxProperties": 25,
                            "additionalProperties": { "type": "string", "maxLength": 255 },
                        },
                    },
                },
                "Auth0SessionList": {
                    "type": "object",
                    "required": ["sessions"],
                    "properties": {
                        "sessions": { "type": "array", "items": schema("Auth0Session") },
                        "next": { "type": "string" },
                    },
                },
                "Auth0Error": {
                    "type": "object",
                    "required": ["statusCode", "error", "message"],
                    "properties": {
                        "statusCode": { "type": "integer" },
                        "error": { "type": "string" },
                        "message": { "type": "string" },
                    },
                },
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use axum::body::Body;
    use http::Request;
    use keycard_core::store::MemoryStore;
    use tower::ServiceExt;

    use super::*;

    const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

    fn documented() -> BTreeSet<(String, String)> {
        let doc = document();
        let paths = doc["paths"].as_object().expect("paths");
        paths
            .iter()
            .flat_map(|(path, item)| {
                let item = item.as_object().expect("path item");
                for key in item.keys() {
                    assert!(
                        METHODS.contains(&key.as_str()),
                        "{path}: unknown method {key}"
                    );
                }
                item.keys()
                    .map(|method| (method.to_uppercase(), path.clone()))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

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

    #[test]
    fn registered_routes_and_the_document_list_the_same_operations() {
        let registered: BTreeSet<(String, String)> = routes()
            .table()
            .iter()
            .map(|(method, path)| (method.to_string(), (*path).to_owned()))
            .collect();
        assert_eq!(
            registered.len(),
            routes().table().len(),
            "a route is registered twice"
        );
        let documented = documented();
        let missing: Vec<_> = registered.difference(&documented).collect();
        let extra: Vec<_> = documented.difference(&registered).collect();
        assert!(
            missing.is_empty(),
            "registered but not documented: {missing:?}"
        );
        assert!(extra.is_empty(), "documented but not registered: {extra:?}");
    }

    /// The live router answers every documented operation (with a handler: 401/403/200, never
    /// the router's 404/405) and refuses every other method on a documented path with 405.
    #[tokio::test]
    async fn the_live_router_serves_exactly_the_documented_operations() {
        let router = crate::AdminApi::builder(MemoryStore::new())
            .build()
            .expect("the default configuration builds")
            .into_router();
        let documented = documented();
        let paths: BTreeSet<&String> = documented.iter().map(|(_, path)| path).collect();
        for path in paths {
            for method in METHODS {
                let method = method.to_uppercase();
                let request = Request::builder()
                    .method(method.as_str())
                    .uri(concrete(path))
                    .body(Body::empty())
                    .unwrap();
                let status = router.clone().oneshot(request).await.unwrap().status();
                if documented.contains(&(method.clone(), path.clone())) {
                    assert!(
                        status != StatusCode::NOT_FOUND && status != StatusCode::METHOD_NOT_ALLOWED,
                        "{method} {path}: {status}"
                    );
                } else {
                    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
                }
            }
        }
    }
}
