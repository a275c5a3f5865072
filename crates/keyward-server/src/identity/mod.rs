//! Identities from elsewhere (issue 22): people who sign in to the console through an OpenID
//! provider ([`oidc`], mapped by [`rules`]) and programs that present the JWT their platform
//! gives them ([`workloads`]), both checked against the issuer's published keys.
//!
//! One file configures both (`KEYWARD_IDENTITY_CONFIG`):
//!
//! ```yaml
//! oidc:                       # the console's single sign-on (optional)
//!   issuer: https://idp.example.com
//!   client_id: keyward
//!   client_secret_file: /etc/keyward/oidc-client-secret
//!   redirect_url: https://keyward.example.com/ui/sso/callback
//!   scopes: [openid, email, profile, groups]
//!   rules:
//!     - when: { groups: acme-keys }
//!       grant: { role: org_admin, org: acme }
//! workloads:                  # programs' platform tokens (optional)
//!   - name: k8s-prod
//!     ...
//! ```

pub mod jwks;
pub mod oidc;
pub(crate) mod rules;
pub mod workloads;

use serde::Deserialize;

/// The HTTP client of every fetch from an identity provider or a workload issuer (discovery,
/// keys, the code exchange): short timeouts (2 s to connect, 5 s in all), so a slow or dead
/// provider fails a sign-in fast, and no redirects, so a provider's answer cannot send Keyward
/// elsewhere.
pub(crate) fn http_client() -> Result<reqwest::Client, String> {
    http_client_with(std::time::Duration::from_secs(5))
}

/// The same client with another overall timeout (the audit sinks' deliveries).
pub(crate) fn http_client_with(timeout: std::time::Duration) -> Result<reqwest::Client, String> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(2))
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| format!("cannot build an HTTP client: {e}"))
}

/// What the identity file configures.
#[derive(Debug, Default)]
pub struct Identity {
    /// The console's single sign-on, if configured.
    pub sso: Option<oidc::Sso>,
    /// The workload rules (none: workload tokens are not taken).
    pub workloads: workloads::Workloads,
}

#[derive(Deserialize)]
struct File {
    #[serde(default)]
    oidc: Option<oidc::OidcSpec>,
    #[serde(default, rename = "workloads")]
    _workloads: Option<serde_yaml_ng::Value>,
}

impl Identity {
    /// Reads the identity file at `path`; `env` gives variables a setting names
    /// (`client_secret_env`). Errors name the section and setting.
    pub fn load(
        path: &std::path::Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Self::parse(&text, env)
    }

    /// Parses an identity file.
    pub fn parse(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Self, String> {
        let file: File =
            serde_yaml_ng::from_str(text).map_err(|e| format!("identity file: {e}"))?;
        let workloads = workloads::Workloads::parse(text)?;
        let sso = file
            .oidc
            .map(|spec| oidc::Sso::new(spec, env))
            .transpose()?;
        Ok(Identity { sso, workloads })
    }
}
