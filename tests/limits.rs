//! Limits the provider states win over assumed defaults, a limit that passes never gives
//! a row the fallback label, and nothing a provider or a user sends makes the tool panic.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::*;

fn no_panic(out: &std::process::Output) {
    let err = stderr(out);
    assert_ne!(code(out), 101, "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn limits_stated_in_headers_replace_the_free_tier_default_and_are_remembered() {
    // The org states (and enforces) 10,000,000 tokens a minute; the free-tier default the
    // tool assumes is 6,000, which would space 40 requests of ~90 tokens over ~40 s.
    let limits = OrgLimits {
        tpm: Some(10_000_000),
        ..Default::default()
    };
    let (fake, sb, texts, input, output) = setup(
        &[PLANTED],
        FakeConfig::single_org(&[PLANTED], "org_a", limits),
        40,
    );
    let out = run(&mut sb.label_as_typed(&fake, &input, &output, &["--rpm", "6000", "-v"]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_labeled(&output, &texts);
    let err = stderr(&out);
    assert!(
        err.contains("tpm = 6000 from the groq free-tier default"),
        "{err}"
    );
    assert!(
        err.contains("tpm = 10000000 from x-ratelimit-limit-tokens (was tpm = 6000 from the groq free-tier default)"),
        "{err}"
    );
    assert_eq!(fake.count_status(429), 0);
    let reqs = fake.requests();
    let span = reqs.last().unwrap().at - reqs[0].at;
    assert!(
        span < Duration::from_secs(15),
        "paced to the default: {span:?}"
    );

    // The next run starts at the stated limit, and usage and --dry-run show it.
    let out2 = run(&mut sb.label_as_typed(&fake, &input, &sb.path("b.csv"), &["-v", "--dry-run"]));
    assert_eq!(code(&out2), 0, "{}", stderr(&out2));
    assert!(
        stderr(&out2)
            .contains("tpm = 10000000 from x-ratelimit-limit-tokens (stated to an earlier run)"),
        "{}",
        stderr(&out2)
    );
    let usage = run(sb.cmd().args(["usage", "--json"]));
    let v: serde_json::Value = serde_json::from_slice(&usage.stdout).unwrap();
    assert_eq!(v["limits"]["tpm"], 10_000_000);
    sb.assert_no_leak(&[&out, &out2, &usage], &[PLANTED]);
}

#[test]
fn a_lower_daily_limit_in_the_headers_stops_the_key_before_any_429() {
    // The org allows 5 requests a day and says so from the first reply.
    let limits = OrgLimits {
        rpd: Some(5),
        ..Default::default()
    };
    let (fake, sb, _texts, input, output) = setup(
        &[PLANTED],
        FakeConfig::single_org(&[PLANTED], "org_a", limits),
        9,
    );
    let out = run(&mut sb.label_as_typed(&fake, &input, &output, &["--status-column", "status"]));
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert_eq!(fake.total_requests(), 5);
    assert_eq!(
        fake.count_status(429),
        0,
        "stopped before the provider refused"
    );
    let rows = read_rows(&output);
    let statuses: Vec<&str> = rows[1..].iter().map(|r| r[3].as_str()).collect();
    assert_eq!(
        statuses,
        [
            "model", "model", "model", "model", "model", "fallback", "fallback", "fallback",
            "fallback"
        ]
    );
}

#[test]
fn one_key_and_a_passing_per_minute_429_labels_every_row_with_the_model() {
    // The default set-up of many users: one free key, default flags.
    let (fake, sb, texts, input, output) = setup(&[PLANTED], FakeConfig::with_keys(&[PLANTED]), 4);
    fake.push_faults([Fault::RateLimitMinute {
        retry_after_secs: 0.5,
    }]);
    let out = run(&mut sb.label(&fake, &input, &output, &["--status-column", "status"]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let rows = read_rows(&output);
    for (row, text) in rows[1..].iter().zip(&texts) {
        assert_eq!(row[2], expected_label(text));
        assert_eq!(row[3], "model");
    }
    assert_eq!(fake.count_status(429), 1);
}

#[test]
fn garbled_retry_after_values_never_panic() {
    // Negative, NaN, empty-ish and garbage waits are ignored: the key cools for the
    // back-off and the row is labeled.
    for value in ["-1", "NaN", "soon", "1e400", "2m-3s"] {
        let (fake, sb, texts, input, output) =
            setup(&[PLANTED], FakeConfig::with_keys(&[PLANTED]), 3);
        fake.push_faults([Fault::RateLimitRaw {
            retry_after: value.to_string(),
        }]);
        let out = run(&mut sb.label(&fake, &input, &output, &[]));
        no_panic(&out);
        assert_eq!(code(&out), 0, "retry-after {value}: {}", stderr(&out));
        assert_labeled(&output, &texts);
    }
}

#[test]
fn a_huge_retry_after_is_exhaustion_decided_by_on_exhausted() {
    let huge = || Fault::RateLimitRaw {
        retry_after: "1e20".to_string(),
    };
    // One key: the rows left get the fallback label (exit 3), or the run stops (exit 75).
    for (flag, expected) in [("fallback", 3), ("stop", 75)] {
        let (fake, sb, _texts, input, output) =
            setup(&[PLANTED], FakeConfig::with_keys(&[PLANTED]), 3);
        fake.push_faults([huge()]);
        let out = run(&mut sb.label(&fake, &input, &output, &["--on-exhausted", flag]));
        no_panic(&out);
        assert_eq!(code(&out), expected, "{}", stderr(&out));
        assert_eq!(fake.total_requests(), 1);
        assert!(stderr(&out).contains("-> exhausted"), "{}", stderr(&out));
    }
    // Two keys: the other one labels every row.
    let (fake, sb, texts, input, output) =
        setup(&[PLANTED, KEY2], FakeConfig::with_keys(&[PLANTED, KEY2]), 4);
    fake.push_faults([huge()]);
    let out = run(&mut sb.label(&fake, &input, &output, &[]));
    no_panic(&out);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_labeled(&output, &texts);
}

#[test]
fn huge_or_non_finite_flags_and_limits_are_refused_with_exit_2() {
    let (fake, sb, _texts, input, output) = setup(&[PLANTED], FakeConfig::with_keys(&[PLANTED]), 2);
    let cases: &[(&[&str], &str)] = &[
        (&["--delay", "1e20"], "--delay"),
        (&["--delay", "NaN"], "--delay"),
        (&["--timeout", "1e20"], "--timeout"),
        (&["--timeout", "0"], "--timeout"),
        (&["--backoff", "1e20"], "--backoff"),
        (&["--backoff", "-inf"], "--backoff"),
        (&["--progress-every", "inf"], "--progress-every"),
        (&["--max-retries", "1000000"], "--max-retries"),
        (&["--rpm", "0"], "--rpm"),
        (&["--tpm", "99999999999999999999999"], "--tpm"),
        (&["--price-in", "NaN"], "price"),
    ];
    for (args, names) in cases {
        let out = run(&mut sb.label(&fake, &input, &output, args));
        no_panic(&out);
        assert_eq!(code(&out), 2, "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(names), "{args:?}: {}", stderr(&out));
    }
    let out = run(sb.cmd().args(["usage", "--days", "99999999"]));
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    // A limit in the env file that is no number names the variable.
    std::fs::write(
        sb.env_file(),
        format!("GROQ_API_KEY={PLANTED}\nGROQ_RPD=lots\n"),
    )
    .unwrap();
    let out = run(&mut sb.label(&fake, &input, &output, &[]));
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("GROQ_RPD=lots"), "{}", stderr(&out));
    assert_eq!(fake.total_requests(), 0);
    assert!(!output.exists(), "a refused run writes nothing");
}

#[test]
fn a_closed_stdout_ends_quietly() {
    let (_fake, sb, _texts, _input, _output) =
        setup(&[PLANTED], FakeConfig::with_keys(&[PLANTED]), 1);
    for args in [&["usage", "--json"][..], &["usage"][..]] {
        let mut child = sb
            .cmd()
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Close the reading end before the report is written, like `| head -c 0`.
        drop(child.stdout.take());
        let out = wait_with_limit(child, Duration::from_secs(60));
        no_panic(&out);
        assert_eq!(code(&out), 0, "{args:?}: {}", stderr(&out));
        assert_eq!(stderr(&out), "", "{args:?}");
    }
}
