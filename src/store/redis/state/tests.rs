//! What only the Redis store does: the shared behaviour is in `store::suite`.

use std::collections::BTreeSet;
use std::time::SystemTime;

use crate::error::Error;
use crate::keys::ApiKey;
use crate::limits::Dim;
use crate::store::redis::test_server::RedisServer;
use crate::store::suite::{day_of, redis_state};
use crate::store::{
    Beat, HealthReason, KeyStatus, RedisTarget, State, StateLocation, StoredHealth, UsageDelta,
    UsageEntry, DEFAULT_REDIS_PREFIX,
};
use crate::timeutil::Day;

fn raw(server: &RedisServer, db: u8) -> redis::Connection {
    redis::Client::open(server.url(db))
        .unwrap()
        .get_connection()
        .unwrap()
}

/// Every key of the database with its type and everything it holds, as text.
fn dump(c: &mut redis::Connection) -> Vec<(String, String)> {
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(c).unwrap();
    keys.into_iter()
        .map(|k| {
            let kind: String = redis::cmd("TYPE").arg(&k).query(c).unwrap();
            let value: Vec<Vec<u8>> = match kind.as_str() {
                "string" => vec![redis::cmd("GET").arg(&k).query(c).unwrap()],
                "hash" => redis::cmd("HGETALL").arg(&k).query(c).unwrap(),
                "list" => redis::cmd("LRANGE")
                    .arg(&k)
                    .arg(0)
                    .arg(-1)
                    .query(c)
                    .unwrap(),
                "set" => redis::cmd("SMEMBERS").arg(&k).query(c).unwrap(),
                "zset" => redis::cmd("ZRANGE")
                    .arg(&k)
                    .arg(0)
                    .arg(-1)
                    .arg("WITHSCORES")
                    .query(c)
                    .unwrap(),
                other => panic!("unexpected type {other} of {k}"),
            };
            let text = value
                .iter()
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .collect::<Vec<_>>()
                .join("\n");
            (k, text)
        })
        .collect()
}

/// One of everything a run writes, about `key`.
fn write_everything_a_run_writes(s: &State, key: &ApiKey) {
    let (fp, masked) = (key.fingerprint.as_str(), key.masked.as_str());
    let today = Day::of(SystemTime::now());
    let delta = UsageDelta {
        requests: 3,
        successes: 2,
        tokens_in: 40,
        cost: 0.5,
        rows: 9,
        ..Default::default()
    };
    let entry = UsageEntry {
        fingerprint: fp.to_string(),
        masked: masked.to_string(),
        model: "m".to_string(),
        day: today,
        usage: delta,
    };
    s.add_usage("groq", &[entry]).unwrap();
    s.save_health(
        "groq",
        &StoredHealth {
            fingerprint: fp.into(),
            masked: masked.into(),
            status: KeyStatus::Exhausted,
            until: Some(SystemTime::now()),
            reason: HealthReason::from_stored("429"),
        },
    )
    .unwrap();
    s.save_learned_limit(
        "groq",
        "m",
        fp,
        (Dim::Rpd, 1000),
        "x-ratelimit-limit-requests",
    )
    .unwrap();
    s.log_rotation("groq", &key.label(), "#2 gsk_…zzzz", "quota low", "auto")
        .unwrap();
    s.keep_cache_days(30);
    s.cache_put_many(&[(vec![9; 32], "positif".into())])
        .unwrap();
    s.add_fallback_rows("out-id", &[1, 2]).unwrap();
    s.set_key_disabled("groq", fp, masked, true, None, "leaked")
        .unwrap();
    s.reset_key(
        "groq",
        fp,
        masked,
        "all",
        (&day_of("d"), (1, 2)),
        (&day_of("m"), (3, 4)),
    )
    .unwrap();
    s.request_rotation("groq").unwrap();
    s.touch_keys("groq", &[(fp.to_string(), Some("auth"))], SystemTime::now())
        .unwrap();
    s.run_started("r1", "host", "in.csv", "out.csv", "groq", 10)
        .unwrap();
    let label = key.label();
    let beat = Beat {
        rows_done: 1,
        rows_total: 10,
        rate: 2.0,
        key_in_use: &label,
    };
    s.run_heartbeat("r1", &beat).unwrap();
    s.run_finished("r1", &beat).unwrap();
    s.prune_if_due(30, SystemTime::now()).unwrap();
}

#[test]
fn no_api_key_ever_reaches_the_server() {
    let secret = "gsk_PLANTEDFAKEKEY_redis_0009_zq9";
    let key = ApiKey::new(1, secret.to_string());
    let server = RedisServer::start();
    let s = redis_state(&server, 0);
    write_everything_a_run_writes(&s, &key);
    let masked = key.masked.as_str();

    let all = dump(&mut raw(&server, 0));
    assert!(all.len() > 10, "{all:?}");
    // The masked form shows the key's first and last characters: look for the rest.
    let hidden = &secret[6..secret.len() - 4];
    for (k, v) in &all {
        assert!(k.starts_with(DEFAULT_REDIS_PREFIX), "{k}");
        for text in [k, v] {
            assert!(!text.contains(secret), "{k} holds the key");
            assert!(!text.contains(hidden), "{k} holds part of the key");
        }
    }
    assert!(
        all.iter().any(|(_, v)| v.contains(masked)),
        "the masked form is what is stored"
    );
}

#[test]
fn errors_at_open_are_state_errors_without_the_password() {
    let server = RedisServer::start_with(Some("pw-Secret-42"));
    let open = |url: String| {
        let location = StateLocation::Redis(RedisTarget {
            url,
            prefix: DEFAULT_REDIS_PREFIX.into(),
        });
        State::open_at(&location).err().expect("must fail")
    };
    let wrong = format!("redis://:wrong-Secret-7@127.0.0.1:{}/0", server.port);
    let port = server.port;
    let mut errors = vec![open(wrong)];
    drop(server);
    errors.push(open(format!("redis://:pw-Secret-42@127.0.0.1:{port}/0")));
    for e in errors {
        let Error::State { place, message } = &e else {
            panic!("not a state error: {e:?}");
        };
        let shown = format!("{e} {e:?}");
        assert!(!shown.contains("Secret"), "{shown}");
        assert!(place.contains(&port.to_string()), "{place}");
        assert!(!message.is_empty());
        assert_eq!(crate::error::exit_code(&Err(e)), 2);
    }
}

#[test]
fn cache_entries_expire_after_the_kept_days_and_not_with_zero() {
    let server = RedisServer::start();
    let s = redis_state(&server, 0);
    let mut c = raw(&server, 0);
    let ttl = |c: &mut redis::Connection, k: &str| -> i64 {
        redis::cmd("TTL")
            .arg(format!("{DEFAULT_REDIS_PREFIX}cache:{k}"))
            .query(c)
            .unwrap()
    };
    s.cache_put_many(&[(vec![0xab, 0x01], "a".into())]).unwrap();
    assert_eq!(ttl(&mut c, "ab01"), -1, "no expiry until told");
    s.keep_cache_days(30);
    s.cache_put_many(&[(vec![0xab, 0x02], "b".into())]).unwrap();
    let t = ttl(&mut c, "ab02");
    assert!((30 * 86_400 - 60..=30 * 86_400).contains(&t), "{t}");
    s.keep_cache_days(0);
    s.cache_put_many(&[(vec![0xab, 0x02], "c".into())]).unwrap();
    assert_eq!(ttl(&mut c, "ab02"), -1, "0 keeps for good");
    assert_eq!(s.cache_get(&[0xab, 0x02]).unwrap().as_deref(), Some("c"));
    let v = s.vacuum().unwrap();
    assert_eq!(v.before - v.after, 0, "nothing to compact");
}

/// Runs one command given as its words.
fn set(c: &mut redis::Connection, args: &[&str]) {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query::<()>(c).unwrap();
}

/// Entries in every layout this version reads, each unreadable in its own way.
fn write_what_this_version_cannot_read(c: &mut redis::Connection) {
    let p = DEFAULT_REDIS_PREFIX;
    set(c, &["HSET", &format!("{p}health:groq"), "fp1", "{not json"]);
    set(
        c,
        &[
            "HSET",
            &format!("{p}health:groq"),
            "fp2",
            r#"{"masked":"m","status":"melted","until":null,"reason":"","updated":0}"#,
        ],
    );
    set(c, &["HSET", &format!("{p}learned:groq:m"), "fp1:zzz", "1"]);
    set(c, &["HSET", &format!("{p}learned:groq:m"), "nocolon", "{}"]);
    set(c, &["LPUSH", &format!("{p}rotations:groq"), "junk"]);
    write_unreadable_ledger_and_runs(c);
}

/// The ledger, fallback rows, rotation requests and runs part of it.
fn write_unreadable_ledger_and_runs(c: &mut redis::Connection) {
    let p = DEFAULT_REDIS_PREFIX;
    let today = crate::timeutil::utc_date(SystemTime::now());
    let row = format!("usage:{today}:groq:fp1:m");
    set(
        c,
        &[
            "HSET",
            &format!("{p}{row}"),
            "day",
            &today,
            "provider",
            "groq",
            "fingerprint",
            "fp1",
            "model",
            "m",
            "requests",
            "lots",
            "cost",
            "NaN",
        ],
    );
    set(
        c,
        &["SADD", &format!("{p}usage-day:{today}"), &row, "usage:gone"],
    );
    set(c, &["SADD", &format!("{p}usage-days"), &today]);
    set(c, &["SADD", &format!("{p}fallback:o"), "x", "4"]);
    set(c, &["SET", &format!("{p}rotate-requests:groq"), "many"]);
    set(
        c,
        &["HSET", &format!("{p}run:r9"), "pid", "-5", "rate", "fast"],
    );
    set(
        c,
        &[
            "ZADD",
            &format!("{p}runs"),
            "9999999999",
            "r9",
            "1",
            "r-gone",
        ],
    );
}

#[test]
fn what_this_version_cannot_read_is_skipped() {
    let server = RedisServer::start();
    let s = redis_state(&server, 0);
    let mut c = raw(&server, 0);
    write_what_this_version_cannot_read(&mut c);

    assert!(s.load_health("groq").unwrap().is_empty());
    assert!(s.learned_limits("groq", "m").unwrap().is_empty());
    assert!(s
        .rotations("groq", crate::timeutil::from_unix(0), 10)
        .unwrap()
        .is_empty());
    let rows = s.usage_since("groq", &day_of("2000-01-01")).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].usage.requests, rows[0].usage.cost), (0, 0.0));
    assert_eq!(s.fallback_rows("o").unwrap(), BTreeSet::from([4]));
    assert_eq!(s.rotation_requests("groq").unwrap(), 0);
    let runs = s.runs(10).unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!((runs[0].pid, runs[0].rate), (0, 0.0));
    s.prune(1, SystemTime::now()).unwrap();
}
