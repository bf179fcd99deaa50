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

pub(super) fn shared_organizations_are_remembered_per_provider(s: &State) {
    assert!(s.org_members("groq").unwrap().is_empty());
    s.save_org_member("groq", "fp2", "org_a").unwrap();
    s.save_org_member("groq", "fp1", "org_b").unwrap();
    s.save_org_member("groq", "fp1", "org_a").unwrap();
    s.save_org_member("openai", "fp3", "org_a").unwrap();
    assert_eq!(
        s.org_members("groq").unwrap(),
        [
            ("fp1".to_string(), "org_a".to_string()),
            ("fp2".into(), "org_a".into())
        ]
    );
}

pub(super) fn reply_extra_is_kept_per_provider_and_model(s: &State) {
    assert_eq!(s.reply_extra("groq", "m1").unwrap(), None);
    s.save_reply_extra("groq", "m1", 24).unwrap();
    s.save_reply_extra("groq", "m1", 30).unwrap();
    s.save_reply_extra("openai", "m2", 12).unwrap();
    assert_eq!(s.reply_extra("groq", "m1").unwrap(), Some(30));
    assert_eq!(s.reply_extra("groq", "m2").unwrap(), None);
    assert_eq!(s.reply_extra("openai", "m2").unwrap(), Some(12));
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

    ordered_by_day_key_and_model(s);

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

/// Ledger rows come ordered by day, key and model; other providers apart.
fn ordered_by_day_key_and_model(s: &State) {
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
}

pub(super) fn health_cache_and_fallbacks_round_trip(s: &State) {
    let h = StoredHealth {
        fingerprint: "fp".into(),
        masked: "m".into(),
        status: KeyStatus::Invalid,
        until: None,
        reason: HealthReason::from_stored("401"),
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
            reason: HealthReason::from_stored(&format!("{status} for a while")),
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

/// A state on `server`'s database `db`.
pub(crate) fn redis_state(server: &crate::store::redis::test_server::RedisServer, db: u8) -> State {
    let location = StateLocation::Redis(RedisTarget {
        url: server.url(db),
        prefix: DEFAULT_REDIS_PREFIX.into(),
    });
    State::open_at(&location).unwrap()
}

mod keys;
use keys::*;

/// A test per store for each behaviour above and in `keys`.
pub(super) fn action_and_error_logs_come_newest_first_and_are_pruned(s: &State) {
    let now = SystemTime::now();
    let old = now - Duration::from_secs(40 * 86_400);
    let entry = |n: u32| format!("{{\"n\":{n}}}");
    s.log_events(EventKind::Error, old, &[entry(0)]).unwrap();
    s.log_events(EventKind::Error, now, &[entry(1), entry(2)])
        .unwrap();
    s.log_events(EventKind::Action, now, &[entry(9)]).unwrap();
    let all = s
        .events(EventKind::Error, timeutil::from_unix(0), 10)
        .unwrap();
    assert_eq!(all, [entry(2), entry(1), entry(0)]);
    let recent = s
        .events(EventKind::Error, now - Duration::from_secs(60), 10)
        .unwrap();
    assert_eq!(recent, [entry(2), entry(1)]);
    assert_eq!(
        s.events(EventKind::Error, timeutil::from_unix(0), 1)
            .unwrap(),
        [entry(2)]
    );
    assert_eq!(
        s.events(EventKind::Action, timeutil::from_unix(0), 10)
            .unwrap(),
        [entry(9)]
    );
    // Typed: an action round-trips, and only the kept days stay after a prune.
    let a = Action {
        time: timeutil::rfc3339(now),
        provider: "groq".into(),
        key: "#1 gsk_…1234".into(),
        action: "reset".into(),
        detail: "day".into(),
        who: "cli".into(),
    };
    events::log_action(&**s, &a).unwrap();
    assert_eq!(
        events::actions(&**s, timeutil::from_unix(0), 1).unwrap(),
        [a]
    );
    s.prune(30, now).unwrap();
    assert_eq!(
        s.events(EventKind::Error, timeutil::from_unix(0), 10)
            .unwrap(),
        [entry(2), entry(1)]
    );
}

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
    shared_organizations_are_remembered_per_provider,
    reply_extra_is_kept_per_provider_and_model,
    ledger_adds_up,
    health_cache_and_fallbacks_round_trip,
    rotations_come_newest_first,
    prune_removes_only_what_is_older_than_the_kept_days,
    overrides_round_trip_and_a_reset_keeps_the_ledger,
    a_run_is_active_until_it_finishes,
    action_and_error_logs_come_newest_first_and_are_pruned,
);
