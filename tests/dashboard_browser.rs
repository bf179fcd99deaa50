//! The dashboard used as a person uses it, in headless Chromium driven over the DevTools
//! protocol (`common::cdp`): clicking an action without the token and with it, answering
//! its confirmation and prompts, reading and dismissing its answer; logging in off
//! loopback; the alert banner. Screenshots go to target/screenshots/.

mod common;
mod dashsrv;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::cdp::{Answer, Browser};
use common::dash::{http, json, Dashboard};
use common::*;
use serde_json::Value;

fn shots() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn key(keys: &Value, index: u64) -> &Value {
    keys.as_array()
        .unwrap()
        .iter()
        .find(|k| k["index"] == index)
        .unwrap_or_else(|| panic!("no key {index}: {keys}"))
}

/// The notices on the page now: (class, text).
fn notices(b: &mut Browser) -> Vec<(String, String)> {
    let v = b.eval(
        "[...document.querySelectorAll('#notices .notice')].map(n => [n.className, n.querySelector('span').textContent])",
    );
    serde_json::from_value(v).unwrap()
}

#[test]
fn an_action_clicked_on_the_page_asks_first_and_its_answer_or_refusal_stays_until_dismissed() {
    let ks = [PLANTED, KEY2];
    let (fake, sb, _, input, output) = setup(&ks, FakeConfig::with_keys(&ks), 6);
    let labeled = run(&mut sb.label(&fake, &input, &output, &[]));
    assert_eq!(code(&labeled), 0, "{}", stderr(&labeled));
    let d = Dashboard::start(&sb);
    let mut b = Browser::start(1280, 800);
    b.open(&d.url());
    b.wait_for(
        "document.querySelectorAll('#keys tr.key').length === 2",
        "the keys table",
    );

    // No token typed: the click asks first, then shows the refusal, which the refresh
    // (every 2 s) leaves alone.
    b.answer(&[Answer::Accept("")]);
    b.click("#rotate");
    b.wait_for(
        "document.querySelector('#notices .notice.refused')",
        "the refusal",
    );
    assert_eq!(
        b.dialogs,
        [(
            "confirm".to_string(),
            "Make every running run move off the key it uses now?".to_string()
        )]
    );
    let refused = notices(&mut b);
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(
        refused[0].1.starts_with("refused: actions need the token"),
        "{refused:?}"
    );
    std::thread::sleep(Duration::from_millis(2500));
    b.wait_for(
        "document.getElementById('status').textContent.startsWith('updated ')",
        "a refresh",
    );
    assert_eq!(notices(&mut b), refused, "a refresh removed the refusal");
    assert_eq!(
        json(&http(&d.addr, "GET", "/api/actions", &[])),
        serde_json::json!([]),
        "the refused click did nothing"
    );

    // With the token: disable key 2 with a reason and a duration (two prompts), confirmed.
    b.type_into("#token", &d.token);
    b.answer(&[
        Answer::Accept("leaked in CI"),
        Answer::Accept("2h"),
        Answer::Accept(""),
    ]);
    b.choose("select[aria-label^='action on key groq #2 ']", "disable");
    b.wait_for(
        "document.querySelectorAll('#notices .notice').length === 2",
        "the answer",
    );
    let kinds: Vec<&str> = b.dialogs[1..].iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(kinds, ["prompt", "prompt", "confirm"], "{:?}", b.dialogs);
    assert!(
        b.dialogs[1].1.starts_with("Why disable key groq #2 (gsk_…"),
        "{:?}",
        b.dialogs
    );
    assert!(
        b.dialogs[3].1.starts_with("Disable key groq #2 "),
        "{:?}",
        b.dialogs
    );
    let done = notices(&mut b);
    assert_eq!(
        done[0].0, "notice",
        "the newest first, not a refusal: {done:?}"
    );
    assert!(done[0].1.contains("disabled until 20"), "{done:?}");
    assert_eq!(done[1], refused[0]);

    // The state changed, as the API and `keys list` tell; the page shows it too.
    let k2 = key(&json(&http(&d.addr, "GET", "/api/keys", &[])), 2).clone();
    assert_eq!(k2["status"], "disabled", "{k2}");
    assert_eq!(k2["manual"]["reason"], "leaked in CI", "{k2}");
    assert!(k2["manual"]["until"].is_string(), "for 2h: {k2}");
    let list = run(sb.cmd().args(["keys", "list", "--json"]));
    assert_eq!(code(&list), 0, "{}", stderr(&list));
    let list: Value = serde_json::from_str(&stdout(&list)).unwrap();
    assert_eq!(key(&list, 2)["manual"]["reason"], "leaked in CI", "{list}");
    b.wait_for(
        "document.querySelectorAll('#keys tr.key[data-status=disabled]').length === 1",
        "key 2 shown disabled",
    );
    b.wait_for(
        "[...document.querySelectorAll('#actions tr.action')].some(r => r.textContent.includes('dashboard 127.0.0.1') && r.textContent.includes('leaked in CI'))",
        "the action log",
    );
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(notices(&mut b), done, "a refresh removed the answer");
    b.screenshot(&shots().join("actions-1280x800.png"));

    // Dismissing removes that notice alone, then the other.
    b.click("#notices .notice:not(.refused) button");
    assert_eq!(notices(&mut b), refused);
    b.click("#notices .notice button");
    assert_eq!(notices(&mut b), []);
    drop(b);
    let served = d.stop();
    sb.assert_no_leak(&[&labeled, &served], &ks);
}

const TOKEN: &str = "browser-test-token-0123456789";

#[test]
fn off_loopback_the_login_form_refuses_a_wrong_token_and_the_right_one_opens_the_page_with_its_alerts(
) {
    // The only key is invalid: no key can label, an alert.
    let cfg = FakeConfig {
        keys: vec![FakeKey::invalid(PLANTED)],
        ..FakeConfig::default()
    };
    let (fake, sb, _, input, output) = setup(&[PLANTED], cfg, 3);
    let off = run(&mut sb.label(&fake, &input, &output, &[]));
    assert_ne!(code(&off), 0, "{}", stderr(&off));
    let d = dashsrv::Dash::start(&sb, &["--listen", "0.0.0.0:0", "--token", TOKEN], None);
    let port = d.addr.rsplit(':').next().unwrap().to_string();
    let base = format!("http://127.0.0.1:{port}/");
    let mut b = Browser::start(1280, 800);

    b.open(&base);
    b.wait_for("document.querySelector('form')", "the login form");
    assert!(
        b.text("#why").unwrap().contains("this needs the token"),
        "{:?}",
        b.text("#why")
    );
    b.type_into("#token", "not-the-token-0123456789");
    b.click("button[type=submit]");
    b.wait_for(
        "document.querySelector('#why') && document.querySelector('#why').textContent.includes('wrong token')",
        "the refusal of a wrong token",
    );
    b.screenshot(&shots().join("login-refused-1280x800.png"));

    b.type_into("#token", TOKEN);
    b.click("button[type=submit]");
    let summary = dashsrv::http(
        &d.addr,
        "GET",
        "/api/summary",
        &[("X-Autolabel-Token", TOKEN)],
        "",
    );
    let requests: Value = serde_json::from_str(&summary.body).unwrap();
    let requests = requests["requests"].as_u64().unwrap();
    assert!(requests > 0, "{}", summary.body);
    b.wait_for(
        &format!("document.querySelector('#card-requests .v') && document.querySelector('#card-requests .v').textContent === '{requests}'"),
        "the page with the state's numbers",
    );
    assert_eq!(
        b.eval("location.href"),
        Value::from(base.clone()),
        "the token is in no URL"
    );
    assert_eq!(
        b.eval("document.cookie"),
        Value::from(""),
        "the session cookie is HttpOnly"
    );
    b.wait_for(
        "document.querySelector('#alerts .alert[data-alert=keys]')",
        "the alert banner",
    );
    let banner = b.text("#alerts .alert").unwrap();
    assert!(
        banner.starts_with("⚠ no key can label: 0 exhausted, 1 invalid, 0 disabled (since 20"),
        "{banner}"
    );
    let shown = b.eval(
        "(() => { const r = document.querySelector('#alerts .alert').getBoundingClientRect(); return r.width > 300 && r.height > 10 && r.top >= 0 && r.bottom <= innerHeight; })()",
    );
    assert_eq!(shown, Value::from(true), "the banner is on screen");
    b.screenshot(&shots().join("alert-1280x800.png"));
    drop(b);
    let served = d.stop();
    sb.assert_no_leak(&[&off, &served], &[PLANTED]);
}

/// The layout check the page writes under `#check`, once it is there.
fn layout(b: &mut Browser) -> Value {
    b.wait_for(
        "document.getElementById('layout-check')",
        "the layout check",
    );
    let text = b.text("#layout-check").unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn a_custom_period_is_a_range_of_dates_and_every_number_on_the_page_follows_it() {
    let (fake, sb, _, input, output) = setup(&[PLANTED], FakeConfig::with_keys(&[PLANTED]), 3);
    let r = run(&mut sb.label(&fake, &input, &output, &[]));
    assert_eq!(code(&r), 0, "{}", stderr(&r));
    let ago = |n| autolabel::timeutil::utc_date_days_ago(std::time::SystemTime::now(), n);
    let conn = rusqlite::Connection::open(sb.state()).unwrap();
    conn.execute(
        "INSERT INTO usage (day, provider, fingerprint, masked, model, requests, successes)
         VALUES (?1, 'groq', ?2, 'x', 'old-model', 9, 9)",
        rusqlite::params![ago(4), autolabel::keys::mask::fingerprint(PLANTED)],
    )
    .unwrap();
    let d = Dashboard::start(&sb);
    let week = json(&http(&d.addr, "GET", "/api/summary?days=7", &[]));
    let week = week["requests"].as_u64().unwrap();
    assert!(week > 9, "today's run and the old day");

    // On a phone, with the two date fields shown: still nothing spills out.
    let mut b = Browser::start(390, 844);
    b.open(&format!("{}#check", d.url()));
    b.wait_for("document.querySelector('#card-requests')", "the cards");
    assert_eq!(
        b.eval("document.getElementById('range').hidden"),
        Value::from(true)
    );
    b.choose("#days", "custom");
    // It starts as the last 7 days: the same numbers as "7 days".
    let label = |from: &str, to: &str| format!("requests, {} – {}", &from[5..], &to[5..]);
    b.wait_for(
        &format!(
            "document.querySelector('#card-requests').textContent === '{week}{}'",
            label(&ago(6), &ago(0))
        ),
        "the last 7 days as a range",
    );
    assert_eq!(
        b.eval("document.getElementById('range').hidden"),
        Value::from(false)
    );
    let check = layout(&mut b);
    assert_eq!(check["hscroll"], false, "{check}");
    assert_eq!(check["overflow"], serde_json::json!([]), "{check}");
    b.screenshot(&shots().join("range-390x844.png"));

    // One day 4 days ago: its 9 requests, one line in the usage log.
    b.choose("#from", &ago(4));
    b.choose("#to", &ago(4));
    b.wait_for(
        &format!(
            "document.querySelector('#card-requests').textContent === '9{}'",
            label(&ago(4), &ago(4))
        ),
        "the one day's numbers",
    );
    let log_dates = b
        .eval("[...document.querySelectorAll('#log tr td:first-child')].map(td => td.textContent)");
    assert_eq!(log_dates, serde_json::json!([ago(4)]));
    assert_eq!(
        b.eval("[...document.querySelectorAll('#models .model-name')].map(t => t.firstChild.textContent)"),
        serde_json::json!(["groq/old-model"])
    );

    // The CSV export link is of the period shown.
    let href = b.eval("document.getElementById('usage-csv').href");
    let want = format!("/api/usage.csv?from={}&to={}", ago(4), ago(4));
    assert!(href.as_str().unwrap().ends_with(&want), "{href}");
    let csv = b.eval("fetch(document.getElementById('usage-csv').href).then(r => r.text())");
    let csv = csv.as_str().unwrap();
    assert!(csv.starts_with("provider,date,"), "{csv}");
    assert_eq!(csv.lines().count(), 2, "{csv}");
    let row = format!("groq,{},1,", ago(4));
    assert!(csv.lines().nth(1).unwrap().starts_with(&row), "{csv}");

    // Reversed: the server's reason in the status line, the numbers left as they were.
    b.choose("#from", &ago(2));
    b.wait_for(
        "document.getElementById('status').textContent.startsWith('not updated: ')",
        "the refusal of a reversed range",
    );
    let status = b.text("#status").unwrap();
    assert!(
        status.contains(&format!("from {} is after to {}", ago(2), ago(4))),
        "{status}"
    );
    drop(b);
    let served = d.stop();
    sb.assert_no_leak(&[&r, &served], &[PLANTED]);
}
