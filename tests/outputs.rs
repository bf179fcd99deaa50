//! The files the tool writes: never the input under another name, an `--overwrite` that
//! replaces the old output only once the new one is complete, and files beside the output
//! (temporary, lock) that a planted link cannot redirect.

mod common;

use std::os::unix::fs::symlink;

use common::*;

#[test]
fn an_output_that_is_the_input_under_another_name_is_refused() {
    let (fake, sb, _texts, input, _output) =
        setup(&[PLANTED], FakeConfig::with_keys(&[PLANTED]), 5);
    let before = std::fs::read(&input).unwrap();
    let hard = sb.path("hard.csv");
    std::fs::hard_link(&input, &hard).unwrap();
    let soft = sb.path("soft.csv");
    symlink(&input, &soft).unwrap();
    for (output, extra) in [
        (&hard, &["--overwrite"][..]),
        (&hard, &[][..]),
        (&soft, &["--overwrite"][..]),
    ] {
        let out = run(&mut sb.label(&fake, &input, output, extra));
        let err = stderr(&out);
        assert_eq!(code(&out), 2, "{err}");
        assert!(
            err.contains(&output.display().to_string()) && err.contains("in.csv"),
            "names both: {err}"
        );
        assert_eq!(
            std::fs::read(&input).unwrap(),
            before,
            "the input untouched"
        );
    }
    assert_eq!(fake.total_requests(), 0);
}

/// Rows 1 and 3 of a 6-row output got the fallback label: the next run re-labels them
/// through `out.csv.autolabel-tmp`.
fn with_fallback_rows() -> (
    FakeProvider,
    Sandbox,
    std::path::PathBuf,
    std::path::PathBuf,
) {
    let (fake, sb, texts, input, output) = setup(&[PLANTED], FakeConfig::with_keys(&[PLANTED]), 6);
    let mut faults = Vec::new();
    for (i, t) in texts.iter().enumerate() {
        if i == 1 || i == 3 {
            faults.extend((0..5).map(|_| Fault::Status(500)));
        } else {
            faults.push(Fault::Reply(expected_label(t).to_string()));
        }
    }
    fake.push_faults(faults);
    let out = run(&mut sb.label(&fake, &input, &output, &["--concurrency", "1"]));
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    (fake, sb, input, output)
}

#[test]
fn a_link_planted_at_the_temporary_or_lock_file_is_refused_naming_it() {
    for planted in ["out.csv.autolabel-tmp", "out.csv.lock"] {
        let (fake, sb, input, output) = with_fallback_rows();
        let before = std::fs::read(&output).unwrap();
        let victim = sb.path("victim.txt");
        std::fs::write(&victim, "precious").unwrap();
        symlink(&victim, sb.path(planted)).unwrap();
        let out = run(&mut sb.label(&fake, &input, &output, &[]));
        let err = stderr(&out);
        assert_eq!(code(&out), 2, "{planted}: {err}");
        assert!(
            err.contains(planted) && err.contains("symbolic link"),
            "{err}"
        );
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        assert_eq!(std::fs::read(&output).unwrap(), before, "output untouched");
        let meta = std::fs::symlink_metadata(&output).unwrap();
        assert!(meta.file_type().is_file(), "the output is still a file");
    }
}

/// Two names for one output (a symlink, a hard link) share one lock: a second run under
/// another name is refused, naming the run that writes it, instead of both writing.
#[test]
fn a_second_run_under_another_name_for_the_output_is_refused() {
    let mut cfg = FakeConfig::with_keys(&[PLANTED]);
    cfg.latency = std::time::Duration::from_millis(50);
    let (fake, sb, _texts, input, output) = setup(&[PLANTED], cfg, 40);
    let mut first = spawn(sb.label(&fake, &input, &output, &["--concurrency", "1"]));
    wait_for_rows(&output, 1, &mut first);
    let soft = sb.path("soft.csv");
    symlink(&output, &soft).unwrap();
    let hard = sb.path("hard.csv");
    std::fs::hard_link(&output, &hard).unwrap();
    let pid = format!("pid {}", first.id());
    for name in [&soft, &hard] {
        let second = run(&mut sb.label(&fake, &input, name, &[]));
        let err = stderr(&second);
        assert_eq!(code(&second), 1, "{}: {err}", name.display());
        assert!(
            err.contains("another autolabel run") && err.contains(&pid),
            "names the other run: {err}"
        );
        assert!(err.contains(&name.display().to_string()), "{err}");
    }
    first.kill().unwrap();
    first.wait().unwrap();
    assert!(!sb.path("soft.csv.lock").exists() && !sb.path("hard.csv.lock").exists());
    // The first run's rows are all whole: nobody else wrote between them.
    let rows = read_rows(&output);
    assert!(rows.len() >= 2);
    // Once it is gone, the other name resumes the same file.
    let out = run(&mut sb.label(&fake, &input, &soft, &[]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stderr(&out).contains("resuming"), "{}", stderr(&out));
}
