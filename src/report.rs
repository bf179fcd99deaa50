//! What a run and the state say, for people and for scripts: the end-of-run summary,
//! `--dry-run`, `usage` (text and stable JSON) and the daily JSON report.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};

use crate::budget;
use crate::cli::BatchSize;
use crate::config::{Config, LabelConfig};
use crate::csvio::{self, InputInfo};
use crate::error::{Error, Result};
use crate::pipeline::{cache_key, worker::Ctx, RunCounts};
use crate::prompt::Prompter;
use crate::provider::classify::{human, ErrorClass};
use crate::provider::defaults::Limits;
use crate::state::{State, UsageDelta};
use crate::timeutil;
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
        "{ended}: {} rows written to {} · {}",
        c.written,
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
            "  {} rows got the fallback label '{}'; run the same command again later to re-label just those",
            c.fallbacks, cfg.fallback_label
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

/// `--dry-run`: what the run would do, without a request.
pub fn dry_run(
    cfg: &LabelConfig,
    info: &InputInfo,
    state: &State,
    cache_scopes: &[String],
    prompter: &Prompter,
    batch_size: usize,
) -> Result<()> {
    let mut rdr = csvio::reader(&info.path, info.delimiter)?;
    let mut rec = csv::StringRecord::new();
    let mut seen = std::collections::HashSet::new();
    let (mut unique, mut cache_hits, mut bytes) = (0u64, 0u64, 0u64);
    let mut idx = 0;
    while idx < info.rows
        && rdr
            .read_record(&mut rec)
            .map_err(|e| csvio::describe_csv_error(&info.path, Some(&info.headers), &e))?
    {
        idx += 1;
        let text = rec.get(info.text_col).unwrap_or("");
        if text.trim().is_empty() {
            continue;
        }
        let key = cache_key(&cache_scopes[0], text);
        if !seen.insert(key[..16].to_vec()) {
            continue;
        }
        unique += 1;
        if cfg.use_cache {
            let mut hit = state.cache_get(&key)?.is_some();
            for scope in &cache_scopes[1..] {
                hit = hit || state.cache_get(&cache_key(scope, text))?.is_some();
            }
            if hit {
                cache_hits += 1;
                continue;
            }
        }
        bytes += text.len() as u64;
    }
    let to_send = unique - cache_hits;
    let requests = to_send.div_ceil(batch_size as u64);
    let average_bytes = if to_send > 0 {
        bytes as f64 / to_send as f64
    } else {
        info.average_text_bytes()
    };
    let tokens_per_row =
        prompter.estimated_request_tokens(batch_size, average_bytes) / batch_size as f64;
    let tokens = (tokens_per_row * to_send as f64).ceil() as u64;
    let base = &cfg.base;
    let limits = base.limits_in_force();
    // The providers' capacities add up; --delay spaces all requests of the run.
    let tokens_a_request = (requests > 0).then(|| tokens as f64 / requests as f64);
    let mut per_sec: f64 = cfg
        .pool()
        .map(|c| requests_per_second(c, tokens_a_request))
        .sum();
    if !cfg.delay.is_zero() {
        per_sec = per_sec.min(1.0 / cfg.delay.as_secs_f64());
    }
    let eta = if per_sec.is_finite() && per_sec > 0.0 {
        human(Duration::from_secs_f64(requests as f64 / per_sec))
    } else {
        "as fast as the provider answers".into()
    };
    let day_cap = if cfg.is_pool() {
        cfg.pool()
            .map(|c| c.limits_in_force().rpd.map(|d| d * c.org_count() as u64))
            .sum()
    } else {
        limits.rpd.map(|d| d * base.org_count() as u64)
    };
    // In a pool the price of the run depends on which provider serves which row; the
    // estimate takes the dearest.
    let price_in = cfg.pool().map(|c| c.prices.0).fold(0.0, f64::max);
    let cost = tokens as f64 * price_in;
    crate::outln!(
        "dry run for {} ({} rows, text column '{}')",
        info.path.display(),
        info.rows,
        &info.headers[info.text_col]
    );
    crate::outln!(
        "  empty texts:      {} (get '{}' without a request)",
        info.empty_rows,
        cfg.fallback_label
    );
    crate::outln!("  unique texts:     {unique}");
    crate::outln!(
        "  cache hits:       {cache_hits}{}",
        if cfg.use_cache { "" } else { " (--no-cache)" }
    );
    crate::outln!("  requests:         {requests} (batch size {})", batch_size);
    crate::outln!("  estimated tokens: {tokens}");
    crate::outln!("  estimated cost:   ${cost:.4} (input tokens at --price-in)");
    for c in cfg.pool() {
        crate::outln!(
            "  {}keys: {} in {} organization(s) · delay {}s · rpm {} per organization{}",
            if cfg.is_pool() {
                format!("{}/{} ", c.provider.as_str(), c.model)
            } else {
                String::new()
            },
            c.keys.len(),
            c.org_count(),
            cfg.delay.as_secs_f64(),
            c.limits_in_force()
                .rpm
                .map_or("unlimited".into(), |r| r.to_string()),
            if cfg.is_pool() {
                format!(
                    " · {:.2} requests/s",
                    requests_per_second(c, tokens_a_request)
                )
            } else {
                String::new()
            }
        );
    }
    crate::outln!("  estimated time:   {eta}");
    if let Some(cap) = day_cap {
        if requests > cap {
            crate::outln!("  note: {requests} requests exceed the {cap} per day the keys allow; it will take more than a day");
        }
    }
    let l = &base.limits_in_force();
    let shown = |v: Option<u64>| v.map_or("none".to_string(), |v| v.to_string());
    crate::outln!(
        "  budget per key or organization (rpm {} · rph {} · rpd {} · tpm {} · tpd {}; texts {:.1} tokens a row):",
        shown(l.rpm),
        shown(l.rph),
        shown(l.rpd),
        shown(l.tpm),
        shown(l.tpd),
        average_bytes / 4.0
    );
    let auto =
        budget::auto_batch_size(&base.limits_in_force(), prompter, info.average_text_bytes());
    let mut sizes = vec![(format!("batch size {batch_size}"), batch_size)];
    if cfg.batch_size == BatchSize::Auto {
        sizes[0].0 = format!("batch size auto ({batch_size})");
    } else {
        sizes.push((format!("batch size auto ({})", auto.size), auto.size));
    }
    for (name, size) in sizes {
        crate::outln!(
            "    {:<24}{}",
            format!("{name}:"),
            budget_line(cfg, prompter, size, average_bytes, to_send)
        );
    }
    crate::outln!("    auto: {}", auto.reason);
    Ok(())
}

/// The requests a second one provider's keys allow under its per-minute limits (infinite
/// without one); `tokens_a_request` is what an average request is estimated to cost.
fn requests_per_second(c: &Config, tokens_a_request: Option<f64>) -> f64 {
    let limits = c.limits_in_force();
    let orgs = c.org_count() as f64;
    let mut per_sec = f64::INFINITY;
    if let Some(rpm) = limits.rpm {
        per_sec = per_sec.min(orgs * rpm as f64 / 60.0);
    }
    if let (Some(tpm), Some(t)) = (limits.tpm, tokens_a_request) {
        per_sec = per_sec.min(orgs * tpm as f64 / 60.0 / t);
    }
    per_sec
}

/// One dry-run budget line: tokens per row, rows per key a day, the binding limit, and
/// the days `rows` take with the configured keys.
fn budget_line(
    cfg: &LabelConfig,
    prompter: &Prompter,
    batch: usize,
    average_bytes: f64,
    rows: u64,
) -> String {
    let base = &cfg.base;
    let request = prompter.estimated_request_tokens(batch, average_bytes);
    let per_row = request / batch as f64;
    let own = average_bytes / 4.0;
    let ratio = if own > 0.0 {
        format!(" ({:.2}x the texts)", per_row / own)
    } else {
        String::new()
    };
    let day = budget::rows_per_day(&base.limits_in_force(), batch, request);
    let orgs = base.org_count().max(1);
    let keys = base.keys.len();
    let with = if keys == orgs {
        format!("{keys} key(s)")
    } else {
        format!("{keys} keys in {orgs} organization(s)")
    };
    let capacity = match (day.rows, day.binding) {
        (Some(r), Some(limit)) if r > 0.0 => {
            let days = rows as f64 / (r * orgs as f64);
            format!(
                "{} rows per key a day ({} bind) · {days:.2} days for {rows} rows with {with}",
                budget::thousands(r),
                limit.describe(),
            )
        }
        (Some(_), Some(limit)) => format!(
            "no row fits: one request is larger than the {}",
            limit.describe()
        ),
        _ => "no daily limit known".to_string(),
    };
    format!("{per_row:.1} tokens a row{ratio} · {capacity}")
}

fn usage_json(d: &UsageDelta) -> Value {
    let errors: serde_json::Map<String, Value> = ErrorClass::ALL
        .iter()
        .zip(d.errors)
        .map(|(c, n)| (c.as_str().to_string(), json!(n)))
        .collect();
    json!({
        "requests": d.requests,
        "successes": d.successes,
        "errors": errors,
        "tokens_in": d.tokens_in,
        "tokens_out": d.tokens_out,
        "cost_usd": (d.cost * 1e6).round() / 1e6,
        "rows": d.rows,
        "tokens_per_row": tokens_per_row(d).map(|t| (t * 10.0).round() / 10.0),
    })
}

/// Tokens (in and out) spent per row the model labeled; none before any row.
fn tokens_per_row(d: &UsageDelta) -> Option<f64> {
    (d.rows > 0).then(|| (d.tokens_in + d.tokens_out) as f64 / d.rows as f64)
}

/// All errors of a usage object (the `U` of the JSON format), whatever their class.
fn error_total(u: &Value) -> u64 {
    u["errors"]
        .as_object()
        .map_or(0, |m| m.values().filter_map(Value::as_u64).sum())
}

/// healthy < 80 % · warning 80–95 % · critical > 95 % of the tightest daily limit.
fn health(pct: Option<f64>, status: &str) -> &'static str {
    if status == "invalid" || status == "exhausted" {
        return "critical";
    }
    match pct {
        Some(p) if p > 95.0 => "critical",
        Some(p) if p >= 80.0 => "warning",
        _ => "healthy",
    }
}

/// The usage report as a JSON value (the `usage --json` format, documented in the README).
pub fn usage_value(cfg: &Config, state: &State, days: u32) -> Result<Value> {
    let provider = cfg.provider.as_str();
    let now = SystemTime::now();
    let today = timeutil::utc_date(now);
    let since = timeutil::utc_date_days_ago(now, days.saturating_sub(1));
    let rows = state.usage_since(provider, &since)?;
    let health_rows = state.load_health(provider)?;
    // Keys: the configured ones first (in order), then any the state knows of.
    let mut keys: Vec<(Option<usize>, String, String)> = cfg
        .keys
        .iter()
        .map(|k| (Some(k.index), k.fingerprint.clone(), k.masked.clone()))
        .collect();
    for r in &rows {
        if !keys.iter().any(|(_, fp, _)| *fp == r.fingerprint) {
            keys.push((None, r.fingerprint.clone(), r.masked.clone()));
        }
    }
    let limits: Limits = cfg.limits_in_force();
    let mut out_keys = Vec::new();
    for (index, fp, masked) in &keys {
        let mut per_day: BTreeMap<String, UsageDelta> = BTreeMap::new();
        let mut models: Vec<String> = Vec::new();
        for r in rows.iter().filter(|r| r.fingerprint == *fp) {
            per_day.entry(r.day.clone()).or_default().add(&r.usage);
            if !models.contains(&r.model) {
                models.push(r.model.clone());
            }
        }
        let mut total = UsageDelta::default();
        for d in per_day.values() {
            total.add(d);
        }
        let today_usage = per_day.get(&today).cloned().unwrap_or_default();
        let stored = health_rows.iter().find(|h| h.fingerprint == *fp);
        let (status, until) = match stored {
            Some(h) if h.status == "invalid" => ("invalid".to_string(), None),
            Some(h) if h.until.is_some_and(|u| u > now) => (h.status.clone(), h.until),
            _ => ("available".to_string(), None),
        };
        let tokens_today = today_usage.tokens_in + today_usage.tokens_out;
        let pcts: Vec<f64> = [
            limits
                .rpd
                .map(|l| today_usage.requests as f64 * 100.0 / l as f64),
            limits.tpd.map(|l| tokens_today as f64 * 100.0 / l as f64),
        ]
        .into_iter()
        .flatten()
        .collect();
        let pct = pcts.into_iter().reduce(f64::max);
        out_keys.push(json!({
            "index": index,
            "key": masked,
            "fingerprint": fp,
            "status": status,
            "status_until": until.map(timeutil::rfc3339),
            "health": health(pct, &status),
            "quota_used_pct": pct.map(|p| (p * 10.0).round() / 10.0),
            "remaining": {
                "requests_today": limits.rpd.map(|l| l.saturating_sub(today_usage.requests)),
                "tokens_today": limits.tpd.map(|l| l.saturating_sub(tokens_today)),
            },
            "models": models,
            "today": usage_json(&today_usage),
            "total": usage_json(&total),
            "days": per_day.iter().map(|(day, d)| {
                let mut v = usage_json(d);
                v["date"] = json!(day);
                v
            }).collect::<Vec<_>>(),
        }));
    }
    let since_time = now - Duration::from_secs(86_400 * days as u64);
    let rotations: Vec<Value> = state
        .rotations(provider, since_time, 20)?
        .into_iter()
        .map(|r| json!({"time": timeutil::rfc3339(r.ts), "from": r.from, "to": r.to, "reason": r.reason, "mode": r.mode}))
        .collect();
    Ok(json!({
        "provider": provider,
        "generated_at": timeutil::rfc3339(now),
        "from": since,
        "to": today,
        "days": days,
        "limits": {"rpm": limits.rpm, "rph": limits.rph, "rpd": limits.rpd, "tpm": limits.tpm, "tpd": limits.tpd},
        "keys": out_keys,
        "rotations": rotations,
    }))
}

/// `autolabel usage` in text form.
pub fn print_usage(v: &Value, state_path: &Path) {
    crate::outln!(
        "usage for {} from {} to {} (state: {})",
        v["provider"].as_str().unwrap_or(""),
        v["from"].as_str().unwrap_or(""),
        v["to"].as_str().unwrap_or(""),
        state_path.display()
    );
    let keys = v["keys"].as_array().cloned().unwrap_or_default();
    if keys.is_empty() {
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
    for k in &keys {
        let label = match k["index"].as_u64() {
            Some(i) => format!("#{i} {}", k["key"].as_str().unwrap_or("")),
            None => format!("{} (not configured)", k["key"].as_str().unwrap_or("")),
        };
        for (scope, u) in [("today", &k["today"]), ("period", &k["total"])] {
            let errs = error_total(u);
            let tokens =
                u["tokens_in"].as_u64().unwrap_or(0) + u["tokens_out"].as_u64().unwrap_or(0);
            let left = if scope == "today" {
                k["remaining"]["requests_today"]
                    .as_u64()
                    .map_or("-".into(), |r| format!("{r} req"))
            } else {
                String::new()
            };
            let per_row = u["tokens_per_row"]
                .as_f64()
                .map_or("-".into(), |t| format!("{t:.1}"));
            crate::outln!(
                "  {:<16} {:<10} {:<9} {:>8} {:>8} {:>7} {:>8} {:>10} {:>8} {:>10} {:>14}",
                if scope == "today" {
                    label.clone()
                } else {
                    "  (period)".into()
                },
                if scope == "today" {
                    k["status"].as_str().unwrap_or("")
                } else {
                    ""
                },
                if scope == "today" {
                    k["health"].as_str().unwrap_or("")
                } else {
                    ""
                },
                u["requests"].as_u64().unwrap_or(0),
                u["successes"].as_u64().unwrap_or(0),
                errs,
                u["rows"].as_u64().unwrap_or(0),
                tokens,
                per_row,
                format!("${:.4}", u["cost_usd"].as_f64().unwrap_or(0.0)),
                left
            );
        }
        if let Some(until) = k["status_until"].as_str() {
            crate::outln!("    {} until {until}", k["status"].as_str().unwrap_or(""));
        }
    }
    if let Some(line) = quota_buys(v) {
        crate::outln!("  {line}");
    }
    let rotations = v["rotations"].as_array().cloned().unwrap_or_default();
    if !rotations.is_empty() {
        crate::outln!("  recent rotations:");
        for r in rotations.iter().take(10) {
            crate::outln!(
                "    {}  {} -> {}  ({}, {})",
                r["time"].as_str().unwrap_or(""),
                r["from"].as_str().unwrap_or(""),
                r["to"].as_str().unwrap_or(""),
                r["reason"].as_str().unwrap_or(""),
                r["mode"].as_str().unwrap_or("")
            );
        }
    }
}

/// What a day of quota buys at the period's measured tokens per row and rows per request
/// (all keys together), under the limits in force; `None` before any labeled row.
fn quota_buys(v: &Value) -> Option<String> {
    let keys = v["keys"].as_array()?;
    let sum = |field: &str| -> u64 {
        keys.iter()
            .map(|k| k["total"][field].as_u64().unwrap_or(0))
            .sum()
    };
    let (rows, successes) = (sum("rows"), sum("successes"));
    if rows == 0 || successes == 0 {
        return None;
    }
    let per_row = (sum("tokens_in") + sum("tokens_out")) as f64 / rows as f64;
    let batch = ((rows as f64 / successes as f64).round() as usize).max(1);
    let l = &v["limits"];
    let limits = Limits {
        rpm: l["rpm"].as_u64(),
        rph: l["rph"].as_u64(),
        rpd: l["rpd"].as_u64(),
        tpm: l["tpm"].as_u64(),
        tpd: l["tpd"].as_u64(),
    };
    let day = budget::rows_per_day(&limits, batch, per_row * batch as f64);
    let buys = match (day.rows, day.binding) {
        (Some(r), Some(limit)) => format!(
            "a day of quota buys about {} rows per key ({} bind)",
            budget::thousands(r),
            limit.describe()
        ),
        _ => "no daily limit is known".to_string(),
    };
    Some(format!(
        "{rows} rows over the period at {per_row:.1} tokens a row and {:.1} rows a request: {buys}",
        rows as f64 / successes as f64
    ))
}

/// `--report-dir DIR`: today's usage as DIR/<provider>_<YYYY-MM-DD>.json.
pub fn write_daily_report(dir: &Path, cfg: &Config, state: &State) -> Result<()> {
    let v = usage_value(cfg, state, 1)?;
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::io(format!("--report-dir {}", dir.display()), e))?;
    let path = dir.join(format!(
        "{}_{}.json",
        cfg.provider.as_str(),
        timeutil::utc_date(SystemTime::now())
    ));
    let text = serde_json::to_string_pretty(&v).expect("json");
    std::fs::write(&path, text + "\n").map_err(|e| Error::io(format!("{}", path.display()), e))
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// `usage --html FILE`: the same data as `--json`, as one self-contained page (inline CSS
/// and SVG, nothing fetched): per-key table, requests per day chart, success rates, rotations.
/// `usage --html FILE` for one provider or a pool: one page, a section per provider.
pub fn usage_html(values: &[Value]) -> String {
    let s = |x: &Value| esc(x.as_str().unwrap_or(""));
    let providers: Vec<String> = values.iter().map(|v| s(&v["provider"])).collect();
    let sections: String = values.iter().map(usage_html_section).collect();
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>autolabel usage: {title}</title>\n<style>\
body{{font-family:system-ui,sans-serif;margin:2em;color:#1a202c}}table{{border-collapse:collapse;margin:1em 0}}\
td,th{{border:1px solid #cbd5e0;padding:4px 8px;text-align:right}}td:nth-child(2),th{{text-align:left}}\
.h-healthy{{background:#c6f6d5}}.h-warning{{background:#fefcbf}}.h-critical{{background:#fed7d7}}</style></head><body>\n\
{sections}</body></html>\n",
        title = providers.join(", "),
    )
}

/// One provider's part of the usage page: key table, requests per day, rotations.
fn usage_html_section(v: &Value) -> String {
    let keys = v["keys"].as_array().cloned().unwrap_or_default();
    let s = |x: &Value| esc(x.as_str().unwrap_or(""));
    let n = |x: &Value| x.as_u64().unwrap_or(0);
    let mut rows = String::new();
    for k in &keys {
        let total = &k["total"];
        let rate = if n(&total["requests"]) > 0 {
            format!(
                "{:.1} %",
                n(&total["successes"]) as f64 * 100.0 / n(&total["requests"]) as f64
            )
        } else {
            "-".into()
        };
        let errors = error_total(total);
        rows.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"h-{}\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>${:.4}</td><td>{}</td></tr>\n",
            k["index"].as_u64().map_or("-".into(), |i| format!("#{i}")),
            s(&k["key"]),
            s(&k["status"]),
            s(&k["health"]),
            s(&k["health"]),
            n(&k["today"]["requests"]),
            n(&total["requests"]),
            n(&total["successes"]),
            errors,
            rate,
            n(&total["rows"]),
            total["tokens_per_row"].as_f64().map_or("-".into(), |t| format!("{t:.1}")),
            total["cost_usd"].as_f64().unwrap_or(0.0),
            k["remaining"]["requests_today"].as_u64().map_or("-".into(), |r| r.to_string()),
        ));
    }
    // Requests per day, one bar group per day, one bar per key.
    let mut days: Vec<String> = keys
        .iter()
        .flat_map(|k| k["days"].as_array().cloned().unwrap_or_default())
        .filter_map(|d| d["date"].as_str().map(str::to_string))
        .collect();
    days.sort();
    days.dedup();
    let max = keys
        .iter()
        .flat_map(|k| k["days"].as_array().cloned().unwrap_or_default())
        .map(|d| n(&d["requests"]))
        .max()
        .unwrap_or(0)
        .max(1);
    let colors = [
        "#2b6cb0", "#dd6b20", "#38a169", "#805ad5", "#d53f8c", "#718096",
    ];
    let (w, h, pad) = (720.0, 220.0, 30.0);
    let group = if days.is_empty() {
        w
    } else {
        (w - pad) / days.len() as f64
    };
    let bar = (group * 0.8 / keys.len().max(1) as f64).clamp(1.0, 40.0);
    let mut svg = format!(
        "<svg viewBox=\"0 0 {w} {}\" role=\"img\" aria-label=\"requests per day\">",
        h + 40.0
    );
    for (di, day) in days.iter().enumerate() {
        let x0 = pad + di as f64 * group;
        for (ki, k) in keys.iter().enumerate() {
            let reqs = k["days"]
                .as_array()
                .and_then(|a| a.iter().find(|d| d["date"].as_str() == Some(day)))
                .map_or(0, |d| n(&d["requests"]));
            let bh = reqs as f64 / max as f64 * h;
            svg.push_str(&format!(
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{}\"><title>{} {}: {} requests</title></rect>",
                x0 + ki as f64 * bar,
                h - bh,
                bar,
                bh,
                colors[ki % colors.len()],
                s(&k["key"]),
                esc(day),
                reqs
            ));
        }
        svg.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{}\" font-size=\"11\">{}</text>",
            x0,
            h + 16.0,
            esc(&day[5..])
        ));
    }
    svg.push_str(&format!(
        "<text x=\"0\" y=\"12\" font-size=\"11\">{max}</text></svg>"
    ));
    let legend: String = keys
        .iter()
        .enumerate()
        .map(|(i, k)| {
            format!(
                "<span style=\"color:{}\">■</span> {} ",
                colors[i % colors.len()],
                s(&k["key"])
            )
        })
        .collect();
    let rotations: String = v["rotations"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|r| {
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                s(&r["time"]),
                s(&r["from"]),
                s(&r["to"]),
                s(&r["reason"]),
                s(&r["mode"])
            )
        })
        .collect();
    format!(
        "<h1>autolabel usage: {provider}</h1><p>{from} to {to} · generated {generated}</p>\n\
<h2>Keys</h2><table><tr><th>#</th><th>key</th><th>status</th><th>health</th><th>today</th><th>requests</th><th>ok</th><th>errors</th><th>success rate</th><th>rows</th><th>tokens/row</th><th>cost</th><th>left today</th></tr>\n{rows}</table>\n\
<h2>Requests per day</h2>{svg}<p>{legend}</p>\n\
<h2>Recent rotations</h2><table><tr><th>time</th><th>from</th><th>to</th><th>reason</th><th>mode</th></tr>{rotations}</table>\n",
        provider = s(&v["provider"]),
        from = s(&v["from"]),
        to = s(&v["to"]),
        generated = s(&v["generated_at"]),
    )
}
