//! The [`RateLimiter`] trait.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::limits::{Decision, Limits, Quota, QuotaState};
use crate::store::StoreError;

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
