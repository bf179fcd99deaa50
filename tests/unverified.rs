//! `test-keys` believes only what it can read: a key is "ok" when the reply has the
//! provider's JSON shape (a model list, or a chat completion with `--chat`). A 200 of any
//! other shape (a captive portal's HTML page, a proxy's answer) is "unverified", exit 1,
//! and leaves an earlier "invalid" mark in place.

mod common;

use common::*;
use serde_json::Value;

fn test_keys(sb: &Sandbox, fake: &FakeProvider, extra: &[&str]) -> (i32, Value) {
    let out = run(sb
        .cmd()
        .args(["test-keys", "--json", "--base-url"])
        .arg(fake.base_url())
        .args(extra));
    let v = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {} {}", stdout(&out), stderr(&out)));
    (code(&out), v)
}

/// The stored status of the only key, as `keys list` shows it.
fn stored_status(sb: &Sandbox) -> String {
    let out = run(sb.cmd().args(["keys", "list", "--json"]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v[0]["status"].as_str().unwrap().to_string()
}

const PAGE: &str = "<!doctype html><html><body><h1>Welcome to the hotel wifi</h1></body></html>";

#[test]
fn a_reply_of_the_wrong_shape_is_unverified_and_clears_no_invalid_mark() {
    let sb = Sandbox::new();
    sb.write_keys(&[PLANTED]);
    // An earlier check found the key invalid.
    let mut cfg = FakeConfig::with_keys(&[]);
    cfg.keys.push(FakeKey::invalid(PLANTED));
    let refusing = FakeProvider::start(cfg);
    let (exit, v) = test_keys(&sb, &refusing, &[]);
    assert_eq!((exit, v[0]["status"].as_str()), (1, Some("invalid")), "{v}");
    assert_eq!(stored_status(&sb), "invalid");

    let fake = FakeProvider::start(FakeConfig::with_keys(&[PLANTED]));
    for body in [
        PAGE,
        r#"{"object":"list"}"#,
        r#"{"data":[{"name":"x"}]}"#,
        "",
    ] {
        fake.push_models_faults([Fault::Body {
            status: 200,
            body: body.to_string(),
        }]);
        let (exit, v) = test_keys(&sb, &fake, &[]);
        assert_eq!(exit, 1, "{body}: {v}");
        assert_eq!(v[0]["status"], "unverified", "{body}: {v}");
        let detail = v[0]["detail"].as_str().unwrap();
        assert!(detail.contains("not a model list"), "{detail}");
        assert_eq!(stored_status(&sb), "invalid", "{body}");
    }
    // The same with a chat: an HTML page is no chat completion.
    fake.push_faults([Fault::Body {
        status: 200,
        body: PAGE.to_string(),
    }]);
    let (exit, v) = test_keys(&sb, &fake, &["--chat"]);
    assert_eq!(
        (exit, v[0]["status"].as_str()),
        (1, Some("unverified")),
        "{v}"
    );
    assert_eq!(stored_status(&sb), "invalid");

    // The provider's own answers clear the mark, as before: the model list...
    let (exit, v) = test_keys(&sb, &fake, &[]);
    assert_eq!((exit, v[0]["status"].as_str()), (0, Some("ok")), "{v}");
    assert_eq!(stored_status(&sb), "available");
    // ...and a chat completion.
    let (exit, v) = test_keys(&sb, &fake, &["--chat"]);
    assert_eq!((exit, v[0]["status"].as_str()), (0, Some("ok")), "{v}");
}

#[test]
fn the_text_table_says_unverified() {
    let fake = FakeProvider::start(FakeConfig::with_keys(&[PLANTED]));
    let sb = Sandbox::new();
    sb.write_keys(&[PLANTED]);
    fake.push_models_faults([Fault::Body {
        status: 200,
        body: PAGE.to_string(),
    }]);
    let out = run(sb
        .cmd()
        .args(["test-keys", "--base-url"])
        .arg(fake.base_url()));
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("unverified") && text.contains("0/1 ok"),
        "{text}"
    );
}
