//! `keyward providers`: the registry, for people and for `--json`.

use anyhow::Result;
use keyward_core::{PROVIDERS, Provider};

use crate::output::{Table, print_json};

/// The variables `keyward run` sets for a provider's key and base URL: the registry's, and for
/// the compatible providers those of the SDK they stand in for, or `{PREFIX}_...` with an
/// `env_prefix`.
pub(crate) fn provider_vars(p: &Provider) -> (Vec<String>, Vec<String>) {
    let (mut key, mut base) =
        keyward_core::env::key_and_base_url_vars(p, &std::collections::BTreeMap::new());
    if p.is_compatible() {
        key.push("PREFIX_API_KEY".into());
        base.extend(["PREFIX_BASE_URL".into(), "PREFIX_API_BASE".into()]);
    }
    (key, base)
}

pub(crate) fn providers(json: bool) -> Result<()> {
    if json {
        let listed: Vec<serde_json::Value> = PROVIDERS
            .iter()
            .map(|p| {
                let (key, base) = provider_vars(p);
                let mut v = serde_json::json!(p);
                v["sets"] = serde_json::json!({ "key": key, "base_url": base });
                v
            })
            .collect();
        return print_json(&listed);
    }
    let mut t = Table::new(["ID", "NAME", "KEY ENV", "BASE URL ENV", "KEY FORMAT"]);
    for p in PROVIDERS {
        let (key, base) = provider_vars(p);
        let or_dash = |v: Vec<String>| {
            if v.is_empty() {
                "-".to_owned()
            } else {
                v.join(", ")
            }
        };
        t.row([
            p.id.to_owned(),
            p.display_name.to_owned(),
            or_dash(key),
            or_dash(base),
            match (p.key_prefixes.is_empty(), p.min_key_len) {
                (true, 0) => "any".to_owned(),
                (true, n) => format!("{n}+ chars"),
                (false, _) => p.key_prefixes.join(" | ") + "...",
            },
        ]);
    }
    t.print();
    if PROVIDERS.iter().any(|p| !p.aliases.is_empty()) {
        let aliases: Vec<String> = PROVIDERS
            .iter()
            .flat_map(|p| p.aliases.iter().map(move |a| format!("{a} = {}", p.id)))
            .collect();
        say!(
            "also accepted: {}, and any id in any case with '-' for '_' (openai-compatible)",
            aliases.join(", ")
        );
    }
    Ok(())
}
