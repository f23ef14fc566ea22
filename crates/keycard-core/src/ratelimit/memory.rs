//! [`MemoryRateLimiter`]: the in-process backend.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::store::StoreError;

use super::clock::{Clock, SystemClock};
use super::limiter::{LimiterFuture, RateLimiter};
use super::limits::{Algorithm, Decision, Limit, Limits, Quota, QuotaState, RateState, Verdict};

/// The default bound on the number of buckets a [`MemoryRateLimiter`] keeps.
pub const DEFAULT_MAX_BUCKETS: usize = 100_000;

const SHARDS: usize = 16;

/// The in-process limiter: rates ([`Algorithm::SlidingWindow`], exact, or [`Algorithm::Gcra`])
/// and quotas per bucket, in memory.
///
/// Exact for one process (several instances each count their own requests: share a Redis
/// limiter across instances); what it counted is lost with the process — quotas that must
/// survive a restart belong in Redis. Memory per bucket: one timestamp per admitted request
/// still in its window (sliding window) or one number (GCRA), plus a counter when it has a
/// quota. The number of buckets is bounded ([`max_buckets`](Self::max_buckets)): when a shard
/// is full, buckets with nothing left to count (window empty, quota period over or unused) are
/// dropped first, then the least recently used one, which forgets its counts: the bound errs
/// on the side of admitting, so set it above the number of keys and patterns you serve.
///
/// Why not `governor`: its GCRA is a smoothed rate with a burst allowance, not "N per window",
/// so it cannot give Tyk's rolling-limiter answer (100 requests at once, then nothing until the
/// first leaves the window); and its quota is fixed per limiter, where keycard's limits come from
/// each session. The GCRA mode here is the same algorithm as governor's, kept as one number per
/// bucket in the same shards as the windows and quotas.
#[derive(Clone)]
pub struct MemoryRateLimiter {
    inner: Arc<Inner>,
}

struct Inner {
    shards: Vec<Mutex<HashMap<String, Bucket>>>,
    hasher: RandomState,
    clock: Arc<dyn Clock>,
    per_shard: usize,
    algorithm: Algorithm,
}

#[derive(Default)]
struct Bucket {
    /// Sliding window: admission times (nanoseconds on the clock), oldest first.
    log: VecDeque<u64>,
    /// GCRA: the theoretical arrival time of the next request (nanoseconds on the clock).
    tat: u64,
    /// The rate window last checked, to tell an idle bucket.
    window: u64,
    /// The last check, for the least-recently-used eviction.
    last: u64,
    quota: Counter,
}

/// A quota's count in its current period.
#[derive(Clone, Copy, Default)]
struct Counter {
    used: u64,
    /// When the period ends (nanoseconds on the clock); `None`: none started, or never renews.
    ends: Option<u64>,
}

impl Counter {
    /// The counter as of `now`: a period that ended is over.
    fn renew(&mut self, now: u64) {
        if self.ends.is_some_and(|ends| ends <= now) {
            *self = Self::default();
        }
    }

    fn state(&self, quota: Quota, now: u64) -> QuotaState {
        QuotaState {
            limit: quota.max,
            period: quota.renewal,
            remaining: quota.max.saturating_sub(self.used),
            renews_after: self
                .ends
                .map(|ends| Duration::from_nanos(ends.saturating_sub(now))),
        }
    }
}

impl Bucket {
    fn idle(&self, now: u64) -> bool {
        let window_empty = self
            .log
            .back()
            .is_none_or(|&at| at.saturating_add(self.window) <= now)
            && self.tat <= now;
        let quota_unused = self.quota.used == 0 || self.quota.ends.is_some_and(|ends| ends <= now);
        window_empty && quota_unused
    }
}

impl MemoryRateLimiter {
    /// A sliding-window limiter on the system clock, keeping at most [`DEFAULT_MAX_BUCKETS`]
    /// buckets.
    pub fn new() -> Self {
        Self::build(
            Arc::new(SystemClock::new()),
            DEFAULT_MAX_BUCKETS,
            Algorithm::default(),
        )
    }

    fn build(clock: Arc<dyn Clock>, max_buckets: usize, algorithm: Algorithm) -> Self {
        Self {
            inner: Arc::new(Inner {
                shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
                hasher: RandomState::new(),
                clock,
                per_shard: max_buckets.div_ceil(SHARDS).max(1),
                algorithm,
            }),
        }
    }

    /// The same limiter reading `clock` (its buckets start empty).
    pub fn clock(self, clock: impl Clock) -> Self {
        let inner = &self.inner;
        Self::build(Arc::new(clock), inner.per_shard * SHARDS, inner.algorithm)
    }

    /// At most about `max` buckets (rounded up to a multiple of 16; its buckets start empty).
    pub fn max_buckets(self, max: usize) -> Self {
        Self::build(self.inner.clock.clone(), max, self.inner.algorithm)
    }

    /// The same limiter counting rates with `algorithm` (its buckets start empty).
    pub fn algorithm(self, algorithm: Algorithm) -> Self {
        let inner = &self.inner;
        Self::build(inner.clock.clone(), inner.per_shard * SHARDS, algorithm)
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

    fn shard(&self, bucket: &str) -> std::sync::MutexGuard<'_, HashMap<String, Bucket>> {
        let inner = &*self.inner;
        let shard = &inner.shards[(inner.hasher.hash_one(bucket) as usize) % SHARDS];
        // Every mutation under the lock completes before anything can panic: a poisoned lock
        // is sound.
        shard.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The check, synchronously.
    pub fn check_sync(&self, bucket: &str, limits: Limits) -> Decision {
        let inner = &*self.inner;
        let now = nanos(inner.clock.now());
        let mut shard = self.shard(bucket);
        // One lookup for a known bucket; the key is copied only when the bucket is new.
        if let Some(entry) = shard.get_mut(bucket) {
            return count(entry, limits, inner.algorithm, now);
        }
        if shard.len() >= inner.per_shard {
            evict(&mut shard, now);
        }
        let entry = shard.entry(bucket.to_owned()).or_default();
        count(entry, limits, inner.algorithm, now)
    }

    /// [`RateLimiter::quota`], synchronously.
    pub fn quota_sync(&self, bucket: &str, quota: Quota) -> QuotaState {
        let now = nanos(self.inner.clock.now());
        let mut counter = self
            .shard(bucket)
            .get(bucket)
            .map(|entry| entry.quota)
            .unwrap_or_default();
        counter.renew(now);
        counter.state(quota, now)
    }

    /// [`RateLimiter::reset_quota`], synchronously.
    pub fn reset_quota_sync(&self, bucket: &str) {
        if let Some(entry) = self.shard(bucket).get_mut(bucket) {
            entry.quota = Counter::default();
        }
    }
}

/// One check of one bucket, under its shard's lock.
fn count(entry: &mut Bucket, limits: Limits, algorithm: Algorithm, now: u64) -> Decision {
    entry.last = now;
    let rate = limits.rate.map(|limit| {
        entry.window = nanos(limit.window);
        match algorithm {
            Algorithm::SlidingWindow => Rate::sliding(entry, limit, now),
            Algorithm::Gcra => Rate::gcra(entry, limit, now),
        }
    });
    entry.quota.renew(now);
    let quota_open = limits
        .quota
        .is_none_or(|quota| entry.quota.used < quota.max);
    let verdict = match (&rate, quota_open) {
        (Some(rate), _) if !rate.admits => Verdict::RateLimited,
        (_, false) => Verdict::QuotaExceeded,
        _ => Verdict::Allowed,
    };
    let allowed = verdict == Verdict::Allowed;
    if allowed && let Some(quota) = limits.quota {
        entry.quota.used += 1;
        if entry.quota.ends.is_none() {
            entry.quota.ends = quota
                .renewal
                .map(|renewal| now.saturating_add(nanos(renewal)));
        }
    }
    Decision {
        verdict,
        rate: rate.map(|rate| rate.finish(entry, allowed, now)),
        quota: limits.quota.map(|quota| entry.quota.state(quota, now)),
    }
}

/// A rate check in progress: whether it admits, and what committing it means.
struct Rate {
    limit: Limit,
    admits: bool,
    algorithm: Algorithm,
    /// GCRA: the arrival time after this request, if admitted.
    new_tat: u64,
}

impl Rate {
    fn sliding(entry: &mut Bucket, limit: Limit, now: u64) -> Self {
        let window = nanos(limit.window);
        let start = now.saturating_sub(window);
        while entry
            .log
            .front()
            .is_some_and(|&at| at <= start && now >= window)
        {
            entry.log.pop_front();
        }
        Self {
            limit,
            admits: (entry.log.len() as u64) < limit.requests,
            algorithm: Algorithm::SlidingWindow,
            new_tat: 0,
        }
    }

    fn gcra(entry: &Bucket, limit: Limit, now: u64) -> Self {
        let window = nanos(limit.window);
        let new_tat = entry.tat.max(now).saturating_add(interval(limit));
        Self {
            limit,
            admits: new_tat - now <= window,
            algorithm: Algorithm::Gcra,
            new_tat,
        }
    }

    fn finish(self, entry: &mut Bucket, allowed: bool, now: u64) -> RateState {
        let window = nanos(self.limit.window);
        let requests = self.limit.requests;
        match self.algorithm {
            Algorithm::SlidingWindow => {
                if allowed {
                    entry.log.push_back(now);
                }
                let oldest = entry.log.front().copied().unwrap_or(now);
                RateState {
                    limit: requests,
                    window: self.limit.window,
                    remaining: requests.saturating_sub(entry.log.len() as u64),
                    reset_after: Duration::from_nanos((oldest + window).saturating_sub(now)),
                }
            }
            Algorithm::Gcra if !self.admits => RateState {
                limit: requests,
                window: self.limit.window,
                remaining: 0,
                // Admitted once the arrival time after it fits the window again.
                reset_after: Duration::from_nanos(
                    self.new_tat.saturating_sub(window).saturating_sub(now),
                ),
            },
            Algorithm::Gcra => {
                // Refused by the quota, the rate is left as it was.
                let tat = if allowed {
                    entry.tat = self.new_tat;
                    self.new_tat
                } else {
                    entry.tat.max(now)
                };
                let used = tat - now;
                RateState {
                    limit: requests,
                    window: self.limit.window,
                    remaining: (window - used) / interval(self.limit),
                    reset_after: Duration::from_nanos(used),
                }
            }
        }
    }
}

/// GCRA's emission interval: the window over the request count (at least 1 ns).
fn interval(limit: Limit) -> u64 {
    (nanos(limit.window) / limit.requests).max(1)
}

impl Default for MemoryRateLimiter {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for MemoryRateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryRateLimiter")
            .field("algorithm", &self.inner.algorithm)
            .field("buckets", &self.len())
            .finish_non_exhaustive()
    }
}

impl RateLimiter for MemoryRateLimiter {
    fn check<'a>(&'a self, bucket: &'a str, limits: Limits) -> LimiterFuture<'a> {
        Box::pin(std::future::ready(Ok(self.check_sync(bucket, limits))))
    }

    fn check_now(&self, bucket: &str, limits: Limits) -> Option<Result<Decision, StoreError>> {
        Some(Ok(self.check_sync(bucket, limits)))
    }

    fn quota<'a>(&'a self, bucket: &'a str, quota: Quota) -> LimiterFuture<'a, QuotaState> {
        Box::pin(std::future::ready(Ok(self.quota_sync(bucket, quota))))
    }

    fn reset_quota<'a>(&'a self, bucket: &'a str) -> LimiterFuture<'a, ()> {
        self.reset_quota_sync(bucket);
        Box::pin(std::future::ready(Ok(())))
    }
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// Makes room in a full shard: drop idle buckets, else the least recently used one.
fn evict(shard: &mut HashMap<String, Bucket>, now: u64) {
    let before = shard.len();
    shard.retain(|_, bucket| !bucket.idle(now));
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
    use super::super::clock::ManualClock;
    use super::*;

    fn limiter(algorithm: Algorithm) -> (MemoryRateLimiter, ManualClock) {
        let clock = ManualClock::new();
        let limiter = MemoryRateLimiter::new()
            .algorithm(algorithm)
            .clock(clock.clone());
        (limiter, clock)
    }

    fn rate(requests: u64, seconds: u64) -> Limits {
        Limits::rate(Limit::new(requests, Duration::from_secs(seconds)))
    }

    #[test]
    fn admits_exactly_n_per_window_and_frees_slots_as_they_age_out() {
        let (limiter, clock) = limiter(Algorithm::SlidingWindow);
        let limit = rate(3, 10);
        for remaining in [2, 1, 0] {
            let decision = limiter.check_sync("b", limit);
            assert!(decision.allowed());
            assert_eq!(decision.rate.unwrap().remaining, remaining);
            clock.advance(Duration::from_secs(1));
        }
        let refused = limiter.check_sync("b", limit);
        assert_eq!(refused.verdict, Verdict::RateLimited);
        assert_eq!(refused.rate.unwrap().reset_after, Duration::from_secs(7));
        clock.advance(Duration::from_secs(7));
        assert!(limiter.check_sync("b", limit).allowed());
        assert!(!limiter.check_sync("b", limit).allowed());
        clock.advance(Duration::from_secs(1));
        assert!(limiter.check_sync("b", limit).allowed());
    }

    #[test]
    fn refused_requests_are_not_counted() {
        let (limiter, clock) = limiter(Algorithm::SlidingWindow);
        let limit = rate(1, 1);
        assert!(limiter.check_sync("b", limit).allowed());
        for _ in 0..100 {
            assert!(!limiter.check_sync("b", limit).allowed());
        }
        clock.advance(Duration::from_secs(1));
        assert!(limiter.check_sync("b", limit).allowed());
    }

    #[test]
    fn buckets_are_independent() {
        let (limiter, _) = limiter(Algorithm::SlidingWindow);
        let limit = rate(1, 1);
        assert!(limiter.check_sync("a", limit).allowed());
        assert!(limiter.check_sync("b", limit).allowed());
        assert!(!limiter.check_sync("a", limit).allowed());
    }

    #[test]
    fn bucket_count_is_bounded_idle_first() {
        let clock = ManualClock::new();
        let limiter = MemoryRateLimiter::new()
            .clock(clock.clone())
            .max_buckets(16);
        let limit = rate(1, 1);
        for i in 0..1000 {
            limiter.check_sync(&format!("b{i}"), limit);
            if i % 100 == 0 {
                clock.advance(Duration::from_secs(2));
            }
        }
        assert!(limiter.len() <= 16, "{} buckets", limiter.len());
    }

    #[test]
    fn gcra_admits_a_burst_of_n_then_one_per_interval() {
        let (limiter, clock) = limiter(Algorithm::Gcra);
        let limit = rate(4, 4); // one token a second, bursts of 4
        for remaining in [3, 2, 1, 0] {
            let decision = limiter.check_sync("b", limit);
            assert!(decision.allowed());
            assert_eq!(decision.rate.unwrap().remaining, remaining);
        }
        let refused = limiter.check_sync("b", limit);
        assert_eq!(refused.verdict, Verdict::RateLimited);
        assert_eq!(refused.rate.unwrap().reset_after, Duration::from_secs(1));
        clock.advance(Duration::from_millis(999));
        assert!(!limiter.check_sync("b", limit).allowed());
        clock.advance(Duration::from_millis(1));
        assert!(limiter.check_sync("b", limit).allowed(), "one token back");
        assert!(!limiter.check_sync("b", limit).allowed());
        clock.advance(Duration::from_secs(10));
        let full = (0..10)
            .filter(|_| limiter.check_sync("b", limit).allowed())
            .count();
        assert_eq!(full, 4, "a full bucket is N, not more");
    }

    #[test]
    fn quota_counts_to_max_then_renews_after_its_period() {
        let (limiter, clock) = limiter(Algorithm::SlidingWindow);
        let quota = Limits::quota(Quota::new(3, Some(Duration::from_secs(60))));
        let first = limiter.check_sync("b", quota);
        assert_eq!(
            first.quota,
            Some(QuotaState {
                limit: 3,
                period: Some(Duration::from_secs(60)),
                remaining: 2,
                renews_after: Some(Duration::from_secs(60))
            })
        );
        clock.advance(Duration::from_secs(10));
        assert!(limiter.check_sync("b", quota).allowed());
        assert!(limiter.check_sync("b", quota).allowed());
        let refused = limiter.check_sync("b", quota);
        assert_eq!(refused.verdict, Verdict::QuotaExceeded);
        assert_eq!(refused.quota.unwrap().remaining, 0);
        assert_eq!(
            refused.quota.unwrap().renews_after,
            Some(Duration::from_secs(50))
        );
        clock.advance(Duration::from_secs(50));
        assert_eq!(limiter.check_sync("b", quota).quota.unwrap().remaining, 2);
    }

    #[test]
    fn quota_without_renewal_never_renews_until_reset() {
        let (limiter, clock) = limiter(Algorithm::SlidingWindow);
        let quota = Quota::new(1, None);
        assert!(limiter.check_sync("b", Limits::quota(quota)).allowed());
        clock.advance(Duration::from_secs(1_000_000));
        assert!(!limiter.check_sync("b", Limits::quota(quota)).allowed());
        assert_eq!(limiter.quota_sync("b", quota).remaining, 0);
        limiter.reset_quota_sync("b");
        assert_eq!(limiter.quota_sync("b", quota), QuotaState::full(quota));
        assert!(limiter.check_sync("b", Limits::quota(quota)).allowed());
    }

    #[test]
    fn a_request_refused_by_one_limit_is_counted_by_neither() {
        let (limiter, _) = limiter(Algorithm::SlidingWindow);
        let both = rate(2, 60).with_quota(Quota::new(1, None));
        assert!(limiter.check_sync("b", both).allowed());
        let refused = limiter.check_sync("b", both);
        assert_eq!(refused.verdict, Verdict::QuotaExceeded);
        assert_eq!(
            refused.rate.unwrap().remaining,
            1,
            "the rate was not counted"
        );
        limiter.reset_quota_sync("b");
        assert!(limiter.check_sync("b", both).allowed());
        let limited = limiter.check_sync("b", both);
        assert_eq!(limited.verdict, Verdict::RateLimited);
        assert_eq!(limited.quota.unwrap().remaining, 0);
        limiter.reset_quota_sync("b");
        assert_eq!(
            limiter.check_sync("b", both).verdict,
            Verdict::RateLimited,
            "the rate is still full"
        );
        assert_eq!(limiter.quota_sync("b", Quota::new(1, None)).remaining, 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_checks_admit_exactly_the_limit() {
        for (limiter, limits) in [
            (MemoryRateLimiter::new(), rate(100, 60)),
            (
                MemoryRateLimiter::new().algorithm(Algorithm::Gcra),
                rate(100, 3600),
            ),
            (
                MemoryRateLimiter::new(),
                Limits::quota(Quota::new(100, None)),
            ),
        ] {
            let tasks: Vec<_> = (0..1000)
                .map(|_| {
                    let limiter = limiter.clone();
                    tokio::spawn(async move { limiter.check("b", limits).await.unwrap().allowed() })
                })
                .collect();
            let mut allowed = 0;
            for task in tasks {
                allowed += usize::from(task.await.unwrap());
            }
            assert_eq!(allowed, 100, "{limits:?}");
        }
    }
}
