//! Spend in the console: this month's cost, day by day and added up, by model, with the
//! budget as a line; the last 30 days' tokens by model; and a table by model that sorts and
//! downloads as CSV. Laid out here as numbers, drawn by `spend.html` as inline SVG with
//! labelled axes (no script, no image requests), with every number also in the table.

use std::collections::{BTreeMap, HashMap};

use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use keyward_core::prices::{csv_record, usd};
use keyward_core::{Millis, OrgId};
use keyward_store::{Metric, Period, SpendDim, SpendQuery, SpendRow, UsageSubject};
use serde::Deserialize;

use super::form::named_org;
use super::{UiSession, failed};
use crate::{ApiError, AppState, ops};

const WIDTH: i64 = 520;
const HEIGHT: i64 = 200;
/// Room for the y axis' labels on the left and the dates below.
const LEFT: i64 = 64;
const BOTTOM: i64 = 24;
const TOP: i64 = 22;
/// Models drawn apart; the rest are "other".
const SERIES: usize = 5;
const DAY_MS: i64 = 24 * keyward_store::HOUR_MS;

/// One rectangle of a stacked bar.
pub(crate) struct Piece {
    pub(crate) x: i64,
    pub(crate) y: i64,
    pub(crate) width: i64,
    pub(crate) height: i64,
    /// The series' style class (`s0` .. `s5`).
    pub(crate) class: &'static str,
    pub(crate) title: String,
}

/// A labelled tick.
pub(crate) struct Tick {
    pub(crate) at: i64,
    pub(crate) label: String,
}

/// One entry of the legend.
pub(crate) struct Key {
    pub(crate) class: &'static str,
    pub(crate) label: String,
}

/// A stacked bar chart over days.
pub(crate) struct StackedChart {
    pub(crate) title: String,
    /// What the y axis counts.
    pub(crate) unit: &'static str,
    pub(crate) width: i64,
    pub(crate) height: i64,
    pub(crate) left: i64,
    /// Where the plot's bottom edge is.
    pub(crate) base: i64,
    pub(crate) pieces: Vec<Piece>,
    pub(crate) y_ticks: Vec<Tick>,
    pub(crate) x_ticks: Vec<Tick>,
    pub(crate) keys: Vec<Key>,
    /// The budget: its height and what it says.
    pub(crate) line: Option<Tick>,
    pub(crate) empty: bool,
}

const CLASSES: [&str; SERIES + 1] = ["s0", "s1", "s2", "s3", "s4", "s5"];

/// `values` (per day start and series) drawn as bars over `days`, stacked in `series` order;
/// `cumulative`: each day shows the running total; `line`: a level to draw across.
#[allow(clippy::too_many_arguments)]
fn stacked(
    title: String,
    unit: &'static str,
    days: &[i64],
    series: &[String],
    values: &HashMap<(i64, usize), u64>,
    cumulative: bool,
    line: Option<(u64, String)>,
    fmt: fn(u64) -> String,
) -> StackedChart {
    let n = i64::try_from(days.len().max(1)).unwrap_or(1);
    let plot_w = WIDTH - LEFT - 4;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let base = HEIGHT - BOTTOM;
    let slot = plot_w / n;
    // Each day's stack, per series, as drawn (running totals when cumulative).
    let mut running = vec![0u64; series.len()];
    let stacks: Vec<Vec<u64>> = days
        .iter()
        .map(|d| {
            (0..series.len())
                .map(|s| {
                    let v = values.get(&(*d, s)).copied().unwrap_or(0);
                    if cumulative {
                        running[s] += v;
                        running[s]
                    } else {
                        v
                    }
                })
                .collect()
        })
        .collect();
    let peak = stacks
        .iter()
        .map(|s| s.iter().sum::<u64>())
        .max()
        .unwrap_or(0)
        .max(line.as_ref().map_or(0, |(v, _)| *v));
    let top = nice_ceiling(peak);
    let scale = |v: u64| -> i64 {
        i64::try_from(u128::from(v) * u128::try_from(plot_h).unwrap_or(0) / u128::from(top.max(1)))
            .unwrap_or(0)
    };
    let mut pieces = Vec::new();
    for (i, (day, stack)) in days.iter().zip(&stacks).enumerate() {
        let x = LEFT + i64::try_from(i).unwrap_or(0) * slot + 1;
        let mut y = base;
        let date = date_of(*day);
        for (s, v) in stack.iter().enumerate() {
            let h = scale(*v);
            if h == 0 {
                continue;
            }
            y -= h;
            pieces.push(Piece {
                x,
                y,
                width: (slot - 2).max(1),
                height: h,
                class: CLASSES[s.min(SERIES)],
                title: format!("{date} · {}: {}", series[s], fmt(*v)),
            });
        }
    }
    let y_ticks = (0..=4)
        .map(|k| Tick {
            at: base - scale(top / 4 * k),
            label: fmt(top / 4 * k),
        })
        .collect();
    let every = (days.len() / 6).max(1);
    let x_ticks = days
        .iter()
        .enumerate()
        .filter(|(i, _)| i % every == 0)
        .map(|(i, d)| Tick {
            at: LEFT + i64::try_from(i).unwrap_or(0) * slot + slot / 2,
            label: date_of(*d)[5..].to_owned(),
        })
        .collect();
    StackedChart {
        title,
        unit,
        width: WIDTH,
        height: HEIGHT,
        left: LEFT,
        base,
        empty: peak == 0,
        pieces,
        y_ticks,
        x_ticks,
        keys: series
            .iter()
            .enumerate()
            .map(|(i, s)| Key {
                class: CLASSES[i.min(SERIES)],
                label: s.clone(),
            })
            .collect(),
        line: line.map(|(v, label)| Tick {
            at: base - scale(v),
            label,
        }),
    }
}

/// A round number at or above `v`: 1, 2 or 5 times a power of ten.
fn nice_ceiling(v: u64) -> u64 {
    if v == 0 {
        return 4;
    }
    let mut p = 1u64;
    while p.saturating_mul(10) <= v {
        p *= 10;
    }
    for m in [1, 2, 5, 10] {
        if p.saturating_mul(m) >= v {
            return p.saturating_mul(m);
        }
    }
    v
}

fn date_of(day: i64) -> String {
    humantime::format_rfc3339_seconds(Millis(day).to_system_time()).to_string()[..10].to_owned()
}

fn tokens(n: u64) -> String {
    match n {
        0..1_000 => n.to_string(),
        1_000..1_000_000 => format!("{:.1}k", n as f64 / 1e3),
        _ => format!("{:.1}M", n as f64 / 1e6),
    }
}

fn dollars(n: u64) -> String {
    // Two decimals where they say enough; more for small amounts.
    if n == 0 {
        "$0".to_owned()
    } else if n >= 10_000 {
        format!("${:.2}", n as f64 / 1e6)
    } else {
        usd(n)
    }
}

/// A model's line of the table.
pub(crate) struct ModelRow {
    pub(crate) model: String,
    pub(crate) provider: String,
    pub(crate) requests: u64,
    pub(crate) input: u64,
    pub(crate) output: u64,
    pub(crate) cached: u64,
    pub(crate) cost: String,
    /// Answers without tokens or without a price.
    pub(crate) unknown: u64,
}

/// A sortable column's link.
pub(crate) struct SortLink {
    pub(crate) label: &'static str,
    pub(crate) href: String,
    /// `ascending`, `descending` or `none`, for `aria-sort`.
    pub(crate) aria: &'static str,
}

/// What the spend section shows.
pub(crate) struct SpendView {
    /// This month's cost, then the last 30 days' tokens.
    pub(crate) charts: Vec<StackedChart>,
    pub(crate) rows: Vec<ModelRow>,
    pub(crate) columns: Vec<SortLink>,
    pub(crate) total: String,
    /// "$3.20 of $5.00 (64%) used; resets ...", when there is a monthly budget.
    pub(crate) budget: Option<String>,
    pub(crate) csv: String,
    pub(crate) unknown: u64,
}

/// The table's sort: a column and a direction.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct Sort {
    pub(crate) sort: Option<String>,
    pub(crate) dir: Option<String>,
}

/// The spend section of an organization (or one credential of it): `page` is the URL the sort
/// links go to (with its query so far).
pub(crate) async fn view(
    state: &AppState,
    session: &UiSession,
    org: &OrgId,
    only: Option<(UsageSubject, String)>,
    page: &str,
    sort: &Sort,
) -> Result<SpendView, ApiError> {
    let p = &session.0.principal;
    let now = Millis::now();
    let month = Period::Month.start(now);
    let from = Millis((now.0 - now.0.rem_euclid(DAY_MS)) - 29 * DAY_MS).min(Millis(month));
    let by_day = ops::spend::spend(
        state,
        p,
        org,
        &SpendQuery {
            from,
            to: Millis(now.0 + 1),
            by: vec![SpendDim::Day, SpendDim::Model],
            only: only.clone(),
        },
    )
    .await?;
    // This month's rows by model, for the table.
    let mut by_model: BTreeMap<(String, String), SpendRow> = BTreeMap::new();
    for r in by_day.iter().filter(|r| r.at.is_some_and(|a| a.0 >= month)) {
        let key = (
            r.provider.clone().unwrap_or_default(),
            r.model.clone().unwrap_or_default(),
        );
        by_model.entry(key).or_default().add(r);
    }
    // The series: the costliest models over the whole span, then "other".
    let mut weight: HashMap<String, (u64, u64)> = HashMap::new();
    for r in &by_day {
        let w = weight.entry(label(r)).or_default();
        w.0 += r.cost_micros;
        w.1 += r.input_tokens + r.output_tokens;
    }
    let mut names: Vec<(String, (u64, u64))> = weight.into_iter().collect();
    names.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut series: Vec<String> = names.iter().take(SERIES).map(|(n, _)| n.clone()).collect();
    if names.len() > SERIES {
        series.push("other models".to_owned());
    }
    let index = |r: &SpendRow| {
        let l = label(r);
        series.iter().position(|s| *s == l).unwrap_or(SERIES)
    };
    let mut cost = HashMap::new();
    let mut toks = HashMap::new();
    for r in &by_day {
        let day = r.at.map_or(0, |a| a.0);
        if day >= month {
            *cost.entry((day, index(r))).or_insert(0) += r.cost_micros;
        }
        *toks.entry((day, index(r))).or_insert(0) += r.input_tokens + r.output_tokens;
    }
    let today = now.0 - now.0.rem_euclid(DAY_MS);
    let month_days: Vec<i64> = (0..)
        .map(|i| month + i * DAY_MS)
        .take_while(|d| *d <= today)
        .collect();
    let last_30: Vec<i64> = (0..30).map(|i| today - (29 - i) * DAY_MS).collect();
    // The monthly budget of what is shown (the organization's, or the credential's).
    let budgets = ops::spend::budgets(state, p, org).await?;
    let wanted_scope = match &only {
        Some((UsageSubject::Credential, id)) => Some(("credential", id.as_str())),
        _ => Some(("org", "")),
    };
    let budget = budgets.iter().find(|b| {
        b.budget.metric == Metric::Usd
            && b.budget.period == Period::Month
            && wanted_scope.is_some_and(|(scope, id)| {
                serde_json::to_value(b.budget.scope)
                    .ok()
                    .as_ref()
                    .and_then(|v| v.as_str())
                    == Some(scope)
                    && b.budget.scope_id == id
            })
    });
    let spent_month: u64 = by_model.values().map(|r| r.cost_micros).sum();
    let cost_chart = stacked(
        "Cost this month, added up day by day".to_owned(),
        "US dollars, by day (UTC)",
        &month_days,
        &series,
        &cost,
        true,
        budget.map(|b| {
            (
                b.budget.amount,
                format!("budget {}", dollars(b.budget.amount)),
            )
        }),
        dollars,
    );
    let token_chart = stacked(
        "Tokens per day, last 30 days".to_owned(),
        "tokens (input and output), by day (UTC)",
        &last_30,
        &series,
        &toks,
        false,
        None,
        tokens,
    );
    let (key, descending) = match (sort.sort.as_deref(), sort.dir.as_deref()) {
        (Some(k @ ("model" | "requests" | "input" | "output" | "cached" | "cost")), d) => {
            (k, d != Some("asc"))
        }
        _ => ("cost", true),
    };
    let mut rows: Vec<(String, String, SpendRow)> = by_model
        .into_iter()
        .map(|((provider, model), r)| (provider, model, r))
        .collect();
    rows.sort_by(|a, b| {
        let o = match key {
            "model" => a.1.cmp(&b.1),
            "requests" => a.2.requests.cmp(&b.2.requests),
            "input" => a.2.input_tokens.cmp(&b.2.input_tokens),
            "output" => a.2.output_tokens.cmp(&b.2.output_tokens),
            "cached" => a.2.cached_tokens.cmp(&b.2.cached_tokens),
            _ => a.2.cost_micros.cmp(&b.2.cost_micros),
        };
        if descending { o.reverse() } else { o }
    });
    let sep = if page.contains('?') { '&' } else { '?' };
    let columns = [
        ("model", "Model"),
        ("requests", "Requests"),
        ("input", "Input tokens"),
        ("output", "Output tokens"),
        ("cached", "Cached tokens"),
        ("cost", "Cost"),
    ]
    .into_iter()
    .map(|(k, label)| {
        let here = k == key;
        let next = if here && descending { "asc" } else { "desc" };
        SortLink {
            label,
            href: format!("{page}{sep}sort={k}&dir={next}#spend"),
            aria: match (here, descending) {
                (false, _) => "none",
                (true, true) => "descending",
                (true, false) => "ascending",
            },
        }
    })
    .collect();
    let unknown: u64 = rows.iter().map(|r| r.2.unmetered + r.2.unpriced).sum();
    let csv = match &only {
        Some((kind, id)) => format!(
            "/ui/usage/spend.csv?org={org}&{}={}",
            if *kind == UsageSubject::Credential {
                "credential"
            } else {
                "token"
            },
            percent_encoding::utf8_percent_encode(id, percent_encoding::NON_ALPHANUMERIC)
        ),
        None => format!("/ui/usage/spend.csv?org={org}"),
    };
    Ok(SpendView {
        charts: vec![cost_chart, token_chart],
        total: dollars(spent_month),
        budget: budget.map(|b| {
            format!(
                "{} of the monthly budget of {} used ({}%); it resets at {}",
                dollars(b.spent),
                dollars(b.budget.amount),
                b.percent,
                b.resets_at.map_or_else(String::new, |t| date_of(t.0))
            )
        }),
        rows: rows
            .into_iter()
            .map(|(provider, model, r)| ModelRow {
                model: if model.is_empty() {
                    "(not named)".to_owned()
                } else {
                    model
                },
                provider,
                requests: r.requests,
                input: r.input_tokens,
                output: r.output_tokens,
                cached: r.cached_tokens,
                cost: usd(r.cost_micros),
                unknown: r.unmetered + r.unpriced,
            })
            .collect(),
        columns,
        csv,
        unknown,
    })
}

/// A row's series name: its model, or that the answer named none.
fn label(r: &SpendRow) -> String {
    match r.model.as_deref() {
        Some(m) if !m.is_empty() => m.to_owned(),
        _ => "(not named)".to_owned(),
    }
}

#[derive(Deserialize)]
pub(super) struct CsvQuery {
    org: Option<String>,
    credential: Option<String>,
    token: Option<String>,
}

/// `GET /ui/usage/spend.csv`: this month's spend by day and model, as CSV.
pub(super) async fn csv(
    State(state): State<AppState>,
    session: UiSession,
    Query(q): Query<CsvQuery>,
) -> Response {
    let p = &session.0.principal;
    let org = match named_org(q.org.as_deref()) {
        Ok(Some(o)) => o,
        Ok(None) => match p.home_org() {
            Some(o) => o.clone(),
            None => return failed(ApiError::BadRequest("name an organization".into())),
        },
        Err(e) => return failed(e),
    };
    let only = match (q.credential, q.token) {
        (Some(c), _) => Some((UsageSubject::Credential, c)),
        (None, Some(t)) => Some((UsageSubject::GatewayToken, t)),
        _ => None,
    };
    let now = Millis::now();
    let rows = match ops::spend::spend(
        &state,
        p,
        &org,
        &SpendQuery {
            from: Millis(Period::Month.start(now)),
            to: Millis(now.0 + 1),
            by: vec![SpendDim::Day, SpendDim::Model],
            only,
        },
    )
    .await
    {
        Ok(r) => r,
        Err(e) => return failed(e),
    };
    let mut out = csv_record(&[
        "day",
        "provider",
        "model",
        "requests",
        "input_tokens",
        "output_tokens",
        "cached_tokens",
        "cache_write_tokens",
        "cost_usd",
        "unmetered",
        "unpriced",
    ]);
    for r in &rows {
        out.push_str(&csv_record(&[
            r.at.map(|a| date_of(a.0)).unwrap_or_default(),
            r.provider.clone().unwrap_or_default(),
            r.model.clone().unwrap_or_default(),
            r.requests.to_string(),
            r.input_tokens.to_string(),
            r.output_tokens.to_string(),
            r.cached_tokens.to_string(),
            r.cache_write_tokens.to_string(),
            usd(r.cost_micros).trim_start_matches('$').to_owned(),
            r.unmetered.to_string(),
            r.unpriced.to_string(),
        ]));
    }
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!(
                    "attachment; filename=\"spend-{org}-{}.csv\"",
                    &date_of(now.0)[..7]
                ),
            ),
        ],
        out,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_stack_by_series_and_add_up_and_the_budget_is_a_line() {
        let days = [0, DAY_MS, 2 * DAY_MS];
        let series = vec!["a".to_owned(), "b".to_owned()];
        let values = HashMap::from([((0, 0), 100), ((DAY_MS, 1), 300), ((2 * DAY_MS, 0), 100)]);
        let c = stacked(
            "t".into(),
            "u",
            &days,
            &series,
            &values,
            true,
            Some((1000, "budget".into())),
            dollars,
        );
        // Running totals: day 3 holds a=200 and b=300; the axis tops at the budget.
        let last: Vec<&Piece> = c
            .pieces
            .iter()
            .filter(|p| p.title.starts_with("1970-01-03"))
            .collect();
        assert_eq!(last.len(), 2);
        let plot = HEIGHT - TOP - BOTTOM;
        assert_eq!(last[0].height, 200 * plot / 1000);
        assert_eq!(last[1].height, 300 * plot / 1000);
        assert_eq!(last[1].y + last[1].height, last[0].y, "stacked");
        assert_eq!(c.line.as_ref().map(|l| l.at), Some(c.base - plot));
        assert_eq!(
            c.y_ticks.last().map(|t| t.label.as_str()),
            Some("$0.001000")
        );
        assert_eq!(c.y_ticks[0].label, "$0");
        assert_eq!(nice_ceiling(3_200_000), 5_000_000);
        assert_eq!(nice_ceiling(1_000), 1_000);
    }
}
