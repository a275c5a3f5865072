//! Environment variables (of a `.env` file, or of this process) into items: a provider's
//! credential where the registry names the variable, a config variable otherwise.

use keyward_core::secret_like::{shown, shown_name};
use std::collections::BTreeMap;
use std::path::Path;

use keyward_core::provider::SecretKind;
use keyward_core::{CredentialName, PROVIDERS, VarName};
use secrecy::SecretString;

use super::{Item, Read};

/// How variables that are not a provider's are taken.
#[derive(Clone, Copy)]
pub(crate) struct VarRules {
    /// Names that look secret (`*_KEY`, `*_TOKEN`, `*_SECRET`, `*PASSWORD*`) are stored
    /// encrypted and shown as `***`.
    pub(crate) sensitive_by_name: bool,
    /// Skip them altogether: only provider credentials are imported.
    pub(crate) only_providers: bool,
}

fn secret_name(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    ["_KEY", "_TOKEN", "_SECRET"]
        .iter()
        .any(|end| upper.ends_with(end))
        || upper.contains("PASSWORD")
        || matches!(upper.as_str(), "KEY" | "TOKEN" | "SECRET")
}

/// A URL that carries a password (`postgres://app:PASSWORD@db/app`).
fn url_with_password(v: &str) -> bool {
    v.split_once("://")
        .and_then(|(_, rest)| rest.split_once('@'))
        .is_some_and(|(userinfo, _)| userinfo.contains(':'))
}

/// Turns environment variables into credentials, grouped as the registry says (the key's
/// variable, with the provider's base-URL and field variables beside it), and the rest into
/// config variables. `label` names the source in origins; `dir` is where relative paths (a
/// service-account file) are read from.
pub(super) fn from_variables(
    vars: &[(String, String)],
    label: &str,
    name: &CredentialName,
    dir: &Path,
    rules: VarRules,
) -> Read {
    let mut read = Read::default();
    let mut left: BTreeMap<&str, &str> = BTreeMap::new();
    for (k, v) in vars {
        // Keyward's own settings (its admin token, master keys, database URL) are never
        // imported, from any file: stored as an organization's variable, they would hand the
        // server to whoever may read that organization's variables.
        if keyward_core::env::is_keyward_own(k) {
            read.skip(
                format!("{label}: {}", shown_name(k)),
                "one of Keyward's own settings, which is never imported",
            );
            continue;
        }
        left.insert(k.as_str(), v.as_str());
    }
    // Values that are not values: reported, never imported.
    let unusable: Vec<String> = left
        .iter()
        .filter(|(_, v)| v.trim().is_empty() || v.trim_start().starts_with("keyward://"))
        .map(|(k, _)| (*k).to_owned())
        .collect();
    for k in &unusable {
        let v = left.remove(k.as_str()).unwrap_or_default();
        let why = if v.trim().is_empty() {
            "empty value, not imported"
        } else {
            "a keyward:// reference (already in a vault), not imported"
        };
        read.skip(format!("{label}: {}", shown_name(k)), why);
    }
    for provider in PROVIDERS {
        let first = |names: &[&str], left: &BTreeMap<&str, &str>| {
            names
                .iter()
                .find_map(|n| left.get(n).map(|v| ((*n).to_owned(), (*v).to_owned())))
        };
        let key = first(provider.secret_env, &left);
        let base = first(provider.base_url_env, &left);
        let needs_key = provider.secret != SecretKind::Optional;
        if key.is_none() && (needs_key || base.is_none()) {
            continue;
        }
        let origin = format!(
            "{label}: {}",
            key.as_ref()
                .or(base.as_ref())
                .map(|(n, _)| n.as_str())
                .unwrap_or_default()
        );
        let mut fields = BTreeMap::new();
        if let Some((_, b)) = &base {
            fields.insert("base_url".to_owned(), b.trim().to_owned());
        }
        for f in provider.public_fields {
            if let Some((_, v)) = first(f.env, &left) {
                fields.insert(f.name.to_owned(), v.trim().to_owned());
            }
        }
        let secret = match (&key, provider.secret) {
            // GOOGLE_APPLICATION_CREDENTIALS names a file: its JSON is the secret.
            (Some((var, path)), SecretKind::ServiceAccountJson) => {
                let path = Path::new(path.trim());
                let path = if path.is_relative() {
                    dir.join(path)
                } else {
                    path.to_owned()
                };
                match std::fs::read_to_string(&path) {
                    Ok(json) => Some(SecretString::from(json)),
                    Err(e) => {
                        read.fail(
                            format!("{label}: {var}"),
                            format!(
                                "cannot read the service-account file {}: {}",
                                shown(&path.display().to_string()),
                                e
                            ),
                        );
                        None
                    }
                }
            }
            (Some((_, v)), _) => Some(SecretString::from(v.trim().to_owned())),
            (None, _) => None,
        };
        // Every variable of the provider is taken, read or not (the SDKs' aliases).
        let claimed: Vec<&str> = provider
            .secret_env
            .iter()
            .chain(provider.base_url_env)
            .chain(provider.public_fields.iter().flat_map(|f| f.env.iter()))
            .copied()
            .collect();
        for n in claimed {
            left.remove(n);
        }
        if key.is_some() && secret.is_none() {
            continue;
        }
        read.items.push(Item::Credential {
            provider,
            name: name.clone(),
            secret,
            fields,
            modalities: Vec::new(),
            active: true,
            origin,
        });
    }
    for (k, v) in left {
        let origin = format!("{label}: {}", shown_name(k));
        if rules.only_providers {
            read.skip(origin, "not a provider's variable (--only-providers)");
            continue;
        }
        match VarName::new(k) {
            Ok(name) => read.items.push(Item::Variable {
                sensitive: (rules.sensitive_by_name && (secret_name(k) || url_with_password(v)))
                    || keyward_core::secret_like::looks_like_secret(v),
                name,
                value: SecretString::from(v.to_owned()),
                origin,
            }),
            Err(e) => read.fail(origin, e.to_string()),
        }
    }
    read
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use keyward_core::CredentialName;
    use secrecy::ExposeSecret as _;

    use super::{VarRules, from_variables};
    use crate::import::testing::{CANARY, assert_quiet, credentials, errors, said};
    use crate::import::{Item, Read};

    const RULES: VarRules = VarRules {
        sensitive_by_name: true,
        only_providers: false,
    };

    fn read(vars: &[(&str, &str)], rules: VarRules) -> Read {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let name = CredentialName::new("imported").expect("a name");
        from_variables(&vars, ".env", &name, Path::new("."), rules)
    }

    /// The config variables read: name, value, sensitive.
    fn variables(read: &Read) -> Vec<(String, String, bool)> {
        read.items
            .iter()
            .filter_map(|i| match i {
                Item::Variable {
                    name,
                    value,
                    sensitive,
                    ..
                } => Some((
                    name.as_str().to_owned(),
                    value.expose_secret().to_owned(),
                    *sensitive,
                )),
                Item::Credential { .. } => None,
            })
            .collect()
    }

    #[test]
    fn nothing_reads_as_nothing() {
        let read = read(&[], RULES);
        assert!(read.items.is_empty());
        assert!(read.skipped.is_empty());
    }

    #[test]
    fn values_that_are_not_values_are_told_by_name_and_never_imported() {
        let read = read(
            &[
                ("BLANK", " \t "),
                ("EMPTY", ""),
                ("OPENAI_API_KEY", "keyward://acme/openai"),
            ],
            RULES,
        );
        assert!(read.items.is_empty());
        assert!(errors(&read).is_empty(), "{:?}", errors(&read));
        let said = said(&read);
        assert!(said.contains(".env: BLANK: empty value"), "{said}");
        assert!(said.contains(".env: EMPTY: empty value"), "{said}");
        assert!(
            said.contains(".env: OPENAI_API_KEY: a keyward:// reference"),
            "{said}"
        );
    }

    #[test]
    fn a_name_that_is_not_a_variable_name_fails_without_quoting_the_value() {
        let read = read(
            &[
                ("HAS SPACE", CANARY),
                ("WITH:COLON", CANARY),
                ("ÜNICODE", CANARY),
                ("BASH_FUNC_f%%", CANARY),
            ],
            RULES,
        );
        assert!(read.items.is_empty());
        assert_eq!(errors(&read).len(), 4, "{:?}", errors(&read));
        assert_quiet(&said(&read));
    }

    #[test]
    fn a_name_that_looks_like_a_key_is_refused_without_quoting_it() {
        let read = read(&[(CANARY, "value")], RULES);
        assert!(read.items.is_empty());
        assert_eq!(errors(&read).len(), 1);
        // The origin names the variable as it is in the file, which is the file's own
        // business; the reason never repeats it.
        assert!(read.skipped.iter().all(|s| !s.why.contains(CANARY)));
    }

    #[test]
    fn what_looks_secret_is_sensitive_whatever_the_rules() {
        let plain = VarRules {
            sensitive_by_name: false,
            only_providers: false,
        };
        let vars = [
            ("LOG_FORMAT", CANARY),
            ("DATABASE_URL", "postgres://app:hunter2@db/app"),
            ("SIGNING_SECRET", "plain words"),
            ("GREETING", "hello"),
        ];
        let by_name = variables(&read(&vars, RULES));
        let by_value = variables(&read(&vars, plain));
        let sensitive = |vars: &[(String, String, bool)], name: &str| {
            vars.iter().find(|v| v.0 == name).expect("read").2
        };
        assert!(sensitive(&by_name, "LOG_FORMAT") && sensitive(&by_value, "LOG_FORMAT"));
        assert!(sensitive(&by_name, "DATABASE_URL") && !sensitive(&by_value, "DATABASE_URL"));
        assert!(sensitive(&by_name, "SIGNING_SECRET") && !sensitive(&by_value, "SIGNING_SECRET"));
        assert!(!sensitive(&by_name, "GREETING") && !sensitive(&by_value, "GREETING"));
    }

    #[test]
    fn names_that_collide_keep_the_last_value_and_aliases_the_first() {
        // The same name twice: the later value (as a later `.env` line or file does).
        let read_twice = read(
            &[("OPENAI_API_KEY", "sk-first"), ("OPENAI_API_KEY", CANARY)],
            RULES,
        );
        assert_eq!(
            credentials(&read_twice),
            [("openai", "imported".to_owned(), Some(CANARY.to_owned()))]
        );
        // Two of a provider's names (the SDKs' aliases): one credential, from the first the
        // registry lists; the other is the provider's, not a config variable.
        let aliases = read(
            &[("GEMINI_API_KEY", "second"), ("GOOGLE_API_KEY", "first")],
            RULES,
        );
        assert_eq!(
            credentials(&aliases),
            [("gemini", "imported".to_owned(), Some("first".to_owned()))]
        );
        assert!(variables(&aliases).is_empty());
    }

    #[test]
    fn huge_and_odd_values_are_taken_whole_and_trimmed_only_for_keys() {
        let huge = "x".repeat(4 << 20);
        let key = format!("  {CANARY}\t");
        let read = read(
            &[
                ("HUGE", huge.as_str()),
                ("ANTHROPIC_API_KEY", key.as_str()),
                ("NUL", "a\0b"),
                ("EMOJI", "🔑 ünïcödé"),
            ],
            RULES,
        );
        assert!(errors(&read).is_empty());
        assert_eq!(
            credentials(&read),
            [("anthropic", "imported".to_owned(), Some(CANARY.to_owned()))]
        );
        let vars = variables(&read);
        assert_eq!(vars.len(), 3);
        assert!(vars.iter().any(|v| v.0 == "HUGE" && v.1.len() == 4 << 20));
        assert!(vars.iter().any(|v| v.0 == "NUL" && v.1 == "a\0b"));
        assert_quiet(&said(&read));
    }

    #[test]
    fn a_missing_service_account_file_fails_that_credential_alone() {
        let read = read(
            &[
                ("GOOGLE_APPLICATION_CREDENTIALS", "no/such/file.json"),
                ("OPENAI_API_KEY", CANARY),
            ],
            RULES,
        );
        let errors = errors(&read);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with(
                ".env: GOOGLE_APPLICATION_CREDENTIALS: cannot read the service-account file"
            ),
            "{errors:?}"
        );
        assert_eq!(credentials(&read).len(), 1);
        assert_quiet(&said(&read));
    }

    #[test]
    fn only_providers_leaves_every_other_variable_alone() {
        let rules = VarRules {
            sensitive_by_name: true,
            only_providers: true,
        };
        let read = read(&[("OPENAI_API_KEY", CANARY), ("OTHER", CANARY)], rules);
        assert_eq!(credentials(&read).len(), 1);
        assert!(variables(&read).is_empty());
        assert!(said(&read).contains(".env: OTHER: not a provider's variable"));
        assert!(errors(&read).is_empty());
    }
}
