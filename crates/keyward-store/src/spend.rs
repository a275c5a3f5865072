//! Spend: the tokens and money the gateway's answers reported, by the hour, per organization,
//! what they count against, provider and model; and the operator's prices.
//!
//! The gateway adds spend up in memory and hands it here with its request counts, in the same
//! batch and transaction ([`Vault::record_usage`]). Reading sums the hourly rows of a span
//! along the dimensions asked for.

use std::collections::HashMap;

use keyward_core::prices::{ModelPrice, Tokens};
use keyward_core::{Millis, OrgId};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::{AssertSqlSafe, Row};

use crate::usage::HOUR_MS;
use crate::{UsageSubject, Vault, VaultError};
use keyward_core::audit::{Category, NewEvent};

/// How long hourly spend is kept: a year and a month of slack, for monthly budgets and
/// year-over-year questions.
const SPEND_KEPT: i64 = 400 * 24 * HOUR_MS;

/// Spend counted in memory, to be added to the stored hourly rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpendDelta {
    /// The organization.
    pub org: OrgId,
    /// What it counts against.
    pub subject: UsageSubject,
    /// The gateway token's, credential's or target's id, or the environment variable.
    pub id: String,
    /// The provider.
    pub provider: &'static str,
    /// The model the answer named (`""`: none).
    pub model: String,
    /// The hour's start.
    pub hour: i64,
    /// Answers counted.
    pub requests: u64,
    /// Of them, those that reported no tokens.
    pub unmetered: u64,
    /// Of them, those with tokens but no price for their model.
    pub unpriced: u64,
    /// The tokens reported.
    pub tokens: Tokens,
    /// What they cost, in micro-dollars (priced answers only).
    pub cost_micros: u64,
}

impl SpendDelta {
    /// Adds `other`'s counts (of the same subject, model and hour) to these.
    pub fn add(&mut self, other: &SpendDelta) {
        self.requests += other.requests;
        self.unmetered += other.unmetered;
        self.unpriced += other.unpriced;
        self.tokens.add(&other.tokens);
        self.cost_micros = self.cost_micros.saturating_add(other.cost_micros);
    }
}

/// What spend is summed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum SpendDim {
    /// Provider and model.
    Model,
    /// What answered: a credential, a static target or the server's environment.
    Credential,
    /// The gateway token.
    Token,
    /// The day (UTC).
    Day,
    /// The hour.
    Hour,
}

impl SpendDim {
    /// Parses a dimension's name (`model`, `credential`, `token`, `day`, `hour`).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "model" => Some(Self::Model),
            "credential" => Some(Self::Credential),
            "token" | "gateway_token" => Some(Self::Token),
            "day" => Some(Self::Day),
            "hour" => Some(Self::Hour),
            _ => None,
        }
    }
}

/// Which spend to sum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpendQuery {
    /// From this instant (floored to its hour).
    pub from: Millis,
    /// Until this instant (exclusive; an hour under way counts).
    pub to: Millis,
    /// Summed by these, in this order.
    pub by: Vec<SpendDim>,
    /// Only what counts against this credential, target or gateway token.
    pub only: Option<(UsageSubject, String)>,
}

/// Spend summed over a span, for one value of each dimension asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SpendRow {
    /// The provider (by model).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// The model (by model; `""`: the answers named none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// What answered (by credential): `credential`, `target` or `environment`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<UsageSubject>,
    /// The credential's, target's or gateway token's id (by credential or token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Its name, while it exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The day's or hour's start, in milliseconds since the epoch (by day or hour).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<Millis>,
    /// Answers counted.
    pub requests: u64,
    /// Of them, those that reported no tokens (their tokens and cost are unknown, not zero).
    pub unmetered: u64,
    /// Of them, those whose model has no price (their cost is unknown, not zero).
    pub unpriced: u64,
    /// Input tokens, cached ones included.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Of the input tokens, those read from the provider's prompt cache.
    pub cached_tokens: u64,
    /// Of the input tokens, those written to the prompt cache.
    pub cache_write_tokens: u64,
    /// What the priced answers cost, in micro-dollars.
    pub cost_micros: u64,
}

impl SpendRow {
    /// Adds `other`'s counts to these.
    pub fn add(&mut self, other: &SpendRow) {
        self.requests += other.requests;
        self.unmetered += other.unmetered;
        self.unpriced += other.unpriced;
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
        self.cached_tokens += other.cached_tokens;
        self.cache_write_tokens += other.cache_write_tokens;
        self.cost_micros += other.cost_micros;
    }
}

fn big(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn count(row: &sqlx::any::AnyRow, col: &str) -> Result<u64, VaultError> {
    Ok(u64::try_from(row.try_get::<i64, _>(col)?).unwrap_or(0))
}

impl Vault {
    /// Adds spend to the hourly rows, in `tx` (the usage batch's transaction), in one fixed
    /// order so that replicas writing overlapping batches wait for each other instead of
    /// deadlocking; and prunes rows older than a year and a month.
    pub(crate) async fn record_spend(
        &self,
        tx: &mut crate::commit::WriteTx,
        spend: &[SpendDelta],
    ) -> Result<(), VaultError> {
        if spend.is_empty() {
            return Ok(());
        }
        let mut spend: Vec<&SpendDelta> = spend.iter().collect();
        spend.sort_by(|a, b| {
            (
                a.org.as_str(),
                a.subject,
                &a.id,
                a.provider,
                &a.model,
                a.hour,
            )
                .cmp(&(
                    b.org.as_str(),
                    b.subject,
                    &b.id,
                    b.provider,
                    &b.model,
                    b.hour,
                ))
        });
        for d in spend {
            sqlx::query(
                "INSERT INTO spend_hourly (org, subject_kind, subject_id, provider, model, hour, \
                 requests, unmetered, unpriced, input_tokens, output_tokens, cached_tokens, \
                 cache_write_tokens, cost_micros) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) \
                 ON CONFLICT (org, subject_kind, subject_id, provider, model, hour) DO UPDATE SET \
                 requests = spend_hourly.requests + excluded.requests, \
                 unmetered = spend_hourly.unmetered + excluded.unmetered, \
                 unpriced = spend_hourly.unpriced + excluded.unpriced, \
                 input_tokens = spend_hourly.input_tokens + excluded.input_tokens, \
                 output_tokens = spend_hourly.output_tokens + excluded.output_tokens, \
                 cached_tokens = spend_hourly.cached_tokens + excluded.cached_tokens, \
                 cache_write_tokens = spend_hourly.cache_write_tokens + excluded.cache_write_tokens, \
                 cost_micros = spend_hourly.cost_micros + excluded.cost_micros",
            )
            .bind(d.org.as_str())
            .bind(d.subject.as_str())
            .bind(&d.id)
            .bind(d.provider)
            .bind(&d.model)
            .bind(d.hour)
            .bind(big(d.requests))
            .bind(big(d.unmetered))
            .bind(big(d.unpriced))
            .bind(big(d.tokens.input))
            .bind(big(d.tokens.output))
            .bind(big(d.tokens.cache_read))
            .bind(big(d.tokens.cache_write))
            .bind(big(d.cost_micros))
            .execute(&mut **tx)
            .await?;
        }
        sqlx::query("DELETE FROM spend_hourly WHERE hour < $1")
            .bind(Millis::now().0 - SPEND_KEPT)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// An organization's spend over `q`'s span, summed by its dimensions (without any: one
    /// row, the total), most costly first (by day or hour: oldest first). By model, by day and
    /// in total every gateway request counts once (through its gateway token); by credential,
    /// each answer counts against what gave it.
    pub async fn spend(&self, org: &OrgId, q: &SpendQuery) -> Result<Vec<SpendRow>, VaultError> {
        let mut group: Vec<&str> = Vec::new();
        for dim in &q.by {
            group.extend_from_slice(match dim {
                SpendDim::Model => &["provider", "model"][..],
                SpendDim::Credential => &["subject_kind", "subject_id"],
                SpendDim::Token => &["subject_id"],
                SpendDim::Day => &["(hour / 86400000) * 86400000"],
                SpendDim::Hour => &["hour"],
            });
        }
        let by_credential = q.by.contains(&SpendDim::Credential);
        if by_credential && q.by.contains(&SpendDim::Token) {
            return Err(VaultError::InvalidInput(
                "spend cannot be grouped by credential and by token at once".into(),
            ));
        }
        // By what answered: the served subjects; otherwise each request once, by its token
        // (or, asked about one subject, its rows).
        let kinds = match &q.only {
            Some(_) => "subject_kind = $4 AND subject_id = $5",
            None if by_credential => "subject_kind IN ('credential', 'target', 'environment')",
            None => "subject_kind = 'gateway_token'",
        };
        let (only_kind, only_id) = match &q.only {
            Some((kind, id)) => (kind.as_str(), id.as_str()),
            None => ("", ""),
        };
        let keys: Vec<String> = group
            .iter()
            .enumerate()
            .map(|(i, g)| format!("{g} AS k{i}"))
            .collect();
        let select = keys
            .iter()
            .map(String::as_str)
            .chain([
                "CAST(SUM(requests) AS BIGINT) AS requests",
                "CAST(SUM(unmetered) AS BIGINT) AS unmetered",
                "CAST(SUM(unpriced) AS BIGINT) AS unpriced",
                "CAST(SUM(input_tokens) AS BIGINT) AS input_tokens",
                "CAST(SUM(output_tokens) AS BIGINT) AS output_tokens",
                "CAST(SUM(cached_tokens) AS BIGINT) AS cached_tokens",
                "CAST(SUM(cache_write_tokens) AS BIGINT) AS cache_write_tokens",
                "CAST(SUM(cost_micros) AS BIGINT) AS cost_micros",
            ])
            .collect::<Vec<_>>()
            .join(", ");
        let mut sql = format!(
            "SELECT {select} FROM spend_hourly WHERE org = $1 AND hour >= $2 AND hour < $3 \
             AND {kinds}"
        );
        if !group.is_empty() {
            sql.push_str(" GROUP BY ");
            sql.push_str(&group.join(", "));
        }
        let mut query = sqlx::query(AssertSqlSafe(sql))
            .bind(org.as_str())
            .bind(q.from.0 - q.from.0.rem_euclid(HOUR_MS))
            .bind(q.to.0);
        if q.only.is_some() {
            query = query.bind(only_kind).bind(only_id);
        }
        let rows = query.fetch_all(&self.inner.pool).await?;
        let names = if by_credential || q.by.contains(&SpendDim::Token) {
            self.subject_names(org).await?
        } else {
            HashMap::new()
        };
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let mut r = SpendRow {
                requests: count(row, "requests")?,
                unmetered: count(row, "unmetered")?,
                unpriced: count(row, "unpriced")?,
                input_tokens: count(row, "input_tokens")?,
                output_tokens: count(row, "output_tokens")?,
                cached_tokens: count(row, "cached_tokens")?,
                cache_write_tokens: count(row, "cache_write_tokens")?,
                cost_micros: count(row, "cost_micros")?,
                ..SpendRow::default()
            };
            // No request in the span: SUM over nothing.
            if r.requests == 0 && group.is_empty() {
                out.push(r);
                continue;
            }
            // The keys are the first columns, in the order of `group`.
            let mut k = 0;
            for dim in &q.by {
                match dim {
                    SpendDim::Model => {
                        r.provider = Some(row.try_get(k)?);
                        r.model = Some(row.try_get(k + 1)?);
                        k += 2;
                    }
                    SpendDim::Credential | SpendDim::Token => {
                        let kind = if *dim == SpendDim::Token {
                            UsageSubject::GatewayToken
                        } else {
                            k += 1;
                            UsageSubject::parse(&row.try_get::<String, _>(k - 1)?)
                                .unwrap_or(UsageSubject::Credential)
                        };
                        let id: String = row.try_get(k)?;
                        k += 1;
                        r.name = match kind {
                            UsageSubject::Target | UsageSubject::Environment => Some(id.clone()),
                            _ => names.get(&(kind, id.clone())).cloned(),
                        };
                        r.kind = by_credential.then_some(kind);
                        r.id = Some(id);
                    }
                    SpendDim::Day | SpendDim::Hour => {
                        r.at = Some(Millis(row.try_get(k)?));
                        k += 1;
                    }
                }
            }
            out.push(r);
        }
        if q.by
            .iter()
            .any(|d| matches!(d, SpendDim::Day | SpendDim::Hour))
        {
            out.sort_by(|a, b| a.at.cmp(&b.at).then(b.cost_micros.cmp(&a.cost_micros)));
        } else {
            out.sort_by(|a, b| {
                (b.cost_micros, b.requests, &a.model, &a.id).cmp(&(
                    a.cost_micros,
                    a.requests,
                    &b.model,
                    &b.id,
                ))
            });
        }
        Ok(out)
    }

    /// The names of an organization's credentials and gateway tokens, by kind and id.
    async fn subject_names(
        &self,
        org: &OrgId,
    ) -> Result<HashMap<(UsageSubject, String), String>, VaultError> {
        let mut names = HashMap::new();
        for (kind, sql) in [
            (
                UsageSubject::Credential,
                "SELECT id, name FROM credentials WHERE org_id = $1",
            ),
            (
                UsageSubject::GatewayToken,
                "SELECT id, name FROM gateway_tokens WHERE org = $1",
            ),
        ] {
            for r in sqlx::query(sql)
                .bind(org.as_str())
                .fetch_all(&self.inner.pool)
                .await?
            {
                names.insert((kind, r.try_get("id")?), r.try_get("name")?);
            }
        }
        Ok(names)
    }

    /// The operator's prices (imported over the shipped ones).
    pub async fn model_prices(&self) -> Result<Vec<ModelPrice>, VaultError> {
        let rows =
            sqlx::query("SELECT provider, model, price FROM model_prices ORDER BY provider, model")
                .fetch_all(&self.inner.pool)
                .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let text: String = r.try_get("price")?;
            // A row this version cannot read is left out, not fatal.
            if let Ok(p) = serde_json::from_str::<ModelPrice>(&text) {
                out.push(p);
            }
        }
        Ok(out)
    }

    /// Stores the operator's prices: added to (or with `replace`, in place of) those imported
    /// before. Audited, with how many.
    pub async fn import_prices(
        &self,
        prices: &[ModelPrice],
        replace: bool,
        source: &str,
        actor: &str,
    ) -> Result<usize, VaultError> {
        for p in prices {
            if !keyward_core::ids::is_plain_text(&p.model, 200)
                || keyward_core::Provider::get(&p.provider).is_err()
            {
                return Err(VaultError::InvalidInput(format!(
                    "a price names an unknown provider or a model that is not plain text ({})",
                    keyward_core::secret_like::shown(&p.provider)
                )));
            }
            keyward_core::secret_like::check_public("model name", &p.model)?;
        }
        let mut tx = self.begin_write().await?;
        if replace {
            sqlx::query("DELETE FROM model_prices")
                .execute(&mut *tx)
                .await?;
        }
        let now = Millis::now().0;
        for p in prices {
            let text =
                serde_json::to_string(p).map_err(|e| VaultError::InvalidInput(e.to_string()))?;
            sqlx::query(
                "INSERT INTO model_prices (provider, model, price, imported_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (provider, model) DO UPDATE SET price = excluded.price, imported_at = excluded.imported_at",
            )
            .bind(&p.provider)
            .bind(&p.model)
            .bind(text)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        self.append_event(
            &mut tx,
            NewEvent::new(actor, Category::SecretManagement, "import", "prices".to_owned())
                .details(json!({ "prices": prices.len(), "replace": replace, "source": keyward_core::secret_like::shown(source) })),
        )
        .await?;
        self.commit(tx, "prices", "import").await?;
        Ok(prices.len())
    }

    /// When the operator's prices last changed and how many there are, for replicas to tell
    /// whether to read them again.
    pub async fn prices_version(&self) -> Result<(i64, i64), VaultError> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n, CAST(COALESCE(MAX(imported_at), 0) AS BIGINT) AS at FROM model_prices",
        )
        .fetch_one(&self.inner.pool)
        .await?;
        Ok((row.try_get("n")?, row.try_get("at")?))
    }
}
