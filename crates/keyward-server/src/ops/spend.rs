//! Spend (tokens and money the gateway's answers reported) and the prices it is reckoned at.

use keyward_core::prices::ModelPrice;
use keyward_core::{Millis, OrgId};
use keyward_store::{Principal, SpendQuery, SpendRow};

use super::{allow_on, listed, vault};
use crate::access::{self, On, Op};
use crate::{ApiError, AppState};

/// The longest span one spend question may cover (the hourly rows kept).
const LONGEST: i64 = 400 * 24 * keyward_store::HOUR_MS;

/// An instant as the API and the CLI take it: RFC 3339 (`2026-12-01T00:00:00Z`), a date
/// (`2026-12-01`, its start in UTC), milliseconds since the epoch, or a span back from `now`
/// (`7d`, `24h`, `90m`).
pub fn parse_instant(s: &str, now: Millis) -> Result<Millis, String> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s
            .parse::<i64>()
            .map(Millis)
            .map_err(|_| "milliseconds out of range".to_owned());
    }
    if let Ok(d) = humantime::parse_duration(s) {
        let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        return Ok(Millis(now.0.saturating_sub(ms)));
    }
    let stamp = if s.len() == 10 {
        format!("{s}T00:00:00Z")
    } else {
        s.to_owned()
    };
    humantime::parse_rfc3339_weak(&stamp)
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .and_then(|d| i64::try_from(d.as_millis()).ok())
        .map(Millis)
        .ok_or_else(|| {
            format!(
                "{} is not an instant: give RFC 3339 (2026-12-01T00:00:00Z), a date (2026-12-01), milliseconds since the epoch, or a span back from now (7d, 24h)",
                keyward_core::secret_like::shown(s)
            )
        })
}

/// An organization's spend over `q`'s span.
pub(crate) async fn spend(
    state: &AppState,
    p: &Principal,
    org: &OrgId,
    q: &SpendQuery,
) -> Result<Vec<SpendRow>, ApiError> {
    let grant = allow_on(p, Op::ReadUsage, On::Org(org))?;
    if q.to.0 <= q.from.0 {
        return Err(ApiError::BadRequest(
            "the span is empty: `from` must come before `to`".into(),
        ));
    }
    if q.to.0 - q.from.0 > LONGEST + keyward_store::HOUR_MS {
        return Err(ApiError::BadRequest(
            "the span is longer than the 400 days spend is kept".into(),
        ));
    }
    listed(state, &grant).await?;
    Ok(vault(state, &grant).spend(org, q).await?)
}

/// The prices answers are reckoned at (the shipped ones with the operator's on top), sorted by
/// provider and model.
pub(crate) async fn prices(state: &AppState, p: &Principal) -> Result<Vec<ModelPrice>, ApiError> {
    allow_on(p, Op::ListPrices, access::scope_of(p, None, On::Everywhere))?;
    let mine = state.vault.serving().model_prices().await?;
    let mut all: std::collections::BTreeMap<(String, String), ModelPrice> =
        keyward_core::prices::shipped()
            .into_iter()
            .chain(mine)
            .map(|m| ((m.provider.clone(), m.model.clone()), m))
            .collect();
    Ok(std::mem::take(&mut all).into_values().collect())
}

/// Stores the operator's prices (added to, or with `replace` in place of, those imported
/// before) and prices answers with them from now on. Admins only.
pub(crate) async fn import_prices(
    state: &AppState,
    p: &Principal,
    prices: &[ModelPrice],
    replace: bool,
    source: &str,
) -> Result<usize, ApiError> {
    let grant = allow_on(p, Op::ImportPrices, On::Unowned)?;
    let n = vault(state, &grant)
        .import_prices(prices, replace, source, &p.actor())
        .await?;
    state.refresh_prices(true).await;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_in_every_form_the_api_takes() {
        let now = Millis(1_765_000_000_000);
        assert_eq!(parse_instant("7d", now), Ok(Millis(now.0 - 7 * 86_400_000)));
        assert_eq!(parse_instant("90m", now), Ok(Millis(now.0 - 90 * 60_000)));
        assert_eq!(
            parse_instant("1700000000000", now),
            Ok(Millis(1_700_000_000_000))
        );
        assert_eq!(
            parse_instant("2026-12-01", now),
            Ok(Millis(1_796_083_200_000))
        );
        assert_eq!(
            parse_instant("2026-12-01T01:00:00Z", now),
            Ok(Millis(1_796_083_200_000 + 3_600_000))
        );
        assert!(parse_instant("yesterday", now).is_err());
        assert!(parse_instant("", now).is_err());
    }
}

/// A budget with its current period's spending.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct BudgetStatus {
    /// The budget.
    #[serde(flatten)]
    pub(crate) budget: keyward_store::Budget,
    /// When the current period started, in milliseconds since the epoch.
    pub(crate) period_start: Millis,
    /// When it starts again (`None`: never).
    pub(crate) resets_at: Option<Millis>,
    /// Spent in the current period, as the replicas last reported it (within about a second).
    pub(crate) spent: u64,
    /// What is left of the limit.
    pub(crate) remaining: u64,
    /// `spent` as a percentage of the limit.
    pub(crate) percent: u64,
}

/// An organization's budgets and limits, with what their current periods spent.
pub(crate) async fn budgets(
    state: &AppState,
    p: &Principal,
    org: &OrgId,
) -> Result<Vec<BudgetStatus>, ApiError> {
    let grant = allow_on(p, Op::ReadUsage, On::Org(org))?;
    listed(state, &grant).await?;
    let list = vault(state, &grant).list_budgets(Some(org)).await?;
    let now = Millis::now();
    let keys: Vec<(&keyward_store::Budget, i64)> =
        list.iter().map(|b| (b, b.period.start(now))).collect();
    let spent = vault(state, &grant).budget_spent(&keys).await?;
    Ok(list
        .into_iter()
        .map(|b| {
            let start = b.period.start(now);
            let s = spent.get(&b.id).copied().unwrap_or(0);
            BudgetStatus {
                period_start: Millis(start),
                resets_at: b.period.end(start).map(Millis),
                spent: s,
                remaining: b.amount.saturating_sub(s),
                percent: u64::try_from(u128::from(s) * 100 / u128::from(b.amount.max(1)))
                    .unwrap_or(u64::MAX),
                budget: b,
            }
        })
        .collect())
}

/// Sets a budget or limit (org_admin of its organization, or admin), and applies it at once on
/// this server (within `DEFS_EVERY` on the others).
pub(crate) async fn set_budget(
    state: &AppState,
    p: &Principal,
    new: &keyward_store::NewBudget,
) -> Result<keyward_store::Budget, ApiError> {
    let grant = allow_on(p, Op::WriteBudget, On::Org(&new.org))?;
    // A webhook makes the server send requests where it says: admins only.
    if new.webhook.is_some() {
        allow_on(p, Op::SetEnvFallback, On::Org(&new.org))
            .map_err(|_| ApiError::Forbidden("a budget's webhook needs an admin token".into()))?;
    }
    let b = vault(state, &grant).set_budget(new, grant.actor()).await?;
    state.reload_budgets().await;
    Ok(b)
}

/// Deletes one of an organization's budgets.
pub(crate) async fn delete_budget(
    state: &AppState,
    p: &Principal,
    org: &OrgId,
    id: &str,
) -> Result<keyward_store::Budget, ApiError> {
    let grant = allow_on(p, Op::WriteBudget, On::Org(org))?;
    super::plain_id("budget id", id)?;
    let b = vault(state, &grant).get_budget(id).await;
    match b {
        Ok(b) if b.org == *org => {}
        Ok(_) | Err(keyward_store::VaultError::NotFound(_)) => {
            return Err(ApiError::NotFound(format!("budget {id} not found")));
        }
        Err(e) => return Err(e.into()),
    }
    let b = vault(state, &grant)
        .delete_budget(id, grant.actor())
        .await?;
    state.reload_budgets().await;
    Ok(b)
}

/// Dollars as micro-dollars: `5`, `5.25`, `0.000001` (at most six decimals).
pub fn parse_usd(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let s = s.strip_prefix('$').unwrap_or(s);
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    let digits = |d: &str| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || (!frac.is_empty() && !digits(frac)) || frac.len() > 6 {
        return Err(format!(
            "{} is not an amount of dollars (like 5 or 12.50, at most six decimals)",
            keyward_core::secret_like::shown(s)
        ));
    }
    let whole: u64 = whole.parse().map_err(|_| "too many dollars".to_owned())?;
    let frac: u64 = format!("{frac:0<6}").parse().unwrap_or(0);
    whole
        .checked_mul(1_000_000)
        .and_then(|w| w.checked_add(frac))
        .ok_or_else(|| "too many dollars".to_owned())
}

#[cfg(test)]
mod usd_tests {
    use super::parse_usd;

    #[test]
    fn dollars_as_micro_dollars() {
        assert_eq!(parse_usd("5"), Ok(5_000_000));
        assert_eq!(parse_usd("$12.50"), Ok(12_500_000));
        assert_eq!(parse_usd("0.000001"), Ok(1));
        assert!(parse_usd("1.0000001").is_err());
        assert!(parse_usd("-1").is_err());
        assert!(parse_usd("1e3").is_err());
        assert!(parse_usd("").is_err());
        assert!(parse_usd("$$5").is_err());
    }
}
