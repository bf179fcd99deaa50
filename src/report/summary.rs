//! The end-of-run summary on stderr: labels per class, fallbacks, requests, errors by
//! class, per key (grouped by provider in a pool), elapsed time.

use std::time::Duration;

use crate::config::LabelConfig;
use crate::pipeline::{KeysView, RunCounts};
use crate::provider::classify::{human, ErrorClass};
use crate::store::UsageDelta;
use crate::ui::Ui;

fn errors_text(d: &UsageDelta) -> String {
    let parts: Vec<String> = ErrorClass::ALL
        .iter()
        .zip(d.errors)
        .filter(|(_, n)| *n > 0)
        .map(|(c, n)| format!("{} {n}", c.as_str()))
        .collect();
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(", ")
    }
}

/// "  votes (up to 5 a row): unanimous 180 of 200 rows (90.0 %) · to review 12"
fn votes_line(c: &RunCounts, n: u32) -> String {
    let share = match c.voted {
        0 => String::new(),
        v => format!(" ({:.1} %)", 100.0 * c.unanimous as f64 / v as f64),
    };
    format!(
        "  votes (up to {n} a row): unanimous {} of {}{share} · to review {}",
        c.unanimous,
        crate::ui::count(c.voted, "row"),
        c.review
    )
}

/// "  confidence from logprobs: 180 of 200 rows · to review 12"
fn logprobs_line(c: &RunCounts) -> String {
    format!(
        "  confidence from logprobs: {} of {} · to review {}",
        c.measured,
        crate::ui::count(c.voted, "row"),
        c.review
    )
}

/// What the rows' confidence came to, when the run measured one.
fn quality_line(cfg: &LabelConfig, c: &RunCounts) -> Option<String> {
    if cfg.votes.logprobs() {
        Some(logprobs_line(c))
    } else if cfg.votes.n > 1 || cfg.votes.review_below.is_some() {
        Some(votes_line(c, cfg.votes.n))
    } else {
        None
    }
}

/// The end-of-run summary on stderr.
pub fn summary(ui: &Ui, cfg: &LabelConfig, c: &RunCounts, view: &KeysView, elapsed: Duration) {
    let labels: Vec<String> = c
        .per_label
        .iter()
        .map(|(l, n)| format!("{l} {n}"))
        .collect();
    let mut all = UsageDelta::default();
    for (_, _, t) in &view.keys {
        all.add(t);
    }
    let keys = keys_by_provider(view);
    let ended = if let Some(signal) = c.interrupted {
        match signal {
            crate::signals::StopSignal::Interrupt => "interrupted",
            crate::signals::StopSignal::Terminate => "terminated (SIGTERM)",
            crate::signals::StopSignal::HangUp => "hung up (SIGHUP)",
        }
    } else if c.stopped {
        "stopped early"
    } else {
        "done"
    };
    ui.info(&format!(
        "{ended}: {} written to {} · {}",
        crate::ui::count(c.written, "row"),
        cfg.output.display(),
        if labels.is_empty() {
            "no labels".to_string()
        } else {
            labels.join(" · ")
        }
    ));
    ui.info(&format!(
        "  by model {} · cached {} · empty {} · fallbacks {} · kept from before {}",
        c.model, c.cached, c.empty, c.fallbacks, c.kept
    ));
    ui.info(&format!(
        "  requests {} · ok {} · errors: {} · tokens {} in / {} out{} · cost ${:.4}",
        all.requests,
        all.successes,
        errors_text(&all),
        all.tokens_in,
        all.tokens_out,
        tokens_per_row(&all).map_or(String::new(), |t| format!(" ({t:.1} a row)")),
        all.cost
    ));
    if let Some(line) = quality_line(cfg, c) {
        ui.info(&line);
    }
    if all.cut > 0 {
        ui.info(&format!(
            "  {} cut at max_tokens (each unusable one asked again with room to spare; the cap of a model rises once cuts repeat)",
            crate::ui::count(all.cut, "reply")
        ));
    }
    ui.info(&format!(
        "  keys: {} · elapsed {}",
        if keys.is_empty() {
            "none used".to_string()
        } else {
            keys.join(" · ")
        },
        human(elapsed)
    ));
    ui.info(&format!("  {}", view.status));
    if c.fallbacks > 0 {
        ui.info(&format!(
            "  {} got the fallback label '{}'; run the same command again later to re-label just those",
            crate::ui::count(c.fallbacks, "row"),
            cfg.fallback_label
        ));
    }
    if c.fallbacks_past_limit > 0 {
        ui.info(&past_limit_note(
            c.fallbacks_past_limit,
            &cfg.fallback_label,
        ));
    }
}

/// The summary line for fallback rows that `--limit` kept out of reach (also said by a
/// run that finds nothing left to do).
pub fn past_limit_note(rows: u64, fallback_label: &str) -> String {
    let (rows, have) = match rows {
        1 => ("1 row".to_string(), "has"),
        n => (format!("{n} rows"), "have"),
    };
    format!(
        "  {rows} after --limit still {have} the fallback label '{fallback_label}' from an earlier run; \
         run without --limit (or with a larger one) to re-label them"
    )
}

/// The summary's per-key figures, grouped by provider in a pool: `groq 40 req (40 ok):
/// groq #1 gsk_…0001 20 req (20 ok) · …; gemini …`.
fn keys_by_provider(view: &KeysView) -> Vec<String> {
    let key_line = |(label, _, t): &(String, usize, UsageDelta)| {
        format!("{label} {} req ({} ok)", t.requests, t.successes)
    };
    let used = |k: &&(String, usize, UsageDelta)| k.2.requests > 0;
    if view.providers.len() == 1 {
        return view.keys.iter().filter(used).map(key_line).collect();
    }
    let mut groups = Vec::new();
    for (m, (tag, dropped)) in view.providers.iter().enumerate() {
        let mine: Vec<&(String, usize, UsageDelta)> =
            view.keys.iter().filter(|k| k.1 == m).collect();
        let mut all = UsageDelta::default();
        for k in &mine {
            all.add(&k.2);
        }
        let dropped = if *dropped { " (taken out: 404)" } else { "" };
        let detail: Vec<String> = mine.into_iter().filter(used).map(key_line).collect();
        groups.push(format!(
            "{tag} {} req ({} ok){dropped}{}",
            all.requests,
            all.successes,
            if detail.is_empty() {
                String::new()
            } else {
                format!(": {}", detail.join(", "))
            }
        ));
    }
    groups
}

/// Tokens (in and out) spent per row the model labeled; none before any row.
fn tokens_per_row(d: &UsageDelta) -> Option<f64> {
    (d.rows > 0).then(|| (d.tokens_in + d.tokens_out) as f64 / d.rows as f64)
}
