//! The rate-limit layer: the builder of its configuration.

use std::sync::Arc;

use keycard_core::ratelimit::{Buckets, Quotas, RateLimiter};
use keycard_core::vars::TemplateError;

use super::config::{Config, RateLimitHeaders};

/// Limits requests per bucket with the session's `rate` / `per` and quota (`quota_max`,
/// `quota_renewal_rate`). Stack it inside
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
                buckets: Arc::new(Buckets::new()),
                headers: RateLimitHeaders::default(),
                ietf: false,
                fail_open: false,
            }),
        }
    }

    fn map(self, f: impl FnOnce(&mut Config)) -> Self {
        let mut config = match Arc::try_unwrap(self.config) {
            Ok(config) => config,
            Err(shared) => Config {
                limiter: shared.limiter.clone(),
                buckets: Arc::new(shared.buckets.fresh_copy()),
                headers: shared.headers,
                ietf: shared.ietf,
                fail_open: shared.fail_open,
            },
        };
        f(&mut config);
        Self {
            config: Arc::new(config),
        }
    }

    fn map_buckets(self, f: impl FnOnce(Buckets) -> Buckets) -> Self {
        self.map(|config| {
            let buckets = Arc::try_unwrap(std::mem::take(&mut config.buckets))
                .unwrap_or_else(|shared| shared.fresh_copy());
            config.buckets = Arc::new(f(buckets));
        })
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
        let buckets = self.config.buckets.fresh_copy().pattern(pattern)?;
        Ok(self.map(|config| config.buckets = Arc::new(buckets)))
    }

    /// Which `X-RateLimit-*` headers responses carry (default [`RateLimitHeaders::Quotas`],
    /// Tyk's default).
    pub fn headers(self, headers: RateLimitHeaders) -> Self {
        self.map(|config| config.headers = headers)
    }

    /// Also send the IETF draft fields (draft-ietf-httpapi-ratelimit-headers-09):
    /// `RateLimit-Policy: "rate";q=100;w=60, "quota";q=1000;w=86400` and
    /// `RateLimit: "rate";r=42;t=17, "quota";r=990;t=3600`, on every response of a limited
    /// session, 429s and 403s included. Off by default.
    pub fn ietf_headers(self) -> Self {
        self.map(|config| config.ietf = true)
    }

    /// When the limiter fails (Redis down), log it and let the request through instead of
    /// answering 503.
    pub fn fail_open(self) -> Self {
        self.map(|config| config.fail_open = true)
    }

    /// At most `capacity` distinct session patterns kept compiled (default
    /// [`DEFAULT_PATTERN_CACHE`](keycard_core::ratelimit::DEFAULT_PATTERN_CACHE)).
    pub fn pattern_cache_capacity(self, capacity: usize) -> Self {
        self.map_buckets(|buckets| buckets.pattern_cache_capacity(capacity))
    }

    /// The quotas this layer counts, for the admin API (live `quota_remaining`, quota reset):
    /// the same limiter and bucket rules.
    pub fn quotas(&self) -> Quotas {
        Quotas::new(self.config.limiter.clone(), self.config.buckets.clone())
    }
}

impl std::fmt::Debug for RateLimitLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimitLayer")
            .field("buckets", &self.config.buckets)
            .field("headers", &self.config.headers)
            .field("ietf", &self.config.ietf)
            .field("fail_open", &self.config.fail_open)
            .finish_non_exhaustive()
    }
}
