//! Slowing down guessers: failed authentications per address, in a fixed window.
//!
//! An address over its allowance is not refused outright: many clients may share it (a NAT, a
//! pod IP), and one client's bad tokens must not lock the others out. Its token checks go
//! through a narrow lane shared by every such address instead, and each failed check holds the
//! lane a while, so guessing is slowed to a few dozen checks a second in all and its cost
//! bounded, while a token that checks out still passes; only the checks that fail are answered
//! 429. Failures are audited up to the allowance per window, so a burst of guesses cannot
//! flood the trail. IPv6 addresses count by their /64, what one host usually holds.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

/// Failed authentications allowed per address and window before its checks are slowed,
/// unless configured otherwise ([`FailureLimiter::new`]).
pub(crate) const DEFAULT_MAX_FAILURES: u32 = 10;
const WINDOW: Duration = Duration::from_secs(60);
/// Beyond this many tracked addresses, expired entries are dropped (at most once a second),
/// then arbitrary ones: the table stays bounded whatever the number of addresses.
const MAX_TRACKED: usize = 10_000;
/// Token checks of over-the-limit addresses that may run at once, all such addresses together.
const SUSPECT_LANES: usize = 2;
/// How long a failed check of an over-the-limit address keeps its lane.
const SUSPECT_PENALTY: Duration = Duration::from_millis(50);

/// Counts failed authentications per address.
#[derive(Debug)]
pub(crate) struct FailureLimiter {
    max_failures: u32,
    seen: Mutex<Seen>,
    suspects: Semaphore,
}

#[derive(Debug, Default)]
struct Seen {
    by_address: HashMap<IpAddr, (Instant, u32)>,
    swept: Option<Instant>,
}

impl Default for FailureLimiter {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_FAILURES)
    }
}

/// Single sign-ons started per address and minute, beyond which `/ui/sso/login` answers 429:
/// each start keeps a row in the store until its callback, and no person starts this many.
pub(crate) const SSO_STARTS_PER_MINUTE: u32 = 60;

/// Counts the single sign-ons each address starts ([`SSO_STARTS_PER_MINUTE`]).
#[derive(Debug)]
pub(crate) struct SsoStarts(pub(crate) FailureLimiter);

impl Default for SsoStarts {
    fn default() -> Self {
        Self(FailureLimiter::new(SSO_STARTS_PER_MINUTE))
    }
}

/// What an address counts as: itself, or for IPv6 its /64.
fn bucket(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none() => {
            let mut octets = v6.octets();
            octets[8..].fill(0);
            IpAddr::from(octets)
        }
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
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
    pub(crate) fn blocked(&self, ip: IpAddr) -> Option<u64> {
        // A poisoned lock only means a panic elsewhere; the map itself stays consistent.
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let (start, count) = *seen.by_address.get(&bucket(ip))?;
        let elapsed = start.elapsed();
        (count >= self.max_failures && elapsed < WINDOW)
            .then(|| (WINDOW - elapsed).as_secs().max(1))
    }

    /// Runs `check` (a token lookup) for a request from `ip`: at once for an address in good
    /// standing, in the suspects' lane for one over its allowance, where a check that
    /// `failed` says failed keeps the lane a while. Returns what the check found and, for an
    /// address over its allowance, the seconds it should wait before failing again (what to
    /// answer a check that failed).
    pub(crate) async fn screened<T>(
        &self,
        ip: Option<IpAddr>,
        check: impl Future<Output = T>,
        failed: impl FnOnce(&T) -> bool,
    ) -> (T, Option<u64>) {
        let Some(retry) = ip.and_then(|ip| self.blocked(ip)) else {
            return (check.await, None);
        };
        // The semaphore is never closed, so a permit always comes.
        let _lane = self.suspects.acquire().await;
        let found = check.await;
        if failed(&found) {
            tokio::time::sleep(SUSPECT_PENALTY).await;
        }
        (found, Some(retry))
    }

    /// Notes a failure of `ip`; true while it is within the allowance of its window (a
    /// failure worth an audit event).
    pub(crate) fn failed(&self, ip: IpAddr) -> bool {
        let ip = bucket(ip);
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.by_address.len() >= MAX_TRACKED && !seen.by_address.contains_key(&ip) {
            let due = seen
                .swept
                .is_none_or(|at| at.elapsed() >= Duration::from_secs(1));
            if due {
                seen.by_address
                    .retain(|_, (start, _)| start.elapsed() < WINDOW);
                seen.swept = Some(Instant::now());
            }
            if seen.by_address.len() >= MAX_TRACKED
                && let Some(evicted) = seen.by_address.keys().next().copied()
            {
                seen.by_address.remove(&evicted);
            }
        }
        let entry = seen.by_address.entry(ip).or_insert((Instant::now(), 0));
        if entry.0.elapsed() >= WINDOW {
            *entry = (Instant::now(), 0);
        }
        entry.1 = entry.1.saturating_add(1);
        entry.1 <= self.max_failures
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_counts_by_its_64_and_the_table_stays_bounded() {
        let limiter = FailureLimiter::new(2);
        let a: IpAddr = "2001:db8::1".parse().unwrap();
        let b: IpAddr = "2001:db8::ffff:2".parse().unwrap();
        assert!(limiter.failed(a));
        assert!(limiter.failed(b));
        assert!(!limiter.failed(a), "one /64, one allowance");
        assert!(limiter.blocked(b).is_some());
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        limiter.failed(mapped);
        assert!(
            limiter
                .seen
                .lock()
                .unwrap()
                .by_address
                .contains_key(&"192.0.2.1".parse::<IpAddr>().unwrap())
        );
        for i in 0..(MAX_TRACKED as u32 + 50) {
            limiter.failed(IpAddr::from(i.to_be_bytes()));
        }
        assert!(limiter.seen.lock().unwrap().by_address.len() <= MAX_TRACKED);
    }
}
