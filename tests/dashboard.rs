//! `autolabel dashboard`: the JSON API answered from a state filled by a real labeling
//! run, the action token, and the page loaded in headless Chromium (which must be
//! installed: `./test.sh` installs it; without it this test fails).

mod common;

use std::path::Path;
use std::process::Output;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::dash::*;
use common::*;
use rusqlite::{params, Connection};

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A state from a real run (3 keys, one 500 retried), key 3 disabled, and a run going on
/// another machine.
fn filled_state() -> (FakeProvider, Sandbox, Vec<Output>) {
    let ks = [PLANTED, KEY2, KEY3];
    let (fake, sb, _, input, output) = setup(&ks, FakeConfig::with_keys(&ks), 20);
    fake.push_faults([Fault::Status(500)]);
    let labeled = run(&mut sb.label(&fake, &input, &output, &[]));
    assert_eq!(code(&labeled), 0, "{}", stderr(&labeled));
    let off = run(sb
        .cmd()
        .args(["keys", "disable", "3", "--reason", "leaked"]));
    assert_eq!(code(&off), 0, "{}", stderr(&off));
    let conn = Connection::open(sb.state()).unwrap();
    conn.execute(
        "INSERT INTO runs (id, host, pid, input, output, providers, rows_done, rows_total, rate, key_in_use, started, heartbeat,
                           priority, votes, voted, unanimous, review)
         VALUES ('other', 'labeler-7', 4242, 'tweets.csv', 'tweets.out.csv', 'groq', 120, 500, 60.0, '#2 gsk_…_xw8', ?1, ?1,
                 'high', 3, 120, 90, 7)",
        params![now()],
    )
    .unwrap();
    (fake, sb, vec![labeled, off])
}

fn secrets() -> [&'static str; 3] {
    [PLANTED, KEY2, KEY3]
}

fn assert_text_has_no_secret(what: &str, text: &str) {
    for s in secrets() {
        for w in windows(s, 8) {
            assert!(!text.contains(&w), "{w:?} of a key leaked into {what}");
        }
    }
}

#[test]
fn the_json_api_answers_from_the_state_and_actions_need_the_token() {
    let (_fake, sb, mut outs) = filled_state();
    let d = Dashboard::start(&sb);
    let a = d.addr.clone();

    let s = json(&http(&a, "GET", "/api/summary", &[]));
    assert_text_has_no_secret("/api/summary", &s.to_string());
    // 20 rows and one 500 that was retried.
    assert_eq!(
        (s["requests"].as_u64(), s["successes"].as_u64()),
        (Some(21), Some(20))
    );
    assert_eq!(s["success_rate"], 95.2);
    assert_eq!(s["keys"]["active"], 2);
    assert_eq!(s["keys"]["disabled"], 1);
    assert_eq!(s["per_day"].as_array().unwrap().len(), 7);
    assert_eq!(s["per_day"][6]["requests"], 21);
    assert_eq!(s["per_model"][0]["model"], "groq/llama-3.1-8b-instant");

    let keys = json(&http(&a, "GET", "/api/keys", &[]));
    let statuses: Vec<&str> = keys
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["available", "available", "disabled"]);
    assert_eq!(keys[2]["status_reason"], "leaked");
    assert_text_has_no_secret("/api/keys", &keys.to_string());

    let runs = json(&http(&a, "GET", "/api/runs", &[]));
    let runs = runs.as_array().unwrap();
    let other = runs.iter().find(|r| r["host"] == "labeler-7").unwrap();
    assert_eq!(
        (other["active"].as_bool(), other["eta_minutes"].as_f64()),
        (Some(true), Some(6.3))
    );
    // The labeling run registered itself and finished.
    let ours = runs.iter().find(|r| r["host"] != "labeler-7").unwrap();
    assert_eq!(
        (ours["rows_done"].as_u64(), ours["active"].as_bool()),
        (Some(20), Some(false))
    );
    assert!(ours["finished"].is_string());

    let usage = json(&http(&a, "GET", "/api/usage?days=3", &[]));
    assert_eq!(usage["providers"][0]["keys"].as_array().unwrap().len(), 3);
    assert_eq!(usage["providers"][0]["days"], 3);
    for bad in [
        "/api/usage?days=abc",
        "/api/usage?days=0",
        "/api/usage?days=99999999999",
    ] {
        assert_eq!(http(&a, "GET", bad, &[]).status, 400, "{bad}");
    }
    // The disable is an action (with who did it), not a rotation.
    let rot = json(&http(&a, "GET", "/api/rotations", &[]));
    assert_eq!(
        (rot["auto"].as_u64(), rot["manual"].as_u64()),
        (Some(0), Some(0)),
        "{rot}"
    );
    let acts = json(&http(&a, "GET", "/api/actions", &[]));
    assert_eq!(acts[0]["action"], "disable", "{acts}");
    assert_eq!(acts[0]["key"], "#3 gsk_…_vu7", "{acts}");
    assert_eq!(acts[0]["who"], "cli", "{acts}");

    // Actions: refused without the token or with a wrong one (401), done with it.
    for headers in [
        vec![],
        vec![("X-Autolabel-Token", "wrong")],
        vec![("Cookie", "x-autolabel-token=whatever")],
    ] {
        assert_eq!(http(&a, "POST", "/api/rotate", &headers).status, 401);
        assert_eq!(
            http(&a, "POST", "/api/keys/groq/3/enable", &headers).status,
            401
        );
    }
    assert_eq!(
        json(&http(&a, "GET", "/api/keys", &[]))[2]["status"],
        "disabled",
        "nothing changed"
    );
    let t = [("X-Autolabel-Token", d.token.as_str())];
    let r = http(&a, "POST", "/api/keys/groq/3/enable", &t);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        json(&http(&a, "GET", "/api/keys", &[]))[2]["status"],
        "available"
    );
    assert_eq!(http(&a, "POST", "/api/rotate", &t).status, 200);
    // Both recorded as actions from the dashboard with the client's address; the
    // enable is no rotation.
    let acts = json(&http(&a, "GET", "/api/actions", &[]));
    let seen: Vec<(&str, &str)> = acts
        .as_array()
        .unwrap()
        .iter()
        .map(|x| (x["action"].as_str().unwrap(), x["who"].as_str().unwrap()))
        .collect();
    assert_eq!(
        seen,
        [
            ("rotate", "dashboard 127.0.0.1"),
            ("enable", "dashboard 127.0.0.1"),
            ("disable", "cli")
        ]
    );
    assert_eq!(json(&http(&a, "GET", "/api/rotations", &[]))["manual"], 0);
    assert_eq!(http(&a, "POST", "/api/keys/groq/9/disable", &t).status, 404);
    assert_eq!(http(&a, "POST", "/api/keys/groq/x/disable", &t).status, 400);
    assert_eq!(http(&a, "POST", "/api/keys/groq/1/explode", &t).status, 404);
    // A foreign host name pointed at 127.0.0.1 gets nothing.
    assert_eq!(
        http(&a, "GET", "/api/keys", &[("Host", "evil.example:80")]).status,
        421
    );

    let out = d.stop();
    outs.push(out);
    let refs: Vec<&Output> = outs.iter().collect();
    sb.assert_no_leak(&refs, &secrets());
}

#[test]
fn a_key_echoed_by_the_provider_or_left_in_the_state_is_never_served() {
    let (fake, sb, _, input, output) = setup(&[PLANTED], FakeConfig::with_keys(&[PLANTED]), 3);
    fake.push_faults([Fault::Echo(500), Fault::Echo(200), Fault::Echo(400)]);
    let labeled = run(&mut sb.label(&fake, &input, &output, &["--concurrency", "1"]));
    assert_eq!(fake.pending_faults(), 0, "{}", stderr(&labeled));
    // What an older version could have stored: a rotation and a health reason holding
    // the echoed key.
    let echoed = format!("server: HTTP 500: you sent Authorization: Bearer {PLANTED}");
    let conn = Connection::open(sb.state()).unwrap();
    conn.execute(
        "INSERT INTO rotations (ts, provider, from_key, to_key, reason, mode)
         VALUES (?1, 'groq', '#1 gsk_…_zq9', '-', ?2, 'auto')",
        params![now(), echoed],
    )
    .unwrap();
    conn.execute(
        "INSERT OR REPLACE INTO key_health (provider, fingerprint, masked, status, until, reason, updated)
         VALUES ('groq', ?1, 'gsk_…_zq9', 'invalid', NULL, ?2, ?3)",
        params![autolabel::keys::mask::fingerprint(PLANTED), echoed, now()],
    )
    .unwrap();
    drop(conn);
    let d = Dashboard::start(&sb);
    let mut served = String::new();
    for path in [
        "/api/summary",
        "/api/keys",
        "/api/runs",
        "/api/usage",
        "/api/rotations",
    ] {
        let r = http(&d.addr, "GET", path, &[]);
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        assert_text_has_no_secret(path, &r.body);
        served.push_str(&r.body);
    }
    // The reasons are served, masked.
    let masked = format!("Bearer {}", autolabel::keys::mask::mask(PLANTED));
    assert!(served.matches(&masked).count() >= 2, "{served}");
    let out = d.stop();
    // (The state file holds the planted rows, so only the processes' output is checked.)
    for o in [&labeled, &out] {
        assert_text_has_no_secret("stdout", &stdout(o));
        assert_text_has_no_secret("stderr", &stderr(o));
    }
}

#[test]
fn listening_beyond_loopback_without_a_token_is_refused() {
    let sb = Sandbox::new();
    sb.write_keys(&[PLANTED]);
    let out = run_with_limit(
        sb.cmd().args(["dashboard", "--listen", "0.0.0.0:0"]),
        Duration::from_secs(20),
    );
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("--token"), "{}", stderr(&out));
    let bad = run_with_limit(
        sb.cmd().args(["dashboard", "--listen", "nowhere"]),
        Duration::from_secs(20),
    );
    assert_eq!(code(&bad), 2);
    sb.assert_no_leak(&[&out, &bad], &[PLANTED]);
}

/// Every URL the page could load or fetch is relative (or the SVG namespace name, which
/// is not fetched).
fn assert_self_contained(page: &str) {
    for pattern in [
        "src=\"http",
        "href=\"http",
        "src='http",
        "href='http",
        "@import",
        "url(",
        "fetch(\"http",
        "fetch('http",
        "//cdn",
        "fonts.googleapis",
    ] {
        assert!(!page.contains(pattern), "the page refers to {pattern:?}");
    }
    let http_urls: Vec<&str> = page
        .match_indices("http")
        .map(|(i, _)| &page[i..(i + 40).min(page.len())])
        .filter(|s| s.starts_with("http://") || s.starts_with("https://"))
        .collect();
    assert!(
        http_urls
            .iter()
            .all(|u| u.starts_with("http://www.w3.org/2000/svg")),
        "{http_urls:?}"
    );
}

#[test]
fn the_page_in_headless_chromium_shows_counts_statuses_and_the_active_run() {
    let (_fake, sb, mut outs) = filled_state();
    // Keys 1 and 2 with a daily quota of one request, spent: their forecast says so.
    sb.add_env_lines(&[
        "GROQ_API_KEY_1_DAILY_REQUESTS=1",
        "GROQ_API_KEY_2_DAILY_REQUESTS=1",
    ]);
    let d = Dashboard::start(&sb);
    let keys = json(&http(&d.addr, "GET", "/api/keys", &[]));
    // (A spent quota runs out "now", a time that moves on: the count is what is pinned.)
    let forecasts = keys
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["runs_out"]["quota"] == "daily_requests")
        .count();
    assert!(forecasts > 0, "{keys}");
    let page = http(&d.addr, "GET", "/", &[]);
    assert_eq!(page.status, 200);
    assert_self_contained(&page.body);

    let profile = tempfile::tempdir().unwrap();
    let dom = browser(profile.path(), &["--dump-dom"], &d.url());
    let html = stdout(&dom);
    assert!(
        html.contains("id=\"card-requests\"><span class=\"v\">21</span>"),
        "{html}"
    );
    assert!(
        html.contains("id=\"card-success\"><span class=\"v\">95.2 %</span>"),
        "{html}"
    );
    assert!(
        html.contains("id=\"card-active\"><span class=\"v\">2</span>"),
        "{html}"
    );
    assert!(
        html.contains("id=\"card-disabled\"><span class=\"v\">1</span>"),
        "{html}"
    );
    assert_eq!(
        html.matches("class=\"key\" data-status=\"available\"")
            .count(),
        2,
        "{html}"
    );
    assert_eq!(
        html.matches("class=\"key\" data-status=\"disabled\"")
            .count(),
        1
    );
    assert!(html.contains("labeler-7"), "the active run: {html}");
    assert!(
        html.contains("<td class=\"rows\" data-label=\"rows\">120 / 500</td>"),
        "{html}"
    );
    // Its priority with its share of the active runs' rate (the other run is finished, so
    // all of it), and what its votes came to: 90 of 120 rows unanimous, 7 to review.
    assert!(
        html.contains("<td class=\"priority\" data-label=\"priority\">high · 100 %</td>"),
        "{html}"
    );
    assert!(
        html.contains("3 votes · 75 % agree · 7 to review"),
        "{html}"
    );
    assert!(html.contains("auto 0 · manual 0"), "{html}");
    // The forecast, short in the quotas cell and whole on hover.
    assert_eq!(
        html.matches("<div class=\"runs-out\">").count(),
        forecasts,
        "{html}"
    );
    // "~HH:MM UTC" drawn, and on hover with the whole forecast.
    let drawn: Vec<&str> = html
        .split(">day's requests run out ~")
        .skip(1)
        .map(|rest| rest.split('<').next().unwrap())
        .collect();
    assert_eq!(drawn.len(), forecasts, "{html}");
    for at in drawn {
        assert!(
            at.len() == 9 && at.ends_with(" UTC") && at.as_bytes()[2] == b':',
            "{at}"
        );
        assert!(
            html.contains(&format!(
                "title=\"day's requests run out ~{at} (at today's rate: daily_requests at {at}, "
            )),
            "{at}: {html}"
        );
    }
    assert!(
        html.contains("<polyline"),
        "the line chart was drawn: {html}"
    );
    // 6 idle days and 1 with requests: one point of the success line, no dips to 0 %.
    assert_eq!(html.matches("class=\"success-point\"").count(), 1, "{html}");
    assert!(html.contains("<span id=\"status\">updated "), "{html}");

    // At the README's minimum (1280×800) and on a phone (390×844): nothing spills out of
    // its place (the page asks itself with `#check`), no chart text under 10 px, and a
    // screenshot of each, kept under target/screenshots/ for people to look at.
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    for (name, size) in [("dashboard.png", "1280,800"), ("phone.png", "390,844")] {
        let window = format!("--window-size={size}");
        let checked = browser(
            profile.path(),
            &["--dump-dom", &window],
            &format!("{}#check", d.url()),
        );
        let dom = stdout(&checked);
        let report = dom
            .split("<pre id=\"layout-check\">")
            .nth(1)
            .and_then(|r| r.split("</pre>").next())
            .unwrap_or_else(|| panic!("{size}: no layout check in {dom}"));
        let report: serde_json::Value =
            serde_json::from_str(&report.replace("&quot;", "\"")).unwrap();
        assert_eq!(
            report["hscroll"], false,
            "{size}: the page scrolls sideways: {report}"
        );
        assert_eq!(
            report["overflow"],
            serde_json::json!([]),
            "{size}: {report}"
        );
        assert_eq!(
            report["small_text"],
            serde_json::json!([]),
            "{size}: {report}"
        );
        let png = shots.join(format!(
            "{}-{}.png",
            name.trim_end_matches(".png"),
            size.replace(',', "x")
        ));
        let shot = browser(
            profile.path(),
            &[&format!("--screenshot={}", png.display()), &window],
            &d.url(),
        );
        let bytes =
            std::fs::read(&png).unwrap_or_else(|_| panic!("no screenshot: {}", stderr(&shot)));
        assert!(
            bytes.starts_with(b"\x89PNG") && bytes.len() > 10_000,
            "{name}"
        );
        // The README's screenshot, when asked for.
        if let (Ok(dir), "dashboard.png") = (std::env::var("AUTOLABEL_SCREENSHOT_DIR"), name) {
            std::fs::copy(&png, Path::new(&dir).join(name)).unwrap();
        }
        outs.push(checked);
    }
    let served = d.stop();
    // What the browser asked for: the page and its API, from this server only.
    let log = stderr(&served);
    for path in [
        "GET / ",
        "GET /api/summary",
        "GET /api/keys",
        "GET /api/runs",
        "GET /api/usage",
        "GET /api/rotations",
    ] {
        assert!(log.contains(path), "{path}: {log}");
    }
    outs.extend([dom, served]);
    let refs: Vec<&Output> = outs.iter().collect();
    sb.assert_no_leak(&refs, &secrets());
}

#[test]
fn usage_html_is_the_same_page_as_a_static_snapshot() {
    let (_fake, sb, mut outs) = filled_state();
    let file = sb.path("snapshot.html");
    let u = run(sb.cmd().args(["usage", "--html"]).arg(&file));
    assert_eq!(code(&u), 0, "{}", stderr(&u));
    let page = std::fs::read_to_string(&file).unwrap();
    assert_self_contained(&page);
    assert!(page.contains("<script id=\"snapshot\" type=\"application/json\">"));
    let profile = tempfile::tempdir().unwrap();
    let dom = browser(
        profile.path(),
        &["--dump-dom"],
        &format!("file://{}", file.display()),
    );
    let html = stdout(&dom);
    assert!(
        html.contains("id=\"card-requests\"><span class=\"v\">21</span>"),
        "{html}"
    );
    assert!(html.contains("labeler-7"), "{html}");
    assert!(html.contains("snapshot of "), "{html}");
    assert!(!html.contains("id=\"token\""), "no actions in a snapshot");
    outs.extend([u, dom]);
    let refs: Vec<&Output> = outs.iter().collect();
    sb.assert_no_leak(&refs, &secrets());
}
