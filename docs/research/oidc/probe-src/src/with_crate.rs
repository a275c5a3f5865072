//! The same code flow through `openidconnect` 4.1 with `default-features = false` (no bundled
//! reqwest 0.12): HTTP goes through *our* reqwest 0.13 client via oauth2's blanket
//! `impl AsyncHttpClient for Fn(HttpRequest) -> Future<Output = Result<HttpResponse, E>>`.

use std::collections::HashMap;
use std::fmt;

use anyhow::{Context, Result, ensure};
use openidconnect::core::{
    CoreClient, CoreGenderClaim, CoreIdTokenVerifier, CoreJsonWebKeySet, CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm, CoreProviderMetadata, CoreResponseType,
};
use openidconnect::{
    AdditionalClaims, AuthenticationFlow, AuthorizationCode, ClientId, ClientSecret, CsrfToken, HttpRequest,
    HttpResponse, IdToken, IssuerUrl, Nonce, PkceCodeChallenge, RedirectUrl, Scope, TokenResponse,
};
use serde::{Deserialize, Serialize};

use crate::{CLIENT_ID, CLIENT_SECRET, REDIRECT, login_via_driver};

#[derive(Debug)]
pub struct HttpErr(String);
impl fmt::Display for HttpErr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for HttpErr {}

const MAX_BODY: usize = 256 * 1024;

/// The whole adapter: http::Request<Vec<u8>> -> reqwest 0.13 -> http::Response<Vec<u8>>.
async fn call(client: reqwest::Client, req: HttpRequest) -> Result<HttpResponse, HttpErr> {
    let e = |x: &dyn fmt::Display| HttpErr(x.to_string());
    let (parts, body) = req.into_parts();
    let mut resp = client
        .request(parts.method, parts.uri.to_string())
        .headers(parts.headers)
        .body(body)
        .send()
        .await
        .map_err(|x| e(&x))?;
    let mut b = http::Response::builder().status(resp.status());
    for (k, v) in resp.headers() {
        b = b.header(k, v);
    }
    let mut out = Vec::new();
    while let Some(c) = resp.chunk().await.map_err(|x| e(&x))? {
        out.extend_from_slice(&c);
        if out.len() > MAX_BODY {
            return Err(HttpErr("response too large".into()));
        }
    }
    b.body(out).map_err(|x| e(&x))
}

#[derive(Debug, Deserialize, Serialize)]
struct Groups {
    #[serde(default)]
    groups: Vec<String>,
}
impl AdditionalClaims for Groups {}
type GroupsIdToken = IdToken<Groups, CoreGenderClaim, CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm>;

async fn one_login(
    oidc: &openidconnect::Client<
        openidconnect::EmptyAdditionalClaims, openidconnect::core::CoreAuthDisplay, CoreGenderClaim,
        CoreJweContentEncryptionAlgorithm, openidconnect::core::CoreJsonWebKey, openidconnect::core::CoreAuthPrompt,
        openidconnect::StandardErrorResponse<openidconnect::core::CoreErrorResponseType>,
        openidconnect::core::CoreTokenResponse, openidconnect::core::CoreTokenIntrospectionResponse,
        openidconnect::core::CoreRevocableToken, openidconnect::core::CoreRevocationErrorResponse,
        openidconnect::EndpointSet, openidconnect::EndpointNotSet, openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet, openidconnect::EndpointMaybeSet, openidconnect::EndpointMaybeSet,
    >,
    client: &reqwest::Client,
    user: &str,
) -> Result<(GroupsIdToken, Nonce)> {
    let http = |req: HttpRequest| call(client.clone(), req);
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (auth_url, csrf, nonce) = oidc
        .authorize_url(AuthenticationFlow::<CoreResponseType>::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
        .add_scope(Scope::new("email".into()))
        .add_scope(Scope::new("groups".into()))
        .set_pkce_challenge(challenge)
        .url();
    let cb = login_via_driver(auth_url.as_str(), user)?;
    let q: HashMap<_, _> = cb.query_pairs().into_owned().collect();
    ensure!(q.get("state").map(String::as_str) == Some(csrf.secret().as_str()), "state mismatch");
    let tok = oidc
        .exchange_code(AuthorizationCode::new(q["code"].clone()))?
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await?;
    let id: GroupsIdToken = tok.id_token().context("no id_token")?.to_string().parse()?;
    Ok((id, nonce))
}

pub async fn run(client: &reqwest::Client, issuer: &str) -> Result<()> {
    println!("\n== openidconnect 4.1 (default-features = false) over our reqwest 0.13 client");
    let c = client.clone();
    let http = move |req: HttpRequest| call(c.clone(), req);
    let meta = CoreProviderMetadata::discover_async(IssuerUrl::new(issuer.into())?, &http).await?;
    let jwks_uri = meta.jwks_uri().clone();
    let oidc = CoreClient::from_provider_metadata(meta, ClientId::new(CLIENT_ID.into()), Some(ClientSecret::new(CLIENT_SECRET.into())))
        .set_redirect_uri(RedirectUrl::new(REDIRECT.into())?);
    let fixed_alg = [CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256];

    let (id, nonce) = one_login(&oidc, client, "alice").await?;
    let verifier = oidc.id_token_verifier().set_allowed_algs(fixed_alg.clone());
    let claims = id.claims(&verifier, &nonce)?;
    println!("  crate-verified id_token: sub={} email={:?} groups={:?}", claims.subject().as_str(),
        claims.email().map(|e| e.as_str()), claims.additional_claims().groups);
    let wrong_nonce = id.claims(&verifier, &Nonce::new("nope".into())).err().map(|e| e.to_string());
    println!("  wrong nonce -> {wrong_nonce:?}");

    // key rotation: the Client holds the JWKS it got at discovery; nothing refetches it.
    client.post(format!("{issuer}/__test/rotate?retire=1")).send().await?.error_for_status()?;
    let (id2, nonce2) = one_login(&oidc, client, "bob").await?;
    let stale = id2.claims(&oidc.id_token_verifier().set_allowed_algs(fixed_alg.clone()), &nonce2).err().map(|e| format!("{e:?}"));
    println!("  after OP key rotation, stale client JWKS -> {stale:?}");
    let fresh = CoreJsonWebKeySet::fetch_async(&jwks_uri, &http).await?;
    let v2 = CoreIdTokenVerifier::new_confidential_client(ClientId::new(CLIENT_ID.into()), ClientSecret::new(CLIENT_SECRET.into()),
        IssuerUrl::new(issuer.into())?, fresh).set_allowed_algs(fixed_alg);
    let c2 = id2.claims(&v2, &nonce2)?;
    println!("  after app-side JWKS refetch + new verifier: sub={} groups={:?}", c2.subject().as_str(), c2.additional_claims().groups);
    Ok(())
}
