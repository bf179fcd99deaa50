//! Per-key settings from the env file: priority order, a key's own quotas (rotated out
//! below `--rotate-below`), monthly quotas counted from the ledger, and bad values.

mod common;

use std::path::Path;

use common::*;
use rusqlite::{params, Connection};

/// (reason, mode) of every logged rotation, oldest first.
fn rotations(db: &Path) -> Vec<(String, String, String, String)> {
    let conn = Connection::open(db).unwrap();
    let mut stmt = conn
        .prepare("SELECT from_key, to_key, reason, mode FROM rotations ORDER BY id")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn the_highest_priority_key_serves_first_then_the_next_when_its_quota_is_gone() {
    let keys = [PLANTED, KEY2, KEY3];
    let (fake, sb, texts, input, output) = setup(&keys, FakeConfig::with_keys(&keys), 12);
    sb.add_env_lines(&[
        "GROQ_API_KEY_2_NAME=primary",
        "GROQ_API_KEY_2_PRIORITY=10",
        "GROQ_API_KEY_2_DAILY_REQUESTS=4",
        "GROQ_API_KEY_3_PRIORITY=5",
    ]);
    let out = run(&mut sb.label(&fake, &input, &output, &["--rotate-below", "0"]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_labeled(&output, &texts);
    let order: Vec<String> = fake.requests().iter().map(|r| r.key.clone()).collect();
    let mut expected = vec![KEY2.to_string(); 4];
    expected.extend(vec![KEY3.to_string(); 8]);
    assert_eq!(
        order, expected,
        "priority 10 until its 4 requests are used, then priority 5; priority 0 never"
    );
    let rot = rotations(&sb.state());
    assert_eq!(rot.len(), 1, "{rot:?}");
    assert!(
        rot[0].0.starts_with("#2 ") && rot[0].1.starts_with("#3 "),
        "{rot:?}"
    );
    assert!(
        rot[0]
            .2
            .starts_with("quota low: daily requests 4 of 4 used"),
        "{rot:?}"
    );
    assert_eq!(rot[0].3, "auto");
    // Its 4 of 4 are used: the forecast says its day's quota runs out now, not later.
    let usage = run(sb.cmd().args(["usage", "--json"]));
    let usage: serde_json::Value = serde_json::from_str(&stdout(&usage)).unwrap();
    let k2 = usage["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["index"] == 2)
        .unwrap();
    assert_eq!(k2["runs_out"]["quota"], "daily_requests", "{k2}");
    assert!(
        k2["runs_out"]["text"]
            .as_str()
            .unwrap()
            .starts_with("daily_requests at "),
        "{k2}"
    );
    sb.assert_no_leak(&[&out], &keys);
}

#[test]
fn a_key_is_rotated_out_below_5_percent_of_its_quota_and_stays_out_that_day() {
    let keys = [PLANTED, KEY2];
    let (fake, sb, texts, input, output) = setup(&keys, FakeConfig::with_keys(&keys), 120);
    sb.add_env_lines(&[
        "GROQ_API_KEY_1_PRIORITY=1",
        "GROQ_API_KEY_1_DAILY_REQUESTS=100",
    ]);
    let out = run(&mut sb.label(&fake, &input, &output, &[]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_labeled(&output, &texts);
    // 96 used leaves 4 % (< 5 %): the key steps aside before it runs dry.
    assert_eq!(fake.requests_for(PLANTED), 96);
    assert_eq!(fake.requests_for(KEY2), 24);
    let rot = rotations(&sb.state());
    assert_eq!(rot.len(), 1, "{rot:?}");
    assert!(
        rot[0]
            .2
            .starts_with("quota low: daily requests 96 of 100 used, 4.0 % left"),
        "{rot:?}"
    );
    // A later run the same day counts the day from the ledger: the key stays out.
    let texts2: Vec<String> = smsa(130).split_off(120);
    let (input2, output2) = (sb.path("in2.csv"), sb.path("out2.csv"));
    write_input(&input2, &texts2);
    let out2 = run(&mut sb.label(&fake, &input2, &output2, &[]));
    assert_eq!(code(&out2), 0, "{}", stderr(&out2));
    assert_eq!(
        fake.requests_for(PLANTED),
        96,
        "no request on a key rotated out"
    );
    assert_eq!(fake.requests_for(KEY2), 34);
    sb.assert_no_leak(&[&out, &out2], &keys);
}

/// Puts `requests` of `key` into the ledger on `day` (YYYY-MM-DD), as used with another
/// model (a key's quotas count every model).
fn ledger(db: &Path, key: &str, day: &str, requests: i64) {
    let conn = Connection::open(db).unwrap();
    conn.execute(
        "INSERT INTO usage (day, provider, fingerprint, masked, model, requests, successes)
         VALUES (?1, 'groq', ?2, 'x', 'another-model', ?3, ?3)",
        params![day, autolabel::keys::mask::fingerprint(key), requests],
    )
    .unwrap();
}

#[test]
fn monthly_quotas_count_the_ledger_since_the_reset_and_start_again_after_it() {
    let keys = [PLANTED, KEY2];
    let (fake, sb, texts, input, output) = setup(&keys, FakeConfig::with_keys(&keys), 10);
    sb.add_env_lines(&[
        "GROQ_API_KEY_1_PRIORITY=1",
        "GROQ_API_KEY_1_MONTHLY_REQUESTS=50",
    ]);
    // The state exists after a first run (one row).
    let (tiny, tiny_out) = (sb.path("tiny.csv"), sb.path("tiny.out.csv"));
    write_input(&tiny, &texts[..1]);
    run(&mut sb.label(&fake, &tiny, &tiny_out, &[]));
    let now = std::time::SystemTime::now();
    let before = fake.requests_for(PLANTED);
    // 48 of 50 requests used this month (today): 4 % left, the key is out.
    let today = autolabel::timeutil::utc_date(now);
    ledger(&sb.state(), PLANTED, &today, 48);
    let out = run(&mut sb.label(&fake, &input, &output, &["--no-cache"]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_labeled(&output, &texts);
    assert_eq!(fake.requests_for(PLANTED), before, "{}", stderr(&out));
    // The same use 40 days ago belongs to an earlier period: the key serves again.
    let conn = Connection::open(sb.state()).unwrap();
    let old = autolabel::timeutil::utc_date_days_ago(now, 40);
    conn.execute(
        "UPDATE usage SET day = ?1 WHERE model = 'another-model'",
        params![old],
    )
    .unwrap();
    let output2 = sb.path("out2.csv");
    let out2 = run(&mut sb.label(&fake, &input, &output2, &["--no-cache"]));
    assert_eq!(code(&out2), 0, "{}", stderr(&out2));
    assert_eq!(fake.requests_for(PLANTED), before + 10);
    sb.assert_no_leak(&[&out, &out2], &keys);
}

#[test]
fn a_bad_per_key_setting_is_exit_2_naming_the_variable() {
    let keys = [PLANTED];
    let (fake, sb, _, input, output) = setup(&keys, FakeConfig::with_keys(&keys), 2);
    for (line, var) in [
        (
            "GROQ_API_KEY_1_DAILY_TOKENS=lots",
            "GROQ_API_KEY_1_DAILY_TOKENS",
        ),
        ("GROQ_API_KEY_1_PRIORITY=1.5", "GROQ_API_KEY_1_PRIORITY"),
        ("GROQ_QUOTA_RESET_DAY=31", "GROQ_QUOTA_RESET_DAY"),
    ] {
        sb.write_keys(&keys);
        sb.add_env_lines(&[line]);
        let out = run(&mut sb.label(&fake, &input, &output, &[]));
        assert_eq!(code(&out), 2, "{line}: {}", stderr(&out));
        assert!(stderr(&out).contains(var), "{line}: {}", stderr(&out));
        sb.assert_no_leak(&[&out], &keys);
    }
    assert_eq!(fake.total_requests(), 0);
}
