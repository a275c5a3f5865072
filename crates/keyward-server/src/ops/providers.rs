//! The provider registry as the API shows it, and which providers the server's own
//! environment could serve.

use keyward_core::{PROVIDERS, Provider};
use keyward_store::Principal;

use super::{allow_on, vault};
use crate::access::{self, On, Op};
use crate::{ApiError, AppState};

/// Every provider Keyward knows, in display order: what clients need to set the same variables
/// as `keyward run` (and to fall back to their own environment the same way).
pub(crate) fn registry(p: &Principal) -> Result<&'static [Provider], ApiError> {
    allow_on(
        p,
        Op::ListProviders,
        access::scope_of(p, None, On::Everywhere),
    )?;
    Ok(PROVIDERS)
}

/// One provider as the server's environment stands for it.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct EnvStatus {
    /// The provider's id.
    pub(crate) provider: &'static str,
    /// Whether a resolution falling back to the server's environment would find its key.
    pub(crate) configured: bool,
    /// The variable that would answer (its name only).
    pub(crate) variable: Option<String>,
}

/// For each provider, whether the server's environment holds its key and under which
/// variable: names only, admins only (it describes the operator's own settings). An
/// organization reaches these only where its fallback is on.
pub(crate) fn env_status(state: &AppState, p: &Principal) -> Result<Vec<EnvStatus>, ApiError> {
    let grant = allow_on(p, Op::ReadServerEnv, On::Unowned)?;
    Ok(vault(state, &grant)
        .env_status()
        .into_iter()
        .map(|(provider, variable)| EnvStatus {
            provider: provider.id,
            configured: variable.is_some(),
            variable,
        })
        .collect())
}
