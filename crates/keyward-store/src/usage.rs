//! Gateway usage: request counts by upstream status and the last use, per credential and per
//! gateway token. The gateway adds up its requests in memory and hands them here in batches;
//! one transaction adds a whole batch to the stored totals and to hourly buckets (the
//! console's charts), pruning buckets older than [`HOURLY_KEPT`].

use std::collections::BTreeMap;

use keyward_core::{Millis, OrgId};
use serde::{Deserialize, Serialize};
use sqlx::{AssertSqlSafe, Row};

use crate::{Vault, VaultError};

/// What usage is counted against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum UsageSubject {
    /// A provider credential (each upstream attempt counts, failovers included).
    Credential,
    /// A gateway token (each gateway request counts once, with the status the client got).
    GatewayToken,
    /// A static target of the gateway's configuration file.
    Target,
    /// The server's environment variable (an organization whose fallback is on, with no key).
    Environment,
}

impl UsageSubject {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            UsageSubject::Credential => "credential",
            UsageSubject::GatewayToken => "gateway_token",
            UsageSubject::Target => "target",
            UsageSubject::Environment => "environment",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "credential" => Some(UsageSubject::Credential),
            "gateway_token" => Some(UsageSubject::GatewayToken),
            "target" => Some(UsageSubject::Target),
            "environment" => Some(UsageSubject::Environment),
            _ => None,
        }
    }
}

/// Requests counted in memory, to be added to the stored totals.
#[derive(Debug, Clone)]
pub struct UsageDelta {
    /// What they count against.
    pub subject: UsageSubject,
    /// The credential's or token's id.
    pub id: String,
    /// Its organization.
    pub org: OrgId,
    /// The provider the requests went to.
    pub provider: &'static str,
    /// The upstream status (0: no answer).
    pub status: u16,
    /// How many.
    pub requests: u64,
    /// The latest of them.
    pub last_used_at: Millis,
}

/// The stored usage of one credential or gateway token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Usage {
    /// What is counted.
    pub subject: UsageSubject,
    /// The credential's or token's id.
    pub id: String,
    /// The credential's or token's name, the target's id; `None` once it is deleted.
    #[serde(default)]
    pub name: Option<String>,
    /// The provider (of a gateway token: its last request's).
    #[serde(default)]
    pub provider: Option<String>,
    /// Requests in all.
    pub requests: u64,
    /// The latest request, in milliseconds since the epoch.
    pub last_used_at: Millis,
    /// Requests by upstream status (`"0"`: no answer).
    pub statuses: BTreeMap<String, u64>,
}

/// One hour's requests of one subject with one upstream status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct UsageBucket {
    /// The hour's start.
    pub hour: Millis,
    /// The upstream status (0: no answer).
    pub status: u16,
    /// How many.
    pub requests: u64,
}

/// An hour, in milliseconds.
pub const HOUR_MS: i64 = 3_600_000;

/// How long hourly buckets are kept: the longest chart (7 days) and a day of slack.
const HOURLY_KEPT: i64 = 8 * 24 * HOUR_MS;

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

impl Vault {
    /// Adds a batch of counts and spend to the stored totals, in one transaction. Rows are
    /// written in one fixed order, so that replicas writing overlapping batches on PostgreSQL
    /// wait for each other instead of deadlocking.
    pub async fn record_usage(
        &self,
        batch: &[UsageDelta],
        spend: &[crate::SpendDelta],
    ) -> Result<(), VaultError> {
        if batch.is_empty() && spend.is_empty() {
            return Ok(());
        }
        let mut batch: Vec<&UsageDelta> = batch.iter().collect();
        batch.sort_by(|a, b| {
            (a.org.as_str(), a.subject, &a.id, a.status).cmp(&(
                b.org.as_str(),
                b.subject,
                &b.id,
                b.status,
            ))
        });
        let mut tx = self.begin_write().await?;
        for d in &batch {
            sqlx::query(
                "INSERT INTO gateway_usage (subject_kind, subject_id, org, status, requests, last_used_at, provider) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 ON CONFLICT (org, subject_kind, subject_id, status) DO UPDATE SET \
                 requests = gateway_usage.requests + excluded.requests, \
                 provider = excluded.provider, \
                 last_used_at = CASE WHEN excluded.last_used_at > gateway_usage.last_used_at \
                 THEN excluded.last_used_at ELSE gateway_usage.last_used_at END",
            )
            .bind(d.subject.as_str())
            .bind(&d.id)
            .bind(d.org.as_str())
            .bind(i32::from(d.status))
            .bind(i64::try_from(d.requests).unwrap_or(i64::MAX))
            .bind(d.last_used_at.0)
            .bind(d.provider)
            .execute(&mut *tx)
            .await?;
        }
        // The same counts by the hour (a batch covers at most a few seconds: its latest
        // request's hour is its hour).
        for d in &batch {
            sqlx::query(
                "INSERT INTO usage_hourly (org, subject_kind, subject_id, hour, status, requests) \
                 VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (org, subject_kind, subject_id, hour, status) DO UPDATE SET \
                 requests = usage_hourly.requests + excluded.requests",
            )
            .bind(d.org.as_str())
            .bind(d.subject.as_str())
            .bind(&d.id)
            .bind(d.last_used_at.0 - d.last_used_at.0.rem_euclid(HOUR_MS))
            .bind(i32::from(d.status))
            .bind(i64::try_from(d.requests).unwrap_or(i64::MAX))
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query("DELETE FROM usage_hourly WHERE hour < $1")
            .bind(Millis::now().0 - HOURLY_KEPT)
            .execute(&mut *tx)
            .await?;
        // Then the credentials' and tokens' last use, in the same order (the gateway handing
        // out a key is a use of it, as a resolution is).
        for d in batch.iter().filter(|d| {
            matches!(
                d.subject,
                UsageSubject::GatewayToken | UsageSubject::Credential
            )
        }) {
            let table = if d.subject == UsageSubject::Credential {
                "credentials"
            } else {
                "gateway_tokens"
            };
            sqlx::query(AssertSqlSafe(format!(
                "UPDATE {table} SET last_used_at = $1 \
                 WHERE id = $2 AND (last_used_at IS NULL OR last_used_at < $1)"
            )))
            .bind(d.last_used_at.0)
            .bind(&d.id)
            .execute(&mut *tx)
            .await?;
        }
        self.record_spend(&mut tx, spend).await?;
        self.commit(tx, "usage counts", "batch").await?;
        Ok(())
    }

    /// The usage of an organization's credentials and gateway tokens, most used first.
    pub async fn usage(&self, org: &OrgId) -> Result<Vec<Usage>, VaultError> {
        let rows = sqlx::query(
            "SELECT subject_kind, subject_id, status, requests, last_used_at, provider FROM gateway_usage \
             WHERE org = $1 ORDER BY subject_kind, subject_id, status",
        )
        .bind(org.as_str())
        .fetch_all(&self.inner.pool)
        .await?;
        let mut out: Vec<Usage> = Vec::new();
        for row in rows {
            let kind: String = row.try_get("subject_kind")?;
            let Some(subject) = UsageSubject::parse(&kind) else {
                continue;
            };
            let id: String = row.try_get("subject_id")?;
            let status: i32 = row.try_get("status")?;
            let requests = u64::try_from(row.try_get::<i64, _>("requests")?).unwrap_or(0);
            let last = Millis(row.try_get("last_used_at")?);
            // A gateway token may reach several providers: only what serves one has one.
            let provider: Option<String> = row
                .try_get::<Option<String>, _>("provider")?
                .filter(|_| matches!(subject, UsageSubject::Target | UsageSubject::Environment));
            match out.last_mut() {
                Some(u) if u.subject == subject && u.id == id => {
                    u.requests += requests;
                    u.last_used_at = u.last_used_at.max(last);
                    *u.statuses.entry(status.to_string()).or_default() += requests;
                }
                _ => out.push(Usage {
                    subject,
                    // A target's name is its id, the environment's its variable.
                    name: matches!(subject, UsageSubject::Target | UsageSubject::Environment)
                        .then(|| id.clone()),
                    provider,
                    id,
                    requests,
                    last_used_at: last,
                    statuses: BTreeMap::from([(status.to_string(), requests)]),
                }),
            }
        }
        // Names, for people; what was deleted keeps its counts and loses its name.
        let creds = sqlx::query("SELECT id, name, provider FROM credentials WHERE org_id = $1")
            .bind(org.as_str())
            .fetch_all(&self.inner.pool)
            .await?;
        let mut names: std::collections::HashMap<(UsageSubject, String), (String, Option<String>)> =
            std::collections::HashMap::new();
        for r in &creds {
            names.insert(
                (UsageSubject::Credential, r.try_get("id")?),
                (r.try_get("name")?, Some(r.try_get("provider")?)),
            );
        }
        let tokens = sqlx::query("SELECT id, name FROM gateway_tokens WHERE org = $1")
            .bind(org.as_str())
            .fetch_all(&self.inner.pool)
            .await?;
        for r in &tokens {
            names.insert(
                (UsageSubject::GatewayToken, r.try_get("id")?),
                (r.try_get("name")?, None),
            );
        }
        for u in &mut out {
            if let Some((name, provider)) = names.remove(&(u.subject, u.id.clone())) {
                u.name = Some(name);
                u.provider = provider.or(u.provider.take());
            }
        }
        out.sort_by(|a, b| b.requests.cmp(&a.requests).then_with(|| a.id.cmp(&b.id)));
        Ok(out)
    }

    /// One subject's requests by the hour and status since `since`, oldest first.
    pub async fn usage_hourly(
        &self,
        org: &OrgId,
        subject: UsageSubject,
        id: &str,
        since: Millis,
    ) -> Result<Vec<UsageBucket>, VaultError> {
        let rows = sqlx::query(
            "SELECT hour, status, requests FROM usage_hourly \
             WHERE org = $1 AND subject_kind = $2 AND subject_id = $3 AND hour >= $4 \
             ORDER BY hour, status",
        )
        .bind(org.as_str())
        .bind(subject.as_str())
        .bind(id)
        .bind(since.0 - since.0.rem_euclid(HOUR_MS))
        .fetch_all(&self.inner.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(UsageBucket {
                    hour: Millis(r.try_get("hour")?),
                    status: u16::try_from(r.try_get::<i32, _>("status")?).unwrap_or(0),
                    requests: count(r.try_get("requests")?),
                })
            })
            .collect()
    }

    /// Requests per subject id of one kind since `since` (of one organization, or all).
    pub async fn recent_requests(
        &self,
        org: Option<&OrgId>,
        subject: UsageSubject,
        since: Millis,
    ) -> Result<std::collections::HashMap<String, u64>, VaultError> {
        let rows = sqlx::query(
            "SELECT subject_id, CAST(SUM(requests) AS BIGINT) AS n FROM usage_hourly \
             WHERE subject_kind = $1 AND hour >= $2 AND ($3 = '' OR org = $3) \
             GROUP BY subject_id",
        )
        .bind(subject.as_str())
        .bind(since.0 - since.0.rem_euclid(HOUR_MS))
        .bind(org.map_or("", OrgId::as_str))
        .fetch_all(&self.inner.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("subject_id")?, count(r.try_get("n")?))))
            .collect()
    }
}
