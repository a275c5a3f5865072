//! Credentials' last-use times: set with the batch that records their use, at most once a
//! second per credential by this process.

use std::collections::BTreeSet;
use std::sync::PoisonError;

use keyward_core::Millis;
use sqlx::{Any, AssertSqlSafe, Transaction};

use super::Failure;
use crate::{Vault, VaultError};

/// How precisely last-use times are kept.
const USE_RESOLUTION: std::time::Duration = std::time::Duration::from_secs(1);
/// Ids per last-use `UPDATE`.
const IDS_PER_UPDATE: usize = 500;

impl Vault {
    /// Whether a use of credential `id` now should be written: last-use times are kept to
    /// the second, so a key resolved thousands of times a second is written once a second
    /// (and its batches take the one-trip path).
    pub(crate) fn use_worth_writing(&self, id: &str) -> bool {
        let now = std::time::Instant::now();
        let mut used = self
            .inner
            .commits
            .used
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if used
            .get(id)
            .is_some_and(|at| now.duration_since(*at) < USE_RESOLUTION)
        {
            return false;
        }
        if used.len() >= 10_000 {
            used.clear();
        }
        used.insert(id.to_owned(), now);
        true
    }
}

/// Sets the last use of `ids` (sorted, so replicas lock them in one order) to now.
pub(super) async fn touch(
    tx: &mut Transaction<'static, Any>,
    ids: &BTreeSet<String>,
) -> Result<(), Failure> {
    let now = Millis::now().0;
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    for chunk in ids.chunks(IDS_PER_UPDATE) {
        let placeholders: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 2)).collect();
        let sql = format!(
            "UPDATE credentials SET last_used_at = $1 WHERE id IN ({}) \
             AND (last_used_at IS NULL OR last_used_at < $1)",
            placeholders.join(", ")
        );
        let mut query = sqlx::query(AssertSqlSafe(sql)).bind(now);
        for id in chunk {
            query = query.bind(*id);
        }
        query
            .execute(&mut **tx)
            .await
            .map_err(|e| Failure::new(&VaultError::from(e), false))?;
    }
    Ok(())
}
