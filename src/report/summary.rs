//! The end-of-run summary on stderr: labels per class, fallbacks, requests, errors by
//! class, per key (grouped by provider in a pool), elapsed time.

use std::time::Duration;

use crate::config::LabelConfig;
use crate::pipeline::{worker::Ctx, RunCounts};
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

/// The end-of-run summary on stderr.
pub fn summary(
    ui: &Ui,
    cfg: &LabelConfig,
    ctx: &Ctx,
    c: &RunCounts,
    totals: &[UsageDelta],
    elapsed: Duration,
) {
    let labels: Vec<String> = c
        .per_label
        .iter()
        .map(|(l, n)| format!("{l} {n}"))
        .collect();
    let mut all = UsageDelta::default();
    for t in totals {
        all.add(t);
    }
    let keys = keys_by_provider(ctx, totals);
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
    ui.info(&format!(
        "  keys: {} · elapsed {}",
        if keys.is_empty() {
            "none used".to_string()
        } else {
            keys.join(" · ")
        },
        human(elapsed)
    ));
    ui.info(&format!("  {}", ctx.dispatcher.with_ring(|r| r.summary())));
    if c.fallbacks > 0 {
        ui.info(&format!(
            "  {} got the fallback label '{}'; run the same command again later to re-label just those",
            crate::ui::count(c.fallbacks, "row"),
            cfg.fallback_label
        ));
    }
    if c.fallbacks_past_limit > 0 {
        ui.info(&crate::label::past_limit_note(
            c.fallbacks_past_limit,
            &cfg.fallback_label,
        ));
    }
}

/// The summary's per-key figures, grouped by provider in a pool: `groq 40 req (40 ok):
/// groq #1 gsk_…0001 20 req (20 ok) · …; gemini …`.
fn keys_by_provider(ctx: &Ctx, totals: &[UsageDelta]) -> Vec<String> {
    let key_line = |k: usize| {
        let t = &totals[k];
        format!(
            "{} {} req ({} ok)",
            ctx.keys[k].label(),
            t.requests,
            t.successes
        )
    };
    let used = |k: &usize| totals[*k].requests > 0;
    if ctx.members.len() == 1 {
        return (0..ctx.keys.len()).filter(used).map(key_line).collect();
    }
    let mut groups = Vec::new();
    for (m, member) in ctx.members.iter().enumerate() {
        let mine: Vec<usize> = (0..ctx.keys.len())
            .filter(|&k| ctx.key_member[k] == m)
            .collect();
        let mut all = UsageDelta::default();
        for &k in &mine {
            all.add(&totals[k]);
        }
        let dropped = if member.dropped.load(std::sync::atomic::Ordering::SeqCst) {
            " (taken out: 404)"
        } else {
            ""
        };
        let detail: Vec<String> = mine.into_iter().filter(used).map(key_line).collect();
        groups.push(format!(
            "{} {} req ({} ok){dropped}{}",
            member.tag,
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
