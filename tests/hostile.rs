//! Hostile input from outside: replies no provider should send, and files no one should
//! feed the tool. Each must end in a retry, a fallback or a clear error, never a panic,
//! unbounded memory, or a damaged output.

mod common;

use std::time::Duration;

use common::*;

/// More than any reply the client may hold (1 MiB), and far more than the memory the
/// test allows the whole process: a client that read it in full would fail the check.
const HUGE: u64 = 200 << 20;
/// The whole process stays below this while the provider streams `HUGE` bodies.
const MAX_RSS_KIB: u64 = 100 * 1024;

#[test]
fn huge_reply_bodies_are_cut_off_and_retried_with_flat_memory() {
    let (fake, sb, texts, input, output) = setup(&[PLANTED], FakeConfig::with_keys(&[PLANTED]), 3);
    fake.push_faults([
        Fault::HugeBody {
            status: 200,
            bytes: HUGE,
        },
        Fault::HugeBody {
            status: 429,
            bytes: HUGE,
        },
    ]);
    let (out, rss_kib) = run_measuring_memory(
        &mut sb.label(&fake, &input, &output, &["-v"]),
        Duration::from_secs(60),
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_labeled(&output, &texts);
    assert_eq!(fake.pending_faults(), 0);
    // Both huge replies were tried again: 3 rows, 2 extra requests.
    assert_eq!(fake.total_requests(), 5);
    let err = stderr(&out);
    assert!(err.contains("reply body over 1048576 bytes"), "{err}");
    assert!(
        rss_kib < MAX_RSS_KIB,
        "peak RSS {rss_kib} KiB while the provider sent {HUGE}-byte bodies"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn huge_response_headers_are_refused_and_retried_with_flat_memory() {
    let (fake, sb, texts, input, output) = setup(&[PLANTED], FakeConfig::with_keys(&[PLANTED]), 2);
    fake.push_faults([Fault::HugeHeader(HUGE), Fault::HugeHeader(HUGE)]);
    let (out, rss_kib) = run_measuring_memory(
        &mut sb.label(&fake, &input, &output, &["-v"]),
        Duration::from_secs(60),
    );
    let err = stderr(&out);
    assert_eq!(code(&out), 0, "{err}");
    assert_labeled(&output, &texts);
    assert_eq!(
        fake.total_requests(),
        4,
        "two refused heads, each tried again"
    );
    assert!(rss_kib < MAX_RSS_KIB, "peak RSS {rss_kib} KiB");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn a_row_whose_replies_are_always_huge_gets_the_fallback() {
    let (fake, sb, texts, input, output) = setup(&[PLANTED], FakeConfig::with_keys(&[PLANTED]), 1);
    // One try and four retries, all huge.
    fake.push_faults((0..5).map(|_| Fault::HugeBody {
        status: 200,
        bytes: HUGE,
    }));
    let (out, rss_kib) = run_measuring_memory(
        &mut sb.label(&fake, &input, &output, &["--status-column", "status"]),
        Duration::from_secs(60),
    );
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    let rows = read_rows(&output);
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1][1], texts[0]);
    assert_eq!(rows[1][2..], ["netral", "fallback"]);
    assert_eq!(fake.total_requests(), 5);
    assert!(rss_kib < MAX_RSS_KIB, "peak RSS {rss_kib} KiB");
}

#[test]
fn test_keys_reads_no_huge_models_reply() {
    let fake = FakeProvider::start(FakeConfig::with_keys(&[PLANTED, KEY2]));
    let sb = Sandbox::new();
    sb.write_keys(&[PLANTED, KEY2]);
    fake.push_models_faults([Fault::HugeBody {
        status: 500,
        bytes: HUGE,
    }]);
    let (out, rss_kib) = run_measuring_memory(
        sb.cmd()
            .args(["test-keys", "--json", "--base-url"])
            .arg(fake.base_url()),
        Duration::from_secs(60),
    );
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["status"], "error");
    assert!(
        v[0]["detail"]
            .as_str()
            .unwrap()
            .contains("reply body over 1048576 bytes"),
        "{v}"
    );
    assert_eq!(v[1]["status"], "ok");
    assert!(rss_kib < MAX_RSS_KIB, "peak RSS {rss_kib} KiB");
    sb.assert_no_leak(&[&out], &[PLANTED, KEY2]);
}

// ------------------------------------------------------------------ hostile files

/// A sandbox with a finished output of a 5-row input at `out.csv`: what a hostile input
/// must leave byte for byte as it is.
fn with_existing_output() -> (FakeProvider, Sandbox, std::path::PathBuf, Vec<u8>) {
    let (fake, sb, _texts, input, output) = setup(&[PLANTED], FakeConfig::with_keys(&[PLANTED]), 5);
    let out = run(&mut sb.label(&fake, &input, &output, &[]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let before = std::fs::read(&output).unwrap();
    (fake, sb, output, before)
}

/// Runs `input_bytes` as the input over an existing output; returns stderr after
/// checking exit 2, that the file is named, that no request was sent and that the
/// output is byte-identical.
fn refuse_input(input_bytes: &[u8]) -> String {
    let (fake, sb, output, before) = with_existing_output();
    let input = sb.path("hostile.csv");
    std::fs::write(&input, input_bytes).unwrap();
    let (out, rss_kib) = run_measuring_memory(
        &mut sb.label(&fake, &input, &output, &[]),
        Duration::from_secs(60),
    );
    let err = stderr(&out);
    assert_eq!(code(&out), 2, "{err}");
    assert!(err.contains("hostile.csv"), "names the file: {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(fake.total_requests(), 5, "no request for a bad input");
    assert_eq!(std::fs::read(&output).unwrap(), before, "output untouched");
    assert!(rss_kib < MAX_RSS_KIB, "peak RSS {rss_kib} KiB");
    err
}

#[test]
fn invalid_utf8_is_refused_with_row_and_column() {
    let err = refuse_input(b"id,text\n1,fine\n2,caf\xe9 latin-1\n");
    assert!(
        err.contains("row 2 (line 3), column 2 ('text') is not valid UTF-8"),
        "{err}"
    );
}

#[test]
fn a_50_mb_field_is_refused_without_reading_it() {
    let mut bytes = b"id,text\n1,fine\n2,\"".to_vec();
    bytes.extend(std::iter::repeat_n(b'a', 50 << 20));
    bytes.extend_from_slice(b"\"\n3,after\n");
    let err = refuse_input(&bytes);
    assert!(
        err.contains("row 2 (line 3), column 2 ('text') is over 1048576 bytes"),
        "{err}"
    );
}

#[test]
fn an_unbalanced_quote_at_the_end_is_refused() {
    let err = refuse_input(b"id,text\n1,fine\n2,\"never closed\n3,more text\n");
    assert!(
        err.contains("row 2 (line 3), column 2 ('text') opens a quote that is never closed"),
        "{err}"
    );
}

#[test]
fn a_nul_byte_is_refused() {
    let err = refuse_input(b"id,text\n1,fine\n2,nul\x00inside\n");
    assert!(
        err.contains("row 2 (line 3), column 2 ('text') contains a NUL byte"),
        "{err}"
    );
    // A UTF-16 file is full of NUL bytes: the same message says what to do.
    let utf16: Vec<u8> = "id,text\n1,x\n"
        .encode_utf16()
        .flat_map(|u| u.to_le_bytes())
        .collect();
    let err = refuse_input(&[&[0xff, 0xfe][..], &utf16].concat());
    assert!(err.contains("UTF-16"), "{err}");
}

#[test]
fn header_only_and_empty_files_are_refused() {
    let err = refuse_input(b"id,text\n");
    assert!(
        err.contains("has a header (id, text) but no data rows"),
        "{err}"
    );
    let err = refuse_input(b"");
    assert!(err.contains("is empty (no header row)"), "{err}");
}

#[test]
fn a_damaged_row_inside_an_existing_output_is_not_cut_away() {
    let (fake, sb, _texts, input, output) = setup(&[PLANTED], FakeConfig::with_keys(&[PLANTED]), 6);
    let out = run(&mut sb.label(&fake, &input, &output, &["--limit", "4"]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    // Damage row 2 of 4 (invalid UTF-8): not a torn last row.
    let mut bytes = std::fs::read(&output).unwrap();
    let line2 = bytes
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .nth(1)
        .unwrap()
        .0
        + 3;
    bytes[line2] = 0xff;
    std::fs::write(&output, &bytes).unwrap();
    let out = run(&mut sb.label(&fake, &input, &output, &[]));
    let err = stderr(&out);
    assert_eq!(code(&out), 2, "{err}");
    assert!(err.contains("out.csv: row 2 is damaged"), "{err}");
    assert_eq!(std::fs::read(&output).unwrap(), bytes, "nothing cut");
}

/// A tmpfs mounted on a directory for the test's life (needs root).
struct Mounted(std::path::PathBuf);

impl Mounted {
    fn tmpfs(dir: &std::path::Path, size: &str) -> Result<Mounted, String> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err("not running as root, so no tmpfs can be mounted".into());
        }
        std::fs::create_dir_all(dir).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !ok.success() {
            return Err(format!("mount -t tmpfs failed ({ok})"));
        }
        Ok(Mounted(dir.to_path_buf()))
    }

    fn remount_read_only(&self) {
        let ok = std::process::Command::new("mount")
            .args(["-o", "remount,ro"])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(ok.success());
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Fills the file system holding `dir` until a write fails with "no space".
fn fill(dir: &std::path::Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(dir.join("filler")).unwrap();
    let block = vec![b'f'; 4096];
    loop {
        match f.write(&block) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(e) => panic!("filling: {e}"),
        }
    }
    let _ = f.sync_all();
}

#[test]
fn a_read_only_output_directory_is_exit_1_and_the_output_stays() {
    let (fake, sb, _texts, input, _) = setup(&[PLANTED], FakeConfig::with_keys(&[PLANTED]), 8);
    let dir = sb.path("ro");
    // As root a mode is no obstacle; a read-only mount is.
    let mounted = Mounted::tmpfs(&dir, "1m").ok();
    std::fs::create_dir_all(&dir).unwrap();
    let output = dir.join("out.csv");
    let out = run(&mut sb.label(&fake, &input, &output, &["--limit", "3"]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let before = std::fs::read(&output).unwrap();
    match &mounted {
        Some(m) => m.remount_read_only(),
        None => {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o555)).unwrap();
        }
    }
    let out = run(&mut sb.label(&fake, &input, &output, &[]));
    let err = stderr(&out);
    assert_eq!(code(&out), 1, "{err}");
    assert!(
        err.contains(
            "out.csv.lock: cannot create the lock file (the output's directory must be writable)"
        ),
        "{err}"
    );
    assert_eq!(std::fs::read(&output).unwrap(), before);
    assert_eq!(fake.total_requests(), 3, "nothing sent");
    if mounted.is_none() {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

#[test]
fn a_full_disk_is_exit_1_and_leaves_a_resumable_output() {
    let (fake, sb, texts, input, _) = setup(&[PLANTED], FakeConfig::with_keys(&[PLANTED]), 200);
    let disk = sb.path("disk");
    let _mounted = match Mounted::tmpfs(&disk, "256k") {
        Ok(m) => m,
        Err(why) => {
            eprintln!("skipped a_full_disk_is_exit_1_and_leaves_a_resumable_output: {why}");
            return;
        }
    };
    // A new output on a full disk: exit 1, and no file is left behind.
    fill(&disk);
    let fresh = disk.join("fresh.csv");
    let out = run(&mut sb.label(&fake, &input, &fresh, &[]));
    let err = stderr(&out);
    assert_eq!(code(&out), 1, "{err}");
    assert!(
        err.contains("fresh.csv: cannot write") && err.contains("No space left"),
        "{err}"
    );
    assert!(!fresh.exists(), "no partial output left");
    std::fs::remove_file(disk.join("filler")).unwrap();

    // Appending to an output: the rows already there stay, complete rows only.
    let output = disk.join("out.csv");
    let out = run(&mut sb.label(&fake, &input, &output, &["--limit", "20"]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let before = std::fs::read(&output).unwrap();
    fill(&disk);
    let out = run(&mut sb.label(&fake, &input, &output, &[]));
    let err = stderr(&out);
    assert_eq!(code(&out), 1, "{err}");
    assert!(
        err.contains("out.csv: cannot write") && err.contains("No space left"),
        "{err}"
    );
    let after = std::fs::read(&output).unwrap();
    assert!(after.starts_with(&before), "earlier rows unchanged");
    assert_eq!(after.last(), Some(&b'\n'), "no torn row");
    let rows = read_rows(&output);
    for (i, row) in rows[1..].iter().enumerate() {
        assert_eq!(row[1], texts[i]);
        assert_eq!(row[2], expected_label(&texts[i]));
    }

    // With space again the same command finishes.
    std::fs::remove_file(disk.join("filler")).unwrap();
    let out = run(&mut sb.label(&fake, &input, &output, &[]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_labeled(&output, &texts);
}

#[test]
fn a_full_disk_during_a_rewrite_leaves_the_output_byte_identical() {
    let (fake, sb, texts, input, _) = setup(&[PLANTED], FakeConfig::with_keys(&[PLANTED]), 100);
    let disk = sb.path("disk");
    let _mounted = match Mounted::tmpfs(&disk, "256k") {
        Ok(m) => m,
        Err(why) => {
            eprintln!(
                "skipped a_full_disk_during_a_rewrite_leaves_the_output_byte_identical: {why}"
            );
            return;
        }
    };
    let output = disk.join("out.csv");
    // Row 1 gets the fallback label (five server errors), the others their label.
    fake.push_faults(
        std::iter::once(Fault::Reply(expected_label(&texts[0]).to_string()))
            .chain((0..5).map(|_| Fault::Status(500))),
    );
    let out = run(&mut sb.label(&fake, &input, &output, &[]));
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    let before = std::fs::read(&output).unwrap();
    fill(&disk);
    let out = run(&mut sb.label(&fake, &input, &output, &[]));
    let err = stderr(&out);
    assert_eq!(code(&out), 1, "{err}");
    assert!(
        err.contains("out.csv.autolabel-tmp: cannot write") && err.contains("No space left"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(&output).unwrap(),
        before,
        "output byte-identical"
    );
    assert!(
        !disk.join("out.csv.autolabel-tmp").exists(),
        "temp file removed"
    );
    std::fs::remove_file(disk.join("filler")).unwrap();
    let out = run(&mut sb.label(&fake, &input, &output, &[]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_labeled(&output, &texts);
}

#[test]
fn a_full_disk_while_appending_leaves_the_output_byte_identical() {
    use std::os::unix::fs::MetadataExt;
    let (fake, sb, texts, input, reference) =
        setup(&[PLANTED], FakeConfig::with_keys(&[PLANTED]), 200);
    let out = run(&mut sb.label(&fake, &input, &reference, &[]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let full = std::fs::read(&reference).unwrap();
    let ends: Vec<usize> = (0..full.len())
        .filter(|&i| full[i] == b'\n')
        .map(|i| i + 1)
        .collect();
    let disk = sb.path("disk");
    let _mounted = match Mounted::tmpfs(&disk, "256k") {
        Ok(m) => m,
        Err(why) => {
            eprintln!(
                "skipped a_full_disk_while_appending_leaves_the_output_byte_identical: {why}"
            );
            return;
        }
    };
    // An earlier run's output of k rows whose last block has no room for row k + 1: a
    // full disk then lets no further row be completed, only a piece of one.
    let block = std::fs::metadata(&disk).unwrap().blksize() as usize;
    let k = (1..texts.len())
        .find(|&k| (block - ends[k] % block) % block < ends[k + 1] - ends[k])
        .expect("some row count leaves less room than the next row needs");
    let output = disk.join("out.csv");
    std::fs::write(&output, &full[..ends[k]]).unwrap();
    fill(&disk);
    let out = run(&mut sb.label(&fake, &input, &output, &[]));
    let err = stderr(&out);
    assert_eq!(code(&out), 1, "{err}");
    assert!(
        err.contains("out.csv: cannot write") && err.contains("No space left"),
        "{err}"
    );
    assert!(
        std::fs::read(&output).unwrap() == full[..ends[k]],
        "the output is byte-identical to before the run"
    );
    std::fs::remove_file(disk.join("filler")).unwrap();
    let out = run(&mut sb.label(&fake, &input, &output, &[]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        std::fs::read(&output).unwrap() == full,
        "finished as one run would"
    );
}
