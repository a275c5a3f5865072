//! `keyward spend` and `keyward prices`.

use std::io::Read as _;
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use keyward_core::OrgId;
use keyward_core::prices::{csv_record, usd};
use keyward_store::SpendRow;

use crate::backend::Backend;
use crate::cli::{BudgetCommand, PricesCommand, SpendArgs};
use crate::output::{Table, print_json, time};

/// What a row is, in the group asked for.
fn label(by: &str, r: &SpendRow) -> String {
    match by {
        "model" => {
            let model = r
                .model
                .as_deref()
                .filter(|m| !m.is_empty())
                .unwrap_or("(not named)");
            format!("{}/{model}", r.provider.as_deref().unwrap_or("-"))
        }
        "day" => r.at.map(|t| time(t)[..10].to_owned()).unwrap_or_default(),
        "total" => "total".to_owned(),
        _ => {
            let id = r.id.as_deref().unwrap_or("-");
            match (&r.name, r.kind) {
                (Some(name), Some(kind)) if kind != keyward_store::UsageSubject::Credential => {
                    format!("{} {name}", kind.as_str())
                }
                (Some(name), _) => format!("{name} ({id})"),
                (None, _) => format!("{id} (deleted)"),
            }
        }
    }
}

/// `keyward spend`.
pub(crate) async fn spend(backend: &Backend, args: SpendArgs) -> Result<ExitCode> {
    let org = OrgId::new(&args.org)?;
    let answer = backend
        .spend(&org, &args.by, &args.since, args.until.as_deref())
        .await?;
    if args.json {
        print_json(&answer)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut rows: Vec<SpendRow> = serde_json::from_value(answer["rows"].clone())?;
    let total: SpendRow = serde_json::from_value(answer["total"].clone())?;
    if args.by == "total" {
        rows = vec![total.clone()];
    }
    let group = match args.by.as_str() {
        "model" => "MODEL",
        "credential" => "CREDENTIAL",
        "token" => "GATEWAY TOKEN",
        "day" => "DAY (UTC)",
        _ => "",
    };
    if args.csv {
        let mut out = csv_record(&[
            group.to_lowercase().as_str(),
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
                label(&args.by, r),
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
        crate::output::write_out(format_args!("{out}"));
        return Ok(ExitCode::SUCCESS);
    }
    let mut t = Table::new([
        group,
        "REQUESTS",
        "INPUT",
        "OUTPUT",
        "CACHED",
        "COST",
        "UNMETERED",
        "UNPRICED",
    ]);
    for r in rows.iter().chain((args.by != "total").then_some(&total)) {
        let name = if std::ptr::eq(r, &total) {
            "TOTAL".to_owned()
        } else {
            label(&args.by, r)
        };
        t.row([
            name,
            r.requests.to_string(),
            r.input_tokens.to_string(),
            r.output_tokens.to_string(),
            r.cached_tokens.to_string(),
            usd(r.cost_micros),
            r.unmetered.to_string(),
            r.unpriced.to_string(),
        ]);
    }
    t.print();
    if total.unmetered > 0 || total.unpriced > 0 {
        eprintln!(
            "{} answers reported no tokens and {} named a model without a price: their cost is not in COST (`keyward prices import` adds prices)",
            total.unmetered, total.unpriced
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `keyward prices ...`.
pub(crate) async fn prices(backend: &Backend, cmd: PricesCommand) -> Result<ExitCode> {
    match cmd {
        PricesCommand::List {
            provider,
            model,
            json,
        } => {
            let provider = provider
                .as_deref()
                .map(keyward_core::Provider::get)
                .transpose()?;
            let prices: Vec<_> = backend
                .prices()
                .await?
                .into_iter()
                .filter(|p| provider.is_none_or(|want| p.provider == want.id))
                .filter(|p| model.as_deref().is_none_or(|m| p.model.contains(m)))
                .collect();
            if json {
                print_json(&prices)?;
                return Ok(ExitCode::SUCCESS);
            }
            let mut t = Table::new([
                "PROVIDER",
                "MODEL",
                "INPUT /1M",
                "OUTPUT /1M",
                "CACHED /1M",
                "CACHE WRITE /1M",
            ]);
            let opt = |p: Option<u64>| p.map_or_else(|| "-".to_owned(), usd);
            for p in prices {
                t.row([
                    p.provider,
                    p.model,
                    usd(p.input),
                    usd(p.output),
                    opt(p.cache_read),
                    opt(p.cache_write),
                ]);
            }
            t.print();
        }
        PricesCommand::Import {
            file,
            replace,
            json,
        } => {
            let mut text = String::new();
            if file.as_os_str() == "-" {
                std::io::stdin().read_to_string(&mut text)?;
            } else {
                text = std::fs::read_to_string(&file)
                    .with_context(|| format!("cannot read {}", file.display()))?;
            }
            let parsed = keyward_core::prices::parse_litellm(&text)?;
            let source = file
                .file_name()
                .map_or_else(|| "-".to_owned(), |n| n.to_string_lossy().into_owned());
            let n = backend
                .import_prices(&parsed.prices, replace, &source)
                .await?;
            if json {
                print_json(&serde_json::json!({ "imported": n, "skipped": parsed.skipped }))?;
            } else {
                crate::output::write_out(format_args!(
                    "imported {n} prices ({} entries without per-token prices or of providers Keyward does not know left out)\n",
                    parsed.skipped
                ));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `keyward budget ...`.
pub(crate) async fn budget(backend: &Backend, cmd: BudgetCommand) -> Result<ExitCode> {
    use keyward_store::{BudgetScope, Metric, NewBudget, Period};
    match cmd {
        BudgetCommand::List { org, json } => {
            let org = OrgId::new(&org)?;
            let answer = backend.budgets(&org).await?;
            if json {
                print_json(&answer)?;
                return Ok(ExitCode::SUCCESS);
            }
            let mut t = Table::new(["ID", "FOR", "LIMIT", "SPENT", "USED", "RESETS"]);
            for b in answer["budgets"].as_array().into_iter().flatten() {
                let amount = b["amount"].as_u64().unwrap_or(0);
                let spent = b["spent"].as_u64().unwrap_or(0);
                let (limit, spent) = match b["metric"].as_str() {
                    Some("usd") => (
                        format!("{} a {}", usd(amount), b["period"].as_str().unwrap_or("")),
                        usd(spent),
                    ),
                    Some("requests") => (format!("{amount} requests a minute"), spent.to_string()),
                    _ => (format!("{amount} tokens a minute"), spent.to_string()),
                };
                let whose = match b["scope"].as_str() {
                    Some("gateway_token") => {
                        format!("gateway token {}", b["scope_id"].as_str().unwrap_or(""))
                    }
                    Some("credential") => {
                        format!("credential {}", b["scope_id"].as_str().unwrap_or(""))
                    }
                    _ => "the organization".to_owned(),
                };
                let resets = b["resets_at"]
                    .as_i64()
                    .map_or_else(|| "never".to_owned(), |t| time(keyward_core::Millis(t)));
                t.row([
                    b["id"].as_str().unwrap_or("").to_owned(),
                    whose,
                    limit.replace("a none", "in all"),
                    spent,
                    format!("{}%", b["percent"].as_u64().unwrap_or(0)),
                    resets,
                ]);
            }
            t.print();
        }
        BudgetCommand::Set {
            org,
            token,
            credential,
            usd: dollars,
            period,
            rpm,
            tpm,
            alert,
            webhook,
            json,
        } => {
            let org = OrgId::new(&org)?;
            let (scope, scope_id) = match (token, credential) {
                (Some(t), _) => (BudgetScope::GatewayToken, t),
                (None, Some(c)) => (BudgetScope::Credential, c),
                (None, None) => (BudgetScope::Org, String::new()),
            };
            let (metric, amount, period) = match (dollars, rpm, tpm) {
                (Some(d), _, _) => (
                    Metric::Usd,
                    keyward_server::parse_usd(&d).map_err(anyhow::Error::msg)?,
                    Period::parse(&period).unwrap_or(Period::Month),
                ),
                (None, Some(n), _) => (Metric::Requests, n, Period::Minute),
                (None, None, Some(n)) => (Metric::Tokens, n, Period::Minute),
                (None, None, None) => anyhow::bail!("give --usd, --rpm or --tpm"),
            };
            let b = backend
                .set_budget(&NewBudget {
                    org,
                    scope,
                    scope_id,
                    metric,
                    period,
                    amount,
                    alerts: if metric == Metric::Usd {
                        alert
                    } else {
                        Vec::new()
                    },
                    webhook,
                })
                .await?;
            if json {
                print_json(&b)?;
            } else {
                eprintln!("budget {} set", b.id);
            }
        }
        BudgetCommand::Delete { org, id } => {
            let org = OrgId::new(&org)?;
            let b = backend.delete_budget(&org, &id).await?;
            eprintln!("budget {} removed", b.id);
        }
    }
    Ok(ExitCode::SUCCESS)
}
