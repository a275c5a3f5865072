//! The README documents the provider registry in one table; this keeps the two from drifting.

// Helpers here panic on purpose: a failed step is a failed test.
#![allow(clippy::unwrap_used)]

use keyward_core::PROVIDERS;

fn code(cell: &str) -> Option<String> {
    let cell = cell.trim();
    (cell != "-").then(|| cell.trim_matches('`').to_owned())
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
        assert_eq!(
            code(row[2]).as_deref(),
            p.secret_env,
            "{} key variable",
            p.id
        );
        assert_eq!(
            code(row[3]).as_deref(),
            p.base_url_env,
            "{} base URL variable",
            p.id
        );
        for prefix in p.key_prefixes {
            assert!(
                row[4].contains(&format!("`{prefix}...`")),
                "{} format",
                p.id
            );
        }
        for f in p.public_fields {
            assert!(
                row[4].contains(&format!("`{}`", f.name)),
                "{} field {}",
                p.id,
                f.name
            );
        }
    }
}
