//! The quota store failing: no grant without it, a stop after the store timeout, news
//! once each way, and no store at all for an organization without limits.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use super::*;
use crate::store::redis::test_server::RedisServer;
use crate::store::redis::RedisQuotas;
use crate::store::{Applied, MemoryQuotas, StoreError};

/// The in-memory store, failing on demand, counting the calls.
struct Flaky {
    inner: MemoryQuotas,
    failing: AtomicBool,
    calls: AtomicUsize,
}

impl QuotaStore for Flaky {
    fn apply(&self, org: &str, op: &QuotaOp) -> Result<Applied, StoreError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.failing.load(Ordering::SeqCst) {
            return Err(StoreError("Redis unreachable: connection refused".into()));
        }
        self.inner.apply(org, op)
    }
}

fn flaky_dispatcher(limits: Limits, failing: bool) -> (Arc<Dispatcher>, Arc<Flaky>) {
    let clock: Arc<dyn Clock> = Arc::new(FollowingClock::starting_at(SystemTime::now()));
    let store = Arc::new(Flaky {
        inner: MemoryQuotas::new(clock.clone()),
        failing: AtomicBool::new(failing),
        calls: AtomicUsize::new(0),
    });
    let setup = OrgSetup {
        limits: LimitSet::from_limits(limits, Source::Flag),
        id: OrgId::named("org"),
        used_today: (0, 0),
        lease: 1,
        rules: groq(),
    };
    let keys = vec![ApiKey::new(1, "gsk_TESTFAKEKEY_0000".into())];
    let d = Dispatcher::new(
        KeyRing::new(keys, &[0]),
        vec![setup],
        Duration::ZERO,
        clock,
        store.clone(),
    )
    .with_store_timeout(Duration::from_secs(60));
    (Arc::new(d), store)
}

fn rpm(n: u64) -> Limits {
    Limits {
        rpm: Some(n),
        ..Limits::default()
    }
}

/// What `acquire` reported about the store, in order.
type News = Arc<std::sync::Mutex<Vec<StoreNews>>>;

fn acquire_in_background(d: &Arc<Dispatcher>, news: &News) -> tokio::task::JoinHandle<Grant> {
    let (d, news) = (d.clone(), news.clone());
    tokio::spawn(async move {
        let log = move |c: Changes| news.lock().unwrap().extend(c.store);
        d.acquire(1, &log).await
    })
}

#[tokio::test(start_paused = true)]
async fn a_failing_store_holds_every_grant_until_it_answers() {
    let (d, store) = flaky_dispatcher(rpm(6000), false);
    assert_eq!(key(&d, 1).await, 0);
    store.failing.store(true, Ordering::SeqCst);
    let news = News::default();
    let waiting = acquire_in_background(&d, &news);
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert!(!waiting.is_finished(), "a grant without the store");
    assert!(
        store.calls.load(Ordering::SeqCst) > 10,
        "asked again and again"
    );
    store.failing.store(false, Ordering::SeqCst);
    assert_eq!(waiting.await.unwrap(), Grant::Key(0));
    let news = news.lock().unwrap().clone();
    assert_eq!(news.len(), 2, "{news:?}");
    assert!(matches!(&news[0], StoreNews::Lost { error, .. } if error.contains("refused")));
    assert_eq!(news[1], StoreNews::Back);
}

#[tokio::test(start_paused = true)]
async fn a_store_failing_for_the_whole_timeout_ends_the_wait() {
    let (d, _store) = flaky_dispatcher(rpm(60), true);
    let start = Instant::now();
    let wall = d.clock().wall();
    let news = News::default();
    match acquire_in_background(&d, &news).await.unwrap() {
        Grant::StoreLost { since, error } => {
            assert_eq!(since, wall);
            assert!(error.contains("refused"), "{error}");
        }
        other => panic!("{other:?}"),
    }
    let waited = start.elapsed();
    assert!(
        (Duration::from_secs(60)..Duration::from_millis(60_500)).contains(&waited),
        "{waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn an_unlimited_organization_needs_no_store() {
    let (d, store) = flaky_dispatcher(Limits::default(), true);
    for _ in 0..5 {
        assert_eq!(key(&d, 1).await, 0);
    }
    assert_eq!(store.calls.load(Ordering::SeqCst), 0);
}

/// A real server killed mid-run: the waiting request gets no grant until it is back, and
/// then from a fresh state (the day's two requests are there again).
#[tokio::test]
async fn grants_resume_from_a_fresh_state_after_redis_restarts() {
    let mut server = RedisServer::start();
    let store = RedisQuotas::open(&crate::store::RedisTarget {
        url: server.url(0),
        prefix: "t:".into(),
    })
    .unwrap();
    let setup = OrgSetup {
        limits: LimitSet::from_limits(
            Limits {
                rpd: Some(2),
                ..Limits::default()
            },
            Source::Flag,
        ),
        id: OrgId::named("org"),
        used_today: (0, 0),
        lease: 1,
        rules: groq(),
    };
    let keys = vec![ApiKey::new(1, "gsk_TESTFAKEKEY_0000".into())];
    let d = Arc::new(Dispatcher::new(
        KeyRing::new(keys, &[0]),
        vec![setup],
        Duration::ZERO,
        Arc::new(SystemClock),
        Arc::new(store),
    ));
    assert_eq!(key(&d, 1).await, 0);
    assert_eq!(key(&d, 1).await, 0);
    server.kill();
    let news = News::default();
    let waiting = acquire_in_background(&d, &news);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiting.is_finished(), "a grant without the store");
    server.restart();
    let grant = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("no grant after the restart")
        .unwrap();
    assert_eq!(grant, Grant::Key(0));
    assert_eq!(key(&d, 1).await, 0);
    let news = news.lock().unwrap().clone();
    assert!(
        matches!(news[..], [StoreNews::Lost { .. }, StoreNews::Back]),
        "{news:?}"
    );
}

/// A real server frozen (SIGSTOP) while a grant is asked for: the runtime's thread never
/// waits on it (a ticker on the same thread keeps ticking), and the wait ends with
/// `StoreLost` after the store timeout, dated from the call that got no answer.
#[tokio::test]
async fn a_frozen_redis_never_holds_up_the_runtime() {
    let server = RedisServer::start();
    let store = RedisQuotas::open(&crate::store::RedisTarget {
        url: server.url(0),
        prefix: "f:".into(),
    })
    .unwrap();
    let setup = OrgSetup {
        limits: LimitSet::from_limits(rpm(6000), Source::Flag),
        id: OrgId::named("org"),
        used_today: (0, 0),
        lease: 1,
        rules: groq(),
    };
    let keys = vec![ApiKey::new(1, "gsk_TESTFAKEKEY_0000".into())];
    let d = Dispatcher::new(
        KeyRing::new(keys, &[0]),
        vec![setup],
        Duration::ZERO,
        Arc::new(SystemClock),
        Arc::new(store),
    )
    .with_store_timeout(Duration::from_secs(3));
    assert_eq!(key(&d, 1).await, 0);
    server.stop();
    let (frozen, started) = (SystemTime::now(), std::time::Instant::now());
    // The longest time the runtime went without running a 10 ms ticker: a store call
    // made on the runtime thread would hold it for the whole 2 s response timeout.
    let longest = Arc::new(std::sync::Mutex::new((
        std::time::Instant::now(),
        Duration::ZERO,
    )));
    let ticker = {
        let longest = longest.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(10)).await;
                let mut l = longest.lock().unwrap();
                let gap = l.0.elapsed();
                *l = (std::time::Instant::now(), l.1.max(gap));
            }
        })
    };
    let grant = tokio::time::timeout(Duration::from_secs(20), d.acquire(1, &no_log))
        .await
        .expect("the wait never ended");
    let took = started.elapsed();
    ticker.abort();
    server.resume();
    match grant {
        Grant::StoreLost { since, error } => {
            let late = since.duration_since(frozen).unwrap_or_default();
            assert!(late < Duration::from_secs(1), "dated {late:?} late");
            assert!(error.contains("no answer within"), "{error}");
        }
        other => panic!("{other:?}"),
    }
    assert!(took < Duration::from_millis(4500), "{took:?}");
    // Measured as the longest gap, not as a tick rate: a loaded machine slows every tick
    // a little (143 ticks in 3.2 s once), but only a held runtime stops them for seconds.
    let (last, gap) = *longest.lock().unwrap();
    let gap = gap.max(last.elapsed());
    assert!(
        gap < Duration::from_millis(1000),
        "the runtime went {gap:?} without a tick in {took:?}"
    );
}
