//! Provider keys read from KV v2 on a real OpenBao dev server on 127.0.0.1.

#![allow(clippy::unwrap_used)]

use keyward_kms::kv::{KvError, KvReader, KvRef, LazyKvReader};
use keyward_testkit::kms::Bao;
use keyward_testkit::kms::env_of;
use secrecy::ExposeSecret as _;
use serde_json::json;

const CANARY: &str = "sk-proj-KVCANARY-0123456789abcdef";

fn kv(text: &str) -> KvRef {
    KvRef::parse(text).unwrap()
}

const READ_PROVIDERS: &str = "path \"secret/data/providers\" { capabilities = [\"read\"] }\n";

#[tokio::test]
async fn reads_the_newest_version_of_a_field_by_either_path_form() {
    let Some(bao) = Bao::start().await else {
        return;
    };
    bao.kv_put(
        "providers",
        json!({"openai_api_key": CANARY, "anthropic_api_key": "sk-ant-other"}),
    )
    .await;
    let token = bao.token_with_policy("kv-read", READ_PROVIDERS).await;
    let reader = KvReader::from_env(&env_of(&[
        ("VAULT_ADDR", &bao.addr),
        ("VAULT_TOKEN", &token),
    ]))
    .unwrap();
    for r in [
        "secret/data/providers#openai_api_key",
        "secret/providers#openai_api_key",
    ] {
        let value = reader.read(&kv(r)).await.unwrap();
        assert_eq!(value.expose_secret(), CANARY, "{r}");
    }
    bao.kv_put("providers", json!({"openai_api_key": "sk-proj-rotated"}))
        .await;
    let value = reader
        .read(&kv("secret/data/providers#openai_api_key"))
        .await
        .unwrap();
    assert_eq!(value.expose_secret(), "sk-proj-rotated");
}

#[tokio::test]
async fn each_failure_names_the_path_and_field_and_never_the_value_or_the_token() {
    let Some(mut bao) = Bao::start().await else {
        return;
    };
    bao.kv_put(
        "providers",
        json!({"openai_api_key": CANARY, "blank": " ", "number": 42}),
    )
    .await;
    bao.kv_put("other", json!({"openai_api_key": CANARY})).await;
    let token = bao
        .token_with_policy(
            "kv-read",
            &format!(
                "{READ_PROVIDERS}path \"secret/data/absent\" {{ capabilities = [\"read\"] }}\n"
            ),
        )
        .await;
    let reader = KvReader::from_env(&env_of(&[
        ("VAULT_ADDR", &bao.addr),
        ("VAULT_TOKEN", &token),
    ]))
    .unwrap();
    let check = |e: &KvError, says: &str| {
        let text = e.to_string();
        assert!(text.contains(says), "{text:?} should say {says:?}");
        assert!(!text.contains("KVCANARY"), "{text}");
        assert!(!text.contains(&token), "{text}");
    };

    let e = reader
        .read(&kv("secret/data/providers#gemini_api_key"))
        .await
        .unwrap_err();
    assert!(matches!(e, KvError::NoField { .. }), "{e}");
    check(
        &e,
        "the secret at secret/data/providers has no text field 'gemini_api_key'",
    );
    let e = reader
        .read(&kv("secret/data/providers#number"))
        .await
        .unwrap_err();
    check(&e, "has no text field 'number'");
    let e = reader
        .read(&kv("secret/data/providers#blank"))
        .await
        .unwrap_err();
    assert!(matches!(e, KvError::Empty { .. }), "{e}");
    check(
        &e,
        "the field 'blank' of the secret at secret/data/providers is empty",
    );

    let e = reader
        .read(&kv("secret/data/absent#openai_api_key"))
        .await
        .unwrap_err();
    assert!(matches!(e, KvError::NoSecret { .. }), "{e}");
    check(&e, "no secret at secret/data/absent");

    // A path the policy does not cover: the capability to grant is named.
    let e = reader
        .read(&kv("secret/data/other#openai_api_key"))
        .await
        .unwrap_err();
    assert!(matches!(e, KvError::Refused { .. }), "{e}");
    check(
        &e,
        "refused: permission denied: the token is not valid (expired or revoked), or its policy lacks `read` on secret/data/other",
    );
    assert!(!e.is_transient());

    // A revoked token is refused the same way, and told as such.
    bao.revoke(&token).await;
    let e = reader
        .read(&kv("secret/data/providers#openai_api_key"))
        .await
        .unwrap_err();
    assert!(matches!(e, KvError::Refused { .. }), "{e}");
    check(&e, "the token is not valid (expired or revoked)");

    // The server gone: worth trying again.
    let addr = bao.addr.clone();
    bao.stop();
    let e = reader
        .read(&kv("secret/data/providers#openai_api_key"))
        .await
        .unwrap_err();
    assert!(e.is_transient(), "{e}");
    check(&e, &format!("OpenBao/Vault at {addr} cannot be reached"));
}

#[tokio::test]
async fn keyward_kms_transit_settings_sign_in_for_kv_too() {
    let Some(bao) = Bao::start().await else {
        return;
    };
    bao.kv_put("providers", json!({"openai_api_key": CANARY}))
        .await;
    bao.token_with_policy("kv-read", READ_PROVIDERS).await;
    let (role_id, secret_id) = bao.approle("keyward", "kv-read").await;
    let spec = format!(
        "transit:keyward-kek,address={},auth=approle,role_id={role_id}",
        bao.addr
    );
    // VAULT_TOKEN is not used when KEYWARD_KMS says how to sign in.
    let lazy = LazyKvReader::new(env_of(&[
        ("KEYWARD_KMS", &spec),
        ("VAULT_SECRET_ID", &secret_id),
        ("VAULT_TOKEN", "not-a-token"),
    ]));
    let value = lazy
        .read(&kv("secret/data/providers#openai_api_key"))
        .await
        .unwrap();
    assert_eq!(value.expose_secret(), CANARY);
    let again = lazy
        .read(&kv("secret/providers#openai_api_key"))
        .await
        .unwrap();
    assert_eq!(again.expose_secret(), CANARY);
}
