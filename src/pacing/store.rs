//! Where organizations' quota state lives, so that every run using the same keys stays
//! under their limits together.
//!
//! A store applies one [`QuotaOp`] at a time, atomically with respect to every other
//! run, at its own "now", and says what that now was: with a Redis server shared by
//! several machines the server's clock rules, and the caller turns the answer's times
//! into its own instants from it.
//!
//! The state file (SQLite) is shared by every run on one machine: each operation is one
//! short `BEGIN IMMEDIATE` transaction that reads the organization's row, decides and
//! writes it back, so two processes can never both take the last slot. Redis
//! (`redis_store`) runs each operation as one script. Tests use the in-memory store with
//! the same decision code.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::clock::{Clock, SystemClock};
pub use super::quota::QuotaOp;
use super::quota::{self, Decision, Nanos, QuotaState};
use super::redis_store::RedisQuotas;

/// The quota store of a state location: its own connection to the state file, or to
/// the Redis server.
pub fn open_quota_store(
    location: &crate::state::StateLocation,
) -> Result<Arc<dyn QuotaStore>, String> {
    match location {
        crate::state::StateLocation::File(path) => Ok(Arc::new(SqliteQuotas::open(path)?)),
        crate::state::StateLocation::Redis(target) => Ok(Arc::new(RedisQuotas::open(target)?)),
    }
}

/// An organization as every run names it: provider, model and its keys' fingerprints.
pub type OrgId = String;

/// What a store did with an operation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Applied {
    /// The decision of a `Decide`, in the store's time.
    pub decision: Option<Decision>,
    /// The store's now when it applied the operation (nanoseconds since the epoch).
    pub now: Nanos,
}

/// The store did not answer (or answered nonsense): nothing was decided, and no request
/// may go on the strength of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreError(pub String);

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<String> for StoreError {
    fn from(s: String) -> StoreError {
        StoreError(s)
    }
}

impl From<StoreError> for String {
    fn from(e: StoreError) -> String {
        e.0
    }
}

pub trait QuotaStore: Send + Sync {
    /// Applies `op` to the organization's state (seeded the first time, see
    /// [`QuotaOp::Decide`]), atomically with respect to every other run.
    fn apply(&self, org: &str, op: &QuotaOp) -> Result<Applied, StoreError>;
}

/// One process only (tests, and runs whose state cannot be shared), on the pacer's clock.
pub struct MemoryQuotas {
    orgs: Mutex<HashMap<OrgId, QuotaState>>,
    clock: Arc<dyn Clock>,
}

impl Default for MemoryQuotas {
    fn default() -> MemoryQuotas {
        MemoryQuotas::new(Arc::new(SystemClock))
    }
}

impl MemoryQuotas {
    pub fn new(clock: Arc<dyn Clock>) -> MemoryQuotas {
        MemoryQuotas {
            orgs: Mutex::new(HashMap::new()),
            clock,
        }
    }

    /// `op` at a chosen time (tests compare stores at the same moments).
    pub fn apply_at(&self, org: &str, op: &QuotaOp, now: Nanos) -> Applied {
        let mut orgs = self.orgs.lock().unwrap_or_else(|p| p.into_inner());
        let fresh = !orgs.contains_key(org);
        let decision = orgs
            .entry(org.to_string())
            .or_default()
            .apply(op, now, fresh);
        Applied { decision, now }
    }
}

impl QuotaStore for MemoryQuotas {
    fn apply(&self, org: &str, op: &QuotaOp) -> Result<Applied, StoreError> {
        Ok(self.apply_at(org, op, quota::nanos(self.clock.wall())))
    }
}

const TABLE: &str = "CREATE TABLE IF NOT EXISTS quota_state (
    org TEXT PRIMARY KEY, state TEXT NOT NULL, updated INTEGER NOT NULL
)";

/// The state file, on a connection of its own.
pub struct SqliteQuotas {
    conn: Mutex<Connection>,
    clock: Arc<dyn Clock>,
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
        let err = |e: rusqlite::Error| StoreError(format!("state file: {e}"));
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(err)?;
        let row: Option<String> = tx
            .query_row(
                "SELECT state FROM quota_state WHERE org = ?1",
                params![org],
                |r| r.get(0),
            )
            .optional()
            .map_err(err)?;
        // A row this version cannot read starts over (from the limits, not from zero use:
        // the ledger seeds today's counts).
        let parsed = row.as_deref().and_then(|s| serde_json::from_str(s).ok());
        let fresh = parsed.is_none();
        let mut state: QuotaState = parsed.unwrap_or_default();
        let decision = state.apply(op, now, fresh);
        let text = serde_json::to_string(&state).map_err(|e| StoreError(e.to_string()))?;
        tx.execute(
            "INSERT INTO quota_state (org, state, updated) VALUES (?1, ?2, strftime('%s','now'))
             ON CONFLICT (org) DO UPDATE SET state = excluded.state, updated = excluded.updated",
            params![org, text],
        )
        .map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(Applied { decision, now })
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::super::quota::{Ask, Decision};
    use super::*;
    use crate::limits::Limits;
    use crate::timeutil::DayStart;

    /// A store that applies operations at a chosen time, so that stores can be compared.
    pub(in crate::pacing) trait AtTime {
        fn at(&self, org: &str, op: &QuotaOp, now: Nanos) -> Result<Applied, StoreError>;
    }

    impl AtTime for MemoryQuotas {
        fn at(&self, org: &str, op: &QuotaOp, now: Nanos) -> Result<Applied, StoreError> {
            Ok(self.apply_at(org, op, now))
        }
    }

    impl AtTime for SqliteQuotas {
        fn at(&self, org: &str, op: &QuotaOp, now: Nanos) -> Result<Applied, StoreError> {
            self.apply_at(org, op, now)
        }
    }

    /// The same behaviour from every store: two "runs" share one organization's limit.
    pub(in crate::pacing) fn two_runs_share_one_limit(a: &dyn AtTime, b: &dyn AtTime) {
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
        let op = QuotaOp::Decide {
            ask,
            seed_today: (0, 0),
        };
        let t0 = 1_796_000_000_000_000_000;
        let decide = |s: &dyn AtTime, now| {
            let applied = s.at("groq:m:fp1", &op, now).unwrap();
            assert_eq!(applied.now, now);
            applied.decision.unwrap()
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
        // A store that never saw an organization seeds today's count from the ledger;
        // one that did keeps its own.
        let seeded = QuotaOp::Decide {
            ask,
            seed_today: (3, 0),
        };
        let t1 = t0 + 5_000_000_000;
        let first = a.at("other", &seeded, t1).unwrap().decision;
        assert!(matches!(first, Some(Decision::Full { .. })), "{first:?}");
        let refund = QuotaOp::Refund {
            count: 1,
            tokens: 0,
        };
        assert_eq!(b.at("other", &refund, t1).unwrap().decision, None);
        let again = b.at("other", &seeded, t1).unwrap().decision;
        assert!(matches!(again, Some(Decision::Lease { .. })), "{again:?}");
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
    }
}
