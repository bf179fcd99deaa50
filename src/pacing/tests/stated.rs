//! Limits the providers state (reply headers, 429s) and limits another run heard: they
//! replace assumed defaults, never a lower user limit.

use super::*;

#[tokio::test(start_paused = true)]
async fn stated_limits_replace_defaults_from_the_first_reply() {
    // The user set 6,000 requests a minute; the rest is the assumed free tier.
    let mut free = defaults(Limits {
        tpm: Some(6000),
        rpd: Some(14_400),
        ..Limits::default()
    });
    free.state(
        Dim::Rpm,
        6000,
        Source::Stated {
            by: "--rpm".into(),
            earlier: false,
        },
    );
    let d = dispatcher_at(SystemTime::now(), &[0], free, Duration::ZERO);
    // At 6,000 tokens a minute, 600-token requests go ten a minute.
    assert!(grants_within(&d, 600, Duration::from_secs(60)).await <= 11);
    let h = RateHeaders {
        limit_requests: Some(500_000),
        limit_tokens: Some(10_000_000),
        ..Default::default()
    };
    let changes = d.succeeded(0, &h, 600);
    let described: Vec<String> = changes
        .limits
        .iter()
        .map(|c| {
            format!(
                "{} = {:?} from {}",
                c.change.dim, c.change.value, c.change.source
            )
        })
        .collect();
    assert_eq!(
        described,
        [
            "rpd = Some(500000) from x-ratelimit-limit-requests",
            "tpm = Some(10000000) from x-ratelimit-limit-tokens"
        ]
    );
    // Now the request limit (6,000 a minute) binds, not the tokens.
    let n = grants_within(&d, 600, Duration::from_secs(60)).await;
    assert!(n >= 5800, "{n}");
    // The same statement again changes nothing.
    assert!(d.succeeded(0, &h, 600).limits.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_higher_stated_limit_frees_a_request_held_back_by_the_default() {
    // Before the first reply the assumed 6,000 tokens a minute space 850-token requests
    // 6.8 s apart; the first reply states 10,000,000 while the second one waits.
    let free = defaults(Limits {
        tpm: Some(6000),
        ..Limits::default()
    });
    let d = Arc::new(dispatcher_at(SystemTime::now(), &[0], free, Duration::ZERO));
    key(&d, 850).await;
    let start = Instant::now();
    let waiting = {
        let d = d.clone();
        tokio::spawn(async move { key(&d, 850).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let h = RateHeaders {
        limit_tokens: Some(10_000_000),
        ..Default::default()
    };
    d.succeeded(0, &h, 850);
    waiting.await.unwrap();
    let waited = start.elapsed();
    assert!(waited < Duration::from_millis(500), "{waited:?}");
}

#[tokio::test(start_paused = true)]
async fn a_user_limit_stays_unless_the_provider_states_less() {
    let mut values = Dim::ALL.map(|_| (None, Source::Default { provider: "groq" }));
    values[Dim::Tpm as usize] = (Some(100_000), Source::Flag);
    let d = dispatcher_at(
        SystemTime::now(),
        &[0],
        LimitSet::configured(values),
        Duration::ZERO,
    );
    let high = RateHeaders {
        limit_tokens: Some(10_000_000),
        ..Default::default()
    };
    assert!(d.succeeded(0, &high, 10).limits.is_empty());
    assert_eq!(d.limits()[0].values().tpm, Some(100_000));
    let low = RateHeaders {
        limit_tokens: Some(3000),
        ..Default::default()
    };
    assert_eq!(d.succeeded(0, &low, 10).limits[0].change.value, Some(3000));
    assert_eq!(d.limits()[0].values().tpm, Some(3000));
}

#[tokio::test(start_paused = true)]
async fn a_limit_another_run_heard_paces_this_run_too() {
    // Two organizations at the default 60 a minute; another run heard org 1's provider
    // state 30 a minute (and org 0's state the same 60).
    let d = dispatcher_at(
        SystemTime::now(),
        &[0, 1],
        defaults(Limits {
            rpm: Some(60),
            ..Limits::default()
        }),
        Duration::ZERO,
    );
    let heard = [
        (1, 1, Dim::Rpm, 30, "a 429 reply".to_string()),
        (0, 0, Dim::Rpm, 60, "a 429 reply".to_string()),
    ];
    let changes = d.adopt_stated(&heard);
    assert_eq!(changes.limits.len(), 1, "{changes:?}");
    assert_eq!(changes.limits[0].org, 1);
    assert_eq!(d.limits()[1].values().rpm, Some(30));
    assert!(matches!(
        d.limits()[1].get(Dim::Rpm).effective().1,
        Source::Stated { earlier: true, .. }
    ));
    // Heard again (every second): nothing new.
    assert!(d.adopt_stated(&heard).is_empty());
    // The next grants of org 1 follow 30 a minute: 2 s apart.
    assert_eq!(key(&d, 10).await, 0);
    assert_eq!(key(&d, 10).await, 1);
    let start = Instant::now();
    loop {
        if key(&d, 10).await == 1 {
            break;
        }
    }
    assert!(Instant::now() - start >= Duration::from_millis(1990));
}

#[tokio::test(start_paused = true)]
async fn a_429_stating_a_limit_or_serving_fewer_lowers_the_rate() {
    let d = dispatcher(
        &[0],
        Limits {
            rpm: Some(300),
            ..Limits::default()
        },
        Duration::ZERO,
    );
    for _ in 0..61 {
        key(&d, 1).await;
    }
    let unstated = CallError::RateLimited {
        retry_after: Some(Duration::from_secs(1)),
        dim: Some(Dim::Rpm),
        limit: None,
    };
    let changes = d.failed(0, &unstated, &RateHeaders::default());
    assert_eq!(changes.limits[0].change.value, Some(60));
    assert_eq!(changes.limits[0].change.source, Source::Observed);
    let stated = CallError::RateLimited {
        retry_after: Some(Duration::from_secs(1)),
        dim: Some(Dim::Rpm),
        limit: Some(30),
    };
    d.failed(0, &stated, &RateHeaders::default());
    assert_eq!(d.limits()[0].values().rpm, Some(30));
}

#[tokio::test(start_paused = true)]
async fn one_early_429_without_a_stated_limit_teaches_nothing() {
    let limits = Limits {
        rpm: Some(300),
        ..Limits::default()
    };
    let d = dispatcher(&[0], limits, Duration::ZERO);
    key(&d, 1).await;
    let err = CallError::RateLimited {
        retry_after: Some(Duration::from_secs(1)),
        dim: Some(Dim::Rpm),
        limit: None,
    };
    assert!(d.failed(0, &err, &RateHeaders::default()).limits.is_empty());
    assert_eq!(d.limits()[0].values().rpm, Some(300));
}
