//! The usage ledger: what each key spent, per model and UTC day.

use std::time::SystemTime;

use crate::error::Result;
use crate::provider::classify::ErrorClass;
use crate::timeutil::Day;

/// Counts for one key, model and day, added to the ledger in one go.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UsageDelta {
    pub requests: u64,
    pub successes: u64,
    pub errors: [u64; 8],
    pub tokens_in: u64,
    pub tokens_out: u64,
    pub cost: f64,
    /// Texts the model labeled: with the tokens, what a day of quota bought.
    pub rows: u64,
    /// Replies cut at `max_tokens` (`finish_reason: "length"`), among the successes.
    pub cut: u64,
}

impl UsageDelta {
    pub fn error(&mut self, class: ErrorClass) {
        let i = ErrorClass::ALL.iter().position(|c| *c == class).unwrap();
        self.errors[i] += 1;
    }

    pub fn add(&mut self, other: &UsageDelta) {
        self.requests += other.requests;
        self.successes += other.successes;
        for (a, b) in self.errors.iter_mut().zip(other.errors) {
            *a += b;
        }
        self.tokens_in += other.tokens_in;
        self.tokens_out += other.tokens_out;
        self.cost += other.cost;
        self.rows += other.rows;
        self.cut += other.cut;
    }

    pub fn error_total(&self) -> u64 {
        self.errors.iter().sum()
    }
}

/// One ledger row as read back.
#[derive(Debug, Clone)]
pub struct UsageRow {
    pub day: Day,
    pub fingerprint: String,
    pub masked: String,
    pub model: String,
    pub usage: UsageDelta,
}

/// One ledger entry as `add_usage` takes it: counts of one key and model on one UTC day.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageEntry {
    pub fingerprint: String,
    pub masked: String,
    pub model: String,
    pub day: Day,
    pub usage: UsageDelta,
}

/// Counts per key, model and day, shared by every run.
pub trait Ledger {
    /// Adds several deltas to the ledger at once (all or nothing).
    fn add_usage(&self, provider: &str, rows: &[UsageEntry]) -> Result<()>;

    /// Ledger rows for `provider` from `since_day` (inclusive), ordered by day,
    /// fingerprint and model.
    fn usage_since(&self, provider: &str, since_day: &Day) -> Result<Vec<UsageRow>>;

    /// Requests and tokens already used today by these keys (one organization).
    fn used_today(&self, provider: &str, fingerprints: &[String]) -> Result<(u64, u64)> {
        let today = Day::of(SystemTime::now());
        let mut total = (0, 0);
        for row in self.usage_since(provider, &today)? {
            if fingerprints.contains(&row.fingerprint) {
                total.0 += row.usage.requests;
                total.1 += row.usage.tokens_in + row.usage.tokens_out;
            }
        }
        Ok(total)
    }

    /// Requests and tokens one key used from `since_day` (inclusive) on, all models.
    fn key_used_since(
        &self,
        provider: &str,
        fingerprint: &str,
        since_day: &Day,
    ) -> Result<(u64, u64)> {
        let mut total = (0u64, 0u64);
        for row in self.usage_since(provider, since_day)? {
            if row.fingerprint == fingerprint {
                total.0 = total.0.saturating_add(row.usage.requests);
                total.1 = total
                    .1
                    .saturating_add(row.usage.tokens_in.saturating_add(row.usage.tokens_out));
            }
        }
        Ok(total)
    }
}
