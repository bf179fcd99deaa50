//! A period chosen by date (issue 24 item 6, "custom"): `usage --from DATE --to DATE` and
//! the API's `?from=&to=`, UTC days, both included, every number from the one usage
//! model; bad dates and reversed ranges refused by name.

mod common;
mod dashsrv;

use std::time::SystemTime;

use autolabel::keys::mask::fingerprint;
use autolabel::timeutil::utc_date_days_ago;
use common::dash::{http, json, Dashboard};
use common::*;
use rusqlite::{params, Connection};
use serde_json::Value;

fn ago(n: u32) -> String {
    utc_date_days_ago(SystemTime::now(), n)
}

/// A state with today's real run (4 rows over two keys, one 500 retried) and, written into the ledger,
/// key 1's use 10 and 5 days ago and key 2's 3 days ago.
fn history() -> (FakeProvider, Sandbox) {
    let ks = [PLANTED, KEY2];
    let (fake, sb, _, input, output) = setup(&ks, FakeConfig::with_keys(&ks), 4);
    fake.push_faults([Fault::Status(500)]);
    let r = run(&mut sb.label(&fake, &input, &output, &[]));
    assert_eq!(code(&r), 0, "{}", stderr(&r));
    let conn = Connection::open(sb.state()).unwrap();
    for (day, key, requests, successes) in [
        (ago(10), PLANTED, 5, 4),
        (ago(5), PLANTED, 7, 7),
        (ago(3), KEY2, 11, 10),
    ] {
        conn.execute(
            "INSERT INTO usage (day, provider, fingerprint, masked, model, requests, successes)
             VALUES (?1, 'groq', ?2, 'x', 'old-model', ?3, ?4)",
            params![day, fingerprint(key), requests, successes],
        )
        .unwrap();
    }
    (fake, sb)
}

fn usage_json(sb: &Sandbox, args: &[&str]) -> Value {
    let out = run(sb.cmd().args(["usage", "--json"]).args(args));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    serde_json::from_str(&stdout(&out)).unwrap()
}

fn key(report: &Value, index: u64) -> &Value {
    report["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["index"] == index)
        .unwrap()
}

#[test]
fn usage_from_to_counts_those_days_only_and_the_api_agrees() {
    let (_fake, sb) = history();
    let today = usage_json(&sb, &["--days", "1"]);
    let today_1 = key(&today, 1)["today"].clone();
    assert!(today_1["requests"].as_u64().unwrap() > 0, "{today}");

    let (from, to) = (ago(10), ago(5));
    let r = usage_json(&sb, &["--from", &from, "--to", &to]);
    assert_eq!(
        (&r["from"], &r["to"], &r["days"]),
        (
            &Value::from(from.clone()),
            &Value::from(to.clone()),
            &Value::from(6)
        )
    );
    let k1 = key(&r, 1);
    assert_eq!(k1["total"]["requests"], 12, "{k1}");
    assert_eq!(k1["total"]["successes"], 11, "{k1}");
    let days: Vec<&str> = k1["days"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["date"].as_str().unwrap())
        .collect();
    assert_eq!(days, [from.as_str(), to.as_str()]);
    assert_eq!(key(&r, 2)["total"]["requests"], 0);
    // Today is not in the period, but "today" is still today's.
    assert_eq!(k1["today"], today_1, "{k1}");

    // Both ends included: 5 and 3 days ago.
    let r = usage_json(&sb, &["--from", &ago(5), "--to", &ago(3)]);
    assert_eq!(key(&r, 1)["total"]["requests"], 7);
    assert_eq!(key(&r, 2)["total"]["requests"], 11);
    let one = usage_json(&sb, &["--from", &ago(3), "--to", &ago(3)]);
    assert_eq!(one["days"], 1);
    assert_eq!(key(&one, 1)["total"]["requests"], 0);

    // The CSV covers the same days.
    let csv = run(sb
        .cmd()
        .args(["usage", "--csv", "--from", &from, "--to", &to]));
    assert_eq!(code(&csv), 0, "{}", stderr(&csv));
    let dates: Vec<String> = stdout(&csv)
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(1).unwrap().to_string())
        .collect();
    assert_eq!(dates, [from.clone(), to.clone()], "{}", stdout(&csv));

    // A snapshot of the page (`--html`) is of the same period.
    let file = sb.path("range.html");
    let html = run(sb
        .cmd()
        .args(["usage", "--from", &from, "--to", &to, "--html"])
        .arg(&file));
    assert_eq!(code(&html), 0, "{}", stderr(&html));
    let page = std::fs::read_to_string(&file).unwrap();
    assert!(
        page.contains(&format!("\"from\":\"{from}\",\"to\":\"{to}\",\"days\":6,")),
        "{page}"
    );

    // An action today (by the CLI) is in a period ending today, not in the one before.
    let off = run(sb.cmd().args(["keys", "disable", "2", "--reason", "audit"]));
    assert_eq!(code(&off), 0, "{}", stderr(&off));
    let cli = usage_json(&sb, &["--from", &from, "--to", &to]);
    let d = Dashboard::start(&sb);
    let get = |path: &str| json(&http(&d.addr, "GET", path, &[]));
    let q = format!("from={from}&to={to}");
    let api = get(&format!("/api/usage?{q}"));
    let api = &api["providers"][0];
    for field in ["from", "to", "days"] {
        assert_eq!(api[field], cli[field], "{field}");
    }
    for i in [1, 2] {
        assert_eq!(key(api, i)["total"], key(&cli, i)["total"], "key {i}");
        assert_eq!(key(api, i)["days"], key(&cli, i)["days"], "key {i}");
    }
    let s = get(&format!("/api/summary?{q}"));
    assert_eq!(
        (&s["from"], &s["to"], &s["days"]),
        (&api["from"], &api["to"], &Value::from(6))
    );
    assert_eq!(s["requests"], 12, "{s}");
    let per_day = s["per_day"].as_array().unwrap();
    assert_eq!(per_day.len(), 6);
    assert_eq!(
        (&per_day[0]["date"], &per_day[0]["requests"]),
        (&Value::from(from.clone()), &Value::from(5))
    );
    assert_eq!(per_day[5]["requests"], 7);
    assert!(per_day[1]["success_rate"].is_null(), "an idle day: {s}");
    assert_eq!(
        s["per_model"],
        serde_json::json!([{ "model": "groq/old-model", "requests": 12 }])
    );
    let keys = get(&format!("/api/keys?{q}"));
    assert_eq!(
        key(&serde_json::json!({ "keys": keys }), 1)["total"]["requests"],
        12
    );
    assert_eq!(get(&format!("/api/actions?{q}")), serde_json::json!([]));
    let now = get(&format!("/api/actions?from={}&to={}", ago(1), ago(0)));
    assert_eq!(
        now[0]["detail"].as_str().unwrap().split(' ').next(),
        Some("audit"),
        "{now}"
    );

    // The page's CSV exports are what `usage --csv [--errors]` prints for the period.
    let today = (ago(0), ago(0));
    for (path, errors, (f, t)) in [
        ("/api/usage.csv", false, (&from, &to)),
        ("/api/errors.csv", true, (&from, &to)),
        ("/api/errors.csv", true, (&today.0, &today.1)),
    ] {
        let mut cmd = sb.cmd();
        cmd.args(["usage", "--csv", "--from", f, "--to", t]);
        if errors {
            cmd.arg("--errors");
        }
        let cli = run(&mut cmd);
        assert_eq!(code(&cli), 0, "{}", stderr(&cli));
        let served = dashsrv::http(&d.addr, "GET", &format!("{path}?from={f}&to={t}"), &[], "");
        assert_eq!(served.status, 200, "{}", served.body);
        assert_eq!(
            served.body.trim_end(),
            stdout(&cli).trim_end(),
            "{path} {f} {t}"
        );
        assert_eq!(
            served.header("content-type").as_deref(),
            Some("text/csv; charset=utf-8")
        );
        let what = &path[5..path.len() - 4];
        assert_eq!(
            served.header("content-disposition"),
            Some(format!(
                "attachment; filename=\"autolabel-{what}-{f}-{t}.csv\""
            ))
        );
    }
    let errors = http(
        &d.addr,
        "GET",
        &format!("/api/errors.csv?from={}&to={}", today.0, today.1),
        &[],
    );
    assert!(
        errors
            .body
            .lines()
            .nth(1)
            .is_some_and(|l| l.contains(",server,500,")),
        "{}",
        errors.body
    );
    let old = http(
        &d.addr,
        "GET",
        &format!("/api/errors.csv?from={from}&to={to}"),
        &[],
    );
    assert_eq!(
        old.body.lines().count(),
        1,
        "the header alone: {}",
        old.body
    );
    let reversed = format!("/api/usage.csv?from={}&to={}", ago(3), ago(5));
    assert_eq!(http(&d.addr, "GET", &reversed, &[]).status, 400);
    drop(d);
}

#[test]
fn bad_dates_and_reversed_ranges_are_refused_naming_the_flag_or_parameter() {
    let (_fake, sb) = history();
    let (d3, d5) = (ago(3), ago(5));
    for (args, says) in [
        (vec!["--from", "2026-02-30", "--to", &d3], "--from"),
        (vec!["--from", &d5, "--to", "yesterday"], "--to"),
        (vec!["--from", &d3, "--to", &d5], "is after --to"),
        (vec!["--from", &d5], "--to"),
        (vec!["--to", &d5], "--from"),
        (vec!["--days", "3", "--from", &d5, "--to", &d3], "--days"),
    ] {
        let out = run(sb.cmd().arg("usage").args(&args));
        assert_eq!(code(&out), 2, "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
        assert!(stdout(&out).is_empty(), "{args:?}");
    }
    let d = Dashboard::start(&sb);
    for (query, says) in [
        (
            format!("from=2026-13-01&to={d3}"),
            "from 2026-13-01: not a date",
        ),
        (format!("from={d3}&to={d5}"), "is after to"),
        (format!("from={d5}"), "from and to go together"),
        (format!("days=3&from={d5}&to={d3}"), "one period"),
    ] {
        for path in ["/api/summary", "/api/usage", "/api/keys", "/api/errors"] {
            let r = http(&d.addr, "GET", &format!("{path}?{query}"), &[]);
            assert_eq!(r.status, 400, "{path}?{query}: {}", r.body);
            assert!(r.body.contains(says), "{path}?{query}: {}", r.body);
        }
    }
    drop(d);
}
