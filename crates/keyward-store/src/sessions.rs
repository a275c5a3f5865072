//! Dashboard sessions. Signing in checks an API token once; the browser then holds only a
//! random session id (`kws_...`, 256 bits), of which the store keeps the SHA-256 hash beside
//! the token's id. A session ends on sign-out, after its idle limit, at its end of life, and at
//! once when the token behind it is revoked or expires: every lookup checks the token too.
//! Replicas share sessions, since they live in the store.

use std::time::Duration;

use keyward_core::Millis;
use keyward_core::audit::{Category, NewEvent, Outcome};
use keyward_core::token::TokenState;
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::json;
use sqlx::Row as _;

use crate::tokens::{COLUMNS, generate_token, token_hash, view};
use crate::{Principal, Role, Vault, VaultError};

/// How long a session lives.
#[derive(Debug, Clone, Copy)]
pub struct SessionLimits {
    /// Ended after this long without a request.
    pub idle: Duration,
    /// Ended this long after sign-in, whatever happens.
    pub max: Duration,
}

impl Default for SessionLimits {
    fn default() -> Self {
        Self {
            idle: Duration::from_secs(30 * 60),
            max: Duration::from_secs(12 * 60 * 60),
        }
    }
}

/// A live session: who it is, and when it ends at the latest.
#[derive(Debug, Clone)]
pub struct Session {
    /// The token that signed in, as the API sees it.
    pub principal: Principal,
    /// When it began.
    pub created_at: Millis,
    /// When it ends whatever happens.
    pub expires_at: Millis,
}

/// A last-seen time is written at most this often (a write per page view buys nothing).
const TOUCH_EVERY_MS: i64 = 30_000;

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The live console sessions one token keeps: a sign-in beyond them ends the oldest.
pub const SESSIONS_PER_TOKEN: usize = 16;

impl Vault {
    /// Signs in with an API token: a new session id (shown to the browser once, as its
    /// cookie) and the session, or `Ok(None)` for a token that is unknown, revoked or expired.
    /// A resolver token is refused: it is for machines. Audited either way, as `from`.
    pub async fn create_ui_session(
        &self,
        token: &str,
        limits: SessionLimits,
        from: &str,
    ) -> Result<Option<(SecretString, Session)>, VaultError> {
        let Some(principal) = self.authenticate(token).await? else {
            self.record_auth_failure(from, "ui", "unknown, revoked or expired token")
                .await?;
            return Ok(None);
        };
        if principal.role == Role::Resolver {
            self.record_auth_failure(from, "ui", "a resolver token cannot sign in")
                .await?;
            return Err(VaultError::InvalidInput(
                "a resolver token is for programs; sign in with an admin, org_admin or viewer token"
                    .into(),
            ));
        }
        let id = generate_token(keyward_core::secret_like::SESSION_PREFIX)?;
        let now = Millis::now();
        let expires_at = Millis(now.0.saturating_add(millis(limits.max)));
        let mut tx = self.begin_write().await?;
        // What sign-ins leave behind is bounded: ended sessions go (they were otherwise removed
        // only when their id came back), and a token keeps its newest sessions only, so that
        // a token signing in in a loop cannot grow the table.
        sqlx::query(
            "DELETE FROM ui_sessions WHERE expires_at <= $1 OR last_seen_at + idle_ms <= $1",
        )
        .bind(now.0)
        .execute(&mut *tx)
        .await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM ui_sessions WHERE token_id = $1 AND hash NOT IN \
             (SELECT hash FROM ui_sessions WHERE token_id = $1 \
              ORDER BY created_at DESC, hash LIMIT {})",
            SESSIONS_PER_TOKEN - 1
        )))
        .bind(&principal.token_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO ui_sessions (hash, token_id, created_at, last_seen_at, idle_ms, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(token_hash(id.expose_secret()).to_vec())
        .bind(&principal.token_id)
        .bind(now.0)
        .bind(now.0)
        .bind(millis(limits.idle))
        .bind(expires_at.0)
        .execute(&mut *tx)
        .await?;
        self.append_event(
            &mut tx,
            NewEvent::new(
                &principal.actor(),
                Category::SecretAccess,
                "ui_sign_in",
                format!("token:{}", principal.token_id),
            )
            .org(principal.org.as_ref().map(keyward_core::OrgId::as_str))
            .details(json!({ "from": from, "role": principal.role.as_str() })),
        )
        .await?;
        self.commit(tx, "session", &principal.token_id).await?;
        Ok(Some((
            id,
            Session {
                principal,
                created_at: now,
                expires_at,
            },
        )))
    }

    /// The live session of a browser's session id, or `None` when there is none: unknown,
    /// signed out, idle too long, past its end, or its token revoked or expired (an ended
    /// session's row is removed as it is found).
    pub async fn ui_session(&self, id: &str) -> Result<Option<Session>, VaultError> {
        self.ui_session_at(id, Millis::now()).await
    }

    /// [`Vault::ui_session`] as seen at `now` (the clock injected, for tests of the limits; a
    /// request in the session at `now` counts as its last use).
    pub async fn ui_session_at(
        &self,
        id: &str,
        now: Millis,
    ) -> Result<Option<Session>, VaultError> {
        let hash = token_hash(id).to_vec();
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT s.created_at AS s_created_at, s.last_seen_at, s.idle_ms, s.expires_at AS s_expires_at, \
             {} FROM ui_sessions s JOIN api_tokens t ON t.id = s.token_id WHERE s.hash = $1",
            COLUMNS
                .split(", ")
                .map(|c| format!("t.{c}"))
                .collect::<Vec<_>>()
                .join(", ")
        )))
        .bind(&hash)
        .fetch_optional(&self.inner.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let token = view(&row)?;
        let now = now.0;
        let last_seen: i64 = row.try_get("last_seen_at")?;
        let idle: i64 = row.try_get("idle_ms")?;
        let expires_at: i64 = row.try_get("s_expires_at")?;
        let token_dead = !TokenState::of(token.revoked_at, token.expires_at, Millis(now)).is_live();
        if token_dead || now >= expires_at || now.saturating_sub(last_seen) > idle {
            let _ = sqlx::query("DELETE FROM ui_sessions WHERE hash = $1")
                .bind(&hash)
                .execute(&self.inner.pool)
                .await;
            return Ok(None);
        }
        if now - last_seen >= TOUCH_EVERY_MS {
            let _ = sqlx::query("UPDATE ui_sessions SET last_seen_at = $1 WHERE hash = $2")
                .bind(now)
                .bind(&hash)
                .execute(&self.inner.pool)
                .await;
        }
        Ok(Some(Session {
            principal: Principal {
                token_id: token.id,
                name: token.name,
                role: token.role,
                org: token.org,
            },
            created_at: Millis(row.try_get("s_created_at")?),
            expires_at: Millis(expires_at),
        }))
    }

    /// Signs a session out (server side: the id stops working everywhere). Audited when there
    /// was one.
    pub async fn end_ui_session(&self, id: &str) -> Result<(), VaultError> {
        let Some(session) = self.ui_session(id).await? else {
            return Ok(());
        };
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM ui_sessions WHERE hash = $1")
            .bind(token_hash(id).to_vec())
            .execute(&mut *tx)
            .await?;
        let p = &session.principal;
        self.append_event(
            &mut tx,
            NewEvent::new(
                &p.actor(),
                Category::SecretAccess,
                "ui_sign_out",
                format!("token:{}", p.token_id),
            )
            .org(p.org.as_ref().map(keyward_core::OrgId::as_str))
            .outcome(Outcome::Success),
        )
        .await?;
        self.commit(tx, "session", &p.token_id).await
    }
}
