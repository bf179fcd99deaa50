//! Tokens-per-row benchmark for `autolabel` (issue 13): how much of a free-tier token
//! quota goes to the texts and how much to the prompt, and how many rows one key labels
//! a day under Groq's free tier for llama-3.1-8b-instant (30 RPM, 14,400 RPD, 6,000 TPM,
//! 500,000 TPD).
//!
//! It runs the REAL release binary (`CARGO_BIN_EXE_autolabel`, or `BENCH_BIN`) against
//! the in-repo fake Groq (`tests/common/fake.rs`, on 127.0.0.1 only), on 900 short
//! Indonesian texts from `tests/data/` (SmSA and NusaX-Senti, see tests/data/README.md
//! for their licences): every text of at least 120 characters, cut at a word boundary
//! to at most 140 (tweet length), duplicates dropped, the first 900.
//!
//! Each variant is the README's command as a user types it, with nothing but
//! `--batch-size` added: `autolabel --input IN --output OUT [--batch-size 20|auto]`. The
//! provider's defaults stay in force (Groq, its model, its free-tier limits), so `auto`
//! chooses exactly as it would for a user. Only plumbing goes through the environment:
//! the fake's URL, a temp env file with fake keys, a temp state file; and, to finish in a
//! minute instead of 40 (900 requests at the default 2.5 s), `AUTOLABEL_DELAY=0`,
//! `AUTOLABEL_CONCURRENCY=8` and 30 keys, each in its own organization. These decide only
//! WHEN requests go, never a byte of what they carry. The fake enforces the free-tier
//! limits per organization too, so a run also shows whether the pacing draws 429s.
//!
//! Measured (the same way the figures were taken):
//! - tokens a row = (prompt + completion tokens the fake reported) ÷ rows, read back from
//!   the tool's own ledger (`autolabel usage --json`, fields `tokens_in`, `tokens_out`,
//!   `rows`); the fake counts a message's characters ÷ 4 (rounded up per request) and
//!   2 completion tokens a label;
//! - the texts' own tokens = their characters ÷ 4; the multiple is the ratio of the two;
//! - reserved tokens a row = (prompt tokens + `max_tokens`) ÷ rows: what the fake (like
//!   Groq) counts against the per-minute token limit when it admits a request.
//!
//! Rows per key per day are computed, not waited for (a day is a day): the least of
//! RPD × rows a request, RPM × 1,440 × rows a request, TPM × 1,440 ÷ reserved tokens a
//! row, and TPD ÷ tokens a row. A conservative variant also charges `max_tokens` against
//! the day (the fake does; real providers count the tokens used).
//!
//! Two more variants add the few-shot examples of `data/examples.csv` (6 balanced, the
//! default `--shots`) at batch size 1 and 20: what examples cost a row (issue 23).
//!
//! Run: `cargo bench --bench tokens` (a filter argument runs only variants whose name
//! contains it: `1`, `20`, `auto`, `shots`).

#[path = "../tests/common/fake.rs"]
mod fake;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use fake::{expected_label, FakeConfig, FakeKey, FakeProvider, OrgLimits};
use serde_json::Value;

const RPM: u64 = 30;
const RPD: u64 = 14_400;
const TPM: u64 = 6_000;
const TPD: u64 = 500_000;
const ROWS: usize = 900;
const KEYS: usize = 30;
const TIME_LIMIT: Duration = Duration::from_secs(600);

fn bin() -> String {
    std::env::var("BENCH_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_autolabel").to_string())
}

/// Obviously fake keys; they never leave 127.0.0.1.
fn keys() -> Vec<String> {
    (1..=KEYS)
        .map(|i| format!("gsk_TOKENBENCHFAKE_{i:04}_notarealkey"))
        .collect()
}

/// At most `max` characters, cut after the last whole word.
fn cut_at_word(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let head: String = text.chars().take(max + 1).collect();
    match head.rfind(' ') {
        Some(i) if i > 0 => head[..i].trim_end().to_string(),
        _ => text.chars().take(max).collect(),
    }
}

/// The 900 tweet-length texts (see the module comment).
fn texts() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for file in ["id_smsa_valid.csv", "id_nusax_senti_train.csv"] {
        let mut r = csv::Reader::from_path(dir.join(file)).expect("dataset");
        let col = r
            .headers()
            .expect("header")
            .iter()
            .position(|h| h == "text")
            .expect("text column");
        for rec in r.records() {
            let t = rec.expect("record")[col].trim().to_string();
            if t.chars().count() < 120 {
                continue;
            }
            let t = cut_at_word(&t, 140);
            if seen.insert(t.clone()) {
                out.push(t);
            }
        }
    }
    assert!(out.len() >= ROWS, "only {} texts", out.len());
    out.truncate(ROWS);
    out
}

fn write_input(path: &Path, texts: &[String]) {
    let mut w = csv::Writer::from_path(path).expect("input");
    w.write_record(["id", "text"]).expect("write");
    for (i, t) in texts.iter().enumerate() {
        w.write_record([(i + 1).to_string().as_str(), t])
            .expect("write");
    }
    w.flush().expect("flush");
}

/// Rows whose label is not the fake's answer for their text (or that are missing).
fn wrong_labels(output: &Path, texts: &[String]) -> usize {
    let Ok(mut r) = csv::Reader::from_path(output) else {
        return texts.len();
    };
    let h = r.headers().expect("header").clone();
    let (tcol, lcol) = (
        h.iter().position(|c| c == "text").expect("text"),
        h.iter().position(|c| c == "label").expect("label"),
    );
    let rows: Vec<csv::StringRecord> = r.records().map(|x| x.expect("row")).collect();
    let mut wrong = texts.len().abs_diff(rows.len());
    for (rec, text) in rows.iter().zip(texts) {
        if &rec[tcol] != text || &rec[lcol] != expected_label(text) {
            wrong += 1;
        }
    }
    wrong
}

/// Runs `cmd` to the end, killing it after `TIME_LIMIT`.
fn run(mut cmd: Command) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn autolabel");
    let start = Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if start.elapsed() > TIME_LIMIT {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "autolabel ran over {TIME_LIMIT:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

struct Sandbox {
    dir: tempfile::TempDir,
    base_url: String,
}

impl Sandbox {
    fn new(fake: &FakeProvider) -> Sandbox {
        let dir = tempfile::tempdir().expect("temp dir");
        let body: String = keys()
            .iter()
            .enumerate()
            .map(|(i, k)| format!("GROQ_API_KEY_{}={k}\n", i + 1))
            .collect();
        std::fs::write(dir.path().join("keys.env"), body).expect("env file");
        Sandbox {
            dir,
            base_url: fake.base_url(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `autolabel ARGS` in a clean environment holding only the plumbing.
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin());
        c.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .env("AUTOLABEL_BASE_URL", &self.base_url)
            .env("AUTOLABEL_ENV_FILE", self.path("keys.env"))
            .env("AUTOLABEL_STATE", self.path("state.sqlite3"))
            .env("AUTOLABEL_DELAY", "0")
            .env("AUTOLABEL_CONCURRENCY", "8")
            .current_dir(self.dir.path())
            .args(args);
        c
    }
}

/// One variant's figures.
struct Figures {
    name: String,
    batch: String,
    wrong: usize,
    rate_limited: usize,
    requests: usize,
    rows: u64,
    own: f64,
    per_row: f64,
    reserved_per_row: f64,
    rows_per_request: f64,
    elapsed: Duration,
}

impl Figures {
    fn multiple(&self) -> f64 {
        self.per_row / self.own
    }

    /// Rows per key a day and the limit that binds; `charge_reserve_daily` also charges
    /// `max_tokens` against the daily tokens.
    fn rows_per_day(&self, charge_reserve_daily: bool) -> (f64, &'static str) {
        let day_tokens = if charge_reserve_daily {
            self.reserved_per_row
        } else {
            self.per_row
        };
        [
            (RPD as f64 * self.rows_per_request, "requests per day"),
            (
                RPM as f64 * 1440.0 * self.rows_per_request,
                "requests per minute",
            ),
            (
                TPM as f64 * 1440.0 / self.reserved_per_row,
                "tokens per minute",
            ),
            (TPD as f64 / day_tokens, "tokens per day"),
        ]
        .into_iter()
        .min_by(|a, b| a.0.total_cmp(&b.0))
        .expect("four limits")
    }
}

fn measure(name: &str, extra: &[&str], texts: &[String]) -> Figures {
    let mut cfg = FakeConfig::default();
    let limits = OrgLimits {
        rpm: Some(RPM as u32),
        rpd: Some(RPD as u32),
        tpm: Some(TPM as u32),
        tpd: Some(TPD as u32),
    };
    for (i, k) in keys().iter().enumerate() {
        let org = format!("org_{i}");
        cfg.keys.push(FakeKey::new(k, &org));
        cfg.orgs.push((org, limits.clone()));
    }
    let fake = FakeProvider::start(cfg);
    let sb = Sandbox::new(&fake);
    let (input, output) = (sb.path("tweets.csv"), sb.path("tweets.labeled.csv"));
    write_input(&input, texts);
    let mut args = vec![
        "--input",
        input.to_str().expect("utf-8 path"),
        "--output",
        output.to_str().expect("utf-8 path"),
    ];
    args.extend(extra);
    let started = Instant::now();
    let out = run(sb.cmd(&args));
    let elapsed = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{name}: autolabel failed: {stderr}");
    let usage = run(sb.cmd(&["usage", "--json"]));
    let v: Value = serde_json::from_slice(&usage.stdout).expect("usage --json");
    let (mut tokens_in, mut tokens_out, mut rows) = (0u64, 0u64, 0u64);
    for k in v["keys"].as_array().expect("keys") {
        tokens_in += k["today"]["tokens_in"].as_u64().unwrap_or(0);
        tokens_out += k["today"]["tokens_out"].as_u64().unwrap_or(0);
        rows += k["today"]["rows"].as_u64().unwrap_or(0);
    }
    let reqs = fake.requests();
    let ok: Vec<_> = reqs.iter().filter(|r| r.status == 200).collect();
    let max_tokens: u64 = ok
        .iter()
        .map(|r| r.body["max_tokens"].as_u64().unwrap_or(0))
        .sum();
    let chars: usize = texts.iter().map(|t| t.chars().count()).sum();
    let batch = match stderr.lines().find(|l| l.contains("--batch-size auto:")) {
        Some(l) => {
            let chosen = l.split("--batch-size auto: ").nth(1).unwrap_or("");
            format!("auto → {}", chosen.split(" texts").next().unwrap_or("?"))
        }
        None => extra
            .iter()
            .position(|a| *a == "--batch-size")
            .map_or("1", |i| extra[i + 1])
            .to_string(),
    };
    Figures {
        name: name.to_string(),
        batch,
        wrong: wrong_labels(&output, texts),
        rate_limited: fake.count_status(429),
        requests: ok.len(),
        rows,
        own: chars as f64 / 4.0 / texts.len() as f64,
        per_row: (tokens_in + tokens_out) as f64 / rows.max(1) as f64,
        reserved_per_row: (tokens_in + max_tokens) as f64 / rows.max(1) as f64,
        rows_per_request: rows as f64 / ok.len().max(1) as f64,
        elapsed,
    }
}

fn thousands(v: f64) -> String {
    let d = (v.max(0.0) as u64).to_string();
    let mut out = String::new();
    for (i, c) in d.chars().enumerate() {
        if i > 0 && (d.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn main() {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let texts = texts();
    let chars: usize = texts.iter().map(|t| t.chars().count()).sum();
    println!(
        "{} texts, {:.1} characters = {:.1} tokens on average (characters ÷ 4)",
        texts.len(),
        chars as f64 / texts.len() as f64,
        chars as f64 / 4.0 / texts.len() as f64
    );
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/examples.csv");
    let examples = examples.to_str().expect("utf-8 path");
    let variants: [(&str, &[&str], f64); 5] = [
        ("batch 1", &[], 1.6),
        ("batch 20", &["--batch-size", "20"], 1.12),
        ("auto", &["--batch-size", "auto"], f64::INFINITY),
        ("shots 1", &["--examples", examples], f64::INFINITY),
        (
            "shots 20",
            &["--examples", examples, "--batch-size", "20"],
            f64::INFINITY,
        ),
    ];
    let mut all = Vec::new();
    for (name, extra, _) in &variants {
        if !filters.is_empty() && !filters.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        let f = measure(name, extra, &texts);
        println!(
            "{:<9} batch {:<8} {:>4} requests  {:>5.1} tokens/row = {:.3}x the texts  reserved {:>5.1}/row  rows/key/day {:>7} ({}; {:>7} if max_tokens counted daily)  wrong labels {}  429s {}  {:.1}s",
            f.name,
            f.batch,
            f.requests,
            f.per_row,
            f.multiple(),
            f.reserved_per_row,
            thousands(f.rows_per_day(false).0),
            f.rows_per_day(false).1,
            thousands(f.rows_per_day(true).0),
            f.wrong,
            f.rate_limited,
            f.elapsed.as_secs_f64()
        );
        assert_eq!(f.rows, texts.len() as u64, "{name}: ledger rows");
        all.push(f);
    }
    println!("\ntargets:");
    let mut failed = 0;
    for f in &all {
        let (target, ok) = match f.name.as_str() {
            "batch 1" => ("≤ 1.6x the texts' tokens", f.multiple() <= 1.6),
            "batch 20" => ("≤ 1.12x the texts' tokens", f.multiple() <= 1.12),
            // Examples are what the user adds on purpose: measured, no target.
            "shots 1" | "shots 20" => ("(no target: 6 examples)", true),
            _ => (
                "≥ 12,000 rows per key per day",
                f.rows_per_day(false).0 >= 12_000.0,
            ),
        };
        let ok = ok && f.wrong == 0;
        failed += usize::from(!ok);
        println!(
            "  {:<9} {target:<30} {:.3}x · {} rows/key/day · every label on its row: {}  {}",
            f.name,
            f.multiple(),
            thousands(f.rows_per_day(false).0),
            f.wrong == 0,
            if ok { "PASS" } else { "FAIL" }
        );
    }
    if failed > 0 {
        std::process::exit(1);
    }
}
