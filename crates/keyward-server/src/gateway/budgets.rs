//! Budgets and limits on the request path, held across replicas without a database round trip
//! per request.
//!
//! Each replica spends from leases (the store's `budgets` module holds the other half of the
//! protocol): for every budget or limit a request falls under, and its current period, a
//! [`Cell`] holds the allowance this replica was granted, what it has spent since its last
//! report, and the requests in flight. A request is let through when every cell it falls
//! under has allowance left after what its requests in flight may cost (each is reserved at
//! the most expensive answer this replica has seen under that budget); what an answer cost is
//! taken from the allowance when it ends. About once a second, and at once when a cell runs
//! out, the replica reports what it spent and asks for more. A lease is spent only
//! [`LEASE_USABLE`] after the report that granted it, less than the store keeps it
//! (`LEASE_TTL_MS`): a replica cut off from the database stops spending before anyone else
//! can be granted what it held.
//!
//! So, with N replicas, a budget is overspent by at most what the requests in flight when it
//! ran out cost beyond their reservations: one request per replica once each has seen an
//! answer as costly (see `docs/ARCHITECTURE.md`). A limit on requests is never exceeded: a
//! request takes its one unit before it is sent.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use keyward_core::{Millis, OrgId};
use keyward_store::{
    Budget, BudgetScope, GatewayTokenView, LeaseReport, Metric, Period, Vault, VaultError,
};

/// How long after a report its lease may be spent (the store keeps it for `LEASE_TTL_MS`).
const LEASE_USABLE: Duration = Duration::from_secs(40);

/// A cell idle this long gives its lease back and is forgotten.
const IDLE: Duration = Duration::from_secs(30);

/// How often budget definitions are read again (a change through this server is read at once).
pub(crate) const DEFS_EVERY: Duration = Duration::from_secs(5);

/// One budget or limit, as the gateway applies it.
#[derive(Debug)]
pub(crate) struct Limit {
    /// The budget's id, or `rpm:`/`tpm:` and a gateway token's id.
    pub(crate) id: String,
    pub(crate) org: OrgId,
    pub(crate) metric: Metric,
    pub(crate) period: Period,
    pub(crate) amount: u64,
    pub(crate) alerts: Vec<u8>,
    pub(crate) webhook: Option<String>,
    /// Whose it is, for messages: "gateway token 'app'", "organization 'acme'".
    pub(crate) whose: String,
    /// What a budget of money counts: its scope and the gateway token's or credential's id.
    pub(crate) scope: Option<(BudgetScope, String)>,
}

impl Limit {
    /// Whether `other` says the same (a budget changed is read again with another amount).
    fn same_as(&self, other: &Limit) -> bool {
        self.amount == other.amount
            && self.alerts == other.alerts
            && self.webhook == other.webhook
            && self.whose == other.whose
    }

    fn from_budget(b: &Budget, whose: String) -> Self {
        Self {
            id: b.id.clone(),
            org: b.org.clone(),
            metric: b.metric,
            period: b.period,
            amount: b.amount,
            alerts: b.alerts.clone(),
            webhook: b.webhook.clone(),
            whose,
            scope: Some((b.scope, b.scope_id.clone())),
        }
    }

    /// The allowance a replica asks to hold: a twentieth of the limit, at least four of the
    /// costliest answers seen, and enough for the requests in flight (what they may cost is
    /// still held) and those waiting for it, with one to spare.
    fn want(&self, estimate: u64, in_flight: u64, waiting: u64) -> u64 {
        let unit = match self.metric {
            Metric::Requests => 1,
            Metric::Usd | Metric::Tokens => estimate,
        };
        let needed = match self.metric {
            Metric::Requests => waiting + 1,
            Metric::Usd | Metric::Tokens => in_flight + waiting + 1,
        };
        (self.amount / 20)
            .max(estimate.saturating_mul(4))
            .max(unit.saturating_mul(needed))
            .clamp(1, self.amount.max(1))
    }

    /// Why a request is refused while the limit has room that other requests hold: busy, to
    /// be retried shortly.
    fn busy(&self) -> Refusal {
        Refusal {
            message: format!(
                "what is left of the {} of {} is held by requests under way; try again in a second",
                match self.metric {
                    Metric::Usd => "budget",
                    Metric::Requests => "requests a minute",
                    Metric::Tokens => "tokens a minute",
                },
                self.whose
            ),
            retry_after: Some(1),
            permanent: false,
        }
    }

    /// Why a request is refused, and in how many seconds the period starts again. (What this
    /// replica last heard was spent is not said: what is left may be held by other replicas'
    /// requests under way.)
    fn refusal(&self, start: i64) -> Refusal {
        let end = self.period.end(start);
        let now = Millis::now().0;
        let retry_after = end.map(|e| u64::try_from((e - now).max(1000) / 1000).unwrap_or(1));
        let resets = match end {
            Some(e) => format!(
                "it resets at {}",
                humantime::format_rfc3339_seconds(Millis(e).to_system_time())
            ),
            None => "it does not reset; an admin can raise it".to_owned(),
        };
        let message = match (self.metric, self.period) {
            (Metric::Usd, period) => format!(
                "the {} budget of {} ({}) is spent; {resets}",
                match period {
                    Period::Day => "daily",
                    Period::Week => "weekly",
                    Period::Month => "monthly",
                    _ => "total",
                },
                self.whose,
                keyward_core::prices::usd(self.amount)
            ),
            (Metric::Requests, _) => format!(
                "{} may make {} requests a minute and has reached that; try again in {} s",
                self.whose,
                self.amount,
                retry_after.unwrap_or(60)
            ),
            (Metric::Tokens, _) => format!(
                "{} may use {} tokens a minute and has reached that; try again in {} s",
                self.whose,
                self.amount,
                retry_after.unwrap_or(60)
            ),
        };
        Refusal {
            message,
            retry_after,
            // A spent budget comes back only at its reset: retrying sooner is pointless.
            permanent: self.metric == Metric::Usd,
        }
    }
}

/// Why a request may not go.
#[derive(Debug, Clone)]
pub(crate) struct Refusal {
    pub(crate) message: String,
    /// Seconds until the period starts again.
    pub(crate) retry_after: Option<u64>,
    /// Whether retrying before then is pointless (a budget, not a rate).
    pub(crate) permanent: bool,
}

/// Why admission stopped.
#[derive(Debug)]
pub(crate) enum Stop {
    Refused(Refusal),
    /// The store cannot be asked for more allowance.
    Unavailable,
}

#[derive(Debug)]
struct Ledger {
    /// The allowance held as of the last report.
    held: u64,
    /// Spent since the last report.
    used: u64,
    in_flight: u64,
    /// What no replica held, as of the last report.
    free: u64,
    /// The period's spending, as of the last report.
    spent: u64,
    /// Until when the lease may be spent (`None`: never granted).
    usable_until: Option<Instant>,
    reported_at: Option<Instant>,
    last_used: Instant,
    /// Requests waiting for a report.
    waiting: u64,
}

/// One limit's current period on this replica.
#[derive(Debug)]
pub(crate) struct Cell {
    /// The limit as last read (a change replaces it, and the lease is reported on at once).
    limit: Mutex<Arc<Limit>>,
    period_start: i64,
    ledger: Mutex<Ledger>,
    /// The costliest answer seen under this limit, in any period: kept by `Budgets` across
    /// cells, so that a new period or a pause does not forget it.
    estimate: Arc<AtomicU64>,
    /// One report at a time.
    refill: tokio::sync::Mutex<()>,
    /// Woken when a request's answer ends (requests waiting for a first cost to be seen).
    settled: tokio::sync::Notify,
}

enum Take {
    Taken,
    /// No answer's cost has been seen yet under this limit and one is in flight: wait for it,
    /// since what the others may cost cannot be reserved.
    Wait,
    /// Nothing left here, and the last report found none anywhere.
    Spent,
    /// Report and ask for more.
    Refill,
}

impl Cell {
    fn limit(&self) -> Arc<Limit> {
        self.limit.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn take(&self, now: Instant) -> Take {
        let metric = self.limit().metric;
        let estimate = self.estimate.load(Ordering::Relaxed);
        let mut l = self.ledger.lock().unwrap_or_else(|p| p.into_inner());
        l.last_used = now;
        if l.usable_until.is_none_or(|until| now >= until) {
            return Take::Refill;
        }
        let left = i128::from(l.held) - i128::from(l.used);
        if metric != Metric::Requests && estimate == 0 && l.in_flight > 0 && left > 0 {
            return Take::Wait;
        }
        let room = match metric {
            Metric::Requests => left >= 1,
            Metric::Usd | Metric::Tokens => {
                left - i128::from(l.in_flight) * i128::from(estimate) > 0
            }
        };
        if room {
            match metric {
                Metric::Requests => l.used += 1,
                Metric::Usd | Metric::Tokens => l.in_flight += 1,
            }
            return Take::Taken;
        }
        let fresh = l
            .reported_at
            .is_some_and(|at| now.duration_since(at) < Duration::from_secs(1));
        if l.free == 0 && fresh {
            Take::Spent
        } else {
            Take::Refill
        }
    }

    /// Ends a request's hold: what its answer cost (`None`: unknown, so as much as the
    /// costliest seen; a request that got no answer costs nothing).
    fn settle(&self, cost: Option<u64>) {
        if self.limit().metric == Metric::Requests {
            return;
        }
        {
            let mut l = self.ledger.lock().unwrap_or_else(|p| p.into_inner());
            l.in_flight = l.in_flight.saturating_sub(1);
            let cost = cost.unwrap_or_else(|| self.estimate.load(Ordering::Relaxed));
            l.used = l.used.saturating_add(cost);
            self.estimate.fetch_max(cost, Ordering::Relaxed);
        }
        self.settled.notify_waiters();
    }
}

/// What one request holds until its answer ends.
#[derive(Debug, Default)]
pub(crate) struct Ticket {
    holds: Vec<Arc<Cell>>,
    /// What the answer cost and how many tokens it took, once known.
    settled: bool,
}

impl Ticket {
    /// Ends the holds with what the answer cost (micro-dollars) and took (tokens); `None`
    /// where the answer did not say.
    pub(crate) fn settle(mut self, cost: Option<u64>, tokens: Option<u64>) {
        self.settled = true;
        for cell in self.holds.drain(..) {
            match cell.limit().metric {
                Metric::Usd => cell.settle(cost),
                Metric::Tokens => cell.settle(tokens),
                Metric::Requests => {}
            }
        }
    }

    /// Takes `other`'s holds into these.
    pub(crate) fn absorb(&mut self, mut other: Ticket) {
        self.holds.append(&mut other.holds);
    }
}

impl Drop for Ticket {
    /// A request that got no answer (or one without a body to meter) costs nothing.
    fn drop(&mut self) {
        if !self.settled {
            for cell in self.holds.drain(..) {
                cell.settle(Some(0));
            }
        }
    }
}

#[derive(Debug, Default)]
struct Defs {
    by_org: HashMap<OrgId, Vec<Arc<Limit>>>,
    by_token: HashMap<String, Vec<Arc<Limit>>>,
    by_credential: HashMap<String, Vec<Arc<Limit>>>,
}

/// The gateway's budgets: their definitions, and this replica's cells.
#[derive(Debug)]
pub(crate) struct Budgets {
    /// This process, in the leases' table.
    holder: String,
    /// `None` until read once.
    defs: RwLock<Option<Arc<Defs>>>,
    cells: Mutex<HashMap<(String, i64), Arc<Cell>>>,
    /// The costliest answer seen, per limit.
    estimates: Mutex<HashMap<String, Arc<AtomicU64>>>,
}

impl Default for Budgets {
    fn default() -> Self {
        Self {
            holder: holder_id(),
            defs: RwLock::default(),
            cells: Mutex::default(),
            estimates: Mutex::default(),
        }
    }
}

/// A random id for this process's leases.
fn holder_id() -> String {
    let mut bytes = [0u8; 12];
    // Without randomness, the time and process id still tell processes apart.
    if getrandom::fill(&mut bytes).is_err() {
        let t = Millis::now().0.to_le_bytes();
        bytes[..8].copy_from_slice(&t);
        bytes[8..].copy_from_slice(&std::process::id().to_le_bytes());
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An alert to send: the budget and the percentage crossed.
#[derive(Debug)]
pub(crate) struct Alert {
    pub(crate) limit: Arc<Limit>,
    pub(crate) percent: u8,
    pub(crate) spent: u64,
    pub(crate) period_start: i64,
}

impl Budgets {
    /// Reads the budgets' definitions again.
    pub(crate) async fn reload(&self, vault: &Vault) -> Result<(), VaultError> {
        let budgets = vault.list_budgets(None).await?;
        let mut defs = Defs::default();
        for b in &budgets {
            let whose = match b.scope {
                BudgetScope::Org => format!("organization '{}'", b.org),
                BudgetScope::GatewayToken => match vault.get_gateway_token(&b.scope_id).await {
                    Ok(t) => format!("gateway token '{}'", t.name),
                    Err(_) => format!("gateway token {}", b.scope_id),
                },
                BudgetScope::Credential => match keyward_core::CredentialId::new(&b.scope_id) {
                    Ok(id) => match vault.get_credential(&id).await {
                        Ok(c) => format!("credential '{}'", c.name),
                        Err(_) => format!("credential {}", b.scope_id),
                    },
                    Err(_) => format!("credential {}", b.scope_id),
                },
            };
            let limit = Arc::new(Limit::from_budget(b, whose));
            let list = match b.scope {
                BudgetScope::Org => defs.by_org.entry(b.org.clone()).or_default(),
                BudgetScope::GatewayToken => defs.by_token.entry(b.scope_id.clone()).or_default(),
                BudgetScope::Credential => {
                    defs.by_credential.entry(b.scope_id.clone()).or_default()
                }
            };
            list.push(limit);
        }
        *self.defs.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(defs));
        Ok(())
    }

    /// The budgets and limits a gateway token's requests fall under: its organization's, its
    /// own, and the per-minute limits it carries; `None` while the budgets were never read
    /// (the store has been away since start).
    pub(crate) fn for_token(&self, view: &GatewayTokenView) -> Option<Vec<Arc<Limit>>> {
        let defs = self
            .defs
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()?;
        let mut out: Vec<Arc<Limit>> = Vec::new();
        out.extend(defs.by_org.get(&view.org).into_iter().flatten().cloned());
        out.extend(defs.by_token.get(&view.id).into_iter().flatten().cloned());
        for (prefix, metric, amount) in [
            ("rpm", Metric::Requests, view.rpm),
            ("tpm", Metric::Tokens, view.tpm),
        ] {
            if let Some(n) = amount.and_then(|n| u64::try_from(n).ok()) {
                out.push(Arc::new(Limit {
                    id: format!("{prefix}:{}", view.id),
                    org: view.org.clone(),
                    metric,
                    period: Period::Minute,
                    amount: n,
                    alerts: Vec::new(),
                    webhook: None,
                    whose: format!("gateway token '{}'", view.name),
                    scope: None,
                }));
            }
        }
        Some(out)
    }

    /// The budgets of one credential.
    pub(crate) fn for_credential(&self, id: &str) -> Vec<Arc<Limit>> {
        let defs = self.defs.read().unwrap_or_else(|p| p.into_inner()).clone();
        defs.and_then(|d| d.by_credential.get(id).cloned())
            .unwrap_or_default()
    }

    fn cell(&self, limit: &Arc<Limit>, now: Millis) -> Arc<Cell> {
        let start = limit.period.start(now);
        let estimate = {
            let mut estimates = self.estimates.lock().unwrap_or_else(|p| p.into_inner());
            estimates.entry(limit.id.clone()).or_default().clone()
        };
        let mut cells = self.cells.lock().unwrap_or_else(|p| p.into_inner());
        let cell = cells
            .entry((limit.id.clone(), start))
            .or_insert_with(|| {
                Arc::new(Cell {
                    limit: Mutex::new(limit.clone()),
                    period_start: start,
                    ledger: Mutex::new(Ledger {
                        held: 0,
                        used: 0,
                        in_flight: 0,
                        free: 0,
                        spent: 0,
                        usable_until: None,
                        reported_at: None,
                        last_used: Instant::now(),
                        waiting: 0,
                    }),
                    estimate,
                    refill: tokio::sync::Mutex::new(()),
                    settled: tokio::sync::Notify::new(),
                })
            })
            .clone();
        drop(cells);
        // A changed limit (an amount raised or lowered) applies at once: the lease held under
        // the old one is reported on before anything more is spent.
        let changed = {
            let mut current = cell.limit.lock().unwrap_or_else(|p| p.into_inner());
            let changed = !current.same_as(limit);
            if changed {
                *current = limit.clone();
            }
            changed
        };
        if changed {
            let mut l = cell.ledger.lock().unwrap_or_else(|p| p.into_inner());
            l.usable_until = None;
            l.reported_at = None;
        }
        cell
    }

    /// Lets a request through `limits`, adding its holds to `ticket`; or says why not. Only a
    /// cell that ran out waits for the store (once, for all the requests that found it so).
    pub(crate) async fn admit(
        &self,
        vault: &Vault,
        limits: &[Arc<Limit>],
        ticket: &mut Ticket,
        alerts: &mut Vec<Alert>,
    ) -> Result<(), Stop> {
        let held_before = ticket.holds.len();
        let admitted = self.admit_all(vault, limits, ticket, alerts).await;
        if admitted.is_err() {
            // Refused by one limit: what the others granted goes back (the request never
            // reaches a provider, so it is no request a minute, and costs nothing).
            for cell in ticket.holds.drain(held_before..) {
                cell.refund();
            }
        }
        admitted
    }

    async fn admit_all(
        &self,
        vault: &Vault,
        limits: &[Arc<Limit>],
        ticket: &mut Ticket,
        alerts: &mut Vec<Alert>,
    ) -> Result<(), Stop> {
        let now = Millis::now();
        for limit in limits {
            let cell = self.cell(limit, now);
            // Reports this request made itself (a report another request made while this one
            // waited is taken as it is, and counts not).
            let mut reports = 0;
            let mut waits = 0;
            loop {
                match cell.take(Instant::now()) {
                    Take::Taken => {
                        ticket.holds.push(cell.clone());
                        break;
                    }
                    Take::Spent => {
                        return Err(Stop::Refused(limit.refusal(cell.period_start)));
                    }
                    Take::Wait => {
                        // Until the answer in flight ends (a minute at most, if it streams).
                        let _ =
                            tokio::time::timeout(Duration::from_secs(1), cell.settled.notified())
                                .await;
                        waits += 1;
                        if waits > 60 {
                            return Err(Stop::Refused(limit.refusal(cell.period_start)));
                        }
                    }
                    Take::Refill if reports >= 3 => {
                        return Err(Stop::Refused(if cell.free_known() == Some(0) {
                            limit.refusal(cell.period_start)
                        } else {
                            limit.busy()
                        }));
                    }
                    Take::Refill => {
                        let waited_from = Instant::now();
                        let _turn = {
                            let _waiting = Waiting::new(&cell);
                            cell.refill.lock().await
                        };
                        // Another request may have reported meanwhile: its answer stands.
                        if cell.reported_since(waited_from) {
                            continue;
                        }
                        reports += 1;
                        match self.report(vault, &cell, false).await {
                            Ok(crossed) => alerts.extend(crossed),
                            Err(e) => {
                                if !e.is_unavailable() {
                                    tracing::error!(error = %e, budget = %limit.id, "cannot report a budget's spending");
                                }
                                // What is held (and usable) is spent first; more cannot be had.
                                return Err(Stop::Unavailable);
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Reports a cell's spending and renews its lease (`give_back`: holds nothing after).
    async fn report(
        &self,
        vault: &Vault,
        cell: &Arc<Cell>,
        give_back: bool,
    ) -> Result<Vec<Alert>, VaultError> {
        let limit = cell.limit();
        let (used, want) = {
            let l = cell.ledger.lock().unwrap_or_else(|p| p.into_inner());
            let want = if give_back {
                0
            } else {
                limit.want(
                    cell.estimate.load(Ordering::Relaxed),
                    l.in_flight,
                    l.waiting,
                )
            };
            (l.used, want)
        };
        let asked = Instant::now();
        let grant = vault
            .report_lease(&LeaseReport {
                budget_id: &limit.id,
                period_start: cell.period_start,
                holder: &self.holder,
                limit: limit.amount,
                used,
                want,
                alerts: &limit.alerts,
                org: Some(limit.org.as_str()),
                basis: match (&limit.scope, limit.metric) {
                    (Some((scope, id)), Metric::Usd) => Some(keyward_store::Basis {
                        org: limit.org.as_str(),
                        only: (*scope != BudgetScope::Org).then_some((*scope, id.as_str())),
                    }),
                    _ => None,
                },
            })
            .await?;
        let mut l = cell.ledger.lock().unwrap_or_else(|p| p.into_inner());
        l.used -= used;
        l.held = grant.held;
        l.free = grant.free;
        l.spent = grant.spent;
        l.reported_at = Some(asked);
        l.usable_until = Some(asked + LEASE_USABLE);
        Ok(grant
            .alerts
            .into_iter()
            .map(|percent| Alert {
                limit: limit.clone(),
                percent,
                spent: grant.spent,
                period_start: cell.period_start,
            })
            .collect())
    }

    /// Reports every cell that spent or holds a lease about to lapse; gives back and forgets
    /// idle ones. Run about once a second.
    pub(crate) async fn report_all(&self, vault: &Vault) -> Vec<Alert> {
        let cells: Vec<Arc<Cell>> = self
            .cells
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        let now = Instant::now();
        let current = Millis::now();
        let mut alerts = Vec::new();
        for cell in cells {
            let (used, in_flight, idle, lapsing, held) = {
                let l = cell.ledger.lock().unwrap_or_else(|p| p.into_inner());
                (
                    l.used,
                    l.in_flight,
                    now.duration_since(l.last_used) > IDLE,
                    l.usable_until
                        .is_some_and(|u| u.saturating_duration_since(now) < LEASE_USABLE / 2),
                    l.held,
                )
            };
            let past = cell.limit().period.start(current) != cell.period_start;
            let forget = in_flight == 0 && (idle || past);
            if used == 0 && !lapsing && !forget {
                continue;
            }
            if used == 0 && forget && held == 0 {
                self.forget(&cell);
                continue;
            }
            let _turn = cell.refill.lock().await;
            match self.report(vault, &cell, forget).await {
                Ok(alert) => {
                    alerts.extend(alert);
                    if forget {
                        self.forget(&cell);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, budget = %cell.limit().id, "cannot report a budget's spending; it is kept for the next try");
                }
            }
        }
        alerts
    }

    /// Reports every cell and gives its lease back (the process is stopping): another
    /// replica, or this one started again, may have it at once.
    pub(crate) async fn give_back_all(&self, vault: &Vault) {
        let cells: Vec<Arc<Cell>> = self
            .cells
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        for cell in cells {
            let _turn = cell.refill.lock().await;
            if let Err(e) = self.report(vault, &cell, true).await {
                tracing::warn!(error = %e, budget = %cell.limit().id, "cannot give a budget's lease back; it lapses in a minute");
            }
        }
    }

    fn forget(&self, cell: &Arc<Cell>) {
        let mut cells = self.cells.lock().unwrap_or_else(|p| p.into_inner());
        let key = (cell.limit().id.clone(), cell.period_start);
        if cells.get(&key).is_some_and(|c| Arc::ptr_eq(c, cell)) {
            cells.remove(&key);
        }
    }
}

/// A request waiting for a cell's report, counted while it waits (also when its client goes
/// away meanwhile).
struct Waiting<'a>(&'a Cell);

impl<'a> Waiting<'a> {
    fn new(cell: &'a Cell) -> Self {
        cell.ledger
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .waiting += 1;
        Self(cell)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let mut l = self.0.ledger.lock().unwrap_or_else(|p| p.into_inner());
        l.waiting = l.waiting.saturating_sub(1);
    }
}

impl Cell {
    /// Gives back what a request took that never went out.
    fn refund(&self) {
        if self.limit().metric == Metric::Requests {
            let mut l = self.ledger.lock().unwrap_or_else(|p| p.into_inner());
            l.used = l.used.saturating_sub(1);
        } else {
            self.settle(Some(0));
        }
    }

    /// What no replica held at the last report, if there was one.
    fn free_known(&self) -> Option<u64> {
        let l = self.ledger.lock().unwrap_or_else(|p| p.into_inner());
        l.reported_at.map(|_| l.free)
    }

    /// Whether a report was made since `at`.
    fn reported_since(&self, at: Instant) -> bool {
        let l = self.ledger.lock().unwrap_or_else(|p| p.into_inner());
        l.reported_at.is_some_and(|r| r >= at)
    }
}
