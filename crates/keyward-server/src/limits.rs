//! Slowing down guessers: failed authentications per address, in a fixed window.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failed authentications allowed per address and window before requests are refused, unless
/// configured otherwise ([`FailureLimiter::new`]).
pub(crate) const DEFAULT_MAX_FAILURES: u32 = 10;
const WINDOW: Duration = Duration::from_secs(60);
/// Beyond this many tracked addresses, expired entries are dropped.
const MAX_TRACKED: usize = 10_000;

/// Counts failed authentications per address.
#[derive(Debug)]
pub(crate) struct FailureLimiter {
    max_failures: u32,
    seen: Mutex<HashMap<IpAddr, (Instant, u32)>>,
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
        }
    }

    /// How many failures a minute an address is allowed.
    pub(crate) fn max_failures(&self) -> u32 {
        self.max_failures
    }

    /// `Some(seconds)` to wait when `ip` has failed too often in the current window.
    pub(crate) fn blocked(&self, ip: IpAddr) -> Option<u64> {
        // A poisoned lock only means a panic elsewhere; the map itself stays consistent.
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let (start, count) = *seen.get(&ip)?;
        let elapsed = start.elapsed();
        (count >= self.max_failures && elapsed < WINDOW)
            .then(|| (WINDOW - elapsed).as_secs().max(1))
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
