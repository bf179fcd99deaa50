//! The state in one SQLite file: every run on one machine. WAL mode and short
//! transactions let several runs share the file. The schema only ever grows (tables and
//! columns added when missing), so every older state file keeps opening.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use rusqlite::{params, Connection, OptionalExtension};

use super::{
    prune_cutoff, prune_mark, Compacted, History, KeyStatus, LearnedLimit, Pruned, Rotation,
    StoredHealth, UsageDelta, UsageEntry, UsageRow,
};
use crate::error::{Error, Result};
use crate::limits::Dim;
use crate::timeutil;

mod key_control;
mod quota;
mod runs;

pub use quota::SqliteQuotas;

/// 2: the `meta` table (when the state was last pruned).
const SCHEMA_VERSION: i64 = 2;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS usage (
    day TEXT NOT NULL, provider TEXT NOT NULL, fingerprint TEXT NOT NULL, masked TEXT NOT NULL,
    model TEXT NOT NULL,
    requests INTEGER NOT NULL DEFAULT 0, successes INTEGER NOT NULL DEFAULT 0,
    rate_limit INTEGER NOT NULL DEFAULT 0, quota INTEGER NOT NULL DEFAULT 0, auth INTEGER NOT NULL DEFAULT 0,
    server INTEGER NOT NULL DEFAULT 0, timeout INTEGER NOT NULL DEFAULT 0, network INTEGER NOT NULL DEFAULT 0,
    unparsable INTEGER NOT NULL DEFAULT 0, rejected INTEGER NOT NULL DEFAULT 0,
    tokens_in INTEGER NOT NULL DEFAULT 0, tokens_out INTEGER NOT NULL DEFAULT 0, cost REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (day, provider, fingerprint, model)
);
CREATE TABLE IF NOT EXISTS key_health (
    provider TEXT NOT NULL, fingerprint TEXT NOT NULL, masked TEXT NOT NULL,
    status TEXT NOT NULL, until INTEGER, reason TEXT NOT NULL, updated INTEGER NOT NULL,
    PRIMARY KEY (provider, fingerprint)
);
CREATE TABLE IF NOT EXISTS rotations (
    id INTEGER PRIMARY KEY, ts INTEGER NOT NULL, provider TEXT NOT NULL,
    from_key TEXT NOT NULL, to_key TEXT NOT NULL, reason TEXT NOT NULL, mode TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS cache (k BLOB PRIMARY KEY, label TEXT NOT NULL, created INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS fallback_rows (output TEXT NOT NULL, row INTEGER NOT NULL, PRIMARY KEY (output, row));
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
";

/// Added after schema 1 shipped; created on every open, so older files gain it too.
const LEARNED_LIMITS: &str = "
CREATE TABLE IF NOT EXISTS learned_limits (
    provider TEXT NOT NULL, model TEXT NOT NULL, fingerprint TEXT NOT NULL, dim TEXT NOT NULL,
    value INTEGER NOT NULL, source TEXT NOT NULL, updated INTEGER NOT NULL,
    PRIMARY KEY (provider, model, fingerprint, dim)
);
";

/// Columns added to existing tables after the first schema, as (table, column, definition).
/// Added only when missing, so every older state file keeps working and opening twice
/// changes nothing.
const ADDED_COLUMNS: &[(&str, &str, &str)] = &[("usage", "rows", "INTEGER NOT NULL DEFAULT 0")];

/// Adds the columns of `ADDED_COLUMNS` that a state file lacks. The check and the change
/// happen in one write transaction, so two runs opening an old file at once cannot both
/// try to add the same column.
fn add_missing_columns(conn: &Connection) -> rusqlite::Result<()> {
    let has = |table: &str, column: &str| -> rusqlite::Result<bool> {
        let mut stmt = conn.prepare(&format!("PRAGMA table_info({table})"))?;
        let names = stmt.query_map([], |r| r.get::<_, String>(1))?;
        for name in names {
            if name? == column {
                return Ok(true);
            }
        }
        Ok(false)
    };
    let mut missing = false;
    for (table, column, _) in ADDED_COLUMNS {
        missing |= !has(table, column)?;
    }
    if !missing {
        return Ok(());
    }
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let result = (|| {
        for (table, column, definition) in ADDED_COLUMNS {
            if !has(table, column)? {
                conn.execute_batch(&format!(
                    "ALTER TABLE {table} ADD COLUMN {column} {definition}"
                ))?;
            }
        }
        Ok(())
    })();
    match result {
        Ok(()) => conn.execute_batch("COMMIT"),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

enum SetupError {
    Sqlite(rusqlite::Error),
    Newer(i64),
}

impl From<rusqlite::Error> for SetupError {
    fn from(e: rusqlite::Error) -> Self {
        SetupError::Sqlite(e)
    }
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

pub struct SqliteStore {
    conn: Mutex<Connection>,
    path: PathBuf,
}

impl SqliteStore {
    pub fn open(path: &Path) -> Result<SqliteStore> {
        let fail = |message: String| Error::State {
            place: path.display().to_string(),
            message,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| fail(format!("cannot create its directory: {e}")))?;
        }
        // Runs started together (cron) may set up a new file at the same moment; SQLite
        // answers BUSY at once there (no busy handler while switching to WAL), so retry.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            match Self::setup(path) {
                Ok(conn) => {
                    return Ok(SqliteStore {
                        conn: Mutex::new(conn),
                        path: path.to_path_buf(),
                    })
                }
                Err(SetupError::Sqlite(e)) if is_busy(&e) && std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20 + fastrand::u64(0..80)));
                }
                Err(SetupError::Sqlite(e)) if is_busy(&e) => {
                    return Err(fail(format!(
                        "is locked by another process for over 30 s ({e}); wait for it or pass --state with another path"
                    )))
                }
                Err(SetupError::Sqlite(e)) => {
                    return Err(fail(format!(
                        "is not a usable state file ({e}); move it away (a new one is created) or pass --state with another path"
                    )))
                }
                Err(SetupError::Newer(version)) => {
                    return Err(fail(format!(
                        "was written by a newer autolabel (schema {version}); upgrade, or pass --state with another path"
                    )))
                }
            }
        }
    }

    fn setup(path: &Path) -> Result<Connection, SetupError> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(30))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version > SCHEMA_VERSION {
            return Err(SetupError::Newer(version));
        }
        if version < SCHEMA_VERSION {
            conn.execute_batch(SCHEMA)?;
            conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        }
        add_missing_columns(&conn)?;
        conn.execute_batch(LEARNED_LIMITS)?;
        conn.execute_batch(key_control::SCHEMA)?;
        conn.execute_batch(runs::SCHEMA)?;
        Ok(conn)
    }

    pub fn in_memory() -> SqliteStore {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(SCHEMA).unwrap();
        add_missing_columns(&conn).unwrap();
        conn.execute_batch(LEARNED_LIMITS).unwrap();
        conn.execute_batch(key_control::SCHEMA).unwrap();
        conn.execute_batch(runs::SCHEMA).unwrap();
        SqliteStore {
            conn: Mutex::new(conn),
            path: PathBuf::from(":memory:"),
        }
    }

    fn err(&self, e: rusqlite::Error) -> Error {
        Error::State {
            place: self.path.display().to_string(),
            message: e.to_string(),
        }
    }

    /// The connection; a panic elsewhere while it was held leaves nothing half-written
    /// (transactions roll back), so a poisoned lock is taken over.
    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl History for SqliteStore {
    /// Adds several deltas (key fingerprint, masked, model, day, delta) in one transaction.
    fn add_usage(&self, provider: &str, rows: &[UsageEntry]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO usage (day, provider, fingerprint, masked, model, requests, successes,
                        rate_limit, quota, auth, server, timeout, network, unparsable, rejected,
                        tokens_in, tokens_out, cost, rows)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)
                     ON CONFLICT (day, provider, fingerprint, model) DO UPDATE SET
                        requests = requests + excluded.requests, successes = successes + excluded.successes,
                        rate_limit = rate_limit + excluded.rate_limit, quota = quota + excluded.quota,
                        auth = auth + excluded.auth, server = server + excluded.server,
                        timeout = timeout + excluded.timeout, network = network + excluded.network,
                        unparsable = unparsable + excluded.unparsable, rejected = rejected + excluded.rejected,
                        tokens_in = tokens_in + excluded.tokens_in, tokens_out = tokens_out + excluded.tokens_out,
                        cost = cost + excluded.cost, rows = rows + excluded.rows",
                )
                .map_err(|e| self.err(e))?;
            for (fp, masked, model, day, d) in rows {
                let e = d.errors.map(|v| v as i64);
                stmt.execute(params![
                    day,
                    provider,
                    fp,
                    masked,
                    model,
                    d.requests as i64,
                    d.successes as i64,
                    e[0],
                    e[1],
                    e[2],
                    e[3],
                    e[4],
                    e[5],
                    e[6],
                    e[7],
                    d.tokens_in as i64,
                    d.tokens_out as i64,
                    d.cost,
                    d.rows as i64
                ])
                .map_err(|e| self.err(e))?;
            }
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// Ledger rows for `provider` from `since_day` (inclusive), oldest first.
    fn usage_since(&self, provider: &str, since_day: &str) -> Result<Vec<UsageRow>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT day, fingerprint, masked, model, requests, successes, rate_limit, quota, auth, server,
                        timeout, network, unparsable, rejected, tokens_in, tokens_out, cost, rows
                 FROM usage WHERE provider = ?1 AND day >= ?2 ORDER BY day, fingerprint, model",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![provider, since_day], |r| {
                let mut errors = [0u64; 8];
                for (i, e) in errors.iter_mut().enumerate() {
                    *e = r.get::<_, i64>(6 + i)? as u64;
                }
                Ok(UsageRow {
                    day: r.get(0)?,
                    fingerprint: r.get(1)?,
                    masked: r.get(2)?,
                    model: r.get(3)?,
                    usage: UsageDelta {
                        requests: r.get::<_, i64>(4)? as u64,
                        successes: r.get::<_, i64>(5)? as u64,
                        errors,
                        tokens_in: r.get::<_, i64>(14)? as u64,
                        tokens_out: r.get::<_, i64>(15)? as u64,
                        cost: r.get(16)?,
                        rows: r.get::<_, i64>(17)? as u64,
                    },
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.err(e))
    }

    /// Requests and tokens one key used from `since_day` (inclusive) on, all models.
    fn key_used_since(
        &self,
        provider: &str,
        fingerprint: &str,
        since_day: &str,
    ) -> Result<(u64, u64)> {
        let conn = self.conn();
        conn.query_row(
            "SELECT COALESCE(SUM(requests), 0), COALESCE(SUM(tokens_in + tokens_out), 0) FROM usage
             WHERE provider = ?1 AND fingerprint = ?2 AND day >= ?3",
            params![provider, fingerprint, since_day],
            |r| {
                Ok((
                    r.get::<_, i64>(0)?.max(0) as u64,
                    r.get::<_, i64>(1)?.max(0) as u64,
                ))
            },
        )
        .map_err(|e| self.err(e))
    }

    fn save_health(&self, provider: &str, h: &StoredHealth) -> Result<()> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO key_health (provider, fingerprint, masked, status, until, reason, updated)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (provider, fingerprint) DO UPDATE SET masked = excluded.masked,
                status = excluded.status, until = excluded.until, reason = excluded.reason, updated = excluded.updated",
            params![
                provider,
                h.fingerprint,
                h.masked,
                h.status.as_str(),
                h.until.map(timeutil::unix_secs),
                h.reason,
                timeutil::unix_secs(SystemTime::now())
            ],
        )
        .map_err(|e| self.err(e))?;
        Ok(())
    }

    fn load_health(&self, provider: &str) -> Result<Vec<StoredHealth>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT fingerprint, masked, status, until, reason FROM key_health WHERE provider = ?1")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![provider], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, Option<i64>>(3)?,
                    r.get::<_, String>(4)?,
                ))
            })
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (fingerprint, masked, status, until, reason) = row.map_err(|e| self.err(e))?;
            // A status this version does not know is skipped, not fatal.
            if let Some(status) = KeyStatus::parse(&status) {
                out.push(StoredHealth {
                    fingerprint,
                    masked,
                    status,
                    until: until.map(timeutil::from_unix),
                    reason,
                });
            }
        }
        Ok(out)
    }

    /// Remembers a limit the provider stated on a reply to this key, for this model.
    fn save_learned_limit(
        &self,
        provider: &str,
        model: &str,
        fingerprint: &str,
        limit: (Dim, u64),
        source: &str,
    ) -> Result<()> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO learned_limits (provider, model, fingerprint, dim, value, source, updated)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (provider, model, fingerprint, dim) DO UPDATE SET value = excluded.value,
                source = excluded.source, updated = excluded.updated",
            params![
                provider,
                model,
                fingerprint,
                limit.0.as_str(),
                limit.1.min(i64::MAX as u64) as i64,
                source,
                timeutil::unix_secs(SystemTime::now())
            ],
        )
        .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Every limit stated for this provider and model, by any key.
    fn learned_limits(&self, provider: &str, model: &str) -> Result<Vec<LearnedLimit>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT fingerprint, dim, value, source, updated FROM learned_limits
                 WHERE provider = ?1 AND model = ?2",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![provider, model], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, i64>(4)?,
                ))
            })
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (fingerprint, dim, value, source, updated) = row.map_err(|e| self.err(e))?;
            // A row this version cannot read is skipped, not fatal.
            if let (Some(dim), Ok(value)) = (Dim::parse(&dim), u64::try_from(value)) {
                out.push(LearnedLimit {
                    fingerprint,
                    dim,
                    value,
                    source,
                    updated,
                });
            }
        }
        Ok(out)
    }

    fn log_rotation(
        &self,
        provider: &str,
        from: &str,
        to: &str,
        reason: &str,
        mode: &str,
    ) -> Result<()> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO rotations (ts, provider, from_key, to_key, reason, mode) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![timeutil::unix_secs(SystemTime::now()), provider, from, to, reason, mode],
        )
        .map_err(|e| self.err(e))?;
        Ok(())
    }

    fn rotations(&self, provider: &str, since: SystemTime, limit: u32) -> Result<Vec<Rotation>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT ts, from_key, to_key, reason, mode FROM rotations WHERE provider = ?1 AND ts >= ?2
                 ORDER BY id DESC LIMIT ?3",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![provider, timeutil::unix_secs(since), limit], |r| {
                Ok(Rotation {
                    ts: timeutil::from_unix(r.get(0)?),
                    from: r.get(1)?,
                    to: r.get(2)?,
                    reason: r.get(3)?,
                    mode: r.get(4)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.err(e))
    }

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
            usage: delete("DELETE FROM usage WHERE day < ?1", &kept_from)?,
            kept_from,
        };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_file_from_before_the_rows_column_gets_it_and_keeps_its_ledger() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state.sqlite3");
        {
            // The ledger as the first schema wrote it: no `rows` column.
            let conn = Connection::open(&p).unwrap();
            conn.execute_batch(SCHEMA).unwrap();
            let has_rows: i64 = conn
                .query_row(
                    "SELECT count(*) FROM pragma_table_info('usage') WHERE name = 'rows'",
                    [],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(has_rows, 0, "the first schema has no rows column");
            conn.pragma_update(None, "user_version", SCHEMA_VERSION)
                .unwrap();
            conn.execute(
                "INSERT INTO usage (day, provider, fingerprint, masked, model, requests, successes, tokens_in)
                 VALUES ('2026-01-02', 'groq', 'fp1', 'gsk_…1234', 'm', 3, 3, 120)",
                [],
            )
            .unwrap();
        }
        let columns = |s: &SqliteStore| -> Vec<String> {
            let conn = s.conn();
            let mut stmt = conn.prepare("PRAGMA table_info(usage)").unwrap();
            let names = stmt.query_map([], |r| r.get::<_, String>(1)).unwrap();
            names.map(|n| n.unwrap()).collect()
        };
        let s = SqliteStore::open(&p).unwrap();
        assert_eq!(columns(&s).iter().filter(|c| *c == "rows").count(), 1);
        let old = s.usage_since("groq", "2026-01-01").unwrap();
        assert_eq!((old[0].usage.requests, old[0].usage.rows), (3, 0));
        let d = UsageDelta {
            requests: 1,
            successes: 1,
            tokens_in: 40,
            rows: 20,
            ..Default::default()
        };
        let row = (
            "fp1".to_string(),
            "gsk_…1234".to_string(),
            "m".to_string(),
            "2026-01-02".to_string(),
            d,
        );
        s.add_usage("groq", &[row]).unwrap();
        drop(s);
        // Opening again adds nothing twice and keeps what was counted.
        let s = SqliteStore::open(&p).unwrap();
        assert_eq!(columns(&s).iter().filter(|c| *c == "rows").count(), 1);
        let now = s.usage_since("groq", "2026-01-01").unwrap();
        assert_eq!(
            (
                now[0].usage.requests,
                now[0].usage.rows,
                now[0].usage.tokens_in
            ),
            (4, 20, 160)
        );
    }

    #[test]
    fn prune_removes_cache_entries_by_when_they_were_written() {
        let s = SqliteStore::in_memory();
        let now = timeutil::from_unix(1_780_000_000); // 2026-05-28T20:26:40Z
        let days_ago = |d: i64| timeutil::unix_secs(now) - d * 86_400;
        {
            let conn = s.conn();
            for (k, age) in [(1u8, 100), (2, 31), (3, 29), (4, 0)] {
                conn.execute(
                    "INSERT INTO cache (k, label, created) VALUES (?1, 'positif', ?2)",
                    params![vec![k], days_ago(age)],
                )
                .unwrap();
                conn.execute(
                    "INSERT INTO rotations (ts, provider, from_key, to_key, reason, mode) VALUES (?1, 'groq', 'a', 'b', 'r', 'auto')",
                    params![days_ago(age)],
                )
                .unwrap();
            }
        }
        let usage_on = |day: &str| {
            (
                "fp".to_string(),
                "m".to_string(),
                "model".to_string(),
                day.to_string(),
                UsageDelta {
                    requests: 1,
                    ..Default::default()
                },
            )
        };
        s.add_usage(
            "groq",
            &[
                usage_on("2026-04-27"),
                usage_on("2026-04-28"),
                usage_on("2026-05-28"),
            ],
        )
        .unwrap();
        assert_eq!(s.prune(0, now).unwrap().total(), 0, "0 keeps everything");
        let pruned = s.prune(30, now).unwrap();
        assert_eq!(
            pruned,
            Pruned {
                cache: 2,
                rotations: 2,
                usage: 1,
                kept_from: "2026-04-28".into()
            }
        );
        assert!(s.cache_get(&[2]).unwrap().is_none());
        assert!(s.cache_get(&[3]).unwrap().is_some());
        assert_eq!(s.usage_since("groq", "2000-01-01").unwrap().len(), 2);
        assert_eq!(
            s.rotations("groq", timeutil::from_unix(0), 10)
                .unwrap()
                .len(),
            2
        );
        // Once a day: the second call the same day does nothing, a new setting does.
        assert!(s.prune_if_due(30, now).unwrap().is_some());
        assert!(s.prune_if_due(30, now).unwrap().is_none());
        assert!(s.prune_if_due(1, now).unwrap().is_some());
        assert_eq!(
            s.usage_since("groq", "2000-01-01").unwrap().len(),
            1,
            "today stays"
        );
    }

    #[test]
    fn corrupt_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state.sqlite3");
        std::fs::write(
            &p,
            b"this is not a database, just some bytes that fill a page................",
        )
        .unwrap();
        let err = SqliteStore::open(&p).err().expect("must fail").to_string();
        assert!(err.contains("move it away"), "{err}");
    }
}
