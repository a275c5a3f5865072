//! The OpenID provider harness itself: a code flow with PKCE through its login and consent
//! pages, a group change seen at the next sign-in, key rotation, and tokens it signs on
//! request that verify against its JWKS.

// Helpers here panic on purpose: a failed step is a failed test.
#![allow(clippy::unwrap_used)]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation};
use keyward_testkit::oidc::{CLIENT_ID, CLIENT_SECRET, Provider};
use reqwest::Url;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

/// Nothing listens there: the callback is caught from the provider's redirect, never followed.
const REDIRECT: &str = "http://127.0.0.1:9/ui/sso/callback";
const POST_LOGOUT: &str = "http://127.0.0.1:9/ui/";

fn random() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).unwrap();
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Part `index` of a compact JWT (0 the header, 1 the payload), decoded, not verified.
fn part(jwt: &str, index: usize) -> Value {
    let part = jwt.split('.').nth(index).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

/// The key ids of the provider's JWKS.
async fn kids(op: &Provider) -> Vec<String> {
    op.jwks().await["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

/// Verifies `jwt` (RS256 or ES256) against the provider's JWKS, for audience `aud`.
async fn verify(op: &Provider, jwt: &str, aud: &str) -> Value {
    let set: JwkSet = serde_json::from_value(op.jwks().await).unwrap();
    let header = jsonwebtoken::decode_header(jwt).unwrap();
    let kid = header.kid.expect("a kid");
    let jwk = set.find(&kid).expect("the kid is in the JWKS");
    let mut validation = Validation::new(header.alg);
    validation.set_audience(&[aud]);
    validation.set_issuer(&[&op.issuer]);
    let key = DecodingKey::from_jwk(jwk).unwrap();
    jsonwebtoken::decode::<Value>(jwt, &key, &validation)
        .unwrap()
        .claims
}

/// Signs in as `sub` the way Keyward will (code flow, PKCE S256, state, nonce) and answers the
/// ID token.
async fn sign_in(op: &Provider, sub: &str) -> String {
    let discovery = op.discovery().await;
    let (state, nonce, verifier) = (random(), random(), random());
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    let auth_url = Url::parse_with_params(
        discovery["authorization_endpoint"].as_str().unwrap(),
        [
            ("response_type", "code"),
            ("client_id", CLIENT_ID),
            ("redirect_uri", REDIRECT),
            ("scope", "openid email groups"),
            ("state", &state),
            ("nonce", &nonce),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ],
    )
    .unwrap();

    let callback = op.sign_in_by_http(auth_url.as_str(), sub).await;
    assert!(callback.starts_with(REDIRECT), "{callback}");
    let callback = Url::parse(&callback).unwrap();
    let param = |name: &str| {
        callback
            .query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    assert_eq!(param("state").as_deref(), Some(state.as_str()));
    assert_eq!(param("iss").as_deref(), Some(op.issuer.as_str()));
    let code = param("code").expect("a code");

    let response = op
        .client()
        .post(discovery["token_endpoint"].as_str().unwrap())
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &verifier),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let tokens: Value = response.json().await.unwrap();
    let id_token = tokens["id_token"].as_str().unwrap().to_owned();
    let claims = part(&id_token, 1);
    assert_eq!(claims["sub"], sub);
    assert_eq!(claims["nonce"], nonce.as_str());
    assert_eq!(claims["aud"], CLIENT_ID);
    assert_eq!(claims["iss"], op.issuer.as_str());
    id_token
}

#[tokio::test]
async fn sign_in_group_change_rotation_and_signed_tokens() {
    let Some(op) = Provider::start().await else {
        return;
    };
    assert!(op.issuer.starts_with("http://localhost:"), "{}", op.issuer);
    op.register_client(REDIRECT, POST_LOGOUT).await;

    let id_token = sign_in(&op, "bob").await;
    assert_eq!(part(&id_token, 0)["alg"], "RS256");
    let claims = part(&id_token, 1);
    assert_eq!(claims["groups"], json!(["acme-keys"]));
    assert_eq!(claims["email"], "bob@example.test");
    assert_eq!(claims["email_verified"], true);
    verify(&op, &id_token, CLIENT_ID).await;

    // Bob leaves acme-keys at the provider: his next sign-in says so.
    op.set_user("bob", &[]).await;
    let claims = part(&sign_in(&op, "bob").await, 1);
    assert_eq!(claims["groups"], json!([]));
    let claims = part(&sign_in(&op, "carol").await, 1);
    assert_eq!(claims["email_verified"], false);

    // Rotation: the new key signs, the old one stays published until retired.
    let before = kids(&op).await;
    op.rotate(false).await;
    let overlap = kids(&op).await;
    assert_eq!(overlap.len(), before.len() * 2);
    assert!(before.iter().all(|k| overlap.contains(k)));
    let id_token = sign_in(&op, "alice").await;
    let kid = part(&id_token, 0)["kid"].as_str().unwrap().to_owned();
    assert!(!before.contains(&kid), "still signs with an old key");
    assert_eq!(part(&id_token, 1)["groups"], json!(["platform-admins"]));

    op.rotate(true).await;
    let after = kids(&op).await;
    assert!(before.iter().chain(&overlap).all(|k| !after.contains(k)));

    // A Kubernetes-shaped workload token, signed with the current key.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let token = op
        .sign(json!({
            "iss": op.issuer,
            "sub": "system:serviceaccount:acme:deployer",
            "aud": ["https://keyward.test"],
            "iat": now,
            "nbf": now,
            "exp": now + 600,
            "kubernetes.io": {"namespace": "acme", "serviceaccount": {"name": "deployer"}},
        }))
        .await;
    let header = part(&token, 0);
    assert_eq!(header["alg"], "RS256");
    assert!(after.contains(&header["kid"].as_str().unwrap().to_owned()));
    let claims = verify(&op, &token, "https://keyward.test").await;
    assert_eq!(claims["kubernetes.io"]["namespace"], "acme");
}

#[tokio::test]
async fn es256_id_tokens() {
    let Some(op) = Provider::start_with_id_token_alg("ES256").await else {
        return;
    };
    op.register_client(REDIRECT, POST_LOGOUT).await;
    let id_token = sign_in(&op, "dave").await;
    assert_eq!(part(&id_token, 0)["alg"], "ES256");
    let claims = verify(&op, &id_token, CLIENT_ID).await;
    assert_eq!(claims["groups"], json!(["globex-viewers"]));
    assert_eq!(claims["email"], "dave@other.test");
}

#[tokio::test]
async fn unregistered_redirect_is_refused() {
    let Some(op) = Provider::start().await else {
        return;
    };
    // Before register_client the console client knows no real redirect URI.
    let discovery = op.discovery().await;
    let url = Url::parse_with_params(
        discovery["authorization_endpoint"].as_str().unwrap(),
        [
            ("response_type", "code"),
            ("client_id", CLIENT_ID),
            ("redirect_uri", REDIRECT),
            ("scope", "openid"),
            (
                "code_challenge",
                &URL_SAFE_NO_PAD.encode(Sha256::digest(b"x")),
            ),
            ("code_challenge_method", "S256"),
        ],
    )
    .unwrap();
    let response = op.client().get(url).send().await.unwrap();
    assert_eq!(response.status(), 400);
    assert!(
        response.text().await.unwrap().contains("redirect_uri"),
        "not refused for its redirect_uri"
    );
}
