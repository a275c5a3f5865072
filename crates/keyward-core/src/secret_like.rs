//! Telling values that look like secrets from names, so that a key pasted into the wrong field
//! is refused instead of stored in plain text, and never quoted back in an error.
//!
//! [`looks_like_secret`] is the one test; every name-like type refuses what it matches
//! ([`refused`] words the error), and every error that quotes what a caller sent goes through
//! [`shown`] (one value) or [`scrub`] (a parser's message, which may quote anything).
//!
//! What counts as a secret:
//! - a word that starts like a key of the registry (`sk-`, `sk-ant-`, `gsk_`, `xai-`, `AIza`,
//!   ...) or a Keyward token (`kwt_`, `kwg_`), followed by enough key characters;
//! - a run of 20 or more letters and digits that switches between lower case, upper case and
//!   digits as often as random text does (words, `snake_case`, `CamelCase`, dates and model
//!   names do not), or a run of 32 or more that mixes letters and digits (hex, base36);
//! - a PEM private key.
//!
//! UUIDs pass: their runs are at most 12 characters long.

use std::borrow::Cow;

use crate::{CoreError, PROVIDERS};

/// Prefix of Keyward API tokens.
pub const API_TOKEN_PREFIX: &str = "kwt_";
/// Prefix of Keyward gateway tokens.
pub const GATEWAY_TOKEN_PREFIX: &str = "kwg_";
/// Prefix of dashboard session ids (the browser's cookie).
pub const SESSION_PREFIX: &str = "kws_";

/// Whether `s` holds something that looks like a key or token (see the module's rules).
pub fn looks_like_secret(s: &str) -> bool {
    s.contains("PRIVATE KEY")
        || s.split(|c: char| is_coarse_separator(c) || c == '.')
            .any(base64_like)
        || words(s).any(word_looks_like_key)
        || runs(s).any(run_looks_random)
}

/// The error for a field whose value looks like a key: it names the field, never the value.
pub fn refused(what: &str) -> CoreError {
    CoreError::LooksLikeSecret(format!(
        "the {what} looks like an API key or token, so it was refused and is not shown; a key belongs only in a secret field (a credential's key, a sensitive variable's value)"
    ))
}

/// Checks a free-form public value (a display name, a description, a base URL, ...): nothing
/// that looks like a key, and no text-direction characters (which make a listing show
/// something other than what is stored).
pub fn check_public(what: &str, value: &str) -> Result<(), CoreError> {
    if looks_like_secret(value) {
        Err(refused(what))
    } else if value.chars().any(crate::ids::hides_or_reorders_text) {
        Err(CoreError::InvalidInput(format!(
            "the {what} may not contain invisible, line-breaking or text-direction characters (such as U+200B, U+2028, U+202E)"
        )))
    } else {
        Ok(())
    }
}

/// `value` for an error message: quoted (and cut at 64 characters) when it does not look like
/// a secret, otherwise a placeholder.
pub fn shown(value: &str) -> Cow<'static, str> {
    if looks_like_secret(value) {
        return Cow::Borrowed("(a value that looks like a key, not shown)");
    }
    let cut: String = value.chars().take(64).collect();
    if cut.len() < value.len() {
        Cow::Owned(format!("{cut:?}..."))
    } else {
        Cow::Owned(format!("{cut:?}"))
    }
}

/// A name (an environment variable's, a field's) for a message: as it is when it is a plain
/// identifier (ASCII letters, digits, `_`, `.`, `-`, at most 64) that does not look like a
/// secret, otherwise as [`shown`] puts it.
pub fn shown_name(name: &str) -> Cow<'_, str> {
    let plain = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if plain && !looks_like_secret(name) {
        Cow::Borrowed(name)
    } else {
        shown(name)
    }
}

/// `message` with every word that looks like a secret replaced by `***`: for texts made by
/// others (a JSON parser's ``unknown field `...` ``, a query parser's, a YAML parser's) that
/// may quote what the caller sent in any style.
pub fn scrub(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while !rest.is_empty() {
        let start = rest
            .find(|c: char| !is_coarse_separator(c))
            .unwrap_or(rest.len());
        out.push_str(&rest[..start]);
        rest = &rest[start..];
        let end = rest.find(is_coarse_separator).unwrap_or(rest.len());
        let token = &rest[..end];
        out.push_str(if looks_like_secret(token) {
            "***"
        } else {
            token
        });
        rest = &rest[end..];
    }
    if out.contains("PRIVATE KEY") {
        return "(a message that quoted a private key, not shown)".to_owned();
    }
    out
}

/// [`scrub`] on every string of a JSON value (an audit event's details), keys of objects too.
pub fn scrub_json(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::String(s) => {
            if looks_like_secret(s) {
                *s = scrub(s);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(scrub_json),
        Value::Object(map) => {
            if map.keys().any(|k| looks_like_secret(k)) {
                *map = std::mem::take(map)
                    .into_iter()
                    .map(|(k, v)| (scrub(&k), v))
                    .collect();
            }
            map.values_mut().for_each(scrub_json);
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// What ends a token of a message: space, quotes of any style, and JSON's punctuation. A
/// token may still hold several words (`fields.sk-...`, `user:pass@host`).
fn is_coarse_separator(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '"' | '\''
                | '`'
                | ','
                | ';'
                | ':'
                | '('
                | ')'
                | '['
                | ']'
                | '{'
                | '}'
                | '<'
                | '>'
                | '|'
        )
}

/// What ends a word: what ends a token, and the punctuation of URLs and paths.
fn is_separator(c: char) -> bool {
    is_coarse_separator(c) || matches!(c, '=' | '&' | '?' | '#' | '/' | '\\' | '@' | '.')
}

fn words(s: &str) -> impl Iterator<Item = &str> {
    s.split(is_separator).filter(|w| !w.is_empty())
}

/// Maximal runs of ASCII letters and digits.
fn runs(s: &str) -> impl Iterator<Item = &str> {
    s.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|r| r.len() >= 20)
}

/// A word that starts like a key of the registry or a Keyward token.
fn word_looks_like_key(word: &str) -> bool {
    if [API_TOKEN_PREFIX, GATEWAY_TOKEN_PREFIX, SESSION_PREFIX]
        .iter()
        .any(|p| word.len() >= p.len() + 8 && word.starts_with(p))
    {
        return true;
    }
    PROVIDERS.iter().flat_map(|p| p.key_prefixes).any(|prefix| {
        let Some(rest) = word.strip_prefix(prefix) else {
            return false;
        };
        // Short prefixes ("AI", "fw") start many words: ask for a longer tail.
        let least = if prefix.len() < 3 { 24 } else { 16 };
        rest.len() >= least
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
            && rest.bytes().any(|b| b.is_ascii_digit())
            && rest.bytes().any(|b| b.is_ascii_alphabetic())
    })
}

/// A base64 text as random as a key's (an AWS secret access key: letters, digits, `+`, `/`).
fn base64_like(token: &str) -> bool {
    let b = token.trim_end_matches('=').as_bytes();
    b.len() >= 30
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/'))
        && b.iter().any(u8::is_ascii_lowercase)
        && b.iter().any(u8::is_ascii_uppercase)
        && b.iter().any(u8::is_ascii_digit)
        && changes_like_random(b)
}

/// Whether characters change class (lower, upper, digit, other) at 4 of 10 places or more:
/// random text does at about 6, words and names rarely reach 3.
fn changes_like_random(b: &[u8]) -> bool {
    let class = |c: &u8| match c {
        b'a'..=b'z' => 0,
        b'A'..=b'Z' => 1,
        b'0'..=b'9' => 2,
        _ => 3,
    };
    let changes = b
        .windows(2)
        .filter(|w| class(&w[0]) != class(&w[1]))
        .count();
    changes * 10 >= (b.len() - 1) * 4
}

/// A run of letters and digits as random as a key's.
fn run_looks_random(run: &str) -> bool {
    let b = run.as_bytes();
    let digits = b.iter().filter(|c| c.is_ascii_digit()).count();
    let letters = b.len() - digits;
    if b.len() >= 32 && digits >= 4 && letters >= 4 {
        return true;
    }
    digits >= 2 && letters >= 2 && changes_like_random(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys in the formats of the registry's providers and of others users hold.
    pub(crate) const KEYS: &[&str] = &[
        "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4zAB7cD0eF3gH6iJ9k",
        "sk-3f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c",
        "sk-ant-api03-Xy9Zk2Lm4Np6Qr8St0Uv2Wx4Yz6Ab8Cd0Ef2Gh4Ij6Kl8Mn-AbCdEfAA",
        "AIzaSyD3x8K9mLpQ2rS5tU7vW0xY1zA4bC6dE8f",
        "gsk_8kJ2mN4pQ6rS8tU0vW2xY4zA6bC8dE0fG2hI4jK6lM8nO",
        "xai-Ab1Cd2Ef3Gh4Ij5Kl6Mn7Op8Qr9St0Uv1Wx2Yz3",
        "sk-or-v1-0123456789abcdef0123456789abcdef0123456789abcdef",
        "fw_3ZkLm9Np2Qr5St8Uv1Wx4Yz7Ab0",
        "3f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "Zx8Kq2Lm4Np6Qr8St0Uv2Wx4Yz6Ab8Cd",
        "kwt_AbCdEf0123456789",
        "kwg_9f8e7d6c5b4a3210",
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
        "-----BEGIN PRIVATE KEY-----",
        "my key is sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z ok",
        "https://host/v1?key=AIzaSyD3x8K9mLpQ2rS5tU7vW0xY1zA4bC6dE8f",
        "https://user:Zx8Kq2Lm4Np6Qr8St0Uv2Wx4Yz6Ab8Cd@proxy.example.com",
    ];

    /// Names, ids and public values people really use.
    const NAMES: &[&str] = &[
        "acme",
        "production",
        "OPENAI_API_KEY",
        "AZURE_OPENAI_ENDPOINT_WESTEUROPE_2024",
        "anthropic.production.key",
        "0193a0b4-7c1e-7d2a-9f00-0123456789ab",
        "claude-3-5-sonnet-20241022",
        "gpt-4o-mini-2024-07-18",
        "meta-llama/Llama-3.3-70B-Instruct-Turbo",
        "accounts/fireworks/models/llama-v3p1-70b-instruct",
        "https://api.openai.com/v1",
        "https://globex-eu.openai.azure.com",
        "MyCompanyProductionKey2024",
        "ThisIsAVeryLongCamelCaseName",
        "sk-learn-experiments",
        "skeleton-key",
        "AIRFLOW_URL",
        "AI platform team",
        "fwd-proxy",
        "gpt4turbo2024preview",
        "Team budget for Q3 2025, owner: ana@example.com",
        "sa:svc@proj.iam.gserviceaccount.com",
        "2024-10-21",
        "us-central1",
        "kwt_",
    ];

    #[test]
    fn keys_look_like_secrets_and_names_do_not() {
        for k in KEYS {
            assert!(looks_like_secret(k), "missed: {k}");
        }
        for n in NAMES {
            assert!(!looks_like_secret(n), "refused: {n}");
        }
    }

    #[test]
    fn names_that_would_display_as_something_else_are_refused() {
        for spoof in [
            "\u{202E}lave",
            "acme\u{2066}",
            "a\u{200F}b",
            "a\u{061C}b",
            "a\u{200B}b",
            "a\u{2028}b",
        ] {
            assert!(
                check_public("organization name", spoof).is_err(),
                "{spoof:?}"
            );
            assert!(crate::CredentialName::new(spoof).is_err(), "{spoof:?}");
        }
        assert!(check_public("organization name", "Acme Inc. (EU)").is_ok());
        assert!(crate::CredentialName::new("prod – eu").is_ok());
    }

    #[test]
    fn shown_and_scrub_never_quote_a_key() {
        for k in KEYS {
            assert!(!shown(k).contains(k), "{k}");
            for message in [
                format!("unknown field `{k}`, expected one of `name`"),
                format!("invalid organization id \"{k}\": use ..."),
                format!("fields.{k}: invalid type: integer `1`"),
                format!("unknown variant '{k}'"),
            ] {
                let s = scrub(&message);
                for word in k.split(is_coarse_separator).filter(|w| w.len() >= 16) {
                    assert!(!s.contains(word), "{message} -> {s}");
                }
            }
        }
        assert_eq!(shown("acme"), "\"acme\"");
        assert_eq!(
            scrub("unknown field `nmae`, expected one of `name`, `provider`"),
            "unknown field `nmae`, expected one of `name`, `provider`"
        );
    }
}
