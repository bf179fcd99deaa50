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
