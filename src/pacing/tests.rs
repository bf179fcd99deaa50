//! The pacer on tokio's paused time: no test here waits on the wall clock.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::clock::FollowingClock;
use super::*;
use crate::keys::ApiKey;
use crate::limits::{Dim, Source};
use crate::provider::classify::{CallError, RateHeaders, LONGEST_HINT};
use crate::provider::defaults::{header_meaning, ProviderName};
use crate::store::MemoryQuotas;
use crate::timeutil::{self, DayStart};

/// 2026-11-30T23:59:00Z
const BEFORE_MIDNIGHT: i64 = 1_796_083_140;

fn groq() -> ProviderRules {
    ProviderRules {
        headers: header_meaning(ProviderName::Groq),
        day: DayStart::UtcMidnight,
    }
}

fn dispatcher_at(
    wall: SystemTime,
    orgs: &[usize],
    limits: LimitSet,
    delay: Duration,
) -> Dispatcher {
    let keys = (0..orgs.len())
        .map(|i| ApiKey::new(i + 1, format!("gsk_TESTFAKEKEY_{i:04}")))
        .collect();
    let n_orgs = orgs.iter().max().unwrap() + 1;
    let setups = (0..n_orgs)
        .map(|o| OrgSetup {
            limits: limits.clone(),
            id: OrgId::named(&format!("org{o}")),
            used_today: (0, 0),
            lease: 1,
            rules: groq(),
        })
        .collect();
    // The store keeps the pacer's time, so that no test reads the wall clock.
    let clock: Arc<dyn Clock> = Arc::new(FollowingClock::starting_at(wall));
    Dispatcher::new(
        KeyRing::new(keys, orgs),
        setups,
        delay,
        clock.clone(),
        Arc::new(MemoryQuotas::new(clock)),
    )
}

fn dispatcher(orgs: &[usize], limits: Limits, delay: Duration) -> Dispatcher {
    let set = LimitSet::from_limits(limits, Source::Flag);
    dispatcher_at(SystemTime::now(), orgs, set, delay)
}

/// Limits as if from the groq free tier, none set by the user.
fn defaults(limits: Limits) -> LimitSet {
    LimitSet::from_limits(limits, Source::Default { provider: "groq" })
}

fn no_log(_: Changes) {}

async fn key(d: &Dispatcher, tokens: u64) -> usize {
    match d.acquire(tokens, &no_log).await {
        Grant::Key(k) => k,
        other => panic!("{other:?}"),
    }
}

/// Grants in `span` of paused time with requests of `tokens`.
async fn grants_within(d: &Dispatcher, tokens: u64, span: Duration) -> usize {
    let end = Instant::now() + span;
    let mut n = 0;
    while Instant::now() < end {
        key(d, tokens).await;
        n += 1;
    }
    n
}

#[tokio::test(start_paused = true)]
async fn rotates_round_robin_when_unlimited() {
    let d = dispatcher(&[0, 1, 2], Limits::default(), Duration::ZERO);
    let mut got = Vec::new();
    for _ in 0..6 {
        got.push(key(&d, 10).await);
    }
    assert_eq!(got, [0, 1, 2, 0, 1, 2]);
}

#[tokio::test(start_paused = true)]
async fn day_limit_counts_and_then_reports_no_key() {
    let limits = Limits {
        rpd: Some(2),
        ..Limits::default()
    };
    let noon = timeutil::from_unix(BEFORE_MIDNIGHT - 12 * 3600);
    let d = dispatcher_at(
        noon,
        &[0],
        LimitSet::from_limits(limits, Source::Flag),
        Duration::ZERO,
    );
    assert_eq!(key(&d, 1).await, 0);
    assert_eq!(key(&d, 1).await, 0);
    match d.acquire(1, &no_log).await {
        // Full until the provider's day ends: midnight UTC, not 24 h after the first request.
        Grant::NoKey { earliest: Some(t) } => {
            assert_eq!(timeutil::rfc3339(t), "2026-12-01T00:00:00Z")
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_request_that_never_left_gives_its_day_slot_back() {
    let limits = Limits {
        rpd: Some(2),
        ..Limits::default()
    };
    let noon = timeutil::from_unix(BEFORE_MIDNIGHT - 12 * 3600);
    let d = dispatcher_at(
        noon,
        &[0],
        LimitSet::from_limits(limits, Source::Flag),
        Duration::ZERO,
    );
    // Five requests that could not connect use none of the day's two.
    for _ in 0..5 {
        assert_eq!(key(&d, 10).await, 0);
        d.unsent(0, 10);
    }
    assert_eq!(key(&d, 1).await, 0);
    assert_eq!(key(&d, 1).await, 0);
    assert!(matches!(d.acquire(1, &no_log).await, Grant::NoKey { .. }));
    assert_eq!(d.with_ring(|r| r.slots[0].health.name()), "available");
}

#[tokio::test(start_paused = true)]
async fn a_day_window_that_ends_soon_is_waited_for_across_midnight() {
    let limits = Limits {
        rpd: Some(2),
        ..Limits::default()
    };
    let wall = timeutil::from_unix(BEFORE_MIDNIGHT);
    let d = dispatcher_at(
        wall,
        &[0],
        LimitSet::from_limits(limits, Source::Flag),
        Duration::ZERO,
    );
    key(&d, 1).await;
    key(&d, 1).await;
    // The third request waits the minute to midnight, then the new day has room for two.
    key(&d, 1).await;
    let after = d.clock().wall();
    assert_eq!(timeutil::rfc3339(after), "2026-12-01T00:00:00Z");
    key(&d, 1).await;
    assert!(matches!(d.acquire(1, &no_log).await, Grant::NoKey { .. }));
}

#[tokio::test(start_paused = true)]
async fn hour_windows_align_to_the_hour() {
    let limits = Limits {
        rph: Some(1),
        ..Limits::default()
    };
    // 10:59:30 UTC: the next request may go at 11:00:00, not at 11:59:30.
    let wall = timeutil::from_unix(BEFORE_MIDNIGHT - 13 * 3600 + 30);
    let d = dispatcher_at(
        wall,
        &[0],
        LimitSet::from_limits(limits, Source::Flag),
        Duration::ZERO,
    );
    key(&d, 1).await;
    key(&d, 1).await;
    assert_eq!(timeutil::rfc3339(d.clock().wall()), "2026-11-30T11:00:00Z");
}

#[tokio::test(start_paused = true)]
async fn exhausted_everywhere_is_no_key() {
    let d = dispatcher(&[0, 1], Limits::default(), Duration::ZERO);
    let err = CallError::QuotaExhausted {
        reset: Some(Duration::from_secs(30)),
        what: "RPD".into(),
        dim: None,
        limit: None,
    };
    d.failed(0, &err, &RateHeaders::default());
    assert_eq!(key(&d, 1).await, 1);
    d.failed(
        1,
        &CallError::InvalidKey { status: 401 },
        &RateHeaders::default(),
    );
    assert!(matches!(
        d.acquire(1, &no_log).await,
        Grant::NoKey { earliest: Some(_) }
    ));
}

#[tokio::test(start_paused = true)]
async fn per_minute_limits_space_requests_evenly() {
    let limits = Limits {
        rpm: Some(600),
        ..Limits::default()
    };
    let d = dispatcher(&[0], limits, Duration::ZERO);
    let start = Instant::now();
    let mut at = Vec::new();
    for _ in 0..5 {
        key(&d, 1).await;
        at.push(start.elapsed().as_secs_f64());
    }
    // 600/min = one every 100 ms (1.5 % under the limit), the first one at once.
    assert_eq!(at[0], 0.0);
    for w in at.windows(2) {
        assert!((w[1] - w[0] - 0.1015).abs() < 0.002, "{at:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn the_delay_spaces_every_request_across_keys() {
    let d = dispatcher(&[0, 1], Limits::default(), Duration::from_millis(2500));
    let start = Instant::now();
    for _ in 0..4 {
        key(&d, 1).await;
    }
    let secs = start.elapsed().as_secs_f64();
    assert!((7.5..7.6).contains(&secs), "{secs}");
}

#[tokio::test(start_paused = true)]
async fn token_bound_pacing_reaches_the_token_rate_and_spends_no_request_slot() {
    // 60 requests/min would allow one a second; 900 tokens/min with 90-token requests
    // allow ten a minute: tokens bind.
    let limits = Limits {
        rpm: Some(60),
        tpm: Some(900),
        ..Limits::default()
    };
    let d = dispatcher(&[0], limits, Duration::ZERO);
    let n = grants_within(&d, 90, Duration::from_secs(600)).await;
    // The burst (90 tokens) at once, then (900 - 90) / 90 = 9 a minute, 1.5 % under.
    let expected = 1.0 + 600.0 / 60.0 * 9.0 / 1.015;
    assert!((n as f64 - expected).abs() <= 1.0, "{n} vs {expected}");
    // A token refusal charges nothing: the next request goes as soon as tokens allow,
    // with no extra request-per-minute wait.
    let check = || {
        let mut inner = d.inner.lock().unwrap();
        let (now, wall) = (d.clock().now(), d.clock().wall());
        inner.orgs[0].check(now, wall, 90)
    };
    let wait = match check() {
        Err(org::Wait::For(w)) => w,
        other => panic!("{other:?}"),
    };
    tokio::time::advance(wait).await;
    assert_eq!(check(), Ok(()));
}

#[tokio::test(start_paused = true)]
async fn a_cooling_key_serves_again_after_its_wait() {
    let d = dispatcher(&[0], Limits::default(), Duration::ZERO);
    key(&d, 1).await;
    let err = CallError::RateLimited {
        retry_after: Some(Duration::from_secs(2)),
        dim: Some(Dim::Rpm),
        limit: None,
    };
    d.failed(0, &err, &RateHeaders::default());
    let start = Instant::now();
    let seen = std::sync::Mutex::new(Vec::new());
    let log = |c: Changes| seen.lock().unwrap().extend(c.health);
    assert_eq!(d.acquire(1, &log).await, Grant::Key(0));
    assert_eq!(start.elapsed(), Duration::from_secs(2));
    // The cooldown's end is reported, so it is logged and saved.
    assert_eq!(seen.lock().unwrap()[0].to.name(), "available");
}

#[tokio::test(start_paused = true)]
async fn huge_waits_from_a_provider_are_clamped_not_a_panic() {
    let d = dispatcher(&[0, 1], Limits::default(), Duration::ZERO);
    let headers = RateHeaders {
        remaining_requests: Some(0),
        reset_requests: Some(LONGEST_HINT),
        remaining_tokens: Some(0),
        reset_tokens: Some(LONGEST_HINT),
        retry_after: Some(LONGEST_HINT),
        limit_requests: Some(u64::MAX),
        limit_tokens: Some(u64::MAX),
        org: None,
    };
    let changes = d.succeeded(0, &headers, 10);
    assert_eq!(changes.health[0].to.name(), "exhausted");
    let quota = CallError::QuotaExhausted {
        reset: Some(LONGEST_HINT),
        what: "long rate limit".into(),
        dim: None,
        limit: Some(u64::MAX),
    };
    d.failed(1, &quota, &headers);
    match d.acquire(1, &no_log).await {
        Grant::NoKey { earliest: Some(t) } => {
            let days = t.duration_since(SystemTime::now()).unwrap().as_secs() / 86_400;
            assert!((30..=31).contains(&days), "{days}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn no_requests_left_for_hours_exhausts_the_key() {
    let d = dispatcher(&[0, 1], Limits::default(), Duration::ZERO);
    let h = RateHeaders {
        remaining_requests: Some(0),
        reset_requests: Some(Duration::from_secs(7200)),
        ..Default::default()
    };
    let changes = d.succeeded(0, &h, 10);
    assert_eq!(changes.health.len(), 1);
    assert_eq!(changes.health[0].to.name(), "exhausted");
}

#[tokio::test(start_paused = true)]
async fn the_providers_day_count_is_never_undercounted() {
    let limits = defaults(Limits {
        rpd: Some(100),
        ..Limits::default()
    });
    let d = dispatcher_at(
        timeutil::from_unix(BEFORE_MIDNIGHT - 3600),
        &[0],
        limits,
        Duration::ZERO,
    );
    key(&d, 1).await;
    // Another run spent 97 of the 100 today.
    let h = RateHeaders {
        limit_requests: Some(100),
        remaining_requests: Some(3),
        ..Default::default()
    };
    d.succeeded(0, &h, 1);
    for _ in 0..3 {
        key(&d, 1).await;
    }
    assert!(matches!(d.acquire(1, &no_log).await, Grant::NoKey { .. }));
}

#[tokio::test(start_paused = true)]
async fn in_a_pool_each_organization_reads_headers_by_its_own_providers_rules() {
    // Key 0: a Groq organization; key 1: an OpenAI one; key 2: a Gemini one.
    let keys = (0..3)
        .map(|i| ApiKey::new(i + 1, format!("gsk_TESTFAKEKEY_{i:04}")))
        .collect();
    let rules = |p: ProviderName| ProviderRules {
        headers: header_meaning(p),
        day: crate::provider::defaults::day_start(p),
    };
    let setups = [
        ProviderName::Groq,
        ProviderName::Openai,
        ProviderName::Gemini,
    ]
    .map(|p| OrgSetup {
        limits: defaults(Limits::default()),
        id: OrgId::new(p.as_str(), "m", &["fp"]),
        used_today: (0, 0),
        lease: 1,
        rules: rules(p),
    })
    .into_iter()
    .collect();
    let clock: Arc<dyn Clock> = Arc::new(FollowingClock::starting_at(SystemTime::now()));
    let d = Dispatcher::new(
        KeyRing::new(keys, &[0, 1, 2]),
        setups,
        Duration::ZERO,
        clock.clone(),
        Arc::new(MemoryQuotas::new(clock)),
    );
    let h = RateHeaders {
        limit_requests: Some(1_000),
        limit_tokens: Some(50_000),
        ..Default::default()
    };
    for k in 0..3 {
        d.succeeded(k, &h, 10);
    }
    let limits: Vec<Limits> = d.limits().iter().map(LimitSet::values).collect();
    // Groq counts requests per day, OpenAI per minute; Gemini's headers are not read.
    assert_eq!((limits[0].rpd, limits[0].rpm), (Some(1_000), None));
    assert_eq!((limits[1].rpm, limits[1].rpd), (Some(1_000), None));
    assert_eq!(limits[0].tpm, Some(50_000));
    assert_eq!(limits[1].tpm, Some(50_000));
    assert_eq!(limits[2], Limits::default());
}

mod outage;
mod stated;
mod suspect;
