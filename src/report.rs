//! What a run and the state say, for people and for scripts: the end-of-run summary,
//! `--dry-run`, `usage` (text and stable JSON) and the daily JSON report.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};

use crate::config::{Config, LabelConfig};
use crate::csvio::{self, InputInfo};
use crate::error::{Error, Result};
use crate::pipeline::{cache_key, worker::Ctx, RunCounts};
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
    let keys: Vec<String> = ctx
        .keys
        .iter()
        .zip(totals)
        .filter(|(_, t)| t.requests > 0)
        .map(|(k, t)| format!("{} {} req ({} ok)", k.label(), t.requests, t.successes))
        .collect();
    let ended = if c.interrupted {
        "interrupted"
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
        "  requests {} · ok {} · errors: {} · tokens {} in / {} out · cost ${:.4}",
        all.requests,
        all.successes,
        errors_text(&all),
        all.tokens_in,
        all.tokens_out,
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
}

/// `--dry-run`: what the run would do, without a request.
pub fn dry_run(
    cfg: &LabelConfig,
    info: &InputInfo,
    state: &State,
    cache_scope: &str,
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
        let key = cache_key(cache_scope, text);
        if !seen.insert(key[..16].to_vec()) {
            continue;
        }
        unique += 1;
        if cfg.use_cache && state.cache_get(&key)?.is_some() {
            cache_hits += 1;
            continue;
        }
        bytes += text.len() as u64;
    }
    let to_send = unique - cache_hits;
    let requests = to_send.div_ceil(cfg.batch_size as u64);
    let prompt = crate::prompt::Prompter::new(&cfg.labels, cfg.prompt_template.clone());
    let overhead = if cfg.batch_size > 1 {
        prompt.batch(&[""]).estimated_tokens()
    } else {
        prompt.single("").estimated_tokens()
    };
    let tokens = bytes.div_ceil(4) + requests * overhead;
    let base = &cfg.base;
    let orgs = base.org_count() as f64;
    let mut per_sec = f64::INFINITY;
    if !cfg.delay.is_zero() {
        per_sec = per_sec.min(1.0 / cfg.delay.as_secs_f64());
    }
    if let Some(rpm) = base.limits.rpm {
        per_sec = per_sec.min(orgs * rpm as f64 / 60.0);
    }
    if let (Some(tpm), true) = (base.limits.tpm, requests > 0) {
        per_sec = per_sec.min(orgs * tpm as f64 / 60.0 / (tokens as f64 / requests as f64));
    }
    let eta = if per_sec.is_finite() && per_sec > 0.0 {
        human(Duration::from_secs_f64(requests as f64 / per_sec))
    } else {
        "as fast as the provider answers".into()
    };
    let day_cap = base.limits.rpd.map(|d| d * base.org_count() as u64);
    let cost = tokens as f64 * base.prices.0;
    println!(
        "dry run for {} ({} rows, text column '{}')",
        info.path.display(),
        info.rows,
        &info.headers[info.text_col]
    );
    println!(
        "  empty texts:      {} (get '{}' without a request)",
        info.empty_rows, cfg.fallback_label
    );
    println!("  unique texts:     {unique}");
    println!(
        "  cache hits:       {cache_hits}{}",
        if cfg.use_cache { "" } else { " (--no-cache)" }
    );
    println!(
        "  requests:         {requests} (batch size {})",
        cfg.batch_size
    );
    println!("  estimated tokens: {tokens}");
    println!("  estimated cost:   ${cost:.4} (input tokens at --price-in)");
    println!(
        "  keys: {} in {} organization(s) · delay {}s · rpm {} per organization",
        base.keys.len(),
        base.org_count(),
        cfg.delay.as_secs_f64(),
        base.limits
            .rpm
            .map_or("unlimited".into(), |r| r.to_string())
    );
    println!("  estimated time:   {eta}");
    if let Some(cap) = day_cap {
        if requests > cap {
            println!("  note: {requests} requests exceed the {cap} per day the keys allow; it will take more than a day");
        }
    }
    Ok(())
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
    })
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
    let limits: Limits = cfg.limits;
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
    println!(
        "usage for {} from {} to {} (state: {})",
        v["provider"].as_str().unwrap_or(""),
        v["from"].as_str().unwrap_or(""),
        v["to"].as_str().unwrap_or(""),
        state_path.display()
    );
    let keys = v["keys"].as_array().cloned().unwrap_or_default();
    if keys.is_empty() {
        println!("  no keys and no recorded usage yet");
        return;
    }
    println!(
        "  {:<16} {:<10} {:<9} {:>8} {:>8} {:>7} {:>10} {:>10} {:>14}",
        "KEY", "STATUS", "HEALTH", "REQ", "OK", "ERR", "TOKENS", "COST", "LEFT TODAY"
    );
    for k in &keys {
        let label = match k["index"].as_u64() {
            Some(i) => format!("#{i} {}", k["key"].as_str().unwrap_or("")),
            None => format!("{} (not configured)", k["key"].as_str().unwrap_or("")),
        };
        for (scope, u) in [("today", &k["today"]), ("period", &k["total"])] {
            let errs: u64 = u["errors"]
                .as_object()
                .map_or(0, |m| m.values().filter_map(Value::as_u64).sum());
            let tokens =
                u["tokens_in"].as_u64().unwrap_or(0) + u["tokens_out"].as_u64().unwrap_or(0);
            let left = if scope == "today" {
                k["remaining"]["requests_today"]
                    .as_u64()
                    .map_or("-".into(), |r| format!("{r} req"))
            } else {
                String::new()
            };
            println!(
                "  {:<16} {:<10} {:<9} {:>8} {:>8} {:>7} {:>10} {:>10} {:>14}",
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
                u["requests"],
                u["successes"],
                errs,
                tokens,
                format!("${:.4}", u["cost_usd"].as_f64().unwrap_or(0.0)),
                left
            );
        }
        if let Some(until) = k["status_until"].as_str() {
            println!("    {} until {until}", k["status"].as_str().unwrap_or(""));
        }
    }
    let rotations = v["rotations"].as_array().cloned().unwrap_or_default();
    if !rotations.is_empty() {
        println!("  recent rotations:");
        for r in rotations.iter().take(10) {
            println!(
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
