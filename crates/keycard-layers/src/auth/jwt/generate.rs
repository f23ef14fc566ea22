//! Generated sessions (Tyk's "centralised JWT"): the identity a token names, the key id derived
//! from it, the policies it asks for, and the stored session created on first sight and kept
//! up to date by later tokens of the same subject.

use std::sync::Arc;

use http::StatusCode;
use keycard_core::key::{ApiKey, KeyHasher, KeyId};
use keycard_core::metadata::{Metadata, MetadataLimits};
use keycard_core::policy::PolicySource;
use keycard_core::session::SessionRecord;
use keycard_core::store::{SessionStore, StoreError};
use serde_json::{Map, Value};

use super::verify::{Rejection, Verified, claim};
use crate::auth::source::GENERATED_IDENTITY_PREFIX;

/// The metadata entry holding the session's own key id (Tyk's name).
pub const SESSION_ID_KEY: &str = "TykJWTSessionID";
/// The metadata entry holding the OIDC client a session was created for (Tyk's name).
pub const CLIENT_ID_KEY: &str = "ClientID";

/// The claims Tyk reads the OAuth client id from, in order.
const CLIENT_ID_CLAIMS: [&str; 3] = ["clientId", "cid", "client_id"];

/// How a token becomes a session.
#[derive(Clone, Debug, Default)]
pub(super) struct SessionRules {
    pub(super) skip_kid: bool,
    pub(super) subject_claims: Vec<String>,
    pub(super) policy_claim: Option<String>,
    pub(super) default_policies: Vec<String>,
    pub(super) scope_claim: Option<String>,
    pub(super) scope_policies: Vec<(String, String)>,
    pub(super) org_id: String,
    pub(super) client_id_mapping_disabled: bool,
    pub(super) mappings: Vec<ClaimMapping>,
}

/// One metadata entry taken from a claim.
#[derive(Clone, Debug)]
pub(super) struct ClaimMapping {
    pub(super) key: String,
    pub(super) path: String,
    /// Rewritten from every token, not only the first.
    pub(super) refresh: bool,
}

fn forbidden(message: &'static str) -> Rejection {
    Rejection::new(StatusCode::FORBIDDEN, message)
}

fn unavailable(error: &StoreError) -> Rejection {
    tracing::error!(%error, "keycard: session store failed while loading a JWT session");
    Rejection::new(StatusCode::SERVICE_UNAVAILABLE, "Session store unavailable")
}

/// A claim value as an identity: a non-empty string, or a number's digits.
fn as_identity(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Strings of a claim that is a space-separated string or an array of strings.
fn strings(value: &Value) -> Vec<String> {
    match value {
        Value::String(s) => s.split_whitespace().map(str::to_owned).collect(),
        Value::Array(items) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

/// `:` and `%` escaped, so the parts of a namespaced identity cannot run into each other.
fn escaped(part: &str) -> String {
    part.replace('%', "%25").replace(':', "%3A")
}

/// The namespaced identity a generated session's key id is hashed from:
/// `jwt:<org>:<identity>`, or `jwt:<org>:<client>:<identity>` when sessions are segregated by
/// client. An opaque API key id is the hash of the key itself; the session-load stage refuses
/// API keys that begin with `jwt:`, so no API key can name a generated session.
pub fn namespaced_identity(org: &str, client: Option<&str>, identity: &str) -> String {
    let prefix = GENERATED_IDENTITY_PREFIX;
    match client {
        Some(client) => format!("{prefix}{}:{}:{identity}", escaped(org), escaped(client)),
        None => format!("{prefix}{}:{identity}", escaped(org)),
    }
}

impl SessionRules {
    /// The identity: the header's `kid` (unless skipped), then the subject claims, then `sub`
    /// (Tyk: `getUserIdFromClaim`).
    pub(super) fn identity(&self, verified: &Verified) -> Result<String, Rejection> {
        if !self.skip_kid
            && let Some(kid) = verified.header.kid.as_deref().filter(|k| !k.is_empty())
        {
            return Ok(kid.to_owned());
        }
        subject(&verified.claims, &self.subject_claims)
    }

    /// The client id claim (`clientId`, `cid`, `client_id`), unless the mapping is disabled.
    fn client_id<'c>(&self, claims: &'c Map<String, Value>) -> Option<&'c str> {
        if self.client_id_mapping_disabled {
            return None;
        }
        CLIENT_ID_CLAIMS
            .iter()
            .find_map(|name| claims.get(*name)?.as_str())
    }

    /// The policies the token asks for: the policy claim, else the defaults; with a scope
    /// map, the base policy (not the defaults) plus the mapped scopes (Tyk:
    /// `processCentralisedJWT`).
    pub(super) fn policies(
        &self,
        claims: &Map<String, Value>,
        exists: bool,
        source: &dyn PolicySource,
    ) -> Result<Vec<String>, Rejection> {
        let base = self
            .policy_claim
            .as_deref()
            .and_then(|name| claim(claims, name))
            .map(strings)
            .unwrap_or_default();
        let from_defaults = base.is_empty() && !self.default_policies.is_empty();
        let mut ids = if from_defaults {
            self.default_policies.clone()
        } else {
            base
        };
        if !self.scope_policies.is_empty() {
            let name = self.scope_claim.as_deref().unwrap_or("scope");
            let scopes = claim(claims, name).map(strings).unwrap_or_default();
            if !scopes.is_empty() {
                if from_defaults {
                    ids.clear();
                }
                for (scope, policy) in &self.scope_policies {
                    if scopes.contains(scope) && !ids.contains(policy) {
                        ids.push(policy.clone());
                    }
                }
                if ids.is_empty() {
                    return Err(forbidden(
                        "key not authorized: no matching policy found in scope claim",
                    ));
                }
            } else if ids.is_empty() && exists {
                return Err(forbidden("key not authorized: no scope or policy in token"));
            }
        }
        if ids.is_empty() {
            return Err(forbidden("key not authorized: no matching policy found"));
        }
        if let Some(missing) = ids.iter().find(|id| source.policy(id).is_none()) {
            tracing::warn!(policy = %missing, "keycard: a token names a policy that does not exist");
            return Err(forbidden("key not authorized: no matching policy"));
        }
        Ok(ids)
    }

    /// Writes the mapped claims into `meta` (all of them on create, the refreshed ones later);
    /// returns whether anything changed.
    fn map_claims(
        &self,
        claims: &Map<String, Value>,
        meta: &mut Metadata,
        limits: &MetadataLimits,
        creating: bool,
    ) -> Result<bool, Rejection> {
        let mut changed = false;
        for mapping in self.mappings.iter().filter(|m| creating || m.refresh) {
            match claim(claims, &mapping.path) {
                Some(value) => {
                    if meta.get(&mapping.key) == Some(value) {
                        continue;
                    }
                    limits.check_entry(&mapping.key, value).map_err(|error| {
                        Rejection::owned(
                            StatusCode::FORBIDDEN,
                            format!(
                                "key not authorized: claim {} cannot be stored as metadata: {error}",
                                mapping.path
                            ),
                        )
                    })?;
                    meta.insert(mapping.key.clone(), value.clone());
                    changed = true;
                }
                None => changed |= meta.remove(&mapping.key).is_some(),
            }
        }
        limits.check_count(meta.len()).map_err(|error| {
            Rejection::owned(
                StatusCode::FORBIDDEN,
                format!("key not authorized: mapped claims break the metadata limits: {error}"),
            )
        })?;
        Ok(changed)
    }
}

/// The subject: the first of `subject_claims` present, then `sub`.
pub(super) fn subject(
    claims: &Map<String, Value>,
    subject_claims: &[String],
) -> Result<String, Rejection> {
    for name in subject_claims {
        match claim(claims, name).and_then(as_identity) {
            Some(id) if id.is_empty() => {
                return Err(Rejection::owned(
                    StatusCode::FORBIDDEN,
                    format!("found an empty user ID in predefined base claim, claim: {name}"),
                ));
            }
            Some(id) => return Ok(id),
            None => {}
        }
    }
    match claims.get("sub").and_then(Value::as_str) {
        Some("") => Err(forbidden("found an empty user ID in sub claim")),
        Some(sub) => Ok(sub.to_owned()),
        None => Err(forbidden("no suitable claims for user ID were found")),
    }
}

/// What one token asks of its session.
pub(super) struct Wanted<'a> {
    pub(super) rules: &'a SessionRules,
    pub(super) claims: &'a Map<String, Value>,
    pub(super) key_id: KeyId,
    pub(super) alias: String,
    pub(super) oidc_client: Option<&'a str>,
    pub(super) policies: Policies<'a>,
    /// Seconds added to `exp` for the session's expiry (the `exp` skew).
    pub(super) expiry_skew: i64,
}

/// Where a session's policies come from.
pub(super) enum Policies<'a> {
    /// Decided already (an OIDC client's policy).
    Fixed(Vec<String>),
    /// From the token's claims, checked against these policies (the answer depends on whether
    /// the session exists yet).
    Claims(&'a dyn PolicySource),
}

/// What the request's session needs from the stage.
pub(super) struct Stores<'a> {
    pub(super) store: &'a dyn SessionStore,
    pub(super) limits: &'a MetadataLimits,
}

impl Wanted<'_> {
    /// The session expiry the token asks for: its `exp` plus the `exp` skew, so a token the
    /// skew admits is not refused next as an expired session.
    fn exp(&self) -> Option<i64> {
        let exp = self.claims.get("exp")?;
        let exp = exp.as_i64().or_else(|| exp.as_f64().map(|f| f as i64))?;
        Some(exp.saturating_add(self.expiry_skew))
    }

    fn policies(&self, exists: bool) -> Result<Vec<String>, Rejection> {
        match &self.policies {
            Policies::Fixed(ids) => Ok(ids.clone()),
            Policies::Claims(source) => self.rules.policies(self.claims, exists, *source),
        }
    }

    fn new_record(&self, limits: &MetadataLimits) -> Result<SessionRecord, Rejection> {
        let mut record = SessionRecord::default();
        record.key_id = self.key_id.clone();
        record.alias = self.alias.clone();
        record.org_id = self.rules.org_id.clone();
        record.apply_policies = self.policies(false)?;
        record.expires = self.exp().unwrap_or(0);
        record
            .meta_data
            .insert(SESSION_ID_KEY.to_owned(), self.key_id.as_str().into());
        if let Some(client) = self.oidc_client {
            record
                .meta_data
                .insert(CLIENT_ID_KEY.to_owned(), client.into());
        }
        if let Some(client) = self.rules.client_id(self.claims) {
            record
                .extra
                .insert("oauth_client_id".to_owned(), client.into());
        }
        self.rules
            .map_claims(self.claims, &mut record.meta_data, limits, true)?;
        Ok(record)
    }

    /// The stored session updated for this token, or `None` when nothing changes.
    fn updated(
        &self,
        stored: &SessionRecord,
        limits: &MetadataLimits,
    ) -> Result<Option<SessionRecord>, Rejection> {
        let mut record = None::<SessionRecord>;
        fn edit<'r>(
            record: &'r mut Option<SessionRecord>,
            stored: &SessionRecord,
        ) -> &'r mut SessionRecord {
            record.get_or_insert_with(|| stored.clone())
        }
        let policies = self.policies(true)?;
        if stored.apply_policies != policies {
            edit(&mut record, stored).apply_policies = policies;
        }
        // Tyk: a longer-lived token extends the session (`exp - Expires > 0`).
        if let Some(exp) = self.exp()
            && exp > stored.expires
        {
            edit(&mut record, stored).expires = exp;
        }
        let client = self.rules.client_id(self.claims);
        if stored.extra.get("oauth_client_id").and_then(Value::as_str) != client {
            let extra = &mut edit(&mut record, stored).extra;
            match client {
                Some(client) => extra.insert("oauth_client_id".to_owned(), client.into()),
                None => extra.remove("oauth_client_id"),
            };
        }
        if self.rules.mappings.iter().any(|m| m.refresh) {
            let mut meta = stored.meta_data.clone();
            if self
                .rules
                .map_claims(self.claims, &mut meta, limits, false)?
            {
                edit(&mut record, stored).meta_data = meta;
            }
        }
        Ok(record)
    }

    /// Loads the session, creating it on first sight (`create` is exclusive: of two first
    /// requests one creates and the other loads what it created) and updating it when this
    /// token asks for other policies, a later expiry or new mapped claims.
    pub(super) async fn session(
        &self,
        stores: Stores<'_>,
    ) -> Result<Arc<SessionRecord>, Rejection> {
        // A few rounds: each is lost only to a concurrent create, replace or delete.
        for _ in 0..4 {
            let stored = stores
                .store
                .load_shared(&self.key_id)
                .await
                .map_err(|e| unavailable(&e))?;
            let Some(stored) = stored else {
                let record = self.new_record(stores.limits)?;
                match stores.store.create(record).await {
                    Ok(created) => {
                        tracing::debug!(key = self.key_id.short(), "keycard: JWT session created");
                        return Ok(Arc::new(created));
                    }
                    Err(StoreError::AlreadyExists) => continue,
                    Err(error) => {
                        tracing::error!(%error, "keycard: JWT session could not be created");
                        return Err(Rejection::owned(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            format!("failed to create key: {error}"),
                        ));
                    }
                }
            };
            let Some(record) = self.updated(&stored, stores.limits)? else {
                return Ok(stored);
            };
            match stores.store.replace(record).await {
                Ok(replaced) => return Ok(Arc::new(replaced)),
                Err(StoreError::Conflict { .. } | StoreError::NotFound) => continue,
                Err(error) => return Err(unavailable(&error)),
            }
        }
        Err(Rejection::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Session store unavailable",
        ))
    }
}

/// The key id of a generated session: the stack's hasher over [`namespaced_identity`].
pub(super) fn key_id(hasher: &KeyHasher, org: &str, client: Option<&str>, identity: &str) -> KeyId {
    hasher.key_id(&ApiKey::new(namespaced_identity(org, client, identity)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(value: Value) -> Map<String, Value> {
        let Value::Object(map) = value else {
            unreachable!()
        };
        map
    }

    #[test]
    fn namespaced_identities_cannot_run_into_each_other() {
        assert_eq!(namespaced_identity("acme", None, "alice"), "jwt:acme:alice");
        assert_eq!(
            namespaced_identity("a:b", Some("c%d"), "e:f"),
            "jwt:a%3Ab:c%25d:e:f"
        );
        assert_ne!(
            namespaced_identity("a:b", None, "c"),
            namespaced_identity("a", None, "b:c")
        );
    }

    #[test]
    fn subject_claims_come_before_sub_and_empty_ones_are_refused() {
        let claims = map(json!({"sub": "s", "user": {"email": "e@x"}, "blank": "", "n": 42}));
        let names = |n: &[&str]| n.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(subject(&claims, &names(&["user.email"])).unwrap(), "e@x");
        assert_eq!(subject(&claims, &names(&["missing"])).unwrap(), "s");
        assert_eq!(subject(&claims, &names(&["n"])).unwrap(), "42");
        assert_eq!(
            subject(&claims, &names(&["blank"])).unwrap_err().message,
            "found an empty user ID in predefined base claim, claim: blank"
        );
    }
}
