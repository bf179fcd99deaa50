//! What the dashboard's JSON API answers, built from the state (and the env file's keys):
//! typed, so the live page, `usage --html` snapshots and scripts see one shape.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::config::Config;
use crate::error::Result;
use crate::report::keys::{key_views, KeyView};
use crate::report::usage::{usage_report, PoolReport, RotationView, UsageReport};
use crate::store::{RunInfo, State};
use crate::timeutil::{self, Day};

/// Keys by status.
#[derive(Debug, Clone, Default, Serialize)]
pub struct KeyCounts {
    pub active: u64,
    pub cooling: u64,
    pub exhausted: u64,
    pub invalid: u64,
    pub disabled: u64,
    pub total: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct DayPoint {
    pub date: String,
    pub requests: u64,
    pub successes: u64,
    pub success_rate: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ModelCount {
    /// `provider/model`.
    pub model: String,
    pub requests: u64,
}

/// `/api/summary`: the cards and the two charts.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub generated_at: String,
    pub days: u32,
    pub keys: KeyCounts,
    pub requests: u64,
    pub successes: u64,
    pub success_rate: Option<f64>,
    pub tokens: u64,
    pub cost_usd: f64,
    /// Every day of the period, oldest first (days without use count 0).
    pub per_day: Vec<DayPoint>,
    /// Most requests first.
    pub per_model: Vec<ModelCount>,
}

/// `/api/rotations`: the latest rotations of every provider, and how many were automatic.
#[derive(Debug, Clone, Serialize)]
pub struct Rotations {
    pub auto: u64,
    pub manual: u64,
    pub rotations: Vec<RotationView>,
}

/// The days the summary covers.
pub const SUMMARY_DAYS: u32 = 7;

fn rate(successes: u64, requests: u64) -> Option<f64> {
    (requests > 0).then(|| (successes as f64 * 1000.0 / requests as f64).round() / 10.0)
}

pub fn summary(pool: &[Config], state: &State) -> Result<Summary> {
    let now = SystemTime::now();
    let mut counts = KeyCounts::default();
    for cfg in pool {
        for k in key_views(cfg, state)? {
            counts.total += 1;
            match k.status.as_str() {
                "cooling" => counts.cooling += 1,
                "exhausted" => counts.exhausted += 1,
                "invalid" => counts.invalid += 1,
                "disabled" => counts.disabled += 1,
                _ => counts.active += 1,
            }
        }
    }
    let since = Day::days_ago(now, SUMMARY_DAYS - 1);
    let mut per_day: BTreeMap<String, (u64, u64)> = (0..SUMMARY_DAYS)
        .rev()
        .map(|d| (timeutil::utc_date_days_ago(now, d), (0, 0)))
        .collect();
    let mut per_model: BTreeMap<String, u64> = BTreeMap::new();
    let (mut requests, mut successes, mut tokens, mut cost) = (0, 0, 0, 0.0);
    for cfg in pool {
        let provider = cfg.provider.as_str();
        for row in state.usage_since(provider, &since)? {
            let u = &row.usage;
            requests += u.requests;
            successes += u.successes;
            tokens += u.tokens_in + u.tokens_out;
            cost += u.cost;
            let day = per_day.entry(row.day.to_string()).or_default();
            day.0 += u.requests;
            day.1 += u.successes;
            *per_model
                .entry(format!("{provider}/{}", row.model))
                .or_default() += u.requests;
        }
    }
    let mut per_model: Vec<ModelCount> = per_model
        .into_iter()
        .map(|(model, requests)| ModelCount { model, requests })
        .collect();
    per_model.sort_by_key(|m| std::cmp::Reverse(m.requests));
    Ok(Summary {
        generated_at: timeutil::rfc3339(now),
        days: SUMMARY_DAYS,
        keys: counts,
        requests,
        successes,
        success_rate: rate(successes, requests),
        tokens,
        cost_usd: (cost * 1e6).round() / 1e6,
        per_day: per_day
            .into_iter()
            .map(|(date, (requests, successes))| DayPoint {
                date,
                requests,
                successes,
                success_rate: rate(successes, requests),
            })
            .collect(),
        per_model,
    })
}

pub fn keys(pool: &[Config], state: &State) -> Result<Vec<KeyView>> {
    let mut out = Vec::new();
    for cfg in pool {
        out.extend(key_views(cfg, state)?);
    }
    Ok(out)
}

pub fn runs(state: &State) -> Result<Vec<RunInfo>> {
    state.runs(50)
}

pub fn usage(pool: &[Config], state: &State, days: u32) -> Result<Vec<UsageReport>> {
    pool.iter()
        .map(|cfg| usage_report(cfg, state, days))
        .collect()
}

pub fn rotations(pool: &[Config], state: &State) -> Result<Rotations> {
    let since = SystemTime::now() - Duration::from_secs(86_400 * SUMMARY_DAYS as u64);
    let mut all = Vec::new();
    for cfg in pool {
        for r in state.rotations(cfg.provider.as_str(), since, 50)? {
            all.push((
                r.ts,
                RotationView {
                    time: timeutil::rfc3339(r.ts),
                    from: r.from,
                    to: r.to,
                    reason: r.reason,
                    mode: r.mode,
                },
            ));
        }
    }
    all.sort_by_key(|r| std::cmp::Reverse(r.0));
    let rotations: Vec<RotationView> = all.into_iter().map(|(_, r)| r).take(50).collect();
    let manual = rotations.iter().filter(|r| r.mode == "manual").count() as u64;
    Ok(Rotations {
        auto: rotations.len() as u64 - manual,
        manual,
        rotations,
    })
}

/// Everything the page shows, by the API path that serves it: what a static snapshot
/// (`usage --html`) embeds instead of fetching.
#[derive(Serialize)]
pub struct Snapshot<'a> {
    #[serde(rename = "/api/summary")]
    pub summary: Summary,
    #[serde(rename = "/api/keys")]
    pub keys: Vec<KeyView>,
    #[serde(rename = "/api/runs")]
    pub runs: Vec<RunInfo>,
    #[serde(rename = "/api/usage?days=7")]
    pub usage: PoolReport<'a>,
    #[serde(rename = "/api/rotations")]
    pub rotations: Rotations,
}

/// The page, to be served live (it fetches `/api/…` every 2 s).
pub const PAGE: &str = include_str!("page.html");

/// The page with the data embedded: a static snapshot that fetches nothing.
pub fn snapshot_page(pool: &[Config], state: &State, reports: &[UsageReport]) -> Result<String> {
    let snap = Snapshot {
        summary: summary(pool, state)?,
        keys: keys(pool, state)?,
        runs: runs(state)?,
        usage: PoolReport { providers: reports },
        rotations: rotations(pool, state)?,
    };
    // Text inside a script element must not hold `</script` or `<!--`; `<` only occurs
    // inside JSON strings, where `\u003c` means the same.
    let json = serde_json::to_string(&snap)
        .unwrap_or_else(|_| "null".into())
        .replace('<', "\\u003c");
    Ok(PAGE.replace(
        "<!--SNAPSHOT-->",
        &format!("<script id=\"snapshot\" type=\"application/json\">{json}</script>"),
    ))
}
