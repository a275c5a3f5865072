//! Config variables: plain ones stored as they are, sensitive ones sealed like credentials.

use keyward_core::audit::{Category, NewEvent, Outcome};
use keyward_core::credential::CredentialStatus;
use keyward_core::var::VarView;
use keyward_core::{Millis, OrgId, VarName};
use keyward_crypto::{DataKey, FieldContext, Keyring};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};

use crate::{Vault, VaultError, bool_to_db, new_id};

pub(crate) const KIND: &str = "config_var";
const COLUMNS: &str = "id, scope, name, sensitive, value, kid, wrapped_dek, sealed_value, description, \
     created_at, created_by, updated_at, updated_by, version";
const MAX_VALUE_LEN: usize = 64 * 1024;

/// A variable and, when asked for and allowed, its value.
#[derive(Debug)]
pub struct VarValue {
    /// What listings show.
    pub view: VarView,
    /// The value: always for a plain variable, for a sensitive one only when revealed.
    pub value: Option<SecretString>,
}

struct VarRow {
    id: String,
    scope: String,
    view: VarView,
    wrapped_dek: Option<Vec<u8>>,
    sealed_value: Option<Vec<u8>>,
    /// A legacy sensitive row's value in plain text (no data key, no ciphertext).
    legacy_value: Option<String>,
}

impl VarRow {
    fn from_row(row: &AnyRow, keyring: &Keyring) -> Result<Self, VaultError> {
        let id: String = row.try_get("id")?;
        let scope: String = row.try_get("scope")?;
        let name: String = row.try_get("name")?;
        let sensitive = row.try_get::<i64, _>("sensitive")? != 0;
        let mut out = Self {
            view: VarView {
                name: VarName::from_stored(&name)?,
                org: if scope.is_empty() {
                    None
                } else {
                    Some(OrgId::from_stored(&scope)?)
                },
                sensitive,
                value: if sensitive {
                    None
                } else {
                    row.try_get("value")?
                },
                description: row.try_get("description")?,
                created_at: Millis(row.try_get("created_at")?),
                created_by: row.try_get("created_by")?,
                updated_at: Millis(row.try_get("updated_at")?),
                updated_by: row.try_get("updated_by")?,
                version: row.try_get("version")?,
                kid: row.try_get("kid")?,
                status: CredentialStatus::Ok,
            },
            id,
            scope,
            wrapped_dek: row.try_get("wrapped_dek")?,
            sealed_value: row.try_get("sealed_value")?,
            legacy_value: None,
        };
        if sensitive && out.wrapped_dek.is_none() && out.sealed_value.is_none() {
            out.legacy_value = row.try_get("value")?;
        }
        if sensitive {
            out.view.status = match out.open(keyring) {
                Err(_) => CredentialStatus::Undecryptable,
                Ok(_) if out.legacy_value.is_some() => CredentialStatus::LegacyPlaintext,
                Ok(_) => CredentialStatus::Ok,
            };
        }
        Ok(out)
    }

    fn open(&self, keyring: &Keyring) -> Result<SecretString, VaultError> {
        let undecryptable = || VaultError::Undecryptable(format!("variable '{}'", self.view.name));
        if let Some(plain) = &self.legacy_value {
            return Ok(SecretString::from(plain.clone()));
        }
        let (Some(wrapped), Some(sealed)) = (&self.wrapped_dek, &self.sealed_value) else {
            return Err(undecryptable());
        };
        let dek = keyring
            .unwrap(wrapped, &self.id)
            .map_err(|_| undecryptable())?;
        dek.open_string(&ctx(&self.id, &self.scope, &self.view.name), sealed)
            .map_err(|_| undecryptable())
    }
}

/// Where a sensitive value is sealed for: the variable's id, scope and name (so that swapping
/// names between rows in the database does not hand one variable's value out as another's).
fn ctx<'a>(id: &'a str, scope: &'a str, name: &'a VarName) -> FieldContext<'a> {
    FieldContext {
        kind: KIND,
        record_id: id,
        org: scope,
        field: name.as_str(),
        bound: b"",
    }
}

fn target(name: &VarName, org: Option<&OrgId>) -> String {
    match org {
        Some(o) => format!("var:{o}/{name}"),
        None => format!("var:{name}"),
    }
}

impl Vault {
    async fn load_var(&self, name: &VarName, scope: &str) -> Result<Option<VarRow>, VaultError> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM config_vars WHERE scope = $1 AND name = $2"
        )))
        .bind(scope)
        .bind(name.as_str())
        .fetch_optional(&self.inner.pool)
        .await?;
        row.map(|r| VarRow::from_row(&r, &self.inner.keyring))
            .transpose()
    }

    /// Creates or replaces a variable. A sensitive variable stays sensitive: setting it again
    /// without `sensitive` keeps it encrypted (delete it to make it plain).
    pub async fn set_var(
        &self,
        name: &VarName,
        org: Option<&OrgId>,
        value: &SecretString,
        sensitive: bool,
        description: Option<&str>,
        actor: &str,
    ) -> Result<VarView, VaultError> {
        let text = value.expose_secret();
        if text.contains('\0') {
            return Err(VaultError::InvalidInput(
                "a variable's value cannot contain a NUL character".into(),
            ));
        }
        if text.len() > MAX_VALUE_LEN {
            return Err(VaultError::InvalidInput(format!(
                "a variable's value is at most {MAX_VALUE_LEN} bytes"
            )));
        }
        self.refuse_own_keys([text, name.as_str()])?;
        if let Some(d) = description
            && (d.chars().count() > 500 || d.chars().any(char::is_control))
        {
            return Err(VaultError::InvalidInput(
                "a description has at most 500 printable characters".into(),
            ));
        }
        if let Some(d) = description {
            keyward_core::secret_like::check_public("description", d)?;
            self.refuse_own_keys([d])?;
        }
        if let Some(o) = org {
            self.require_org(o).await?;
        }
        let scope = org.map_or("", OrgId::as_str);
        let existing = self.load_var(name, scope).await?;
        let sensitive = sensitive || existing.as_ref().is_some_and(|e| e.view.sensitive);
        let id = existing.as_ref().map_or_else(new_id, |e| e.id.clone());
        let (plain, kid, wrapped, sealed) = if sensitive {
            let dek = DataKey::generate()?;
            let sealed = dek.seal(&ctx(&id, scope, name), text.as_bytes())?;
            (
                None,
                Some(self.inner.keyring.primary_kid().to_string()),
                Some(self.inner.keyring.wrap(&dek, &id)?),
                Some(sealed),
            )
        } else {
            (Some(text.to_owned()), None, None, None)
        };
        let description = description
            .map(str::to_owned)
            .or_else(|| existing.as_ref().map(|e| e.view.description.clone()))
            .unwrap_or_default();
        let now = Millis::now();
        let mut tx = self.begin_write().await?;
        let action = match &existing {
            None => {
                sqlx::query(AssertSqlSafe(format!(
                    "INSERT INTO config_vars ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
                )))
                .bind(&id)
                .bind(scope)
                .bind(name.as_str())
                .bind(bool_to_db(sensitive))
                .bind(plain)
                .bind(kid)
                .bind(wrapped)
                .bind(sealed)
                .bind(&description)
                .bind(now.0)
                .bind(actor)
                .bind(now.0)
                .bind(actor)
                .bind(1i64)
                .execute(&mut *tx)
                .await
                .map_err(|e| crate::map_unique(e, || format!("variable '{name}'")))?;
                "create"
            }
            Some(e) => {
                let done = sqlx::query(
                    "UPDATE config_vars SET sensitive = $1, value = $2, kid = $3, wrapped_dek = $4, \
                     sealed_value = $5, description = $6, updated_at = $7, updated_by = $8, \
                     version = version + 1 WHERE id = $9 AND version = $10",
                )
                .bind(bool_to_db(sensitive))
                .bind(plain)
                .bind(kid)
                .bind(wrapped)
                .bind(sealed)
                .bind(&description)
                .bind(now.0)
                .bind(actor)
                .bind(&id)
                .bind(e.view.version)
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() != 1 {
                    return Err(VaultError::Conflict {
                        id: target(name, org),
                        expected: e.view.version,
                        found: -1,
                    });
                }
                "update"
            }
        };
        self.append_event(
            &mut tx,
            NewEvent::new(actor, Category::SecretManagement, action, target(name, org))
                .org(org.map(OrgId::as_str))
                .details(json!({ "sensitive": sensitive })),
        )
        .await?;
        self.commit(tx, "variable", name.as_str()).await?;
        self.load_var(name, scope)
            .await?
            .map(|r| r.view)
            .ok_or_else(|| VaultError::NotFound(format!("variable '{name}'")))
    }

    /// Reads a variable: the organization's own, else the global one of that name. A sensitive
    /// value is only returned with `reveal`, and revealing it is audited.
    pub async fn get_var(
        &self,
        name: &VarName,
        org: Option<&OrgId>,
        reveal: bool,
        actor: &str,
    ) -> Result<VarValue, VaultError> {
        let mut found = None;
        if let Some(o) = org {
            found = self.load_var(name, o.as_str()).await?;
        }
        if found.is_none() {
            found = self.load_var(name, "").await?;
        }
        let row = found.ok_or_else(|| VaultError::NotFound(format!("variable '{name}'")))?;
        if !row.view.sensitive {
            let value = row.view.value.clone().map(SecretString::from);
            return Ok(VarValue {
                view: row.view,
                value,
            });
        }
        if !reveal {
            return Ok(VarValue {
                view: row.view,
                value: None,
            });
        }
        let opened = row.open(&self.inner.keyring);
        let event = NewEvent::new(
            actor,
            Category::SecretAccess,
            "reveal",
            target(name, row.view.org.as_ref()),
        )
        .org(row.view.org.as_ref().map(OrgId::as_str))
        .outcome(if opened.is_ok() {
            Outcome::Success
        } else {
            Outcome::Failure
        })
        .details(match &opened {
            Ok(_) => json!({}),
            Err(e) => json!({ "error": e.to_string() }),
        });
        self.record(event).await?;
        Ok(VarValue {
            view: row.view,
            value: Some(opened?),
        })
    }

    /// Variables, optionally of one organization only (`Some`) or of every scope (`None`).
    pub async fn list_vars(&self, org: Option<&OrgId>) -> Result<Vec<VarView>, VaultError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM config_vars WHERE ($1 = '*' OR scope = $1) ORDER BY scope, name"
        )))
        .bind(org.map_or("*", OrgId::as_str))
        .fetch_all(&self.inner.pool)
        .await?;
        rows.iter()
            .map(|r| Ok(VarRow::from_row(r, &self.inner.keyring)?.view))
            .collect()
    }

    /// Deletes a variable of the given scope.
    pub async fn delete_var(
        &self,
        name: &VarName,
        org: Option<&OrgId>,
        actor: &str,
    ) -> Result<(), VaultError> {
        let scope = org.map_or("", OrgId::as_str);
        let mut tx = self.begin_write().await?;
        let done = sqlx::query("DELETE FROM config_vars WHERE scope = $1 AND name = $2")
            .bind(scope)
            .bind(name.as_str())
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() != 1 {
            return Err(VaultError::NotFound(format!("variable '{name}'")));
        }
        self.append_event(
            &mut tx,
            NewEvent::new(
                actor,
                Category::SecretManagement,
                "delete",
                target(name, org),
            )
            .org(org.map(OrgId::as_str)),
        )
        .await?;
        self.commit(tx, "variable", name.as_str()).await?;
        Ok(())
    }
}

impl Vault {
    /// Whether an organization's own variable (or the global one, `None`) holds exactly
    /// `value`: `None` when there is no such variable. A sensitive value is compared inside
    /// the vault in constant time and never returned, so this is not a reveal.
    pub async fn var_value_is(
        &self,
        name: &VarName,
        org: Option<&OrgId>,
        value: &SecretString,
    ) -> Result<Option<bool>, VaultError> {
        use subtle::ConstantTimeEq as _;
        let Some(row) = self.load_var(name, org.map_or("", OrgId::as_str)).await? else {
            return Ok(None);
        };
        let stored = if row.view.sensitive {
            row.open(&self.inner.keyring)?
        } else {
            SecretString::from(row.view.value.clone().unwrap_or_default())
        };
        Ok(Some(bool::from(
            stored
                .expose_secret()
                .as_bytes()
                .ct_eq(value.expose_secret().as_bytes()),
        )))
    }
}
