//! The runs registry in the SQLite file.

use std::time::SystemTime;

use rusqlite::params;

use super::SqliteStore;
use crate::error::Result;
use crate::store::runs::{finite_rate, RunQuality, StoredRun};
use crate::store::{Beat, RunInfo, RunRegistry};
use crate::timeutil;

impl RunRegistry for SqliteStore {
    /// Registers a run that starts now.
    fn run_started(
        &self,
        id: &str,
        host: &str,
        input: &str,
        output: &str,
        providers: &str,
        rows_total: u64,
    ) -> Result<()> {
        let conn = self.conn();
        let now = timeutil::unix_secs(SystemTime::now());
        conn.execute(
            "INSERT OR REPLACE INTO runs (id, host, pid, input, output, providers, rows_total, started, heartbeat)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)",
            params![id, host, std::process::id(), input, output, providers, rows_total as i64, now],
        )
        .map_err(|e| self.err(e))?;
        Ok(())
    }

    fn run_priority(&self, id: &str, priority: &str) -> Result<()> {
        let conn = self.conn();
        conn.execute(
            "UPDATE runs SET priority = ?2 WHERE id = ?1",
            params![id, priority],
        )
        .map_err(|e| self.err(e))?;
        Ok(())
    }

    fn run_heartbeat(&self, id: &str, beat: &Beat) -> Result<()> {
        let conn = self.conn();
        conn.execute(
            "UPDATE runs SET rows_done = ?2, rows_total = ?3, rate = ?4, key_in_use = ?5, heartbeat = ?6 WHERE id = ?1",
            params![
                id,
                beat.rows_done as i64,
                beat.rows_total as i64,
                finite_rate(beat.rate),
                beat.key_in_use,
                timeutil::unix_secs(SystemTime::now())
            ],
        )
        .map_err(|e| self.err(e))?;
        Ok(())
    }

    fn run_finished(&self, id: &str, beat: &Beat) -> Result<()> {
        self.run_heartbeat(id, beat)?;
        let conn = self.conn();
        conn.execute(
            "UPDATE runs SET finished = ?2 WHERE id = ?1",
            params![id, timeutil::unix_secs(SystemTime::now())],
        )
        .map_err(|e| self.err(e))?;
        Ok(())
    }

    fn run_quality(&self, id: &str, q: &RunQuality) -> Result<()> {
        let conn = self.conn();
        conn.execute(
            "UPDATE runs SET votes = ?2, voted = ?3, unanimous = ?4, review = ?5 WHERE id = ?1",
            params![
                id,
                q.votes,
                q.voted as i64,
                q.unanimous as i64,
                q.review as i64
            ],
        )
        .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// The `limit` most recent runs, newest first.
    fn runs(&self, limit: u32) -> Result<Vec<RunInfo>> {
        let conn = self.conn();
        let now = SystemTime::now();
        let mut stmt = conn
            .prepare(
                "SELECT id, host, pid, input, output, providers, rows_done, rows_total, rate, key_in_use,
                        started, heartbeat, finished, votes, voted, unanimous, review, priority
                 FROM runs ORDER BY heartbeat DESC LIMIT ?1",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![limit], |r| {
                Ok(StoredRun {
                    id: r.get(0)?,
                    host: r.get(1)?,
                    pid: r.get(2)?,
                    input: r.get(3)?,
                    output: r.get(4)?,
                    providers: r.get(5)?,
                    rows_done: r.get(6)?,
                    rows_total: r.get(7)?,
                    rate: r.get(8)?,
                    key_in_use: r.get(9)?,
                    started: r.get(10)?,
                    heartbeat: r.get(11)?,
                    finished: r.get(12)?,
                    quality: RunQuality::new(r.get(13)?, r.get(14)?, r.get(15)?, r.get(16)?),
                    priority: r.get(17)?,
                }
                .view(now))
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.err(e))
    }
}
