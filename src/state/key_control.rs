//! What people decide about keys (`autolabel keys disable|enable|reset|rotate`) and when
//! each key was last used, stored by fingerprint so every run on this state sees it.
//!
//! Running labelers read the overrides every few seconds: a change made here reaches them
//! without a restart. The secret itself is never stored: the env file stays the one place
//! keys live.

use std::time::SystemTime;

use rusqlite::{params, OptionalExtension};

use super::State;
use crate::error::Result;
use crate::timeutil;

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS key_overrides (
    provider TEXT NOT NULL, fingerprint TEXT NOT NULL, masked TEXT NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0, disabled_until INTEGER, reason TEXT NOT NULL DEFAULT '',
    reset_seq INTEGER NOT NULL DEFAULT 0, reset_what TEXT NOT NULL DEFAULT '',
    day_base_date TEXT, day_base_requests INTEGER NOT NULL DEFAULT 0, day_base_tokens INTEGER NOT NULL DEFAULT 0,
    month_base_date TEXT, month_base_requests INTEGER NOT NULL DEFAULT 0, month_base_tokens INTEGER NOT NULL DEFAULT 0,
    updated INTEGER NOT NULL,
    PRIMARY KEY (provider, fingerprint)
);
CREATE TABLE IF NOT EXISTS key_activity (
    provider TEXT NOT NULL, fingerprint TEXT NOT NULL,
    last_used INTEGER, last_error TEXT, last_error_at INTEGER,
    PRIMARY KEY (provider, fingerprint)
);
";

/// Use a reset told to forget: counted from a period's start, minus this base.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Base {
    /// The period the base belongs to (its first UTC day); another period ignores it.
    pub date: Option<String>,
    pub requests: u64,
    pub tokens: u64,
}

impl Base {
    /// `used` (from the ledger since `period_start`) less what a reset in this period forgot.
    pub fn apply(&self, period_start: &str, used: (u64, u64)) -> (u64, u64) {
        if self.date.as_deref() == Some(period_start) {
            (
                used.0.saturating_sub(self.requests),
                used.1.saturating_sub(self.tokens),
            )
        } else {
            used
        }
    }
}

/// One key's overrides.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KeyOverride {
    pub fingerprint: String,
    pub disabled: bool,
    /// A disable with `--for` ends here.
    pub disabled_until: Option<SystemTime>,
    pub reason: String,
    /// Grows with each `keys reset`; runs apply a reset once.
    pub reset_seq: i64,
    /// minute, day, month or all.
    pub reset_what: String,
    pub day_base: Base,
    pub month_base: Base,
}

impl KeyOverride {
    /// Disabled at `now` (a timed disable that has ended is not).
    pub fn is_disabled(&self, now: SystemTime) -> bool {
        self.disabled && self.disabled_until.is_none_or(|u| u > now)
    }
}

/// When a key was last used and its last error class.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KeyActivity {
    pub fingerprint: String,
    pub last_used: Option<SystemTime>,
    pub last_error: Option<String>,
}

fn rotate_meta(provider: &str) -> String {
    format!("rotate_request:{provider}")
}

impl State {
    pub fn key_overrides(&self, provider: &str) -> Result<Vec<KeyOverride>> {
        let conn = self.conn.lock().unwrap();
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
                        date: r.get(6)?,
                        requests: r.get::<_, i64>(7)?.max(0) as u64,
                        tokens: r.get::<_, i64>(8)?.max(0) as u64,
                    },
                    month_base: Base {
                        date: r.get(9)?,
                        requests: r.get::<_, i64>(10)?.max(0) as u64,
                        tokens: r.get::<_, i64>(11)?.max(0) as u64,
                    },
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.err(e))
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

    /// `keys disable` (`until` for `--for`) and `keys enable` (`disabled` false).
    pub fn set_key_disabled(
        &self,
        provider: &str,
        fingerprint: &str,
        masked: &str,
        disabled: bool,
        until: Option<SystemTime>,
        reason: &str,
    ) -> Result<()> {
        let conn = self.conn.lock().unwrap();
        Self::ensure_override(&conn, provider, fingerprint, masked).map_err(|e| self.err(e))?;
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
    pub fn reset_key(
        &self,
        provider: &str,
        fingerprint: &str,
        masked: &str,
        what: &str,
        day: (&str, (u64, u64)),
        month: (&str, (u64, u64)),
    ) -> Result<()> {
        let mut conn = self.conn.lock().unwrap();
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        Self::ensure_override(&tx, provider, fingerprint, masked).map_err(|e| self.err(e))?;
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
                params![provider, fingerprint, day.0, day.1 .0 as i64, day.1 .1 as i64],
            )
            .map_err(|e| self.err(e))?;
        }
        if matches!(what, "month" | "all") {
            tx.execute(
                "UPDATE key_overrides SET month_base_date = ?3, month_base_requests = ?4, month_base_tokens = ?5
                 WHERE provider = ?1 AND fingerprint = ?2",
                params![provider, fingerprint, month.0, month.1 .0 as i64, month.1 .1 as i64],
            )
            .map_err(|e| self.err(e))?;
        }
        let statuses: &[&str] = match what {
            "minute" => &["cooling"],
            "day" | "month" => &["cooling", "exhausted"],
            _ => &["cooling", "exhausted", "invalid"],
        };
        for status in statuses {
            tx.execute(
                "DELETE FROM key_health WHERE provider = ?1 AND fingerprint = ?2 AND status = ?3",
                params![provider, fingerprint, status],
            )
            .map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// `keys rotate`: asks every run on this state to move off the key it uses now.
    /// Returns the request's number.
    pub fn request_rotation(&self, provider: &str) -> Result<i64> {
        let conn = self.conn.lock().unwrap();
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
    pub fn rotation_requests(&self, provider: &str) -> Result<i64> {
        let conn = self.conn.lock().unwrap();
        self.rotation_requests_locked(&conn, provider)
    }

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

    /// Records that keys were used (and the last error class of each, if any).
    pub fn touch_keys(
        &self,
        provider: &str,
        used: &[(String, Option<&'static str>)],
        at: SystemTime,
    ) -> Result<()> {
        if used.is_empty() {
            return Ok(());
        }
        let conn = self.conn.lock().unwrap();
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

    pub fn key_activity(&self, provider: &str) -> Result<Vec<KeyActivity>> {
        let conn = self.conn.lock().unwrap();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_round_trip_and_a_reset_keeps_the_ledger() {
        let s = State::in_memory();
        s.set_key_disabled("groq", "fp1", "gsk_…a1b2", true, None, "leaked")
            .unwrap();
        let o = &s.key_overrides("groq").unwrap()[0];
        assert!(o.is_disabled(SystemTime::now()));
        assert_eq!(o.reason, "leaked");
        s.reset_key(
            "groq",
            "fp1",
            "gsk_…a1b2",
            "day",
            ("2026-11-30", (10, 500)),
            ("2026-11-01", (99, 9999)),
        )
        .unwrap();
        let o = &s.key_overrides("groq").unwrap()[0];
        assert_eq!((o.reset_seq, o.reset_what.as_str()), (1, "day"));
        assert_eq!(o.day_base.apply("2026-11-30", (12, 700)), (2, 200));
        assert_eq!(o.day_base.apply("2026-12-01", (12, 700)), (12, 700));
        assert_eq!(o.month_base, Base::default(), "a day reset keeps the month");
        assert_eq!(s.rotation_requests("groq").unwrap(), 0);
        assert_eq!(s.request_rotation("groq").unwrap(), 1);
        assert_eq!(s.request_rotation("groq").unwrap(), 2);
        s.touch_keys(
            "groq",
            &[("fp1".into(), Some("rate_limit"))],
            SystemTime::now(),
        )
        .unwrap();
        s.touch_keys("groq", &[("fp1".into(), None)], SystemTime::now())
            .unwrap();
        let a = &s.key_activity("groq").unwrap()[0];
        assert_eq!(a.last_error.as_deref(), Some("rate_limit"));
    }
}
