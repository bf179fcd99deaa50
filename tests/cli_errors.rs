//! Bad input and configuration through the real binary: missing keys, every key format of
//! the env file, the xAI/Grok alias, unknown or clashing columns, malformed rows, foreign
//! outputs, CSV dialects, and `--help` text. Each error must exit 2 with a message naming
//! the file, row or column, send no request and leave existing files untouched.

mod common;

use std::path::Path;

use common::*;
use serde_json::Value;

/// `gsk_…k001`: the masked form the tool must show (well-known prefix, last four).
fn masked(key: &str) -> String {
    let cut = key.find(['_', '-']).map_or(3, |p| p + 1);
    format!("{}…{}", &key[..cut], &key[key.len() - 4..])
}

/// Distinct fake keys whose last four characters differ: `gsk_FMT…_k001`…
fn fmt_keys(n: usize) -> Vec<String> {
    (1..=n)
        .map(|i| format!("gsk_FORMATFAKEKEY_secretpart_k{i:03}"))
        .collect()
}

fn write_csv(path: &Path, delimiter: u8, rows: &[Vec<String>]) {
    let mut w = csv::WriterBuilder::new()
        .delimiter(delimiter)
        .terminator(csv::Terminator::Any(b'\n'))
        .from_path(path)
        .unwrap();
    for r in rows {
        w.write_record(r).unwrap();
    }
    w.flush().unwrap();
}

/// `test-keys --json` against `fake`; returns (index, masked key, status) per key.
fn tested_keys(sb: &Sandbox, fake: &FakeProvider, extra: &[&str]) -> Vec<(u64, String, String)> {
    let out = run(sb
        .cmd()
        .args(["test-keys", "--json", "--base-url", &fake.base_url()])
        .args(extra));
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("test-keys --json is not JSON ({e}): {}", stdout(&out)));
    v.as_array()
        .expect("an array, one object per key")
        .iter()
        .map(|k| {
            (
                k["index"].as_u64().unwrap(),
                k["key"].as_str().unwrap().to_string(),
                k["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn assert_no_request(fake: &FakeProvider) {
    assert_eq!(fake.total_requests(), 0, "no request may be sent");
}

#[test]
fn no_env_file_or_no_keys_exits_2_naming_the_file_and_the_variables() {
    let fake = FakeProvider::start(FakeConfig::with_keys(&[PLANTED]));
    let sb = Sandbox::new();
    let (input, output) = (sb.path("in.csv"), sb.path("out.csv"));
    write_input(&input, &smsa(3));

    // No env file at all.
    let r = run(&mut sb.label(&fake, &input, &output, &[]));
    let err = stderr(&r);
    assert_eq!(code(&r), 2, "{err}");
    assert!(err.contains(&sb.env_file().display().to_string()), "{err}");
    for var in [
        "API_KEY_GROQ",
        "GROQ_API_KEY",
        "GROQ_API_KEY_1",
        "GROQ_API_KEYS",
        "GROQ_API_KEY_BACKUP",
    ] {
        assert!(err.contains(var), "the message must name {var}: {err}");
    }
    assert!(!err.contains("panicked"), "{err}");
    assert!(!output.exists(), "no output without keys");

    // The default env file, named as the user would see it.
    let r = run(sb
        .cmd()
        .env_remove("AUTOLABEL_ENV_FILE")
        .args(["--input", "in.csv", "--output", "out.csv", "--base-url"])
        .arg(fake.base_url()));
    assert_eq!(code(&r), 2, "{}", stderr(&r));
    assert!(stderr(&r).contains("envs/.envs"), "{}", stderr(&r));

    // An env file with keys for another provider only.
    std::fs::write(
        sb.env_file(),
        "GEMINI_API_KEY=AIzaFAKEGEMINIKEY_0009_secret_p0p0\nGROQ_API_KEY=\n",
    )
    .unwrap();
    let r = run(&mut sb.label(&fake, &input, &output, &[]));
    let err = stderr(&r);
    assert_eq!(code(&r), 2, "{err}");
    assert!(err.contains(&sb.env_file().display().to_string()), "{err}");
    assert!(err.contains("GROQ_API_KEY"), "{err}");

    // test-keys says the same.
    let r = run(sb.cmd().args(["test-keys", "--base-url", &fake.base_url()]));
    assert_eq!(code(&r), 2, "{}", stderr(&r));
    assert!(stderr(&r).contains("GROQ_API_KEY"), "{}", stderr(&r));
    assert_no_request(&fake);
    assert!(!output.exists());
}

#[test]
fn every_key_format_of_the_env_file_loads_exactly_the_expected_keys_in_order() {
    let k = fmt_keys(6);
    let fake = FakeProvider::start(FakeConfig::with_keys(
        &k.iter().map(String::as_str).collect::<Vec<_>>(),
    ));
    let (k1, k2, k3, k4, k5, k6) = (&k[0], &k[1], &k[2], &k[3], &k[4], &k[5]);
    let cases: Vec<(&str, String, Vec<&String>)> = vec![
        (
            "semicolons",
            format!("API_KEY_GROQ=\"{k1};{k2};{k3}\"\n"),
            vec![k1, k2, k3],
        ),
        (
            "python list",
            format!("GROQ_API_KEYS=\"[{k1}, '{k2}']\"\n"),
            vec![k1, k2],
        ),
        (
            "python list, double-quoted items",
            format!("GROQ_API_KEY='[\"{k3}\", \"{k1}\"]'\n"),
            vec![k3, k1],
        ),
        ("single key", format!("GROQ_API_KEY={k1}\n"), vec![k1]),
        (
            "numbered 1..n (10 after 2)",
            format!("GROQ_API_KEY_1={k1}\nGROQ_API_KEY_2={k2}\nGROQ_API_KEY_10={k3}\n"),
            vec![k1, k2, k3],
        ),
        ("commas", format!("GROQ_API_KEYS={k1},{k2}\n"), vec![k1, k2]),
        (
            "backup",
            format!("GROQ_API_KEY={k1}\nGROQ_API_KEY_BACKUP={k2}\n"),
            vec![k1, k2],
        ),
        (
            "CRLF, BOM, comments, export, quotes, spaces, empty entries, duplicates",
            format!(
                "\u{feff}# Groq keys\r\nAPI_KEY_GROQ=\"{k1}; {k2} ;;{k3};\"\r\n\r\nexport GROQ_API_KEY='{k2}'\r\n\
                 GROQ_API_KEY_1={k4}\r\nGROQ_API_KEYS=\"{k5},,{k1}, {k6}\"\r\nGROQ_API_KEY_BACKUP=\r\n"
            ),
            vec![k1, k2, k3, k4, k5, k6],
        ),
    ];
    for (name, body, expected) in cases {
        let sb = Sandbox::new();
        std::fs::write(sb.env_file(), &body).unwrap();
        let got = tested_keys(&sb, &fake, &[]);
        let want: Vec<(u64, String, String)> = expected
            .iter()
            .enumerate()
            .map(|(i, key)| (i as u64 + 1, masked(key), "ok".to_string()))
            .collect();
        assert_eq!(got, want, "case {name}: env file {body:?}");
    }
}

#[test]
fn keys_from_the_process_environment_are_read_too() {
    let k = fmt_keys(3);
    let fake = FakeProvider::start(FakeConfig::with_keys(
        &k.iter().map(String::as_str).collect::<Vec<_>>(),
    ));
    let sb = Sandbox::new();
    // No env file: the environment alone.
    let out = run(sb
        .cmd()
        .env("GROQ_API_KEYS", format!("{};{}", k[0], k[1]))
        .args(["test-keys", "--json", "--base-url", &fake.base_url()]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let keys: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, [masked(&k[0]), masked(&k[1])]);
    for key in &k {
        assert!(!contains(&out.stdout, key.as_bytes()));
        assert!(!contains(&out.stderr, key.as_bytes()));
    }
}

#[test]
fn xai_reads_grok_keys_as_an_alias() {
    let key = "xai-FAKEGROKKEY_0004_secretpart_ab12";
    let fake = FakeProvider::start(FakeConfig::with_keys(&[key]));
    let sb = Sandbox::new();
    std::fs::write(sb.env_file(), format!("GROK_API_KEY={key}\n")).unwrap();
    let texts = smsa(5);
    let (input, output) = (sb.path("in.csv"), sb.path("out.csv"));
    write_input(&input, &texts);
    let r = run(&mut sb.label(
        &fake,
        &input,
        &output,
        &[
            "--provider",
            "xai",
            "--rpm",
            "100000",
            "--tpm",
            "100000000",
            "--rpd",
            "100000",
            "--tpd",
            "100000000",
        ],
    ));
    assert_eq!(code(&r), 0, "{}", stderr(&r));
    assert_labeled(&output, &texts);
    assert_eq!(
        fake.requests_for(key),
        5,
        "the GROK_API_KEY key did the work"
    );
    let t = run(sb.cmd().args([
        "test-keys",
        "--json",
        "--provider",
        "xai",
        "--base-url",
        &fake.base_url(),
    ]));
    assert_eq!(code(&t), 0, "{}", stderr(&t));
    let v: Value = serde_json::from_slice(&t.stdout).unwrap();
    assert_eq!(v[0]["key"], "xai-…ab12");
    assert_eq!(v[0]["status"], "ok");
    sb.assert_no_leak(&[&r, &t], &[key]);
}

#[test]
fn unknown_text_column_lists_the_columns() {
    let fake = FakeProvider::start(FakeConfig::with_keys(&[PLANTED]));
    let sb = Sandbox::new();
    sb.write_keys(&[PLANTED]);
    let (input, output) = (sb.path("posts.csv"), sb.path("out.csv"));
    write_csv(
        &input,
        b',',
        &[
            vec!["id".into(), "body".into(), "lang".into()],
            vec!["1".into(), "bagus sekali".into(), "id".into()],
        ],
    );
    let r = run(&mut sb.label(&fake, &input, &output, &["--text-column", "nope"]));
    let err = stderr(&r);
    assert_eq!(code(&r), 2, "{err}");
    assert!(err.contains("posts.csv"), "names the file: {err}");
    assert!(err.contains("'nope'"), "names the column asked for: {err}");
    assert!(err.contains("id, body, lang"), "lists the columns: {err}");
    // Nothing to auto-detect: the same list, and how to choose.
    let r = run(&mut sb.label(&fake, &input, &output, &[]));
    let err = stderr(&r);
    assert_eq!(code(&r), 2, "{err}");
    assert!(
        err.contains("id, body, lang") && err.contains("--text-column"),
        "{err}"
    );
    assert_no_request(&fake);
    assert!(!output.exists());
    // Naming it works (case-insensitively).
    let r = run(&mut sb.label(&fake, &input, &output, &["--text-column", "BODY"]));
    assert_eq!(code(&r), 0, "{}", stderr(&r));
    let rows = read_rows(&output);
    assert_eq!(rows[0], ["id", "body", "lang", "label"]);
    assert_eq!(rows[1][3], expected_label("bagus sekali"));
}

#[test]
fn an_input_with_a_label_column_needs_replace_label_column() {
    let fake = FakeProvider::start(FakeConfig::with_keys(&[PLANTED]));
    let sb = Sandbox::new();
    sb.write_keys(&[PLANTED]);
    let texts = smsa(4);
    let (input, output) = (sb.path("labeled.csv"), sb.path("out.csv"));
    let mut rows = vec![vec!["id".to_string(), "text".into(), "label".into()]];
    for (i, t) in texts.iter().enumerate() {
        rows.push(vec![(i + 1).to_string(), t.clone(), "old".into()]);
    }
    write_csv(&input, b',', &rows);
    let r = run(&mut sb.label(&fake, &input, &output, &[]));
    let err = stderr(&r);
    assert_eq!(code(&r), 2, "{err}");
    assert!(err.contains("labeled.csv"), "{err}");
    assert!(err.contains("'label'"), "{err}");
    assert!(err.contains("--replace-label-column"), "{err}");
    assert_no_request(&fake);
    assert!(!output.exists());

    let r = run(&mut sb.label(&fake, &input, &output, &["--replace-label-column"]));
    assert_eq!(code(&r), 0, "{}", stderr(&r));
    assert_labeled(&output, &texts);
}

#[test]
fn a_malformed_row_exits_2_naming_it_and_leaves_the_output_alone() {
    let fake = FakeProvider::start(FakeConfig::with_keys(&[PLANTED]));
    let sb = Sandbox::new();
    sb.write_keys(&[PLANTED]);
    let texts = smsa(10);
    let (input, output) = (sb.path("tweets.csv"), sb.path("out.csv"));
    // A finished earlier run's output of the good rows.
    write_input(&input, &texts);
    let r = run(&mut sb.label(&fake, &input, &output, &["--limit", "4"]));
    assert_eq!(code(&r), 0, "{}", stderr(&r));
    let before = std::fs::read(&output).unwrap();
    let sent = fake.total_requests();

    // Row 7 (line 8) gets an unquoted extra field.
    let good = std::fs::read_to_string(&input).unwrap();
    let mut lines: Vec<String> = good.lines().map(str::to_string).collect();
    lines[7] = format!("7,{},oops", lines[7].split_once(',').unwrap().1);
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let r = run(&mut sb.label(&fake, &input, &output, &[]));
    let err = stderr(&r);
    assert_eq!(code(&r), 2, "{err}");
    assert!(err.contains("tweets.csv"), "names the file: {err}");
    assert!(err.contains("row 7"), "names the row: {err}");
    assert!(err.contains("line 8"), "names the line: {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(std::fs::read(&output).unwrap(), before, "output untouched");
    assert_eq!(fake.total_requests(), sent, "no request for a bad input");

    // A row with too few fields, the same.
    lines[7] = "7".into();
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let r = run(&mut sb.label(&fake, &input, &output, &[]));
    assert_eq!(code(&r), 2, "{}", stderr(&r));
    assert!(stderr(&r).contains("row 7"), "{}", stderr(&r));
    assert_eq!(std::fs::read(&output).unwrap(), before, "output untouched");
    assert_eq!(fake.total_requests(), sent);
}

#[test]
fn an_output_of_another_input_is_refused_unless_overwrite() {
    let fake = FakeProvider::start(FakeConfig::with_keys(&[PLANTED]));
    let sb = Sandbox::new();
    sb.write_keys(&[PLANTED]);
    let all = smsa(12);
    let (a, b) = (all[..6].to_vec(), all[6..].to_vec());
    let (in_a, in_b, output) = (
        sb.path("a.csv"),
        sb.path("b.csv"),
        sb.path("shared.out.csv"),
    );
    write_input(&in_a, &a);
    write_input(&in_b, &b);
    let r = run(&mut sb.label(&fake, &in_a, &output, &[]));
    assert_eq!(code(&r), 0, "{}", stderr(&r));
    let before = std::fs::read(&output).unwrap();
    let sent = fake.total_requests();

    let r = run(&mut sb.label(&fake, &in_b, &output, &[]));
    let err = stderr(&r);
    assert_eq!(code(&r), 2, "{err}");
    assert!(err.contains("shared.out.csv"), "names the output: {err}");
    assert!(err.contains("--overwrite"), "says what to do: {err}");
    assert_eq!(std::fs::read(&output).unwrap(), before, "unchanged");
    assert_eq!(fake.total_requests(), sent, "no request");

    // Not a CSV of ours at all: refused the same way.
    let other = sb.path("notes.csv");
    std::fs::write(&other, "some,notes\nx,y\n").unwrap();
    let r = run(&mut sb.label(&fake, &in_b, &other, &[]));
    assert_eq!(code(&r), 2, "{}", stderr(&r));
    assert_eq!(std::fs::read(&other).unwrap(), b"some,notes\nx,y\n");

    let r = run(&mut sb.label(&fake, &in_b, &output, &["--overwrite"]));
    assert_eq!(code(&r), 0, "{}", stderr(&r));
    assert_labeled(&output, &b);
}

#[test]
fn delimiters_bom_and_quoted_newlines_are_kept() {
    let fake = FakeProvider::start(FakeConfig::with_keys(&[PLANTED]));
    let base = smsa(6);
    for (delim, bom) in [(b';', false), (b'\t', false), (b'|', false), (b',', true)] {
        let sb = Sandbox::new();
        sb.write_keys(&[PLANTED]);
        let d = delim as char;
        // Texts with the delimiter, commas, quotes and newlines inside; a note column after.
        let mut texts: Vec<String> = base.clone();
        texts[1] = format!("baris satu\nbaris dua {d} \"kutip\", koma");
        texts[3] = format!("{}\r\nlanjut", texts[3]);
        let mut rows = vec![vec!["id".to_string(), "text".into(), "note".into()]];
        for (i, t) in texts.iter().enumerate() {
            rows.push(vec![
                format!("{:03}", i + 1),
                t.clone(),
                format!("a,b;c|d {i} \"q\""),
            ]);
        }
        let (input, output) = (sb.path("in.csv"), sb.path("out.csv"));
        write_csv(&input, delim, &rows);
        if bom {
            let mut bytes = b"\xef\xbb\xbf".to_vec();
            bytes.extend(std::fs::read(&input).unwrap());
            std::fs::write(&input, bytes).unwrap();
        }
        let r = run(&mut sb.label(&fake, &input, &output, &[]));
        assert_eq!(code(&r), 0, "delimiter {d:?}: {}", stderr(&r));
        let raw = std::fs::read_to_string(&output).unwrap();
        let header = raw.trim_start_matches('\u{feff}').lines().next().unwrap();
        assert_eq!(
            header,
            ["id", "text", "note", "label"].join(&d.to_string()),
            "the output keeps the delimiter {d:?}"
        );
        let got = read_csv(&output, delim);
        assert_eq!(got.len(), rows.len(), "delimiter {d:?}: row count");
        let first = got[0][0].trim_start_matches('\u{feff}');
        assert_eq!(first, "id", "BOM must not stick to the first column name");
        for (out, inp) in got[1..].iter().zip(&rows[1..]) {
            assert_eq!(out[..3], inp[..], "delimiter {d:?}: values unchanged");
            assert_eq!(out[3], expected_label(&inp[1]), "delimiter {d:?}: label");
        }
    }
}

/// The `[default: …]` of a flag in a help text, or `None` if the flag has no default shown.
fn flag_block(help: &str, flag: &str) -> Option<String> {
    let mut blocks: Vec<String> = Vec::new();
    for line in help.lines() {
        let t = line.trim_start();
        if t.starts_with('-') && line.len() - t.len() <= 8 {
            blocks.push(String::new());
        }
        if let Some(b) = blocks.last_mut() {
            b.push(' ');
            b.push_str(t);
        }
    }
    blocks
        .into_iter()
        .find(|b| {
            b.split([',', ' '])
                .filter(|w| !w.is_empty())
                .take(3)
                .any(|w| w.trim_end_matches("...") == flag)
        })
        .map(|b| b.split_whitespace().collect::<Vec<_>>().join(" "))
}

fn help_of(args: &[&str]) -> String {
    let sb = Sandbox::new();
    let out = run(sb.cmd().args(args));
    assert_eq!(code(&out), 0, "{args:?}: {}", stderr(&out));
    stdout(&out)
}

#[test]
fn help_of_each_command_names_every_flag_with_its_default() {
    let label_flags: &[(&str, Option<&str>)] = &[
        ("--input", None),
        ("--output", None),
        ("--text-column", Some("[default: first of text, tweet")),
        ("--label-column", Some("[default: label]")),
        ("--labels", Some("[default: positif,negatif,netral]")),
        ("--fallback-label", Some("[default: netral]")),
        ("--provider", Some("[default: groq]")),
        ("--base-url", Some("[default: the provider's]")),
        ("--model", Some("[default: the provider's")),
        ("--env-file", Some("[default: envs/.envs]")),
        ("--delay", Some("[default: 2.5]")),
        ("--rpm", Some("[default: provider free tier")),
        ("--rph", Some("[default:")),
        ("--rpd", Some("[default: provider free tier")),
        ("--tpm", Some("[default: provider free tier")),
        ("--tpd", Some("[default: provider free tier")),
        ("--concurrency", Some("[default: 1]")),
        ("--batch-size", Some("[default: 1]")),
        (
            "--max-retries",
            Some("[default: number of keys, at least 4]"),
        ),
        ("--timeout", Some("[default: 30]")),
        ("--on-exhausted", Some("[default: fallback]")),
        ("--state", Some("[default:")),
        ("--prompt-file", None),
        ("--no-cache", None),
        ("--limit", None),
        ("--dry-run", None),
        ("--overwrite", None),
        ("--quiet", None),
        ("--verbose", None),
        ("-v,", None),
        ("--report-dir", None),
        ("--model-column", None),
    ];
    for args in [&["--help"][..], &["label", "--help"][..]] {
        let help = help_of(args);
        for (flag, default) in label_flags {
            let flag = flag.trim_end_matches(',');
            let block = flag_block(&help, flag)
                .unwrap_or_else(|| panic!("{args:?}: {flag} is not in the help:\n{help}"));
            if let Some(d) = default {
                assert!(
                    block.contains(d),
                    "{args:?}: {flag} should show {d}: {block}"
                );
            }
        }
        // The on-exhausted choices are explained.
        for choice in ["fallback", "wait", "stop"] {
            assert!(
                flag_block(&help, "--on-exhausted")
                    .unwrap()
                    .contains(choice),
                "{choice}"
            );
        }
        assert!(help.contains("75"), "exit codes are listed: {help}");
    }
    let tk = help_of(&["test-keys", "--help"]);
    for (flag, default) in [
        ("--json", None),
        ("--chat", None),
        ("--provider", Some("[default: groq]")),
        ("--env-file", Some("[default: envs/.envs]")),
        ("--timeout", Some("[default: 30]")),
        ("--base-url", Some("[default: the provider's]")),
        ("--state", Some("[default:")),
    ] {
        let block = flag_block(&tk, flag).unwrap_or_else(|| panic!("test-keys: {flag}:\n{tk}"));
        if let Some(d) = default {
            assert!(block.contains(d), "test-keys {flag}: {block}");
        }
    }
    let usage = help_of(&["usage", "--help"]);
    for (flag, default) in [
        ("--days", Some("[default: 7]")),
        ("--json", None),
        ("--env-file", Some("[default: envs/.envs]")),
        ("--state", Some("[default:")),
    ] {
        let block = flag_block(&usage, flag).unwrap_or_else(|| panic!("usage: {flag}:\n{usage}"));
        if let Some(d) = default {
            assert!(block.contains(d), "usage {flag}: {block}");
        }
    }
}

/// `usage --html FILE` writes a self-contained report with charts.
#[test]
fn usage_html_writes_a_self_contained_report() {
    let usage = help_of(&["usage", "--help"]);
    assert!(flag_block(&usage, "--html").is_some(), "{usage}");
    let fake = FakeProvider::start(FakeConfig::with_keys(&[PLANTED]));
    let sb = Sandbox::new();
    sb.write_keys(&[PLANTED]);
    let (input, output) = (sb.path("in.csv"), sb.path("out.csv"));
    write_input(&input, &smsa(3));
    let r = run(&mut sb.label(&fake, &input, &output, &[]));
    assert_eq!(code(&r), 0, "{}", stderr(&r));
    let html = sb.path("usage.html");
    let u = run(sb.cmd().args(["usage", "--html"]).arg(&html));
    assert_eq!(code(&u), 0, "{}", stderr(&u));
    let text = std::fs::read_to_string(&html).unwrap();
    assert!(text.to_lowercase().contains("<html"), "{text}");
    assert!(text.contains(&masked(PLANTED)), "{text}");
    assert!(!text.contains("src=\"http"), "self-contained: {text}");
    sb.assert_no_leak(&[&r, &u], &[PLANTED]);
}

#[test]
fn a_state_location_that_is_a_url_but_not_redis_is_exit_2_and_creates_nothing() {
    // Taken as a path, these once became a local SQLite file (`./http:/…`) with exit 0,
    // and the state the user meant to share was not shared.
    for bad in [
        "http://u:s3cret@host/state",
        "redis:/host",
        "unix:///tmp/redis.sock",
    ] {
        let sb = Sandbox::new();
        let before: Vec<_> = std::fs::read_dir(sb.dir.path()).unwrap().collect();
        let out = run(sb.cmd().args(["state", "vacuum", "--state", bad]));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad}: {err}");
        assert!(err.contains("redis://"), "{bad}: {err}");
        assert!(!err.contains("s3cret"), "{err}");
        let after: Vec<_> = std::fs::read_dir(sb.dir.path()).unwrap().collect();
        assert_eq!(before.len(), after.len(), "{bad}: a file was created");
    }
}
