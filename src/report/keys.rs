//! Each configured key as people see it (`autolabel keys list` and the dashboard's keys
//! table): the configured keys of the one per-key model of `key_report`.

use std::time::SystemTime;

use super::key_report::{key_reports, KeyReport};
use super::span::Span;
use crate::config::Config;
use crate::error::Result;
use crate::store::State;

/// The days `keys list` and `/api/keys` count a key's period over by default.
pub const DEFAULT_DAYS: u32 = 7;

/// Every configured key with its quotas, status, activity and use over the last `days`
/// days.
pub fn key_views(cfg: &Config, state: &State, days: u32) -> Result<Vec<KeyReport>> {
    let now = SystemTime::now();
    key_views_in(cfg, state, &Span::last_days(now, days), now)
}

/// Every configured key, its use over the days of `span`.
pub fn key_views_in(
    cfg: &Config,
    state: &State,
    span: &Span,
    now: SystemTime,
) -> Result<Vec<KeyReport>> {
    let mut all = key_reports(cfg, state, span, now)?;
    all.retain(|k| k.index.is_some());
    Ok(all)
}
