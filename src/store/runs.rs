//! The runs registry: every labeling run writes a heartbeat here every few seconds (host,
//! pid, input, rows done of total, rate, key in use), so the dashboard can show the runs
//! going on every machine that shares the state. A run whose heartbeat is older than
//! [`STALE_AFTER`] is taken for dead (killed, or its machine is gone).

use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::error::Result;
use crate::timeutil;

/// A heartbeat older than this means the run is gone.
pub const STALE_AFTER: Duration = Duration::from_secs(20);

/// One run as the registry holds it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RunInfo {
    pub id: String,
    pub host: String,
    pub pid: u32,
    pub input: String,
    pub output: String,
    pub providers: String,
    pub rows_done: u64,
    pub rows_total: u64,
    /// Rows a minute.
    pub rate: f64,
    /// Masked, e.g. `#2 gsk_…a1b2`.
    pub key_in_use: String,
    /// Its `--priority` (high, normal or low) on keys other runs share.
    pub priority: String,
    pub started: String,
    pub heartbeat: String,
    pub finished: Option<String>,
    /// Still going: not finished and heard from within the last 20 s.
    pub active: bool,
    /// Minutes left at the current rate; `None` when not active or no rate yet.
    pub eta_minutes: Option<f64>,
    /// Its votes and review (`--votes`, `--review-below`).
    pub quality: RunQuality,
}

/// What a run's votes came to: the vote count asked for, the rows written with a label
/// from votes (model or cached), those whose votes all agreed, and those sent to review.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct RunQuality {
    pub votes: u32,
    pub voted: u64,
    pub unanimous: u64,
    pub review: u64,
    /// `unanimous / voted`; `None` before a row or with one vote a row (always unanimous).
    pub agreement: Option<f64>,
}

impl RunQuality {
    pub fn new(votes: u32, voted: u64, unanimous: u64, review: u64) -> RunQuality {
        RunQuality {
            votes,
            voted,
            unanimous,
            review,
            agreement: (votes > 1 && voted > 0).then(|| unanimous as f64 / voted as f64),
        }
    }
}

/// What a run reports about itself.
#[derive(Debug, Clone, Default)]
pub struct Beat<'a> {
    pub rows_done: u64,
    pub rows_total: u64,
    pub rate: f64,
    pub key_in_use: &'a str,
}

/// The runs registry of a state store.
pub trait RunRegistry {
    /// Registers a run that starts now (this process).
    fn run_started(
        &self,
        id: &str,
        host: &str,
        input: &str,
        output: &str,
        providers: &str,
        rows_total: u64,
    ) -> Result<()>;

    /// The run's `--priority`, kept with its entry.
    fn run_priority(&self, id: &str, priority: &str) -> Result<()>;

    fn run_heartbeat(&self, id: &str, beat: &Beat) -> Result<()>;

    fn run_finished(&self, id: &str, beat: &Beat) -> Result<()>;

    /// The `limit` most recent runs (by heartbeat), newest first.
    fn runs(&self, limit: u32) -> Result<Vec<RunInfo>>;

    /// Records what a run's votes came to so far (with its heartbeats and at its end).
    fn run_quality(&self, id: &str, q: &RunQuality) -> Result<()>;
}

/// A run as a store keeps it: times in Unix seconds.
pub(crate) struct StoredRun {
    pub id: String,
    pub host: String,
    pub pid: i64,
    pub input: String,
    pub output: String,
    pub providers: String,
    pub rows_done: i64,
    pub rows_total: i64,
    pub rate: f64,
    pub key_in_use: String,
    pub priority: String,
    pub started: i64,
    pub heartbeat: i64,
    pub finished: Option<i64>,
    pub quality: RunQuality,
}

impl StoredRun {
    /// What the registry shows of it at `now`.
    pub fn view(self, now: SystemTime) -> RunInfo {
        let heartbeat = timeutil::from_unix(self.heartbeat);
        let active = self.finished.is_none()
            && now.duration_since(heartbeat).unwrap_or_default() < STALE_AFTER;
        let left = (self.rows_total - self.rows_done).max(0) as f64;
        let rate = if self.rate.is_finite() {
            self.rate
        } else {
            0.0
        };
        RunInfo {
            id: self.id,
            host: self.host,
            pid: u32::try_from(self.pid.max(0)).unwrap_or(u32::MAX),
            input: self.input,
            output: self.output,
            providers: self.providers,
            rows_done: self.rows_done.max(0) as u64,
            rows_total: self.rows_total.max(0) as u64,
            rate,
            key_in_use: self.key_in_use,
            priority: self.priority,
            started: timeutil::rfc3339(timeutil::from_unix(self.started)),
            heartbeat: timeutil::rfc3339(heartbeat),
            finished: self
                .finished
                .map(|f| timeutil::rfc3339(timeutil::from_unix(f))),
            active,
            eta_minutes: (active && rate > 0.0).then(|| (left / rate * 10.0).round() / 10.0),
            quality: self.quality,
        }
    }
}

/// A rate fit to store: NaN and infinities (no rows yet) become 0.
pub(crate) fn finite_rate(rate: f64) -> f64 {
    if rate.is_finite() {
        rate
    } else {
        0.0
    }
}
