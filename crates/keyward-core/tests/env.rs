//! The environment variables each provider's credential becomes.

// Helpers here panic on purpose: a failed step is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use keyward_core::env::{EnvValue, provider_env};
use keyward_core::resolve::{Resolved, Source};
use keyward_core::{CredentialId, CredentialName, Provider};
use secrecy::{ExposeSecret, SecretString};

fn resolved(provider: &str, secret: Option<&str>, fields: &[(&str, &str)]) -> Resolved {
    Resolved {
        provider: Provider::get(provider).unwrap(),
        source: Source::Vault {
            id: CredentialId::new("0193a0b4-7c1e-7d2a-9f00-0123456789ab").unwrap(),
            name: CredentialName::new("main").unwrap(),
        },
        secret: secret.map(SecretString::from),
        fields: fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

/// Name → (kind, value) for easy assertions.
fn env(r: &Resolved) -> BTreeMap<String, (&'static str, String)> {
    provider_env(r)
        .into_iter()
        .map(|v| {
            let val = match v.value {
                EnvValue::Plain(s) => ("plain", s),
                EnvValue::Secret(s) => ("secret", s.expose_secret().to_owned()),
                EnvValue::SecretFile(s) => ("file", s.expose_secret().to_owned()),
            };
            (v.name, val)
        })
        .collect()
}

fn pair(kind: &'static str, v: &str) -> (&'static str, String) {
    (kind, v.to_owned())
}

fn names(e: &BTreeMap<String, (&'static str, String)>) -> Vec<String> {
    e.keys().cloned().collect()
}

/// Each SDK's and framework's own variables (checked against their source: openai-python and
/// -node, LangChain's OPENAI_API_BASE; anthropic, LiteLLM's ANTHROPIC_API_BASE, LangChain's
/// ANTHROPIC_API_URL; google-genai's GOOGLE_API_KEY, which it prefers, and
/// GOOGLE_GEMINI_BASE_URL), all set, so that none is left to a stale value in the shell.
#[test]
fn every_sdk_and_framework_finds_its_own_variables() {
    let e = env(&resolved(
        "openai",
        Some("sk-1"),
        &[("base_url", "https://gw/v1")],
    ));
    assert_eq!(
        names(&e),
        ["OPENAI_API_BASE", "OPENAI_API_KEY", "OPENAI_BASE_URL"]
    );
    assert_eq!(e["OPENAI_API_KEY"], pair("secret", "sk-1"));
    assert_eq!(e["OPENAI_BASE_URL"], pair("plain", "https://gw/v1"));
    assert_eq!(e["OPENAI_API_BASE"], pair("plain", "https://gw/v1"));
    let e = env(&resolved(
        "anthropic",
        Some("sk-ant-1"),
        &[("base_url", "https://gw")],
    ));
    assert_eq!(
        names(&e),
        [
            "ANTHROPIC_API_BASE",
            "ANTHROPIC_API_KEY",
            "ANTHROPIC_API_URL",
            "ANTHROPIC_BASE_URL"
        ]
    );
    let e = env(&resolved(
        "gemini",
        Some("AIza-1"),
        &[("base_url", "https://gw/gemini")],
    ));
    assert_eq!(e["GOOGLE_API_KEY"], pair("secret", "AIza-1"));
    assert_eq!(e["GEMINI_API_KEY"], pair("secret", "AIza-1"));
    assert_eq!(
        e["GOOGLE_GEMINI_BASE_URL"],
        pair("plain", "https://gw/gemini")
    );
    assert!(!e.contains_key("GEMINI_BASE_URL"), "no SDK reads it");
    // Open Notebook's id for Gemini is the same provider.
    assert_eq!(Provider::get("google").unwrap().id, "gemini");
    assert_eq!(Provider::get("azure").unwrap().id, "azure_openai");
    assert_eq!(
        Provider::get("openai-compatible").unwrap().id,
        "openai_compatible"
    );
}

#[test]
fn ollama_gets_a_base_url_and_no_key() {
    let e = env(&resolved(
        "ollama",
        None,
        &[("base_url", "http://127.0.0.1:11434")],
    ));
    assert_eq!(names(&e), ["OLLAMA_API_BASE", "OLLAMA_HOST"]);
    assert_eq!(
        e["OLLAMA_API_BASE"],
        pair("plain", "http://127.0.0.1:11434")
    );
}

#[test]
fn azure_gets_key_endpoint_both_api_version_names_and_deployment() {
    let e = env(&resolved(
        "azure_openai",
        Some("az-key"),
        &[
            ("endpoint", "https://x.openai.azure.com"),
            ("api_version", "2024-10-21"),
            ("deployment", "gpt-4o"),
            ("endpoint_llm", "https://llm.openai.azure.com"),
        ],
    ));
    assert_eq!(e["AZURE_OPENAI_API_KEY"], pair("secret", "az-key"));
    assert_eq!(
        e["AZURE_OPENAI_ENDPOINT"],
        pair("plain", "https://x.openai.azure.com")
    );
    assert_eq!(e["OPENAI_API_VERSION"], pair("plain", "2024-10-21"));
    assert_eq!(e["AZURE_OPENAI_API_VERSION"], pair("plain", "2024-10-21"));
    assert_eq!(e["AZURE_OPENAI_DEPLOYMENT"], pair("plain", "gpt-4o"));
    // LiteLLM's names, and Open Notebook's per-modality endpoint.
    assert_eq!(e["AZURE_API_KEY"], pair("secret", "az-key"));
    assert_eq!(
        e["AZURE_API_BASE"],
        pair("plain", "https://x.openai.azure.com")
    );
    assert_eq!(e["AZURE_API_VERSION"], pair("plain", "2024-10-21"));
    assert_eq!(
        e["AZURE_OPENAI_ENDPOINT_LLM"],
        pair("plain", "https://llm.openai.azure.com")
    );
    assert_eq!(e.len(), 9);
}

#[test]
fn vertex_gets_project_location_and_a_key_file() {
    let e = env(&resolved(
        "vertex",
        Some("{\"type\":\"service_account\"}"),
        &[("project", "p1"), ("location", "europe-west4")],
    ));
    assert_eq!(
        e["GOOGLE_APPLICATION_CREDENTIALS"],
        pair("file", "{\"type\":\"service_account\"}")
    );
    assert_eq!(e["VERTEX_PROJECT"], pair("plain", "p1"));
    assert_eq!(e["VERTEX_LOCATION"], pair("plain", "europe-west4"));
    // From Keyward's own environment, the key file's path passes through as it is.
    let from_env = env(&resolved(
        "vertex",
        None,
        &[("credentials_file", "/etc/sa.json")],
    ));
    assert_eq!(
        from_env["GOOGLE_APPLICATION_CREDENTIALS"],
        pair("plain", "/etc/sa.json")
    );
}

#[test]
fn bedrock_gets_the_three_aws_variables() {
    let e = env(&resolved(
        "bedrock",
        Some("aws-secret"),
        &[("access_key_id", "AKIAEXAMPLE"), ("region", "eu-west-1")],
    ));
    assert_eq!(e["AWS_SECRET_ACCESS_KEY"], pair("secret", "aws-secret"));
    assert_eq!(e["AWS_ACCESS_KEY_ID"], pair("plain", "AKIAEXAMPLE"));
    assert_eq!(e["AWS_REGION"], pair("plain", "eu-west-1"));
    assert_eq!(e["AWS_DEFAULT_REGION"], pair("plain", "eu-west-1"));
}

/// Temporary credentials, pasted as `aws configure export-credentials` prints them, are stored
/// in one form and given as the SDKs read them; a credential without an access key id holds a
/// Bedrock API key, given in AWS_BEARER_TOKEN_BEDROCK.
#[test]
fn bedrock_temporary_credentials_and_api_keys() {
    let bedrock = Provider::get("bedrock").unwrap();
    let pasted = SecretString::from(
        r#" {"Version": 1, "AccessKeyId": "ASIAEXAMPLE", "SecretAccessKey": "tmp/Secret+Key", "SessionToken": "IQoJb3JpZ2luX2VjEXAMPLE==", "Expiration": "2026-12-07T12:00:00Z"} "#,
    );
    let stored = keyward_core::credential::normalize_secret(
        bedrock,
        &pasted,
        keyward_core::credential::FormatCheck::Enforce,
    )
    .unwrap();
    assert_eq!(
        stored.expose_secret(),
        r#"{"secret_access_key":"tmp/Secret+Key","session_token":"IQoJb3JpZ2luX2VjEXAMPLE=="}"#
    );
    // The access key id comes with them; a different one, or none at all, is refused (AWS
    // credentials must never pass for a Bedrock API key).
    let mut fields = std::collections::BTreeMap::new();
    keyward_core::credential::fields_from_secret(bedrock, &pasted, &mut fields).unwrap();
    assert_eq!(fields["access_key_id"], "ASIAEXAMPLE");
    let mut other =
        std::collections::BTreeMap::from([("access_key_id".to_owned(), "AKIAOTHER".to_owned())]);
    assert!(keyward_core::credential::fields_from_secret(bedrock, &pasted, &mut other).is_err());
    let without_id = SecretString::from(r#"{"SecretAccessKey": "s", "SessionToken": "t"}"#);
    assert!(
        keyward_core::credential::fields_from_secret(
            bedrock,
            &without_id,
            &mut std::collections::BTreeMap::new()
        )
        .is_err()
    );
    // `aws sts ...` prints them under `Credentials`; some tools in camelCase.
    for shape in [
        r#"{"Credentials": {"AccessKeyId": "ASIAEXAMPLE", "SecretAccessKey": "tmp/Secret+Key", "SessionToken": "IQoJb3JpZ2luX2VjEXAMPLE==", "Expiration": "2026-12-07T12:00:00Z"}, "AssumedRoleUser": {}}"#,
        r#"{"accessKeyId": "ASIAEXAMPLE", "secretAccessKey": "tmp/Secret+Key", "sessionToken": "IQoJb3JpZ2luX2VjEXAMPLE=="}"#,
    ] {
        let shape = SecretString::from(shape);
        let mut fields = std::collections::BTreeMap::new();
        keyward_core::credential::fields_from_secret(bedrock, &shape, &mut fields).unwrap();
        assert_eq!(fields["access_key_id"], "ASIAEXAMPLE");
        let same = keyward_core::credential::normalize_secret(
            bedrock,
            &shape,
            keyward_core::credential::FormatCheck::Enforce,
        )
        .unwrap();
        assert_eq!(same.expose_secret(), stored.expose_secret());
    }
    let hint = keyward_core::credential::key_hint(bedrock, &stored);
    assert!(
        hint.ends_with("(temporary)") && !hint.contains("Secret+Key"),
        "{hint}"
    );
    let e = env(&resolved(
        "bedrock",
        Some(stored.expose_secret()),
        &[("access_key_id", "ASIAEXAMPLE"), ("region", "us-east-1")],
    ));
    assert_eq!(e["AWS_SECRET_ACCESS_KEY"], pair("secret", "tmp/Secret+Key"));
    assert_eq!(
        e["AWS_SESSION_TOKEN"],
        pair("secret", "IQoJb3JpZ2luX2VjEXAMPLE==")
    );
    for refused in [
        r#"{"SessionToken": "x"}"#,
        r#"{"SecretAccessKey": "a b"}"#,
        "{",
    ] {
        assert!(
            keyward_core::credential::normalize_secret(
                bedrock,
                &SecretString::from(refused),
                keyward_core::credential::FormatCheck::Enforce,
            )
            .is_err(),
            "{refused}"
        );
    }

    let e = env(&resolved(
        "bedrock",
        Some("ABSKQmVkcm9ja0FQSUtleS1leGFtcGxl"),
        &[("region", "us-east-1")],
    ));
    assert_eq!(
        e["AWS_BEARER_TOKEN_BEDROCK"],
        pair("secret", "ABSKQmVkcm9ja0FQSUtleS1leGFtcGxl")
    );
    assert!(!e.contains_key("AWS_SECRET_ACCESS_KEY") && !e.contains_key("AWS_ACCESS_KEY_ID"));
}

#[test]
fn compatible_providers_use_the_chosen_prefix_or_their_sdks() {
    let e = env(&resolved(
        "openai_compatible",
        Some("local-key"),
        &[
            ("base_url", "http://127.0.0.1:8000/v1"),
            ("env_prefix", "LOCALAI"),
        ],
    ));
    assert_eq!(e["LOCALAI_API_KEY"], pair("secret", "local-key"));
    assert_eq!(
        e["LOCALAI_BASE_URL"],
        pair("plain", "http://127.0.0.1:8000/v1")
    );
    assert_eq!(
        e["LOCALAI_API_BASE"],
        pair("plain", "http://127.0.0.1:8000/v1")
    );
    assert_eq!(e.len(), 3, "env_prefix itself is not exported");
    let e = env(&resolved(
        "anthropic_compatible",
        Some("k"),
        &[("base_url", "http://127.0.0.1:9000")],
    ));
    assert_eq!(e["ANTHROPIC_API_KEY"], pair("secret", "k"));
    assert_eq!(
        e["ANTHROPIC_BASE_URL"],
        pair("plain", "http://127.0.0.1:9000")
    );
}

#[test]
fn every_variable_the_registry_declares_is_set() {
    for p in keyward_core::PROVIDERS {
        let mut fields: Vec<(&str, &str)> = p.public_fields.iter().map(|f| (f.name, "v")).collect();
        fields.retain(|(name, _)| *name != "env_prefix");
        fields.push(("base_url", "http://127.0.0.1:1"));
        // With a service principal named, the secret is the principal's; without, a key.
        let principal = p.principal.map_or(&[][..], |p| p.fields);
        let with_key: Vec<(&str, &str)> = fields
            .iter()
            .copied()
            .filter(|(n, _)| !principal.contains(n))
            .collect();
        let e = env(&resolved(p.id, Some("secret"), &with_key));
        let declared = p.secret_env.iter().chain(p.base_url_env).chain(
            p.public_fields
                .iter()
                .filter(|f| !principal.contains(&f.name))
                .flat_map(|f| f.env.iter()),
        );
        for var in declared {
            assert!(e.contains_key(*var), "{}: {var} not set", p.id);
        }
        if let Some(pr) = p.principal {
            let e = env(&resolved(p.id, Some("secret"), &fields));
            for var in pr.secret_env.iter().chain(
                p.public_fields
                    .iter()
                    .filter(|f| pr.fields.contains(&f.name))
                    .flat_map(|f| f.env.iter()),
            ) {
                assert!(e.contains_key(*var), "{}: {var} not set", p.id);
            }
            for var in p.secret_env {
                assert!(
                    !e.contains_key(*var),
                    "{}: a principal's secret is not an API key, yet {var} is set",
                    p.id
                );
            }
        }
    }
}

/// An Azure OpenAI credential holding an Entra ID app gives the variables azure-identity's
/// EnvironmentCredential reads, and no api-key variable.
#[test]
fn an_entra_id_app_is_given_as_azure_identity_reads_it() {
    let e = env(&resolved(
        "azure_openai",
        Some("client-secret-value"),
        &[
            ("endpoint", "https://acme.openai.azure.com"),
            ("tenant_id", "8f1c2c7e-0000-4000-8000-000000000001"),
            ("client_id", "0b5e8c3a-0000-4000-8000-000000000002"),
        ],
    ));
    assert_eq!(
        e["AZURE_CLIENT_SECRET"],
        pair("secret", "client-secret-value")
    );
    assert_eq!(
        e["AZURE_TENANT_ID"],
        pair("plain", "8f1c2c7e-0000-4000-8000-000000000001")
    );
    assert_eq!(
        e["AZURE_CLIENT_ID"],
        pair("plain", "0b5e8c3a-0000-4000-8000-000000000002")
    );
    assert_eq!(
        e["AZURE_OPENAI_ENDPOINT"],
        pair("plain", "https://acme.openai.azure.com")
    );
    assert!(!e.contains_key("AZURE_OPENAI_API_KEY") && !e.contains_key("AZURE_API_KEY"));
}

/// Open Notebook's key provider (`open_notebook/ai/key_provider.py`): for each provider of its
/// `PROVIDER_CONFIG`, the variable it sets from the key and the `{PROVIDER}_API_BASE` it sets
/// from a base URL; Keyward sets them all, so its code runs unchanged on Keyward's variables.
#[test]
fn every_variable_open_notebooks_provisioning_sets_is_set() {
    const SIMPLE: &[(&str, &str)] = &[
        ("openai", "OPENAI_API_KEY"),
        ("anthropic", "ANTHROPIC_API_KEY"),
        ("google", "GOOGLE_API_KEY"),
        ("groq", "GROQ_API_KEY"),
        ("mistral", "MISTRAL_API_KEY"),
        ("deepseek", "DEEPSEEK_API_KEY"),
        ("xai", "XAI_API_KEY"),
        ("openrouter", "OPENROUTER_API_KEY"),
        ("voyage", "VOYAGE_API_KEY"),
        ("elevenlabs", "ELEVENLABS_API_KEY"),
        ("deepgram", "DEEPGRAM_API_KEY"),
        ("omlx", "OMLX_API_KEY"),
        ("dashscope", "DASHSCOPE_API_KEY"),
        ("minimax", "MINIMAX_API_KEY"),
        ("novita", "NOVITA_API_KEY"),
        ("ppq", "PPQ_API_KEY"),
        ("cohere", "COHERE_API_KEY"),
    ];
    for (provider, key_var) in SIMPLE {
        let e = env(&resolved(
            provider,
            Some("k-0123456789abcdefghij0123456789abcdefghij"),
            &[("base_url", "http://127.0.0.1:9/v1")],
        ));
        assert_eq!(e.get(*key_var).map(|v| v.0), Some("secret"), "{provider}");
        let base_var = format!("{}_API_BASE", provider.to_ascii_uppercase());
        assert_eq!(
            e.get(&base_var),
            Some(&pair("plain", "http://127.0.0.1:9/v1")),
            "{provider}: {base_var}"
        );
    }
    // Ollama's "key" is its base URL.
    let e = env(&resolved("ollama", None, &[("base_url", "http://o:11434")]));
    assert_eq!(e["OLLAMA_API_BASE"], pair("plain", "http://o:11434"));
    // Azure: the key, the version, the endpoint and the per-modality endpoints.
    let fields = [
        ("endpoint", "https://a.openai.azure.com"),
        ("api_version", "2024-10-21"),
        ("endpoint_llm", "https://l"),
        ("endpoint_embedding", "https://e"),
        ("endpoint_stt", "https://s"),
        ("endpoint_tts", "https://t"),
    ];
    let e = env(&resolved("azure", Some("k"), &fields));
    for var in [
        "AZURE_OPENAI_API_KEY",
        "AZURE_OPENAI_API_VERSION",
        "AZURE_OPENAI_ENDPOINT",
        "AZURE_OPENAI_ENDPOINT_LLM",
        "AZURE_OPENAI_ENDPOINT_EMBEDDING",
        "AZURE_OPENAI_ENDPOINT_STT",
        "AZURE_OPENAI_ENDPOINT_TTS",
    ] {
        assert!(e.contains_key(var), "azure: {var}");
    }
    // Vertex: project, location and the credentials file.
    let e = env(&resolved(
        "vertex",
        Some("{}"),
        &[("project", "p"), ("location", "l")],
    ));
    for var in [
        "VERTEX_PROJECT",
        "VERTEX_LOCATION",
        "GOOGLE_APPLICATION_CREDENTIALS",
    ] {
        assert!(e.contains_key(var), "vertex: {var}");
    }
    // The compatible ones, with the prefix `keyward import open-notebook` gives them.
    for (provider, prefix) in [
        ("openai_compatible", "OPENAI_COMPATIBLE"),
        ("anthropic_compatible", "ANTHROPIC_COMPATIBLE"),
    ] {
        let e = env(&resolved(
            provider,
            Some("k"),
            &[("base_url", "http://c/v1"), ("env_prefix", prefix)],
        ));
        assert!(e.contains_key(&format!("{prefix}_API_KEY")), "{provider}");
        assert!(e.contains_key(&format!("{prefix}_BASE_URL")), "{provider}");
    }
}
