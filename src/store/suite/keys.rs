//! The key-control and runs-registry behaviours every state store must have.

use std::time::{Duration, SystemTime};

use super::{day_of, requests, usage};
use crate::store::*;
use crate::timeutil::{self, Day};

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

    minute_and_day_resets_keep_the_ledger(s, until);
    month_and_all_resets(s, until);
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

/// A minute reset keeps a daily exhaustion; a day reset forgets it and sets the day's
/// base, keeping the ledger, the month and a disable.
fn minute_and_day_resets_keep_the_ledger(s: &State, until: SystemTime) {
    s.save_health("groq", &health(KeyStatus::Exhausted, until))
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
}

/// Invalid is forgotten only by a reset of all; the bases are what the last reset set.
fn month_and_all_resets(s: &State, until: SystemTime) {
    s.save_health("groq", &health(KeyStatus::Invalid, until))
        .unwrap();
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
}

/// Key health of `fp1` as a run saves it.
fn health(status: KeyStatus, until: SystemTime) -> StoredHealth {
    StoredHealth {
        fingerprint: "fp1".into(),
        masked: "gsk_…a1b2".into(),
        status,
        until: Some(until),
        reason: HealthReason::from_stored("429"),
    }
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
    assert_eq!(r.priority, "normal", "until the run says");
    s.run_priority("r1", "high").unwrap();
    assert_eq!(s.runs(10).unwrap()[0].priority, "high");
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
    assert_eq!(
        s.runs(10).unwrap()[0].quality.votes,
        1,
        "one vote a row unless told"
    );
    let q = crate::store::RunQuality::new(5, 40, 30, 4);
    s.run_quality("r1", &q).unwrap();
    s.run_quality("gone", &q).unwrap();
    s.run_finished("r1", &beat).unwrap();
    let r = &s.runs(10).unwrap()[0];
    assert!(!r.active && r.finished.is_some() && r.eta_minutes.is_none());
    assert_eq!((r.quality, r.quality.agreement), (q, Some(0.75)));
    assert_eq!(
        s.runs(10).unwrap().len(),
        1,
        "no entry for a run never registered"
    );
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
