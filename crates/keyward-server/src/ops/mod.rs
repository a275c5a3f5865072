//! Admin operations, each once: the REST routes (`crate::routes`), the console (`crate::ui`)
//! and through the API the remote CLI are adapters that parse a request, call one of these,
//! and render the answer.
//!
//! Each operation asks `crate::access` first, and reaches the vault only with the
//! [`Grant`](crate::access::Grant) it answers. A thing of another organization is "not found"
//! for a caller who cannot see it, so that existence does not leak; a caller who sees it but
//! lacks the role is "forbidden". A lookup that fails for another reason (the store away)
//! stays that failure, never a "not found".

pub(crate) mod audit;
pub(crate) mod credentials;
pub(crate) mod orgs;
pub(crate) mod providers;
pub(crate) mod resolve;
pub(crate) mod server;
pub(crate) mod spend;
pub(crate) mod tokens;
pub(crate) mod variables;

use keyward_core::OrgId;
use keyward_store::{Principal, Vault, VaultError};

use crate::access::{self, Denied, Grant, On, Op};
use crate::{ApiError, AppState};

/// Asks the policy; an unseen target is answered with `unseen()`.
fn allow(
    p: &Principal,
    op: Op,
    on: On<'_>,
    unseen: impl FnOnce() -> ApiError,
) -> Result<Grant, ApiError> {
    access::check(p, op, on).map_err(|denied| match denied {
        Denied::Unseen => unseen(),
        Denied::Forbidden(why) => ApiError::Forbidden(why),
    })
}

/// Asks the policy about something of `on`, answering an unseen organization as "not found".
fn allow_on(p: &Principal, op: Op, on: On<'_>) -> Result<Grant, ApiError> {
    allow(p, op, on, || {
        unseen_org(match on {
            On::Org(o) => Some(o),
            On::Unowned | On::Everywhere => None,
        })
    })
}

/// "Not found" for an organization the caller cannot see.
fn unseen_org(org: Option<&OrgId>) -> ApiError {
    match org {
        Some(o) => ApiError::NotFound(format!("organization '{o}' not found")),
        None => ApiError::NotFound("no such organization".into()),
    }
}

/// The vault, for what `grant` allows.
fn vault<'a>(state: &'a AppState, grant: &Grant) -> &'a Vault {
    state.vault.with(grant)
}

/// A listing of one organization answers "not found" for one that does not exist, to an admin
/// as to everyone else (for whom another organization is unseen anyway).
async fn listed(state: &AppState, grant: &Grant) -> Result<(), ApiError> {
    if let Some(org) = grant.org() {
        vault(state, grant).require_org(org).await?;
    }
    Ok(())
}

/// Refuses an id that looks like a key: a token pasted where its id belongs is not echoed,
/// nor looked up.
fn plain_id(what: &str, id: &str) -> Result<(), ApiError> {
    if keyward_core::secret_like::looks_like_secret(id) {
        return Err(keyward_core::secret_like::refused(what).into());
    }
    Ok(())
}

/// A lookup's "not found" as the operation words it; any other failure as it is.
fn found<T>(got: Result<T, VaultError>, not_found: impl Fn() -> ApiError) -> Result<T, ApiError> {
    got.map_err(|e| match e {
        VaultError::NotFound(_) => not_found(),
        other => other.into(),
    })
}

/// Whether `p` may do `op` on `on`: for what a page offers (a button, a menu entry), never
/// instead of asking when it is done.
pub(crate) fn may(p: &Principal, op: Op, on: On<'_>) -> bool {
    access::check(p, op, on).is_ok()
}

/// The vault for looking up a thing of some organization before the policy is asked about
/// it (a credential by id, a token by id): the masked view it reads is shown only if
/// [`checked`] then allows.
fn lookup(state: &AppState) -> &Vault {
    state.vault.serving()
}

/// A looked-up thing, if `p` may do `op` on its organization; one of another organization is
/// `not_found()`, exactly like one that does not exist.
fn checked<T>(
    p: &Principal,
    op: Op,
    got: Result<T, VaultError>,
    org_of: impl Fn(&T) -> &OrgId,
    not_found: impl Fn() -> ApiError,
) -> Result<(T, Grant), ApiError> {
    let thing = found(got, &not_found)?;
    let grant = allow(p, op, On::Org(org_of(&thing)), &not_found)?;
    Ok((thing, grant))
}

#[cfg(test)]
mod tests {
    /// Routes and console handlers reach the vault only through these operations: no file of
    /// theirs names the vault, the policy's vault handle, or asks the policy itself.
    #[test]
    fn routes_and_console_handlers_reach_the_vault_only_through_operations() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut checked = 0;
        for dir in ["routes", "ui"] {
            let mut stack = vec![src.join(dir)];
            while let Some(dir) = stack.pop() {
                for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{e}")) {
                    let path = entry.unwrap_or_else(|e| panic!("{e}")).path();
                    if path.is_dir() {
                        stack.push(path);
                        continue;
                    }
                    if path.extension().is_none_or(|e| e != "rs") {
                        continue;
                    }
                    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{e}"));
                    for needle in [
                        ".vault",
                        "serving()",
                        "access::check",
                        "Guarded",
                        "keyward_store::Vault",
                    ] {
                        // A whole word: `.vault` but not `.vault_keys`.
                        let used = text.match_indices(needle).any(|(at, _)| {
                            text[at + needle.len()..]
                                .chars()
                                .next()
                                .is_none_or(|c| !(c.is_alphanumeric() || c == '_'))
                        });
                        assert!(
                            !used,
                            "{} uses `{needle}`: call an operation of crate::ops instead",
                            path.display()
                        );
                    }
                    checked += 1;
                }
            }
        }
        assert!(checked >= 5, "only {checked} files checked");
    }
}
