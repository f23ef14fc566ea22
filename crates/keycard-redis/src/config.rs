//! Building a [`RedisStore`](crate::RedisStore): topology, timeouts, prefix, replica acknowledgements, cache.

use std::time::Duration;

use fred::prelude::{Builder, ReconnectPolicy};
use fred::types::RespVersion;
use fred::types::config::UnresponsiveConfig;
use keycard_core::store::DEFAULT_EXPIRY_GRACE;

use crate::cache::CacheConfig;

/// The default command timeout: a hung Redis turns into [`StoreError::Unavailable`] after this.
///
/// [`StoreError::Unavailable`]: keycard_core::store::StoreError::Unavailable
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(1);
/// The default timeout to open a connection (TCP and TLS handshake, `HELLO`, `AUTH`).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// The default key prefix.
pub const DEFAULT_PREFIX: &str = "keycard";

/// Why a [`RedisStore`](crate::RedisStore) could not be built or connected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The configuration is invalid (URL, prefix, TLS without the `tls` feature...).
    #[error("invalid Redis store configuration: {0}")]
    Config(String),
    /// Redis could not be reached or set up within the connect timeout.
    #[error("could not connect to Redis")]
    Connect(#[source] fred::error::Error),
}

/// Builds a [`RedisStore`](crate::RedisStore); start from
/// [`RedisStore::url`](crate::RedisStore::url), [`config`](crate::RedisStore::config),
/// [`fred_builder`](crate::RedisStore::fred_builder), [`sentinel`](crate::RedisStore::sentinel)
/// or [`cluster`](crate::RedisStore::cluster); finish with
/// [`connect`](RedisStoreBuilder::connect).
///
/// The store always runs with a reconnect policy, a connect timeout, a command timeout and
/// unresponsive-connection detection; those fred settings are owned by this builder (values set
/// on a fred [`Builder`] for them are replaced, except a reconnect policy, which is kept).
#[derive(Clone)]
#[must_use]
pub struct RedisStoreBuilder {
    pub(crate) fred: Builder,
    pub(crate) prefix: String,
    pub(crate) command_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) expiry_grace: Duration,
    pub(crate) min_replicas_ack: u32,
    pub(crate) ack_connections: usize,
    pub(crate) cache: Option<CacheConfig>,
    /// PEM root certificates given to `tls_root_certificate`, applied by `finish`.
    #[cfg(feature = "tls")]
    pub(crate) tls_roots: Option<Vec<u8>>,
}

/// The default size of the connection pool of writes that wait for replicas.
pub const DEFAULT_ACK_CONNECTIONS: usize = 4;

/// Shows the servers and settings, never the credentials (fred's own `Debug` of its config
/// prints the password).
impl std::fmt::Debug for RedisStoreBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let config = self.fred.get_config();
        let servers: Vec<String> = config
            .map(|config| {
                config
                    .server
                    .hosts()
                    .iter()
                    .map(|server| format!("{}:{}", server.host, server.port))
                    .collect()
            })
            .unwrap_or_default();
        f.debug_struct("RedisStoreBuilder")
            .field("servers", &servers)
            .field(
                "username",
                &config
                    .and_then(|c| c.username.as_deref())
                    .map(|_| "<redacted>"),
            )
            .field(
                "password",
                &config
                    .and_then(|c| c.password.as_deref())
                    .map(|_| "<redacted>"),
            )
            .field("prefix", &self.prefix)
            .field("command_timeout", &self.command_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("expiry_grace", &self.expiry_grace)
            .field("min_replicas_ack", &self.min_replicas_ack)
            .field("ack_connections", &self.ack_connections)
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}

/// `url` with any userinfo (`user:password@`) replaced by `***@`, for logs and messages:
/// `redis://default:s3cret@cache:6379/0` → `redis://***@cache:6379/0`.
///
/// ```
/// assert_eq!(
///     keycard_redis::redact_url("redis://default:s3cret@cache:6379/0"),
///     "redis://***@cache:6379/0"
/// );
/// assert_eq!(keycard_redis::redact_url("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
/// ```
pub fn redact_url(url: &str) -> std::borrow::Cow<'_, str> {
    let authority_start = url.find("://").map_or(0, |i| i + 3);
    let rest = &url[authority_start..];
    // Up to the query: a password with an unescaped `/` must not end the search early, and
    // Redis URLs have no `@` in their path (`/db`).
    let (before_query, query) = rest.split_at(rest.find(['?', '#']).unwrap_or(rest.len()));
    let masked_query = redact_query(query);
    let scheme = &url[..authority_start];
    match before_query.rfind('@') {
        Some(at) => {
            std::borrow::Cow::Owned(format!("{scheme}***{}{masked_query}", &before_query[at..]))
        }
        None if masked_query != query => {
            std::borrow::Cow::Owned(format!("{scheme}{before_query}{masked_query}"))
        }
        None => std::borrow::Cow::Borrowed(url),
    }
}

/// `query` (with its leading `?`) with the value of every parameter whose name mentions a
/// password (`password`, `sentinelPassword`...) replaced by `***`.
fn redact_query(query: &str) -> String {
    let Some(params) = query.strip_prefix('?') else {
        return query.to_owned();
    };
    let masked: Vec<String> = params
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if name.to_ascii_lowercase().contains("password") => {
                format!("{name}=***")
            }
            _ => pair.to_owned(),
        })
        .collect();
    format!("?{}", masked.join("&"))
}

impl RedisStoreBuilder {
    pub(crate) fn new(fred: Builder) -> Self {
        Self {
            fred,
            prefix: DEFAULT_PREFIX.to_owned(),
            command_timeout: DEFAULT_COMMAND_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            expiry_grace: DEFAULT_EXPIRY_GRACE,
            min_replicas_ack: 0,
            ack_connections: DEFAULT_ACK_CONNECTIONS,
            cache: None,
            #[cfg(feature = "tls")]
            tls_roots: None,
        }
    }

    /// The prefix of every key the store writes (default `keycard`). It must not contain `{` or
    /// `}`: the layout puts hash tags after it.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long one command may take before it fails with `Unavailable` (default 1 s). This
    /// includes time spent queued while the client reconnects.
    pub fn command_timeout(mut self, timeout: Duration) -> Self {
        self.command_timeout = timeout;
        self
    }

    /// How long opening a connection may take (default 2 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long an expired session is kept (and loadable, so requests get 401 "expired" rather than
    /// 403) before Redis drops it: its TTL ends at `expires + grace` (default
    /// [`DEFAULT_EXPIRY_GRACE`], as `MemoryStore`).
    pub fn expiry_grace(mut self, grace: Duration) -> Self {
        self.expiry_grace = grace;
        self
    }

    /// The reconnect policy (default: exponential backoff from 50 ms to 500 ms, forever).
    pub fn reconnect_policy(mut self, policy: ReconnectPolicy) -> Self {
        self.fred.set_policy(policy);
        self
    }

    /// Every write waits until `replicas` replicas acknowledged it (`WAIT`) before it reports
    /// success, so a write that returned `Ok` survives a failover. Default 0 (no wait).
    ///
    /// The wait is bounded: `WAIT` gets three quarters of the command timeout. Too few
    /// acknowledgements make the write fail with `Unavailable`; so does a reconnection between
    /// the write and its `WAIT` (which could otherwise count the replicas of another
    /// connection). In both cases the write itself may still have happened on the primary.
    ///
    /// Such writes run on a pool of [`ack_connections`](Self::ack_connections) connections of
    /// their own (per node), each taken by one write at a time: `WAIT` blocks the connection it is
    /// sent on, and loads and other commands stay on the shared connection, never queued behind
    /// a write waiting for replicas. A write costs one round trip more than without
    /// acknowledgements (`CLIENT SETNAME`, the script, then `WAIT` with `CLIENT GETNAME`).
    pub fn min_replicas_ack(mut self, replicas: u32) -> Self {
        self.min_replicas_ack = replicas;
        self
    }

    /// How many writes may wait for replicas at once (default [`DEFAULT_ACK_CONNECTIONS`]):
    /// the size of the connection pool of [`min_replicas_ack`](Self::min_replicas_ack). A write
    /// that finds every connection taken waits for one, within the command timeout. Unused
    /// without `min_replicas_ack`; values below 1 count as 1.
    pub fn ack_connections(mut self, connections: usize) -> Self {
        self.ack_connections = connections.max(1);
        self
    }

    /// Connects with TLS and trusts only the certificate authorities in `pem` (one or more PEM
    /// `CERTIFICATE` blocks) for the server's certificate, instead of the system's roots: for a
    /// private CA, or a self-signed server certificate. TLS is used whatever the URL's scheme
    /// (`redis://` too). The server's name (or IP address) must match its certificate.
    /// A PEM holding no certificate, or one that does not parse, is refused by
    /// [`connect`](Self::connect) with [`ConnectError::Config`]; a server whose certificate
    /// the roots do not vouch for is [`ConnectError::Connect`] within the connect timeout.
    /// Feature `tls`.
    #[cfg(feature = "tls")]
    pub fn tls_root_certificate(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.tls_roots = Some(pem.into());
        self
    }

    /// Puts a local cache in front of Redis (off by default). Uses RESP3 client tracking.
    pub fn cache(mut self, cache: CacheConfig) -> Self {
        self.cache = Some(cache);
        self
    }

    /// Validates the settings and applies them to the fred builder.
    pub(crate) fn finish(mut self) -> Result<Self, ConnectError> {
        if self.prefix.is_empty() || self.prefix.contains(['{', '}']) {
            return Err(ConnectError::Config(format!(
                "the key prefix {:?} must be non-empty and contain no braces",
                self.prefix
            )));
        }
        if self.command_timeout.is_zero() || self.connect_timeout.is_zero() {
            return Err(ConnectError::Config(
                "command and connect timeouts must be non-zero".into(),
            ));
        }
        let mut config = self.fred.get_config().cloned().unwrap_or_default();
        #[cfg(feature = "tls")]
        if let Some(pem) = &self.tls_roots {
            config.tls = Some(crate::tls::pem_roots(pem, config.tls.as_ref())?);
        }
        if self.cache.is_some() {
            // Client tracking pushes invalidations on the data connection: RESP3 only.
            config.version = RespVersion::RESP3;
        }
        // Errors at the first connection are returned from `connect`; later ones reconnect.
        config.fail_fast = true;
        self.fred.set_config(config);
        if self.fred.get_policy().is_none() {
            self.fred
                .set_policy(ReconnectPolicy::new_exponential(0, 50, 500, 2));
        }
        let (command, connect) = (self.command_timeout, self.connect_timeout);
        self.fred.with_performance_config(|perf| {
            perf.default_command_timeout = command;
        });
        self.fred.with_connection_config(|conn| {
            conn.connection_timeout = connect;
            // Every session load is a small request on a pipelined connection that carries
            // many requests at once: Nagle's algorithm would hold each write back until the
            // previous one is acknowledged. Kept when the fred builder set it either way.
            conn.tcp.nodelay.get_or_insert(true);
            conn.internal_command_timeout = connect.max(command);
            // A hung server (alive TCP, no replies) is dropped and reconnected, so a failover
            // (sentinel, cluster) is followed even when the old primary never closes the socket.
            let max = (command * 3).max(Duration::from_millis(500));
            conn.unresponsive = UnresponsiveConfig {
                max_timeout: Some(max),
                interval: (max / 4).max(Duration::from_millis(50)),
            };
        });
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RedisStore;

    #[cfg(not(feature = "tls"))]
    #[test]
    fn rediss_without_tls_is_refused_rather_than_sent_in_plain_text() {
        assert!(matches!(
            RedisStore::url("rediss://127.0.0.1:6379"),
            Err(ConnectError::Config(_))
        ));
    }

    #[test]
    fn debug_output_never_shows_the_credentials() {
        let builder = RedisStore::url("redis://admin:s3cret-pass@127.0.0.1:6380/0").unwrap();
        let shown = format!("{builder:?}");
        assert!(
            !shown.contains("s3cret-pass") && !shown.contains("admin"),
            "{shown}"
        );
        assert!(
            shown.contains("127.0.0.1:6380") && shown.contains("<redacted>"),
            "{shown}"
        );
        let error = RedisStore::url("redis://admin:s3cret-pass@[not a host/0")
            .map(|_| ())
            .unwrap_err();
        assert!(!error.to_string().contains("s3cret-pass"), "{error}");
    }

    #[test]
    fn redacted_urls_keep_everything_but_the_userinfo() {
        for (url, shown) in [
            (
                "redis://default:pw@cache:6379/0",
                "redis://***@cache:6379/0",
            ),
            ("redis://:pw@cache", "redis://***@cache"),
            (
                "rediss://user:p@ss@host:1?x=a@b",
                "rediss://***@host:1?x=a@b",
            ),
            (
                "redis://host:6379/0?password@x",
                "redis://host:6379/0?password@x",
            ),
            ("redis://:ab/cd@host:6379", "redis://***@host:6379"),
            (
                "redis-sentinel://h:26379?sentinelPassword=s3cret&sentinelServiceName=m",
                "redis-sentinel://h:26379?sentinelPassword=***&sentinelServiceName=m",
            ),
            (
                "redis-cluster://u:p@h:1?node=h2:2",
                "redis-cluster://***@h:1?node=h2:2",
            ),
        ] {
            assert_eq!(redact_url(url), shown, "{url}");
        }
    }

    #[test]
    fn prefixes_with_braces_are_refused() {
        let builder = RedisStore::url("redis://127.0.0.1:6379").unwrap();
        assert!(builder.clone().prefix("a{b").finish().is_err());
        assert!(builder.clone().prefix("").finish().is_err());
        assert!(builder.prefix("ok:prefix").finish().is_ok());
    }

    #[test]
    fn timeouts_and_a_reconnect_policy_are_always_set() {
        let builder = RedisStore::url("redis://127.0.0.1:6379")
            .unwrap()
            .command_timeout(Duration::from_millis(300))
            .finish()
            .unwrap();
        assert!(builder.fred.get_policy().is_some());
        assert_eq!(
            builder
                .fred
                .get_performance_config()
                .default_command_timeout,
            Duration::from_millis(300)
        );
        assert_eq!(
            builder.fred.get_connection_config().connection_timeout,
            DEFAULT_CONNECT_TIMEOUT
        );
    }

    #[test]
    fn nodelay_is_on_unless_the_fred_builder_chose() {
        let builder = RedisStore::url("redis://127.0.0.1:6379")
            .unwrap()
            .finish()
            .unwrap();
        assert_eq!(builder.fred.get_connection_config().tcp.nodelay, Some(true));

        let mut fred = fred::prelude::Builder::default_centralized();
        fred.with_connection_config(|conn| conn.tcp.nodelay = Some(false));
        let builder = RedisStore::fred_builder(fred).finish().unwrap();
        assert_eq!(
            builder.fred.get_connection_config().tcp.nodelay,
            Some(false)
        );
    }
}
