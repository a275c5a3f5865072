//! Dashboard sessions. Signing in checks an API token once, or a person's ID token from the
//! identity provider (single sign-on); the browser then holds only a random session id
//! (`kws_...`, 256 bits), of which the store keeps the SHA-256 hash beside the token's id or
//! the person and the grants the rules gave them at that sign-in. A session ends on sign-out,
//! after its idle limit, at its end of life, when an admin ends it, and at once when the token
//! behind it is revoked or expires: every lookup checks the token too. Replicas share
//! sessions, since they live in the store. Sign-ins under way (`sso_logins`) live here too, so
//! that the callback may reach any replica.

use std::time::Duration;

use keyward_core::Millis;
use keyward_core::audit::{Category, NewEvent, Outcome};
use keyward_core::token::TokenState;
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest as _, Sha256};
use sqlx::Row as _;

use crate::tokens::{COLUMNS, generate_token, token_hash, view};
use crate::{Person, Principal, Role, RoleGrant, Vault, VaultError};

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
        if principal.holds(Role::Resolver) {
            self.record_auth_failure(from, "ui", "a resolver token cannot sign in")
                .await?;
            return Err(VaultError::InvalidInput(
                "a resolver token is for programs; sign in with an admin, org_admin or viewer token"
                    .into(),
            ));
        }
        let event = NewEvent::new(
            &principal.actor(),
            Category::SecretAccess,
            "ui_sign_in",
            format!("token:{}", principal.token_id),
        )
        .org(principal.home_org().map(keyward_core::OrgId::as_str))
        .details(json!({ "from": from, "role": principal.describe() }));
        self.insert_session(principal, None, limits, from, event)
            .await
            .map(Some)
    }

    /// Signs a person in (single sign-on): `grants` are what the operator's rules gave them
    /// for this sign-in, never empty. A new session id and the session; audited with the
    /// person as the actor, and their issuer and subject in the details.
    pub async fn create_sso_session(
        &self,
        person: Person,
        grants: Vec<RoleGrant>,
        limits: SessionLimits,
        from: &str,
    ) -> Result<(SecretString, Session), VaultError> {
        if grants.is_empty() {
            return Err(VaultError::InvalidInput(
                "a session needs at least one grant".into(),
            ));
        }
        let who = person.clone();
        let principal = Principal {
            token_id: person_id(&person),
            name: person
                .email
                .clone()
                .unwrap_or_else(|| person.subject.clone()),
            grants,
            person: Some(person),
        };
        let event = NewEvent::new(
            &principal.actor(),
            Category::SecretAccess,
            "ui_sign_in",
            "sso".to_owned(),
        )
        .org(principal.home_org().map(keyward_core::OrgId::as_str))
        .details(json!({
            "from": from,
            "issuer": who.issuer,
            "subject": who.subject,
            "role": principal.describe(),
        }));
        let stored = serde_json::to_string(&StoredPerson {
            person: who,
            name: principal.name.clone(),
            grants: principal.grants.clone(),
        })
        .map_err(|e| VaultError::InvalidInput(format!("a session's person: {e}")))?;
        self.insert_session(principal, Some(stored), limits, from, event)
            .await
    }

    /// Records a single sign-on the rules refused (no rule matched, or the provider's answer
    /// did not check out): the person, where known, as the actor.
    pub async fn record_sso_refusal(
        &self,
        person: Option<&Person>,
        from: &str,
        why: &str,
    ) -> Result<(), VaultError> {
        let actor = match person {
            Some(p) => crate::actor::person_actor(p),
            None => format!("anonymous:{from}"),
        };
        self.record(
            NewEvent::new(
                &actor,
                Category::SecretAccess,
                "ui_sign_in",
                "sso".to_owned(),
            )
            .outcome(Outcome::Failure)
            .details(json!({
                "from": from,
                "issuer": person.map(|p| p.issuer.as_str()),
                "subject": person.map(|p| p.subject.as_str()),
                "reason": why,
            })),
        )
        .await
    }

    async fn insert_session(
        &self,
        principal: Principal,
        person: Option<String>,
        limits: SessionLimits,
        from: &str,
        event: NewEvent,
    ) -> Result<(SecretString, Session), VaultError> {
        let id = generate_token(keyward_core::secret_like::SESSION_PREFIX)?;
        let now = Millis::now();
        let expires_at = Millis(now.0.saturating_add(millis(limits.max)));
        let mut tx = self.begin_write().await?;
        // What sign-ins leave behind is bounded: ended sessions go (they were otherwise removed
        // only when their id came back), and a token (or a person) keeps its newest sessions
        // only, so that signing in in a loop cannot grow the table.
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
            "INSERT INTO ui_sessions (hash, token_id, created_at, last_seen_at, idle_ms, expires_at, person, from_addr) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(token_hash(id.expose_secret()).to_vec())
        .bind(&principal.token_id)
        .bind(now.0)
        .bind(now.0)
        .bind(millis(limits.idle))
        .bind(expires_at.0)
        .bind(person)
        .bind(from)
        .execute(&mut *tx)
        .await?;
        self.append_event(&mut tx, event).await?;
        self.commit(tx, "session", &principal.token_id).await?;
        Ok((
            id,
            Session {
                principal,
                created_at: now,
                expires_at,
            },
        ))
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
             s.person, {} FROM ui_sessions s LEFT JOIN api_tokens t ON t.id = s.token_id WHERE s.hash = $1",
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
        let now = now.0;
        let last_seen: i64 = row.try_get("last_seen_at")?;
        let idle: i64 = row.try_get("idle_ms")?;
        let expires_at: i64 = row.try_get("s_expires_at")?;
        let person: Option<String> = row.try_get("person")?;
        // A person's session holds what the rules gave at sign-in; a token's is the token as it
        // is now (revoked or expired ends it). A row that is neither ends too.
        let principal = match person {
            Some(text) => serde_json::from_str::<StoredPerson>(&text)
                .ok()
                .filter(|p| !p.grants.is_empty())
                .map(|p| Principal {
                    token_id: person_id(&p.person),
                    name: p.name,
                    grants: p.grants,
                    person: Some(p.person),
                }),
            None => match row.try_get::<Option<String>, _>("id")? {
                Some(_) => {
                    let token = view(&row)?;
                    TokenState::of(token.revoked_at, token.expires_at, Millis(now))
                        .is_live()
                        .then(|| Principal::single(token.id, token.name, token.role, token.org))
                }
                None => None,
            },
        };
        let Some(principal) =
            principal.filter(|_| now < expires_at && now.saturating_sub(last_seen) <= idle)
        else {
            let _ = sqlx::query("DELETE FROM ui_sessions WHERE hash = $1")
                .bind(&hash)
                .execute(&self.inner.pool)
                .await;
            return Ok(None);
        };
        if now - last_seen >= TOUCH_EVERY_MS {
            let _ = sqlx::query("UPDATE ui_sessions SET last_seen_at = $1 WHERE hash = $2")
                .bind(now)
                .bind(&hash)
                .execute(&self.inner.pool)
                .await;
        }
        Ok(Some(Session {
            principal,
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
                target_of(p),
            )
            .org(p.home_org().map(keyward_core::OrgId::as_str))
            .outcome(Outcome::Success),
        )
        .await?;
        self.commit(tx, "session", &p.token_id).await
    }

    /// Every live console session, newest first (ended ones are left out): what an admin
    /// lists to end one.
    pub async fn list_ui_sessions(&self) -> Result<Vec<SessionView>, VaultError> {
        Ok(self
            .live_ui_sessions()
            .await?
            .into_iter()
            .map(|(_, view)| view)
            .collect())
    }

    /// The live sessions, each with its stored hash (which their handle is the start of).
    async fn live_ui_sessions(&self) -> Result<Vec<(Vec<u8>, SessionView)>, VaultError> {
        let now = Millis::now().0;
        let rows = sqlx::query(
            "SELECT s.hash, s.token_id, s.created_at, s.last_seen_at, s.idle_ms, s.expires_at, \
             s.person, s.from_addr, t.name, t.role, t.org, t.revoked_at, t.expires_at AS t_expires_at \
             FROM ui_sessions s LEFT JOIN api_tokens t ON t.id = s.token_id \
             WHERE s.expires_at > $1 AND s.last_seen_at + s.idle_ms > $1 \
             ORDER BY s.created_at DESC, s.hash",
        )
        .bind(now)
        .fetch_all(&self.inner.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let hash: Vec<u8> = row.try_get("hash")?;
            let last_seen: i64 = row.try_get("last_seen_at")?;
            let idle: i64 = row.try_get("idle_ms")?;
            let expires_at: i64 = row.try_get("expires_at")?;
            let person: Option<String> = row.try_get("person")?;
            let (actor, kind, grants, issuer) = match person {
                Some(text) => {
                    let Ok(p) = serde_json::from_str::<StoredPerson>(&text) else {
                        continue;
                    };
                    let principal = Principal {
                        token_id: String::new(),
                        name: p.name,
                        grants: p.grants,
                        person: Some(p.person),
                    };
                    let issuer = principal.person.as_ref().map(|p| p.issuer.clone());
                    (principal.actor(), "sso", principal.grants, issuer)
                }
                None => {
                    let token_id: String = row.try_get("token_id")?;
                    let Some(role) = row.try_get::<Option<String>, _>("role")? else {
                        continue;
                    };
                    let revoked = row.try_get::<Option<i64>, _>("revoked_at")?.map(Millis);
                    let ends = row.try_get::<Option<i64>, _>("t_expires_at")?.map(Millis);
                    if !TokenState::of(revoked, ends, Millis(now)).is_live() {
                        continue;
                    }
                    let org: Option<String> = row.try_get("org")?;
                    let grant = RoleGrant {
                        role: role.parse()?,
                        org: org
                            .filter(|o| !o.is_empty())
                            .map(|o| keyward_core::OrgId::new(&o))
                            .transpose()
                            .map_err(|e| VaultError::InvalidInput(e.to_string()))?,
                    };
                    (format!("token:{token_id}"), "token", vec![grant], None)
                }
            };
            let id = session_handle(&hash);
            out.push((
                hash,
                SessionView {
                    id,
                    actor,
                    kind: kind.to_owned(),
                    grants,
                    issuer,
                    from: row.try_get("from_addr")?,
                    created_at: Millis(row.try_get("created_at")?),
                    last_seen_at: Millis(last_seen),
                    ends_at: Millis(expires_at.min(last_seen.saturating_add(idle))),
                },
            ));
        }
        Ok(out)
    }

    /// Ends the session an admin's listing names by `handle` ([`SessionView::id`]), as
    /// `actor`: `false` when there is no such live session. Audited.
    pub async fn end_ui_session_by_handle(
        &self,
        handle: &str,
        actor: &str,
    ) -> Result<bool, VaultError> {
        if handle.len() != 16 || !handle.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(false);
        }
        let live = self.live_ui_sessions().await?;
        let Some((hash, found)) = live
            .into_iter()
            .find(|(_, s)| s.id.eq_ignore_ascii_case(handle))
        else {
            return Ok(false);
        };
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM ui_sessions WHERE hash = $1")
            .bind(&hash)
            .execute(&mut *tx)
            .await?;
        self.append_event(
            &mut tx,
            NewEvent::new(
                actor,
                Category::SecretAccess,
                "ui_session_end",
                format!("session:{}", found.id),
            )
            .details(json!({ "session_of": found.actor })),
        )
        .await?;
        self.commit(tx, "session", &found.id).await?;
        Ok(true)
    }

    /// Keeps a single sign-on under way: the hash of its `state`, its nonce and PKCE verifier,
    /// and where to go after, for `ttl`. Sign-ins that lapsed go, and at most
    /// [`SSO_LOGINS_KEPT`] are kept (the oldest go first): a flood of sign-in starts cannot
    /// grow the table.
    pub async fn begin_sso_login(
        &self,
        state: &str,
        nonce: &str,
        verifier: &str,
        return_to: &str,
        ttl: Duration,
    ) -> Result<(), VaultError> {
        let now = Millis::now().0;
        let mut tx = self.begin_write().await?;
        // Tidying reads the whole table: one start in 32 does it (a flood of starts would
        // otherwise pay for it at every one); between two, the table may hold a few dozen
        // rows more than the bound.
        let mut draw = [0u8; 1];
        keyward_crypto::fill_random(&mut draw)?;
        if draw[0] < 8 {
            sqlx::query("DELETE FROM sso_logins WHERE expires_at <= $1")
                .bind(now)
                .execute(&mut *tx)
                .await?;
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DELETE FROM sso_logins WHERE state_hash NOT IN \
                 (SELECT state_hash FROM sso_logins ORDER BY created_at DESC, state_hash LIMIT {})",
                SSO_LOGINS_KEPT - 1
            )))
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "INSERT INTO sso_logins (state_hash, nonce, verifier, return_to, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(token_hash(state).to_vec())
        .bind(nonce)
        .bind(verifier)
        .bind(return_to)
        .bind(now)
        .bind(now.saturating_add(millis(ttl)))
        .execute(&mut *tx)
        .await?;
        self.commit(tx, "sign-in", "sso").await
    }

    /// Takes the sign-in under way of `state` (it is gone after: one use), or `None` when there
    /// is none or it lapsed.
    pub async fn take_sso_login(&self, state: &str) -> Result<Option<SsoLogin>, VaultError> {
        let row = sqlx::query(
            "DELETE FROM sso_logins WHERE state_hash = $1 \
             RETURNING nonce, verifier, return_to, expires_at",
        )
        .bind(token_hash(state).to_vec())
        .fetch_optional(&self.inner.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let expires_at: i64 = row.try_get("expires_at")?;
        if Millis::now().0 >= expires_at {
            return Ok(None);
        }
        Ok(Some(SsoLogin {
            nonce: row.try_get("nonce")?,
            verifier: SecretString::from(row.try_get::<String, _>("verifier")?),
            return_to: row.try_get("return_to")?,
        }))
    }
}

/// The sign-ins under way kept at most.
pub const SSO_LOGINS_KEPT: usize = 10_000;

/// A single sign-on under way, taken at its callback.
#[derive(Debug)]
pub struct SsoLogin {
    /// The nonce the ID token must carry.
    pub nonce: String,
    /// The PKCE verifier the code exchange sends.
    pub verifier: SecretString,
    /// Where the console goes after (a path of its own).
    pub return_to: String,
}

/// A console session as an admin lists it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SessionView {
    /// Its handle: the first 16 hex digits of the stored hash (never the session id).
    pub id: String,
    /// Who: `token:ID` or `EMAIL (sso)`.
    pub actor: String,
    /// `token` or `sso`.
    pub kind: String,
    /// What it holds.
    pub grants: Vec<RoleGrant>,
    /// The identity provider, for a person.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// Where it signed in from.
    pub from: Option<String>,
    /// When it began.
    pub created_at: Millis,
    /// When it was last used (to the half minute).
    pub last_seen_at: Millis,
    /// When it ends unless used again (idle) or at the latest.
    pub ends_at: Millis,
}

/// What a person's session row keeps.
#[derive(Debug, Serialize, Deserialize)]
struct StoredPerson {
    person: Person,
    name: String,
    grants: Vec<RoleGrant>,
}

/// A person's id: `sso:` and a digest of issuer and subject (the subject is unique only
/// within its issuer).
fn person_id(p: &Person) -> String {
    let digest = Sha256::new()
        .chain_update(p.issuer.as_bytes())
        .chain_update([0])
        .chain_update(p.subject.as_bytes())
        .finalize();
    format!("sso:{}", hex16(&digest))
}

/// A session's public handle, from its stored hash.
fn session_handle(hash: &[u8]) -> String {
    hex16(hash)
}

fn hex16(bytes: &[u8]) -> String {
    hex::encode(&bytes[..bytes.len().min(8)])
}

/// What the audit records a session as signing out of.
fn target_of(p: &Principal) -> String {
    match &p.person {
        Some(_) => "sso".to_owned(),
        None => format!("token:{}", p.token_id),
    }
}
