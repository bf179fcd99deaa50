//! `autolabel tune` against a fake whose answers get worse further down a batch: it
//! measures that, recommends accordingly, and a second tune spends nothing.

mod common;

use common::fake::Noise;
use common::*;

fn gold_input(sb: &Sandbox, n: usize) -> std::path::PathBuf {
    let path = sb.path("gold.csv");
    let mut w = csv::Writer::from_path(&path).unwrap();
    w.write_record(["id", "text", "sentiment"]).unwrap();
    for (i, t) in smsa(n).iter().enumerate() {
        w.write_record([&i.to_string(), t, expected_label(t)])
            .unwrap();
    }
    w.flush().unwrap();
    path
}

#[test]
fn tune_sees_a_position_slope_recommends_single_texts_and_spends_nothing_twice() {
    let mut cfg = FakeConfig::with_keys(&[PLANTED]);
    // Right at position 0, wrong half the time at position 49.
    cfg.noise = Some(Noise {
        p: 0.0,
        slope: 0.01,
        seed: 9,
    });
    let fake = FakeProvider::start(cfg);
    let sb = Sandbox::new();
    sb.write_keys(&[PLANTED]);
    let input = gold_input(&sb, 300);
    let tune = |extra: &[&str]| {
        let mut c = sb.cmd();
        c.args(["tune", "--input"]).arg(&input);
        c.args([
            "--gold-column",
            "sentiment",
            "--sample",
            "150",
            "--batch-sizes",
            "1,50",
        ]);
        c.args(["--votes", "1", "--json"]).args(extra);
        c.args([
            "--",
            "--base-url",
            &fake.base_url(),
            "--delay",
            "0",
            "--concurrency",
            "4",
        ]);
        run(&mut c)
    };
    let out = tune(&[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let results = v["results"].as_array().unwrap();
    let at = |b: u64| results.iter().find(|r| r["batch_size"] == b).unwrap();
    let (one, fifty) = (at(1), at(50));
    let (a1, a50) = (
        one["accuracy"].as_f64().unwrap(),
        fifty["accuracy"].as_f64().unwrap(),
    );
    assert!(a1 > 0.99, "{one}");
    assert!(a50 < 0.85 && a50 > 0.6, "{fifty}");
    assert_eq!(v["recommended"]["batch_size"], 1, "{v}");
    assert_eq!(v["recommended"]["votes"], 1, "{v}");
    assert!(one["ci95"]["accuracy"].as_array().is_some(), "{one}");
    assert!(
        fifty["tokens_per_row"].as_f64() < one["tokens_per_row"].as_f64(),
        "{v}"
    );
    assert_eq!(fifty["cost_rank"], 1, "{v}");
    let spent = fake.ok_count();
    assert_eq!(
        spent,
        150 + 3,
        "one request a row at batch 1, three batches of 50"
    );

    // Again: every answer comes from the cache, scoped by the combination.
    let again = tune(&[]);
    assert_eq!(code(&again), 0, "{}", stderr(&again));
    assert_eq!(fake.ok_count(), spent, "a second tune spends nothing");
    let w: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(w["results"], v["results"]);
    assert!(
        stderr(&again).contains("0 to 0 requests"),
        "{}",
        stderr(&again)
    );

    // The table a person reads, with the flags to pass.
    let mut c = sb.cmd();
    c.args(["tune", "--input"]).arg(&input);
    c.args([
        "--gold-column",
        "sentiment",
        "--sample",
        "150",
        "--batch-sizes",
        "1,50",
        "--votes",
        "1",
    ]);
    c.args(["--", "--base-url", &fake.base_url(), "--delay", "0"]);
    let text = stdout(&run(&mut c));
    assert!(
        text.contains("recommended: --batch-size 1 --votes 1"),
        "{text}"
    );
}

#[test]
fn tune_refuses_a_missing_gold_column_and_bad_lists() {
    let fake = FakeProvider::start(FakeConfig::with_keys(&[PLANTED]));
    let sb = Sandbox::new();
    sb.write_keys(&[PLANTED]);
    let input = gold_input(&sb, 10);
    for args in [
        vec!["--gold-column", "gold"],
        vec!["--gold-column", "sentiment", "--votes", "0"],
        vec!["--gold-column", "sentiment", "--batch-sizes", "1,500"],
        vec!["--gold-column", "sentiment", "--tolerance", "2"],
        vec!["--gold-column", "sentiment", "--", "--votes", "3"],
    ] {
        let mut c = sb.cmd();
        c.args(["tune", "--input"]).arg(&input).args(&args);
        if !args.contains(&"--") {
            c.args(["--", "--base-url", &fake.base_url()]);
        }
        let out = run(&mut c);
        assert_eq!(code(&out), 2, "{args:?}: {}", stderr(&out));
        if args[1] == "gold" {
            assert!(stderr(&out).contains("'gold'"), "{}", stderr(&out));
        }
    }
    assert_eq!(fake.total_requests(), 0);
}

/// The table the README quotes: Groq's free-tier limits per key, a model right at the
/// first position of a batch and wrong 2 % more often each position further down.
/// `cargo test --test tune -- --ignored --nocapture figures`
#[test]
#[ignore]
fn figures_tune_table_on_a_position_slope() {
    let keys: Vec<String> = (1..=40)
        .map(|i| format!("gsk_TUNEFIGURES_{i:03}_fakekey"))
        .collect();
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    let mut cfg = FakeConfig::with_keys(&refs);
    for i in 0..keys.len() {
        let free = OrgLimits {
            rpm: Some(30),
            rpd: Some(14_400),
            tpm: Some(6_000),
            tpd: Some(500_000),
        };
        cfg = cfg.limit(&format!("org_{i}"), free);
    }
    cfg.noise = Some(Noise {
        p: 0.05,
        slope: 0.005,
        seed: 4,
    });
    let fake = FakeProvider::start(cfg);
    let sb = Sandbox::new();
    sb.write_keys(&refs);
    let input = gold_input(&sb, 1000);
    let mut c = sb.cmd();
    c.env_remove("GROQ_RPM").env_remove("GROQ_TPM");
    c.args(["tune", "--input"]).arg(&input);
    c.args(["--gold-column", "sentiment", "--sample", "200"]);
    c.args(["--batch-sizes", "1,10,25,50", "--votes", "1,3"]);
    c.args([
        "--",
        "--base-url",
        &fake.base_url(),
        "--delay",
        "0",
        "--concurrency",
        "8",
    ]);
    let out = run_with_limit(&mut c, std::time::Duration::from_secs(900));
    eprintln!("{}\n{}", stderr(&out), stdout(&out));
    assert_eq!(code(&out), 0);
}
