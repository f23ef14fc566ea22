//! What a check counts against ([`Limit`], [`Quota`], [`Limits`], [`Algorithm`]) and what it
//! answers ([`Decision`]).

use std::time::Duration;

/// "At most `requests` requests in any `window`".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Limit {
    pub(super) requests: u64,
    pub(super) window: Duration,
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
    pub(super) max: u64,
    pub(super) renewal: Option<Duration>,
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

/// The quota's state after a check (or a look, [`RateLimiter::quota`](super::RateLimiter::quota)).
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
