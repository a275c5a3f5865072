//! The README documents the provider registry in one table; this keeps the two from drifting:
//! the variables it lists are exactly those the env mapping sets.

// Helpers here panic on purpose: a failed step is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;

use keyward_core::env::provider_env;
use keyward_core::resolve::{Resolved, Source};
use keyward_core::{CredentialId, CredentialName, PROVIDERS, Provider};
use secrecy::SecretString;

/// Backticked variable names in a cell (`{PREFIX}`-style placeholders and `P_...` examples
/// aside).
fn variables(cell: &str) -> BTreeSet<String> {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .filter(|t| {
            t.len() > 2
                && t.starts_with(|c: char| c.is_ascii_uppercase())
                && !t.starts_with("P_")
                && t.bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        })
        .map(str::to_owned)
        .collect()
}

/// Every variable a credential of `p` can become (default prefix): with all fields set, with
/// a key instead of a service principal, a Bedrock API key instead of an access key, and
/// temporary AWS credentials.
fn mapped(p: &'static Provider) -> BTreeSet<String> {
    let mut fields: Vec<(String, String)> = p
        .public_fields
        .iter()
        .filter(|f| f.name != "env_prefix")
        .map(|f| (f.name.to_owned(), "v".to_owned()))
        .collect();
    fields.push(("base_url".into(), "http://127.0.0.1:1".into()));
    let principal = p.principal.map_or(&[][..], |p| p.fields);
    let variants = [
        fields.clone(),
        fields
            .iter()
            .filter(|(n, _)| !principal.contains(&n.as_str()))
            .cloned()
            .collect(),
        fields
            .iter()
            .filter(|(n, _)| n != "access_key_id")
            .cloned()
            .collect(),
    ];
    let mut out = BTreeSet::new();
    for fields in variants {
        for secret in ["k", r#"{"secret_access_key":"k","session_token":"t"}"#] {
            let r = Resolved {
                provider: p,
                source: Source::Vault {
                    id: CredentialId::new("x").unwrap(),
                    name: CredentialName::new("x").unwrap(),
                },
                secret: Some(SecretString::from(secret)),
                fields: fields.iter().cloned().collect(),
            };
            out.extend(provider_env(&r).into_iter().map(|v| v.name));
        }
    }
    out
}

#[test]
fn readme_provider_table_matches_the_registry() {
    let readme = include_str!("../../../README.md");
    let section = readme
        .split("## Providers")
        .nth(1)
        .expect("README has a Providers section");
    let rows: Vec<Vec<&str>> = section
        .lines()
        .skip_while(|l| !l.starts_with("| id"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|l| l.trim_matches('|').split('|').collect())
        .collect();
    assert_eq!(rows.len(), PROVIDERS.len(), "one README row per provider");
    for (row, p) in rows.iter().zip(PROVIDERS) {
        assert_eq!(row[0].trim(), p.id, "README order follows the registry");
        assert_eq!(row[1].trim(), p.display_name, "{}", p.id);
        assert_eq!(variables(row[2]), mapped(p), "{}: variables", p.id);
        for f in p.public_fields {
            assert!(
                row[2].contains(&format!("`{}`", f.name)),
                "{} field {}",
                p.id,
                f.name
            );
        }
        for prefix in p.key_prefixes {
            assert!(
                row[3].contains(&format!("`{prefix}...`")),
                "{} format",
                p.id
            );
        }
    }
}
