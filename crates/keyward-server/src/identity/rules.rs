//! Who becomes what: the operator's rules from a person's verified ID-token claims to roles
//! and organizations. Every rule whose conditions all hold adds its grant; the result is the
//! union (duplicates once). No rule holds: no grant, and the sign-in is refused.
//!
//! ```yaml
//! rules:
//!   - when: { groups: platform-admins }              # a list claim holds when any element fits
//!     grant: admin
//!   - when: { groups: acme-keys }
//!     grant: { role: org_admin, org: acme }
//!   - when: { email_domain: example.com }            # implies email_verified: true
//!     grant: { role: viewer, org: acme }
//!   - when: { claim_present: keyward_org }
//!     grant: { role: viewer, org_from_claim: keyward_org }
//! ```
//!
//! A pattern is exact, or ends in `*` (a prefix); a list of patterns holds when any does.
//! Booleans and numbers are matched as their text (`email_verified: true`).

use std::collections::BTreeMap;

use keyward_core::OrgId;
use keyward_store::{Role, RoleGrant};
use serde::Deserialize;
use serde_json::{Map, Value};

/// One rule as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RuleSpec {
    when: BTreeMap<String, serde_yaml_ng::Value>,
    grant: GrantSpec,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum GrantSpec {
    /// `grant: admin`.
    Role(String),
    /// `grant: { role: viewer, org: acme }` or `{ role: viewer, org_from_claim: NAME }`.
    In {
        role: String,
        org: Option<String>,
        org_from_claim: Option<String>,
    },
}

/// A condition on the claims.
#[derive(Debug, Clone, PartialEq)]
enum Condition {
    /// The claim fits one of the patterns.
    Claim(String, Vec<String>),
    /// `email` ends with `@DOMAIN` and `email_verified` is true.
    EmailDomain(String),
    /// The claim is there (and not null).
    Present(String),
}

/// Where a rule's organization comes from.
#[derive(Debug, Clone, PartialEq)]
enum OrgOf {
    None,
    Fixed(OrgId),
    Claim(String),
}

/// One checked rule.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Rule {
    when: Vec<Condition>,
    role: Role,
    org: OrgOf,
}

/// The checked rules, in order.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Rules(Vec<Rule>);

/// A pattern's text: a string as it is, a boolean or number written out.
fn pattern_text(v: &serde_yaml_ng::Value) -> Option<String> {
    match v {
        serde_yaml_ng::Value::String(s) => Some(s.clone()),
        serde_yaml_ng::Value::Bool(b) => Some(b.to_string()),
        serde_yaml_ng::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Whether `value` fits `pattern`: equal, or (a trailing `*`) starting with what precedes it.
pub(crate) fn fits(pattern: &str, value: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => value.starts_with(prefix),
        None => pattern == value,
    }
}

/// A claim's values as text: a string, number or boolean is one; a list gives each of its
/// scalar elements.
fn claim_values(claims: &Map<String, Value>, name: &str) -> Vec<String> {
    let one = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    };
    match claims.get(name) {
        Some(Value::Array(items)) => items.iter().filter_map(one).collect(),
        Some(v) => one(v).into_iter().collect(),
        None => Vec::new(),
    }
}

impl Rules {
    /// Checks rules as written; errors name the rule (by its place, from 1) and the setting.
    pub(crate) fn new(specs: Vec<RuleSpec>) -> Result<Self, String> {
        let mut rules = Vec::new();
        for (i, spec) in specs.into_iter().enumerate() {
            let bad = |why: String| format!("rule {}: {why}", i + 1);
            if spec.when.is_empty() {
                return Err(bad(
                    "`when` is empty: a rule for everyone the provider knows is not allowed; name a claim".into(),
                ));
            }
            let mut when = Vec::new();
            for (name, value) in &spec.when {
                let texts = |v: &serde_yaml_ng::Value| -> Result<Vec<String>, String> {
                    match v {
                        serde_yaml_ng::Value::Sequence(items) => items
                            .iter()
                            .map(|i| {
                                pattern_text(i)
                                    .ok_or_else(|| bad(format!("{name}: a pattern is text")))
                            })
                            .collect(),
                        other => {
                            Ok(vec![pattern_text(other).ok_or_else(|| {
                                bad(format!("{name}: a pattern is text"))
                            })?])
                        }
                    }
                };
                let mut patterns = texts(value)?;
                if patterns.is_empty() || patterns.iter().any(|p| p.is_empty() || p == "*") {
                    return Err(bad(format!(
                        "{name}: a pattern must name something (not empty, not `*` alone)"
                    )));
                }
                if let Some(p) = patterns
                    .iter()
                    .find(|p| p.trim_end_matches('*').contains('*'))
                {
                    return Err(bad(format!(
                        "{name}: {p:?}: `*` may only end a pattern (a prefix); it matches nothing elsewhere"
                    )));
                }
                when.push(match name.as_str() {
                    "email_domain" if patterns.len() == 1 => {
                        Condition::EmailDomain(patterns.remove(0).to_ascii_lowercase())
                    }
                    "email_domain" => return Err(bad("email_domain takes one domain".into())),
                    "claim_present" if patterns.len() == 1 => {
                        Condition::Present(patterns.remove(0))
                    }
                    "claim_present" => return Err(bad("claim_present takes one claim".into())),
                    _ => Condition::Claim(name.clone(), patterns),
                });
            }
            let (role, org, from_claim) = match spec.grant {
                GrantSpec::Role(role) => (role, None, None),
                GrantSpec::In {
                    role,
                    org,
                    org_from_claim,
                } => (role, org, org_from_claim),
            };
            let role: Role = role.parse().map_err(|_| {
                bad(format!(
                    "unknown role {role:?}; use admin, org_admin, viewer or resolver"
                ))
            })?;
            if role == Role::Resolver {
                return Err(bad(
                    "resolver is for programs, not people signing in to the console (see workloads:)".into(),
                ));
            }
            let org = match (role, org, from_claim) {
                (Role::Admin, None, None) => OrgOf::None,
                (Role::Admin, _, _) => return Err(bad("an admin has no organization".into())),
                (_, Some(o), None) => OrgOf::Fixed(OrgId::new(&o).map_err(|e| bad(e.to_string()))?),
                (_, None, Some(c)) => OrgOf::Claim(c),
                (_, Some(_), Some(_)) => {
                    return Err(bad("give one of org and org_from_claim".into()));
                }
                (_, None, None) => {
                    return Err(bad(format!("{role} needs org or org_from_claim")));
                }
            };
            rules.push(Rule { when, role, org });
        }
        Ok(Rules(rules))
    }

    /// How many.
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// What the rules give a person with these (verified) claims: every rule that holds adds
    /// its grant, once.
    pub(crate) fn grants(&self, claims: &Map<String, Value>) -> Vec<RoleGrant> {
        let mut out: Vec<RoleGrant> = Vec::new();
        for rule in &self.0 {
            let holds = rule.when.iter().all(|c| match c {
                Condition::Claim(name, patterns) => claim_values(claims, name)
                    .iter()
                    .any(|v| patterns.iter().any(|p| fits(p, v))),
                Condition::EmailDomain(domain) => {
                    let verified = claims.get("email_verified") == Some(&Value::Bool(true));
                    let email = claims.get("email").and_then(Value::as_str).unwrap_or("");
                    verified
                        && email
                            .rsplit_once('@')
                            .is_some_and(|(_, d)| d.eq_ignore_ascii_case(domain))
                }
                Condition::Present(name) => claims.get(name).is_some_and(|v| !v.is_null()),
            });
            if !holds {
                continue;
            }
            let org = match &rule.org {
                OrgOf::None => None,
                OrgOf::Fixed(o) => Some(o.clone()),
                OrgOf::Claim(name) => {
                    match claims.get(name).and_then(Value::as_str).map(OrgId::new) {
                        Some(Ok(o)) => Some(o),
                        // No such claim, or not an organization's name: the rule gives nothing.
                        _ => continue,
                    }
                }
            };
            let grant = RoleGrant {
                role: rule.role,
                org,
            };
            if !out.contains(&grant) {
                out.push(grant);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn rules(yaml: &str) -> Result<Rules, String> {
        let specs: Vec<RuleSpec> = serde_yaml_ng::from_str(yaml).map_err(|e| e.to_string())?;
        Rules::new(specs)
    }

    fn claims(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("an object"),
        }
    }

    fn org(s: &str) -> Option<OrgId> {
        Some(OrgId::new(s).unwrap())
    }

    const ISSUE: &str = r"
- when: { groups: platform-admins }
  grant: admin
- when: { groups: acme-keys }
  grant: { role: org_admin, org: acme }
- when: { email_domain: example.com }
  grant: { role: viewer, org: acme }
- when: { claim_present: keyward_org }
  grant: { role: viewer, org_from_claim: keyward_org }
";

    #[test]
    fn the_issues_rules_give_the_union_of_what_holds() {
        let r = rules(ISSUE).unwrap();
        let bob = claims(serde_json::json!({
            "sub": "bob", "email": "bob@Example.com", "email_verified": true,
            "groups": ["eng", "acme-keys"], "keyward_org": "globex"
        }));
        assert_eq!(
            r.grants(&bob),
            vec![
                RoleGrant {
                    role: Role::OrgAdmin,
                    org: org("acme")
                },
                RoleGrant {
                    role: Role::Viewer,
                    org: org("acme")
                },
                RoleGrant {
                    role: Role::Viewer,
                    org: org("globex")
                },
            ]
        );
        let alice = claims(serde_json::json!({"sub": "alice", "groups": "platform-admins"}));
        assert_eq!(
            r.grants(&alice),
            vec![RoleGrant {
                role: Role::Admin,
                org: None
            }]
        );
        // An unverified email of the domain gives nothing; nor does a look-alike domain.
        for c in [
            serde_json::json!({"sub": "c", "email": "c@example.com", "email_verified": false}),
            serde_json::json!({"sub": "c", "email": "c@example.com"}),
            serde_json::json!({"sub": "c", "email": "c@evil-example.com", "email_verified": true}),
            serde_json::json!({"sub": "c", "email": "c@example.com.evil", "email_verified": true}),
            serde_json::json!({"sub": "c", "groups": ["acme-keys-old", "platform-admins2"]}),
            serde_json::json!({"sub": "c", "keyward_org": "Not An Org!"}),
        ] {
            assert_eq!(r.grants(&claims(c.clone())), vec![], "{c}");
        }
    }

    #[test]
    fn patterns_and_types() {
        let r = rules(
            "- when: { sub: 'team-*', email_verified: true, tier: [gold, silver] }\n  grant: { role: viewer, org: acme }\n",
        )
        .unwrap();
        let ok =
            claims(serde_json::json!({"sub": "team-a", "email_verified": true, "tier": "silver"}));
        assert_eq!(r.grants(&ok).len(), 1);
        let no = claims(
            serde_json::json!({"sub": "team-a", "email_verified": "false", "tier": "silver"}),
        );
        assert_eq!(r.grants(&no).len(), 0);
        let no =
            claims(serde_json::json!({"sub": "xteam-a", "email_verified": true, "tier": "gold"}));
        assert_eq!(r.grants(&no).len(), 0);
    }

    #[test]
    fn mistakes_are_refused_with_the_rule_named() {
        for (yaml, says) in [
            ("- when: {}\n  grant: admin\n", "rule 1: `when` is empty"),
            (
                "- when: { groups: '*' }\n  grant: admin\n",
                "not empty, not `*` alone",
            ),
            (
                "- when: { email: '*@example.com' }\n  grant: admin\n",
                "may only end a pattern",
            ),
            ("- when: { groups: a }\n  grant: root\n", "unknown role"),
            (
                "- when: { groups: a }\n  grant: { role: resolver, org: acme }\n",
                "resolver is for programs",
            ),
            (
                "- when: { groups: a }\n  grant: { role: admin, org: acme }\n",
                "an admin has no organization",
            ),
            (
                "- when: { groups: a }\n  grant: { role: viewer }\n",
                "viewer needs org",
            ),
            (
                "- when: { groups: a }\n  grant: { role: viewer, org: acme, org_from_claim: o }\n",
                "one of org",
            ),
            (
                "- when: { groups: a }\n  grant: admin\n- when: { groups: a }\n  grant: viewer\n",
                "rule 2: viewer needs",
            ),
        ] {
            let e = rules(yaml).unwrap_err();
            assert!(e.contains(says), "{yaml}: {e}");
        }
    }
}
