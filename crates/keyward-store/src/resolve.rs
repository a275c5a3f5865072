//! Resolution (DESIGN §4): the organization's active credentials for a provider, in the order
//! the strategy gives, then the process environment, then a clear error.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use keyward_core::audit::{Category, NewEvent, Outcome};
use keyward_core::provider::SecretKind;
use keyward_core::resolve::{
    Candidate, EnvFallback, NotFound, ResolveRequest, Resolved, Source, order,
};
use keyward_core::{OrgId, Provider};
use secrecy::SecretString;
use serde_json::json;

use crate::cache::{Entry, Live};
use crate::{Vault, VaultError};

/// Where the environment fallback reads variables from.
#[derive(Clone, Default)]
pub enum EnvSource {
    /// The Keyward process's own environment.
    #[default]
    Process,
    /// A fixed map (for tests and embedders that pass configuration explicitly).
    Map(Arc<HashMap<String, String>>),
}

impl fmt::Debug for EnvSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EnvSource::Process => f.write_str("EnvSource::Process"),
            // Values may be keys: show only the names.
            EnvSource::Map(m) => f.debug_set().entries(m.keys()).finish(),
        }
    }
}

impl EnvSource {
    fn get(&self, name: &str) -> Option<String> {
        let v = match self {
            // Never Keyward's own settings, nor the credentials of the KMS that keeps its keys.
            EnvSource::Process if keyward_core::env::is_keyward_own(name) => None,
            EnvSource::Process => std::env::var(name).ok(),
            EnvSource::Map(m) => m.get(name).cloned(),
        };
        v.filter(|v| !v.trim().is_empty())
    }
}

/// An organization's active credentials for one provider, in the order its strategy gives,
/// borrowed from the resolution cache: what the gateway walks for each request, with no copy
/// of any key or field.
#[derive(Debug)]
pub struct GatewayCandidates {
    entry: Arc<Entry>,
    order: Vec<usize>,
    vault: Vault,
    /// The key of the process environment, when the organization has none that opens and its
    /// environment fallback is on.
    from_env: Option<Resolved>,
}

/// Where a [`GatewayCandidate`]'s key comes from.
#[derive(Debug, Clone, Copy)]
pub enum CandidateSource<'a> {
    /// A credential of the organization.
    Credential(&'a keyward_core::CredentialId),
    /// The process environment's variable of this name (the environment fallback).
    Environment(&'a str),
}

/// One credential of [`GatewayCandidates`].
#[derive(Debug, Clone, Copy)]
pub struct GatewayCandidate<'a> {
    /// Where its key comes from.
    pub source: CandidateSource<'a>,
    /// Where requests go: its `base_url` (or Azure's `endpoint`), else the provider's default.
    pub base_url: Option<&'a str>,
    /// The key.
    pub secret: Option<&'a SecretString>,
    /// Its public fields (the region, project, tenant a signed or exchanged key needs).
    pub fields: &'a std::collections::BTreeMap<String, String>,
}

impl GatewayCandidate<'_> {
    /// The credential's id; `None` for the environment's key.
    pub fn credential(&self) -> Option<&keyward_core::CredentialId> {
        match self.source {
            CandidateSource::Credential(id) => Some(id),
            CandidateSource::Environment(_) => None,
        }
    }
}

impl GatewayCandidates {
    /// How many.
    pub fn len(&self) -> usize {
        self.order.len() + usize::from(self.from_env.is_some())
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// In the strategy's order; each key is opened when the iterator reaches it (those that
    /// cannot be opened are skipped), so a request that the first key serves opens one. The
    /// environment's key, when there is one, comes last.
    pub fn iter(&self) -> impl Iterator<Item = GatewayCandidate<'_>> {
        let from_env = self.from_env.iter().filter_map(|r| {
            let Source::Environment { variable } = &r.source else {
                return None;
            };
            Some(GatewayCandidate {
                source: CandidateSource::Environment(variable),
                base_url: r
                    .fields
                    .get("base_url")
                    .or_else(|| r.fields.get("endpoint"))
                    .map(String::as_str),
                secret: r.secret.as_ref(),
                fields: &r.fields,
            })
        });
        self.order
            .iter()
            .filter_map(|&i| {
                let live = &self.entry.live[i];
                let secret = live.secret(&self.vault.inner.keyring).ok()?;
                Some(GatewayCandidate {
                    source: CandidateSource::Credential(&live.id),
                    base_url: live
                        .fields
                        .get("base_url")
                        .or_else(|| live.fields.get("endpoint"))
                        .map(String::as_str)
                        .or(live.default_base_url.as_deref()),
                    secret,
                    fields: &live.fields,
                })
            })
            .chain(from_env)
    }
}

/// The order of `live` (credentials of `entry`) under `strategy`, or the organization's; takes
/// a round-robin turn.
fn ordered<'a>(
    entry: &Entry,
    live: impl Iterator<Item = &'a Live>,
    strategy: Option<keyward_core::resolve::Strategy>,
) -> Vec<usize> {
    let candidates: Vec<Candidate> = live
        .map(|c| Candidate {
            priority: c.priority,
            weight: c.weight,
            created_at: c.created_at.0,
        })
        .collect();
    let turn = entry.turn.fetch_add(1, Ordering::Relaxed);
    order(
        &candidates,
        strategy.unwrap_or(entry.strategy),
        turn,
        fastrand::u64(..),
    )
}

impl Vault {
    /// The organization's active credentials for `provider`, in the organization's strategy's
    /// order, from the cache; when none opens and `env_fallback` applies, the process
    /// environment's key. Not audited: for the gateway, which counts use in aggregate.
    ///
    /// While the store is away, keys read less than `stale_for` ago are served as they were;
    /// anything older, or never read, is [`VaultError::Unavailable`] at once.
    #[tracing::instrument(name = "store.gateway_candidates", level = "info", skip_all)]
    pub async fn gateway_candidates(
        &self,
        org: &OrgId,
        provider: &'static Provider,
        stale_for: std::time::Duration,
        env_fallback: EnvFallback,
    ) -> Result<GatewayCandidates, VaultError> {
        let cache = &self.inner.cache;
        let stale = || {
            cache
                .get_stale(org.as_str(), provider.id, stale_for)
                .ok_or_else(|| {
                    VaultError::Unavailable("the keys of this organization are not cached".into())
                })
        };
        let entry = match cache.get(org.as_str(), provider.id) {
            Some(hit) => hit,
            None if !self.store_available() => stale()?,
            None => match self.entry(org, provider).await {
                Ok(entry) => entry,
                Err(e) if e.is_unavailable() => {
                    self.mark_unavailable();
                    stale()?
                }
                Err(e) => return Err(e),
            },
        };
        let order = ordered(&entry, entry.live.iter(), None);
        // At least one key must open; only those before it in the order are tried.
        let keyring = &self.inner.keyring;
        let opens = order
            .iter()
            .position(|&i| entry.live[i].secret(keyring).is_ok());
        let mut from_env = None;
        if opens.is_none() {
            let fallback = env_fallback.applies(entry.env_fallback);
            from_env = fallback.then(|| self.resolve_from_env(provider)).flatten();
            if from_env.is_none() {
                return Err(NotFound {
                    provider,
                    org: org.to_string(),
                    name: None,
                    modality: None,
                    env_vars: if fallback {
                        env_vars_of(provider)
                    } else {
                        Vec::new()
                    },
                    env_fallback: fallback,
                    undecryptable: entry.live.len(),
                }
                .into());
            }
        }
        Ok(GatewayCandidates {
            entry,
            order,
            vault: self.clone(),
            from_env,
        })
    }

    /// Resolves a credential and records the resolution (success or failure) in the audit log;
    /// if the event cannot be written, nothing is handed out.
    #[tracing::instrument(name = "store.resolve", level = "info", skip_all)]
    pub async fn resolve(&self, req: &ResolveRequest, actor: &str) -> Result<Resolved, VaultError> {
        let mut results = self.resolve_many(std::slice::from_ref(req), actor).await?;
        results
            .pop()
            .unwrap_or_else(|| unreachable!("resolve_many returns one result per request"))
    }

    /// Resolves several requests and records them all in one transaction (one commit, where
    /// `keyward run` would otherwise pay one per provider). The outer error means the events
    /// could not be written and nothing is handed out; the inner results are per request.
    #[tracing::instrument(name = "store.resolve_many", level = "info", skip_all)]
    pub async fn resolve_many(
        &self,
        reqs: &[ResolveRequest],
        actor: &str,
    ) -> Result<Vec<Result<Resolved, VaultError>>, VaultError> {
        let mut results = Vec::with_capacity(reqs.len());
        for req in reqs {
            results.push(self.resolve_unaudited(req).await);
        }
        // The keys used, and one event per request, committed with the next batch; nothing
        // is handed out before they are durable.
        let mut touched = Vec::new();
        let mut events = Vec::with_capacity(reqs.len());
        for (req, result) in reqs.iter().zip(&results) {
            let (outcome, details, target) = match result {
                Ok(r) => (
                    Outcome::Success,
                    resolved_details(r),
                    match &r.source {
                        Source::Vault { id, .. } => {
                            if self.use_worth_writing(id.as_str()) {
                                touched.push(id.as_str().to_owned());
                            }
                            format!("credential:{id}")
                        }
                        Source::Environment { .. } => format!("provider:{}", req.provider.id),
                    },
                ),
                Err(e) => (
                    Outcome::Failure,
                    json!({ "provider": req.provider.id, "error": e.to_string() }),
                    format!("provider:{}", req.provider.id),
                ),
            };
            events.push(
                NewEvent::new(actor, Category::SecretAccess, "resolve", target)
                    .org(Some(req.org.as_str()))
                    .outcome(outcome)
                    .details(details),
            );
        }
        self.record_all(events, touched).await?;
        let ok = results.iter().filter(|r| r.is_ok()).count() as u64;
        let inner = &self.inner;
        inner
            .resolutions_ok
            .fetch_add(ok, std::sync::atomic::Ordering::Relaxed);
        inner.resolutions_failed.fetch_add(
            results.len() as u64 - ok,
            std::sync::atomic::Ordering::Relaxed,
        );
        Ok(results)
    }

    /// Resolution without an audit event per call, served from the in-process cache. For
    /// callers on a hot path that account for use in aggregate (the gateway); everything else
    /// calls [`Vault::resolve`].
    pub async fn resolve_unaudited(&self, req: &ResolveRequest) -> Result<Resolved, VaultError> {
        let mut first = self.resolve_ordered(req, Some(1)).await?;
        // `resolve_ordered` answers with at least one, or an error.
        Ok(first.swap_remove(0))
    }

    /// Every credential that could answer `req`, in the order its strategy gives (the first is
    /// the one [`Vault::resolve_unaudited`] hands out; the rest are the failover order), or the
    /// environment's answer, or the not-found error. Not audited: for the gateway.
    pub async fn resolve_candidates(
        &self,
        req: &ResolveRequest,
    ) -> Result<Vec<Resolved>, VaultError> {
        self.resolve_ordered(req, None).await
    }

    /// The first `limit` (or all) credentials answering `req` whose keys open, in order; keys
    /// are opened only until that many have been found.
    async fn resolve_ordered(
        &self,
        req: &ResolveRequest,
        limit: Option<usize>,
    ) -> Result<Vec<Resolved>, VaultError> {
        let entry = self.entry(&req.org, req.provider).await?;
        let matching: Vec<&Live> = entry
            .live
            .iter()
            .filter(|c| req.name.as_ref().is_none_or(|n| *n == c.name))
            .filter(|c| {
                req.modality.is_none_or(|m| {
                    c.modalities.is_empty() || c.modalities.iter().any(|c| c.serves(m))
                })
            })
            .collect();
        let mut undecryptable = 0;
        if !matching.is_empty() {
            let mut found = Vec::new();
            for i in ordered(&entry, matching.iter().copied(), req.strategy) {
                if limit.is_some_and(|n| found.len() >= n) {
                    break;
                }
                let chosen = matching[i];
                let Ok(secret) = chosen.secret(&self.inner.keyring) else {
                    undecryptable += 1;
                    continue;
                };
                let mut fields = chosen.fields.clone();
                keyward_core::resolve::fill_default_base_url(req.provider, &mut fields);
                found.push(Resolved {
                    provider: req.provider,
                    source: Source::Vault {
                        id: chosen.id.clone(),
                        name: chosen.name.clone(),
                    },
                    secret: secret.cloned(),
                    fields,
                });
            }
            if !found.is_empty() {
                return Ok(found);
            }
        }
        let fallback = req.name.is_none() && req.env_fallback.applies(entry.env_fallback);
        if fallback && let Some(found) = self.resolve_from_env(req.provider) {
            return Ok(vec![found]);
        }
        Err(NotFound {
            provider: req.provider,
            org: req.org.to_string(),
            name: req.name.as_ref().map(ToString::to_string),
            modality: req.modality,
            env_vars: env_vars_of(req.provider),
            env_fallback: fallback,
            undecryptable,
        }
        .into())
    }

    /// Records what the gateway saw of a credential (a failure, a cooldown, a recovery), as `actor`.
    pub async fn record_gateway_event(
        &self,
        actor: &str,
        org: &OrgId,
        credential: &keyward_core::CredentialId,
        action: &str,
        outcome: Outcome,
        details: serde_json::Value,
    ) -> Result<(), VaultError> {
        self.record(
            NewEvent::new(
                actor,
                Category::SecretAccess,
                action,
                format!("credential:{credential}"),
            )
            .org(Some(org.as_str()))
            .outcome(outcome)
            .details(details),
        )
        .await
    }

    /// The decrypted active credentials of (org, provider), from the cache or the database.
    async fn entry(
        &self,
        org: &OrgId,
        provider: &'static Provider,
    ) -> Result<Arc<Entry>, VaultError> {
        let cache = &self.inner.cache;
        if let Some(hit) = cache.get(org.as_str(), provider.id) {
            return Ok(hit);
        }
        let generation = cache.generation();
        // When the read began: a change announced after that makes it stale.
        let started = std::time::Instant::now();
        // Only what resolution uses: decoding a row costs microseconds, and an organization
        // may hold thousands.
        let rows = sqlx::query(
            "SELECT id, name, modalities, fields, priority, weight, created_at, wrapped_dek, \
             sealed_secret, plaintext_secret FROM credentials WHERE org_id = $1 AND provider = $2 AND active = 1 \
             ORDER BY priority, created_at, id",
        )
        .bind(org.as_str())
        .bind(provider.id)
        .fetch_all(&self.inner.pool)
        .await?;
        // An unknown organization is an error, not a reason to fall back to the environment.
        let settings =
            sqlx::query("SELECT strategy, env_fallback FROM organizations WHERE id = $1")
                .bind(org.as_str())
                .fetch_optional(&self.inner.pool)
                .await?
                .ok_or_else(|| VaultError::NotFound(format!("organization '{org}'")))?;
        let strategy: String = sqlx::Row::try_get(&settings, "strategy")?;
        let env_fallback: Option<i64> = sqlx::Row::try_get(&settings, "env_fallback")?;
        let mut entry = Entry {
            loaded: Some(started),
            strategy: strategy.parse()?,
            env_fallback: env_fallback.map(|v| v != 0),
            ..Entry::default()
        };
        // Keys stay sealed until a resolution needs them (`Live::secret`).
        for row in &rows {
            entry.live.push(Live::from_row(row, org, provider)?);
        }
        let entry = Arc::new(entry);
        cache.insert(org.as_str(), provider.id, entry.clone(), generation);
        Ok(entry)
    }

    /// For each provider of the registry, the variable of the vault's environment source that
    /// would answer its resolution (whether or not an organization lets it), or `None`. Names
    /// only: no value leaves.
    pub fn env_status(&self) -> Vec<(&'static Provider, Option<String>)> {
        keyward_core::PROVIDERS
            .iter()
            .map(|p| {
                let variable = self.resolve_from_env(p).map(|r| match r.source {
                    Source::Environment { variable } => variable,
                    Source::Vault { .. } => String::new(),
                });
                (p, variable)
            })
            .collect()
    }

    /// The provider's key from the vault's environment source.
    pub(crate) fn resolve_from_env(&self, provider: &'static Provider) -> Option<Resolved> {
        // A copy of a master key or of the KMS's credential under a provider's name is not a
        // provider key.
        keyward_core::resolve::from_environment(provider, &|name| {
            self.inner
                .env
                .get(name)
                .filter(|v| !self.inner.keyring.appears_in(v))
        })
    }
}

/// The variables the environment fallback reads for `provider`, for messages.
fn env_vars_of(provider: &Provider) -> Vec<String> {
    let names = match provider.secret {
        SecretKind::Optional => provider.base_url_env,
        _ => provider.secret_env,
    };
    names.iter().map(|n| (*n).to_owned()).collect()
}

fn resolved_details(r: &Resolved) -> serde_json::Value {
    match &r.source {
        Source::Vault { id, name } => json!({
            "provider": r.provider.id,
            "source": "vault",
            "credential": id,
            "name": name,
        }),
        Source::Environment { variable } => json!({
            "provider": r.provider.id,
            "source": "environment",
            "variable": variable,
        }),
    }
}
