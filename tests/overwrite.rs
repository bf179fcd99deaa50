//! `--overwrite` replaces only on success: the new output goes to
//! `<output>.autolabel-new`, and the old output stays byte for byte as it was until the
//! new one holds every row (exit 0 or 3), whatever ends the run before that (SIGINT,
//! SIGTERM, kill -9, a stop, a failure). The same command goes on with the new file.

mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;

/// A good output of another input at `out.csv` (so its bytes are unmistakable), and an
/// input of `n` other texts to overwrite it with: (fake, sandbox, texts, input, output,
/// the old output's bytes).
fn old_output(
    n: usize,
    latency_ms: u64,
) -> (
    FakeProvider,
    Sandbox,
    Vec<String>,
    PathBuf,
    PathBuf,
    Vec<u8>,
) {
    let mut cfg = FakeConfig::with_keys(&[PLANTED]);
    cfg.latency = Duration::from_millis(latency_ms);
    let fake = FakeProvider::start(cfg);
    let sb = Sandbox::new();
    sb.write_keys(&[PLANTED]);
    let all = smsa(n + 4);
    let (old_texts, texts) = (all[..4].to_vec(), all[4..].to_vec());
    let (old_input, input, output) = (sb.path("old.csv"), sb.path("in.csv"), sb.path("out.csv"));
    write_input(&old_input, &old_texts);
    write_input(&input, &texts);
    let out = run(&mut sb.label(&fake, &old_input, &output, &[]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let before = std::fs::read(&output).unwrap();
    (fake, sb, texts, input, output, before)
}

fn new_file(output: &Path) -> PathBuf {
    output.with_file_name("out.csv.autolabel-new")
}

fn send(child: &std::process::Child, signal: libc::c_int) {
    // SAFETY: a plain kill(2) to our own child.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, signal) }, 0);
}

#[test]
fn an_interrupted_overwrite_leaves_the_old_output_and_the_same_command_goes_on() {
    for (signal, exit) in [
        (libc::SIGINT, 130),
        (libc::SIGTERM, 143),
        (libc::SIGKILL, -1),
    ] {
        let (fake, sb, texts, input, output, before) = old_output(60, 30);
        let args = ["--overwrite", "--no-cache", "--concurrency", "1"];
        let mut child = spawn(sb.label(&fake, &input, &output, &args));
        wait_for_rows(&new_file(&output), 5, &mut child);
        assert_eq!(
            std::fs::read(&output).unwrap(),
            before,
            "untouched while it runs"
        );
        send(&child, signal);
        let out = wait_with_limit(child, Duration::from_secs(30));
        assert_eq!(code(&out), exit, "signal {signal}: {}", stderr(&out));
        assert_eq!(
            std::fs::read(&output).unwrap(),
            before,
            "signal {signal}: the old output byte for byte"
        );
        let done = complete_rows(&new_file(&output));
        assert!((5..60).contains(&done), "signal {signal}: {done}");
        // A killed run's last request may be recorded only after its latency.
        std::thread::sleep(Duration::from_millis(200));
        let asked = fake.requests().len();

        let again = run(&mut sb.label(&fake, &input, &output, &args));
        let err = stderr(&again);
        assert_eq!(code(&again), 0, "signal {signal}: {err}");
        assert!(err.contains("unfinished --overwrite"), "{err}");
        assert_labeled(&output, &texts);
        assert!(!new_file(&output).exists(), "renamed over the output");
        let finished: HashSet<&String> = texts[..done].iter().collect();
        let second = &fake.requests()[asked..];
        for r in second {
            assert!(
                !finished.contains(&r.texts[0]),
                "asked again: {}",
                r.texts[0]
            );
        }
        assert_eq!(
            second.len(),
            60 - done,
            "signal {signal}: every other row once"
        );
        sb.assert_no_leak(&[&out, &again], &[PLANTED]);
    }
}

#[test]
fn a_stopped_or_failed_overwrite_leaves_the_old_output() {
    // Exit 75: the key is out for the day after three rows (`--on-exhausted stop`).
    let (fake, sb, texts, input, output, before) = old_output(6, 0);
    let mut faults: Vec<Fault> = texts[..3]
        .iter()
        .map(|t| Fault::Reply(expected_label(t).to_string()))
        .collect();
    faults.push(Fault::RateLimitRaw {
        retry_after: "1e20".to_string(),
    });
    fake.push_faults(faults);
    let args = [
        "--overwrite",
        "--no-cache",
        "--concurrency",
        "1",
        "--on-exhausted",
        "stop",
    ];
    let out = run(&mut sb.label(&fake, &input, &output, &args));
    assert_eq!(code(&out), 75, "{}", stderr(&out));
    assert_eq!(std::fs::read(&output).unwrap(), before, "after exit 75");
    assert_eq!(complete_rows(&new_file(&output)), 3);
    let asked = fake.requests().len();
    // The key is out for a month in that state: the next day's run, with a fresh one.
    let mut again = sb.label(&fake, &input, &output, &args);
    again.env("AUTOLABEL_STATE", sb.path("next-day.sqlite3"));
    let again = run(&mut again);
    assert_eq!(code(&again), 0, "{}", stderr(&again));
    assert_labeled(&output, &texts);
    assert_eq!(fake.requests().len() - asked, 3, "rows 4 to 6 only");

    // Exit 1: the provider does not serve the model (404), before any row.
    let (_fake, sb, _texts, input, output, before) = old_output(6, 0);
    let strict = FakeProvider::start(FakeConfig {
        strict_model: true,
        ..FakeConfig::with_keys(&[PLANTED])
    });
    let out = run(&mut sb.label(
        &strict,
        &input,
        &output,
        &["--overwrite", "--model", "no-such-model"],
    ));
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert_eq!(std::fs::read(&output).unwrap(), before, "after exit 1");
    assert!(
        !new_file(&output).exists(),
        "a replacement with no row is removed"
    );
}

#[test]
fn an_overwrite_with_fallback_rows_replaces_and_the_next_run_relabels_them() {
    let (fake, sb, texts, input, output, _before) = old_output(6, 0);
    let mut faults = Vec::new();
    for (i, t) in texts.iter().enumerate() {
        if i == 2 {
            faults.extend((0..5).map(|_| Fault::Status(500)));
        } else {
            faults.push(Fault::Reply(expected_label(t).to_string()));
        }
    }
    fake.push_faults(faults);
    let args = ["--overwrite", "--no-cache", "--concurrency", "1"];
    let out = run(&mut sb.label(&fake, &input, &output, &args));
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    // Finished: the new output is in place, its fallback row recorded under its name.
    let rows = read_rows(&output);
    assert_eq!(rows.len() - 1, 6);
    assert_eq!(rows[3][1], texts[2]);
    assert!(!new_file(&output).exists());
    let asked = fake.requests().len();
    let again = run(&mut sb.label(&fake, &input, &output, &["--no-cache"]));
    assert_eq!(code(&again), 0, "{}", stderr(&again));
    assert_labeled(&output, &texts);
    let second = &fake.requests()[asked..];
    assert_eq!(second.len(), 1, "only the fallback row");
    assert_eq!(second[0].texts[0], texts[2]);
}

#[test]
fn a_link_planted_at_the_replacement_is_refused_naming_it() {
    let (fake, sb, _texts, input, output, before) = old_output(3, 0);
    let victim = sb.path("victim.txt");
    std::fs::write(&victim, "precious").unwrap();
    std::os::unix::fs::symlink(&victim, new_file(&output)).unwrap();
    let out = run(&mut sb.label(&fake, &input, &output, &["--overwrite"]));
    let err = stderr(&out);
    assert_eq!(code(&out), 2, "{err}");
    assert!(
        err.contains("out.csv.autolabel-new") && err.contains("symbolic link"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    assert_eq!(std::fs::read(&output).unwrap(), before);
}

#[test]
fn a_run_without_overwrite_leaves_an_unfinished_replacement_alone_and_says_so() {
    let (fake, sb, texts, input, output, before) = old_output(6, 0);
    fake.push_faults([
        Fault::Reply(expected_label(&texts[0]).to_string()),
        Fault::RateLimitRaw {
            retry_after: "1e20".to_string(),
        },
    ]);
    let args = [
        "--overwrite",
        "--no-cache",
        "--concurrency",
        "1",
        "--on-exhausted",
        "stop",
    ];
    let out = run(&mut sb.label(&fake, &input, &output, &args));
    assert_eq!(code(&out), 75, "{}", stderr(&out));
    let left = std::fs::read(new_file(&output)).unwrap();
    // A run of the old output's own input: nothing to do, and it says what is left.
    let out = run(&mut sb.label(&fake, &sb.path("old.csv"), &output, &[]));
    let err = stderr(&out);
    assert_eq!(code(&out), 0, "{err}");
    assert!(
        err.contains("nothing to do") && err.contains("unfinished --overwrite"),
        "{err}"
    );
    assert_eq!(std::fs::read(&output).unwrap(), before);
    assert_eq!(std::fs::read(new_file(&output)).unwrap(), left);
}

#[test]
fn a_replacement_complete_but_not_yet_renamed_takes_the_place_without_a_request() {
    let (fake, sb, texts, input, output, before) = old_output(5, 0);
    // As a run killed between its last row and the rename leaves it.
    let done = sb.path("done.csv");
    assert_eq!(code(&run(&mut sb.label(&fake, &input, &done, &[]))), 0);
    std::fs::copy(&done, new_file(&output)).unwrap();
    assert!(std::fs::read(new_file(&output)).unwrap() != before);
    let asked = fake.requests().len();
    let out = run(&mut sb.label(&fake, &input, &output, &["--overwrite", "--no-cache"]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_labeled(&output, &texts);
    assert_eq!(
        std::fs::read(&output).unwrap(),
        std::fs::read(&done).unwrap()
    );
    assert!(!new_file(&output).exists());
    assert_eq!(fake.requests().len(), asked, "nothing asked again");
}
