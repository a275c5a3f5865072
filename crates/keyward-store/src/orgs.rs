//! Organizations.

use keyward_core::audit::{Category, NewEvent};
use keyward_core::resolve::Strategy;
use keyward_core::{Millis, OrgId};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::Row;

use crate::changes::Change;
use crate::{Vault, VaultError, map_unique};

/// An organization.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Organization {
    /// Slug.
    pub id: OrgId,
    /// Display name.
    pub name: String,
    /// Creation time.
    pub created_at: Millis,
    /// Who created it.
    pub created_by: String,
    /// How it picks among several active credentials of one provider.
    #[serde(default)]
    pub strategy: Strategy,
    /// Whether its resolutions may fall back to the process environment when it has no active
    /// credential: `true`, `false`, or `null` for the default (on for the CLI and library, the
    /// server's `--env-fallback` for a server).
    #[serde(default)]
    pub env_fallback: Option<bool>,
}

fn org_from_row(r: &sqlx::any::AnyRow) -> Result<Organization, VaultError> {
    let id: String = r.try_get("id")?;
    let strategy: String = r.try_get("strategy")?;
    Ok(Organization {
        id: OrgId::from_stored(&id)?,
        name: r.try_get("name")?,
        created_at: Millis(r.try_get("created_at")?),
        created_by: r.try_get("created_by")?,
        strategy: strategy.parse()?,
        env_fallback: r.try_get::<Option<i64>, _>("env_fallback")?.map(|v| v != 0),
    })
}

const COLUMNS: &str = "id, name, created_at, created_by, strategy, env_fallback";

impl Vault {
    /// Creates an organization.
    pub async fn create_org(
        &self,
        id: &OrgId,
        name: Option<&str>,
        actor: &str,
    ) -> Result<Organization, VaultError> {
        let name = name.unwrap_or(id.as_str()).trim();
        if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
            return Err(VaultError::InvalidInput(
                "an organization name has 1 to 200 printable characters".into(),
            ));
        }
        keyward_core::secret_like::check_public("organization name", name)?;
        self.refuse_own_keys([name])?;
        let org = Organization {
            id: id.clone(),
            name: name.to_owned(),
            created_at: Millis::now(),
            created_by: actor.to_owned(),
            strategy: Strategy::Priority,
            env_fallback: None,
        };
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO organizations (id, name, created_at, created_by) VALUES ($1, $2, $3, $4)",
        )
        .bind(org.id.as_str())
        .bind(&org.name)
        .bind(org.created_at.0)
        .bind(actor)
        .execute(&mut *tx)
        .await
        .map_err(|e| map_unique(e, || format!("organization '{id}'")))?;
        self.append_event(
            &mut tx,
            NewEvent::new(
                actor,
                Category::SecretManagement,
                "create",
                format!("org:{id}"),
            )
            .org(Some(id.as_str()))
            .details(json!({ "name": org.name })),
        )
        .await?;
        self.commit(tx, "organization", id.as_str()).await?;
        Ok(org)
    }

    /// All organizations, by id.
    pub async fn list_orgs(&self) -> Result<Vec<Organization>, VaultError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM organizations ORDER BY id"
        )))
        .fetch_all(&self.inner.pool)
        .await?;
        rows.iter().map(org_from_row).collect()
    }

    /// One organization.
    pub async fn get_org(&self, id: &OrgId) -> Result<Organization, VaultError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM organizations WHERE id = $1"
        )))
        .bind(id.as_str())
        .fetch_optional(&self.inner.pool)
        .await?
        .ok_or_else(|| VaultError::NotFound(format!("organization '{id}'")))?;
        org_from_row(&row)
    }

    /// Sets how the organization picks among several active credentials of one provider (for
    /// resolutions that do not say, and for the gateway). Audited.
    pub async fn set_org_strategy(
        &self,
        id: &OrgId,
        strategy: Strategy,
        actor: &str,
    ) -> Result<Organization, VaultError> {
        let before = self.get_org(id).await?;
        let change = sqlx::query("UPDATE organizations SET strategy = $1 WHERE id = $2")
            .bind(strategy.as_str())
            .bind(id.as_str());
        let details = json!({ "strategy": strategy.as_str(), "was": before.strategy.as_str() });
        // Another order of the same keys: stale, not withdrawn.
        self.update_org(id, change, details, false, actor).await
    }

    /// Sets whether the organization's resolutions may fall back to the process environment
    /// (`None`: the caller's default). On a server this hands the server's own variables to
    /// the organization, so the API lets only admins change it. Audited.
    pub async fn set_org_env_fallback(
        &self,
        id: &OrgId,
        env_fallback: Option<bool>,
        actor: &str,
    ) -> Result<Organization, VaultError> {
        let before = self.get_org(id).await?;
        let change = sqlx::query("UPDATE organizations SET env_fallback = $1 WHERE id = $2")
            .bind(env_fallback.map(i64::from))
            .bind(id.as_str());
        let details = json!({ "env_fallback": env_fallback, "was": before.env_fallback });
        // Turning the fallback off withdraws the environment's keys.
        let withdrawn = env_fallback != Some(true) && before.env_fallback != env_fallback;
        self.update_org(id, change, details, withdrawn, actor).await
    }

    /// Runs `change` (an UPDATE of the organization) and audits it with `details`, in one
    /// transaction; the caches start over, since the settings live in them.
    async fn update_org(
        &self,
        id: &OrgId,
        change: sqlx::query::Query<'_, sqlx::Any, sqlx::any::AnyArguments>,
        details: serde_json::Value,
        withdrawn: bool,
        actor: &str,
    ) -> Result<Organization, VaultError> {
        let mut tx = self.begin_write().await?;
        change.execute(&mut *tx).await?;
        self.append_event(
            &mut tx,
            NewEvent::new(
                actor,
                Category::SecretManagement,
                "update",
                format!("org:{id}"),
            )
            .org(Some(id.as_str()))
            .details(details),
        )
        .await?;
        self.commit(tx, "organization", id.as_str()).await?;
        self.changed(Change::keys(id.as_str(), None, withdrawn))
            .await;
        self.get_org(id).await
    }

    /// Fails with `NotFound` unless the organization exists.
    pub async fn require_org(&self, id: &OrgId) -> Result<(), VaultError> {
        let found = sqlx::query("SELECT 1 AS one FROM organizations WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(&self.inner.pool)
            .await?;
        match found {
            Some(_) => Ok(()),
            None => Err(VaultError::NotFound(format!("organization '{id}'"))),
        }
    }
}
