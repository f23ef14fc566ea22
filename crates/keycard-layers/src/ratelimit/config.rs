//! The rate-limit stage's parsed configuration: the limiter, how a bucket is chosen, the header
//! modes, the failure mode.

use std::sync::Arc;

use keycard_core::ratelimit::{Buckets, RateLimiter};

/// Which `X-RateLimit-*` headers responses carry (Tyk's `rate_limit_response_headers`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum RateLimitHeaders {
    /// Tyk's default, `quotas`: `X-RateLimit-Limit` = `quota_max`, `X-RateLimit-Remaining` =
    /// the quota left, `X-RateLimit-Reset` = unix seconds when it renews (absent when it never
    /// does); on admitted responses of sessions with a quota only (as Tyk, 403s and 429s carry
    /// none).
    #[default]
    Quotas,
    /// Tyk's `rate_limits`: `X-RateLimit-Limit` = the rate's request count,
    /// `X-RateLimit-Remaining` = requests left in the window, `X-RateLimit-Reset` = unix seconds
    /// when a slot frees; on every response of a rate-limited session, 429s and 403s included.
    RateLimits,
    /// No `X-RateLimit-*` headers (`Retry-After` is still sent on 429s).
    Off,
}

pub(super) struct Config {
    pub(super) limiter: Arc<dyn RateLimiter>,
    pub(super) buckets: Arc<Buckets>,
    pub(super) headers: RateLimitHeaders,
    /// The IETF draft's `RateLimit-Policy` / `RateLimit` fields too.
    pub(super) ietf: bool,
    pub(super) fail_open: bool,
}
