//! What people do to keys — disable (with a reason, for a while), enable, reset a
//! period's counts, rotate a chosen key out or the keys in use — the same from
//! `autolabel keys` and from the dashboard: each
//! stored in the state (running runs read it within seconds) and recorded in the action
//! log with who did it. These are actions, not rotations: a run that moves off a key
//! because of one logs that rotation itself.

use std::time::{Duration, SystemTime};

use crate::config::Config;
use crate::error::Result;
use crate::keys::ApiKey;
use crate::report::key_report::period_use;
use crate::store::{events, Action, State};
use crate::timeutil::{self, Day};

/// Who did it, when the CLI did.
pub const CLI: &str = "cli";

/// The longest reason kept.
pub const REASON_CHARS: usize = 200;

/// How long rotating a chosen key takes it out: runs move to another key meanwhile, and
/// it is back by itself after.
pub const ROTATE_OUT_FOR: Duration = Duration::from_secs(60);

/// What a person asked for.
#[derive(Debug, Clone, PartialEq)]
pub enum KeyAction {
    Disable {
        reason: String,
        duration: Option<Duration>,
    },
    Enable,
    /// minute, day, month or all.
    Reset(&'static str),
}

impl KeyAction {
    /// Rotating a chosen key: a disable for [`ROTATE_OUT_FOR`] that ends by itself, so
    /// every run moves to another key now and may come back after. `from` says where it
    /// was asked ("the dashboard", "the CLI") for the key's reason. One definition for
    /// `autolabel keys rotate N` and the page's "rotate" so they cannot drift apart.
    pub fn rotate_out(from: &str) -> KeyAction {
        KeyAction::Disable {
            reason: format!("rotated out for a minute from {from}"),
            duration: Some(ROTATE_OUT_FOR),
        }
    }
}

/// `what` of a reset, as the CLI and the API name it.
pub fn reset_what(s: &str) -> Option<&'static str> {
    ["minute", "day", "month", "all"]
        .into_iter()
        .find(|w| *w == s)
}

/// A reason fit to keep: control characters dropped, at most [`REASON_CHARS`].
pub fn clean_reason(reason: &str) -> String {
    reason
        .chars()
        .filter(|c| !c.is_control())
        .take(REASON_CHARS)
        .collect()
}

/// Does `action` to `key` of `cfg`, records it with `who`, and says what was done.
pub fn apply(
    cfg: &Config,
    key: &ApiKey,
    action: &KeyAction,
    state: &State,
    who: &str,
) -> Result<String> {
    let provider = cfg.provider.as_str();
    let label = key.label();
    let (name, detail, done) = match action {
        KeyAction::Disable { reason, duration } => {
            let reason = clean_reason(reason);
            let until = duration.map(|d| SystemTime::now() + d);
            state.set_key_disabled(
                provider,
                &key.fingerprint,
                &key.masked,
                true,
                until,
                &reason,
            )?;
            let how_long = until
                .map(|u| format!("until {}", timeutil::rfc3339(u)))
                .unwrap_or_else(|| "until `autolabel keys enable`".into());
            let done = format!(
                "key {label} disabled {how_long}; running runs stop using it within a few seconds"
            );
            ("disable", format!("{reason} ({how_long})"), done)
        }
        KeyAction::Enable => {
            state.set_key_disabled(provider, &key.fingerprint, &key.masked, false, None, "")?;
            ("enable", String::new(), format!("key {label} enabled"))
        }
        KeyAction::Reset(what) => {
            reset(cfg, key, what, state)?;
            let done = format!("key {label}: {what} counts and the limits they hit forgotten");
            ("reset", what.to_string(), done)
        }
    };
    record(state, provider, &label, name, &detail, who)?;
    Ok(done)
}

/// Asks every run on the state to move off the key it uses now, and records it.
pub fn rotate(pool: &[Config], state: &State, who: &str) -> Result<String> {
    for cfg in pool {
        state.request_rotation(cfg.provider.as_str())?;
        record(
            state,
            cfg.provider.as_str(),
            "-",
            "rotate",
            "the key in use",
            who,
        )?;
    }
    Ok("rotation requested: each running run moves off the key it uses now for a minute, within a few seconds".into())
}

fn reset(cfg: &Config, key: &ApiKey, what: &str, state: &State) -> Result<()> {
    let now = SystemTime::now();
    // Today's and this month's use as the ledger holds it, before any earlier reset.
    let [day, month] = period_use(cfg, state, &key.fingerprint, None, now)?;
    let day_start = Day::of(now);
    let month_start = Day::of(timeutil::month_start(now, cfg.quota_reset_day));
    state.reset_key(
        cfg.provider.as_str(),
        &key.fingerprint,
        &key.masked,
        what,
        (&day_start, day),
        (&month_start, month),
    )
}

fn record(
    state: &State,
    provider: &str,
    key: &str,
    action: &str,
    detail: &str,
    who: &str,
) -> Result<()> {
    events::log_action(
        &**state,
        &Action {
            time: timeutil::rfc3339(SystemTime::now()),
            provider: provider.to_string(),
            key: key.to_string(),
            action: action.to_string(),
            detail: detail.to_string(),
            who: who.to_string(),
        },
    )
}
