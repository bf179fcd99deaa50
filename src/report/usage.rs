//! The usage report as one typed model, built from the state: per key, requests,
//! successes, errors by class, rows, tokens and cost today, over the period and per day;
//! status and health; the limits in force; recent rotations. Text, JSON (`usage --json`,
//! a stable format documented in the README) and HTML are all rendered from it.

use std::path::Path;
use std::time::SystemTime;

use serde::Serialize;

pub use super::counts::{DayUsage, Remaining, Usage};
use super::key_report::{key_reports, KeyReport};
use super::span::Span;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::provider::defaults::Limits;
use crate::store::{Rotation, State};
use crate::timeutil;

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
    pub keys: Vec<KeyReport>,
    pub rotations: Vec<RotationView>,
    /// The period's runs that voted or sent rows to review, with what their votes came to.
    pub vote_runs: Vec<crate::store::RunInfo>,
}

/// Limits; `None` (JSON null) = no limit. The report's own are the lowest in force over
/// the keys' organizations (for estimates); each key's own are in its `limits`, from its
/// own organization alone.
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

#[derive(Debug, Clone, Serialize)]
pub struct RotationView {
    pub time: String,
    pub from: String,
    pub to: String,
    pub reason: String,
    /// auto or manual.
    pub mode: String,
}

impl From<Rotation> for RotationView {
    fn from(r: Rotation) -> RotationView {
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

/// The usage report of one provider over the UTC days of `span`.
pub fn usage_report(cfg: &Config, state: &State, span: &Span) -> Result<UsageReport> {
    let provider = cfg.provider.as_str();
    let now = SystemTime::now();
    let rotations = span
        .log(
            20,
            |since, n| state.rotations(provider, since, n),
            |r| timeutil::utc_date(r.ts),
        )?
        .into_iter()
        .map(RotationView::from)
        .collect();
    let mut vote_runs = crate::votes::runs::voting_runs(state, provider, span.from.as_str())?;
    vote_runs.retain(|r| span.holds(&r.started));
    Ok(UsageReport {
        provider: provider.to_string(),
        generated_at: timeutil::rfc3339(now),
        from: span.from.to_string(),
        to: span.to.to_string(),
        days: span.days,
        limits: cfg.limits_in_force().into(),
        keys: key_reports(cfg, state, span, now)?,
        rotations,
        vote_runs,
    })
}

/// `usage --json` of a pool: one report per provider.
#[derive(Debug, Serialize)]
pub struct PoolReport<'a> {
    pub providers: &'a [UsageReport],
}

/// `--report-dir DIR`: today's usage as DIR/<provider>_<YYYY-MM-DD>.json.
pub fn write_daily_report(dir: &Path, cfg: &Config, state: &State) -> Result<()> {
    let report = usage_report(cfg, state, &Span::last_days(SystemTime::now(), 1))?;
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
