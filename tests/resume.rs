//! Durable, resumable output: kill -9, Ctrl-C, torn rows, the output lock.

mod common;

use std::time::Duration;

use common::*;

fn slow(keys: &[&str], ms: u64) -> FakeConfig {
    let mut cfg = FakeConfig::with_keys(keys);
    cfg.latency = Duration::from_millis(ms);
    cfg
}

#[test]
fn kill_9_mid_run_then_resume_loses_nothing_and_repeats_no_finished_row() {
    let (fake, sb, texts, input, output) = setup(&[PLANTED, KEY2], slow(&[PLANTED, KEY2], 15), 200);
    let mut child = spawn(sb.label(
        &fake,
        &input,
        &output,
        &["--no-cache", "--concurrency", "2"],
    ));
    wait_for_rows(&output, 40, &mut child);
    child.kill().unwrap(); // SIGKILL: no chance to clean up
    child.wait().unwrap();
    let done = complete_rows(&output);
    assert!((40..200).contains(&done), "{done}");
    let first_run_requests = fake.requests().len();

    let out = run(&mut sb.label(
        &fake,
        &input,
        &output,
        &["--no-cache", "--concurrency", "2"],
    ));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stderr(&out).contains("resuming"), "{}", stderr(&out));
    assert_labeled(&output, &texts);
    let finished: std::collections::HashSet<&String> = texts[..done].iter().collect();
    let second: Vec<_> = fake.requests()[first_run_requests..].to_vec();
    for r in &second {
        assert!(
            !finished.contains(&r.texts[0]),
            "a finished row was sent again: {}",
            r.texts[0]
        );
    }
    // Nothing lost: every row not finished before the kill was asked in run 2 (or was in
    // flight). The fake may record the killed run's last two requests (--concurrency 2)
    // only after their latency, so they can show up among the second run's.
    assert!(
        second.len() >= 200 - done - 2 && second.len() <= 200 - done + 2,
        "{}",
        second.len()
    );
    sb.assert_no_leak(&[&out], &[PLANTED, KEY2]);
}

#[test]
fn ctrl_c_flushes_what_is_done_exits_130_and_the_next_run_finishes() {
    // Replies slow enough that the run is still going when the signal lands, however
    // late a loaded machine notices the fifth row (at 40 ms it sometimes finished first).
    let (fake, sb, texts, input, output) = setup(&[PLANTED], slow(&[PLANTED], 200), 60);
    let mut child = spawn(sb.label(&fake, &input, &output, &["--no-cache"]));
    wait_for_rows(&output, 5, &mut child);
    let pid = child.id().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    let out = wait_with_limit(child, Duration::from_secs(30));
    assert_eq!(code(&out), 130, "{}", stderr(&out));
    assert!(stderr(&out).contains("interrupted"), "{}", stderr(&out));
    let done = complete_rows(&output);
    let bytes = std::fs::read(&output).unwrap();
    assert_eq!(
        bytes.last(),
        Some(&b'\n'),
        "no torn row after a clean interrupt"
    );
    assert!(!sb.path("out.csv.lock").exists(), "the lock is released");
    let before = fake.requests().len();
    let out = run(&mut sb.label(&fake, &input, &output, &["--no-cache"]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_labeled(&output, &texts);
    assert!(fake.requests().len() - before <= 60 - done);
}

#[test]
fn a_torn_last_row_is_cut_and_relabeled() {
    let (fake, sb, texts, input, output) = setup(&[PLANTED], FakeConfig::with_keys(&[PLANTED]), 6);
    let out = run(&mut sb.label(&fake, &input, &output, &[]));
    assert_eq!(code(&out), 0);
    // Simulate a crash in the middle of writing row 5: keep 4 rows and half of the 5th.
    let full = std::fs::read_to_string(&output).unwrap();
    let lines: Vec<&str> = full.split_inclusive('\n').collect();
    let torn = format!("{}{}", lines[..5].concat(), &lines[5][..lines[5].len() / 2]);
    std::fs::write(&output, torn).unwrap();
    let before = fake.requests().len();
    let out = run(&mut sb.label(&fake, &input, &output, &["--no-cache"]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_labeled(&output, &texts);
    assert_eq!(fake.requests().len() - before, 2, "rows 5 and 6 only");
}

#[test]
fn a_finished_output_is_left_alone() {
    let (fake, sb, _texts, input, output) = setup(&[PLANTED], FakeConfig::with_keys(&[PLANTED]), 5);
    assert_eq!(code(&run(&mut sb.label(&fake, &input, &output, &[]))), 0);
    let before = std::fs::read(&output).unwrap();
    let out = run(&mut sb.label(&fake, &input, &output, &["--no-cache"]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stderr(&out).contains("nothing to do"), "{}", stderr(&out));
    assert_eq!(fake.requests().len(), 5);
    assert_eq!(std::fs::read(&output).unwrap(), before);
}

#[test]
fn a_second_run_on_the_same_output_refuses_while_the_first_runs() {
    let (fake, sb, _texts, input, output) = setup(&[PLANTED], slow(&[PLANTED], 100), 40);
    let mut first = spawn(sb.label(&fake, &input, &output, &[]));
    wait_for_rows(&output, 1, &mut first);
    let before = std::fs::read(&output).unwrap();
    let second = run(&mut sb.label(&fake, &input, &output, &[]));
    assert_eq!(code(&second), 1, "{}", stderr(&second));
    assert!(
        stderr(&second).contains("another autolabel run"),
        "{}",
        stderr(&second)
    );
    first.kill().unwrap();
    first.wait().unwrap();
    let after = std::fs::read(&output).unwrap();
    assert!(
        after.starts_with(&before),
        "the refused run did not touch the output"
    );
}

/// Faults that make rows `fall_back` (0-based) get the fallback label in a run with
/// `--concurrency 1` over `texts`: 5 server errors use up a row's tries, the other rows
/// get their label.
fn fallback_rows_faults(texts: &[String], fall_back: &[usize]) -> Vec<Fault> {
    let mut faults = Vec::new();
    for (i, t) in texts.iter().enumerate() {
        if fall_back.contains(&i) {
            faults.extend((0..5).map(|_| Fault::Status(500)));
        } else {
            faults.push(Fault::Reply(expected_label(t).to_string()));
        }
        if i >= *fall_back.iter().max().unwrap() {
            break;
        }
    }
    faults
}

#[test]
fn limit_relabels_the_fallback_rows_it_covers_and_reports_those_it_does_not() {
    let (fake, sb, texts, input, output) = setup(&[PLANTED], FakeConfig::with_keys(&[PLANTED]), 20);
    fake.push_faults(fallback_rows_faults(&texts, &[2, 15]));
    let r1 = run(&mut sb.label(&fake, &input, &output, &[]));
    assert_eq!(code(&r1), 3, "{}", stderr(&r1));
    let rows = read_rows(&output);
    assert_eq!(
        (rows[3][2].as_str(), rows[16][2].as_str()),
        ("netral", "netral")
    );

    // --limit 10 covers row 2, not row 15.
    let before = fake.requests().len();
    let r2 = run(&mut sb.label(&fake, &input, &output, &["--limit", "10"]));
    let err = stderr(&r2);
    assert_eq!(code(&r2), 3, "a fallback row is left in the output: {err}");
    let asked: Vec<_> = fake.requests()[before..].to_vec();
    assert_eq!(asked.len(), 1, "only row 2 is asked again");
    assert_eq!(asked[0].texts, [texts[2].clone()]);
    let rows = read_rows(&output);
    assert_eq!(rows.len(), 21, "the rewrite keeps the rows after --limit");
    assert_eq!(rows[3][2], expected_label(&texts[2]), "row 2 re-labeled");
    assert_eq!(rows[16][2], "netral", "row 15 kept as it was");
    assert!(
        err.contains("1 row after --limit still has the fallback label"),
        "{err}"
    );

    // The same --limit again: nothing to do in its range, and it still says what is left.
    let r3 = run(&mut sb.label(&fake, &input, &output, &["--limit", "10"]));
    assert_eq!(code(&r3), 3, "{}", stderr(&r3));
    assert!(stderr(&r3).contains("nothing to do"), "{}", stderr(&r3));
    assert!(
        stderr(&r3).contains("1 row after --limit still has the fallback label"),
        "{}",
        stderr(&r3)
    );
    assert_eq!(fake.requests().len(), before + 1);

    // Without --limit the last fallback row is re-labeled and the run is complete.
    let r4 = run(&mut sb.label(&fake, &input, &output, &[]));
    assert_eq!(code(&r4), 0, "{}", stderr(&r4));
    assert_labeled(&output, &texts);
    let asked: Vec<_> = fake.requests()[before + 1..].to_vec();
    assert_eq!(asked.len(), 1);
    assert_eq!(asked[0].texts, [texts[15].clone()]);
}
