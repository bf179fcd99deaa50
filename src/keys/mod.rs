//! API keys: where they come from (`envfile`), how they are shown (`mask`), and how
//! their health is tracked during a run (`ring`).

pub mod envfile;
pub mod mask;
pub mod ring;

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
}

impl ApiKey {
    pub fn new(index: usize, secret: String) -> ApiKey {
        ApiKey {
            index,
            fingerprint: mask::fingerprint(&secret),
            masked: mask::mask(&secret),
            secret,
        }
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
