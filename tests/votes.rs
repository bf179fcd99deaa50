//! `--votes`: each row asked up to N times against a fake that errs with probability p
//! (`FakeConfig::noise`), the majority kept; confidence and votes columns, review, early
//! stopping, reordered batches, and votes kept in the cache across runs.

mod common;

use std::collections::{HashMap, HashSet};

use common::fake::Noise;
use common::*;

fn noisy(p: f64, seed: u64) -> FakeConfig {
    let mut cfg = FakeConfig::with_keys(&[PLANTED, KEY2]);
    cfg.noise = Some(Noise::flat(p, seed));
    cfg
}

/// The share of output rows whose label is the fake's right one.
fn accuracy(output: &std::path::Path, texts: &[String], label_col: usize) -> f64 {
    let rows = read_rows(output)[1..].to_vec();
    assert_eq!(rows.len(), texts.len());
    let right = rows
        .iter()
        .zip(texts)
        .filter(|(r, t)| r[label_col] == expected_label(t))
        .count();
    right as f64 / texts.len() as f64
}

/// The chance that N votes elect the right label when each is right with 1 − p and
/// otherwise one of the two other labels at random: every sequence of N votes,
/// plurality, a tie to the label that reached it first. Computed here independently of
/// the tool's tally (and early stopping never changes a winner).
fn majority_accuracy(n: u32, p: f64) -> f64 {
    let mut total = 0.0;
    for seq in 0..3u32.pow(n) {
        let mut votes = Vec::new();
        let (mut s, mut prob) = (seq, 1.0);
        for _ in 0..n {
            let v = s % 3;
            s /= 3;
            prob *= if v == 0 { 1.0 - p } else { p / 2.0 };
            votes.push(v);
        }
        // (count, the vote at which the label reached it)
        let mut counts = [(0u32, 0usize); 3];
        for (i, v) in votes.iter().enumerate() {
            counts[*v as usize].0 += 1;
            counts[*v as usize].1 = i;
        }
        let best = (0..3)
            .max_by(|&a, &b| {
                counts[a]
                    .0
                    .cmp(&counts[b].0)
                    .then(counts[b].1.cmp(&counts[a].1))
            })
            .unwrap();
        if best == 0 {
            total += prob;
        }
    }
    total
}

#[test]
fn five_votes_beat_one_by_the_margin_the_majority_predicts() {
    const ROWS: usize = 600;
    let p = 0.3;
    let (fake, sb, texts, input, _) = setup(&[PLANTED, KEY2], noisy(p, 11), ROWS);
    let texts: Vec<String> = {
        let mut seen = HashSet::new();
        texts
            .into_iter()
            .filter(|t| seen.insert(t.clone()))
            .collect()
    };
    write_input(&input, &texts);
    let one = sb.path("one.csv");
    let out = run(&mut sb.label(&fake, &input, &one, &["--concurrency", "8", "--no-cache"]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let five = sb.path("five.csv");
    let args = ["--concurrency", "8", "--votes", "5", "--no-cache"];
    let out = run(&mut sb.label(&fake, &input, &five, &args));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let (a1, a5) = (accuracy(&one, &texts, 2), accuracy(&five, &texts, 2));
    let (p1, p5) = (majority_accuracy(1, p), majority_accuracy(5, p));
    eprintln!("accuracy 1 vote {a1:.3} (predicted {p1:.3}), 5 votes {a5:.3} (predicted {p5:.3})");
    // Rows are independent: ±0.05 is over 3 standard errors at 600 rows.
    assert!((a1 - p1).abs() < 0.05, "1 vote: {a1} vs {p1}");
    assert!((a5 - p5).abs() < 0.05, "5 votes: {a5} vs {p5}");
    assert!(
        a5 - a1 > (p5 - p1) - 0.06,
        "margin {} vs {}",
        a5 - a1,
        p5 - p1
    );
    assert!(
        stderr(&out).contains("votes (up to 5 a row): unanimous"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn agreeing_votes_stop_early() {
    const ROWS: usize = 40;
    let (fake, sb, texts, input, output) =
        setup(&[PLANTED], FakeConfig::with_keys(&[PLANTED]), ROWS);
    let distinct = texts.iter().collect::<HashSet<_>>().len();
    let out = run(&mut sb.label(
        &fake,
        &input,
        &output,
        &["--votes", "5", "--concurrency", "4"],
    ));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_labeled(&output, &texts);
    // Three agreeing answers of five settle a row: the last two are never asked.
    assert_eq!(fake.ok_count(), 3 * distinct);
    let out = run(&mut sb.label(&fake, &input, &sb.path("three.csv"), &["--votes", "3"]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(fake.ok_count(), 3 * distinct + 2 * distinct);
}

/// Output rows as maps from column name to value.
fn rows_by_name(path: &std::path::Path) -> Vec<HashMap<String, String>> {
    let rows = read_rows(path);
    let head = rows[0].clone();
    rows[1..]
        .iter()
        .map(|r| head.iter().cloned().zip(r.iter().cloned()).collect())
        .collect()
}

#[test]
fn vote_confidence_and_review_columns_agree_and_review_takes_exactly_the_rows_below() {
    const ROWS: usize = 200;
    let (fake, sb, texts, input, output) = setup(&[PLANTED, KEY2], noisy(0.35, 5), ROWS);
    let review = sb.path("review.csv");
    let args = [
        "--votes",
        "5",
        "--concurrency",
        "4",
        "--status-column",
        "status",
        "--confidence-column",
        "conf",
        "--votes-column",
        "votes",
        "--review-below",
        "0.7",
        "--review-output",
        review.to_str().unwrap(),
    ];
    let out = run(&mut sb.label(&fake, &input, &output, &args));
    let err = stderr(&out);
    assert_eq!(code(&out), 0, "{err}");
    let rows = rows_by_name(&output);
    assert_eq!(rows.len(), texts.len());
    let mut below = Vec::new();
    let mut saw_split = false;
    for r in &rows {
        let counts: Vec<(String, u32)> = r["votes"]
            .split('|')
            .map(|kv| {
                let (l, c) = kv.split_once(':').unwrap();
                (l.to_string(), c.parse().unwrap())
            })
            .collect();
        let cast: u32 = counts.iter().map(|(_, c)| c).sum();
        assert!((3..=5).contains(&cast), "{r:?}");
        let top = counts.iter().map(|(_, c)| *c).max().unwrap();
        assert_eq!(counts[0].0, r["label"], "the winner comes first: {r:?}");
        assert_eq!(counts[0].1, top, "{r:?}");
        let conf = format!("{:.3}", f64::from(top) / f64::from(cast));
        assert_eq!(r["conf"], conf, "{r:?}");
        saw_split |= counts.len() > 1;
        let is_below = f64::from(top) / f64::from(cast) < 0.7;
        assert_eq!(r["status"] == "review", is_below, "{r:?}");
        if is_below {
            below.push(r.clone());
        }
    }
    assert!(
        saw_split && !below.is_empty(),
        "noise 0.35 must split some rows"
    );
    let reviewed = rows_by_name(&review);
    assert_eq!(reviewed, below);
    assert!(err.contains(&format!("to review {}", below.len())), "{err}");

    // The run's record: what `usage` (and the dashboard's runs) show of its votes.
    let unanimous = rows.iter().filter(|r| !r["votes"].contains('|')).count();
    let usage = run(sb.cmd().args(["usage", "--json"]));
    assert_eq!(code(&usage), 0, "{}", stderr(&usage));
    let v: serde_json::Value = serde_json::from_slice(&usage.stdout).unwrap();
    let q = &v["vote_runs"][0]["quality"];
    assert_eq!(q["votes"], 5, "{v}");
    assert_eq!(q["voted"], rows.len(), "{q}");
    assert_eq!(q["unanimous"], unanimous, "{q}");
    assert_eq!(q["review"], below.len(), "{q}");
    let share = unanimous as f64 / rows.len() as f64;
    assert!(
        (q["agreement"].as_f64().unwrap() - share).abs() < 1e-9,
        "{q}"
    );
    assert!(
        err.contains(&format!("unanimous {unanimous} of {} rows", rows.len())),
        "{err}"
    );
    let text = stdout(&run(sb.cmd().arg("usage")));
    assert!(text.contains("runs with votes or review:"), "{text}");
    assert!(
        text.contains(&format!("to review {}", below.len())),
        "{text}"
    );
}

#[test]
fn each_vote_of_a_batch_sends_its_texts_in_another_order() {
    const ROWS: usize = 30;
    let (fake, sb, texts, input, output) =
        setup(&[PLANTED], FakeConfig::with_keys(&[PLANTED]), ROWS);
    let args = ["--votes", "3", "--batch-size", "10"];
    let out = run(&mut sb.label(&fake, &input, &output, &args));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_labeled(&output, &texts);
    let mut positions: HashMap<String, Vec<usize>> = HashMap::new();
    for req in fake.requests().iter().filter(|r| r.status == 200) {
        assert!(req.batch && req.texts.len() > 1, "{:?}", req.texts);
        for (i, t) in req.texts.iter().enumerate() {
            positions.entry(t.clone()).or_default().push(i);
        }
    }
    for (text, at) in &positions {
        assert_eq!(at.len(), 2, "two agreeing votes settle each row: {text}");
        assert_ne!(at[0], at[1], "{text} sat at the same place in both votes");
    }
}

#[test]
fn votes_are_kept_in_the_cache_by_vote_count_and_a_stopped_run_asks_only_what_is_missing() {
    const ROWS: usize = 30;
    let cfg = noisy(0.3, 3).limit(
        "org_0",
        OrgLimits {
            rpd: Some(40),
            ..OrgLimits::default()
        },
    );
    let (fake, sb, texts, input, output) = setup(&[PLANTED], cfg, ROWS);
    let distinct = texts.iter().collect::<HashSet<_>>().len();
    let args = [
        "--votes",
        "5",
        "--on-exhausted",
        "stop",
        "--votes-column",
        "votes",
    ];
    let out = run(&mut sb.label(&fake, &input, &output, &args));
    assert_eq!(code(&out), 75, "{}", stderr(&out));
    let first = fake.ok_count();
    assert!(first <= 40, "{first}");
    // Another key (the first is exhausted for the day, as the state remembers).
    sb.write_keys(&[KEY2]);
    let out = run(&mut sb.label(&fake, &input, &output, &args));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let asked = fake.ok_count();
    // The same row set with a fresh state asks as many votes as both runs together: no
    // vote answered before the stop was asked again.
    let (fresh, fsb, _, finput, foutput) = setup(&[PLANTED], noisy(0.3, 3), ROWS);
    let out = run(&mut fsb.label(&fresh, &finput, &foutput, &args[..2]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(asked >= 3 * distinct && asked <= 5 * distinct, "{asked}");
    assert_eq!(asked, fresh.ok_count(), "votes asked over a stop");

    // A second output of the same input: every row from the cache, with its votes.
    let again = sb.path("again.csv");
    let out = run(&mut sb.label(&fake, &input, &again, &args));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(fake.ok_count(), asked, "cached rows ask nothing");
    let col = |p: &std::path::Path| -> Vec<(String, String)> {
        rows_by_name(p)
            .into_iter()
            .map(|r| (r["label"].clone(), r["votes"].clone()))
            .collect()
    };
    assert_eq!(col(&again), col(&output));
    // Three votes are another question: asked anew.
    let three = sb.path("three.csv");
    let out = run(&mut sb.label(&fake, &input, &three, &["--votes", "3"]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(fake.ok_count() >= asked + 2 * distinct);
}

#[test]
fn bad_vote_flags_are_usage_errors() {
    let fake = FakeProvider::start(FakeConfig::with_keys(&[PLANTED]));
    let sb = Sandbox::new();
    sb.write_keys(&[PLANTED]);
    let (input, output) = (sb.path("in.csv"), sb.path("out.csv"));
    write_input(&input, &smsa(3));
    for args in [
        vec!["--votes", "0"],
        vec!["--votes", "99"],
        vec!["--review-below", "1.5"],
        vec!["--confidence-column", "TEXT"],
        vec!["--votes-column", "v", "--confidence-column", "v"],
        vec![
            "--review-below",
            "0.5",
            "--review-output",
            "in.csv",
            "--status-column",
            "s",
        ],
        vec!["--review-below", "0.5", "--review-output", "r.csv"],
    ] {
        let out = run(&mut sb.label(&fake, &input, &output, &args));
        assert_eq!(code(&out), 2, "{args:?}: {}", stderr(&out));
    }
    assert_eq!(fake.total_requests(), 0);
    assert!(!output.exists());
}

#[test]
fn the_dry_run_shows_what_votes_cost() {
    let fake = FakeProvider::start(FakeConfig::with_keys(&[PLANTED]));
    let sb = Sandbox::new();
    sb.write_keys(&[PLANTED]);
    let (input, output) = (sb.path("in.csv"), sb.path("out.csv"));
    let texts: Vec<String> = (0..40)
        .map(|i| format!("teks nomor {i} yang cukup panjang"))
        .collect();
    write_input(&input, &texts);
    let one = run(&mut sb.label(&fake, &input, &output, &["--dry-run"]));
    assert_eq!(code(&one), 0, "{}", stderr(&one));
    let out = run(&mut sb.label(&fake, &input, &output, &["--dry-run", "--votes", "5"]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("requests:       120 to 200 (3 to 5 a row)"),
        "{text}"
    );
    assert!(text.contains("rows per key a day:"), "{text}");
    // The time is the votes' too, not one vote's.
    assert!(
        text.lines()
            .any(|l| l.trim_start().starts_with("estimated time: ") && l.contains(" to ")),
        "{text}"
    );
    assert!(!stdout(&one).contains("votes:"), "{}", stdout(&one));
    assert_eq!(fake.total_requests(), 0);
}

/// The figures the README quotes (not run by default; minutes on a loaded machine):
/// `cargo test --test votes -- --ignored --nocapture figures`
#[test]
#[ignore]
fn figures_accuracy_with_1_3_and_5_votes_at_p_0_3() {
    let texts: Vec<String> = {
        let mut seen = HashSet::new();
        let mut all = dataset_texts("id_smsa_valid.csv");
        all.extend(dataset_texts("id_nusax_senti_train.csv"));
        all.into_iter()
            .filter(|t| seen.insert(t.clone()))
            .take(1200)
            .collect()
    };
    let keys = [PLANTED, KEY2, KEY3];
    let mut cfg = FakeConfig::with_keys(&keys);
    cfg.noise = Some(Noise::flat(0.3, 42));
    let fake = FakeProvider::start(cfg);
    let sb = Sandbox::new();
    sb.write_keys(&keys);
    let input = sb.path("in.csv");
    write_input(&input, &texts);
    for n in [1u32, 3, 5] {
        let output = sb.path(&format!("votes{n}.csv"));
        let before = fake.ok_count();
        let args = [
            "--concurrency",
            "8",
            "--no-cache",
            "--votes",
            &n.to_string(),
        ];
        let out = run(&mut sb.label(&fake, &input, &output, &args));
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        let requests = fake.ok_count() - before;
        eprintln!(
            "votes {n}: accuracy {:.3} (binomial majority predicts {:.3}) · {requests} requests for {} rows ({:.2} a row)",
            accuracy(&output, &texts, 2),
            majority_accuracy(n, 0.3),
            texts.len(),
            requests as f64 / texts.len() as f64
        );
    }
}

/// Rows, requests and tokens today over every key, from `usage --json`.
fn ledger_today(sb: &Sandbox) -> (u64, u64, u64) {
    let usage = run(sb.cmd().args(["usage", "--json"]));
    assert_eq!(code(&usage), 0, "{}", stderr(&usage));
    let v: serde_json::Value = serde_json::from_slice(&usage.stdout).unwrap();
    let mut sums = (0, 0, 0);
    for k in v["keys"].as_array().unwrap() {
        let t = &k["today"];
        sums.0 += t["rows"].as_u64().unwrap_or(0);
        sums.1 += t["requests"].as_u64().unwrap_or(0);
        sums.2 += t["tokens_in"].as_u64().unwrap_or(0) + t["tokens_out"].as_u64().unwrap_or(0);
    }
    sums
}

/// The summary's tokens per row: `tokens 1234 in / 56 out (12.3 a row)`.
fn summary_tokens_per_row(err: &str) -> f64 {
    let at = err.find(" a row)").unwrap_or_else(|| panic!("{err}"));
    let open = err[..at].rfind('(').unwrap();
    err[open + 1..at].parse().unwrap()
}

#[test]
fn with_votes_the_ledger_counts_rows_not_vote_requests() {
    const ROWS: usize = 40;
    let keys = [PLANTED, KEY2];
    let (fake, sb, texts, input, _) = setup(&keys, FakeConfig::with_keys(&keys), ROWS);
    let texts: Vec<String> = {
        let mut seen = HashSet::new();
        texts
            .into_iter()
            .filter(|t| seen.insert(t.clone()))
            .collect()
    };
    write_input(&input, &texts);
    let n = texts.len() as u64;
    let one = run(&mut sb.label(&fake, &input, &sb.path("one.csv"), &["--no-cache"]));
    assert_eq!(code(&one), 0, "{}", stderr(&one));
    let (rows1, requests1, tokens1) = ledger_today(&sb);
    assert_eq!((rows1, requests1), (n, n));

    let args = ["--votes", "3", "--concurrency", "4", "--no-cache"];
    let out = run(&mut sb.label(&fake, &input, &sb.path("three.csv"), &args));
    let err = stderr(&out);
    assert_eq!(code(&out), 0, "{err}");
    let (rows, requests, tokens) = ledger_today(&sb);
    let (rows3, requests3, tokens3) = (rows - rows1, requests - requests1, tokens - tokens1);
    // Two agreeing votes settle each row: twice the requests, the same rows.
    assert_eq!(rows3, n, "rows are the rows labeled, not the votes asked");
    assert_eq!(requests3, 2 * n);
    assert_eq!(fake.ok_count() as u64, n + 2 * n);
    let (per_row1, per_row3) = (tokens1 as f64 / n as f64, tokens3 as f64 / n as f64);
    eprintln!("tokens a row: {per_row1:.1} with one vote, {per_row3:.1} with --votes 3");
    assert!(
        (per_row3 / per_row1 - 2.0).abs() < 0.05,
        "votes cost visibly more tokens a row: {per_row3:.1} against {per_row1:.1}"
    );
    // The summary's figure is the same as the ledger's.
    assert!(
        (summary_tokens_per_row(&err) - per_row3).abs() < 0.06,
        "{err}"
    );
    assert!(
        (summary_tokens_per_row(&stderr(&one)) - per_row1).abs() < 0.06,
        "{}",
        stderr(&one)
    );
}
