//! The admin guide's platform export: rows of provider credentials, as CSV or JSON, whose keys
//! are Fernet tokens under one key.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context as _, Result};
use keyward_core::{CredentialName, OrgId, Provider};
use secrecy::SecretString;

use super::{Item, Read, open};

/// One row of the admin guide's platform export.
#[derive(serde::Deserialize)]
struct FernetRow {
    organization_id: Option<String>,
    provider: Option<String>,
    credential_name: Option<String>,
    api_key: Option<String>,
    api_base: Option<String>,
    is_active: Option<serde_json::Value>,
}

/// Rows of provider credentials (`organization_id, provider, credential_name, api_key,
/// api_base, is_active`, as CSV with a header or a JSON array) whose `api_key` is a Fernet
/// token under `key`. Rows of another organization than `org` are left alone.
pub(crate) fn fernet_rows(path: &Path, key: &fernet::Fernet, org: &OrgId) -> Result<Read> {
    let raw =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut rows: Vec<std::result::Result<FernetRow, String>> = Vec::new();
    if raw.trim_start().starts_with('[') {
        let values: Vec<serde_json::Value> =
            serde_json::from_str(&raw).context("the file is not a JSON array")?;
        for v in values {
            rows.push(serde_json::from_value(v).map_err(|_| "malformed row".to_owned()));
        }
    } else {
        let mut reader = csv::ReaderBuilder::new()
            .trim(csv::Trim::All)
            .from_reader(raw.as_bytes());
        for record in reader.deserialize::<FernetRow>() {
            // The CSV error would quote the row: only its position is told.
            rows.push(record.map_err(|_| "malformed row".to_owned()));
        }
    }
    let mut read = Read::default();
    for (i, row) in rows.into_iter().enumerate() {
        let origin = format!("row {}", i + 1);
        let row = match row {
            Ok(r) => r,
            Err(why) => {
                read.fail(origin, why);
                continue;
            }
        };
        if let Some(o) = row
            .organization_id
            .as_deref()
            .map(str::trim)
            .filter(|o| !o.is_empty())
            && o != org.as_str()
        {
            read.skip(
                origin,
                format!(
                    "a row of organization {} (import it with --org {0})",
                    keyward_core::secret_like::shown(o)
                ),
            );
            continue;
        }
        let (Some(provider), Some(name)) =
            (row.provider.as_deref(), row.credential_name.as_deref())
        else {
            read.fail(origin, "a row needs provider and credential_name");
            continue;
        };
        let provider = match Provider::get(provider.trim()) {
            Ok(p) => p,
            Err(e) => {
                read.fail(origin, e.to_string());
                continue;
            }
        };
        let name = match CredentialName::new(name.trim()) {
            Ok(n) => n,
            Err(e) => {
                read.fail(origin, e.to_string());
                continue;
            }
        };
        let secret = match row
            .api_key
            .as_deref()
            .map(str::trim)
            .filter(|k| !k.is_empty())
        {
            None => None,
            Some(token) => match open(key, token) {
                Some(plain) => Some(SecretString::from(plain)),
                None => {
                    read.fail(
                        origin,
                        "api_key does not decrypt under the given key (wrong key, or the token was altered)",
                    );
                    continue;
                }
            },
        };
        let mut fields = BTreeMap::new();
        if let Some(base) = row
            .api_base
            .as_deref()
            .map(str::trim)
            .filter(|b| !b.is_empty() && *b != "null")
        {
            fields.insert("base_url".to_owned(), base.to_owned());
        }
        let active = match &row.is_active {
            None | Some(serde_json::Value::Null) => true,
            Some(serde_json::Value::Bool(b)) => *b,
            Some(serde_json::Value::Number(n)) => n.as_i64() != Some(0),
            Some(serde_json::Value::String(s)) => !matches!(
                s.trim().to_ascii_lowercase().as_str(),
                "false" | "0" | "no" | "f"
            ),
            Some(_) => {
                read.fail(origin, "is_active must be true or false");
                continue;
            }
        };
        read.items.push(Item::Credential {
            provider,
            name,
            secret,
            fields,
            modalities: Vec::new(),
            active,
            origin,
        });
    }
    Ok(read)
}

#[cfg(test)]
mod tests {
    use keyward_core::OrgId;
    use serde_json::json;

    use super::fernet_rows;
    use crate::import::Read;
    use crate::import::testing::{CANARY, assert_quiet, credentials, errors, said};

    const HEADER: &str = "organization_id,provider,credential_name,api_key,api_base,is_active\n";

    fn key() -> fernet::Fernet {
        fernet::Fernet::new("uP2tM8rJ0bUOi7cQX3Q8c2tqkSkF9n5PkZ7y1hH6Ug0=").expect("a key")
    }

    fn token(plain: &str) -> String {
        key().encrypt(plain.as_bytes())
    }

    /// What a file of `contents` reads as, for organization `acme`.
    fn file(contents: &[u8]) -> anyhow::Result<Read> {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("rows");
        std::fs::write(&path, contents).expect("written");
        fernet_rows(&path, &key(), &OrgId::new("acme").expect("an org"))
    }

    fn refusal(contents: &[u8]) -> String {
        match file(contents) {
            Ok(_) => panic!("read"),
            Err(e) => format!("{e:#}"),
        }
    }

    #[test]
    fn an_empty_file_reads_nothing() {
        for contents in ["", HEADER, "[]", "  [ ]\n"] {
            let read = file(contents.as_bytes()).expect("read");
            assert!(
                read.items.is_empty() && read.skipped.is_empty(),
                "{contents:?}"
            );
        }
    }

    #[test]
    fn a_file_that_is_not_utf8_or_json_is_refused_without_quoting_it() {
        let mut bytes = format!("{HEADER}acme,openai,a,{CANARY},,true\n").into_bytes();
        bytes.push(0xff);
        assert_quiet(&refusal(&bytes));
        let e = refusal(format!("[\"{CANARY}\", ").as_bytes());
        assert!(e.contains("not a JSON array"), "{e}");
        assert_quiet(&e);
        let unclosed = format!("[{{\"api_key\": \"{CANARY}\"}}");
        assert_quiet(&refusal(unclosed.as_bytes()));
    }

    #[test]
    fn malformed_rows_are_told_by_position_never_quoted() {
        let csv = format!(
            "{HEADER}acme,openai,a,{CANARY}\nacme,openai,b,{CANARY},,true,extra\n\"acme,openai,c,{CANARY}\n"
        );
        let read = file(csv.as_bytes()).expect("read");
        assert!(read.items.is_empty());
        assert!(!errors(&read).is_empty());
        assert!(
            errors(&read).iter().all(|e| e.ends_with("malformed row")),
            "{:?}",
            errors(&read)
        );
        assert_quiet(&said(&read));
        let json = json!([CANARY, 42, null, { "api_key": 7 }, { "provider": "openai" }]);
        let read = file(json.to_string().as_bytes()).expect("read");
        assert_eq!(errors(&read).len(), 5, "{:?}", errors(&read));
        assert_quiet(&said(&read));
    }

    #[test]
    fn keys_that_do_not_open_are_told_without_their_values() {
        let other = fernet::Fernet::new(&fernet::Fernet::generate_key())
            .expect("a key")
            .encrypt(CANARY.as_bytes());
        let huge = format!("{CANARY}{}", "z".repeat(1 << 20));
        let csv = format!(
            "{HEADER}acme,openai,a,{other},,true\nacme,openai,b,{CANARY},,true\nacme,openai,c,{huge},,\n"
        );
        let read = file(csv.as_bytes()).expect("read");
        assert!(read.items.is_empty());
        assert_eq!(errors(&read).len(), 3, "{:?}", errors(&read));
        assert_quiet(&said(&read));
    }

    #[test]
    fn rows_of_another_organization_are_left_alone_and_named_safely() {
        let csv = format!(
            "{HEADER}{CANARY},openai,a,{t},,true\nother,openai,b,{t},,true\n,openai,c,{t},,\n",
            t = token(CANARY)
        );
        let read = file(csv.as_bytes()).expect("read");
        assert!(errors(&read).is_empty(), "{:?}", errors(&read));
        // A row without an organization is the one asked for.
        assert_eq!(
            credentials(&read),
            [("openai", "c".to_owned(), Some(CANARY.to_owned()))]
        );
        assert!(
            said(&read).contains("row 2: a row of organization \"other\""),
            "{}",
            said(&read)
        );
        assert_quiet(&said(&read));
    }

    #[test]
    fn unknown_providers_and_names_fail_without_quoting_secrets() {
        let rows = json!([
            { "provider": CANARY, "credential_name": "a" },
            { "provider": "openai", "credential_name": CANARY },
            { "provider": "openai", "credential_name": "x".repeat(10_000) },
            { "provider": "openai", "credential_name": "d", "is_active": { "no": CANARY } },
        ]);
        let read = file(rows.to_string().as_bytes()).expect("read");
        assert!(read.items.is_empty());
        let errors = errors(&read);
        assert_eq!(errors.len(), 4, "{errors:?}");
        assert!(errors.iter().all(|e| e.len() < 2_000), "{errors:?}");
        assert_quiet(&said(&read));
    }

    #[test]
    fn rows_that_collide_are_each_read_with_their_own_state() {
        let t = token("sk-a");
        let rows = json!([
            { "provider": "openai", "credential_name": "same", "api_key": t, "is_active": "No" },
            { "provider": "openai", "credential_name": "same", "api_key": t, "is_active": 0 },
            { "provider": "openai", "credential_name": "same", "api_base": "null", "is_active": "t" },
        ]);
        let read = file(rows.to_string().as_bytes()).expect("read");
        assert!(errors(&read).is_empty(), "{:?}", errors(&read));
        let active: Vec<bool> = read
            .items
            .iter()
            .map(|i| match i {
                crate::import::Item::Credential { active, fields, .. } => {
                    assert!(fields.is_empty());
                    *active
                }
                crate::import::Item::Variable { .. } => panic!("a variable"),
            })
            .collect();
        assert_eq!(active, [false, false, true]);
    }
}
