//! Usage counted in memory on the request path (one short lock, no allocation once an id has
//! been seen) and written to the vault in batches by a background task.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::Mutex;

use keyward_core::{Millis, OrgId};
use keyward_store::{UsageDelta, UsageSubject};

/// What a batch that could not be written may grow to before counts are dropped (with a
/// warning): bounded memory beats an unbounded backlog while the database is away.
const MAX_PENDING_IDS: usize = 100_000;

const SUBJECTS: [UsageSubject; 4] = [
    UsageSubject::Credential,
    UsageSubject::GatewayToken,
    UsageSubject::Target,
    UsageSubject::Environment,
];

fn slot(subject: UsageSubject) -> usize {
    match subject {
        UsageSubject::Credential => 0,
        UsageSubject::GatewayToken => 1,
        UsageSubject::Target => 2,
        UsageSubject::Environment => 3,
    }
}

#[derive(Debug)]
struct Counts {
    org: OrgId,
    /// The provider of its last request.
    provider: &'static str,
    /// Not yet written, by status.
    pending: BTreeMap<u16, u64>,
    last_used_at: Millis,
}

/// The gateway's usage counters.
#[derive(Debug, Default)]
pub(crate) struct UsageCounter {
    by_subject: Mutex<[HashMap<String, Counts>; 4]>,
    /// Counts of a static target id that has since moved to another organization (a reload),
    /// still to be written under the old one.
    moved: Mutex<Vec<UsageDelta>>,
    /// Since this process started, by (kind, provider, status), for `/metrics`: no ids there,
    /// since `/metrics` is open to anyone who can reach the server, and one organization's
    /// ids are none of another's business.
    totals: Mutex<BTreeMap<(UsageSubject, &'static str, u16), u64>>,
}

impl UsageCounter {
    /// Counts one request of `id` (to `provider`) that got `status` (0: no answer).
    pub(crate) fn record(
        &self,
        subject: UsageSubject,
        id: &str,
        org: &OrgId,
        provider: &'static str,
        status: u16,
    ) {
        let now = Millis::now();
        {
            let mut totals = self.totals.lock().unwrap_or_else(|p| p.into_inner());
            *totals.entry((subject, provider, status)).or_default() += 1;
        }
        let mut maps = self.by_subject.lock().unwrap_or_else(|p| p.into_inner());
        let map = &mut maps[slot(subject)];
        let counts = match map.get_mut(id) {
            Some(c) => c,
            None => map.entry(id.to_owned()).or_insert_with(|| Counts {
                org: org.clone(),
                provider,
                pending: BTreeMap::new(),
                last_used_at: now,
            }),
        };
        if counts.org != *org {
            let old = std::mem::replace(&mut counts.org, org.clone());
            let mut moved = self.moved.lock().unwrap_or_else(|p| p.into_inner());
            for (status, requests) in std::mem::take(&mut counts.pending) {
                moved.push(UsageDelta {
                    subject,
                    id: id.to_owned(),
                    org: old.clone(),
                    provider: counts.provider,
                    status,
                    requests,
                    last_used_at: counts.last_used_at,
                });
            }
        }
        *counts.pending.entry(status).or_default() += 1;
        counts.last_used_at = now;
        counts.provider = provider;
    }

    /// Takes the counts not yet written.
    pub(crate) fn take(&self) -> Vec<UsageDelta> {
        let mut out = std::mem::take(&mut *self.moved.lock().unwrap_or_else(|p| p.into_inner()));
        let mut maps = self.by_subject.lock().unwrap_or_else(|p| p.into_inner());
        for (subject, map) in SUBJECTS.iter().zip(maps.iter_mut()) {
            for (id, counts) in map.iter_mut() {
                for (status, requests) in std::mem::take(&mut counts.pending) {
                    out.push(UsageDelta {
                        subject: *subject,
                        id: id.clone(),
                        org: counts.org.clone(),
                        provider: counts.provider,
                        status,
                        requests,
                        last_used_at: counts.last_used_at,
                    });
                }
            }
        }
        out
    }

    /// Puts back counts that could not be written, to go with the next batch.
    pub(crate) fn restore(&self, batch: Vec<UsageDelta>) {
        let mut maps = self.by_subject.lock().unwrap_or_else(|p| p.into_inner());
        for d in batch {
            let map = &mut maps[slot(d.subject)];
            let full = map.len() >= MAX_PENDING_IDS;
            match map.get_mut(&d.id) {
                Some(counts) if counts.org == d.org => {
                    *counts.pending.entry(d.status).or_default() += d.requests;
                }
                // The id now counts for another organization: keep these apart.
                Some(_) => self.moved.lock().unwrap_or_else(|p| p.into_inner()).push(d),
                None if !full => {
                    map.insert(
                        d.id,
                        Counts {
                            org: d.org,
                            provider: d.provider,
                            pending: BTreeMap::from([(d.status, d.requests)]),
                            last_used_at: d.last_used_at,
                        },
                    );
                }
                None => tracing::warn!(
                    "usage counts dropped: too many unwritten while the database is unavailable"
                ),
            }
        }
    }

    /// `keyward_gateway_requests_total` by kind (credential: each upstream attempt; gateway
    /// token: each request, with the status its client got; target), provider and status.
    pub(crate) fn render(&self, out: &mut String) {
        out.push_str("# HELP keyward_gateway_requests_total Gateway requests by what they count against (credential: each upstream attempt; gateway_token: each request; target), provider and status (0: no answer). Per-id counts are in the API (GET /api/v1/orgs/{org}/usage).\n");
        out.push_str("# TYPE keyward_gateway_requests_total counter\n");
        let totals = self.totals.lock().unwrap_or_else(|p| p.into_inner());
        for ((subject, provider, status), n) in totals.iter() {
            let _ = writeln!(
                out,
                "keyward_gateway_requests_total{{kind=\"{}\",provider=\"{provider}\",status=\"{status}\"}} {n}",
                subject.as_str()
            );
        }
    }
}
