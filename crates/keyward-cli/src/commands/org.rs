//! `keyward org`: organizations, their strategy and environment fallback.

use std::process::ExitCode;

use anyhow::Result;
use keyward_core::OrgId;
use keyward_core::resolve::Strategy;

use crate::backend::Backend;
use crate::cli::OrgCommand;
use crate::output::{Table, print_json, time};

pub(crate) async fn org(backend: &Backend, cmd: OrgCommand) -> Result<ExitCode> {
    match cmd {
        OrgCommand::Create {
            slug,
            name,
            strategy,
        } => {
            let id = OrgId::new(&slug)?;
            let strategy: Option<Strategy> = strategy.as_deref().map(str::parse).transpose()?;
            let mut org = backend.create_org(&id, name.as_deref()).await?;
            if let Some(strategy) = strategy {
                org = backend.set_org_strategy(&id, strategy).await?;
            }
            say!(
                "created organization {} ({}), strategy {}",
                org.id,
                org.name,
                org.strategy
            );
        }
        OrgCommand::SetStrategy { slug, strategy } => {
            let id = OrgId::new(&slug)?;
            let org = backend.set_org_strategy(&id, strategy.parse()?).await?;
            say!("organization {} now uses {}", org.id, org.strategy);
        }
        OrgCommand::SetEnvFallback { slug, setting } => {
            let id = OrgId::new(&slug)?;
            let value = match setting.as_str() {
                "on" => Some(true),
                "off" => Some(false),
                _ => None,
            };
            let org = backend.set_org_env_fallback(&id, value).await?;
            say!(
                "organization {}: environment fallback {}",
                org.id,
                env_fallback_setting(org.env_fallback)
            );
        }
        OrgCommand::List { json } => {
            let orgs = backend.list_orgs().await?;
            if json {
                print_json(&orgs)?;
            } else {
                let mut t = Table::new(["ID", "NAME", "STRATEGY", "ENV FALLBACK", "CREATED", "BY"]);
                for o in orgs {
                    t.row([
                        o.id.to_string(),
                        o.name,
                        o.strategy.to_string(),
                        env_fallback_setting(o.env_fallback).to_owned(),
                        time(o.created_at),
                        o.created_by,
                    ]);
                }
                t.print();
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// An organization's environment-fallback setting as the CLI shows and takes it.
pub(crate) fn env_fallback_setting(setting: Option<bool>) -> &'static str {
    match setting {
        Some(true) => "on",
        Some(false) => "off",
        None => "default",
    }
}
