//! A state on a full disk: "disk full" naming the file and the space left (not "move it
//! away", nor "unreachable" from the quota store); a ledger write that fails mid-run is
//! logged once (then at most once a minute), the usage is kept, and written when room
//! returns, so the ledger ends exact.
//!
//! The fault is a real one from the kernel, without root: the file size limit
//! (RLIMIT_FSIZE, `ulimit -f`) of the running binary, set before it starts or from
//! outside while it runs (prlimit), makes its writes past that size fail as a full disk's
//! do (EFBIG instead of ENOSPC; SIGXFSZ ignored, as the binary's parent sets it here).

mod common;

use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::time::Duration;

use common::*;

/// Ignores SIGXFSZ in the child (so an over-limit write fails instead of killing it) and,
/// with `limit`, starts it under that file size limit.
fn under_limit(cmd: &mut Command, limit: Option<u64>) {
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            if let Some(bytes) = limit {
                let l = libc::rlimit {
                    rlim_cur: bytes,
                    rlim_max: libc::RLIM_INFINITY,
                };
                if libc::setrlimit(libc::RLIMIT_FSIZE, &l) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

/// Sets the running child's file size limit (`None`: no limit).
fn set_limit(child: &Child, bytes: Option<u64>) {
    let l = libc::rlimit {
        rlim_cur: bytes.unwrap_or(libc::RLIM_INFINITY),
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: prlimit on our own child, with a valid rlimit.
    let r = unsafe {
        libc::prlimit(
            child.id() as libc::pid_t,
            libc::RLIMIT_FSIZE,
            &l,
            std::ptr::null_mut(),
        )
    };
    assert_eq!(r, 0, "prlimit: {}", std::io::Error::last_os_error());
}

#[test]
fn a_state_that_finds_no_room_at_the_start_says_disk_full() {
    let (fake, sb, _texts, input, output) = setup(&[PLANTED], FakeConfig::with_keys(&[PLANTED]), 3);
    let mut cmd = sb.label(&fake, &input, &output, &[]);
    under_limit(&mut cmd, Some(8192));
    let out = run_with_limit(&mut cmd, Duration::from_secs(60));
    let err = stderr(&out);
    assert_eq!(code(&out), 2, "{err}");
    assert!(err.contains("disk full"), "{err}");
    assert!(
        err.contains(&sb.state().display().to_string()),
        "names the file: {err}"
    );
    assert!(
        err.contains("free on its file system"),
        "says the space left: {err}"
    );
    assert!(!err.contains("move it away"), "no wrong advice: {err}");
    assert_eq!(fake.total_requests(), 0);
}

#[test]
fn usage_that_could_not_be_written_is_kept_and_the_ledger_ends_exact() {
    let mut cfg = FakeConfig::with_keys(&[PLANTED]);
    cfg.latency = Duration::from_millis(100);
    let (fake, sb, texts, input, output) = setup(&[PLANTED], cfg, 50);
    let mut cmd = sb.label(
        &fake,
        &input,
        &output,
        &["--concurrency", "1", "--no-cache"],
    );
    under_limit(&mut cmd, None);
    let mut child = spawn(cmd);
    wait_for_rows(&output, 3, &mut child);
    // The disk fills: the state's log cannot grow past its size now.
    let wal = sb.path("state/state.sqlite3-wal");
    let room = std::fs::metadata(&wal).unwrap().len();
    let input_size = std::fs::metadata(&input).unwrap().len();
    assert!(
        room > input_size + 2048,
        "the output stays under the limit: {room}"
    );
    set_limit(&child, Some(room));
    std::thread::sleep(Duration::from_millis(3000));
    let during = complete_rows(&output);
    // Room again.
    set_limit(&child, None);
    let out = wait_with_limit(child, Duration::from_secs(60));
    let err = stderr(&out);
    assert_eq!(code(&out), 0, "{err}");
    assert_labeled(&output, &texts);
    assert!(
        during < 50,
        "the limit held while rows were labeled ({during})"
    );
    // Logged once in these 3 seconds (then at most once a minute), as a full disk.
    assert_eq!(err.matches("could not record usage").count(), 1, "{err}");
    let line = err
        .lines()
        .find(|l| l.contains("could not record usage"))
        .unwrap();
    assert!(line.contains("disk full"), "{line}");
    assert!(err.contains("usage: written again"), "{err}");
    // The quota store (its own connection to the file) says the same, not "unreachable
    // … disk I/O error".
    let quota = err
        .lines()
        .find(|l| l.contains("no request goes without a grant"))
        .unwrap_or_else(|| panic!("the quota store's writes failed too: {err}"));
    assert!(quota.contains("disk full"), "{quota}");
    assert!(
        quota.contains(&sb.state().display().to_string()),
        "names the file: {quota}"
    );
    assert!(quota.contains("free on its file system"), "{quota}");
    assert!(!err.contains("unreachable"), "{err}");
    // Every request in the ledger, none twice.
    let conn = rusqlite::Connection::open(sb.state()).unwrap();
    let recorded: i64 = conn
        .query_row("SELECT SUM(requests) FROM usage", [], |r| r.get(0))
        .unwrap();
    assert_eq!(recorded as usize, fake.total_requests());
    assert_eq!(fake.total_requests(), 50);
    sb.assert_no_leak(&[&out], &[PLANTED]);
}

#[test]
fn a_disk_that_stays_full_past_the_store_timeout_stops_the_run_saying_disk_full() {
    let mut cfg = FakeConfig::with_keys(&[PLANTED]);
    cfg.latency = Duration::from_millis(100);
    let (fake, sb, texts, input, output) = setup(&[PLANTED], cfg, 50);
    let mut cmd = sb.label(
        &fake,
        &input,
        &output,
        &["--concurrency", "1", "--no-cache", "--store-timeout", "2"],
    );
    under_limit(&mut cmd, None);
    let mut child = spawn(cmd);
    wait_for_rows(&output, 3, &mut child);
    let wal = sb.path("state/state.sqlite3-wal");
    set_limit(&child, Some(std::fs::metadata(&wal).unwrap().len()));
    let out = wait_with_limit(child, Duration::from_secs(60));
    let err = stderr(&out);
    // Stopped as for a lost state (to be resumed), and the stop line names the disk,
    // not a network: "unreachable" would send the user to the server.
    assert_eq!(code(&out), 75, "{err}");
    let stop = err
        .lines()
        .find(|l| l.contains("longer than --store-timeout"))
        .unwrap_or_else(|| panic!("no stop line: {err}"));
    assert!(stop.contains("disk full"), "{stop}");
    assert!(stop.contains("free on its file system"), "{stop}");
    assert!(!err.contains("unreachable"), "{err}");
    // Room again: the same command finishes the job.
    let out = run(&mut sb.label(
        &fake,
        &input,
        &output,
        &["--concurrency", "1", "--no-cache"],
    ));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_labeled(&output, &texts);
    sb.assert_no_leak(&[&out], &[PLANTED]);
}
