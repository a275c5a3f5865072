//! This process's environment: provider variables, and the others only when named
//! (`--include-var`). Keyward's own settings are never imported.

use std::ffi::OsString;
use std::path::Path;

use anyhow::Result;
use keyward_core::CredentialName;

use super::variables::from_variables;
use super::{Item, Read, VarRules};

/// Reads `vars` (the environment, `std::env::vars_os()`) into items named `name` (by default
/// `environment`): the providers' variables, and of the others those in `include_vars`.
pub(crate) fn read(
    vars: impl IntoIterator<Item = (OsString, OsString)>,
    name: Option<&str>,
    include_vars: &[String],
) -> Result<Read> {
    // Only provider variables, and the others named: a process's environment holds
    // PATH, HOME and the like, which are nobody's config, and what a shell exports that is
    // no variable (`BASH_FUNC_f%%`) or is not text.
    let wanted = |k: &str| {
        include_vars.iter().any(|v| v == k)
            || keyward_core::PROVIDERS
                .iter()
                .any(|p| p.secret_env.contains(&k) || p.base_url_env.contains(&k))
    };
    let mut pairs = Vec::new();
    let mut not_text = Vec::new();
    for (k, v) in vars {
        let Ok(k) = k.into_string() else { continue };
        if keyward_core::env::is_keyward_own(&k) || !(wanted(&k) || plain_name(&k)) {
            continue;
        }
        match v.into_string() {
            Ok(v) => pairs.push((k, v)),
            Err(_) if wanted(&k) => not_text.push(k),
            Err(_) => {}
        }
    }
    // A key whose base URL could not be read is not imported either: without it, the key would
    // be sent to the provider's own address instead of the one it was meant for.
    let mut keyless = Vec::new();
    for p in keyward_core::PROVIDERS.iter().filter(|p| {
        p.base_url_env
            .iter()
            .any(|b| not_text.iter().any(|k| k == b))
    }) {
        pairs.retain(|(k, _)| {
            let key = p.secret_env.contains(&k.as_str());
            if key {
                keyless.push(k.clone());
            }
            !key
        });
    }
    let name = CredentialName::new(name.unwrap_or("environment"))?;
    let mut read = from_variables(
        &pairs,
        "environment",
        &name,
        Path::new("."),
        VarRules {
            sensitive_by_name: true,
            only_providers: false,
        },
    );
    for own in include_vars
        .iter()
        .filter(|v| keyward_core::env::is_keyward_own(v))
    {
        read.skip(
            format!("environment: {own}"),
            "one of Keyward's own settings, which is never imported",
        );
    }
    read.items.retain(|item| match item {
        Item::Variable { name, .. } => include_vars.iter().any(|v| v == name.as_str()),
        Item::Credential { .. } => true,
    });
    read.skipped
        .retain(|s| !s.origin.starts_with("environment: ") || !s.why.starts_with("empty"));
    for k in keyless {
        read.skip(
            format!("environment: {k}"),
            "not imported: its provider's base URL is not UTF-8 text",
        );
    }
    for k in not_text {
        read.skip(
            format!("environment: {}", keyward_core::secret_like::shown_name(&k)),
            "its value is not UTF-8 text, not imported",
        );
    }
    Ok(read)
}

/// Whether `k` is a variable name as shells make them (`[A-Za-z_][A-Za-z0-9_]*`).
fn plain_name(k: &str) -> bool {
    k.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::read;
    use crate::import::Item;
    use crate::import::testing::{CANARY, assert_quiet, credentials, errors, said};

    fn env(vars: &[(&str, &str)]) -> Vec<(std::ffi::OsString, std::ffi::OsString)> {
        vars.iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect()
    }

    #[test]
    fn what_a_shell_exports_that_is_no_variable_or_no_text_fails_nothing() {
        use std::os::unix::ffi::OsStringExt as _;
        let mut vars = env(&[
            ("BASH_FUNC_greet%%", "() {  echo hi\n}"),
            ("OPENAI_API_KEY", CANARY),
        ]);
        vars.push((
            "LANG_BYTES".into(),
            std::ffi::OsString::from_vec(vec![0xff, 0xfe]),
        ));
        vars.push((
            "ANTHROPIC_API_KEY".into(),
            std::ffi::OsString::from_vec(vec![b's', b'k', 0xff]),
        ));
        vars.push((
            "MISTRAL_API_KEY".into(),
            std::ffi::OsString::from("a-mistral-key-0123456789abcdef"),
        ));
        vars.push((
            "MISTRAL_BASE_URL".into(),
            std::ffi::OsString::from_vec(b"https://proxy.example/\xff".to_vec()),
        ));
        let read = read(vars, None, &[]).expect("read");
        assert!(errors(&read).is_empty(), "{:?}", errors(&read));
        assert_eq!(
            credentials(&read),
            [("openai", "environment".to_owned(), Some(CANARY.to_owned()))]
        );
        let said = said(&read);
        assert!(
            said.contains("environment: ANTHROPIC_API_KEY: its value is not UTF-8 text"),
            "{said}"
        );
        assert!(
            !said.contains("BASH_FUNC") && !said.contains("LANG_BYTES"),
            "{said}"
        );
        assert_quiet(&said);
    }

    fn named(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| (*n).to_owned()).collect()
    }

    fn variable_names(read: &crate::import::Read) -> Vec<&str> {
        read.items
            .iter()
            .filter_map(|i| match i {
                Item::Variable { name, .. } => Some(name.as_str()),
                Item::Credential { .. } => None,
            })
            .collect()
    }

    #[test]
    fn an_empty_environment_reads_nothing() {
        let read = read(Vec::new(), None, &[]).expect("read");
        assert!(read.items.is_empty() && read.skipped.is_empty());
    }

    #[test]
    fn keywards_own_settings_are_never_read_even_when_named() {
        let vars = env(&[
            ("KEYWARD_MASTER_KEY", CANARY),
            ("KEYWARD_URL", "http://127.0.0.1:1"),
        ]);
        let read = read(vars, None, &named(&["KEYWARD_MASTER_KEY"])).expect("read");
        assert!(read.items.is_empty());
        let said = said(&read);
        assert!(
            said.contains("environment: KEYWARD_MASTER_KEY: one of Keyward's own settings"),
            "{said}"
        );
        assert_quiet(&said);
    }

    #[test]
    fn other_variables_only_when_named() {
        let vars = env(&[
            ("PATH", "/usr/bin:/bin"),
            ("HOME", "/home/someone"),
            ("APP_MODE", "production"),
            ("OPENAI_API_KEY", CANARY),
        ]);
        let read = read(vars, Some("ci"), &named(&["APP_MODE", "NOT_SET"])).expect("read");
        assert_eq!(variable_names(&read), ["APP_MODE"]);
        assert_eq!(
            credentials(&read),
            [("openai", "ci".to_owned(), Some(CANARY.to_owned()))]
        );
        assert!(read.skipped.is_empty());
    }

    #[test]
    fn empty_values_are_not_worth_a_line() {
        let vars = env(&[("EMPTY", ""), ("OPENAI_API_KEY", "   ")]);
        let read = read(vars, None, &named(&["EMPTY"])).expect("read");
        assert!(read.items.is_empty());
        assert!(read.skipped.is_empty(), "{}", said(&read));
    }

    #[test]
    fn lower_case_names_and_huge_values_are_taken_when_named() {
        let huge = format!("{CANARY}{}", "y".repeat(1 << 20));
        let vars = env(&[
            ("lower_case", huge.as_str()),
            ("HUGE", huge.as_str()),
            ("NOT_NAMED", huge.as_str()),
        ]);
        let read = read(vars, None, &named(&["lower_case", "HUGE"])).expect("read");
        assert_eq!(variable_names(&read), ["HUGE", "lower_case"]);
        assert!(errors(&read).is_empty(), "{:?}", errors(&read));
        assert_quiet(&said(&read));
    }

    #[test]
    fn a_name_that_is_not_a_credential_name_is_refused_without_quoting_it() {
        let e = read(Vec::new(), Some(CANARY), &[])
            .map(|_| ())
            .expect_err("refused");
        assert_quiet(&format!("{e:#}"));
    }
}
