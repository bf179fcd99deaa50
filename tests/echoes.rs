//! A provider (or a proxy before it) that echoes our `Authorization` header back, in its
//! error bodies and in its replies: the key must not show anywhere, at any verbosity, in
//! `test-keys` (text and JSON), the state, or the output. And a base URL's password is
//! never printed.

mod common;

use autolabel::keys::mask::mask;
use common::*;

/// The masked echo every run below must show: proof that the echo reached the user, and
/// reached them masked.
fn masked_echo() -> String {
    format!("Authorization: Bearer {}", mask(PLANTED))
}

#[test]
fn an_echoed_key_never_shows_at_any_verbosity() {
    for verbosity in [&[][..], &["-q"], &["-v"], &["-vv"]] {
        let (fake, sb, _texts, input, output) =
            setup(&[PLANTED], FakeConfig::with_keys(&[PLANTED]), 4);
        // One worker, so the faults meet the rows in order: a refused row (400), a
        // server error retried (500), an echoed reply (unusable, retried), then a 404
        // that ends the run.
        fake.push_faults([
            Fault::Echo(400),
            Fault::Echo(500),
            Fault::Echo(200),
            Fault::Echo(404),
        ]);
        let mut args = vec!["--concurrency", "1"];
        args.extend_from_slice(verbosity);
        let out = run(&mut sb.label(&fake, &input, &output, &args));
        let err = stderr(&out);
        assert_ne!(code(&out), 0, "{verbosity:?}: the 404 ends the run: {err}");
        assert_eq!(fake.pending_faults(), 0, "{verbosity:?}: {err}");
        // The 404's message is shown even with -q; the 400's at the default verbosity.
        assert!(err.contains(&masked_echo()), "{verbosity:?}: {err}");
        if verbosity.is_empty() {
            assert!(err.contains("request refused"), "{err}");
        }
        sb.assert_no_leak(&[&out], &[PLANTED]);
    }
}

#[test]
fn test_keys_shows_an_echoed_error_masked_in_text_and_json() {
    let keys = [PLANTED, KEY2, KEY3];
    let fake = FakeProvider::start(FakeConfig::with_keys(&keys));
    let sb = Sandbox::new();
    sb.write_keys(&keys);
    let mut outs = Vec::new();
    for json in [false, true] {
        fake.push_models_faults([Fault::Echo(500), Fault::Echo(400), Fault::Echo(404)]);
        let mut cmd = sb.cmd();
        cmd.args(["test-keys", "-vv", "--base-url"])
            .arg(fake.base_url());
        if json {
            cmd.arg("--json");
        }
        let out = run(&mut cmd);
        assert_eq!(code(&out), 1, "{}", stderr(&out));
        let shown = stdout(&out);
        assert!(shown.contains(&masked_echo()), "{shown}");
        outs.push(out);
    }
    // A chat check whose error and whose reply echo the key.
    fake.push_faults([Fault::Echo(500), Fault::Echo(200), Fault::Echo(400)]);
    let chat = run(sb
        .cmd()
        .args(["test-keys", "--chat", "--json", "-vv", "--base-url"])
        .arg(fake.base_url()));
    assert_eq!(code(&chat), 1, "{}", stderr(&chat));
    assert!(stdout(&chat).contains(&masked_echo()), "{}", stdout(&chat));
    outs.push(chat);
    let outs: Vec<&std::process::Output> = outs.iter().collect();
    sb.assert_no_leak(&outs, &keys);
}

#[test]
fn a_base_url_password_is_never_printed() {
    const PASSWORD: &str = "Hunter2WasHere";
    let fake = FakeProvider::start(FakeConfig::with_keys(&[PLANTED]));
    let sb = Sandbox::new();
    sb.write_keys(&[PLANTED]);
    let with_password =
        fake.base_url()
            .replacen("http://", &format!("http://alice:{PASSWORD}@"), 1);
    let mut outs = Vec::new();
    for args in [&["test-keys"][..], &["test-keys", "--json", "-vv"]] {
        let out = run(sb.cmd().args(args).arg("--base-url").arg(&with_password));
        assert_eq!(code(&out), 0, "{args:?}: {}", stderr(&out));
        outs.push(out);
    }
    assert!(
        stdout(&outs[0]).contains("http://alice:***@127.0.0.1"),
        "{}",
        stdout(&outs[0])
    );
    // A URL refused as unusable names it, without the password.
    let bad = with_password.replace("/openai/v1", ":notaport/v1");
    let refused = run(sb.cmd().args(["test-keys", "--base-url"]).arg(&bad));
    assert_eq!(code(&refused), 2, "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("alice:***@"),
        "{}",
        stderr(&refused)
    );
    outs.push(refused);
    // A labeling run at the highest verbosity, with an error naming the URL.
    let texts = smsa(3);
    let (input, output) = (sb.path("in.csv"), sb.path("out.csv"));
    write_input(&input, &texts);
    fake.push_faults([Fault::Hang(std::time::Duration::from_secs(30))]);
    let labeled = run(sb
        .cmd()
        .args([
            "-i",
            "in.csv",
            "-o",
            "out.csv",
            "--delay",
            "0",
            "--timeout",
            "1",
            "-vv",
        ])
        .arg("--base-url")
        .arg(&with_password));
    assert_eq!(code(&labeled), 0, "{}", stderr(&labeled));
    assert_labeled(&output, &texts);
    outs.push(labeled);
    for o in &outs {
        for stream in [stdout(o), stderr(o)] {
            assert!(!stream.contains(PASSWORD), "{stream}");
        }
    }
    let outs: Vec<&std::process::Output> = outs.iter().collect();
    sb.assert_no_leak(&outs, &[PASSWORD, PLANTED]);
}
