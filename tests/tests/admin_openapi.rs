//! The management API's OpenAPI document over real HTTP: it validates as OpenAPI 3.1 (against
//! the official JSON Schemas, vendored in `tests/schemas/oas-3.1`, and through the typed `oas3`
//! model), it keeps the rules those schemas cannot check, and it tells the truth: every
//! documented operation is served and every other method refused, every refusal is the one
//! documented, and every answer of a walk through the API has a documented status and a body
//! that validates against the documented schema.

mod admin_support;

use std::collections::BTreeSet;
use std::net::SocketAddr;

use admin_support::{ALL, TYK_SECRET, start, start_down, start_with};
use http::{HeaderMap, Method, StatusCode};
use keycard_admin::AdminToken;
use keycard_core::policy::Policy;
use keycard_tests::http::request;
use serde_json::{Value, json};

const SCHEMAS: [(&str, &str); 4] = [
    (
        "https://spec.openapis.org/oas/3.1/schema/2022-10-07",
        include_str!("../schemas/oas-3.1/schema.json"),
    ),
    (
        "https://spec.openapis.org/oas/3.1/schema-base/2022-10-07",
        include_str!("../schemas/oas-3.1/schema-base.json"),
    ),
    (
        "https://spec.openapis.org/oas/3.1/dialect/base",
        include_str!("../schemas/oas-3.1/dialect-base.schema.json"),
    ),
    (
        "https://spec.openapis.org/oas/3.1/meta/base",
        include_str!("../schemas/oas-3.1/meta-base.schema.json"),
    ),
];

/// The operations' methods, as OpenAPI names them.
const OPERATION_METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

async fn fetch_document(addr: SocketAddr) -> Value {
    let (status, headers, doc) =
        request(Method::GET, &format!("http://{addr}/openapi.json"), &[], "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "application/json");
    doc
}

/// Every error of `instance` against the vendored schema `uri`, one per line.
fn oas_errors(uri: &str, instance: &Value) -> Vec<String> {
    let registry = jsonschema::Registry::new()
        .extend(SCHEMAS.map(|(uri, text)| {
            let schema: Value = serde_json::from_str(text).expect("a vendored schema is JSON");
            (uri, schema)
        }))
        .and_then(jsonschema::RegistryBuilder::prepare)
        .expect("the vendored schemas form a registry");
    let validator = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .with_registry(&registry)
        .offline()
        .build(&json!({ "$ref": uri }))
        .expect("a validator of the OpenAPI 3.1 schema");
    validator
        .iter_errors(instance)
        .map(|error| format!("{}: {error}", error.instance_path()))
        .collect()
}

#[tokio::test]
async fn the_document_validates_as_openapi_3_1() {
    let admin = start().await;
    let doc = fetch_document(admin.addr).await;
    let version = doc["openapi"].as_str().unwrap();
    assert!(version.starts_with("3.1."), "openapi: {version}");
    // The structure of the document, then every Schema Object against the OAS base dialect.
    for uri in [SCHEMAS[0].0, SCHEMAS[1].0] {
        let errors = oas_errors(uri, &doc);
        assert!(errors.is_empty(), "{uri}:\n{}", errors.join("\n"));
    }

    // The typed model of OpenAPI 3.1 reads it whole and resolves every reference.
    let spec = oas3::from_json(doc.to_string()).expect("oas3 parses the document");
    assert_eq!(
        spec.validate_version().unwrap().to_string().get(..4),
        Some("3.1.")
    );
    let mut operations = 0;
    for (path, method, operation) in spec.operations() {
        operations += 1;
        let at = format!("{method} {path}");
        operation.parameters(&spec).expect(&at);
        if let Some(body) = operation.request_body(&spec).expect(&at) {
            for media in body.content.values() {
                media.schema.as_ref().unwrap().resolve(&spec).expect(&at);
            }
        }
        let responses = operation.responses.as_ref().expect(&at);
        assert_eq!(operation.responses(&spec).len(), responses.len(), "{at}");
        for response in operation.responses(&spec).values() {
            for media in response.content.values() {
                if let Some(schema) = &media.schema {
                    schema.resolve(&spec).expect(&at);
                }
            }
        }
    }
    assert_eq!(operations, count_operations(&doc));
}

/// The validator is not vacuous: it refuses what OpenAPI 3.1 refuses.
#[tokio::test]
async fn the_openapi_schema_refuses_broken_documents() {
    let admin = start().await;
    let doc = fetch_document(admin.addr).await;
    type Breakage = (&'static str, fn(&mut Value));
    let breakages: [Breakage; 5] = [
        ("3.0 version", |doc| doc["openapi"] = json!("3.0.3")),
        ("no info", |doc| {
            doc.as_object_mut().unwrap().remove("info");
        }),
        ("a response without description", |doc| {
            doc["paths"]["/tyk/keys"]["get"]["responses"]["200"]
                .as_object_mut()
                .unwrap()
                .remove("description");
        }),
        ("a parameter in the body", |doc| {
            doc["paths"]["/tyk/keys"]["get"]["parameters"][0]["in"] = json!("body");
        }),
        ("an invalid Schema Object", |doc| {
            doc["components"]["schemas"]["KeyList"]["type"] = json!("list");
        }),
    ];
    for (what, breakage) in breakages {
        let mut broken = doc.clone();
        breakage(&mut broken);
        assert!(
            !oas_errors(SCHEMAS[1].0, &broken).is_empty(),
            "{what} was accepted"
        );
    }
}

fn count_operations(doc: &Value) -> usize {
    doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .map(|item| {
            item.as_object()
                .unwrap()
                .keys()
                .filter(|k| OPERATION_METHODS.contains(&k.as_str()))
                .count()
        })
        .sum()
}

/// Every `(method, path, operation)` of the document.
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut all = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            if OPERATION_METHODS.contains(&method.as_str()) {
                all.push((method.clone(), path.clone(), operation.clone()));
            }
        }
    }
    all
}

/// What OpenAPI requires and its JSON Schema cannot express.
#[tokio::test]
async fn the_document_keeps_the_rules_the_json_schema_cannot_check() {
    let admin = start().await;
    let doc = fetch_document(admin.addr).await;
    let schemes = doc["components"]["securitySchemes"].as_object().unwrap();
    let tags: BTreeSet<&str> = doc["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|tag| tag["name"].as_str().unwrap())
        .collect();
    let mut ids = BTreeSet::new();
    for (method, path, operation) in operations(&doc) {
        let at = format!("{method} {path}");
        let id = operation["operationId"].as_str().expect(&at);
        assert!(ids.insert(id.to_owned()), "{at}: operationId {id} twice");
        // Each `{name}` of the path is one required path parameter, and there are no others.
        let templated: BTreeSet<&str> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            .collect();
        let parameters = operation["parameters"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let in_path: BTreeSet<String> = parameters
            .iter()
            .filter(|p| p["in"] == "path")
            .map(|p| {
                assert_eq!(p["required"], true, "{at}: {p}");
                p["name"].as_str().unwrap().to_owned()
            })
            .collect();
        let templated: BTreeSet<String> = templated.into_iter().map(str::to_owned).collect();
        assert_eq!(in_path, templated, "{at}: path parameters");
        let names: BTreeSet<(String, String)> = parameters
            .iter()
            .map(|p| (p["name"].to_string(), p["in"].to_string()))
            .collect();
        assert_eq!(names.len(), parameters.len(), "{at}: a parameter twice");
        // Security names declared schemes; tags are declared.
        for requirement in operation["security"].as_array().into_iter().flatten() {
            for scheme in requirement.as_object().unwrap().keys() {
                assert!(schemes.contains_key(scheme), "{at}: scheme {scheme}");
            }
        }
        for tag in operation["tags"].as_array().unwrap() {
            assert!(tags.contains(tag.as_str().unwrap()), "{at}: tag {tag}");
        }
        assert!(operation["summary"].is_string(), "{at}: no summary");
    }
    // Every reference points at something.
    fn refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(target)) = map.get("$ref") {
                    out.push(target);
                }
                map.values().for_each(|v| refs(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let mut targets = Vec::new();
    refs(&doc, &mut targets);
    assert!(!targets.is_empty());
    for target in targets {
        let pointer = target.strip_prefix('#').expect(target);
        assert!(doc.pointer(pointer).is_some(), "dangling $ref {target}");
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["tykSecret"]["name"],
        "X-Tyk-Authorization"
    );
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
}

/// `/tyk/keys/{key}` → `/tyk/keys/{value}`.
fn concrete(path: &str, value: &str) -> String {
    path.split('/')
        .map(|segment| {
            if segment.starts_with('{') {
                value
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Over HTTP: a documented operation reaches its handler, any other method on a documented path
/// is refused with axum's empty 405 (HEAD goes with GET, as axum serves it).
#[tokio::test]
async fn the_server_serves_exactly_the_documented_operations() {
    let admin = start().await;
    let doc = fetch_document(admin.addr).await;
    for (path, item) in doc["paths"].as_object().unwrap() {
        let url = admin.url(&concrete(path, "x"));
        for method in OPERATION_METHODS {
            let documented =
                item.get(method).is_some() || (method == "head" && item.get("get").is_some());
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let (status, _, body) = request(method.clone(), &url, &[], "").await;
            let refused = status == StatusCode::METHOD_NOT_ALLOWED && body.is_null();
            assert_eq!(!refused, documented, "{method} {path}: {status} {body}");
            assert_ne!(status, StatusCode::NOT_FOUND, "{method} {path}");
        }
    }
}

/// The documented answers of the operation `method path_template`: a checker of the responses.
struct Documented<'d> {
    doc: &'d Value,
    seen: BTreeSet<(String, String, String)>,
}

impl<'d> Documented<'d> {
    fn new(doc: &'d Value) -> Self {
        Self {
            doc,
            seen: BTreeSet::new(),
        }
    }

    /// `status` is documented for the operation, and `body` is what the documentation says:
    /// nothing when no content is documented, else valid against the documented schema.
    fn check(&mut self, method: &Method, template: &str, status: StatusCode, body: &Value) {
        let at = format!("{method} {template} → {status} {body}");
        let operation = &self.doc["paths"][template][method.as_str().to_lowercase()];
        assert!(operation.is_object(), "{at}: not an operation");
        let response = &operation["responses"][status.as_str()];
        assert!(response.is_object(), "{at}: status not documented");
        self.seen.insert((
            method.to_string(),
            template.to_owned(),
            status.as_str().to_owned(),
        ));
        let Some(schema) = response.pointer("/content/application~1json/schema") else {
            assert!(body.is_null(), "{at}: a body where none is documented");
            return;
        };
        let mut schema = schema.clone();
        // Resolve `#/components/...` inside the document.
        schema["components"] = self.doc["components"].clone();
        let validator = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .should_validate_formats(true)
            .offline()
            .build(&schema)
            .unwrap_or_else(|e| panic!("{at}: documented schema: {e}"));
        let errors: Vec<String> = validator
            .iter_errors(body)
            .map(|e| format!("{}: {e}", e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{at}:\n{}", errors.join("\n"));
        // An error body with a documented example answers exactly the example's shape.
        if let Some(example) = response.pointer("/content/application~1json/example") {
            let keys = |v: &Value| -> BTreeSet<String> {
                v.as_object()
                    .map(|o| o.keys().cloned().collect())
                    .unwrap_or_default()
            };
            assert_eq!(keys(example), keys(body), "{at}: example {example}");
        }
    }
}

async fn call(
    addr: SocketAddr,
    method: &Method,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (StatusCode, HeaderMap, Value) {
    request(
        method.clone(),
        &format!("http://{addr}{path}"),
        headers,
        body.to_owned(),
    )
    .await
}

/// Every refusal of every operation — no credentials, the wrong scope, the right scope — is
/// what the document says, derived from the document itself: its security requirements name
/// the scopes to try, and the refusals must equal its examples.
#[tokio::test]
async fn every_operation_refuses_and_accepts_the_credentials_it_documents() {
    let probe = start().await;
    let doc = fetch_document(probe.addr).await;
    let scopes: BTreeSet<String> = operations(&doc)
        .iter()
        .flat_map(|(_, _, op)| op["security"].as_array().cloned().unwrap_or_default())
        .filter_map(|requirement| requirement["bearer"].as_array().cloned())
        .flatten()
        .map(|scope| scope.as_str().unwrap().to_owned())
        .collect();
    assert!(scopes.contains("read:sessions") && scopes.contains("delete:sessions"));
    let admin = start_with(|mut builder| {
        for scope in &scopes {
            builder = builder.admin_token(AdminToken::new(
                scope.clone(),
                format!("a-token-only-for-{scope}"),
                [scope.clone()],
            ));
        }
        builder.admin_token(AdminToken::new(
            "none",
            "a-token-with-no-scope",
            Vec::<String>::new(),
        ))
    })
    .await;
    let mut documented = Documented::new(&doc);
    for (method, path, operation) in operations(&doc) {
        let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let uri = concrete(&path, "x");
        let json_type = ("content-type", "application/json");
        let Some(security) = operation["security"].as_array() else {
            let (status, _, body) = call(admin.addr, &method, &uri, &[], "").await;
            assert!(status.is_success(), "{method} {path}: public, {status}");
            documented.check(&method, &path, status, &body);
            continue;
        };
        let expect_example = |status: StatusCode, body: &Value| {
            let example = operation["responses"][status.as_str()]
                .pointer("/content/application~1json/example")
                .unwrap_or_else(|| panic!("{method} {path}: no {status} example"));
            assert_eq!(body, example, "{method} {path}");
        };
        // No credentials.
        let (status, headers, body) = call(admin.addr, &method, &uri, &[json_type], "").await;
        documented.check(&method, &path, status, &body);
        let tyk = security.iter().any(|r| r.get("tykSecret").is_some());
        if tyk {
            assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}");
            expect_example(status, &body);
            let secret = ("x-tyk-authorization", TYK_SECRET);
            let (status, _, body) = call(admin.addr, &method, &uri, &[secret], "{}").await;
            assert_ne!(status, StatusCode::FORBIDDEN, "{method} {path}: {body}");
            documented.check(&method, &path, status, &body);
            continue;
        }
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}");
        expect_example(status, &body);
        let challenge = operation["responses"]["401"]["headers"]
            .as_object()
            .unwrap()
            .keys()
            .next()
            .unwrap()
            .clone();
        assert!(headers.contains_key(challenge.as_str()), "{method} {path}");
        // A token without scopes: the documented 403, naming exactly the documented scopes.
        let bearer = "Bearer a-token-with-no-scope";
        let auth = ("authorization", bearer);
        let (status, _, body) = call(admin.addr, &method, &uri, &[auth, json_type], "{}").await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}");
        expect_example(status, &body);
        documented.check(&method, &path, status, &body);
        let alternatives: Vec<String> = security
            .iter()
            .map(|r| {
                let scopes = r["bearer"].as_array().unwrap();
                assert_eq!(
                    scopes.len(),
                    1,
                    "{method} {path}: one scope per alternative"
                );
                scopes[0].as_str().unwrap().to_owned()
            })
            .collect();
        assert_eq!(
            body["message"],
            format!(
                "Insufficient scope, expected any of: {}",
                alternatives.join(",")
            ),
            "{method} {path}"
        );
        // Each documented scope on its own is let through.
        for scope in alternatives {
            let bearer = format!("Bearer a-token-only-for-{scope}");
            let auth = ("authorization", bearer.as_str());
            let body = r#"{"session_metadata": {}}"#;
            let (status, _, answer) =
                call(admin.addr, &method, &uri, &[auth, json_type], body).await;
            assert!(
                status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN,
                "{method} {path} with {scope}: {status} {answer}"
            );
            documented.check(&method, &path, status, &answer);
        }
    }
}

/// The documented path `path` (query stripped) is an instance of: a static segment beats a
/// parameter, as in axum's router.
fn template_of(doc: &Value, path: &str) -> String {
    let path = path.split('?').next().unwrap();
    let segments: Vec<&str> = path.split('/').collect();
    doc["paths"]
        .as_object()
        .unwrap()
        .keys()
        .filter(|template| {
            let parts: Vec<&str> = template.split('/').collect();
            parts.len() == segments.len()
                && parts
                    .iter()
                    .zip(&segments)
                    .all(|(t, s)| t.starts_with('{') || t == s)
        })
        .max_by_key(|template| template.split('/').filter(|t| !t.starts_with('{')).count())
        .unwrap_or_else(|| panic!("{path} is no documented path"))
        .clone()
}

/// A walk through the API — successes and failures of every operation — where each answer has
/// a documented status and a body valid against the documented schema; the store-down answers
/// too. Then every documented status of an operation has been seen, except the ones no test
/// can provoke here (listed).
#[tokio::test]
async fn every_answer_is_documented() {
    // Strict mode, so the walk can provoke the 409s it documents (Tyk's default overwrites).
    let admin = start_with(keycard_admin::AdminApiBuilder::strict).await;
    let doc = fetch_document(admin.addr).await;
    let mut documented = Documented::new(&doc);
    let tyk_auth = [("x-tyk-authorization", TYK_SECRET)];
    let bearer = format!("Bearer {ALL}");
    let auth0_auth = [
        ("authorization", bearer.as_str()),
        ("content-type", "application/json"),
    ];
    let auth = |path: &str| -> &[(&str, &str)] {
        if path.starts_with("/tyk") {
            &tyk_auth
        } else {
            &auth0_auth
        }
    };
    admin.policies.insert(Policy::new("gold"));
    let alice = admin.seed("alice", json!({"plan": "free"})).await;
    let second = admin.seed("alice", json!({})).await;
    // `BIG` is a body over the 2 MB limit; `{alice}` and `{second}` are alice's session ids.
    let big = format!(r#"{{"alias": "{}"}}"#, "x".repeat(3 << 20));
    const CUSTOM: &str = "/tyk/keys/a-custom-key-of-enough-length";
    let steps: &[(Method, &str, &str)] = &[
        (Method::GET, "/openapi.json", ""),
        (
            Method::POST,
            "/tyk/keys",
            r#"{"alias": "alice", "expires": 4000000000}"#,
        ),
        (Method::POST, "/tyk/keys", "not json"),
        (Method::POST, "/tyk/keys", "BIG"),
        (Method::POST, "/tyk/keys/create", r#"{"alias": "alice"}"#),
        (
            Method::POST,
            "/tyk/keys/create",
            r#"{"apply_policies": ["x"]}"#,
        ),
        (Method::POST, "/tyk/keys/create", "BIG"),
        (
            Method::POST,
            CUSTOM,
            r#"{"alias": "bob", "apply_policies": ["gold"]}"#,
        ),
        (Method::POST, CUSTOM, "{}"),
        (Method::POST, "/tyk/keys/short", "{}"),
        (Method::POST, "/tyk/keys/another-custom-key-value", "BIG"),
        (Method::GET, CUSTOM, ""),
        (
            Method::POST,
            "/tyk/keys/reset/a-custom-key-of-enough-length",
            "",
        ),
        (Method::POST, "/tyk/keys/reset/missing", ""),
        (Method::POST, "/tyk/keys/reset/%FF", ""),
        (Method::POST, "/tyk/keys/preview", r#"{"alias": "p"}"#),
        (Method::POST, "/tyk/keys/preview", "not json"),
        (Method::POST, "/tyk/keys/preview", "BIG"),
        (
            Method::POST,
            "/tyk/keys/policy/{alice}",
            r#"{"apply_policies": ["gold"]}"#,
        ),
        (Method::POST, "/tyk/keys/policy/{alice}", "{"),
        (Method::POST, "/tyk/keys/policy/missing", "{}"),
        (Method::POST, "/tyk/keys/policy/{alice}", "BIG"),
        (Method::GET, "/tyk/keys/missing", ""),
        (Method::GET, "/tyk/keys/%FF", ""),
        (Method::GET, "/tyk/keys?take=1", ""),
        (Method::GET, "/tyk/keys?take=0", ""),
        (Method::PUT, CUSTOM, r#"{"alias": "bob", "version": 1}"#),
        (Method::PUT, CUSTOM, r#"{"alias": "bob", "version": 1}"#),
        (Method::PUT, "/tyk/keys/missing", "{}"),
        (Method::PUT, "/tyk/keys/missing", "["),
        (Method::PUT, "/tyk/keys/missing", "BIG"),
        (Method::DELETE, CUSTOM, ""),
        (Method::DELETE, CUSTOM, ""),
        (Method::DELETE, "/tyk/keys/%FF", ""),
        (
            Method::POST,
            "/tyk/policies",
            r#"{"id": "silver", "meta_data": {"tier": 2}}"#,
        ),
        (Method::POST, "/tyk/policies", r#"{"id": "silver"}"#),
        (Method::POST, "/tyk/policies", "1"),
        (Method::POST, "/tyk/policies", "BIG"),
        (Method::GET, "/tyk/policies", ""),
        (Method::GET, "/tyk/policies/silver", ""),
        (Method::GET, "/tyk/policies/missing", ""),
        (Method::GET, "/tyk/policies/%FF", ""),
        (Method::PUT, "/tyk/policies/silver", r#"{"name": "Silver"}"#),
        (Method::PUT, "/tyk/policies/missing", "{}"),
        (Method::PUT, "/tyk/policies/silver", "{"),
        (Method::PUT, "/tyk/policies/silver", "BIG"),
        (Method::DELETE, "/tyk/policies/silver", ""),
        (Method::DELETE, "/tyk/policies/silver", ""),
        (Method::DELETE, "/tyk/policies/%FF", ""),
        (Method::GET, "/api/v2/users/alice/sessions?take=1", ""),
        (Method::GET, "/api/v2/users/alice/sessions?take=101", ""),
        (Method::GET, "/api/v2/users/%FF/sessions", ""),
        (Method::GET, "/api/v2/sessions/{alice}", ""),
        (Method::GET, "/api/v2/sessions/missing", ""),
        (Method::GET, "/api/v2/sessions/%FF", ""),
        (
            Method::PATCH,
            "/api/v2/sessions/{alice}",
            r#"{"session_metadata": {"a": "b"}}"#,
        ),
        (
            Method::PATCH,
            "/api/v2/sessions/{alice}",
            r#"{"session_metadata": {}, "x": 1}"#,
        ),
        (Method::PATCH, "/api/v2/sessions/{alice}", "{"),
        (Method::PATCH, "/api/v2/sessions/{alice}", "BIG"),
        (
            Method::PATCH,
            "/api/v2/sessions/missing",
            r#"{"session_metadata": null}"#,
        ),
        (Method::DELETE, "/api/v2/sessions/{second}", ""),
        (Method::DELETE, "/api/v2/sessions/{second}", ""),
        (Method::DELETE, "/api/v2/sessions/%FF", ""),
        (Method::POST, "/api/v2/sessions/{alice}/revoke", ""),
        (Method::POST, "/api/v2/sessions/{alice}/revoke", ""),
        (Method::POST, "/api/v2/sessions/%FF/revoke", ""),
        (Method::DELETE, "/api/v2/users/alice/sessions", ""),
        (Method::DELETE, "/api/v2/users/%FF/sessions", ""),
        // OAuth clients (strict: re-creating a client is the documented 409).
        (
            Method::POST,
            "/tyk/oauth/clients/create",
            r#"{"client_id": "walk", "redirect_uri": "https://app.example/cb", "policy_id": "gold", "meta_data": {"plan": "gold"}}"#,
        ),
        (
            Method::POST,
            "/tyk/oauth/clients/create",
            r#"{"client_id": "walk"}"#,
        ),
        (Method::POST, "/tyk/oauth/clients/create", "not json"),
        (Method::POST, "/tyk/oauth/clients/create", "BIG"),
        (Method::GET, "/tyk/oauth/clients/any-api", ""),
        (Method::GET, "/tyk/oauth/clients/%FF", ""),
        (Method::GET, "/tyk/oauth/clients/any-api/walk", ""),
        (Method::GET, "/tyk/oauth/clients/any-api/missing", ""),
        (Method::GET, "/tyk/oauth/clients/any-api/%FF", ""),
        (
            Method::PUT,
            "/tyk/oauth/clients/any-api/walk",
            r#"{"policy_id": "gold", "meta_data": {"plan": "silver"}}"#,
        ),
        (Method::PUT, "/tyk/oauth/clients/any-api/missing", "{}"),
        (Method::PUT, "/tyk/oauth/clients/any-api/walk", "{"),
        (Method::PUT, "/tyk/oauth/clients/any-api/walk", "BIG"),
        (Method::PUT, "/tyk/oauth/clients/any-api/walk/rotate", ""),
        (Method::PUT, "/tyk/oauth/clients/any-api/missing/rotate", ""),
        (Method::PUT, "/tyk/oauth/clients/any-api/%FF/rotate", ""),
        (Method::GET, "/tyk/oauth/clients/any-api/walk/tokens", ""),
        (Method::GET, "/tyk/oauth/clients/any-api/missing/tokens", ""),
        (Method::GET, "/tyk/oauth/clients/any-api/%FF/tokens", ""),
        (
            Method::POST,
            "/tyk/oauth/authorize-client",
            "response_type=code&client_id=walk",
        ),
        (Method::POST, "/tyk/oauth/authorize-client", ""),
        (Method::POST, "/tyk/oauth/authorize-client", "BIG"),
        (Method::DELETE, "/tyk/oauth/clients/any-api/walk", ""),
        (Method::DELETE, "/tyk/oauth/clients/any-api/walk", ""),
        (Method::DELETE, "/tyk/oauth/clients/any-api/%FF", ""),
    ];
    for (method, path, body) in steps {
        let path = path
            .replace("{alice}", alice.as_str())
            .replace("{second}", second.as_str());
        let body = if *body == "BIG" { big.as_str() } else { body };
        let (status, _, answer) = call(admin.addr, method, &path, auth(&path), body).await;
        documented.check(method, &template_of(&doc, &path), status, &answer);
    }
    // PATCH without a JSON content type.
    let path = format!("/api/v2/sessions/{}", alice.as_str());
    let headers = [("authorization", bearer.as_str())];
    let (status, _, answer) = call(admin.addr, &Method::PATCH, &path, &headers, "{}").await;
    documented.check(&Method::PATCH, "/api/v2/sessions/{id}", status, &answer);

    // An API built without the rate-limit stage's quotas cannot reset one.
    let uncounted = keycard_tests::http::spawn(
        keycard_admin::AdminApi::builder(keycard_core::store::MemoryStore::new())
            .tyk_secret(TYK_SECRET)
            .build()
            .unwrap()
            .into_router(),
    )
    .await;
    let path = "/tyk/keys/reset/a-custom-key-of-enough-length";
    let (status, _, answer) = call(uncounted, &Method::POST, path, &tyk_auth, "").await;
    assert_eq!(status, StatusCode::NOT_IMPLEMENTED);
    documented.check(&Method::POST, "/tyk/keys/reset/{key}", status, &answer);

    // With the store down, every operation documenting a 503 answers it.
    let down = start_down().await;
    for (method, path, operation) in operations(&doc) {
        // An OAuth client's delete needs a client with tokens to reach the store: below.
        if operation["responses"].get("503").is_none() || path.starts_with("/tyk/oauth/") {
            continue;
        }
        let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let uri = concrete(&path, "0".repeat(64).as_str());
        let body = if path.starts_with("/tyk") {
            "{}"
        } else {
            r#"{"session_metadata": {}}"#
        };
        let (status, _, answer) = call(down, &method, &uri, auth(&path), body).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{method} {path}");
        documented.check(&method, &path, status, &answer);
    }

    // Deleting an OAuth client touches the store only for the tokens it was issued: issue one
    // through an API over a live store, then delete the client through an API over the down
    // store that shares the same clients.
    let clients = keycard_admin::OAuthClients::new();
    let policies = keycard_core::policy::MemoryPolicies::new();
    policies.insert(Policy::new("gold"));
    let live = keycard_admin::AdminApi::builder(keycard_core::store::MemoryStore::new())
        .policies(policies)
        .tyk_secret(TYK_SECRET)
        .oauth(clients.clone())
        .build()
        .unwrap();
    let live_oauth = keycard_tests::http::spawn(live.oauth_router()).await;
    let live_admin = keycard_tests::http::spawn(live.into_router()).await;
    let client =
        r#"{"client_id": "down", "secret": "a-secret-of-16-bytes-at-least", "policy_id": "gold"}"#;
    let (status, _, _) = call(
        live_admin,
        &Method::POST,
        "/tyk/oauth/clients/create",
        &tyk_auth,
        client,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let form = [("content-type", "application/x-www-form-urlencoded")];
    let token =
        "grant_type=client_credentials&client_id=down&client_secret=a-secret-of-16-bytes-at-least";
    let (status, _, _) = call(live_oauth, &Method::POST, "/oauth/token", &form, token).await;
    assert_eq!(status, StatusCode::OK);
    let down_sharing = keycard_tests::http::spawn(
        keycard_admin::AdminApi::builder(keycard_tests::stores::UnavailableStore)
            .tyk_secret(TYK_SECRET)
            .oauth(clients)
            .build()
            .unwrap()
            .into_router(),
    )
    .await;
    let path = "/tyk/oauth/clients/any-api/down";
    let (status, _, answer) = call(down_sharing, &Method::DELETE, path, &tyk_auth, "").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{answer}");
    documented.check(
        &Method::DELETE,
        "/tyk/oauth/clients/{api_id}/{client_id}",
        status,
        &answer,
    );

    // Every documented status was seen, except what this walk cannot provoke: a store holding
    // something unreadable (500), a generated key that exists or a key changing under a policy
    // update past its retries (409), the refusals the
    // credentials test covers (401, 403), and the failure throttle's 429 (admin_auth.rs).
    let mut unseen = Vec::new();
    for (method, path, operation) in operations(&doc) {
        for status in operation["responses"].as_object().unwrap().keys() {
            // ... and a key that keeps changing under a policy update past its retries (409).
            let generated_key_exists = status == "409"
                && method == "post"
                && ["/tyk/keys", "/tyk/keys/create", "/tyk/keys/policy/{key}"]
                    .contains(&path.as_str());
            let elsewhere = ["401", "403", "429", "500"].contains(&status.as_str());
            let key = (method.to_uppercase(), path.clone(), status.clone());
            if !documented.seen.contains(&key) && !elsewhere && !generated_key_exists {
                unseen.push(format!("{} {} {}", key.0, key.1, key.2));
            }
        }
    }
    assert!(
        unseen.is_empty(),
        "documented, never answered:\n{}",
        unseen.join("\n")
    );
}

/// Every operation that reads a body documents its 413; the Auth0 session schema names Auth0's
/// members (the Node SDK's `SessionResponseContent`) and says what `session_metadata` really
/// holds: strings (non-strings written through the Tyk API are shown JSON-encoded).
#[tokio::test]
async fn bodies_document_413_and_the_session_schema_says_what_is_returned() {
    let admin = start().await;
    let doc = fetch_document(admin.addr).await;
    let mut with_body = 0;
    for (method, path, operation) in operations(&doc) {
        if operation.get("requestBody").is_some() {
            with_body += 1;
            let too_large = &operation["responses"]["413"];
            assert!(too_large.is_object(), "{method} {path}: no 413");
            assert!(
                too_large["content"]["application/json"]["schema"].is_object(),
                "{method} {path}: the 413 has no body schema"
            );
        }
    }
    assert!(with_body >= 7, "{with_body} operations with a body");

    let session = &doc["components"]["schemas"]["Auth0Session"];
    let members: BTreeSet<&str> = session["properties"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for member in [
        "id",
        "user_id",
        "created_at",
        "updated_at",
        "authenticated_at",
        "idle_expires_at",
        "expires_at",
        "last_interacted_at",
        "device",
        "clients",
        "authentication",
        "session_metadata",
    ] {
        assert!(members.contains(member), "Auth0Session lacks {member}");
    }
    let metadata = &session["properties"]["session_metadata"];
    assert_eq!(metadata["type"], "object");
    assert_eq!(metadata["additionalProperties"]["type"], "string");
    assert!(
        metadata["description"]
            .as_str()
            .unwrap()
            .contains("JSON-encoded")
    );
    // The request side keeps Auth0's limits.
    let patch = &doc["components"]["schemas"]["SessionPatch"]["properties"]["session_metadata"];
    assert_eq!(patch["maxProperties"], 25);
    assert_eq!(patch["additionalProperties"]["maxLength"], 255);
}
