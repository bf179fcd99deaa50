//! Pruning and compacting the SQLite file.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use rusqlite::{params, OptionalExtension};

use super::SqliteStore;
use crate::error::Result;
use crate::store::{prune_cutoff, prune_mark, Compacted, Pruned, Upkeep};

impl Upkeep for SqliteStore {
    /// Removes cache entries (by when they were written), rotations and usage rows from
    /// before the UTC day `keep_days` days before `now`. Today's usage is always kept:
    /// the daily quota counts start from it. `keep_days` 0 keeps everything.
    fn prune(&self, keep_days: u32, now: SystemTime) -> Result<Pruned> {
        let (kept_from, cutoff) = prune_cutoff(keep_days, now);
        if keep_days == 0 {
            return Ok(Pruned {
                cache: 0,
                rotations: 0,
                usage: 0,
                kept_from,
            });
        }
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        let delete = |sql: &str, arg: &dyn rusqlite::ToSql| -> Result<u64> {
            tx.execute(sql, [arg])
                .map(|n| n as u64)
                .map_err(|e| self.err(e))
        };
        let pruned = Pruned {
            cache: delete("DELETE FROM cache WHERE created < ?1", &cutoff)?,
            rotations: delete("DELETE FROM rotations WHERE ts < ?1", &cutoff)?,
            usage: delete("DELETE FROM usage WHERE day < ?1", &kept_from.as_str())?,
            kept_from,
        };
        // The action and error logs go with the rotation log (not counted in the line).
        delete("DELETE FROM events WHERE ts < ?1", &cutoff)?;
        // Ended runs of the registry go with the history (not counted: there are few).
        delete(
            "DELETE FROM runs WHERE heartbeat < ?1 AND (finished IS NOT NULL OR heartbeat < ?1 - 86400)",
            &cutoff,
        )?;
        tx.commit().map_err(|e| self.err(e))?;
        Ok(pruned)
    }

    /// `prune` at most once per UTC day and `keep_days` setting, so that runs started
    /// every few minutes from cron do not each scan the whole cache. `None` if it was
    /// done already today.
    fn prune_if_due(&self, keep_days: u32, now: SystemTime) -> Result<Option<Pruned>> {
        if keep_days == 0 {
            return Ok(None);
        }
        let mark = prune_mark(keep_days, now);
        let last: Option<String> = {
            let conn = self.conn();
            conn.query_row("SELECT v FROM meta WHERE k = 'pruned'", [], |r| r.get(0))
                .optional()
                .map_err(|e| self.err(e))?
        };
        if last.as_deref() == Some(mark.as_str()) {
            return Ok(None);
        }
        let pruned = self.prune(keep_days, now)?;
        let conn = self.conn();
        conn.execute(
            "INSERT INTO meta (k, v) VALUES ('pruned', ?1) ON CONFLICT (k) DO UPDATE SET v = excluded.v",
            params![mark],
        )
        .map_err(|e| self.err(e))?;
        Ok(Some(pruned))
    }

    /// Gives the space of removed entries back to the file system: writes the WAL into
    /// the main file and rebuilds it (SQLite `VACUUM`).
    fn vacuum(&self) -> Result<Compacted> {
        let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        let wal = {
            let mut name = self.path.as_os_str().to_os_string();
            name.push("-wal");
            PathBuf::from(name)
        };
        let before = size(&self.path) + size(&wal);
        let conn = self.conn();
        conn.execute_batch("VACUUM; PRAGMA wal_checkpoint(TRUNCATE);")
            .map_err(|e| self.err(e))?;
        Ok(Compacted {
            before,
            after: size(&self.path) + size(&wal),
        })
    }
}
