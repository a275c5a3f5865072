//! Budgets and limits: what an organization, a gateway token or a credential may spend in a
//! period (money, requests or tokens), and the leases through which replicas spend it.
//!
//! The protocol (the gateway's `budgets` module is the other half): a replica spends from an
//! allowance it holds (its lease) without asking the database; about once a second, and when
//! its lease runs out, it reports what it spent and asks for more ([`Vault::report_lease`]).
//! A report adds what was spent to the period's total and grants at most what no replica
//! holds: the period's limit less what was spent and every live lease. A lease lapses
//! [`LEASE_TTL_MS`] after its last report, so what a replica that died held comes back.

use keyward_core::audit::{Category, NewEvent};
use keyward_core::{Millis, OrgId};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::db::Backend;
use crate::{Vault, VaultError, new_id};

/// How long a lease lives in the database without a report. The holder stops spending it
/// sooner, by its own clock (the gateway's `LEASE_USABLE`), so that a replica cut off from
/// the database never spends what another replica may already have been granted.
pub const LEASE_TTL_MS: i64 = 60_000;

/// What a budget caps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum BudgetScope {
    /// Every request of the organization.
    Org,
    /// One gateway token's requests.
    GatewayToken,
    /// What one credential answers.
    Credential,
}

/// What a budget counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Money, in micro-dollars.
    Usd,
    /// Requests.
    Requests,
    /// Tokens, input and output.
    Tokens,
}

/// A budget's period (UTC): it starts again at each period's start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Period {
    /// A calendar minute (the rate limits).
    Minute,
    /// A day.
    Day,
    /// A week, from Monday.
    Week,
    /// A calendar month.
    Month,
    /// Never starts again.
    None,
}

const MINUTE_MS: i64 = 60_000;
const DAY_MS: i64 = 86_400_000;

impl Period {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Period::Minute => "minute",
            Period::Day => "day",
            Period::Week => "week",
            Period::Month => "month",
            Period::None => "none",
        }
    }

    /// Parses a stored or given name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "minute" => Some(Period::Minute),
            "day" | "daily" => Some(Period::Day),
            "week" | "weekly" => Some(Period::Week),
            "month" | "monthly" => Some(Period::Month),
            "none" | "total" => Some(Period::None),
            _ => None,
        }
    }

    /// The start of the period holding `at`.
    pub fn start(self, at: Millis) -> i64 {
        let t = at.0;
        match self {
            Period::Minute => t - t.rem_euclid(MINUTE_MS),
            Period::Day => t - t.rem_euclid(DAY_MS),
            // 1970-01-01 was a Thursday: Mondays are 4 days after the epoch's weeks start.
            Period::Week => {
                let from_monday = (t - 4 * DAY_MS).rem_euclid(7 * DAY_MS);
                t - from_monday
            }
            Period::Month => {
                let (y, m, _) = civil(t.div_euclid(DAY_MS));
                days_from_civil(y, m, 1) * DAY_MS
            }
            Period::None => 0,
        }
    }

    /// When the period starting at `start` ends (`None`: never).
    pub fn end(self, start: i64) -> Option<i64> {
        match self {
            Period::Minute => Some(start + MINUTE_MS),
            Period::Day => Some(start + DAY_MS),
            Period::Week => Some(start + 7 * DAY_MS),
            Period::Month => {
                let (y, m, _) = civil(start.div_euclid(DAY_MS));
                let (y, m) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
                Some(days_from_civil(y, m, 1) * DAY_MS)
            }
            Period::None => None,
        }
    }
}

/// The civil date of a day since the epoch (Howard Hinnant's algorithm).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// The day since the epoch of a civil date.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A budget or limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Budget {
    /// Id.
    pub id: String,
    /// The organization.
    pub org: OrgId,
    /// What it caps.
    pub scope: BudgetScope,
    /// The gateway token's or credential's id (`""` for the organization).
    pub scope_id: String,
    /// What it counts.
    pub metric: Metric,
    /// When it starts again.
    pub period: Period,
    /// The limit: micro-dollars, requests or tokens.
    pub amount: u64,
    /// Percentages at which an alert is sent (an audit event; a POST to `webhook` if set).
    pub alerts: Vec<u8>,
    /// Where alerts are POSTed: shown as its origin only (a webhook's path is often its
    /// secret, as Slack's are).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "origin_only"
    )]
    pub webhook: Option<String>,
    /// Creation time.
    pub created_at: Millis,
    /// Who set it.
    pub created_by: String,
}

impl Budget {
    /// What a budget of money counts (`None` for requests and tokens).
    pub fn basis(&self) -> Option<Basis<'_>> {
        (self.metric == Metric::Usd).then(|| Basis {
            org: self.org.as_str(),
            only: match self.scope {
                BudgetScope::Org => None,
                scope => Some((scope, self.scope_id.as_str())),
            },
        })
    }
}

/// A budget to set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewBudget {
    /// The organization.
    pub org: OrgId,
    /// What it caps.
    pub scope: BudgetScope,
    /// The gateway token's or credential's id (ignored for the organization).
    pub scope_id: String,
    /// What it counts.
    pub metric: Metric,
    /// When it starts again.
    pub period: Period,
    /// The limit.
    pub amount: u64,
    /// Alert percentages (1 to 100).
    pub alerts: Vec<u8>,
    /// Where alerts are POSTed (http or https).
    pub webhook: Option<String>,
}

/// A replica's report on one budget's period: what it spent since its last report, and how
/// much allowance it would like to hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseReport<'a> {
    /// The budget (or `rpm:ID`, `tpm:ID` for a gateway token's own limits).
    pub budget_id: &'a str,
    /// The period's start.
    pub period_start: i64,
    /// The process reporting.
    pub holder: &'a str,
    /// The period's limit.
    pub limit: u64,
    /// Spent since the last report.
    pub used: u64,
    /// The allowance it would like to hold after this report.
    pub want: u64,
    /// Alert percentages.
    pub alerts: &'a [u8],
    /// The budget's organization, for its alerts' audit events.
    pub org: Option<&'a str>,
    /// For a budget of money: what it counts, so that a period's first report starts from
    /// what that spent so far this period (a budget set mid-month counts the month).
    pub basis: Option<Basis<'a>>,
}

/// What a budget of money counts, in the spend kept by the hour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Basis<'a> {
    /// The organization.
    pub org: &'a str,
    /// Its gateway token's or credential's spend, or (`None`) the organization's.
    pub only: Option<(BudgetScope, &'a str)>,
}

impl Basis<'_> {
    /// The filter on `spend_hourly` (binds `$3`, `$4`, `$5`) and its values.
    fn filter(&self) -> (&'static str, &str, &str) {
        match self.only {
            None => ("gateway_token", self.org, ""),
            Some((BudgetScope::GatewayToken, id)) => ("gateway_token", self.org, id),
            Some((_, id)) => ("credential", self.org, id),
        }
    }
}

/// What a report got back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseGrant {
    /// The period's spending, every replica's reports included.
    pub spent: u64,
    /// The allowance the reporter now holds.
    pub held: u64,
    /// What no replica holds and is not spent: what a later report may be granted.
    pub free: u64,
    /// The alert percentages this report's spending crossed, lowest first (each sent once per
    /// period, by the replica whose report crossed it).
    pub alerts: Vec<u8>,
}

const BUDGET_COLUMNS: &str =
    "id, org, scope, scope_id, metric, period, amount, alerts, webhook, created_at, created_by";

fn budget(row: &AnyRow) -> Result<Budget, VaultError> {
    let bad =
        |what: &str| VaultError::InvalidInput(format!("a stored budget has an unknown {what}"));
    let scope = match row.try_get::<String, _>("scope")?.as_str() {
        "org" => BudgetScope::Org,
        "gateway_token" => BudgetScope::GatewayToken,
        "credential" => BudgetScope::Credential,
        _ => return Err(bad("scope")),
    };
    let metric = match row.try_get::<String, _>("metric")?.as_str() {
        "usd" => Metric::Usd,
        "requests" => Metric::Requests,
        "tokens" => Metric::Tokens,
        _ => return Err(bad("metric")),
    };
    let period =
        Period::parse(&row.try_get::<String, _>("period")?).ok_or_else(|| bad("period"))?;
    Ok(Budget {
        id: row.try_get("id")?,
        org: OrgId::from_stored(&row.try_get::<String, _>("org")?)?,
        scope,
        scope_id: row.try_get("scope_id")?,
        metric,
        period,
        amount: u64::try_from(row.try_get::<i64, _>("amount")?).unwrap_or(0),
        alerts: serde_json::from_str(&row.try_get::<String, _>("alerts")?).unwrap_or_default(),
        webhook: row.try_get("webhook")?,
        created_at: Millis(row.try_get("created_at")?),
        created_by: row.try_get("created_by")?,
    })
}

/// A URL as its scheme and host, the rest elided.
fn origin_only<S: serde::Serializer>(url: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match url {
        Some(u) => {
            let after = u.find("://").map_or(0, |i| i + 3);
            let end = u[after..]
                .find(['/', '?', '#'])
                .map_or(u.len(), |i| after + i);
            let shown = if end < u.len() {
                format!("{}/…", &u[..end])
            } else {
                u.clone()
            };
            s.serialize_some(&shown)
        }
        None => s.serialize_none(),
    }
}

fn scope_str(s: BudgetScope) -> &'static str {
    match s {
        BudgetScope::Org => "org",
        BudgetScope::GatewayToken => "gateway_token",
        BudgetScope::Credential => "credential",
    }
}

fn metric_str(m: Metric) -> &'static str {
    match m {
        Metric::Usd => "usd",
        Metric::Requests => "requests",
        Metric::Tokens => "tokens",
    }
}

fn big(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Vault {
    /// Sets a budget (replacing the organization's budget of the same scope, metric and
    /// period). Audited.
    pub async fn set_budget(&self, b: &NewBudget, actor: &str) -> Result<Budget, VaultError> {
        self.require_org(&b.org).await?;
        let scope_id = match b.scope {
            BudgetScope::Org => String::new(),
            BudgetScope::GatewayToken => {
                let t = self.get_gateway_token(&b.scope_id).await?;
                if t.org != b.org {
                    return Err(VaultError::NotFound(format!(
                        "gateway token {}",
                        b.scope_id
                    )));
                }
                t.id
            }
            BudgetScope::Credential => {
                let id = keyward_core::CredentialId::new(&b.scope_id)?;
                let c = self.get_credential(&id).await?;
                if c.org != b.org {
                    return Err(VaultError::NotFound(format!("credential {}", b.scope_id)));
                }
                c.id.to_string()
            }
        };
        if b.amount == 0 || b.amount > 1_000_000_000_000_000 {
            return Err(VaultError::InvalidInput(
                "a budget's limit is above zero and at most a billion dollars (10^15 micro-dollars), requests or tokens".into(),
            ));
        }
        if b.alerts.len() > 10 || b.alerts.iter().any(|p| !(1..=100).contains(p)) {
            return Err(VaultError::InvalidInput(
                "alerts are up to 10 percentages from 1 to 100".into(),
            ));
        }
        if (b.metric == Metric::Usd) != (b.period != Period::Minute) {
            return Err(VaultError::InvalidInput(
                "money is budgeted by the day, week, month or in all; requests and tokens by the minute".into(),
            ));
        }
        if let Some(url) = &b.webhook {
            let after = url.find("://").map_or(0, |i| i + 3);
            let authority = &url[after..][..url[after..]
                .find(['/', '?', '#'])
                .unwrap_or(url.len() - after)];
            let ok = (url.starts_with("https://") || url.starts_with("http://"))
                && url.len() <= 2000
                && keyward_core::ids::is_plain_text(url, 2000)
                && !url.contains(char::is_whitespace)
                && !authority.is_empty()
                && !authority.contains('@');
            if !ok {
                return Err(VaultError::InvalidInput(
                    "a webhook is an http:// or https:// URL, without a user or password".into(),
                ));
            }
            // No provider key or Keyward token goes out as (part of) a webhook. (A webhook's
            // own secret, Slack's random path, is the URL's business: it is shown as the
            // origin only.)
            let key_like = |part: &str| {
                keyward_core::secret_like::looks_like_secret(part)
                    && (part.starts_with("kwt_")
                        || part.starts_with("kwg_")
                        || part.starts_with("kws_")
                        || keyward_core::PROVIDERS
                            .iter()
                            .any(|p| p.key_prefixes.iter().any(|k| part.starts_with(k))))
            };
            if url.split(['/', '?', '&', '=', '#', ':', '@']).any(key_like) {
                return Err(keyward_core::secret_like::refused("webhook URL").into());
            }
            self.refuse_own_keys([url.as_str()])?;
        }
        let mut alerts = b.alerts.clone();
        alerts.sort_unstable();
        alerts.dedup();
        let mut tx = self.begin_write().await?;
        let existing: Option<String> = sqlx::query(
            "SELECT id FROM budgets WHERE org = $1 AND scope = $2 AND scope_id = $3 AND metric = $4 AND period = $5",
        )
        .bind(b.org.as_str())
        .bind(scope_str(b.scope))
        .bind(&scope_id)
        .bind(metric_str(b.metric))
        .bind(b.period.as_str())
        .fetch_optional(&mut *tx)
        .await?
        .map(|r| r.try_get("id"))
        .transpose()?;
        let id = existing.clone().unwrap_or_else(new_id);
        let alerts_text = serde_json::to_string(&alerts).unwrap_or_else(|_| "[]".into());
        if existing.is_some() {
            sqlx::query("UPDATE budgets SET amount = $1, alerts = $2, webhook = $3 WHERE id = $4")
                .bind(big(b.amount))
                .bind(&alerts_text)
                .bind(&b.webhook)
                .bind(&id)
                .execute(&mut *tx)
                .await?;
        } else {
            sqlx::query(
                "INSERT INTO budgets (id, org, scope, scope_id, metric, period, amount, alerts, webhook, created_at, created_by) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            )
            .bind(&id)
            .bind(b.org.as_str())
            .bind(scope_str(b.scope))
            .bind(&scope_id)
            .bind(metric_str(b.metric))
            .bind(b.period.as_str())
            .bind(big(b.amount))
            .bind(&alerts_text)
            .bind(&b.webhook)
            .bind(Millis::now().0)
            .bind(actor)
            .execute(&mut *tx)
            .await?;
        }
        self.append_event(
            &mut tx,
            NewEvent::new(
                actor,
                Category::SecretManagement,
                if existing.is_some() {
                    "update"
                } else {
                    "create"
                },
                format!("budget:{id}"),
            )
            .org(Some(b.org.as_str()))
            .details(json!({
                "scope": scope_str(b.scope), "scope_id": scope_id, "metric": metric_str(b.metric),
                "period": b.period.as_str(), "amount": b.amount, "alerts": alerts,
                "webhook": b.webhook.is_some(),
            })),
        )
        .await?;
        self.commit(tx, "budget", &id).await?;
        self.get_budget(&id).await
    }

    /// One budget.
    pub async fn get_budget(&self, id: &str) -> Result<Budget, VaultError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {BUDGET_COLUMNS} FROM budgets WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.inner.pool)
        .await?
        .ok_or_else(|| VaultError::NotFound(format!("budget {id}")))?;
        budget(&row)
    }

    /// Budgets, of one organization or all.
    pub async fn list_budgets(&self, org: Option<&OrgId>) -> Result<Vec<Budget>, VaultError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {BUDGET_COLUMNS} FROM budgets WHERE ($1 = '*' OR org = $1) ORDER BY org, created_at, id"
        )))
        .bind(org.map_or("*", OrgId::as_str))
        .fetch_all(&self.inner.pool)
        .await?;
        rows.iter().map(budget).collect()
    }

    /// Deletes a budget. Audited.
    pub async fn delete_budget(&self, id: &str, actor: &str) -> Result<Budget, VaultError> {
        let b = self.get_budget(id).await?;
        let mut tx = self.begin_write().await?;
        for sql in [
            "DELETE FROM budgets WHERE id = $1",
            "DELETE FROM budget_periods WHERE budget_id = $1",
            "DELETE FROM budget_leases WHERE budget_id = $1",
        ] {
            sqlx::query(sql).bind(id).execute(&mut *tx).await?;
        }
        self.append_event(
            &mut tx,
            NewEvent::new(actor, Category::SecretManagement, "delete", format!("budget:{id}"))
                .org(Some(b.org.as_str()))
                .details(json!({ "scope": scope_str(b.scope), "scope_id": b.scope_id, "metric": metric_str(b.metric), "period": b.period.as_str() })),
        )
        .await?;
        self.commit(tx, "budget", id).await?;
        Ok(b)
    }

    /// What each budget's current period has spent, by budget id (as the replicas last
    /// reported: within about a second; a budget of money no replica reported on yet, what its
    /// basis spent this period).
    pub async fn budget_spent(
        &self,
        budgets: &[(&Budget, i64)],
    ) -> Result<std::collections::HashMap<String, u64>, VaultError> {
        let mut out = std::collections::HashMap::new();
        for (b, start) in budgets {
            let row = sqlx::query(
                "SELECT spent FROM budget_periods WHERE budget_id = $1 AND period_start = $2",
            )
            .bind(&b.id)
            .bind(*start)
            .fetch_optional(&self.inner.pool)
            .await?;
            let spent = match (row, b.basis()) {
                (Some(r), _) => u64::try_from(r.try_get::<i64, _>("spent")?).unwrap_or(0),
                (None, Some(basis)) => {
                    let (kind, org, id) = basis.filter();
                    let n: i64 = sqlx::query(
                        "SELECT CAST(COALESCE(SUM(cost_micros), 0) AS BIGINT) AS n FROM spend_hourly \
                         WHERE subject_kind = $1 AND org = $2 AND ($3 = '' OR subject_id = $3) AND hour >= $4",
                    )
                    .bind(kind)
                    .bind(org)
                    .bind(id)
                    .bind(*start)
                    .fetch_one(&self.inner.pool)
                    .await?
                    .try_get("n")?;
                    u64::try_from(n).unwrap_or(0)
                }
                (None, None) => 0,
            };
            out.insert(b.id.clone(), spent);
        }
        Ok(out)
    }

    /// A replica's report on a budget's period: adds what it spent, and grants it at most
    /// what no replica holds (see the module's comment). One short transaction of its own
    /// (not the process's group commit, whose batches lock rows of many writes in no order
    /// across processes); on PostgreSQL the period's row is locked, so that replicas
    /// reporting at once take turns. An alert it crosses is audited once it has committed.
    pub async fn report_lease(&self, r: &LeaseReport<'_>) -> Result<LeaseGrant, VaultError> {
        let now = Millis::now().0;
        let mut tx = self.inner.pool.begin().await?;
        // A period's first report starts from what its basis spent so far this period.
        let (kind, org, id) = r.basis.as_ref().map_or(("", "", ""), Basis::filter);
        sqlx::query(
            "INSERT INTO budget_periods (budget_id, period_start, spent, alerted) \
             SELECT $1, $2, CAST(COALESCE(SUM(cost_micros), 0) AS BIGINT), 0 FROM spend_hourly \
             WHERE subject_kind = $3 AND org = $4 AND ($5 = '' OR subject_id = $5) AND hour >= $2 \
             ON CONFLICT (budget_id, period_start) DO NOTHING",
        )
        .bind(r.budget_id)
        .bind(r.period_start)
        .bind(kind)
        .bind(org)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        let lock = if self.inner.backend == Backend::Postgres {
            " FOR UPDATE"
        } else {
            ""
        };
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT spent, alerted FROM budget_periods WHERE budget_id = $1 AND period_start = $2{lock}"
        )))
        .bind(r.budget_id)
        .bind(r.period_start)
        .fetch_one(&mut *tx)
        .await?;
        let spent_before = u64::try_from(row.try_get::<i64, _>("spent")?).unwrap_or(0);
        let alerted = u8::try_from(row.try_get::<i32, _>("alerted")?).unwrap_or(0);
        let held_before: u64 = sqlx::query(
            "SELECT amount FROM budget_leases WHERE budget_id = $1 AND period_start = $2 AND holder = $3",
        )
        .bind(r.budget_id)
        .bind(r.period_start)
        .bind(r.holder)
        .fetch_optional(&mut *tx)
        .await?
        .map(|row| row.try_get::<i64, _>("amount"))
        .transpose()?
        .map_or(0, |n| u64::try_from(n).unwrap_or(0));
        let others: i64 = sqlx::query(
            "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) AS n FROM budget_leases \
             WHERE budget_id = $1 AND period_start = $2 AND holder <> $3 AND expires_at > $4",
        )
        .bind(r.budget_id)
        .bind(r.period_start)
        .bind(r.holder)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?
        .try_get("n")?;
        let others = u64::try_from(others).unwrap_or(0);
        let mut spent = spent_before.saturating_add(r.used);
        // What the basis's hourly spend says was spent is a floor: spending no report counted
        // (a replica that had not read the budget yet, a report lost with its replica) is
        // counted once it is written there, about a second after its answer.
        if let Some(basis) = &r.basis {
            let (kind, org, id) = basis.filter();
            let written: i64 = sqlx::query(
                "SELECT CAST(COALESCE(SUM(cost_micros), 0) AS BIGINT) AS n FROM spend_hourly \
                 WHERE subject_kind = $1 AND org = $2 AND ($3 = '' OR subject_id = $3) AND hour >= $4",
            )
            .bind(kind)
            .bind(org)
            .bind(id)
            .bind(r.period_start)
            .fetch_one(&mut *tx)
            .await?
            .try_get("n")?;
            spent = spent.max(u64::try_from(written).unwrap_or(0));
        }
        // What was used came out of the reporter's lease (all of it, and more if it spent
        // past it: that is already in `spent`); and no lease is more than what is left (the
        // limit may have been lowered).
        let mut held = held_before
            .saturating_sub(r.used)
            .min(r.limit.saturating_sub(spent).saturating_sub(others));
        let mut free = r
            .limit
            .saturating_sub(spent)
            .saturating_sub(others)
            .saturating_sub(held);
        if r.want > held {
            let grant = free.min(r.want - held);
            held += grant;
            free -= grant;
        } else {
            // More than it wants back to the pool.
            free += held - r.want;
            held = r.want;
        }
        sqlx::query(
            "INSERT INTO budget_leases (budget_id, period_start, holder, amount, expires_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (budget_id, period_start, holder) DO UPDATE SET amount = excluded.amount, expires_at = excluded.expires_at",
        )
        .bind(r.budget_id)
        .bind(r.period_start)
        .bind(r.holder)
        .bind(big(held))
        .bind(now + LEASE_TTL_MS)
        .execute(&mut *tx)
        .await?;
        // The alerts this report's spending crossed that were not sent already this period.
        let percent = |n: u64| (u128::from(n) * 100 / u128::from(r.limit.max(1))) as u64;
        let mut crossed: Vec<u8> = r
            .alerts
            .iter()
            .copied()
            .filter(|a| *a > alerted && percent(spent) >= u64::from(*a))
            .collect();
        crossed.sort_unstable();
        crossed.dedup();
        sqlx::query(
            "UPDATE budget_periods SET spent = $1, alerted = $2 WHERE budget_id = $3 AND period_start = $4",
        )
        .bind(big(spent))
        .bind(i32::from(crossed.last().copied().unwrap_or(alerted)))
        .bind(r.budget_id)
        .bind(r.period_start)
        .execute(&mut *tx)
        .await?;
        // This budget's lapsed leases, and those of its past periods, go. (Only this budget's:
        // its period's row, locked above, makes its reports take turns; rows of other
        // budgets are other reports' to touch, and touching them could deadlock.)
        sqlx::query(
            "DELETE FROM budget_leases WHERE budget_id = $1 AND (period_start < $2 OR expires_at < $3)",
        )
        .bind(r.budget_id)
        .bind(r.period_start)
        .bind(now - LEASE_TTL_MS)
        .execute(&mut *tx)
        .await?;
        if r.budget_id.starts_with("rpm:") || r.budget_id.starts_with("tpm:") {
            sqlx::query("DELETE FROM budget_periods WHERE budget_id = $1 AND period_start < $2")
                .bind(r.budget_id)
                .bind(r.period_start - 10 * MINUTE_MS)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        if !crossed.is_empty() {
            let events = crossed
                .iter()
                .map(|a| {
                    NewEvent::new(
                        "keyward",
                        Category::SecretManagement,
                        "budget_alert",
                        format!("budget:{}", r.budget_id),
                    )
                    .org(r.org)
                    .details(json!({ "percent": a, "spent": spent, "limit": r.limit, "period_start": r.period_start }))
                })
                .collect();
            if let Err(e) = self.record_many(events).await {
                tracing::warn!(error = %e, budget = r.budget_id, "cannot audit a budget alert");
            }
        }
        Ok(LeaseGrant {
            spent,
            held,
            free,
            alerts: crossed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_start_and_end_on_utc_calendar_boundaries() {
        // 2026-12-07T01:29:40Z, a Monday.
        let t = Millis(1_796_606_980_000);
        let day = Period::Day.start(t);
        assert_eq!(day, 1_796_601_600_000);
        assert_eq!(Period::Week.start(t), day, "a Monday starts its week");
        assert_eq!(Period::Week.start(Millis(t.0 + 3 * DAY_MS)), day);
        // December 2026 starts on 2026-12-01 and ends on 2027-01-01.
        let month = Period::Month.start(t);
        assert_eq!(month, 1_796_083_200_000);
        assert_eq!(Period::Month.end(month), Some(1_798_761_600_000));
        // February 2028 has 29 days.
        let feb = days_from_civil(2028, 2, 1) * DAY_MS;
        assert_eq!(
            Period::Month.end(feb),
            Some(days_from_civil(2028, 3, 1) * DAY_MS)
        );
        assert_eq!(Period::Month.end(feb).map(|e| (e - feb) / DAY_MS), Some(29));
        assert_eq!(Period::Minute.start(t), 1_796_606_940_000);
        assert_eq!(Period::None.end(0), None);
        assert_eq!(civil(days_from_civil(1999, 12, 31)), (1999, 12, 31));
    }
}
