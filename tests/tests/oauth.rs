//! OAuth2 over real HTTP: the example's app (keycard's layers + the token endpoints) and its
//! management API on two listeners. Clients are created through Tyk's client API, tokens are
//! obtained from `/oauth/token`, and the app sees the client's `meta_data` in the session
//! (Tyk's `SaveAccess`: copied only where the session lacks the key).

use std::net::SocketAddr;
use std::sync::Arc;

use base64::Engine as _;
use http::{HeaderMap, Method, StatusCode};
use keycard::prelude::{ApiKey, KeyId, MemoryStore, SessionStore};
use keycard_examples::oauth;
use keycard_tests::http::{request, spawn};
use serde_json::{Value, json};

const TYK_SECRET: &str = "tyk-secret-for-oauth-tests";
const REDIRECT: &str = "https://app.example/cb";
/// RFC 7636 appendix B.
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

struct Demo {
    app: SocketAddr,
    admin: SocketAddr,
    store: Arc<dyn SessionStore>,
}

async fn start() -> Demo {
    start_on(Arc::new(MemoryStore::new())).await
}

async fn start_on(store: Arc<dyn SessionStore>) -> Demo {
    let demo = oauth::build(store.clone(), TYK_SECRET).unwrap();
    Demo {
        app: spawn(demo.app).await,
        admin: spawn(demo.admin).await,
        store,
    }
}

fn basic(id: &str, secret: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
    )
}

impl Demo {
    async fn admin(&self, method: Method, path: &str, body: &str) -> (StatusCode, Value) {
        let (status, _, body) = request(
            method,
            &format!("http://{}{path}", self.admin),
            &[("x-tyk-authorization", TYK_SECRET)],
            body.to_owned(),
        )
        .await;
        (status, body)
    }

    /// Creates a client and answers its secret.
    async fn client(&self, body: Value) -> String {
        let (status, answer) = self
            .admin(Method::POST, "/tyk/oauth/clients/create", &body.to_string())
            .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        answer["secret"].as_str().unwrap().to_owned()
    }

    async fn form(
        &self,
        path: &str,
        auth: Option<&str>,
        params: &[(&str, &str)],
    ) -> (StatusCode, HeaderMap, Value) {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params)
            .finish();
        let mut headers = vec![("content-type", "application/x-www-form-urlencoded")];
        if let Some(auth) = auth {
            headers.push(("authorization", auth));
        }
        request(
            Method::POST,
            &format!("http://{}{path}", self.app),
            &headers,
            body,
        )
        .await
    }

    async fn token(&self, auth: &str, params: &[(&str, &str)]) -> (StatusCode, Value) {
        let (status, _, body) = self.form("/oauth/token", Some(auth), params).await;
        (status, body)
    }

    /// Asks for a code as the resource owner's app does.
    async fn code(&self, params: &[(&str, &str)]) -> String {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params)
            .finish();
        let (status, _, answer) = request(
            Method::POST,
            &format!("http://{}/tyk/oauth/authorize-client", self.admin),
            &[
                ("x-tyk-authorization", TYK_SECRET),
                ("content-type", "application/x-www-form-urlencoded"),
            ],
            body,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        answer["code"].as_str().unwrap().to_owned()
    }

    async fn app_get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        let bearer = format!("Bearer {token}");
        let (status, _, body) = request(
            Method::GET,
            &format!("http://{}{path}", self.app),
            &[("authorization", bearer.as_str())],
            "",
        )
        .await;
        (status, body)
    }
}

fn gold_client() -> Value {
    json!({
        "client_id": "gold-client",
        "redirect_uri": REDIRECT,
        "policy_id": oauth::DEMO_POLICY,
        "meta_data": {"plan": "gold", "user_id": "u-client"},
        "description": "a client on the gold plan"
    })
}

/// Form parameters of a request.
type Params<'a> = &'a [(&'a str, &'a str)];

const DISALLOWED: &str = "Access to this API has been disallowed";

#[tokio::test]
async fn client_credentials_token_carries_the_client_metadata_into_the_app() {
    let demo = start().await;
    let secret = demo.client(gold_client()).await;
    assert_eq!(secret.len(), 64, "a generated secret is 256 bits of hex");
    let (status, headers, answer) = demo
        .form(
            "/oauth/token",
            Some(&basic("gold-client", &secret)),
            &[("grant_type", "client_credentials")],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["token_type"], "bearer");
    assert_eq!(answer["expires_in"], 3600);
    // RFC 6749 §4.4.3: no refresh token for client credentials.
    assert!(answer.get("refresh_token").is_none(), "{answer}");
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(headers["pragma"], "no-cache");
    let token = answer["access_token"].as_str().unwrap();
    assert_eq!(token.len(), 64);

    // `$tyk_meta.plan` is injected as x-plan; the session's metadata is the client's.
    let (status, echoed) = demo.app_get("/echo", token).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(echoed["x-plan"], "gold");
    assert_eq!(echoed["x-user-id"], "u-client");
    let (_, whoami) = demo.app_get("/whoami", token).await;
    assert_eq!(whoami, json!({"plan": "gold", "user_id": "u-client"}));

    // Stored like any key: under the hash of the token, with Tyk's oauth_client_id, the
    // client's policy and an expiry an hour out.
    let stored = demo
        .store
        .load(&KeyId::of(&ApiKey::new(token)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.extra["oauth_client_id"], "gold-client");
    assert_eq!(stored.apply_policies, [oauth::DEMO_POLICY]);
    let now = keycard::session::unix_now();
    assert!((now + 3590..=now + 3610).contains(&stored.expires));

    // Form parameters authenticate as well as Basic does.
    let (status, _, answer) = demo
        .form(
            "/oauth/token",
            None,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", "gold-client"),
                ("client_secret", &secret),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
}

#[tokio::test]
async fn existing_session_keys_are_not_overwritten_by_client_metadata() {
    let demo = start().await;
    let secret = demo.client(gold_client()).await;
    let code = demo
        .code(&[
            ("response_type", "code"),
            ("client_id", "gold-client"),
            ("redirect_uri", REDIRECT),
            (
                "key_rules",
                r#"{"meta_data": {"user_id": "u-alice", "tenant_id": "acme"}}"#,
            ),
        ])
        .await;
    let (status, answer) = demo
        .token(
            &basic("gold-client", &secret),
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", REDIRECT),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let (_, whoami) = demo
        .app_get("/whoami", answer["access_token"].as_str().unwrap())
        .await;
    // user_id is the session's (key_rules), plan the client's.
    assert_eq!(
        whoami,
        json!({"user_id": "u-alice", "tenant_id": "acme", "plan": "gold"})
    );
}

#[tokio::test]
async fn authorize_client_answers_the_code_and_where_to_redirect() {
    let demo = start().await;
    demo.client(gold_client()).await;
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("response_type", "code"),
            ("client_id", "gold-client"),
            ("state", "xyz 1"),
        ])
        .finish();
    let (status, _, answer) = request(
        Method::POST,
        &format!("http://{}/tyk/oauth/authorize-client", demo.admin),
        &[("x-tyk-authorization", TYK_SECRET)],
        body,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let code = answer["code"].as_str().unwrap();
    assert_eq!(answer["state"], "xyz 1");
    assert_eq!(
        answer["redirect_to"],
        format!("{REDIRECT}?code={code}&state=xyz+1")
    );
    // Without the Tyk secret: Tyk's refusal.
    let (status, _, answer) = request(
        Method::POST,
        &format!("http://{}/tyk/oauth/authorize-client", demo.admin),
        &[],
        "response_type=code",
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        answer,
        json!({"status": "error", "message": "Attempted administrative access with invalid or missing key!"})
    );
}

#[tokio::test]
async fn authorize_client_refuses_bad_requests_with_rfc_6749_errors() {
    let demo = start().await;
    demo.client(gold_client()).await;
    demo.client(json!({"client_id": "no-policy", "redirect_uri": REDIRECT}))
        .await;
    let cases: [(Params<'_>, &str, &str); 9] = [
        (
            &[("client_id", "gold-client")],
            "invalid_request",
            "response_type is required",
        ),
        (
            &[("response_type", "token"), ("client_id", "gold-client")],
            "unsupported_response_type",
            "response_type must be code",
        ),
        (
            &[("response_type", "code")],
            "invalid_request",
            "client_id is required",
        ),
        (
            &[("response_type", "code"), ("client_id", "nobody")],
            "invalid_request",
            "client_id is not a registered client",
        ),
        (
            &[
                ("response_type", "code"),
                ("client_id", "gold-client"),
                ("redirect_uri", "https://evil.example/cb"),
            ],
            "invalid_request",
            "redirect_uri is not the one registered for this client",
        ),
        (
            &[
                ("response_type", "code"),
                ("client_id", "gold-client"),
                ("key_rules", "[1]"),
            ],
            "invalid_request",
            "key_rules must be a session object (Tyk's session JSON)",
        ),
        (
            &[("response_type", "code"), ("client_id", "no-policy")],
            "unauthorized_client",
            "Couldn't use policy or key rules to create token, failing",
        ),
        (
            &[
                ("response_type", "code"),
                ("client_id", "gold-client"),
                ("code_challenge", "short"),
            ],
            "invalid_request",
            "code_challenge must be 43 to 128 characters of A-Z a-z 0-9 - . _ ~",
        ),
        (
            &[
                ("response_type", "code"),
                ("client_id", "gold-client"),
                ("code_challenge", CHALLENGE),
                ("code_challenge_method", "S512"),
            ],
            "invalid_request",
            "code_challenge_method must be S256 or plain",
        ),
    ];
    for (params, error, description) in cases {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params)
            .finish();
        let (status, _, answer) = request(
            Method::POST,
            &format!("http://{}/tyk/oauth/authorize-client", demo.admin),
            &[("x-tyk-authorization", TYK_SECRET)],
            body,
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{params:?}");
        assert_eq!(
            answer,
            json!({"error": error, "error_description": description}),
            "{params:?}"
        );
    }
}

#[tokio::test]
async fn refresh_rotates_both_tokens_and_ends_the_old_ones() {
    let demo = start().await;
    let secret = demo.client(gold_client()).await;
    let auth = basic("gold-client", &secret);
    let code = demo
        .code(&[("response_type", "code"), ("client_id", "gold-client")])
        .await;
    let (status, first) = demo
        .token(
            &auth,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", REDIRECT),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let (old_access, old_refresh) = (
        first["access_token"].as_str().unwrap(),
        first["refresh_token"].as_str().unwrap(),
    );
    let (status, second) = demo
        .token(
            &auth,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", old_refresh),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{second}");
    let new_access = second["access_token"].as_str().unwrap();
    assert_ne!(new_access, old_access);
    assert_ne!(second["refresh_token"], first["refresh_token"]);

    // The new token works and carries the client's metadata; the old one is gone.
    let (status, echoed) = demo.app_get("/echo", new_access).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(echoed["x-plan"], "gold");
    let (status, body) = demo.app_get("/echo", old_access).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body, json!({"error": DISALLOWED}));

    // A refresh token is single use.
    let (status, body) = demo
        .token(
            &auth,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", old_refresh),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body,
        json!({"error": "invalid_grant", "error_description": "The refresh token is invalid, expired or used"})
    );
    // ... and only its own client's.
    let other = demo
        .client(json!({"client_id": "other", "policy_id": oauth::DEMO_POLICY}))
        .await;
    let (status, body) = demo
        .token(
            &basic("other", &other),
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", second["refresh_token"].as_str().unwrap()),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_grant");
}

#[tokio::test]
async fn pkce_verifier_must_match_the_challenge() {
    let demo = start().await;
    let secret = demo.client(gold_client()).await;
    let auth = basic("gold-client", &secret);
    let pkce_code = |method: &'static str| {
        let demo = &demo;
        async move {
            demo.code(&[
                ("response_type", "code"),
                ("client_id", "gold-client"),
                (
                    "code_challenge",
                    if method == "S256" {
                        CHALLENGE
                    } else {
                        VERIFIER
                    },
                ),
                ("code_challenge_method", method),
            ])
            .await
        }
    };
    let exchange = |code: String, verifier: Option<&'static str>| {
        let demo = &demo;
        let auth = auth.clone();
        async move {
            let mut params = vec![
                ("grant_type", "authorization_code"),
                ("code", code.as_str()),
                ("redirect_uri", REDIRECT),
            ];
            if let Some(verifier) = verifier {
                params.push(("code_verifier", verifier));
            }
            demo.token(&auth, &params).await
        }
    };
    let refused =
        |description: &str| json!({"error": "invalid_grant", "error_description": description});

    let wrong = "wrong-verifier-of-enough-length-0123456789abcdef";
    let (status, body) = exchange(pkce_code("S256").await, Some(wrong)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body,
        refused("code_verifier does not match the code_challenge")
    );

    let (status, body) = exchange(pkce_code("S256").await, None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body,
        refused("code_verifier is required: the authorization request had a code_challenge")
    );

    // A code is single use: refused once, it cannot be retried with the right verifier.
    let code = pkce_code("S256").await;
    let (status, _) = exchange(code.clone(), Some(wrong)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, body) = exchange(code, Some(VERIFIER)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body,
        refused("The authorization code is invalid, expired or used")
    );

    let (status, body) = exchange(pkce_code("S256").await, Some(VERIFIER)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = exchange(pkce_code("plain").await, Some(VERIFIER)).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // A verifier for a code that had no challenge is a downgrade attempt (RFC 9700 §2.1.1).
    let plain_code = demo
        .code(&[("response_type", "code"), ("client_id", "gold-client")])
        .await;
    let (status, body) = exchange(plain_code, Some(VERIFIER)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body,
        refused("code_verifier was sent, but the authorization request had no code_challenge")
    );
}

#[tokio::test]
async fn token_endpoint_refusals_are_rfc_6749_errors() {
    let demo = start().await;
    let secret = demo.client(gold_client()).await;
    let nopolicy = demo.client(json!({"client_id": "no-policy"})).await;
    let auth = basic("gold-client", &secret);
    let invalid_client =
        json!({"error": "invalid_client", "error_description": "Client authentication failed"});
    for bad in [
        None,
        Some(basic("gold-client", "wrong-secret")),
        Some(basic("nobody", &secret)),
        Some("Basic !!!".to_owned()),
        Some("Bearer something".to_owned()),
    ] {
        let (status, headers, body) = demo
            .form(
                "/oauth/token",
                bad.as_deref(),
                &[("grant_type", "client_credentials")],
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{bad:?}");
        assert_eq!(headers["www-authenticate"], "Basic realm=\"oauth\"");
        assert_eq!(body, invalid_client, "{bad:?}");
    }
    let cases: [(&str, Params<'_>, &str, &str); 6] = [
        (&auth, &[], "invalid_request", "grant_type is required"),
        (
            &auth,
            &[("grant_type", "password")],
            "unsupported_grant_type",
            "grant_type must be client_credentials, authorization_code or refresh_token",
        ),
        (
            &auth,
            &[("grant_type", "authorization_code")],
            "invalid_request",
            "code is required",
        ),
        (
            &auth,
            &[("grant_type", "authorization_code"), ("code", "not-a-code")],
            "invalid_grant",
            "The authorization code is invalid, expired or used",
        ),
        (
            &auth,
            &[("grant_type", "refresh_token")],
            "invalid_request",
            "refresh_token is required",
        ),
        (
            "",
            &[("grant_type", "client_credentials")],
            "unauthorized_client",
            "Couldn't use policy or key rules to create token, failing",
        ),
    ];
    let nopolicy_auth = basic("no-policy", &nopolicy);
    for (auth, params, error, description) in cases {
        let auth = if auth.is_empty() {
            nopolicy_auth.as_str()
        } else {
            auth
        };
        let (status, body) = demo.token(auth, params).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{params:?}");
        assert_eq!(
            body,
            json!({"error": error, "error_description": description})
        );
    }
    // A code goes only to its client, and only with its redirect URI.
    let other = demo
        .client(json!({"client_id": "other", "policy_id": oauth::DEMO_POLICY}))
        .await;
    let code = demo
        .code(&[("response_type", "code"), ("client_id", "gold-client")])
        .await;
    let (status, body) = demo
        .token(
            &basic("other", &other),
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", REDIRECT),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body["error_description"],
        "The authorization code is invalid, expired or used"
    );
    let code = demo
        .code(&[("response_type", "code"), ("client_id", "gold-client")])
        .await;
    let (status, body) = demo
        .token(
            &auth,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", "https://app.example/other"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body,
        json!({"error": "invalid_grant", "error_description": "redirect_uri does not match the authorization request"})
    );
    // A JSON body is read as Tyk reads one (JSONToFormValues).
    let (status, _, body) = request(
        Method::POST,
        &format!("http://{}/oauth/token", demo.app),
        &[
            ("authorization", auth.as_str()),
            ("content-type", "application/json"),
        ],
        r#"{"grant_type": "client_credentials"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn revoke_and_revoke_all_end_tokens_with_tyk_answers() {
    let demo = start().await;
    let secret = demo.client(gold_client()).await;
    let auth = basic("gold-client", &secret);
    let issue = || async {
        let (status, body) = demo
            .token(&auth, &[("grant_type", "client_credentials")])
            .await;
        assert_eq!(status, StatusCode::OK);
        body["access_token"].as_str().unwrap().to_owned()
    };
    let first = issue().await;
    let (status, _, body) = demo
        .form(
            "/oauth/revoke",
            Some(&auth),
            &[("token", &first), ("token_type_hint", "access_token")],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"status": "ok", "message": "token revoked successfully"})
    );
    assert_eq!(demo.app_get("/echo", &first).await.0, StatusCode::FORBIDDEN);

    // Another client cannot revoke this client's token (RFC 7009 §2.1); it is answered 200.
    let second = issue().await;
    let other = demo
        .client(json!({"client_id": "other", "policy_id": oauth::DEMO_POLICY}))
        .await;
    let (status, _, _) = demo
        .form(
            "/oauth/revoke",
            Some(&basic("other", &other)),
            &[("token", &second)],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(demo.app_get("/echo", &second).await.0, StatusCode::OK);

    // Refusals, in Tyk's words and shape.
    let tyk_error = |message: &str| json!({"status": "error", "message": message});
    let (status, _, body) = demo.form("/oauth/revoke", Some(&auth), &[]).await;
    assert_eq!(
        (status, body),
        (StatusCode::BAD_REQUEST, tyk_error("token is required"))
    );
    let refusals: [(Params<'_>, StatusCode, &str); 4] = [
        (&[], StatusCode::UNAUTHORIZED, "client_id is required"),
        (
            &[("client_id", "gold-client")],
            StatusCode::UNAUTHORIZED,
            "client_secret is required",
        ),
        (
            &[("client_id", "nobody"), ("client_secret", "x")],
            StatusCode::NOT_FOUND,
            "error getting oauth client",
        ),
        (
            &[("client_id", "gold-client"), ("client_secret", "wrong")],
            StatusCode::UNAUTHORIZED,
            "client secret is wrong",
        ),
    ];
    for path in ["/oauth/revoke_all", "/oauth/revoke"] {
        for (params, expected, message) in refusals {
            let mut params = params.to_vec();
            params.push(("token", "t"));
            let params = if path == "/oauth/revoke_all" {
                &params[..params.len() - 1]
            } else {
                &params[..]
            };
            let (status, _, body) = demo.form(path, None, params).await;
            assert_eq!(
                (status, body),
                (expected, tyk_error(message)),
                "{path} {params:?}"
            );
        }
    }

    // revoke_all ends every access token of the client, and its refresh tokens.
    let third = issue().await;
    let code = demo
        .code(&[("response_type", "code"), ("client_id", "gold-client")])
        .await;
    let (_, with_refresh) = demo
        .token(
            &auth,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", REDIRECT),
            ],
        )
        .await;
    let (status, _, body) = demo
        .form(
            "/oauth/revoke_all",
            None,
            &[("client_id", "gold-client"), ("client_secret", &secret)],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"status": "ok", "message": "tokens revoked successfully"})
    );
    for token in [
        &second,
        &third,
        with_refresh["access_token"].as_str().unwrap(),
    ] {
        assert_eq!(demo.app_get("/echo", token).await.0, StatusCode::FORBIDDEN);
    }
    let (status, body) = demo
        .token(
            &auth,
            &[
                ("grant_type", "refresh_token"),
                (
                    "refresh_token",
                    with_refresh["refresh_token"].as_str().unwrap(),
                ),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_grant");
}

#[tokio::test]
async fn client_api_creates_reads_updates_rotates_and_deletes() {
    let demo = start().await;
    let secret = demo.client(gold_client()).await;
    let (status, read) = demo
        .admin(Method::GET, "/tyk/oauth/clients/any-api/gold-client", "")
        .await;
    assert_eq!(status, StatusCode::OK);
    // Stored hashed: a read never answers the secret.
    assert_eq!(
        read,
        json!({
            "client_id": "gold-client",
            "redirect_uri": REDIRECT,
            "policy_id": oauth::DEMO_POLICY,
            "meta_data": {"plan": "gold", "user_id": "u-client"},
            "description": "a client on the gold plan"
        })
    );
    let (status, api_client) = demo
        .admin(
            Method::POST,
            "/tyk/oauth/clients/create",
            r#"{"api_id": "orders", "meta_data": null}"#,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let generated = api_client["client_id"].as_str().unwrap().to_owned();
    assert_eq!(generated.len(), 32);
    assert_eq!(api_client["api_id"], "orders");
    let (_, listed) = demo
        .admin(Method::GET, "/tyk/oauth/clients/orders", "")
        .await;
    assert_eq!(listed.as_array().unwrap().len(), 2);
    let (_, listed) = demo
        .admin(Method::GET, "/tyk/oauth/clients/billing", "")
        .await;
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    let (status, body) = demo
        .admin(
            Method::GET,
            &format!("/tyk/oauth/clients/billing/{generated}"),
            "",
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        body,
        json!({"status": "error", "message": "OAuth Client ID not found"})
    );

    // An update changes what the next token carries.
    let (status, updated) = demo
        .admin(
            Method::PUT,
            "/tyk/oauth/clients/any-api/gold-client",
            &json!({"policy_id": oauth::DEMO_POLICY, "meta_data": {"plan": "platinum"}})
                .to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["meta_data"], json!({"plan": "platinum"}));
    let (_, answer) = demo
        .token(
            &basic("gold-client", &secret),
            &[("grant_type", "client_credentials")],
        )
        .await;
    let token = answer["access_token"].as_str().unwrap().to_owned();
    assert_eq!(demo.app_get("/echo", &token).await.1["x-plan"], "platinum");

    // Rotate: the old secret stops working at once, the new one works.
    let (status, rotated) = demo
        .admin(
            Method::PUT,
            "/tyk/oauth/clients/any-api/gold-client/rotate",
            "",
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let new_secret = rotated["secret"].as_str().unwrap();
    assert_ne!(new_secret, secret);
    let (status, _) = demo
        .token(
            &basic("gold-client", &secret),
            &[("grant_type", "client_credentials")],
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = demo
        .token(
            &basic("gold-client", new_secret),
            &[("grant_type", "client_credentials")],
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    // The client's live tokens, by key hash (never the token itself).
    let (status, tokens) = demo
        .admin(
            Method::GET,
            "/tyk/oauth/clients/any-api/gold-client/tokens",
            "",
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let tokens = tokens.as_array().unwrap();
    assert_eq!(tokens.len(), 2, "{tokens:?}");
    assert_eq!(tokens[0]["code"], KeyId::of(&ApiKey::new(&token)).as_str());
    assert!(tokens[0]["expires"].as_i64().unwrap() > keycard::session::unix_now());

    // Delete: the client's tokens end with it.
    let (status, body) = demo
        .admin(Method::DELETE, "/tyk/oauth/clients/any-api/gold-client", "")
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"key": "gold-client", "status": "ok", "action": "deleted"})
    );
    assert_eq!(demo.app_get("/echo", &token).await.0, StatusCode::FORBIDDEN);
    for (method, path) in [
        (Method::GET, "/tyk/oauth/clients/any-api/gold-client"),
        (Method::DELETE, "/tyk/oauth/clients/any-api/gold-client"),
        (Method::PUT, "/tyk/oauth/clients/any-api/gold-client/rotate"),
        (Method::PUT, "/tyk/oauth/clients/any-api/gold-client"),
        (Method::GET, "/tyk/oauth/clients/any-api/gold-client/tokens"),
    ] {
        let (status, body) = demo.admin(method.clone(), path, "{}").await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}");
        assert_eq!(
            body,
            json!({"status": "error", "message": "OAuth Client ID not found"})
        );
    }
}

#[tokio::test]
async fn client_writes_refuse_bad_clients_with_400() {
    let demo = start().await;
    let too_long_key = "k".repeat(1025);
    let cases = [
        ("{", "Request malformed"),
        (r#"{"meta_data": [1]}"#, "meta_data must be a JSON object"),
        (r#"{"policy_id": "missing"}"#, "Policy doesn't exist"),
        (
            r#"{"secret": "short"}"#,
            "The client secret must be at least 16 bytes",
        ),
    ];
    let over_limits = json!({"meta_data": {too_long_key: "v"}}).to_string();
    for (body, message) in cases.into_iter().chain([(
        over_limits.as_str(),
        "Metadata must not exceed 1024 entries. Each key and value must be ≤ 65536 characters.",
    )]) {
        let (status, answer) = demo
            .admin(Method::POST, "/tyk/oauth/clients/create", body)
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(
            answer,
            json!({"status": "error", "message": message}),
            "{body}"
        );
    }
    demo.client(gold_client()).await;
    let (status, answer) = demo
        .admin(
            Method::PUT,
            "/tyk/oauth/clients/any/gold-client",
            &json!({"meta_data": {"k".repeat(1025): 1}}).to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        answer["message"],
        "Metadata must not exceed 1024 entries. Each key and value must be ≤ 65536 characters."
    );
    // A posted secret of 16 bytes or more is kept and works.
    demo.client(json!({"client_id": "chosen", "secret": "a-chosen-secret-16", "policy_id": oauth::DEMO_POLICY}))
        .await;
    let (status, _) = demo
        .token(
            &basic("chosen", "a-chosen-secret-16"),
            &[("grant_type", "client_credentials")],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_store_that_is_down_answers_503_and_keeps_the_client() {
    // Two APIs sharing one set of clients: one over a live store, one over a store that is down.
    let clients = keycard::admin::OAuthClients::new();
    let policies = keycard::prelude::MemoryPolicies::new();
    policies.insert(keycard::prelude::Policy::new("basic"));
    let build = |store: Arc<dyn SessionStore>| {
        keycard::admin::AdminApi::builder(store)
            .policies(policies.clone())
            .tyk_secret(TYK_SECRET)
            .oauth(clients.clone())
            .build()
            .unwrap()
    };
    let live = build(Arc::new(MemoryStore::new()));
    let down = build(Arc::new(keycard_tests::stores::UnavailableStore));
    let demo = Demo {
        app: spawn(live.oauth_router()).await,
        admin: spawn(live.into_router()).await,
        store: Arc::new(MemoryStore::new()),
    };
    let down = Demo {
        app: spawn(down.oauth_router()).await,
        admin: spawn(down.into_router()).await,
        store: Arc::new(MemoryStore::new()),
    };
    let secret = demo
        .client(json!({"client_id": "c", "policy_id": "basic"}))
        .await;
    let auth = basic("c", &secret);
    let (status, _) = demo
        .token(&auth, &[("grant_type", "client_credentials")])
        .await;
    assert_eq!(status, StatusCode::OK);

    let (status, body) = down
        .token(&auth, &[("grant_type", "client_credentials")])
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        body,
        json!({"error": "temporarily_unavailable", "error_description": "Session store unavailable"})
    );
    // The client has a token to delete, which the down store cannot: 503, and the client stays.
    let (status, body) = down
        .admin(Method::DELETE, "/tyk/oauth/clients/any/c", "")
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        body,
        json!({"status": "error", "message": "Session store unavailable"})
    );
    assert_eq!(
        demo.admin(Method::GET, "/tyk/oauth/clients/any/c", "")
            .await
            .0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn tokens_are_sessions_in_redis_too() {
    use keycard_tests::redis_support::{connect, shared_store};
    let store = connect(shared_store("oauth-tokens")).await;
    let demo = start_on(Arc::new(store)).await;
    let secret = demo.client(gold_client()).await;
    let auth = basic("gold-client", &secret);
    let code = demo
        .code(&[
            ("response_type", "code"),
            ("client_id", "gold-client"),
            ("key_rules", r#"{"meta_data": {"user_id": "u-alice"}}"#),
        ])
        .await;
    let (status, first) = demo
        .token(
            &auth,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", REDIRECT),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let access = first["access_token"].as_str().unwrap();
    let (_, whoami) = demo.app_get("/whoami", access).await;
    assert_eq!(whoami, json!({"user_id": "u-alice", "plan": "gold"}));
    let stored = demo
        .store
        .load(&KeyId::of(&ApiKey::new(access)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.extra["oauth_client_id"], "gold-client");
    let (status, second) = demo
        .token(
            &auth,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", first["refresh_token"].as_str().unwrap()),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{second}");
    assert_eq!(
        demo.app_get("/whoami", access).await.0,
        StatusCode::FORBIDDEN
    );
    let renewed = second["access_token"].as_str().unwrap();
    assert_eq!(demo.app_get("/whoami", renewed).await.1, whoami);
    let (status, _, _) = demo
        .form("/oauth/revoke", Some(&auth), &[("token", renewed)])
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        demo.app_get("/whoami", renewed).await.0,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn limits_hold_for_the_merged_session_at_issue_time() {
    // Two entries at most: the client's two fit, the key rules' one fits, together they do not.
    let limits = keycard::prelude::MetadataLimits::tyk().max_entries(2);
    let policies = keycard::prelude::MemoryPolicies::new();
    policies.insert(keycard::prelude::Policy::new("basic"));
    let api = keycard::admin::AdminApi::builder(MemoryStore::new())
        .policies(policies)
        .tyk_limits(limits)
        .tyk_secret(TYK_SECRET)
        .build()
        .unwrap();
    let demo = Demo {
        app: spawn(api.oauth_router()).await,
        admin: spawn(api.into_router()).await,
        store: Arc::new(MemoryStore::new()),
    };
    let over = "Metadata must not exceed 2 entries. Each key and value must be ≤ 65536 characters.";
    let (status, body) = demo
        .admin(
            Method::POST,
            "/tyk/oauth/clients/create",
            r#"{"client_id": "c", "policy_id": "basic", "meta_data": {"a": 1, "b": 2, "c": 3}}"#,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body, json!({"status": "error", "message": over}));
    let secret = demo
        .client(json!({"client_id": "c", "policy_id": "basic", "meta_data": {"a": 1, "b": 2}}))
        .await;
    let code = demo
        .code(&[
            ("response_type", "code"),
            ("client_id", "c"),
            ("key_rules", r#"{"meta_data": {"x": "from the rules"}}"#),
        ])
        .await;
    let (status, body) = demo
        .token(
            &basic("c", &secret),
            &[("grant_type", "authorization_code"), ("code", &code)],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body,
        json!({"error": "invalid_request", "error_description": over})
    );
    // Key rules over the limits are refused when the code is asked for.
    let form = "response_type=code&client_id=c&key_rules=%7B%22meta_data%22%3A%7B%22x%22%3A1%2C%22y%22%3A2%2C%22z%22%3A3%7D%7D";
    let (status, _, body) = request(
        Method::POST,
        &format!("http://{}/tyk/oauth/authorize-client", demo.admin),
        &[("x-tyk-authorization", TYK_SECRET)],
        form,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body,
        json!({"error": "invalid_request", "error_description": over})
    );
}

/// Wrong client credentials count against the client's failure budget (the admin API's
/// `auth_failures`, 10 per minute by default, counted apart from the admin secrets): past it
/// even the right secret is 429 with `Retry-After`, at the token and the revoke endpoints,
/// while the management API keeps answering.
#[tokio::test]
async fn failed_client_authentications_are_throttled() {
    let demo = start().await;
    let secret = demo.client(gold_client()).await;
    for attempt in 0..keycard_admin::DEFAULT_MAX_FAILURES {
        let (status, answer) = demo
            .token(
                &basic("gold-client", "not-the-secret"),
                &[("grant_type", "client_credentials")],
            )
            .await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "attempt {attempt}: {answer}"
        );
        assert_eq!(answer["error"], "invalid_client");
    }
    let (status, headers, answer) = demo
        .form(
            "/oauth/token",
            Some(&basic("gold-client", &secret)),
            &[("grant_type", "client_credentials")],
        )
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{answer}");
    let wait: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    assert_eq!(
        answer,
        json!({
            "error": "invalid_client",
            "error_description": format!("Too many failed authentication attempts; retry in {wait} seconds"),
        })
    );
    let (status, headers, answer) = demo
        .form(
            "/oauth/revoke_all",
            None,
            &[("client_id", "gold-client"), ("client_secret", &secret)],
        )
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{answer}");
    assert!(headers.contains_key("retry-after"));
    assert_eq!(answer["status"], "error");
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .starts_with("Too many failed authentication attempts; retry in "),
        "{answer}"
    );
    // The management API has its own budget.
    let (status, answer) = demo
        .admin(Method::GET, "/tyk/oauth/clients/any-api/gold-client", "")
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
}
