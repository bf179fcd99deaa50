//! What the dashboard's JSON API answers, built from the state (and the env file's keys):
//! typed, so the live page, `usage --html` snapshots and scripts see one shape.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::Serialize;

use crate::config::Config;
use crate::error::Result;
use crate::report::key_report::KeyReport;
use crate::report::keys::key_views_in;
use crate::report::usage::{usage_report, PoolReport, RotationView, UsageReport};
use crate::report::Span;
use crate::store::{events, Action, ErrorEntry, RunInfo, State};
use crate::timeutil;

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
    /// The period: its first and last UTC day and how many days it has.
    pub from: String,
    pub to: String,
    pub days: u32,
    pub keys: KeyCounts,
    pub requests: u64,
    pub successes: u64,
    pub success_rate: Option<f64>,
    pub tokens: u64,
    pub cost_usd: f64,
    /// Every day of the period, oldest first (days without use count 0 requests and
    /// have no success rate: a gap in the line, not a failure).
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

/// The days the page shows unless told otherwise.
pub const SUMMARY_DAYS: u32 = 7;

/// The rotations `/api/rotations` lists (its counts cover the whole period).
const ROTATIONS_SHOWN: usize = 50;

fn rate(successes: u64, requests: u64) -> Option<f64> {
    (requests > 0).then(|| (successes as f64 * 1000.0 / requests as f64).round() / 10.0)
}

/// Keys by status: a disabled key counts as disabled and under its condition too (a
/// disabled invalid key is one of the invalid ones).
fn key_counts(reports: &[UsageReport]) -> KeyCounts {
    let mut counts = KeyCounts::default();
    for k in reports
        .iter()
        .flat_map(|r| &r.keys)
        .filter(|k| k.index.is_some())
    {
        counts.total += 1;
        if k.disabled() {
            counts.disabled += 1;
        }
        match k.condition.state {
            "cooling" => counts.cooling += 1,
            "exhausted" => counts.exhausted += 1,
            "invalid" => counts.invalid += 1,
            _ if !k.disabled() => counts.active += 1,
            _ => {}
        }
    }
    counts
}

/// The cards and charts, from the same reports as `/api/keys` and `/api/usage`.
pub fn summary(pool: &[Config], state: &State, span: &Span) -> Result<Summary> {
    let now = SystemTime::now();
    let reports = usage(pool, state, span)?;
    let mut per_day: BTreeMap<String, (u64, u64)> =
        span.dates().into_iter().map(|d| (d, (0, 0))).collect();
    let (mut requests, mut successes, mut tokens, mut cost) = (0, 0, 0, 0.0);
    for k in reports.iter().flat_map(|r| &r.keys) {
        requests += k.total.requests;
        successes += k.total.successes;
        tokens += k.total.tokens();
        cost += k.total.cost_usd;
        for d in &k.days {
            let day = per_day.entry(d.date.clone()).or_default();
            day.0 += d.usage.requests;
            day.1 += d.usage.successes;
        }
    }
    Ok(Summary {
        generated_at: timeutil::rfc3339(now),
        from: span.from.to_string(),
        to: span.to.to_string(),
        days: span.days,
        keys: key_counts(&reports),
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
        per_model: per_model(pool, state, span)?,
    })
}

/// Requests per `provider/model` over the period, most first.
fn per_model(pool: &[Config], state: &State, span: &Span) -> Result<Vec<ModelCount>> {
    let mut per_model: BTreeMap<String, u64> = BTreeMap::new();
    for cfg in pool {
        let provider = cfg.provider.as_str();
        let rows = state.usage_since(provider, &span.from)?;
        for row in rows.iter().filter(|r| span.holds(r.day.as_str())) {
            *per_model
                .entry(format!("{provider}/{}", row.model))
                .or_default() += row.usage.requests;
        }
    }
    let mut out: Vec<ModelCount> = per_model
        .into_iter()
        .map(|(model, requests)| ModelCount { model, requests })
        .collect();
    out.sort_by_key(|m| std::cmp::Reverse(m.requests));
    Ok(out)
}

pub fn keys(pool: &[Config], state: &State, span: &Span) -> Result<Vec<KeyReport>> {
    let now = SystemTime::now();
    let mut out = Vec::new();
    for cfg in pool {
        out.extend(key_views_in(cfg, state, span, now)?);
    }
    Ok(out)
}

pub fn runs(state: &State) -> Result<Vec<RunInfo>> {
    state.runs(50)
}

pub fn usage(pool: &[Config], state: &State, span: &Span) -> Result<Vec<UsageReport>> {
    pool.iter()
        .map(|cfg| usage_report(cfg, state, span))
        .collect()
}

/// The latest rotations of every provider, and the auto and manual counts over the
/// whole period (not only the rotations listed).
pub fn rotations(pool: &[Config], state: &State, span: &Span) -> Result<Rotations> {
    let mut all = Vec::new();
    for cfg in pool {
        let fetch = |since, n| state.rotations(cfg.provider.as_str(), since, n);
        for r in span.log(u32::MAX, fetch, |r| timeutil::utc_date(r.ts))? {
            all.push((r.ts, RotationView::from(r)));
        }
    }
    all.sort_by_key(|r| std::cmp::Reverse(r.0));
    let manual = all.iter().filter(|(_, r)| r.mode == "manual").count() as u64;
    let auto = all.len() as u64 - manual;
    Ok(Rotations {
        auto,
        manual,
        rotations: all
            .into_iter()
            .map(|(_, r)| r)
            .take(ROTATIONS_SHOWN)
            .collect(),
    })
}

/// The actions shown at most.
const ACTIONS_SHOWN: u32 = 200;

/// `/api/actions`: what people did to keys over the period, newest first, and who.
pub fn actions(state: &State, span: &Span) -> Result<Vec<Action>> {
    let fetch = |since, n| events::actions(&**state, since, n);
    span.log(ACTIONS_SHOWN, fetch, |a| a.time.clone())
}

/// `/api/errors`: the failed requests of the period, newest first (at most 200).
pub fn errors(state: &State, span: &Span) -> Result<Vec<ErrorEntry>> {
    errors_at_most(state, span, ACTIONS_SHOWN)
}

/// The whole error log of the period for the providers of `pool`, newest first (`usage
/// --csv --errors`, `/api/errors.csv`).
pub fn errors_all(pool: &[Config], state: &State, span: &Span) -> Result<Vec<ErrorEntry>> {
    let mut entries = errors_at_most(state, span, u32::MAX)?;
    entries.retain(|e| pool.iter().any(|c| c.provider.as_str() == e.provider));
    Ok(entries)
}

fn errors_at_most(state: &State, span: &Span, limit: u32) -> Result<Vec<ErrorEntry>> {
    let fetch = |since, n| events::errors(&**state, since, n);
    span.log(limit, fetch, |e| e.time.clone())
}

/// Everything the page shows, by the API path that serves it: what a static snapshot
/// (`usage --html`) embeds instead of fetching.
#[derive(Serialize)]
pub struct Snapshot<'a> {
    #[serde(rename = "/api/summary")]
    pub summary: Summary,
    #[serde(rename = "/api/keys")]
    pub keys: Vec<KeyReport>,
    #[serde(rename = "/api/runs")]
    pub runs: Vec<RunInfo>,
    #[serde(rename = "/api/usage")]
    pub usage: PoolReport<'a>,
    #[serde(rename = "/api/rotations")]
    pub rotations: Rotations,
    #[serde(rename = "/api/actions")]
    pub actions: Vec<Action>,
    #[serde(rename = "/api/errors")]
    pub errors: Vec<ErrorEntry>,
}

/// The page, to be served live (it fetches `/api/…` every 2 s).
pub const PAGE: &str = include_str!("page.html");

/// The page with the data embedded, over the period of `reports` (`span`): a static
/// snapshot that fetches nothing.
pub fn snapshot_page(
    pool: &[Config],
    state: &State,
    reports: &[UsageReport],
    span: &Span,
) -> Result<String> {
    let snap = Snapshot {
        summary: summary(pool, state, span)?,
        keys: keys(pool, state, span)?,
        runs: runs(state)?,
        usage: PoolReport { providers: reports },
        rotations: rotations(pool, state, span)?,
        actions: actions(state, span)?,
        errors: errors(state, span)?,
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
