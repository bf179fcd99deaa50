//! `autolabel keys list|disable|enable|reset|rotate`: what each configured key has used
//! against its quotas, and the decisions people make about keys, stored in the state by
//! fingerprint (running runs read them within seconds). Keys are only ever shown masked.

use std::time::SystemTime;

use crate::cli::{KeysArgs, KeysCommand, KeysDisableArgs};
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
        KeysCommand::List(_) => list(&pool, &state, json)?,
        KeysCommand::Rotate(_) => rotate(&pool, &state, json)?,
        KeysCommand::Disable(a) => {
            let (cfg, key) = pick(&pool, a.index)?;
            disable(cfg, key, a, &state, json)?;
        }
        KeysCommand::Enable(a) => {
            let (cfg, key) = pick(&pool, a.index)?;
            enable(cfg, key, &state, json)?;
        }
        KeysCommand::Reset(a) => {
            let (cfg, key) = pick(&pool, a.index)?;
            reset(cfg, key, a.what(), &state, json)?;
        }
    }
    Ok(Outcome::Complete)
}

/// `keys list`: every key of every provider, with its quotas, status and activity.
fn list(pool: &[Config], state: &State, json: bool) -> Result<()> {
    let mut views = Vec::new();
    for cfg in pool {
        views.extend(key_views(cfg, state)?);
    }
    if json {
        crate::outln!(
            "{}",
            serde_json::to_string_pretty(&views).unwrap_or_default()
        );
    } else {
        print_list(&views, pool.len() > 1);
    }
    Ok(())
}

/// `keys rotate`: every running run moves off its current key.
fn rotate(pool: &[Config], state: &State, json: bool) -> Result<()> {
    for cfg in pool {
        state.request_rotation(cfg.provider.as_str())?;
    }
    let what = "rotation requested: each running run moves off the key it uses now for a minute, within a few seconds";
    if json {
        crate::outln!("{}", serde_json::json!({ "done": what }));
    } else {
        crate::outln!("{what}");
    }
    Ok(())
}

/// The key `disable`, `enable` and `reset` name: by its index among one provider's keys.
fn pick(pool: &[Config], index: usize) -> Result<(&Config, &ApiKey)> {
    let [cfg] = pool else {
        return Err(Error::Usage(
            "keys disable, enable and reset take one --provider: key numbers count within a provider".into(),
        ));
    };
    let key = cfg.keys.iter().find(|k| k.index == index).ok_or_else(|| {
        Error::Usage(format!(
            "no key {index}: the env file has {}, numbered from 1 (see autolabel keys list)",
            crate::ui::count(
                cfg.keys.len() as u64,
                &format!("{} key", cfg.provider.as_str())
            )
        ))
    })?;
    Ok((cfg, key))
}

/// Says what was done to `key`: a line, or with `--json` an object.
fn done(what: String, key: &ApiKey, json: bool) {
    if json {
        let v = serde_json::json!({
            "done": what,
            "key": key.masked,
            "index": key.index,
        });
        crate::outln!("{v}");
    } else {
        crate::outln!("{what}");
    }
}

/// `keys disable N [--for D] [--reason R]`
fn disable(
    cfg: &Config,
    key: &ApiKey,
    a: &KeysDisableArgs,
    state: &State,
    json: bool,
) -> Result<()> {
    let provider = cfg.provider.as_str();
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
    done(
        format!("key {label} disabled {how_long}; running runs stop using it within a few seconds"),
        key,
        json,
    );
    Ok(())
}

/// `keys enable N`
fn enable(cfg: &Config, key: &ApiKey, state: &State, json: bool) -> Result<()> {
    let provider = cfg.provider.as_str();
    state.set_key_disabled(provider, &key.fingerprint, &key.masked, false, None, "")?;
    state.log_rotation(provider, "-", &key.label(), "manual: enabled", "manual")?;
    done(format!("key {} enabled", key.label()), key, json);
    Ok(())
}

/// `keys reset N [--minute|--day|--month|--all]`
fn reset(cfg: &Config, key: &ApiKey, what: &str, state: &State, json: bool) -> Result<()> {
    let provider = cfg.provider.as_str();
    let now = SystemTime::now();
    // Today's and this month's use as the ledger holds it, before any earlier reset.
    let [day, month] = period_use(cfg, state, key, None, now)?;
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
        key,
        json,
    );
    Ok(())
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
