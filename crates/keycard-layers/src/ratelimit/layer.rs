//! The rate-limit layer: the builder of its configuration.

use std::sync::Arc;

use keycard_core::ratelimit::RateLimiter;
use keycard_core::vars::{Template, TemplateError};

use super::config::{Config, DEFAULT_PATTERN_CACHE, PatternCache, RateLimitHeaders};

/// Limits requests per bucket with the session's `rate` / `per`. Stack it inside
/// [`SessionLoadLayer`](crate::auth::SessionLoadLayer). See the [module docs](super).
#[derive(Clone)]
pub struct RateLimitLayer {
    pub(super) config: Arc<Config>,
}

impl RateLimitLayer {
    /// Limits with `limiter` (a [`MemoryRateLimiter`](keycard_core::ratelimit::MemoryRateLimiter)
    /// for one instance, a Redis limiter for several).
    pub fn new(limiter: impl RateLimiter) -> Self {
        Self::from_shared(Arc::new(limiter))
    }

    /// Like [`new`](Self::new), for a limiter that is already shared.
    pub fn from_shared(limiter: Arc<dyn RateLimiter>) -> Self {
        Self {
            config: Arc::new(Config {
                limiter,
                pattern: None,
                patterns: PatternCache::new(DEFAULT_PATTERN_CACHE),
                headers: RateLimitHeaders::default(),
                fail_open: false,
            }),
        }
    }

    fn map(self, f: impl FnOnce(&mut Config)) -> Self {
        let mut config = match Arc::try_unwrap(self.config) {
            Ok(config) => config,
            Err(shared) => Config {
                limiter: shared.limiter.clone(),
                pattern: shared.pattern.clone(),
                patterns: PatternCache::new(shared.patterns.capacity),
                headers: shared.headers,
                fail_open: shared.fail_open,
            },
        };
        f(&mut config);
        Self {
            config: Arc::new(config),
        }
    }

    /// The bucket pattern for sessions without a `rate_limit_pattern` of their own: a template
    /// over `$tyk_meta` / `$tyk_context` (`"$tyk_meta.tenant_id"`: one bucket per tenant across
    /// all its keys). A session's own pattern wins over it; when every variable of the pattern
    /// is missing, the bucket is the key's own. A pattern over values the client sends
    /// (`$tyk_context.headers_*`, `request_data_*`, `cookies_*`) lets it pick its bucket.
    ///
    /// # Errors
    /// When `pattern` is not a valid template.
    pub fn pattern(self, pattern: &str) -> Result<Self, TemplateError> {
        let template = Arc::new(Template::parse(pattern)?);
        Ok(self.map(|config| config.pattern = Some(template)))
    }

    /// Which rate-limit headers responses carry (default [`RateLimitHeaders::RateLimits`]).
    pub fn headers(self, headers: RateLimitHeaders) -> Self {
        self.map(|config| config.headers = headers)
    }

    /// When the limiter fails (Redis down), log it and let the request through instead of
    /// answering 503.
    pub fn fail_open(self) -> Self {
        self.map(|config| config.fail_open = true)
    }

    /// At most `capacity` distinct session patterns kept compiled (default
    /// [`DEFAULT_PATTERN_CACHE`]).
    pub fn pattern_cache_capacity(self, capacity: usize) -> Self {
        self.map(|config| config.patterns = PatternCache::new(capacity.max(1)))
    }
}
