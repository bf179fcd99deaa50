//! Inputs the tool must refuse before it sends or writes anything: column names that
//! would repeat in the output, small files that never end, and inputs that cannot be
//! read twice. Each is exit 2 with a message naming what to fix, and the existing output
//! stays byte for byte as it was.

mod common;

use std::io::Write;
use std::process::{Output, Stdio};
use std::time::Duration;

use common::*;

/// A finished output of a 3-row input; then `extra` over it (input `input_name`, written
/// with `input_bytes` if given). Returns the run's output after checking that it is exit
/// 2, sent nothing and left the output as it was.
fn refused(input_bytes: Option<&[u8]>, extra: &[&str]) -> String {
    let (fake, sb, _texts, input, output) = setup(&[PLANTED], FakeConfig::with_keys(&[PLANTED]), 3);
    let out = run(&mut sb.label(&fake, &input, &output, &[]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let before = std::fs::read(&output).unwrap();
    if let Some(bytes) = input_bytes {
        std::fs::write(&input, bytes).unwrap();
    }
    let out = run_with_limit(
        &mut sb.label(&fake, &input, &output, extra),
        Duration::from_secs(30),
    );
    let err = stderr(&out);
    assert_eq!(code(&out), 2, "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(fake.total_requests(), 3, "no request for a refused run");
    assert_eq!(std::fs::read(&output).unwrap(), before, "output untouched");
    err
}

#[test]
fn an_added_column_that_repeats_a_name_is_refused() {
    // The status column would be a second 'label' column.
    let err = refused(None, &["--status-column", "label"]);
    assert!(
        err.contains("--status-column 'label'") && err.contains("--label-column"),
        "{err}"
    );
    let err = refused(None, &["--status-column", "st", "--model-column", "st"]);
    assert!(
        err.contains("--model-column 'st'") && err.contains("--status-column"),
        "{err}"
    );
    // An input column of that name: the output would have two.
    let err = refused(None, &["--model-column", "ID"]);
    assert!(
        err.contains("in.csv") && err.contains("already has a column 'id' (column 1)"),
        "{err}"
    );
}

#[test]
fn duplicate_input_columns_are_refused_unless_text_column_picks_a_single_one() {
    let two_texts = b"id,text,note,text\n1,good,x,bad\n2,fine,y,worse\n";
    let err = refused(Some(two_texts), &[]);
    assert!(
        err.contains("in.csv") && err.contains("'text' (2 and 4)"),
        "{err}"
    );
    let err = refused(Some(two_texts), &["--text-column", "text"]);
    assert!(err.contains("more than once"), "{err}");

    // A column named once is no longer ambiguous: it is labeled, the rest kept as it is.
    let fake = FakeProvider::start(FakeConfig::with_keys(&[PLANTED]));
    let sb = Sandbox::new();
    sb.write_keys(&[PLANTED]);
    let (input, output) = (sb.path("in.csv"), sb.path("out.csv"));
    std::fs::write(&input, "id,note,note,body\n1,a,b,good\n2,c,d,fine\n").unwrap();
    let out = run(&mut sb.label(&fake, &input, &output, &["--text-column", "body"]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let rows = read_rows(&output);
    assert_eq!(rows[0], ["id", "note", "note", "body", "label"]);
    assert_eq!(rows[1][4], expected_label("good"));
    assert_eq!(rows[2][4], expected_label("fine"));
}

#[test]
fn an_endless_env_or_prompt_file_is_refused_after_1_mib() {
    let err = refused(None, &["--env-file", "/dev/zero"]);
    assert!(
        err.contains("/dev/zero") && err.contains("over 1 MiB"),
        "{err}"
    );
    let err = refused(None, &["--prompt-file", "/dev/zero"]);
    assert!(
        err.contains("--prompt-file /dev/zero") && err.contains("over 1 MiB"),
        "{err}"
    );
}

/// Runs with `--input PATH` while a CSV is piped to stdin.
fn with_piped_input(path: &str) -> (Output, Sandbox) {
    let fake = FakeProvider::start(FakeConfig::with_keys(&[PLANTED]));
    let sb = Sandbox::new();
    sb.write_keys(&[PLANTED]);
    let mut cmd = sb.label(&fake, path.as_ref(), &sb.path("out.csv"), &[]);
    cmd.stdin(Stdio::piped());
    let mut child = spawn(cmd);
    let mut stdin = child.stdin.take().unwrap();
    // The reader may refuse before it reads: a closed pipe is fine.
    let _ = stdin.write_all(b"id,text\n1,good\n");
    drop(stdin);
    let out = wait_with_limit(child, Duration::from_secs(30));
    assert_eq!(fake.total_requests(), 0);
    (out, sb)
}

#[test]
fn stdin_or_a_pipe_as_input_is_refused_as_not_a_regular_file() {
    for path in ["-", "/dev/stdin"] {
        let (out, sb) = with_piped_input(path);
        let err = stderr(&out);
        assert_eq!(code(&out), 2, "{path}: {err}");
        assert!(
            err.contains(path)
                && err.contains("needs a regular file (it is read twice and resumed)"),
            "{err}"
        );
        assert!(!sb.path("out.csv").exists(), "no output for {path}");
    }
}
