//! The Transit backend against a real OpenBao dev server on 127.0.0.1.

#![allow(clippy::unwrap_used)]

use keyward_crypto::{KeyId, KeyMaterial};
use keyward_kms::KmsError;
use keyward_testkit::kms::{Bao, transit_policy};

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
