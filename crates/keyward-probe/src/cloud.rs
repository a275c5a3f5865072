//! Credentials that are exchanged or signed rather than sent: a Google service account's key
//! becomes an OAuth access token (a JWT bearer grant, RFC 7523), an Entra ID app's secret
//! becomes one too (the client credentials grant), and an AWS access key signs each request
//! (SigV4, with `aws-sigv4`). Shared by the gateway and the key tests.
//!
//! The token endpoints are the server's setting ([`TokenEndpoints`]), never the credential's: a
//! service-account file names a `token_uri`, and a signed assertion sent there could be
//! redeemed at Google by whoever receives it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::header::{HeaderName, HeaderValue};
use secrecy::{ExposeSecret as _, SecretString};
use sha2::{Digest as _, Sha256};

/// Google's token endpoint: the audience of every assertion, and where it is sent by default.
pub const GOOGLE_TOKEN_URL: &str = "https://oauth2.googleapis.com/token";
/// Entra ID's (Azure AD's) public-cloud authority.
pub const ENTRA_AUTHORITY: &str = "https://login.microsoftonline.com";
/// The scope of a token for Vertex AI.
const GOOGLE_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
/// The scope of a token for Azure OpenAI (and the other Cognitive Services).
const AZURE_SCOPE: &str = "https://cognitiveservices.azure.com/.default";
/// The longest token answer read.
const MAX_TOKEN_ANSWER: usize = 64 * 1024;

/// Where access tokens are asked for: the server's setting, for sovereign clouds and private
/// endpoints (and tests), never a credential's.
#[derive(Debug, Clone)]
pub struct TokenEndpoints {
    /// Google's OAuth token endpoint.
    pub google: String,
    /// The Entra ID authority (`https://login.microsoftonline.com`); the tenant's token
    /// endpoint is `{authority}/{tenant}/oauth2/v2.0/token`.
    pub entra: String,
}

impl Default for TokenEndpoints {
    fn default() -> Self {
        Self {
            google: GOOGLE_TOKEN_URL.to_owned(),
            entra: ENTRA_AUTHORITY.to_owned(),
        }
    }
}

/// An access token and how long it lives.
#[derive(Debug)]
pub struct AccessToken {
    /// The token.
    pub token: SecretString,
    /// Its lifetime as the endpoint gave it.
    pub lifetime: Duration,
}

/// Why no token was had. The messages quote no secret: not the key, the assertion, nor what
/// the endpoint answered beyond its error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    /// The credential cannot be used as it is (a service account without a valid key, ...).
    #[error("{0}")]
    Invalid(String),
    /// The endpoint refused the credential (HTTP status, and the OAuth error code).
    #[error("the token endpoint refused the credential (HTTP {status}{})", code.as_deref().map(|c| format!(", {c}")).unwrap_or_default())]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The OAuth `error` (`invalid_grant`, `invalid_client`), when it is a plain word.
        code: Option<String>,
    },
    /// No usable answer.
    #[error("the token endpoint gave no token: {0}")]
    Unreachable(String),
}

/// The `project_id` of a service-account JSON (without reading its key).
pub fn service_account_project(json: &SecretString) -> Option<String> {
    serde_json::from_str::<serde_json::Value>(json.expose_secret())
        .ok()?
        .get("project_id")?
        .as_str()
        .map(str::to_owned)
}

/// A Google service account's key, ready to sign assertions.
pub struct ServiceAccount {
    client_email: String,
    private_key_id: Option<String>,
    /// The project the account belongs to.
    pub project_id: String,
    key: jsonwebtoken::EncodingKey,
}

impl std::fmt::Debug for ServiceAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccount")
            .field("client_email", &self.client_email)
            .finish_non_exhaustive()
    }
}

#[derive(serde::Deserialize)]
struct ServiceAccountFile {
    client_email: String,
    #[serde(default)]
    private_key_id: Option<String>,
    private_key: String,
    #[serde(default)]
    project_id: String,
}

#[derive(serde::Serialize)]
struct GrantClaims<'a> {
    iss: &'a str,
    scope: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
}

impl ServiceAccount {
    /// Reads a service-account key file (JSON, with a PKCS#8 PEM `private_key`).
    pub fn parse(json: &SecretString) -> Result<Self, GrantError> {
        use rsa::pkcs1::EncodeRsaPrivateKey as _;
        use rsa::pkcs8::DecodePrivateKey as _;
        // serde_json's errors name positions, never content.
        let file: ServiceAccountFile =
            serde_json::from_str(json.expose_secret()).map_err(|_| {
                GrantError::Invalid(
                    "the service-account JSON lacks client_email or private_key".into(),
                )
            })?;
        let key = rsa::RsaPrivateKey::from_pkcs8_pem(&file.private_key).map_err(|_| {
            GrantError::Invalid(
                "the service account's private_key is not an RSA key in PKCS#8 PEM".into(),
            )
        })?;
        // jsonwebtoken takes PKCS#1 DER; the document is zeroized when dropped.
        let der = key.to_pkcs1_der().map_err(|_| {
            GrantError::Invalid("the service account's private_key cannot be used".into())
        })?;
        Ok(Self {
            client_email: file.client_email,
            private_key_id: file.private_key_id.filter(|k| !k.is_empty()),
            project_id: file.project_id,
            key: jsonwebtoken::EncodingKey::from_rsa_der(der.as_bytes()),
        })
    }

    /// The signed assertion of a JWT bearer grant, as google-auth makes it: valid for an hour
    /// from `now`, for Google's token endpoint, with the cloud-platform scope.
    pub fn assertion(&self, now: SystemTime) -> Result<String, GrantError> {
        let iat = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid.clone_from(&self.private_key_id);
        let claims = GrantClaims {
            iss: &self.client_email,
            scope: GOOGLE_SCOPE,
            aud: GOOGLE_TOKEN_URL,
            iat,
            exp: iat + 3600,
        };
        jsonwebtoken::encode(&header, &claims, &self.key)
            .map_err(|_| GrantError::Invalid("the assertion could not be signed".into()))
    }

    /// Exchanges the account's key for an access token at `endpoints.google`.
    pub async fn access_token(
        &self,
        client: &reqwest::Client,
        endpoints: &TokenEndpoints,
    ) -> Result<AccessToken, GrantError> {
        let assertion = zeroize::Zeroizing::new(self.assertion(SystemTime::now())?);
        let form = zeroize::Zeroizing::new(
            form_urlencoded::Serializer::new(String::new())
                .append_pair("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer")
                .append_pair("assertion", &assertion)
                .finish(),
        );
        post_form(client, &endpoints.google, form.as_str()).await
    }
}

/// An Entra ID app: tenant, client id and its secret.
#[derive(Debug)]
pub struct EntraApp<'a> {
    /// The tenant (a GUID or its domain).
    pub tenant: &'a str,
    /// The application (client) id.
    pub client_id: &'a str,
    /// The client secret.
    pub secret: &'a SecretString,
}

impl EntraApp<'_> {
    /// A token for Azure OpenAI by the client credentials grant at the tenant's endpoint
    /// under `endpoints.entra`.
    pub async fn access_token(
        &self,
        client: &reqwest::Client,
        endpoints: &TokenEndpoints,
    ) -> Result<AccessToken, GrantError> {
        // The tenant goes into the endpoint's path: the field check let only a name through,
        // and this one is checked again here.
        if self.tenant.is_empty()
            || !self
                .tenant
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
            || self.tenant.starts_with('.')
        {
            return Err(GrantError::Invalid(
                "the credential's tenant_id is not a tenant".into(),
            ));
        }
        let url = format!(
            "{}/{}/oauth2/v2.0/token",
            endpoints.entra.trim_end_matches('/'),
            self.tenant
        );
        let form = zeroize::Zeroizing::new(
            form_urlencoded::Serializer::new(String::new())
                .append_pair("grant_type", "client_credentials")
                .append_pair("client_id", self.client_id)
                .append_pair("client_secret", self.secret.expose_secret())
                .append_pair("scope", AZURE_SCOPE)
                .finish(),
        );
        post_form(client, &url, form.as_str()).await
    }
}

#[derive(serde::Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
}

/// POSTs a token request and reads the answer: `access_token` and `expires_in` (a number, or
/// a string of one, as google-auth accepts).
async fn post_form(
    client: &reqwest::Client,
    url: &str,
    form: &str,
) -> Result<AccessToken, GrantError> {
    let resp = client
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("accept", "application/json")
        .body(form.to_owned())
        .send()
        .await
        .map_err(|e| GrantError::Unreachable(e.without_url().to_string()))?;
    let status = resp.status().as_u16();
    let body = read_capped(resp).await?;
    if !(200..300).contains(&status) {
        // `error` is an OAuth error code; anything else in the answer stays out.
        let code = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("error")?.as_str().map(str::to_owned))
            .filter(|c| c.len() <= 64 && c.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
        return Err(match status {
            400 | 401 | 403 => GrantError::Refused { status, code },
            _ => GrantError::Unreachable(format!(
                "HTTP {status}{}",
                code.map(|c| format!(" ({c})")).unwrap_or_default()
            )),
        });
    }
    let answer: TokenAnswer = serde_json::from_slice(&body).map_err(|_| {
        GrantError::Unreachable("the token endpoint's answer has no access_token".into())
    })?;
    let seconds: i64 = match &answer.expires_in {
        Some(serde_json::Value::Number(n)) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Some(serde_json::Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    }
    // An endpoint that says nothing: an hour, what both issue.
    .unwrap_or(3600);
    // Already expired (or nonsense): used for this request only.
    let seconds = u64::try_from(seconds).unwrap_or(0).min(24 * 3600);
    if answer.access_token.is_empty() || answer.access_token.bytes().any(|b| !b.is_ascii_graphic())
    {
        return Err(GrantError::Unreachable(
            "the token endpoint's access_token cannot be sent in a header".into(),
        ));
    }
    Ok(AccessToken {
        token: SecretString::from(answer.access_token),
        lifetime: Duration::from_secs(seconds),
    })
}

async fn read_capped(mut resp: reqwest::Response) -> Result<Vec<u8>, GrantError> {
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| GrantError::Unreachable(e.without_url().to_string()))?
    {
        if body.len() + chunk.len() > MAX_TOKEN_ANSWER {
            return Err(GrantError::Unreachable(
                "the token endpoint's answer is too long".into(),
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// An AWS access key, for SigV4.
#[derive(Debug)]
pub struct AwsKey<'a> {
    /// The access key id.
    pub access_key_id: &'a str,
    /// The secret access key.
    pub secret: &'a SecretString,
    /// A session token, for temporary credentials.
    pub session_token: Option<&'a SecretString>,
    /// The region signed for.
    pub region: &'a str,
}

impl AwsKey<'_> {
    /// The headers that sign a request for `service` (`bedrock`): `x-amz-date`,
    /// `authorization` and, with a session token, `x-amz-security-token` (the last two marked
    /// sensitive). `url` is the request's as it goes on the wire (percent-escapes and all);
    /// `headers` are the others that go with it, all signed (`host` is the URL's authority).
    /// The body is given as its SHA-256, so it never reaches the signer's trace logging.
    pub fn sign(
        &self,
        service: &str,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        time: SystemTime,
    ) -> Result<Vec<(HeaderName, HeaderValue)>, String> {
        use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
        use aws_sigv4::sign::v4;
        let credentials = aws_credential_types::Credentials::new(
            self.access_key_id,
            self.secret.expose_secret(),
            self.session_token.map(|t| t.expose_secret().to_owned()),
            None,
            "keyward",
        );
        let identity: aws_smithy_runtime_api::client::identity::Identity = credentials.into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(self.region)
            .name(service)
            .time(time)
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| e.to_string())?
            .into();
        let digest = hex::encode(Sha256::digest(body));
        let signable = SignableRequest::new(
            method,
            url,
            headers.iter().copied(),
            SignableBody::Precomputed(digest),
        )
        .map_err(|e| e.to_string())?;
        let (instructions, _signature) = sign(signable, &params)
            .map_err(|e| e.to_string())?
            .into_parts();
        let (signed, _params) = instructions.into_parts();
        signed
            .into_iter()
            .map(|header| {
                let name =
                    HeaderName::from_bytes(header.name().as_bytes()).map_err(|e| e.to_string())?;
                let mut value = HeaderValue::from_str(header.value())
                    .map_err(|_| format!("the {name} header holds characters HTTP cannot carry"))?;
                if header.sensitive() || name == reqwest::header::AUTHORIZATION {
                    value.set_sensitive(true);
                }
                Ok((name, value))
            })
            .collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A fixed-time vector from botocore's own signer (`SigV4Auth` with
    /// `botocore.auth.get_current_datetime` pinned), for a Bedrock Converse request whose model
    /// id holds escapes.
    #[test]
    fn sigv4_matches_botocores_signature() {
        let secret = SecretString::from("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY");
        let key = AwsKey {
            access_key_id: "AKIDEXAMPLE",
            secret: &secret,
            session_token: None,
            region: "us-east-1",
        };
        let body = br#"{"messages":[]}"#;
        let time = UNIX_EPOCH + Duration::from_secs(1_767_225_600); // 2026-01-01T00:00:00Z
        let headers = key
            .sign(
                "bedrock",
                "POST",
                "https://bedrock-runtime.us-east-1.amazonaws.com/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse",
                &[("content-type", "application/json")],
                body,
                time,
            )
            .unwrap();
        let auth = headers
            .iter()
            .find(|(n, _)| n == "authorization")
            .map(|(_, v)| v.to_str().unwrap().to_owned())
            .unwrap();
        assert_eq!(auth, include_str!("../tests/sigv4_vector.txt").trim());
        assert!(
            headers
                .iter()
                .any(|(n, v)| n == "x-amz-date" && v == "20260101T000000Z")
        );
    }
}
