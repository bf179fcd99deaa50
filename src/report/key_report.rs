//! One key as every view shows it — `keys list`, `usage` (text and JSON), the dashboard's
//! `/api/keys` and `/api/usage`, the page and the daily report files — built in one place
//! from the state, so that no two of them can disagree about a key.
//!
//! What the provider did to a key (`condition`: cooling, exhausted, invalid) and what a
//! person decided (`manual`: disabled) are separate: a disabled key that is also invalid
//! shows both, and its health stays what its condition and quotas make it.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::Serialize;

use super::counts::{DayUsage, Remaining, Usage};
use super::key_limits::{self, LimitView};
use super::span::Span;
use crate::config::Config;
use crate::error::Result;
// Stored text from outside (an older version kept a provider's echo of a key in a
// reason): masked here, so every view shows it as the dashboard does.
use crate::keys::mask::scrub;
use crate::keys::settings::{Period, QuotaDim};
use crate::keys::ApiKey;
use crate::limits::Dim;
use crate::store::{
    KeyActivity, KeyOverride, KeyStatus, State, StoredHealth, UsageDelta, UsageRow,
};
use crate::timeutil::{self, Day};

/// What the provider's answers left on a key, whatever a person decided about it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Condition {
    /// available, cooling, exhausted or invalid.
    pub state: &'static str,
    pub until: Option<String>,
    pub reason: Option<String>,
}

/// What a person decided about a key (`keys disable`, the dashboard).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Manual {
    pub disabled: bool,
    pub until: Option<String>,
    pub reason: Option<String>,
}

/// One key: who it is, its standing, its quotas and limits, and its usage.
#[derive(Debug, Clone, Serialize)]
pub struct KeyReport {
    pub provider: &'static str,
    /// `None` for a key the state knows but the env file no longer has.
    pub index: Option<usize>,
    pub name: Option<String>,
    /// Masked: `gsk_…a1b2`.
    pub key: String,
    pub fingerprint: String,
    pub priority: i64,
    /// In one word: `disabled` when a person disabled it, else its condition.
    pub status: String,
    pub status_until: Option<String>,
    pub status_reason: Option<String>,
    pub condition: Condition,
    pub manual: Manual,
    /// healthy (< 80 % of the tightest quota used), warning (80–95 %), critical (> 95 %,
    /// or exhausted or invalid) — whether or not the key is disabled.
    pub health: &'static str,
    /// The share used of the tightest quota whose use is known.
    pub quota_used_pct: Option<f64>,
    /// When the first day or month quota runs out at today's rate, or `not today`.
    pub runs_out: super::forecast::Forecast,
    pub remaining: Remaining,
    /// The key's own quotas, then its organization's daily limits it has none of its own for.
    pub quotas: Vec<QuotaView>,
    /// Its organization's limits, each with where it came from.
    pub limits: Vec<LimitView>,
    pub last_used: Option<String>,
    pub last_error: Option<String>,
    pub models: Vec<String>,
    pub today: Usage,
    /// Over the period.
    pub total: Usage,
    /// Each UTC day of the period the key was used on, oldest first.
    pub days: Vec<DayUsage>,
}

impl KeyReport {
    /// Taken out of service by a person now.
    pub fn disabled(&self) -> bool {
        self.manual.disabled
    }
}

/// One quota of a key and what is used of it.
#[derive(Debug, Clone, Serialize)]
pub struct QuotaView {
    /// e.g. `daily_tokens`.
    pub quota: &'static str,
    /// `key` (the key's own, from the env file) or `provider` (its organization's daily
    /// limit in force).
    pub source: &'static str,
    /// For a provider limit: `stated`, `configured`, `default` and so on (see
    /// `LimitView::origin`); `key` for the key's own.
    pub origin: &'static str,
    /// Where the limit came from, in words.
    pub from: String,
    /// Unknown for per-minute quotas (only a running run counts its last minute).
    pub used: Option<u64>,
    pub limit: u64,
    pub used_pct: Option<f64>,
}

/// `healthy`, `warning` or `critical` for the share used of the tightest quota.
pub fn health_class(used_pct: f64) -> &'static str {
    if used_pct > 95.0 {
        "critical"
    } else if used_pct >= 80.0 {
        "warning"
    } else {
        "healthy"
    }
}

/// Requests and tokens of key `fingerprint` in the day and month containing `now`, less
/// what a `keys reset` forgot.
pub fn period_use(
    cfg: &Config,
    state: &State,
    fingerprint: &str,
    overrides: Option<&KeyOverride>,
    now: SystemTime,
) -> Result<[(u64, u64); 2]> {
    let provider = cfg.provider.as_str();
    let day = Day::of(now);
    let month = Day::of(timeutil::month_start(now, cfg.quota_reset_day));
    let mut out = [(0, 0); 2];
    for (slot, start) in out.iter_mut().zip([&day, &month]) {
        let used = state.key_used_since(provider, fingerprint, start)?;
        *slot = match overrides {
            Some(o) if start == &day => o.day_base.apply(start, used),
            Some(o) => o.month_base.apply(start, used),
            None => used,
        };
    }
    Ok(out)
}

/// A quota; `limit_of` names where a provider limit came from.
pub fn quota_view(
    quota: &'static str,
    source: &'static str,
    used: Option<u64>,
    limit: u64,
    limit_of: Option<&LimitView>,
) -> QuotaView {
    QuotaView {
        quota,
        source,
        origin: limit_of.map_or("key", |l| l.origin),
        from: limit_of.map_or_else(|| "the env file".to_string(), |l| l.from.clone()),
        used,
        limit,
        used_pct: used.map(|u| (u as f64 * 1000.0 / limit as f64).round() / 10.0),
    }
}

/// What a report reads from the state once per provider.
struct Known {
    overrides: Vec<KeyOverride>,
    health: Vec<StoredHealth>,
    activity: Vec<KeyActivity>,
    /// The period's rows.
    rows: Vec<UsageRow>,
    today_rows: Vec<UsageRow>,
    now: SystemTime,
}

/// Every key of `cfg` (configured ones first, in order, then those used in the period
/// that only the state knows) over the UTC days of `span`; `today` is today's whatever
/// the period.
pub fn key_reports(
    cfg: &Config,
    state: &State,
    span: &Span,
    now: SystemTime,
) -> Result<Vec<KeyReport>> {
    let provider = cfg.provider.as_str();
    let today = Day::of(now);
    let mut rows = state.usage_since(provider, &span.from.clone().min(today.clone()))?;
    // Today's rows count for `today` even when the period ends earlier.
    let today_rows = rows.iter().filter(|r| r.day == today).cloned().collect();
    rows.retain(|r| span.holds(r.day.as_str()));
    let known = Known {
        overrides: state.key_overrides(provider)?,
        health: state.load_health(provider)?,
        activity: state.key_activity(provider)?,
        rows,
        today_rows,
        now,
    };
    let mut out = Vec::new();
    for (pos, key) in cfg.keys.iter().enumerate() {
        out.push(one(
            cfg,
            state,
            &known,
            Some((pos, key)),
            &key.fingerprint,
            &key.masked,
        )?);
    }
    let mut others: Vec<(&str, &str)> = Vec::new();
    for r in &known.rows {
        let configured = cfg.keys.iter().any(|k| k.fingerprint == r.fingerprint);
        if !configured && !others.iter().any(|(fp, _)| *fp == r.fingerprint) {
            others.push((&r.fingerprint, &r.masked));
        }
    }
    for (fp, masked) in others {
        out.push(one(cfg, state, &known, None, fp, masked)?);
    }
    Ok(out)
}

fn one(
    cfg: &Config,
    state: &State,
    known: &Known,
    configured: Option<(usize, &ApiKey)>,
    fp: &str,
    masked: &str,
) -> Result<KeyReport> {
    let key = configured.map(|(_, k)| k);
    let o = known.overrides.iter().find(|o| o.fingerprint == fp);
    let stored = known.health.iter().find(|h| h.fingerprint == fp);
    let (manual, condition) = standing(o, stored, known.now);
    let used = period_use(cfg, state, fp, o, known.now)?;
    let limits =
        key_limits::limit_views(key_limits::key_limit_set(cfg, configured.map(|(p, _)| p)));
    let quotas = quotas(key, &limits, used);
    let tightest = quotas.iter().filter_map(|q| q.used_pct).reduce(f64::max);
    let health = if matches!(condition.state, "exhausted" | "invalid") {
        "critical"
    } else {
        health_class(tightest.unwrap_or(0.0))
    };
    let (status, status_until, status_reason) = if manual.disabled {
        (
            "disabled".to_string(),
            manual.until.clone(),
            manual.reason.clone(),
        )
    } else {
        (
            condition.state.to_string(),
            condition.until.clone(),
            condition.reason.clone(),
        )
    };
    let act = known.activity.iter().find(|a| a.fingerprint == fp);
    let usage = KeyUse::of(&known.rows, fp);
    let today = KeyUse::of(&known.today_rows, fp).total;
    Ok(KeyReport {
        provider: cfg.provider.as_str(),
        index: key.map(|k| k.index),
        name: key.and_then(|k| k.settings.name.clone()),
        key: masked.to_string(),
        fingerprint: fp.to_string(),
        priority: key.map_or(0, |k| k.settings.priority),
        status,
        status_until,
        status_reason,
        condition,
        manual,
        health,
        quota_used_pct: tightest,
        runs_out: forecast(&quotas, used[0], known.now, cfg.quota_reset_day),
        remaining: remaining(&quotas),
        quotas,
        limits,
        last_used: act.and_then(|a| a.last_used).map(timeutil::rfc3339),
        last_error: act.and_then(|a| a.last_error.as_deref().map(scrub)),
        models: usage.models,
        today: Usage::from(&today),
        total: Usage::from(&usage.total),
        days: usage
            .per_day
            .iter()
            .map(|(date, d)| DayUsage {
                usage: Usage::from(d),
                date: date.clone(),
            })
            .collect(),
    })
}

/// The key's forecast over its quotas (see `forecast`, which knows no `QuotaView`), its
/// monthly ones up to the month's end on `reset_day`.
fn forecast(
    quotas: &[QuotaView],
    today: (u64, u64),
    now: SystemTime,
    reset_day: u32,
) -> super::forecast::Forecast {
    let q: Vec<_> = quotas.iter().map(|q| (q.quota, q.used, q.limit)).collect();
    let month_end = timeutil::next_month_start(now, reset_day);
    super::forecast::forecast(&q, today, now, month_end)
}

/// The manual state and the condition of a key at `now`.
fn standing(
    o: Option<&KeyOverride>,
    stored: Option<&StoredHealth>,
    now: SystemTime,
) -> (Manual, Condition) {
    let manual = match o.filter(|o| o.is_disabled(now)) {
        Some(o) => Manual {
            disabled: true,
            until: o.disabled_until.map(timeutil::rfc3339),
            reason: Some(scrub(&o.reason)),
        },
        None => Manual {
            disabled: false,
            until: None,
            reason: None,
        },
    };
    let condition = match stored {
        Some(h) if h.status == KeyStatus::Invalid || h.until.is_some_and(|u| u > now) => {
            Condition {
                state: h.status.as_str(),
                until: h.until.map(timeutil::rfc3339),
                reason: Some(scrub(&h.reason.to_string())),
            }
        }
        _ => Condition {
            state: KeyStatus::Available.as_str(),
            until: None,
            reason: None,
        },
    };
    (manual, condition)
}

/// The key's own quotas, then its organization's daily limits it has no quota of its
/// own for; `used` is today's and this month's (requests, tokens) after any reset.
fn quotas(key: Option<&ApiKey>, limits: &[LimitView], used: [(u64, u64); 2]) -> Vec<QuotaView> {
    let [day, month] = used;
    let mut out = Vec::new();
    let own = key.map(|k| &k.settings.quotas);
    if let Some(own) = own {
        for (dim, limit) in own.iter() {
            let used = match (dim.period(), dim.counts_tokens()) {
                (Period::Minute, _) => None,
                (Period::Day, false) => Some(day.0),
                (Period::Day, true) => Some(day.1),
                (Period::Month, false) => Some(month.0),
                (Period::Month, true) => Some(month.1),
            };
            out.push(quota_view(dim.name(), "key", used, limit, None));
        }
    }
    for (dim, limit_dim, used) in [
        (QuotaDim::DailyRequests, Dim::Rpd, day.0),
        (QuotaDim::DailyTokens, Dim::Tpd, day.1),
    ] {
        let Some(l) = key_limits::find(limits, limit_dim) else {
            continue;
        };
        if let (Some(limit), None) = (l.value, own.and_then(|q| q.get(dim))) {
            out.push(quota_view(
                dim.name(),
                "provider",
                Some(used),
                limit,
                Some(l),
            ));
        }
    }
    out
}

/// What is left today of the tightest daily request and token quotas.
fn remaining(quotas: &[QuotaView]) -> Remaining {
    let left = |name: &str| {
        quotas
            .iter()
            .filter(|q| q.quota == name)
            .filter_map(|q| Some(q.limit.saturating_sub(q.used?)))
            .min()
    };
    Remaining {
        requests_today: left(QuotaDim::DailyRequests.name()),
        tokens_today: left(QuotaDim::DailyTokens.name()),
    }
}

/// One key's ledger rows over some days.
struct KeyUse {
    per_day: BTreeMap<String, UsageDelta>,
    total: UsageDelta,
    models: Vec<String>,
}

impl KeyUse {
    fn of(rows: &[UsageRow], fp: &str) -> KeyUse {
        let mut per_day: BTreeMap<String, UsageDelta> = BTreeMap::new();
        let mut models: Vec<String> = Vec::new();
        let mut total = UsageDelta::default();
        for r in rows.iter().filter(|r| r.fingerprint == fp) {
            per_day.entry(r.day.to_string()).or_default().add(&r.usage);
            total.add(&r.usage);
            if !models.contains(&r.model) {
                models.push(r.model.clone());
            }
        }
        KeyUse {
            per_day,
            total,
            models,
        }
    }
}
