//! Identities from elsewhere (issue 22, being built): JSON Web Tokens an identity provider or a
//! workload platform signs, checked against the issuer's published keys ([`jwks`]). The rules
//! that map a verified token to a role and organization come next; nothing here is wired into
//! authentication yet.

pub mod jwks;
pub mod workloads;
