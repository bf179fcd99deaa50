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
