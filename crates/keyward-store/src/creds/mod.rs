//! Credentials: sealed on write, masked on read, updated with compare-and-set.
//!
//! - this module: the row as stored, how a secret is sealed and opened, the checks a new one
//!   gets;
//! - `read`: one credential, listings, searches, the constant-time secret comparison;
//! - `write`: add (one or a batch), activate, test results, delete;
//! - `plan`: what an update changes, decided without a database (unit-tested);
//! - `update`: an update applied: compare-and-set, sealing, the write and its audit event.

mod plan;
mod read;
mod update;
mod write;

pub use read::CredentialSort;

use std::collections::BTreeMap;

use keyward_core::credential::{
    CredentialStatus, CredentialView, FormatCheck, Modality, NO_KEY_HINT, key_hint,
    normalize_secret,
};
use keyward_core::provider::SecretKind;
use keyward_core::{CredentialId, CredentialName, Millis, OrgId, Provider};
use keyward_crypto::{CryptoError, DataKey, FieldContext, Keyring};
use secrecy::{ExposeSecret, SecretString};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::VaultError;

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

/// A sealed secret: wrapped data key, ciphertext, and the hint shown instead of the secret.
struct Sealed {
    kid: String,
    wrapped_dek: Vec<u8>,
    sealed_secret: Vec<u8>,
    key_hint: String,
}

/// Refuses a value that holds one of the vault's own master keys: whatever surface it came
/// through (an import that read it from the environment or a key file, a paste), storing it
/// would hand the key that opens every organization to whoever may resolve this one.
pub(crate) fn refuse_master_key(keyring: &Keyring, value: &str) -> Result<(), VaultError> {
    if keyring.appears_in(value) {
        return Err(VaultError::InvalidInput(
            "that value holds one of Keyward's own master keys (or a credential of the KMS that keeps them), which is never stored".into(),
        ));
    }
    Ok(())
}

/// Checks and seals a new secret under a new data key. A keyless provider's absent secret is
/// sealed as the empty string, so its fields are still bound.
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
            .map_or_else(|| NO_KEY_HINT.to_owned(), |s| key_hint(provider, s)),
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

fn check_weight(w: i64) -> Result<(), VaultError> {
    if (0..=1_000_000).contains(&w) {
        Ok(())
    } else {
        Err(VaultError::InvalidInput(
            "weight must be between 0 and 1000000".into(),
        ))
    }
}
