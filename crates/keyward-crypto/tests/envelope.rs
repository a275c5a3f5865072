//! Envelope encryption: round trips, tampering, misplaced ciphertexts, key ids and key parsing.

// Helpers here panic on purpose: a failed step is a failed test.
#![allow(clippy::unwrap_used)]

use keyward_crypto::{
    ChainKey, CryptoError, DataKey, FieldContext, KeyId, Keyring, MasterKey,
    generate_master_key_base64,
};
use proptest::prelude::*;
use secrecy::ExposeSecret;

fn key(kid: &str, byte: u8) -> MasterKey {
    MasterKey::from_bytes(KeyId::new(kid).unwrap(), &[byte; 32])
}

fn ring(keys: Vec<MasterKey>) -> Keyring {
    Keyring::new(keys, "test").unwrap()
}

const CTX: FieldContext<'static> = FieldContext {
    kind: "credential",
    record_id: "cred-1",
    org: "acme",
    field: "openai/api_key",
    bound: b"{}",
};

/// A sealed record as the store keeps it: wrapped data key and one sealed field.
fn seal_record(ring: &Keyring, ctx: &FieldContext<'_>, secret: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let dek = DataKey::generate().unwrap();
    let wrapped = ring.wrap(&dek, ctx.record_id).unwrap();
    let sealed = dek.seal(ctx, secret).unwrap();
    (wrapped, sealed)
}

fn open_record(
    ring: &Keyring,
    ctx: &FieldContext<'_>,
    wrapped: &[u8],
    sealed: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let dek = ring.unwrap(wrapped, ctx.record_id)?;
    Ok(dek.open(ctx, sealed)?.expose_secret().to_vec())
}

#[test]
fn round_trip() {
    let ring = ring(vec![key("k1", 1)]);
    let (wrapped, sealed) = seal_record(&ring, &CTX, b"sk-canary-0123456789");
    assert_eq!(
        open_record(&ring, &CTX, &wrapped, &sealed).unwrap(),
        b"sk-canary-0123456789"
    );
    let dek = ring.unwrap(&wrapped, CTX.record_id).unwrap();
    assert_eq!(
        dek.open_string(&CTX, &sealed).unwrap().expose_secret(),
        "sk-canary-0123456789"
    );
}

#[test]
fn ciphertext_does_not_contain_plaintext() {
    let ring = ring(vec![key("k1", 1)]);
    let secret = b"sk-canary-plaintext-must-not-appear";
    let (wrapped, sealed) = seal_record(&ring, &CTX, secret);
    for hay in [&wrapped, &sealed] {
        assert!(!hay.windows(8).any(|w| secret.windows(8).any(|s| s == w)));
    }
}

#[test]
fn flipping_any_byte_of_the_wrapped_key_fails() {
    let ring = ring(vec![key("k1", 1)]);
    let (wrapped, sealed) = seal_record(&ring, &CTX, b"secret");
    for i in 0..wrapped.len() {
        for bit in [0x01u8, 0x80] {
            let mut bad = wrapped.clone();
            bad[i] ^= bit;
            assert!(
                open_record(&ring, &CTX, &bad, &sealed).is_err(),
                "flipping bit {bit:#x} of byte {i} of the wrapped key still opened"
            );
        }
    }
}

#[test]
fn flipping_any_byte_of_the_sealed_field_fails() {
    let ring = ring(vec![key("k1", 1)]);
    let (wrapped, sealed) = seal_record(&ring, &CTX, b"secret value of some length");
    for i in 0..sealed.len() {
        let mut bad = sealed.clone();
        bad[i] ^= 0x01;
        assert!(
            open_record(&ring, &CTX, &wrapped, &bad).is_err(),
            "flipping byte {i} of the sealed field still opened"
        );
    }
}

#[test]
fn truncated_or_extended_envelopes_fail() {
    let ring = ring(vec![key("k1", 1)]);
    let (wrapped, sealed) = seal_record(&ring, &CTX, b"secret");
    assert!(open_record(&ring, &CTX, &wrapped[..wrapped.len() - 1], &sealed).is_err());
    assert!(open_record(&ring, &CTX, &wrapped, &sealed[..sealed.len() - 1]).is_err());
    let mut longer = sealed.clone();
    longer.push(0);
    assert!(open_record(&ring, &CTX, &wrapped, &longer).is_err());
    assert!(open_record(&ring, &CTX, &wrapped, &[]).is_err());
}

#[test]
fn envelope_moved_to_another_record_org_field_or_binding_fails() {
    let ring = ring(vec![key("k1", 1)]);
    let (wrapped, sealed) = seal_record(&ring, &CTX, b"secret");
    let elsewhere = [
        FieldContext {
            record_id: "cred-2",
            ..CTX
        },
        FieldContext {
            org: "other",
            ..CTX
        },
        FieldContext {
            field: "service_account_json",
            ..CTX
        },
        // The same field name under another provider.
        FieldContext {
            field: "deepseek/api_key",
            ..CTX
        },
        // The public data it is bound to, changed (a base URL pointed elsewhere).
        FieldContext {
            bound: br#"{"base_url":"https://attacker.invalid"}"#,
            ..CTX
        },
        FieldContext {
            kind: "config_var",
            ..CTX
        },
    ];
    for ctx in elsewhere {
        assert_eq!(
            open_record(&ring, &ctx, &wrapped, &sealed),
            Err(CryptoError::Decrypt),
            "opened in {ctx:?}"
        );
    }
    // The same data key, but the sealed field moved to another org: still refused.
    let dek = ring.unwrap(&wrapped, CTX.record_id).unwrap();
    assert!(
        dek.open(
            &FieldContext {
                org: "other",
                ..CTX
            },
            &sealed
        )
        .is_err()
    );
}

#[test]
fn sealed_field_copied_between_records_fails_even_with_its_own_key() {
    let ring = ring(vec![key("k1", 1)]);
    let (wrapped_a, sealed_a) = seal_record(&ring, &CTX, b"secret-a");
    let ctx_b = FieldContext {
        record_id: "cred-2",
        ..CTX
    };
    let (wrapped_b, _) = seal_record(&ring, &ctx_b, b"secret-b");
    // The wrapped key of A claimed by B: the wrap is bound to A's id.
    assert!(ring.unwrap(&wrapped_a, "cred-2").is_err());
    // A's sealed field under B's key and id.
    assert!(open_record(&ring, &ctx_b, &wrapped_b, &sealed_a).is_err());
}

#[test]
fn unknown_kid_is_named() {
    let old = ring(vec![key("old", 1)]);
    let (wrapped, _) = seal_record(&old, &CTX, b"secret");
    let new = ring(vec![key("new", 2)]);
    assert_eq!(
        new.unwrap(&wrapped, CTX.record_id).unwrap_err(),
        CryptoError::UnknownKeyId("old".into())
    );
    assert_eq!(Keyring::wrapped_kid(&wrapped).unwrap(), "old");
}

#[test]
fn wrong_key_with_the_same_kid_fails() {
    let right = ring(vec![key("k1", 1)]);
    let (wrapped, _) = seal_record(&right, &CTX, b"secret");
    let wrong = ring(vec![key("k1", 9)]);
    assert_eq!(
        wrong.unwrap(&wrapped, CTX.record_id).unwrap_err(),
        CryptoError::Decrypt
    );
}

#[test]
fn secondary_keys_unwrap_and_primary_wraps() {
    let old = ring(vec![key("k1", 1)]);
    let (wrapped, sealed) = seal_record(&old, &CTX, b"secret");
    let rotated = ring(vec![key("k2", 2), key("k1", 1)]);
    assert_eq!(rotated.primary_kid().as_str(), "k2");
    let dek = rotated.unwrap(&wrapped, CTX.record_id).unwrap();
    let rewrapped = rotated.wrap(&dek, CTX.record_id).unwrap();
    assert_eq!(Keyring::wrapped_kid(&rewrapped).unwrap(), "k2");
    let only_new = ring(vec![key("k2", 2)]);
    assert_eq!(
        open_record(&only_new, &CTX, &rewrapped, &sealed).unwrap(),
        b"secret"
    );
}

const CANARY_KEY: &str = "c2stY2FuYXJ5LWNhbmFyeS1jYW5hcnktY2FuYXJ5LTAx";

#[test]
fn malformed_master_keys_are_refused_without_echoing_them() {
    let cases = [
        // Bad base64 (the '*' and '!' characters).
        format!("k1:{}*!", &CANARY_KEY[..20]),
        // Valid base64 of the wrong length.
        format!("k1:{CANARY_KEY}"),
        // Duplicate kid.
        format!("k1:{0},k1:{0}", generate_master_key_base64().unwrap()),
        // Missing kid.
        CANARY_KEY.to_string(),
        // KID and key the wrong way round: the "kid" is the key.
        format!("{}:k1", generate_master_key_base64().unwrap()),
        format!("{CANARY_KEY}:k1"),
        // Empty.
        String::new(),
    ];
    for spec in cases {
        let err = Keyring::parse_list(&spec, "KEYWARD_MASTER_KEYS").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("KEYWARD_MASTER_KEYS"), "{msg}");
        assert!(
            !msg.contains(&CANARY_KEY[..12]),
            "message echoes the key: {msg}"
        );
    }
}

#[test]
fn bad_kids_are_refused() {
    for kid in ["", "has space", "x".repeat(33).as_str(), "é"] {
        assert!(KeyId::new(kid).is_err(), "{kid:?} accepted");
    }
    assert!(KeyId::new("prod-2026.11_a").is_ok());
}

#[test]
fn generated_keys_parse_and_differ() {
    let a = generate_master_key_base64().unwrap();
    let b = generate_master_key_base64().unwrap();
    assert_ne!(a, b);
    let ring = Keyring::parse_list(&format!("a:{a},b:{b}"), "KEYWARD_MASTER_KEYS").unwrap();
    assert_eq!(
        ring.kids().map(|k| k.as_str()).collect::<Vec<_>>(),
        ["a", "b"]
    );
}

#[test]
fn chain_links_detect_changes() {
    let dek = DataKey::generate().unwrap();
    let chain = ChainKey::from_data_key(&dek);
    let link = chain.link(b"prev", b"event");
    assert!(chain.verify(b"prev", b"event", &link));
    assert!(!chain.verify(b"prev", b"evenT", &link));
    assert!(!chain.verify(b"prex", b"event", &link));
    // Length prefixes keep the split between fields from mattering.
    assert!(!chain.verify(b"pre", b"vevent", &link));
    let other = ChainKey::from_data_key(&DataKey::generate().unwrap());
    assert!(!other.verify(b"prev", b"event", &link));
}

#[test]
fn debug_output_hides_key_material() {
    let dek = DataKey::generate().unwrap();
    assert_eq!(format!("{dek:?}"), "DataKey(***)");
    let k = key("k1", 0x41);
    let shown = format!("{k:?}");
    assert!(shown.contains("k1") && !shown.contains("65") && !shown.contains("AAAA"));
}

fn ident() -> impl Strategy<Value = String> {
    "[a-z0-9._-]{1,40}"
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn prop_round_trip_and_binding(
        secret in proptest::collection::vec(any::<u8>(), 0..512),
        record in ident(),
        org in ident(),
        field in ident(),
        other_record in ident(),
        other_org in ident(),
    ) {
        let ring = ring(vec![key("k1", 7)]);
        let ctx = FieldContext { kind: "credential", record_id: &record, org: &org, field: &field, bound: b"" };
        let (wrapped, sealed) = seal_record(&ring, &ctx, &secret);
        prop_assert_eq!(open_record(&ring, &ctx, &wrapped, &sealed).unwrap(), secret.clone());
        let dek = ring.unwrap(&wrapped, &record).unwrap();
        if other_record != record {
            prop_assert!(ring.unwrap(&wrapped, &other_record).is_err());
            let moved = FieldContext { record_id: &other_record, ..ctx };
            prop_assert!(dek.open(&moved, &sealed).is_err());
        }
        if other_org != org {
            let moved = FieldContext { org: &other_org, ..ctx };
            prop_assert!(dek.open(&moved, &sealed).is_err());
        }
    }
}

#[test]
fn a_keyring_recognises_its_keys_in_any_text_and_nothing_else() {
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    let bytes = [0xfbu8; 32];
    let ring = Keyring::new(
        vec![MasterKey::from_bytes(KeyId::new("k1").unwrap(), &bytes)],
        "test",
    )
    .unwrap();
    let standard = STANDARD.encode(bytes);
    let url = URL_SAFE_NO_PAD.encode(bytes);
    assert_ne!(
        standard.trim_end_matches('='),
        url,
        "the two alphabets differ here"
    );
    for text in [
        standard.clone(),
        url.clone(),
        format!("sk-proj-{url}"),
        format!("{{\"key\": \"{standard}\"}}"),
        format!("line one\nprefix{}suffix", standard.trim_end_matches('=')),
    ] {
        assert!(ring.appears_in(&text), "{text}");
    }
    let other = STANDARD.encode([0x11u8; 32]);
    for text in [
        other.as_str(),
        "sk-proj-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789abcdefgh",
        "",
        &standard[..40],
    ] {
        assert!(!ring.appears_in(text), "{text}");
    }
}
