//! `autolabel keys list|disable|enable|reset|rotate`: what each configured key has used
//! against its quotas, and the decisions people make about keys, stored in the state by
//! fingerprint (running runs read them within seconds). Keys are only ever shown masked.

use crate::cli::{KeysArgs, KeysCommand, KeysDisableArgs};
use crate::config::Config;
use crate::control::{self, KeyAction};
use crate::error::{Error, Outcome, Result};
use crate::keys::ApiKey;
use crate::report::key_report::KeyReport;
use crate::report::keys::{key_views, DEFAULT_DAYS};
use crate::store::State;

pub fn run(cmd: KeysCommand) -> Result<Outcome> {
    let args: &KeysArgs = match &cmd {
        KeysCommand::List(a) => a,
        KeysCommand::Rotate(a) => &a.keys,
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
    let state = super::open_existing(&pool[0].state, &args.view)?;
    for cfg in &mut pool {
        cfg.load_learned(&state)?;
    }
    let json = args.json;
    match &cmd {
        KeysCommand::List(_) => list(&pool, &state, json)?,
        KeysCommand::Rotate(a) => match a.index {
            None => rotate(&pool, &state, json)?,
            Some(i) => act(&pool, i, &state, json, KeyAction::rotate_out("the CLI"))?,
        },
        KeysCommand::Disable(a) => act(&pool, a.index, &state, json, disable(a))?,
        KeysCommand::Enable(a) => act(&pool, a.index, &state, json, KeyAction::Enable)?,
        KeysCommand::Reset(a) => act(&pool, a.index, &state, json, KeyAction::Reset(a.what()))?,
    }
    Ok(Outcome::Complete)
}

/// `keys list`: every key of every provider, with its quotas, status and activity.
fn list(pool: &[Config], state: &State, json: bool) -> Result<()> {
    let mut views = Vec::new();
    for cfg in pool {
        views.extend(key_views(cfg, state, DEFAULT_DAYS)?);
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

/// `keys rotate` without a key: every running run moves off its current key.
fn rotate(pool: &[Config], state: &State, json: bool) -> Result<()> {
    let what = control::rotate(pool, state, control::CLI)?;
    if json {
        crate::outln!("{}", serde_json::json!({ "done": what }));
    } else {
        crate::outln!("{what}");
    }
    Ok(())
}

/// The key `disable`, `enable`, `reset` and `rotate N` name: by its index among one
/// provider's keys.
fn pick(pool: &[Config], index: usize) -> Result<(&Config, &ApiKey)> {
    let [cfg] = pool else {
        return Err(Error::Usage(
            "keys disable, enable, reset and rotate N take one --provider: key numbers count within a provider".into(),
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

/// `keys disable N [--for D] [--reason R]`
fn disable(a: &KeysDisableArgs) -> KeyAction {
    KeyAction::Disable {
        reason: a.reason.clone(),
        duration: a.for_,
    }
}

/// `disable`, `enable`, `reset` or `rotate N` of key `index`, recorded as done from the CLI.
fn act(pool: &[Config], index: usize, state: &State, json: bool, action: KeyAction) -> Result<()> {
    let (cfg, key) = pick(pool, index)?;
    let what = control::apply(cfg, key, &action, state, control::CLI)?;
    done(what, key, json);
    Ok(())
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

fn print_list(views: &[KeyReport], pool: bool) {
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
        // A disabled key still shows what the provider did to it.
        let also = match &v.condition {
            c if v.disabled() && c.state != "available" => format!(" · also {}", c.state),
            _ => String::new(),
        };
        crate::outln!(
            "#{}{name} {} · priority {} · {}{until}{reason}{also} · {} · last used {} · last error {}",
            v.index.unwrap_or_default(),
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
            let whose = match (q.source, q.origin) {
                ("key", _) => String::new(),
                (_, "default") => " [provider limit: free-tier default, assumed]".into(),
                (_, origin) => format!(" [provider limit, {origin}]"),
            };
            crate::outln!("    {}: {used}{whose}", q.quota.replace('_', " "));
        }
    }
}
