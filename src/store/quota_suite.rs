//! The behaviour every quota store must have: two runs share one organization's limit,
//! checked on each store at the same moments.

use super::memory::MemoryQuotas;
use super::sqlite::SqliteQuotas;
use super::{Applied, StoreError};
use crate::limits::Limits;
use crate::pacing::quota::{Ask, Decision, Nanos, QuotaOp, Rank};
use crate::timeutil::DayStart;

/// A store that applies operations at a chosen time, so that stores can be compared.
pub(crate) trait AtTime {
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
pub(crate) fn two_runs_share_one_limit(a: &dyn AtTime, b: &dyn AtTime) {
    let ask = Ask {
        limits: Limits {
            rpm: Some(60),
            rpd: Some(3),
            ..Limits::default()
        },
        tokens: 10,
        day: DayStart::UtcMidnight,
        lease: 1,
        rank: Rank::default(),
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
