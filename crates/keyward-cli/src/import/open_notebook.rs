//! Open Notebook's `credential` table, exported as JSON, its keys decrypted as Open Notebook
//! does (Fernet, under a key derived from `OPEN_NOTEBOOK_ENCRYPTION_KEY`).

use std::collections::BTreeMap;

use anyhow::{Context as _, Result};
use keyward_core::credential::Modality;
use keyward_core::provider::SecretKind;
use keyward_core::{CredentialName, Provider};
use secrecy::SecretString;

use super::{Item, Read, open, text};

/// Open Notebook's derivations of a Fernet key from `OPEN_NOTEBOOK_ENCRYPTION_KEY`
/// (`open_notebook/utils/encryption.py`): PBKDF2-HMAC-SHA256 over a fixed salt for values
/// marked `pbkdf2v1:`, bare SHA-256 for older unmarked ones.
pub(crate) struct OpenNotebookKeys {
    current: fernet::Fernet,
    legacy: fernet::Fernet,
}

/// Open Notebook's marker on values written under the PBKDF2 derivation.
const PBKDF2_MARKER: &str = "pbkdf2v1:";
/// Its fixed application salt and cost.
const PBKDF2_SALT: &[u8] = b"open-notebook-credential-v1";
const PBKDF2_ROUNDS: u32 = 600_000;

fn urlsafe(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE.encode(bytes)
}

impl OpenNotebookKeys {
    pub(crate) fn new(passphrase: &str) -> Result<Self> {
        use sha2_10::Digest as _;
        let mut derived = zeroize::Zeroizing::new([0u8; 32]);
        pbkdf2::pbkdf2_hmac::<sha2_10::Sha256>(
            passphrase.as_bytes(),
            PBKDF2_SALT,
            PBKDF2_ROUNDS,
            derived.as_mut(),
        );
        let legacy = sha2_10::Sha256::digest(passphrase.as_bytes());
        let fernet = |key: &[u8]| {
            fernet::Fernet::new(&urlsafe(key))
                .ok_or_else(|| anyhow::anyhow!("cannot make a Fernet key from the passphrase"))
        };
        Ok(Self {
            current: fernet(derived.as_ref())?,
            legacy: fernet(&legacy)?,
        })
    }

    /// Open Notebook's `decrypt_value`: a marked value under PBKDF2 only; an unmarked one
    /// under the legacy key, else (when it does not look like a token) plain text.
    fn decrypt(&self, value: &str) -> std::result::Result<String, &'static str> {
        if let Some(token) = value.strip_prefix(PBKDF2_MARKER) {
            return open(&self.current, token)
                .ok_or("does not decrypt under the given encryption key (pbkdf2v1 value)");
        }
        match open(&self.legacy, value) {
            Some(plain) => Ok(plain),
            None if looks_like_fernet_token(value) => {
                Err("looks encrypted but does not decrypt under the given encryption key")
            }
            // Never encrypted (older Open Notebook versions stored some keys plain).
            None => Ok(value.to_owned()),
        }
    }
}

/// Open Notebook's `looks_like_fernet_token`.
fn looks_like_fernet_token(s: &str) -> bool {
    use base64::Engine as _;
    if s.len() < 100 {
        return false;
    }
    base64::engine::general_purpose::URL_SAFE
        .decode(s)
        .is_ok_and(|d| d.len() >= 73 && (d.len() - 1 - 8 - 16 - 32) % 16 == 0)
}

/// The rows of Open Notebook's `credential` table (a JSON array, as `SELECT * FROM credential`
/// in SurrealDB prints it), their keys decrypted as Open Notebook does.
pub(crate) fn open_notebook(json: &str, keys: &OpenNotebookKeys) -> Result<Read> {
    let value: serde_json::Value = serde_json::from_str(json).context("the export is not JSON")?;
    // The rows as `surreal sql --json` prints them (an array per statement, `[[...]]`), as the
    // HTTP `/sql` endpoint answers (`[{"result": [...], "status": "OK"}]`), or a plain array.
    let rows = match value {
        serde_json::Value::Array(a)
            if !a.is_empty() && a.iter().all(serde_json::Value::is_array) =>
        {
            a.into_iter()
                .flat_map(|s| s.as_array().cloned().unwrap_or_default())
                .collect()
        }
        serde_json::Value::Array(a)
            if !a.is_empty()
                && a.iter()
                    .all(|s| s.get("result").is_some_and(serde_json::Value::is_array)) =>
        {
            a.into_iter()
                .flat_map(|s| s["result"].as_array().cloned().unwrap_or_default())
                .collect()
        }
        serde_json::Value::Array(a) => a,
        _ => anyhow::bail!(
            "the export must be JSON: the rows of `SELECT * FROM credential;` from `surreal sql --json` or the /sql endpoint"
        ),
    };
    let mut read = Read::default();
    for (i, row) in rows.iter().enumerate() {
        let origin = format!("row {}", i + 1);
        let (Some(name), Some(provider)) = (text(row, "name"), text(row, "provider")) else {
            read.fail(origin, "a row needs name and provider");
            continue;
        };
        let provider = match Provider::get(&provider.to_ascii_lowercase()) {
            Ok(p) => p,
            Err(e) => {
                read.fail(origin, e.to_string());
                continue;
            }
        };
        let name = match CredentialName::new(name) {
            Ok(n) => n,
            Err(e) => {
                read.fail(origin, e.to_string());
                continue;
            }
        };
        let mut secret = match text(row, "api_key") {
            None => None,
            Some(v) => match keys.decrypt(v) {
                Ok(plain) => Some(SecretString::from(plain)),
                Err(why) => {
                    read.fail(origin, format!("api_key {why}"));
                    continue;
                }
            },
        };
        let mut fields = BTreeMap::new();
        for f in [
            "base_url",
            "endpoint",
            "api_version",
            "endpoint_llm",
            "endpoint_embedding",
            "endpoint_stt",
            "endpoint_tts",
            "project",
            "location",
        ] {
            if let Some(v) = text(row, f) {
                fields.insert(f.to_owned(), v.to_owned());
            }
        }
        // Open Notebook's form puts Azure's endpoint in base_url (`to_esperanto_config`).
        if provider.id == "azure_openai"
            && !fields.contains_key("endpoint")
            && let Some(base) = fields.remove("base_url")
        {
            fields.insert("endpoint".to_owned(), base);
        }
        // Open Notebook's key provider sets `OPENAI_COMPATIBLE_API_KEY` and `_BASE_URL` (and the
        // `ANTHROPIC_COMPATIBLE_` ones) for these; the prefix keeps them, where Keyward's default
        // would be the SDK's own `OPENAI_API_KEY`.
        if provider.is_compatible() {
            fields.insert("env_prefix".to_owned(), provider.id.to_ascii_uppercase());
        }
        let unknown: Vec<String> = fields
            .keys()
            .filter(|k| *k != "base_url" && !provider.takes_public_field(k))
            .cloned()
            .collect();
        for k in unknown {
            fields.remove(&k);
            read.skip(
                format!("{origin}: {k}"),
                format!("not a field of {}", provider.display_name),
            );
        }
        // Vertex's service account: Open Notebook names a file on its host.
        if provider.secret == SecretKind::ServiceAccountJson
            && secret.is_none()
            && let Some(path) = text(row, "credentials_path")
        {
            match std::fs::read_to_string(path) {
                Ok(json) => secret = Some(SecretString::from(json)),
                Err(e) => {
                    let shown = keyward_core::secret_like::shown(path);
                    read.fail(origin, format!("credentials_path {shown}: {e}"));
                    continue;
                }
            }
        }
        let mut modalities = Vec::new();
        let mut bad = None;
        for m in row
            .get("modalities")
            .and_then(serde_json::Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(serde_json::Value::as_str)
        {
            match m.parse::<Modality>() {
                Ok(m) => modalities.push(m),
                Err(e) => bad = Some(e.to_string()),
            }
        }
        if let Some(why) = bad {
            read.fail(origin, why);
            continue;
        }
        modalities.sort();
        modalities.dedup();
        read.items.push(Item::Credential {
            provider,
            name,
            secret,
            fields,
            modalities,
            active: true,
            origin,
        });
    }
    Ok(read)
}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

    use serde_json::json;

    use super::{OpenNotebookKeys, PBKDF2_MARKER, open_notebook};
    use crate::import::Read;
    use crate::import::testing::{CANARY, assert_quiet, credentials, errors, said};

    /// The keys of one passphrase (600 000 rounds of PBKDF2: made once).
    fn keys() -> &'static OpenNotebookKeys {
        static KEYS: OnceLock<OpenNotebookKeys> = OnceLock::new();
        KEYS.get_or_init(|| OpenNotebookKeys::new("the passphrase").expect("keys"))
    }

    fn rows(rows: serde_json::Value) -> Read {
        open_notebook(&rows.to_string(), keys()).expect("read")
    }

    /// A token no key of ours opens, shaped like Open Notebook's.
    fn foreign_token(plain: &str) -> String {
        fernet::Fernet::new(&fernet::Fernet::generate_key())
            .expect("a key")
            .encrypt(plain.as_bytes())
    }

    #[test]
    fn what_is_not_an_export_is_refused_without_quoting_it() {
        for text in [
            String::new(),
            CANARY.to_owned(),
            format!("[\"{CANARY}\""),
            json!({ "api_key": CANARY }).to_string(),
            json!(CANARY).to_string(),
        ] {
            let e = open_notebook(&text, keys())
                .map(|_| ())
                .expect_err("refused");
            assert_quiet(&format!("{e:#}"));
        }
    }

    #[test]
    fn an_empty_export_reads_nothing() {
        for text in ["[]", "[[]]", r#"[{"result": [], "status": "OK"}]"#] {
            let read = open_notebook(text, keys()).expect("read");
            assert!(read.items.is_empty() && read.skipped.is_empty(), "{text}");
        }
    }

    #[test]
    fn malformed_rows_are_told_by_position_never_quoted() {
        let read = rows(json!([
            {},
            { "name": "only a name", "api_key": CANARY },
            42,
            CANARY,
            null,
            { "name": ["not", "text"], "provider": "openai" },
        ]));
        assert!(read.items.is_empty());
        let errors = errors(&read);
        assert_eq!(errors.len(), 6, "{errors:?}");
        for (i, e) in errors.iter().enumerate() {
            assert!(e.starts_with(&format!("row {}: ", i + 1)), "{e}");
        }
        assert_quiet(&said(&read));
    }

    #[test]
    fn keys_that_do_not_open_are_told_without_their_values() {
        let legacy_under_the_wrong_marker = format!(
            "{PBKDF2_MARKER}{}",
            keys().legacy.encrypt(CANARY.as_bytes())
        );
        let read = rows(json!([
            { "name": "a", "provider": "openai", "api_key": foreign_token(CANARY) },
            { "name": "b", "provider": "openai", "api_key": format!("{PBKDF2_MARKER}{CANARY}") },
            { "name": "c", "provider": "openai", "api_key": legacy_under_the_wrong_marker },
        ]));
        assert!(read.items.is_empty());
        assert_eq!(errors(&read).len(), 3, "{:?}", errors(&read));
        assert_quiet(&said(&read));
    }

    #[test]
    fn keys_open_as_open_notebook_wrote_them() {
        let read = rows(json!([
            { "name": "legacy", "provider": "openai", "api_key": keys().legacy.encrypt(CANARY.as_bytes()) },
            { "name": "current", "provider": "OpenAI",
              "api_key": format!("{PBKDF2_MARKER}{}", keys().current.encrypt(CANARY.as_bytes())) },
            // Older versions stored some keys as they are.
            { "name": "plain", "provider": "openai", "api_key": CANARY },
            { "name": "none", "provider": "ollama", "api_key": "   " },
        ]));
        assert!(errors(&read).is_empty(), "{:?}", errors(&read));
        let key = Some(CANARY.to_owned());
        assert_eq!(
            credentials(&read),
            [
                ("openai", "legacy".to_owned(), key.clone()),
                ("openai", "current".to_owned(), key.clone()),
                ("openai", "plain".to_owned(), key),
                ("ollama", "none".to_owned(), None),
            ]
        );
    }

    #[test]
    fn unknown_providers_modalities_and_names_fail_without_quoting_secrets() {
        let read = rows(json!([
            { "name": "a", "provider": CANARY },
            { "name": CANARY, "provider": "openai" },
            { "name": "c", "provider": "openai", "modalities": ["language", CANARY] },
            { "name": "\u{202E}reversed", "provider": "openai" },
            { "name": "x".repeat(100_000), "provider": "openai" },
        ]));
        assert!(read.items.is_empty());
        let errors = errors(&read);
        assert_eq!(errors.len(), 5, "{errors:?}");
        // A huge value makes no huge message.
        assert!(errors.iter().all(|e| e.len() < 2_000), "{errors:?}");
        assert_quiet(&said(&read));
    }

    #[test]
    fn rows_that_collide_are_each_read_and_odd_fields_left_out() {
        let read = rows(json!([
            { "name": "same", "provider": "openai", "api_key": "k1", "endpoint_llm": CANARY },
            { "name": "same", "provider": "openai", "api_key": "k2" },
            { "name": "az", "provider": "azure_openai", "api_key": "k3",
              "base_url": "https://x.openai.azure.com", "modalities": ["language", "language"] },
        ]));
        assert_eq!(credentials(&read).len(), 3);
        let said = said(&read);
        assert!(
            said.contains("row 1: endpoint_llm: not a field of OpenAI"),
            "{said}"
        );
        assert_quiet(&said);
    }

    #[test]
    fn compatible_rows_keep_open_notebooks_variables() {
        let read = rows(json!([
            { "name": "local", "provider": "openai_compatible", "base_url": "http://127.0.0.1:1/v1" },
            { "name": "claude", "provider": "anthropic-compatible", "base_url": "http://127.0.0.1:2" },
        ]));
        let prefixes: Vec<Option<String>> = read
            .items
            .iter()
            .map(|item| match item {
                crate::import::Item::Credential { fields, .. } => fields.get("env_prefix").cloned(),
                _ => None,
            })
            .collect();
        assert_eq!(
            prefixes,
            [
                Some("OPENAI_COMPATIBLE".to_owned()),
                Some("ANTHROPIC_COMPATIBLE".to_owned())
            ]
        );
    }
}
