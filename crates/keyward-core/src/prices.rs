//! What tokens cost: a price per model, read from LiteLLM's
//! `model_prices_and_context_window.json` format (the ecosystem's price list; Keyward ships a
//! copy of the common models in that format, `data/prices.json`), and the cost of one answer's
//! tokens in integer micro-dollars.
//!
//! Prices are kept as micro-dollars per million tokens (which is also pico-dollars per token),
//! so that every sum is an integer; one answer's cost is rounded to the nearest micro-dollar.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::CoreError;

/// Tokens one answer reported, as its provider counts them. `input` is every input token,
/// those read from or written to a prompt cache included (OpenAI's and Gemini's prompt count
/// already holds its cached part; Anthropic's `input_tokens` does not, and is added to).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tokens {
    /// Every input token.
    pub input: u64,
    /// Output tokens (reasoning tokens included).
    pub output: u64,
    /// Of `input`, those read from the provider's prompt cache.
    pub cache_read: u64,
    /// Of `input`, those written to the prompt cache (Anthropic's cache creation).
    pub cache_write: u64,
}

impl Tokens {
    /// Adds `other` to these.
    pub fn add(&mut self, other: &Tokens) {
        self.input = self.input.saturating_add(other.input);
        self.output = self.output.saturating_add(other.output);
        self.cache_read = self.cache_read.saturating_add(other.cache_read);
        self.cache_write = self.cache_write.saturating_add(other.cache_write);
    }
}

/// A higher rate once a request's input passes a threshold (Gemini 2.5 Pro above 200k tokens).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tier {
    /// Input tokens above which this rate applies to the whole request.
    pub above: u64,
    /// Micro-dollars per million input tokens.
    pub input: u64,
    /// Micro-dollars per million output tokens.
    pub output: u64,
}

/// One model's prices, in micro-dollars per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Price {
    /// Input tokens.
    pub input: u64,
    /// Output tokens.
    pub output: u64,
    /// Input tokens read from the prompt cache (the input price when not given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_read: Option<u64>,
    /// Input tokens written to the prompt cache (the input price when not given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write: Option<u64>,
    /// A higher rate for long requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<Tier>,
}

impl Price {
    /// What `tokens` cost, in micro-dollars (rounded to the nearest).
    pub fn cost_micros(&self, tokens: &Tokens) -> u64 {
        let (input, output) = match self.tier {
            Some(t) if tokens.input > t.above => (t.input, t.output),
            _ => (self.input, self.output),
        };
        let cached = tokens.cache_read.min(tokens.input);
        let written = tokens.cache_write.min(tokens.input - cached);
        let plain = tokens.input - cached - written;
        let pico = u128::from(plain) * u128::from(input)
            + u128::from(cached) * u128::from(self.cache_read.unwrap_or(input))
            + u128::from(written) * u128::from(self.cache_write.unwrap_or(input))
            + u128::from(tokens.output) * u128::from(output);
        u64::try_from((pico + 500_000) / 1_000_000).unwrap_or(u64::MAX)
    }
}

/// One model's price, as imported or shipped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ModelPrice {
    /// Keyward's provider id (`openai`, `anthropic`, `gemini`, ...).
    pub provider: String,
    /// The model's name as the provider's answers report it.
    pub model: String,
    /// Micro-dollars per million input tokens.
    pub input: u64,
    /// Micro-dollars per million output tokens.
    pub output: u64,
    /// Micro-dollars per million input tokens read from the prompt cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_read: Option<u64>,
    /// Micro-dollars per million input tokens written to the prompt cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write: Option<u64>,
    /// Input tokens above which `tier_input`/`tier_output` apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier_above: Option<u64>,
    /// Micro-dollars per million input tokens above the tier's threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier_input: Option<u64>,
    /// Micro-dollars per million output tokens above the tier's threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier_output: Option<u64>,
}

impl ModelPrice {
    /// The price itself.
    pub fn price(&self) -> Price {
        Price {
            input: self.input,
            output: self.output,
            cache_read: self.cache_read,
            cache_write: self.cache_write,
            tier: match (self.tier_above, self.tier_input, self.tier_output) {
                (Some(above), Some(input), Some(output)) => Some(Tier {
                    above,
                    input,
                    output,
                }),
                _ => None,
            },
        }
    }
}

/// LiteLLM's provider names, as Keyward's provider ids.
const LITELLM_PROVIDERS: &[(&str, &str)] = &[
    ("openai", "openai"),
    ("text-completion-openai", "openai"),
    ("anthropic", "anthropic"),
    ("gemini", "gemini"),
    ("azure", "azure_openai"),
    ("azure_text", "azure_openai"),
    ("azure_ai", "azure_ai_foundry"),
    ("vertex_ai", "vertex"),
    ("vertex_ai-language-models", "vertex"),
    ("vertex_ai-anthropic_models", "vertex"),
    ("vertex_ai-embedding-models", "vertex"),
    ("mistral", "mistral"),
    ("groq", "groq"),
    ("deepseek", "deepseek"),
    ("xai", "xai"),
    ("openrouter", "openrouter"),
    ("together_ai", "together"),
    ("cohere", "cohere"),
    ("cohere_chat", "cohere"),
    ("bedrock", "bedrock"),
    ("bedrock_converse", "bedrock"),
    ("perplexity", "perplexity"),
    ("cerebras", "cerebras"),
    ("sambanova", "sambanova"),
    ("nvidia_nim", "nvidia_nim"),
    ("fireworks_ai", "fireworks"),
    ("fireworks_ai-embedding-models", "fireworks"),
    ("dashscope", "dashscope"),
    ("voyage", "voyage"),
    ("huggingface", "huggingface"),
    ("replicate", "replicate"),
    ("ai21", "ai21"),
    ("cloudflare", "cloudflare_workers_ai"),
    ("ollama", "ollama"),
    ("novita", "novita"),
    ("minimax", "minimax"),
];

/// What reading a price file gave.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parsed {
    /// The prices read.
    pub prices: Vec<ModelPrice>,
    /// Entries left out: no per-token price (images, audio by the second), or a provider
    /// Keyward does not know.
    pub skipped: usize,
}

/// USD per token (LiteLLM's unit) as micro-dollars per million tokens.
fn per_mtok(usd_per_token: f64) -> Option<u64> {
    let v = (usd_per_token * 1e12).round();
    // Negative, NaN or absurd (over $1M per token) prices are not prices.
    (v.is_finite() && (0.0..=1e18).contains(&v)).then_some(v as u64)
}

/// Reads LiteLLM's `model_prices_and_context_window.json` (or a file of the same shape):
/// every entry with per-token input and output prices and a provider Keyward knows. The
/// model's name is the entry's key less a leading `provider/`.
pub fn parse_litellm(text: &str) -> Result<Parsed, CoreError> {
    let doc: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(text).map_err(|e| {
            CoreError::InvalidInput(format!(
                "not a price file in LiteLLM's format (a JSON object of models): {e}"
            ))
        })?;
    let mut out = Parsed::default();
    for (key, entry) in &doc {
        if key == "sample_spec" {
            continue;
        }
        let number = |field: &str| entry.get(field).and_then(serde_json::Value::as_f64);
        let litellm = entry
            .get("litellm_provider")
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default();
        let provider = LITELLM_PROVIDERS
            .iter()
            .find(|(name, _)| *name == litellm)
            .map(|(_, id)| *id);
        let (Some(provider), Some(input)) = (provider, number("input_cost_per_token")) else {
            out.skipped += 1;
            continue;
        };
        // An embedding model has no output price.
        let output = number("output_cost_per_token").unwrap_or(0.0);
        let (Some(input), Some(output)) = (per_mtok(input), per_mtok(output)) else {
            out.skipped += 1;
            continue;
        };
        let model = match key.split_once('/') {
            Some((prefix, rest))
                if prefix == litellm
                    || LITELLM_PROVIDERS
                        .iter()
                        .any(|(name, id)| *name == prefix && *id == provider) =>
            {
                rest
            }
            _ => key.as_str(),
        };
        if model.is_empty() || model.len() > 200 || model.chars().any(char::is_control) {
            out.skipped += 1;
            continue;
        }
        // One tier (LiteLLM names it `..._above_200k_tokens`, `..._above_128k_tokens`).
        let tier = entry.as_object().and_then(|o| {
            o.keys().find_map(|k| {
                let n = k
                    .strip_prefix("input_cost_per_token_above_")?
                    .strip_suffix("k_tokens")?
                    .parse::<u64>()
                    .ok()?;
                let input = per_mtok(number(k)?)?;
                let output = number(&format!("output_cost_per_token_above_{n}k_tokens"))
                    .and_then(per_mtok)
                    .unwrap_or(output);
                Some((n * 1000, input, output))
            })
        });
        out.prices.push(ModelPrice {
            provider: provider.to_owned(),
            model: model.to_owned(),
            input,
            output,
            cache_read: number("cache_read_input_token_cost").and_then(per_mtok),
            cache_write: number("cache_creation_input_token_cost").and_then(per_mtok),
            tier_above: tier.map(|t| t.0),
            tier_input: tier.map(|t| t.1),
            tier_output: tier.map(|t| t.2),
        });
    }
    Ok(out)
}

/// The prices Keyward ships (`data/prices.json`).
pub fn shipped() -> Vec<ModelPrice> {
    parse_litellm(include_str!("../data/prices.json"))
        .map(|p| p.prices)
        .unwrap_or_default()
}

/// A price table: the shipped prices with the operator's on top; by provider, then model
/// (looked up by `&str`, so a lookup allocates nothing).
#[derive(Debug, Clone, Default)]
pub struct Prices {
    by_model: HashMap<String, HashMap<String, Price>>,
}

/// Where a provider's models may be priced under another provider's name: Azure OpenAI and
/// OpenAI-compatible servers run OpenAI's models, Vertex runs Gemini's and Anthropic's.
fn also_priced_as(provider: &str) -> &'static [&'static str] {
    match provider {
        "azure_openai" | "openai_compatible" | "azure_ai_foundry" => &["openai"],
        "anthropic_compatible" => &["anthropic"],
        "vertex" => &["gemini", "anthropic"],
        _ => &[],
    }
}

impl Prices {
    /// A table of `prices`, later entries replacing earlier ones of the same model.
    pub fn new(prices: impl IntoIterator<Item = ModelPrice>) -> Self {
        let mut by_model: HashMap<String, HashMap<String, Price>> = HashMap::new();
        for p in prices {
            let price = p.price();
            by_model
                .entry(p.provider)
                .or_default()
                .insert(p.model, price);
        }
        Self { by_model }
    }

    /// How many models are priced.
    pub fn len(&self) -> usize {
        self.by_model.values().map(HashMap::len).sum()
    }

    /// Whether no model is priced.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The price of `model` at `provider`, and the name it is priced under: the name as given,
    /// then without a `models/` prefix or a date suffix (`-2024-08-06`, `-20250514`,
    /// `@20241022`); at the provider, then where its models are also priced.
    pub fn lookup(&self, provider: &str, model: &str) -> Option<(&str, Price)> {
        let trimmed = model.strip_prefix("models/").unwrap_or(model);
        let undated = without_date(trimmed);
        for p in std::iter::once(provider).chain(also_priced_as(provider).iter().copied()) {
            let Some(models) = self.by_model.get(p) else {
                continue;
            };
            for name in [model, trimmed, undated] {
                if let Some((m, price)) = models.get_key_value(name) {
                    return Some((m.as_str(), *price));
                }
            }
        }
        None
    }
}

/// `model` without a trailing release date: `-2024-08-06`, `-20250514`, `@20241022`,
/// `-001`-style version numbers are kept (they name different models).
fn without_date(model: &str) -> &str {
    let bytes = model.as_bytes();
    let digits = |s: &[u8]| s.iter().all(u8::is_ascii_digit);
    let n = bytes.len();
    if n > 11 && matches!(bytes[n - 11], b'-' | b'@') && {
        let d = &bytes[n - 10..];
        digits(&d[..4]) && d[4] == b'-' && digits(&d[5..7]) && d[7] == b'-' && digits(&d[8..])
    } {
        return &model[..n - 11];
    }
    if n > 9 && matches!(bytes[n - 9], b'-' | b'@') && digits(&bytes[n - 8..]) {
        return &model[..n - 9];
    }
    model
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn litellm_entries_become_prices_in_micro_dollars_per_million_tokens() {
        let parsed = parse_litellm(
            r#"{
              "sample_spec": {"input_cost_per_token": 0},
              "gpt-4o": {"litellm_provider": "openai", "input_cost_per_token": 2.5e-06,
                         "output_cost_per_token": 1e-05, "cache_read_input_token_cost": 1.25e-06},
              "gemini/gemini-2.5-pro": {"litellm_provider": "gemini", "input_cost_per_token": 1.25e-06,
                         "output_cost_per_token": 1e-05,
                         "input_cost_per_token_above_200k_tokens": 2.5e-06,
                         "output_cost_per_token_above_200k_tokens": 1.5e-05},
              "openrouter/anthropic/claude-3.5-sonnet": {"litellm_provider": "openrouter",
                         "input_cost_per_token": 3e-06, "output_cost_per_token": 1.5e-05},
              "dall-e-3": {"litellm_provider": "openai", "mode": "image_generation", "output_cost_per_image": 0.04},
              "someone/else": {"litellm_provider": "nobody", "input_cost_per_token": 1e-06},
              "text-embedding-3-small": {"litellm_provider": "openai", "input_cost_per_token": 2e-08}
            }"#,
        )
        .unwrap();
        assert_eq!(parsed.skipped, 2);
        let by_name: HashMap<_, _> = parsed
            .prices
            .iter()
            .map(|p| (p.model.as_str(), p))
            .collect();
        let gpt = by_name["gpt-4o"];
        assert_eq!(
            (gpt.input, gpt.output, gpt.cache_read),
            (2_500_000, 10_000_000, Some(1_250_000))
        );
        let pro = by_name["gemini-2.5-pro"];
        assert_eq!(pro.provider, "gemini");
        assert_eq!(
            pro.price().tier,
            Some(Tier {
                above: 200_000,
                input: 2_500_000,
                output: 15_000_000
            })
        );
        assert_eq!(
            by_name["anthropic/claude-3.5-sonnet"].provider,
            "openrouter"
        );
        assert_eq!(by_name["text-embedding-3-small"].output, 0);
    }

    #[test]
    fn a_file_that_is_no_price_list_is_refused() {
        assert!(parse_litellm("[1, 2]").is_err());
        assert!(parse_litellm("not json").is_err());
    }

    #[test]
    fn cost_prices_each_kind_of_token_and_rounds_to_the_micro_dollar() {
        let price = Price {
            input: 3_000_000,
            output: 15_000_000,
            cache_read: Some(300_000),
            cache_write: Some(3_750_000),
            tier: None,
        };
        // 1000 plain input, 2000 read from cache, 500 written, 400 out:
        // 3000 + 600 + 1875 + 6000 micro-dollars.
        let tokens = Tokens {
            input: 3500,
            output: 400,
            cache_read: 2000,
            cache_write: 500,
        };
        assert_eq!(price.cost_micros(&tokens), 11_475);
        // Half a micro-dollar rounds up, less rounds down.
        let tiny = Price {
            input: 500_000,
            output: 0,
            cache_read: None,
            cache_write: None,
            tier: None,
        };
        assert_eq!(
            tiny.cost_micros(&Tokens {
                input: 1,
                ..Tokens::default()
            }),
            1
        );
        let tinier = Price {
            input: 499_999,
            ..tiny
        };
        assert_eq!(
            tinier.cost_micros(&Tokens {
                input: 1,
                ..Tokens::default()
            }),
            0
        );
    }

    #[test]
    fn a_long_request_is_priced_at_its_tier() {
        let price = Price {
            input: 1_250_000,
            output: 10_000_000,
            cache_read: None,
            cache_write: None,
            tier: Some(Tier {
                above: 200_000,
                input: 2_500_000,
                output: 15_000_000,
            }),
        };
        let short = Tokens {
            input: 200_000,
            output: 1000,
            ..Tokens::default()
        };
        let long = Tokens {
            input: 200_001,
            output: 1000,
            ..Tokens::default()
        };
        assert_eq!(price.cost_micros(&short), 250_000 + 10_000);
        assert_eq!(price.cost_micros(&long), 500_003 + 15_000);
    }

    #[test]
    fn lookup_finds_dated_and_prefixed_names_and_related_providers() {
        let prices = Prices::new(shipped());
        assert!(prices.len() > 40);
        let (name, p) = prices.lookup("openai", "gpt-4o-mini-2024-07-18").unwrap();
        assert_eq!((name, p.input), ("gpt-4o-mini", 150_000));
        assert_eq!(
            prices
                .lookup("anthropic", "claude-sonnet-4-20250514")
                .unwrap()
                .0,
            "claude-sonnet-4"
        );
        assert_eq!(
            prices
                .lookup("gemini", "models/gemini-2.5-flash")
                .unwrap()
                .0,
            "gemini-2.5-flash"
        );
        assert_eq!(
            prices
                .lookup("azure_openai", "gpt-4o-2024-08-06")
                .unwrap()
                .0,
            "gpt-4o"
        );
        assert_eq!(
            prices
                .lookup("vertex", "claude-3-5-haiku@20241022")
                .unwrap()
                .0,
            "claude-3-5-haiku"
        );
        assert!(prices.lookup("openai", "gemini-2.5-flash").is_none());
        assert!(prices.lookup("openai", "my-fine-tune").is_none());
        // A version number is not a date.
        assert_eq!(without_date("gemini-embedding-001"), "gemini-embedding-001");
    }

    #[test]
    fn the_operators_prices_replace_the_shipped_ones() {
        let mine = ModelPrice {
            provider: "openai".into(),
            model: "gpt-4o".into(),
            input: 1,
            output: 2,
            cache_read: None,
            cache_write: None,
            tier_above: None,
            tier_input: None,
            tier_output: None,
        };
        let prices = Prices::new(shipped().into_iter().chain([mine]));
        assert_eq!(prices.lookup("openai", "gpt-4o").unwrap().1.input, 1);
    }
}

/// Micro-dollars as dollars, to the micro-dollar: `$12.345678`.
pub fn usd(micros: u64) -> String {
    format!("${}.{:06}", micros / 1_000_000, micros % 1_000_000)
}

/// One CSV record (RFC 4180): fields quoted when they hold a comma, quote or line break, and a
/// field that a spreadsheet would run as a formula (`=`, `+`, `-`, `@` first) kept as text.
pub fn csv_record<S: AsRef<str>>(fields: &[S]) -> String {
    let mut out = String::new();
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let f = f.as_ref();
        let f = if f.starts_with(['=', '+', '-', '@', '\t', '\r']) {
            format!("'{f}")
        } else {
            f.to_owned()
        };
        if f.contains([',', '"', '\n', '\r']) {
            out.push('"');
            out.push_str(&f.replace('"', "\"\""));
            out.push('"');
        } else {
            out.push_str(&f);
        }
    }
    out.push_str("\r\n");
    out
}

#[cfg(test)]
mod format_tests {
    use super::*;

    #[test]
    fn dollars_and_csv() {
        assert_eq!(usd(0), "$0.000000");
        assert_eq!(usd(5_000_123), "$5.000123");
        assert_eq!(
            csv_record(&["a,b", "say \"hi\"", "=1+1", "plain"]),
            "\"a,b\",\"say \"\"hi\"\"\",'=1+1,plain\r\n"
        );
    }
}
