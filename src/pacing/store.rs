//! Where organizations' quota state lives, so that every run using the same keys stays
//! under their limits together.
//!
//! The state file (SQLite) is shared by every run on one machine: each decision is one
//! short `BEGIN IMMEDIATE` transaction that reads the organization's row, decides and
//! writes it back, so two processes can never both take the last slot. Tests use the
//! in-memory store with the same decision code.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::quota::QuotaState;

/// The quota store of a state location: its own connection to the state file, or to
/// the Redis server.
pub fn open_quota_store(
    location: &crate::state::StateLocation,
) -> Result<std::sync::Arc<dyn QuotaStore>, String> {
    match location {
        crate::state::StateLocation::File(path) => {
            Ok(std::sync::Arc::new(SqliteQuotas::open(path)?))
        }
        crate::state::StateLocation::Redis(_) => {
            Err("Redis state is not supported by this build yet".into())
        }
    }
}

/// An organization as every run names it: provider, model and its keys' fingerprints.
pub type OrgId = String;

pub trait QuotaStore: Send + Sync {
    /// Reads the organization's state (`Default` and `fresh` the first time), lets `f`
    /// change it, and writes it back, atomically with respect to every other run.
    fn update(&self, org: &str, f: &mut dyn FnMut(&mut QuotaState, bool)) -> Result<(), String>;
}

/// One process only (tests, and runs whose state cannot be shared).
#[derive(Default)]
pub struct MemoryQuotas {
    orgs: Mutex<HashMap<OrgId, QuotaState>>,
}

impl QuotaStore for MemoryQuotas {
    fn update(&self, org: &str, f: &mut dyn FnMut(&mut QuotaState, bool)) -> Result<(), String> {
        let mut orgs = self.orgs.lock().unwrap();
        let fresh = !orgs.contains_key(org);
        f(orgs.entry(org.to_string()).or_default(), fresh);
        Ok(())
    }
}

const TABLE: &str = "CREATE TABLE IF NOT EXISTS quota_state (
    org TEXT PRIMARY KEY, state TEXT NOT NULL, updated INTEGER NOT NULL
)";

/// The state file, on a connection of its own.
pub struct SqliteQuotas {
    conn: Mutex<Connection>,
}

impl SqliteQuotas {
    pub fn open(path: &Path) -> Result<SqliteQuotas, String> {
        let conn = Connection::open(path).map_err(|e| e.to_string())?;
        // Many runs may decide at once; each transaction holds the lock for microseconds.
        // WAL without a sync on every commit, like the state file's main connection: no
        // fsync per request. A killed process loses nothing committed; only a power loss
        // can lose the last grants' counts.
        conn.busy_timeout(Duration::from_secs(10))
            .and_then(|_| conn.pragma_update(None, "journal_mode", "WAL"))
            .and_then(|_| conn.pragma_update(None, "synchronous", "NORMAL"))
            .and_then(|_| conn.execute_batch(TABLE))
            .map_err(|e| e.to_string())?;
        Ok(SqliteQuotas {
            conn: Mutex::new(conn),
        })
    }
}

impl QuotaStore for SqliteQuotas {
    fn update(&self, org: &str, f: &mut dyn FnMut(&mut QuotaState, bool)) -> Result<(), String> {
        let mut conn = self.conn.lock().unwrap();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| e.to_string())?;
        let row: Option<String> = tx
            .query_row(
                "SELECT state FROM quota_state WHERE org = ?1",
                params![org],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| e.to_string())?;
        // A row this version cannot read starts over (from the limits, not from zero use:
        // the ledger seeds today's counts).
        let parsed = row.as_deref().and_then(|s| serde_json::from_str(s).ok());
        let fresh = parsed.is_none();
        let mut state: QuotaState = parsed.unwrap_or_default();
        f(&mut state, fresh);
        let text = serde_json::to_string(&state).map_err(|e| e.to_string())?;
        tx.execute(
            "INSERT INTO quota_state (org, state, updated) VALUES (?1, ?2, strftime('%s','now'))
             ON CONFLICT (org) DO UPDATE SET state = excluded.state, updated = excluded.updated",
            params![org, text],
        )
        .map_err(|e| e.to_string())?;
        tx.commit().map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::super::quota::{Ask, Decision};
    use super::*;
    use crate::limits::Limits;
    use crate::timeutil::DayStart;

    /// The same behaviour from both stores: two "runs" share one organization's limit.
    fn two_runs_share_one_limit(a: &dyn QuotaStore, b: &dyn QuotaStore) {
        let ask = Ask {
            limits: Limits {
                rpm: Some(60),
                rpd: Some(3),
                ..Limits::default()
            },
            tokens: 10,
            day: DayStart::UtcMidnight,
            lease: 1,
        };
        let t0 = 1_796_000_000_000_000_000;
        let decide = |s: &dyn QuotaStore, now| {
            let mut out = None;
            s.update("groq:m:fp1", &mut |q, _| out = Some(q.decide(&ask, now)))
                .unwrap();
            out.unwrap()
        };
        assert!(matches!(decide(a, t0), Decision::Lease { .. }));
        // The other run sees the slot taken.
        assert!(matches!(decide(b, t0), Decision::Wait(_)));
        assert!(matches!(
            decide(b, t0 + 1_100_000_000),
            Decision::Lease { .. }
        ));
        assert!(matches!(
            decide(a, t0 + 2_200_000_000),
            Decision::Lease { .. }
        ));
        // Three a day between them.
        assert!(matches!(
            decide(b, t0 + 3_300_000_000),
            Decision::Full { .. }
        ));
    }

    #[test]
    fn memory_store_shares_within_a_process() {
        let m = MemoryQuotas::default();
        two_runs_share_one_limit(&m, &m);
    }

    #[test]
    fn state_file_is_shared_by_two_connections() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.sqlite3");
        let a = SqliteQuotas::open(&path).unwrap();
        let b = SqliteQuotas::open(&path).unwrap();
        two_runs_share_one_limit(&a, &b);
        let mut fresh_seen = Vec::new();
        a.update("other", &mut |_, fresh| fresh_seen.push(fresh))
            .unwrap();
        b.update("other", &mut |_, fresh| fresh_seen.push(fresh))
            .unwrap();
        assert_eq!(fresh_seen, [true, false]);
    }
}
