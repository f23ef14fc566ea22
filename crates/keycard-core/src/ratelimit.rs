//! Rate-limit backends: the [`RateLimiter`] trait, the in-process [`MemoryRateLimiter`] and the
//! [`Clock`] it reads (reference: `docs/ratelimit.md` in the repository).
//!
//! A limiter answers one question per request: may one more request go into bucket `B` under
//! [`Limit`] "N requests per window"? The answer is a [`Decision`] with what the response headers
//! need. Backends are shaped like [`SessionStore`](crate::store::SessionStore): one check is one
//! operation (one round trip to Redis), the future is boxed so the trait is object safe.
//!
//! The memory backend is an exact **sliding-window log** — Tyk's "Redis rolling limiter"
//! semantics: at any instant, the accepted requests of the last `window` number at most `N`.
//! Refused requests are not logged (Tyk logs them too, so a client retrying in a loop is never let
//! through again; keycard lets it through as soon as a slot frees).
//!
//! ```
//! use std::time::Duration;
//!
//! use keycard_core::ratelimit::{Limit, ManualClock, MemoryRateLimiter, RateLimiter};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), keycard_core::store::StoreError> {
//! let clock = ManualClock::new();
//! let limiter = MemoryRateLimiter::new().clock(clock.clone());
//! let limit = Limit::new(2, Duration::from_secs(1));
//!
//! assert!(limiter.check("k:alice", limit).await?.allowed);
//! clock.advance(Duration::from_millis(400));
//! assert_eq!(limiter.check("k:alice", limit).await?.remaining, 0);
//!
//! let refused = limiter.check("k:alice", limit).await?;
//! assert!(!refused.allowed);
//! assert_eq!(refused.reset_after, Duration::from_millis(600)); // the first request leaves then
//!
//! clock.advance(Duration::from_millis(600));
//! assert!(limiter.check("k:alice", limit).await?.allowed);
//! # Ok(())
//! # }
//! ```

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::hash::{BuildHasher, RandomState};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::store::StoreError;

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

/// A limiter's answer for one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request may go on (it was counted if so; refused requests are not).
    pub allowed: bool,
    /// The limit's request count (`X-RateLimit-Limit`).
    pub limit: u64,
    /// Requests left in the window after this one (`X-RateLimit-Remaining`).
    pub remaining: u64,
    /// When the oldest request in the window leaves it, freeing a slot: the wait before a
    /// refused request may be retried (`Retry-After`), the time to `X-RateLimit-Reset`.
    pub reset_after: Duration,
}

/// The future of a [`RateLimiter`] check.
pub type LimiterFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Decision, StoreError>> + Send + 'a>>;

/// A rate-limit backend: counts requests per bucket, atomically.
///
/// A failure is a [`StoreError`] (`Unavailable` when the backend cannot be reached), so the
/// layer treats an unreachable limiter as it treats an unreachable store.
pub trait RateLimiter: Send + Sync + 'static {
    /// Counts one request into `bucket` if `limit` allows it, and says how it went. Concurrent
    /// checks of one bucket never admit more than `limit` between them.
    fn check<'a>(&'a self, bucket: &'a str, limit: Limit) -> LimiterFuture<'a>;
}

impl<T: RateLimiter + ?Sized> RateLimiter for Arc<T> {
    fn check<'a>(&'a self, bucket: &'a str, limit: Limit) -> LimiterFuture<'a> {
        (**self).check(bucket, limit)
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

/// The default bound on the number of buckets a [`MemoryRateLimiter`] keeps.
pub const DEFAULT_MAX_BUCKETS: usize = 100_000;

const SHARDS: usize = 16;

/// The in-process limiter: an exact sliding-window log per bucket, in memory.
///
/// Exact for "N per window" at any instant, for one process (several instances each count
/// their own requests: share a Redis limiter across instances). Memory is one timestamp per
/// admitted request still in its window, per bucket; the number of buckets is bounded
/// ([`max_buckets`](Self::max_buckets)): when a shard is full, buckets with nothing left in
/// their window are dropped first, then the least recently used one (which forgets its count:
/// the bound errs on the side of admitting).
///
/// Why not `governor`: its GCRA is a smoothed rate with a burst allowance, not "N per window",
/// so it cannot give Tyk's rolling-limiter answer (100 requests at once, then nothing until the
/// first leaves the window). It fits the cheap mode (a token bucket), which is left for later.
#[derive(Clone)]
pub struct MemoryRateLimiter {
    inner: Arc<Inner>,
}

struct Inner {
    shards: Vec<Mutex<HashMap<String, Bucket>>>,
    hasher: RandomState,
    clock: Arc<dyn Clock>,
    per_shard: usize,
}

struct Bucket {
    /// Admission times (nanoseconds on the clock), oldest first.
    log: VecDeque<u64>,
    window: u64,
    last: u64,
}

impl MemoryRateLimiter {
    /// A limiter on the system clock, keeping at most [`DEFAULT_MAX_BUCKETS`] buckets.
    pub fn new() -> Self {
        Self::build(Arc::new(SystemClock::new()), DEFAULT_MAX_BUCKETS)
    }

    fn build(clock: Arc<dyn Clock>, max_buckets: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
                hasher: RandomState::new(),
                clock,
                per_shard: max_buckets.div_ceil(SHARDS).max(1),
            }),
        }
    }

    /// The same limiter reading `clock` (its buckets start empty).
    pub fn clock(self, clock: impl Clock) -> Self {
        Self::build(Arc::new(clock), self.inner.per_shard * SHARDS)
    }

    /// At most about `max` buckets (rounded up to a multiple of 16).
    pub fn max_buckets(self, max: usize) -> Self {
        Self::build(self.inner.clock.clone(), max)
    }

    /// The number of buckets held now.
    pub fn len(&self) -> usize {
        self.inner
            .shards
            .iter()
            .map(|shard| shard.lock().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }

    /// Whether no bucket is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The check, synchronously.
    pub fn check_now(&self, bucket: &str, limit: Limit) -> Decision {
        let inner = &*self.inner;
        let now = nanos(inner.clock.now());
        let window = nanos(limit.window);
        let shard = &inner.shards[(inner.hasher.hash_one(bucket) as usize) % SHARDS];
        // Every mutation below completes before anything can panic: a poisoned lock is sound.
        let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
        if !shard.contains_key(bucket) && shard.len() >= inner.per_shard {
            evict(&mut shard, now);
        }
        // Look up by `&str` first: the key is copied only when the bucket is new.
        if !shard.contains_key(bucket) {
            shard.insert(
                bucket.to_owned(),
                Bucket {
                    log: VecDeque::new(),
                    window,
                    last: now,
                },
            );
        }
        let entry = shard.get_mut(bucket).expect("inserted above");
        entry.window = window;
        entry.last = now;
        let start = now.saturating_sub(window);
        while entry
            .log
            .front()
            .is_some_and(|&at| at <= start && now >= window)
        {
            entry.log.pop_front();
        }
        let count = entry.log.len() as u64;
        let allowed = count < limit.requests;
        if allowed {
            entry.log.push_back(now);
        }
        let oldest = entry.log.front().copied().unwrap_or(now);
        Decision {
            allowed,
            limit: limit.requests,
            remaining: limit.requests.saturating_sub(entry.log.len() as u64),
            reset_after: Duration::from_nanos((oldest + window).saturating_sub(now)),
        }
    }
}

impl Default for MemoryRateLimiter {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for MemoryRateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryRateLimiter")
            .field("buckets", &self.len())
            .finish_non_exhaustive()
    }
}

impl RateLimiter for MemoryRateLimiter {
    fn check<'a>(&'a self, bucket: &'a str, limit: Limit) -> LimiterFuture<'a> {
        let decision = self.check_now(bucket, limit);
        Box::pin(std::future::ready(Ok(decision)))
    }
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// Makes room in a full shard: drop idle buckets (nothing in their window), else the least
/// recently used one.
fn evict(shard: &mut HashMap<String, Bucket>, now: u64) {
    let before = shard.len();
    shard.retain(|_, bucket| {
        bucket
            .log
            .back()
            .is_some_and(|&at| at.saturating_add(bucket.window) > now)
    });
    if shard.len() < before {
        return;
    }
    if let Some(oldest) = shard
        .iter()
        .min_by_key(|(_, bucket)| bucket.last)
        .map(|(key, _)| key.clone())
    {
        shard.remove(&oldest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter() -> (MemoryRateLimiter, ManualClock) {
        let clock = ManualClock::new();
        (MemoryRateLimiter::new().clock(clock.clone()), clock)
    }

    #[test]
    fn admits_exactly_n_per_window_and_frees_slots_as_they_age_out() {
        let (limiter, clock) = limiter();
        let limit = Limit::new(3, Duration::from_secs(10));
        for remaining in [2, 1, 0] {
            let decision = limiter.check_now("b", limit);
            assert!(decision.allowed);
            assert_eq!(decision.remaining, remaining);
            clock.advance(Duration::from_secs(1));
        }
        let refused = limiter.check_now("b", limit);
        assert!(!refused.allowed);
        assert_eq!(refused.reset_after, Duration::from_secs(7));
        clock.advance(Duration::from_secs(7));
        assert!(limiter.check_now("b", limit).allowed);
        assert!(!limiter.check_now("b", limit).allowed);
        clock.advance(Duration::from_secs(1));
        assert!(limiter.check_now("b", limit).allowed);
    }

    #[test]
    fn refused_requests_are_not_counted() {
        let (limiter, clock) = limiter();
        let limit = Limit::new(1, Duration::from_secs(1));
        assert!(limiter.check_now("b", limit).allowed);
        for _ in 0..100 {
            assert!(!limiter.check_now("b", limit).allowed);
        }
        clock.advance(Duration::from_secs(1));
        assert!(limiter.check_now("b", limit).allowed);
    }

    #[test]
    fn buckets_are_independent() {
        let (limiter, _) = limiter();
        let limit = Limit::new(1, Duration::from_secs(1));
        assert!(limiter.check_now("a", limit).allowed);
        assert!(limiter.check_now("b", limit).allowed);
        assert!(!limiter.check_now("a", limit).allowed);
    }

    #[test]
    fn bucket_count_is_bounded_idle_first() {
        let clock = ManualClock::new();
        let limiter = MemoryRateLimiter::new()
            .clock(clock.clone())
            .max_buckets(16);
        let limit = Limit::new(1, Duration::from_secs(1));
        for i in 0..1000 {
            limiter.check_now(&format!("b{i}"), limit);
            if i % 100 == 0 {
                clock.advance(Duration::from_secs(2));
            }
        }
        assert!(limiter.len() <= 16, "{} buckets", limiter.len());
    }

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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_checks_admit_exactly_the_limit() {
        let limiter = MemoryRateLimiter::new();
        let limit = Limit::new(100, Duration::from_secs(60));
        let tasks: Vec<_> = (0..1000)
            .map(|_| {
                let limiter = limiter.clone();
                tokio::spawn(async move { limiter.check("b", limit).await.unwrap().allowed })
            })
            .collect();
        let mut allowed = 0;
        for task in tasks {
            allowed += usize::from(task.await.unwrap());
        }
        assert_eq!(allowed, 100);
    }
}
