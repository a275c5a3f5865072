//! Who may do what: the one access policy of every admin operation, whichever surface (the
//! REST API, the console, the remote CLI through the API) asks.
//!
//! [`check`] decides one operation ([`Op`]) on one target ([`On`]) for one caller
//! ([`Principal`]) and answers with a [`Grant`], the proof of access: the vault's admin side is
//! reached only through [`Guarded::with`], which takes one, and only this module can make one.
//! The operations in `crate::ops` are the only code that asks; routes and console handlers call
//! those operations (a test in `crate::ops` fails if they reach the vault another way).
//!
//! The rules:
//!
//! - A caller holds one or more grants: a role, in one organization (or, for admins, in none).
//!   A token or a workload holds one; a person signed in through single sign-on holds what
//!   every matching rule gave them. An operation is allowed when any grant allows it.
//! - An admin may do everything, everywhere. Every other role belongs to one organization and
//!   does nothing outside it.
//! - Something of an organization the caller does not belong to is *unseen*: answered as "not
//!   found", exactly like something that does not exist, so that existence does not leak. A
//!   caller who sees it but whose role may not do this is *forbidden*.
//! - What belongs to no organization (admin tokens, global variables, the server's master keys
//!   and gateway targets) and what spans all of them (a listing of every organization) is for
//!   admins only.
//! - Per operation, the roles below admin that may do it are [`roles`]; a few operations are
//!   admins' only wherever they apply ([`admin_only`]).
//! - Moving a stored key (changing where it is sent) takes the key again ([`key_move`]).
//! - Whether a token is live is `keyward_core::token::TokenState`, used by every check.

use std::collections::BTreeMap;

use keyward_core::OrgId;
use keyward_store::{Principal, Role, Vault};

/// An admin operation, as the policy tells them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    /// List organizations (each caller sees its own).
    ListOrgs,
    /// Create an organization.
    CreateOrg,
    /// Change an organization's strategy.
    ChangeOrg,
    /// Let an organization fall back to the server's environment (it hands the server's own
    /// variables to the organization).
    SetEnvFallback,
    /// List credentials, masked.
    ListCredentials,
    /// Read one credential, masked.
    ReadCredential,
    /// Create, change, activate, deactivate or delete a credential.
    WriteCredential,
    /// Test a credential's key against its provider, or list the models it reaches.
    TestCredential,
    /// List config variables (sensitive values redacted).
    ListVariables,
    /// Read one config variable (a sensitive value redacted).
    ReadVariable,
    /// Read a sensitive variable's value (audited).
    RevealVariable,
    /// Create, change or delete a config variable.
    WriteVariable,
    /// Resolve a provider's key (audited): `/resolve`, `/env`, the secret lookup.
    Resolve,
    /// List API tokens.
    ListTokens,
    /// Create an API token with this role.
    CreateToken(Role),
    /// Revoke an API token.
    RevokeToken,
    /// List gateway tokens.
    ListGatewayTokens,
    /// Create a gateway token.
    CreateGatewayToken,
    /// Revoke a gateway token.
    RevokeGatewayToken,
    /// Read the audit log.
    ReadEvents,
    /// Verify the audit chain.
    VerifyEvents,
    /// Read gateway usage and spend.
    ReadUsage,
    /// Read the prices spend is reckoned at.
    ListPrices,
    /// Read the provider registry (ids, names, the variables each sets).
    ListProviders,
    /// See which providers the server's own environment could serve (variable names only).
    ReadServerEnv,
    /// Set or delete a budget or limit.
    WriteBudget,
    /// Import prices (for every organization).
    ImportPrices,
    /// Read what the gateway serves (targets, credentials set aside).
    GatewayStatus,
    /// Reload the gateway's targets file.
    ReloadGateway,
    /// Read the master keys' status.
    MasterKeyStatus,
    /// Rewrap every data key under the primary master key.
    RotateMasterKey,
    /// List the console's sessions, of every token and person.
    ListSessions,
    /// End someone's console session.
    EndSession,
    /// Examine the deployment (`keyward doctor`).
    Doctor,
}

#[cfg(test)]
impl Op {
    /// Every operation (with each role a token may be made with), for the tests that walk them.
    pub(crate) fn all() -> Vec<Op> {
        let mut all = vec![
            Op::ListOrgs,
            Op::CreateOrg,
            Op::ChangeOrg,
            Op::SetEnvFallback,
            Op::ListCredentials,
            Op::ReadCredential,
            Op::WriteCredential,
            Op::TestCredential,
            Op::ListVariables,
            Op::ReadVariable,
            Op::RevealVariable,
            Op::WriteVariable,
            Op::Resolve,
            Op::ListTokens,
            Op::RevokeToken,
            Op::ListGatewayTokens,
            Op::CreateGatewayToken,
            Op::RevokeGatewayToken,
            Op::ReadEvents,
            Op::VerifyEvents,
            Op::ReadUsage,
            Op::ListPrices,
            Op::ListProviders,
            Op::ReadServerEnv,
            Op::WriteBudget,
            Op::ImportPrices,
            Op::GatewayStatus,
            Op::ReloadGateway,
            Op::MasterKeyStatus,
            Op::RotateMasterKey,
            Op::ListSessions,
            Op::EndSession,
            Op::Doctor,
        ];
        all.extend(ROLES.iter().map(|r| Op::CreateToken(*r)));
        all
    }
}

/// Every role, highest first.
#[cfg(test)]
pub(crate) const ROLES: [Role; 4] = [Role::Admin, Role::OrgAdmin, Role::Viewer, Role::Resolver];

/// The roles below admin that may do `op` in their own organization.
pub(crate) fn roles(op: Op) -> &'static [Role] {
    use Role::{OrgAdmin, Resolver, Viewer};
    match op {
        Op::ListOrgs | Op::ListPrices | Op::ListProviders => &[OrgAdmin, Viewer, Resolver],
        Op::ListCredentials | Op::ReadCredential => &[OrgAdmin, Viewer],
        Op::ListVariables => &[OrgAdmin, Viewer],
        Op::ReadVariable => &[OrgAdmin, Viewer, Resolver],
        // Whoever may resolve a key may read a sensitive value: the API's rule, now the
        // console's too (it let only admins).
        Op::RevealVariable | Op::Resolve => &[OrgAdmin, Resolver],
        Op::ListGatewayTokens | Op::ReadEvents | Op::ReadUsage | Op::GatewayStatus => {
            &[OrgAdmin, Viewer]
        }
        Op::ChangeOrg
        | Op::WriteCredential
        | Op::TestCredential
        | Op::WriteVariable
        | Op::ListTokens
        | Op::RevokeToken
        | Op::CreateGatewayToken
        | Op::RevokeGatewayToken
        | Op::WriteBudget => &[OrgAdmin],
        Op::CreateToken(role) if role != Role::Admin => &[OrgAdmin],
        Op::CreateToken(_)
        | Op::CreateOrg
        | Op::SetEnvFallback
        | Op::VerifyEvents
        | Op::ReloadGateway
        | Op::MasterKeyStatus
        | Op::RotateMasterKey
        | Op::ListSessions
        | Op::EndSession
        | Op::ImportPrices
        | Op::ReadServerEnv
        | Op::Doctor => &[],
    }
}

/// Whether `op` is for admins only, wherever it applies.
pub(crate) fn admin_only(op: Op) -> bool {
    roles(op).is_empty()
}

/// What an operation acts on.
#[derive(Debug, Clone, Copy)]
pub(crate) enum On<'a> {
    /// Something of this organization.
    Org(&'a OrgId),
    /// Something of no organization: an admin token, a global variable, the server itself.
    Unowned,
    /// Every organization at once (a listing without one).
    Everywhere,
}

/// Why an operation was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Denied {
    /// The caller cannot see the target at all: answer "not found", as if it did not exist.
    Unseen,
    /// The caller sees it, but may not do this; the words say why.
    Forbidden(String),
}

/// The proof that one caller may do one operation on one target: made by [`check`] only
/// (its fields are private to this module), asked for by [`Guarded::with`]; it carries what
/// it covers and who acts, so that the operation acts on that and audits that actor.
#[derive(Debug)]
pub(crate) struct Grant {
    scope: Scope,
    actor: String,
}

/// What a [`Grant`] covers.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Scope {
    /// One organization.
    Org(OrgId),
    /// Nothing of any organization (admins).
    Unowned,
    /// Every organization (admins).
    Everywhere,
}

impl Grant {
    /// The organization it covers, if one.
    pub(crate) fn org(&self) -> Option<&OrgId> {
        match &self.scope {
            Scope::Org(o) => Some(o),
            Scope::Unowned | Scope::Everywhere => None,
        }
    }

    /// Who the audit log records.
    pub(crate) fn actor(&self) -> &str {
        &self.actor
    }
}

/// Whether `p` holds admin.
fn is_admin(p: &Principal) -> bool {
    p.holds(Role::Admin)
}

/// The roles `p` holds in `org`.
fn roles_in<'a>(p: &'a Principal, org: &'a OrgId) -> impl Iterator<Item = Role> + 'a {
    p.grants
        .iter()
        .filter(move |g| g.org.as_ref() == Some(org))
        .map(|g| g.role)
}

/// Whether `p` may see anything of `org` at all.
pub(crate) fn sees(p: &Principal, org: &OrgId) -> bool {
    is_admin(p) || roles_in(p, org).next().is_some()
}

/// Decides whether `p` may do `op` on `on`: allowed when any of its grants allows it.
pub(crate) fn check(p: &Principal, op: Op, on: On<'_>) -> Result<Grant, Denied> {
    let grant = |scope| Grant {
        scope,
        actor: p.actor(),
    };
    if is_admin(p) {
        return Ok(grant(match on {
            On::Org(o) => Scope::Org(o.clone()),
            On::Unowned => Scope::Unowned,
            On::Everywhere => Scope::Everywhere,
        }));
    }
    let needs_admin = || {
        Denied::Forbidden(match p.person {
            Some(_) => "this needs the admin role".into(),
            None => "this needs an admin token".into(),
        })
    };
    match on {
        On::Org(o) if !sees(p, o) => Err(Denied::Unseen),
        On::Org(_) if admin_only(op) => Err(needs_admin()),
        On::Org(o) if roles_in(p, o).any(|r| roles(op).contains(&r)) => {
            Ok(grant(Scope::Org(o.clone())))
        }
        On::Org(o) => {
            let held: Vec<String> = roles_in(p, o).map(Role::a_name).collect();
            let what = if p.person.is_some() { "" } else { " token" };
            Err(Denied::Forbidden(format!(
                "{}{what} may not do this",
                held.join(" or ")
            )))
        }
        On::Unowned | On::Everywhere => Err(needs_admin()),
    }
}

/// The target of a listing or page that may name an organization: the one named, else the
/// caller's own (for a caller with roles in several, the first its grants name), else
/// (admins) `unnamed` — every organization for most listings, the global scope for config
/// variables.
pub(crate) fn scope_of<'a>(p: &'a Principal, named: Option<&'a OrgId>, unnamed: On<'a>) -> On<'a> {
    if let Some(o) = named {
        return On::Org(o);
    }
    if is_admin(p) {
        return unnamed;
    }
    match p.grants.iter().find_map(|g| g.org.as_ref()) {
        Some(own) => On::Org(own),
        None => unnamed,
    }
}

/// Whether a public field says where the key is sent (a base URL, an endpoint).
pub(crate) fn sends_key_to(field: &str) -> bool {
    field == "base_url" || field.ends_with("_url") || field.contains("endpoint")
}

/// Moving a stored key, changing where it is sent, takes the key again, on every surface and
/// for every role: whoever holds a session or a token but not the key cannot point the key at
/// an address of their own and press Test. `stored` are the credential's fields now, `changed`
/// the fields a request sets; `has_key` whether a key is stored, `key_given` whether the
/// request gives one.
pub(crate) fn key_move(
    stored: &BTreeMap<String, String>,
    changed: &BTreeMap<String, String>,
    has_key: bool,
    key_given: bool,
) -> Result<(), Denied> {
    // Clearing a field sends the key back to the provider's own address: not a move.
    let moved = changed.iter().any(|(k, v)| {
        sends_key_to(k) && !v.is_empty() && stored.get(k).map_or("", String::as_str) != v.as_str()
    });
    if moved && has_key && !key_given {
        return Err(Denied::Forbidden(KEY_MOVE.into()));
    }
    Ok(())
}

/// Why a key move was refused.
pub(crate) const KEY_MOVE: &str = "changing where the key is sent (the base URL or endpoint) needs the key again: give it in full in the same change";

/// The vault, behind the policy: its admin side needs a [`Grant`]; what serves requests that
/// are not admin operations (authentication, the gateway, readiness, metrics, console sessions)
/// goes through [`Guarded::serving`].
#[derive(Debug, Clone)]
pub(crate) struct Guarded(Vault);

impl Guarded {
    pub(crate) fn new(vault: Vault) -> Self {
        Guarded(vault)
    }

    /// The vault, for the operation `grant` allows.
    pub(crate) fn with(&self, _grant: &Grant) -> &Vault {
        &self.0
    }

    /// The vault, for what is not an admin operation: authentication, console sessions, the
    /// gateway's resolution under its own token, readiness, metrics, usage bookkeeping. Only
    /// those modules call this (the ops test checks routes and console handlers do not).
    pub(crate) fn serving(&self) -> &Vault {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(role: Role, org: Option<&str>) -> Principal {
        Principal::single(
            "t1",
            "test",
            role,
            org.map(|o| OrgId::new(o).unwrap_or_else(|e| panic!("{e}"))),
        )
    }

    fn org(s: &str) -> OrgId {
        OrgId::new(s).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The expected answer, written out independently of `check`: role × organization ×
    /// operation, every combination.
    fn expected(role: Role, caller_org: &str, target: &str, op: Op) -> Result<(), Denied> {
        if role == Role::Admin {
            return Ok(());
        }
        if target != caller_org {
            return Err(Denied::Unseen);
        }
        let may = match op {
            Op::ListOrgs | Op::ListPrices | Op::ListProviders => true,
            Op::ListCredentials
            | Op::ReadCredential
            | Op::ListVariables
            | Op::ListGatewayTokens
            | Op::ReadEvents
            | Op::ReadUsage
            | Op::GatewayStatus => matches!(role, Role::OrgAdmin | Role::Viewer),
            Op::ReadVariable => true,
            Op::RevealVariable | Op::Resolve => matches!(role, Role::OrgAdmin | Role::Resolver),
            Op::ChangeOrg
            | Op::WriteCredential
            | Op::TestCredential
            | Op::WriteVariable
            | Op::ListTokens
            | Op::RevokeToken
            | Op::CreateGatewayToken
            | Op::RevokeGatewayToken
            | Op::WriteBudget => role == Role::OrgAdmin,
            Op::CreateToken(made) => role == Role::OrgAdmin && made != Role::Admin,
            Op::CreateOrg
            | Op::SetEnvFallback
            | Op::VerifyEvents
            | Op::ReloadGateway
            | Op::MasterKeyStatus
            | Op::RotateMasterKey
            | Op::ListSessions
            | Op::EndSession
            | Op::ImportPrices
            | Op::ReadServerEnv
            | Op::Doctor => false,
        };
        if may {
            Ok(())
        } else {
            Err(Denied::Forbidden(String::new()))
        }
    }

    #[test]
    fn every_role_in_every_organization_for_every_operation() {
        let (acme, globex) = (org("acme"), org("globex"));
        let mut checked = 0;
        for role in ROLES {
            for own in ["acme", "globex"] {
                let p = principal(role, (role != Role::Admin).then_some(own));
                for target in [&acme, &globex] {
                    for op in Op::all() {
                        let got = check(&p, op, On::Org(target)).map(|g| {
                            assert_eq!(g.org(), Some(target));
                            assert_eq!(g.actor(), "token:t1");
                        });
                        let want = expected(role, own, target.as_str(), op);
                        match (&got, &want) {
                            (Ok(()), Ok(())) | (Err(Denied::Unseen), Err(Denied::Unseen)) => {}
                            (Err(Denied::Forbidden(why)), Err(Denied::Forbidden(_))) => {
                                assert!(!why.is_empty(), "{op:?}: a refusal says why");
                            }
                            _ => panic!(
                                "{role:?} of {own} doing {op:?} on {target}: got {got:?}, want {want:?}"
                            ),
                        }
                        checked += 1;
                    }
                }
            }
        }
        assert_eq!(checked, 4 * 2 * 2 * Op::all().len());
    }

    #[test]
    fn nothing_of_no_organization_or_of_all_of_them_below_admin() {
        for op in Op::all() {
            for on in [On::Unowned, On::Everywhere] {
                let admin = check(&principal(Role::Admin, None), op, on)
                    .unwrap_or_else(|e| panic!("{op:?}: {e:?}"));
                assert_eq!(admin.org(), None);
                for role in [Role::OrgAdmin, Role::Viewer, Role::Resolver] {
                    let got = check(&principal(role, Some("acme")), op, on);
                    assert!(
                        matches!(got, Err(Denied::Forbidden(_))),
                        "{role:?} {op:?} {on:?}: {got:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_listing_without_an_organization_is_the_callers_own_or_for_admins_all() {
        let acme = org("acme");
        let globex = org("globex");
        let viewer = principal(Role::Viewer, Some("acme"));
        let admin = principal(Role::Admin, None);
        assert!(matches!(scope_of(&viewer, None, On::Everywhere), On::Org(o) if *o == acme));
        assert!(
            matches!(scope_of(&viewer, Some(&globex), On::Everywhere), On::Org(o) if *o == globex)
        );
        assert!(matches!(
            scope_of(&admin, None, On::Everywhere),
            On::Everywhere
        ));
        assert!(matches!(scope_of(&admin, None, On::Unowned), On::Unowned));
        // Naming another organization is checked like any target: unseen.
        let on = scope_of(&viewer, Some(&globex), On::Everywhere);
        assert_eq!(
            check(&viewer, Op::ListCredentials, on).map(|_| ()),
            Err(Denied::Unseen)
        );
    }

    /// A person with several grants may do what any of them allows, and sees nothing of an
    /// organization none of them names.
    #[test]
    fn several_grants_are_their_union() {
        use keyward_store::RoleGrant;
        let (acme, globex, initech) = (org("acme"), org("globex"), org("initech"));
        let person = Principal {
            token_id: "sso:x".into(),
            name: "bob@example.test".into(),
            grants: vec![
                RoleGrant {
                    role: Role::Viewer,
                    org: Some(globex.clone()),
                },
                RoleGrant {
                    role: Role::OrgAdmin,
                    org: Some(acme.clone()),
                },
                RoleGrant {
                    role: Role::Resolver,
                    org: Some(globex.clone()),
                },
            ],
            person: Some(keyward_store::Person {
                issuer: "https://idp.test".into(),
                subject: "bob".into(),
                email: Some("bob@example.test".into()),
            }),
        };
        for op in Op::all() {
            let single =
                |role, o: &str| check(&principal(role, Some(o)), op, On::Org(&org(o))).map(|_| ());
            // In acme: exactly what an org_admin may do.
            let got = check(&person, op, On::Org(&acme)).map(|_| ());
            assert_eq!(
                got.is_ok(),
                single(Role::OrgAdmin, "acme").is_ok(),
                "{op:?}"
            );
            // In globex: what a viewer or a resolver may do.
            let got = check(&person, op, On::Org(&globex)).map(|_| ());
            let either =
                single(Role::Viewer, "globex").is_ok() || single(Role::Resolver, "globex").is_ok();
            assert_eq!(got.is_ok(), either, "{op:?}");
            if let Err(Denied::Forbidden(why)) = &got
                && !admin_only(op)
            {
                assert!(why.contains("a viewer or a resolver"), "{why}");
            }
            assert_eq!(
                check(&person, op, On::Org(&initech)).map(|_| ()),
                Err(Denied::Unseen)
            );
            for on in [On::Unowned, On::Everywhere] {
                assert!(matches!(check(&person, op, on), Err(Denied::Forbidden(_))));
            }
        }
        let g =
            check(&person, Op::WriteCredential, On::Org(&acme)).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(g.actor(), "bob@example.test (sso)");
        // A page that names no organization shows the first the grants name.
        assert!(matches!(scope_of(&person, None, On::Everywhere), On::Org(o) if *o == globex));
        // An admin grant among others is admin everywhere.
        let mut admin = person.clone();
        admin.grants.push(RoleGrant {
            role: Role::Admin,
            org: None,
        });
        assert!(check(&admin, Op::RotateMasterKey, On::Unowned).is_ok());
        assert!(check(&admin, Op::WriteCredential, On::Org(&initech)).is_ok());
        assert!(matches!(
            scope_of(&admin, None, On::Everywhere),
            On::Everywhere
        ));
    }

    #[test]
    fn moving_a_stored_key_takes_the_key() {
        let stored: BTreeMap<String, String> = [(
            "base_url".to_owned(),
            "https://api.openai.com/v1".to_owned(),
        )]
        .into();
        let moved: BTreeMap<String, String> =
            [("base_url".to_owned(), "https://attacker.example".to_owned())].into();
        let same = stored.clone();
        let other: BTreeMap<String, String> =
            [("organization".to_owned(), "org-1".to_owned())].into();
        let endpoint: BTreeMap<String, String> =
            [("endpoint".to_owned(), "https://x.example".to_owned())].into();
        assert!(matches!(
            key_move(&stored, &moved, true, false),
            Err(Denied::Forbidden(_))
        ));
        assert!(matches!(
            key_move(&stored, &endpoint, true, false),
            Err(Denied::Forbidden(_))
        ));
        assert_eq!(key_move(&stored, &moved, true, true), Ok(()));
        assert_eq!(key_move(&stored, &same, true, false), Ok(()));
        assert_eq!(key_move(&stored, &other, true, false), Ok(()));
        let cleared: BTreeMap<String, String> = [("base_url".to_owned(), String::new())].into();
        assert_eq!(key_move(&stored, &cleared, true, false), Ok(()));
        // A new address where none was stored is a move too.
        assert!(key_move(&BTreeMap::new(), &moved, true, false).is_err());
        // No key stored (a local Ollama): nothing to move.
        assert_eq!(key_move(&stored, &moved, false, false), Ok(()));
    }
}
