//! What a credential update changes, planned from the row as read and the change asked for,
//! without a database or a key: the new name, fields and settings, what happens to the sealed
//! secret, the audit event's action and what it says moved. [`Vault::update_credential`]
//! checks the version, plans, seals as planned, and writes.
//!
//! [`Vault::update_credential`]: crate::Vault::update_credential

use std::collections::BTreeMap;

use keyward_core::credential::{
    CredentialUpdate, FormatCheck, Modality, base_url_as_endpoint, check_public_fields,
    check_required_fields,
};
use keyward_core::{CredentialName, Provider};
use secrecy::SecretString;
use serde_json::{Map, Value, json};

use super::check_weight;
use crate::VaultError;

/// The row as read, as far as an update is concerned.
#[derive(Debug, Clone)]
pub(super) struct Current<'a> {
    pub(super) provider: &'static Provider,
    pub(super) name: &'a CredentialName,
    pub(super) fields: &'a BTreeMap<String, String>,
    pub(super) modalities: &'a [Modality],
    pub(super) active: bool,
    pub(super) priority: i64,
    pub(super) weight: i64,
    /// Stored in plain text (from before sealing): any update seals it.
    pub(super) legacy: bool,
}

/// What happens to the secret columns.
#[derive(Debug)]
pub(super) enum SecretPlan {
    /// Nothing: a master-key rotation may be rewrapping the data key meanwhile, and writing
    /// back the wrap read before would undo it.
    Keep,
    /// The same secret under the same data key, sealed again: the public fields it is bound to
    /// changed.
    Reseal,
    /// A new secret, checked and sealed under a new data key.
    New(SecretString, FormatCheck),
    /// The stored plain-text secret, sealed for the first time.
    SealLegacy,
}

/// An update, planned.
#[derive(Debug)]
pub(super) struct UpdatePlan {
    pub(super) name: CredentialName,
    pub(super) fields: BTreeMap<String, String>,
    pub(super) modalities: Vec<Modality>,
    pub(super) active: bool,
    pub(super) priority: i64,
    pub(super) weight: i64,
    pub(super) secret: SecretPlan,
    /// What changed, in the audit event's words (`name`, `fields`, `secret`, `sealed`, ...).
    pub(super) changed: Vec<&'static str>,
    /// The public fields that moved, before and after: where the key is sent is worth reading
    /// in the trail (they hold no secret: `check_public_fields` refused any that looks like
    /// one).
    pub(super) moved: Map<String, Value>,
}

impl UpdatePlan {
    /// The audit event's action.
    pub(super) fn action(&self) -> &'static str {
        match (self.changed.as_slice(), self.active) {
            (["sealed"], _) => "reencrypt",
            (["active"], true) => "activate",
            (["active"], false) => "deactivate",
            _ => "update",
        }
    }
}

/// Plans `update` of `current`: checks the fields it sets (no secret-looking public value,
/// the provider's required fields still there), and decides everything the write does.
pub(super) fn plan(
    current: &Current<'_>,
    update: CredentialUpdate,
) -> Result<UpdatePlan, VaultError> {
    if update.is_empty() {
        return Err(VaultError::InvalidInput("nothing to update".into()));
    }
    let provider = current.provider;
    let mut asked = update.fields;
    base_url_as_endpoint(provider, &mut asked);
    check_public_fields(provider, &asked)?;
    // A field set to "" is removed.
    let mut fields = current.fields.clone();
    for (k, v) in asked {
        if v.is_empty() {
            fields.remove(&k);
        } else {
            fields.insert(k, v);
        }
    }
    if let Some(raw) = &update.secret {
        keyward_core::credential::fields_from_secret(provider, raw, &mut fields)?;
    }
    check_required_fields(provider, &fields)?;
    if let Some(w) = update.weight {
        check_weight(w)?;
    }

    let mut changed = Vec::new();
    let mut note = |what: &'static str, differs: bool| {
        if differs {
            changed.push(what);
        }
    };
    let name = update.name.unwrap_or_else(|| current.name.clone());
    note("name", name != *current.name);
    note("fields", fields != *current.fields);
    let modalities = update
        .modalities
        .unwrap_or_else(|| current.modalities.to_vec());
    note("modalities", modalities != current.modalities);
    let active = update.active.unwrap_or(current.active);
    note("active", active != current.active);
    let priority = update.priority.unwrap_or(current.priority);
    note("priority", priority != current.priority);
    let weight = update.weight.unwrap_or(current.weight);
    note("weight", weight != current.weight);

    let secret = match update.secret {
        Some(raw) => {
            changed.push("secret");
            SecretPlan::New(raw, update.format_check.unwrap_or(FormatCheck::Enforce))
        }
        None if current.legacy => {
            changed.push("sealed");
            SecretPlan::SealLegacy
        }
        None if fields != *current.fields => SecretPlan::Reseal,
        None => SecretPlan::Keep,
    };
    let moved = fields
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
    Ok(UpdatePlan {
        name,
        fields,
        modalities,
        active,
        priority,
        weight,
        secret,
        changed,
        moved,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    struct Row {
        provider: &'static Provider,
        name: CredentialName,
        fields: BTreeMap<String, String>,
        modalities: Vec<Modality>,
        legacy: bool,
    }

    impl Row {
        fn new(provider: &str) -> Self {
            Row {
                provider: Provider::get(provider).unwrap(),
                name: CredentialName::new("prod").unwrap(),
                fields: BTreeMap::new(),
                modalities: Vec::new(),
                legacy: false,
            }
        }

        fn current(&self) -> Current<'_> {
            Current {
                provider: self.provider,
                name: &self.name,
                fields: &self.fields,
                modalities: &self.modalities,
                active: true,
                priority: 100,
                weight: 1,
                legacy: self.legacy,
            }
        }
    }

    fn fields(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn nothing_asked_is_refused() {
        let row = Row::new("openai");
        assert!(matches!(
            plan(&row.current(), CredentialUpdate::default()),
            Err(VaultError::InvalidInput(_))
        ));
    }

    #[test]
    fn a_rename_changes_the_name_only_and_keeps_the_sealed_secret() {
        let row = Row::new("openai");
        let update = CredentialUpdate {
            name: Some(CredentialName::new("staging").unwrap()),
            ..CredentialUpdate::default()
        };
        let plan = plan(&row.current(), update).unwrap();
        assert_eq!(plan.changed, ["name"]);
        assert!(matches!(plan.secret, SecretPlan::Keep));
        assert_eq!(plan.action(), "update");
        assert!(plan.moved.is_empty());
    }

    #[test]
    fn toggling_active_is_an_activation_or_a_deactivation() {
        let row = Row::new("openai");
        let off = CredentialUpdate {
            active: Some(false),
            ..CredentialUpdate::default()
        };
        let plan = plan(&row.current(), off).unwrap();
        assert_eq!(
            (plan.changed.as_slice(), plan.action()),
            (&["active"][..], "deactivate")
        );
        let same = CredentialUpdate {
            active: Some(true),
            ..CredentialUpdate::default()
        };
        let plan = super::plan(&row.current(), same).unwrap();
        assert!(plan.changed.is_empty(), "{:?}", plan.changed);
    }

    #[test]
    fn a_new_base_url_reseals_the_secret_for_it_and_says_where_it_moved() {
        let mut row = Row::new("openai");
        row.fields = fields(&[("base_url", "https://api.openai.com/v1")]);
        let update = CredentialUpdate {
            fields: fields(&[("base_url", "https://proxy.example/v1")]),
            ..CredentialUpdate::default()
        };
        let plan = plan(&row.current(), update).unwrap();
        assert_eq!(plan.changed, ["fields"]);
        assert!(matches!(plan.secret, SecretPlan::Reseal));
        assert_eq!(
            plan.moved["base_url"],
            json!({ "was": "https://api.openai.com/v1", "now": "https://proxy.example/v1" })
        );
    }

    #[test]
    fn an_empty_value_removes_a_field_but_never_a_required_one() {
        let mut row = Row::new("openai");
        row.fields = fields(&[("base_url", "https://proxy.example/v1")]);
        let cleared = CredentialUpdate {
            fields: fields(&[("base_url", "")]),
            ..CredentialUpdate::default()
        };
        let plan = plan(&row.current(), cleared).unwrap();
        assert!(!plan.fields.contains_key("base_url"));
        assert_eq!(plan.moved["base_url"]["now"], Value::Null);

        let mut azure = Row::new("azure");
        azure.fields = fields(&[
            ("endpoint", "https://acme.openai.azure.com"),
            ("api_version", "2024-10-21"),
        ]);
        let drop_required = CredentialUpdate {
            fields: fields(&[("endpoint", "")]),
            ..CredentialUpdate::default()
        };
        assert!(super::plan(&azure.current(), drop_required).is_err());
    }

    #[test]
    fn a_secret_looking_public_field_is_refused_and_never_quoted() {
        let row = Row::new("openai");
        let canary = "sk-proj-PLANCANARY0123456789abcdefWXYZ";
        let update = CredentialUpdate {
            fields: fields(&[("base_url", &format!("https://x.example/{canary}"))]),
            ..CredentialUpdate::default()
        };
        let e = plan(&row.current(), update).unwrap_err();
        assert!(!e.to_string().contains(canary), "{e}");
    }

    #[test]
    fn a_weight_out_of_range_is_refused() {
        let row = Row::new("openai");
        let update = CredentialUpdate {
            weight: Some(-1),
            ..CredentialUpdate::default()
        };
        assert!(plan(&row.current(), update).is_err());
    }

    #[test]
    fn a_new_key_is_checked_as_asked_and_a_legacy_row_is_sealed_by_any_update() {
        let row = Row::new("openai");
        let update = CredentialUpdate {
            secret: Some("sk-new".to_owned().into()),
            format_check: Some(FormatCheck::Skip),
            ..CredentialUpdate::default()
        };
        let plan = plan(&row.current(), update).unwrap();
        assert_eq!(plan.changed, ["secret"]);
        assert!(matches!(plan.secret, SecretPlan::New(_, FormatCheck::Skip)));

        let mut legacy = Row::new("openai");
        legacy.legacy = true;
        let rename = CredentialUpdate {
            priority: Some(100),
            ..CredentialUpdate::default()
        };
        let plan = super::plan(&legacy.current(), rename).unwrap();
        assert_eq!(
            (plan.changed.as_slice(), plan.action()),
            (&["sealed"][..], "reencrypt")
        );
        assert!(matches!(plan.secret, SecretPlan::SealLegacy));
    }
}
