//! `--dry-run`: what a run would send and cost, how long it would take, and what a day
//! of quota buys — without a request.

use std::time::Duration;

use crate::budget;
use crate::cli::BatchSize;
use crate::config::{Config, LabelConfig};
use crate::csvio::{self, InputInfo};
use crate::error::Result;
use crate::fewshot::Selection;
use crate::prompt::Prompter;
use crate::provider::classify::human;
use crate::store::{CacheScope, State};
use crate::ui::count;

/// `--dry-run`: what the run would do, without a request. The phases: read the input,
/// estimate, then show the counts, the keys, the time and what a day of quota buys.
pub fn dry_run(
    cfg: &LabelConfig,
    info: &InputInfo,
    state: &State,
    cache_scopes: &[CacheScope],
    prompter: &Prompter,
    batch_size: usize,
) -> Result<()> {
    let scan = scan(cfg, info, state, cache_scopes)?;
    let est = estimate(cfg, info, &scan, prompter, batch_size);
    show_counts(cfg, info, &scan, &est, batch_size);
    show_examples(prompter, batch_size, est.average_bytes);
    votes_cost(cfg, prompter, batch_size, &est);
    show_keys(cfg, &est);
    show_time(&est);
    show_budgets(cfg, info, prompter, &est, batch_size);
    Ok(())
}

/// What reading the input found: the distinct non-empty texts, those the cache already
/// labels, and the bytes of the others.
struct Scan {
    unique: u64,
    cache_hits: u64,
    bytes: u64,
}

/// What sending the texts the cache does not label would take.
struct Estimate {
    to_send: u64,
    requests: u64,
    average_bytes: f64,
    tokens: u64,
    /// What an average request is estimated to cost (`None` without a request).
    tokens_a_request: Option<f64>,
    eta: String,
    /// The seconds the requests take at the keys' pace (`None` when nothing paces them).
    seconds: Option<f64>,
    /// The requests a day all keys allow, when a daily limit is known.
    day_cap: Option<u64>,
    cost: f64,
}

/// Reads the input's rows as the run would: empty texts and repeats need no request, nor
/// (unless `--no-cache`) texts any provider of the pool labeled before.
fn scan(
    cfg: &LabelConfig,
    info: &InputInfo,
    state: &State,
    cache_scopes: &[CacheScope],
) -> Result<Scan> {
    let mut rdr = csvio::reader(&info.path, info.delimiter)?;
    let mut rec = csv::StringRecord::new();
    let mut seen = std::collections::HashSet::new();
    let (mut unique, mut cache_hits, mut bytes) = (0u64, 0u64, 0u64);
    let mut idx = 0;
    while idx < info.rows
        && rdr
            .read_record(&mut rec)
            .map_err(|e| csvio::describe_csv_error(&info.path, Some(&info.headers), e))?
    {
        idx += 1;
        let text = rec.get(info.text_col).unwrap_or("");
        if text.trim().is_empty() {
            continue;
        }
        let key = cache_scopes[0].key(text);
        if !seen.insert(key[..16].to_vec()) {
            continue;
        }
        unique += 1;
        if cfg.use_cache {
            let mut hit = state.cache_get(&key)?.is_some();
            for scope in &cache_scopes[1..] {
                hit = hit || state.cache_get(&scope.key(text))?.is_some();
            }
            if hit {
                cache_hits += 1;
                continue;
            }
        }
        bytes += text.len() as u64;
    }
    Ok(Scan {
        unique,
        cache_hits,
        bytes,
    })
}

/// Requests, tokens, cost and time for what `scan` left to send.
fn estimate(
    cfg: &LabelConfig,
    info: &InputInfo,
    scan: &Scan,
    prompter: &Prompter,
    batch_size: usize,
) -> Estimate {
    let to_send = scan.unique - scan.cache_hits;
    let requests = to_send.div_ceil(batch_size as u64);
    let average_bytes = if to_send > 0 {
        scan.bytes as f64 / to_send as f64
    } else {
        info.average_text_bytes()
    };
    let tokens_per_row = per_row_tokens(prompter, batch_size, average_bytes);
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
    let seconds = (per_sec.is_finite() && per_sec > 0.0).then(|| requests as f64 / per_sec);
    let eta = match seconds {
        Some(s) => human(Duration::from_secs_f64(s)),
        None => "as fast as the provider answers".into(),
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
    Estimate {
        to_send,
        requests,
        average_bytes,
        tokens,
        tokens_a_request,
        eta,
        seconds,
        day_cap,
        cost,
    }
}

/// The input, what needs no request, and what the rest costs.
fn show_counts(
    cfg: &LabelConfig,
    info: &InputInfo,
    scan: &Scan,
    est: &Estimate,
    batch_size: usize,
) {
    crate::outln!(
        "dry run for {} ({}, text column '{}')",
        info.path.display(),
        count(info.rows, "row"),
        &info.headers[info.text_col]
    );
    crate::outln!(
        "  empty texts:      {} (get '{}' without a request)",
        info.empty_rows,
        cfg.fallback_label
    );
    crate::outln!("  unique texts:     {}", scan.unique);
    crate::outln!(
        "  cache hits:       {}{}",
        scan.cache_hits,
        if cfg.use_cache { "" } else { " (--no-cache)" }
    );
    crate::outln!(
        "  requests:         {} (batch size {})",
        est.requests,
        batch_size
    );
    crate::outln!("  estimated tokens: {}", est.tokens);
    crate::outln!(
        "  estimated cost:   ${:.4} (input tokens at --price-in)",
        est.cost
    );
}

/// `--examples`: how many each request carries, chosen how, and what they add to it (the
/// tokens above count them already).
fn show_examples(prompter: &Prompter, batch_size: usize, average_bytes: f64) {
    let Some(shots) = prompter.shots() else {
        return;
    };
    let tokens = |p: &Prompter| p.estimated_request_tokens(batch_size, average_bytes);
    let added = tokens(prompter) - tokens(&prompter.without_shots());
    let (how, about) = match shots.selection() {
        Selection::Balanced => ("balanced", ""),
        // Each request's own examples: their length is the balanced ones' estimate.
        Selection::Similar => ("similar, the nearest to each request's texts", "about "),
    };
    crate::outln!(
        "  examples:         {} per request ({how}) from {}, {about}+{added:.0} tokens a request",
        shots.per_request(),
        shots.examples().path.display()
    );
}

/// Each provider's keys, organizations and pace (and keys only assumed for the estimate).
fn show_keys(cfg: &LabelConfig, est: &Estimate) {
    for c in cfg.pool() {
        crate::outln!(
            "  {}keys: {} in {} · delay {}s · rpm {} per organization{}",
            if cfg.is_pool() {
                format!("{}/{} ", c.provider.as_str(), c.model)
            } else {
                String::new()
            },
            c.keys.len(),
            count(c.org_count() as u64, "organization"),
            cfg.delay.as_secs_f64(),
            c.limits_in_force()
                .rpm
                .map_or("unlimited".into(), |r| r.to_string()),
            if cfg.is_pool() {
                format!(
                    " · {:.2} requests/s",
                    requests_per_second(c, est.tokens_a_request)
                )
            } else {
                String::new()
            }
        );
        if c.keys_assumed {
            crate::outln!(
                "  assumed:          {} — no {} key is configured yet (in {} or the environment); --keys N assumes N",
                count(c.keys.len() as u64, "key"),
                c.provider.as_str(),
                c.env_file.display()
            );
        }
    }
}

/// How long the run would take, and whether the daily limits stretch it over days.
fn show_time(est: &Estimate) {
    crate::outln!("  estimated time:   {}", est.eta);
    if let Some(cap) = est.day_cap {
        let requests = est.requests;
        if requests > cap {
            crate::outln!("  note: {requests} requests exceed the {cap} per day the keys allow; it will take more than a day");
        }
    }
}

/// What a day of quota buys, per provider and batch size (this run's and `auto`'s), and
/// for a pool all providers together.
fn show_budgets(
    cfg: &LabelConfig,
    info: &InputInfo,
    prompter: &Prompter,
    est: &Estimate,
    batch_size: usize,
) {
    let (average_bytes, to_send) = (est.average_bytes, est.to_send);
    let shown = |v: Option<u64>| v.map_or("none".to_string(), |v| v.to_string());
    // One batch size serves every provider of a pool: chosen from the lowest limits.
    let auto = budget::auto_batch_size(&cfg.limits_in_force(), prompter, info.average_text_bytes());
    let mut sizes = vec![(format!("batch size {batch_size}"), batch_size)];
    if cfg.batch_size == BatchSize::Auto {
        sizes[0].0 = format!("batch size auto ({batch_size})");
    } else {
        sizes.push((format!("batch size auto ({})", auto.size), auto.size));
    }
    // Rows a day all providers' keys label together, per batch size.
    let mut pooled: Vec<Option<f64>> = vec![Some(0.0); sizes.len()];
    for c in cfg.pool() {
        let l = &c.limits_in_force();
        crate::outln!(
            "  budget per key or organization{} (rpm {} · rph {} · rpd {} · tpm {} · tpd {}; texts {:.1} tokens a row):",
            if cfg.is_pool() {
                format!(" of {}/{}", c.provider.as_str(), c.model)
            } else {
                String::new()
            },
            shown(l.rpm),
            shown(l.rph),
            shown(l.rpd),
            shown(l.tpm),
            shown(l.tpd),
            average_bytes / 4.0
        );
        if let Some(line) = assumed_line(c) {
            crate::outln!("    {line}");
        }
        for (i, (name, size)) in sizes.iter().enumerate() {
            let (line, per_day) = budget_line(c, prompter, *size, average_bytes, to_send);
            crate::outln!("    {:<24}{line}", format!("{name}:"));
            pooled[i] = pooled[i].zip(per_day).map(|(a, b)| a + b);
        }
    }
    if cfg.is_pool() {
        for ((name, _), per_day) in sizes.iter().zip(&pooled) {
            if let Some(r) = per_day.filter(|r| *r > 0.0) {
                crate::outln!(
                    "  {name}, all providers together: {} rows a day · {:.2} days for {}",
                    budget::thousands(r),
                    to_send as f64 / r,
                    count(to_send, "row")
                );
            }
        }
    }
    crate::outln!("    auto: {}", auto.reason);
}

/// Estimated tokens a row at `batch` texts a request.
fn per_row_tokens(prompter: &Prompter, batch: usize, average_bytes: f64) -> f64 {
    prompter.estimated_request_tokens(batch, average_bytes) / batch as f64
}

/// `--votes` above 1: what the run's requests, tokens, time and rows a day become.
fn votes_cost(cfg: &LabelConfig, prompter: &Prompter, batch: usize, est: &Estimate) {
    let average_bytes = est.average_bytes;
    if cfg.votes.n <= 1 {
        return;
    }
    let request = prompter.estimated_request_tokens(batch, average_bytes);
    let limits = cfg.base.limits_in_force();
    let one = crate::votes::cost::OneVote {
        requests: est.requests,
        tokens: est.tokens,
        seconds: est.seconds,
        tokens_per_row: per_row_tokens(prompter, batch, average_bytes),
        rows_per_key_day: budget::rows_per_day(&limits, batch, request).rows,
    };
    for line in crate::votes::cost::lines(cfg.votes.n, &one) {
        crate::outln!("  {line}");
    }
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

/// One dry-run budget line for one provider: tokens per row, rows per key a day, the
/// binding limit, and the days `rows` take with its configured keys; and the rows a day
/// all its keys label (`None` without a daily limit).
fn budget_line(
    base: &Config,
    prompter: &Prompter,
    batch: usize,
    average_bytes: f64,
    rows: u64,
) -> (String, Option<f64>) {
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
        count(keys as u64, "key")
    } else {
        format!(
            "{} in {}",
            count(keys as u64, "key"),
            count(orgs as u64, "organization")
        )
    };
    let capacity = match (day.rows, day.binding) {
        (Some(r), Some(limit)) if r > 0.0 => {
            let days = rows as f64 / (r * orgs as f64);
            format!(
                "{} rows per key a day ({} bind) · {days:.2} days for {} with {with}",
                budget::thousands(r),
                limit.describe(),
                count(rows, "row"),
            )
        }
        (Some(_), Some(limit)) => format!(
            "no row fits: one request is larger than the {}",
            limit.describe()
        ),
        _ => "no daily limit known".to_string(),
    };
    let all_keys = day.rows.map(|r| r * orgs as f64);
    (
        format!("{per_row:.1} tokens a row{ratio} · {capacity}"),
        all_keys,
    )
}

/// Which of a provider's limits are assumed (free-tier defaults nobody stated or set):
/// `assumed limits: rpd 14400 · tpd 500000 (…)`, or `None` when every limit is known.
pub fn assumed_line(c: &crate::config::Config) -> Option<String> {
    let set = c.org_limits.first().unwrap_or(&c.limits);
    let assumed = set.assumed();
    if assumed.is_empty() {
        return None;
    }
    let list: Vec<String> = assumed.iter().map(|(d, v)| format!("{d} {v}")).collect();
    Some(format!(
        "assumed limits: {} (free-tier defaults no reply has stated and you did not set; an assumed hour or day limit never stops the run, the provider's own 429 does)",
        list.join(" · ")
    ))
}
