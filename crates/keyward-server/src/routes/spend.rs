//! Spend and prices: `GET /api/v1/orgs/{org}/spend`, `GET` and `POST /api/v1/prices`.

use axum::Json;
use axum::extract::{Path, Query, State};
use keyward_core::Millis;
use keyward_core::prices::ModelPrice;
use keyward_store::{SpendDim, SpendQuery, SpendRow};
use serde::{Deserialize, Serialize};

use super::parse_org;
use crate::auth::{ApiJson, Caller};
use crate::ops::spend;
use crate::{ApiError, AppState};

/// The largest price import: LiteLLM's whole file is under 3 MiB.
pub(super) const PRICES_BODY_LIMIT: usize = 8 * 1024 * 1024;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct SpendParams {
    /// From this instant (RFC 3339, a date, milliseconds since the epoch, or a span back from
    /// now such as `7d`); by default 30 days ago. Spend is kept by the hour: the hour holding
    /// it counts whole.
    from: Option<String>,
    /// Until this instant (exclusive), in the same forms; by default now.
    to: Option<String>,
    /// `model` (the default), `credential` (what answered: a credential, static target or the
    /// environment), `token` (the gateway token), `day`, or `total`.
    group_by: Option<String>,
}

/// An organization's spend over a span.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct SpendAnswer {
    /// The organization.
    org: String,
    /// The span's start (the hour holding `from`), in milliseconds since the epoch.
    from: Millis,
    /// The span's end (exclusive).
    to: Millis,
    /// What the rows are summed by (`total`: one row).
    group_by: String,
    /// The currency of every `cost_micros`: millionths of a US dollar.
    currency: &'static str,
    /// One row per group.
    rows: Vec<SpendRow>,
    /// Every row together.
    total: SpendRow,
}

/// `GET /api/v1/orgs/{org}/spend`: tokens and cost the gateway's answers reported, summed by
/// model, credential, gateway token or day. Requests whose answer reported no tokens count in
/// `unmetered`, those whose model has no price in `unpriced`; their tokens or cost are not
/// guessed. Written every second or so: the latest answers may not show yet.
#[utoipa::path(get, path = "/api/v1/orgs/{organization_id}/spend", tag = "gateway", params(("organization_id" = String, Path, description = "an organization's slug"), SpendParams), responses((status = 200, description = "Spend by the group asked for, and its total", body = SpendAnswer)))]
pub(super) async fn spend(
    State(state): State<AppState>,
    caller: Caller,
    Path(org): Path<String>,
    Query(q): Query<SpendParams>,
) -> Result<Json<SpendAnswer>, ApiError> {
    let org = parse_org(&org)?;
    let now = Millis::now();
    let instant = |s: Option<&str>, default: Millis| match s {
        None | Some("") => Ok(default),
        Some(s) => spend::parse_instant(s, now).map_err(ApiError::BadRequest),
    };
    let from = instant(
        q.from.as_deref(),
        Millis(now.0 - 30 * 24 * keyward_store::HOUR_MS),
    )?;
    let to = instant(q.to.as_deref(), Millis(now.0 + 1))?;
    let group_by = q.group_by.as_deref().unwrap_or("model");
    let by = match group_by {
        "total" => vec![],
        g => vec![
            SpendDim::parse(g)
                .filter(|d| *d != SpendDim::Hour)
                .ok_or_else(|| {
                    ApiError::BadRequest(
                        "group_by is one of model, credential, token, day, total".into(),
                    )
                })?,
        ],
    };
    let query = SpendQuery {
        from,
        to,
        by,
        only: None,
    };
    let rows = spend::spend(&state, &caller.0, &org, &query).await?;
    let mut total = SpendRow::default();
    for r in &rows {
        total.add(r);
    }
    Ok(Json(SpendAnswer {
        org: org.to_string(),
        from: Millis(from.0 - from.0.rem_euclid(keyward_store::HOUR_MS)),
        to,
        group_by: group_by.to_owned(),
        currency: "USD",
        rows: if group_by == "total" { vec![] } else { rows },
        total,
    }))
}

/// The prices answers are reckoned at.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct PricesAnswer {
    /// Micro-dollars per million tokens, per provider and model.
    prices: Vec<ModelPrice>,
}

/// `GET /api/v1/prices`: the prices spend is reckoned at, in micro-dollars per million tokens:
/// those Keyward ships with the operator's imported ones on top.
#[utoipa::path(get, path = "/api/v1/prices", tag = "gateway", responses((status = 200, description = "Every model's price", body = PricesAnswer)))]
pub(super) async fn prices_list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<PricesAnswer>, ApiError> {
    Ok(Json(PricesAnswer {
        prices: spend::prices(&state, &caller.0).await?,
    }))
}

/// Prices to import: LiteLLM's `model_prices_and_context_window.json` as it is, or prices
/// already in Keyward's form.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PricesImport {
    /// LiteLLM's price file (a JSON object of models).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    litellm: Option<serde_json::Value>,
    /// Prices in micro-dollars per million tokens.
    #[serde(default)]
    prices: Option<Vec<ModelPrice>>,
    /// Replace every price imported before (otherwise these are added, replacing only the
    /// same models).
    #[serde(default)]
    replace: bool,
    /// Where they come from (a file name, a URL), for the audit trail.
    #[serde(default)]
    source: Option<String>,
}

/// What an import took.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct PricesImported {
    /// Prices stored.
    imported: usize,
    /// Entries of LiteLLM's file left out (no per-token price, or a provider Keyward does not
    /// know).
    skipped: usize,
}

/// `POST /api/v1/prices`: imports prices (admins), used from now on by every replica (within
/// 30 seconds; at once by this one). Audited.
#[utoipa::path(post, path = "/api/v1/prices", tag = "gateway", request_body = PricesImport, responses((status = 200, description = "What was imported", body = PricesImported)))]
pub(super) async fn prices_import(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<PricesImport>,
) -> Result<Json<PricesImported>, ApiError> {
    let (prices, skipped) = match (body.litellm, body.prices) {
        (Some(file), None) => {
            let parsed = keyward_core::prices::parse_litellm(&file.to_string())?;
            (parsed.prices, parsed.skipped)
        }
        (None, Some(prices)) => (prices, 0),
        _ => {
            return Err(ApiError::BadRequest(
                "give either `litellm` (LiteLLM's price file) or `prices`".into(),
            ));
        }
    };
    let source = body.source.as_deref().unwrap_or("api");
    let imported = spend::import_prices(&state, &caller.0, &prices, body.replace, source).await?;
    Ok(Json(PricesImported { imported, skipped }))
}

/// An organization's budgets and limits.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct BudgetsAnswer {
    /// Each with what its current period spent.
    budgets: Vec<spend::BudgetStatus>,
}

/// `GET /api/v1/orgs/{org}/budgets`: the organization's budgets and limits, with what their
/// current periods spent (as the replicas last reported, within about a second).
#[utoipa::path(get, path = "/api/v1/orgs/{organization_id}/budgets", tag = "gateway", params(("organization_id" = String, Path, description = "an organization's slug")), responses((status = 200, description = "Budgets and limits", body = BudgetsAnswer)))]
pub(super) async fn budgets_list(
    State(state): State<AppState>,
    caller: Caller,
    Path(org): Path<String>,
) -> Result<Json<BudgetsAnswer>, ApiError> {
    let org = parse_org(&org)?;
    Ok(Json(BudgetsAnswer {
        budgets: spend::budgets(&state, &caller.0, &org).await?,
    }))
}

/// A budget or limit to set. Money (`limit_usd`) is budgeted by `day`, `week`, `month` (the
/// default) or `none`; `rpm` and `tpm` are limits per calendar minute. Give one of the three.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct BudgetSet {
    /// What it caps: `org` (the default), `gateway_token` or `credential`.
    #[serde(default)]
    scope: Option<keyward_store::BudgetScope>,
    /// The gateway token's or credential's id.
    #[serde(default)]
    id: Option<String>,
    /// A budget in dollars (a number or a string such as "5.00").
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    limit_usd: Option<serde_json::Value>,
    /// Its period: `day`, `week`, `month` or `none`.
    #[serde(default)]
    period: Option<String>,
    /// Requests per minute.
    #[serde(default)]
    rpm: Option<u64>,
    /// Tokens (input and output) per minute.
    #[serde(default)]
    tpm: Option<u64>,
    /// Percentages of a budget at which an alert goes out (default 50, 80, 100).
    #[serde(default)]
    alerts: Option<Vec<u8>>,
    /// Where alerts are POSTed as JSON.
    #[serde(default)]
    webhook: Option<String>,
}

/// `POST /api/v1/orgs/{org}/budgets`: sets a budget or limit (replacing the one of the same
/// scope, kind and period). Org admins of the organization, and admins. Audited.
#[utoipa::path(post, path = "/api/v1/orgs/{organization_id}/budgets", tag = "gateway", params(("organization_id" = String, Path, description = "an organization's slug")), request_body = BudgetSet, responses((status = 200, description = "The budget as set", body = keyward_store::Budget)))]
pub(super) async fn budgets_set(
    State(state): State<AppState>,
    caller: Caller,
    Path(org): Path<String>,
    ApiJson(body): ApiJson<BudgetSet>,
) -> Result<Json<keyward_store::Budget>, ApiError> {
    use keyward_store::{BudgetScope, Metric, Period};
    let org = parse_org(&org)?;
    let scope = body.scope.unwrap_or(BudgetScope::Org);
    let scope_id = match (scope, body.id) {
        (BudgetScope::Org, _) => String::new(),
        (_, Some(id)) => id,
        (_, None) => {
            return Err(ApiError::BadRequest(
                "a gateway token's or credential's budget needs its `id`".into(),
            ));
        }
    };
    let (metric, amount, period) = match (body.limit_usd, body.rpm, body.tpm) {
        (Some(usd), None, None) => {
            let text = match usd {
                serde_json::Value::String(s) => s,
                serde_json::Value::Number(n) => n.to_string(),
                _ => String::new(),
            };
            let micros = spend::parse_usd(&text).map_err(ApiError::BadRequest)?;
            let period = match body.period.as_deref() {
                None => Period::Month,
                Some(p) => Period::parse(p)
                    .filter(|p| *p != Period::Minute)
                    .ok_or_else(|| {
                        ApiError::BadRequest("period is day, week, month or none".into())
                    })?,
            };
            (Metric::Usd, micros, period)
        }
        (None, Some(_), None) | (None, None, Some(_))
            if body.period.as_deref().is_some_and(|p| p != "minute") =>
        {
            return Err(ApiError::BadRequest(
                "rpm and tpm count per minute: give no other period".into(),
            ));
        }
        (None, Some(rpm), None) => (Metric::Requests, rpm, Period::Minute),
        (None, None, Some(tpm)) => (Metric::Tokens, tpm, Period::Minute),
        _ => {
            return Err(ApiError::BadRequest(
                "give one of limit_usd, rpm and tpm".into(),
            ));
        }
    };
    let alerts = body.alerts.unwrap_or_else(|| {
        if metric == Metric::Usd {
            vec![50, 80, 100]
        } else {
            Vec::new()
        }
    });
    let new = keyward_store::NewBudget {
        org,
        scope,
        scope_id,
        metric,
        period,
        amount,
        alerts,
        webhook: body.webhook,
    };
    Ok(Json(spend::set_budget(&state, &caller.0, &new).await?))
}

/// `DELETE /api/v1/orgs/{org}/budgets/{budget_id}`: removes a budget or limit. Audited.
#[utoipa::path(delete, path = "/api/v1/orgs/{organization_id}/budgets/{budget_id}", tag = "gateway", params(("organization_id" = String, Path, description = "an organization's slug"), ("budget_id" = String, Path, description = "a budget's id")), responses((status = 200, description = "Removed", body = keyward_store::Budget)))]
pub(super) async fn budgets_delete(
    State(state): State<AppState>,
    caller: Caller,
    Path((org, id)): Path<(String, String)>,
) -> Result<Json<keyward_store::Budget>, ApiError> {
    let org = parse_org(&org)?;
    Ok(Json(
        spend::delete_budget(&state, &caller.0, &org, &id).await?,
    ))
}
