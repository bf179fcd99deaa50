//! Each configured key as people see it: its quotas and what is used of them, its
//! status and its activity (`autolabel keys list` and the dashboard's keys table).

use std::time::SystemTime;

use serde::Serialize;

use crate::config::Config;
use crate::error::Result;
use crate::keys::mask::scrub;
use crate::keys::settings::{Period, QuotaDim};
use crate::keys::ApiKey;
use crate::store::{KeyOverride, KeyStatus, State};
use crate::timeutil::{self, Day};

/// One quota of a key and what is used of it.
#[derive(Debug, Clone, Serialize)]
pub struct QuotaView {
    /// e.g. `daily_tokens`.
    pub quota: &'static str,
    /// `key` (the key's own, from the env file) or `provider` (the daily limit in force).
    pub source: &'static str,
    /// Unknown for per-minute quotas (only a running run counts its last minute).
    pub used: Option<u64>,
    pub limit: u64,
    pub used_pct: Option<f64>,
}

/// One configured key as `keys list` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct KeyView {
    pub provider: &'static str,
    pub index: usize,
    pub name: Option<String>,
    /// Masked: `gsk_…a1b2`.
    pub key: String,
    pub fingerprint: String,
    pub priority: i64,
    /// available, cooling, exhausted, invalid or disabled.
    pub status: String,
    pub status_until: Option<String>,
    pub status_reason: Option<String>,
    pub quotas: Vec<QuotaView>,
    /// healthy (< 80 % of the tightest quota used), warning (80–95 %), critical (> 95 %,
    /// or exhausted or invalid).
    pub health: &'static str,
    pub last_used: Option<String>,
    pub last_error: Option<String>,
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

/// Requests and tokens of `key` in the day and month containing `now`, less what a
/// `keys reset` forgot.
pub fn period_use(
    cfg: &Config,
    state: &State,
    key: &ApiKey,
    overrides: Option<&KeyOverride>,
    now: SystemTime,
) -> Result<[(u64, u64); 2]> {
    let provider = cfg.provider.as_str();
    let day = Day::of(now);
    let month = Day::of(timeutil::month_start(now, cfg.quota_reset_day));
    let mut out = [(0, 0); 2];
    for (slot, start) in out.iter_mut().zip([&day, &month]) {
        let used = state.key_used_since(provider, &key.fingerprint, start)?;
        *slot = match overrides {
            Some(o) if start == &day => o.day_base.apply(start, used),
            Some(o) => o.month_base.apply(start, used),
            None => used,
        };
    }
    Ok(out)
}

/// Every configured key with its quotas, status and activity.
pub fn key_views(cfg: &Config, state: &State) -> Result<Vec<KeyView>> {
    let provider = cfg.provider.as_str();
    let now = SystemTime::now();
    let overrides = state.key_overrides(provider)?;
    let health = state.load_health(provider)?;
    let activity = state.key_activity(provider)?;
    let limits = cfg.limits_in_force();
    let mut views = Vec::new();
    for key in &cfg.keys {
        let o = overrides.iter().find(|o| o.fingerprint == key.fingerprint);
        let [day, month] = period_use(cfg, state, key, o, now)?;
        let mut quotas = Vec::new();
        for (dim, limit) in key.settings.quotas.iter() {
            let used = match (dim.period(), dim.counts_tokens()) {
                (Period::Minute, _) => None,
                (Period::Day, false) => Some(day.0),
                (Period::Day, true) => Some(day.1),
                (Period::Month, false) => Some(month.0),
                (Period::Month, true) => Some(month.1),
            };
            quotas.push(quota_view(dim.name(), "key", used, limit));
        }
        for (dim, limit, used) in [
            (QuotaDim::DailyRequests, limits.rpd, day.0),
            (QuotaDim::DailyTokens, limits.tpd, day.1),
        ] {
            if let (Some(limit), None) = (limit, key.settings.quotas.get(dim)) {
                quotas.push(quota_view(dim.name(), "provider", Some(used), limit));
            }
        }
        let stored = health.iter().find(|h| h.fingerprint == key.fingerprint);
        let (status, until, reason) = match (o, stored) {
            (Some(o), _) if o.is_disabled(now) => (
                "disabled".to_string(),
                o.disabled_until,
                Some(o.reason.clone()),
            ),
            (_, Some(h)) if h.status == KeyStatus::Invalid || h.until.is_some_and(|u| u > now) => {
                (h.status.to_string(), h.until, Some(h.reason.to_string()))
            }
            _ => ("available".to_string(), None, None),
        };
        let tightest = quotas
            .iter()
            .filter_map(|q| q.used_pct)
            .fold(0.0f64, f64::max);
        let health = if matches!(status.as_str(), "exhausted" | "invalid") {
            "critical"
        } else {
            health_class(tightest)
        };
        let act = activity.iter().find(|a| a.fingerprint == key.fingerprint);
        views.push(KeyView {
            provider,
            index: key.index,
            name: key.settings.name.clone(),
            key: key.masked.clone(),
            fingerprint: key.fingerprint.clone(),
            priority: key.settings.priority,
            status,
            status_until: until.map(timeutil::rfc3339),
            // Stored text from outside (an older version kept a provider's echo of a key
            // in it): masked here, so `keys list` (text and JSON) shows it as the dashboard does.
            status_reason: reason.map(|r| scrub(&r)),
            quotas,
            health,
            last_used: act.and_then(|a| a.last_used).map(timeutil::rfc3339),
            last_error: act.and_then(|a| a.last_error.as_deref().map(scrub)),
        });
    }
    Ok(views)
}

fn quota_view(
    quota: &'static str,
    source: &'static str,
    used: Option<u64>,
    limit: u64,
) -> QuotaView {
    QuotaView {
        quota,
        source,
        used,
        limit,
        used_pct: used.map(|u| (u as f64 * 1000.0 / limit as f64).round() / 10.0),
    }
}
