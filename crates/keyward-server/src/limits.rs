//! Slowing down guessers: failed authentications per address, in a fixed window.
//!
//! An address over its allowance is not refused outright: many clients may share it (a NAT, a
//! pod IP), and one client's bad tokens must not lock the others out. Its token checks go
//! through a narrow lane shared by every such address instead, so guessing is slowed and its
//! cost bounded, while a token that checks out still passes; only the checks that fail are
//! answered 429.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

/// Failed authentications allowed per address and window before requests are refused, unless
/// configured otherwise ([`FailureLimiter::new`]).
pub(crate) const DEFAULT_MAX_FAILURES: u32 = 10;
const WINDOW: Duration = Duration::from_secs(60);
/// Beyond this many tracked addresses, expired entries are dropped.
const MAX_TRACKED: usize = 10_000;
/// Token checks of over-the-limit addresses that may run at once, all such addresses together.
const SUSPECT_LANES: usize = 2;

/// Counts failed authentications per address.
#[derive(Debug)]
pub(crate) struct FailureLimiter {
    max_failures: u32,
    seen: Mutex<HashMap<IpAddr, (Instant, u32)>>,
    suspects: Semaphore,
}

impl Default for FailureLimiter {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_FAILURES)
    }
}

impl FailureLimiter {
    /// A limiter allowing `max_failures` a minute per address.
    pub(crate) fn new(max_failures: u32) -> Self {
        Self {
            max_failures,
            seen: Mutex::default(),
            suspects: Semaphore::new(SUSPECT_LANES),
        }
    }

    /// How many failures a minute an address is allowed.
    pub(crate) fn max_failures(&self) -> u32 {
        self.max_failures
    }

    /// `Some(seconds)` to wait when `ip` has failed too often in the current window.
    fn blocked(&self, ip: IpAddr) -> Option<u64> {
        // A poisoned lock only means a panic elsewhere; the map itself stays consistent.
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let (start, count) = *seen.get(&ip)?;
        let elapsed = start.elapsed();
        (count >= self.max_failures && elapsed < WINDOW)
            .then(|| (WINDOW - elapsed).as_secs().max(1))
    }

    /// Runs `check` (a token lookup) for a request from `ip`: at once for an address in good
    /// standing, in the suspects' lane for one over its allowance. Returns what the check found
    /// and, for an address over its allowance, the seconds it should wait before failing again
    /// (what to answer a check that failed).
    pub(crate) async fn screened<T>(
        &self,
        ip: Option<IpAddr>,
        check: impl Future<Output = T>,
    ) -> (T, Option<u64>) {
        let Some(retry) = ip.and_then(|ip| self.blocked(ip)) else {
            return (check.await, None);
        };
        // The semaphore is never closed, so a permit always comes.
        let _lane = self.suspects.acquire().await;
        (check.await, Some(retry))
    }

    /// Notes a failure of `ip`.
    pub(crate) fn failed(&self, ip: IpAddr) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() >= MAX_TRACKED {
            seen.retain(|_, (start, _)| start.elapsed() < WINDOW);
        }
        let entry = seen.entry(ip).or_insert((Instant::now(), 0));
        if entry.0.elapsed() >= WINDOW {
            *entry = (Instant::now(), 0);
        }
        entry.1 += 1;
    }
}
