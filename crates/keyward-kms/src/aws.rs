//! AWS KMS: `Encrypt`, `Decrypt` and `ReEncrypt` on one symmetric KMS key, over KMS's JSON
//! protocol (`TrentService.*`), signed with `aws-sigv4` and sent with `reqwest`. No AWS SDK: it
//! would bring a second HTTP and TLS stack for three calls (docs/research/kms/FINDINGS.md §4).
//!
//! `KEYWARD_KMS=aws-kms:KEY` or `aws-kms:key=KEY,region=REGION,endpoint=URL`, where KEY is a key
//! id, a key ARN, an alias name (`alias/keyward-kek`) or an alias ARN.
//!
//! - Region: `region=`, else the key's ARN, else `AWS_REGION`, else `AWS_DEFAULT_REGION`.
//! - Endpoint: `endpoint=`, else `KEYWARD_KMS_ENDPOINT`, else `AWS_ENDPOINT_URL_KMS`, else
//!   `AWS_ENDPOINT_URL`, else `https://kms.REGION.amazonaws.com/` (`.amazonaws.com.cn` in the
//!   `cn-` regions).
//! - Credentials: see [`AwsKms::new`].
//!
//! Each master key is bound to its id by the encryption context `{"keyward-kek":
//! "keyward-kek-v1:<kid>"}` (the value is [`crate::aad`], the same string every backend binds
//! to; the name says what the context is for when it shows up in CloudTrail). A wrapped key
//! copied to another id does not decrypt.
//!
//! Keyward's credentials need, on the key: `kms:Encrypt` (to wrap), `kms:Decrypt` (at every
//! start), and `kms:ReEncryptFrom` + `kms:ReEncryptTo` (`kms:ReEncrypt*`, to rewrap). `Decrypt`
//! names the configured key, so a blob made under another key is refused rather than opened
//! with whatever key made it. After an alias is moved to a new key, the blobs made under the old
//! key must be rewrapped (`ReEncrypt` finds their key itself) before the next start.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use futures_util::future::BoxFuture;
use keyward_crypto::{KeyId, KeyMaterial};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::{Deserialize, Deserializer, Serialize};
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

use crate::vault::describe_transport;
use crate::{Kms, KmsError, Spec, Wrapped, aad};

/// The encryption context's name; its value is [`crate::aad`].
pub const CONTEXT_NAME: &str = "keyward-kek";

const SETTINGS: [&str; 3] = ["key", "region", "endpoint"];
const JSON_1_1: &str = "application/x-amz-json-1.1";

/// One symmetric AWS KMS key, and the credentials that use it.
#[derive(Debug)]
pub struct AwsKms {
    key: String,
    region: String,
    /// The URL requests go to and are signed for (always with a path, `/` at least).
    endpoint: String,
    /// Zeroized on drop; its `Debug` shows the access key id, never the secret or the token.
    credentials: Credentials,
    /// Where the credentials came from, for messages.
    source: String,
    http: reqwest::Client,
}

/// The three calls, with the permission each needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Encrypt,
    Decrypt,
    ReEncrypt,
}

impl Op {
    fn target(self) -> &'static str {
        match self {
            Op::Encrypt => "TrentService.Encrypt",
            Op::Decrypt => "TrentService.Decrypt",
            Op::ReEncrypt => "TrentService.ReEncrypt",
        }
    }

    fn permission(self) -> &'static str {
        match self {
            Op::Encrypt => "kms:Encrypt",
            Op::Decrypt => "kms:Decrypt",
            Op::ReEncrypt => "kms:ReEncrypt* (kms:ReEncryptFrom and kms:ReEncryptTo)",
        }
    }
}

impl AwsKms {
    /// The key `spec` names, with the region, endpoint and credentials `env` gives.
    ///
    /// Credentials are looked for as the AWS SDKs do, as far as static credentials go:
    ///
    /// 1. `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` (with `AWS_SESSION_TOKEN` for
    ///    temporary credentials);
    /// 2. the shared credentials file, `AWS_SHARED_CREDENTIALS_FILE` or `~/.aws/credentials`,
    ///    profile `AWS_PROFILE` or `default` (`aws_access_key_id`, `aws_secret_access_key`,
    ///    `aws_session_token`).
    ///
    /// Not supported (they need `aws-config` or code of our own that refreshes credentials):
    /// ECS/EKS container credentials, EC2 instance profiles (IMDS), web identity (IRSA), SSO,
    /// `credential_process`, and profiles that assume a role (`role_arn`/`source_profile`).
    /// Where those are the only source, export the variables from a wrapper, e.g.
    /// `aws configure export-credentials --format env`. Credentials are read once, here: Keyward
    /// unwraps its keys at start, so they need not outlive it.
    pub fn new(spec: &Spec, env: &dyn Fn(&str) -> Option<String>) -> Result<Self, KmsError> {
        spec.only(&SETTINGS)?;
        let get = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        let key = spec
            .require("key", "a KMS key id, key ARN, alias/NAME or alias ARN")?
            .to_owned();
        if !key
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'"' | b'\\'))
        {
            return Err(config(
                "the key holds a space or a character a key id cannot have",
            ));
        }
        let arn_region = arn_region(&key)?;
        let region = match (spec.get("region"), arn_region) {
            (Some(given), Some(from_arn)) if given != from_arn => {
                return Err(config(&format!(
                    "region={given}, but the key's ARN is in {from_arn}"
                )));
            }
            (Some(given), _) => given.to_owned(),
            (None, Some(from_arn)) => from_arn.to_owned(),
            (None, None) => get("AWS_REGION")
                .or_else(|| get("AWS_DEFAULT_REGION"))
                .ok_or_else(|| {
                    config(
                        "no region: set region=, use the key's ARN, or set AWS_REGION or \
                         AWS_DEFAULT_REGION",
                    )
                })?
                .trim()
                .to_owned(),
        };
        if region.is_empty()
            || !region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(config(&format!(
                "'{region}' is not an AWS region (such as eu-west-1)"
            )));
        }
        let endpoint = match spec
            .get("endpoint")
            .map(str::to_owned)
            .or_else(|| get("KEYWARD_KMS_ENDPOINT"))
            .or_else(|| get("AWS_ENDPOINT_URL_KMS"))
            .or_else(|| get("AWS_ENDPOINT_URL"))
        {
            Some(url) => url.trim().to_owned(),
            None if region.starts_with("cn-") => format!("https://kms.{region}.amazonaws.com.cn/"),
            None => format!("https://kms.{region}.amazonaws.com/"),
        };
        let endpoint = check_endpoint(&endpoint)?;
        let (credentials, source) = load_credentials(&get)?;
        // Several crates may race to install a process-wide default; any of them will do.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(15))
            .user_agent(concat!("keyward/", env!("CARGO_PKG_VERSION")))
            // A signed request must not be replayed to wherever a redirect points.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| config(&format!("cannot build an HTTP client: {e}")))?;
        Ok(Self {
            key,
            region,
            endpoint,
            credentials,
            source,
            http,
        })
    }

    fn who(&self) -> String {
        self.describe()
    }

    /// Signs and sends one call; answers the body of a 2xx answer (in a wiped buffer: a
    /// `Decrypt` answer holds the key).
    async fn call(&self, op: Op, body: &[u8]) -> Result<Zeroizing<Vec<u8>>, KmsError> {
        let headers = sign_request(
            &self.credentials,
            &self.region,
            &self.endpoint,
            op.target(),
            body,
            SystemTime::now(),
        )
        .map_err(|e| KmsError::Config(format!("aws-kms: cannot sign the request: {e}")))?;
        // reqwest's copy of the body (which holds the key for `Encrypt`) is not wiped; ours is.
        let response = self
            .http
            .post(&self.endpoint)
            .headers(headers)
            .body(body.to_vec())
            .send()
            .await
            .map_err(|e| KmsError::Unreachable {
                kms: self.who(),
                cause: describe_transport(&e),
            })?;
        let status = response.status().as_u16();
        let error_type = response
            .headers()
            .get("x-amzn-errortype")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = response.bytes().await.map_err(|e| KmsError::Unreachable {
            kms: self.who(),
            cause: describe_transport(&e),
        })?;
        let body = Zeroizing::new(Vec::from(bytes));
        if (200..300).contains(&status) {
            return Ok(body);
        }
        Err(self.failure(op, status, &AwsError::parse(error_type.as_deref(), &body)))
    }

    /// The answer to `op`, read as `T`.
    async fn call_json<T: for<'de> Deserialize<'de>>(
        &self,
        op: Op,
        request: &impl Serialize,
    ) -> Result<T, KmsError> {
        let body = Zeroizing::new(
            serde_json::to_vec(request)
                .map_err(|e| config(&format!("cannot encode the request: {e}")))?,
        );
        let answer = self.call(op, &body).await?;
        serde_json::from_slice(&answer).map_err(|e| KmsError::Rejected {
            kms: self.who(),
            // serde's message quotes no input value for a missing field or a wrong type.
            cause: format!("the answer to {} is not what KMS sends: {e}", op.target()),
        })
    }

    /// A failed call as a [`KmsError`] that says what to do. The server's message is quoted only
    /// where it helps and never for a signature error (AWS may quote the canonical request,
    /// session token included); anything quoted is scrubbed of the secrets.
    fn failure(&self, op: Op, status: u16, error: &AwsError) -> KmsError {
        let kms = self.who();
        let code = error.code.as_deref().unwrap_or("");
        let said = error
            .message
            .as_deref()
            .map(|m| self.scrub(m))
            .filter(|m| !m.is_empty())
            .map(|m| format!(" (KMS says: {m})"))
            .unwrap_or_default();
        let access_key = self.credentials.access_key_id();
        let creds = format!("access key {access_key} from {}", self.source);
        let refused = |cause: String| KmsError::Refused {
            kms: kms.clone(),
            cause,
        };
        let rejected = |cause: String| KmsError::Rejected {
            kms: kms.clone(),
            cause,
        };
        let unreachable = |cause: String| KmsError::Unreachable {
            kms: kms.clone(),
            cause,
        };
        let key = &self.key;
        let lower = error.message.as_deref().unwrap_or("").to_ascii_lowercase();
        match code {
            "ThrottlingException"
            | "KMSInternalException"
            | "DependencyTimeoutException"
            | "KeyUnavailableException"
            | "ServiceUnavailable"
            | "InternalFailure" => unreachable(format!("{code}: try again later")),
            "AccessDenied" | "AccessDeniedException" => refused(format!(
                "the {creds} may not use {}: grant it on {key} in the key policy or an IAM \
                 policy{said}",
                op.permission()
            )),
            "UnrecognizedClientException" | "InvalidClientTokenId" | "InvalidAccessKeyId" => {
                refused(format!(
                    "AWS does not know the {creds}, or its session token is missing, wrong or \
                     for another access key ({code})"
                ))
            }
            "InvalidSignatureException" | "SignatureDoesNotMatch" | "IncompleteSignature"
                if lower.contains("expired") || lower.contains("not yet current") =>
            {
                refused(format!(
                    "the request's signature is too old or too new ({code}): is this machine's \
                     clock right?"
                ))
            }
            "InvalidSignatureException" | "SignatureDoesNotMatch" | "IncompleteSignature" => {
                refused(format!(
                    "the signature does not match ({code}): the secret access key is wrong for \
                     the {creds}"
                ))
            }
            "ExpiredToken" | "ExpiredTokenException" | "TokenRefreshRequired" => refused(format!(
                "the session token of the {creds} has expired ({code}): give Keyward new \
                 credentials"
            )),
            "RequestExpired" => refused(format!(
                "the request's signature is too old or too new ({code}): is this machine's \
                 clock right?"
            )),
            "MissingAuthenticationToken" | "MissingAuthenticationTokenException" => refused(
                format!("the request was not signed as KMS expects ({code})"),
            ),
            "NotFoundException" => rejected(format!(
                "the KMS key {key} does not exist in {} (or these credentials cannot see \
                 it){said}",
                self.region
            )),
            "DisabledException" => rejected(format!(
                "the KMS key {key} is disabled: enable it (or move its alias back)"
            )),
            "KMSInvalidStateException" => rejected(format!(
                "the KMS key {key} cannot be used in its current state (pending deletion, \
                 pending import or unavailable){said}"
            )),
            "InvalidCiphertextException" => rejected(
                "the wrapped key does not open: it was wrapped for another key id (its \
                 encryption context differs), or it is damaged"
                    .into(),
            ),
            "IncorrectKeyException" => rejected(format!(
                "the wrapped key was made under another KMS key than {key}: if the alias was \
                 moved to a new key, rewrap the stored keys first"
            )),
            "InvalidKeyUsageException" => rejected(format!(
                "the KMS key {key} is not a symmetric ENCRYPT_DECRYPT key{said}"
            )),
            _ if status == 429 || status >= 500 => {
                unreachable(format!("HTTP {status}{}{said}", code_note(code)))
            }
            _ if status == 401 || status == 403 => refused(format!(
                "HTTP {status}{}: the {creds} are not valid, or may not use {} on \
                 {key}{said}",
                code_note(code),
                op.permission()
            )),
            _ => rejected(format!("HTTP {status}{}{said}", code_note(code))),
        }
    }

    /// `text` on one line, at most 300 characters, without the secret key or session token.
    fn scrub(&self, text: &str) -> String {
        let mut text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        let secret = self.credentials.secret_access_key();
        if !secret.is_empty() {
            text = text.replace(secret, "[redacted]");
        }
        if let Some(token) = self.credentials.session_token().filter(|t| !t.is_empty()) {
            text = text.replace(token, "[redacted]");
        }
        if let Some((cut, _)) = text.char_indices().nth(300) {
            text.truncate(cut);
            text.push('…');
        }
        text
    }

    fn decode_blob(&self, blob: &str, op: Op) -> Result<Vec<u8>, KmsError> {
        STANDARD.decode(blob).map_err(|_| KmsError::Rejected {
            kms: self.who(),
            cause: format!("the CiphertextBlob {} answered is not base64", op.target()),
        })
    }
}

fn config(text: &str) -> KmsError {
    KmsError::Config(format!("aws-kms: {text}"))
}

fn code_note(code: &str) -> String {
    if code.is_empty() {
        String::new()
    } else {
        format!(" ({code})")
    }
}

/// The region in a key or alias ARN (`arn:PARTITION:kms:REGION:ACCOUNT:key/ID`), if `key` is
/// one.
fn arn_region(key: &str) -> Result<Option<&str>, KmsError> {
    if !key.starts_with("arn:") {
        return Ok(None);
    }
    let parts: Vec<&str> = key.splitn(6, ':').collect();
    match parts.as_slice() {
        ["arn", partition, "kms", region, account, resource]
            if !partition.is_empty()
                && !region.is_empty()
                && !account.is_empty()
                && (resource.starts_with("key/") || resource.starts_with("alias/")) =>
        {
            Ok(Some(region))
        }
        _ => Err(config(
            "the key's ARN is not a KMS key or alias ARN \
             (arn:aws:kms:REGION:ACCOUNT:key/ID or …:alias/NAME)",
        )),
    }
}

/// `url` as requests are sent and signed: http(s), a host, no user or query.
fn check_endpoint(url: &str) -> Result<String, KmsError> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| config(&format!("the endpoint '{url}' is not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https")
        || parsed.host_str().is_none()
        || !parsed.username().is_empty()
        || parsed.password().is_some()
        || parsed.query().is_some()
        || parsed.fragment().is_some()
    {
        return Err(config(
            "the endpoint must be http:// or https://HOST[:PORT][/PATH], without a user, query \
             or fragment",
        ));
    }
    Ok(parsed.to_string())
}

/// The credentials, and where they came from.
fn load_credentials(
    get: &dyn Fn(&str) -> Option<String>,
) -> Result<(Credentials, String), KmsError> {
    match (get("AWS_ACCESS_KEY_ID"), get("AWS_SECRET_ACCESS_KEY")) {
        (Some(id), Some(secret)) => {
            let token = get("AWS_SESSION_TOKEN");
            let source = if token.is_some() {
                "the environment (with AWS_SESSION_TOKEN)"
            } else {
                "the environment"
            };
            return Ok((
                Credentials::new(id.trim(), secret, token, None, "environment"),
                source.to_owned(),
            ));
        }
        (Some(_), None) => {
            return Err(config(
                "AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not",
            ));
        }
        (None, Some(_)) => {
            return Err(config(
                "AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not",
            ));
        }
        (None, None) => {}
    }
    let profile = get("AWS_PROFILE").unwrap_or_else(|| "default".to_owned());
    let home = get("HOME").or_else(|| get("USERPROFILE"));
    let path = match get("AWS_SHARED_CREDENTIALS_FILE") {
        Some(p) => match (p.strip_prefix("~/"), &home) {
            (Some(rest), Some(home)) => format!("{home}/{rest}"),
            _ => p,
        },
        None => match &home {
            Some(home) => format!("{home}/.aws/credentials"),
            None => {
                return Err(config(
                    "no AWS credentials: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY are not set, \
                     and neither AWS_SHARED_CREDENTIALS_FILE nor HOME is, so there is no \
                     shared credentials file to read (container, instance-profile, \
                     web-identity and SSO credentials are not supported)",
                ));
            }
        },
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => Zeroizing::new(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(config(&format!(
                "no AWS credentials: tried AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (not set) \
                 and the shared credentials file {path} (not found; profile '{profile}'). \
                 Container, instance-profile (IMDS), web-identity and SSO credentials are not \
                 supported: set the variables or write the file"
            )));
        }
        Err(e) => {
            return Err(config(&format!(
                "cannot read the shared credentials file {path}: {e}"
            )));
        }
    };
    let found = read_profile(&text, &profile);
    let Some(found) = found else {
        return Err(config(&format!(
            "the shared credentials file {path} has no profile [{profile}] (AWS_PROFILE)"
        )));
    };
    match (found.access_key_id, found.secret_access_key) {
        (Some(id), Some(secret)) => {
            let token = found.session_token.map(|t| t.as_str().to_owned());
            Ok((
                Credentials::new(
                    id.as_str(),
                    secret.as_str(),
                    token,
                    None,
                    "shared-credentials-file",
                ),
                format!("profile '{profile}' of {path}"),
            ))
        }
        _ => Err(config(&format!(
            "profile [{profile}] of {path} has no aws_access_key_id and aws_secret_access_key \
             (profiles that assume a role, use SSO or a credential_process are not supported)"
        ))),
    }
}

/// The static credentials of one profile of a shared credentials file.
#[derive(Default)]
struct ProfileKeys {
    access_key_id: Option<Zeroizing<String>>,
    secret_access_key: Option<Zeroizing<String>>,
    session_token: Option<Zeroizing<String>>,
}

/// Profile `profile` of an INI credentials file (`[name]` sections of `key = value` lines; `#`
/// and `;` start a comment line; indented lines continue a nested value and are skipped);
/// `None` if it has no such section.
fn read_profile(text: &str, profile: &str) -> Option<ProfileKeys> {
    let mut found: Option<ProfileKeys> = None;
    let mut inside = false;
    for line in text.lines() {
        if line.starts_with([' ', '\t']) {
            continue;
        }
        let line = line.trim();
        if line.is_empty() || line.starts_with(['#', ';']) {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = name.trim() == profile;
            if inside && found.is_none() {
                found = Some(ProfileKeys::default());
            }
            continue;
        }
        let (Some(keys), true) = (found.as_mut(), inside) else {
            continue;
        };
        let Some((name, value)) = line.split_once('=') else {
            continue;
        };
        let value = Some(Zeroizing::new(value.trim().to_owned())).filter(|v| !v.is_empty());
        match name.trim().to_ascii_lowercase().as_str() {
            "aws_access_key_id" => keys.access_key_id = value,
            "aws_secret_access_key" => keys.secret_access_key = value,
            "aws_session_token" | "aws_security_token" => keys.session_token = value,
            _ => {}
        }
    }
    found
}

/// The headers that make a signed KMS JSON request of `body` to `url`: content type, target,
/// and SigV4's `x-amz-date`, `x-amz-security-token` (with a session token) and `authorization`
/// (the last two marked sensitive, so they never show in a `Debug`).
///
/// The payload is hashed here and handed to the signer as a digest, so the body (which holds
/// the key for `Encrypt`) never reaches `aws-sigv4`'s trace logging.
fn sign_request(
    credentials: &Credentials,
    region: &str,
    url: &str,
    target: &str,
    body: &[u8],
    time: SystemTime,
) -> Result<HeaderMap, String> {
    let identity: Identity = credentials.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("kms")
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| e.to_string())?
        .into();
    let unsigned = [("content-type", JSON_1_1), ("x-amz-target", target)];
    let digest = hex::encode(Sha256::digest(body));
    let signable = SignableRequest::new(
        "POST",
        url,
        unsigned.iter().copied(),
        SignableBody::Precomputed(digest),
    )
    .map_err(|e| e.to_string())?;
    let (instructions, _signature) = sign(signable, &params)
        .map_err(|e| e.to_string())?
        .into_parts();
    let mut headers = HeaderMap::new();
    for (name, value) in unsigned {
        headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_str(value).map_err(|e| e.to_string())?,
        );
    }
    let (signed, _params) = instructions.into_parts();
    for header in signed {
        // Lower case in aws-sigv4; `from_bytes` rather than `from_static`, which would panic.
        let name = HeaderName::from_bytes(header.name().as_bytes()).map_err(|e| e.to_string())?;
        let mut value = HeaderValue::from_str(header.value())
            .map_err(|_| format!("the {} header holds characters HTTP cannot carry", name))?;
        if header.sensitive() || name == reqwest::header::AUTHORIZATION {
            value.set_sensitive(true);
        }
        headers.insert(name, value);
    }
    Ok(headers)
}

/// An AWS error as the SDKs read it: the code from the `x-amzn-errortype` header or the JSON
/// body's `__type`/`code` (or an XML body's `<Code>`, as moto sends for auth errors), with any
/// namespace (`com.amazonaws.kms#`) and suffix (`:http://...`) removed; the message from
/// `message`/`Message`.
#[derive(Debug, Default, PartialEq, Eq)]
struct AwsError {
    code: Option<String>,
    message: Option<String>,
}

impl AwsError {
    fn parse(header: Option<&str>, body: &[u8]) -> Self {
        let json: Option<serde_json::Value> = serde_json::from_slice(body).ok();
        let field = |names: &[&str]| {
            json.as_ref().and_then(|j| {
                names
                    .iter()
                    .find_map(|n| j.get(*n).and_then(|v| v.as_str()).map(str::to_owned))
            })
        };
        let text = std::str::from_utf8(body).unwrap_or("");
        let code = header
            .map(str::to_owned)
            .or_else(|| field(&["__type", "code", "Code"]))
            .or_else(|| xml_element(text, "Code"))
            .map(|c| sanitize_code(&c))
            .filter(|c| !c.is_empty());
        let message = field(&["message", "Message"]).or_else(|| xml_element(text, "Message"));
        Self { code, message }
    }
}

fn sanitize_code(raw: &str) -> String {
    let code = raw.rsplit_once('#').map_or(raw, |(_, c)| c);
    let code = code.split_once(':').map_or(code, |(c, _)| c);
    code.trim().to_owned()
}

/// The text of the first `<name>…</name>` in `text`.
fn xml_element(text: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let start = text.find(&open)? + open.len();
    let end = text[start..].find(&format!("</{name}>"))? + start;
    Some(text[start..end].trim().to_owned())
}

/// A base64 value that holds a key: wiped when dropped.
struct SecretBase64(Zeroizing<String>);

impl<'de> Deserialize<'de> for SecretBase64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(|s| Self(Zeroizing::new(s)))
    }
}

type Context<'a> = [(&'a str, &'a str); 1];

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct EncryptRequest<'a> {
    key_id: &'a str,
    plaintext: &'a str,
    #[serde(serialize_with = "context")]
    encryption_context: &'a Context<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct DecryptRequest<'a> {
    ciphertext_blob: &'a str,
    #[serde(serialize_with = "context")]
    encryption_context: &'a Context<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ReEncryptRequest<'a> {
    ciphertext_blob: &'a str,
    #[serde(serialize_with = "context")]
    source_encryption_context: &'a Context<'a>,
    destination_key_id: &'a str,
    #[serde(serialize_with = "context")]
    destination_encryption_context: &'a Context<'a>,
}

fn context<S: serde::Serializer>(pairs: &&Context<'_>, s: S) -> Result<S::Ok, S::Error> {
    s.collect_map(pairs.iter().copied())
}

/// `Encrypt` and `ReEncrypt` answer the blob and the ARN of the key that made it.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CiphertextAnswer {
    ciphertext_blob: String,
    key_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DecryptAnswer {
    plaintext: SecretBase64,
}

impl Kms for AwsKms {
    fn kind(&self) -> &'static str {
        "aws-kms"
    }

    fn key_name(&self) -> String {
        self.key.clone()
    }

    fn guarded_secrets(&self) -> Vec<Zeroizing<String>> {
        let mut out = vec![Zeroizing::new(
            self.credentials.secret_access_key().to_owned(),
        )];
        if let Some(token) = self.credentials.session_token() {
            out.push(Zeroizing::new(token.to_owned()));
        }
        out
    }

    fn location(&self) -> String {
        format!(
            "{} ({}, credentials from {})",
            self.endpoint, self.region, self.source
        )
    }

    fn wrap<'a>(&'a self, key: &'a KeyMaterial) -> BoxFuture<'a, Result<Wrapped, KmsError>> {
        Box::pin(async move {
            let plaintext = Zeroizing::new(STANDARD.encode(key.expose()));
            let bound = aad(key.kid());
            let answer: CiphertextAnswer = self
                .call_json(
                    Op::Encrypt,
                    &EncryptRequest {
                        key_id: &self.key,
                        plaintext: &plaintext,
                        encryption_context: &[(CONTEXT_NAME, &bound)],
                    },
                )
                .await?;
            Ok(Wrapped {
                blob: self.decode_blob(&answer.ciphertext_blob, Op::Encrypt)?,
                key_version: answer.key_id,
            })
        })
    }

    /// `Decrypt` names no key: KMS finds the one that wrapped the blob (a symmetric key's
    /// ciphertext says which), so a store wrapped under the key an alias pointed at before it
    /// moved still opens (the credentials need `kms:Decrypt` on that key) until `keyward
    /// master-key rewrap-kms` moves it to the new one. The encryption context still binds it
    /// to its key id.
    fn unwrap<'a>(
        &'a self,
        kid: &'a KeyId,
        blob: &'a [u8],
    ) -> BoxFuture<'a, Result<KeyMaterial, KmsError>> {
        Box::pin(async move {
            let bound = aad(kid);
            let answer: DecryptAnswer = self
                .call_json(
                    Op::Decrypt,
                    &DecryptRequest {
                        ciphertext_blob: &STANDARD.encode(blob),
                        encryption_context: &[(CONTEXT_NAME, &bound)],
                    },
                )
                .await?;
            let bytes = Zeroizing::new(STANDARD.decode(answer.plaintext.0.as_bytes()).map_err(
                |_| KmsError::Rejected {
                    kms: self.who(),
                    cause: "the plaintext Decrypt answered is not base64".into(),
                },
            )?);
            KeyMaterial::from_slice(kid.clone(), &bytes).map_err(|e| KmsError::Rejected {
                kms: self.who(),
                cause: e.to_string(),
            })
        })
    }

    /// `ReEncrypt` to the configured key (after its alias moved, or to pick up a new key):
    /// the key never leaves KMS. `key_version` is the ARN of the key that now wraps it.
    fn rewrap<'a>(
        &'a self,
        kid: &'a KeyId,
        blob: &'a [u8],
    ) -> BoxFuture<'a, Result<Wrapped, KmsError>> {
        Box::pin(async move {
            let bound = aad(kid);
            let context = [(CONTEXT_NAME, bound.as_str())];
            let answer: CiphertextAnswer = self
                .call_json(
                    Op::ReEncrypt,
                    &ReEncryptRequest {
                        ciphertext_blob: &STANDARD.encode(blob),
                        source_encryption_context: &context,
                        destination_key_id: &self.key,
                        destination_encryption_context: &context,
                    },
                )
                .await?;
            Ok(Wrapped {
                blob: self.decode_blob(&answer.ciphertext_blob, Op::ReEncrypt)?,
                key_version: answer.key_id,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::UNIX_EPOCH;

    use super::*;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        }
    }

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    const TOKEN: &str = "FQoGZXIvYXdzEXAMPLETOKEN";

    fn creds_env<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
        let mut pairs = vec![
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", SECRET),
            ("AWS_SESSION_TOKEN", TOKEN),
        ];
        pairs.extend_from_slice(extra);
        pairs
    }

    fn open(spec: &str, env: &[(&str, &str)]) -> Result<AwsKms, KmsError> {
        AwsKms::new(&Spec::parse(spec).unwrap(), &env_of(env))
    }

    /// The vector botocore's own signer produced (docs/research/kms/sigv4_oracle.py), for
    /// this request at 2026-01-01T12:00:00Z.
    #[test]
    fn signs_exactly_as_botocore_does() {
        let vector: serde_json::Value =
            serde_json::from_str(include_str!("../../../docs/research/kms/sigv4-vector.json"))
                .unwrap();
        let body = br#"{"KeyId":"alias/keyward-kek","Plaintext":"AAAA"}"#;
        // The vector was made from this very request: same headers, host, body.
        let canonical = vector["canonical_request"].as_str().unwrap();
        assert!(canonical.starts_with("POST\n/\n\n"), "{canonical}");
        assert!(canonical.contains("\nhost:kms.us-east-1.amazonaws.com\n"));
        assert!(canonical.contains("\nx-amz-target:TrentService.Encrypt\n"));
        assert!(canonical.contains(&format!("\nx-amz-security-token:{TOKEN}\n")));
        assert!(canonical.ends_with(&format!("\n{}", hex::encode(Sha256::digest(body)))));

        let credentials = Credentials::new("AKIDEXAMPLE", SECRET, Some(TOKEN.into()), None, "t");
        let headers = sign_request(
            &credentials,
            "us-east-1",
            "https://kms.us-east-1.amazonaws.com/",
            "TrentService.Encrypt",
            body,
            UNIX_EPOCH + Duration::from_secs(1_767_268_800),
        )
        .unwrap();
        let expected = vector["headers"].as_object().unwrap();
        assert_eq!(headers.len(), expected.len(), "{headers:?}");
        for (name, value) in expected {
            assert_eq!(
                headers.get(name.as_str()).unwrap().to_str().unwrap(),
                value.as_str().unwrap(),
                "{name}"
            );
        }
        let signature = vector["signature"].as_str().unwrap();
        assert!(
            headers["authorization"]
                .to_str()
                .unwrap()
                .ends_with(&format!("Signature={signature}"))
        );
        // Neither the secret nor the token shows in a Debug of the headers.
        let shown = format!("{headers:?}");
        assert!(!shown.contains(SECRET) && !shown.contains(TOKEN), "{shown}");
    }

    #[test]
    fn region_comes_from_the_setting_the_arn_or_the_environment() {
        let env = creds_env(&[
            ("AWS_REGION", "eu-west-1"),
            ("AWS_DEFAULT_REGION", "us-east-2"),
        ]);
        let kms = open("aws-kms:alias/k", &env).unwrap();
        assert_eq!(kms.region, "eu-west-1");
        assert_eq!(kms.endpoint, "https://kms.eu-west-1.amazonaws.com/");
        let kms = open(
            "aws-kms:arn:aws:kms:ap-south-1:111122223333:key/1234abcd",
            &env,
        )
        .unwrap();
        assert_eq!(kms.region, "ap-south-1");
        assert_eq!(
            kms.key_name(),
            "arn:aws:kms:ap-south-1:111122223333:key/1234abcd"
        );
        let kms = open("aws-kms:key=alias/k,region=sa-east-1", &env).unwrap();
        assert_eq!(kms.region, "sa-east-1");
        let kms = open(
            "aws-kms:alias/k",
            &creds_env(&[("AWS_DEFAULT_REGION", "us-east-2")]),
        )
        .unwrap();
        assert_eq!(kms.region, "us-east-2");
        let kms = open("aws-kms:k,region=cn-north-1", &creds_env(&[])).unwrap();
        assert_eq!(kms.endpoint, "https://kms.cn-north-1.amazonaws.com.cn/");

        let e = open("aws-kms:alias/k", &creds_env(&[]))
            .unwrap_err()
            .to_string();
        for name in ["region=", "AWS_REGION", "AWS_DEFAULT_REGION"] {
            assert!(e.contains(name), "{e}");
        }
        let e = open(
            "aws-kms:key=arn:aws:kms:ap-south-1:1:key/x,region=eu-west-1",
            &creds_env(&[]),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("ap-south-1"), "{e}");
        let e = open("aws-kms:arn:aws:s3:::bucket", &env)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a KMS key"), "{e}");
        let e = open("aws-kms:k,region=EU WEST", &env)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not an AWS region"), "{e}");
        let e = open("aws-kms:k,colour=blue", &env).unwrap_err().to_string();
        assert!(e.contains("unknown setting 'colour'"), "{e}");
    }

    #[test]
    fn endpoint_comes_from_the_setting_then_four_variables() {
        let all = [
            ("AWS_REGION", "eu-west-1"),
            ("KEYWARD_KMS_ENDPOINT", "http://127.0.0.1:1"),
            ("AWS_ENDPOINT_URL_KMS", "http://127.0.0.1:2"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:3/base"),
        ];
        let kms = open("aws-kms:k,endpoint=http://127.0.0.1:9", &creds_env(&all)).unwrap();
        assert_eq!(kms.endpoint, "http://127.0.0.1:9/");
        for (i, expected) in [
            "http://127.0.0.1:1/",
            "http://127.0.0.1:2/",
            "http://127.0.0.1:3/base",
        ]
        .into_iter()
        .enumerate()
        {
            let mut env = creds_env(&all[i + 1..]);
            env.push(("AWS_REGION", "eu-west-1"));
            assert_eq!(open("aws-kms:k", &env).unwrap().endpoint, expected);
        }
        let e = open(
            "aws-kms:k,endpoint=ftp://x",
            &creds_env(&[("AWS_REGION", "eu-west-1")]),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("http:// or https://"), "{e}");
        let e = open(
            "aws-kms:k,endpoint=https://u:p@kms.example",
            &creds_env(&[("AWS_REGION", "eu-west-1")]),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("without a user"), "{e}");
    }

    #[test]
    fn credentials_come_from_the_environment_then_the_shared_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("credentials");
        std::fs::write(
            &file,
            "# a comment\n[default]\naws_access_key_id = AKIADEFAULT\naws_secret_access_key = \
             default-secret\n\n[ci]\naws_access_key_id=ASIACI\naws_secret_access_key=ci-secret\n\
             aws_session_token = ci-token\ns3 =\n  max_concurrent_requests = 2\n\
             [sso]\nsso_start_url = https://x\n",
        )
        .unwrap();
        let file = file.to_str().unwrap();
        let base = [("AWS_REGION", "eu-west-1")];

        // The environment wins.
        let kms = open(
            "aws-kms:k",
            &creds_env(&[
                ("AWS_REGION", "eu-west-1"),
                ("AWS_SHARED_CREDENTIALS_FILE", file),
            ]),
        )
        .unwrap();
        assert_eq!(kms.credentials.access_key_id(), "AKIDEXAMPLE");
        assert_eq!(kms.credentials.session_token(), Some(TOKEN));
        assert!(
            kms.location().contains("the environment"),
            "{}",
            kms.location()
        );
        let shown = format!("{kms:?}");
        assert!(!shown.contains(SECRET) && !shown.contains(TOKEN), "{shown}");

        let mut env = base.to_vec();
        env.push(("AWS_SHARED_CREDENTIALS_FILE", file));
        let kms = open("aws-kms:k", &env).unwrap();
        assert_eq!(kms.credentials.access_key_id(), "AKIADEFAULT");
        assert_eq!(kms.credentials.secret_access_key(), "default-secret");
        assert_eq!(kms.credentials.session_token(), None);
        assert!(
            kms.location().contains("profile 'default'"),
            "{}",
            kms.location()
        );

        env.push(("AWS_PROFILE", "ci"));
        let kms = open("aws-kms:k", &env).unwrap();
        assert_eq!(kms.credentials.access_key_id(), "ASIACI");
        assert_eq!(kms.credentials.session_token(), Some("ci-token"));

        // HOME/.aws/credentials when no file is named.
        std::fs::create_dir(dir.path().join(".aws")).unwrap();
        std::fs::copy(file, dir.path().join(".aws/credentials")).unwrap();
        let home = dir.path().to_str().unwrap();
        let kms = open("aws-kms:k", &[("AWS_REGION", "eu-west-1"), ("HOME", home)]).unwrap();
        assert_eq!(kms.credentials.access_key_id(), "AKIADEFAULT");

        let mut sso = base.to_vec();
        sso.extend([
            ("AWS_SHARED_CREDENTIALS_FILE", file),
            ("AWS_PROFILE", "sso"),
        ]);
        let e = open("aws-kms:k", &sso).unwrap_err().to_string();
        assert!(e.contains("has no aws_access_key_id"), "{e}");
        let mut nope = base.to_vec();
        nope.extend([
            ("AWS_SHARED_CREDENTIALS_FILE", file),
            ("AWS_PROFILE", "nope"),
        ]);
        let e = open("aws-kms:k", &nope).unwrap_err().to_string();
        assert!(e.contains("no profile [nope]"), "{e}");

        let e = open(
            "aws-kms:k",
            &[("AWS_REGION", "eu-west-1"), ("HOME", "/nonexistent")],
        )
        .unwrap_err()
        .to_string();
        for tried in [
            "AWS_ACCESS_KEY_ID",
            "/nonexistent/.aws/credentials",
            "not supported",
        ] {
            assert!(e.contains(tried), "{e}");
        }
        let e = open(
            "aws-kms:k",
            &[("AWS_REGION", "eu-west-1"), ("AWS_ACCESS_KEY_ID", "AKID")],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("AWS_SECRET_ACCESS_KEY is not"), "{e}");
    }

    #[test]
    fn error_codes_are_read_as_the_sdks_read_them() {
        let parse = |h: Option<&str>, b: &str| AwsError::parse(h, b.as_bytes()).code;
        assert_eq!(
            parse(
                None,
                r#"{"__type":"com.amazonaws.kms#DisabledException","message":"x"}"#
            )
            .as_deref(),
            Some("DisabledException")
        );
        assert_eq!(
            parse(
                Some("NotFoundException:http://internal.amazon.com/coral/com.amazon.kms/"),
                "{}"
            )
            .as_deref(),
            Some("NotFoundException")
        );
        assert_eq!(
            parse(None, r#"{"code":"ThrottlingException"}"#).as_deref(),
            Some("ThrottlingException")
        );
        let xml = "<?xml version=\"1.0\"?>\n<ErrorResponse><Errors><Error><Code>AccessDenied\
                   </Code><Message>User: arn:aws:iam::123456789012:user/nobody is not \
                   authorized to perform: kms:Decrypt</Message></Error></Errors></ErrorResponse>";
        let e = AwsError::parse(None, xml.as_bytes());
        assert_eq!(e.code.as_deref(), Some("AccessDenied"));
        assert!(e.message.unwrap().ends_with("kms:Decrypt"));
        assert_eq!(parse(None, "<html>bad gateway</html>"), None);
    }

    #[test]
    fn each_failure_says_what_it_is_and_never_quotes_a_secret() {
        let kms = open(
            "aws-kms:alias/keyward-kek",
            &creds_env(&[("AWS_REGION", "eu-west-1")]),
        )
        .unwrap();
        let fail = |op, status, header: Option<&str>, body: &str| {
            kms.failure(op, status, &AwsError::parse(header, body.as_bytes()))
        };
        let e = fail(
            Op::Decrypt,
            400,
            None,
            r#"{"__type":"DisabledException","message":"arn:... is disabled."}"#,
        );
        assert!(matches!(e, KmsError::Rejected { .. }), "{e}");
        assert!(e.to_string().contains("is disabled"), "{e}");
        let e = fail(Op::Encrypt, 400, Some("KMSInvalidStateException"), "");
        assert!(matches!(e, KmsError::Rejected { .. }), "{e}");
        assert!(e.to_string().contains("pending deletion"), "{e}");
        let e = fail(
            Op::Decrypt,
            400,
            None,
            r#"{"__type":"InvalidCiphertextException"}"#,
        );
        assert!(e.to_string().contains("another key id"), "{e}");
        let e = fail(
            Op::Decrypt,
            400,
            None,
            r#"{"__type":"IncorrectKeyException"}"#,
        );
        assert!(e.to_string().contains("rewrap"), "{e}");
        let e = fail(Op::Decrypt, 400, None, r#"{"__type":"NotFoundException"}"#);
        assert!(matches!(e, KmsError::Rejected { .. }), "{e}");

        for transient in [
            fail(
                Op::Decrypt,
                400,
                None,
                r#"{"__type":"ThrottlingException"}"#,
            ),
            fail(
                Op::Decrypt,
                500,
                None,
                r#"{"__type":"KMSInternalException"}"#,
            ),
            fail(Op::Decrypt, 503, None, "<html>Service Unavailable</html>"),
        ] {
            assert!(transient.is_transient(), "{transient}");
        }

        let e = fail(
            Op::Decrypt,
            400,
            None,
            r#"{"__type":"AccessDeniedException","message":"User: x is not authorized"}"#,
        );
        assert!(matches!(e, KmsError::Refused { .. }), "{e}");
        assert!(e.to_string().contains("kms:Decrypt"), "{e}");
        let e = fail(Op::ReEncrypt, 403, None, "<Code>AccessDenied</Code>");
        assert!(e.to_string().contains("kms:ReEncrypt*"), "{e}");
        let e = fail(
            Op::Encrypt,
            400,
            None,
            r#"{"__type":"ExpiredTokenException"}"#,
        );
        assert!(e.to_string().contains("expired"), "{e}");

        // AWS may quote the canonical request (session token included) in a signature error;
        // no part of it is passed on, and any other message is scrubbed.
        let leaky = format!(
            r#"{{"__type":"InvalidSignatureException","message":"The canonical request was x-amz-security-token:{TOKEN} key {SECRET}"}}"#
        );
        let e = fail(Op::Decrypt, 400, None, &leaky);
        assert!(matches!(e, KmsError::Refused { .. }), "{e}");
        assert!(e.to_string().contains("secret access key is wrong"), "{e}");
        let leaky = format!(
            r#"{{"__type":"AccessDeniedException","message":"token {TOKEN} secret {SECRET}"}}"#
        );
        let e = fail(Op::Decrypt, 400, None, &leaky).to_string();
        assert!(!e.contains(TOKEN) && !e.contains(SECRET), "{e}");
        assert!(e.contains("[redacted]"), "{e}");
    }
}
