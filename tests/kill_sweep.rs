//! The kill sweep: a 2,000-row job is killed with SIGKILL at 20 points spread over its
//! run — ten while batches are labeled, ten while an earlier run's fallback rows are
//! re-labeled (the rewrite into a temp file) — and after each kill the same command runs
//! again. At the end the output must be byte-identical to an uninterrupted run's, no
//! row that had reached the output may have been asked again, and the state must be
//! readable.

mod common;

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::*;

const ROWS: usize = 2_000;
/// The fake's daily request limit in the first stage: 150 batches of 10 rows, then every
/// further row falls back (`--on-exhausted fallback`).
const DAY_LIMIT: u32 = 150;
/// The first stage's kills fall within its first 1,200 rows: each kill may waste the
/// two requests in flight, and the limit leaves room for that (10 × 2 × 10 rows).
const STAGE_1_ROWS: usize = 1_200;

/// 2,000 distinct one-line texts from the three datasets in tests/data.
fn texts() -> Vec<String> {
    let mut seen = HashSet::new();
    [
        "id_smsa_valid.csv",
        "en_tweeteval_sentiment_val.csv",
        "id_nusax_senti_train.csv",
    ]
    .iter()
    .flat_map(|f| dataset_texts(f))
    .filter(|t| !t.contains(['\n', '\r']) && !t.trim().is_empty())
    .filter(|t| seen.insert(t.clone()))
    .take(ROWS)
    .collect()
}

fn args() -> Vec<&'static str> {
    vec![
        "--batch-size",
        "10",
        "--concurrency",
        "2",
        "--rpd",
        "1000000",
        "--tpd",
        "1000000000",
    ]
}

fn fake_config(day_limit: Option<u32>) -> FakeConfig {
    let mut cfg = FakeConfig::with_keys(&[PLANTED]);
    cfg.latency = Duration::from_millis(15);
    if let Some(rpd) = day_limit {
        cfg = cfg.limit(
            "org_0",
            OrgLimits {
                rpd: Some(rpd),
                ..OrgLimits::default()
            },
        );
    }
    cfg
}

/// Starts the command and SIGKILLs it once `watched` has `rows` complete rows.
fn kill_at(
    sb: &Sandbox,
    fake: &FakeProvider,
    input: &Path,
    output: &Path,
    watched: &Path,
    rows: usize,
) {
    let mut child: Child = sb
        .label(fake, input, output, &args())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    // A killed rewrite leaves its temp file behind until the new run starts it again:
    // wait for that first, so the kill lands in this run's rewrite.
    while complete_rows(watched) >= rows {
        assert!(child.try_wait().unwrap().is_none(), "the run ended at once");
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the stale file stays"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    while complete_rows(watched) < rows {
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "the run ended ({status}) before {} had {rows} rows",
                watched.display()
            );
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no progress to {rows} rows"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
}

/// Rows of the output the state does not list as fallback rows: these reached the
/// output with the model's label and must never be asked again.
fn finished_texts(output: &Path, state: &Path, texts: &[String]) -> HashSet<String> {
    let done = complete_rows(output);
    let fallback: BTreeSet<i64> = {
        let conn = rusqlite::Connection::open(state).unwrap();
        let id = std::path::absolute(output).unwrap().display().to_string();
        let mut stmt = conn
            .prepare("SELECT row FROM fallback_rows WHERE output = ?1")
            .unwrap();
        stmt.query_map([id], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    (0..done)
        .filter(|i| !fallback.contains(&(*i as i64)))
        .map(|i| texts[i].clone())
        .collect()
}

struct Sweep {
    fake: FakeProvider,
    sb: Sandbox,
    texts: Vec<String>,
    input: PathBuf,
    output: PathBuf,
    /// Texts that had reached the output (with a model label) by each request index.
    finished_at: Vec<(usize, HashSet<String>)>,
}

impl Sweep {
    fn kill_at(&mut self, watched: &Path, rows: usize) {
        kill_at(
            &self.sb,
            &self.fake,
            &self.input,
            &self.output,
            watched,
            rows,
        );
        self.snapshot();
    }

    fn run(&mut self) -> std::process::Output {
        let out = run(&mut self
            .sb
            .label(&self.fake, &self.input, &self.output, &args()));
        self.snapshot();
        out
    }

    fn snapshot(&mut self) {
        let finished = finished_texts(&self.output, &self.sb.state(), &self.texts);
        self.finished_at
            .push((self.fake.requests().len(), finished));
    }
}

#[test]
fn kill_sweep_loses_repeats_and_reorders_nothing() {
    let texts = texts();
    assert_eq!(texts.len(), ROWS);

    // The uninterrupted run the swept output must equal, byte for byte.
    let reference = {
        let fake = FakeProvider::start(fake_config(None));
        let sb = Sandbox::new();
        sb.write_keys(&[PLANTED]);
        let (input, output) = (sb.path("in.csv"), sb.path("out.csv"));
        write_input(&input, &texts);
        let out = run(&mut sb.label(&fake, &input, &output, &args()));
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        assert_labeled(&output, &texts);
        std::fs::read(&output).unwrap()
    };

    let fake = FakeProvider::start(fake_config(Some(DAY_LIMIT)));
    let sb = Sandbox::new();
    sb.write_keys(&[PLANTED]);
    let (input, output) = (sb.path("in.csv"), sb.path("out.csv"));
    write_input(&input, &texts);
    let mut sweep = Sweep {
        fake,
        sb,
        texts: texts.clone(),
        input,
        output: output.clone(),
        finished_at: Vec::new(),
    };

    // Stage 1: ten kills while batches are labeled, then a run that meets the day limit
    // and gives every row after it the fallback label.
    for i in 1..=10 {
        sweep.kill_at(&output, i * STAGE_1_ROWS / 11);
    }
    let out = sweep.run();
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert_eq!(complete_rows(&output), ROWS);
    let fallbacks = ROWS - finished_texts(&output, &sweep.sb.state(), &texts).len();
    assert!(
        fallbacks >= ROWS - DAY_LIMIT as usize * 10,
        "{fallbacks} fallback rows"
    );

    // The provider's day resets; a passing chat clears the key's stored exhaustion.
    sweep.fake.reset_day();
    sweep.fake.set_limits("org_0", OrgLimits::default());
    let check = run(sweep
        .sb
        .cmd()
        .args(["test-keys", "--chat", "--base-url"])
        .arg(sweep.fake.base_url()));
    assert_eq!(code(&check), 0, "{}", stdout(&check));

    // Stage 2: ten kills while the fallback rows are re-labeled into the temp file that
    // replaces the output when done.
    let temp = sweep.sb.path("out.csv.autolabel-tmp");
    let kept = ROWS - fallbacks;
    for i in 1..=10 {
        sweep.kill_at(&temp, kept + i * fallbacks / 11);
        assert_eq!(
            complete_rows(&output),
            ROWS,
            "a killed rewrite leaves the output whole"
        );
    }
    let out = sweep.run();
    assert_eq!(code(&out), 0, "{}", stderr(&out));

    // 0 rows lost, duplicated or reordered: byte-identical to the uninterrupted run.
    assert_labeled(&output, &texts);
    assert!(
        std::fs::read(&output).unwrap() == reference,
        "the swept output differs from the uninterrupted run's"
    );
    assert!(!temp.exists(), "no temp file left");
    assert!(!sweep.sb.path("out.csv.lock").exists(), "no lock file left");

    // No request after a snapshot asked for a row that had reached the output by then.
    let requests = sweep.fake.requests();
    for (at, finished) in &sweep.finished_at {
        for r in &requests[*at..] {
            for t in &r.texts {
                assert!(
                    !finished.contains(t),
                    "asked again after it reached the output: {t}"
                );
            }
        }
    }
    // Every row was answered by the model at some point (test-keys' chat aside).
    let all: HashSet<&String> = texts.iter().collect();
    let answered: HashSet<&String> = requests
        .iter()
        .filter(|r| r.status == 200)
        .flat_map(|r| &r.texts)
        .filter(|t| all.contains(t))
        .collect();
    assert_eq!(answered.len(), ROWS);

    // The state is readable after twenty SIGKILLs.
    let usage = run(sweep.sb.cmd().args(["usage", "--json"]));
    assert_eq!(code(&usage), 0, "{}", stderr(&usage));
    let v: serde_json::Value = serde_json::from_slice(&usage.stdout).unwrap();
    // The ledger is written every half second, so a SIGKILL loses what the run sent
    // since; it never counts a request that was not sent.
    let recorded = v["keys"][0]["today"]["requests"].as_u64().unwrap();
    let sent = sweep.fake.requests_for(PLANTED) as u64;
    assert!(
        recorded > 0 && recorded <= sent,
        "{recorded} recorded, {sent} sent: {v}"
    );
    sweep.sb.assert_no_leak(&[&out, &usage, &check], &[PLANTED]);
}
