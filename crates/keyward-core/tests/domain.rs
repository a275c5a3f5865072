//! Domain rules: ids, key checks, hints, public fields, ordering, not-found messages, filters.

// Helpers here panic on purpose: a failed step is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use keyward_core::audit::{Category, EventFilter};
use keyward_core::credential::{
    FormatCheck, Modality, check_public_fields, check_required_fields, key_hint, normalize_secret,
};
use keyward_core::resolve::{Candidate, NotFound, Strategy, order};
use keyward_core::{CredentialName, OrgId, PROVIDERS, Provider, VarName};
use secrecy::{ExposeSecret, SecretString};

fn secret(s: &str) -> SecretString {
    SecretString::from(s)
}

#[test]
fn org_ids_follow_the_slug_rule() {
    for ok in ["acme", "a", "0rg", "acme-eu.prod_1", &"a".repeat(63)] {
        assert!(OrgId::new(ok).is_ok(), "{ok} refused");
    }
    for bad in [
        "",
        "Acme",
        "-acme",
        ".acme",
        "ac me",
        "acme/",
        &"a".repeat(64),
        "é",
    ] {
        assert!(OrgId::new(bad).is_err(), "{bad} accepted");
    }
}

#[test]
fn var_names_allow_letters_digits_underscore_dash_dot() {
    for ok in ["OPENAI_API_KEY", "anthropic.production.key", "a-b", "X1"] {
        assert!(VarName::new(ok).is_ok(), "{ok} refused");
    }
    for bad in ["", "A B", "a/b", "a=b", "ключ", "a$"] {
        let err = VarName::new(bad).unwrap_err().to_string();
        assert!(err.contains("ASCII letters"), "{err}");
    }
}

#[test]
fn credential_names_refuse_control_characters_and_padding() {
    assert!(CredentialName::new("prod key #1").is_ok());
    for bad in ["", " x", "x ", "a\nb", "a\u{7}b"] {
        assert!(CredentialName::new(bad).is_err(), "{bad:?} accepted");
    }
}

#[test]
fn registry_has_the_required_providers_with_unique_ids() {
    let required = [
        "openai",
        "anthropic",
        "gemini",
        "azure_openai",
        "vertex",
        "fireworks",
        "ollama",
        "mistral",
        "groq",
        "deepseek",
        "xai",
        "openrouter",
        "together",
        "cohere",
        "bedrock",
        "openai_compatible",
    ];
    for id in required {
        assert!(Provider::get(id).is_ok(), "{id} missing");
    }
    let mut ids: Vec<&str> = PROVIDERS.iter().map(|p| p.id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), PROVIDERS.len(), "duplicate provider ids");
    let err = Provider::get("nope").unwrap_err().to_string();
    assert!(err.contains("openai") && err.contains("anthropic"), "{err}");
}

#[test]
fn key_format_is_checked_per_provider_with_a_helpful_message() {
    let cases = [
        (
            "openai",
            "sk-proj-abcdefghijklmnop",
            "pk-abcdefghijklmnop",
            "'sk-'",
        ),
        (
            "anthropic",
            "sk-ant-api03-abcdefghijkl",
            "sk-abcdefghijklmnop",
            "'sk-ant-'",
        ),
        (
            "gemini",
            "AIzaSyD3x8K9mLpQ2rS5tU7vW0xY1zA4bC6dE8f",
            "xyzabcdefghijklmnopqrstuvwxyz0123456789",
            "'AIza'",
        ),
        (
            "fireworks",
            "fw_abcdefghijklmnopqrst",
            "sk-abcdefghijklmnop",
            "'fw'",
        ),
    ];
    for (id, good, bad, expected) in cases {
        let p = Provider::get(id).unwrap();
        assert!(normalize_secret(p, &secret(good), FormatCheck::Enforce).is_ok());
        let err = normalize_secret(p, &secret(bad), FormatCheck::Enforce)
            .unwrap_err()
            .to_string();
        assert!(err.contains(expected), "{id}: {err}");
        assert!(
            !err.contains("--no-format-check"),
            "each surface says how to skip it, not the core: {err}"
        );
        assert!(!err.contains(bad), "the message quotes the key: {err}");
        assert!(normalize_secret(p, &secret(bad), FormatCheck::Skip).is_ok());
    }
}

#[test]
fn keys_are_trimmed_and_embedded_whitespace_or_controls_refused() {
    let p = Provider::get("openai").unwrap();
    let k = normalize_secret(
        p,
        &secret("  sk-abcdef0123456789wxyz\n"),
        FormatCheck::Enforce,
    )
    .unwrap();
    assert_eq!(k.expose_secret(), "sk-abcdef0123456789wxyz");
    for bad in [
        "sk-abc def0123456789",
        "sk-abc\tdef",
        "sk-abc\u{0}def",
        "sk-abc\u{1b}def",
        "   ",
    ] {
        assert!(
            normalize_secret(p, &secret(bad), FormatCheck::Skip).is_err(),
            "{bad:?} accepted"
        );
    }
}

#[test]
fn vertex_secret_must_be_a_service_account_document() {
    let p = Provider::get("vertex").unwrap();
    let good = r#"{"type":"service_account","project_id":"p","private_key":"-----BEGIN PRIVATE KEY-----\nabc\n-----END PRIVATE KEY-----\n","client_email":"sa@p.iam.gserviceaccount.com"}"#;
    assert!(normalize_secret(p, &secret(good), FormatCheck::Enforce).is_ok());
    assert_eq!(
        key_hint(p, &secret(good)),
        "sa:sa@p.iam.gserviceaccount.com"
    );
    let err = normalize_secret(
        p,
        &secret(r#"{"type":"service_account"}"#),
        FormatCheck::Enforce,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("private_key") && err.contains("client_email"),
        "{err}"
    );
    assert!(normalize_secret(p, &secret("not json"), FormatCheck::Enforce).is_err());
}

#[test]
fn key_hints_show_prefix_and_last_four_and_less_for_short_keys() {
    let openai = Provider::get("openai").unwrap();
    let anthropic = Provider::get("anthropic").unwrap();
    let mistral = Provider::get("mistral").unwrap();
    assert_eq!(
        key_hint(openai, &secret("sk-proj-0123456789abcdwxyz")),
        "sk-...wxyz"
    );
    assert_eq!(
        key_hint(anthropic, &secret("sk-ant-api03-0123456789abcdwxyz")),
        "sk-ant-...wxyz"
    );
    assert_eq!(
        key_hint(mistral, &secret("Zm9vYmFyYmF6cXV4d3h5eg")),
        "Zm9...h5eg"
    );
    assert_eq!(key_hint(mistral, &secret("abcdefghijk")), "...jk");
    assert_eq!(key_hint(mistral, &secret("abc")), "***");
    // A hint never shows more than a quarter of a key plus its last four characters.
    let k = "sk-ant-0123456789";
    let h = key_hint(anthropic, &secret(k));
    assert!(h.len() - 3 <= k.len() / 4 + 4, "{h}");
}

#[test]
fn public_fields_are_checked_against_the_provider() {
    let azure = Provider::get("azure_openai").unwrap();
    let mut f = BTreeMap::new();
    f.insert(
        "endpoint".to_string(),
        "https://x.openai.azure.com".to_string(),
    );
    assert!(check_public_fields(azure, &f).is_ok());
    assert!(check_required_fields(azure, &f).is_ok());
    assert!(
        check_required_fields(azure, &BTreeMap::new())
            .unwrap_err()
            .to_string()
            .contains("endpoint")
    );
    f.insert("colour".into(), "blue".into());
    assert!(
        check_public_fields(azure, &f)
            .unwrap_err()
            .to_string()
            .contains("endpoint")
    );
    let mut bad_url = BTreeMap::new();
    bad_url.insert("base_url".to_string(), "ftp://x".to_string());
    assert!(check_public_fields(azure, &bad_url).is_err());
}

#[test]
fn modalities_parse_sorted_and_deduplicated() {
    assert_eq!(
        Modality::parse_list("embeddings, chat,chat").unwrap(),
        vec![Modality::Chat, Modality::Embeddings]
    );
    assert!(Modality::parse_list("telepathy").is_err());
}

fn c(priority: i64, weight: i64, created_at: i64) -> Candidate {
    Candidate {
        priority,
        weight,
        created_at,
    }
}

#[test]
fn priority_orders_by_priority_then_age() {
    let cs = [c(5, 1, 1), c(1, 1, 9), c(1, 1, 3)];
    assert_eq!(order(&cs, Strategy::Priority, 0, 0), vec![2, 1, 0]);
}

#[test]
fn round_robin_takes_turns() {
    let cs = [c(1, 1, 1), c(2, 1, 2), c(3, 1, 3)];
    let firsts: Vec<usize> = (0..6)
        .map(|t| order(&cs, Strategy::RoundRobin, t, 0)[0])
        .collect();
    assert_eq!(firsts, vec![0, 1, 2, 0, 1, 2]);
    // The rest stay as failovers.
    assert_eq!(order(&cs, Strategy::RoundRobin, 1, 0), vec![1, 2, 0]);
}

#[test]
fn weighted_draws_in_proportion_to_weight() {
    let cs = [c(1, 1, 1), c(2, 3, 2), c(3, 0, 3)];
    let mut counts = [0usize; 3];
    for r in 0..400u64 {
        counts[order(&cs, Strategy::Weighted, 0, r)[0]] += 1;
    }
    assert_eq!(counts, [100, 300, 0]);
    // Every candidate remains in the failover list.
    let mut all = order(&cs, Strategy::Weighted, 0, 2);
    all.sort_unstable();
    assert_eq!(all, vec![0, 1, 2]);
}

#[test]
fn not_found_names_provider_org_and_variable_and_what_an_admin_can_do() {
    let e = NotFound {
        provider: keyward_core::Provider::get("openai").unwrap(),
        org: "acme".into(),
        name: None,
        modality: None,
        env_vars: vec!["OPENAI_API_KEY".into()],
        env_fallback: true,
        undecryptable: 0,
    };
    assert_eq!(
        e.to_string(),
        "organization 'acme' has no active OpenAI credential and OPENAI_API_KEY is not set; an admin can add one (keyward cred add --org acme --provider openai) or activate one"
    );
    let off = NotFound {
        env_fallback: false,
        undecryptable: 2,
        ..e
    };
    let s = off.to_string();
    assert!(
        s.contains("2 could not be decrypted")
            && !s.contains("fallback")
            && !s.contains("OPENAI_API_KEY"),
        "no server jargon: {s}"
    );
}

#[test]
fn event_filters_parse() {
    let f: EventFilter = "category=secret_management, org=acme".parse().unwrap();
    assert_eq!(f.category, Some(Category::SecretManagement));
    assert_eq!(f.org.as_deref(), Some("acme"));
    assert!("colour=red".parse::<EventFilter>().is_err());
    assert!("category=nope".parse::<EventFilter>().is_err());
}

#[test]
fn the_guides_placeholders_and_implausibly_short_keys_are_refused() {
    let openai = Provider::get("openai").unwrap();
    for placeholder in [
        "sk-...",
        "sk-new-key...",
        "sk-proj-...",
        "sk-<your-key-here>-0000000",
    ] {
        let err = normalize_secret(openai, &secret(placeholder), FormatCheck::Enforce)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("placeholder") || err.contains("too short"),
            "{placeholder}: {err}"
        );
        assert!(err.contains("an OpenAI key"), "the article fits: {err}");
    }
    let err = normalize_secret(openai, &secret("sk-short"), FormatCheck::Enforce)
        .unwrap_err()
        .to_string();
    assert!(err.contains("at least 20 characters"), "{err}");
    // Skipping the check is still the caller's choice.
    assert!(normalize_secret(openai, &secret("sk-short"), FormatCheck::Skip).is_ok());
    // Providers without a documented format still refuse a placeholder-length key.
    let mistral = Provider::get("mistral").unwrap();
    assert!(normalize_secret(mistral, &secret("abc"), FormatCheck::Enforce).is_err());
    assert_eq!(Provider::get("groq").unwrap().a_name(), "a Groq");
    assert_eq!(Provider::get("xai").unwrap().a_name(), "an xAI");
    assert_eq!(Provider::get("anthropic").unwrap().a_name(), "an Anthropic");
}

#[test]
fn open_notebooks_providers_and_modality_names_are_accepted() {
    for id in [
        "google",
        "azure",
        "voyage",
        "elevenlabs",
        "deepgram",
        "dashscope",
        "minimax",
        "novita",
        "ppq",
        "omlx",
        "cohere",
        "openai-compatible",
        "anthropic_compatible",
        "vertex",
        "ollama",
    ] {
        assert!(Provider::get(id).is_ok(), "{id}");
    }
    for id in [
        "perplexity",
        "cerebras",
        "sambanova",
        "nvidia_nim",
        "huggingface",
        "replicate",
        "ai21",
        "cloudflare_workers_ai",
        "lm_studio",
        "vllm",
        "azure_ai_foundry",
    ] {
        let p = Provider::get(id).unwrap();
        assert!(
            !p.secret_env.is_empty() && !p.base_url_env.is_empty(),
            "{id}: its variables"
        );
        assert!(
            p.default_base_url.is_some() || p.needs_base_url,
            "{id}: a base URL, or the need for one"
        );
    }
    let names = Modality::parse_list("language,embedding,speech_to_text,text_to_speech").unwrap();
    assert_eq!(
        names,
        [
            Modality::Chat,
            Modality::Embeddings,
            Modality::SpeechToText,
            Modality::TextToSpeech
        ]
    );
    // Cloudflare's base URL is its account's.
    let cf = Provider::get("cloudflare_workers_ai").unwrap();
    let fields = std::collections::BTreeMap::from([("account_id".to_owned(), "abc123".to_owned())]);
    assert_eq!(
        cf.default_base_url_for(&fields).unwrap(),
        "https://api.cloudflare.com/client/v4/accounts/abc123/ai/v1"
    );
    let sneaky =
        std::collections::BTreeMap::from([("account_id".to_owned(), "evil.example/x?".to_owned())]);
    assert_eq!(
        cf.default_base_url_for(&sneaky),
        None,
        "only an identifier goes in"
    );
}

/// A Vertex AI credential's project goes into its requests' paths: a project id (or a
/// domain-scoped one) only.
#[test]
fn vertex_projects_are_project_ids() {
    let vertex = keyward_core::Provider::get("vertex").unwrap();
    let check = |p: &str| {
        let fields = std::collections::BTreeMap::from([("project".to_owned(), p.to_owned())]);
        keyward_core::credential::check_public_fields(vertex, &fields).is_ok()
    };
    for good in ["acme-ml", "my-project-123456", "example.com:acme-ml", "p1"] {
        assert!(check(good), "{good}");
    }
    for bad in [
        "proj-",
        "evil.com",
        "proj-a:x",
        "x.com:y:z",
        "a?x=1#frag",
        "Acme-ML",
        "a/b-cdef",
        "1project",
    ] {
        assert!(!check(bad), "{bad}");
    }
    // Another provider's `project` (OpenAI's `proj_...`) is not a Google project.
    let openai = keyward_core::Provider::get("openai").unwrap();
    let fields =
        std::collections::BTreeMap::from([("project".to_owned(), "proj_Abc123".to_owned())]);
    assert!(keyward_core::credential::check_public_fields(openai, &fields).is_ok());
}
