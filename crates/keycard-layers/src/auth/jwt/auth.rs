//! [`JwtAuth`]: the configuration of JWT (or OIDC) sessions, and what the session-load stage
//! runs for a token.

use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use keycard_core::key::{KeyHasher, KeyId};
use keycard_core::metadata::MetadataLimits;
use keycard_core::policy::PolicySource;
use keycard_core::session::{SessionRecord, unix_now};
use keycard_core::store::SessionStore;
use serde_json::{Map, Value};

use super::generate::{ClaimMapping, Policies, SessionRules, Stores, Wanted, key_id, subject};
use super::keys::{Jwks, JwksLocation, JwtKey, JwtKeyError, Refresh, parse_url};
use super::verify::{self, ClaimRules, Rejection, Verified};

/// Sessions from signed tokens: the session-load stage verifies the bearer token, derives the
/// session's identity from its claims, and loads that session — creating it on first sight
/// (Tyk's JWT middleware with a central key, or its OpenID Connect middleware). See the
/// [module docs](super) for the whole flow and the answers to bad tokens.
///
/// Cheap to clone; configuring a clone leaves the original as it was.
#[derive(Clone)]
pub struct JwtAuth {
    inner: Arc<Inner>,
}

#[derive(Clone)]
struct Inner {
    keys: Vec<Arc<JwtKey>>,
    jwks: Vec<Arc<Jwks>>,
    refresh: Refresh,
    claims: ClaimRules,
    rules: SessionRules,
    context_claims: bool,
    /// OIDC mode: tokens are taken only from these providers.
    providers: Vec<OidcProvider>,
    segregate_by_client: bool,
}

/// An OpenID Connect provider (Tyk's `openid_options.providers[]`): its issuer, the client ids
/// (the token's `aud`) it may issue for and the policy each client's sessions get. Its keys
/// come from its discovery document (`<issuer>/.well-known/openid-configuration` →
/// `jwks_uri`) unless [`jwks`](Self::jwks) names them.
#[derive(Clone)]
pub struct OidcProvider {
    issuer: String,
    clients: Vec<(String, String)>,
    location: JwksLocation,
    jwks: Option<Arc<Jwks>>,
}

impl std::fmt::Debug for OidcProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcProvider")
            .field("issuer", &self.issuer)
            .field("clients", &self.clients)
            .finish_non_exhaustive()
    }
}

impl OidcProvider {
    /// A provider whose tokens carry `iss: issuer`.
    ///
    /// # Errors
    /// When `issuer` is not an absolute `http(s)` URL.
    pub fn new(issuer: impl Into<String>) -> Result<Self, JwtKeyError> {
        let issuer = issuer.into();
        let discovery = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        Ok(Self {
            location: JwksLocation::Discovery(parse_url(&discovery)?),
            issuer,
            clients: Vec::new(),
            jwks: None,
        })
    }

    /// Tokens for `client_id` (their `aud`) get sessions with `policy_id`. Tyk's configuration
    /// keys this map by the base64 of the client id; here it is the client id itself.
    pub fn client(mut self, client_id: impl Into<String>, policy_id: impl Into<String>) -> Self {
        self.clients.push((client_id.into(), policy_id.into()));
        self
    }

    /// Takes the keys from this JWKS URL instead of discovery.
    ///
    /// # Errors
    /// When `url` is not an absolute `http(s)` URL.
    pub fn jwks(mut self, url: &str) -> Result<Self, JwtKeyError> {
        self.location = JwksLocation::Url(parse_url(url)?);
        Ok(self)
    }
}

impl Default for JwtAuth {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for JwtAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtAuth")
            .field("keys", &self.inner.keys)
            .field("jwks", &self.inner.jwks.len())
            .field("providers", &self.inner.providers)
            .finish_non_exhaustive()
    }
}

/// What a verified token gives the session-load stage.
pub(crate) struct Admitted {
    pub(crate) key_id: KeyId,
    pub(crate) record: Arc<SessionRecord>,
    /// `jwt_claims_<name>` context values (empty when turned off).
    pub(crate) context: Vec<(String, String)>,
}

impl JwtAuth {
    /// No keys yet, the Tyk defaults otherwise: no skews, any issuer/audience/subject, identity
    /// from `kid` then `sub`, no policies (add a policy claim, defaults or a scope map), org
    /// `""`, claims available as `$tyk_context.jwt_claims_<name>`.
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Inner {
                keys: Vec::new(),
                jwks: Vec::new(),
                refresh: Refresh::default(),
                claims: ClaimRules::default(),
                rules: SessionRules::default(),
                context_claims: true,
                providers: Vec::new(),
                segregate_by_client: false,
            }),
        }
    }

    /// OpenID Connect mode (Tyk's `use_openid`): only tokens of the given providers, for their
    /// listed clients, are accepted; every failure answers 401 `Key not authorised`.
    pub fn oidc(providers: impl IntoIterator<Item = OidcProvider>) -> Self {
        let mut auth = Self::new();
        auth.inner_mut().providers = providers.into_iter().collect();
        auth.refresh_providers();
        auth.skip_kid()
    }

    fn inner_mut(&mut self) -> &mut Inner {
        Arc::make_mut(&mut self.inner)
    }

    fn refresh_providers(&mut self) {
        let refresh = self.inner.refresh;
        for provider in &mut self.inner_mut().providers {
            provider.jwks = Some(Arc::new(Jwks::new(provider.location.clone(), refresh)));
        }
    }

    /// A verification key from configuration (a secret or a PEM, pinned to its algorithm).
    pub fn key(mut self, key: JwtKey) -> Self {
        self.inner_mut().keys.push(Arc::new(key));
        self
    }

    /// Keys served at a JWKS URL (Tyk's `jwt_jwks_uris`). Fetched on the first token, cached,
    /// refreshed in the background once older than the maximum age, and fetched at once for a
    /// `kid` no cached key has (at most once per minimum interval; concurrent requests share one
    /// fetch). A failed fetch keeps the cached keys.
    ///
    /// # Errors
    /// When `url` is not an absolute `http(s)` URL.
    pub fn jwks(mut self, url: &str) -> Result<Self, JwtKeyError> {
        let uri = parse_url(url)?;
        let refresh = self.inner.refresh;
        self.inner_mut()
            .jwks
            .push(Arc::new(Jwks::new(JwksLocation::Url(uri), refresh)));
        Ok(self)
    }

    /// How JWKS keys are refreshed: in the background once older than `max_age` (default 10
    /// minutes); at most once per `min_interval` for unknown `kid`s (default 10 s); a fetch
    /// fails after `timeout` (default 5 s). Applies to the JWKS URLs and providers added before
    /// and after this call.
    pub fn jwks_refresh(
        mut self,
        max_age: Duration,
        min_interval: Duration,
        timeout: Duration,
    ) -> Self {
        let refresh = Refresh {
            max_age,
            min_interval,
            timeout,
        };
        let inner = self.inner_mut();
        inner.refresh = refresh;
        for jwks in &mut inner.jwks {
            *jwks = Arc::new(Jwks::new(jwks_location(jwks), refresh));
        }
        self.refresh_providers();
        self
    }

    /// Seconds of leeway for `exp` (`jwt_expires_at_validation_skew`).
    pub fn expires_at_skew(mut self, seconds: u64) -> Self {
        self.inner_mut().claims.expires_at_skew = seconds;
        self
    }

    /// Seconds of leeway for `iat` (`jwt_issued_at_validation_skew`).
    pub fn issued_at_skew(mut self, seconds: u64) -> Self {
        self.inner_mut().claims.issued_at_skew = seconds;
        self
    }

    /// Seconds of leeway for `nbf` (`jwt_not_before_validation_skew`).
    pub fn not_before_skew(mut self, seconds: u64) -> Self {
        self.inner_mut().claims.not_before_skew = seconds;
        self
    }

    /// Only tokens from these issuers (`allowedIssuers`).
    pub fn allowed_issuers<S: Into<String>>(
        mut self,
        issuers: impl IntoIterator<Item = S>,
    ) -> Self {
        self.inner_mut().claims.issuers = issuers.into_iter().map(Into::into).collect();
        self
    }

    /// Only tokens for one of these audiences (`allowedAudiences`).
    pub fn allowed_audiences<S: Into<String>>(
        mut self,
        audiences: impl IntoIterator<Item = S>,
    ) -> Self {
        self.inner_mut().claims.audiences = audiences.into_iter().map(Into::into).collect();
        self
    }

    /// Only tokens whose `sub` is one of these (`allowedSubjects`).
    pub fn allowed_subjects<S: Into<String>>(
        mut self,
        subjects: impl IntoIterator<Item = S>,
    ) -> Self {
        self.inner_mut().claims.subjects = subjects.into_iter().map(Into::into).collect();
        self
    }

    /// Do not take the identity from the header's `kid` (`jwt_skip_kid`). Tyk's default uses a
    /// `kid` as the identity when there is one, which makes every signing key one session;
    /// with JWKS key rotation you want this.
    pub fn skip_kid(mut self) -> Self {
        self.inner_mut().rules.skip_kid = true;
        self
    }

    /// Claims tried for the identity before `sub`, in order (`subjectClaims`,
    /// `jwt_identity_base_field`); dotted paths reach into objects.
    pub fn subject_claims<S: Into<String>>(mut self, claims: impl IntoIterator<Item = S>) -> Self {
        self.inner_mut().rules.subject_claims = claims.into_iter().map(Into::into).collect();
        self
    }

    /// The claim naming the session's policy (`jwt_policy_field_name`): a policy id, or (beyond
    /// Tyk) an array of them.
    pub fn policy_claim(mut self, claim: impl Into<String>) -> Self {
        self.inner_mut().rules.policy_claim = Some(claim.into());
        self
    }

    /// The policies of tokens without a policy claim (`jwt_default_policies`).
    pub fn default_policies<S: Into<String>>(mut self, ids: impl IntoIterator<Item = S>) -> Self {
        self.inner_mut().rules.default_policies = ids.into_iter().map(Into::into).collect();
        self
    }

    /// Tokens whose scope claim holds `scope` get `policy_id` (`scopes.jwt.scope_to_policy`).
    pub fn scope_policy(mut self, scope: impl Into<String>, policy_id: impl Into<String>) -> Self {
        self.inner_mut()
            .rules
            .scope_policies
            .push((scope.into(), policy_id.into()));
        self
    }

    /// The claim scopes are read from (default `scope`; a space-separated string or an array).
    pub fn scope_claim(mut self, claim: impl Into<String>) -> Self {
        self.inner_mut().rules.scope_claim = Some(claim.into());
        self
    }

    /// The organisation of generated sessions (part of their key id).
    pub fn org_id(mut self, org: impl Into<String>) -> Self {
        self.inner_mut().rules.org_id = org.into();
        self
    }

    /// Do not record the `clientId` / `cid` / `client_id` claim as the session's
    /// `oauth_client_id` (`idp_client_id_mapping_disabled`).
    pub fn disable_client_id_mapping(mut self) -> Self {
        self.inner_mut().rules.client_id_mapping_disabled = true;
        self
    }

    /// OIDC: one session per client and user instead of per user (`segregate_by_client`).
    pub fn segregate_by_client(mut self) -> Self {
        self.inner_mut().segregate_by_client = true;
        self
    }

    /// Beyond Tyk: the metadata entry `key` is set from the claim at `path` (dotted paths reach
    /// into objects: `org.id`, `realm_access.roles`) when the session is created. Checked
    /// against the stage's metadata limits.
    pub fn claim_to_metadata(mut self, key: impl Into<String>, path: impl Into<String>) -> Self {
        self.inner_mut().rules.mappings.push(ClaimMapping {
            key: key.into(),
            path: path.into(),
            refresh: false,
        });
        self
    }

    /// Like [`claim_to_metadata`](Self::claim_to_metadata), rewritten from every token (and
    /// removed when a token lacks the claim), so the metadata follows the identity provider.
    pub fn claim_to_metadata_refreshed(
        mut self,
        key: impl Into<String>,
        path: impl Into<String>,
    ) -> Self {
        self.inner_mut().rules.mappings.push(ClaimMapping {
            key: key.into(),
            path: path.into(),
            refresh: true,
        });
        self
    }

    /// Do not publish the token's header fields and claims as `$tyk_context.jwt_claims_<name>`
    /// (on by default; Tyk publishes them when `enable_context_vars` is set).
    pub fn without_context_claims(mut self) -> Self {
        self.inner_mut().context_claims = false;
        self
    }

    /// Verifies `token` and loads (or creates, or updates) the session it names.
    pub(crate) async fn admit(
        &self,
        token: &str,
        store: &dyn SessionStore,
        policies: &dyn PolicySource,
        hasher: &KeyHasher,
        limits: &MetadataLimits,
    ) -> Result<Admitted, Rejection> {
        let inner = &*self.inner;
        let stores = Stores { store, limits };
        if !inner.providers.is_empty() {
            return self.admit_oidc(token, stores, policies, hasher).await;
        }
        let verified = self.verify(token).await?;
        inner.claims.check(&verified.claims, unix_now())?;
        let identity = inner.rules.identity(&verified)?;
        let record = Wanted {
            rules: &inner.rules,
            expiry_skew: i64::try_from(inner.claims.expires_at_skew).unwrap_or(i64::MAX),
            claims: &verified.claims,
            key_id: key_id(hasher, &inner.rules.org_id, None, &identity),
            alias: identity,
            oidc_client: None,
            policies: Policies::Claims(policies),
        }
        .session(stores)
        .await?;
        Ok(Admitted {
            key_id: record.key_id.clone(),
            record,
            context: self.context(&verified),
        })
    }

    /// The signature check: the configured keys, then the JWKS keys; an unknown `kid` makes
    /// the JWKS sources fetch (rate-limited, single-flight) before the token is refused.
    async fn verify(&self, token: &str) -> Result<Verified, Rejection> {
        let header = verify::header(token)?;
        let kid = header.kid.as_deref();
        let inner = &*self.inner;
        let matches = |key: &&Arc<JwtKey>| match (kid, key.kid.as_deref()) {
            (Some(want), Some(have)) => want == have,
            (_, None) => true,
            (None, Some(_)) => true,
        };
        for jwks in &inner.jwks {
            jwks.revalidate();
        }
        let try_all = |lists: &[Arc<Vec<Arc<JwtKey>>>]| {
            let keys = inner
                .keys
                .iter()
                .chain(lists.iter().flat_map(|list| list.iter()))
                .filter(matches);
            verify::signature(token, header.alg, keys)
        };
        let cached: Vec<_> = inner.jwks.iter().map(|j| j.cached()).collect();
        let known = |lists: &[Arc<Vec<Arc<JwtKey>>>]| {
            kid.is_none_or(|kid| {
                inner.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
                    || lists
                        .iter()
                        .any(|l| l.iter().any(|k| k.kid.as_deref() == Some(kid)))
            })
        };
        if inner.jwks.is_empty() || (known(&cached) && cached.iter().any(|l| !l.is_empty())) {
            return try_all(&cached);
        }
        // An unknown kid (or nothing fetched yet): fetch, then try once more.
        for jwks in &inner.jwks {
            jwks.refresh().await;
        }
        let fetched: Vec<_> = inner.jwks.iter().map(|j| j.cached()).collect();
        try_all(&fetched)
    }

    async fn admit_oidc(
        &self,
        token: &str,
        stores: Stores<'_>,
        policies: &dyn PolicySource,
        hasher: &KeyHasher,
    ) -> Result<Admitted, Rejection> {
        const NOT_AUTHORISED: Rejection =
            Rejection::new(StatusCode::UNAUTHORIZED, "Key not authorised");
        let inner = &*self.inner;
        let header = verify::header(token).map_err(|_| NOT_AUTHORISED)?;
        // The issuer picks the provider (and so the keys); it is checked again once verified.
        let unverified: Map<String, Value> =
            jsonwebtoken::dangerous::insecure_decode_claims(token).map_err(|_| NOT_AUTHORISED)?;
        let issuer = unverified.get("iss").and_then(Value::as_str);
        let provider = inner
            .providers
            .iter()
            .find(|p| Some(p.issuer.as_str()) == issuer)
            .ok_or(NOT_AUTHORISED)?;
        let jwks = provider
            .jwks
            .as_ref()
            .expect("set when the provider is added");
        jwks.revalidate();
        let mut keys = jwks.cached();
        let kid = header.kid.as_deref();
        let has = |keys: &[Arc<JwtKey>]| {
            !keys.is_empty()
                && kid.is_none_or(|kid| keys.iter().any(|k| k.kid.as_deref() == Some(kid)))
        };
        if !has(&keys) {
            jwks.refresh().await;
            keys = jwks.cached();
        }
        let keys = keys
            .iter()
            .filter(|k| kid.is_none() || k.kid.is_none() || k.kid.as_deref() == kid);
        let verified = verify::signature(token, header.alg, keys).map_err(|_| NOT_AUTHORISED)?;
        inner
            .claims
            .check(&verified.claims, unix_now())
            .map_err(|_| NOT_AUTHORISED)?;
        if verified.claims.get("iss").and_then(Value::as_str) != Some(provider.issuer.as_str()) {
            return Err(NOT_AUTHORISED);
        }
        let audiences: Vec<&str> = match verified.claims.get("aud") {
            Some(Value::String(aud)) => vec![aud],
            Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        let (client, policy) = provider
            .clients
            .iter()
            .find(|(client, _)| audiences.contains(&client.as_str()))
            .ok_or(NOT_AUTHORISED)?;
        if policies.policy(policy).is_none() {
            return Err(Rejection::new(
                StatusCode::FORBIDDEN,
                "Key not authorized: no matching policy",
            ));
        }
        let user =
            subject(&verified.claims, &inner.rules.subject_claims).map_err(|_| NOT_AUTHORISED)?;
        let segregate = inner.segregate_by_client.then_some(client.as_str());
        let record = Wanted {
            rules: &inner.rules,
            expiry_skew: i64::try_from(inner.claims.expires_at_skew).unwrap_or(i64::MAX),
            claims: &verified.claims,
            key_id: key_id(hasher, &inner.rules.org_id, segregate, &user),
            alias: format!("{client}:{user}"),
            oidc_client: Some(client),
            policies: Policies::Fixed(vec![policy.clone()]),
        }
        .session(stores)
        .await?;
        Ok(Admitted {
            key_id: record.key_id.clone(),
            record,
            context: self.context(&verified),
        })
    }

    /// `jwt_claims_<name>` for the header fields and every claim: strings as they are, other
    /// values as JSON.
    fn context(&self, verified: &Verified) -> Vec<(String, String)> {
        if !self.inner.context_claims {
            return Vec::new();
        }
        let text = |value: &Value| match value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let header = &verified.header;
        let mut values = Vec::with_capacity(verified.claims.len() + 3);
        values.push(("jwt_claims_alg".to_owned(), format!("{:?}", header.alg)));
        if let Some(kid) = &header.kid {
            values.push(("jwt_claims_kid".to_owned(), kid.clone()));
        }
        if let Some(typ) = &header.typ {
            values.push(("jwt_claims_typ".to_owned(), typ.clone()));
        }
        for (name, value) in &verified.claims {
            values.push((format!("jwt_claims_{name}"), text(value)));
        }
        values
    }
}

fn jwks_location(jwks: &Jwks) -> JwksLocation {
    jwks.location().clone()
}
