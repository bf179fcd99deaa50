//! `autolabel keys list|disable|enable|reset|rotate`: what each key has used, decisions
//! stored by fingerprint, and a running run that follows them within 5 s.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use rusqlite::Connection;
use serde_json::Value;

fn keys(sb: &Sandbox, args: &[&str]) -> std::process::Output {
    run(sb.cmd().arg("keys").args(args))
}

fn list_json(sb: &Sandbox) -> Vec<Value> {
    let out = keys(sb, &["list", "--json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    serde_json::from_str::<Value>(&stdout(&out))
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// The action log, oldest first.
fn cli_actions(db: &Path) -> Vec<Value> {
    let conn = Connection::open(db).unwrap();
    let mut stmt = conn
        .prepare("SELECT body FROM events WHERE kind = 'action' ORDER BY id")
        .unwrap();
    stmt.query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(|b| serde_json::from_str(&b.unwrap()).unwrap())
        .collect()
}

fn manual_rotations(db: &Path) -> Vec<(String, String, String)> {
    let conn = Connection::open(db).unwrap();
    let mut stmt = conn
        .prepare("SELECT from_key, to_key, reason FROM rotations WHERE mode = 'manual' ORDER BY id")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn list_shows_names_priorities_quota_use_health_and_activity_masked() {
    let ks = [PLANTED, KEY2];
    // Free-tier keys: stated limits under ten times the free tier's keep the assumed
    // tokens a day (a paid-tier statement would drop it, see tests/learn.rs).
    let free = OrgLimits {
        tpm: Some(50_000),
        rpd: Some(14_400),
        ..OrgLimits::default()
    };
    let cfg = FakeConfig::with_keys(&ks)
        .limit("org_0", free.clone())
        .limit("org_1", free);
    let (fake, sb, _, input, output) = setup(&ks, cfg, 10);
    sb.add_env_lines(&[
        "GROQ_API_KEY_1_NAME=main",
        "GROQ_API_KEY_1_PRIORITY=3",
        "GROQ_API_KEY_1_DAILY_REQUESTS=10",
        "GROQ_API_KEY_1_MONTHLY_TOKENS=1000000",
        "GROQ_API_KEY_1_MINUTE_REQUESTS=1000",
    ]);
    fake.push_faults([Fault::Status(500)]);
    let labeled = run(&mut sb.label(&fake, &input, &output, &["--rotate-below", "0"]));
    assert_eq!(code(&labeled), 0, "{}", stderr(&labeled));
    let list = list_json(&sb);
    assert_eq!(list.len(), 2);
    let k1 = &list[0];
    assert_eq!(k1["index"], 1);
    assert_eq!(k1["name"], "main");
    assert_eq!(k1["key"], "gsk_…_zq9");
    assert_eq!(k1["priority"], 3);
    // 10 of 10 requests (a 500 and 9 rows; the last row went to key 2): exhausted, critical.
    assert_eq!(k1["status"], "exhausted", "{k1}");
    assert_eq!(k1["health"], "critical");
    let q: Vec<&Value> = k1["quotas"].as_array().unwrap().iter().collect();
    let names: Vec<&str> = q.iter().map(|q| q["quota"].as_str().unwrap()).collect();
    // The key's own quotas, then the provider's daily limit it has no quota of its own for.
    assert_eq!(
        names,
        [
            "minute_requests",
            "daily_requests",
            "monthly_tokens",
            "daily_tokens"
        ]
    );
    assert_eq!(q[3]["source"], "provider");
    assert_eq!(
        q[0]["used"],
        Value::Null,
        "only running runs count a minute"
    );
    assert_eq!(
        (q[1]["used"].as_u64(), q[1]["used_pct"].as_f64()),
        (Some(10), Some(100.0))
    );
    assert!(q[2]["used"].as_u64().unwrap() > 0);
    assert_eq!(k1["last_error"], "server");
    assert!(k1["last_used"].as_str().unwrap().ends_with('Z'));
    let k2 = &list[1];
    assert_eq!(
        (k2["priority"].as_i64(), k2["status"].as_str()),
        (Some(0), Some("available"))
    );
    // The provider's daily limits stand in for quotas the key has none of.
    let q2: Vec<&str> = k2["quotas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["source"].as_str().unwrap())
        .collect();
    assert!(
        q2.iter().all(|s| *s == "provider") && !q2.is_empty(),
        "{k2}"
    );
    let text = keys(&sb, &["list"]);
    let t = stdout(&text);
    assert!(
        t.contains("#1 main gsk_…_zq9 · priority 3 · exhausted"),
        "{t}"
    );
    assert!(t.contains("daily requests: 10 of 10 (100.0 %)"), "{t}");
    sb.assert_no_leak(&[&labeled, &text], &ks);
}

#[test]
fn disable_enable_and_reset_are_kept_in_the_state_and_used_by_the_next_run() {
    let ks = [PLANTED, KEY2];
    let (fake, sb, texts, input, _) = setup(&ks, FakeConfig::with_keys(&ks), 10);
    sb.add_env_lines(&[
        "GROQ_API_KEY_1_PRIORITY=1",
        "GROQ_API_KEY_1_DAILY_REQUESTS=10",
    ]);
    let labeled = |name: &str| {
        let out = run(&mut sb.label(
            &fake,
            &input,
            &sb.path(name),
            &["--no-cache", "--rotate-below", "0"],
        ));
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        assert_labeled(&sb.path(name), &texts);
        out
    };
    // Before any run: no state yet, so --create says to start one.
    let off = keys(
        &sb,
        &[
            "disable",
            "1",
            "--for",
            "1h",
            "--reason",
            "leaked in a log",
            "--create",
        ],
    );
    assert_eq!(code(&off), 0, "{}", stderr(&off));
    let k1 = &list_json(&sb)[0];
    assert_eq!(
        (k1["status"].as_str(), k1["status_reason"].as_str()),
        (Some("disabled"), Some("leaked in a log"))
    );
    assert!(k1["status_until"].is_string());
    let run1 = labeled("o1.csv");
    assert_eq!(fake.requests_for(PLANTED), 0, "a disabled key is not used");
    let on = keys(&sb, &["enable", "1"]);
    assert_eq!(code(&on), 0);
    let run2 = labeled("o2.csv");
    assert_eq!(
        fake.requests_for(PLANTED),
        10,
        "enabled, it serves first up to its quota"
    );
    assert_eq!(list_json(&sb)[0]["quotas"][0]["used_pct"], 100.0);
    // The provider raised the quota: forget today's count and the exhaustion.
    let reset = keys(&sb, &["reset", "1", "--day", "--json"]);
    assert_eq!(code(&reset), 0, "{}", stderr(&reset));
    let k1 = &list_json(&sb)[0];
    assert_eq!(k1["status"], "available");
    assert_eq!(k1["quotas"][0]["used"], 0, "{k1}");
    let run3 = labeled("o3.csv");
    assert_eq!(fake.requests_for(PLANTED), 20);
    // Each is an action, recorded with who did it; none is a rotation (the runs were not
    // using key 1 at the time, so none rotated either).
    let actions: Vec<(String, String, String)> = cli_actions(&sb.state())
        .into_iter()
        .map(|a| {
            let text = |f: &str| a[f].as_str().unwrap().to_string();
            (text("action"), text("detail"), text("who"))
        })
        .collect();
    assert_eq!(actions.len(), 3, "{actions:?}");
    assert_eq!(actions[0].0, "disable");
    assert!(
        actions[0].1.starts_with("leaked in a log (until "),
        "{actions:?}"
    );
    assert_eq!(actions[1], ("enable".into(), String::new(), "cli".into()));
    assert_eq!(actions[2], ("reset".into(), "day".into(), "cli".into()));
    assert!(manual_rotations(&sb.state()).is_empty());
    // An index that is not configured, and a bad duration, are exit 2.
    assert_eq!(code(&keys(&sb, &["disable", "3"])), 2);
    assert_eq!(code(&keys(&sb, &["disable", "1", "--for", "soon"])), 2);
    assert_eq!(code(&keys(&sb, &["reset", "1", "--day", "--month"])), 2);
    sb.assert_no_leak(&[&off, &on, &reset, &run1, &run2, &run3], &ks);
}

/// Polls `cond` every 50 ms for up to `limit`; true if it held in time.
fn within(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    cond()
}

#[test]
fn a_running_run_follows_disable_enable_and_rotate_within_5_seconds() {
    let ks = [PLANTED, KEY2];
    let mut cfg = FakeConfig::with_keys(&ks);
    cfg.latency = Duration::from_millis(20);
    let (fake, sb, _, input, output) = setup(&ks, cfg, 2000);
    sb.add_env_lines(&["GROQ_API_KEY_1_PRIORITY=1"]);
    let child = sb
        .label(&fake, &input, &output, &["--no-cache"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let guard = ChildGuard(Some(child));
    assert!(within(Duration::from_secs(30), || fake
        .requests_for(PLANTED)
        >= 10));
    assert_eq!(fake.requests_for(KEY2), 0, "priority 1 serves alone");

    let off = keys(&sb, &["disable", "1"]);
    assert_eq!(code(&off), 0);
    let disabled_at = Instant::now();
    assert!(
        within(Duration::from_secs(5), || fake.requests_for(KEY2) > 0),
        "the run moved to key 2 within 5 s: {}",
        String::from_utf8_lossy(&guard.stop().stderr)
    );
    // From then on key 1 gets nothing (one request may have been in flight).
    let n1 = fake.requests_for(PLANTED);
    std::thread::sleep(Duration::from_millis(600));
    assert!(fake.requests_for(PLANTED) <= n1 + 1);
    assert!(disabled_at.elapsed() < Duration::from_secs(6));

    let on = keys(&sb, &["enable", "1"]);
    assert_eq!(code(&on), 0);
    let n1 = fake.requests_for(PLANTED);
    assert!(
        within(Duration::from_secs(5), || fake.requests_for(PLANTED)
            > n1 + 3),
        "key 1 serves again within 5 s"
    );

    let n2 = fake.requests_for(KEY2);
    let rot = keys(&sb, &["rotate"]);
    assert_eq!(code(&rot), 0);
    assert!(
        within(Duration::from_secs(5), || fake.requests_for(KEY2) > n2 + 3),
        "the key in use stepped aside within 5 s"
    );
    let out = guard.stop();
    let manual = manual_rotations(&sb.state());
    assert!(
        manual.iter().any(|r| r.0.starts_with("#1 ")
            && r.1.starts_with("#2 ")
            && r.2 == "manual: autolabel keys rotate"),
        "{manual:?}"
    );
    assert!(
        manual.iter().any(|r| r.0.starts_with("#1 ")
            && r.1.starts_with("#2 ")
            && r.2.starts_with("manual: disabled")),
        "the running run logged moving off the disabled key: {manual:?}"
    );
    sb.assert_no_leak(&[&off, &on, &rot, &out], &ks);
}

#[test]
fn rotate_n_takes_that_key_out_for_a_minute_and_a_running_run_moves_off_it() {
    let ks = [PLANTED, KEY2];
    let mut cfg = FakeConfig::with_keys(&ks);
    cfg.latency = Duration::from_millis(20);
    let (fake, sb, _, input, output) = setup(&ks, cfg, 2000);
    sb.add_env_lines(&["GROQ_API_KEY_1_PRIORITY=1"]);
    let child = sb
        .label(&fake, &input, &output, &["--no-cache"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let guard = ChildGuard(Some(child));
    assert!(within(Duration::from_secs(30), || fake
        .requests_for(PLANTED)
        >= 10));
    assert_eq!(fake.requests_for(KEY2), 0, "priority 1 serves alone");

    let rot = keys(&sb, &["rotate", "1", "--json"]);
    assert_eq!(code(&rot), 0, "{}", stderr(&rot));
    let said: Value = serde_json::from_str(&stdout(&rot)).unwrap();
    assert_eq!(
        (said["index"].as_u64(), said["key"].as_str()),
        (Some(1), Some("gsk_…_zq9"))
    );
    assert!(
        within(Duration::from_secs(5), || fake.requests_for(KEY2) > 3),
        "the run moved off key 1 to key 2 within 5 s: {}",
        String::from_utf8_lossy(&guard.stop().stderr)
    );
    // Key 1 gets nothing meanwhile (one request may have been in flight).
    let n1 = fake.requests_for(PLANTED);
    std::thread::sleep(Duration::from_millis(600));
    assert!(fake.requests_for(PLANTED) <= n1 + 1);
    // The state shows a disable that ends by itself about a minute later.
    let k1 = &list_json(&sb)[0];
    assert_eq!(k1["status"], "disabled", "{k1}");
    assert_eq!(k1["status_reason"], "rotated out for a minute from the CLI");
    // RFC 3339 times in UTC order as text.
    let at = |secs| {
        autolabel::timeutil::rfc3339(std::time::SystemTime::now() + Duration::from_secs(secs))
    };
    let until = k1["status_until"].as_str().unwrap().to_string();
    assert!(until >= at(45) && until <= at(60), "{until}: {k1}");
    let out = guard.stop();

    // Recorded as done from the CLI, the same as the page's rotate of a chosen key.
    let acts = cli_actions(&sb.state());
    assert_eq!(acts.len(), 1, "{acts:?}");
    let a = &acts[0];
    assert_eq!(
        (a["key"].as_str(), a["action"].as_str(), a["who"].as_str()),
        (Some("#1 gsk_…_zq9"), Some("disable"), Some("cli")),
        "{a}"
    );
    assert!(
        a["detail"]
            .as_str()
            .unwrap()
            .starts_with("rotated out for a minute from the CLI (until "),
        "{a}"
    );
    let manual = manual_rotations(&sb.state());
    assert!(
        manual.iter().any(|r| r.0.starts_with("#1 ")
            && r.1.starts_with("#2 ")
            && r.2.starts_with("manual: disabled")),
        "the running run logged moving off key 1: {manual:?}"
    );
    // A key that is not configured is exit 2, and changes nothing.
    assert_eq!(code(&keys(&sb, &["rotate", "3"])), 2);
    assert_eq!(cli_actions(&sb.state()).len(), 1);
    sb.assert_no_leak(&[&rot, &out], &ks);
}

/// Ends the labeling run with SIGTERM when the test is done (or fails).
struct ChildGuard(Option<std::process::Child>);

impl ChildGuard {
    fn stop(mut self) -> std::process::Output {
        let child = self.0.take().unwrap();
        // SAFETY: a plain kill(2) to our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        wait_with_limit(child, Duration::from_secs(30))
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[test]
fn a_running_run_counts_what_other_runs_used_of_a_key_within_seconds() {
    let ks = [PLANTED, KEY2];
    let mut cfg = FakeConfig::with_keys(&ks);
    cfg.latency = Duration::from_millis(20);
    let (fake, sb, _, input, output) = setup(&ks, cfg, 2000);
    sb.add_env_lines(&[
        "GROQ_API_KEY_1_PRIORITY=1",
        "GROQ_API_KEY_1_DAILY_REQUESTS=100000",
    ]);
    let child = sb
        .label(&fake, &input, &output, &["--no-cache"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let guard = ChildGuard(Some(child));
    assert!(within(Duration::from_secs(30), || fake
        .requests_for(PLANTED)
        >= 10));
    assert_eq!(fake.requests_for(KEY2), 0);
    // Another run (another model, say) used 99,000 of key 1's day: under 1 % is left.
    let conn = Connection::open(sb.state()).unwrap();
    conn.execute(
        "INSERT INTO usage (day, provider, fingerprint, masked, model, requests, successes)
         VALUES (?1, 'groq', ?2, 'x', 'another-model', 99000, 99000)",
        rusqlite::params![
            autolabel::timeutil::utc_date(std::time::SystemTime::now()),
            autolabel::keys::mask::fingerprint(PLANTED)
        ],
    )
    .unwrap();
    assert!(
        within(Duration::from_secs(5), || fake.requests_for(KEY2) > 0),
        "the run saw the other run's use and rotated key 1 out within 5 s"
    );
    let n1 = fake.requests_for(PLANTED);
    std::thread::sleep(Duration::from_millis(600));
    assert!(fake.requests_for(PLANTED) <= n1 + 1);
    let out = guard.stop();
    assert!(
        stderr(&out).contains("quota low: daily requests"),
        "{}",
        stderr(&out)
    );
    sb.assert_no_leak(&[&out], &ks);
}
