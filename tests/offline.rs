//! No network: a provider that cannot be reached (DNS failing, connection refused) is
//! not a reason to write fallback labels. The run stops soon with one clear message,
//! charges no quota, leaves key health alone and can be resumed; with
//! `--on-exhausted wait` it waits for the network instead.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

/// Rows in the output whose status is `fallback`.
fn fallback_rows(output: &Path) -> usize {
    if !output.exists() {
        return 0;
    }
    read_rows(output)
        .iter()
        .filter(|r| r.last().is_some_and(|s| s == "fallback"))
        .count()
}

/// Nothing was charged for requests that never left the machine: no ledger count, no
/// slot of the day in the quota store, and the key is as healthy as before.
fn assert_nothing_charged(sb: &Sandbox) {
    let usage = run(sb.cmd().args(["usage", "--json"]));
    assert_eq!(code(&usage), 0, "{}", stderr(&usage));
    let v: serde_json::Value = serde_json::from_slice(&usage.stdout).unwrap();
    let key = &v["keys"][0];
    assert_eq!(key["today"]["requests"], 0, "{v:#}");
    assert_eq!(key["today"]["errors"]["network"], 0, "{v:#}");
    assert_eq!(key["status"], "available", "{v:#}");
    assert_eq!(key["health"], "healthy", "{v:#}");
    let conn = rusqlite::Connection::open(sb.state()).unwrap();
    let mut stmt = conn.prepare("SELECT state FROM quota_state").unwrap();
    let states: Vec<String> = stmt
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    for s in &states {
        let q: serde_json::Value = serde_json::from_str(s).unwrap();
        assert_eq!(q["day"]["used"], 0, "a day slot was charged: {s}");
        assert_eq!(q["hour"]["used"], 0, "an hour slot was charged: {s}");
        assert_eq!(q["tokens_day"]["used"], 0, "tokens were charged: {s}");
    }
    let health: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM key_health WHERE status != 'available'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(health, 0, "key health changed");
}

/// Runs against `base_url`, which cannot be reached; returns the output and how long it took.
fn offline_run(sb: &Sandbox, base_url: &str, extra: &[&str]) -> (std::process::Output, Duration) {
    let started = Instant::now();
    let out = run_with_limit(
        sb.cmd()
            .args(["--input", "in.csv", "--output", "out.csv", "--delay", "0"])
            .args(["--base-url", base_url, "--status-column", "status"])
            // The default back-off, as a user's run has it.
            .env("AUTOLABEL_BACKOFF", "1")
            .args(extra),
        Duration::from_secs(60),
    );
    (out, started.elapsed())
}

#[test]
fn dns_failing_stops_within_30s_with_exit_1_no_fallback_rows_and_nothing_charged() {
    let sb = Sandbox::new();
    sb.write_keys(&[PLANTED]);
    let texts = smsa(12);
    write_input(&sb.path("in.csv"), &texts);
    // `.invalid` never resolves (RFC 2606), with or without a network.
    let (out, took) = offline_run(&sb, "http://nonexistent.invalid/openai/v1", &[]);
    let err = stderr(&out);
    eprintln!("offline (DNS) run: exit {} in {took:?}", code(&out));
    assert_eq!(code(&out), 1, "{err}");
    assert!(took < Duration::from_secs(30), "took {took:?}");
    let message = "cannot reach nonexistent.invalid: DNS lookup failed (is the network up?)";
    assert!(err.contains(message), "{err}");
    assert_eq!(fallback_rows(&sb.path("out.csv")), 0, "{err}");
    assert!(!err.contains("got the fallback label"), "{err}");
    assert_nothing_charged(&sb);

    // The output is resumable: with the network back, a rerun labels every row.
    let fake = FakeProvider::start(FakeConfig::with_keys(&[PLANTED]));
    let again = run(&mut sb.label(
        &fake,
        &sb.path("in.csv"),
        &sb.path("out.csv"),
        &["--status-column", "status"],
    ));
    assert_eq!(code(&again), 0, "{}", stderr(&again));
    let rows = read_rows(&sb.path("out.csv"))[1..].to_vec();
    assert_eq!(rows.len(), texts.len());
    for (row, text) in rows.iter().zip(&texts) {
        assert_eq!(row[1], *text);
        assert_eq!(row[2], expected_label(text));
    }
    sb.assert_no_leak(&[&out, &again], &[PLANTED]);
}

#[test]
fn connection_refused_stops_within_30s_with_exit_1_and_nothing_charged() {
    let sb = Sandbox::new();
    sb.write_keys(&[PLANTED, KEY2]);
    write_input(&sb.path("in.csv"), &smsa(8));
    let closed = ReservedPort::new();
    let (out, took) = offline_run(&sb, &closed.base_url(), &["--on-exhausted", "stop"]);
    let err = stderr(&out);
    eprintln!("offline (refused) run: exit {} in {took:?}", code(&out));
    assert_eq!(code(&out), 1, "{err}");
    assert!(took < Duration::from_secs(30), "took {took:?}");
    let host = closed.base_url()["http://".len()..]
        .split('/')
        .next()
        .unwrap()
        .to_string();
    assert!(
        err.contains(&format!("cannot reach {host}: connection refused")),
        "{err}"
    );
    // One message, not one per row or per key.
    assert_eq!(err.matches("error: cannot reach").count(), 1, "{err}");
    assert_eq!(fallback_rows(&sb.path("out.csv")), 0, "{err}");
    assert_nothing_charged(&sb);
}

#[test]
fn on_exhausted_wait_waits_for_the_network_and_labels_every_row() {
    let sb = Sandbox::new();
    sb.write_keys(&[PLANTED]);
    let texts = smsa(10);
    write_input(&sb.path("in.csv"), &texts);
    let port = ReservedPort::new();
    let mut cmd = sb.cmd();
    cmd.args(["--input", "in.csv", "--output", "out.csv", "--delay", "0"])
        .args(["--base-url", &port.base_url(), "--on-exhausted", "wait"])
        .args(["--status-column", "status"]);
    let child = spawn(cmd);
    // The provider comes back after a few seconds.
    std::thread::sleep(Duration::from_secs(3));
    let fake = FakeProvider::start_on(FakeConfig::with_keys(&[PLANTED]), port);
    let out = wait_with_limit(child, Duration::from_secs(60));
    let err = stderr(&out);
    assert_eq!(code(&out), 0, "{err}");
    assert!(err.contains("cannot reach"), "{err}");
    assert!(err.contains("waiting"), "the wait is logged: {err}");
    let rows = read_rows(&sb.path("out.csv"))[1..].to_vec();
    assert_eq!(rows.len(), texts.len());
    for (row, text) in rows.iter().zip(&texts) {
        assert_eq!(
            (&row[2], &row[3]),
            (&expected_label(text).to_string(), &"model".to_string())
        );
    }
    // Every row took one request once the provider was up.
    assert_eq!(fake.requests().len(), texts.len());
    let usage = run(sb.cmd().args(["usage", "--json"]));
    let v: serde_json::Value = serde_json::from_slice(&usage.stdout).unwrap();
    assert_eq!(v["keys"][0]["today"]["requests"], texts.len(), "{v:#}");
}
