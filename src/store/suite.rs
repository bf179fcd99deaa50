//! The behaviour every state store must have, run against each of them: a function per
//! behaviour taking the store, and a test per (store, behaviour) from `on_every_store!`.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use super::*;
use crate::limits::Dim;
use crate::provider::classify::ErrorClass;
use crate::timeutil::{self, Day};

/// A day as the tests write it, `YYYY-MM-DD`.
pub(crate) fn day_of(text: &str) -> Day {
    Day::stored(text.to_string())
}

/// A ledger entry for key `fp` on `day`.
fn usage(fp: &str, model: &str, day: &str, d: UsageDelta) -> UsageEntry {
    UsageEntry {
        fingerprint: fp.to_string(),
        masked: "gsk_…1234".to_string(),
        model: model.to_string(),
        day: day_of(day),
        usage: d,
    }
}

fn requests(n: u64) -> UsageDelta {
    UsageDelta {
        requests: n,
        ..Default::default()
    }
}

pub(super) fn learned_limits_are_kept_per_provider_model_key_and_dimension(s: &State) {
    let header = "x-ratelimit-limit-tokens";
    s.save_learned_limit("groq", "m1", "fp1", (Dim::Tpm, 6000), header)
        .unwrap();
    s.save_learned_limit("groq", "m1", "fp1", (Dim::Tpm, 10_000_000), header)
        .unwrap();
    s.save_learned_limit("groq", "m1", "fp2", (Dim::Rpd, 14_400), "a 429 reply")
        .unwrap();
    s.save_learned_limit("groq", "m2", "fp1", (Dim::Tpm, 1), header)
        .unwrap();
    s.save_learned_limit("openai", "m1", "fp1", (Dim::Tpm, 2), header)
        .unwrap();
    let mut got = s.learned_limits("groq", "m1").unwrap();
    got.sort_by(|a, b| a.fingerprint.cmp(&b.fingerprint));
    let seen: Vec<_> = got
        .iter()
        .map(|l| (l.fingerprint.as_str(), l.dim, l.value, l.source.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            ("fp1", Dim::Tpm, 10_000_000, header),
            ("fp2", Dim::Rpd, 14_400, "a 429 reply")
        ]
    );
    // A huge value is stored clamped, not wrapped.
    s.save_learned_limit("groq", "m3", "fp1", (Dim::Tpd, u64::MAX), header)
        .unwrap();
    assert_eq!(
        s.learned_limits("groq", "m3").unwrap()[0].value,
        i64::MAX as u64
    );
    assert!(s.learned_limits("groq", "none").unwrap().is_empty());
}

pub(super) fn ledger_adds_up(s: &State) {
    let mut d = UsageDelta {
        requests: 2,
        successes: 1,
        tokens_in: 10,
        tokens_out: 5,
        cost: 0.25,
        rows: 7,
        cut: 3,
        ..Default::default()
    };
    d.error(ErrorClass::RateLimit);
    d.error(ErrorClass::ALL[7]);
    let row = usage("fp1", "m", "2026-01-02", d.clone());
    s.add_usage("groq", &[row.clone(), row]).unwrap();
    s.add_usage("groq", &[]).unwrap();
    let rows = s.usage_since("groq", &day_of("2026-01-01")).unwrap();
    assert_eq!(rows.len(), 1);
    let mut twice = d.clone();
    twice.add(&d);
    assert_eq!(rows[0].usage, twice);
    assert_eq!(
        (
            rows[0].day.as_str(),
            rows[0].fingerprint.as_str(),
            rows[0].masked.as_str(),
            rows[0].model.as_str()
        ),
        ("2026-01-02", "fp1", "gsk_…1234", "m")
    );
    assert!(s
        .usage_since("groq", &day_of("2026-01-03"))
        .unwrap()
        .is_empty());
    assert!(s
        .usage_since("openai", &day_of("2026-01-01"))
        .unwrap()
        .is_empty());

    // Ordered by day, key and model; other providers apart.
    s.add_usage(
        "groq",
        &[
            usage("fp2", "m", "2026-01-01", requests(1)),
            usage("fp1", "z/model:v1", "2026-01-02", requests(3)),
            usage("fp1", "m", "2026-01-03", requests(4)),
        ],
    )
    .unwrap();
    s.add_usage("openai", &[usage("fp1", "m", "2026-01-02", requests(100))])
        .unwrap();
    let seen: Vec<_> = s
        .usage_since("groq", &day_of("2026-01-01"))
        .unwrap()
        .into_iter()
        .map(|r| (r.day.to_string(), r.fingerprint, r.model, r.usage.requests))
        .collect();
    let want = [
        ("2026-01-01", "fp2", "m", 1),
        ("2026-01-02", "fp1", "m", 4),
        ("2026-01-02", "fp1", "z/model:v1", 3),
        ("2026-01-03", "fp1", "m", 4),
    ];
    let want: Vec<_> = want
        .iter()
        .map(|(d, f, m, n)| (d.to_string(), f.to_string(), m.to_string(), *n))
        .collect();
    assert_eq!(seen, want);
    assert_eq!(
        s.key_used_since("groq", "fp1", &day_of("2026-01-02"))
            .unwrap(),
        (11, 30)
    );
    assert_eq!(
        s.key_used_since("groq", "fp3", &day_of("2026-01-02"))
            .unwrap(),
        (0, 0)
    );

    let today = timeutil::utc_date(SystemTime::now());
    s.add_usage(
        "groq",
        &[
            usage("fp1", "m", &today, d.clone()),
            usage("fp9", "m", &today, requests(50)),
        ],
    )
    .unwrap();
    assert_eq!(s.used_today("groq", &["fp1".to_string()]).unwrap(), (2, 15));
}

pub(super) fn health_cache_and_fallbacks_round_trip(s: &State) {
    let h = StoredHealth {
        fingerprint: "fp".into(),
        masked: "m".into(),
        status: KeyStatus::Invalid,
        until: None,
        reason: "401".into(),
    };
    s.save_health("groq", &h).unwrap();
    assert_eq!(s.load_health("groq").unwrap(), vec![h]);
    // A later save replaces the record; every status and a time come back as written.
    let until = timeutil::from_unix(1_900_000_000);
    for status in KeyStatus::ALL {
        let h = StoredHealth {
            fingerprint: "fp".into(),
            masked: "m2".into(),
            status,
            until: Some(until),
            reason: format!("{status} for a while"),
        };
        s.save_health("groq", &h).unwrap();
        assert_eq!(s.load_health("groq").unwrap(), vec![h]);
    }
    assert!(s.load_health("openai").unwrap().is_empty());

    assert_eq!(s.cache_get(&[1, 2]).unwrap(), None);
    s.cache_put_many(&[
        (vec![1, 2], "positif".into()),
        (vec![0xff; 32], "négatif".into()),
    ])
    .unwrap();
    s.cache_put_many(&[]).unwrap();
    assert_eq!(s.cache_get(&[1, 2]).unwrap().as_deref(), Some("positif"));
    assert_eq!(
        s.cache_get(&[0xff; 32]).unwrap().as_deref(),
        Some("négatif")
    );
    s.cache_put_many(&[(vec![1, 2], "neutre".into())]).unwrap();
    assert_eq!(s.cache_get(&[1, 2]).unwrap().as_deref(), Some("neutre"));

    assert!(s.fallback_rows("out").unwrap().is_empty());
    s.add_fallback_rows("out", &[3, 5]).unwrap();
    s.add_fallback_rows("out", &[5, 8]).unwrap();
    s.add_fallback_rows("other", &[1]).unwrap();
    assert_eq!(s.fallback_rows("out").unwrap(), BTreeSet::from([3, 5, 8]));
    s.set_fallback_rows("out", &BTreeSet::from([5])).unwrap();
    assert_eq!(s.fallback_rows("out").unwrap(), BTreeSet::from([5]));
    s.set_fallback_rows("out", &BTreeSet::new()).unwrap();
    assert!(s.fallback_rows("out").unwrap().is_empty());
    assert_eq!(s.fallback_rows("other").unwrap(), BTreeSet::from([1]));
}

pub(super) fn rotations_come_newest_first(s: &State) {
    for i in 0..5 {
        s.log_rotation(
            "groq",
            &format!("#{i}"),
            &format!("#{}", i + 1),
            "quota low",
            "auto",
        )
        .unwrap();
    }
    s.log_rotation("openai", "a", "b", "manual: disabled", "manual")
        .unwrap();
    let got = s.rotations("groq", timeutil::from_unix(0), 3).unwrap();
    let seen: Vec<_> = got
        .iter()
        .map(|r| (r.from.as_str(), r.to.as_str()))
        .collect();
    assert_eq!(seen, [("#4", "#5"), ("#3", "#4"), ("#2", "#3")]);
    assert_eq!(
        (got[0].reason.as_str(), got[0].mode.as_str()),
        ("quota low", "auto")
    );
    let later = SystemTime::now() + Duration::from_secs(3600);
    assert!(s.rotations("groq", later, 10).unwrap().is_empty());
    assert_eq!(
        s.rotations("openai", timeutil::from_unix(0), 10)
            .unwrap()
            .len(),
        1
    );
}

pub(super) fn prune_removes_only_what_is_older_than_the_kept_days(s: &State) {
    let now = SystemTime::now();
    let day = |d: u32| Day::days_ago(now, d);
    s.add_usage(
        "groq",
        &[
            usage("fp", "model", day(31).as_str(), requests(1)),
            usage("fp", "model", day(30).as_str(), requests(1)),
            usage("fp", "model", day(0).as_str(), requests(1)),
        ],
    )
    .unwrap();
    s.log_rotation("groq", "a", "b", "r", "auto").unwrap();
    s.cache_put_many(&[(vec![7], "positif".into())]).unwrap();

    assert_eq!(s.prune(0, now).unwrap().total(), 0, "0 keeps everything");
    let pruned = s.prune(30, now).unwrap();
    assert_eq!(
        (
            pruned.usage,
            pruned.rotations,
            pruned.cache,
            pruned.kept_from
        ),
        (1, 0, 0, day(30))
    );
    assert_eq!(
        s.usage_since("groq", &day_of("2000-01-01")).unwrap().len(),
        2
    );
    assert!(s.cache_get(&[7]).unwrap().is_some(), "a fresh entry stays");
    // Once a day: the second call the same day does nothing, a new setting does.
    assert!(s.prune_if_due(30, now).unwrap().is_some());
    assert!(s.prune_if_due(30, now).unwrap().is_none());
    assert!(s.prune_if_due(0, now).unwrap().is_none());
    assert!(s.prune_if_due(1, now).unwrap().is_some());
    let left = s.usage_since("groq", &day_of("2000-01-01")).unwrap();
    assert_eq!(left.len(), 1, "today stays");
    assert_eq!(left[0].day, day(0));
    // Seen from 31 days on, today's rotation is history.
    let later = now + Duration::from_secs(31 * 86_400);
    assert_eq!(s.prune(30, later).unwrap().rotations, 1);
    assert!(s
        .rotations("groq", timeutil::from_unix(0), 10)
        .unwrap()
        .is_empty());
}

pub(super) fn overrides_round_trip_and_a_reset_keeps_the_ledger(s: &State) {
    assert!(s.key_overrides("groq").unwrap().is_empty());
    s.set_key_disabled("groq", "fp1", "gsk_…a1b2", true, None, "leaked")
        .unwrap();
    let o = &s.key_overrides("groq").unwrap()[0];
    assert!(o.is_disabled(SystemTime::now()));
    assert_eq!(
        (o.fingerprint.as_str(), o.reason.as_str()),
        ("fp1", "leaked")
    );
    let until = timeutil::from_unix(timeutil::unix_secs(SystemTime::now()) + 600);
    s.set_key_disabled("groq", "fp1", "gsk_…a1b2", true, Some(until), "for a while")
        .unwrap();
    let o = &s.key_overrides("groq").unwrap()[0];
    assert_eq!(o.disabled_until, Some(until));
    assert!(!o.is_disabled(until + Duration::from_secs(1)));

    let health = |status| StoredHealth {
        fingerprint: "fp1".into(),
        masked: "gsk_…a1b2".into(),
        status,
        until: Some(until),
        reason: "429".into(),
    };
    s.save_health("groq", &health(KeyStatus::Exhausted))
        .unwrap();
    s.add_usage("groq", &[usage("fp1", "m", "2026-11-30", requests(12))])
        .unwrap();
    s.reset_key(
        "groq",
        "fp1",
        "gsk_…a1b2",
        "minute",
        (&day_of("2026-11-30"), (1, 1)),
        (&day_of("2026-11-01"), (1, 1)),
    )
    .unwrap();
    assert_eq!(
        s.load_health("groq").unwrap().len(),
        1,
        "a minute reset keeps exhausted"
    );
    s.reset_key(
        "groq",
        "fp1",
        "gsk_…a1b2",
        "day",
        (&day_of("2026-11-30"), (10, 500)),
        (&day_of("2026-11-01"), (99, 9999)),
    )
    .unwrap();
    assert!(s.load_health("groq").unwrap().is_empty());
    let o = &s.key_overrides("groq").unwrap()[0];
    assert_eq!((o.reset_seq, o.reset_what.as_str()), (2, "day"));
    assert_eq!(o.day_base.apply(&day_of("2026-11-30"), (12, 700)), (2, 200));
    assert_eq!(
        o.day_base.apply(&day_of("2026-12-01"), (12, 700)),
        (12, 700)
    );
    assert_eq!(o.month_base, Base::default(), "a day reset keeps the month");
    assert!(o.is_disabled(SystemTime::now()), "a reset keeps a disable");
    assert_eq!(
        s.usage_since("groq", &day_of("2026-11-30")).unwrap()[0]
            .usage
            .requests,
        12
    );
    s.save_health("groq", &health(KeyStatus::Invalid)).unwrap();
    s.reset_key(
        "groq",
        "fp1",
        "gsk_…a1b2",
        "month",
        (&day_of("d"), (0, 0)),
        (&day_of("2026-11-01"), (5, 6)),
    )
    .unwrap();
    assert_eq!(s.load_health("groq").unwrap().len(), 1, "invalid needs all");
    s.reset_key(
        "groq",
        "fp1",
        "gsk_…a1b2",
        "all",
        (&day_of("2026-11-30"), (1, 2)),
        (&day_of("2026-11-01"), (3, 4)),
    )
    .unwrap();
    assert!(s.load_health("groq").unwrap().is_empty());
    let o = &s.key_overrides("groq").unwrap()[0];
    assert_eq!(o.reset_seq, 4);
    assert_eq!(
        (
            o.day_base.date.as_ref().map(Day::as_str),
            o.day_base.requests,
            o.month_base.tokens
        ),
        (Some("2026-11-30"), 1, 4)
    );
    s.set_key_disabled("groq", "fp1", "gsk_…a1b2", false, None, "")
        .unwrap();
    assert!(!s.key_overrides("groq").unwrap()[0].is_disabled(SystemTime::now()));
    assert!(s.key_overrides("openai").unwrap().is_empty());

    assert_eq!(s.rotation_requests("groq").unwrap(), 0);
    assert_eq!(s.request_rotation("groq").unwrap(), 1);
    assert_eq!(s.request_rotation("groq").unwrap(), 2);
    assert_eq!(s.rotation_requests("groq").unwrap(), 2);
    assert_eq!(s.rotation_requests("openai").unwrap(), 0);

    let at = timeutil::from_unix(1_800_000_000);
    s.touch_keys("groq", &[("fp1".into(), Some("rate_limit"))], at)
        .unwrap();
    s.touch_keys("groq", &[("fp1".into(), None), ("fp2".into(), None)], at)
        .unwrap();
    s.touch_keys("groq", &[], at).unwrap();
    let mut a = s.key_activity("groq").unwrap();
    a.sort_by(|x, y| x.fingerprint.cmp(&y.fingerprint));
    assert_eq!(
        a,
        [
            KeyActivity {
                fingerprint: "fp1".into(),
                last_used: Some(at),
                last_error: Some("rate_limit".into()),
            },
            KeyActivity {
                fingerprint: "fp2".into(),
                last_used: Some(at),
                last_error: None,
            }
        ]
    );
}

pub(super) fn a_run_is_active_until_it_finishes(s: &State) {
    assert!(s.runs(10).unwrap().is_empty());
    s.run_started("r1", "host-a", "in.csv", "out.csv", "groq", 100)
        .unwrap();
    let r = &s.runs(10).unwrap()[0];
    assert!(r.active && r.eta_minutes.is_none());
    assert_eq!(
        (r.pid, r.rows_done, r.rows_total),
        (std::process::id(), 0, 100)
    );
    let beat = Beat {
        rows_done: 40,
        rows_total: 100,
        rate: 30.0,
        key_in_use: "#1 gsk_…a1b2",
    };
    s.run_heartbeat("r1", &beat).unwrap();
    let r = &s.runs(10).unwrap()[0];
    assert!(r.active);
    assert_eq!(
        (r.rows_done, r.rows_total, r.eta_minutes),
        (40, 100, Some(2.0))
    );
    assert_eq!(
        (
            r.id.as_str(),
            r.host.as_str(),
            r.input.as_str(),
            r.output.as_str(),
            r.providers.as_str()
        ),
        ("r1", "host-a", "in.csv", "out.csv", "groq")
    );
    assert_eq!(r.key_in_use, "#1 gsk_…a1b2");
    // A rate that is not a number is stored as none.
    s.run_heartbeat(
        "r1",
        &Beat {
            rate: f64::NAN,
            ..beat.clone()
        },
    )
    .unwrap();
    assert_eq!(s.runs(10).unwrap()[0].rate, 0.0);
    s.run_finished("r1", &beat).unwrap();
    let r = &s.runs(10).unwrap()[0];
    assert!(!r.active && r.finished.is_some() && r.eta_minutes.is_none());
    s.run_started("r2", "host-b", "in2.csv", "out2.csv", "groq", 5)
        .unwrap();
    assert_eq!(s.runs(1).unwrap().len(), 1);
    assert_eq!(s.runs(10).unwrap().len(), 2);
    // A prune keeps today's runs and drops ended ones older than the kept days.
    let later = SystemTime::now() + Duration::from_secs(10 * 86_400);
    s.prune(30, SystemTime::now()).unwrap();
    assert_eq!(s.runs(10).unwrap().len(), 2);
    s.prune(1, later).unwrap();
    let left: Vec<_> = s.runs(10).unwrap().into_iter().map(|r| r.id).collect();
    assert!(!left.contains(&"r1".to_string()), "{left:?}");
}

/// A state on `server`'s database `db`.
pub(crate) fn redis_state(server: &crate::store::redis::test_server::RedisServer, db: u8) -> State {
    let location = StateLocation::Redis(RedisTarget {
        url: server.url(db),
        prefix: DEFAULT_REDIS_PREFIX.into(),
    });
    State::open_at(&location).unwrap()
}

/// A test per store for each behaviour above.
macro_rules! on_every_store {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[test]
                fn $name() {
                    super::$name(&crate::store::State::in_memory());
                }
            )*
        }
        mod redis {
            $(
                #[test]
                fn $name() {
                    // A server of its own: tests run in parallel.
                    let server = crate::store::redis::test_server::RedisServer::start();
                    super::$name(&super::redis_state(&server, 0));
                }
            )*
        }
    };
}

on_every_store!(
    learned_limits_are_kept_per_provider_model_key_and_dimension,
    ledger_adds_up,
    health_cache_and_fallbacks_round_trip,
    rotations_come_newest_first,
    prune_removes_only_what_is_older_than_the_kept_days,
    overrides_round_trip_and_a_reset_keeps_the_ledger,
    a_run_is_active_until_it_finishes,
);
