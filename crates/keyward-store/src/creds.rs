//! Credentials: sealed on write, masked on read, updated with compare-and-set.

use std::collections::BTreeMap;

use keyward_core::audit::{Category, NewEvent, Outcome};
use keyward_core::credential::{
    CredentialStatus, CredentialUpdate, CredentialView, FormatCheck, Modality, NewCredential,
    base_url_as_endpoint, check_public_fields, check_required_fields, key_hint, normalize_secret,
};
use keyward_core::provider::SecretKind;
use keyward_core::{CredentialId, CredentialName, Millis, OrgId, Provider};
use keyward_crypto::{CryptoError, DataKey, FieldContext, Keyring};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};

use crate::commit::WriteTx;

use crate::changes::Change;
use crate::{Vault, VaultError, bool_to_db, map_unique, new_id};

/// The record kind credentials' ciphertexts are bound to.
pub(crate) const KIND: &str = "credential";

pub(crate) const COLUMNS: &str = "id, org_id, provider, name, modalities, fields, active, priority, weight, \
     key_hint, kid, wrapped_dek, sealed_secret, created_at, created_by, updated_at, updated_by, \
     last_used_at, version, last_tested_at, last_test_result, plaintext_secret";

/// A credential row as stored.
#[derive(Debug)]
pub(crate) struct CredRow {
    pub(crate) id: CredentialId,
    pub(crate) org: OrgId,
    pub(crate) provider: &'static Provider,
    pub(crate) name: CredentialName,
    pub(crate) modalities: Vec<Modality>,
    pub(crate) fields: BTreeMap<String, String>,
    pub(crate) active: bool,
    pub(crate) priority: i64,
    pub(crate) weight: i64,
    pub(crate) key_hint: String,
    pub(crate) kid: String,
    pub(crate) wrapped_dek: Vec<u8>,
    pub(crate) sealed_secret: Option<Vec<u8>>,
    pub(crate) created_at: Millis,
    pub(crate) created_by: String,
    pub(crate) updated_at: Millis,
    pub(crate) updated_by: String,
    pub(crate) last_used_at: Option<Millis>,
    pub(crate) version: i64,
    pub(crate) last_tested_at: Option<Millis>,
    pub(crate) last_test_result: Option<String>,
    /// A legacy row's key in plain text (its `wrapped_dek` is empty).
    pub(crate) plaintext_secret: Option<String>,
}

/// A credential's secret columns as stored.
#[derive(Clone, Copy)]
pub(crate) struct Stored<'a> {
    /// The wrapped data key; empty for a legacy plain-text row.
    pub(crate) wrapped_dek: &'a [u8],
    /// The sealed secret.
    pub(crate) sealed: Option<&'a [u8]>,
    /// A legacy row's key in plain text.
    pub(crate) plaintext: Option<&'a str>,
}

/// Opens a credential's sealed key (`None` when it holds an empty one).
pub(crate) fn open_sealed(
    keyring: &Keyring,
    id: &CredentialId,
    org: &OrgId,
    provider: &'static Provider,
    fields: &BTreeMap<String, String>,
    stored: Stored<'_>,
) -> Result<Option<SecretString>, CryptoError> {
    let Stored {
        wrapped_dek,
        sealed,
        plaintext,
    } = stored;
    // A legacy row: written in plain text by an external migration.
    if wrapped_dek.is_empty() {
        let plaintext = plaintext.ok_or(CryptoError::Malformed)?;
        return Ok(Some(SecretString::from(plaintext.trim().to_owned()))
            .filter(|s| !s.expose_secret().is_empty()));
    }
    let dek = keyring.unwrap(wrapped_dek, id.as_str())?;
    let sealed = sealed.ok_or(CryptoError::Malformed)?;
    let secret = with_ctx(id, org, provider, fields, |ctx| {
        dek.open_string(ctx, sealed)
    })?;
    Ok(Some(secret).filter(|s| !s.expose_secret().is_empty()))
}

impl CredRow {
    pub(crate) fn from_row(row: &AnyRow) -> Result<Self, VaultError> {
        let id: String = row.try_get("id")?;
        let org: String = row.try_get("org_id")?;
        let provider: String = row.try_get("provider")?;
        let name: String = row.try_get("name")?;
        let modalities: String = row.try_get("modalities")?;
        let fields: String = row.try_get("fields")?;
        Ok(Self {
            id: CredentialId::from_stored(&id)?,
            org: OrgId::from_stored(&org)?,
            provider: Provider::get(&provider)?,
            name: CredentialName::from_stored(&name)?,
            modalities: Modality::parse_list(&modalities)?,
            fields: serde_json::from_str(&fields).map_err(|_| {
                VaultError::InvalidInput(format!("credential {id} has malformed fields"))
            })?,
            active: row.try_get::<i64, _>("active")? != 0,
            priority: row.try_get("priority")?,
            weight: row.try_get("weight")?,
            key_hint: row.try_get("key_hint")?,
            kid: row.try_get("kid")?,
            wrapped_dek: row.try_get("wrapped_dek")?,
            sealed_secret: row.try_get("sealed_secret")?,
            created_at: Millis(row.try_get("created_at")?),
            created_by: row.try_get("created_by")?,
            updated_at: Millis(row.try_get("updated_at")?),
            updated_by: row.try_get("updated_by")?,
            last_used_at: row.try_get::<Option<i64>, _>("last_used_at")?.map(Millis),
            version: row.try_get("version")?,
            last_tested_at: row.try_get::<Option<i64>, _>("last_tested_at")?.map(Millis),
            last_test_result: row.try_get("last_test_result")?,
            plaintext_secret: row.try_get("plaintext_secret")?,
        })
    }

    /// Whether it is a legacy plain-text row.
    pub(crate) fn is_legacy(&self) -> bool {
        self.wrapped_dek.is_empty()
    }

    /// Unwraps the data key and opens the secret (`None` for a keyless provider's empty one).
    /// A missing ciphertext is an error: every row seals something, so that its public fields
    /// are bound to it.
    pub(crate) fn open_secret(
        &self,
        keyring: &Keyring,
    ) -> Result<Option<SecretString>, CryptoError> {
        open_sealed(
            keyring,
            &self.id,
            &self.org,
            self.provider,
            &self.fields,
            Stored {
                wrapped_dek: &self.wrapped_dek,
                sealed: self.sealed_secret.as_deref(),
                plaintext: self.plaintext_secret.as_deref(),
            },
        )
    }

    pub(crate) fn view(&self, keyring: &Keyring) -> CredentialView {
        let opened = self.open_secret(keyring);
        let status = match (&opened, self.is_legacy()) {
            (Ok(_), true) => CredentialStatus::LegacyPlaintext,
            (Ok(_), false) => CredentialStatus::Ok,
            (Err(_), _) => CredentialStatus::Undecryptable,
        };
        // A migration may leave the hint empty: it is made from the key, as Keyward makes it.
        let key_hint = match (&opened, self.key_hint.is_empty()) {
            (Ok(Some(secret)), true) => key_hint(self.provider, secret),
            _ => self.key_hint.clone(),
        };
        CredentialView {
            id: self.id.clone(),
            org: self.org.clone(),
            name: self.name.clone(),
            provider: self.provider.id.to_owned(),
            modalities: self.modalities.clone(),
            fields: self.fields.clone(),
            active: self.active,
            priority: self.priority,
            weight: self.weight,
            key_hint,
            created_at: self.created_at,
            created_by: self.created_by.clone(),
            updated_at: self.updated_at,
            updated_by: self.updated_by.clone(),
            last_used_at: self.last_used_at,
            version: self.version,
            kid: self.kid.clone(),
            status,
            last_tested_at: self.last_tested_at,
            last_test_result: self.last_test_result.clone(),
        }
    }
}

fn modalities_to_db(m: &[Modality]) -> String {
    m.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(",")
}

fn fields_to_db(f: &BTreeMap<String, String>) -> String {
    serde_json::Value::Object(
        f.iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect(),
    )
    .to_string()
}

/// Runs `f` with the place a credential's secret is sealed for: its id, organization, provider
/// and secret field, bound to its public fields (in their canonical JSON form), so that neither
/// moving the ciphertext nor repointing the base URL in the database goes unnoticed.
fn with_ctx<R>(
    id: &CredentialId,
    org: &OrgId,
    provider: &Provider,
    fields: &BTreeMap<String, String>,
    f: impl FnOnce(&FieldContext<'_>) -> R,
) -> R {
    let field = format!("{}/{}", provider.id, provider.secret_field);
    let bound = fields_to_db(fields);
    f(&FieldContext {
        kind: KIND,
        record_id: id.as_str(),
        org: org.as_str(),
        field: &field,
        bound: bound.as_bytes(),
    })
}

/// What an update does to the secret columns.
enum SecretChange {
    /// Nothing.
    Keep,
    /// The same secret under the same data key, sealed again for new public fields.
    Reseal(Vec<u8>),
    /// A new secret under a new data key.
    New(Sealed),
}

/// A sealed secret: wrapped data key, ciphertext, and the hint shown instead of the secret.
struct Sealed {
    kid: String,
    wrapped_dek: Vec<u8>,
    sealed_secret: Vec<u8>,
    key_hint: String,
}

/// Checks and seals a new secret under a new data key. A keyless provider's absent secret is
/// sealed as the empty string, so its fields are still bound.
/// Refuses a value that holds one of the vault's own master keys: whatever surface it came
/// through (an import that read it from the environment or a key file, a paste), storing it
/// would hand the key that opens every organization to whoever may resolve this one.
pub(crate) fn refuse_master_key(keyring: &Keyring, value: &str) -> Result<(), VaultError> {
    if keyring.appears_in(value) {
        return Err(VaultError::InvalidInput(
            "that value holds one of Keyward's own master keys, which is never stored".into(),
        ));
    }
    Ok(())
}

fn seal_secret(
    keyring: &Keyring,
    id: &CredentialId,
    org: &OrgId,
    provider: &'static Provider,
    fields: &BTreeMap<String, String>,
    raw: Option<&SecretString>,
    check: FormatCheck,
) -> Result<Sealed, VaultError> {
    let secret = match raw {
        Some(raw) => {
            refuse_master_key(keyring, raw.expose_secret())?;
            Some(normalize_secret(provider, raw, check)?)
        }
        None if provider.secret == SecretKind::Optional => None,
        None => {
            return Err(VaultError::InvalidInput(format!(
                "{} credential needs its secret",
                provider.a_name()
            )));
        }
    };
    let dek = DataKey::generate()?;
    let plaintext = secret.as_ref().map_or("", |s| s.expose_secret());
    let sealed_secret = with_ctx(id, org, provider, fields, |ctx| {
        dek.seal(ctx, plaintext.as_bytes())
    })?;
    Ok(Sealed {
        kid: keyring.primary_kid().to_string(),
        wrapped_dek: keyring.wrap(&dek, id.as_str())?,
        sealed_secret,
        key_hint: secret
            .as_ref()
            .map_or_else(|| "(no key)".to_owned(), |s| key_hint(provider, s)),
    })
}

/// The checks a new secret gets before it is sealed (its presence, normalisation and the
/// provider's format), without sealing it: for plans that must say what storing would refuse.
pub fn check_secret(
    provider: &'static Provider,
    secret: Option<&SecretString>,
    check: FormatCheck,
) -> Result<(), VaultError> {
    match secret {
        Some(raw) => {
            normalize_secret(provider, raw, check)?;
            Ok(())
        }
        None if provider.secret == SecretKind::Optional => Ok(()),
        None => Err(VaultError::InvalidInput(format!(
            "{} credential needs its secret",
            provider.a_name()
        ))),
    }
}

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

    pub(crate) async fn load_credential(&self, id: &CredentialId) -> Result<CredRow, VaultError> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM credentials WHERE id = $1"
        )))
        .bind(id.as_str())
        .fetch_optional(&self.inner.pool)
        .await?
        .ok_or_else(|| VaultError::NotFound(format!("credential {id}")))?;
        CredRow::from_row(&row)
    }

    /// One credential, masked.
    pub async fn get_credential(&self, id: &CredentialId) -> Result<CredentialView, VaultError> {
        Ok(self.load_credential(id).await?.view(&self.inner.keyring))
    }

    /// Credentials, masked, optionally of one organization and provider. A record that cannot
    /// be decrypted is listed with status `undecryptable`; it never fails the list.
    pub async fn list_credentials(
        &self,
        org: Option<&OrgId>,
        provider: Option<&Provider>,
    ) -> Result<Vec<CredentialView>, VaultError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM credentials \
             WHERE ($1 = '' OR org_id = $1) AND ($2 = '' OR provider = $2) \
             ORDER BY org_id, provider, priority, created_at, id"
        )))
        .bind(org.map_or("", OrgId::as_str))
        .bind(provider.map_or("", |p| p.id))
        .fetch_all(&self.inner.pool)
        .await?;
        rows.iter()
            .map(|r| Ok(CredRow::from_row(r)?.view(&self.inner.keyring)))
            .collect()
    }

    /// One page of [`Vault::list_credentials`] (`limit` rows after `offset`, in the same
    /// order) and the number of rows in all: paged in SQL, so only the rows returned are read
    /// and opened.
    pub async fn list_credentials_page(
        &self,
        org: Option<&OrgId>,
        provider: Option<&Provider>,
        limit: u64,
        offset: u64,
    ) -> Result<(Vec<CredentialView>, u64), VaultError> {
        self.find_credentials(org, provider, None, CredentialSort::Listing, limit, offset)
            .await
    }

    /// Like [`Vault::list_credentials_page`], narrowed to credentials whose name or key hint
    /// holds `search` (any case), in the order `sort` says: how a person finds one credential
    /// among hundreds.
    pub async fn find_credentials(
        &self,
        org: Option<&OrgId>,
        provider: Option<&Provider>,
        search: Option<&str>,
        sort: CredentialSort,
        limit: u64,
        offset: u64,
    ) -> Result<(Vec<CredentialView>, u64), VaultError> {
        // The conditions are written only when given, so the listing index serves them.
        let mut conditions: Vec<String> = Vec::new();
        let mut binds: Vec<String> = Vec::new();
        if let Some(o) = org {
            binds.push(o.as_str().to_owned());
            conditions.push(format!("org_id = ${}", binds.len()));
        }
        if let Some(p) = provider {
            binds.push(p.id.to_owned());
            conditions.push(format!("provider = ${}", binds.len()));
        }
        if let Some(text) = search.map(str::trim).filter(|t| !t.is_empty()) {
            // `%`, `_` and the escape itself are taken literally.
            let escaped: String = text
                .to_lowercase()
                .chars()
                .flat_map(|c| match c {
                    '%' | '_' | '\\' => vec!['\\', c],
                    c => vec![c],
                })
                .collect();
            binds.push(format!("%{escaped}%"));
            let n = binds.len();
            conditions.push(format!(
                "(LOWER(name) LIKE ${n} ESCAPE '\\' OR LOWER(key_hint) LIKE ${n} ESCAPE '\\')"
            ));
        }
        let filter = if conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conditions.join(" AND "))
        };
        let n = binds.len();
        let page_sql = format!(
            "SELECT {COLUMNS} FROM credentials {filter} ORDER BY {} LIMIT ${} OFFSET ${}",
            sort.order_by(),
            n + 1,
            n + 2
        );
        let count_sql = format!("SELECT COUNT(*) FROM credentials {filter}");
        let to_i64 = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        let mut page = sqlx::query(AssertSqlSafe(page_sql));
        let mut count = sqlx::query_scalar::<_, i64>(AssertSqlSafe(count_sql));
        for b in &binds {
            page = page.bind(b.clone());
            count = count.bind(b.clone());
        }
        let rows = page
            .bind(to_i64(limit))
            .bind(to_i64(offset))
            .fetch_all(&self.inner.pool)
            .await?;
        let total = count.fetch_one(&self.inner.pool).await?;
        let items = rows
            .iter()
            .map(|r| Ok(CredRow::from_row(r)?.view(&self.inner.keyring)))
            .collect::<Result<Vec<_>, VaultError>>()?;
        Ok((items, u64::try_from(total).unwrap_or(0)))
    }

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
        let provider = current.provider;
        let mut update = update;
        base_url_as_endpoint(provider, &mut update.fields);
        let mut fields = current.fields.clone();
        for (k, v) in &update.fields {
            if v.is_empty() {
                fields.remove(k);
            } else {
                fields.insert(k.clone(), v.clone());
            }
        }
        check_public_fields(provider, &update.fields)?;
        self.refuse_own_keys(
            update
                .fields
                .values()
                .map(String::as_str)
                .chain(update.name.as_ref().map(CredentialName::as_str)),
        )?;
        check_required_fields(provider, &fields)?;
        if let Some(w) = update.weight {
            check_weight(w)?;
        }

        let mut changed: Vec<&str> = Vec::new();
        let name = update.name.clone().unwrap_or_else(|| current.name.clone());
        if name != current.name {
            changed.push("name");
        }
        if fields != current.fields {
            changed.push("fields");
        }
        let modalities = update
            .modalities
            .clone()
            .unwrap_or_else(|| current.modalities.clone());
        if modalities != current.modalities {
            changed.push("modalities");
        }
        let active = update.active.unwrap_or(current.active);
        if active != current.active {
            changed.push("active");
        }
        let priority = update.priority.unwrap_or(current.priority);
        if priority != current.priority {
            changed.push("priority");
        }
        let weight = update.weight.unwrap_or(current.weight);
        if weight != current.weight {
            changed.push("weight");
        }
        // The secret columns are written only when they must change: a master-key rotation
        // may be rewrapping this row's data key meanwhile, and writing back the wrap read above
        // would undo it.
        let change = match &update.secret {
            Some(raw) => {
                changed.push("secret");
                SecretChange::New(seal_secret(
                    &self.inner.keyring,
                    id,
                    &current.org,
                    provider,
                    &fields,
                    Some(raw),
                    update.format_check.unwrap_or(FormatCheck::Enforce),
                )?)
            }
            // The public fields are bound to the sealed secret: seal it again, under the same
            // data key, for the new fields.
            None if fields != current.fields && !current.is_legacy() => {
                let undecryptable = || VaultError::Undecryptable(format!("credential {id}"));
                let dek = self
                    .inner
                    .keyring
                    .unwrap(&current.wrapped_dek, id.as_str())
                    .map_err(|_| undecryptable())?;
                let secret = current
                    .open_secret(&self.inner.keyring)
                    .map_err(|_| undecryptable())?;
                let plaintext = secret.as_ref().map_or("", |s| s.expose_secret());
                SecretChange::Reseal(with_ctx(id, &current.org, provider, &fields, |ctx| {
                    dek.seal(ctx, plaintext.as_bytes())
                })?)
            }
            None => SecretChange::Keep,
        };
        // A legacy plain-text row is sealed by any update of it.
        let change = match change {
            SecretChange::Keep | SecretChange::Reseal(_) if current.is_legacy() => {
                changed.push("sealed");
                let secret = current
                    .open_secret(&self.inner.keyring)
                    .map_err(|_| VaultError::Undecryptable(format!("credential {id}")))?;
                SecretChange::New(seal_secret(
                    &self.inner.keyring,
                    id,
                    &current.org,
                    provider,
                    &fields,
                    secret.as_ref(),
                    FormatCheck::Skip,
                )?)
            }
            other => other,
        };
        let hint = match &change {
            SecretChange::New(s) => s.key_hint.clone(),
            _ => current.key_hint.clone(),
        };

        let action = match (changed.as_slice(), active) {
            (["sealed"], _) => "reencrypt",
            (["active"], true) => "activate",
            (["active"], false) => "deactivate",
            _ => "update",
        };
        let now = Millis::now();
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
            .bind(now.0)
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
        // Where the key is sent is worth reading in the trail: the public fields that moved,
        // before and after (they hold no secret: `check_public_fields` refused any that looks
        // like one).
        let moved: serde_json::Map<String, serde_json::Value> = fields
            .keys()
            .chain(current.fields.keys())
            .filter(|k| current.fields.get(*k) != fields.get(*k))
            .map(|k| {
                (
                    k.clone(),
                    json!({ "was": current.fields.get(k), "now": fields.get(k) }),
                )
            })
            .collect();
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

fn check_weight(w: i64) -> Result<(), VaultError> {
    if (0..=1_000_000).contains(&w) {
        Ok(())
    } else {
        Err(VaultError::InvalidInput(
            "weight must be between 0 and 1000000".into(),
        ))
    }
}

impl Vault {
    /// Whether a credential's stored secret equals `secret` (compared in constant time; the
    /// stored one never leaves the vault). For imports, to tell "unchanged" from "rotate".
    /// Not audited: it discloses nothing the caller does not already hold.
    pub async fn credential_secret_is(
        &self,
        id: &CredentialId,
        secret: Option<&SecretString>,
    ) -> Result<bool, VaultError> {
        use subtle::ConstantTimeEq as _;
        let row = self.load_credential(id).await?;
        let stored = row
            .open_secret(&self.inner.keyring)
            .map_err(|_| VaultError::Undecryptable(format!("credential {id}")))?;
        Ok(match (stored, secret) {
            (None, None) => true,
            (Some(a), Some(b)) => bool::from(
                a.expose_secret()
                    .trim()
                    .as_bytes()
                    .ct_eq(b.expose_secret().trim().as_bytes()),
            ),
            _ => false,
        })
    }
}

/// The order of a credential listing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CredentialSort {
    /// Organization, provider, then the resolution order (priority, age): the listing index.
    #[default]
    Listing,
    /// By name.
    Name,
    /// The most recently changed first.
    Updated,
    /// The most recently used first (never used last).
    LastUsed,
}

impl CredentialSort {
    /// Parses the console's and the API's word for it.
    pub fn parse(word: &str) -> Option<Self> {
        Some(match word {
            "" | "listing" => Self::Listing,
            "name" => Self::Name,
            "updated" => Self::Updated,
            "last_used" => Self::LastUsed,
            _ => return None,
        })
    }

    /// The word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Listing => "listing",
            Self::Name => "name",
            Self::Updated => "updated",
            Self::LastUsed => "last_used",
        }
    }

    fn order_by(self) -> &'static str {
        match self {
            Self::Listing => "org_id, provider, priority, created_at, id",
            Self::Name => "LOWER(name), org_id, provider, id",
            Self::Updated => "updated_at DESC, id",
            Self::LastUsed => "COALESCE(last_used_at, 0) DESC, id",
        }
    }
}
