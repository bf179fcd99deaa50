//! The runs registry: every labeling run writes a heartbeat here every few seconds (host,
//! pid, input, rows done of total, rate, key in use), so the dashboard can show the runs
//! going on every machine that shares the state. A run whose heartbeat is older than
//! [`STALE_AFTER`] is taken for dead (killed, or its machine is gone).

use std::time::{Duration, SystemTime};

use rusqlite::params;
use serde::Serialize;

use super::State;
use crate::error::Result;
use crate::timeutil;

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, host TEXT NOT NULL, pid INTEGER NOT NULL, input TEXT NOT NULL,
    output TEXT NOT NULL, providers TEXT NOT NULL, rows_done INTEGER NOT NULL DEFAULT 0,
    rows_total INTEGER NOT NULL DEFAULT 0, rate REAL NOT NULL DEFAULT 0, key_in_use TEXT NOT NULL DEFAULT '',
    started INTEGER NOT NULL, heartbeat INTEGER NOT NULL, finished INTEGER
);
";

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
    pub started: String,
    pub heartbeat: String,
    pub finished: Option<String>,
    /// Still going: not finished and heard from within the last 20 s.
    pub active: bool,
    /// Minutes left at the current rate; `None` when not active or no rate yet.
    pub eta_minutes: Option<f64>,
}

/// What a run reports about itself.
#[derive(Debug, Clone, Default)]
pub struct Beat<'a> {
    pub rows_done: u64,
    pub rows_total: u64,
    pub rate: f64,
    pub key_in_use: &'a str,
}

impl State {
    /// Registers a run that starts now.
    pub fn run_started(
        &self,
        id: &str,
        host: &str,
        input: &str,
        output: &str,
        providers: &str,
        rows_total: u64,
    ) -> Result<()> {
        let conn = self.conn.lock().unwrap();
        let now = timeutil::unix_secs(SystemTime::now());
        conn.execute(
            "INSERT OR REPLACE INTO runs (id, host, pid, input, output, providers, rows_total, started, heartbeat)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)",
            params![id, host, std::process::id(), input, output, providers, rows_total as i64, now],
        )
        .map_err(|e| self.err(e))?;
        Ok(())
    }

    pub fn run_heartbeat(&self, id: &str, beat: &Beat) -> Result<()> {
        let conn = self.conn.lock().unwrap();
        conn.execute(
            "UPDATE runs SET rows_done = ?2, rows_total = ?3, rate = ?4, key_in_use = ?5, heartbeat = ?6 WHERE id = ?1",
            params![
                id,
                beat.rows_done as i64,
                beat.rows_total as i64,
                if beat.rate.is_finite() { beat.rate } else { 0.0 },
                beat.key_in_use,
                timeutil::unix_secs(SystemTime::now())
            ],
        )
        .map_err(|e| self.err(e))?;
        Ok(())
    }

    pub fn run_finished(&self, id: &str, beat: &Beat) -> Result<()> {
        self.run_heartbeat(id, beat)?;
        let conn = self.conn.lock().unwrap();
        conn.execute(
            "UPDATE runs SET finished = ?2 WHERE id = ?1",
            params![id, timeutil::unix_secs(SystemTime::now())],
        )
        .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// The `limit` most recent runs, newest first.
    pub fn runs(&self, limit: u32) -> Result<Vec<RunInfo>> {
        let conn = self.conn.lock().unwrap();
        let now = SystemTime::now();
        let mut stmt = conn
            .prepare(
                "SELECT id, host, pid, input, output, providers, rows_done, rows_total, rate, key_in_use,
                        started, heartbeat, finished
                 FROM runs ORDER BY heartbeat DESC LIMIT ?1",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![limit], |r| {
                let heartbeat = timeutil::from_unix(r.get(11)?);
                let finished: Option<i64> = r.get(12)?;
                let active = finished.is_none()
                    && now.duration_since(heartbeat).unwrap_or_default() < STALE_AFTER;
                let (done, total, rate): (i64, i64, f64) = (r.get(6)?, r.get(7)?, r.get(8)?);
                let left = (total - done).max(0) as f64;
                Ok(RunInfo {
                    id: r.get(0)?,
                    host: r.get(1)?,
                    pid: r.get::<_, i64>(2)?.max(0) as u32,
                    input: r.get(3)?,
                    output: r.get(4)?,
                    providers: r.get(5)?,
                    rows_done: done.max(0) as u64,
                    rows_total: total.max(0) as u64,
                    rate,
                    key_in_use: r.get(9)?,
                    started: timeutil::rfc3339(timeutil::from_unix(r.get(10)?)),
                    heartbeat: timeutil::rfc3339(heartbeat),
                    finished: finished.map(|f| timeutil::rfc3339(timeutil::from_unix(f))),
                    active,
                    eta_minutes: (active && rate > 0.0)
                        .then(|| (left / rate * 10.0).round() / 10.0),
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_is_active_until_it_finishes() {
        let s = State::in_memory();
        s.run_started("r1", "host-a", "in.csv", "out.csv", "groq", 100)
            .unwrap();
        let beat = Beat {
            rows_done: 40,
            rows_total: 100,
            rate: 30.0,
            key_in_use: "#1 gsk_…a1b2",
        };
        s.run_heartbeat("r1", &beat).unwrap();
        let r = &s.runs(10).unwrap()[0];
        assert!(r.active);
        assert_eq!(
            (r.rows_done, r.rows_total, r.eta_minutes),
            (40, 100, Some(2.0))
        );
        assert_eq!(r.key_in_use, "#1 gsk_…a1b2");
        s.run_finished("r1", &beat).unwrap();
        let r = &s.runs(10).unwrap()[0];
        assert!(!r.active && r.finished.is_some() && r.eta_minutes.is_none());
        // A prune keeps today's runs and drops ended ones older than the kept days.
        let later = SystemTime::now() + Duration::from_secs(10 * 86_400);
        s.prune(30, SystemTime::now()).unwrap();
        assert_eq!(s.runs(10).unwrap().len(), 1);
        s.prune(1, later).unwrap();
        assert!(s.runs(10).unwrap().is_empty());
    }
}
