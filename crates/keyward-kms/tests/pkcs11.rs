//! The PKCS#11 backend against SoftHSM2. Each test that needs a token gets its own, in a process
//! of its own (see `keyward_testkit::kms::SoftHsm`): in this process the call makes the token
//! and reruns the test in a child, and answers `None`; in the child it answers the token.

#![allow(clippy::unwrap_used)]

use keyward_crypto::{KeyId, KeyMaterial};
use keyward_kms::KmsError;
use keyward_testkit::kms::SoftHsm;
use keyward_testkit::kms::env_of;

fn kid(s: &str) -> KeyId {
    KeyId::new(s).unwrap()
}

fn pin_env(hsm: &SoftHsm) -> impl Fn(&str) -> Option<String> + use<> {
    env_of(&[("KEYWARD_PKCS11_PIN", &hsm.pin)])
}

#[tokio::test]
async fn wraps_and_unwraps_bound_to_the_key_id() {
    let Some(hsm) = SoftHsm::own_process(|hsm| hsm.aes_key("keyward-kek", "0a1b")) else {
        return;
    };
    let kms = keyward_kms::open(&hsm.spec("keyward-kek"), &pin_env(&hsm)).unwrap();
    assert_eq!(kms.kind(), "pkcs11");
    assert!(
        kms.describe().contains("'keyward-kek'"),
        "{}",
        kms.describe()
    );

    let key = KeyMaterial::generate(kid("k1")).unwrap();
    let wrapped = kms.wrap(&key).await.unwrap();
    // format ‖ 12-byte IV ‖ 32-byte ciphertext ‖ 16-byte tag; the version is the key's CKA_ID.
    assert_eq!(wrapped.blob.len(), 61);
    assert_eq!(wrapped.blob[0], 1);
    assert_eq!(wrapped.key_version.as_deref(), Some("0a1b"));
    assert!(!wrapped.blob.windows(32).any(|w| w == key.expose()));
    let back = kms.unwrap(&kid("k1"), &wrapped.blob).await.unwrap();
    assert_eq!(back.expose(), key.expose());
    assert_eq!(back.kid(), &kid("k1"));

    // A fresh IV each time: the same key wraps differently, and both open.
    let again = kms.wrap(&key).await.unwrap();
    assert_ne!(again.blob, wrapped.blob);
    assert_eq!(
        kms.unwrap(&kid("k1"), &again.blob).await.unwrap().expose(),
        key.expose()
    );

    // Bound to its id: the same blob under another id does not open.
    let moved = kms.unwrap(&kid("k2"), &wrapped.blob).await.unwrap_err();
    assert!(matches!(moved, KmsError::Rejected { .. }), "{moved}");
    assert!(moved.to_string().contains("does not open"), "{moved}");

    // Tampered anywhere (IV, ciphertext, tag): does not open.
    for at in [1, 20, 60] {
        let mut bad = wrapped.blob.clone();
        bad[at] ^= 1;
        let err = kms.unwrap(&kid("k1"), &bad).await.unwrap_err();
        assert!(
            err.to_string().contains("does not open"),
            "byte {at}: {err}"
        );
    }
    // Not this backend's format at all.
    let err = kms.unwrap(&kid("k1"), b"vault:v1:abc").await.unwrap_err();
    assert!(err.to_string().contains("not a PKCS#11 one"), "{err}");

    // The default rewrap (unwrap, wrap) gives a new blob that opens.
    let rewrapped = kms.rewrap(&kid("k1"), &wrapped.blob).await.unwrap();
    assert_ne!(rewrapped.blob, wrapped.blob);
    assert_eq!(
        kms.unwrap(&kid("k1"), &rewrapped.blob)
            .await
            .unwrap()
            .expose(),
        key.expose()
    );

    // The same token named by its slot, and the PIN from a file.
    let pin_file = hsm.dir().join("pin.txt");
    std::fs::write(&pin_file, format!("{}\n", hsm.pin)).unwrap();
    let by_slot = format!(
        "pkcs11:module={},slot={},key=keyward-kek,pin_file={}",
        hsm.module.display(),
        hsm.slot,
        pin_file.display()
    );
    let kms = keyward_kms::open(&by_slot, &env_of(&[])).unwrap();
    assert_eq!(
        kms.unwrap(&kid("k1"), &wrapped.blob)
            .await
            .unwrap()
            .expose(),
        key.expose()
    );

    // Concurrent calls take turns on the module and all succeed.
    let k1 = kid("k1");
    let calls = (0..8).map(|_| kms.unwrap(&k1, &wrapped.blob));
    for back in futures_util::future::join_all(calls).await {
        assert_eq!(back.unwrap().expose(), key.expose());
    }
}

#[tokio::test]
async fn a_wrong_pin_is_refused_without_echoing_it() {
    let Some(hsm) = SoftHsm::own_process(|hsm| hsm.aes_key("keyward-kek", "01")) else {
        return;
    };
    let good = keyward_kms::open(&hsm.spec("keyward-kek"), &pin_env(&hsm)).unwrap();
    let key = KeyMaterial::generate(kid("k1")).unwrap();
    let wrapped = good.wrap(&key).await.unwrap();

    // After the good PIN's calls (the process logged out as their sessions closed), a wrong
    // PIN is still refused: no earlier login lets it through.
    let wrong_pin = "wrong-pin-5150e";
    let bad = keyward_kms::open(
        &hsm.spec("keyward-kek"),
        &env_of(&[("KEYWARD_PKCS11_PIN", wrong_pin)]),
    )
    .unwrap();
    for err in [
        bad.unwrap(&kid("k1"), &wrapped.blob).await.unwrap_err(),
        bad.wrap(&key).await.unwrap_err(),
    ] {
        let text = err.to_string();
        assert!(matches!(err, KmsError::Refused { .. }), "{text}");
        assert!(text.contains("the PIN was refused"), "{text}");
        assert!(text.contains("KEYWARD_PKCS11_PIN"), "{text}");
        assert!(
            !text.contains(wrong_pin) && !text.contains(&hsm.pin),
            "{text}"
        );
        assert!(!format!("{err:?}").contains(wrong_pin), "{err:?}");
    }
    let debug = format!("{bad:?} {good:?}");
    assert!(
        !debug.contains(wrong_pin) && !debug.contains(&hsm.pin),
        "{debug}"
    );

    // And the good PIN still works afterwards.
    assert_eq!(
        good.unwrap(&kid("k1"), &wrapped.blob)
            .await
            .unwrap()
            .expose(),
        key.expose()
    );
}

#[tokio::test]
async fn missing_wrong_kind_and_ambiguous_names_are_explained() {
    let Some(hsm) = SoftHsm::own_process(|hsm| {
        hsm.aes_key("keyward-kek", "01");
        hsm.aes_key("twice", "02");
        hsm.aes_key("twice", "03");
        hsm.generic_secret("not-aes");
    }) else {
        return;
    };
    let env = pin_env(&hsm);
    let key = KeyMaterial::generate(kid("k1")).unwrap();
    let wrap_err = async |spec: &str| {
        let kms = keyward_kms::open(spec, &env).unwrap();
        let err = kms.wrap(&key).await.unwrap_err();
        assert!(matches!(err, KmsError::Rejected { .. }), "{err}");
        err.to_string()
    };

    let e = wrap_err(&hsm.spec("no-such-key")).await;
    assert!(
        e.contains("no AES key is labelled 'no-such-key'") && e.contains("keyward-test"),
        "{e}"
    );
    let e = wrap_err(&hsm.spec("twice")).await;
    assert!(e.contains("2 AES keys are labelled 'twice'"), "{e}");
    let e = wrap_err(&hsm.spec("not-aes")).await;
    assert!(
        e.contains("'not-aes'")
            && e.contains("not an AES secret key")
            && e.contains("CKK_GENERIC_SECRET"),
        "{e}"
    );
    let other_token = hsm
        .spec("keyward-kek")
        .replace("token=keyward-test", "token=elsewhere");
    let e = wrap_err(&other_token).await;
    assert!(
        e.contains("no token is labelled 'elsewhere'")
            && e.contains("tokens present: 'keyward-test'"),
        "{e}"
    );
    let no_slot = format!(
        "pkcs11:module={},slot={},key=keyward-kek",
        hsm.module.display(),
        hsm.slot.wrapping_add(1)
    );
    let e = wrap_err(&no_slot).await;
    assert!(e.contains("holds no token"), "{e}");
    // SoftHSM2 always shows one more, uninitialised token.
    assert!(e.contains("an uninitialised one in slot"), "{e}");
}

#[tokio::test]
async fn another_key_does_not_open_the_first_keys_blobs() {
    let Some(hsm) = SoftHsm::own_process(|hsm| {
        hsm.aes_key("kek-a", "0a");
        hsm.aes_key("kek-b", "0b");
    }) else {
        return;
    };
    let env = pin_env(&hsm);
    let a = keyward_kms::open(&hsm.spec("kek-a"), &env).unwrap();
    let b = keyward_kms::open(&hsm.spec("kek-b"), &env).unwrap();
    let key = KeyMaterial::generate(kid("k1")).unwrap();
    let wrapped = a.wrap(&key).await.unwrap();
    let err = b.unwrap(&kid("k1"), &wrapped.blob).await.unwrap_err();
    assert!(matches!(err, KmsError::Rejected { .. }), "{err}");
    assert!(err.to_string().contains("does not open"), "{err}");
    assert!(err.to_string().contains("'kek-b'"), "{err}");
    // Each opens its own.
    let by_b = b.wrap(&key).await.unwrap();
    assert_eq!(by_b.key_version.as_deref(), Some("0b"));
    assert_eq!(
        b.unwrap(&kid("k1"), &by_b.blob).await.unwrap().expose(),
        key.expose()
    );
    assert_eq!(
        a.unwrap(&kid("k1"), &wrapped.blob).await.unwrap().expose(),
        key.expose()
    );
}

#[tokio::test]
async fn configuration_errors_name_what_to_set() {
    let pin = env_of(&[("KEYWARD_PKCS11_PIN", "1")]);
    let err = |spec: &str, env: &dyn Fn(&str) -> Option<String>| {
        let e = keyward_kms::open(spec, env).unwrap_err();
        assert!(matches!(e, KmsError::Config(_)), "{e}");
        e.to_string()
    };
    // Any file will do as a module until it is loaded.
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("libnot-pkcs11.so");
    std::fs::write(&fake, b"not a shared object").unwrap();
    let m = fake.display().to_string();

    let e = err("pkcs11:token=t,key=k", &pin);
    assert!(e.contains("module= is missing"), "{e}");
    let e = err("pkcs11:module=/nonexistent/libp11.so,token=t,key=k", &pin);
    assert!(
        e.contains("no PKCS#11 module at /nonexistent/libp11.so"),
        "{e}"
    );
    let e = err(&format!("pkcs11:module={m},key=k"), &pin);
    assert!(e.contains("token= is missing"), "{e}");
    let e = err(&format!("pkcs11:module={m},token=t,slot=1,key=k"), &pin);
    assert!(e.contains("not both"), "{e}");
    let e = err(&format!("pkcs11:module={m},slot=first,key=k"), &pin);
    assert!(e.contains("not a slot id"), "{e}");
    let e = err(&format!("pkcs11:module={m},token=t"), &pin);
    assert!(e.contains("key= is missing"), "{e}");
    let e = err(&format!("pkcs11:module={m},token=t,key=k,pin=1234"), &pin);
    assert!(e.contains("unknown setting 'pin'"), "{e}");
    let e = err(&format!("pkcs11:module={m},token=t,key=k"), &env_of(&[]));
    assert!(
        e.contains("pin_file=") && e.contains("KEYWARD_PKCS11_PIN"),
        "{e}"
    );
    let e = err(
        &format!("pkcs11:module={m},token=t,key=k,pin_file=/nonexistent/pin"),
        &pin,
    );
    assert!(
        e.contains("cannot read the PIN file /nonexistent/pin"),
        "{e}"
    );
    let empty = dir.path().join("empty-pin");
    std::fs::write(&empty, "\n").unwrap();
    let e = err(
        &format!(
            "pkcs11:module={m},token=t,key=k,pin_file={}",
            empty.display()
        ),
        &pin,
    );
    assert!(e.contains("is empty"), "{e}");

    // A file that is not a PKCS#11 module: said at the first call, naming the file.
    let kms = keyward_kms::open(&format!("pkcs11:module={m},token=t,key=k"), &pin).unwrap();
    let key = KeyMaterial::generate(kid("k1")).unwrap();
    let e = kms.wrap(&key).await.unwrap_err();
    assert!(matches!(e, KmsError::Config(_)), "{e}");
    assert!(
        e.to_string()
            .contains(&format!("cannot load the PKCS#11 module {m}")),
        "{e}"
    );
}
