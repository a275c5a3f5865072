//! Config variables: list, read (a sensitive value revealed on request, audited), create,
//! change, delete. A variable belongs to one organization or, for admins, to none (global);
//! every operation acts on exactly the scope it names: an organization's token never reads a
//! global variable of the same name.

use keyward_core::var::VarView;
use keyward_core::{OrgId, VarName};
use keyward_store::{Principal, VarValue, VaultError};
use secrecy::SecretString;

use super::{allow_on, listed, vault};
use crate::access::{Grant, On, Op};
use crate::{ApiError, AppState};

/// Variables of `on`: one organization's, the global ones (`On::Unowned`) or every scope's
/// (`On::Everywhere`); sensitive values redacted by the caller's rendering (`VarView::redacted`).
pub(crate) async fn list(
    state: &AppState,
    p: &Principal,
    on: On<'_>,
) -> Result<Vec<VarView>, ApiError> {
    let everywhere = matches!(on, On::Everywhere);
    let grant = allow_on(p, Op::ListVariables, on)?;
    listed(state, &grant).await?;
    let vars = vault(state, &grant).list_vars(grant.org()).await?;
    Ok(vars
        .into_iter()
        .filter(|v| everywhere || v.org.as_ref() == grant.org())
        .collect())
}

/// Reads the variable `name` of exactly `grant`'s scope.
async fn load(
    state: &AppState,
    grant: &Grant,
    name: &VarName,
    reveal: bool,
) -> Result<VarValue, ApiError> {
    let org = grant.org();
    let missing = || ApiError::NotFound(format!("variable '{name}' not found"));
    let got = match vault(state, grant)
        .get_var(name, org, false, grant.actor())
        .await
    {
        Err(VaultError::NotFound(_)) => return Err(missing()),
        other => other?,
    };
    // Exactly the scope asked for: never the global variable of the same name.
    if got.view.org.as_ref() != org {
        return Err(missing());
    }
    if reveal && got.view.sensitive {
        return Ok(vault(state, grant)
            .get_var(name, org, true, grant.actor())
            .await?);
    }
    Ok(got)
}

/// One variable of `on` (an organization, or `On::Unowned` for a global one); `reveal` returns
/// a sensitive value, audited.
pub(crate) async fn read(
    state: &AppState,
    p: &Principal,
    on: On<'_>,
    name: &VarName,
    reveal: bool,
) -> Result<VarValue, ApiError> {
    let op = if reveal {
        Op::RevealVariable
    } else {
        Op::ReadVariable
    };
    let grant = allow_on(p, op, on)?;
    load(state, &grant, name, reveal).await
}

/// A variable to write.
#[derive(Debug)]
pub(crate) struct VarWrite {
    pub(crate) name: VarName,
    pub(crate) value: SecretString,
    pub(crate) sensitive: bool,
    pub(crate) description: Option<String>,
}

/// Whether the write must find the variable, or must not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exists {
    /// Create: refuse one that exists.
    No,
    /// Change: refuse one that does not.
    Yes,
}

pub(crate) async fn write(
    state: &AppState,
    p: &Principal,
    on: On<'_>,
    var: VarWrite,
    exists: Exists,
) -> Result<VarView, ApiError> {
    let grant = allow_on(p, Op::WriteVariable, on)?;
    match exists {
        Exists::Yes => {
            load(state, &grant, &var.name, false).await?;
        }
        Exists::No => {
            if load(state, &grant, &var.name, false).await.is_ok() {
                return Err(ApiError::Conflict(format!(
                    "variable '{}' already exists; PUT /v1/config-variables/{} changes it",
                    var.name, var.name
                )));
            }
        }
    }
    Ok(vault(state, &grant)
        .set_var(
            &var.name,
            grant.org(),
            &var.value,
            var.sensitive,
            var.description.as_deref(),
            grant.actor(),
        )
        .await?)
}

pub(crate) async fn delete(
    state: &AppState,
    p: &Principal,
    on: On<'_>,
    name: &VarName,
) -> Result<(), ApiError> {
    let grant = allow_on(p, Op::WriteVariable, on)?;
    load(state, &grant, name, false).await?;
    Ok(vault(state, &grant)
        .delete_var(name, grant.org(), grant.actor())
        .await?)
}

/// The scope a request names: the organization given, else the caller's own, else (admins)
/// the global scope.
pub(crate) fn scope<'a>(p: &'a Principal, named: Option<&'a OrgId>) -> On<'a> {
    crate::access::scope_of(p, named, On::Unowned)
}
