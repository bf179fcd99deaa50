//! The dashboard's actions, the same as `autolabel keys`: rotate a chosen key out, reset
//! a period's counts, disable with a reason and a duration; each recorded in the action
//! log with who did it, none of them a rotation.

mod common;

use common::dash::*;
use common::*;
use serde_json::Value;

fn key(keys: &Value, index: u64) -> &Value {
    keys.as_array()
        .unwrap()
        .iter()
        .find(|k| k["index"] == index)
        .unwrap()
}

#[test]
fn actions_from_the_page_take_what_the_cli_takes_and_are_logged_with_who() {
    let ks = [PLANTED, KEY2];
    let (fake, sb, _, input, output) = setup(&ks, FakeConfig::with_keys(&ks), 6);
    let r = run(&mut sb.label(&fake, &input, &output, &[]));
    assert_eq!(code(&r), 0, "{}", stderr(&r));
    let d = Dashboard::start(&sb);
    let a = d.addr.clone();
    let t = [("X-Autolabel-Token", d.token.as_str())];
    let post = |path: &str| http(&a, "POST", path, &t);

    let off = post("/api/keys/groq/1/disable?reason=leaked%20in%20CI&for=2h");
    assert_eq!(off.status, 200, "{}", off.body);
    let k1 = key(&json(&http(&a, "GET", "/api/keys", &[])), 1).clone();
    assert_eq!(k1["manual"]["reason"], "leaked in CI");
    assert!(
        k1["manual"]["until"].is_string(),
        "a disable for 2h ends: {k1}"
    );
    // Refusals say why, and change nothing.
    let bad = post("/api/keys/groq/2/disable?for=soon");
    assert_eq!(bad.status, 400);
    assert!(bad.body.contains("for:"), "{}", bad.body);
    assert_eq!(post("/api/keys/groq/2/reset?what=year").status, 400);
    assert_eq!(
        key(&json(&http(&a, "GET", "/api/keys", &[])), 2)["status"],
        "available"
    );

    assert_eq!(post("/api/keys/groq/2/reset?what=day").status, 200);
    // Rotating key 2 out takes it out of service for a minute, then it is back by itself.
    let rot = post("/api/keys/groq/2/rotate");
    assert_eq!(rot.status, 200, "{}", rot.body);
    let k2 = key(&json(&http(&a, "GET", "/api/keys", &[])), 2).clone();
    assert_eq!(k2["status"], "disabled", "{k2}");
    assert!(k2["manual"]["until"].is_string());
    assert_eq!(post("/api/keys/groq/1/enable").status, 200);

    let acts = json(&http(&a, "GET", "/api/actions", &[]));
    let seen: Vec<(String, String, String, String)> = acts
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            let f = |n: &str| x[n].as_str().unwrap().to_string();
            (f("key"), f("action"), f("detail"), f("who"))
        })
        .collect();
    assert_eq!(seen.len(), 4, "{seen:?}");
    assert_eq!(
        (seen[0].0.as_str(), seen[0].1.as_str(), seen[0].3.as_str()),
        ("#1 gsk_…_zq9", "enable", "dashboard 127.0.0.1")
    );
    assert_eq!(
        (seen[1].1.as_str(), seen[1].0.as_str()),
        ("disable", "#2 gsk_…_xw8")
    );
    assert!(
        seen[1].2.starts_with("rotated out for a minute"),
        "{seen:?}"
    );
    assert_eq!((seen[2].1.as_str(), seen[2].2.as_str()), ("reset", "day"));
    assert!(seen[3].2.starts_with("leaked in CI (until "), "{seen:?}");
    assert!(seen.iter().all(|s| s.3 == "dashboard 127.0.0.1"));
    let rotations = json(&http(&a, "GET", "/api/rotations", &[]));
    assert_eq!(
        (rotations["auto"].as_u64(), rotations["manual"].as_u64()),
        (Some(0), Some(0))
    );

    // The page offers each key its action menu and keeps answers until dismissed.
    let page = http(&a, "GET", "/", &[]).body;
    assert!(page.contains("id=\"notices\""));
    let profile = tempfile::tempdir().unwrap();
    let dom = stdout(&browser(profile.path(), &["--dump-dom"], &d.url()));
    assert_eq!(
        dom.matches("<option value=\"\">action…</option>").count(),
        2,
        "{dom}"
    );
    assert!(dom.contains("<option value=\"reset:month\">reset month</option>"));
    assert!(
        dom.contains("class=\"action\""),
        "the action log is shown: {dom}"
    );
    let out = d.stop();
    sb.assert_no_leak(&[&r, &out], &ks);
}

#[test]
fn failed_requests_are_kept_in_the_error_log_masked() {
    let (fake, sb, _, input, output) = setup(&[PLANTED], FakeConfig::with_keys(&[PLANTED]), 4);
    fake.push_faults([Fault::Status(500), Fault::Echo(500)]);
    let r = run(&mut sb.label(&fake, &input, &output, &["--concurrency", "1"]));
    assert_eq!(code(&r), 0, "{}", stderr(&r));
    let d = Dashboard::start(&sb);
    let errors = json(&http(&d.addr, "GET", "/api/errors", &[]));
    let errors = errors.as_array().unwrap();
    assert_eq!(errors.len(), 2, "{errors:?}");
    for e in errors {
        assert_eq!(
            (e["class"].as_str(), e["status"].as_u64()),
            (Some("server"), Some(500)),
            "{e}"
        );
        assert_eq!(e["key"], "#1 gsk_…_zq9");
        assert_eq!(e["model"], "llama-3.1-8b-instant");
        assert!(e["message"].as_str().unwrap().chars().count() <= 200);
    }
    // The provider echoed the key: the log holds it masked only.
    assert!(
        errors
            .iter()
            .any(|e| e["message"].as_str().unwrap().contains("gsk_…_zq9")),
        "{errors:?}"
    );
    let out = d.stop();
    sb.assert_no_leak(&[&r, &out], &[PLANTED]);
}
