//! The usage report as one typed model, built from the state: per key, requests,
//! successes, errors by class, rows, tokens and cost today, over the period and per day;
//! status and health; the limits in force; recent rotations. Text, JSON (`usage --json`,
//! a stable format documented in the README) and HTML are all rendered from it.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::provider::classify::ErrorClass;
use crate::provider::defaults::Limits;
use crate::store::{KeyStatus, State, UsageDelta};
use crate::timeutil::{self, Day};

/// One provider's usage report (`usage --json`).
#[derive(Debug, Clone, Serialize)]
pub struct UsageReport {
    pub provider: String,
    pub generated_at: String,
    /// First and last UTC day of the period.
    pub from: String,
    pub to: String,
    pub days: u32,
    pub limits: LimitsView,
    pub keys: Vec<KeyUsage>,
    pub rotations: Vec<RotationView>,
    /// The period's runs that voted or sent rows to review, with what their votes came to.
    pub vote_runs: Vec<crate::store::RunInfo>,
}

/// The limits in force; `None` (JSON null) = no limit.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct LimitsView {
    pub rpm: Option<u64>,
    pub rph: Option<u64>,
    pub rpd: Option<u64>,
    pub tpm: Option<u64>,
    pub tpd: Option<u64>,
}

impl From<Limits> for LimitsView {
    fn from(l: Limits) -> LimitsView {
        LimitsView {
            rpm: l.rpm,
            rph: l.rph,
            rpd: l.rpd,
            tpm: l.tpm,
            tpd: l.tpd,
        }
    }
}

impl From<LimitsView> for Limits {
    fn from(l: LimitsView) -> Limits {
        Limits {
            rpm: l.rpm,
            rph: l.rph,
            rpd: l.rpd,
            tpm: l.tpm,
            tpd: l.tpd,
        }
    }
}

/// One key's usage; `index` is `None` for a key the state knows but the env file no longer has.
#[derive(Debug, Clone, Serialize)]
pub struct KeyUsage {
    pub index: Option<usize>,
    /// Masked.
    pub key: String,
    pub fingerprint: String,
    /// available, cooling, exhausted, invalid or disabled.
    pub status: String,
    pub status_until: Option<String>,
    pub health: &'static str,
    pub quota_used_pct: Option<f64>,
    pub remaining: Remaining,
    pub models: Vec<String>,
    pub today: Usage,
    pub total: Usage,
    pub days: Vec<DayUsage>,
}

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

#[derive(Debug, Clone, Serialize)]
pub struct RotationView {
    pub time: String,
    pub from: String,
    pub to: String,
    pub reason: String,
    /// auto or manual.
    pub mode: String,
}

impl From<crate::store::Rotation> for RotationView {
    fn from(r: crate::store::Rotation) -> RotationView {
        RotationView {
            time: timeutil::rfc3339(r.ts),
            from: r.from,
            to: r.to,
            // Stored text from outside, masked as everywhere (see `keys::mask`).
            reason: crate::keys::mask::scrub(&r.reason),
            mode: r.mode,
        }
    }
}

/// healthy < 80 % · warning 80–95 % · critical > 95 % of the tightest daily limit.
fn health(pct: Option<f64>, status: &str) -> &'static str {
    if status == "invalid" || status == "exhausted" {
        return "critical";
    }
    match pct {
        Some(p) if p > 95.0 => "critical",
        Some(p) if p >= 80.0 => "warning",
        _ => "healthy",
    }
}

/// The usage report of one provider over the last `days` UTC days (today included).
pub fn usage_report(cfg: &Config, state: &State, days: u32) -> Result<UsageReport> {
    let provider = cfg.provider.as_str();
    let now = SystemTime::now();
    let today = timeutil::utc_date(now);
    let since = Day::days_ago(now, days.saturating_sub(1));
    let rows = state.usage_since(provider, &since)?;
    let health_rows = state.load_health(provider)?;
    let overrides = state.key_overrides(provider)?;
    // Keys: the configured ones first (in order), then any the state knows of.
    let mut keys: Vec<(Option<usize>, String, String)> = cfg
        .keys
        .iter()
        .map(|k| (Some(k.index), k.fingerprint.clone(), k.masked.clone()))
        .collect();
    for r in &rows {
        if !keys.iter().any(|(_, fp, _)| *fp == r.fingerprint) {
            keys.push((None, r.fingerprint.clone(), r.masked.clone()));
        }
    }
    let limits: Limits = cfg.limits_in_force();
    let mut out_keys = Vec::new();
    for (index, fp, masked) in keys {
        let mut per_day: BTreeMap<String, UsageDelta> = BTreeMap::new();
        let mut models: Vec<String> = Vec::new();
        for r in rows.iter().filter(|r| r.fingerprint == fp) {
            per_day.entry(r.day.to_string()).or_default().add(&r.usage);
            if !models.contains(&r.model) {
                models.push(r.model.clone());
            }
        }
        let mut total = UsageDelta::default();
        per_day.values().for_each(|d| total.add(d));
        let today_usage = per_day.get(&today).cloned().unwrap_or_default();
        let stored = health_rows.iter().find(|h| h.fingerprint == fp);
        let disabled = overrides
            .iter()
            .find(|o| o.fingerprint == fp)
            .filter(|o| o.is_disabled(now));
        let (status, until) = match (disabled, stored) {
            (Some(o), _) => ("disabled".to_string(), o.disabled_until),
            (_, Some(h)) if h.status == KeyStatus::Invalid => ("invalid".to_string(), None),
            (_, Some(h)) if h.until.is_some_and(|u| u > now) => (h.status.to_string(), h.until),
            _ => ("available".to_string(), None),
        };
        let tokens_today = today_usage.tokens_in + today_usage.tokens_out;
        let pct = [
            limits
                .rpd
                .map(|l| today_usage.requests as f64 * 100.0 / l as f64),
            limits.tpd.map(|l| tokens_today as f64 * 100.0 / l as f64),
        ]
        .into_iter()
        .flatten()
        .reduce(f64::max);
        out_keys.push(KeyUsage {
            index,
            key: masked,
            fingerprint: fp,
            health: health(pct, &status),
            status,
            status_until: until.map(timeutil::rfc3339),
            quota_used_pct: pct.map(|p| (p * 10.0).round() / 10.0),
            remaining: Remaining {
                requests_today: limits.rpd.map(|l| l.saturating_sub(today_usage.requests)),
                tokens_today: limits.tpd.map(|l| l.saturating_sub(tokens_today)),
            },
            models,
            today: Usage::from(&today_usage),
            total: Usage::from(&total),
            days: per_day
                .iter()
                .map(|(day, d)| DayUsage {
                    usage: Usage::from(d),
                    date: day.clone(),
                })
                .collect(),
        });
    }
    let since_time = now - Duration::from_secs(86_400 * days as u64);
    let rotations = state
        .rotations(provider, since_time, 20)?
        .into_iter()
        .map(RotationView::from)
        .collect();
    Ok(UsageReport {
        provider: provider.to_string(),
        generated_at: timeutil::rfc3339(now),
        from: since.to_string(),
        to: today,
        days,
        limits: limits.into(),
        keys: out_keys,
        rotations,
        vote_runs: crate::votes::runs::voting_runs(state, provider, &since.to_string())?,
    })
}

/// `usage --json` of a pool: one report per provider.
#[derive(Debug, Serialize)]
pub struct PoolReport<'a> {
    pub providers: &'a [UsageReport],
}

/// `--report-dir DIR`: today's usage as DIR/<provider>_<YYYY-MM-DD>.json.
pub fn write_daily_report(dir: &Path, cfg: &Config, state: &State) -> Result<()> {
    let report = usage_report(cfg, state, 1)?;
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::io(format!("--report-dir {}", dir.display()), e))?;
    let path = dir.join(format!(
        "{}_{}.json",
        cfg.provider.as_str(),
        timeutil::utc_date(SystemTime::now())
    ));
    let text = serde_json::to_string_pretty(&report).expect("json");
    std::fs::write(&path, text + "\n").map_err(|e| Error::io(format!("{}", path.display()), e))
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
