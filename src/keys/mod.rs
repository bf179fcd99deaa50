//! API keys: where they come from (`envfile`), how they are shown (`mask`), and how
//! their health is tracked during a run (`ring`).

pub mod envfile;
pub mod mask;
pub mod quota;
pub mod ring;
pub mod settings;

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
}

impl ApiKey {
    pub fn new(index: usize, secret: String) -> ApiKey {
        ApiKey {
            index,
            fingerprint: mask::fingerprint(&secret),
            masked: mask::mask(&secret),
            secret,
            settings: settings::KeySettings::default(),
        }
    }

    pub fn with_settings(mut self, settings: settings::KeySettings) -> ApiKey {
        self.settings = settings;
        self
    }

    /// `#2 gsk_…a1b2`
    pub fn label(&self) -> String {
        format!("#{} {}", self.index, self.masked)
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
