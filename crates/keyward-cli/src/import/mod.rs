//! `keyward import`: getting keys in from where they are today. Each source is read into
//! [`Item`]s (a credential or a config variable, with where it came from) and [`Skipped`]
//! entries (what was seen and not taken, and why); then the items are compared with the
//! organization's vault ([`plan()`]): created, updated (and what changes), or unchanged. A dry
//! run prints the plan; otherwise it is applied, each imported record audited as an `import`
//! event. Nothing printed or audited holds a key: keys appear as their hints.
//!
//! - `variables`: environment variables into credentials and config variables, for
//!   - `dotenv`: `.env` files, and
//!   - `env`: this process's environment;
//! - `fernet_rows`: the admin guide's platform export (CSV or JSON rows, Fernet-encrypted keys);
//! - `open_notebook`: Open Notebook's `credential` table;
//! - `litellm`: LiteLLM's `config.yaml`;
//! - `plan`: the items compared with the vault, and the plan printed;
//! - `apply`: the plan carried out.

mod apply;
pub(crate) mod dotenv;
pub(crate) mod env;
mod fernet_rows;
mod litellm;
mod open_notebook;
mod plan;
mod variables;

use std::collections::BTreeMap;

use keyward_core::credential::Modality;
use keyward_core::{CredentialName, Provider, VarName};
use secrecy::SecretString;

pub(crate) use apply::apply;
pub(crate) use fernet_rows::fernet_rows;
pub(crate) use litellm::litellm;
pub(crate) use open_notebook::{OpenNotebookKeys, open_notebook};
pub(crate) use plan::{plan, print};
pub(crate) use variables::VarRules;

/// One record to import.
pub(crate) enum Item {
    Credential {
        provider: &'static Provider,
        name: CredentialName,
        secret: Option<SecretString>,
        fields: BTreeMap<String, String>,
        modalities: Vec<Modality>,
        active: bool,
        /// Where it came from, for people (`.env: OPENAI_API_KEY`, `row 3`).
        origin: String,
    },
    Variable {
        name: VarName,
        value: SecretString,
        sensitive: bool,
        origin: String,
    },
}

/// Something the source holds that is not imported, and why.
pub(crate) struct Skipped {
    pub(crate) origin: String,
    pub(crate) why: String,
    /// Whether it is an error (a row that should have imported and could not), as opposed to
    /// something deliberately left alone.
    pub(crate) error: bool,
}

/// What a source yielded.
#[derive(Default)]
pub(crate) struct Read {
    pub(crate) items: Vec<Item>,
    pub(crate) skipped: Vec<Skipped>,
}

impl Read {
    pub(crate) fn skip(&mut self, origin: impl Into<String>, why: impl Into<String>) {
        self.skipped.push(Skipped {
            origin: origin.into(),
            why: why.into(),
            error: false,
        });
    }

    pub(crate) fn fail(&mut self, origin: impl Into<String>, why: impl Into<String>) {
        self.skipped.push(Skipped {
            origin: origin.into(),
            why: why.into(),
            error: true,
        });
    }
}

/// A Fernet token's plain text, if it opens under `key` and is UTF-8.
fn open(key: &fernet::Fernet, token: &str) -> Option<String> {
    key.decrypt(token.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
}

/// A field of a JSON (or YAML) row as trimmed text, if it is a string that is not blank.
fn text<'a>(row: &'a serde_json::Value, field: &str) -> Option<&'a str> {
    row.get(field)
        .and_then(serde_json::Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

#[cfg(test)]
mod testing {
    //! What the tests of the sources share: a planted key, and everything a read says of
    //! what it saw.

    use secrecy::ExposeSecret as _;

    use super::{Item, Read};

    /// A planted key: no origin, reason or error may quote it.
    pub(super) const CANARY: &str = "sk-proj-CaNaRy7Qw9Zx2Lp4Rt8Vm3Kd6Hs1Jf5Gb0Nc";

    /// Every origin and reason of a read, one a line (what the plan prints besides hints).
    pub(super) fn said(read: &Read) -> String {
        let items = read.items.iter().map(|i| match i {
            Item::Credential { origin, .. } | Item::Variable { origin, .. } => origin.clone(),
        });
        let skipped = read
            .skipped
            .iter()
            .map(|s| format!("{}: {}", s.origin, s.why));
        items.chain(skipped).collect::<Vec<_>>().join("\n")
    }

    /// Panics if `text` quotes the canary.
    pub(super) fn assert_quiet(text: &str) {
        assert!(!text.contains(CANARY), "the planted key is quoted: {text}");
    }

    /// The errors of a read, as `origin: why`.
    pub(super) fn errors(read: &Read) -> Vec<String> {
        read.skipped
            .iter()
            .filter(|s| s.error)
            .map(|s| format!("{}: {}", s.origin, s.why))
            .collect()
    }

    /// The credentials read: provider, name, key.
    pub(super) fn credentials(read: &Read) -> Vec<(&'static str, String, Option<String>)> {
        read.items
            .iter()
            .filter_map(|i| match i {
                Item::Credential {
                    provider,
                    name,
                    secret,
                    ..
                } => Some((
                    provider.id,
                    name.as_str().to_owned(),
                    secret.as_ref().map(|s| s.expose_secret().to_owned()),
                )),
                Item::Variable { .. } => None,
            })
            .collect()
    }

    #[test]
    fn the_canary_looks_like_a_key() {
        assert!(keyward_core::secret_like::looks_like_secret(CANARY));
    }
}
