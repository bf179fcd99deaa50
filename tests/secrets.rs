//! Keys never show: every command at `-vv`, every file the tool writes, checked for any
//! 8-character stretch of each planted key; and an env file others may read is flagged.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::*;

#[test]
fn no_stretch_of_a_key_shows_anywhere_at_the_highest_verbosity() {
    // KEY3 is invalid: its 401 travels through error messages, the log and the state.
    let mut cfg = FakeConfig::with_keys(&[PLANTED, KEY2]);
    cfg.keys.push(FakeKey::invalid(KEY3));
    let (fake, sb, texts, input, output) = setup(&[KEY3, PLANTED, KEY2], cfg, 20);
    fake.push_faults([
        Fault::Status(500),
        Fault::RateLimitMinute {
            retry_after_secs: 0.05,
        },
        Fault::MalformedJson,
    ]);
    let reports = sb.path("reports");
    let mut outs = Vec::new();
    let r = run(sb
        .label(&fake, &input, &output, &["-vv", "--report-dir"])
        .arg(&reports));
    assert_eq!(code(&r), 0, "{}", stderr(&r));
    assert_labeled(&output, &texts);
    assert!(stderr(&r).contains("invalid"), "{}", stderr(&r));
    outs.push(r);
    for args in [
        &["usage", "-vv"][..],
        &["usage", "--json", "-vv"],
        &["usage", "--html", "usage.html", "-vv"],
        &["state", "prune", "-vv"],
    ] {
        let o = run(sb.cmd().args(args));
        assert_eq!(code(&o), 0, "{args:?}: {}", stderr(&o));
        outs.push(o);
    }
    for args in [
        &["test-keys", "-vv"][..],
        &["test-keys", "--json", "--chat", "-vv"],
    ] {
        let o = run(sb.cmd().args(args).arg("--base-url").arg(fake.base_url()));
        assert_eq!(code(&o), 1, "KEY3 is invalid: {}", stdout(&o));
        outs.push(o);
    }
    assert!(sb.path("usage.html").exists());
    assert!(std::fs::read_dir(&reports).unwrap().count() > 0);
    let outs: Vec<&std::process::Output> = outs.iter().collect();
    sb.assert_no_leak(&outs, &[PLANTED, KEY2, KEY3]);
}

#[test]
fn the_leak_check_finds_any_stretch_of_a_key() {
    // The check itself: a fragment from the start, the middle or the end of a key, in a
    // file or in the process output, fails it; the masked form does not.
    for fragment in [
        &PLANTED[..8],
        &PLANTED[10..18],
        &PLANTED[PLANTED.len() - 8..],
    ] {
        let sb = Sandbox::new();
        std::fs::write(sb.path("report.json"), format!("{{\"k\": \"{fragment}\"}}")).unwrap();
        let caught = std::panic::catch_unwind(|| sb.assert_no_leak(&[], &[PLANTED]));
        assert!(caught.is_err(), "{fragment} in a file was not caught");
    }
    let sb = Sandbox::new();
    let out = run(sb.cmd().args(["--version"]));
    let mut leaked = out.clone();
    leaked.stderr.extend_from_slice(&PLANTED.as_bytes()[20..28]);
    assert!(std::panic::catch_unwind(|| sb.assert_no_leak(&[&leaked], &[PLANTED])).is_err());
    std::fs::write(sb.path("log.txt"), autolabel::keys::mask::mask(PLANTED)).unwrap();
    sb.assert_no_leak(&[&out], &[PLANTED]);
}

#[test]
fn an_env_file_others_may_read_gets_a_warning_naming_it() {
    let fake = FakeProvider::start(FakeConfig::with_keys(&[PLANTED]));
    let sb = Sandbox::new();
    sb.write_keys(&[PLANTED]);
    let test_keys = || {
        run(sb
            .cmd()
            .args(["test-keys", "--base-url"])
            .arg(fake.base_url()))
    };
    let quiet = test_keys();
    assert_eq!(code(&quiet), 0, "{}", stderr(&quiet));
    assert!(!stderr(&quiet).contains("warning"), "{}", stderr(&quiet));
    std::fs::set_permissions(sb.env_file(), std::fs::Permissions::from_mode(0o644)).unwrap();
    let warned = test_keys();
    assert_eq!(
        code(&warned),
        0,
        "a warning, not an error: {}",
        stderr(&warned)
    );
    let err = stderr(&warned);
    assert!(
        err.contains(&format!(
            "warning: {} holds API keys and other users may read it (mode 0644)",
            sb.env_file().display()
        )) && err.contains("chmod 600"),
        "{err}"
    );
    sb.assert_no_leak(&[&quiet, &warned], &[PLANTED]);
}

/// What an older version could have stored: a health reason, a last error and a rotation
/// reason holding a key a provider echoed. `keys list` and `usage` (text and JSON) show
/// them through the one masking function.
#[test]
fn a_key_left_in_stored_reasons_is_masked_by_keys_list_and_usage() {
    use rusqlite::{params, Connection};
    let (fake, sb, _texts, input, output) = setup(&[PLANTED], FakeConfig::with_keys(&[PLANTED]), 2);
    let r = run(&mut sb.label(&fake, &input, &output, &[]));
    assert_eq!(code(&r), 0, "{}", stderr(&r));
    let echoed = format!("server: HTTP 500: you sent Authorization: Bearer {PLANTED}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let fp = autolabel::keys::mask::fingerprint(PLANTED);
    let conn = Connection::open(sb.state()).unwrap();
    conn.execute(
        "INSERT OR REPLACE INTO key_health (provider, fingerprint, masked, status, until, reason, updated)
         VALUES ('groq', ?1, 'gsk_…_zq9', 'invalid', NULL, ?2, ?3)",
        params![fp, echoed, now],
    )
    .unwrap();
    conn.execute(
        "INSERT OR REPLACE INTO key_activity (provider, fingerprint, last_used, last_error, last_error_at)
         VALUES ('groq', ?1, ?2, ?3, ?2)",
        params![fp, now, echoed],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO rotations (ts, provider, from_key, to_key, reason, mode)
         VALUES (?1, 'groq', '#1 gsk_…_zq9', '-', ?2, 'auto')",
        params![now, echoed],
    )
    .unwrap();
    drop(conn);
    let masked = format!("Bearer {}", autolabel::keys::mask::mask(PLANTED));
    let mut outs = Vec::new();
    for (args, shown) in [
        (&["keys", "list"][..], 2),
        (&["keys", "list", "--json"][..], 2),
        (&["usage"][..], 1),
        (&["usage", "--json"][..], 1),
    ] {
        let out = run(sb.cmd().args(args));
        assert_eq!(code(&out), 0, "{args:?}: {}", stderr(&out));
        // The reasons are shown, masked.
        assert!(
            stdout(&out).matches(&masked).count() >= shown,
            "{args:?}: {}",
            stdout(&out)
        );
        outs.push(out);
    }
    for (i, o) in outs.iter().enumerate() {
        for w in windows(PLANTED, LEAK_WINDOW) {
            assert!(!contains(&o.stdout, w.as_bytes()), "#{i}: {w:?} leaked");
            assert!(!contains(&o.stderr, w.as_bytes()), "#{i}: {w:?} leaked");
        }
    }
}
