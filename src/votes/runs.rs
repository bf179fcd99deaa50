//! The runs that voted, as `usage` shows them: per run, its vote agreement (the share of
//! rows whose votes all agreed) and the rows it sent to review.

use crate::error::Result;
use crate::store::{RunInfo, State};

/// The recent runs of `provider` (it is one of their providers) that started on or
/// after `from` (`YYYY-MM-DD`) and asked for votes or review, newest first.
pub fn voting_runs(state: &State, provider: &str, from: &str) -> Result<Vec<RunInfo>> {
    let runs = state.runs(200)?;
    Ok(runs
        .into_iter()
        .filter(|r| r.providers.split(',').any(|p| p == provider))
        .filter(|r| r.started.get(..10).is_some_and(|d| d >= from))
        .filter(|r| r.quality.votes > 1 || r.quality.review > 0)
        .collect())
}

/// "  2026-12-06T10:00:00Z out.csv: 5 votes a row · unanimous 180 of 200 rows (90.0 %) · to review 12"
pub fn line(r: &RunInfo) -> String {
    let q = &r.quality;
    let agreement = q
        .agreement
        .map_or(String::new(), |a| format!(" ({:.1} %)", a * 100.0));
    format!(
        "{} {}: {} a row · unanimous {} of {}{agreement} · to review {}",
        r.started,
        r.output,
        crate::ui::count(u64::from(q.votes), "vote"),
        q.unanimous,
        crate::ui::count(q.voted, "row"),
        q.review
    )
}
