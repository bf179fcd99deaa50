//! The label cache and the fallback rows in the SQLite file.

use std::collections::BTreeSet;
use std::time::SystemTime;

use rusqlite::{params, OptionalExtension};

use super::SqliteStore;
use crate::error::Result;
use crate::store::LabelCache;
use crate::timeutil;

impl LabelCache for SqliteStore {
    fn cache_get(&self, key: &[u8]) -> Result<Option<String>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached("SELECT label FROM cache WHERE k = ?1")
            .map_err(|e| self.err(e))?;
        stmt.query_row(params![key], |r| r.get(0))
            .optional()
            .map_err(|e| self.err(e))
    }

    fn cache_put_many(&self, entries: &[(Vec<u8>, String)]) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO cache (k, label, created) VALUES (?1, ?2, ?3)",
                )
                .map_err(|e| self.err(e))?;
            let now = timeutil::unix_secs(SystemTime::now());
            for (k, label) in entries {
                stmt.execute(params![k, label, now])
                    .map_err(|e| self.err(e))?;
            }
        }
        tx.commit().map_err(|e| self.err(e))
    }

    fn add_fallback_rows(&self, output: &str, rows: &[u64]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        for r in rows {
            tx.execute(
                "INSERT OR IGNORE INTO fallback_rows (output, row) VALUES (?1, ?2)",
                params![output, *r as i64],
            )
            .map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))
    }

    fn fallback_rows(&self, output: &str) -> Result<BTreeSet<u64>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT row FROM fallback_rows WHERE output = ?1")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![output], |r| r.get::<_, i64>(0).map(|v| v as u64))
            .map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<BTreeSet<_>>>()
            .map_err(|e| self.err(e))
    }

    /// Replaces the fallback rows recorded for `output` with `rows`.
    fn set_fallback_rows(&self, output: &str, rows: &BTreeSet<u64>) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        tx.execute(
            "DELETE FROM fallback_rows WHERE output = ?1",
            params![output],
        )
        .map_err(|e| self.err(e))?;
        for r in rows {
            tx.execute(
                "INSERT INTO fallback_rows (output, row) VALUES (?1, ?2)",
                params![output, *r as i64],
            )
            .map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))
    }
}
