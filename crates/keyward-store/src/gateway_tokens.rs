//! Gateway tokens: what LLM clients present to the gateway instead of a provider key. Bound to
//! one organization, optionally to a set of providers, with an optional requests-per-minute
//! limit; stored only as hashes, like API tokens.

use keyward_core::audit::{Category, NewEvent};
use keyward_core::token::TokenState;
use keyward_core::{Millis, OrgId, Provider};
use secrecy::{ExposeSecret as _, SecretString};
use serde::Serialize;
use serde_json::json;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::changes::Change;
use crate::tokens::{generate_token, token_hash};
use crate::{Vault, VaultError, new_id};

/// The prefix of every gateway token.
pub const GATEWAY_TOKEN_PREFIX: &str = keyward_core::secret_like::GATEWAY_TOKEN_PREFIX;

/// A gateway token as listings show it: its first characters, never the token.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GatewayTokenView {
    /// Id.
    pub id: String,
    /// Organization.
    pub org: OrgId,
    /// Name.
    pub name: String,
    /// The token's first characters.
    pub prefix: String,
    /// Providers it may reach; empty means all.
    pub providers: Vec<String>,
    /// Requests per minute it may make; `None` for no limit.
    pub rpm: Option<i64>,
    /// Tokens per minute it may use (input and output); `None` for no limit.
    #[serde(default)]
    pub tpm: Option<i64>,
    /// Models it may ask for: names, or patterns with `*`; empty means any.
    #[serde(default)]
    pub models: Vec<String>,
    /// Creation time.
    pub created_at: Millis,
    /// Who created it.
    pub created_by: String,
    /// When it stops working.
    pub expires_at: Option<Millis>,
    /// When it was revoked.
    pub revoked_at: Option<Millis>,
    /// When it was last used.
    pub last_used_at: Option<Millis>,
    /// Whether it works, when it was read: `active`, `expired` or `revoked`.
    pub state: TokenState,
}

impl GatewayTokenView {
    /// Whether it may reach `provider`.
    pub fn allows(&self, provider: &Provider) -> bool {
        self.providers.is_empty() || self.providers.iter().any(|p| p == provider.id)
    }

    /// Whether it may ask for `model`.
    pub fn allows_model(&self, model: &str) -> bool {
        self.models.is_empty() || self.models.iter().any(|p| glob(p, model))
    }
}

/// Whether `text` matches `pattern`, where `*` stands for any run of characters (and nothing
/// else is special): `gpt-4o*`, `claude-*-4*`, `*`.
pub(crate) fn glob(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        // No `*`: the whole text.
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// Checks a model allow-list: names or patterns of printable characters.
pub(crate) fn check_models(models: &[String]) -> Result<(), VaultError> {
    if models.len() > 100
        || models
            .iter()
            .any(|m| !keyward_core::ids::is_plain_text(m, 200) || m.contains(',') || m.trim() != m)
    {
        return Err(VaultError::InvalidInput(
            "a model allow-list has at most 100 names or patterns (`*` for any run of characters), of printable characters without commas or surrounding spaces".into(),
        ));
    }
    for m in models {
        keyward_core::secret_like::check_public("model pattern", m)?;
    }
    Ok(())
}

const COLUMNS: &str = "id, org, name, prefix, providers, rpm, tpm, models, created_at, created_by, expires_at, revoked_at, last_used_at";

fn view(row: &AnyRow) -> Result<GatewayTokenView, VaultError> {
    let org: String = row.try_get("org")?;
    let providers: String = row.try_get("providers")?;
    let expires_at = row.try_get::<Option<i64>, _>("expires_at")?.map(Millis);
    let revoked_at = row.try_get::<Option<i64>, _>("revoked_at")?.map(Millis);
    Ok(GatewayTokenView {
        id: row.try_get("id")?,
        org: OrgId::from_stored(&org)?,
        name: row.try_get("name")?,
        prefix: row.try_get("prefix")?,
        providers: providers
            .split(',')
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect(),
        rpm: row.try_get("rpm")?,
        tpm: row.try_get("tpm")?,
        models: row
            .try_get::<String, _>("models")?
            .split(',')
            .filter(|m| !m.is_empty())
            .map(str::to_owned)
            .collect(),
        created_at: Millis(row.try_get("created_at")?),
        created_by: row.try_get("created_by")?,
        expires_at,
        revoked_at,
        last_used_at: row.try_get::<Option<i64>, _>("last_used_at")?.map(Millis),
        state: TokenState::of(revoked_at, expires_at, Millis::now()),
    })
}

impl Vault {
    /// Creates a gateway token for `org`; returns it (shown once) with its view.
    pub async fn create_gateway_token(
        &self,
        org: &OrgId,
        name: &str,
        providers: &[&'static Provider],
        rpm: Option<i64>,
        expires_at: Option<Millis>,
        actor: &str,
    ) -> Result<(SecretString, GatewayTokenView), VaultError> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
            return Err(VaultError::InvalidInput(
                "a token name has 1 to 100 printable characters".into(),
            ));
        }
        keyward_core::secret_like::check_public("gateway token name", name)?;
        self.refuse_own_keys([name])?;
        if rpm.is_some_and(|r| !(1..=1_000_000).contains(&r)) {
            return Err(VaultError::InvalidInput(
                "rpm must be between 1 and 1000000".into(),
            ));
        }
        self.require_org(org).await?;
        let token = generate_token(GATEWAY_TOKEN_PREFIX)?;
        let t = token.expose_secret();
        let prefix: String = t.chars().take(GATEWAY_TOKEN_PREFIX.len() + 4).collect();
        let ids: Vec<&str> = providers.iter().map(|p| p.id).collect();
        let id = new_id();
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO gateway_tokens (id, org, name, prefix, hash, providers, rpm, created_at, created_by, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&id)
        .bind(org.as_str())
        .bind(name)
        .bind(&prefix)
        .bind(token_hash(t).to_vec())
        .bind(ids.join(","))
        .bind(rpm)
        .bind(Millis::now().0)
        .bind(actor)
        .bind(expires_at.map(|m| m.0))
        .execute(&mut *tx)
        .await?;
        self.append_event(
            &mut tx,
            NewEvent::new(
                actor,
                Category::SecretManagement,
                "create",
                format!("gateway_token:{id}"),
            )
            .org(Some(org.as_str()))
            .details(json!({ "name": name, "prefix": prefix, "providers": ids, "rpm": rpm })),
        )
        .await?;
        self.commit(tx, "gateway token", &id).await?;
        Ok((token, self.get_gateway_token(&id).await?))
    }

    /// One gateway token.
    pub async fn get_gateway_token(&self, id: &str) -> Result<GatewayTokenView, VaultError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM gateway_tokens WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.inner.pool)
        .await?
        .ok_or_else(|| VaultError::NotFound(format!("gateway token {id}")))?;
        view(&row)
    }

    /// Gateway tokens, optionally of one organization.
    pub async fn list_gateway_tokens(
        &self,
        org: Option<&OrgId>,
    ) -> Result<Vec<GatewayTokenView>, VaultError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM gateway_tokens WHERE ($1 = '*' OR org = $1) ORDER BY created_at, id"
        )))
        .bind(org.map_or("*", OrgId::as_str))
        .fetch_all(&self.inner.pool)
        .await?;
        rows.iter().map(view).collect()
    }

    /// Changes what a gateway token may do: the models it may ask for (`Some(vec![])`: any),
    /// its requests and tokens per minute (`Some(None)`: no limit). Audited.
    pub async fn update_gateway_token(
        &self,
        id: &str,
        models: Option<Vec<String>>,
        rpm: Option<Option<i64>>,
        tpm: Option<Option<i64>>,
        actor: &str,
    ) -> Result<GatewayTokenView, VaultError> {
        let current = self.get_gateway_token(id).await?;
        if let Some(m) = &models {
            check_models(m)?;
        }
        for (what, v) in [("rpm", rpm.flatten()), ("tpm", tpm.flatten())] {
            if v.is_some_and(|r| !(1..=1_000_000_000).contains(&r)) {
                return Err(VaultError::InvalidInput(format!(
                    "{what} must be between 1 and 1000000000"
                )));
            }
        }
        let models = models.unwrap_or_else(|| current.models.clone());
        let rpm = rpm.unwrap_or(current.rpm);
        let tpm = tpm.unwrap_or(current.tpm);
        let mut tx = self.begin_write().await?;
        sqlx::query("UPDATE gateway_tokens SET models = $1, rpm = $2, tpm = $3 WHERE id = $4")
            .bind(models.join(","))
            .bind(rpm)
            .bind(tpm)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        self.append_event(
            &mut tx,
            NewEvent::new(
                actor,
                Category::SecretManagement,
                "update",
                format!("gateway_token:{id}"),
            )
            .org(Some(current.org.as_str()))
            .details(json!({ "name": current.name, "models": models, "rpm": rpm, "tpm": tpm })),
        )
        .await?;
        self.commit(tx, "gateway token", id).await?;
        // Checked tokens are cached with what they may do: look them up again.
        self.changed(Change::TokenRevoked).await;
        self.get_gateway_token(id).await
    }

    /// Revokes a gateway token.
    pub async fn revoke_gateway_token(
        &self,
        id: &str,
        actor: &str,
    ) -> Result<GatewayTokenView, VaultError> {
        let current = self.get_gateway_token(id).await?;
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "UPDATE gateway_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
        )
        .bind(Millis::now().0)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        self.append_event(
            &mut tx,
            NewEvent::new(
                actor,
                Category::SecretManagement,
                "revoke",
                format!("gateway_token:{id}"),
            )
            .org(Some(current.org.as_str()))
            .details(json!({ "name": current.name })),
        )
        .await?;
        self.commit(tx, "gateway token", id).await?;
        self.changed(Change::TokenRevoked).await;
        self.get_gateway_token(id).await
    }

    /// Checks a gateway token: `None` when unknown, revoked or expired.
    #[tracing::instrument(name = "store.authenticate_gateway", level = "info", skip_all)]
    pub async fn authenticate_gateway(
        &self,
        token: &str,
    ) -> Result<Option<GatewayTokenView>, VaultError> {
        let found = self.row_for_token("gateway_tokens", COLUMNS, token).await;
        if let Err(e) = &found {
            self.note(e);
        }
        let Some(row) = found? else {
            return Ok(None);
        };
        let t = view(&row)?;
        if !t.state.is_live() {
            return Ok(None);
        }
        Ok(Some(t))
    }
}

#[cfg(test)]
mod tests {
    use super::glob;

    #[test]
    fn model_patterns() {
        for (p, t, want) in [
            ("gpt-4o", "gpt-4o", true),
            ("gpt-4o", "gpt-4o-mini", false),
            ("gpt-4o*", "gpt-4o-mini", true),
            ("gpt-4o*", "gpt-4", false),
            ("*", "anything", true),
            ("claude-*-4*", "claude-sonnet-4-20250514", true),
            ("claude-*-4*", "claude-3-haiku", false),
            ("*mini", "gpt-4o-mini", true),
            ("a*a", "a", false),
            ("a*a", "aa", true),
        ] {
            assert_eq!(glob(p, t), want, "{p} ~ {t}");
        }
    }
}
