//! Secret references: `keyward://` URLs standing in for values in environment variables and
//! `.env` files, resolved just before a child process starts.
//!
//! ```text
//! keyward://ORG/PROVIDER                   the key resolution hands out
//! keyward://ORG/PROVIDER/CREDENTIAL-NAME   the key of that credential
//! keyward://ORG/PROVIDER?field=base_url    a field of the resolved credential
//! keyward://ORG/var/NAME                   a config variable (the org's, else the global one)
//! keyward://vault:MOUNT/data/PATH#FIELD    a field of an OpenBao/Vault KV v2 secret
//! ```
//!
//! The first four read the Keyward vault (or the Keyward server in remote mode). A `vault:`
//! reference reads OpenBao or Vault directly, from this process, whatever the mode: the server
//! `VAULT_ADDR` names, signed in with `VAULT_TOKEN` (or as `KEYWARD_KMS`'s `transit:` settings
//! say), one reader for all the references of a run ([`keyward_kms::kv`]). `vault:PATH#FIELD` is
//! a shape other tools' Vault references have too. No organization can be shadowed by one: an
//! organization id never holds a `:`, so `keyward://vault/openai` stays organization
//! `vault`'s OpenAI key. `MOUNT/PATH#FIELD` (the CLI's path, without `data`) is read as
//! `MOUNT/data/PATH#FIELD`.

use std::fmt;

use keyward_core::{CredentialName, OrgId, Provider, VarName};
use keyward_kms::kv::{KvRef, LazyKvReader};

use crate::{Error, ReferenceValue};

/// The scheme that marks a value as a reference.
pub const SCHEME: &str = "keyward://";

/// A parsed reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    /// A credential's secret or one of its fields.
    Credential {
        /// Organization.
        org: OrgId,
        /// Provider.
        provider: &'static Provider,
        /// A specific credential, else resolution picks.
        name: Option<CredentialName>,
        /// A field instead of the secret (`base_url`, `endpoint`, ... or the secret's own name).
        field: Option<String>,
    },
    /// A config variable.
    Var {
        /// Organization.
        org: OrgId,
        /// Name.
        name: VarName,
    },
    /// A field of an OpenBao/Vault KV v2 secret (`keyward://vault:MOUNT/data/PATH#FIELD`).
    Vault(KvRef),
}

/// The prefix, after the scheme, of a Vault KV reference.
const VAULT: &str = "vault:";

impl Reference {
    /// `None` when `value` is not a reference; an error naming it when it is one but malformed.
    pub fn parse(value: &str) -> Option<Result<Self, Error>> {
        let rest = value.trim().strip_prefix(SCHEME)?;
        Some(Self::parse_rest(rest).map_err(|why| Error::Reference {
            reference: value.trim().to_owned(),
            why,
        }))
    }

    fn parse_rest(rest: &str) -> Result<Self, String> {
        // Before the organization: `vault:` is no organization id (those never hold a `:`).
        if let Some(kv) = rest.strip_prefix(VAULT) {
            return KvRef::parse(kv)
                .map(Reference::Vault)
                .map_err(|e| e.to_string());
        }
        let (path, query) = match rest.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (rest, None),
        };
        let parts: Vec<&str> = path.split('/').collect();
        let org = OrgId::new(parts[0]).map_err(|e| e.to_string())?;
        let field = match query {
            None => None,
            Some(q) => {
                let f = q
                    .strip_prefix("field=")
                    .filter(|f| !f.is_empty() && !f.contains('&'))
                    .ok_or("the only query is ?field=NAME")?;
                Some(f.to_owned())
            }
        };
        match parts.as_slice() {
            [_, "var", name] => {
                if field.is_some() {
                    return Err("a variable reference takes no ?field".into());
                }
                Ok(Reference::Var {
                    org,
                    name: VarName::new(name).map_err(|e| e.to_string())?,
                })
            }
            [_, provider] | [_, provider, _] => {
                let provider = Provider::get(provider).map_err(|e| e.to_string())?;
                let name = match parts.get(2) {
                    Some(n) => Some(CredentialName::new(n).map_err(|e| e.to_string())?),
                    None => None,
                };
                if let Some(f) = &field
                    && f != provider.secret_field
                    && !provider.takes_public_field(f)
                {
                    return Err(format!("provider {} has no field {f:?}", provider.id));
                }
                Ok(Reference::Credential {
                    org,
                    provider,
                    name,
                    field,
                })
            }
            _ => Err(
                "expected keyward://ORG/PROVIDER[/NAME][?field=F], keyward://ORG/var/NAME or keyward://vault:MOUNT/data/PATH#FIELD".into(),
            ),
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Credential {
                org,
                provider,
                name,
                field,
            } => {
                write!(f, "{SCHEME}{org}/{}", provider.id)?;
                if let Some(n) = name {
                    write!(f, "/{n}")?;
                }
                if let Some(x) = field {
                    write!(f, "?field={x}")?;
                }
                Ok(())
            }
            Reference::Var { org, name } => write!(f, "{SCHEME}{org}/var/{name}"),
            Reference::Vault(kv) => write!(f, "{SCHEME}{VAULT}{kv}"),
        }
    }
}

/// Reads a `vault:` reference: a secret, masked as `***` (its provider is not known); an empty
/// field is an error, as for every reference.
pub(crate) async fn read_vault(kv: &LazyKvReader, r: &KvRef) -> Result<ReferenceValue, Error> {
    let value = kv.read(r).await.map_err(|e| Error::Reference {
        reference: format!("{SCHEME}{VAULT}{r}"),
        why: e.to_string(),
    })?;
    Ok(ReferenceValue {
        value,
        mask: Some("***".to_owned()),
        is_file: false,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn parse(text: &str) -> Result<Reference, String> {
        Reference::parse(text).unwrap().map_err(|e| e.to_string())
    }

    #[test]
    fn vault_references_parse_and_print_back_and_an_org_named_vault_is_still_an_org() {
        let r = parse("keyward://vault:secret/data/providers#openai_api_key").unwrap();
        assert!(matches!(&r, Reference::Vault(kv) if kv.path() == "secret/data/providers"));
        assert_eq!(
            r.to_string(),
            "keyward://vault:secret/data/providers#openai_api_key"
        );
        let r = parse("keyward://vault:secret/providers#openai_api_key").unwrap();
        assert_eq!(
            r.to_string(),
            "keyward://vault:secret/data/providers#openai_api_key"
        );
        let r = parse("keyward://vault/openai").unwrap();
        assert!(matches!(&r, Reference::Credential { org, .. } if org.as_str() == "vault"));
        let r = parse("keyward://vault/var/NAME").unwrap();
        assert!(matches!(&r, Reference::Var { org, .. } if org.as_str() == "vault"));
        let e = parse("keyward://vault:secret/data/providers").unwrap_err();
        assert!(
            e.contains("cannot resolve keyward://vault:secret/data/providers")
                && e.contains("expected MOUNT/data/PATH#FIELD"),
            "{e}"
        );
        assert!(parse("keyward://vault:secret/data/../sys#x").is_err());
    }
}
