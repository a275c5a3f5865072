//! Usage counted in memory on the request path (one short lock, no allocation once an id has
//! been seen) and written to the vault in batches by a background task.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::Mutex;

use keyward_core::prices::{Prices, Tokens};
use keyward_core::{Millis, OrgId};
use keyward_store::{HOUR_MS, SpendDelta, UsageDelta, UsageSubject};

use super::meter::Reading;

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
    /// Spend not yet written, by (organization, subject, id, provider, model, hour).
    spend: Mutex<HashMap<SpendKey, SpendDelta>>,
    /// Spend since this process started, for `/metrics`, by (organization when asked for,
    /// provider, model as priced or `other`).
    spend_totals: Mutex<BTreeMap<(String, &'static str, String), SpendTotal>>,
}

type SpendKey = (OrgId, UsageSubject, String, &'static str, String, i64);

#[derive(Debug, Default, Clone, Copy)]
struct SpendTotal {
    requests: u64,
    tokens: Tokens,
    cost_micros: u64,
}

/// One answer's spend, for [`UsageCounter::spent`].
pub(crate) struct Answer<'a> {
    pub(crate) org: &'a OrgId,
    /// The gateway token (or workload) that asked.
    pub(crate) token: &'a str,
    /// What answered.
    pub(crate) served: (UsageSubject, &'a str),
    pub(crate) provider: &'static str,
    pub(crate) reading: Reading,
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

    /// Counts one answer's tokens and cost against its gateway token and what served it
    /// (priced by `prices`; `by_org`: `/metrics` names its organization). Its cost, if known.
    pub(crate) fn spent(&self, answer: Answer<'_>, prices: &Prices, by_org: bool) -> Option<u64> {
        let model = answer.reading.model.unwrap_or_default();
        let priced = answer
            .reading
            .tokens
            .and_then(|t| Some((t, prices.lookup(answer.provider, &model)?)));
        let cost = priced.as_ref().map(|(t, (_, price))| price.cost_micros(t));
        let now = Millis::now().0;
        let delta = SpendDelta {
            org: answer.org.clone(),
            subject: UsageSubject::GatewayToken,
            id: answer.token.to_owned(),
            provider: answer.provider,
            model: model.clone(),
            hour: now - now.rem_euclid(HOUR_MS),
            requests: 1,
            unmetered: u64::from(answer.reading.tokens.is_none()),
            unpriced: u64::from(answer.reading.tokens.is_some() && cost.is_none()),
            tokens: answer.reading.tokens.unwrap_or_default(),
            cost_micros: cost.unwrap_or(0),
        };
        {
            // Bounded labels: a model's name as the price table has it, or `other`.
            let label = priced.map_or_else(|| "other".to_owned(), |(_, (name, _))| name.to_owned());
            let org = if by_org {
                answer.org.as_str().to_owned()
            } else {
                String::new()
            };
            let mut totals = self.spend_totals.lock().unwrap_or_else(|p| p.into_inner());
            let t = totals.entry((org, answer.provider, label)).or_default();
            t.requests += 1;
            t.tokens.add(&delta.tokens);
            t.cost_micros = t.cost_micros.saturating_add(delta.cost_micros);
        }
        let mut spend = self.spend.lock().unwrap_or_else(|p| p.into_inner());
        let (served_kind, served_id) = answer.served;
        for (subject, id) in [
            (UsageSubject::GatewayToken, answer.token),
            (served_kind, served_id),
        ] {
            let key = (
                delta.org.clone(),
                subject,
                id.to_owned(),
                answer.provider,
                model.clone(),
                delta.hour,
            );
            let full = spend.len() >= MAX_PENDING_IDS;
            match spend.get_mut(&key) {
                Some(d) => d.add(&delta),
                None if full => {
                    tracing::warn!(
                        "spend dropped: too much unwritten while the database is unavailable"
                    );
                }
                None => {
                    spend.insert(
                        key,
                        SpendDelta {
                            subject,
                            id: id.to_owned(),
                            ..delta.clone()
                        },
                    );
                }
            }
        }
        cost
    }

    /// Takes the spend not yet written.
    pub(crate) fn take_spend(&self) -> Vec<SpendDelta> {
        let mut spend = self.spend.lock().unwrap_or_else(|p| p.into_inner());
        spend.drain().map(|(_, d)| d).collect()
    }

    /// Puts back spend that could not be written, to go with the next batch.
    pub(crate) fn restore_spend(&self, batch: Vec<SpendDelta>) {
        let mut spend = self.spend.lock().unwrap_or_else(|p| p.into_inner());
        for d in batch {
            let key = (
                d.org.clone(),
                d.subject,
                d.id.clone(),
                d.provider,
                d.model.clone(),
                d.hour,
            );
            let full = spend.len() >= MAX_PENDING_IDS;
            match spend.get_mut(&key) {
                Some(mine) => mine.add(&d),
                None if !full => {
                    spend.insert(key, d);
                }
                None => tracing::warn!(
                    "spend dropped: too much unwritten while the database is unavailable"
                ),
            }
        }
    }

    /// `keyward_gateway_tokens_total` and `keyward_gateway_cost_micros_total` by provider and
    /// model (as priced, or `other`), and organization when the server was asked to name it.
    fn render_spend(&self, out: &mut String) {
        let totals = self.spend_totals.lock().unwrap_or_else(|p| p.into_inner());
        out.push_str("# HELP keyward_gateway_answers_total Gateway answers metered for spend, by provider and model (as priced, or other).\n");
        out.push_str("# TYPE keyward_gateway_answers_total counter\n");
        let labels = |org: &str, provider: &str, model: &str| {
            let org = if org.is_empty() {
                String::new()
            } else {
                format!("org=\"{org}\",")
            };
            format!(
                "{org}provider=\"{provider}\",model=\"{}\"",
                model.replace(['"', '\\', '\n'], "_")
            )
        };
        for ((org, provider, model), t) in totals.iter() {
            let _ = writeln!(
                out,
                "keyward_gateway_answers_total{{{}}} {}",
                labels(org, provider, model),
                t.requests
            );
        }
        out.push_str("# HELP keyward_gateway_tokens_total Tokens the providers reported, by provider, model and kind (input: all input, cached ones included; cached: read from the prompt cache; cache_write; output).\n");
        out.push_str("# TYPE keyward_gateway_tokens_total counter\n");
        for ((org, provider, model), t) in totals.iter() {
            for (kind, n) in [
                ("input", t.tokens.input),
                ("output", t.tokens.output),
                ("cached", t.tokens.cache_read),
                ("cache_write", t.tokens.cache_write),
            ] {
                let _ = writeln!(
                    out,
                    "keyward_gateway_tokens_total{{{},kind=\"{kind}\"}} {n}",
                    labels(org, provider, model)
                );
            }
        }
        out.push_str("# HELP keyward_gateway_cost_micros_total What priced answers cost, in micro-dollars, by provider and model.\n");
        out.push_str("# TYPE keyward_gateway_cost_micros_total counter\n");
        for ((org, provider, model), t) in totals.iter() {
            let _ = writeln!(
                out,
                "keyward_gateway_cost_micros_total{{{}}} {}",
                labels(org, provider, model),
                t.cost_micros
            );
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
        drop(totals);
        self.render_spend(out);
    }
}
