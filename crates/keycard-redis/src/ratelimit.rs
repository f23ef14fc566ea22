//! [`RedisRateLimiter`]: the sliding-window log of
//! [`MemoryRateLimiter`](keycard_core::ratelimit::MemoryRateLimiter), in Redis, shared by every
//! instance.
//!
//! One check is one `EVALSHA` of one script on one key (`P:{r:<bucket>}`, a sorted set of the
//! admitted requests' times, in milliseconds). The script trims what left the window
//! (`ZREMRANGEBYSCORE`), counts (`ZCARD`), admits if under the limit (`ZADD`) and sets the TTL to
//! the window (`PEXPIRE`), atomically, with the time from the server (`TIME`): every instance
//! reads one clock, so no read-modify-write race and no clock skew between instances. A bucket
//! idle for a window expires by itself.
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use keycard_core::ratelimit::{Limit, RateLimiter};
//! use keycard_redis::{RedisRateLimiter, RedisStore};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = RedisStore::connect("redis://127.0.0.1:6379").await?;
//! let limiter = RedisRateLimiter::new(&store); // the store's connection and prefix
//! let decision = limiter.check("k:some-key-id", Limit::new(100, Duration::from_secs(60))).await?;
//! assert!(decision.allowed);
//! # Ok(())
//! # }
//! ```

use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use fred::clients::Client;
use fred::types::scripts::Script;
use keycard_core::ratelimit::{Decision, Limit, LimiterFuture, RateLimiter};
use keycard_core::store::StoreError;

use crate::store::{RedisStore, store_error};

/// `KEYS[1]`: the bucket's sorted set. `ARGV`: limit, window (ms), a member unique to this
/// call. Returns `{admitted (0/1), remaining, ms until the oldest entry leaves the window}`.
///
/// Refused requests are not added (Tyk's rolling limiter adds them, so a client retrying in a
/// loop never gets through). Times are milliseconds, so every number stays far below 2^53
/// (Lua numbers are doubles). `replicate_commands` lets a script write after `TIME` on Redis
/// before 5 (it is the default, and a no-op, from Redis 5 on).
const SLIDING_WINDOW: &str = r"
if redis.replicate_commands then redis.replicate_commands() end
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
local admitted = 0
if count < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  count = count + 1
  admitted = 1
end
redis.call('PEXPIRE', KEYS[1], window)
local reset = window
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if oldest[2] then reset = tonumber(oldest[2]) + window - now end
return {admitted, limit - count, reset}
";

/// A [`RateLimiter`] on Redis: an exact sliding window shared by every instance using the same
/// Redis and prefix. Cheap to clone. Works on standalone, sentinel and cluster (one key per
/// check, hash-tagged).
#[derive(Clone)]
pub struct RedisRateLimiter {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    prefix: String,
    script: Script,
    /// Members of the sorted sets: this limiter's random id and a counter, unique across
    /// instances.
    id: u64,
    counter: AtomicU64,
}

impl RedisRateLimiter {
    /// A limiter on `store`'s connection, with keys under its prefix (and its timeouts: a dead
    /// Redis fails a check within the command timeout).
    pub fn new(store: &RedisStore) -> Self {
        Self::from_client(store.client().clone(), store.prefix())
    }

    /// A limiter on a connected fred client, with keys under `prefix`.
    pub fn from_client(client: Client, prefix: impl Into<String>) -> Self {
        Self {
            inner: Arc::new(Inner {
                client,
                prefix: prefix.into(),
                script: Script::from_lua(SLIDING_WINDOW),
                id: RandomState::new().hash_one(std::process::id()),
                counter: AtomicU64::new(0),
            }),
        }
    }

    /// The Redis key of `bucket`: `<prefix>:{r:<bucket>}`.
    pub fn bucket_key(&self, bucket: &str) -> String {
        format!("{}:{{r:{bucket}}}", self.inner.prefix)
    }
}

impl std::fmt::Debug for RedisRateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisRateLimiter")
            .field("prefix", &self.inner.prefix)
            .finish_non_exhaustive()
    }
}

impl RateLimiter for RedisRateLimiter {
    fn check<'a>(&'a self, bucket: &'a str, limit: Limit) -> LimiterFuture<'a> {
        Box::pin(async move {
            let inner = &*self.inner;
            let window = limit.window().as_millis().clamp(1, i64::MAX as u128);
            let member = format!(
                "{:x}:{:x}",
                inner.id,
                inner.counter.fetch_add(1, Ordering::Relaxed)
            );
            let args = vec![limit.requests().to_string(), window.to_string(), member];
            let reply: Vec<i64> = inner
                .script
                .evalsha_with_reload(&inner.client, vec![self.bucket_key(bucket)], args)
                .await
                .map_err(store_error)?;
            let [admitted, remaining, reset] = reply[..] else {
                return Err(StoreError::Corrupt(format!(
                    "rate-limit script replied {reply:?}"
                )));
            };
            Ok(Decision {
                allowed: admitted == 1,
                limit: limit.requests(),
                remaining: u64::try_from(remaining).unwrap_or(0),
                reset_after: Duration::from_millis(u64::try_from(reset).unwrap_or(0)),
            })
        })
    }
}
