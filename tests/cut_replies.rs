//! Chatty models: a reply longer than the tight `max_tokens` comes back cut
//! (`finish_reason: "length"`). A cut reply never costs a row: the row is asked again
//! with a generous cap, the run's cap for the model is raised once cuts repeat, and cut
//! replies are counted in the summary and the ledger.

mod common;

use common::fake::{chatty, RecordedRequest};
use common::*;

/// Tokens per labeled row today, from `usage --json`.
fn tokens_per_row(sb: &Sandbox) -> (f64, serde_json::Value) {
    let usage = run(sb.cmd().args(["usage", "--json"]));
    assert_eq!(code(&usage), 0, "{}", stderr(&usage));
    let v: serde_json::Value = serde_json::from_slice(&usage.stdout).unwrap();
    let today = v["keys"][0]["today"].clone();
    (today["tokens_per_row"].as_f64().unwrap(), today)
}

fn chatty_fake(cut: bool) -> FakeConfig {
    let mut cfg = FakeConfig::with_keys(&[PLANTED]);
    cfg.style = ReplyStyle::Chatty;
    cfg.cut_at_max_tokens = cut;
    cfg
}

#[test]
fn the_fakes_chatty_replies_are_5_to_20_tokens() {
    for label in ["positif", "negatif", "netral"] {
        for v in 0..7 {
            let n = chatty::tokens(&chatty::single(label, v));
            assert!((5..=20).contains(&n), "{label} {v}: {n}");
        }
    }
}

#[test]
fn cut_chatty_replies_never_cost_a_row_and_the_cap_is_learned() {
    const ROWS: usize = 100;
    // What a row costs when no reply is ever cut (the same prose, uncut).
    let (clean_fake, clean_sb, texts, input, output) = setup(&[PLANTED], chatty_fake(false), ROWS);
    let clean = run(&mut clean_sb.label(&clean_fake, &input, &output, &["--concurrency", "2"]));
    assert_eq!(code(&clean), 0, "{}", stderr(&clean));
    assert_eq!(clean_fake.cut_replies(), 0);
    let (clean_per_row, _) = tokens_per_row(&clean_sb);

    let (fake, sb, _, input, output) = setup(&[PLANTED], chatty_fake(true), ROWS);
    let out = run(&mut sb.label(
        &fake,
        &input,
        &output,
        &["--concurrency", "2", "--status-column", "status"],
    ));
    let err = stderr(&out);
    assert_eq!(code(&out), 0, "{err}");
    let rows = read_rows(&output)[1..].to_vec();
    assert_eq!(rows.len(), texts.len());
    for (row, text) in rows.iter().zip(&texts) {
        assert_eq!(row[2], expected_label(text), "{text}\n{err}");
        assert_eq!(row[3], "model", "{err}");
    }
    // Only the first replies are cut: the run's cap is raised once cuts repeat.
    let cut = fake.cut_replies();
    assert!((2..=6).contains(&cut), "{cut} replies cut\n{err}");
    assert!(fake.requests().len() <= ROWS + cut, "{err}");
    assert!(
        err.contains(&format!("{cut} replies cut at max_tokens")),
        "the summary counts cut replies: {err}"
    );
    let (per_row, today) = tokens_per_row(&sb);
    eprintln!(
        "{cut} replies cut, {} requests for {ROWS} rows; {per_row:.1} tokens a row against {clean_per_row:.1} uncut",
        fake.requests().len()
    );
    assert_eq!(
        today["cut_replies"], cut,
        "the ledger counts cut replies: {today:#}"
    );
    assert!(
        per_row <= clean_per_row * 1.10,
        "{per_row:.1} tokens a row against {clean_per_row:.1} with no reply cut"
    );
    sb.assert_no_leak(&[&out], &[PLANTED]);
}

/// Distinct texts (a repeated text is asked once, which would blur the request counts).
fn distinct(texts: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    texts
        .into_iter()
        .filter(|t| seen.insert(t.clone()))
        .collect()
}

#[test]
fn cut_batch_replies_with_a_reason_for_each_label_never_cost_a_row() {
    const ROWS: usize = 100;
    const BATCH: usize = 10;
    let (fake, sb, texts, input, output) = setup(&[PLANTED], chatty_fake(true), ROWS);
    let texts = distinct(texts);
    write_input(&input, &texts);
    let args = [
        "--batch-size",
        "10",
        "--concurrency",
        "2",
        "--status-column",
        "status",
    ];
    let out = run(&mut sb.label(&fake, &input, &output, &args));
    let err = stderr(&out);
    assert_eq!(code(&out), 0, "{err}");
    let rows = read_rows(&output)[1..].to_vec();
    assert_eq!(rows.len(), texts.len());
    for (row, text) in rows.iter().zip(&texts) {
        assert_eq!(row[2], expected_label(text), "{text}\n{err}");
        assert_eq!(row[3], "model", "no fallback: {err}");
    }
    // Each cut batch is asked again whole, with room for a reason beside every label: no
    // batch is split, and only the cut replies cost a request more.
    let cut = fake.cut_replies();
    let batches = texts.len().div_ceil(BATCH);
    assert!(cut >= 2, "the tight cap cuts these replies: {cut}\n{err}");
    assert!(
        fake.requests().len() <= batches + cut,
        "{} requests for {batches} batches, {cut} cut\n{err}",
        fake.requests().len()
    );
    assert!(
        cut < batches,
        "the run's cap is learned: {cut} of {batches} batches cut"
    );
    sb.assert_no_leak(&[&out], &[PLANTED]);
}

#[test]
fn the_next_run_starts_with_the_cap_a_chatty_model_needs() {
    const ROWS: usize = 40;
    let (fake, sb, texts, input, output) = setup(&[PLANTED], chatty_fake(true), ROWS);
    let texts = distinct(texts);
    write_input(&input, &texts);
    let first = run(&mut sb.label(&fake, &input, &output, &["--concurrency", "2"]));
    assert_eq!(code(&first), 0, "{}", stderr(&first));
    let cut = fake.cut_replies();
    assert!(
        cut >= 2,
        "the first run learns the cap from cut replies: {cut}"
    );
    let tight = |r: &RecordedRequest| r.body["max_tokens"].as_u64().unwrap() < 10;
    assert!(fake.requests().iter().any(tight), "first tries start tight");

    // A second run on the same state (again every text: --no-cache).
    let before = fake.requests().len();
    let second = run(&mut sb.label(
        &fake,
        &input,
        &sb.path("again.csv"),
        &["--concurrency", "2", "--no-cache", "-v"],
    ));
    let err = stderr(&second);
    assert_eq!(code(&second), 0, "{err}");
    let asked = &fake.requests()[before..];
    assert_eq!(asked.len(), texts.len(), "one request a row: {err}");
    assert!(
        !asked.iter().any(tight),
        "no tight first try on a model known to be chatty: {:?}",
        asked
            .iter()
            .map(|r| r.body["max_tokens"].clone())
            .collect::<Vec<_>>()
    );
    assert_eq!(fake.cut_replies(), cut, "nothing cut in the second run");
    assert!(err.contains("known to wrap its labels in prose"), "{err}");
    assert_labeled(&sb.path("again.csv"), &texts);
}
