//! Key health, stated limits and the rotation log in the SQLite file.

use std::time::SystemTime;

use rusqlite::params;

use super::SqliteStore;
use crate::error::Result;
use crate::limits::Dim;
use crate::store::{KeyHistory, LearnedLimit, Rotation, StoredHealth};
use crate::timeutil;

impl KeyHistory for SqliteStore {
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
                h.reason.to_string(),
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
            out.extend(StoredHealth::decode(
                fingerprint,
                masked,
                &status,
                until,
                &reason,
            ));
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

    fn save_org_member(&self, provider: &str, fingerprint: &str, org: &str) -> Result<()> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO org_members (provider, fingerprint, org, updated) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (provider, fingerprint) DO UPDATE SET org = excluded.org,
                updated = excluded.updated",
            params![
                provider,
                fingerprint,
                org,
                timeutil::unix_secs(SystemTime::now())
            ],
        )
        .map_err(|e| self.err(e))?;
        Ok(())
    }

    fn org_members(&self, provider: &str) -> Result<Vec<(String, String)>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT fingerprint, org FROM org_members WHERE provider = ?1 ORDER BY fingerprint",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![provider], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(|e| self.err(e))
    }

    fn save_reply_extra(&self, provider: &str, model: &str, extra: u32) -> Result<()> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO reply_extra (provider, model, extra, updated) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (provider, model) DO UPDATE SET extra = excluded.extra,
                updated = excluded.updated",
            params![
                provider,
                model,
                extra,
                timeutil::unix_secs(SystemTime::now())
            ],
        )
        .map_err(|e| self.err(e))?;
        Ok(())
    }

    fn reply_extra(&self, provider: &str, model: &str) -> Result<Option<u32>> {
        let conn = self.conn();
        let found = conn.query_row(
            "SELECT extra FROM reply_extra WHERE provider = ?1 AND model = ?2",
            params![provider, model],
            |r| r.get::<_, i64>(0),
        );
        match found {
            // A value this version cannot read is as if none were kept.
            Ok(v) => Ok(u32::try_from(v).ok()),
            Err(rusqlite::Error::QueryReturnedNoRows) => Ok(None),
            Err(e) => Err(self.err(e)),
        }
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
}
