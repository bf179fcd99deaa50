//! `autolabel test-keys`: one cheap request per key, and what the provider said; with a
//! list of providers, every key of every provider, grouped by provider.
//! A key that passes loses an earlier run's "invalid" mark.

use serde_json::json;

use crate::cli::TestKeysArgs;

mod shared;

use crate::config::Config;
use crate::error::{Outcome, Result};
use crate::keys::ApiKey;
use crate::limits::Dim;
use crate::pacing::QuotaOp;
use crate::provider::classify::{CallError, RateHeaders};
use crate::provider::defaults::{self, Limits};
use crate::provider::{ChatRequest, Client};
use crate::store::{HealthReason, KeyStatus, State, StoredHealth};

pub async fn run(args: &TestKeysArgs) -> Result<Outcome> {
    let pool = Config::resolve_pool(&args.common, (None, None), Limits::default(), None)?;
    let (json_out, chat) = (args.json, args.chat);
    let state = State::open_at(&pool[0].state)?;
    let mut all_ok = true;
    let mut all_results = Vec::new();
    for (i, cfg) in pool.iter().enumerate() {
        let results = check_provider(cfg, &state, chat).await?;
        all_ok &= results.iter().all(|r| r["status"] == "ok");
        let mut results = results;
        let groups = if chat {
            shared::groups(cfg, &state, &results)?
        } else {
            Vec::new()
        };
        shared::mark(&mut results, &groups);
        if !json_out {
            if i > 0 {
                crate::outln!("");
            }
            print_table(cfg, &results, chat);
            for g in &groups {
                crate::outln!("  {}", g.describe());
            }
        }
        all_results.extend(results);
    }
    if json_out {
        crate::outln!(
            "{}",
            serde_json::to_string_pretty(&all_results).expect("json")
        );
    }
    Ok(if all_ok {
        Outcome::Complete
    } else {
        Outcome::CheckFailed
    })
}

/// One request per key of one provider; updates the stored health on a definite answer.
async fn check_provider(cfg: &Config, state: &State, chat: bool) -> Result<Vec<serde_json::Value>> {
    let client = Client::new(&cfg.base_url, &cfg.model, cfg.json_mode, cfg.timeout, 2)?;
    let provider = cfg.provider.as_str();
    let mut results = Vec::new();
    for key in &cfg.keys {
        let res = if chat {
            let req = ChatRequest {
                system: "Reply with the single word: ok".into(),
                user: "ok".into(),
                max_tokens: 1,
                json: false,
            };
            client.chat(&key.secret, &req).await
        } else {
            client.list_models(&key.secret).await
        };
        let (status, detail) = match &res.result {
            Ok(_) => ("ok", None),
            // A 2xx of the wrong shape (an HTML page, a proxy's answer): nothing was
            // learned about the key, so it is neither ok nor cleared of an invalid mark.
            Err(e) if res.status.is_some_and(|s| (200..300).contains(&s)) => {
                ("unverified", Some(e.describe()))
            }
            Err(CallError::InvalidKey { .. }) => ("invalid", None),
            Err(e @ (CallError::RateLimited { .. } | CallError::QuotaExhausted { .. })) => {
                ("rate-limited", Some(e.describe()))
            }
            Err(e) => ("error", Some(e.describe())),
        };
        // Only a definite answer changes the stored health.
        let stored_status = match status {
            "ok" => Some((KeyStatus::Available, HealthReason::TestKeysPassed)),
            "invalid" => Some((KeyStatus::Invalid, HealthReason::TestKeysInvalid)),
            _ => None,
        };
        if let Some((s, reason)) = stored_status {
            let previous = state
                .load_health(provider)?
                .into_iter()
                .find(|h| h.fingerprint == key.fingerprint);
            // /models says nothing about a daily quota: keep an exhaustion unless a chat passed.
            let keep_exhausted = !chat
                && s == KeyStatus::Available
                && previous
                    .as_ref()
                    .is_some_and(|p| p.status == KeyStatus::Exhausted);
            if !keep_exhausted {
                state.save_health(
                    provider,
                    &StoredHealth {
                        fingerprint: key.fingerprint.clone(),
                        masked: key.masked.clone(),
                        status: s,
                        until: None,
                        reason,
                    },
                )?;
            }
        }
        if chat && status == "ok" {
            tell_the_state(cfg, state, key_index(cfg, key), &res.headers)?;
        }
        results.push(json!({
            "provider": provider,
            "index": key.index,
            "key": key.masked,
            "status": status,
            "latency_ms": (res.latency.as_secs_f64() * 1000.0).round() as u64,
            "remaining_requests": res.headers.remaining_requests,
            "limit_requests": res.headers.limit_requests,
            "named_org": res.headers.org,
            "remaining_tokens": res.headers.remaining_tokens,
            "detail": detail,
        }));
    }
    Ok(results)
}

/// The text form for one provider: a header line, one line per key, the count of ok keys.
fn print_table(cfg: &Config, results: &[serde_json::Value], chat: bool) {
    let provider = cfg.provider.as_str();
    {
        crate::outln!(
            "{} for {} at {} ({})",
            crate::ui::count(cfg.keys.len() as u64, "key"),
            provider,
            crate::keys::mask::scrub(&cfg.base_url),
            if chat {
                "one-token chat"
            } else {
                "GET /models"
            }
        );
        crate::outln!(
            "  {:<3} {:<14} {:<13} {:>9} {:>10} {:>10}",
            "#",
            "KEY",
            "STATUS",
            "LATENCY",
            "REQ LEFT",
            "TOK LEFT"
        );
        for r in results {
            let n = |v: &serde_json::Value| v.as_u64().map_or("-".to_string(), |x| x.to_string());
            crate::outln!(
                "  {:<3} {:<14} {:<13} {:>6} ms {:>10} {:>10}{}",
                r["index"],
                r["key"].as_str().unwrap_or(""),
                r["status"].as_str().unwrap_or(""),
                r["latency_ms"],
                n(&r["remaining_requests"]),
                n(&r["remaining_tokens"]),
                r["detail"]
                    .as_str()
                    .map(|d| format!("  {d}"))
                    .unwrap_or_default()
            );
        }
        let ok = results.iter().filter(|r| r["status"] == "ok").count();
        crate::outln!("  {ok}/{} ok", results.len());
    }
}

fn key_index(cfg: &Config, key: &ApiKey) -> usize {
    cfg.keys
        .iter()
        .position(|k| k.index == key.index)
        .unwrap_or(0)
}

/// A passing chat says what the provider counts now: the limits it states are
/// remembered, and its count of the day replaces the shared one (e.g. after the day
/// reset, or after the provider raised the quota), so the next run starts from it.
fn tell_the_state(cfg: &Config, state: &State, key: usize, h: &RateHeaders) -> Result<()> {
    let provider = cfg.provider.as_str();
    let meaning = defaults::header_meaning(cfg.provider);
    let fingerprint = &cfg.keys[key].fingerprint;
    for (dim, value, header) in meaning.stated(h) {
        state.save_learned_limit(provider, &cfg.model, fingerprint, (dim, value), header)?;
    }
    let (Some(dim @ (Dim::Rpd | Dim::Tpd)), Some(limit), Some(remaining)) =
        (meaning.requests, h.limit_requests, h.remaining_requests)
    else {
        return Ok(());
    };
    let day = defaults::day_start(cfg.provider);
    let store = crate::store::open_quota_store(&cfg.state)?;
    let op = QuotaOp::RestateDay {
        day,
        count: (dim, limit, remaining),
        reset: h.reset_requests,
    };
    store
        .apply(cfg.org_id(cfg.key_orgs[key]).as_str(), &op)
        .map(|_| ())
        .map_err(|e| cfg.state.error(String::from(e)))
}
