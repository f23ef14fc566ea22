//! [`RedisRateLimiter`]: the rates and quotas of
//! [`MemoryRateLimiter`](keycard_core::ratelimit::MemoryRateLimiter), in Redis, shared by every
//! instance and kept across restarts.
//!
//! One check is one `EVALSHA` of one script over the bucket's keys, which share one hash tag
//! (one cluster slot): `P:{r:<bucket>}` (the sliding window: a sorted set of the admitted
//! requests' times, in microseconds), `P:{r:<bucket>}:g` (GCRA: the theoretical arrival time)
//! and `P:{r:<bucket>}:q` (the quota: a counter whose TTL is the renewal period). The script
//! checks the rate, then the quota, and counts the request against both only when both admit
//! it, atomically, with the time from the server (`TIME`): every instance reads one clock, so
//! no read-modify-write race and no clock skew between instances. Rate keys idle for a window
//! expire by themselves; a quota counter expires when its period ends (never, without renewal).
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use keycard_core::ratelimit::{Limit, Limits, RateLimiter};
//! use keycard_redis::{RedisRateLimiter, RedisStore};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = RedisStore::connect("redis://127.0.0.1:6379").await?;
//! let limiter = RedisRateLimiter::new(&store); // the store's connection and prefix
//! let limits = Limits::rate(Limit::new(100, Duration::from_secs(60)));
//! let decision = limiter.check("k:some-key-id", limits).await?;
//! assert!(decision.allowed());
//! # Ok(())
//! # }
//! ```

use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use fred::clients::Client;
use fred::interfaces::{ClientLike, KeysInterface};
use fred::types::scripts::Script;
use keycard_core::ratelimit::{
    Algorithm, Decision, LimiterFuture, Limits, Quota, QuotaState, RateLimiter, RateState, Verdict,
};
use keycard_core::store::StoreError;

use crate::store::{RedisStore, store_error};

/// `KEYS`: the sliding window's sorted set, the GCRA arrival time, the quota counter.
/// `ARGV[1]`, space-separated: algorithm (0 no rate, 1 sliding window, 2 GCRA), requests,
/// window (µs), quota max (0 no quota), renewal (ms, 0 never), a member unique to this call.
/// Returns, space-separated: verdict (0 admitted, 1 rate limited, 2 quota exceeded), rate
/// remaining, µs until a slot frees, quota used, quota PTTL (ms, negative: no period).
///
/// One argument in, one string out: each RESP frame costs the client far more than a split or
/// a concat costs the script.
///
/// The rate is checked, then the quota; nothing is counted unless both admit. Refused requests
/// are not logged (Tyk's rolling limiter logs them, so a client retrying in a loop never gets
/// through). Times are microseconds since the epoch, below 2^53 (Lua numbers are doubles), so
/// every number stays exact. `replicate_commands` lets a script write after `TIME` on Redis
/// before 5 (it is the default, and a no-op, from Redis 5 on).
const CHECK: &str = r"
if redis.replicate_commands then redis.replicate_commands() end
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local arg = {}
for word in string.gmatch(ARGV[1], '%S+') do arg[#arg + 1] = word end
local algorithm = tonumber(arg[1])
local requests = tonumber(arg[2])
local window = tonumber(arg[3])
local quota_max = tonumber(arg[4])
local renewal = tonumber(arg[5])
local verdict = 0
local tat, interval = 0, 1
if algorithm == 1 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
  if redis.call('ZCARD', KEYS[1]) >= requests then verdict = 1 end
elseif algorithm == 2 then
  interval = math.max(math.floor(window / requests), 1)
  tat = math.max(tonumber(redis.call('GET', KEYS[2]) or 0), now)
  if tat + interval - now > window then verdict = 1 end
end
local used = 0
if quota_max > 0 then
  used = tonumber(redis.call('GET', KEYS[3]) or 0)
  if verdict == 0 and used >= quota_max then verdict = 2 end
end
if verdict == 0 then
  if algorithm == 1 then
    redis.call('ZADD', KEYS[1], now, arg[6])
    redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000))
  elseif algorithm == 2 then
    tat = tat + interval
    redis.call('SET', KEYS[2], tat, 'PX', math.ceil((tat - now) / 1000))
  end
  if quota_max > 0 then
    used = redis.call('INCR', KEYS[3])
    if renewal > 0 and redis.call('PTTL', KEYS[3]) < 0 then
      redis.call('PEXPIRE', KEYS[3], renewal)
    end
  end
end
local remaining, reset = 0, 0
if algorithm == 1 then
  remaining = math.max(requests - redis.call('ZCARD', KEYS[1]), 0)
  reset = window
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  if oldest[2] then reset = tonumber(oldest[2]) + window - now end
elseif algorithm == 2 then
  if verdict == 1 then
    reset = math.max(tat + interval - window - now, 0)
  else
    reset = tat - now
    remaining = math.floor((window - reset) / interval)
  end
end
local ttl = -2
if quota_max > 0 then ttl = redis.call('PTTL', KEYS[3]) end
-- %d takes a C long: keep an absurd rate's remaining count exact and in range.
remaining = math.min(remaining, 9007199254740992)
return string.format('%d %d %d %d %d', verdict, remaining, reset, used, ttl)
";

/// `KEYS[1]`: a quota counter. Returns `{used, PTTL}`.
const QUOTA: &str = r"
return {tonumber(redis.call('GET', KEYS[1]) or 0), redis.call('PTTL', KEYS[1])}
";

/// A [`RateLimiter`] on Redis: rates (an exact sliding window, or GCRA) and quotas shared by
/// every instance using the same Redis and prefix. Cheap to clone. Works on standalone,
/// sentinel and cluster (one hash tag per bucket).
#[derive(Clone)]
pub struct RedisRateLimiter {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    prefix: String,
    check: Script,
    quota: Script,
    algorithm: Algorithm,
    /// Members of the sorted sets: this limiter's random id and a counter, unique across
    /// instances.
    id: u64,
    counter: AtomicU64,
}

impl RedisRateLimiter {
    /// A sliding-window limiter on `store`'s connection, with keys under its prefix (and its
    /// timeouts: a dead Redis fails a check within the command timeout).
    ///
    /// With a cached store ([`has_cache`](RedisStore::has_cache)) prefer
    /// [`connect`](Self::connect): the store's connection has client tracking on, so Redis
    /// would remember every rate-limit key a check reads and push an invalidation for it back
    /// on the next check (a wasted message per check, and rate-limit keys crowding the server's
    /// tracking table, whose overflow invalidates cached sessions).
    pub fn new(store: &RedisStore) -> Self {
        if store.has_cache() {
            tracing::warn!(
                "RedisRateLimiter::new on a cached RedisStore shares its tracked connection; use RedisRateLimiter::connect"
            );
        }
        Self::from_client(store.client().clone(), store.prefix())
    }

    /// A sliding-window limiter with keys under `store`'s prefix: on the store's connection, or,
    /// when the store is cached (client tracking on), on a connection of its own with the same
    /// configuration and no tracking.
    ///
    /// # Errors
    /// When the limiter's own connection cannot be opened.
    pub async fn connect(store: &RedisStore) -> Result<Self, StoreError> {
        if !store.has_cache() {
            return Ok(Self::new(store));
        }
        let client = store.client().clone_new();
        client.init().await.map_err(store_error)?;
        Ok(Self::from_client(client, store.prefix()))
    }

    /// A limiter on a connected fred client, with keys under `prefix`.
    pub fn from_client(client: Client, prefix: impl Into<String>) -> Self {
        Self::build(client, prefix.into(), Algorithm::default())
    }

    fn build(client: Client, prefix: String, algorithm: Algorithm) -> Self {
        Self {
            inner: Arc::new(Inner {
                client,
                prefix,
                check: Script::from_lua(CHECK),
                quota: Script::from_lua(QUOTA),
                algorithm,
                id: RandomState::new().hash_one(std::process::id()),
                counter: AtomicU64::new(0),
            }),
        }
    }

    /// The same limiter counting rates with `algorithm`. Each algorithm keeps its own key, so
    /// switching starts the rates over (quotas are kept).
    pub fn algorithm(self, algorithm: Algorithm) -> Self {
        Self::build(
            self.inner.client.clone(),
            self.inner.prefix.clone(),
            algorithm,
        )
    }

    /// The fred client the checks go through (diagnostics, tests).
    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    /// The Redis key of `bucket`'s sliding window: `<prefix>:{r:<bucket>}`; its GCRA time and
    /// its quota counter add `:g` and `:q`.
    pub fn bucket_key(&self, bucket: &str) -> String {
        format!("{}:{{r:{bucket}}}", self.inner.prefix)
    }
}

impl std::fmt::Debug for RedisRateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisRateLimiter")
            .field("prefix", &self.inner.prefix)
            .field("algorithm", &self.inner.algorithm)
            .finish_non_exhaustive()
    }
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros())
        .unwrap_or(u64::MAX)
        .max(1)
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}

/// A PTTL reply as the time until the period ends (`None`: no key, or no TTL).
fn renews_after(pttl: i64) -> Option<Duration> {
    u64::try_from(pttl).ok().map(Duration::from_millis)
}

fn non_negative(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

impl RateLimiter for RedisRateLimiter {
    fn check<'a>(&'a self, bucket: &'a str, limits: Limits) -> LimiterFuture<'a> {
        Box::pin(async move {
            let inner = &*self.inner;
            let window_key = self.bucket_key(bucket);
            let (gcra_key, quota_key) = (format!("{window_key}:g"), format!("{window_key}:q"));
            let keys = vec![window_key, gcra_key, quota_key];
            let (algorithm, requests, window) = match (limits.rate, inner.algorithm) {
                (None, _) => (0, 0, 0),
                (Some(limit), Algorithm::Gcra) => (2, limit.requests(), micros(limit.window())),
                (Some(limit), _) => (1, limit.requests(), micros(limit.window())),
            };
            let (quota_max, renewal) = limits.quota.map_or((0, 0), |quota: Quota| {
                (quota.max(), quota.renewal().map_or(0, millis))
            });
            let args = format!(
                "{algorithm} {requests} {window} {quota_max} {renewal} {:x}:{:x}",
                inner.id,
                inner.counter.fetch_add(1, Ordering::Relaxed)
            );
            let reply: String = inner
                .check
                .evalsha_with_reload(&inner.client, keys, vec![args])
                .await
                .map_err(store_error)?;
            let corrupt = || StoreError::Corrupt(format!("rate-limit script replied {reply:?}"));
            let mut numbers = reply.split(' ').map(str::parse::<i64>);
            let mut next = || numbers.next().and_then(Result::ok).ok_or_else(corrupt);
            let (verdict, remaining, reset, used, ttl) =
                (next()?, next()?, next()?, next()?, next()?);
            let verdict = match verdict {
                0 => Verdict::Allowed,
                1 => Verdict::RateLimited,
                2 => Verdict::QuotaExceeded,
                other => {
                    return Err(StoreError::Corrupt(format!(
                        "rate-limit script gave verdict {other}"
                    )));
                }
            };
            Ok(Decision {
                verdict,
                rate: limits.rate.map(|limit| RateState {
                    limit: limit.requests(),
                    window: limit.window(),
                    remaining: non_negative(remaining),
                    reset_after: Duration::from_micros(non_negative(reset)),
                }),
                quota: limits.quota.map(|quota| QuotaState {
                    limit: quota.max(),
                    period: quota.renewal(),
                    remaining: quota.max().saturating_sub(non_negative(used)),
                    renews_after: renews_after(ttl),
                }),
            })
        })
    }

    fn quota<'a>(&'a self, bucket: &'a str, quota: Quota) -> LimiterFuture<'a, QuotaState> {
        Box::pin(async move {
            let inner = &*self.inner;
            let key = format!("{}:q", self.bucket_key(bucket));
            let reply: Vec<i64> = inner
                .quota
                .evalsha_with_reload(&inner.client, vec![key], Vec::<String>::new())
                .await
                .map_err(store_error)?;
            let [used, ttl] = reply[..] else {
                return Err(StoreError::Corrupt(format!(
                    "quota script replied {reply:?}"
                )));
            };
            Ok(QuotaState {
                limit: quota.max(),
                period: quota.renewal(),
                remaining: quota.max().saturating_sub(non_negative(used)),
                renews_after: renews_after(ttl),
            })
        })
    }

    fn reset_quota<'a>(&'a self, bucket: &'a str) -> LimiterFuture<'a, ()> {
        Box::pin(async move {
            let key = format!("{}:q", self.bucket_key(bucket));
            let _: i64 = self.inner.client.del(key).await.map_err(store_error)?;
            Ok(())
        })
    }
}
