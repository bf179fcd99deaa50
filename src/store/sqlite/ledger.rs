//! The usage ledger in the SQLite file.

use rusqlite::params;

use super::SqliteStore;
use crate::error::Result;
use crate::store::{Ledger, UsageDelta, UsageEntry, UsageRow};
use crate::timeutil::Day;

impl Ledger for SqliteStore {
    /// Adds several entries in one transaction.
    fn add_usage(&self, provider: &str, rows: &[UsageEntry]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn();
        // A full disk says so (the run keeps the usage and writes it when room returns).
        let written = write_usage(&mut conn, provider, rows);
        written.map_err(|e| self.write_err(&conn, e))
    }

    /// Ledger rows for `provider` from `since_day` (inclusive), oldest first.
    fn usage_since(&self, provider: &str, since_day: &Day) -> Result<Vec<UsageRow>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT day, fingerprint, masked, model, requests, successes, rate_limit, quota, auth, server,
                        timeout, network, unparsable, rejected, tokens_in, tokens_out, cost, rows, cut
                 FROM usage WHERE provider = ?1 AND day >= ?2 ORDER BY day, fingerprint, model",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![provider, since_day.as_str()], |r| {
                let mut errors = [0u64; 8];
                for (i, e) in errors.iter_mut().enumerate() {
                    *e = r.get::<_, i64>(6 + i)? as u64;
                }
                Ok(UsageRow {
                    day: Day::stored(r.get(0)?),
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
                        cut: r.get::<_, i64>(18)? as u64,
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
        since_day: &Day,
    ) -> Result<(u64, u64)> {
        let conn = self.conn();
        conn.query_row(
            "SELECT COALESCE(SUM(requests), 0), COALESCE(SUM(tokens_in + tokens_out), 0) FROM usage
             WHERE provider = ?1 AND fingerprint = ?2 AND day >= ?3",
            params![provider, fingerprint, since_day.as_str()],
            |r| {
                Ok((
                    r.get::<_, i64>(0)?.max(0) as u64,
                    r.get::<_, i64>(1)?.max(0) as u64,
                ))
            },
        )
        .map_err(|e| self.err(e))
    }
}

/// The entries in one transaction.
fn write_usage(
    conn: &mut rusqlite::Connection,
    provider: &str,
    rows: &[UsageEntry],
) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    {
        let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO usage (day, provider, fingerprint, masked, model, requests, successes,
                        rate_limit, quota, auth, server, timeout, network, unparsable, rejected,
                        tokens_in, tokens_out, cost, rows, cut)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20)
                     ON CONFLICT (day, provider, fingerprint, model) DO UPDATE SET
                        requests = requests + excluded.requests, successes = successes + excluded.successes,
                        rate_limit = rate_limit + excluded.rate_limit, quota = quota + excluded.quota,
                        auth = auth + excluded.auth, server = server + excluded.server,
                        timeout = timeout + excluded.timeout, network = network + excluded.network,
                        unparsable = unparsable + excluded.unparsable, rejected = rejected + excluded.rejected,
                        tokens_in = tokens_in + excluded.tokens_in, tokens_out = tokens_out + excluded.tokens_out,
                        cost = cost + excluded.cost, rows = rows + excluded.rows, cut = cut + excluded.cut",
                )
                ?;
        for UsageEntry {
            fingerprint: fp,
            masked,
            model,
            day,
            usage: d,
        } in rows
        {
            let e = d.errors.map(|v| v as i64);
            stmt.execute(params![
                day.as_str(),
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
                d.rows as i64,
                d.cut as i64
            ])?;
        }
    }
    tx.commit()
}
