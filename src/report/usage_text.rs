//! `autolabel usage` as text: a table of keys (today and the period), what a day of quota
//! buys, and the recent rotations.

use super::key_limits;
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
        if k.runs_out.quota.is_some() {
            crate::outln!("    runs out: {}", k.runs_out.text);
        }
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
/// (all keys together), under each key's own limits; `None` before any labeled row.
fn quota_buys(r: &UsageReport) -> Option<String> {
    let rows: u64 = r.keys.iter().map(|k| k.total.rows).sum();
    let successes: u64 = r.keys.iter().map(|k| k.total.successes).sum();
    if rows == 0 || successes == 0 {
        return None;
    }
    let tokens: u64 = r.keys.iter().map(|k| k.total.tokens()).sum();
    let per_row = tokens as f64 / rows as f64;
    let batch = ((rows as f64 / successes as f64).round() as usize).max(1);
    // Each key under its own organization's limits: one key's statement is not another's.
    let per_key: Vec<(usize, Option<String>)> = r
        .keys
        .iter()
        .filter_map(|k| Some((k.index?, &k.limits)))
        .map(|(index, limits)| {
            let limits = key_limits::values(limits);
            let day = budget::rows_per_day(&limits, batch, per_row * batch as f64);
            let rows = day.rows.zip(day.binding).map(|(n, limit)| {
                format!("{} rows|{} bind", budget::thousands(n), limit.describe())
            });
            (index, rows)
        })
        .collect();
    let said = |rows: &Option<String>, per_key: &str| match rows
        .as_deref()
        .and_then(|r| r.split_once('|'))
    {
        Some((n, bind)) => format!("about {n}{per_key} ({bind})"),
        None => "rows without a known daily limit".to_string(),
    };
    let buys = match per_key.as_slice() {
        [] => "no configured key".to_string(),
        [(_, first), rest @ ..] if rest.iter().all(|(_, b)| b == first) => {
            format!("a day of quota buys {}", said(first, " per key"))
        }
        all => format!(
            "a day of quota buys {}",
            all.iter()
                .map(|(i, b)| format!("key #{i} {}", said(b, "")))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    Some(format!(
        "{} over the period at {per_row:.1} tokens a row and {:.1} rows a request: {buys}",
        crate::ui::count(rows, "row"),
        rows as f64 / successes as f64
    ))
}
