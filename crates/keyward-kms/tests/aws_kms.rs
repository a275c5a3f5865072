//! The AWS KMS backend against moto's server on 127.0.0.1 (KMS, and IAM/STS for the
//! credentials tests, with moto's SigV4 and policy checks switched on).

#![allow(clippy::unwrap_used)]

use keyward_crypto::{KeyId, KeyMaterial};
use keyward_kms::KmsError;
use keyward_testkit::kms::{AccessKey, MOTO_REGION, Moto};

fn env_of(pairs: Vec<(&str, String)>) -> impl Fn(&str) -> Option<String> + use<> {
    let pairs: Vec<(String, String)> = pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    move |name| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }
}

/// `key`'s credentials, with moto as the endpoint (through `KEYWARD_KMS_ENDPOINT`).
fn env_for(moto: &Moto, key: &AccessKey) -> impl Fn(&str) -> Option<String> + use<> {
    let mut pairs = key.env();
    pairs.push(("KEYWARD_KMS_ENDPOINT", moto.endpoint.clone()));
    env_of(pairs)
}

fn kid(s: &str) -> KeyId {
    KeyId::new(s).unwrap()
}

fn made_up_key() -> AccessKey {
    AccessKey {
        access_key_id: "AKIDEXAMPLE".into(),
        secret_access_key: "not-checked-until-auth-is-on".into(),
        session_token: None,
    }
}

#[tokio::test]
async fn wraps_unwraps_bound_to_the_kid_and_rewraps_when_the_alias_moves() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    let first = moto.create_key("keyward kek 1").await;
    moto.create_alias("alias/keyward-kek", &first.id).await;
    let mut env = made_up_key().env();
    env.push(("AWS_REGION", MOTO_REGION.to_owned()));
    let spec = format!("aws-kms:key=alias/keyward-kek,endpoint={}", moto.endpoint);
    let kms = keyward_kms::open(&spec, &env_of(env)).unwrap();
    assert_eq!(kms.kind(), "aws-kms");
    assert_eq!(kms.key_name(), "alias/keyward-kek");

    let key = KeyMaterial::generate(kid("k1")).unwrap();
    let wrapped = kms.wrap(&key).await.unwrap();
    // The ARN of the key behind the alias.
    assert_eq!(wrapped.key_version.as_deref(), Some(first.arn.as_str()));
    assert!(!wrapped.blob.windows(32).any(|w| w == key.expose()));
    let back = kms.unwrap(&kid("k1"), &wrapped.blob).await.unwrap();
    assert_eq!(back.expose(), key.expose());

    // Bound to its id: the same blob under another id does not open, nor rewrap.
    let moved = kms.unwrap(&kid("k2"), &wrapped.blob).await.unwrap_err();
    assert!(matches!(moved, KmsError::Rejected { .. }), "{moved}");
    assert!(moved.to_string().contains("another key id"), "{moved}");
    let moved = kms.rewrap(&kid("k2"), &wrapped.blob).await.unwrap_err();
    assert!(matches!(moved, KmsError::Rejected { .. }), "{moved}");

    // The alias moves to a new key; rewrap puts the blob under it, and it still opens.
    let second = moto.create_key("keyward kek 2").await;
    moto.update_alias("alias/keyward-kek", &second.id).await;
    let rewrapped = kms.rewrap(&kid("k1"), &wrapped.blob).await.unwrap();
    assert_eq!(rewrapped.key_version.as_deref(), Some(second.arn.as_str()));
    assert_ne!(rewrapped.blob, wrapped.blob);
    let back = kms.unwrap(&kid("k1"), &rewrapped.blob).await.unwrap();
    assert_eq!(back.expose(), key.expose());
    let moved = kms.unwrap(&kid("k2"), &rewrapped.blob).await.unwrap_err();
    assert!(matches!(moved, KmsError::Rejected { .. }), "{moved}");

    // Decrypt names no key: the old blob, made under the alias's former key, still opens (so
    // a restart between the alias move and the rewrap does not stop Keyward).
    let old = kms.unwrap(&kid("k1"), &wrapped.blob).await.unwrap();
    assert_eq!(old.expose(), key.expose());

    // A key that does not exist.
    let mut env = made_up_key().env();
    env.push(("KEYWARD_KMS_ENDPOINT", moto.endpoint.clone()));
    let gone = keyward_kms::open(
        "aws-kms:arn:aws:kms:us-east-1:123456789012:alias/nope",
        &env_of(env),
    )
    .unwrap();
    let err = gone.wrap(&key).await.unwrap_err();
    assert!(matches!(err, KmsError::Rejected { .. }), "{err}");
    assert!(err.to_string().contains("does not exist"), "{err}");
}

#[tokio::test]
async fn with_auth_on_valid_keys_work_and_refusals_say_what_is_wrong() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    let key_arn = moto.create_key("keyward kek").await.arn;
    moto.enable_auth().await;
    let keyward = moto
        .iam_user("keyward", &["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*"])
        .await;
    // The key's ARN gives the region: no AWS_REGION.
    let spec = format!("aws-kms:{key_arn}");
    let kms = keyward_kms::open(&spec, &env_for(&moto, &keyward)).unwrap();
    let key = KeyMaterial::generate(kid("k1")).unwrap();
    let wrapped = kms.wrap(&key).await.unwrap();
    let back = kms.unwrap(&kid("k1"), &wrapped.blob).await.unwrap();
    assert_eq!(back.expose(), key.expose());
    let rewrapped = kms.rewrap(&kid("k1"), &wrapped.blob).await.unwrap();
    assert_eq!(rewrapped.key_version.as_deref(), Some(key_arn.as_str()));
    let shown = format!("{kms:?}");
    assert!(!shown.contains(&keyward.secret_access_key), "{shown}");

    // The right access key with a wrong secret: moto says SignatureDoesNotMatch.
    let wrong = AccessKey {
        secret_access_key: "wrong-secret-canary-Zq8vX3pL0mK7".into(),
        ..keyward.clone()
    };
    let kms = keyward_kms::open(&spec, &env_for(&moto, &wrong)).unwrap();
    let err = kms.wrap(&key).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, KmsError::Refused { .. }), "{text}");
    assert!(text.contains("secret access key is wrong"), "{text}");
    assert!(text.contains(&keyward.access_key_id), "{text}");
    assert!(!text.contains(&wrong.secret_access_key), "{text}");
    assert!(!text.contains(&keyward.secret_access_key), "{text}");
    assert!(!format!("{err:?}").contains(&wrong.secret_access_key));

    // An access key IAM does not know.
    let unknown = AccessKey {
        access_key_id: "AKIAUNKNOWNUNKNOWN00".into(),
        ..keyward.clone()
    };
    let kms = keyward_kms::open(&spec, &env_for(&moto, &unknown)).unwrap();
    let err = kms.unwrap(&kid("k1"), &wrapped.blob).await.unwrap_err();
    assert!(matches!(err, KmsError::Refused { .. }), "{err}");
    assert!(err.to_string().contains("does not know"), "{err}");

    // A user who may encrypt but not decrypt or re-encrypt.
    let encrypt_only = moto.iam_user("encrypt-only", &["kms:Encrypt"]).await;
    let kms = keyward_kms::open(&spec, &env_for(&moto, &encrypt_only)).unwrap();
    let mine = kms.wrap(&key).await.unwrap();
    let err = kms.unwrap(&kid("k1"), &mine.blob).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, KmsError::Refused { .. }), "{text}");
    assert!(text.contains("kms:Decrypt"), "{text}");
    assert!(!text.contains(&encrypt_only.secret_access_key), "{text}");
    let err = kms.rewrap(&kid("k1"), &mine.blob).await.unwrap_err();
    assert!(matches!(err, KmsError::Refused { .. }), "{err}");
    assert!(err.to_string().contains("kms:ReEncrypt*"), "{err}");
}

#[tokio::test]
async fn temporary_credentials_work_from_the_environment_and_the_shared_file() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    let key_arn = moto.create_key("keyward kek").await.arn;
    moto.enable_auth().await;
    let user = moto.iam_user("keyward", &["sts:AssumeRole"]).await;
    let temp = moto
        .assume_role(
            "keyward",
            &user,
            "keyward-kek",
            &["kms:Encrypt", "kms:Decrypt"],
        )
        .await;
    let token = temp.session_token.clone().unwrap();
    let spec = format!("aws-kms:{key_arn}");

    let kms = keyward_kms::open(&spec, &env_for(&moto, &temp)).unwrap();
    let key = KeyMaterial::generate(kid("k1")).unwrap();
    let wrapped = kms.wrap(&key).await.unwrap();
    let back = kms.unwrap(&kid("k1"), &wrapped.blob).await.unwrap();
    assert_eq!(back.expose(), key.expose());
    let shown = format!("{kms:?}");
    assert!(
        !shown.contains(&token) && !shown.contains(&temp.secret_access_key),
        "{shown}"
    );

    // The same keys without their session token, or with another, are refused; the message
    // holds neither the secret nor the token.
    for session_token in [None, Some(format!("{token}x"))] {
        let bad = AccessKey {
            session_token: session_token.clone(),
            ..temp.clone()
        };
        let kms = keyward_kms::open(&spec, &env_for(&moto, &bad)).unwrap();
        let err = kms.unwrap(&kid("k1"), &wrapped.blob).await.unwrap_err();
        let text = format!("{err} {err:?}");
        assert!(matches!(err, KmsError::Refused { .. }), "{text}");
        assert!(
            !text.contains(&token) && !text.contains(&temp.secret_access_key),
            "{text}"
        );
    }

    // From a profile of a shared credentials file.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("credentials");
    std::fs::write(
        &file,
        format!(
            "[default]\naws_access_key_id = AKIDEXAMPLE\naws_secret_access_key = x\n\n\
             [keyward]\naws_access_key_id = {}\naws_secret_access_key = {}\n\
             aws_session_token = {token}\n",
            temp.access_key_id, temp.secret_access_key
        ),
    )
    .unwrap();
    let env = env_of(vec![
        ("AWS_SHARED_CREDENTIALS_FILE", file.display().to_string()),
        ("AWS_PROFILE", "keyward".to_owned()),
        ("AWS_ENDPOINT_URL_KMS", moto.endpoint.clone()),
    ]);
    let kms = keyward_kms::open(&spec, &env).unwrap();
    assert!(
        kms.location().contains("profile 'keyward'"),
        "{}",
        kms.location()
    );
    let back = kms.unwrap(&kid("k1"), &wrapped.blob).await.unwrap();
    assert_eq!(back.expose(), key.expose());
}

#[tokio::test]
async fn an_unreachable_endpoint_is_transient_and_says_so() {
    let mut env = made_up_key().env();
    env.push(("AWS_REGION", MOTO_REGION.to_owned()));
    env.push((
        "AWS_ENDPOINT_URL",
        format!("http://{}", keyward_testkit::closed_addr()),
    ));
    let kms = keyward_kms::open("aws-kms:alias/keyward-kek", &env_of(env)).unwrap();
    let key = KeyMaterial::generate(kid("k1")).unwrap();
    let err = kms.wrap(&key).await.unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert!(err.to_string().contains("cannot connect"), "{err}");
    let err = kms.unwrap(&kid("k1"), b"blob").await.unwrap_err();
    assert!(err.is_transient(), "{err}");
}

#[test]
fn configuration_errors_name_what_to_set() {
    let e = keyward_kms::open("aws-kms:alias/k", &env_of(made_up_key().env()))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("AWS_REGION") && e.contains("AWS_DEFAULT_REGION"),
        "{e}"
    );
    let e = keyward_kms::open(
        "aws-kms:alias/k",
        &env_of(vec![
            ("AWS_REGION", "eu-west-1".into()),
            (
                "AWS_SHARED_CREDENTIALS_FILE",
                "/nonexistent/credentials".into(),
            ),
        ]),
    )
    .unwrap_err()
    .to_string();
    for tried in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "/nonexistent/credentials",
    ] {
        assert!(e.contains(tried), "{e}");
    }
}
