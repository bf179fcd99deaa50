//! The counts every usage view shows, over some span: requests, successes, errors by
//! class, tokens, cost, rows labeled (the `U` of the `usage --json` format).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::provider::classify::ErrorClass;
use crate::store::UsageDelta;

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Remaining {
    pub requests_today: Option<u64>,
    pub tokens_today: Option<u64>,
}

/// Counts over some span (the `U` of the JSON format).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Usage {
    pub requests: u64,
    pub successes: u64,
    /// Every class, zero or not, by name.
    pub errors: BTreeMap<&'static str, u64>,
    pub tokens_in: u64,
    pub tokens_out: u64,
    pub cost_usd: f64,
    /// Texts the model labeled.
    pub rows: u64,
    /// Tokens (in and out) per labeled row; `None` before any row.
    pub tokens_per_row: Option<f64>,
    /// Replies cut at `max_tokens` (asked again with a larger cap when unusable).
    pub cut_replies: u64,
}

impl From<&UsageDelta> for Usage {
    fn from(d: &UsageDelta) -> Usage {
        Usage {
            requests: d.requests,
            successes: d.successes,
            errors: ErrorClass::ALL
                .iter()
                .zip(d.errors)
                .map(|(c, n)| (c.as_str(), n))
                .collect(),
            tokens_in: d.tokens_in,
            tokens_out: d.tokens_out,
            cost_usd: (d.cost * 1e6).round() / 1e6,
            rows: d.rows,
            tokens_per_row: (d.rows > 0).then(|| {
                ((d.tokens_in + d.tokens_out) as f64 / d.rows as f64 * 10.0).round() / 10.0
            }),
            cut_replies: d.cut,
        }
    }
}

impl Usage {
    pub fn error_total(&self) -> u64 {
        self.errors.values().sum()
    }

    pub fn tokens(&self) -> u64 {
        self.tokens_in + self.tokens_out
    }

    /// Successes per request, in percent; `None` before any request.
    pub fn success_pct(&self) -> Option<f64> {
        (self.requests > 0).then(|| self.successes as f64 * 100.0 / self.requests as f64)
    }
}

/// One UTC day of a key's usage.
#[derive(Debug, Clone, Serialize)]
pub struct DayUsage {
    #[serde(flatten)]
    pub usage: Usage,
    pub date: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_serializes_in_the_documented_form() {
        let mut d = UsageDelta {
            requests: 4,
            successes: 3,
            tokens_in: 90,
            tokens_out: 10,
            cost: 0.000_001_234_9,
            rows: 3,
            ..UsageDelta::default()
        };
        d.error(ErrorClass::RateLimit);
        let day = DayUsage {
            usage: Usage::from(&d),
            date: "2026-11-30".into(),
        };
        let v = serde_json::to_value(&day).unwrap();
        assert_eq!(v["date"], "2026-11-30");
        assert_eq!(v["requests"], 4);
        assert_eq!(v["errors"]["rate_limit"], 1);
        assert_eq!(v["errors"]["rejected"], 0);
        assert_eq!(v["errors"].as_object().unwrap().len(), 8);
        assert_eq!(v["cost_usd"], 0.000_001);
        assert_eq!(v["tokens_per_row"], 33.3);
        let none = serde_json::to_value(Usage::from(&UsageDelta::default())).unwrap();
        assert!(none["tokens_per_row"].is_null());
    }
}
