//! moto's server (`moto_server`, from PyPI's `moto[server]`) as AWS KMS, IAM and STS: in memory,
//! account `123456789012`, region `us-east-1`.
//!
//! Set-up calls are plain HTTP from here, signed with `aws-sigv4` as any AWS client signs them
//! (moto routes a request by the service in its signature's scope, so even unchecked calls must
//! carry one). KMS speaks JSON; IAM and STS are form-encoded queries answering XML, of which we
//! read a handful of elements. This keeps the fixture in one process and its failures in the
//! test's panic message; a `python3 -c 'import boto3 ...'` per call would be simpler to write,
//! but would tie the suite to whichever Python on the path has boto3 (not necessarily the one
//! `moto_server` runs on) and cost a Python start per set-up call.
//!
//! moto checks nothing until [`Moto::enable_auth`]; after it, every call must be signed by a
//! known IAM user whose policies allow the action. moto does not enforce a disabled key's state
//! on `Encrypt`/`Decrypt` (docs/research/kms/FINDINGS.md §2).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use serde_json::{Value, json};

use super::{missing, wait_for};

/// The account moto puts everything in.
pub const MOTO_ACCOUNT: &str = "123456789012";
/// The region the fixture uses.
pub const MOTO_REGION: &str = "us-east-1";

/// A running `moto_server`, killed when dropped.
#[derive(Debug)]
pub struct Moto {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    child: Option<Child>,
    dir: tempfile::TempDir,
    http: reqwest::Client,
    /// Who signs set-up calls: a made-up key until auth is on, then an all-powerful IAM user.
    admin: Mutex<AccessKey>,
}

/// An access key, as IAM or STS gave it (test credentials: printable).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessKey {
    /// `AKIA…` (IAM) or `ASIA…` (STS).
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: String,
    /// STS's session token, for temporary credentials.
    pub session_token: Option<String>,
}

impl AccessKey {
    /// As `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and (if any) `AWS_SESSION_TOKEN`.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let mut env = vec![
            ("AWS_ACCESS_KEY_ID", self.access_key_id.clone()),
            ("AWS_SECRET_ACCESS_KEY", self.secret_access_key.clone()),
        ];
        if let Some(token) = &self.session_token {
            env.push(("AWS_SESSION_TOKEN", token.clone()));
        }
        env
    }
}

/// A KMS key moto made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KmsKey {
    /// Its id (a UUID).
    pub id: String,
    /// `arn:aws:kms:us-east-1:123456789012:key/<id>`.
    pub arn: String,
}

/// `moto_server`: `KEYWARD_TEST_MOTO`, or the first on the path.
fn find_moto() -> Option<PathBuf> {
    if let Ok(path) = std::env::var("KEYWARD_TEST_MOTO") {
        return Some(path.into());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("moto_server"))
        .find(|p| p.is_file())
}

/// `text` percent-encoded for a form body (RFC 3986 unreserved characters stay).
fn form_encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The text of the first `<name>…</name>` in `xml`.
fn element<'x>(xml: &'x str, name: &str) -> Option<&'x str> {
    let open = format!("<{name}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&format!("</{name}>"))? + start;
    Some(&xml[start..end])
}

fn allow(actions: &[&str]) -> String {
    json!({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}],
    })
    .to_string()
}

impl Moto {
    /// Starts `moto_server` on a free port of 127.0.0.1; `None` means "skip" (no moto here).
    ///
    /// # Panics
    ///
    /// When `KEYWARD_TEST_REQUIRE_KMS=1` and `moto_server` is missing, or when it does not
    /// come up.
    pub async fn start() -> Option<Self> {
        let Some(bin) = find_moto() else {
            return missing(
                "no moto_server (pip install 'moto[server]', or set KEYWARD_TEST_MOTO)",
            );
        };
        let dir = tempfile::tempdir().expect("a temporary directory");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let log = dir.path().join("moto.log");
        let out = std::fs::File::create(&log).expect("a log file");
        let err = out.try_clone().expect("the log file again");
        let mut child = Command::new(bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("HOME", dir.path())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("moto_server starts");
        let endpoint = format!("http://127.0.0.1:{port}");
        let http = super::client();
        wait_for(&http, &format!("{endpoint}/moto-api/"), &mut child, &log).await;
        Some(Self {
            endpoint,
            child: Some(child),
            dir,
            http,
            admin: Mutex::new(AccessKey {
                access_key_id: "AKIDMOTOSETUP".into(),
                secret_access_key: "moto-setup".into(),
                session_token: None,
            }),
        })
    }

    fn admin(&self) -> AccessKey {
        self.admin.lock().expect("the admin key").clone()
    }

    /// Sends a request signed for `service` as `key`; answers the status and body.
    async fn signed(
        &self,
        service: &str,
        headers: &[(&str, &str)],
        body: String,
        key: &AccessKey,
    ) -> (u16, String) {
        let url = format!("{}/", self.endpoint);
        let identity: Identity = Credentials::new(
            &key.access_key_id,
            &key.secret_access_key,
            key.session_token.clone(),
            None,
            "moto-fixture",
        )
        .into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(MOTO_REGION)
            .name(service)
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .expect("signing parameters")
            .into();
        let signable = SignableRequest::new(
            "POST",
            &url,
            headers.iter().copied(),
            SignableBody::Bytes(body.as_bytes()),
        )
        .expect("a signable request");
        let (instructions, _) = sign(signable, &params).expect("signed").into_parts();
        let mut request = self.http.post(&url).body(body);
        for (name, value) in headers.iter().copied().chain(instructions.headers()) {
            request = request.header(name, value);
        }
        let response = request.send().await.expect("moto answers");
        let status = response.status().as_u16();
        (status, response.text().await.expect("a body"))
    }

    /// A KMS call (`TrentService.<op>`) as the set-up user; panics unless it succeeds.
    pub async fn kms(&self, op: &str, body: Value) -> Value {
        let target = format!("TrentService.{op}");
        let (status, text) = self
            .signed(
                "kms",
                &[
                    ("content-type", "application/x-amz-json-1.1"),
                    ("x-amz-target", &target),
                ],
                body.to_string(),
                &self.admin(),
            )
            .await;
        assert_eq!(status, 200, "{op}: {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// An IAM or STS query as `key`; panics unless it succeeds; answers the XML.
    async fn query(
        &self,
        service: &str,
        action: &str,
        params: &[(&str, &str)],
        key: &AccessKey,
    ) -> String {
        let version = if service == "sts" {
            "2011-06-15"
        } else {
            "2010-05-08"
        };
        let mut body = format!("Action={action}&Version={version}");
        for (name, value) in params {
            body.push_str(&format!("&{name}={}", form_encode(value)));
        }
        let (status, text) = self
            .signed(
                service,
                &[(
                    "content-type",
                    "application/x-www-form-urlencoded; charset=utf-8",
                )],
                body,
                key,
            )
            .await;
        assert_eq!(status, 200, "{service} {action}: {text}");
        text
    }

    /// A new symmetric encryption key.
    pub async fn create_key(&self, description: &str) -> KmsKey {
        let answer = self
            .kms(
                "CreateKey",
                json!({
                    "Description": description,
                    "KeyUsage": "ENCRYPT_DECRYPT",
                    "KeySpec": "SYMMETRIC_DEFAULT",
                }),
            )
            .await;
        let meta = &answer["KeyMetadata"];
        KmsKey {
            id: meta["KeyId"].as_str().expect("a key id").to_owned(),
            arn: meta["Arn"].as_str().expect("a key ARN").to_owned(),
        }
    }

    /// Alias `alias` (`alias/NAME`) for `key_id`.
    pub async fn create_alias(&self, alias: &str, key_id: &str) {
        self.kms(
            "CreateAlias",
            json!({"AliasName": alias, "TargetKeyId": key_id}),
        )
        .await;
    }

    /// Moves `alias` to `key_id`.
    pub async fn update_alias(&self, alias: &str, key_id: &str) {
        self.kms(
            "UpdateAlias",
            json!({"AliasName": alias, "TargetKeyId": key_id}),
        )
        .await;
    }

    /// Disables `key_id` (moto records it, but still encrypts and decrypts with it).
    pub async fn disable_key(&self, key_id: &str) {
        self.kms("DisableKey", json!({"KeyId": key_id})).await;
    }

    /// Turns on moto's IAM auth: from now on every call must be signed by a known user whose
    /// policies allow it. Makes an all-powerful user for the fixture's own set-up calls in the
    /// three calls moto still lets through unchecked.
    pub async fn enable_auth(&self) {
        let response = self
            .http
            .post(format!("{}/moto-api/reset-auth", self.endpoint))
            // Without text/plain, Flask eats the body and moto answers 500.
            .header("content-type", "text/plain")
            .body("3")
            .send()
            .await
            .expect("moto answers");
        assert_eq!(response.status().as_u16(), 200, "reset-auth");
        let admin = self.iam_user("keyward-test-admin", &["*"]).await;
        *self.admin.lock().expect("the admin key") = admin;
    }

    /// A new IAM user `name` allowed `actions` on every resource (`kms:Encrypt`, ...), and an
    /// access key of theirs.
    pub async fn iam_user(&self, name: &str, actions: &[&str]) -> AccessKey {
        let admin = self.admin();
        self.query("iam", "CreateUser", &[("UserName", name)], &admin)
            .await;
        self.query(
            "iam",
            "PutUserPolicy",
            &[
                ("UserName", name),
                ("PolicyName", "keyward-test"),
                ("PolicyDocument", &allow(actions)),
            ],
            &admin,
        )
        .await;
        let xml = self
            .query("iam", "CreateAccessKey", &[("UserName", name)], &admin)
            .await;
        AccessKey {
            access_key_id: element(&xml, "AccessKeyId")
                .expect("an access key id")
                .to_owned(),
            secret_access_key: element(&xml, "SecretAccessKey")
                .expect("a secret access key")
                .to_owned(),
            session_token: None,
        }
    }

    /// A new role `role` allowed `actions`, which IAM user `user` may assume, and temporary
    /// credentials (with a session token) from `sts:AssumeRole` called as `user` with
    /// `user_key` (whose policies must allow `sts:AssumeRole` once auth is on).
    pub async fn assume_role(
        &self,
        user: &str,
        user_key: &AccessKey,
        role: &str,
        actions: &[&str],
    ) -> AccessKey {
        let admin = self.admin();
        let trust = json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Allow",
                "Principal": {"AWS": format!("arn:aws:iam::{MOTO_ACCOUNT}:user/{user}")},
                "Action": "sts:AssumeRole",
            }],
        })
        .to_string();
        let xml = self
            .query(
                "iam",
                "CreateRole",
                &[("RoleName", role), ("AssumeRolePolicyDocument", &trust)],
                &admin,
            )
            .await;
        let role_arn = element(&xml, "Arn").expect("a role ARN").to_owned();
        self.query(
            "iam",
            "PutRolePolicy",
            &[
                ("RoleName", role),
                ("PolicyName", "keyward-test"),
                ("PolicyDocument", &allow(actions)),
            ],
            &admin,
        )
        .await;
        let xml = self
            .query(
                "sts",
                "AssumeRole",
                &[("RoleArn", &role_arn), ("RoleSessionName", "keyward-test")],
                user_key,
            )
            .await;
        AccessKey {
            access_key_id: element(&xml, "AccessKeyId")
                .expect("an access key id")
                .to_owned(),
            secret_access_key: element(&xml, "SecretAccessKey")
                .expect("a secret access key")
                .to_owned(),
            session_token: Some(
                element(&xml, "SessionToken")
                    .expect("a session token")
                    .to_owned(),
            ),
        }
    }

    /// Stops the server (its in-memory state is gone with it).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The server's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("moto.log")).unwrap_or_default()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.stop();
    }
}
