//! The label cache (a label per scope and text) and the output rows that got the
//! fallback label.

use std::collections::BTreeSet;

use sha2::{Digest, Sha256};

use crate::error::Result;

/// What a cached label holds for: the provider, the model, and the prompt and labels it
/// was asked with. A label is reused only under the same scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheScope {
    provider: String,
    model: String,
    /// The prompter's identity: its labels and template.
    prompt: String,
}

impl CacheScope {
    pub fn new(provider: &str, model: &str, prompt: &str) -> CacheScope {
        CacheScope {
            provider: provider.to_string(),
            model: model.to_string(),
            prompt: prompt.to_string(),
        }
    }

    /// The cache key of `text` under this scope: SHA-256 over `provider|model|prompt`, a
    /// zero byte and the text, as the label cache has always been keyed (so that every
    /// state file's and Redis server's cache keeps serving).
    pub fn key(&self, text: &str) -> Vec<u8> {
        let mut h = Sha256::new();
        h.update(format!("{}|{}|{}", self.provider, self.model, self.prompt).as_bytes());
        h.update([0u8]);
        h.update(text.as_bytes());
        h.finalize().to_vec()
    }
}

/// Labels already given, and the rows of each output that got the fallback label.
pub trait LabelCache {
    fn cache_get(&self, key: &[u8]) -> Result<Option<String>>;

    fn cache_put_many(&self, entries: &[(Vec<u8>, String)]) -> Result<()>;

    /// How long cache entries written from now on are worth keeping: a store whose
    /// entries expire by themselves (Redis) uses it, the others drop old entries in
    /// `prune`. 0 keeps them for good.
    fn keep_cache_days(&self, _keep_days: u32) {}

    fn add_fallback_rows(&self, output: &str, rows: &[u64]) -> Result<()>;

    fn fallback_rows(&self, output: &str) -> Result<BTreeSet<u64>>;

    /// Replaces the fallback rows recorded for `output` with `rows`.
    fn set_fallback_rows(&self, output: &str, rows: &BTreeSet<u64>) -> Result<()>;
}

#[cfg(test)]
mod tests {
    use super::CacheScope;

    #[test]
    fn a_scope_keys_texts_as_the_cache_always_did() {
        let scope = CacheScope::new("groq", "llama-3.1-8b", "positif,negatif|");
        assert_eq!(
            crate::hex::hex(&scope.key("un texte")),
            "f5bdf75e81c1c6bbbd0adf77140d658bd7574d1ec2c868441e9fd69775ff84f2"
        );
        let other = CacheScope::new("groq", "llama-3.3-70b", "positif,negatif|");
        assert_ne!(scope.key("un texte"), other.key("un texte"));
    }
}
