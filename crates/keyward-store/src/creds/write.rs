//! Writing credentials: adding one or a batch (sealed, audited), key-test results,
//! activation, deletion.

use keyward_core::audit::{Category, NewEvent, Outcome};
use keyward_core::credential::{
    CredentialUpdate, CredentialView, NewCredential, base_url_as_endpoint, check_public_fields,
    check_required_fields, fields_from_secret,
};
use keyward_core::{CredentialId, Millis};
use secrecy::SecretString;
use serde_json::json;

use super::{check_weight, fields_to_db, modalities_to_db, refuse_master_key, seal_secret};
use crate::changes::Change;
use crate::commit::WriteTx;
use crate::{Vault, VaultError, bool_to_db, map_unique, new_id};

impl Vault {
    /// Refuses `value` if it holds one of this vault's master keys: for every value the store
    /// keeps, secret or public (a base URL, a description, a name).
    pub(crate) fn refuse_own_keys<'a>(
        &self,
        values: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), VaultError> {
        values
            .into_iter()
            .try_for_each(|v| refuse_master_key(&self.inner.keyring, v))
    }

    /// Whether `value` holds one of this vault's master keys (for callers that want to say
    /// so before they print it, as an import's plan does).
    pub fn holds_master_key(&self, value: &str) -> bool {
        self.inner.keyring.appears_in(value)
    }

    /// Stores a new credential; its secret is checked, sealed, and never returned again.
    pub async fn add_credential(
        &self,
        new: NewCredential,
        actor: &str,
    ) -> Result<CredentialView, VaultError> {
        self.require_org(&new.org).await?;
        // A key added: what was cached is stale, not withdrawn.
        let change = Change::keys(new.org.as_str(), Some(new.provider.id), false);
        let mut tx = self.begin_write().await?;
        let id = self.insert_credential(&mut tx, new, actor).await?;
        self.commit(tx, "credential", id.as_str()).await?;
        self.changed(change).await;
        self.get_credential(&id).await
    }

    /// Stores many credentials in one transaction: all of them or, on the first refusal, none.
    /// Each still gets its own audit event. For imports and for filling benchmark stores.
    pub async fn add_credentials(
        &self,
        batch: Vec<NewCredential>,
        actor: &str,
    ) -> Result<Vec<CredentialId>, VaultError> {
        let mut tx = self.begin_write().await?;
        let mut ids = Vec::with_capacity(batch.len());
        for new in batch {
            ids.push(self.insert_credential(&mut tx, new, actor).await?);
        }
        let first = ids
            .first()
            .map(|i| i.as_str().to_owned())
            .unwrap_or_default();
        self.commit(tx, "the batch starting with credential", &first)
            .await?;
        self.changed(Change::ExpireAll).await;
        Ok(ids)
    }

    async fn insert_credential(
        &self,
        tx: &mut WriteTx,
        mut new: NewCredential,
        actor: &str,
    ) -> Result<CredentialId, VaultError> {
        let provider = new.provider;
        // An empty value means "not set", as it does in updates.
        new.fields.retain(|_, v| !v.is_empty());
        base_url_as_endpoint(provider, &mut new.fields);
        check_public_fields(provider, &new.fields)?;
        if let Some(raw) = &new.secret {
            fields_from_secret(provider, raw, &mut new.fields)?;
            check_public_fields(provider, &new.fields)?;
        }
        self.refuse_own_keys(
            new.fields
                .values()
                .map(String::as_str)
                .chain([new.name.as_str()]),
        )?;
        check_required_fields(provider, &new.fields)?;
        check_weight(new.weight)?;
        let id = CredentialId::from_stored(&new_id())?;
        let sealed = seal_secret(
            &self.inner.keyring,
            &id,
            &new.org,
            provider,
            &new.fields,
            new.secret.as_ref(),
            new.format_check,
        )?;
        let now = Millis::now();
        sqlx::query(
            "INSERT INTO credentials (id, org_id, provider, name, modalities, fields, active, priority, weight, \
             key_hint, kid, wrapped_dek, sealed_secret, created_at, created_by, updated_at, updated_by, \
             last_used_at, version) VALUES \
             ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $14, $15, NULL, 1)",
        )
        .bind(id.as_str())
        .bind(new.org.as_str())
        .bind(provider.id)
        .bind(new.name.as_str())
        .bind(modalities_to_db(&new.modalities))
        .bind(fields_to_db(&new.fields))
        .bind(bool_to_db(new.active))
        .bind(new.priority)
        .bind(new.weight)
        .bind(&sealed.key_hint)
        .bind(&sealed.kid)
        .bind(sealed.wrapped_dek)
        .bind(sealed.sealed_secret)
        .bind(now.0)
        .bind(actor)
        .execute(&mut **tx)
        .await
        .map_err(|e| match &e {
            sqlx::Error::Database(db) if db.is_foreign_key_violation() => {
                VaultError::NotFound(format!("organization '{}'", new.org))
            }
            _ => map_unique(e, || {
                format!(
                    "{} credential named '{}' in organization '{}'",
                    provider.a_name(),
                    new.name,
                    new.org
                )
            }),
        })?;
        self.append_event(
            tx,
            NewEvent::new(
                actor,
                Category::SecretManagement,
                "create",
                format!("credential:{id}"),
            )
            .org(Some(new.org.as_str()))
            .details(json!({
                "provider": provider.id,
                "name": new.name,
                "key_hint": sealed.key_hint,
                "active": new.active,
                "kid": sealed.kid,
            })),
        )
        .await?;
        Ok(id)
    }

    /// Opens a credential for a key test: its provider, fields and secret. Audited with the
    /// outcome by [`Vault::record_key_test`].
    pub async fn open_credential(
        &self,
        id: &CredentialId,
    ) -> Result<(CredentialView, Option<SecretString>), VaultError> {
        let row = self.load_credential(id).await?;
        let secret = row
            .open_secret(&self.inner.keyring)
            .map_err(|_| VaultError::Undecryptable(format!("credential {id}")))?;
        Ok((row.view(&self.inner.keyring), secret))
    }

    /// Stores the outcome of a key test on the credential and audits it, in one transaction.
    /// Like last-used bookkeeping, it does not change the credential's version.
    pub async fn record_key_test(
        &self,
        id: &CredentialId,
        ok: bool,
        result: &str,
        actor: &str,
    ) -> Result<CredentialView, VaultError> {
        let current = self.load_credential(id).await?;
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "UPDATE credentials SET last_tested_at = $1, last_test_result = $2 WHERE id = $3",
        )
        .bind(Millis::now().0)
        .bind(result)
        .bind(id.as_str())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Err(VaultError::NotFound(format!("credential {id}")));
        }
        self.append_event(
            &mut tx,
            NewEvent::new(
                actor,
                Category::SecretAccess,
                "test",
                format!("credential:{id}"),
            )
            .org(Some(current.org.as_str()))
            .outcome(if ok {
                Outcome::Success
            } else {
                Outcome::Failure
            })
            .details(json!({
                "provider": current.provider.id,
                "name": current.name,
                "result": result,
            })),
        )
        .await?;
        self.commit(tx, "credential", id.as_str()).await?;
        self.get_credential(id).await
    }

    /// Records that a credential's key was used to list the models it reaches (`discover`):
    /// how many, or why there are none. Nothing of the credential changes.
    pub async fn record_discovery(
        &self,
        view: &CredentialView,
        found: &Result<Vec<String>, impl std::fmt::Display>,
        actor: &str,
    ) -> Result<(), VaultError> {
        let (outcome, result) = match found {
            Ok(models) => (Outcome::Success, format!("{} models", models.len())),
            Err(why) => (Outcome::Failure, why.to_string()),
        };
        self.record(
            NewEvent::new(
                actor,
                Category::SecretAccess,
                "discover",
                format!("credential:{}", view.id),
            )
            .org(Some(view.org.as_str()))
            .outcome(outcome)
            .details(json!({
                "provider": view.provider,
                "name": view.name,
                "result": result,
            })),
        )
        .await
    }

    /// Activates or deactivates a credential.
    pub async fn set_credential_active(
        &self,
        id: &CredentialId,
        active: bool,
        actor: &str,
    ) -> Result<CredentialView, VaultError> {
        let current = self.load_credential(id).await?;
        if current.active == active {
            return Ok(current.view(&self.inner.keyring));
        }
        let update = CredentialUpdate {
            active: Some(active),
            ..CredentialUpdate::default()
        };
        self.update_credential(id, Some(current.version), update, actor)
            .await
    }

    /// Deletes a credential (and with it, its sealed secret).
    pub async fn delete_credential(
        &self,
        id: &CredentialId,
        actor: &str,
    ) -> Result<(), VaultError> {
        let current = self.load_credential(id).await?;
        let mut tx = self.begin_write().await?;
        let result = sqlx::query("DELETE FROM credentials WHERE id = $1")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        if result.rows_affected() != 1 {
            return Err(VaultError::NotFound(format!("credential {id}")));
        }
        self.append_event(
            &mut tx,
            NewEvent::new(
                actor,
                Category::SecretManagement,
                "delete",
                format!("credential:{id}"),
            )
            .org(Some(current.org.as_str()))
            .details(json!({
                "provider": current.provider.id,
                "name": current.name,
                "key_hint": current.key_hint,
            })),
        )
        .await?;
        self.commit(tx, "credential", id.as_str()).await?;
        self.changed(Change::keys(
            current.org.as_str(),
            Some(current.provider.id),
            true,
        ))
        .await;
        Ok(())
    }
}
