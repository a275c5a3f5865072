//! Operating the audit trail: the audit-logger policy, pruning old events without breaking the
//! chain's proof, and the cursors of the sinks that ship events out.
//!
//! A prune removes events `1..=N` and records where the chain now begins (`audit_base`: event
//! N's sequence number and link, sealed with an HMAC under the chain key). Verification starts
//! from that record instead of the genesis link, so what is left still proves itself: an edit
//! of any remaining event, a removal beyond the record, or a record moved forward without the
//! key is found. Before anything is removed, the events being removed are verified: a prune
//! never erases the evidence of tampering.

use keyward_core::Millis;
use keyward_core::audit::{AuditEvent, Category, NewEvent};
use keyward_crypto::ChainKey;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::Row;

use crate::audit::{BASE, GENESIS};
use crate::{Vault, VaultError};

/// A day, in milliseconds.
const DAY_MS: i64 = 86_400_000;

/// Events removed per statement, so that a prune of millions never holds one long write.
const PRUNE_CHUNK: i64 = 10_000;

/// A sink whose cursor has not moved for this long is taken as removed from every server's
/// configuration: it no longer holds back a prune.
const SINK_FORGOTTEN_AFTER_MS: i64 = 7 * DAY_MS;

/// The audit-logger policy (the seed's `policy: audit-logger:` and `keyward serve`'s
/// `--audit-*` settings).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditPolicy {
    /// Events older than this many days may be pruned; none: kept until pruned by hand.
    pub retention_days: Option<u32>,
    /// No event is pruned before its retention (with no retention, none ever is).
    pub immutable: bool,
    /// Every gateway request is an audit event (otherwise a key's use is counted, and audited
    /// at most once a minute).
    pub log_all_access: bool,
}

impl AuditPolicy {
    /// The stricter of two policies: immutable and log-all if either is, the longer retention.
    pub fn and(self, other: AuditPolicy) -> AuditPolicy {
        AuditPolicy {
            retention_days: match (self.retention_days, other.retention_days) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            },
            immutable: self.immutable || other.immutable,
            log_all_access: self.log_all_access || other.log_all_access,
        }
    }

    /// The newest time before which the policy lets events be pruned at `now`: `None` when it
    /// lets none be (immutable without a retention).
    pub fn prunable_before(self, now: Millis) -> Option<Millis> {
        match (self.immutable, self.retention_days) {
            (_, Some(days)) => Some(Millis(now.0 - i64::from(days) * DAY_MS)),
            (true, None) => None,
            (false, None) => Some(now),
        }
    }
}

/// The policy as the store keeps it, and where it came from.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StoredPolicy {
    /// The policy.
    pub policy: AuditPolicy,
    /// Where it was set from (`serve flags`, `gateway config FILE`, ...).
    pub source: String,
    /// When.
    pub updated_at: Millis,
}

/// What a prune did.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PruneReport {
    /// The events older than this were asked to go.
    pub before: Millis,
    /// The chain now begins after this event (0: nothing was ever pruned).
    pub through_seq: i64,
    /// Events removed by this prune.
    pub removed: u64,
    /// A sink that has not delivered some of them yet, which kept them (by name).
    pub kept_for_sink: Option<String>,
}

/// Where a sink has delivered to.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SinkCursor {
    /// The sink's name.
    pub name: String,
    /// The last event it took.
    pub seq: i64,
    /// Which process ships to it.
    pub holder: String,
    /// When its cursor last moved (or its lease was renewed).
    pub updated_at: Millis,
}

/// An event as it leaves for a sink: the stored event and its chain link.
#[derive(Debug, Clone)]
pub struct ShippedEvent {
    /// The event.
    pub event: AuditEvent,
    /// Its link in the chain (receivers can check the events they got are consecutive).
    pub link: Vec<u8>,
}

impl Vault {
    /// The audit-logger policy the servers last set, if any did.
    pub async fn audit_policy(&self) -> Result<Option<StoredPolicy>, VaultError> {
        let Some(row) = sqlx::query(
            "SELECT retention_days, immutable, log_all_access, source, updated_at \
             FROM audit_policy WHERE id = 1",
        )
        .fetch_optional(&self.inner.pool)
        .await?
        else {
            return Ok(None);
        };
        let days: Option<i64> = row.try_get("retention_days")?;
        Ok(Some(StoredPolicy {
            policy: AuditPolicy {
                retention_days: days.and_then(|d| u32::try_from(d).ok()),
                immutable: row.try_get::<i64, _>("immutable")? != 0,
                log_all_access: row.try_get::<i64, _>("log_all_access")? != 0,
            },
            source: row.try_get("source")?,
            updated_at: Millis(row.try_get("updated_at")?),
        }))
    }

    /// Records the policy the server runs with (at start and at every reload), audited when it
    /// changes, and answers the policy in force. An immutable policy in the store only
    /// tightens: it stays immutable, its retention never shortens (without one, events are kept
    /// for ever) and `log_all_access`, once on, stays on, whatever is asked.
    pub async fn set_audit_policy(
        &self,
        asked: AuditPolicy,
        source: &str,
        actor: &str,
    ) -> Result<AuditPolicy, VaultError> {
        let before = self.audit_policy().await?;
        let was = before.as_ref().map_or(AuditPolicy::default(), |s| s.policy);
        let policy = if was.immutable {
            AuditPolicy {
                immutable: true,
                retention_days: match (was.retention_days, asked.retention_days) {
                    (None, _) => None,
                    (Some(w), Some(a)) => Some(w.max(a)),
                    (Some(_), None) if asked.immutable => None,
                    (Some(w), None) => Some(w),
                },
                log_all_access: was.log_all_access || asked.log_all_access,
            }
        } else {
            asked
        };
        // Unchanged, or the default on a store that never had one: nothing to record.
        if was == policy {
            return Ok(policy);
        }
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO audit_policy (id, retention_days, immutable, log_all_access, source, updated_at) \
             VALUES (1, $1, $2, $3, $4, $5) ON CONFLICT (id) DO UPDATE SET \
             retention_days = excluded.retention_days, immutable = excluded.immutable, \
             log_all_access = excluded.log_all_access, source = excluded.source, \
             updated_at = excluded.updated_at",
        )
        .bind(policy.retention_days.map(i64::from))
        .bind(i64::from(policy.immutable))
        .bind(i64::from(policy.log_all_access))
        .bind(source)
        .bind(Millis::now().0)
        .execute(&mut *tx)
        .await?;
        self.append_event(
            &mut tx,
            NewEvent::new(
                actor,
                Category::SecretManagement,
                "audit_policy_set",
                "audit_log".into(),
            )
            .details(json!({
                "policy": policy,
                "asked": (policy != asked).then_some(asked),
                "was": before.map(|s| s.policy),
                "source": source,
            })),
        )
        .await?;
        self.commit(tx, "the audit policy", "audit_log").await?;
        Ok(policy)
    }

    /// Removes the events older than `before`, as far as the stored policy allows (an
    /// immutable one refuses anything inside its retention) and no further than every sink has
    /// delivered; audited. The events removed are verified first: a broken chain is refused,
    /// since pruning would erase the evidence.
    pub async fn prune_events(
        &self,
        before: Millis,
        actor: &str,
    ) -> Result<PruneReport, VaultError> {
        let chain = self.chain()?;
        let policy = self
            .audit_policy()
            .await?
            .map(|s| s.policy)
            .unwrap_or_default();
        match policy.prunable_before(Millis::now()) {
            None => {
                return Err(VaultError::InvalidInput(
                    "the audit-logger policy is immutable and sets no retention_days: no event may be pruned".into(),
                ));
            }
            Some(limit) if policy.immutable && before.0 > limit.0 => {
                return Err(VaultError::InvalidInput(format!(
                    "the audit-logger policy is immutable with a retention of {} days: events newer than {} cannot be pruned",
                    policy.retention_days.unwrap_or(0),
                    iso(limit)
                )));
            }
            Some(_) => {}
        }
        let (base_seq, base_link) = self.base_or_genesis(chain).await?;
        // The last event older than `before`: the one before the first that is not.
        let first_kept: Option<i64> =
            sqlx::query("SELECT MIN(seq) AS s FROM audit_events WHERE at >= $1")
                .bind(before.0)
                .fetch_one(&self.inner.pool)
                .await?
                .try_get("s")?;
        let head = self.audit_event_count().await?;
        let mut through = first_kept.map_or(head, |s| s - 1);
        // Sinks still shipping keep what they have not delivered.
        let mut kept_for_sink = None;
        for sink in self.sink_cursors().await? {
            if sink.updated_at.0 >= Millis::now().0 - SINK_FORGOTTEN_AFTER_MS && sink.seq < through
            {
                through = sink.seq;
                kept_for_sink = Some(sink.name);
            }
        }
        let mut report = PruneReport {
            before,
            through_seq: base_seq.max(through),
            removed: 0,
            kept_for_sink,
        };
        if through > base_seq {
            // What goes must be intact (and the head, so that `through`'s link is the chain's).
            let mut check = crate::audit::VerifyReport::default();
            let (last, link) = self
                .verify_range(chain, base_seq, base_link, through, &mut check)
                .await?;
            if let Some((seq, problem)) = check.problem {
                return Err(VaultError::InvalidInput(format!(
                    "the audit chain is broken at event {seq} ({problem}); pruning would erase the evidence: nothing was removed"
                )));
            }
            debug_assert_eq!(last, through);
            let mut tx = self.begin_write().await?;
            // Only forward: two prunes racing leave the further one.
            BASE.write(&mut *tx, chain, through, &link).await?;
            self.append_event(
                &mut tx,
                NewEvent::new(
                    actor,
                    Category::SecretManagement,
                    "audit_prune",
                    "audit_log".into(),
                )
                .details(json!({
                    "before": iso(before),
                    "through_seq": through,
                    "policy": policy,
                    "kept_for_sink": report.kept_for_sink,
                })),
            )
            .await?;
            self.commit(tx, "the audit prune", "audit_log").await?;
        }
        // The rows at or below the base go, a chunk at a time (also what an interrupted prune
        // left behind).
        let base = self.base_or_genesis(chain).await?.0;
        let mut lo: i64 = sqlx::query("SELECT MIN(seq) AS s FROM audit_events")
            .fetch_one(&self.inner.pool)
            .await?
            .try_get::<Option<i64>, _>("s")?
            .unwrap_or(base + 1)
            - 1;
        while lo < base {
            let hi = (lo + PRUNE_CHUNK).min(base);
            let gone = sqlx::query("DELETE FROM audit_events WHERE seq > $1 AND seq <= $2")
                .bind(lo)
                .bind(hi)
                .execute(&self.inner.pool)
                .await?
                .rows_affected();
            report.removed += gone;
            lo = hi;
        }
        report.through_seq = base;
        Ok(report)
    }

    /// Where the chain begins: the sealed base record left by the last prune, else the
    /// genesis (0 and the zero link). A base whose seal does not hold is an error.
    pub(crate) async fn base_or_genesis(
        &self,
        chain: &ChainKey,
    ) -> Result<(i64, Vec<u8>), VaultError> {
        match self.base(chain).await? {
            Ok(Some(base)) => Ok(base),
            Ok(None) => Ok((0, GENESIS.to_vec())),
            Err(problem) => Err(VaultError::InvalidInput(problem)),
        }
    }

    /// The sealed base record (sequence number and link), `None` before any prune; `Err` with
    /// what is wrong when its seal does not hold.
    pub(crate) async fn base(
        &self,
        chain: &ChainKey,
    ) -> Result<Result<Option<(i64, Vec<u8>)>, String>, VaultError> {
        Ok(match BASE.read(&self.inner.pool, chain).await? {
            Ok(mark) => Ok(mark.map(|(seq, link, _)| (seq, link))),
            Err(_) => Err(
                "the record of pruned events was altered (events removed without the chain key?)"
                    .into(),
            ),
        })
    }

    /// Up to `limit` events after `after`, oldest first, with their links: what a sink ships
    /// next. Reads only committed events, which are appended in sequence order.
    pub async fn events_after(
        &self,
        after: i64,
        limit: i64,
    ) -> Result<Vec<ShippedEvent>, VaultError> {
        let rows = sqlx::query(
            "SELECT seq, at, actor, org, category, action, target, outcome, details, link \
             FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(after)
        .bind(limit.max(1))
        .fetch_all(&self.inner.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(ShippedEvent {
                    event: crate::audit::event_from_row(row)?,
                    link: row.try_get("link")?,
                })
            })
            .collect()
    }

    /// Takes (or keeps) the right to ship to sink `name` for `lease`, as `holder`: the sink's
    /// cursor if this process holds it now, `None` while another does. A new sink starts at
    /// `start` (the events before it are not shipped).
    pub async fn claim_sink(
        &self,
        name: &str,
        holder: &str,
        lease: std::time::Duration,
        start: i64,
    ) -> Result<Option<i64>, VaultError> {
        let now = Millis::now().0;
        let until = now + i64::try_from(lease.as_millis()).unwrap_or(i64::MAX / 2);
        sqlx::query(
            "INSERT INTO audit_sinks (name, seq, holder, lease_until, updated_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(start)
        .bind(holder)
        .bind(until)
        .bind(now)
        .execute(&self.inner.pool)
        .await?;
        let taken = sqlx::query(
            "UPDATE audit_sinks SET holder = $1, lease_until = $2, updated_at = $3 \
             WHERE name = $4 AND (holder = $1 OR lease_until < $3)",
        )
        .bind(holder)
        .bind(until)
        .bind(now)
        .bind(name)
        .execute(&self.inner.pool)
        .await?
        .rows_affected()
            == 1;
        if !taken {
            return Ok(None);
        }
        let seq: i64 = sqlx::query("SELECT seq FROM audit_sinks WHERE name = $1")
            .bind(name)
            .fetch_one(&self.inner.pool)
            .await?
            .try_get("seq")?;
        Ok(Some(seq))
    }

    /// Moves sink `name`'s cursor from `from` to `to` (the last event delivered), if `holder`
    /// still holds it there; false when another process took it over meanwhile.
    pub async fn advance_sink(
        &self,
        name: &str,
        holder: &str,
        from: i64,
        to: i64,
    ) -> Result<bool, VaultError> {
        Ok(sqlx::query(
            "UPDATE audit_sinks SET seq = $1, updated_at = $2 \
             WHERE name = $3 AND holder = $4 AND seq = $5",
        )
        .bind(to)
        .bind(Millis::now().0)
        .bind(name)
        .bind(holder)
        .bind(from)
        .execute(&self.inner.pool)
        .await?
        .rows_affected()
            == 1)
    }

    /// Gives up `holder`'s lease of sink `name` (a server stopping): another replica, or this
    /// one started again, takes the sink over at once instead of when the lease lapses.
    pub async fn release_sink(&self, name: &str, holder: &str) -> Result<(), VaultError> {
        sqlx::query("UPDATE audit_sinks SET lease_until = 0 WHERE name = $1 AND holder = $2")
            .bind(name)
            .bind(holder)
            .execute(&self.inner.pool)
            .await?;
        Ok(())
    }

    /// Every sink's cursor, by name.
    pub async fn sink_cursors(&self) -> Result<Vec<SinkCursor>, VaultError> {
        sqlx::query("SELECT name, seq, holder, updated_at FROM audit_sinks ORDER BY name")
            .fetch_all(&self.inner.pool)
            .await?
            .iter()
            .map(|r| {
                Ok(SinkCursor {
                    name: r.try_get("name")?,
                    seq: r.try_get("seq")?,
                    holder: r.try_get("holder")?,
                    updated_at: Millis(r.try_get("updated_at")?),
                })
            })
            .collect()
    }

    /// This process's id, as sinks' leases name it.
    pub fn instance_id(&self) -> &str {
        &self.inner.instance
    }
}

/// A time as RFC 3339 UTC, for messages and details.
fn iso(t: Millis) -> String {
    if t.0 < 0 {
        return t.0.to_string();
    }
    humantime::format_rfc3339_seconds(t.to_system_time()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stricter_policy_wins() {
        let a = AuditPolicy {
            retention_days: Some(30),
            immutable: false,
            log_all_access: true,
        };
        let b = AuditPolicy {
            retention_days: Some(365),
            immutable: true,
            log_all_access: false,
        };
        assert_eq!(
            a.and(b),
            AuditPolicy {
                retention_days: Some(365),
                immutable: true,
                log_all_access: true
            }
        );
        assert_eq!(a.and(AuditPolicy::default()).retention_days, Some(30));
    }

    #[test]
    fn what_a_policy_lets_be_pruned() {
        let now = Millis(400 * DAY_MS);
        let keep = |days, immutable| AuditPolicy {
            retention_days: days,
            immutable,
            log_all_access: false,
        };
        assert_eq!(
            keep(Some(365), true).prunable_before(now),
            Some(Millis(35 * DAY_MS))
        );
        assert_eq!(keep(None, true).prunable_before(now), None);
        assert_eq!(keep(None, false).prunable_before(now), Some(now));
    }
}
