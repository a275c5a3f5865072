//! Slowing down guessers: failed authentications per address, in a fixed window.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failed authentications allowed per address and window before requests are refused.
const MAX_FAILURES: u32 = 10;
const WINDOW: Duration = Duration::from_secs(60);
/// Beyond this many tracked addresses, expired entries are dropped.
const MAX_TRACKED: usize = 10_000;

/// Counts failed authentications per address.
#[derive(Debug, Default)]
pub(crate) struct FailureLimiter {
    seen: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl FailureLimiter {
    /// `Some(seconds)` to wait when `ip` has failed too often in the current window.
    pub(crate) fn blocked(&self, ip: IpAddr) -> Option<u64> {
        // A poisoned lock only means a panic elsewhere; the map itself stays consistent.
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let (start, count) = *seen.get(&ip)?;
        let elapsed = start.elapsed();
        (count >= MAX_FAILURES && elapsed < WINDOW).then(|| (WINDOW - elapsed).as_secs().max(1))
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
