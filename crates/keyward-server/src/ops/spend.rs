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
