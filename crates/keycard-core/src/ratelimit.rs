//! Rate-limit and quota backends: the [`RateLimiter`] trait, the in-process
//! [`MemoryRateLimiter`], the [`Clock`] it reads, and [`Buckets`], which names the bucket a
//! session is counted in (reference: `docs/ratelimit.md` in the repository).
//!
//! A limiter answers one question per request: may one more request go into bucket `B` under
//! [`Limits`] — a rate ("N requests per window", [`Limit`]) and a quota ("M requests per renewal
//! period", [`Quota`]), either or both? The answer is a [`Decision`] with what the response
//! headers need. The rate is checked first; a request refused by either is counted by neither.
//! Backends are shaped like [`SessionStore`](crate::store::SessionStore): one check is one
//! operation (one round trip to Redis), the future is boxed so the trait is object safe.
//!
//! Two rate algorithms ([`Algorithm`]):
//! - [`SlidingWindow`](Algorithm::SlidingWindow) (the default) is an exact **sliding-window
//!   log** — Tyk's "Redis rolling limiter" semantics: at any instant, the accepted requests of the
//!   last `window` number at most `N`. Refused requests are not logged (Tyk logs them too, so a
//!   client retrying in a loop is never let through again; keycard lets it through as soon as a
//!   slot frees). Memory: one timestamp per admitted request in the window.
//! - [`Gcra`](Algorithm::Gcra), the generic cell rate algorithm (a token bucket kept as one
//!   number): `N` at once, then one every `window / N`. Memory: one number per bucket.
//!
//! ```
//! use std::time::Duration;
//!
//! use keycard_core::ratelimit::{Limit, Limits, ManualClock, MemoryRateLimiter, Quota, RateLimiter, Verdict};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), keycard_core::store::StoreError> {
//! let clock = ManualClock::new();
//! let limiter = MemoryRateLimiter::new().clock(clock.clone());
//! let limits = Limits::rate(Limit::new(2, Duration::from_secs(1)));
//!
//! assert!(limiter.check("k:alice", limits).await?.allowed());
//! clock.advance(Duration::from_millis(400));
//! assert_eq!(limiter.check("k:alice", limits).await?.rate.unwrap().remaining, 0);
//!
//! let refused = limiter.check("k:alice", limits).await?;
//! assert_eq!(refused.verdict, Verdict::RateLimited);
//! assert_eq!(refused.rate.unwrap().reset_after, Duration::from_millis(600)); // the first leaves then
//!
//! clock.advance(Duration::from_millis(600));
//! assert!(limiter.check("k:alice", limits).await?.allowed());
//!
//! // A quota: 3 requests per hour, whatever the rate.
//! let quota = Limits::quota(Quota::new(3, Some(Duration::from_secs(3600))));
//! for _ in 0..3 {
//!     assert!(limiter.check("k:bob", quota).await?.allowed());
//! }
//! assert_eq!(limiter.check("k:bob", quota).await?.verdict, Verdict::QuotaExceeded);
//! # Ok(())
//! # }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::store::StoreError;

mod buckets;
mod memory;

pub use buckets::{Buckets, DEFAULT_PATTERN_CACHE, PATTERN_KEY, Quotas};
pub use memory::{DEFAULT_MAX_BUCKETS, MemoryRateLimiter};

/// "At most `requests` requests in any `window`".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Limit {
    requests: u64,
    window: Duration,
}

impl Limit {
    /// `requests` per `window`.
    ///
    /// # Panics
    /// If `requests` is 0 or `window` is zero: such a limit refuses everything, which is what
    /// disabling a key is for.
    pub fn new(requests: u64, window: Duration) -> Self {
        assert!(
            requests > 0 && !window.is_zero(),
            "a rate limit needs at least one request per non-zero window"
        );
        Self { requests, window }
    }

    /// The limit of a Tyk session's `rate` (requests) and `per` (seconds); `None` when it is
    /// disabled: `rate <= 0` (as Tyk), `per <= 0`, or either not a finite number.
    ///
    /// Fractional rates are kept exact by stretching the window: `0.5` per `1` s is one request
    /// per 2 s; `2.5` per `1` s is two requests per second (the fraction of a request is
    /// dropped, as a counter cannot accept half a request).
    pub fn from_tyk(rate: f64, per: f64) -> Option<Self> {
        if !(rate.is_finite() && per.is_finite() && rate > 0.0 && per > 0.0) {
            return None;
        }
        let (requests, seconds) = if rate < 1.0 {
            (1, per / rate)
        } else {
            // Saturates at u64::MAX for absurd rates, which is "no practical limit".
            (rate.floor() as u64, per)
        };
        let window = Duration::try_from_secs_f64(seconds).ok()?;
        (!window.is_zero()).then_some(Self { requests, window })
    }

    /// The number of requests a window admits.
    pub fn requests(&self) -> u64 {
        self.requests
    }

    /// The window.
    pub fn window(&self) -> Duration {
        self.window
    }
}

/// "At most `max` requests per renewal period": Tyk's `quota_max` and `quota_renewal_rate`. A
/// period starts with the first request counted after the last one ended (or after a reset)
/// and lasts `renewal`; with no renewal the quota never renews (until reset).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Quota {
    max: u64,
    renewal: Option<Duration>,
}

impl Quota {
    /// `max` requests per `renewal` (`None`: never renews).
    ///
    /// # Panics
    /// If `max` is 0 or `renewal` is zero.
    pub fn new(max: u64, renewal: Option<Duration>) -> Self {
        assert!(
            max > 0 && renewal.is_none_or(|renewal| !renewal.is_zero()),
            "a quota needs at least one request per non-zero period"
        );
        Self { max, renewal }
    }

    /// The quota of a Tyk session's `quota_max` and `quota_renewal_rate` (seconds); `None` when
    /// it is disabled: `quota_max <= 0` (Tyk's `-1` is "unlimited"). A renewal rate of 0 or less
    /// never renews, as in Tyk.
    pub fn from_tyk(quota_max: i64, quota_renewal_rate: i64) -> Option<Self> {
        let max = u64::try_from(quota_max).ok().filter(|&max| max > 0)?;
        let renewal = u64::try_from(quota_renewal_rate)
            .ok()
            .filter(|&seconds| seconds > 0)
            .map(Duration::from_secs);
        Some(Self { max, renewal })
    }

    /// The number of requests a period admits.
    pub fn max(&self) -> u64 {
        self.max
    }

    /// The period, `None` when the quota never renews.
    pub fn renewal(&self) -> Option<Duration> {
        self.renewal
    }
}

/// What one check counts against: a rate, a quota, or both (an empty `Limits` admits
/// everything and is never sent to a backend by the layer).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Limits {
    /// The rate limit, if any.
    pub rate: Option<Limit>,
    /// The quota, if any.
    pub quota: Option<Quota>,
}

impl Limits {
    /// A rate limit only.
    pub fn rate(limit: Limit) -> Self {
        Self {
            rate: Some(limit),
            quota: None,
        }
    }

    /// A quota only.
    pub fn quota(quota: Quota) -> Self {
        Self {
            rate: None,
            quota: Some(quota),
        }
    }

    /// These limits with `quota` too.
    pub fn with_quota(mut self, quota: Quota) -> Self {
        self.quota = Some(quota);
        self
    }

    /// The limits of a Tyk session: `rate`/`per` and `quota_max`/`quota_renewal_rate`
    /// ([`Limit::from_tyk`], [`Quota::from_tyk`]).
    pub fn of(record: &crate::session::SessionRecord) -> Self {
        Self {
            rate: Limit::from_tyk(record.rate, record.per),
            quota: Quota::from_tyk(record.quota_max, record.quota_renewal_rate),
        }
    }

    /// Whether there is nothing to count.
    pub fn is_empty(&self) -> bool {
        self.rate.is_none() && self.quota.is_none()
    }
}

/// How a rate is counted. Quotas are plain counters either way.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Algorithm {
    /// An exact sliding-window log (Tyk's "Redis rolling limiter"): at most N in any window.
    #[default]
    SlidingWindow,
    /// GCRA, a token bucket as one number: N at once, then one every `window / N`; cheaper (one
    /// number per bucket instead of one timestamp per request), and smoother: after a burst,
    /// requests are let through one by one as tokens come back instead of all at once when the
    /// burst leaves the window.
    Gcra,
}

/// How a check went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The request may go on; it was counted against the rate and the quota.
    Allowed,
    /// Over the rate limit (429); counted against neither.
    RateLimited,
    /// Within the rate but the quota is used up (403); counted against neither.
    QuotaExceeded,
}

/// The rate limit's state after a check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateState {
    /// The limit's request count (`X-RateLimit-Limit` in the `rate_limits` mode).
    pub limit: u64,
    /// The limit's window.
    pub window: Duration,
    /// Requests left after this one (0 when refused).
    pub remaining: u64,
    /// The wait until a slot frees (sliding window: the oldest request leaves the window; GCRA:
    /// the next token; when admitted, the time until the bucket is full again): `Retry-After`
    /// on a 429, the time to `X-RateLimit-Reset`.
    pub reset_after: Duration,
}

/// The quota's state after a check (or a look, [`RateLimiter::quota`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuotaState {
    /// The quota's size (`quota_max`).
    pub limit: u64,
    /// The quota's renewal period (`None`: never renews).
    pub period: Option<Duration>,
    /// Requests left in this period (`quota_remaining`).
    pub remaining: u64,
    /// When the period ends and the quota renews; `None` when it never renews or no period has
    /// started (nothing counted since the last renewal or reset).
    pub renews_after: Option<Duration>,
}

impl QuotaState {
    /// A quota with nothing counted.
    pub fn full(quota: Quota) -> Self {
        Self {
            limit: quota.max,
            period: quota.renewal,
            remaining: quota.max,
            renews_after: None,
        }
    }
}

/// A limiter's answer for one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request may go on, and if not, why.
    pub verdict: Verdict,
    /// The rate's state, when the check had a rate.
    pub rate: Option<RateState>,
    /// The quota's state, when the check had a quota.
    pub quota: Option<QuotaState>,
}

impl Decision {
    /// Whether the request may go on.
    pub fn allowed(&self) -> bool {
        self.verdict == Verdict::Allowed
    }
}

/// The future of a [`RateLimiter`] call.
pub type LimiterFuture<'a, T = Decision> =
    Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// A rate-limit and quota backend: counts requests per bucket, atomically.
///
/// A failure is a [`StoreError`] (`Unavailable` when the backend cannot be reached), so the
/// layer treats an unreachable limiter as it treats an unreachable store.
pub trait RateLimiter: Send + Sync + 'static {
    /// Counts one request into `bucket` if `limits` allow it, and says how it went: the rate
    /// is checked first, then the quota; a request refused by either is counted by neither.
    /// Concurrent checks of one bucket never admit more than a limit between them.
    fn check<'a>(&'a self, bucket: &'a str, limits: Limits) -> LimiterFuture<'a>;

    /// [`check`](Self::check) without a future, for a backend that answers without waiting (an
    /// in-process one): the layer calls this first and awaits `check` only on `None` (the
    /// default).
    fn check_now(&self, bucket: &str, limits: Limits) -> Option<Result<Decision, StoreError>> {
        let _ = (bucket, limits);
        None
    }

    /// The quota state of `bucket` under `quota`, counting nothing (the admin API's live
    /// `quota_remaining`).
    fn quota<'a>(&'a self, bucket: &'a str, quota: Quota) -> LimiterFuture<'a, QuotaState>;

    /// Forgets what `bucket`'s quota counted: the next request starts a new period.
    fn reset_quota<'a>(&'a self, bucket: &'a str) -> LimiterFuture<'a, ()>;
}

impl<T: RateLimiter + ?Sized> RateLimiter for Arc<T> {
    fn check<'a>(&'a self, bucket: &'a str, limits: Limits) -> LimiterFuture<'a> {
        (**self).check(bucket, limits)
    }

    fn check_now(&self, bucket: &str, limits: Limits) -> Option<Result<Decision, StoreError>> {
        (**self).check_now(bucket, limits)
    }

    fn quota<'a>(&'a self, bucket: &'a str, quota: Quota) -> LimiterFuture<'a, QuotaState> {
        (**self).quota(bucket, quota)
    }

    fn reset_quota<'a>(&'a self, bucket: &'a str) -> LimiterFuture<'a, ()> {
        (**self).reset_quota(bucket)
    }
}

/// Where a limiter reads the time: a monotonic reading since an arbitrary start. Inject a
/// [`ManualClock`] in tests, or any `Fn() -> Duration`.
pub trait Clock: Send + Sync + 'static {
    /// The time now, since the clock's start.
    fn now(&self) -> Duration;
}

impl<F: Fn() -> Duration + Send + Sync + 'static> Clock for F {
    fn now(&self) -> Duration {
        self()
    }
}

/// The system's monotonic clock ([`Instant`]), started when it is created.
#[derive(Clone, Copy, Debug)]
pub struct SystemClock {
    start: Instant,
}

impl SystemClock {
    /// A clock starting now.
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        self.start.elapsed()
    }
}

/// A clock that moves only when told to (tests). Clones share the time.
#[derive(Clone, Debug, Default)]
pub struct ManualClock {
    nanos: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let by = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        self.nanos.fetch_add(by, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Duration {
        Duration::from_nanos(self.nanos.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tyk_limits_disable_at_zero_and_keep_fractions_exact() {
        assert_eq!(Limit::from_tyk(0.0, 1.0), None);
        assert_eq!(Limit::from_tyk(-1.0, 60.0), None);
        assert_eq!(Limit::from_tyk(10.0, 0.0), None);
        assert_eq!(Limit::from_tyk(f64::NAN, 1.0), None);
        assert_eq!(
            Limit::from_tyk(100.0, 60.0),
            Some(Limit::new(100, Duration::from_secs(60)))
        );
        assert_eq!(
            Limit::from_tyk(0.5, 1.0),
            Some(Limit::new(1, Duration::from_secs(2)))
        );
    }

    #[test]
    fn tyk_quotas_disable_at_zero_or_minus_one_and_renew_only_with_a_positive_rate() {
        assert_eq!(Quota::from_tyk(-1, 3600), None);
        assert_eq!(Quota::from_tyk(0, 3600), None);
        assert_eq!(
            Quota::from_tyk(100, 3600),
            Some(Quota::new(100, Some(Duration::from_secs(3600))))
        );
        assert_eq!(Quota::from_tyk(100, 0), Some(Quota::new(100, None)));
        assert_eq!(Quota::from_tyk(100, -5), Some(Quota::new(100, None)));
    }
}
