//! Applying a plan: every step in order (a few in flight), each imported record audited as an
//! `import` event.

use anyhow::{Context as _, Result};
use keyward_core::OrgId;
use keyward_core::audit::{Category, NewEvent};
use keyward_core::credential::{CredentialUpdate, FormatCheck, NewCredential};
use keyward_store::Vault;
use serde_json::json;

use super::Item;
use super::plan::{Action, Plan, describe};

/// Counts of an applied (or planned) import.
#[derive(Default)]
pub(crate) struct Outcome {
    pub(crate) created: usize,
    pub(crate) updated: usize,
    pub(crate) unchanged: usize,
    pub(crate) failed: usize,
}

/// Applies the plan: every step in order, each audited as an `import` event. A step that the
/// vault refuses (a key of the wrong format, say) is reported and the others go on.
pub(crate) async fn apply(
    vault: &Vault,
    org: &OrgId,
    plan: Plan,
    source: &str,
    format_check: FormatCheck,
    actor: &str,
) -> Result<Outcome> {
    use futures_util::StreamExt as _;
    // Up to 32 records in flight: their writes and events share the store's group commits,
    // so a file of many variables costs a few hundred commits, not two per variable.
    let results = futures_util::stream::iter(plan.steps)
        .map(|(item, action)| apply_one(vault, org, item, action, source, format_check, actor))
        .buffered(32)
        .collect::<Vec<_>>()
        .await;
    let mut out = Outcome::default();
    for (what, origin, done) in results {
        match done {
            Ok(None) => out.unchanged += 1,
            Ok(Some("created")) => out.created += 1,
            Ok(Some(_)) => out.updated += 1,
            Err(e) => {
                out.failed += 1;
                let why = keyward_core::secret_like::scrub(&format!("{e:#}"));
                say!("{:<22} {what} from {origin}: {why}", "error");
            }
        }
    }
    Ok(out)
}

/// Applies one step of a plan and records its `import` event: what it was, where it came from,
/// and the verb (`None` when nothing changed).
async fn apply_one(
    vault: &Vault,
    org: &OrgId,
    item: Item,
    action: Action,
    source: &str,
    format_check: FormatCheck,
    actor: &str,
) -> (String, String, Result<Option<&'static str>>) {
    let (what, _, origin) = describe(&item);
    let origin = origin.to_owned();
    let done: Result<Option<(&'static str, String)>> = async {
        Ok(match (item, action) {
            (_, Action::Unchanged) => None,
            (
                Item::Credential {
                    provider,
                    name,
                    secret,
                    fields,
                    modalities,
                    active,
                    ..
                },
                Action::Create,
            ) => {
                let mut new = NewCredential::new(org.clone(), provider, name, secret);
                new.fields = fields;
                new.modalities = modalities;
                new.active = active;
                new.format_check = format_check;
                let view = vault.add_credential(new, actor).await?;
                Some(("created", format!("credential:{}", view.id)))
            }
            (
                Item::Credential {
                    secret,
                    fields,
                    modalities,
                    active,
                    ..
                },
                Action::Update { id, what },
            ) => {
                let update = CredentialUpdate {
                    secret: if what.contains(&"key") { secret } else { None },
                    format_check: Some(format_check),
                    fields,
                    modalities: (!modalities.is_empty()).then_some(modalities),
                    active: Some(active),
                    ..CredentialUpdate::default()
                };
                vault.update_credential(&id, None, update, actor).await?;
                Some(("updated", format!("credential:{id}")))
            }
            (
                Item::Variable {
                    name,
                    value,
                    sensitive,
                    ..
                },
                action,
            ) => {
                vault
                    .set_var(&name, Some(org), &value, sensitive, None, actor)
                    .await?;
                let verb = if matches!(action, Action::Create) {
                    "created"
                } else {
                    "updated"
                };
                Some((verb, format!("variable:{org}/{name}")))
            }
            (Item::Credential { .. }, Action::Set) => None,
        })
    }
    .await;
    let done = match done {
        Ok(Some((verb, target))) => vault
            .record(
                NewEvent::new(actor, Category::SecretManagement, "import", target)
                    .org(Some(org.as_str()))
                    .details(json!({ "source": source, "from": origin, "result": verb })),
            )
            .await
            .context("the import event")
            .map(|()| Some(verb)),
        Ok(None) => Ok(None),
        Err(e) => Err(e),
    };
    (what, origin, done)
}
