//! `autolabel usage` as text: a table of keys (today and the period), what a day of quota
//! buys, and the recent rotations.

use super::usage::{Usage, UsageReport};
use crate::budget;
use crate::store::StateLocation;

/// `autolabel usage` in text form.
pub fn print_usage(r: &UsageReport, state: &StateLocation) {
    crate::outln!(
        "usage for {} from {} to {} (state: {})",
        r.provider,
        r.from,
        r.to,
        state
    );
    if r.keys.is_empty() {
        crate::outln!("  no keys and no recorded usage yet");
        return;
    }
    crate::outln!(
        "  {:<16} {:<10} {:<9} {:>8} {:>8} {:>7} {:>8} {:>10} {:>8} {:>10} {:>14}",
        "KEY",
        "STATUS",
        "HEALTH",
        "REQ",
        "OK",
        "ERR",
        "ROWS",
        "TOKENS",
        "TOK/ROW",
        "COST",
        "LEFT TODAY"
    );
    for k in &r.keys {
        let label = match k.index {
            Some(i) => format!("#{i} {}", k.key),
            None => format!("{} (not configured)", k.key),
        };
        let left = k
            .remaining
            .requests_today
            .map_or("-".into(), |r| format!("{r} req"));
        row(&label, &k.status, k.health, &k.today, &left);
        row("  (period)", "", "", &k.total, "");
        if let Some(until) = &k.status_until {
            crate::outln!("    {} until {until}", k.status);
        }
    }
    if let Some(line) = quota_buys(r) {
        crate::outln!("  {line}");
    }
    if !r.vote_runs.is_empty() {
        crate::outln!("  runs with votes or review:");
        for run in r.vote_runs.iter().take(10) {
            crate::outln!("    {}", crate::votes::runs::line(run));
        }
    }
    if !r.rotations.is_empty() {
        crate::outln!("  recent rotations:");
        for rot in r.rotations.iter().take(10) {
            crate::outln!(
                "    {}  {} -> {}  ({}, {})",
                rot.time,
                rot.from,
                rot.to,
                rot.reason,
                rot.mode
            );
        }
    }
}

fn row(label: &str, status: &str, health: &str, u: &Usage, left: &str) {
    let per_row = u.tokens_per_row.map_or("-".into(), |t| format!("{t:.1}"));
    crate::outln!(
        "  {:<16} {:<10} {:<9} {:>8} {:>8} {:>7} {:>8} {:>10} {:>8} {:>10} {:>14}",
        label,
        status,
        health,
        u.requests,
        u.successes,
        u.error_total(),
        u.rows,
        u.tokens(),
        per_row,
        format!("${:.4}", u.cost_usd),
        left
    );
}

/// What a day of quota buys at the period's measured tokens per row and rows per request
/// (all keys together), under the limits in force; `None` before any labeled row.
fn quota_buys(r: &UsageReport) -> Option<String> {
    let rows: u64 = r.keys.iter().map(|k| k.total.rows).sum();
    let successes: u64 = r.keys.iter().map(|k| k.total.successes).sum();
    if rows == 0 || successes == 0 {
        return None;
    }
    let tokens: u64 = r.keys.iter().map(|k| k.total.tokens()).sum();
    let per_row = tokens as f64 / rows as f64;
    let batch = ((rows as f64 / successes as f64).round() as usize).max(1);
    let day = budget::rows_per_day(&r.limits.into(), batch, per_row * batch as f64);
    let buys = match (day.rows, day.binding) {
        (Some(n), Some(limit)) => format!(
            "a day of quota buys about {} rows per key ({} bind)",
            budget::thousands(n),
            limit.describe()
        ),
        _ => "no daily limit is known".to_string(),
    };
    Some(format!(
        "{} over the period at {per_row:.1} tokens a row and {:.1} rows a request: {buys}",
        crate::ui::count(rows, "row"),
        rows as f64 / successes as f64
    ))
}
