//! `keyward var`: config variables.

use std::process::ExitCode;

use anyhow::Result;
use keyward_core::var::VarView;
use keyward_core::{OrgId, VarName};
use secrecy::{ExposeSecret as _, SecretString};

use crate::backend::Backend;
use crate::cli::VarCommand;
use crate::output::{Table, print_json};

use super::cred::read_secret;

pub(crate) async fn var(backend: &Backend, cmd: VarCommand) -> Result<ExitCode> {
    match cmd {
        VarCommand::Set {
            name,
            org,
            sensitive,
            description,
            value_env,
        } => {
            let name = VarName::new(&name)?;
            let org = org.as_deref().map(OrgId::new).transpose()?;
            let raw = read_secret(value_env.as_deref(), &format!("value of {name}"))?;
            // A value piped in usually ends with a newline that is not part of it.
            let value = SecretString::from(raw.expose_secret().trim_end_matches(['\r', '\n']));
            let view = backend
                .set_var(
                    &name,
                    org.as_ref(),
                    &value,
                    sensitive,
                    description.as_deref(),
                )
                .await?;
            say!(
                "set {}variable {}{} (version {})",
                if view.sensitive { "sensitive " } else { "" },
                view.org.map(|o| format!("{o}/")).unwrap_or_default(),
                view.name,
                view.version
            );
        }
        VarCommand::Get {
            name,
            org,
            reveal,
            json,
        } => {
            let name = VarName::new(&name)?;
            let org = org.as_deref().map(OrgId::new).transpose()?;
            let (view, value) = backend.get_var(&name, org.as_ref(), reveal).await?;
            if json {
                let mut v = serde_json::to_value(view.redacted())?;
                if let Some(value) = &value {
                    v["value"] = serde_json::Value::String(value.expose_secret().to_owned());
                }
                print_json(&v)?;
            } else {
                match &value {
                    Some(value) => say!("{}", value.expose_secret()),
                    None => {
                        eprintln!("{name} is sensitive; pass --reveal to print it (audited)");
                        say!("***");
                    }
                }
            }
        }
        VarCommand::List { org, json } => {
            let org = match org.as_deref() {
                None => None,
                Some("") => Some(None),
                Some(o) => Some(Some(OrgId::new(o)?)),
            };
            let mut vars = backend
                .list_vars(org.as_ref().and_then(Option::as_ref))
                .await?;
            if let Some(None) = org {
                vars.retain(|v| v.org.is_none());
            }
            if json {
                let shown: Vec<_> = vars.iter().map(VarView::redacted).collect();
                print_json(&shown)?;
            } else {
                let mut t = Table::new(["SCOPE", "NAME", "VALUE", "SENSITIVE", "DESCRIPTION"]);
                for v in &vars {
                    t.row([
                        v.org
                            .as_ref()
                            .map_or_else(|| "(global)".to_owned(), ToString::to_string),
                        v.name.to_string(),
                        v.shown_value().to_owned(),
                        if v.sensitive { "yes" } else { "no" }.into(),
                        v.description.clone(),
                    ]);
                }
                t.print();
            }
        }
        VarCommand::Delete { name, org } => {
            let name = VarName::new(&name)?;
            let org = org.as_deref().map(OrgId::new).transpose()?;
            backend.delete_var(&name, org.as_ref()).await?;
            say!("deleted variable {name}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
