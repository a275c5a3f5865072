//! The Transit backend against a real OpenBao dev server on 127.0.0.1.

#![allow(clippy::unwrap_used)]

use keyward_crypto::{KeyId, KeyMaterial};
use keyward_kms::KmsError;
use keyward_testkit::kms::env_of;
use keyward_testkit::kms::{Bao, transit_policy};
use serde_json::json;

fn kid(s: &str) -> KeyId {
    KeyId::new(s).unwrap()
}

#[tokio::test]
async fn wraps_unwraps_and_rewraps_bound_to_the_key_id() {
    let Some(bao) = Bao::start().await else {
        return;
    };
    bao.transit_key("keyward-kek").await;
    let token = bao
        .token_with_policy("keyward", &transit_policy("keyward-kek"))
        .await;
    let env = env_of(&[("VAULT_ADDR", &bao.addr), ("VAULT_TOKEN", &token)]);
    let kms = keyward_kms::open("transit:keyward-kek", &env).unwrap();
    assert_eq!(kms.kind(), "transit");

    let key = KeyMaterial::generate(kid("k1")).unwrap();
    let wrapped = kms.wrap(&key).await.unwrap();
    assert_eq!(wrapped.key_version.as_deref(), Some("1"));
    assert!(!wrapped.blob.windows(32).any(|w| w == key.expose()));
    let back = kms.unwrap(&kid("k1"), &wrapped.blob).await.unwrap();
    assert_eq!(back.expose(), key.expose());

    // Bound to its id: the same blob under another id does not open.
    let moved = kms.unwrap(&kid("k2"), &wrapped.blob).await.unwrap_err();
    assert!(matches!(moved, KmsError::Rejected { .. }), "{moved}");

    // A new Transit key version; rewrap moves the blob to it, and it still opens.
    bao.rotate_transit_key("keyward-kek").await;
    let rewrapped = kms.rewrap(&kid("k1"), &wrapped.blob).await.unwrap();
    assert_eq!(rewrapped.key_version.as_deref(), Some("2"));
    let back = kms.unwrap(&kid("k1"), &rewrapped.blob).await.unwrap();
    assert_eq!(back.expose(), key.expose());
}

#[tokio::test]
async fn refusals_say_what_is_missing_and_never_echo_the_token() {
    let Some(bao) = Bao::start().await else {
        return;
    };
    bao.transit_key("keyward-kek").await;
    // A policy that can encrypt but not decrypt.
    let token = bao
        .token_with_policy(
            "encrypt-only",
            "path \"transit/encrypt/keyward-kek\" { capabilities = [\"update\"] }\n",
        )
        .await;
    let env = env_of(&[("VAULT_ADDR", &bao.addr), ("VAULT_TOKEN", &token)]);
    let kms = keyward_kms::open("transit:keyward-kek", &env).unwrap();
    let key = KeyMaterial::generate(kid("k1")).unwrap();
    let wrapped = kms.wrap(&key).await.unwrap();
    let err = kms.unwrap(&kid("k1"), &wrapped.blob).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, KmsError::Refused { .. }), "{text}");
    assert!(text.contains("transit/decrypt/keyward-kek"), "{text}");
    assert!(!text.contains(&token), "{text}");

    // A revoked token is refused the same way.
    bao.revoke(&token).await;
    let err = kms.wrap(&key).await.unwrap_err();
    assert!(matches!(err, KmsError::Refused { .. }), "{err}");

    // A key that does not exist (the token may not create one).
    let token = bao
        .token_with_policy("keyward", &transit_policy("other"))
        .await;
    let env = env_of(&[("VAULT_ADDR", &bao.addr), ("VAULT_TOKEN", &token)]);
    let kms = keyward_kms::open("transit:other", &env).unwrap();
    let err = kms.unwrap(&kid("k1"), &wrapped.blob).await.unwrap_err();
    assert!(matches!(err, KmsError::Rejected { .. }), "{err}");
}

#[tokio::test]
async fn signs_in_with_approle_and_again_when_its_token_is_revoked() {
    let Some(bao) = Bao::start().await else {
        return;
    };
    bao.transit_key("keyward-kek").await;
    let _ = bao
        .token_with_policy("keyward", &transit_policy("keyward-kek"))
        .await;
    let (role_id, secret_id) = bao.approle("keyward", "keyward").await;
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("secret-id");
    std::fs::write(&secret_file, format!("{secret_id}\n")).unwrap();
    let env = env_of(&[("VAULT_ADDR", &bao.addr), ("VAULT_ROLE_ID", &role_id)]);
    let spec = format!(
        "transit:keyward-kek,auth=approle,secret_id_file={}",
        secret_file.display()
    );
    let kms = keyward_kms::open(&spec, &env).unwrap();
    let key = KeyMaterial::generate(kid("k1")).unwrap();
    let wrapped = kms.wrap(&key).await.unwrap();
    assert_eq!(
        kms.unwrap(&kid("k1"), &wrapped.blob)
            .await
            .unwrap()
            .expose(),
        key.expose()
    );
    let err = format!("{kms:?}");
    assert!(
        !err.contains(&secret_id) && !err.contains(&role_id),
        "{err}"
    );
}

#[tokio::test]
async fn an_unreachable_server_is_transient_and_says_so() {
    let addr = format!("http://{}", keyward_testkit::closed_addr());
    let env = env_of(&[("VAULT_ADDR", &addr), ("VAULT_TOKEN", "t")]);
    let kms = keyward_kms::open("transit:keyward-kek", &env).unwrap();
    let key = KeyMaterial::generate(kid("k1")).unwrap();
    let err = kms.wrap(&key).await.unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert!(err.to_string().contains("cannot connect"), "{err}");
}

#[test]
fn configuration_errors_name_what_to_set() {
    let none = env_of(&[]);
    let e = keyward_kms::open("transit:k", &none)
        .unwrap_err()
        .to_string();
    assert!(e.contains("VAULT_ADDR"), "{e}");
    let e = keyward_kms::open("transit:k", &env_of(&[("VAULT_ADDR", "http://x")]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("VAULT_TOKEN"), "{e}");
    let e = keyward_kms::open("gcp:k", &none).unwrap_err().to_string();
    assert!(e.contains("unknown KMS kind"), "{e}");
    let e = keyward_kms::open(
        "transit:k/x",
        &env_of(&[("VAULT_ADDR", "http://x"), ("VAULT_TOKEN", "t")]),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("names of letters"), "{e}");
}

#[tokio::test]
async fn speaks_tls_to_a_server_of_a_private_ca_and_works_in_a_namespace() {
    let Some(bao) = Bao::start_tls().await else {
        return;
    };
    let root = keyward_testkit::kms::ROOT_TOKEN;
    let (status, body) = bao.root("sys/namespaces/team-a", Some(json!({}))).await;
    assert_eq!(status, 200, "{body}");
    let ns = Some("team-a");
    let (status, _) = bao
        .call_in(
            ns,
            root,
            "POST",
            "sys/mounts/transit",
            Some(json!({"type": "transit"})),
        )
        .await;
    assert_eq!(status, 204);
    let (status, _) = bao
        .call_in(
            ns,
            root,
            "POST",
            "transit/keys/keyward-kek",
            Some(json!({})),
        )
        .await;
    assert_eq!(status, 200);
    let ca = bao.ca_cert();
    let env = env_of(&[("VAULT_ADDR", &bao.addr), ("VAULT_TOKEN", root)]);
    let spec = format!(
        "transit:keyward-kek,namespace=team-a,ca_cert={}",
        ca.display()
    );
    let kms = keyward_kms::open(&spec, &env).unwrap();
    let key = KeyMaterial::generate(kid("k1")).unwrap();
    let wrapped = kms.wrap(&key).await.unwrap();
    assert_eq!(
        kms.unwrap(&kid("k1"), &wrapped.blob)
            .await
            .unwrap()
            .expose(),
        key.expose()
    );
    // Outside the namespace there is no such key.
    let outside = keyward_kms::open(
        &format!("transit:keyward-kek,ca_cert={}", ca.display()),
        &env,
    )
    .unwrap();
    assert!(outside.unwrap(&kid("k1"), &wrapped.blob).await.is_err());
    // Without the CA the server's certificate is not trusted: a transport failure, named.
    let untrusted = keyward_kms::open("transit:keyward-kek,namespace=team-a", &env).unwrap();
    let err = untrusted.wrap(&key).await.unwrap_err();
    assert!(err.is_transient(), "{err}");
}

/// The Kubernetes sign-in (`POST auth/<mount>/login {role, jwt}`), against OpenBao's JWT auth
/// method mounted where Kubernetes auth would be: it takes the same request, and checks the
/// token's signature against a key the test holds (a real Kubernetes API server is not here).
#[tokio::test]
async fn signs_in_with_a_service_account_token() {
    let Some(bao) = Bao::start().await else {
        return;
    };
    bao.transit_key("keyward-kek").await;
    let _ = bao
        .token_with_policy("keyward", &transit_policy("keyward-kek"))
        .await;
    let signer = rcgen::KeyPair::generate().unwrap();
    let (status, _) = bao
        .root("sys/auth/kubernetes", Some(json!({"type": "jwt"})))
        .await;
    assert_eq!(status, 204);
    let (status, body) = bao
        .root(
            "auth/kubernetes/config",
            Some(json!({"jwt_validation_pubkeys": [signer.public_key_pem()]})),
        )
        .await;
    assert_eq!(status, 204, "{body}");
    let (status, body) = bao
        .root(
            "auth/kubernetes/role/keyward",
            Some(json!({
                "role_type": "jwt",
                "bound_audiences": ["keyward"],
                "user_claim": "sub",
                "bound_subject": "system:serviceaccount:llm:keyward",
                "token_policies": ["keyward"],
            })),
        )
        .await;
    assert_eq!(status, 204, "{body}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let sign = |sub: &str| {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256),
            &json!({"sub": sub, "aud": "keyward", "iat": now, "exp": now + 600}),
            &jsonwebtoken::EncodingKey::from_ec_der(&signer.serialize_der()),
        )
        .unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let jwt_file = dir.path().join("token");
    let good = sign("system:serviceaccount:llm:keyward");
    std::fs::write(&jwt_file, &good).unwrap();
    let env = env_of(&[("VAULT_ADDR", &bao.addr)]);
    let spec = format!(
        "transit:keyward-kek,auth=kubernetes,role=keyward,jwt_file={}",
        jwt_file.display()
    );
    let kms = keyward_kms::open(&spec, &env).unwrap();
    let key = KeyMaterial::generate(kid("k1")).unwrap();
    let wrapped = kms.wrap(&key).await.unwrap();
    assert_eq!(
        kms.unwrap(&kid("k1"), &wrapped.blob)
            .await
            .unwrap()
            .expose(),
        key.expose()
    );
    // Another service account's token is refused, and the error does not quote it.
    let other = sign("system:serviceaccount:default:intruder");
    std::fs::write(&jwt_file, &other).unwrap();
    let kms = keyward_kms::open(&spec, &env).unwrap();
    let err = kms.wrap(&key).await.unwrap_err();
    assert!(matches!(err, KmsError::Refused { .. }), "{err}");
    let err = err.to_string();
    assert!(!err.contains(&other), "{err}");
    assert!(
        err.contains("sign-in at auth/kubernetes/login was refused"),
        "{err}"
    );
}
