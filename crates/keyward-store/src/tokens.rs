//! API tokens: random bearer tokens with a role, stored only as hashes.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use keyward_core::audit::{Category, NewEvent, Outcome};
use keyward_core::token::TokenState;
use keyward_core::{Millis, OrgId};
use secrecy::{ExposeSecret as _, SecretString};
use serde::Serialize;
use serde_json::json;
use sha2::{Digest as _, Sha256};
use sqlx::Row;
use sqlx::any::AnyRow;
use subtle::ConstantTimeEq as _;

use crate::changes::Change;
use crate::{Vault, VaultError, new_id};

/// The prefix every API token starts with, so that a leaked one is recognisable (and secret
/// scanners can be taught it).
pub const API_TOKEN_PREFIX: &str = keyward_core::secret_like::API_TOKEN_PREFIX;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything, in every organization.
    Admin,
    /// One organization: manage its credentials, variables and gateway tokens.
    OrgAdmin,
    /// One organization: masked reads.
    Viewer,
    /// One organization: resolve secrets, nothing else.
    Resolver,
}

impl Role {
    /// The role's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::OrgAdmin => "org_admin",
            Role::Viewer => "viewer",
            Role::Resolver => "resolver",
        }
    }
}

impl Role {
    /// The role's name with its article, for messages ("an org_admin", "a viewer").
    pub fn a_name(self) -> String {
        keyward_core::with_article(self.as_str())
    }
}

impl FromStr for Role {
    type Err = VaultError;
    fn from_str(s: &str) -> Result<Self, VaultError> {
        match s {
            "admin" => Ok(Role::Admin),
            "org_admin" => Ok(Role::OrgAdmin),
            "viewer" => Ok(Role::Viewer),
            "resolver" => Ok(Role::Resolver),
            _ => Err(VaultError::InvalidInput(format!(
                "unknown role {}; use admin, org_admin, viewer or resolver",
                keyward_core::secret_like::shown(s)
            ))),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One role a caller holds: in one organization, or (admins) in none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RoleGrant {
    /// The role.
    pub role: Role,
    /// Its organization; `None` for admins.
    pub org: Option<OrgId>,
}

impl fmt::Display for RoleGrant {
    /// `admin`, `viewer of acme`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.org {
            Some(o) => write!(f, "{} of {o}", self.role),
            None => write!(f, "{}", self.role),
        }
    }
}

/// A person signed in through single sign-on: who the identity provider says they are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Person {
    /// The identity provider (`iss`).
    pub issuer: String,
    /// Their subject there (`sub`).
    pub subject: String,
    /// Their email, when the provider gives one.
    pub email: Option<String>,
}

/// An authenticated caller: an API token, a workload's token, or a person signed in through
/// single sign-on. What it may do is the union of its grants (`keyward_server::access`
/// decides, and nothing else).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Principal {
    /// The caller's id: a token's id, `workload:RULE:SUB`, `jwt:KID:SUB`, or for a person
    /// `sso:` and a digest of issuer and subject.
    pub token_id: String,
    /// The token's name, the workload's subject, or the person's email.
    pub name: String,
    /// What it holds; never empty.
    pub grants: Vec<RoleGrant>,
    /// The person, for a single sign-on session.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub person: Option<Person>,
}

impl Principal {
    /// A caller of one role (a token, a workload).
    pub fn single(
        token_id: impl Into<String>,
        name: impl Into<String>,
        role: Role,
        org: Option<OrgId>,
    ) -> Self {
        Principal {
            token_id: token_id.into(),
            name: name.into(),
            grants: vec![RoleGrant { role, org }],
            person: None,
        }
    }

    /// The actor the audit log records: `token:ID` for tokens and workloads, `EMAIL (sso)`
    /// for a person (the issuer and subject go in the event's details).
    pub fn actor(&self) -> String {
        match &self.person {
            Some(p) => crate::actor::person_actor(p),
            None => format!("token:{}", self.token_id),
        }
    }

    /// Whether it holds `role` anywhere.
    pub fn holds(&self, role: Role) -> bool {
        self.grants.iter().any(|g| g.role == role)
    }

    /// The one organization all its grants are in, if they are all in one (an admin grant is
    /// in none): what a page that names no organization shows.
    pub fn home_org(&self) -> Option<&OrgId> {
        let first = self.grants.first()?.org.as_ref()?;
        self.grants
            .iter()
            .all(|g| g.org.as_ref() == Some(first))
            .then_some(first)
    }

    /// Its grants as people read them: `admin`, `org_admin of acme, viewer of globex`.
    pub fn describe(&self) -> String {
        self.grants
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A token as listings show it: never the token, only its first characters.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenView {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// Organization (none for admins).
    pub org: Option<OrgId>,
    /// The token's first characters, to recognise it.
    pub prefix: String,
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

/// The stored form of a token: SHA-256 (tokens are 256 random bits; a slow hash buys nothing).
pub(crate) fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// A new token: `prefix` and 256 random bits, base64url.
pub(crate) fn generate_token(prefix: &str) -> Result<SecretString, VaultError> {
    let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
    keyward_crypto::fill_random(bytes.as_mut())?;
    Ok(SecretString::from(format!(
        "{prefix}{}",
        URL_SAFE_NO_PAD.encode(bytes.as_ref())
    )))
}

pub(crate) const COLUMNS: &str =
    "id, name, role, org, prefix, created_at, created_by, expires_at, revoked_at, last_used_at";

pub(crate) fn view(row: &AnyRow) -> Result<TokenView, VaultError> {
    let role: String = row.try_get("role")?;
    let org: String = row.try_get("org")?;
    let expires_at = row.try_get::<Option<i64>, _>("expires_at")?.map(Millis);
    let revoked_at = row.try_get::<Option<i64>, _>("revoked_at")?.map(Millis);
    Ok(TokenView {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        role: role.parse()?,
        org: if org.is_empty() {
            None
        } else {
            Some(OrgId::from_stored(&org)?)
        },
        prefix: row.try_get("prefix")?,
        created_at: Millis(row.try_get("created_at")?),
        created_by: row.try_get("created_by")?,
        expires_at,
        revoked_at,
        last_used_at: row.try_get::<Option<i64>, _>("last_used_at")?.map(Millis),
        state: TokenState::of(revoked_at, expires_at, Millis::now()),
    })
}

impl Vault {
    /// Creates an API token; returns it (shown once) with its view. `org` is required for every
    /// role but `admin`, and refused for `admin`.
    pub async fn create_token(
        &self,
        name: &str,
        role: Role,
        org: Option<&OrgId>,
        expires_at: Option<Millis>,
        actor: &str,
    ) -> Result<(SecretString, TokenView), VaultError> {
        let token = generate_token(API_TOKEN_PREFIX)?;
        self.insert_token(name, role, org, expires_at, &token, actor)
            .await
            .map(|view| (token, view))
    }

    /// Stores a token chosen by the operator (`KEYWARD_ADMIN_TOKEN`), with the same checks.
    pub async fn import_token(
        &self,
        name: &str,
        role: Role,
        org: Option<&OrgId>,
        token: &SecretString,
        actor: &str,
    ) -> Result<TokenView, VaultError> {
        let t = token.expose_secret();
        if t.len() < 32 || t.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(VaultError::InvalidInput(
                "a token must be at least 32 characters without spaces".into(),
            ));
        }
        self.insert_token(name, role, org, None, token, actor).await
    }

    async fn insert_token(
        &self,
        name: &str,
        role: Role,
        org: Option<&OrgId>,
        expires_at: Option<Millis>,
        token: &SecretString,
        actor: &str,
    ) -> Result<TokenView, VaultError> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
            return Err(VaultError::InvalidInput(
                "a token name has 1 to 100 printable characters".into(),
            ));
        }
        keyward_core::secret_like::check_public("token name", name)?;
        self.refuse_own_keys([name])?;
        match (role, org) {
            (Role::Admin, Some(_)) => {
                return Err(VaultError::InvalidInput(
                    "an admin token covers every organization; give no organization".into(),
                ));
            }
            (Role::Admin, None) => {}
            (_, None) => {
                return Err(VaultError::InvalidInput(format!(
                    "{} token belongs to one organization; name it",
                    role.a_name()
                )));
            }
            (_, Some(o)) => self.require_org(o).await?,
        }
        let id = new_id();
        let t = token.expose_secret();
        let prefix: String = t.chars().take(API_TOKEN_PREFIX.len() + 4).collect();
        let now = Millis::now();
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO api_tokens (id, name, role, org, prefix, hash, created_at, created_by, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&id)
        .bind(name)
        .bind(role.as_str())
        .bind(org.map_or("", OrgId::as_str))
        .bind(&prefix)
        .bind(token_hash(t).to_vec())
        .bind(now.0)
        .bind(actor)
        .bind(expires_at.map(|m| m.0))
        .execute(&mut *tx)
        .await
        .map_err(|e| crate::map_unique(e, || "that token".to_owned()))?;
        self.append_event(
            &mut tx,
            NewEvent::new(
                actor,
                Category::SecretManagement,
                "create",
                format!("token:{id}"),
            )
            .org(org.map(OrgId::as_str))
            .details(json!({ "name": name, "role": role.as_str(), "prefix": prefix })),
        )
        .await?;
        self.commit(tx, "token", &id).await?;
        self.get_token(&id).await
    }

    /// One token.
    pub async fn get_token(&self, id: &str) -> Result<TokenView, VaultError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM api_tokens WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.inner.pool)
        .await?
        .ok_or_else(|| VaultError::NotFound(format!("token {id}")))?;
        view(&row)
    }

    /// Tokens, optionally of one organization.
    pub async fn list_tokens(&self, org: Option<&OrgId>) -> Result<Vec<TokenView>, VaultError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM api_tokens WHERE ($1 = '*' OR org = $1) ORDER BY created_at, id"
        )))
        .bind(org.map_or("*", OrgId::as_str))
        .fetch_all(&self.inner.pool)
        .await?;
        rows.iter().map(view).collect()
    }

    /// Whether any unrevoked admin token exists (start-up creates one otherwise).
    pub async fn has_admin_token(&self) -> Result<bool, VaultError> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM api_tokens WHERE role = 'admin' AND revoked_at IS NULL",
        )
        .fetch_one(&self.inner.pool)
        .await?;
        Ok(row.try_get::<i64, _>("n")? > 0)
    }

    /// Revokes a token; it stops working at once.
    pub async fn revoke_token(&self, id: &str, actor: &str) -> Result<TokenView, VaultError> {
        let current = self.get_token(id).await?;
        let mut tx = self.begin_write().await?;
        let now = Millis::now().0;
        // The last working admin token stays: without one, nobody can reach the API to make
        // another (only the CLI on the server's machine could).
        if current.role == Role::Admin && current.revoked_at.is_none() {
            let others: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM api_tokens WHERE role = 'admin' AND id <> $1 \
                 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $2)",
            )
            .bind(id)
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
            if others == 0 {
                return Err(VaultError::InvalidInput(
                    "this is the last admin token; create another admin token before revoking it"
                        .into(),
                ));
            }
        }
        sqlx::query("UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        self.append_event(
            &mut tx,
            NewEvent::new(
                actor,
                Category::SecretManagement,
                "revoke",
                format!("token:{id}"),
            )
            .org(current.org.as_ref().map(OrgId::as_str))
            .details(json!({ "name": current.name, "role": current.role.as_str() })),
        )
        .await?;
        self.commit(tx, "token", id).await?;
        self.changed(Change::TokenRevoked).await;
        self.get_token(id).await
    }

    /// Checks a bearer token. `Ok(None)` for a token that is unknown, revoked or expired (the
    /// caller answers 401 and audits the failure); the stored hash is compared in constant time.
    ///
    /// A token that checked out is remembered (by its hash) for the resolution cache's time to
    /// live, as long as nothing was written since: a revocation through this process (or,
    /// listening on PostgreSQL, through another) takes effect at once, one made by another
    /// process on SQLite within that time, as a deactivated key does.
    #[tracing::instrument(name = "store.authenticate", level = "info", skip_all)]
    pub async fn authenticate(&self, token: &str) -> Result<Option<Principal>, VaultError> {
        let digest = token_hash(token);
        if let Some(p) = self.inner.principals.get(&digest, &self.inner.cache) {
            return Ok(Some(p));
        }
        let generation = self.token_generation();
        // When the check began: a change announced after that makes it stale.
        let started = std::time::Instant::now();
        let found = self.row_for_token("api_tokens", COLUMNS, token).await;
        if let Err(e) = &found {
            self.note(e);
        }
        let Some(row) = found? else {
            return Ok(None);
        };
        let t = view(&row)?;
        let now = Millis::now();
        if !t.state.is_live() {
            return Ok(None);
        }
        // Bookkeeping only, to the minute: a write per request would double the writes of a
        // busy server. A failure here must not lock anyone out.
        if t.last_used_at.is_none_or(|at| now.0 - at.0 >= 60_000) {
            let _ = sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE id = $2")
                .bind(now.0)
                .bind(&t.id)
                .execute(&self.inner.pool)
                .await;
        }
        let principal = Principal::single(t.id, t.name, t.role, t.org);
        self.inner.principals.insert(
            digest,
            CheckedToken {
                principal: principal.clone(),
                expires_at: t.expires_at,
                checked: started,
            },
            generation,
            &self.inner.cache,
        );
        Ok(Some(principal))
    }

    /// The row of `table` whose stored hash is the token's, compared in constant time (shared
    /// by API and gateway tokens).
    pub(crate) async fn row_for_token(
        &self,
        table: &str,
        columns: &str,
        token: &str,
    ) -> Result<Option<AnyRow>, VaultError> {
        let digest = token_hash(token);
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {columns}, hash FROM {table} WHERE hash = $1"
        )))
        .bind(digest.to_vec())
        .fetch_optional(&self.inner.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let stored: Vec<u8> = row.try_get("hash")?;
        Ok(bool::from(stored.as_slice().ct_eq(&digest)).then_some(row))
    }

    /// Records a failed authentication (the operation it guarded is refused either way).
    pub async fn record_auth_failure(
        &self,
        from: &str,
        surface: &str,
        why: &str,
    ) -> Result<(), VaultError> {
        self.record(
            NewEvent::new(
                &format!("anonymous:{from}"),
                Category::SecretAccess,
                "authenticate",
                surface.to_owned(),
            )
            .outcome(Outcome::Failure)
            .details(json!({ "reason": why })),
        )
        .await
    }
}

/// API tokens that checked out recently, by hash, for [`Vault::authenticate`].
#[derive(Debug, Default)]
pub(crate) struct PrincipalCache {
    inner: std::sync::Mutex<CheckedTokens>,
}

#[derive(Debug, Default)]
struct CheckedTokens {
    /// The vault generation the entries were checked under.
    generation: u64,
    map: std::collections::HashMap<[u8; 32], CheckedToken>,
}

#[derive(Debug)]
struct CheckedToken {
    principal: Principal,
    expires_at: Option<Millis>,
    checked: std::time::Instant,
}

impl PrincipalCache {
    /// The principal of a token checked within the cache's time to live, under the current
    /// generation, after the last interruption of change notifications, and not expired.
    fn get(&self, digest: &[u8; 32], cache: &crate::cache::ResolveCache) -> Option<Principal> {
        let ttl = cache.ttl();
        if ttl.is_zero() {
            return None;
        }
        let fresh_after = cache.fresh_after();
        let tokens = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if tokens.generation != cache.token_generation() {
            return None;
        }
        let t = tokens.map.get(digest)?;
        let good = t.checked.elapsed() < ttl
            && fresh_after.is_none_or(|after| t.checked > after)
            && TokenState::of(None, t.expires_at, Millis::now()).is_live();
        good.then(|| t.principal.clone())
    }

    /// Remembers a token checked under `generation`, unless something changed meanwhile.
    fn insert(
        &self,
        digest: [u8; 32],
        token: CheckedToken,
        generation: u64,
        cache: &crate::cache::ResolveCache,
    ) {
        if cache.ttl().is_zero() || cache.token_generation() != generation {
            return;
        }
        let mut tokens = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if tokens.generation != generation || tokens.map.len() >= 10_000 {
            tokens.map.clear();
            tokens.generation = generation;
        }
        tokens.map.insert(digest, token);
    }
}
