//! `autolabel keys list|disable|enable|reset|rotate`: what each configured key has used
//! against its quotas, and the decisions people make about keys, stored in the state by
//! fingerprint (running runs read them within seconds). Keys are only ever shown masked.

use std::time::SystemTime;

use serde::Serialize;

use crate::cli::{KeysArgs, KeysCommand};
use crate::config::Config;
use crate::error::{Error, Outcome, Result};
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
                (h.status.to_string(), h.until, Some(h.reason.clone()))
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
            status_reason: reason,
            quotas,
            health,
            last_used: act.and_then(|a| a.last_used).map(timeutil::rfc3339),
            last_error: act.and_then(|a| a.last_error.clone()),
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

pub fn run(cmd: KeysCommand) -> Result<Outcome> {
    let args: &KeysArgs = match &cmd {
        KeysCommand::List(a) | KeysCommand::Rotate(a) => a,
        KeysCommand::Disable(a) => &a.keys,
        KeysCommand::Enable(a) => &a.keys,
        KeysCommand::Reset(a) => &a.keys,
    };
    let mut pool = Config::resolve_pool(
        &args.common(),
        (None, None),
        crate::limits::Limits::default(),
        None,
    )?;
    let state = State::open_at(&pool[0].state)?;
    for cfg in &mut pool {
        cfg.load_learned(&state)?;
    }
    let json = args.json;
    match &cmd {
        KeysCommand::List(_) => {
            let mut views = Vec::new();
            for cfg in &pool {
                views.extend(key_views(cfg, &state)?);
            }
            if json {
                crate::outln!(
                    "{}",
                    serde_json::to_string_pretty(&views).unwrap_or_default()
                );
            } else {
                print_list(&views, pool.len() > 1);
            }
            return Ok(Outcome::Complete);
        }
        KeysCommand::Rotate(_) => {
            for cfg in &pool {
                state.request_rotation(cfg.provider.as_str())?;
            }
            let what = "rotation requested: each running run moves off the key it uses now for a minute, within a few seconds";
            if json {
                crate::outln!("{}", serde_json::json!({ "done": what }));
            } else {
                crate::outln!("{what}");
            }
            return Ok(Outcome::Complete);
        }
        _ => {}
    }
    // A key is named by its index among one provider's keys.
    let [cfg] = pool.as_slice() else {
        return Err(Error::Usage(
            "keys disable, enable and reset take one --provider: key numbers count within a provider".into(),
        ));
    };
    let provider = cfg.provider.as_str();
    let pick = |index: usize| -> Result<&ApiKey> {
        cfg.keys.iter().find(|k| k.index == index).ok_or_else(|| {
            Error::Usage(format!(
                "no key {index}: the env file has {}, numbered from 1 (see autolabel keys list)",
                crate::ui::count(cfg.keys.len() as u64, &format!("{provider} key"))
            ))
        })
    };
    let done = |what: String, key: Option<&ApiKey>| {
        if json {
            let v = serde_json::json!({
                "done": what,
                "key": key.map(|k| k.masked.clone()),
                "index": key.map(|k| k.index),
            });
            crate::outln!("{v}");
        } else {
            crate::outln!("{what}");
        }
    };
    match &cmd {
        KeysCommand::List(_) | KeysCommand::Rotate(_) => {}
        KeysCommand::Disable(a) => {
            let key = pick(a.index)?;
            let reason: String = a
                .reason
                .chars()
                .filter(|c| !c.is_control())
                .take(200)
                .collect();
            let until = a.for_.map(|d| SystemTime::now() + d);
            state.set_key_disabled(
                provider,
                &key.fingerprint,
                &key.masked,
                true,
                until,
                &reason,
            )?;
            let label = key.label();
            state.log_rotation(
                provider,
                &label,
                "-",
                &format!("manual: disabled ({reason})"),
                "manual",
            )?;
            let how_long = until
                .map(|u| format!("until {}", timeutil::rfc3339(u)))
                .unwrap_or_else(|| "until `autolabel keys enable`".into());
            done(format!("key {label} disabled {how_long}; running runs stop using it within a few seconds"), Some(key));
        }
        KeysCommand::Enable(a) => {
            let key = pick(a.index)?;
            state.set_key_disabled(provider, &key.fingerprint, &key.masked, false, None, "")?;
            state.log_rotation(provider, "-", &key.label(), "manual: enabled", "manual")?;
            done(format!("key {} enabled", key.label()), Some(key));
        }
        KeysCommand::Reset(a) => {
            let key = pick(a.index)?;
            let what = a.what();
            let now = SystemTime::now();
            // Today's and this month's use as the ledger holds it, before any earlier reset.
            let [day, month] = period_use(cfg, &state, key, None, now)?;
            let day_start = Day::of(now);
            let month_start = Day::of(timeutil::month_start(now, cfg.quota_reset_day));
            state.reset_key(
                provider,
                &key.fingerprint,
                &key.masked,
                what,
                (&day_start, day),
                (&month_start, month),
            )?;
            state.log_rotation(
                provider,
                &key.label(),
                &key.label(),
                &format!("manual: reset ({what})"),
                "manual",
            )?;
            done(
                format!(
                    "key {}: {what} counts and the limits they hit forgotten",
                    key.label()
                ),
                Some(key),
            );
        }
    }
    Ok(Outcome::Complete)
}

fn print_list(views: &[KeyView], pool: bool) {
    let mut shown: Option<&str> = None;
    for v in views {
        // With several providers, each one's keys under its name.
        if pool && shown != Some(v.provider) {
            crate::outln!("{}:", v.provider);
            shown = Some(v.provider);
        }
        let name = v
            .name
            .as_deref()
            .map(|n| format!(" {n}"))
            .unwrap_or_default();
        let until = v
            .status_until
            .as_deref()
            .map(|u| format!(" until {u}"))
            .unwrap_or_default();
        let reason = v
            .status_reason
            .as_deref()
            .filter(|r| !r.is_empty())
            .map(|r| format!(" ({r})"))
            .unwrap_or_default();
        crate::outln!(
            "#{}{name} {} · priority {} · {}{until}{reason} · {} · last used {} · last error {}",
            v.index,
            v.key,
            v.priority,
            v.status,
            v.health,
            v.last_used.as_deref().unwrap_or("never"),
            v.last_error.as_deref().unwrap_or("none"),
        );
        for q in &v.quotas {
            let used = match (q.used, q.used_pct) {
                (Some(u), Some(p)) => format!("{u} of {} ({p:.1} %)", q.limit),
                _ => format!("? of {} (counted by running runs)", q.limit),
            };
            let whose = if q.source == "key" {
                ""
            } else {
                " [provider limit]"
            };
            crate::outln!("    {}: {used}{whose}", q.quota.replace('_', " "));
        }
    }
}
