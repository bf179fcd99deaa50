//! `--confidence logprobs`: a row's confidence from its answer's token probabilities
//! (OpenAI and Gemini), never asked of Groq, and a server that refuses them with 400
//! costs no row. Against fakes that serve OpenAI-shaped logprobs or refuse them.

mod common;

use std::path::Path;

use common::fake::logprobs::{expected_confidence, REFUSAL};
use common::fake::Logprobs;
use common::*;

const OPENAI_KEY: &str = "sk-FAKEKEY_openai_0001_secretpart_k7";

/// A fake answering with `logprobs`, and a sandbox whose env file holds an OpenAI key
/// (and Groq's planted key) with test-speed limits.
fn openai(logprobs: Logprobs, rows: usize) -> (FakeProvider, Sandbox, Vec<String>) {
    let mut cfg = FakeConfig::with_keys(&[OPENAI_KEY, PLANTED]);
    cfg.logprobs = logprobs;
    let fake = FakeProvider::start(cfg);
    let sb = Sandbox::new();
    sb.write_keys(&[PLANTED]);
    sb.add_env_lines(&[
        &format!("OPENAI_API_KEY={OPENAI_KEY}"),
        "OPENAI_RPM=600000",
        "OPENAI_RPD=1000000",
        "OPENAI_TPM=100000000",
    ]);
    let texts = smsa(rows);
    write_input(&sb.path("in.csv"), &texts);
    (fake, sb, texts)
}

/// The output's cells of column `name`, in row order.
fn column(output: &Path, name: &str) -> Vec<String> {
    let rows = read_rows(output);
    let i = rows[0].iter().position(|h| h == name).expect(name);
    rows[1..].iter().map(|r| r[i].clone()).collect()
}

/// Every row has the fake's label for its text.
fn assert_right_labels(output: &Path, texts: &[String]) {
    let labels = column(output, "label");
    assert_eq!(labels.len(), texts.len());
    for (l, t) in labels.iter().zip(texts) {
        assert_eq!(l, expected_label(t), "{t}");
    }
}

#[test]
fn the_confidence_column_is_the_labels_share_of_the_first_tokens_probability() {
    let (fake, sb, texts) = openai(Logprobs::Serve, 40);
    let (input, output) = (sb.path("in.csv"), sb.path("out.csv"));
    let flags = [
        "--provider",
        "openai",
        "--confidence",
        "logprobs",
        "--confidence-column",
        "conf",
        "--status-column",
        "status",
        "--review-below",
        "0.8",
    ];
    let out = run(&mut sb.label(&fake, &input, &output, &flags));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_right_labels(&output, &texts);
    let (conf, status) = (column(&output, "conf"), column(&output, "status"));
    let mut reviewed = 0;
    for ((text, c), s) in texts.iter().zip(&conf).zip(&status) {
        let want = expected_confidence(text);
        assert_eq!(c, &format!("{want:.3}"), "{text}");
        // --review-below takes exactly the rows under it.
        assert_eq!(s == "review", want < 0.8, "{text}: {c} {s}");
        reviewed += usize::from(s == "review");
    }
    assert!(reviewed > 0 && reviewed < texts.len(), "{reviewed}");
    let summary = format!("confidence from logprobs: 40 of 40 rows · to review {reviewed}");
    assert!(stderr(&out).contains(&summary), "{}", stderr(&out));
    for r in fake.requests() {
        assert_eq!(r.body["logprobs"], true, "{}", r.body);
        assert_eq!(r.body["top_logprobs"], 5);
    }

    // A second output of the same texts is served from the cache, confidence and all.
    let again = sb.path("again.csv");
    let before = fake.total_requests();
    let out = run(&mut sb.label(&fake, &input, &again, &flags));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(fake.total_requests(), before, "asked again");
    assert_eq!(column(&again, "conf"), conf);
}

#[test]
fn groq_is_never_sent_logprobs_and_its_rows_have_no_confidence() {
    let (fake, sb, texts) = openai(Logprobs::Refuse, 20);
    let (input, output) = (sb.path("in.csv"), sb.path("out.csv"));
    let out = run(&mut sb.label(
        &fake,
        &input,
        &output,
        &[
            "--confidence",
            "logprobs",
            "--confidence-column",
            "conf",
            "--status-column",
            "status",
            "--review-below",
            "0.9",
            "--no-cache",
        ],
    ));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_right_labels(&output, &texts);
    let requests = fake.requests();
    assert!(requests.len() >= texts.len());
    for r in &requests {
        assert!(r.body.get("logprobs").is_none(), "{}", r.body);
        assert!(r.body.get("top_logprobs").is_none(), "{}", r.body);
    }
    assert_eq!(fake.count_status(400), 0);
    // No confidence measured, so none shown and none sent to review.
    assert!(column(&output, "conf").iter().all(String::is_empty));
    assert!(column(&output, "status").iter().all(|s| s == "model"));
    let err = stderr(&out);
    assert_eq!(
        err.matches("groq is not known to return logprobs").count(),
        1,
        "{err}"
    );
    assert!(err.contains("confidence from logprobs: 0 of 20 rows · to review 0"));
}

#[test]
fn a_server_that_refuses_logprobs_still_gets_every_row_labeled() {
    let (fake, sb, texts) = openai(Logprobs::Refuse, 60);
    let (input, output) = (sb.path("in.csv"), sb.path("out.csv"));
    let out = run(&mut sb.label(
        &fake,
        &input,
        &output,
        &[
            "--provider",
            "openai",
            "--confidence",
            "logprobs",
            "--confidence-column",
            "conf",
            "--status-column",
            "status",
            "--concurrency",
            "4",
            "--no-cache",
        ],
    ));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_right_labels(&output, &texts);
    assert!(column(&output, "status").iter().all(|s| s == "model"));
    assert!(column(&output, "conf").iter().all(String::is_empty));
    // Only the requests already in flight when the first refusal came asked for them.
    let refused = fake.count_status(400);
    assert!((1..=4).contains(&refused), "{refused} refusals");
    let asked = fake
        .requests()
        .iter()
        .filter(|r| r.body.get("logprobs").is_some())
        .count();
    assert_eq!(asked, refused);
    assert_eq!(fake.count_status(200), texts.len());
    let err = stderr(&out);
    assert_eq!(err.matches(REFUSAL).count(), 1, "warned once: {err}");
    assert!(
        err.contains("without them for the rest of the run"),
        "{err}"
    );
    assert!(
        err.contains("confidence from logprobs: 0 of 60 rows"),
        "{err}"
    );
}

#[test]
fn logprobs_with_votes_batches_or_nowhere_to_show_them_is_exit_2() {
    let (fake, sb, _) = openai(Logprobs::Serve, 5);
    let (input, output) = (sb.path("in.csv"), sb.path("out.csv"));
    let base = ["--provider", "openai", "--confidence", "logprobs"];
    for (extra, says) in [
        (
            &["--confidence-column", "c", "--votes", "3"][..],
            "drop --votes 3",
        ),
        (
            &["--confidence-column", "c", "--batch-size", "10"][..],
            "--batch-size 1",
        ),
        (
            &["--confidence-column", "c", "--batch-size", "auto"][..],
            "--batch-size 1",
        ),
        (&[][..], "--confidence-column or --review-below"),
    ] {
        let args: Vec<&str> = base.iter().chain(extra).copied().collect();
        let out = run(&mut sb.label(&fake, &input, &output, &args));
        assert_eq!(code(&out), 2, "{extra:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains("--confidence logprobs") && err.contains(says),
            "{extra:?}: {err}"
        );
        assert!(!output.exists());
    }
    let out = run(&mut sb.label(&fake, &input, &output, &["--confidence", "odds"]));
    assert_eq!(code(&out), 2);
    assert_eq!(fake.total_requests(), 0);
}
