//! What each supported provider is by default: base URL, model, free-tier limits,
//! whether it accepts OpenAI's JSON mode, what its rate-limit headers mean and when its
//! day starts. The free-tier figures are the published ones at the time of writing;
//! flags, the env file and the limits a provider states in its replies override them.

use clap::ValueEnum;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProviderName {
    Groq,
    Gemini,
    Openai,
    Xai,
    Openrouter,
    Ollama,
}

impl ProviderName {
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderName::Groq => "groq",
            ProviderName::Gemini => "gemini",
            ProviderName::Openai => "openai",
            ProviderName::Xai => "xai",
            ProviderName::Openrouter => "openrouter",
            ProviderName::Ollama => "ollama",
        }
    }

    pub fn needs_key(self) -> bool {
        self != ProviderName::Ollama
    }
}

use crate::limits::Dim;
pub use crate::limits::Limits;
use crate::timeutil::DayStart;

pub struct ProviderDefaults {
    pub base_url: &'static str,
    pub model: &'static str,
    /// Accepts `response_format: {"type": "json_object"}`.
    pub json_mode: bool,
}

pub fn defaults(p: ProviderName) -> ProviderDefaults {
    let (base_url, model, json_mode) = match p {
        ProviderName::Groq => (
            "https://api.groq.com/openai/v1",
            "llama-3.1-8b-instant",
            true,
        ),
        ProviderName::Gemini => (
            "https://generativelanguage.googleapis.com/v1beta/openai",
            "gemini-2.0-flash",
            true,
        ),
        ProviderName::Openai => ("https://api.openai.com/v1", "gpt-4o-mini", true),
        ProviderName::Xai => ("https://api.x.ai/v1", "grok-3-mini", true),
        ProviderName::Openrouter => (
            "https://openrouter.ai/api/v1",
            "meta-llama/llama-3.3-70b-instruct:free",
            false,
        ),
        ProviderName::Ollama => ("http://localhost:11434/v1", "llama3.2", true),
    };
    ProviderDefaults {
        base_url,
        model,
        json_mode,
    }
}

/// Free-tier limits per key/organization for a provider and model.
pub fn free_tier_limits(p: ProviderName, model: &str) -> Limits {
    match p {
        ProviderName::Groq if model.contains("70b") => Limits {
            rpm: Some(30),
            rpd: Some(1_000),
            tpm: Some(12_000),
            tpd: Some(100_000),
            rph: None,
        },
        ProviderName::Groq => Limits {
            rpm: Some(30),
            rpd: Some(14_400),
            tpm: Some(6_000),
            tpd: Some(500_000),
            rph: None,
        },
        ProviderName::Gemini => Limits {
            rpm: Some(15),
            rpd: Some(1_500),
            tpm: Some(1_000_000),
            ..Limits::default()
        },
        ProviderName::Openai => Limits {
            rpm: Some(500),
            rpd: Some(10_000),
            tpm: Some(200_000),
            ..Limits::default()
        },
        ProviderName::Xai => Limits {
            rpm: Some(60),
            ..Limits::default()
        },
        ProviderName::Openrouter => Limits {
            rpm: Some(20),
            rpd: Some(50),
            ..Limits::default()
        },
        ProviderName::Ollama => Limits::default(),
    }
}

/// What the `x-ratelimit-limit-*` headers of a provider's replies count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderMeaning {
    /// The window of `x-ratelimit-limit-requests`.
    pub requests: Option<Dim>,
    /// The window of `x-ratelimit-limit-tokens`.
    pub tokens: Option<Dim>,
}

impl HeaderMeaning {
    /// The limits a reply's headers state, each with its window and the header that said
    /// so (a zero or missing value states nothing).
    pub fn stated(
        &self,
        h: &crate::provider::classify::RateHeaders,
    ) -> impl Iterator<Item = (Dim, u64, &'static str)> {
        [
            (
                self.requests,
                h.limit_requests,
                "x-ratelimit-limit-requests",
            ),
            (self.tokens, h.limit_tokens, "x-ratelimit-limit-tokens"),
        ]
        .into_iter()
        .filter_map(|(dim, value, header)| Some((dim?, value.filter(|v| *v > 0)?, header)))
    }
}

/// Groq counts `x-ratelimit-limit-requests` per day and tokens per minute; OpenAI (and xAI,
/// which copies its API) count both per minute. Gemini's and OpenRouter's compatible
/// endpoints do not send these headers in this form, so nothing is read from them.
pub fn header_meaning(p: ProviderName) -> HeaderMeaning {
    match p {
        ProviderName::Groq => HeaderMeaning {
            requests: Some(Dim::Rpd),
            tokens: Some(Dim::Tpm),
        },
        ProviderName::Openai | ProviderName::Xai => HeaderMeaning {
            requests: Some(Dim::Rpm),
            tokens: Some(Dim::Tpm),
        },
        ProviderName::Gemini | ProviderName::Openrouter | ProviderName::Ollama => HeaderMeaning {
            requests: None,
            tokens: None,
        },
    }
}

/// When a provider's daily quota starts again: Gemini's at midnight Pacific time, the
/// others' at midnight UTC.
pub fn day_start(p: ProviderName) -> DayStart {
    match p {
        ProviderName::Gemini => DayStart::PacificMidnight,
        _ => DayStart::UtcMidnight,
    }
}
