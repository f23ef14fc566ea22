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

mod buckets;
mod clock;
mod limiter;
mod limits;
mod memory;

pub use buckets::{Buckets, DEFAULT_PATTERN_CACHE, PATTERN_KEY, Quotas};
pub use clock::{Clock, ManualClock, SystemClock};
pub use limiter::{LimiterFuture, RateLimiter};
pub use limits::{Algorithm, Decision, Limit, Limits, Quota, QuotaState, RateState, Verdict};
pub use memory::{DEFAULT_MAX_BUCKETS, MemoryRateLimiter};
