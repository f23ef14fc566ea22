//! Throttling of failed admin authentication, per client.
//!
//! Each client (its IP address; an IPv6 client by its /64, which one host usually holds whole)
//! may fail to authenticate `max_failures` times per window; after that every request it makes
//! to an authenticated route is answered 429 with `Retry-After` until the window ends, whether
//! or not its credential is right, so a guess that happens to be right cannot be told apart.
//! Only presented, wrong credentials count: a missing header or a missing scope is not a guess.
//!
//! The table is bounded: past [`MAX_CLIENTS`] entries, expired windows are dropped first, then the
//! oldest. The client address is the TCP peer (`ConnectInfo<SocketAddr>`, set by
//! `into_make_service_with_connect_info`); behind a proxy every client shares the proxy's
//! address, and without `ConnectInfo` every client shares one bucket.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use http::request::Parts;

/// How many clients the table tracks at most.
pub(crate) const MAX_CLIENTS: usize = 10_000;

/// The default number of failures a client may make per window.
pub const DEFAULT_MAX_FAILURES: u32 = 10;
/// The default window of [`DEFAULT_MAX_FAILURES`].
pub const DEFAULT_FAILURE_WINDOW: Duration = Duration::from_secs(60);

/// A failure window of one client.
#[derive(Clone, Copy, Debug)]
struct Window {
    started: Instant,
    failures: u32,
}

/// Failed authentications per client, over fixed windows.
#[derive(Debug)]
pub(crate) struct FailureThrottle {
    max_failures: u32,
    window: Duration,
    clients: Mutex<HashMap<IpAddr, Window>>,
}

impl FailureThrottle {
    pub(crate) fn new(max_failures: u32, window: Duration) -> Self {
        Self {
            max_failures,
            window,
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// How long `client` must wait, when it has used up its failures.
    pub(crate) fn retry_after(&self, client: IpAddr) -> Option<Duration> {
        self.retry_after_at(client, Instant::now())
    }

    fn retry_after_at(&self, client: IpAddr, now: Instant) -> Option<Duration> {
        let clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        let window = clients.get(&client)?;
        let elapsed = now.saturating_duration_since(window.started);
        (window.failures >= self.max_failures && elapsed < self.window)
            .then(|| self.window - elapsed)
    }

    /// Counts a failed authentication of `client`.
    pub(crate) fn failed(&self, client: IpAddr) {
        self.failed_at(client, Instant::now());
    }

    fn failed_at(&self, client: IpAddr, now: Instant) {
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if clients.len() >= MAX_CLIENTS && !clients.contains_key(&client) {
            let window = self.window;
            clients.retain(|_, w| now.saturating_duration_since(w.started) < window);
            if clients.len() >= MAX_CLIENTS
                && let Some(oldest) = clients
                    .iter()
                    .min_by_key(|(_, w)| w.started)
                    .map(|(ip, _)| *ip)
            {
                clients.remove(&oldest);
            }
        }
        let entry = clients.entry(client).or_insert(Window {
            started: now,
            failures: 0,
        });
        if now.saturating_duration_since(entry.started) >= self.window {
            *entry = Window {
                started: now,
                failures: 0,
            };
        }
        entry.failures = entry.failures.saturating_add(1);
    }
}

/// The throttling key of the request's client: its IP address (IPv6 by /64), or the
/// unspecified address when the server does not record peers.
pub(crate) fn client_of(parts: &Parts) -> IpAddr {
    match parts.extensions.get::<ConnectInfo<SocketAddr>>() {
        Some(ConnectInfo(peer)) => match peer.ip() {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !(u128::from(u64::MAX)))),
            },
            v4 => v4,
        },
        None => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));

    #[test]
    fn a_client_is_blocked_after_its_failures_until_the_window_ends() {
        let throttle = FailureThrottle::new(3, Duration::from_secs(60));
        let start = Instant::now();
        for _ in 0..2 {
            throttle.failed_at(A, start);
        }
        assert_eq!(throttle.retry_after_at(A, start), None, "two of three");
        throttle.failed_at(A, start);
        let later = start + Duration::from_secs(20);
        assert_eq!(
            throttle.retry_after_at(A, later),
            Some(Duration::from_secs(40))
        );
        assert_eq!(throttle.retry_after_at(B, later), None, "others unaffected");
        let after = start + Duration::from_secs(60);
        assert_eq!(throttle.retry_after_at(A, after), None);
        throttle.failed_at(A, after);
        assert_eq!(throttle.retry_after_at(A, after), None, "a new window");
    }

    #[test]
    fn the_table_stays_bounded() {
        let throttle = FailureThrottle::new(1, Duration::from_secs(60));
        let now = Instant::now();
        for n in 0..(MAX_CLIENTS as u32 + 5) {
            throttle.failed_at(IpAddr::V4(n.into()), now);
        }
        assert_eq!(throttle.clients.lock().unwrap().len(), MAX_CLIENTS);
    }
}
