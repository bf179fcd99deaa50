//! The quota store in the state file, shared by every run on one machine: each operation
//! is one short `BEGIN IMMEDIATE` transaction that reads the organization's row, decides
//! and writes it back, so two processes can never both take the last slot. A write that
//! finds no room says "disk full" with the space left, as the state's own writes do.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use crate::pacing::clock::{Clock, SystemClock};
use crate::pacing::quota::{self, Nanos, QuotaOp, QuotaState};
use crate::store::{Applied, QuotaStore, StoreError};

/// The state file, on a connection of its own.
pub struct SqliteQuotas {
    conn: Mutex<Connection>,
    /// The state file, for the space left on its file system.
    path: PathBuf,
    clock: Arc<dyn Clock>,
}

impl SqliteQuotas {
    /// Its own connection to the state file (see [`super::schema::quota_connection`]).
    pub fn open(path: &Path) -> Result<SqliteQuotas, rusqlite::Error> {
        let conn = super::schema::quota_connection(path)?;
        Ok(SqliteQuotas {
            conn: Mutex::new(conn),
            path: path.to_path_buf(),
            clock: Arc::new(SystemClock),
        })
    }

    /// The same file on another clock (tests).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> SqliteQuotas {
        self.clock = clock;
        self
    }
}

impl QuotaStore for SqliteQuotas {
    fn apply(&self, org: &str, op: &QuotaOp) -> Result<Applied, StoreError> {
        self.apply_at(org, op, quota::nanos(self.clock.wall()))
    }
}

impl SqliteQuotas {
    /// `op` at a chosen time (the trait's `apply` reads the clock).
    pub fn apply_at(&self, org: &str, op: &QuotaOp, now: Nanos) -> Result<Applied, StoreError> {
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let decision = apply_in(&mut conn, org, op, now).map_err(|e| {
            if super::room::no_room(&conn, &e) {
                StoreError(super::room::message(&self.path, &e))
            } else {
                StoreError(format!("state file: {e}"))
            }
        })?;
        Ok(Applied { decision, now })
    }
}

/// Applies `op` to the organization's row in one `BEGIN IMMEDIATE` transaction.
fn apply_in(
    conn: &mut Connection,
    org: &str,
    op: &QuotaOp,
    now: Nanos,
) -> rusqlite::Result<Option<quota::Decision>> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let row: Option<String> = tx
        .query_row(
            "SELECT state FROM quota_state WHERE org = ?1",
            params![org],
            |r| r.get(0),
        )
        .optional()?;
    // A row this version cannot read starts over (from the limits, not from zero use:
    // the ledger seeds today's counts).
    let parsed = row.as_deref().and_then(|s| serde_json::from_str(s).ok());
    let fresh = parsed.is_none();
    let mut state: QuotaState = parsed.unwrap_or_default();
    let decision = state.apply(op, now, fresh);
    let text = serde_json::to_string(&state)
        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
    tx.execute(
        "INSERT INTO quota_state (org, state, updated) VALUES (?1, ?2, strftime('%s','now'))
         ON CONFLICT (org) DO UPDATE SET state = excluded.state, updated = excluded.updated",
        params![org, text],
    )?;
    tx.commit()?;
    Ok(decision)
}
