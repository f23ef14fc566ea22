//! [`Buckets`]: which bucket a session is counted in; [`Quotas`]: a session's quota outside a
//! request (the admin API's live `quota_remaining` and quota reset).

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::Value;

use super::limiter::RateLimiter;
use super::limits::{Quota, QuotaState};
use crate::key::KeyId;
use crate::session::SessionRecord;
use crate::store::StoreError;
use crate::vars::{Metadata, Template, TemplateError, Variable, Vars, lookup_meta};

/// The metadata entry that names a session's bucket (Tyk's `meta_data.rate_limit_pattern`).
pub const PATTERN_KEY: &str = "rate_limit_pattern";

/// The default bound on distinct session patterns kept compiled.
pub const DEFAULT_PATTERN_CACHE: usize = 1024;

/// Names the bucket a session's requests are counted in, rate and quota alike: its own
/// `rate_limit_pattern`, else the configured pattern, else the key — `p:<value>` for a pattern,
/// `k:<key id>` for a key (so a pattern value can never name a key's bucket).
///
/// Session patterns are compiled once per distinct pattern and kept in a bounded cache; a
/// pattern that does not parse is logged once (warning) and the key's bucket is used. A
/// pattern **does not resolve** when it renders empty or *every* variable in it is missing:
/// the key's bucket is used then (Tyk renders missing variables as `""` and keeps literals, so
/// `$tyk_meta.a|$tyk_meta.b` with both missing is the bucket `"|"`, shared by every such
/// session; keycard does not do that).
pub struct Buckets {
    pattern: Option<Arc<Template>>,
    patterns: PatternCache,
}

impl Buckets {
    /// Buckets per session pattern, else per key.
    pub fn new() -> Self {
        Self {
            pattern: None,
            patterns: PatternCache::new(DEFAULT_PATTERN_CACHE),
        }
    }

    /// The pattern for sessions without a `rate_limit_pattern` of their own.
    ///
    /// # Errors
    /// When `pattern` is not a valid template.
    pub fn pattern(mut self, pattern: &str) -> Result<Self, TemplateError> {
        self.pattern = Some(Arc::new(Template::parse(pattern)?));
        Ok(self)
    }

    /// At most `capacity` distinct session patterns kept compiled (default
    /// [`DEFAULT_PATTERN_CACHE`]; when full it starts over).
    pub fn pattern_cache_capacity(mut self, capacity: usize) -> Self {
        self.patterns = PatternCache::new(capacity.max(1));
        self
    }

    /// The bucket of a session, with `vars` for the pattern (a request's).
    pub fn bucket(&self, record: &SessionRecord, vars: &impl Vars) -> String {
        let own = record
            .meta_data
            .get(PATTERN_KEY)
            .and_then(Value::as_str)
            .filter(|pattern| !pattern.is_empty());
        let template = match own {
            Some(pattern) => self.patterns.get(pattern),
            None => self.pattern.clone(),
        };
        if let Some(value) = template.and_then(|template| resolve(&template, vars)) {
            return prefixed("p:", &value);
        }
        Self::key_bucket(&record.key_id)
    }

    /// The bucket of a session outside a request: its pattern over its metadata only
    /// (`$tyk_context` variables are missing).
    pub fn bucket_of(&self, record: &SessionRecord) -> String {
        self.bucket(record, &MetaVars(&record.meta_data))
    }

    /// The key's own bucket: `k:<key id>`.
    pub fn key_bucket(key_id: &KeyId) -> String {
        prefixed("k:", key_id.as_str())
    }

    /// A copy with the same patterns and an empty cache.
    pub fn fresh_copy(&self) -> Self {
        Self {
            pattern: self.pattern.clone(),
            patterns: PatternCache::new(self.patterns.capacity),
        }
    }
}

impl Default for Buckets {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Buckets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Buckets")
            .field("pattern", &self.pattern.as_ref().map(|p| p.source()))
            .finish_non_exhaustive()
    }
}

/// `prefix` then `name`, in one allocation of the exact size.
fn prefixed(prefix: &str, name: &str) -> String {
    let mut bucket = String::with_capacity(prefix.len() + name.len());
    bucket.push_str(prefix);
    bucket.push_str(name);
    bucket
}

struct MetaVars<'a>(&'a Metadata);

impl Vars for MetaVars<'_> {
    fn metadata(&self) -> Option<&Metadata> {
        Some(self.0)
    }

    fn context(&self, _: &str) -> Option<Cow<'_, str>> {
        None
    }
}

/// The pattern's value, or `None` when it renders empty or every variable in it is missing.
fn resolve(template: &Template, vars: &impl Vars) -> Option<String> {
    let mut variables = template.variables().peekable();
    if variables.peek().is_some() {
        let present = variables.any(|variable| match variable {
            Variable::Meta(name) => vars
                .metadata()
                .and_then(|meta| lookup_meta(meta, name))
                .is_some(),
            Variable::Context(name) => vars.context(name).is_some(),
            Variable::Capture(_) => false,
        });
        if !present {
            return None;
        }
    }
    let rendered = template.render_text(vars).value;
    (!rendered.is_empty()).then_some(rendered)
}

/// Session patterns, compiled once each. Bounded: when full it starts over (patterns come from
/// policies and keys, a handful in practice; a flood of distinct ones costs a parse each, never
/// unbounded memory). A pattern that does not parse is cached as `None` and logged once.
struct PatternCache {
    capacity: usize,
    compiled: Mutex<HashMap<String, Option<Arc<Template>>>>,
}

impl PatternCache {
    fn new(capacity: usize) -> Self {
        Self {
            capacity,
            compiled: Mutex::new(HashMap::new()),
        }
    }

    fn get(&self, pattern: &str) -> Option<Arc<Template>> {
        // Nothing below can panic while the lock is held with the map half-changed.
        let mut compiled = self.compiled.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(template) = compiled.get(pattern) {
            return template.clone();
        }
        let template = match Template::parse(pattern) {
            Ok(template) => Some(Arc::new(template)),
            Err(error) => {
                tracing::warn!(%error, "keycard: a session's rate_limit_pattern does not parse; its requests are limited per key");
                None
            }
        };
        if compiled.len() >= self.capacity {
            compiled.clear();
        }
        compiled.insert(pattern.to_owned(), template.clone());
        template
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.compiled
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }
}

/// A session's quota outside a request: what the rate-limit stage counted for it, read or
/// reset through the same limiter and bucket rules (the admin API's live `quota_remaining`,
/// `POST /tyk/keys/reset/{keyID}` and Tyk's reset on key update). Cheap to clone.
#[derive(Clone)]
pub struct Quotas {
    limiter: Arc<dyn RateLimiter>,
    buckets: Arc<Buckets>,
}

impl Quotas {
    /// Quotas counted by `limiter` in `buckets`.
    pub fn new(limiter: Arc<dyn RateLimiter>, buckets: Arc<Buckets>) -> Self {
        Self { limiter, buckets }
    }

    /// The live state of the session's quota; `None` when it has none (`quota_max <= 0`).
    ///
    /// # Errors
    /// When the limiter cannot be reached.
    pub async fn live(&self, record: &SessionRecord) -> Result<Option<QuotaState>, StoreError> {
        let Some(quota) = Quota::from_tyk(record.quota_max, record.quota_renewal_rate) else {
            return Ok(None);
        };
        let bucket = self.buckets.bucket_of(record);
        self.limiter.quota(&bucket, quota).await.map(Some)
    }

    /// Resets the quota of the bucket the session is counted in (its pattern's, when that
    /// resolves from its metadata: every key sharing it starts over).
    ///
    /// # Errors
    /// When the limiter cannot be reached.
    pub async fn reset(&self, record: &SessionRecord) -> Result<(), StoreError> {
        let bucket = self.buckets.bucket_of(record);
        self.limiter.reset_quota(&bucket).await
    }

    /// Resets the quota of the key's own bucket only (what Tyk resets when a key is created or
    /// updated: a shared pattern bucket is left alone).
    ///
    /// # Errors
    /// When the limiter cannot be reached.
    pub async fn reset_key(&self, key_id: &KeyId) -> Result<(), StoreError> {
        self.limiter.reset_quota(&Buckets::key_bucket(key_id)).await
    }
}

impl std::fmt::Debug for Quotas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Quotas")
            .field("buckets", &self.buckets)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_cache_is_bounded_and_compiles_each_pattern_once() {
        let cache = PatternCache::new(4);
        let first = cache.get("$tyk_meta.a").unwrap();
        assert!(Arc::ptr_eq(&first, &cache.get("$tyk_meta.a").unwrap()));
        for i in 0..100 {
            cache.get(&format!("$tyk_meta.k{i}"));
        }
        assert!(cache.len() <= 4);
        assert!(cache.get("${tyk_meta.broken").is_none());
    }

    #[test]
    fn buckets_outside_a_request_read_metadata_only() {
        let buckets = Buckets::new().pattern("$tyk_meta.org").unwrap();
        let record = SessionRecord::for_key("key-a").metadata(serde_json::json!({"org": "o1"}));
        assert_eq!(buckets.bucket_of(&record), "p:o1");
        let own = SessionRecord::for_key("key-b")
            .metadata(serde_json::json!({"rate_limit_pattern": "$tyk_context.headers_X_Team"}));
        assert_eq!(
            buckets.bucket_of(&own),
            Buckets::key_bucket(&own.key_id),
            "a context-only pattern does not resolve outside a request"
        );
    }
}
