//! What people decide about keys (`autolabel keys disable|enable|reset|rotate`) and when
//! each key was last used, stored by fingerprint so every run on this state sees it.
//!
//! Running labelers read the overrides every few seconds: a change made here reaches them
//! without a restart. The secret itself is never stored: the env file stays the one place
//! keys live.

use std::time::SystemTime;

use crate::error::Result;
use crate::timeutil::Day;

/// Use a reset told to forget: counted from a period's start, minus this base.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Base {
    /// The period the base belongs to (its first UTC day); another period ignores it.
    pub date: Option<Day>,
    pub requests: u64,
    pub tokens: u64,
}

impl Base {
    /// `used` (from the ledger since `period_start`) less what a reset in this period forgot.
    pub fn apply(&self, period_start: &Day, used: (u64, u64)) -> (u64, u64) {
        if self.date.as_ref() == Some(period_start) {
            (
                used.0.saturating_sub(self.requests),
                used.1.saturating_sub(self.tokens),
            )
        } else {
            used
        }
    }
}

/// One key's overrides.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KeyOverride {
    pub fingerprint: String,
    pub disabled: bool,
    /// A disable with `--for` ends here.
    pub disabled_until: Option<SystemTime>,
    pub reason: String,
    /// Grows with each `keys reset`; runs apply a reset once.
    pub reset_seq: i64,
    /// minute, day, month or all.
    pub reset_what: String,
    pub day_base: Base,
    pub month_base: Base,
}

impl KeyOverride {
    /// Disabled at `now` (a timed disable that has ended is not).
    pub fn is_disabled(&self, now: SystemTime) -> bool {
        self.disabled && self.disabled_until.is_none_or(|u| u > now)
    }
}

/// When a key was last used and its last error class.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KeyActivity {
    pub fingerprint: String,
    pub last_used: Option<SystemTime>,
    pub last_error: Option<String>,
}

/// The key overrides and activity of a state store.
pub trait KeyControl {
    fn key_overrides(&self, provider: &str) -> Result<Vec<KeyOverride>>;

    /// `keys disable` (`until` for `--for`) and `keys enable` (`disabled` false).
    fn set_key_disabled(
        &self,
        provider: &str,
        fingerprint: &str,
        masked: &str,
        disabled: bool,
        until: Option<SystemTime>,
        reason: &str,
    ) -> Result<()>;

    /// `keys reset`: forgets `what` (minute, day, month or all) of a key. Counts are
    /// forgotten by recording what the ledger holds for the period now as its base (the
    /// ledger itself keeps the history); the health that period's limit put on the key
    /// (cooling, exhausted; with `all` also invalid) is removed. `day` and `month` are
    /// (the period's first UTC day, (requests, tokens) used in it so far).
    fn reset_key(
        &self,
        provider: &str,
        fingerprint: &str,
        masked: &str,
        what: &str,
        day: (&Day, (u64, u64)),
        month: (&Day, (u64, u64)),
    ) -> Result<()>;

    /// `keys rotate`: asks every run on this state to move off the key it uses now.
    /// Returns the request's number.
    fn request_rotation(&self, provider: &str) -> Result<i64>;

    /// How many rotations `keys rotate` asked for so far (a run acts on new ones).
    fn rotation_requests(&self, provider: &str) -> Result<i64>;

    /// Records that keys were used (and the last error class of each, if any; a key
    /// used without an error keeps its earlier one).
    fn touch_keys(
        &self,
        provider: &str,
        used: &[(String, Option<&'static str>)],
        at: SystemTime,
    ) -> Result<()>;

    fn key_activity(&self, provider: &str) -> Result<Vec<KeyActivity>>;
}

/// The health statuses a reset of `what` removes.
pub(crate) fn statuses_reset(what: &str) -> &'static [super::KeyStatus] {
    use super::KeyStatus::*;
    match what {
        "minute" => &[Cooling],
        "day" | "month" => &[Cooling, Exhausted],
        _ => &[Cooling, Exhausted, Invalid],
    }
}
