//! The rate-limit stage's parsed configuration: the limiter, the patterns and how a bucket is
//! chosen, the header mode, the failure mode.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use keycard_core::ratelimit::RateLimiter;
use keycard_core::session::SessionRecord;
use keycard_core::vars::{Template, Variable, Vars, lookup_meta};
use serde_json::Value;

/// The metadata entry that names a session's bucket (Tyk's `meta_data.rate_limit_pattern`).
pub const PATTERN_KEY: &str = "rate_limit_pattern";

/// The default bound on distinct session patterns kept compiled.
pub const DEFAULT_PATTERN_CACHE: usize = 1024;

/// Which `X-RateLimit-*` headers responses carry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum RateLimitHeaders {
    /// Tyk's `rate_limits` mode: `X-RateLimit-Limit` = the limit's request count,
    /// `X-RateLimit-Remaining` = requests left in the window, `X-RateLimit-Reset` = unix seconds
    /// when the oldest counted request leaves the window; on every limited response, 429s
    /// included. (Tyk's default `quotas` mode reports quotas, which this layer does not count
    /// yet; until it does, this is the default.)
    #[default]
    RateLimits,
    /// No rate-limit headers (`Retry-After` is still sent on 429s).
    Off,
}

pub(super) struct Config {
    pub(super) limiter: Arc<dyn RateLimiter>,
    pub(super) pattern: Option<Arc<Template>>,
    pub(super) patterns: PatternCache,
    pub(super) headers: RateLimitHeaders,
    pub(super) fail_open: bool,
}

impl Config {
    /// The bucket of a request: its pattern's value (`p:` + value) when the pattern resolves,
    /// else the key id (`k:` + id). The prefixes keep a pattern value from naming a key's
    /// own bucket.
    pub(super) fn bucket(&self, record: &SessionRecord, vars: &impl Vars) -> String {
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
            return format!("p:{value}");
        }
        format!("k:{}", record.key_id.as_str())
    }
}

/// The pattern's value, or `None` when it renders empty or every variable in it is missing.
///
/// Tyk divergence: Tyk renders missing variables as `""` and keeps the literals, so
/// `$tyk_meta.a|$tyk_meta.b` with both missing is the bucket `"|"`, shared by every such
/// session; keycard falls back to the key's own bucket then.
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
pub(super) struct PatternCache {
    pub(super) capacity: usize,
    compiled: Mutex<HashMap<String, Option<Arc<Template>>>>,
}

impl PatternCache {
    pub(super) fn new(capacity: usize) -> Self {
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
}
