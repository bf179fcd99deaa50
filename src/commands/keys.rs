//! `autolabel keys list|disable|enable|reset|rotate`: what each configured key has used
//! against its quotas, and the decisions people make about keys, stored in the state by
//! fingerprint (running runs read them within seconds). Keys are only ever shown masked.

use std::time::SystemTime;

use crate::cli::{KeysArgs, KeysCommand};
use crate::config::Config;
use crate::error::{Error, Outcome, Result};
use crate::keys::ApiKey;
use crate::report::keys::{key_views, period_use, KeyView};
use crate::store::State;
use crate::timeutil::{self, Day};

pub fn run(cmd: KeysCommand) -> Result<Outcome> {
    let args: &KeysArgs = match &cmd {
        KeysCommand::List(a) | KeysCommand::Rotate(a) => a,
        KeysCommand::Disable(a) => &a.keys,
        KeysCommand::Enable(a) => &a.keys,
        KeysCommand::Reset(a) => &a.keys,
    };
    let mut pool = Config::resolve_pool(
        &args.common(),
        (None, None),
        crate::limits::Limits::default(),
        None,
    )?;
    let state = State::open_at(&pool[0].state)?;
    for cfg in &mut pool {
        cfg.load_learned(&state)?;
    }
    let json = args.json;
    match &cmd {
        KeysCommand::List(_) => {
            let mut views = Vec::new();
            for cfg in &pool {
                views.extend(key_views(cfg, &state)?);
            }
            if json {
                crate::outln!(
                    "{}",
                    serde_json::to_string_pretty(&views).unwrap_or_default()
                );
            } else {
                print_list(&views, pool.len() > 1);
            }
            return Ok(Outcome::Complete);
        }
        KeysCommand::Rotate(_) => {
            for cfg in &pool {
                state.request_rotation(cfg.provider.as_str())?;
            }
            let what = "rotation requested: each running run moves off the key it uses now for a minute, within a few seconds";
            if json {
                crate::outln!("{}", serde_json::json!({ "done": what }));
            } else {
                crate::outln!("{what}");
            }
            return Ok(Outcome::Complete);
        }
        _ => {}
    }
    // A key is named by its index among one provider's keys.
    let [cfg] = pool.as_slice() else {
        return Err(Error::Usage(
            "keys disable, enable and reset take one --provider: key numbers count within a provider".into(),
        ));
    };
    let provider = cfg.provider.as_str();
    let pick = |index: usize| -> Result<&ApiKey> {
        cfg.keys.iter().find(|k| k.index == index).ok_or_else(|| {
            Error::Usage(format!(
                "no key {index}: the env file has {}, numbered from 1 (see autolabel keys list)",
                crate::ui::count(cfg.keys.len() as u64, &format!("{provider} key"))
            ))
        })
    };
    let done = |what: String, key: Option<&ApiKey>| {
        if json {
            let v = serde_json::json!({
                "done": what,
                "key": key.map(|k| k.masked.clone()),
                "index": key.map(|k| k.index),
            });
            crate::outln!("{v}");
        } else {
            crate::outln!("{what}");
        }
    };
    match &cmd {
        KeysCommand::List(_) | KeysCommand::Rotate(_) => {}
        KeysCommand::Disable(a) => {
            let key = pick(a.index)?;
            let reason: String = a
                .reason
                .chars()
                .filter(|c| !c.is_control())
                .take(200)
                .collect();
            let until = a.for_.map(|d| SystemTime::now() + d);
            state.set_key_disabled(
                provider,
                &key.fingerprint,
                &key.masked,
                true,
                until,
                &reason,
            )?;
            let label = key.label();
            state.log_rotation(
                provider,
                &label,
                "-",
                &format!("manual: disabled ({reason})"),
                "manual",
            )?;
            let how_long = until
                .map(|u| format!("until {}", timeutil::rfc3339(u)))
                .unwrap_or_else(|| "until `autolabel keys enable`".into());
            done(format!("key {label} disabled {how_long}; running runs stop using it within a few seconds"), Some(key));
        }
        KeysCommand::Enable(a) => {
            let key = pick(a.index)?;
            state.set_key_disabled(provider, &key.fingerprint, &key.masked, false, None, "")?;
            state.log_rotation(provider, "-", &key.label(), "manual: enabled", "manual")?;
            done(format!("key {} enabled", key.label()), Some(key));
        }
        KeysCommand::Reset(a) => {
            let key = pick(a.index)?;
            let what = a.what();
            let now = SystemTime::now();
            // Today's and this month's use as the ledger holds it, before any earlier reset.
            let [day, month] = period_use(cfg, &state, key, None, now)?;
            let day_start = Day::of(now);
            let month_start = Day::of(timeutil::month_start(now, cfg.quota_reset_day));
            state.reset_key(
                provider,
                &key.fingerprint,
                &key.masked,
                what,
                (&day_start, day),
                (&month_start, month),
            )?;
            state.log_rotation(
                provider,
                &key.label(),
                &key.label(),
                &format!("manual: reset ({what})"),
                "manual",
            )?;
            done(
                format!(
                    "key {}: {what} counts and the limits they hit forgotten",
                    key.label()
                ),
                Some(key),
            );
        }
    }
    Ok(Outcome::Complete)
}

fn print_list(views: &[KeyView], pool: bool) {
    let mut shown: Option<&str> = None;
    for v in views {
        // With several providers, each one's keys under its name.
        if pool && shown != Some(v.provider) {
            crate::outln!("{}:", v.provider);
            shown = Some(v.provider);
        }
        let name = v
            .name
            .as_deref()
            .map(|n| format!(" {n}"))
            .unwrap_or_default();
        let until = v
            .status_until
            .as_deref()
            .map(|u| format!(" until {u}"))
            .unwrap_or_default();
        let reason = v
            .status_reason
            .as_deref()
            .filter(|r| !r.is_empty())
            .map(|r| format!(" ({r})"))
            .unwrap_or_default();
        crate::outln!(
            "#{}{name} {} · priority {} · {}{until}{reason} · {} · last used {} · last error {}",
            v.index,
            v.key,
            v.priority,
            v.status,
            v.health,
            v.last_used.as_deref().unwrap_or("never"),
            v.last_error.as_deref().unwrap_or("none"),
        );
        for q in &v.quotas {
            let used = match (q.used, q.used_pct) {
                (Some(u), Some(p)) => format!("{u} of {} ({p:.1} %)", q.limit),
                _ => format!("? of {} (counted by running runs)", q.limit),
            };
            let whose = if q.source == "key" {
                ""
            } else {
                " [provider limit]"
            };
            crate::outln!("    {}: {used}{whose}", q.quota.replace('_', " "));
        }
    }
}
