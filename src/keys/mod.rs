//! API keys: where they come from (`envfile`), how they are shown (`mask`), and how
//! their health is tracked during a run (`ring`, `health`).

pub mod envfile;
pub mod health;
pub mod mask;
pub mod quota;
pub mod ring;
pub mod settings;
pub mod suspect;

use std::fmt;

/// One configured key. Its `Debug` and `Display` show only the masked form.
#[derive(Clone)]
pub struct ApiKey {
    /// 1-based position in the configured order, shown next to the masked key.
    pub index: usize,
    pub secret: String,
    /// First 8 hex of SHA-256: what the state store knows the key by.
    pub fingerprint: String,
    pub masked: String,
    /// Name, priority and quotas of the key's own from the env file.
    pub settings: settings::KeySettings,
    /// The provider's name when the run pools several providers (shown before the index).
    pub pool_name: Option<&'static str>,
}

impl ApiKey {
    pub fn new(index: usize, secret: String) -> ApiKey {
        // From now on no text from outside shows it (see `mask::scrub`).
        mask::remember(&secret);
        ApiKey {
            index,
            fingerprint: mask::fingerprint(&secret),
            masked: mask::mask(&secret),
            secret,
            settings: settings::KeySettings::default(),
            pool_name: None,
        }
    }

    pub fn with_settings(mut self, settings: settings::KeySettings) -> ApiKey {
        self.settings = settings;
        self
    }

    /// Marks the key as one provider's among several (`--provider groq,gemini`).
    pub fn in_pool(mut self, provider: Option<&'static str>) -> ApiKey {
        self.pool_name = provider;
        self
    }

    /// `#2 gsk_…a1b2`, or `gemini #2 AIza…a1b2` in a pool of providers.
    pub fn label(&self) -> String {
        match self.pool_name {
            Some(p) => format!("{p} #{} {}", self.index, self.masked),
            None => format!("#{} {}", self.index, self.masked),
        }
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKey({})", self.label())
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label())
    }
}
