//! The action and error logs in the SQLite file: one table, an entry a row.

use std::time::SystemTime;

use rusqlite::params;

use super::SqliteStore;
use crate::error::Result;
use crate::store::events::{EventKind, EventLog};
use crate::timeutil;

impl EventLog for SqliteStore {
    fn log_events(&self, kind: EventKind, ts: SystemTime, entries: &[String]) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        for body in entries {
            tx.execute(
                "INSERT INTO events (kind, ts, body) VALUES (?1, ?2, ?3)",
                params![kind.as_str(), timeutil::unix_secs(ts), body],
            )
            .map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))
    }

    fn events(&self, kind: EventKind, since: SystemTime, limit: u32) -> Result<Vec<String>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT body FROM events WHERE kind = ?1 AND ts >= ?2 ORDER BY id DESC LIMIT ?3",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(
                params![kind.as_str(), timeutil::unix_secs(since), limit],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<Vec<String>>>()
            .map_err(|e| self.err(e))
    }
}
