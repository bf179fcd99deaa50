//! The Redis store against a real `redis-server`: the same decisions as the in-memory
//! store at the same moments, shared between connections, and fresh after a restart.

use super::*;
use crate::limits::Limits;
use crate::pacing::quota::{Priority, Rank};
use crate::store::quota_suite::{
    a_lower_run_is_owed_by_the_limits_in_force, assert_owed_share, two_runs_share_one_limit, AtTime,
};
use crate::store::redis::test_server::RedisServer;
use crate::store::MemoryQuotas;

impl AtTime for RedisQuotas {
    fn at(&self, org: &str, op: &QuotaOp, now: Nanos) -> Result<Applied, StoreError> {
        self.apply_at(org, op, Some(now))
    }
}

fn open(server: &RedisServer) -> RedisQuotas {
    RedisQuotas::open(&RedisTarget {
        url: server.url(0),
        prefix: "al:".into(),
    })
    .unwrap()
}

/// 2026-11-30T23:40:00Z: the random walk crosses midnight UTC early on.
const T0: Nanos = 1_796_082_000 * 1_000_000_000;

#[test]
fn two_connections_share_one_limit() {
    let server = RedisServer::start();
    two_runs_share_one_limit(&open(&server), &open(&server));
}

#[test]
fn a_lower_run_is_owed_by_the_limits_in_force_on_redis() {
    let server = RedisServer::start();
    let slots = a_lower_run_is_owed_by_the_limits_in_force(&open(&server), &open(&server));
    assert_owed_share(slots);
    // The same slots as the in-memory store's.
    let memory = MemoryQuotas::default();
    assert_eq!(
        slots,
        a_lower_run_is_owed_by_the_limits_in_force(&memory, &memory)
    );
}

/// Limits the random walk switches between: leases at high rates, tokens binding, hour
/// and day counts filling up, and nothing at all.
fn profiles() -> Vec<Limits> {
    let l = Limits::default();
    vec![
        Limits { rpm: Some(60), ..l },
        Limits {
            rpm: Some(60_000),
            tpm: Some(2_000_000),
            ..l
        },
        Limits {
            rph: Some(20),
            rpd: Some(50),
            ..l
        },
        Limits {
            tpm: Some(5_000),
            tpd: Some(40_000),
            ..l
        },
        Limits {
            rpm: Some(600),
            rpd: Some(400),
            ..l
        },
        Limits {
            rpm: Some(120_000),
            rpd: Some(3_000),
            tpd: Some(10_000_000),
            ..l
        },
        l,
    ]
}

fn random_op(rng: &mut fastrand::Rng, limits: Limits, day: DayStart) -> QuotaOp {
    let dims = [Dim::Rph, Dim::Rpd, Dim::Tpd, Dim::Rpm];
    let count = (
        dims[rng.usize(..dims.len())],
        rng.u64(50..500),
        rng.u64(0..60),
    );
    let reset = rng
        .bool()
        .then(|| Duration::from_millis(rng.u64(0..20 * 3_600_000)));
    match rng.u32(0..100) {
        0..=69 => QuotaOp::Decide {
            ask: Ask {
                limits,
                tokens: rng.u64(0..3_000),
                day,
                lease: [1, 4, 64, 1000][rng.usize(..4)],
                rank: Rank {
                    priority: [Priority::Low, Priority::Normal, Priority::High][rng.usize(..3)],
                    min_share: [0.0, 0.05, 0.3, 1.0][rng.usize(..4)],
                },
            },
            seed_today: (rng.u64(0..30), rng.u64(0..30_000)),
        },
        70..=79 => QuotaOp::Refund {
            count: rng.u64(0..20),
            tokens: rng.u64(0..20_000),
        },
        80..=84 => QuotaOp::Ease {
            rpm: rng.bool(),
            tpm: rng.bool(),
        },
        85..=89 => QuotaOp::SyncDay { day, count, reset },
        90..=92 => QuotaOp::RestateDay { day, count, reset },
        _ => QuotaOp::Block {
            span: Duration::from_millis(rng.u64(0..120_000)),
        },
    }
}

/// How far the clock moves between two operations: mostly within a lease, sometimes
/// minutes, now and then past an hour or a day (the script re-bases its times then).
fn random_step(rng: &mut fastrand::Rng) -> Nanos {
    let ms = 1_000_000;
    match rng.u32(0..1000) {
        0..=299 => 0,
        300..=699 => rng.i64(0..3 * ms),
        700..=899 => rng.i64(0..400 * ms),
        900..=979 => rng.i64(0..10_000 * ms),
        980..=997 => rng.i64(0..1_800_000 * ms),
        _ => rng.i64(0..129_600_000 * ms),
    }
}

#[test]
fn redis_decides_exactly_like_memory_over_a_random_walk() {
    let server = RedisServer::start();
    let redis = open(&server);
    let memory = MemoryQuotas::default();
    let profiles = profiles();
    let orgs = [
        ("utc", DayStart::UtcMidnight),
        ("pacific", DayStart::PacificMidnight),
        ("other", DayStart::UtcMidnight),
    ];
    let mut rng = fastrand::Rng::with_seed(9);
    let mut limits: Vec<Limits> = (0..orgs.len()).map(|i| profiles[i]).collect();
    let mut now = T0;
    // Leases of several slots, waits and full windows must all have come up.
    let mut seen = [0usize; 4];
    for i in 0..8_000 {
        now += random_step(&mut rng);
        let o = rng.usize(..orgs.len());
        if rng.u32(0..100) < 3 {
            limits[o] = profiles[rng.usize(..profiles.len())];
        }
        let (org, day) = orgs[o];
        let op = random_op(&mut rng, limits[o], day);
        let want = memory.apply_at(org, &op, now);
        let got = redis.apply_at(org, &op, Some(now)).unwrap();
        assert_eq!(got, want, "operation {i} on {org}: {op:?}");
        match want.decision {
            Some(Decision::Lease { count: 1, .. }) => seen[0] += 1,
            Some(Decision::Lease { .. }) => seen[1] += 1,
            Some(Decision::Wait(_)) => seen[2] += 1,
            Some(Decision::Full { .. }) => seen[3] += 1,
            None => {}
        }
    }
    assert!(seen.iter().all(|&n| n >= 50), "{seen:?}");
}

#[test]
fn the_state_is_one_hash_that_expires_a_day_after_its_last_write() {
    let server = RedisServer::start();
    let redis = open(&server);
    let op = QuotaOp::Block {
        span: Duration::from_secs(5),
    };
    let applied = redis.apply("groq:m:fp", &op).unwrap();
    // The server's clock, not a chosen one.
    let wall = quota::nanos(SystemTime::now());
    assert!((applied.now - wall).abs() < 5_000_000_000, "{applied:?}");
    let mut c = redis::Client::open(server.url(0))
        .unwrap()
        .get_connection()
        .unwrap();
    let ttl: i64 = redis::cmd("PTTL")
        .arg("al:quota:groq:m:fp")
        .query(&mut c)
        .unwrap();
    assert!((25 * 3_600_000..=26 * 3_600_000).contains(&ttl), "{ttl}");
}

#[test]
fn a_restarted_server_starts_over_from_the_ledger() {
    let mut server = RedisServer::start();
    let redis = open(&server);
    let ask = Ask {
        limits: Limits {
            rpd: Some(3),
            ..Limits::default()
        },
        tokens: 1,
        day: DayStart::UtcMidnight,
        lease: 1,
        rank: Rank::default(),
    };
    let decide = QuotaOp::Decide {
        ask,
        seed_today: (1, 0),
    };
    let grants = |redis: &RedisQuotas| {
        let mut n = 0;
        while let Some(Decision::Lease { .. }) = redis.apply("org", &decide).unwrap().decision {
            n += 1;
        }
        n
    };
    assert_eq!(grants(&redis), 2);
    server.kill();
    assert!(redis.apply("org", &decide).is_err());
    server.restart();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while redis
        .apply(
            "org",
            &QuotaOp::Refund {
                count: 0,
                tokens: 0,
            },
        )
        .is_err()
    {
        assert!(std::time::Instant::now() < deadline, "never reconnected");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The refund above made the hash anew: no seed from the ledger then, like a state
    // file row written before the first decision.
    assert_eq!(grants(&redis), 3);
}

#[test]
fn a_malformed_reply_is_a_store_error() {
    let plan = Some(
        Ask {
            limits: Limits::default(),
            tokens: 1,
            day: DayStart::UtcMidnight,
            lease: 1,
            rank: Rank::default(),
        }
        .plan(),
    );
    for reply in [
        &[][..],
        &[1, 2, 3],
        &[i64::MAX, 0, 0, 0, 0],
        &[1, 0, 1, 0, 0],
        &[1, 0, 1, 100_000, 0],
        &[1, 0, 2, -5, 0],
        &[1, 0, 7, 0, 0],
    ] {
        assert!(read_reply(reply, plan).is_err(), "{reply:?}");
    }
    assert!(read_reply(&[1, 0, 1, 1, 0], None).is_err());
    assert_eq!(
        read_reply(&[1, 5, 0, 0, 0], None).unwrap(),
        Applied {
            decision: None,
            now: 1_000_000_005
        }
    );
}
