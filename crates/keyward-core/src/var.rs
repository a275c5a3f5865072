//! Config variables: named values, global or per organization, optionally sensitive.

use serde::{Deserialize, Serialize};

use crate::Millis;
use crate::credential::CredentialStatus;
use crate::ids::{OrgId, VarName};

/// What listings show of a variable. A sensitive value is never in here.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VarView {
    /// Name.
    pub name: VarName,
    /// Owning organization; `None` for a global variable.
    pub org: Option<OrgId>,
    /// Whether the value is encrypted and redacted.
    pub sensitive: bool,
    /// The value of a non-sensitive variable; `None` for a sensitive one (shown as `***`:
    /// [`VarView::redacted`]).
    pub value: Option<String>,
    /// Free text.
    pub description: String,
    /// Creation time.
    pub created_at: Millis,
    /// Who created it.
    pub created_by: String,
    /// Last update time.
    pub updated_at: Millis,
    /// Who last updated it.
    pub updated_by: String,
    /// Incremented by every update.
    pub version: i64,
    /// The master key id wrapping a sensitive value's data key.
    pub kid: Option<String>,
    /// Whether a sensitive value opens with the configured master keys.
    pub status: CredentialStatus,
}

impl VarView {
    /// The value as listings print it: as it is, or `***` when sensitive.
    pub fn shown_value(&self) -> &str {
        match &self.value {
            Some(v) if !self.sensitive => v,
            _ => "***",
        }
    }

    /// The view as every surface shows it (API, `--json`): a sensitive value as `***`.
    pub fn redacted(&self) -> VarView {
        VarView {
            value: Some(self.shown_value().to_owned()),
            ..self.clone()
        }
    }
}
