//! Workload identity: a program presents the JWT its platform gives it (a Kubernetes projected
//! service-account token, a GitHub Actions OIDC token, any issuer with a JWKS) as its bearer,
//! and the operator's rules map it to one role and organization. Nothing long-lived sits on the
//! program's machine.
//!
//! The `workloads:` section of the identity file (`KEYWARD_IDENTITY_CONFIG`):
//!
//! ```yaml
//! workloads:
//!   - name: k8s-prod                 # the actor is workload:k8s-prod:<sub>
//!     issuer: https://kubernetes.default.svc.cluster.local
//!     jwks_url: https://k8s.example/openid/v1/jwks   # or jwks_file: /etc/keyward/k8s-jwks.json
//!     algorithm: RS256               # fixed here, never taken from the token
//!     audience: keyward              # required: a token made for another service is refused
//!     match: { sub: "system:serviceaccount:acme:*" }   # exact, or a trailing *; all must hold
//!     role: resolver                 # what it may do at the API
//!     org: acme
//!     gateway:                       # and/or: what it may do at the gateway, in place of kwg_
//!       org: acme
//!       providers: [openai]          # default: every provider
//!       rpm: 60                      # requests a minute, per workload (sub)
//! ```
//!
//! Every rule whose issuer, audience and claims fit adds its grant (the first one names the
//! workload); none fits, the token is refused.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use jsonwebtoken::Algorithm;
use keyward_core::OrgId;
use keyward_store::{Principal, Role, RoleGrant};
use serde::Deserialize;
use serde_json::Value;

use super::jwks::{Expect, Jwks};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    workloads: Vec<RuleSpec>,
    /// The console's sign-in, read by `super::oidc`.
    #[serde(default, rename = "oidc")]
    _oidc: Option<serde_yaml_ng::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleSpec {
    name: String,
    issuer: String,
    jwks_url: Option<String>,
    jwks_file: Option<String>,
    algorithm: String,
    audience: String,
    #[serde(default, rename = "match")]
    claims: BTreeMap<String, String>,
    role: Option<String>,
    org: Option<String>,
    gateway: Option<GatewaySpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GatewaySpec {
    org: String,
    #[serde(default)]
    providers: Vec<String>,
    rpm: Option<i64>,
}

/// What a workload may do at the gateway.
#[derive(Debug)]
struct GatewayUse {
    org: OrgId,
    providers: Vec<String>,
    rpm: Option<i64>,
}

#[derive(Debug)]
struct Rule {
    name: String,
    expect: Expect,
    jwks: Arc<Jwks>,
    claims: BTreeMap<String, String>,
    grant: Option<RoleGrant>,
    gateway: Option<GatewayUse>,
}

/// The configured workload rules.
#[derive(Debug, Default)]
pub struct Workloads {
    rules: Vec<Rule>,
}

use super::rules::fits;

/// A claim as text to match: a string as it is, a number or boolean written out.
fn claim_text(claims: &serde_json::Map<String, Value>, name: &str) -> Option<String> {
    match claims.get(name)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

impl Workloads {
    /// Parses the rules.
    pub fn parse(text: &str) -> Result<Self, String> {
        let file: File =
            serde_yaml_ng::from_str(text).map_err(|e| format!("workload identity file: {e}"))?;
        let http = super::http_client()?;
        // One key cache per (key source, algorithm), shared by the rules that name it.
        let mut caches: Vec<((String, String), Arc<Jwks>)> = Vec::new();
        let mut rules = Vec::new();
        for spec in file.workloads {
            let name = spec.name.clone();
            let bad = |why: String| format!("workload {name}: {why}");
            let alg: Algorithm = spec
                .algorithm
                .parse()
                .map_err(|_| bad(format!("unknown algorithm {:?}", spec.algorithm)))?;
            if matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) {
                return Err(bad(
                    "an HMAC algorithm takes a shared secret, not an issuer's published keys (see KEYWARD_JWT_VERIFICATION_KEYS)".into(),
                ));
            }
            let source = match (&spec.jwks_url, &spec.jwks_file) {
                (Some(url), None) if url.starts_with("https://") || url.starts_with("http://") => {
                    url.clone()
                }
                (None, Some(file)) => format!("file:{file}"),
                _ => {
                    return Err(bad(
                        "give one of jwks_url (http or https) and jwks_file".into()
                    ));
                }
            };
            let key = (source.clone(), spec.algorithm.clone());
            let jwks = match caches.iter().find(|(k, _)| *k == key) {
                Some((_, jwks)) => jwks.clone(),
                None => {
                    let jwks = Arc::new(match source.strip_prefix("file:") {
                        Some(file) => {
                            let text = std::fs::read_to_string(file)
                                .map_err(|e| bad(format!("cannot read {file}: {e}")))?;
                            let set = serde_json::from_str(&text)
                                .map_err(|_| bad(format!("{file} is not a JWK set")))?;
                            Jwks::fixed(&set, alg)
                        }
                        None => Jwks::from_url(http.clone(), source, alg, Duration::from_secs(30)),
                    });
                    caches.push((key, jwks.clone()));
                    jwks
                }
            };
            let grant = match spec.role.as_deref() {
                Some(role) => {
                    let role: Role = role
                        .parse()
                        .map_err(|_| bad(format!("unknown role {role:?}")))?;
                    let org = match (role, spec.org.as_deref()) {
                        (Role::Admin, None) => None,
                        (Role::Admin, Some(_)) => {
                            return Err(bad("an admin has no organization".into()));
                        }
                        (_, None) => return Err(bad("org is required for this role".into())),
                        (_, Some(o)) => Some(OrgId::new(o).map_err(|e| bad(e.to_string()))?),
                    };
                    Some(RoleGrant { role, org })
                }
                None if spec.org.is_some() => {
                    return Err(bad(
                        "org without a role: give role too (or gateway: { org })".into(),
                    ));
                }
                None => None,
            };
            let gateway = match spec.gateway {
                Some(g) => {
                    for p in &g.providers {
                        keyward_core::Provider::get(p)
                            .map_err(|_| bad(format!("gateway: unknown provider {p:?}")))?;
                    }
                    if g.rpm.is_some_and(|r| r < 1) {
                        return Err(bad("gateway: rpm is at least 1".into()));
                    }
                    Some(GatewayUse {
                        org: OrgId::new(&g.org).map_err(|e| bad(format!("gateway: {e}")))?,
                        providers: g.providers,
                        rpm: g.rpm,
                    })
                }
                None => None,
            };
            if grant.is_none() && gateway.is_none() {
                return Err(bad(
                    "give role (the API) or gateway (the gateway), or both".into()
                ));
            }
            if let Some((claim, _)) = spec
                .claims
                .iter()
                .find(|(_, p)| p.is_empty() || p.as_str() == "*")
            {
                return Err(bad(format!(
                    "match {claim}: a pattern must name something (not empty, not `*` alone)"
                )));
            }
            if let Some((claim, p)) = spec
                .claims
                .iter()
                .find(|(_, p)| p.trim_end_matches('*').contains('*'))
            {
                return Err(bad(format!(
                    "match {claim}: {p:?}: `*` may only end a pattern (a prefix)"
                )));
            }
            if spec.audience.trim().is_empty() {
                return Err(bad("audience is required".into()));
            }
            rules.push(Rule {
                name: spec.name,
                expect: Expect {
                    issuer: spec.issuer,
                    audience: spec.audience,
                    leeway: 30,
                },
                jwks,
                claims: spec.claims,
                grant,
                gateway,
            });
        }
        Ok(Self { rules })
    }

    /// Whether any rule is configured.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The rules a workload token fits, with its verified claims and subject: verified against
    /// the keys of the rules naming its issuer, then each rule's audience and claims.
    async fn fitting(&self, token: &str) -> Vec<(&Rule, serde_json::Map<String, Value>, String)> {
        let mut out = Vec::new();
        // The issuer, read before verifying, only to pick the rules (and their keys) to try.
        let Some(unverified) = token
            .split('.')
            .nth(1)
            .and_then(|p| {
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(p.trim_end_matches('='))
                    .ok()
            })
            .and_then(|b| serde_json::from_slice::<serde_json::Map<String, Value>>(&b).ok())
        else {
            return out;
        };
        let Some(issuer) = unverified.get("iss").and_then(Value::as_str) else {
            return out;
        };
        for rule in self.rules.iter().filter(|r| r.expect.issuer == issuer) {
            let Ok(claims) = rule.jwks.verify(token, &rule.expect).await else {
                continue;
            };
            let fits_all = rule.claims.iter().all(|(name, pattern)| {
                claim_text(&claims, name).is_some_and(|value| fits(pattern, &value))
            });
            if !fits_all {
                continue;
            }
            let Some(sub) = claim_text(&claims, "sub") else {
                continue;
            };
            // The subject becomes the actor in the audit log: printable text only, or a
            // token could write a line of its own into a listing.
            if !keyward_core::ids::is_plain_text(&sub, 200) {
                continue;
            }
            out.push((rule, claims, sub));
        }
        out
    }

    /// The principal a workload token stands for at the API: every fitting rule with a role
    /// adds its grant (the first names the workload). `None` when none fits.
    pub async fn authenticate(&self, token: &str) -> Option<Principal> {
        let mut found: Option<Principal> = None;
        for (rule, _, sub) in self.fitting(token).await {
            let Some(grant) = &rule.grant else { continue };
            match &mut found {
                Some(p) if !p.grants.contains(grant) => p.grants.push(grant.clone()),
                Some(_) => {}
                None => {
                    found = Some(Principal::single(
                        format!("workload:{}:{sub}", rule.name),
                        sub,
                        grant.role,
                        grant.org.clone(),
                    ));
                }
            }
        }
        found
    }

    /// Whether any rule lets workloads use the gateway.
    pub fn serves_gateway(&self) -> bool {
        self.rules.iter().any(|r| r.gateway.is_some())
    }

    /// What a workload token may do at the gateway, as a gateway token would: the first
    /// fitting rule with `gateway:` decides (organization, providers, requests a minute, per
    /// workload). It lives until the token's `exp`.
    pub async fn gateway_use(&self, token: &str) -> Option<keyward_store::GatewayTokenView> {
        for (rule, claims, sub) in self.fitting(token).await {
            let Some(g) = &rule.gateway else { continue };
            let now = keyward_core::Millis::now();
            let exp = claims
                .get("exp")
                .and_then(Value::as_i64)
                .map(|s| keyward_core::Millis(s.saturating_mul(1000)));
            return Some(keyward_store::GatewayTokenView {
                id: format!("workload:{}:{sub}", rule.name),
                org: g.org.clone(),
                name: sub,
                prefix: String::new(),
                providers: g.providers.clone(),
                rpm: g.rpm,
                tpm: None,
                models: Vec::new(),
                created_at: now,
                created_by: format!("workload rule {}", rule.name),
                expires_at: exp,
                revoked_at: None,
                last_used_at: None,
                state: keyward_core::token::TokenState::Active,
            });
        }
        None
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn patterns_are_exact_or_a_trailing_star() {
        assert!(fits(
            "system:serviceaccount:acme:*",
            "system:serviceaccount:acme:app"
        ));
        assert!(!fits(
            "system:serviceaccount:acme:*",
            "system:serviceaccount:acmex"
        ));
        assert!(fits("refs/heads/main", "refs/heads/main"));
        assert!(!fits("refs/heads/main", "refs/heads/main2"));
    }

    #[test]
    fn configuration_errors_name_the_rule_and_the_setting() {
        let base = "workloads:\n  - name: k8s\n    issuer: https://i\n    jwks_url: https://i/jwks\n    audience: keyward\n    role: resolver\n";
        let e =
            Workloads::parse(&format!("{base}    algorithm: HS256\n    org: acme\n")).unwrap_err();
        assert!(e.contains("workload k8s") && e.contains("HMAC"), "{e}");
        let e = Workloads::parse(&format!("{base}    algorithm: RS256\n")).unwrap_err();
        assert!(e.contains("org is required"), "{e}");
        let e = Workloads::parse(&format!(
            "{base}    algorithm: RS256\n    org: acme\n    colour: red\n"
        ))
        .unwrap_err();
        assert!(e.contains("colour"), "{e}");
        let ok = Workloads::parse(&format!("{base}    algorithm: RS256\n    org: acme\n")).unwrap();
        assert!(!ok.is_empty());
    }
}
