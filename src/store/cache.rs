//! The label cache (a label per scope and text) and the output rows that got the
//! fallback label.

use std::collections::BTreeSet;

use crate::error::Result;

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
