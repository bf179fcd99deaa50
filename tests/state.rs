//! The embedded state (issue 5) seen from outside, through the real binary and the fake
//! provider: key health kept across runs, fallback rows re-labeled after the provider's
//! day resets, `--on-exhausted stop`, the label cache, the `usage` ledger and reports,
//! `--dry-run`, two runs sharing one state file, a corrupt state file, `test-keys`
//! clearing an invalid mark, and no full key anywhere the tool writes.

mod common;

use std::collections::{BTreeSet, HashSet};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use serde_json::Value;

/// `gsk_…_zq9`: how the tool must show a key (well-known prefix, last four characters).
fn masked(key: &str) -> String {
    let prefix = &key[..4];
    let tail = &key[key.len() - 4..];
    format!("{prefix}…{tail}")
}

/// The first 8 hex digits of the key's SHA-256, computed independently of the tool.
fn fingerprint(key: &str) -> String {
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("sha256sum");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(key.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8(out.stdout).unwrap()[..8].to_string()
}

/// Texts the fake received in requests recorded from `from` on, with reply `status`.
fn texts_with_status(fake: &FakeProvider, from: usize, status: u16) -> Vec<String> {
    fake.requests()[from..]
        .iter()
        .filter(|r| r.status == status)
        .flat_map(|r| r.texts.clone())
        .collect()
}

/// Every text the fake was asked about from request `from` on, any status.
fn texts_asked(fake: &FakeProvider, from: usize) -> Vec<String> {
    fake.requests()[from..]
        .iter()
        .flat_map(|r| r.texts.clone())
        .collect()
}

/// `YYYY-MM-DD` of today in UTC (Howard Hinnant's civil-from-days).
fn utc_today() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let z = secs.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Waits for the fake's day window (started no earlier than `t0`) to roll over, plus the
/// second the tool may round its stored reset time to. The one sleep these tests allow:
/// the reset time belongs to the provider.
fn wait_for_day_reset(t0: Instant, window: Duration) {
    let until = t0 + window + Duration::from_millis(1100);
    let now = Instant::now();
    if until > now {
        std::thread::sleep(until - now);
    }
}

fn usage_json(sb: &Sandbox, extra: &[&str]) -> (Output, Value) {
    let out = run(sb.cmd().arg("usage").arg("--json").args(extra));
    assert_eq!(code(&out), 0, "usage --json: {}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("usage --json is not JSON ({e}): {}", stdout(&out)));
    (out, v)
}

fn key_entry<'a>(v: &'a Value, key: &str) -> &'a Value {
    let m = masked(key);
    v["keys"]
        .as_array()
        .expect("keys array")
        .iter()
        .find(|k| k["key"] == m.as_str())
        .unwrap_or_else(|| panic!("no entry for {m} in {v:#}"))
}

/// Faults that let the first `texts.len()` requests through with the right label (requests
/// go in row order with `--concurrency 1`), then refuse the next `refusals` with Groq's
/// 429 for a used-up daily quota ("try again in" the time left in the fake's day).
fn exhaust_after(fake: &FakeProvider, texts: &[String], refusals: usize) {
    fake.push_faults(
        texts
            .iter()
            .map(|t| Fault::Reply(expected_label(t).to_string()))
            .chain(std::iter::repeat_n(Fault::RateLimitDay, refusals)),
    );
}

#[test]
fn a_key_exhausted_in_one_run_gets_no_request_in_the_next() {
    let fake = FakeProvider::start(FakeConfig::with_keys(&[PLANTED, KEY2, KEY3]));
    // The first request meets Groq's 429 for a used-up daily quota (RPD).
    fake.push_faults([Fault::RateLimitDay]);
    let sb = Sandbox::new();
    sb.write_keys(&[PLANTED, KEY2, KEY3]);
    let all = smsa(50);
    let (a, b) = (all[..30].to_vec(), all[30..].to_vec());
    let (in1, out1, in2, out2) = (
        sb.path("a.csv"),
        sb.path("a.out.csv"),
        sb.path("b.csv"),
        sb.path("b.out.csv"),
    );
    write_input(&in1, &a);
    write_input(&in2, &b);

    let r1 = run(&mut sb.label(&fake, &in1, &out1, &[]));
    assert_eq!(code(&r1), 0, "{}", stderr(&r1));
    assert_labeled(&out1, &a);
    let first = fake.requests()[0].clone();
    assert_eq!(first.status, 429);
    let exhausted = first.key.clone();
    let index = [PLANTED, KEY2, KEY3]
        .iter()
        .position(|k| *k == exhausted)
        .unwrap()
        + 1;
    assert_eq!(
        fake.requests_for(&exhausted),
        1,
        "the 429 (RPD), then no request in run 1 either\n{}",
        stderr(&r1)
    );

    let r2 = run(&mut sb.label(&fake, &in2, &out2, &[]));
    assert_eq!(code(&r2), 0, "{}", stderr(&r2));
    assert_labeled(&out2, &b);
    assert_eq!(
        fake.requests_for(&exhausted),
        1,
        "the key exhausted in run 1 must get zero requests in run 2\n{}",
        stderr(&r2)
    );
    assert_eq!(fake.count_status(429), 1, "no new refusal in run 2");
    assert_eq!(fake.total_requests(), 1 + a.len() + b.len());
    let err = stderr(&r2);
    let line = err
        .lines()
        .find(|l| l.contains(&format!("#{index} {}", masked(&exhausted))) && l.contains("skipping"))
        .unwrap_or_else(|| panic!("run 2 must say key #{index} is skipped: {err}"));
    assert!(line.contains("exhausted"), "{line}");
    assert!(err.contains("exhausted 1"), "key-status summary: {err}");
    assert!(err.contains("2/3 available"), "key-status summary: {err}");
    sb.assert_no_leak(&[&r1, &r2], &[PLANTED, KEY2, KEY3]);
}

#[test]
fn fallback_rows_are_relabeled_after_the_provider_day_resets() {
    let window = Duration::from_secs(3);
    let mut cfg = FakeConfig::with_keys(&[PLANTED, KEY2]);
    cfg.day_window = window;
    let t0 = Instant::now();
    let (fake, sb, texts, input, output) = setup(&[PLANTED, KEY2], cfg, 20);
    // 10 rows get labeled, then both keys' daily quota is used up until the day resets.
    exhaust_after(&fake, &texts[..10], 2);

    let r1 = run(&mut sb.label(&fake, &input, &output, &[]));
    assert_eq!(code(&r1), 3, "fallback rows → exit 3: {}", stderr(&r1));
    assert!(
        t0.elapsed() < window,
        "run 1 took longer than the fake's day; the test cannot tell what it saw"
    );
    let labeled: HashSet<String> = texts_with_status(&fake, 0, 200).into_iter().collect();
    let fallback: BTreeSet<String> = texts
        .iter()
        .filter(|t| !labeled.contains(*t))
        .cloned()
        .collect();
    assert_eq!(labeled.len(), 10);
    assert_eq!(fallback.len(), 10);
    let rows = read_rows(&output);
    assert_eq!(rows.len() - 1, texts.len(), "run 1 writes every row");
    for (row, text) in rows[1..].iter().zip(&texts) {
        assert_eq!(&row[1], text);
        if fallback.contains(text) {
            assert_eq!(row[2], "netral", "fallback label for {text:?}");
        } else {
            assert_eq!(row[2], expected_label(text));
        }
    }

    wait_for_day_reset(t0, window);

    // Run 2, same arguments: only the fallback rows are asked again.
    let before = fake.requests().len();
    let r2 = run(&mut sb.label(&fake, &input, &output, &[]));
    assert_eq!(code(&r2), 0, "{}", stderr(&r2));
    assert_labeled(&output, &texts);
    let asked: Vec<String> = texts_asked(&fake, before);
    let asked_set: BTreeSet<String> = asked.iter().cloned().collect();
    assert_eq!(
        asked_set, fallback,
        "run 2 must ask for exactly the fallback rows"
    );
    assert_eq!(asked.len(), fallback.len(), "each fallback text asked once");
    assert!(
        stderr(&r2).contains(&format!("re-labeling {} rows", fallback.len())),
        "{}",
        stderr(&r2)
    );

    // Run 3: nothing left to do, no request.
    let before = fake.total_requests();
    let r3 = run(&mut sb.label(&fake, &input, &output, &[]));
    assert_eq!(code(&r3), 0, "{}", stderr(&r3));
    assert_eq!(
        fake.total_requests(),
        before,
        "a finished output needs no request"
    );
    assert_labeled(&output, &texts);
    sb.assert_no_leak(&[&r1, &r2, &r3], &[PLANTED, KEY2]);
}

#[test]
fn on_exhausted_stop_exits_75_and_a_later_run_finishes_the_rest() {
    let window = Duration::from_secs(3);
    let mut cfg = FakeConfig::with_keys(&[PLANTED, KEY2]);
    cfg.day_window = window;
    let t0 = Instant::now();
    let (fake, sb, texts, input, output) = setup(&[PLANTED, KEY2], cfg, 20);
    exhaust_after(&fake, &texts[..10], 2);
    let args = ["--on-exhausted", "stop"];

    let r1 = run(&mut sb.label(&fake, &input, &output, &args));
    assert_eq!(code(&r1), 75, "{}", stderr(&r1));
    let done1: Vec<String> = texts_with_status(&fake, 0, 200);
    assert_eq!(
        done1,
        texts[..10],
        "10 rows labeled before the keys ran out"
    );
    // Everything done is kept, in order, with the model's labels.
    let rows = read_rows(&output);
    assert!(
        rows.len() > done1.len(),
        "the 10 labeled rows must be kept: {} rows written",
        rows.len() - 1
    );
    for (i, (row, text)) in rows[1..=done1.len()].iter().zip(&texts).enumerate() {
        assert_eq!(row[0], (i + 1).to_string(), "order");
        assert_eq!(&row[1], text);
        assert_eq!(
            row[2],
            expected_label(text),
            "row {} kept with its label",
            i + 1
        );
    }
    assert!(rows.len() - 1 < texts.len(), "stop leaves work undone");

    wait_for_day_reset(t0, window);

    let before = fake.requests().len();
    let r2 = run(&mut sb.label(&fake, &input, &output, &args));
    assert_eq!(code(&r2), 0, "{}", stderr(&r2));
    assert_labeled(&output, &texts);
    let asked: Vec<String> = texts_asked(&fake, before);
    for t in &done1 {
        assert!(
            !asked.contains(t),
            "run 2 re-sent a row finished in run 1: {t:?}"
        );
    }
    let asked: BTreeSet<String> = asked.into_iter().collect();
    assert_eq!(
        asked,
        texts[10..].iter().cloned().collect::<BTreeSet<_>>(),
        "run 2 asks for the rest"
    );
    sb.assert_no_leak(&[&r1, &r2], &[PLANTED, KEY2]);
}

/// When no key can serve, `fallback` writes the fallback label but `stop` ends the
/// run, so with `stop` no row may carry the fallback label, not even the one whose request
/// met the last key's 429.
#[test]
fn on_exhausted_stop_writes_no_fallback_label() {
    let (fake, sb, texts, input, output) = setup(
        &[PLANTED, KEY2],
        FakeConfig::with_keys(&[PLANTED, KEY2]),
        20,
    );
    exhaust_after(&fake, &texts[..10], 2);
    let r1 = run(&mut sb.label(
        &fake,
        &input,
        &output,
        &["--on-exhausted", "stop", "--status-column", "status"],
    ));
    assert_eq!(code(&r1), 75, "{}", stderr(&r1));
    let rows = read_rows(&output);
    for row in &rows[1..] {
        assert_eq!(
            row[3],
            "model",
            "with --on-exhausted stop no row may get the fallback label: {row:?}\n{}",
            stderr(&r1)
        );
    }
    assert_eq!(rows.len() - 1, 10, "the 10 rows the keys could label");
    assert!(!stderr(&r1).contains("fallback label"), "{}", stderr(&r1));
}

/// `--on-exhausted wait` sleeps until the earliest reset (saying so) and then labels every
/// row with the model: no fallback label, exit 0.
#[test]
fn on_exhausted_wait_waits_for_the_reset_and_labels_every_row() {
    let mut cfg = FakeConfig::with_keys(&[PLANTED, KEY2]);
    cfg.day_window = Duration::from_secs(3);
    let (fake, sb, texts, input, output) = setup(&[PLANTED, KEY2], cfg, 14);
    exhaust_after(&fake, &texts[..10], 2);
    let r = run(&mut sb.label(&fake, &input, &output, &["--on-exhausted", "wait"]));
    assert!(
        stderr(&r).contains("waiting"),
        "the wait is shown: {}",
        stderr(&r)
    );
    assert_eq!(code(&r), 0, "{}", stderr(&r));
    assert_labeled(&output, &texts);
}

#[test]
fn label_cache_serves_the_same_texts_in_another_file_and_no_cache_bypasses_it() {
    let fake = FakeProvider::start(FakeConfig::with_keys(&[PLANTED, KEY2]));
    let sb = Sandbox::new();
    sb.write_keys(&[PLANTED, KEY2]);
    let texts = smsa(20);
    let (a, a_out) = (sb.path("a.csv"), sb.path("a.out.csv"));
    write_input(&a, &texts);
    let r1 = run(&mut sb.label(&fake, &a, &a_out, &[]));
    assert_eq!(code(&r1), 0, "{}", stderr(&r1));
    assert_labeled(&a_out, &texts);
    assert_eq!(fake.total_requests(), 20);

    // File B: the same texts in reverse order, with extra columns around the text.
    let b = sb.path("b.csv");
    {
        let mut w = csv::Writer::from_path(&b).unwrap();
        w.write_record(["source", "text", "note"]).unwrap();
        for (i, t) in texts.iter().rev().enumerate() {
            w.write_record([format!("src{i}").as_str(), t, "x,y"])
                .unwrap();
        }
        w.flush().unwrap();
    }
    let b_out = sb.path("b.out.csv");
    let r2 = run(&mut sb.label(&fake, &b, &b_out, &[]));
    assert_eq!(code(&r2), 0, "{}", stderr(&r2));
    assert_eq!(fake.total_requests(), 20, "cached texts need no request");
    assert!(stderr(&r2).contains("cached 20"), "{}", stderr(&r2));
    let rows = read_rows(&b_out);
    assert_eq!(rows[0], ["source", "text", "note", "label"]);
    for (i, (row, t)) in rows[1..].iter().zip(texts.iter().rev()).enumerate() {
        assert_eq!(row[0], format!("src{i}"));
        assert_eq!(&row[1], t);
        assert_eq!(row[2], "x,y");
        assert_eq!(row[3], expected_label(t), "cached label of {t:?}");
    }

    // --no-cache asks again for every text.
    let c_out = sb.path("c.out.csv");
    let r3 = run(&mut sb.label(&fake, &b, &c_out, &["--no-cache"]));
    assert_eq!(code(&r3), 0, "{}", stderr(&r3));
    assert_eq!(
        fake.total_requests(),
        40,
        "--no-cache sends every text again"
    );
    let asked: BTreeSet<String> = texts_asked(&fake, 20).into_iter().collect();
    assert_eq!(asked, texts.iter().cloned().collect::<BTreeSet<_>>());
    assert!(stderr(&r3).contains("cached 0"), "{}", stderr(&r3));
    sb.assert_no_leak(&[&r1, &r2, &r3], &[PLANTED, KEY2]);
}

#[test]
fn usage_reports_exactly_what_the_provider_saw_per_key_and_masks_keys() {
    let mut cfg = FakeConfig::with_keys(&[PLANTED, KEY2]);
    cfg.keys.push(FakeKey::invalid(KEY3));
    let fake = FakeProvider::start(cfg);
    // A server error and a per-minute limit, on whichever keys get them.
    fake.push_faults([
        Fault::Status(503),
        Fault::RateLimitMinute {
            retry_after_secs: 0.05,
        },
    ]);
    let sb = Sandbox::new();
    sb.write_keys(&[PLANTED, KEY2, KEY3]);
    let texts = smsa(20);
    let (input, output) = (sb.path("in.csv"), sb.path("out.csv"));
    write_input(&input, &texts);
    let r = run(&mut sb.label(&fake, &input, &output, &[]));
    assert_eq!(code(&r), 0, "{}", stderr(&r));
    assert_labeled(&output, &texts);

    let (u, v) = usage_json(&sb, &[]);
    assert_eq!(v["provider"], "groq");
    assert_eq!(v["days"], 7, "--days defaults to 7");
    let recs = fake.requests();
    let mut total = 0;
    for k in [PLANTED, KEY2, KEY3] {
        let e = key_entry(&v, k);
        let mine: Vec<_> = recs.iter().filter(|r| r.key == k).collect();
        let ok = mine.iter().filter(|r| r.status == 200).count() as u64;
        let n = fake.requests_for(k) as u64;
        assert_eq!(
            e["today"]["requests"],
            n,
            "requests of {}: {e:#}",
            masked(k)
        );
        assert_eq!(e["today"]["successes"], ok, "successes of {}", masked(k));
        // One text per request: every usable reply labeled one row.
        assert_eq!(e["today"]["rows"], ok, "rows of {}", masked(k));
        let errors: u64 = e["today"]["errors"]
            .as_object()
            .unwrap()
            .values()
            .map(|x| x.as_u64().unwrap())
            .sum();
        assert_eq!(errors, n - ok, "errors of {}: {e:#}", masked(k));
        let count = |st: u16| mine.iter().filter(|r| r.status == st).count() as u64;
        assert_eq!(e["today"]["errors"]["auth"], count(401), "{e:#}");
        assert_eq!(e["today"]["errors"]["server"], count(503), "{e:#}");
        assert_eq!(e["today"]["errors"]["rate_limit"], count(429), "{e:#}");
        assert_eq!(e["fingerprint"], fingerprint(k).as_str());
        assert_eq!(e["total"]["requests"], n, "period total");
        total += n;
    }
    assert_eq!(total as usize, fake.total_requests());
    assert_eq!(key_entry(&v, KEY3)["status"], "invalid");
    assert_eq!(key_entry(&v, KEY3)["today"]["errors"]["auth"], 1);
    assert_eq!(fake.count_status(503), 1);
    let server: u64 = v["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["today"]["errors"]["server"].as_u64().unwrap())
        .sum();
    assert_eq!(server, 1, "the one 503 is in the ledger");
    let tokens: u64 = v["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["today"]["tokens_in"].as_u64().unwrap())
        .sum();
    assert!(tokens > 0, "tokens are counted");

    // --days is accepted and echoed; the text form lists each masked key with its counts.
    let (u3, v3) = usage_json(&sb, &["--days", "3"]);
    assert_eq!(v3["days"], 3);
    let t = run(sb.cmd().arg("usage"));
    assert_eq!(code(&t), 0, "{}", stderr(&t));
    let text = stdout(&t);
    for (i, k) in [PLANTED, KEY2, KEY3].iter().enumerate() {
        let line = text
            .lines()
            .find(|l| l.contains(&format!("#{} {}", i + 1, masked(k))))
            .unwrap_or_else(|| panic!("usage text lacks key #{}: {text}", i + 1));
        assert!(
            line.contains(&format!(" {} ", fake.requests_for(k))),
            "{line}"
        );
    }
    assert!(text.contains("invalid"), "{text}");
    sb.assert_no_leak(&[&r, &u, &u3, &t], &[PLANTED, KEY2, KEY3]);
}

#[test]
fn usage_counts_the_rows_each_key_labeled_and_the_tokens_they_took() {
    // Free-tier keys: stated limits under ten times the free tier's keep the assumed
    // tokens a day the footer counts with (a paid-tier statement would drop it).
    let free = OrgLimits {
        tpm: Some(50_000),
        rpd: Some(14_400),
        ..OrgLimits::default()
    };
    let (fake, sb, texts, input, output) = setup(
        &[PLANTED, KEY2],
        FakeConfig::with_keys(&[PLANTED, KEY2])
            .limit("org_0", free.clone())
            .limit("org_1", free),
        20,
    );
    // One batch reply is unusable: its tokens are spent, but it labels no row.
    fake.push_faults([Fault::WrongCount]);
    let r = run(&mut sb.label(&fake, &input, &output, &["--batch-size", "5"]));
    assert_eq!(code(&r), 0, "{}", stderr(&r));
    assert_labeled(&output, &texts);
    let (u, v) = usage_json(&sb, &[]);
    let mut rows = 0;
    for k in [PLANTED, KEY2] {
        let today = &key_entry(&v, k)["today"];
        let n = today["rows"].as_u64().unwrap();
        let tokens = today["tokens_in"].as_u64().unwrap() + today["tokens_out"].as_u64().unwrap();
        assert!(n > 0, "both keys labeled rows: {today:#}");
        let per_row = today["tokens_per_row"].as_f64().unwrap();
        assert!(
            (per_row - tokens as f64 / n as f64).abs() < 0.051,
            "{today:#}"
        );
        assert_eq!(today["rows"], key_entry(&v, k)["total"]["rows"]);
        rows += n;
    }
    assert_eq!(
        rows, 20,
        "each text counted once, the unusable reply not at all"
    );
    // The split halves after the bad reply mean more requests than 20 / 5.
    assert!(fake.total_requests() > 4);
    let t = run(sb.cmd().arg("usage"));
    let text = stdout(&t);
    assert!(text.contains("ROWS") && text.contains("TOK/ROW"), "{text}");
    let line = text
        .lines()
        .find(|l| l.contains(&format!("#1 {}", masked(PLANTED))))
        .unwrap();
    let e = key_entry(&v, PLANTED);
    assert!(
        line.contains(&format!(
            " {:.1} ",
            e["today"]["tokens_per_row"].as_f64().unwrap()
        )),
        "{line}"
    );
    // The footer turns the measured tokens a row into rows a day under the limits (the
    // sandbox lifts the minute limits, so Groq's 500,000 tokens a day bind).
    let (mut tokens, mut ok) = (0u64, 0u64);
    for k in [PLANTED, KEY2] {
        let total = &key_entry(&v, k)["total"];
        tokens += total["tokens_in"].as_u64().unwrap() + total["tokens_out"].as_u64().unwrap();
        ok += total["successes"].as_u64().unwrap();
    }
    let per_row = tokens as f64 / 20.0;
    let footer = text
        .lines()
        .find(|l| l.contains("a day of quota buys"))
        .unwrap_or_else(|| panic!("no footer: {text}"));
    let expected = format!(
        "20 rows over the period at {per_row:.1} tokens a row and {:.1} rows a request",
        20.0 / ok as f64
    );
    assert!(footer.contains(&expected), "{footer}");
    let rows_a_day: f64 = footer
        .split("buys about ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .map(|n| n.replace(',', "").parse().unwrap())
        .unwrap();
    assert!((rows_a_day - 500_000.0 / per_row).abs() <= 1.0, "{footer}");
    assert!(footer.contains("(tokens per day bind)"), "{footer}");
    sb.assert_no_leak(&[&r, &u, &t], &[PLANTED, KEY2]);
}

#[test]
fn report_dir_writes_the_days_json_report() {
    let (fake, sb, _texts, input, output) = setup(
        &[PLANTED, KEY2],
        FakeConfig::with_keys(&[PLANTED, KEY2]),
        10,
    );
    let dir = sb.path("reports/daily");
    let r = run(&mut sb.label(
        &fake,
        &input,
        &output,
        &["--report-dir", dir.to_str().unwrap()],
    ));
    assert_eq!(code(&r), 0, "{}", stderr(&r));
    let path = dir.join(format!("groq_{}.json", utc_today()));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{} missing ({e}); dir has {:?}",
            path.display(),
            std::fs::read_dir(&dir).map(|d| d.flatten().map(|e| e.file_name()).collect::<Vec<_>>())
        )
    });
    let v: Value = serde_json::from_str(&text).expect("report is JSON");
    assert_eq!(v["provider"], "groq");
    for k in [PLANTED, KEY2] {
        assert_eq!(
            key_entry(&v, k)["today"]["requests"],
            fake.requests_for(k) as u64
        );
    }
    sb.assert_no_leak(&[&r], &[PLANTED, KEY2]);
}

/// The dry run's budget line for `name` ("batch size 1", "batch size auto"):
/// (tokens a row, rows per key a day, binding limit, days).
fn budget_of(out: &str, name: &str) -> (f64, f64, String, f64) {
    let line = out
        .lines()
        .find(|l| l.trim_start().starts_with(name))
        .unwrap_or_else(|| panic!("no '{name}' line in: {out}"));
    let after = &line[line.find(':').unwrap() + 1..];
    let num = |s: &str| -> f64 {
        s.replace(',', "")
            .parse()
            .unwrap_or_else(|_| panic!("{s} in {line}"))
    };
    let words: Vec<&str> = after.split_whitespace().collect();
    let at = |w: &str| {
        words
            .iter()
            .position(|x| *x == w)
            .unwrap_or_else(|| panic!("no '{w}' in {line}"))
    };
    let tokens = num(words[0]);
    let rows = num(words[at("rows") - 1]);
    let binding = after[after.find('(').unwrap() + 1..after.find(" bind)").unwrap()]
        .rsplit('(')
        .next()
        .unwrap()
        .to_string();
    let days = num(words[at("days") - 1]);
    (tokens, rows, binding, days)
}

#[test]
fn dry_run_tells_the_budget_for_the_chosen_batch_size_and_for_auto() {
    let fake = FakeProvider::start(FakeConfig::with_keys(&[PLANTED, KEY2]));
    let sb = Sandbox::new();
    sb.write_keys(&[PLANTED, KEY2]);
    let texts = smsa(400);
    let (input, output) = (sb.path("in.csv"), sb.path("out.csv"));
    write_input(&input, &texts);
    // Groq's free tier, stated as flags (the sandbox lifts the minute limits otherwise).
    let groq = [
        "--dry-run",
        "--rpm",
        "30",
        "--tpm",
        "6000",
        "--rpd",
        "14400",
        "--tpd",
        "500000",
    ];
    let r = run(&mut sb.label(&fake, &input, &output, &groq));
    assert_eq!(code(&r), 0, "{}", stderr(&r));
    assert_eq!(fake.total_requests(), 0);
    let out = stdout(&r);
    let (t1, rows1, bind1, days1) = budget_of(&out, "batch size 1:");
    let (ta, rowsa, binda, daysa) = budget_of(&out, "batch size auto");
    // Tokens bind for these texts: a day is 500,000 tokens over the tokens a row.
    for (t, rows, bind, days) in [(t1, rows1, &bind1, days1), (ta, rowsa, &binda, daysa)] {
        assert_eq!(bind, "tokens per day", "{out}");
        assert!(
            (rows - 500_000.0 / t).abs() <= 500_000.0 / t * 0.002 + 1.0,
            "{rows} vs {t}: {out}"
        );
        // 400 rows over two keys of `rows` a day.
        assert!((days - 400.0 / (2.0 * rows)).abs() < 0.006, "{days}: {out}");
    }
    assert!(ta < t1 * 0.8, "auto spends fewer tokens a row: {out}");
    // The texts' own tokens are named, and the multiple is consistent with them.
    let own: f64 = texts.iter().map(|t| t.len()).sum::<usize>() as f64 / 4.0 / 400.0;
    assert!(
        out.contains(&format!("texts {own:.1} tokens a row")),
        "{own}: {out}"
    );
    assert!(out.contains("auto: tokens per day bind"), "{out}");

    // When requests bind, rows a day are requests times the batch: 100 × 1 and 100 × 50.
    let r = run(&mut sb.label(
        &fake,
        &input,
        &output,
        &[
            "--dry-run",
            "--rpd",
            "100",
            "--tpd",
            "1000000000",
            "--batch-size",
            "auto",
        ],
    ));
    assert_eq!(code(&r), 0, "{}", stderr(&r));
    let out = stdout(&r);
    let (_, rows, bind, days) = budget_of(&out, "batch size auto (50)");
    assert_eq!(
        (rows, bind.as_str()),
        (5_000.0, "requests per day"),
        "{out}"
    );
    assert!((days - 0.04).abs() < 0.006, "{out}");
    assert!(
        !out.contains("batch size 1:"),
        "auto was chosen, so it is the only line: {out}"
    );
    assert!(
        out.contains("requests: ") && out.contains("(batch size 50)"),
        "{out}"
    );
    sb.assert_no_leak(&[&r], &[PLANTED, KEY2]);
}

#[test]
fn dry_run_sends_nothing_and_prints_the_plan() {
    let fake = FakeProvider::start(FakeConfig::with_keys(&[PLANTED]));
    let sb = Sandbox::new();
    sb.write_keys(&[PLANTED]);
    let base = smsa(15);
    // Cache 5 texts with a real run first.
    let (warm, warm_out) = (sb.path("warm.csv"), sb.path("warm.out.csv"));
    write_input(&warm, &base[..5]);
    let r0 = run(&mut sb.label(&fake, &warm, &warm_out, &[]));
    assert_eq!(code(&r0), 0, "{}", stderr(&r0));
    assert_eq!(fake.total_requests(), 5);

    // 20 rows: 15 distinct texts, 3 repeats, 2 empty.
    let mut texts = base.clone();
    texts.extend(base[..3].iter().cloned());
    texts.push(String::new());
    texts.push("   ".into());
    let (input, output) = (sb.path("in.csv"), sb.path("out.csv"));
    write_input(&input, &texts);
    let r = run(&mut sb.label(&fake, &input, &output, &["--dry-run"]));
    assert_eq!(code(&r), 0, "{}", stderr(&r));
    assert_eq!(fake.total_requests(), 5, "--dry-run sends no request");
    assert!(!output.exists(), "--dry-run writes no output");
    let out = stdout(&r) + &stderr(&r);
    let value = |name: &str| -> String {
        let line = out
            .lines()
            .find(|l| l.trim_start().starts_with(name))
            .unwrap_or_else(|| panic!("no '{name}' line in: {out}"));
        line[line.find(':').unwrap() + 1..]
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_string()
    };
    assert!(out.contains("20 rows"), "{out}");
    assert_eq!(value("empty texts"), "2", "{out}");
    assert_eq!(value("unique texts"), "15", "{out}");
    assert_eq!(value("cache hits"), "5", "{out}");
    assert_eq!(value("requests"), "10", "{out}");
    let tokens: u64 = value("estimated tokens").parse().expect("a token count");
    assert!(tokens > 0, "{out}");
    assert!(!value("estimated time").is_empty(), "{out}");
    assert!(out.contains("estimated cost"), "{out}");

    // The time follows the configured pacing: 10 requests at 6 a minute on one key.
    let r = run(&mut sb.label(&fake, &input, &output, &["--dry-run", "--rpm", "6"]));
    assert_eq!(code(&r), 0, "{}", stderr(&r));
    let paced = stdout(&r);
    assert!(
        paced
            .lines()
            .any(|l| l.trim_start().starts_with("estimated time") && l.contains("1m40s")),
        "10 requests at 6/min take 1m40s: {paced}"
    );

    // --no-cache changes the plan: every unique text is a request.
    let r = run(&mut sb.label(&fake, &input, &output, &["--dry-run", "--no-cache"]));
    assert_eq!(code(&r), 0, "{}", stderr(&r));
    let out2 = stdout(&r);
    assert!(
        out2.lines()
            .any(|l| l.trim_start().starts_with("requests:") && l.contains(" 15 ")),
        "{out2}"
    );
    assert_eq!(fake.total_requests(), 5);
    sb.assert_no_leak(&[&r0, &r], &[PLANTED]);
}

#[test]
fn two_concurrent_runs_share_one_state_file() {
    let fake = FakeProvider::start(FakeConfig {
        latency: Duration::from_millis(5),
        ..FakeConfig::with_keys(&[PLANTED, KEY2, KEY3])
    });
    let sb = Sandbox::new();
    sb.write_keys(&[PLANTED, KEY2, KEY3]);
    let all = smsa(80);
    let (a, b) = (all[..40].to_vec(), all[40..].to_vec());
    let (in_a, out_a, in_b, out_b) = (
        sb.path("a.csv"),
        sb.path("a.out.csv"),
        sb.path("b.csv"),
        sb.path("b.out.csv"),
    );
    write_input(&in_a, &a);
    write_input(&in_b, &b);
    // The state file exists already (a fresh one is the next test's case).
    let (u0, _) = usage_json(&sb, &[]);
    assert!(sb.state().exists());
    let spawn = |i: &Path, o: &Path| {
        sb.label(&fake, i, o, &["--concurrency", "4"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (ca, cb) = (spawn(&in_a, &out_a), spawn(&in_b, &out_b));
    let ra = wait_with_limit(ca, Duration::from_secs(60));
    let rb = wait_with_limit(cb, Duration::from_secs(60));
    for r in [&ra, &rb] {
        assert_eq!(code(r), 0, "{}", stderr(r));
        assert!(!stderr(r).contains("locked"), "{}", stderr(r));
    }
    assert_labeled(&out_a, &a);
    assert_labeled(&out_b, &b);
    assert_eq!(fake.total_requests(), 80);
    // Both runs' usage landed in the shared ledger.
    let (u, v) = usage_json(&sb, &[]);
    let sum: u64 = v["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["today"]["requests"].as_u64().unwrap())
        .sum();
    assert_eq!(sum, 80, "the ledger has both runs' requests");
    sb.assert_no_leak(&[&u0, &ra, &rb, &u], &[PLANTED, KEY2, KEY3]);
}

#[test]
fn a_corrupt_state_file_is_a_clear_error_not_a_panic() {
    let (fake, sb, texts, input, output) = setup(&[PLANTED], FakeConfig::with_keys(&[PLANTED]), 5);
    std::fs::create_dir_all(sb.state().parent().unwrap()).unwrap();
    let garbage: Vec<u8> = b"this is not an SQLite database, just some bytes\n"
        .iter()
        .cycle()
        .take(8192)
        .copied()
        .collect();
    std::fs::write(sb.state(), &garbage).unwrap();
    let state = sb.state().display().to_string();

    let outs = [
        run(&mut sb.label(&fake, &input, &output, &[])),
        run(sb.cmd().args(["usage", "--json"])),
        run(sb.cmd().args(["test-keys", "--base-url", &fake.base_url()])),
    ];
    for o in &outs {
        let err = stderr(o);
        assert_eq!(code(o), 2, "{err}");
        assert!(!err.contains("panicked"), "{err}");
        assert!(
            err.contains(&state),
            "the message names the state file: {err}"
        );
        assert!(
            err.contains("--state"),
            "the message says what to do: {err}"
        );
    }
    assert_eq!(fake.total_requests(), 0, "no request with a broken state");
    assert!(!output.exists(), "no output with a broken state");
    assert_eq!(
        std::fs::read(sb.state()).unwrap(),
        garbage,
        "left as it was"
    );

    // A directory where the state file should be: same kind of answer.
    let sb2 = Sandbox::new();
    sb2.write_keys(&[PLANTED]);
    std::fs::create_dir_all(sb2.state()).unwrap();
    write_input(&sb2.path("in.csv"), &texts);
    let o = run(&mut sb2.label(&fake, &sb2.path("in.csv"), &sb2.path("out.csv"), &[]));
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&sb2.state().display().to_string()),
        "{}",
        stderr(&o)
    );
}

#[test]
fn test_keys_clears_an_invalid_mark_kept_across_runs() {
    let mut cfg = FakeConfig::with_keys(&[KEY2]);
    cfg.keys.insert(0, FakeKey::invalid(PLANTED));
    let fake = FakeProvider::start(cfg);
    let sb = Sandbox::new();
    sb.write_keys(&[PLANTED, KEY2]);
    let all = smsa(30);
    let inputs: Vec<_> = (0..3)
        .map(|i| {
            let p = sb.path(&format!("in{i}.csv"));
            write_input(&p, &all[i * 10..(i + 1) * 10]);
            p
        })
        .collect();
    let outputs: Vec<_> = (0..3).map(|i| sb.path(&format!("out{i}.csv"))).collect();

    let r1 = run(&mut sb.label(&fake, &inputs[0], &outputs[0], &[]));
    assert_eq!(code(&r1), 0, "{}", stderr(&r1));
    assert_labeled(&outputs[0], &all[..10]);
    assert_eq!(fake.requests_for(PLANTED), 1, "one 401, then never again");

    let r2 = run(&mut sb.label(&fake, &inputs[1], &outputs[1], &[]));
    assert_eq!(code(&r2), 0, "{}", stderr(&r2));
    assert_labeled(&outputs[1], &all[10..20]);
    assert_eq!(fake.requests_for(PLANTED), 1, "invalid is kept across runs");
    let err = stderr(&r2);
    assert!(
        err.lines()
            .any(|l| l.contains(&format!("#1 {}", masked(PLANTED)))
                && l.contains("invalid")
                && l.contains("skipping")),
        "run 2 says the invalid key is skipped: {err}"
    );

    // test-keys against the same provider still fails for the key, and keeps the mark.
    let t1 = run(sb
        .cmd()
        .args(["test-keys", "--json", "--base-url", &fake.base_url()]));
    assert_eq!(code(&t1), 1, "{}", stderr(&t1));

    // The provider now accepts the key: test-keys passes and clears the mark.
    let fake2 = FakeProvider::start(FakeConfig::with_keys(&[PLANTED, KEY2]));
    let t2 = run(sb
        .cmd()
        .args(["test-keys", "--json", "--base-url", &fake2.base_url()]));
    assert_eq!(code(&t2), 0, "{}{}", stdout(&t2), stderr(&t2));
    let v: Value = serde_json::from_slice(&t2.stdout).expect("test-keys --json");
    let arr = v.as_array().expect("one object per key");
    assert_eq!(arr.len(), 2);
    for (i, k) in [PLANTED, KEY2].iter().enumerate() {
        assert_eq!(arr[i]["index"], i + 1);
        assert_eq!(arr[i]["key"], masked(k).as_str());
        assert_eq!(arr[i]["status"], "ok");
    }
    let (u, uv) = usage_json(&sb, &[]);
    assert_eq!(key_entry(&uv, PLANTED)["status"], "available", "{uv:#}");

    let r3 = run(&mut sb.label(&fake2, &inputs[2], &outputs[2], &[]));
    assert_eq!(code(&r3), 0, "{}", stderr(&r3));
    assert_labeled(&outputs[2], &all[20..30]);
    assert!(
        fake2.requests_for(PLANTED) > 0,
        "the cleared key is used again: {}",
        stderr(&r3)
    );
    sb.assert_no_leak(&[&r1, &r2, &t1, &t2, &u, &r3], &[PLANTED, KEY2]);
}

#[test]
fn the_planted_key_never_reaches_state_reports_or_outputs() {
    // Every path that writes about a key: success, rotation, RPD exhaustion, 401, usage,
    // reports, test-keys, a second run restoring health.
    let mut cfg = FakeConfig::with_keys(&[PLANTED, KEY2]).limit(
        "org_0",
        OrgLimits {
            rpd: Some(4),
            ..OrgLimits::default()
        },
    );
    cfg.keys.push(FakeKey::invalid(KEY3));
    let fake = FakeProvider::start(cfg);
    fake.push_faults([
        Fault::Status(500),
        Fault::MalformedJson,
        Fault::RateLimitMinute {
            retry_after_secs: 0.05,
        },
    ]);
    let sb = Sandbox::new();
    sb.write_keys(&[PLANTED, KEY2, KEY3]);
    let texts = smsa(20);
    let (input, output) = (sb.path("in.csv"), sb.path("out.csv"));
    write_input(&input, &texts);
    let reports = sb.path("reports");
    let r1 = run(&mut sb.label(
        &fake,
        &input,
        &output,
        &[
            "-vv",
            "--status-column",
            "status",
            "--report-dir",
            reports.to_str().unwrap(),
        ],
    ));
    assert_eq!(code(&r1), 0, "{}", stderr(&r1));
    assert!(fake.requests_for(PLANTED) > 0, "the planted key was used");
    let (u1, _) = usage_json(&sb, &[]);
    let u2 = run(sb.cmd().arg("usage"));
    let t = run(sb.cmd().args(["test-keys", "--base-url", &fake.base_url()]));
    let r2 = run(&mut sb.label(&fake, &input, &sb.path("out2.csv"), &["-vv"]));
    assert_eq!(code(&r2), 0, "{}", stderr(&r2));
    assert!(
        std::fs::read_dir(&reports).unwrap().count() == 1,
        "a report was written"
    );
    assert!(sb.state().exists());
    // The state holds the key only as masked form and fingerprint.
    let state = std::fs::read(sb.state()).unwrap();
    assert!(
        contains(&state, fingerprint(PLANTED).as_bytes()) || {
            // The fingerprint may still sit in the WAL.
            sb.all_files()
                .iter()
                .any(|(_, b)| contains(b, fingerprint(PLANTED).as_bytes()))
        }
    );
    sb.assert_no_leak(&[&r1, &u1, &u2, &t, &r2], &[PLANTED, KEY2, KEY3]);
}

/// The first runs of a cron set-up start together on a state file that does not exist
/// yet (labeling runs and `usage` reports): each must wait for the others rather than
/// fail with "database is locked".
#[test]
fn concurrent_first_runs_on_a_fresh_state_file_all_finish() {
    let fake = FakeProvider::start(FakeConfig::with_keys(&[PLANTED, KEY2]));
    let all = smsa(15);
    for round in 0..40 {
        let sb = Sandbox::new();
        sb.write_keys(&[PLANTED, KEY2]);
        assert!(!sb.state().exists());
        let mut children = Vec::new();
        for i in 0..3 {
            let texts = &all[i * 5..(i + 1) * 5];
            let (input, output) = (
                sb.path(&format!("in{i}.csv")),
                sb.path(&format!("out{i}.csv")),
            );
            write_input(&input, texts);
            let cmd = sb.label(&fake, &input, &output, &[]);
            children.push((cmd, Some((output, texts.to_vec()))));
            for _ in 0..3 {
                let mut report = sb.cmd();
                report.args(["usage", "--json"]);
                children.push((report, None));
            }
        }
        let running: Vec<_> = children
            .iter_mut()
            .map(|(cmd, _)| {
                cmd.stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for (child, (_, check)) in running.into_iter().zip(&children) {
            let r = wait_with_limit(child, Duration::from_secs(60));
            assert_eq!(code(&r), 0, "round {round}: {}", stderr(&r));
            if let Some((output, texts)) = check {
                assert_labeled(output, texts);
            }
        }
    }
}
