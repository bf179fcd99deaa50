//! What each supported provider is by default: base URL, model, free-tier limits, and
//! whether it accepts OpenAI's JSON mode. Figures from PROVIDERS.md; flags and the env
//! file override every one of them.

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

/// Per-key (per-organization) limits. `None` means "no limit known".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    pub rpm: Option<u64>,
    pub rph: Option<u64>,
    pub rpd: Option<u64>,
    pub tpm: Option<u64>,
    pub tpd: Option<u64>,
}

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
