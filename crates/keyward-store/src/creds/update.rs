//! An update applied: the version compared, the change planned (`plan`), the secret sealed as
//! planned, one conditional `UPDATE`, and its audit event in the same transaction.

use keyward_core::audit::{Category, NewEvent};
use keyward_core::credential::{CredentialUpdate, CredentialView, FormatCheck};
use keyward_core::{CredentialId, CredentialName, Millis};
use secrecy::ExposeSecret as _;
use serde_json::json;
use sqlx::AssertSqlSafe;

use super::plan::{Current, SecretPlan, UpdatePlan, plan};
use super::{CredRow, Sealed, fields_to_db, modalities_to_db, seal_secret, with_ctx};
use crate::changes::Change;
use crate::{Vault, VaultError, bool_to_db, map_unique};

/// What the write does to the secret columns.
enum SecretChange {
    /// Nothing.
    Keep,
    /// The same secret under the same data key, sealed again for new public fields.
    Reseal(Vec<u8>),
    /// A new secret under a new data key.
    New(Sealed),
}

impl Vault {
    /// Applies `update` if the credential is still at `expected_version` (or, when `None`, at
    /// the version read just before writing). A concurrent change makes this fail with
    /// [`VaultError::Conflict`]; it never silently overwrites.
    pub async fn update_credential(
        &self,
        id: &CredentialId,
        expected_version: Option<i64>,
        update: CredentialUpdate,
        actor: &str,
    ) -> Result<CredentialView, VaultError> {
        if update.is_empty() {
            return Err(VaultError::InvalidInput("nothing to update".into()));
        }
        let current = self.load_credential(id).await?;
        let expected = expected_version.unwrap_or(current.version);
        if current.version != expected {
            return Err(VaultError::Conflict {
                id: id.to_string(),
                expected,
                found: current.version,
            });
        }
        self.refuse_own_keys(
            update
                .fields
                .values()
                .map(String::as_str)
                .chain(update.name.as_ref().map(CredentialName::as_str)),
        )?;
        let planned = plan(
            &Current {
                provider: current.provider,
                name: &current.name,
                fields: &current.fields,
                modalities: &current.modalities,
                active: current.active,
                priority: current.priority,
                weight: current.weight,
                legacy: current.is_legacy(),
            },
            update,
        )?;
        let change = self.seal_as_planned(&current, &planned)?;
        let hint = match &change {
            SecretChange::New(s) => s.key_hint.clone(),
            _ => current.key_hint.clone(),
        };
        let action = planned.action();
        let UpdatePlan {
            name,
            fields,
            modalities,
            active,
            priority,
            weight,
            changed,
            moved,
            ..
        } = planned;

        let mut tx = self.begin_write().await?;
        let secret_columns = match &change {
            SecretChange::New(_) => {
                ", key_hint = $11, kid = $12, wrapped_dek = $13, sealed_secret = $14, plaintext_secret = NULL"
            }
            SecretChange::Reseal(_) => ", sealed_secret = $11",
            SecretChange::Keep => "",
        };
        let sql = format!(
            "UPDATE credentials SET name = $1, modalities = $2, fields = $3, active = $4, \
             priority = $5, weight = $6, updated_at = $7, updated_by = $8, \
             version = version + 1{secret_columns} WHERE id = $9 AND version = $10"
        );
        let mut query = sqlx::query(AssertSqlSafe(sql))
            .bind(name.as_str())
            .bind(modalities_to_db(&modalities))
            .bind(fields_to_db(&fields))
            .bind(bool_to_db(active))
            .bind(priority)
            .bind(weight)
            .bind(Millis::now().0)
            .bind(actor)
            .bind(id.as_str())
            .bind(expected);
        match change {
            SecretChange::New(s) => {
                query = query
                    .bind(s.key_hint)
                    .bind(s.kid)
                    .bind(s.wrapped_dek)
                    .bind(s.sealed_secret);
            }
            SecretChange::Reseal(sealed) => query = query.bind(sealed),
            SecretChange::Keep => {}
        }
        let provider = current.provider;
        let result = query.execute(&mut *tx).await.map_err(|e| {
            map_unique(e, || {
                format!(
                    "{} credential named '{name}' in organization '{}'",
                    provider.a_name(),
                    current.org
                )
            })
        })?;
        if result.rows_affected() != 1 {
            drop(tx);
            let found = match self.load_credential(id).await {
                Ok(row) => row.version,
                Err(VaultError::NotFound(_)) => 0,
                Err(e) => return Err(e),
            };
            return Err(VaultError::Conflict {
                id: id.to_string(),
                expected,
                found,
            });
        }
        let mut details = json!({
            "provider": provider.id,
            "name": name,
            "changed": changed,
            "version": expected + 1,
        });
        if changed.contains(&"secret") {
            details["key_hint"] = json!(hint);
        }
        if !moved.is_empty() {
            details["fields"] = serde_json::Value::Object(moved);
        }
        self.append_event(
            &mut tx,
            NewEvent::new(
                actor,
                Category::SecretManagement,
                action,
                format!("credential:{id}"),
            )
            .org(Some(current.org.as_str()))
            .details(details),
        )
        .await?;
        self.commit(tx, "credential", id.as_str()).await?;
        // Deactivated, rotated, moved: what was cached must not be served, even stale.
        self.changed(Change::keys(
            current.org.as_str(),
            Some(current.provider.id),
            true,
        ))
        .await;
        self.get_credential(id).await
    }

    /// Seals what the plan says: a new secret under a new data key, or the stored one again
    /// (under its data key, for new public fields; or for the first time, a legacy row's).
    fn seal_as_planned(
        &self,
        current: &CredRow,
        planned: &UpdatePlan,
    ) -> Result<SecretChange, VaultError> {
        let keyring = &self.inner.keyring;
        let id = &current.id;
        let undecryptable = || VaultError::Undecryptable(format!("credential {id}"));
        let new = |raw: Option<&secrecy::SecretString>, check| {
            seal_secret(
                keyring,
                id,
                &current.org,
                current.provider,
                &planned.fields,
                raw,
                check,
            )
            .map(SecretChange::New)
        };
        match &planned.secret {
            SecretPlan::Keep => Ok(SecretChange::Keep),
            SecretPlan::New(raw, check) => new(Some(raw), *check),
            SecretPlan::SealLegacy => {
                let secret = current.open_secret(keyring).map_err(|_| undecryptable())?;
                new(secret.as_ref(), FormatCheck::Skip)
            }
            SecretPlan::Reseal => {
                let dek = keyring
                    .unwrap(&current.wrapped_dek, id.as_str())
                    .map_err(|_| undecryptable())?;
                let secret = current.open_secret(keyring).map_err(|_| undecryptable())?;
                let plaintext = secret.as_ref().map_or("", |s| s.expose_secret());
                Ok(SecretChange::Reseal(with_ctx(
                    id,
                    &current.org,
                    current.provider,
                    &planned.fields,
                    |ctx| dek.seal(ctx, plaintext.as_bytes()),
                )?))
            }
        }
    }
}
