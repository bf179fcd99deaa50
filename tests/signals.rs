//! SIGTERM and SIGHUP end a run the way Ctrl-C does: every finished row is written and
//! flushed, the lock is released, the exit code says which signal it was (128 + its
//! number), and the same command continues where it stopped.

mod common;

use std::os::unix::process::CommandExt;
use std::process::Child;
use std::time::Duration;

use common::*;

fn send(child: &Child, signal: libc::c_int) {
    // SAFETY: a plain kill(2) to our own child.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, signal) }, 0);
}

/// Starts a slow run, sends `signal` after a few rows, checks the exit and the output,
/// then runs the same command to the end.
fn signal_ends_the_run_cleanly(signal: libc::c_int, exit: i32, said: &str, ended: &str) {
    let mut cfg = FakeConfig::with_keys(&[PLANTED]);
    cfg.latency = Duration::from_millis(30);
    let (fake, sb, texts, input, output) = setup(&[PLANTED], cfg, 60);
    let mut child = spawn(sb.label(&fake, &input, &output, &["--no-cache", "-vv"]));
    wait_for_rows(&output, 5, &mut child);
    send(&child, signal);
    let out = wait_with_limit(child, Duration::from_secs(30));
    let err = stderr(&out);
    assert_eq!(code(&out), exit, "{err}");
    assert!(err.contains(said), "{err}");
    assert!(err.contains(ended), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let bytes = std::fs::read(&output).unwrap();
    assert_eq!(bytes.last(), Some(&b'\n'), "no torn row after {said}");
    let done = complete_rows(&output);
    assert!((5..60).contains(&done), "{done}");
    let rows = read_rows(&output);
    for (i, row) in rows[1..].iter().enumerate() {
        assert_eq!(row[1], texts[i], "row {i} in order");
        assert_eq!(row[2], expected_label(&texts[i]), "row {i} label");
    }
    assert!(!sb.path("out.csv.lock").exists(), "the lock is released");

    let before = fake.requests().len();
    let again = run(&mut sb.label(&fake, &input, &output, &["--no-cache"]));
    assert_eq!(code(&again), 0, "{}", stderr(&again));
    assert!(stderr(&again).contains("resuming"), "{}", stderr(&again));
    assert_labeled(&output, &texts);
    let finished: std::collections::HashSet<&String> = texts[..done].iter().collect();
    for r in &fake.requests()[before..] {
        assert!(
            !finished.contains(&r.texts[0]),
            "asked again: {}",
            r.texts[0]
        );
    }
    sb.assert_no_leak(&[&out, &again], &[PLANTED]);
}

#[test]
fn sigterm_flushes_what_is_done_and_exits_143() {
    signal_ends_the_run_cleanly(
        libc::SIGTERM,
        143,
        "SIGTERM received",
        "terminated (SIGTERM)",
    );
}

#[test]
fn sighup_flushes_what_is_done_and_exits_129() {
    signal_ends_the_run_cleanly(libc::SIGHUP, 129, "SIGHUP received", "hung up (SIGHUP)");
}

#[test]
fn an_ignored_sighup_stays_ignored_as_under_nohup() {
    let mut cfg = FakeConfig::with_keys(&[PLANTED]);
    cfg.latency = Duration::from_millis(10);
    let (fake, sb, texts, input, output) = setup(&[PLANTED], cfg, 30);
    let mut cmd = sb.label(&fake, &input, &output, &[]);
    // SAFETY: signal(2) only, between fork and exec, as nohup does.
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGHUP, libc::SIG_IGN);
            Ok(())
        });
    }
    let mut child = spawn(cmd);
    wait_for_rows(&output, 3, &mut child);
    send(&child, libc::SIGHUP);
    let out = wait_with_limit(child, Duration::from_secs(60));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(!stderr(&out).contains("SIGHUP"), "{}", stderr(&out));
    assert_labeled(&output, &texts);
}
