//! The dashboard's numbers, each pinned where issue 24 found it wrong: limits belong to
//! the organization that stated them, every view of a key agrees (`keys list`, `usage`,
//! `/api/keys`, `/api/usage`), a disabled key keeps its health, rotation counts cover the
//! whole period, a rerun shows its own files and rows, and a mistyped `--state` is refused.

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use common::dash::*;
use common::*;
use rusqlite::{params, Connection};
use serde_json::Value;

fn json_out(sb: &Sandbox, args: &[&str]) -> Value {
    let out = run(sb.cmd().args(args));
    assert_eq!(code(&out), 0, "{args:?}: {}", stderr(&out));
    serde_json::from_str(&stdout(&out)).unwrap()
}

/// The entry of key `index` (from 1) in an array of key objects.
fn key(keys: &Value, index: u64) -> &Value {
    keys.as_array()
        .unwrap()
        .iter()
        .find(|k| k["index"] == index)
        .unwrap_or_else(|| panic!("no key {index}: {keys}"))
}

fn limit<'a>(k: &'a Value, dim: &str) -> &'a Value {
    k["limits"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["dim"] == dim)
        .unwrap()
}

/// Three keys in three organizations; the first (priority 1) serves alone, and its
/// organization states 40 requests a day. Key 2 has a daily quota of its own. Keys 2
/// and 3 never get a reply.
fn three_orgs() -> (FakeProvider, Sandbox) {
    let ks = [PLANTED, KEY2, KEY3];
    let cfg = FakeConfig::with_keys(&ks).limit(
        "org_0",
        OrgLimits {
            rpd: Some(40),
            ..OrgLimits::default()
        },
    );
    let (fake, sb, _, input, output) = setup(&ks, cfg, 10);
    sb.add_env_lines(&[
        "GROQ_API_KEY_1_PRIORITY=1",
        "GROQ_API_KEY_2_DAILY_REQUESTS=200",
    ]);
    let r = run(&mut sb.label(&fake, &input, &output, &[]));
    assert_eq!(code(&r), 0, "{}", stderr(&r));
    assert_eq!(fake.requests_for(KEY2) + fake.requests_for(KEY3), 0);
    (fake, sb)
}

#[test]
fn a_key_shows_its_own_organizations_limits_never_another_ones() {
    let (fake, sb) = three_orgs();
    let list = json_out(&sb, &["keys", "list", "--json"]);
    let k1 = key(&list, 1);
    assert_eq!(limit(k1, "rpd")["value"], 40, "{k1}");
    assert_eq!(limit(k1, "rpd")["origin"], "stated");
    // Key 3 never got a reply: its daily limit is the configured default, named as such,
    // not key 1's 40 ("1 / 40" before).
    let k3 = key(&list, 3);
    let rpd3 = limit(k3, "rpd");
    assert_ne!(rpd3["value"], 40, "{k3}");
    assert_eq!(rpd3["origin"], "default", "{k3}");
    assert!(rpd3["from"].as_str().unwrap().contains("free-tier default"));
    let q3 = k3["quotas"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["quota"] == "daily_requests")
        .unwrap();
    assert_eq!(
        (q3["used"].as_u64(), q3["origin"].as_str()),
        (Some(0), Some("default"))
    );
    assert_ne!(q3["limit"], 40);
    let text = stdout(&run(sb.cmd().args(["keys", "list"])));
    assert!(
        text.contains("[provider limit: free-tier default, assumed]"),
        "{text}"
    );
    assert!(
        text.contains("daily requests: 10 of 40 (25.0 %) [provider limit, stated]"),
        "{text}"
    );
    // `usage` no longer says a day buys about 40 rows per key: each key under its own.
    let usage = stdout(&run(sb.cmd().arg("usage")));
    let footer = usage
        .lines()
        .find(|l| l.contains("a day of quota buys"))
        .unwrap_or_else(|| panic!("{usage}"));
    assert!(
        footer.contains("key #1 about 40 rows (requests per day bind)"),
        "{footer}"
    );
    assert!(!footer.contains("key #3 about 40 rows"), "{footer}");
    assert_eq!(fake.requests_for(PLANTED), 10);
}

/// The fields that must read the same wherever a key is shown.
fn verdict(k: &Value) -> Value {
    serde_json::json!([
        k["status"],
        k["condition"],
        k["manual"],
        k["health"],
        k["quota_used_pct"],
        k["runs_out"],
        k["remaining"],
        k["quotas"],
        k["today"]["requests"],
        k["total"]["requests"],
    ])
}

#[test]
fn keys_list_usage_and_the_api_agree_about_every_key() {
    let (fake, sb) = three_orgs();
    // Key 1 has used 10 of its 40 today: after a reset of its day it has used 0 of them
    // (the history stays), and every view must say so.
    let reset = run(sb.cmd().args(["keys", "reset", "1", "--day"]));
    assert_eq!(code(&reset), 0, "{}", stderr(&reset));
    let list = json_out(&sb, &["keys", "list", "--json"]);
    let usage = json_out(&sb, &["usage", "--json"]);
    let d = Dashboard::start(&sb);
    let api_keys = json(&http(&d.addr, "GET", "/api/keys", &[]));
    let api_usage = json(&http(&d.addr, "GET", "/api/usage", &[]));
    for i in 1..=3 {
        let want = verdict(key(&list, i));
        assert_eq!(
            verdict(key(&usage["keys"], i)),
            want,
            "usage --json, key {i}"
        );
        assert_eq!(verdict(key(&api_keys, i)), want, "/api/keys, key {i}");
        assert_eq!(
            verdict(key(&api_usage["providers"][0]["keys"], i)),
            want,
            "/api/usage, key {i}"
        );
    }
    let k1 = key(&api_keys, 1);
    assert_eq!(k1["quota_used_pct"], 0.0, "{k1}");
    assert_eq!(k1["remaining"]["requests_today"], 40);
    // /api/keys carries the key's use today and over the period: no other call needed.
    let sent = fake.requests_for(PLANTED) as u64;
    assert_eq!(k1["today"]["requests"].as_u64(), Some(sent));
    assert_eq!(k1["total"]["requests"].as_u64(), Some(sent));
    assert_eq!(k1["today"]["successes"].as_u64(), Some(sent));
    assert!(k1["today"]["tokens_in"].as_u64().unwrap() > 0);
    // Key 2's own daily quota binds it, its organization's limit does not stand in.
    let q2: Vec<&str> = key(&api_keys, 2)["quotas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["source"].as_str().unwrap())
        .collect();
    assert_eq!(
        q2,
        ["key", "provider"],
        "own daily requests, the provider's daily tokens"
    );
    drop(d);
}

#[test]
fn a_disabled_invalid_key_shows_both_and_stays_critical() {
    let ks = [PLANTED, KEY2];
    let mut cfg = FakeConfig::with_keys(&ks);
    cfg.keys[1] = FakeKey::invalid(KEY2);
    let (fake, sb, _, input, output) = setup(&ks, cfg, 10);
    let r = run(&mut sb.label(&fake, &input, &output, &[]));
    assert_eq!(code(&r), 0, "{}", stderr(&r));
    assert!(fake.requests_for(KEY2) > 0, "key 2 was tried");
    let off = run(sb
        .cmd()
        .args(["keys", "disable", "2", "--reason", "revoked"]));
    assert_eq!(code(&off), 0, "{}", stderr(&off));
    let d = Dashboard::start(&sb);
    let keys = json(&http(&d.addr, "GET", "/api/keys", &[]));
    let k2 = key(&keys, 2);
    assert_eq!(k2["status"], "disabled");
    assert_eq!(k2["manual"]["disabled"], true);
    assert_eq!(k2["manual"]["reason"], "revoked");
    assert_eq!(k2["condition"]["state"], "invalid", "{k2}");
    assert_eq!(k2["health"], "critical", "disabling does not turn it green");
    let s = json(&http(&d.addr, "GET", "/api/summary", &[]));
    let cards = &s["keys"];
    assert_eq!(
        (
            cards["active"].as_u64(),
            cards["invalid"].as_u64(),
            cards["disabled"].as_u64()
        ),
        (Some(1), Some(1), Some(1)),
        "the invalid card counts it: {cards}"
    );
    let text = stdout(&run(sb.cmd().args(["keys", "list"])));
    assert!(
        text.contains("disabled (revoked) · also invalid · critical"),
        "{text}"
    );
    let usage = json_out(&sb, &["usage", "--json"]);
    assert_eq!(key(&usage["keys"], 2)["condition"]["state"], "invalid");
    let out = d.stop();
    sb.assert_no_leak(&[&r, &off, &out], &ks);
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[test]
fn rotation_counts_cover_the_whole_period_not_the_rows_shown() {
    let (_fake, sb) = three_orgs();
    let conn = Connection::open(sb.state()).unwrap();
    // 3 automatic and 67 manual rotations over the last hours (the page lists 50).
    for i in 0..70 {
        let mode = if i % 20 == 0 && i < 60 {
            "auto"
        } else {
            "manual"
        };
        conn.execute(
            "INSERT INTO rotations (ts, provider, from_key, to_key, reason, mode) VALUES (?1, 'groq', '#1', '#2', 'r', ?2)",
            params![now() - 3600 + i, mode],
        )
        .unwrap();
    }
    let d = Dashboard::start(&sb);
    let rot = json(&http(&d.addr, "GET", "/api/rotations", &[]));
    assert_eq!(
        (rot["auto"].as_u64(), rot["manual"].as_u64()),
        (Some(3), Some(67)),
        "{rot}"
    );
    assert_eq!(rot["rotations"].as_array().unwrap().len(), 50);
}

#[test]
fn a_rerun_shows_its_real_files_and_the_rows_it_labeled_itself() {
    let (fake, sb, texts, input, output) = setup(&[PLANTED], FakeConfig::with_keys(&[PLANTED]), 20);
    // Rows 2 and 15 fall back (5 server errors each), the others get their label.
    let mut faults = Vec::new();
    for (i, t) in texts.iter().enumerate().take(16) {
        if i == 2 || i == 15 {
            faults.extend((0..5).map(|_| Fault::Status(500)));
        } else {
            faults.push(Fault::Reply(expected_label(t).to_string()));
        }
    }
    fake.push_faults(faults);
    let r1 = run(&mut sb.label(&fake, &input, &output, &["--concurrency", "1"]));
    assert_eq!(code(&r1), 3, "{}", stderr(&r1));
    // The rerun labels the 2 fallback rows again, rewriting the output through a
    // temporary file.
    let r2 = run(&mut sb.label(&fake, &input, &output, &[]));
    assert_eq!(code(&r2), 0, "{}", stderr(&r2));
    let d = Dashboard::start(&sb);
    let runs = json(&http(&d.addr, "GET", "/api/runs", &[]));
    let runs = runs.as_array().unwrap();
    assert_eq!(runs.len(), 2, "{runs:?}");
    let out = std::fs::canonicalize(&output)
        .unwrap()
        .display()
        .to_string();
    let inp = std::fs::canonicalize(&input).unwrap().display().to_string();
    for r in runs {
        // Not `out.csv.autolabel-tmp`, the file a rewrite writes first.
        assert_eq!(
            (&r["output"], &r["input"]),
            (&Value::from(out.clone()), &Value::from(inp.clone())),
            "{r}"
        );
    }
    let mut rows: Vec<(u64, u64)> = runs
        .iter()
        .map(|r| {
            (
                r["rows_done"].as_u64().unwrap(),
                r["rows_total"].as_u64().unwrap(),
            )
        })
        .collect();
    rows.sort();
    assert_eq!(
        rows,
        [(2, 2), (20, 20)],
        "the rerun labeled 2 rows itself, not 20"
    );
}

#[test]
fn a_state_that_does_not_exist_is_refused_unless_created() {
    let sb = Sandbox::new();
    sb.write_keys(&[PLANTED]);
    let typo = sb.path("stat.sqlite3");
    for args in [
        vec!["usage"],
        vec!["keys", "list"],
        vec!["keys", "disable", "1"],
        vec!["dashboard", "--listen", "127.0.0.1:0"],
    ] {
        let out = run_with_limit(
            sb.cmd().args(&args).arg("--state").arg(&typo),
            std::time::Duration::from_secs(20),
        );
        assert_eq!(code(&out), 2, "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(&typo.display().to_string()),
            "{}",
            stderr(&out)
        );
        assert!(stderr(&out).contains("--create"), "{}", stderr(&out));
        assert!(!typo.exists(), "{args:?} created it");
    }
    let made = run(sb
        .cmd()
        .args(["keys", "list", "--create", "--state"])
        .arg(&typo));
    assert_eq!(code(&made), 0, "{}", stderr(&made));
    assert!(typo.exists());
    let again = run(sb.cmd().args(["usage", "--state"]).arg(&typo));
    assert_eq!(
        code(&again),
        0,
        "an existing state opens: {}",
        stderr(&again)
    );
}
