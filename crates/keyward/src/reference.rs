//! Secret references: `keyward://` URLs standing in for values in environment variables and
//! `.env` files, resolved just before a child process starts.
//!
//! ```text
//! keyward://ORG/PROVIDER                   the key resolution hands out
//! keyward://ORG/PROVIDER/CREDENTIAL-NAME   the key of that credential
//! keyward://ORG/PROVIDER?field=base_url    a field of the resolved credential
//! keyward://ORG/var/NAME                   a config variable (the org's, else the global one)
//! ```

use std::fmt;

use keyward_core::{CredentialName, OrgId, Provider, VarName};

use crate::Error;

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
}

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
                "expected keyward://ORG/PROVIDER[/NAME][?field=F] or keyward://ORG/var/NAME".into(),
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
        }
    }
}
