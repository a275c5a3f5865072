//! What the CLI's commands act on: the local vault, or a Keyward server (`KEYWARD_URL`). Both
//! answer with the same types, so every command prints alike either way.

use keyward::remote::Remote;
use keyward_core::audit::{AuditEvent, EventFilter};
use keyward_core::credential::{CredentialUpdate, CredentialView, FormatCheck, NewCredential};
use keyward_core::resolve::Strategy;
use keyward_core::var::VarView;
use keyward_core::{CredentialId, OrgId, Provider, VarName};
use keyward_store::{
    GatewayTokenView, KeyStatus, Organization, Role, RotationProgress, RotationReport, TokenView,
    Usage, Vault, VerifyReport,
};
use reqwest::Method;
use secrecy::{ExposeSecret as _, SecretString};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use anyhow::{Result, bail};

/// The local vault (with the actor the audit log records) or a server.
pub(crate) enum Backend {
    Local { vault: Vault, actor: String },
    Remote(Remote),
}

fn from<T: DeserializeOwned>(v: Value) -> Result<T> {
    Ok(serde_json::from_value(v)?)
}

fn query(pairs: &[(&str, Option<&str>)]) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .filter_map(|(k, v)| v.map(|v| format!("{k}={}", encode(v))))
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

/// Percent-encodes a query value (ids and filters are ASCII; anything else is escaped).
fn encode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl Backend {
    pub(crate) async fn create_org(&self, id: &OrgId, name: Option<&str>) -> Result<Organization> {
        match self {
            Backend::Local { vault, actor } => Ok(vault.create_org(id, name, actor).await?),
            Backend::Remote(r) => from(
                r.call(
                    Method::POST,
                    "/api/v1/orgs",
                    Some(json!({"id": id, "name": name})),
                )
                .await?,
            ),
        }
    }

    pub(crate) async fn set_org_strategy(
        &self,
        id: &OrgId,
        strategy: Strategy,
    ) -> Result<Organization> {
        match self {
            Backend::Local { vault, actor } => {
                Ok(vault.set_org_strategy(id, strategy, actor).await?)
            }
            Backend::Remote(r) => from(
                r.call(
                    Method::PATCH,
                    &format!("/api/v1/orgs/{id}"),
                    Some(json!({ "strategy": strategy })),
                )
                .await?,
            ),
        }
    }

    pub(crate) async fn set_org_env_fallback(
        &self,
        id: &OrgId,
        setting: Option<bool>,
    ) -> Result<Organization> {
        match self {
            Backend::Local { vault, actor } => {
                Ok(vault.set_org_env_fallback(id, setting, actor).await?)
            }
            Backend::Remote(r) => {
                let word = match setting {
                    Some(true) => "on",
                    Some(false) => "off",
                    None => "default",
                };
                from(
                    r.call(
                        Method::PATCH,
                        &format!("/api/v1/orgs/{id}"),
                        Some(json!({ "env_fallback": word })),
                    )
                    .await?,
                )
            }
        }
    }

    pub(crate) async fn list_orgs(&self) -> Result<Vec<Organization>> {
        match self {
            Backend::Local { vault, .. } => Ok(vault.list_orgs().await?),
            Backend::Remote(r) => from(r.call(Method::GET, "/api/v1/orgs", None).await?),
        }
    }

    /// Fails early when the organization does not exist (locally; a server says so itself).
    pub(crate) async fn require_org(&self, org: &OrgId) -> Result<()> {
        if let Backend::Local { vault, .. } = self {
            vault.require_org(org).await?;
        }
        Ok(())
    }

    pub(crate) async fn add_credential(&self, new: NewCredential) -> Result<CredentialView> {
        match self {
            Backend::Local { vault, actor } => Ok(vault.add_credential(new, actor).await?),
            Backend::Remote(r) => from(
                r.call(
                    Method::POST,
                    "/api/v1/credentials",
                    Some(json!({
                        "organization_id": new.org,
                        "provider": new.provider.id,
                        "name": new.name,
                        "api_key": new.secret.as_ref().map(|s| s.expose_secret()),
                        "fields": new.fields,
                        "modalities": new.modalities,
                        "priority": new.priority,
                        "weight": new.weight,
                        "active": new.active,
                        "skip_format_check": new.format_check == FormatCheck::Skip,
                    })),
                )
                .await?,
            ),
        }
    }

    pub(crate) async fn list_credentials(
        &self,
        org: Option<&OrgId>,
        provider: Option<&'static Provider>,
    ) -> Result<Vec<CredentialView>> {
        match self {
            Backend::Local { vault, .. } => Ok(vault.list_credentials(org, provider).await?),
            Backend::Remote(r) => {
                let mut all = Vec::new();
                let mut offset = 0usize;
                loop {
                    let off = offset.to_string();
                    let path = format!(
                        "/api/v1/credentials{}",
                        query(&[
                            ("organization_id", org.map(OrgId::as_str)),
                            ("provider", provider.map(|p| p.id)),
                            ("limit", Some("1000")),
                            ("offset", Some(&off)),
                        ])
                    );
                    let page = r.call(Method::GET, &path, None).await?;
                    let items: Vec<CredentialView> = from(page["items"].clone())?;
                    all.extend(items);
                    match page["next_offset"].as_u64() {
                        Some(next) => offset = usize::try_from(next)?,
                        None => return Ok(all),
                    }
                }
            }
        }
    }

    pub(crate) async fn get_credential(&self, id: &CredentialId) -> Result<CredentialView> {
        match self {
            Backend::Local { vault, .. } => Ok(vault.get_credential(id).await?),
            Backend::Remote(r) => from(
                r.call(Method::GET, &format!("/api/v1/credentials/{id}"), None)
                    .await?,
            ),
        }
    }

    pub(crate) async fn update_credential(
        &self,
        id: &CredentialId,
        if_version: Option<i64>,
        update: CredentialUpdate,
    ) -> Result<CredentialView> {
        match self {
            Backend::Local { vault, actor } => Ok(vault
                .update_credential(id, if_version, update, actor)
                .await?),
            Backend::Remote(r) => from(
                r.call(
                    Method::PATCH,
                    &format!("/api/v1/credentials/{id}"),
                    Some(json!({
                        "name": update.name,
                        "api_key": update.secret.as_ref().map(|s| s.expose_secret()),
                        "fields": update.fields,
                        "modalities": update.modalities,
                        "priority": update.priority,
                        "weight": update.weight,
                        "active": update.active,
                        "if_version": if_version,
                        "skip_format_check": update.format_check == Some(FormatCheck::Skip),
                    })),
                )
                .await?,
            ),
        }
    }

    pub(crate) async fn set_credential_active(
        &self,
        id: &CredentialId,
        active: bool,
    ) -> Result<CredentialView> {
        match self {
            Backend::Local { vault, actor } => {
                Ok(vault.set_credential_active(id, active, actor).await?)
            }
            Backend::Remote(r) => {
                let verb = if active { "activate" } else { "deactivate" };
                from(
                    r.call(
                        Method::POST,
                        &format!("/api/v1/credentials/{id}/{verb}"),
                        None,
                    )
                    .await?,
                )
            }
        }
    }

    pub(crate) async fn delete_credential(&self, id: &CredentialId) -> Result<()> {
        match self {
            Backend::Local { vault, actor } => Ok(vault.delete_credential(id, actor).await?),
            Backend::Remote(r) => {
                r.call(Method::DELETE, &format!("/api/v1/credentials/{id}"), None)
                    .await?;
                Ok(())
            }
        }
    }

    /// Runs a key test; returns whether the key works, what the provider said, and the
    /// credential as stored afterwards.
    pub(crate) async fn test_credential(
        &self,
        id: &CredentialId,
        timeout: std::time::Duration,
    ) -> Result<(bool, String, CredentialView)> {
        match self {
            Backend::Local { vault, actor } => {
                let (view, secret) = vault.open_credential(id).await?;
                let provider = Provider::get(&view.provider)?;
                let outcome = keyward::probe::test_key(
                    provider,
                    &view.fields,
                    secret.as_ref(),
                    timeout,
                    &token_endpoints(),
                )
                .await;
                let view = vault
                    .record_key_test(id, outcome.is_ok(), &outcome.to_string(), actor)
                    .await?;
                Ok((outcome.is_ok(), outcome.to_string(), view))
            }
            Backend::Remote(r) => {
                let path = format!(
                    "/api/v1/credentials/{id}/test?timeout_seconds={}",
                    timeout.as_secs()
                );
                let v = r.call(Method::POST, &path, None).await?;
                Ok((
                    v["ok"].as_bool().unwrap_or(false),
                    v["result"].as_str().unwrap_or_default().to_owned(),
                    from(v["credential"].clone())?,
                ))
            }
        }
    }

    /// The models a credential's key reaches, by name (audited).
    pub(crate) async fn discover_models(
        &self,
        id: &CredentialId,
        timeout: std::time::Duration,
    ) -> Result<Vec<String>> {
        match self {
            Backend::Local { vault, actor } => {
                let (view, secret) = vault.open_credential(id).await?;
                let provider = Provider::get(&view.provider)?;
                let found = keyward::probe::discover_models(
                    provider,
                    &view.fields,
                    secret.as_ref(),
                    timeout,
                    &token_endpoints(),
                )
                .await;
                vault.record_discovery(&view, &found, actor).await?;
                found.map_err(|why| {
                    anyhow::anyhow!("{} did not list the models: {why}", provider.display_name)
                })
            }
            Backend::Remote(r) => {
                let path = format!(
                    "/api/v1/credentials/{id}/discover?timeout_seconds={}",
                    timeout.as_secs()
                );
                let v = r.call(Method::POST, &path, None).await?;
                Ok(serde_json::from_value(v["models"].clone())?)
            }
        }
    }

    pub(crate) async fn set_var(
        &self,
        name: &VarName,
        org: Option<&OrgId>,
        value: &SecretString,
        sensitive: bool,
        description: Option<&str>,
    ) -> Result<VarView> {
        match self {
            Backend::Local { vault, actor } => Ok(vault
                .set_var(name, org, value, sensitive, description, actor)
                .await?),
            Backend::Remote(r) => {
                let body = json!({
                    "name": name,
                    "value": value.expose_secret(),
                    "description": description,
                    "sensitive": sensitive,
                    "organization_id": org,
                });
                match r
                    .call(Method::POST, "/v1/config-variables", Some(body))
                    .await
                {
                    Ok(v) => from(v),
                    // It exists: replace it.
                    Err(keyward::Error::Remote(m)) if m.contains("409") => {
                        let mut body = json!({
                            "value": value.expose_secret(),
                            "description": description,
                            "sensitive": sensitive,
                            "organization_id": org,
                        });
                        if description.is_none() {
                            body.as_object_mut().map(|o| o.remove("description"));
                        }
                        from(
                            r.call(
                                Method::PUT,
                                &format!("/v1/config-variables/{name}"),
                                Some(body),
                            )
                            .await?,
                        )
                    }
                    Err(e) => Err(e.into()),
                }
            }
        }
    }

    /// A variable and, when allowed, its value (sensitive ones only with `reveal`).
    pub(crate) async fn get_var(
        &self,
        name: &VarName,
        org: Option<&OrgId>,
        reveal: bool,
    ) -> Result<(VarView, Option<SecretString>)> {
        match self {
            Backend::Local { vault, actor } => {
                let got = vault.get_var(name, org, reveal, actor).await?;
                Ok((got.view, got.value))
            }
            Backend::Remote(r) => {
                let path = format!(
                    "/v1/config-variables/{name}{}",
                    query(&[
                        ("organization_id", org.map(OrgId::as_str)),
                        ("reveal", reveal.then_some("true")),
                    ])
                );
                let v = r.call(Method::GET, &path, None).await?;
                let view: VarView = from(v.clone())?;
                let value = (!view.sensitive || reveal)
                    .then(|| v["value"].as_str().map(SecretString::from))
                    .flatten();
                Ok((view, value))
            }
        }
    }

    pub(crate) async fn list_vars(&self, org: Option<&OrgId>) -> Result<Vec<VarView>> {
        match self {
            Backend::Local { vault, .. } => Ok(vault.list_vars(org).await?),
            Backend::Remote(r) => {
                let path = format!(
                    "/v1/config-variables{}",
                    query(&[("organization_id", org.map(OrgId::as_str))])
                );
                let mut views: Vec<VarView> = from(r.call(Method::GET, &path, None).await?)?;
                // The server shows sensitive values as ***; a view holds no value for them.
                for v in &mut views {
                    if v.sensitive {
                        v.value = None;
                    }
                }
                Ok(views)
            }
        }
    }

    pub(crate) async fn delete_var(&self, name: &VarName, org: Option<&OrgId>) -> Result<()> {
        match self {
            Backend::Local { vault, actor } => Ok(vault.delete_var(name, org, actor).await?),
            Backend::Remote(r) => {
                let path = format!(
                    "/v1/config-variables/{name}{}",
                    query(&[("organization_id", org.map(OrgId::as_str))])
                );
                r.call(Method::DELETE, &path, None).await?;
                Ok(())
            }
        }
    }

    /// Up to `limit` events matching the filter, newest first. Each listing reads back a
    /// bounded number of events (the store's scan budget), so this follows the cursor page
    /// after page until it has `limit` events or the log ends.
    pub(crate) async fn list_events(
        &self,
        filter_text: &str,
        limit: i64,
    ) -> Result<Vec<AuditEvent>> {
        let mut out: Vec<AuditEvent> = Vec::new();
        let mut before: Option<i64> = None;
        loop {
            let want = limit - out.len() as i64;
            let (items, next) = self.events_page(filter_text, want, before).await?;
            out.extend(items);
            match next {
                Some(n) if (out.len() as i64) < limit => before = Some(n),
                _ => return Ok(out),
            }
        }
    }

    async fn events_page(
        &self,
        filter_text: &str,
        limit: i64,
        before: Option<i64>,
    ) -> Result<(Vec<AuditEvent>, Option<i64>)> {
        match self {
            Backend::Local { vault, .. } => {
                let mut filter: EventFilter = filter_text.parse()?;
                filter.before = before;
                let page = vault.list_events_page(&filter, limit).await?;
                Ok((page.items, page.next))
            }
            Backend::Remote(r) => {
                let lim = limit.to_string();
                let before = before.map(|b| b.to_string());
                let path = format!(
                    "/api/v1/events{}",
                    query(&[
                        ("filter", Some(filter_text).filter(|f| !f.is_empty())),
                        ("limit", Some(&lim)),
                        ("before", before.as_deref()),
                    ])
                );
                let page = r.call(Method::GET, &path, None).await?;
                Ok((from(page["items"].clone())?, page["next_cursor"].as_i64()))
            }
        }
    }

    pub(crate) async fn verify_events(&self) -> Result<VerifyReport> {
        match self {
            Backend::Local { vault, .. } => Ok(vault.verify_events().await?),
            Backend::Remote(r) => from(r.call(Method::POST, "/api/v1/events/verify", None).await?),
        }
    }

    /// Prunes the audit log on the store itself: there is no API route for it.
    pub(crate) async fn prune_events(
        &self,
        older_than: Option<std::time::Duration>,
    ) -> Result<keyward_store::PruneReport> {
        let Backend::Local { vault, actor } = self else {
            anyhow::bail!(
                "keyward events prune works on the store itself (no API route deletes events): run it where the store is, with its KEYWARD_DATABASE_URL and master keys, without KEYWARD_URL"
            );
        };
        let age = match older_than {
            Some(age) => i64::try_from(age.as_millis()).unwrap_or(i64::MAX),
            None => {
                let policy = vault.audit_policy().await?.map(|s| s.policy);
                match policy.and_then(|p| p.retention_days) {
                    Some(days) => i64::from(days) * 86_400_000,
                    None => anyhow::bail!(
                        "the audit policy sets no retention_days: say how old with --older-than (e.g. 365d)"
                    ),
                }
            }
        };
        let before = keyward_core::Millis(keyward_core::Millis::now().0.saturating_sub(age));
        Ok(vault.prune_events(before, actor).await?)
    }

    pub(crate) async fn key_status(&self) -> Result<KeyStatus> {
        match self {
            Backend::Local { vault, .. } => Ok(vault.key_status().await?),
            Backend::Remote(r) => from(
                r.call(Method::GET, "/api/v1/master-key/status", None)
                    .await?,
            ),
        }
    }

    pub(crate) async fn rotate_master_key(
        &self,
        batch_size: usize,
        progress: impl FnMut(RotationProgress),
    ) -> Result<RotationReport> {
        match self {
            Backend::Local { vault, actor } => {
                Ok(vault.rotate_master_key(batch_size, actor, progress).await?)
            }
            Backend::Remote(r) => from(
                r.call(Method::POST, "/api/v1/master-key/rotate", None)
                    .await?,
            ),
        }
    }

    pub(crate) async fn create_token(
        &self,
        name: &str,
        role: Role,
        org: Option<&OrgId>,
        expires_in_seconds: Option<i64>,
    ) -> Result<(SecretString, TokenView)> {
        match self {
            Backend::Local { vault, actor } => {
                let expires = expires_in_seconds
                    .map(|s| keyward_core::Millis(keyward_core::Millis::now().0 + s * 1000));
                Ok(vault.create_token(name, role, org, expires, actor).await?)
            }
            Backend::Remote(r) => {
                let v = r
                    .call(
                        Method::POST,
                        "/api/v1/tokens",
                        Some(json!({"name": name, "role": role, "organization_id": org,
                                    "expires_in_seconds": expires_in_seconds})),
                    )
                    .await?;
                let token = SecretString::from(v["token"].as_str().unwrap_or_default());
                Ok((token, from(v)?))
            }
        }
    }

    pub(crate) async fn list_tokens(&self, org: Option<&OrgId>) -> Result<Vec<TokenView>> {
        match self {
            Backend::Local { vault, .. } => Ok(vault.list_tokens(org).await?),
            Backend::Remote(r) => {
                let all: Vec<TokenView> = from(r.call(Method::GET, "/api/v1/tokens", None).await?)?;
                Ok(all
                    .into_iter()
                    .filter(|t| org.is_none_or(|o| t.org.as_ref() == Some(o)))
                    .collect())
            }
        }
    }

    pub(crate) async fn list_sessions(&self) -> Result<Vec<keyward_store::SessionView>> {
        match self {
            Backend::Local { vault, .. } => Ok(vault.list_ui_sessions().await?),
            Backend::Remote(r) => from(r.call(Method::GET, "/api/v1/sessions", None).await?),
        }
    }

    /// Ends a console session by its listed id; an error when there is none.
    pub(crate) async fn end_session(&self, id: &str) -> Result<()> {
        match self {
            Backend::Local { vault, actor } => {
                if !vault.end_ui_session_by_handle(id, actor).await? {
                    bail!("no live session {id}");
                }
                Ok(())
            }
            Backend::Remote(r) => {
                r.call(
                    Method::DELETE,
                    &format!("/api/v1/sessions/{}", encode(id)),
                    None,
                )
                .await?;
                Ok(())
            }
        }
    }

    /// Single sign-on as the server runs it.
    pub(crate) async fn sso_status(&self) -> Result<keyward_server::identity::oidc::SsoStatus> {
        match self {
            Backend::Local { .. } => Self::sso_status_here().await,
            Backend::Remote(r) => from(r.call(Method::GET, "/api/v1/sso", None).await?),
        }
    }

    /// Single sign-on as the identity file here (`KEYWARD_IDENTITY_CONFIG`) configures it, its
    /// provider asked now; no vault is opened.
    pub(crate) async fn sso_status_here() -> Result<keyward_server::identity::oidc::SsoStatus> {
        let Some(path) = std::env::var_os("KEYWARD_IDENTITY_CONFIG").filter(|p| !p.is_empty())
        else {
            bail!(
                "single sign-on is configured in the identity file: set KEYWARD_IDENTITY_CONFIG (or KEYWARD_URL, to ask a server)"
            );
        };
        let env = |name: &str| std::env::var(name).ok();
        let path = std::path::PathBuf::from(path);
        let identity = keyward_server::identity::Identity::load(&path, &env)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let Some(sso) = identity.sso else {
            bail!("{} has no oidc: section", path.display());
        };
        // As `serve` would decide: its flag's variable, else the file.
        let token_sign_in = match std::env::var("KEYWARD_UI_TOKEN_SIGN_IN").as_deref() {
            Ok("off" | "false") => false,
            Ok("on" | "true") => true,
            _ => sso.token_sign_in().unwrap_or(true),
        };
        Ok(sso.status(token_sign_in).await)
    }

    pub(crate) async fn revoke_token(&self, id: &str) -> Result<TokenView> {
        match self {
            Backend::Local { vault, actor } => Ok(vault.revoke_token(id, actor).await?),
            Backend::Remote(r) => from(
                r.call(Method::DELETE, &format!("/api/v1/tokens/{id}"), None)
                    .await?,
            ),
        }
    }

    pub(crate) async fn create_gateway_token(
        &self,
        org: &OrgId,
        name: &str,
        providers: &[&'static Provider],
        rpm: Option<i64>,
        expires_in_seconds: Option<i64>,
    ) -> Result<(SecretString, GatewayTokenView)> {
        match self {
            Backend::Local { vault, actor } => {
                let expires = expires_in_seconds
                    .map(|s| keyward_core::Millis(keyward_core::Millis::now().0 + s * 1000));
                Ok(vault
                    .create_gateway_token(org, name, providers, rpm, expires, actor)
                    .await?)
            }
            Backend::Remote(r) => {
                let ids: Vec<&str> = providers.iter().map(|p| p.id).collect();
                let v = r
                    .call(
                        Method::POST,
                        "/api/v1/gateway-tokens",
                        Some(
                            json!({"organization_id": org, "name": name, "providers": ids,
                                    "rpm": rpm, "expires_in_seconds": expires_in_seconds}),
                        ),
                    )
                    .await?;
                let token = SecretString::from(v["token"].as_str().unwrap_or_default());
                Ok((token, from(v)?))
            }
        }
    }

    pub(crate) async fn list_gateway_tokens(
        &self,
        org: Option<&OrgId>,
    ) -> Result<Vec<GatewayTokenView>> {
        match self {
            Backend::Local { vault, .. } => Ok(vault.list_gateway_tokens(org).await?),
            Backend::Remote(r) => {
                let path = format!(
                    "/api/v1/gateway-tokens{}",
                    query(&[("organization_id", org.map(OrgId::as_str))])
                );
                from(r.call(Method::GET, &path, None).await?)
            }
        }
    }

    /// Asks the server to reload the gateway's static targets.
    pub(crate) async fn reload_gateway(&self) -> Result<keyward_server::TargetsLoaded> {
        match self {
            Backend::Local { .. } => bail!(
                "`keyward gateway reload` talks to the running server: set KEYWARD_URL and an admin KEYWARD_TOKEN, or send the server SIGHUP"
            ),
            Backend::Remote(r) => {
                let v = r.call(Method::POST, "/api/v1/gateway/reload", None).await?;
                from(
                    json!({ "targets": v["resolved"], "ignored": v["ignored"], "audit_policy": v["audit_policy"] }),
                )
            }
        }
    }

    /// The running gateway's status: its targets, their last load, and the credentials it
    /// uses and has set aside.
    pub(crate) async fn gateway_status(&self, org: Option<&OrgId>) -> Result<serde_json::Value> {
        match self {
            Backend::Local { .. } => bail!(
                "`keyward gateway status` asks the running server: set KEYWARD_URL and KEYWARD_TOKEN"
            ),
            Backend::Remote(r) => {
                let path = match org {
                    Some(o) => format!("/api/v1/gateway/status?org={o}"),
                    None => "/api/v1/gateway/status".to_owned(),
                };
                Ok(r.call(Method::GET, &path, None).await?)
            }
        }
    }

    pub(crate) async fn usage(&self, org: &OrgId) -> Result<Vec<Usage>> {
        match self {
            Backend::Local { vault, .. } => Ok(vault.usage(org).await?),
            Backend::Remote(r) => {
                let v = r
                    .call(Method::GET, &format!("/api/v1/orgs/{org}/usage"), None)
                    .await?;
                from(v["usage"].clone())
            }
        }
    }

    /// An organization's spend over a span (`from`, `to`: as the API takes them).
    pub(crate) async fn spend(
        &self,
        org: &OrgId,
        by: &str,
        from: &str,
        to: Option<&str>,
    ) -> Result<Value> {
        match self {
            Backend::Local { vault, .. } => {
                let now = keyward_core::Millis::now();
                let instant =
                    |s: &str| keyward_server::parse_instant(s, now).map_err(anyhow::Error::msg);
                let from = instant(from)?;
                let to = to
                    .map(instant)
                    .transpose()?
                    .unwrap_or(keyward_core::Millis(now.0 + 1));
                let dims = match by {
                    "total" => vec![],
                    b => vec![keyward_store::SpendDim::parse(b).ok_or_else(|| {
                        anyhow::anyhow!("--by is one of model, credential, token, day, total")
                    })?],
                };
                let q = keyward_store::SpendQuery {
                    from,
                    to,
                    by: dims,
                    only: None,
                };
                let rows = vault.spend(org, &q).await?;
                let mut total = keyward_store::SpendRow::default();
                for r in &rows {
                    total.add(r);
                }
                Ok(json!({
                    "org": org, "from": from, "to": to, "group_by": by, "currency": "USD",
                    "rows": if by == "total" { vec![] } else { rows }, "total": total,
                }))
            }
            Backend::Remote(r) => {
                let path = format!(
                    "/api/v1/orgs/{org}/spend{}",
                    query(&[("from", Some(from)), ("to", to), ("group_by", Some(by))])
                );
                Ok(r.call(Method::GET, &path, None).await?)
            }
        }
    }

    /// Changes what a gateway token may do.
    pub(crate) async fn update_gateway_token(
        &self,
        id: &str,
        models: Option<Vec<String>>,
        rpm: Option<Option<i64>>,
        tpm: Option<Option<i64>>,
    ) -> Result<GatewayTokenView> {
        match self {
            Backend::Local { vault, actor } => Ok(vault
                .update_gateway_token(id, models, rpm, tpm, actor)
                .await?),
            Backend::Remote(r) => {
                let mut body = serde_json::Map::new();
                if let Some(m) = models {
                    body.insert("models".into(), json!(m));
                }
                if let Some(n) = rpm {
                    body.insert("rpm".into(), json!(n));
                }
                if let Some(n) = tpm {
                    body.insert("tpm".into(), json!(n));
                }
                from(
                    r.call(
                        Method::PATCH,
                        &format!("/api/v1/gateway-tokens/{}", encode(id)),
                        Some(Value::Object(body)),
                    )
                    .await?,
                )
            }
        }
    }

    /// An organization's budgets with their current periods' spending (as the API answers).
    pub(crate) async fn budgets(&self, org: &OrgId) -> Result<Value> {
        match self {
            Backend::Local { vault, .. } => {
                let list = vault.list_budgets(Some(org)).await?;
                let now = keyward_core::Millis::now();
                let keys: Vec<(&keyward_store::Budget, i64)> =
                    list.iter().map(|b| (b, b.period.start(now))).collect();
                let spent = vault.budget_spent(&keys).await?;
                let rows: Vec<Value> = list
                    .into_iter()
                    .map(|b| {
                        let start = b.period.start(now);
                        let s = spent.get(&b.id).copied().unwrap_or(0);
                        let mut v = json!(b);
                        v["period_start"] = json!(start);
                        v["resets_at"] = json!(b.period.end(start));
                        v["spent"] = json!(s);
                        v["remaining"] = json!(b.amount.saturating_sub(s));
                        v["percent"] = json!(u128::from(s) * 100 / u128::from(b.amount.max(1)));
                        v
                    })
                    .collect();
                Ok(json!({ "budgets": rows }))
            }
            Backend::Remote(r) => Ok(r
                .call(Method::GET, &format!("/api/v1/orgs/{org}/budgets"), None)
                .await?),
        }
    }

    /// Sets a budget or limit.
    pub(crate) async fn set_budget(
        &self,
        b: &keyward_store::NewBudget,
    ) -> Result<keyward_store::Budget> {
        use keyward_store::{BudgetScope, Metric};
        match self {
            Backend::Local { vault, actor } => Ok(vault.set_budget(b, actor).await?),
            Backend::Remote(r) => {
                let mut body =
                    json!({ "scope": b.scope, "alerts": b.alerts, "webhook": b.webhook });
                if b.scope != BudgetScope::Org {
                    body["id"] = json!(b.scope_id);
                }
                match b.metric {
                    Metric::Usd => {
                        body["limit_usd"] =
                            json!(keyward_core::prices::usd(b.amount).trim_start_matches('$'));
                        body["period"] = json!(b.period.as_str());
                    }
                    Metric::Requests => body["rpm"] = json!(b.amount),
                    Metric::Tokens => body["tpm"] = json!(b.amount),
                }
                from(
                    r.call(
                        Method::POST,
                        &format!("/api/v1/orgs/{}/budgets", b.org),
                        Some(body),
                    )
                    .await?,
                )
            }
        }
    }

    /// Removes a budget.
    pub(crate) async fn delete_budget(
        &self,
        org: &OrgId,
        id: &str,
    ) -> Result<keyward_store::Budget> {
        match self {
            Backend::Local { vault, actor } => {
                let b = vault.get_budget(id).await?;
                if b.org != *org {
                    bail!("budget {id} not found");
                }
                Ok(vault.delete_budget(id, actor).await?)
            }
            Backend::Remote(r) => from(
                r.call(
                    Method::DELETE,
                    &format!("/api/v1/orgs/{org}/budgets/{}", encode(id)),
                    None,
                )
                .await?,
            ),
        }
    }

    /// The prices spend is reckoned at.
    pub(crate) async fn prices(&self) -> Result<Vec<keyward_core::prices::ModelPrice>> {
        match self {
            Backend::Local { vault, .. } => {
                let mut all: std::collections::BTreeMap<(String, String), _> =
                    keyward_core::prices::shipped()
                        .into_iter()
                        .chain(vault.model_prices().await?)
                        .map(|m| ((m.provider.clone(), m.model.clone()), m))
                        .collect();
                Ok(std::mem::take(&mut all).into_values().collect())
            }
            Backend::Remote(r) => {
                from(r.call(Method::GET, "/api/v1/prices", None).await?["prices"].clone())
            }
        }
    }

    /// Imports prices; how many were stored.
    pub(crate) async fn import_prices(
        &self,
        prices: &[keyward_core::prices::ModelPrice],
        replace: bool,
        source: &str,
    ) -> Result<usize> {
        match self {
            Backend::Local { vault, actor } => {
                Ok(vault.import_prices(prices, replace, source, actor).await?)
            }
            Backend::Remote(r) => {
                let body = json!({ "prices": prices, "replace": replace, "source": source });
                let v = r.call(Method::POST, "/api/v1/prices", Some(body)).await?;
                Ok(from(v["imported"].clone())?)
            }
        }
    }

    pub(crate) async fn revoke_gateway_token(&self, id: &str) -> Result<GatewayTokenView> {
        match self {
            Backend::Local { vault, actor } => Ok(vault.revoke_gateway_token(id, actor).await?),
            Backend::Remote(r) => from(
                r.call(
                    Method::DELETE,
                    &format!("/api/v1/gateway-tokens/{id}"),
                    None,
                )
                .await?,
            ),
        }
    }
}

/// Where a local key test gets Vertex AI's and Entra ID's access tokens: the settings
/// `keyward serve` reads (`KEYWARD_GOOGLE_TOKEN_URL`, `KEYWARD_ENTRA_AUTHORITY`), else Google's
/// and Microsoft's public endpoints.
fn token_endpoints() -> keyward::probe::cloud::TokenEndpoints {
    let mut endpoints = keyward::probe::cloud::TokenEndpoints::default();
    let set = |name: &str| {
        std::env::var(name)
            .ok()
            .map(|v| v.trim().trim_end_matches('/').to_owned())
            .filter(|v| v.starts_with("https://") || v.starts_with("http://"))
    };
    if let Some(url) = set("KEYWARD_GOOGLE_TOKEN_URL") {
        endpoints.google = url;
    }
    if let Some(url) = set("KEYWARD_ENTRA_AUTHORITY") {
        endpoints.entra = url;
    }
    endpoints
}
