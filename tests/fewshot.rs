//! Few-shot examples through the real binary: they reach the prompt, balanced across
//! labels or the lexically nearest; they count in the dry run's tokens; bad examples are
//! exit 2; an example that is also an input row is warned about (refused by `eval`).

mod common;

use common::*;
use serde_json::Value;

/// Four examples of each default label, in file order p, n, z, p, n, z, …
fn write_examples(sb: &Sandbox) -> std::path::PathBuf {
    let path = sb.path("examples.csv");
    let mut body = String::from("text,label\n");
    for i in 1..=4 {
        body.push_str(&format!("makanan enak sekali nomor {i},positif\n"));
        body.push_str(&format!("pelayanan lambat dan kasar nomor {i},negatif\n"));
        body.push_str(&format!("cuaca hari ini biasa nomor {i},netral\n"));
    }
    std::fs::write(&path, body).unwrap();
    path
}

/// The `[text, label]` pairs of a request's system message.
fn examples_of(body: &Value) -> Vec<(String, String)> {
    let system = body["messages"][0]["content"].as_str().unwrap();
    let json = system
        .split(" Examples: ")
        .nth(1)
        .expect("examples in the system message");
    let pairs: Vec<[String; 2]> = serde_json::from_str(json).unwrap();
    pairs.into_iter().map(|[t, l]| (t, l)).collect()
}

#[test]
fn balanced_examples_reach_every_request_the_same_for_each_label() {
    let (fake, sb, texts, input, output) = setup(&[PLANTED], FakeConfig::with_keys(&[PLANTED]), 5);
    let examples = write_examples(&sb);
    let out = run(&mut sb.label(
        &fake,
        &input,
        &output,
        &["--examples", examples.to_str().unwrap()],
    ));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_labeled(&output, &texts);
    let reqs = fake.requests();
    assert_eq!(reqs.len(), 5);
    let first = examples_of(&reqs[0].body);
    assert_eq!(first.len(), 6, "--shots defaults to 6: {first:?}");
    let labels: Vec<&str> = first.iter().map(|(_, l)| l.as_str()).collect();
    assert_eq!(
        labels,
        ["positif", "negatif", "netral", "positif", "negatif", "netral"]
    );
    for r in &reqs {
        assert_eq!(examples_of(&r.body), first, "fixed for the run");
        // The text itself is still the whole user message.
        assert_eq!(
            r.body["messages"][1]["content"].as_str().unwrap(),
            r.texts[0]
        );
    }
    // In a batch too, with --shots 3: one of each label.
    let out = run(&mut sb.label(
        &fake,
        &input,
        &sb.path("out2.csv"),
        &[
            "--examples",
            examples.to_str().unwrap(),
            "--shots",
            "3",
            "--batch-size",
            "5",
            "--no-cache",
        ],
    ));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let last = fake.requests().pop().unwrap();
    assert!(last.batch);
    let labels: Vec<String> = examples_of(&last.body)
        .into_iter()
        .map(|(_, l)| l)
        .collect();
    assert_eq!(labels, ["positif", "negatif", "netral"]);
}

#[test]
fn similar_selection_picks_the_lexically_nearest_examples() {
    let fake = FakeProvider::start(FakeConfig::with_keys(&[PLANTED]));
    let sb = Sandbox::new();
    sb.write_keys(&[PLANTED]);
    let examples = sb.path("examples.csv");
    std::fs::write(
        &examples,
        "text,label\n\
         harga tiket pesawat murah,positif\n\
         kamar hotel bersih dan wangi,positif\n\
         kamar hotel kotor dan bau,negatif\n\
         pesawat terlambat tiga jam,negatif\n\
         jadwal kereta hari senin,netral\n\
         hotel dekat stasiun kereta,netral\n",
    )
    .unwrap();
    let input = sb.path("in.csv");
    write_input(&input, &["kamar hotel bau, kotor sekali".to_string()]);
    let args = [
        "--examples",
        examples.to_str().unwrap(),
        "--shot-selection",
        "similar",
        "--shots",
        "3",
    ];
    let out = run(&mut sb.label(&fake, &input, &sb.path("out.csv"), &args));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let chosen = examples_of(&fake.requests()[0].body);
    let texts: Vec<&str> = chosen.iter().map(|(t, _)| t.as_str()).collect();
    // The nearest of all, then the nearest of each other label.
    assert_eq!(
        texts,
        [
            "kamar hotel kotor dan bau",
            "kamar hotel bersih dan wangi",
            "hotel dekat stasiun kereta"
        ]
    );
}

#[test]
fn examples_count_in_the_dry_runs_tokens_and_it_says_so() {
    let sb = Sandbox::new();
    let examples = write_examples(&sb);
    let input = sb.path("in.csv");
    write_input(&input, &smsa(50));
    let tokens = |extra: &[&str]| -> f64 {
        let out = run(sb
            .cmd()
            .args([
                "--input",
                input.to_str().unwrap(),
                "--output",
                "o.csv",
                "--dry-run",
            ])
            .args(extra));
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        let text = stdout(&out);
        let line = text
            .lines()
            .find(|l| l.contains("batch size 1:"))
            .unwrap()
            .to_string();
        line.split(':')
            .nth(1)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let without = tokens(&[]);
    let with = tokens(&["--examples", examples.to_str().unwrap()]);
    // Six examples of about 30 characters and their labels: over 50 tokens a request.
    assert!(with - without > 50.0, "{without} → {with}");

    // The dry run says the examples are in use, and what they add.
    let said = |extra: &[&str]| -> String {
        let out = run(sb
            .cmd()
            .args([
                "--input",
                input.to_str().unwrap(),
                "--output",
                "o.csv",
                "--dry-run",
                "--examples",
                examples.to_str().unwrap(),
            ])
            .args(extra));
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        let text = stdout(&out);
        text.lines()
            .find(|l| l.trim_start().starts_with("examples:"))
            .unwrap_or_else(|| panic!("no examples line: {text}"))
            .trim()
            .to_string()
    };
    let line = said(&[]);
    let added = (with - without).round();
    assert_eq!(
        line,
        format!(
            "examples:         6 per request (balanced) from {}, +{added} tokens a request",
            examples.display()
        )
    );
    let line = said(&["--shots", "3", "--shot-selection", "similar"]);
    assert!(
        line.starts_with("examples:         3 per request (similar, "),
        "{line}"
    );
    assert!(line.contains(", about +"), "{line}");
}

#[test]
fn bad_examples_are_exit_2_and_an_example_among_the_rows_is_named() {
    let (fake, sb, texts, input, output) = setup(&[PLANTED], FakeConfig::with_keys(&[PLANTED]), 3);
    let bad = sb.path("bad.csv");
    for (content, want) in [
        ("text,label\n", "has no examples"),
        ("text,label\nbagus,sarkas\n", "'sarkas'"),
    ] {
        std::fs::write(&bad, content).unwrap();
        let out = run(&mut sb.label(
            &fake,
            &input,
            &output,
            &["--examples", bad.to_str().unwrap()],
        ));
        assert_eq!(code(&out), 2, "{}", stderr(&out));
        assert!(
            stderr(&out).contains("bad.csv") && stderr(&out).contains(want),
            "{}",
            stderr(&out)
        );
    }
    assert_eq!(fake.requests().len(), 0, "nothing sent");

    // Row 2's text is an example: a run warns and labels it.
    let examples = sb.path("examples.csv");
    std::fs::write(
        &examples,
        format!("text,label\n\"{}\",positif\nlain,negatif\n", texts[1]),
    )
    .unwrap();
    let out = run(&mut sb.label(
        &fake,
        &input,
        &output,
        &["--examples", examples.to_str().unwrap()],
    ));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("warning") && stderr(&out).contains("row 2"),
        "{}",
        stderr(&out)
    );
    assert_labeled(&output, &texts);

    // `eval` refuses it, naming the row.
    let labeled = std::fs::read_to_string(&output).unwrap();
    let mut gold = String::new();
    for (i, line) in labeled.lines().enumerate() {
        gold.push_str(line);
        gold.push_str(if i == 0 { ",gold\n" } else { ",positif\n" });
    }
    std::fs::write(sb.path("gold.csv"), gold).unwrap();
    let out = run(sb.cmd().args([
        "eval",
        "--input",
        "gold.csv",
        "--gold-column",
        "gold",
        "--examples",
        "examples.csv",
    ]));
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("row 2"), "{}", stderr(&out));
    let out = run(sb
        .cmd()
        .args(["eval", "--input", "gold.csv", "--gold-column", "gold"]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
}
