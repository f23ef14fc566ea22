//! Throttling of failed admin authentication, per client.
//!
//! Each client (its IP address; an IPv6 client by its /64, which one host usually holds whole)
//! may fail to authenticate `max_failures` times per window; after that every credential it
//! presents to an authenticated route is answered 429 with `Retry-After` until the window ends,
//! whether or not it is right, so a guess that happens to be right cannot be told apart.
//! Checks in progress count against the budget, so parallel guesses cannot overrun it. Only
//! presented, wrong credentials count: a missing header, a missing scope, or any
//! `X-Tyk-Authorization` while no Tyk secret is configured is not a guess.
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
    /// Attempts being checked now: each may become a failure, so they count against the
    /// budget until they end (parallel guesses cannot overrun it).
    pending: u32,
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

    /// Starts checking a credential `client` presented: `Err` with how long it must wait when its
    /// failures (counting the attempts still being checked) used up the budget. End the attempt
    /// with [`Attempt::failed`]; dropping it counts as a success.
    pub(crate) fn attempt(&self, client: IpAddr) -> Result<Attempt<'_>, Duration> {
        self.attempt_at(client, Instant::now())
    }

    fn attempt_at(&self, client: IpAddr, now: Instant) -> Result<Attempt<'_>, Duration> {
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if clients.len() >= MAX_CLIENTS && !clients.contains_key(&client) {
            self.make_room(&mut clients, now);
        }
        let window = clients.entry(client).or_insert(Window {
            started: now,
            failures: 0,
            pending: 0,
        });
        let elapsed = now.saturating_duration_since(window.started);
        if elapsed >= self.window {
            *window = Window {
                started: now,
                failures: 0,
                pending: window.pending,
            };
        } else if window.failures.saturating_add(window.pending) >= self.max_failures {
            return Err(self.window - elapsed);
        }
        window.pending += 1;
        Ok(Attempt {
            throttle: self,
            client,
            failed: false,
        })
    }

    /// Drops expired windows, then (still full) the oldest one that is not blocking its client.
    fn make_room(&self, clients: &mut HashMap<IpAddr, Window>, now: Instant) {
        let window = self.window;
        clients.retain(|_, w| w.pending > 0 || now.saturating_duration_since(w.started) < window);
        if clients.len() >= MAX_CLIENTS {
            let max = self.max_failures;
            let oldest = clients
                .iter()
                .filter(|(_, w)| w.pending == 0 && w.failures < max)
                .min_by_key(|(_, w)| w.started)
                .or_else(|| clients.iter().min_by_key(|(_, w)| w.started))
                .map(|(ip, _)| *ip);
            if let Some(oldest) = oldest {
                clients.remove(&oldest);
            }
        }
    }

    fn end(&self, client: IpAddr, failed: bool) {
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(window) = clients.get_mut(&client) {
            window.pending = window.pending.saturating_sub(1);
            if failed {
                window.failures = window.failures.saturating_add(1);
            }
        }
    }
}

/// One credential check in progress; see [`FailureThrottle::attempt`].
#[derive(Debug)]
pub(crate) struct Attempt<'a> {
    throttle: &'a FailureThrottle,
    client: IpAddr,
    failed: bool,
}

impl Attempt<'_> {
    /// The credential was wrong: it counts against the client's budget.
    pub(crate) fn failed(mut self) {
        self.failed = true;
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        self.throttle.end(self.client, self.failed);
    }
}

/// The throttling key of the request's client: its IP address (IPv6 by /64), or the
/// unspecified address when the server does not record peers.
pub(crate) fn client_of(parts: &Parts) -> IpAddr {
    client_of_extensions(&parts.extensions)
}

/// [`client_of`] from a request's extensions.
pub(crate) fn client_of_extensions(extensions: &http::Extensions) -> IpAddr {
    match extensions.get::<ConnectInfo<SocketAddr>>() {
        Some(ConnectInfo(peer)) => match peer.ip() {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !(u128::from(u64::MAX)))),
            },
            v4 => v4,
        },
        None => {
            static WARNED: std::sync::Once = std::sync::Once::new();
            WARNED.call_once(|| {
                tracing::warn!(
                    target: "keycard::admin",
                    "admin API served without ConnectInfo<SocketAddr>: every client shares one \
                     failed-authentication budget, so one client's wrong guesses lock out all; \
                     serve it with into_make_service_with_connect_info::<SocketAddr>()"
                );
            });
            IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));

    fn fail(throttle: &FailureThrottle, client: IpAddr, now: Instant) {
        throttle.attempt_at(client, now).unwrap().failed();
    }

    #[test]
    fn a_client_is_blocked_after_its_failures_until_the_window_ends() {
        let throttle = FailureThrottle::new(3, Duration::from_secs(60));
        let start = Instant::now();
        fail(&throttle, A, start);
        fail(&throttle, A, start);
        drop(throttle.attempt_at(A, start).unwrap()); // a success does not count
        fail(&throttle, A, start);
        let later = start + Duration::from_secs(20);
        assert_eq!(
            throttle.attempt_at(A, later).unwrap_err(),
            Duration::from_secs(40)
        );
        assert!(throttle.attempt_at(B, later).is_ok(), "others unaffected");
        let after = start + Duration::from_secs(60);
        fail(&throttle, A, after);
        assert!(throttle.attempt_at(A, after).is_ok(), "a new window");
    }

    #[test]
    fn parallel_attempts_cannot_overrun_the_budget() {
        let throttle = FailureThrottle::new(3, Duration::from_secs(60));
        let now = Instant::now();
        let in_flight: Vec<_> = (0..3)
            .map(|_| throttle.attempt_at(A, now).unwrap())
            .collect();
        assert!(
            throttle.attempt_at(A, now).is_err(),
            "three checks already pending"
        );
        for attempt in in_flight {
            attempt.failed();
        }
        assert!(throttle.attempt_at(A, now).is_err());
    }

    #[test]
    fn the_table_stays_bounded_and_keeps_blocked_clients() {
        let throttle = FailureThrottle::new(1, Duration::from_secs(60));
        let now = Instant::now();
        fail(&throttle, A, now);
        for n in 0..(MAX_CLIENTS as u32 + 5) {
            drop(
                throttle
                    .attempt_at(IpAddr::V4((n + 1_000_000).into()), now)
                    .unwrap(),
            );
        }
        assert_eq!(throttle.clients.lock().unwrap().len(), MAX_CLIENTS);
        assert!(
            throttle.attempt_at(A, now).is_err(),
            "a blocked client is not evicted first"
        );
    }
}
