//! Key overrides and activity in the SQLite file.

use std::time::SystemTime;

use rusqlite::{params, OptionalExtension};

use super::SqliteStore;
use crate::error::Result;
use crate::store::key_control::statuses_reset;
use crate::store::Base;
use crate::store::{KeyActivity, KeyControl, KeyOverride};
use crate::timeutil::{self, Day};

fn rotate_meta(provider: &str) -> String {
    format!("rotate_request:{provider}")
}

impl KeyControl for SqliteStore {
    fn key_overrides(&self, provider: &str) -> Result<Vec<KeyOverride>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT fingerprint, disabled, disabled_until, reason, reset_seq, reset_what,
                        day_base_date, day_base_requests, day_base_tokens,
                        month_base_date, month_base_requests, month_base_tokens
                 FROM key_overrides WHERE provider = ?1",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![provider], |r| {
                Ok(KeyOverride {
                    fingerprint: r.get(0)?,
                    disabled: r.get::<_, i64>(1)? != 0,
                    disabled_until: r.get::<_, Option<i64>>(2)?.map(timeutil::from_unix),
                    reason: r.get(3)?,
                    reset_seq: r.get(4)?,
                    reset_what: r.get(5)?,
                    day_base: Base {
                        date: r.get::<_, Option<String>>(6)?.map(Day::stored),
                        requests: r.get::<_, i64>(7)?.max(0) as u64,
                        tokens: r.get::<_, i64>(8)?.max(0) as u64,
                    },
                    month_base: Base {
                        date: r.get::<_, Option<String>>(9)?.map(Day::stored),
                        requests: r.get::<_, i64>(10)?.max(0) as u64,
                        tokens: r.get::<_, i64>(11)?.max(0) as u64,
                    },
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.err(e))
    }

    /// `keys disable` (`until` for `--for`) and `keys enable` (`disabled` false).
    fn set_key_disabled(
        &self,
        provider: &str,
        fingerprint: &str,
        masked: &str,
        disabled: bool,
        until: Option<SystemTime>,
        reason: &str,
    ) -> Result<()> {
        let conn = self.conn();
        ensure_override(&conn, provider, fingerprint, masked).map_err(|e| self.err(e))?;
        conn.execute(
            "UPDATE key_overrides SET disabled = ?3, disabled_until = ?4, reason = ?5
             WHERE provider = ?1 AND fingerprint = ?2",
            params![
                provider,
                fingerprint,
                disabled as i64,
                until.map(timeutil::unix_secs),
                reason
            ],
        )
        .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// `keys reset`: forgets `what` (minute, day, month or all) of a key. Counts are
    /// forgotten by recording what the ledger holds for the period now as its base (the
    /// ledger itself keeps the history); the health that period's limit put on the key
    /// (cooling, exhausted; with `all` also invalid) is removed.
    fn reset_key(
        &self,
        provider: &str,
        fingerprint: &str,
        masked: &str,
        what: &str,
        day: (&Day, (u64, u64)),
        month: (&Day, (u64, u64)),
    ) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        ensure_override(&tx, provider, fingerprint, masked).map_err(|e| self.err(e))?;
        tx.execute(
            "UPDATE key_overrides SET reset_seq = reset_seq + 1, reset_what = ?3
             WHERE provider = ?1 AND fingerprint = ?2",
            params![provider, fingerprint, what],
        )
        .map_err(|e| self.err(e))?;
        if matches!(what, "day" | "all") {
            tx.execute(
                "UPDATE key_overrides SET day_base_date = ?3, day_base_requests = ?4, day_base_tokens = ?5
                 WHERE provider = ?1 AND fingerprint = ?2",
                params![provider, fingerprint, day.0.as_str(), day.1 .0 as i64, day.1 .1 as i64],
            )
            .map_err(|e| self.err(e))?;
        }
        if matches!(what, "month" | "all") {
            tx.execute(
                "UPDATE key_overrides SET month_base_date = ?3, month_base_requests = ?4, month_base_tokens = ?5
                 WHERE provider = ?1 AND fingerprint = ?2",
                params![provider, fingerprint, month.0.as_str(), month.1 .0 as i64, month.1 .1 as i64],
            )
            .map_err(|e| self.err(e))?;
        }
        for status in statuses_reset(what) {
            tx.execute(
                "DELETE FROM key_health WHERE provider = ?1 AND fingerprint = ?2 AND status = ?3",
                params![provider, fingerprint, status.as_str()],
            )
            .map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// `keys rotate`: asks every run on this state to move off the key it uses now.
    /// Returns the request's number.
    fn request_rotation(&self, provider: &str) -> Result<i64> {
        let conn = self.conn();
        let k = rotate_meta(provider);
        conn.execute(
            "INSERT INTO meta (k, v) VALUES (?1, '1')
             ON CONFLICT (k) DO UPDATE SET v = CAST(CAST(v AS INTEGER) + 1 AS TEXT)",
            params![k],
        )
        .map_err(|e| self.err(e))?;
        self.rotation_requests_locked(&conn, provider)
    }

    /// How many rotations `keys rotate` asked for so far (a run acts on new ones).
    fn rotation_requests(&self, provider: &str) -> Result<i64> {
        let conn = self.conn();
        self.rotation_requests_locked(&conn, provider)
    }

    /// Records that keys were used (and the last error class of each, if any).
    fn touch_keys(
        &self,
        provider: &str,
        used: &[(String, Option<&'static str>)],
        at: SystemTime,
    ) -> Result<()> {
        if used.is_empty() {
            return Ok(());
        }
        let conn = self.conn();
        let at = timeutil::unix_secs(at);
        for (fp, error) in used {
            conn.execute(
                "INSERT INTO key_activity (provider, fingerprint, last_used, last_error, last_error_at)
                 VALUES (?1, ?2, ?3, ?4, CASE WHEN ?4 IS NULL THEN NULL ELSE ?3 END)
                 ON CONFLICT (provider, fingerprint) DO UPDATE SET last_used = excluded.last_used,
                    last_error = COALESCE(excluded.last_error, last_error),
                    last_error_at = COALESCE(excluded.last_error_at, last_error_at)",
                params![provider, fp, at, error],
            )
            .map_err(|e| self.err(e))?;
        }
        Ok(())
    }

    fn key_activity(&self, provider: &str) -> Result<Vec<KeyActivity>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT fingerprint, last_used, last_error FROM key_activity WHERE provider = ?1",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![provider], |r| {
                Ok(KeyActivity {
                    fingerprint: r.get(0)?,
                    last_used: r.get::<_, Option<i64>>(1)?.map(timeutil::from_unix),
                    last_error: r.get(2)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.err(e))
    }
}

fn ensure_override(
    conn: &rusqlite::Connection,
    provider: &str,
    fingerprint: &str,
    masked: &str,
) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO key_overrides (provider, fingerprint, masked, updated) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (provider, fingerprint) DO UPDATE SET masked = excluded.masked, updated = excluded.updated",
        params![provider, fingerprint, masked, timeutil::unix_secs(SystemTime::now())],
    )?;
    Ok(())
}

impl SqliteStore {
    fn rotation_requests_locked(&self, conn: &rusqlite::Connection, provider: &str) -> Result<i64> {
        let v: Option<String> = conn
            .query_row(
                "SELECT v FROM meta WHERE k = ?1",
                params![rotate_meta(provider)],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        Ok(v.and_then(|v| v.parse().ok()).unwrap_or(0))
    }
}
