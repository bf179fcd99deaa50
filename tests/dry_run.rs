//! `--dry-run` before any key: it assumes the keys to come (`--keys N`, default 1), says
//! so, and prints the same plan and budget as with that many real keys. Through the real
//! binary; nothing is sent.

mod common;

use common::*;

/// The plan and budget lines of a dry run: everything but the line saying keys were
/// assumed.
fn plan(out: &str) -> Vec<String> {
    out.lines()
        .filter(|l| !l.trim_start().starts_with("assumed:"))
        .map(str::to_string)
        .collect()
}

#[test]
fn without_keys_it_assumes_one_says_so_and_prints_the_budget_of_one_key() {
    let fake = FakeProvider::start(FakeConfig::with_keys(&[PLANTED, KEY2, KEY3]));
    let sb = Sandbox::new();
    let (input, output) = (sb.path("in.csv"), sb.path("out.csv"));
    write_input(&input, &smsa(40));
    assert!(!sb.env_file().exists());

    let assumed = run(&mut sb.label(&fake, &input, &output, &["--dry-run"]));
    let out = stdout(&assumed);
    assert_eq!(code(&assumed), 0, "{}", stderr(&assumed));
    let said = out
        .lines()
        .find(|l| l.trim_start().starts_with("assumed:"))
        .unwrap_or_else(|| panic!("it says keys were assumed:\n{out}"));
    assert!(
        said.contains("1 key ") && said.contains("no groq key is configured yet"),
        "{said}"
    );
    assert!(
        said.contains(&sb.env_file().display().to_string()),
        "{said}"
    );
    assert!(said.contains("--keys N"), "{said}");
    assert!(out.contains("days for 40 rows with 1 key\n"), "{out}");

    // Three to come: the budget of three keys.
    let three = run(&mut sb.label(&fake, &input, &output, &["--dry-run", "--keys", "3"]));
    let out3 = stdout(&three);
    assert_eq!(code(&three), 0, "{}", stderr(&three));
    assert!(out3.contains("3 keys — no groq key"), "{out3}");

    // The same plan as with real keys, in a state that has seen none of them.
    let fresh = Sandbox::new();
    fresh.write_keys(&[PLANTED]);
    let one = run(&mut fresh.label(&fake, &input, &output, &["--dry-run"]));
    assert_eq!(code(&one), 0, "{}", stderr(&one));
    assert!(!stdout(&one).contains("assumed:"), "{}", stdout(&one));
    let same = |a: &str, b: &str| {
        assert_eq!(
            plan(a)
                .join("\n")
                .replace(&input.display().to_string(), "IN"),
            plan(b)
                .join("\n")
                .replace(&input.display().to_string(), "IN")
        )
    };
    same(&out, &stdout(&one));
    let fresh3 = Sandbox::new();
    fresh3.write_keys(&[PLANTED, KEY2, KEY3]);
    let real3 = run(&mut fresh3.label(&fake, &input, &output, &["--dry-run"]));
    same(&out3, &stdout(&real3));

    assert_eq!(fake.total_requests(), 0, "a dry run sends nothing");
    assert!(!output.exists(), "and writes no output");
    sb.assert_no_leak(&[&one, &real3], &[PLANTED, KEY2, KEY3]);
}

#[test]
fn keys_are_still_needed_to_label_and_keys_only_goes_with_a_dry_run() {
    let fake = FakeProvider::start(FakeConfig::with_keys(&[PLANTED]));
    let sb = Sandbox::new();
    let (input, output) = (sb.path("in.csv"), sb.path("out.csv"));
    write_input(&input, &smsa(3));
    let r = run(&mut sb.label(&fake, &input, &output, &[]));
    assert_eq!(code(&r), 2, "{}", stderr(&r));
    assert!(
        stderr(&r).contains("--dry-run estimates without keys"),
        "{}",
        stderr(&r)
    );
    let r = run(&mut sb.label(&fake, &input, &output, &["--keys", "3"]));
    assert_eq!(code(&r), 2, "{}", stderr(&r));
    assert!(stderr(&r).contains("--dry-run"), "{}", stderr(&r));
    assert_eq!(fake.total_requests(), 0);
    assert!(!output.exists());
}

#[test]
fn in_a_pool_only_the_provider_without_keys_is_assumed() {
    let fake = FakeProvider::start(FakeConfig::with_keys(&[PLANTED, KEY2]));
    let sb = Sandbox::new();
    sb.write_keys(&[PLANTED, KEY2]);
    let (input, output) = (sb.path("in.csv"), sb.path("out.csv"));
    write_input(&input, &smsa(10));
    let r = run(sb
        .cmd()
        .arg("--input")
        .arg(&input)
        .arg("--output")
        .arg(&output)
        .args(["--provider", "groq,gemini", "--dry-run", "--keys", "2"]));
    let out = stdout(&r);
    assert_eq!(code(&r), 0, "{}", stderr(&r));
    let assumed: Vec<&str> = out
        .lines()
        .filter(|l| l.trim_start().starts_with("assumed:"))
        .collect();
    assert_eq!(assumed.len(), 1, "{out}");
    assert!(assumed[0].contains("2 keys — no gemini key"), "{out}");
    assert_eq!(fake.total_requests(), 0);
}
