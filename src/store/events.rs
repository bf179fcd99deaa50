//! Two logs kept in the state beside the rotation log, pruned with it by `--keep-days`:
//! the action log (what people did to keys — disable, enable, reset, rotate — and who:
//! the CLI, or the dashboard with the client's address) and the error log (each failed
//! request: time, masked key, model, class, HTTP status and the start of the provider's
//! message, scrubbed of anything key-like).
//!
//! A store keeps each log as entries of JSON text with a time; the typed entries are
//! this module's, so both stores hold the same shape.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::error::Result;

/// The logs a store keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Action,
    Error,
}

impl EventKind {
    pub const ALL: [EventKind; 2] = [EventKind::Action, EventKind::Error];

    /// The name the stores file it under.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Action => "action",
            EventKind::Error => "error",
        }
    }
}

/// What a person did to a key, and who.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Action {
    /// RFC 3339, UTC.
    pub time: String,
    pub provider: String,
    /// The key as shown (`#2 gsk_…a1b2`), or `-` for an action on no one key (rotate).
    pub key: String,
    /// disable, enable, reset, rotate.
    pub action: String,
    /// Reason, duration, what was reset.
    pub detail: String,
    /// `cli`, or `dashboard 127.0.0.1` (the client's address).
    pub who: String,
}

/// The provider message an error entry keeps, at most.
pub const MESSAGE_CHARS: usize = 200;

/// One failed request.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ErrorEntry {
    /// RFC 3339, UTC.
    pub time: String,
    pub provider: String,
    /// Masked, with its index: `#2 gsk_…a1b2`.
    pub key: String,
    pub model: String,
    /// rate_limit, quota, auth, server, timeout, network, unparsable, rejected.
    pub class: String,
    /// `None` when no HTTP answer came (timeout, network).
    pub status: Option<u16>,
    /// The first 200 characters of the provider's message, key-like text masked.
    pub message: String,
}

impl ErrorEntry {
    /// `message` cut to [`MESSAGE_CHARS`] and scrubbed: what the log may hold.
    pub fn clean_message(message: &str) -> String {
        let cut: String = message
            .chars()
            .filter(|c| !c.is_control() || *c == ' ')
            .take(MESSAGE_CHARS)
            .collect();
        crate::keys::mask::scrub(&cut)
    }
}

/// The entries of a log, as a store keeps them.
pub trait EventLog {
    /// Appends entries (JSON text) at time `ts`.
    fn log_events(&self, kind: EventKind, ts: SystemTime, entries: &[String]) -> Result<()>;

    /// Entries from `since` on, newest first, at most `limit`.
    fn events(&self, kind: EventKind, since: SystemTime, limit: u32) -> Result<Vec<String>>;
}

/// Records an action now.
pub fn log_action(log: &dyn EventLog, a: &Action) -> Result<()> {
    let json = serde_json::to_string(a).expect("an action serializes");
    log.log_events(EventKind::Action, SystemTime::now(), &[json])
}

/// Records failed requests now.
pub fn log_errors(log: &dyn EventLog, errors: &[ErrorEntry]) -> Result<()> {
    if errors.is_empty() {
        return Ok(());
    }
    let json: Vec<String> = errors
        .iter()
        .map(|e| serde_json::to_string(e).expect("an error entry serializes"))
        .collect();
    log.log_events(EventKind::Error, SystemTime::now(), &json)
}

/// The actions from `since` on, newest first (entries this version cannot read are left out).
pub fn actions(log: &dyn EventLog, since: SystemTime, limit: u32) -> Result<Vec<Action>> {
    Ok(parsed(log.events(EventKind::Action, since, limit)?))
}

/// The failed requests from `since` on, newest first.
pub fn errors(log: &dyn EventLog, since: SystemTime, limit: u32) -> Result<Vec<ErrorEntry>> {
    Ok(parsed(log.events(EventKind::Error, since, limit)?))
}

fn parsed<T: for<'a> Deserialize<'a>>(texts: Vec<String>) -> Vec<T> {
    texts
        .iter()
        .filter_map(|t| serde_json::from_str(t).ok())
        .collect()
}
