//! LiteLLM's `config.yaml`: the keys of its `model_list` and `credential_list`, one credential
//! per provider, key and fields.

use std::collections::BTreeMap;

use anyhow::{Context as _, Result};
use keyward_core::provider::SecretKind;
use keyward_core::{CredentialName, Provider};
use secrecy::SecretString;

use super::{Item, Read, text};

/// LiteLLM's provider prefixes (`model: azure/gpt-4o`) that are not Keyward's ids.
const LITELLM_PROVIDERS: &[(&str, &str)] = &[
    ("azure", "azure_openai"),
    ("azure_ai", "azure_ai_foundry"),
    ("vertex_ai", "vertex"),
    ("vertex_ai_beta", "vertex"),
    ("gemini", "gemini"),
    ("fireworks_ai", "fireworks"),
    ("together_ai", "together"),
    ("cloudflare", "cloudflare_workers_ai"),
    ("hosted_vllm", "vllm"),
    ("lm_studio", "lm_studio"),
    ("nvidia_nim", "nvidia_nim"),
    ("ollama_chat", "ollama"),
    ("text-completion-openai", "openai"),
    ("custom_openai", "openai_compatible"),
];

/// The provider LiteLLM would call for `model`: its prefix, or for a bare model name the
/// families LiteLLM recognises.
fn litellm_provider(model: &str) -> Option<&'static Provider> {
    if let Some((prefix, _)) = model.split_once('/') {
        let id = LITELLM_PROVIDERS
            .iter()
            .find_map(|(l, k)| (*l == prefix).then_some(*k))
            .unwrap_or(prefix);
        return Provider::get(id).ok();
    }
    let family = |p: &[&str]| p.iter().any(|p| model.starts_with(p));
    let id = if family(&[
        "gpt-",
        "o1",
        "o3",
        "o4",
        "text-embedding-",
        "dall-e",
        "whisper",
        "tts-",
    ]) {
        "openai"
    } else if family(&["claude"]) {
        "anthropic"
    } else if family(&["gemini"]) {
        "gemini"
    } else {
        return None;
    };
    Provider::get(id).ok()
}

/// A LiteLLM value: literal, or `os.environ/VAR` read from this process's environment.
///
/// LiteLLM configs name their keys this way by habit, so an import reads them, with two
/// limits: never one of Keyward's own variables (`KEYWARD_*`: the process running an import
/// holds the master key), and never a value equal to one of theirs (the master key exported
/// again under an innocent name). The plan names every variable it read.
fn litellm_value(v: &serde_json::Value) -> std::result::Result<Option<String>, String> {
    let Some(s) = v.as_str().map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(v.as_f64().map(|n| n.to_string()));
    };
    match s.strip_prefix("os.environ/") {
        Some(var) => environ(var.trim()).map(Some),
        None => Ok(Some(s.to_owned())),
    }
}

/// A variable an import file names, read from this process's environment (see
/// [`litellm_value`]).
fn environ(var: &str) -> std::result::Result<String, String> {
    let shown = keyward_core::secret_like::shown_name(var);
    if keyward_core::env::is_keyward_own(var) {
        return Err(format!(
            "os.environ/{shown} is one of Keyward's own settings, which no import file may read"
        ));
    }
    let value = match std::env::var(var) {
        Ok(value) if !value.trim().is_empty() => zeroize::Zeroizing::new(value),
        _ => return Err(format!("os.environ/{shown} is not set in this environment")),
    };
    let value = value.trim();
    let own = std::env::vars_os().any(|(k, v)| {
        k.to_str().is_some_and(keyward_core::env::is_keyward_own)
            && v.to_str().is_some_and(|v| {
                let v = zeroize::Zeroizing::new(v.trim().to_owned());
                !v.is_empty() && (value == v.as_str() || v.split([',', ':']).any(|p| p == value))
            })
    });
    if own {
        return Err(format!(
            "os.environ/{shown} holds the value of one of Keyward's own settings (KEYWARD_*, or its KMS's credentials), \
             which no import file may read"
        ));
    }
    Ok(value.to_owned())
}

/// The `os.environ/VAR` names of a LiteLLM entry's values, for the plan.
fn environ_names(values: &serde_json::Value) -> Vec<String> {
    let mut names: Vec<String> = values
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(_, v)| v.as_str()?.trim().strip_prefix("os.environ/"))
        .map(|n| keyward_core::secret_like::shown_name(n.trim()).into_owned())
        .collect();
    names.sort();
    names.dedup();
    names
}

/// The largest LiteLLM config read, and how deep it may nest: real ones are a few KiB and a
/// handful of levels. A hostile file nested 100 000 deep took the YAML parser 26 s to refuse;
/// this look at its shape refuses it in one linear pass, before the parser sees it.
const MAX_YAML: usize = 16 << 20;
const MAX_YAML_DEPTH: usize = 64;

fn yaml_shape_is_sane(yaml: &str) -> Result<()> {
    if yaml.len() > MAX_YAML {
        anyhow::bail!(
            "the file is larger than {} MiB, which no LiteLLM config is",
            MAX_YAML >> 20
        );
    }
    // Flow nesting: brackets open, across lines, outside quotes (a rough count is enough: it
    // only has to stop what no config needs).
    let (mut depth, mut quote) = (0usize, None::<char>);
    for (n, line) in yaml.lines().enumerate() {
        // Block nesting: the column where the content starts, past indentation and the
        // `- ` of nested sequence items.
        let content = line.trim_start_matches([' ', '-', '\t', '?', ':']);
        let column = line.len() - content.len();
        let mut deepest = depth;
        for c in content.chars() {
            match (quote, c) {
                (Some(q), c) if c == q => quote = None,
                (Some(_), _) => {}
                (None, '"' | '\'') => quote = Some(c),
                (None, '#') => break,
                (None, '[' | '{') => {
                    depth += 1;
                    deepest = deepest.max(depth);
                }
                (None, ']' | '}') => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        if column / 2 > MAX_YAML_DEPTH * 2 || deepest > MAX_YAML_DEPTH {
            anyhow::bail!(
                "line {}: the file nests deeper than any LiteLLM config does ({MAX_YAML_DEPTH} levels); not read",
                n + 1
            );
        }
    }
    Ok(())
}

/// One credential of a LiteLLM config: provider, key, fields, name, where it was first seen.
type Group = (
    &'static Provider,
    Option<String>,
    BTreeMap<String, String>,
    String,
    String,
);

/// LiteLLM's `config.yaml`: `model_list[].litellm_params` (key, base, version, the provider
/// from the model's prefix, or a named entry of `credential_list`) and `credential_list[]`.
/// Entries that share a provider, a key and the same fields become one credential.
pub(crate) fn litellm(yaml: &str) -> Result<Read> {
    yaml_shape_is_sane(yaml)?;
    let doc: serde_json::Value =
        serde_yaml_ng::from_str(yaml).context("the file is not YAML LiteLLM can read")?;
    let mut read = Read::default();
    // Named credentials first: models may point at them.
    let mut named: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    for (i, c) in doc
        .get("credential_list")
        .and_then(serde_json::Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        match text(c, "credential_name") {
            Some(n) => {
                named.insert(
                    n.to_owned(),
                    c.get("credential_values").cloned().unwrap_or_default(),
                );
            }
            None => read.fail(format!("credential_list[{i}]"), "no credential_name"),
        }
    }
    // (provider, key, fields) → name, origin.
    let mut groups: Vec<Group> = Vec::new();
    // What is already grouped, and the names taken with the next number to try for each base
    // name: lookups, so that a file of many models costs linear time.
    let mut grouped: std::collections::HashSet<(&'static str, Option<String>, String)> =
        Default::default();
    let mut used_names: std::collections::HashSet<(&'static str, String)> = Default::default();
    let mut next_number: std::collections::HashMap<(&'static str, String), usize> =
        Default::default();
    let mut referenced: std::collections::BTreeSet<String> = Default::default();
    for (i, m) in doc
        .get("model_list")
        .and_then(serde_json::Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let origin = format!("model_list[{i}]");
        let params = m.get("litellm_params").cloned().unwrap_or_default();
        let Some(model) = text(&params, "model") else {
            read.fail(origin, "litellm_params.model is missing");
            continue;
        };
        let Some(provider) = litellm_provider(model) else {
            read.skip(
                origin,
                format!(
                    "no provider Keyward knows for model {}",
                    keyward_core::secret_like::shown(model)
                ),
            );
            continue;
        };
        // A named credential's values, under the model's own.
        let mut values = serde_json::Map::new();
        if let Some(name) = text(&params, "litellm_credential_name") {
            match named.get(name) {
                Some(serde_json::Value::Object(o)) => values.extend(o.clone()),
                _ => {
                    read.fail(
                        origin,
                        format!(
                            "litellm_credential_name {} is not in credential_list",
                            keyward_core::secret_like::shown(name)
                        ),
                    );
                    continue;
                }
            }
            referenced.insert(name.to_owned());
        }
        if let serde_json::Value::Object(o) = &params {
            values.extend(
                o.iter()
                    .filter(|(k, _)| k.as_str() != "model")
                    .map(|(k, v)| (k.clone(), v.clone())),
            );
        }
        let values = serde_json::Value::Object(values);
        let get = |field: &str| match values.get(field).map(litellm_value) {
            None => Ok(None),
            Some(r) => r,
        };
        let (key, base, version) = match (get("api_key"), get("api_base"), get("api_version")) {
            (Ok(k), Ok(b), Ok(v)) => (k, b, v),
            (Err(why), _, _) | (_, Err(why), _) | (_, _, Err(why)) => {
                read.fail(origin, why);
                continue;
            }
        };
        // The providers whose secret is not an `api_key`: Vertex's service account (JSON, or a
        // file naming it) and Bedrock's AWS keys, with their public fields.
        let mut fields = BTreeMap::new();
        let extra: &[(&str, &str)] = match provider.id {
            "vertex" => &[
                ("vertex_project", "project"),
                ("vertex_location", "location"),
            ],
            "bedrock" => &[
                ("aws_access_key_id", "access_key_id"),
                ("aws_region_name", "region"),
            ],
            _ => &[],
        };
        let mut failed = None;
        for (theirs, ours) in extra {
            match get(theirs) {
                Ok(Some(v)) => {
                    fields.insert((*ours).to_owned(), v);
                }
                Ok(None) => {}
                Err(why) => failed = Some(why),
            }
        }
        let special = match provider.id {
            "vertex" => get("vertex_credentials").map(|v| {
                v.map(|v| {
                    if v.trim_start().starts_with('{') {
                        Ok(v)
                    } else {
                        std::fs::read_to_string(v.trim())
                            .map_err(|e| {
                                format!(
                                    "vertex_credentials is neither a JSON document nor a file that can be read ({}: {e})",
                                    keyward_core::secret_like::shown(v.trim())
                                )
                            })
                    }
                })
                .transpose()
            }),
            "bedrock" => get("aws_secret_access_key").map(Ok),
            _ => Ok(Ok(None)),
        };
        let key = match special {
            Ok(Ok(Some(secret))) => Some(secret),
            Ok(Ok(None)) => key,
            Ok(Err(why)) | Err(why) => {
                read.fail(origin, why);
                continue;
            }
        };
        if let Some(why) = failed {
            read.fail(origin, why);
            continue;
        }
        if let Some(base) = base {
            let field = if provider.takes_public_field("endpoint") {
                "endpoint"
            } else {
                "base_url"
            };
            fields.insert(field.to_owned(), base);
        }
        if let Some(version) = version
            && provider.takes_public_field("api_version")
        {
            fields.insert("api_version".to_owned(), version);
        }
        if key.is_none() && provider.secret != SecretKind::Optional {
            read.fail(
                origin,
                "no api_key (literal or os.environ/VAR) for this model",
            );
            continue;
        }
        let fields_key = serde_json::to_string(&fields).unwrap_or_default();
        if !grouped.insert((provider.id, key.clone(), fields_key)) {
            continue;
        }
        let base_name = text(&params, "litellm_credential_name")
            .or_else(|| text(m, "model_name"))
            .unwrap_or(provider.id)
            .to_owned();
        let mut name = base_name.clone();
        let n = next_number
            .entry((provider.id, base_name.clone()))
            .or_insert(1);
        while used_names.contains(&(provider.id, name.clone())) {
            *n += 1;
            name = format!("{base_name}-{n}");
        }
        used_names.insert((provider.id, name.clone()));
        let read_from = environ_names(&values);
        let origin = if read_from.is_empty() {
            origin
        } else {
            format!(
                "{origin}, reads os.environ/{}",
                read_from.join(", os.environ/")
            )
        };
        groups.push((provider, key, fields, name, origin));
    }
    for name in named.keys().filter(|n| !referenced.contains(*n)) {
        read.skip(
            format!("credential_list {}", keyward_core::secret_like::shown(name)),
            "used by no model, so its provider is unknown; not imported",
        );
    }
    for (provider, key, fields, name, origin) in groups {
        match CredentialName::new(&name) {
            Ok(name) => read.items.push(Item::Credential {
                provider,
                name,
                secret: key.map(SecretString::from),
                fields,
                modalities: Vec::new(),
                active: true,
                origin,
            }),
            Err(e) => read.fail(origin, e.to_string()),
        }
    }
    Ok(read)
}

#[cfg(test)]
mod tests {
    use super::{MAX_YAML, litellm};
    use crate::import::testing::{CANARY, assert_quiet, credentials, errors, said};

    fn refusal(yaml: &str) -> String {
        match litellm(yaml) {
            Ok(_) => panic!("read"),
            Err(e) => format!("{e:#}"),
        }
    }

    #[test]
    fn a_key_where_a_service_account_file_belongs_is_never_quoted() {
        let yaml = format!(
            "model_list:\n  - model_name: g\n    litellm_params:\n      model: vertex_ai/gemini-pro\n      vertex_project: p\n      vertex_location: us-central1\n      vertex_credentials: {CANARY}\n"
        );
        let read = litellm(&yaml).expect("read");
        let errors = errors(&read);
        assert!(!errors.is_empty(), "{}", said(&read));
        assert_quiet(&said(&read));
    }

    #[test]
    fn an_empty_config_reads_nothing() {
        for yaml in [
            "",
            "{}",
            "model_list: []\n",
            "model_list: 7\ncredential_list: x\n",
        ] {
            let read = litellm(yaml).expect("read");
            assert!(read.items.is_empty() && read.skipped.is_empty(), "{yaml:?}");
        }
    }

    #[test]
    fn nesting_deeper_than_any_config_is_refused_before_parsing() {
        let started = std::time::Instant::now();
        let e = refusal(&"[".repeat(100_000));
        assert!(e.contains("nests deeper"), "{e}");
        let mut block = String::new();
        for depth in 0..300 {
            block.push_str(&format!("{}k{depth}:\n", "  ".repeat(depth)));
        }
        assert!(refusal(&block).contains("nests deeper"));
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        // Brackets inside quotes are text, not nesting.
        let quoted = format!(
            "model_list:\n  - model_name: q\n    litellm_params: {{model: gpt-4o, api_key: \"{}{CANARY}\"}}\n",
            "[".repeat(1_000)
        );
        assert_eq!(credentials(&litellm(&quoted).expect("read")).len(), 1);
    }

    #[test]
    fn a_file_larger_than_any_config_is_refused() {
        let e = refusal(&"#".repeat(MAX_YAML + 1));
        assert!(e.contains("larger than"), "{e}");
    }

    #[test]
    fn malformed_yaml_is_refused_without_quoting_it() {
        for yaml in [
            format!("model_list:\n  - litellm_params: {{model: gpt-4o, api_key: \"{CANARY}\n"),
            format!("model_list:\n\t- {CANARY}: [\n"),
            format!("a: *{CANARY}\n"),
            format!("- {CANARY}\n  bad: indentation\n"),
        ] {
            assert_quiet(&refusal(&yaml));
        }
    }

    #[test]
    fn a_section_given_twice_is_read_as_litellm_reads_it_the_last_one() {
        // PyYAML, which LiteLLM loads its config with, keeps the last of a repeated key too.
        let yaml = format!(
            "model_list:
  - {{model_name: a, litellm_params: {{model: gpt-4o, api_key: {CANARY}}}}}
model_list:
  - {{model_name: b, litellm_params: {{model: gpt-4o, api_key: k2}}}}
"
        );
        let read = litellm(&yaml).expect("read");
        assert_eq!(
            credentials(&read),
            [("openai", "b".to_owned(), Some("k2".to_owned()))]
        );
    }

    #[test]
    fn keywards_own_settings_and_unset_variables_are_never_read() {
        let yaml = format!(
            "model_list:\n\
             \x20 - model_name: own\n    litellm_params: {{model: gpt-4o, api_key: os.environ/KEYWARD_MASTER_KEY}}\n\
             \x20 - model_name: unset\n    litellm_params: {{model: gpt-4o, api_key: os.environ/{CANARY}}}\n\
             \x20 - model_name: base\n    litellm_params: {{model: gpt-4o, api_key: k, api_base: os.environ/KEYWARD_URL}}\n"
        );
        let read = litellm(&yaml).expect("read");
        assert!(read.items.is_empty());
        let errors = errors(&read);
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(
            errors[0].contains("one of Keyward's own settings"),
            "{errors:?}"
        );
        assert!(errors[1].contains("is not set"), "{errors:?}");
        assert_quiet(&said(&read));
    }

    #[test]
    fn names_that_collide_are_numbered_and_shared_keys_make_one_credential() {
        let yaml = "model_list:
  - {model_name: gpt, litellm_params: {model: gpt-4o, api_key: k1}}
  - {model_name: gpt, litellm_params: {model: gpt-4o-mini, api_key: k1}}
  - {model_name: gpt, litellm_params: {model: openai/gpt-4.1, api_key: k2}}
  - {model_name: gpt-2, litellm_params: {model: gpt-4o, api_key: k3}}
  - {model_name: gpt, litellm_params: {model: claude-3-5-sonnet, api_key: k4}}
  - {model_name: gpt, litellm_params: {model: gpt-4o, api_key: k1, api_base: 'http://proxy'}}
";
        let read = litellm(yaml).expect("read");
        assert!(errors(&read).is_empty(), "{:?}", errors(&read));
        let key = |k: &str| Some(k.to_owned());
        assert_eq!(
            credentials(&read),
            [
                ("openai", "gpt".to_owned(), key("k1")),
                ("openai", "gpt-2".to_owned(), key("k2")),
                ("openai", "gpt-2-2".to_owned(), key("k3")),
                ("anthropic", "gpt".to_owned(), key("k4")),
                ("openai", "gpt-3".to_owned(), key("k1")),
            ]
        );
    }

    #[test]
    fn unknown_models_and_credential_names_are_told_safely() {
        let yaml = format!(
            "credential_list:
  - credential_name: {CANARY}
    credential_values: {{api_key: k}}
  - credential_values: {{api_key: {CANARY}}}
model_list:
  - {{model_name: a, litellm_params: {{model: {CANARY}, api_key: {CANARY}}}}}
  - {{model_name: b, litellm_params: {{model: gpt-4o, litellm_credential_name: 'not {CANARY}'}}}}
  - {{model_name: c, litellm_params: {{api_key: {CANARY}}}}}
  - {{model_name: d, litellm_params: {{model: gpt-4o}}}}
  - {{model_name: e}}
  - {CANARY}
"
        );
        let read = litellm(&yaml).expect("read");
        assert!(read.items.is_empty());
        assert_eq!(errors(&read).len(), 6, "{:?}", errors(&read));
        assert_eq!(read.skipped.len(), 8, "{}", said(&read));
        assert_quiet(&said(&read));
    }

    #[test]
    fn odd_and_huge_values_are_taken_as_they_are() {
        let base = format!("https://h/{}", "p".repeat(1 << 20));
        let yaml = format!(
            "model_list:
  - {{model_name: n, litellm_params: {{model: gpt-4o, api_key: 12345}}}}
  - {{model_name: h, litellm_params: {{model: gpt-4o, api_key: k, api_base: '{base}'}}}}
  - {{model_name: u, litellm_params: {{model: gpt-4o, api_key: 'ключ 🔑'}}}}
"
        );
        let read = litellm(&yaml).expect("read");
        assert!(errors(&read).is_empty(), "{:?}", errors(&read));
        let keys: Vec<Option<String>> = credentials(&read).into_iter().map(|c| c.2).collect();
        assert_eq!(
            keys,
            [
                Some("12345".to_owned()),
                Some("k".to_owned()),
                Some("ключ 🔑".to_owned())
            ]
        );
    }
}
