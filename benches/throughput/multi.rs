//! Several processes of the real binary at once on the same keys, sharing their limits:
//! through one state file (one machine), or through Redis, each process with its own HOME
//! and data directory as separate machines would have.
//!
//! The fake counts per-minute limits in fixed windows here (`FakeConfig::fixed_minute`),
//! so any minute in which the runs together sent more than a key allows shows up, both as
//! 429s and in the busiest minute reported per organization.

use super::*;

#[path = "../../src/store/redis/test_server.rs"]
#[allow(dead_code)] // freezing a server is for the tests
mod redis_server;
pub use redis_server::RedisServer;

/// Where the processes keep their state.
#[derive(Clone, Copy)]
pub enum Store<'a> {
    /// One state file in one sandbox, as runs on one machine share it.
    File,
    /// A Redis server; every process in a sandbox (HOME, data dir) of its own.
    Redis(&'a RedisServer),
}

impl Store<'_> {
    fn name(self) -> &'static str {
        match self {
            Store::File => "one state file",
            Store::Redis(_) => "Redis",
        }
    }
}

/// One process's part: its sandbox index, input and output, and the command to run it.
struct Part {
    sandbox: usize,
    input: PathBuf,
    output: PathBuf,
    first_text: usize,
}

/// The processes' sandboxes and parts: one shared sandbox for a file, one each for Redis.
fn lay_out(
    store: Store,
    keys: &[&str],
    procs: usize,
    rows: usize,
    base: &[String],
) -> (Vec<Sandbox>, Vec<Part>) {
    let boxes = match store {
        Store::File => 1,
        Store::Redis(_) => procs,
    };
    let sandboxes: Vec<Sandbox> = (0..boxes).map(|_| Sandbox::new(keys)).collect();
    let parts = (0..procs)
        .map(|p| {
            let sandbox = p % boxes;
            let sb = &sandboxes[sandbox];
            let input = sb.path(&format!("in{p}.csv"));
            write_input_from(&input, base, p * rows, rows);
            Part {
                sandbox,
                input,
                output: sb.path(&format!("out{p}.csv")),
                first_text: p * rows,
            }
        })
        .collect();
    (sandboxes, parts)
}

fn command(
    store: Store,
    sb: &Sandbox,
    fake: &FakeProvider,
    part: &Part,
    flags: &[&str],
) -> Command {
    let mut cmd = sb.label(fake, &part.input, &part.output, flags);
    if let Store::Redis(server) = store {
        cmd.args(["--state", &server.url(0)]);
    }
    cmd
}

/// Runs every part at once; returns their runs in order.
fn run_all(
    store: Store,
    sandboxes: &[Sandbox],
    parts: &[Part],
    fake: &FakeProvider,
    flags: &[&str],
) -> Vec<ChildRun> {
    let children: Vec<_> = parts
        .iter()
        .map(|part| {
            let cmd = command(store, &sandboxes[part.sandbox], fake, part, flags);
            std::thread::spawn(move || run_child(cmd, Duration::from_secs(600)))
        })
        .collect();
    children
        .into_iter()
        .map(|c| c.join().expect("run"))
        .collect()
}

/// Which process a recorded request came from (by its text).
fn owners(base: &[String], parts: &[Part], rows: usize) -> HashMap<String, usize> {
    let mut owner = HashMap::new();
    for (p, part) in parts.iter().enumerate() {
        for i in 0..rows {
            owner.insert(text_of(base, part.first_text + i), p);
        }
    }
    owner
}

/// The most requests one key's organization got in any fixed minute since the fake started.
fn busiest_minute(reqs: &[fake::RecordedRequest]) -> usize {
    let mut per: HashMap<(&str, u64), usize> = HashMap::new();
    for r in reqs.iter().filter(|r| r.status != 0) {
        *per.entry((r.key.as_str(), r.at.as_secs() / 60))
            .or_default() += 1;
    }
    per.values().copied().max().unwrap_or(0)
}

/// Rows of `part`'s output that are not its input's texts with the fake's labels, in
/// order, each once (`None`: all right).
fn wrong_rows(base: &[String], part: &Part, rows: usize) -> Option<usize> {
    let got = read_texts_and_labels(&part.output);
    if got.len() != rows {
        return Some(rows.abs_diff(got.len()).max(1));
    }
    let wrong = got
        .iter()
        .enumerate()
        .filter(|(i, (text, label))| {
            *text != text_of(base, part.first_text + i) || label != expected_label(text)
        })
        .count();
    (wrong > 0).then_some(wrong)
}

fn read_texts_and_labels(path: &Path) -> Vec<(String, String)> {
    let Ok(mut r) = csv::Reader::from_path(path) else {
        return Vec::new();
    };
    r.records()
        .flatten()
        .map(|rec| {
            (
                rec.get(1).unwrap_or("").to_string(),
                rec.get(2).unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// 3 processes, 3 keys × 120 RPM, `--rpm 120 --concurrency 4` as typed: the aggregate
/// rate over the steady part (all three running), 429s, and each process's share.
pub fn shared(store: Store, base: &[String], rows: usize) -> Target {
    const PROCS: usize = 3;
    let mut cfg = three_orgs(120, true);
    cfg.fixed_minute = true;
    let fake = FakeProvider::start(cfg);
    let (sandboxes, parts) = lay_out(store, &KEYS, PROCS, rows, base);
    let runs = run_all(
        store,
        &sandboxes,
        &parts,
        &fake,
        &["--rpm", "120", "--concurrency", "4"],
    );
    let reqs = fake.requests();
    let owner = owners(base, &parts, rows);
    let of = |r: &fake::RecordedRequest| r.texts.first().and_then(|t| owner.get(t)).copied();
    // The steady part: from the last process's first request to the first one's last.
    let span = |p: usize| {
        let at = reqs.iter().filter(|r| of(r) == Some(p)).map(|r| r.at);
        (
            at.clone().min().unwrap_or_default(),
            at.max().unwrap_or_default(),
        )
    };
    let spans: Vec<_> = (0..PROCS).map(span).collect();
    let from = spans.iter().map(|s| s.0).max().unwrap_or_default();
    let to = spans.iter().map(|s| s.1).min().unwrap_or_default();
    let secs = (to - from).as_secs_f64().max(1e-9);
    let steady: Vec<usize> = (0..PROCS)
        .map(|p| {
            reqs.iter()
                .filter(|r| of(r) == Some(p) && r.at >= from && r.at <= to)
                .count()
        })
        .collect();
    let total: usize = steady.iter().sum();
    let share = total as f64 / secs / 6.0;
    let r429 = fake.count_status(429);
    let shares: Vec<String> = steady
        .iter()
        .map(|n| format!("{:.1} %", *n as f64 * 100.0 / total.max(1) as f64))
        .collect();
    let fair = steady
        .iter()
        .all(|n| (*n as f64 / total.max(1) as f64 - 1.0 / 3.0).abs() <= 0.2 / 3.0);
    let busiest = busiest_minute(&reqs);
    let wrong: usize = parts.iter().filter_map(|p| wrong_rows(base, p, rows)).sum();
    let ok = runs.iter().all(|r| r.code == Some(0)) && wrong == 0;
    println!(
        "shared   3 processes x {rows} rows, {}: steady {secs:.1} s, {:.2} req/s = {:.1} % of the 6 req/s the keys allow, {r429} x 429, busiest fixed minute of an org {busiest} (limit 120), shares {}, {wrong} wrong rows (exits {:?})",
        store.name(),
        total as f64 / secs,
        share * 100.0,
        shares.join(" / "),
        runs.iter().map(|r| r.code).collect::<Vec<_>>()
    );
    Target {
        what: format!(
            "shared, {}: 3 processes, >= 95 % of 6 req/s, 0 x 429, each within +-20 % of a third",
            store.name()
        ),
        measured: format!(
            "{:.1} %, {r429} x 429, busiest minute {busiest}/120, shares {}",
            share * 100.0,
            shares.join(" / ")
        ),
        met: ok && share >= 0.95 && r429 == 0 && fair && busiest <= 120,
    }
}

/// 2 processes on one key that allows 100 requests a day (the fake states it in its
/// headers, as Groq does): together at most 100, no daily 429, the rest fall back.
pub fn daily(store: Store, base: &[String]) -> Target {
    const PROCS: usize = 2;
    let rows = 100;
    let mut cfg = FakeConfig {
        keys: vec![FakeKey::new(KEYS[0], "org_0")],
        latency: Duration::from_millis(200),
        jitter: Duration::from_millis(50),
        fixed_minute: true,
        ..FakeConfig::default()
    };
    cfg = cfg.limit(
        "org_0",
        OrgLimits {
            rpm: Some(120),
            rpd: Some(100),
            tpm: Some(STATED_TPM),
            ..OrgLimits::default()
        },
    );
    let fake = FakeProvider::start(cfg);
    let (sandboxes, parts) = lay_out(store, &KEYS[..1], PROCS, rows, base);
    let runs = run_all(
        store,
        &sandboxes,
        &parts,
        &fake,
        &[
            "--rpm",
            "120",
            "--concurrency",
            "4",
            "--status-column",
            "status",
        ],
    );
    let sent = fake.total_requests();
    let r429 = fake.count_status(429);
    let mut statuses: Vec<(u16, usize)> = Vec::new();
    for r in fake.requests() {
        match statuses.iter_mut().find(|(s, _)| *s == r.status) {
            Some((_, n)) => *n += 1,
            None => statuses.push((r.status, 1)),
        }
    }
    println!("         daily: replies by status {statuses:?}");
    let (mut written, mut labeled) = (0, 0);
    for part in &parts {
        if let Ok(mut r) = csv::Reader::from_path(&part.output) {
            for rec in r.records().flatten() {
                written += 1;
                labeled += usize::from(rec.get(3) == Some("model"));
            }
        }
    }
    let exits: Vec<Option<i32>> = runs.iter().map(|r| r.code).collect();
    println!(
        "daily    2 processes x {rows} rows on one key allowing 100 a day, {}: {sent} requests, {r429} x 429, {written} rows written, {labeled} by the model, the rest fallback (exits {exits:?})",
        store.name()
    );
    Target {
        what: format!(
            "daily, {}: 2 processes on a key with RPD 100: at most 100 requests, 0 x 429",
            store.name()
        ),
        measured: format!(
            "{sent} requests, {r429} x 429, {labeled} rows by the model, {} fallback",
            written - labeled
        ),
        met: sent <= 100
            && r429 == 0
            && written == 2 * rows
            && labeled == sent
            && runs.iter().all(|r| r.code == Some(3)),
    }
}

/// 3 processes through Redis; Redis is killed 15 s in and restarted empty 5 s later.
/// Every run completes (a run that stopped is run again, as cron would), no row is lost
/// or labeled twice, and no request goes while Redis is down.
pub fn outage(base: &[String], rows: usize) -> Target {
    const PROCS: usize = 3;
    let mut server = RedisServer::start();
    let mut cfg = three_orgs(120, true);
    cfg.fixed_minute = true;
    let fake = FakeProvider::start(cfg);
    let store = Store::Redis(&server);
    let (sandboxes, parts) = lay_out(store, &KEYS, PROCS, rows, base);
    let flags = ["--rpm", "120", "--concurrency", "4"];
    let children: Vec<_> = parts
        .iter()
        .map(|part| {
            let cmd = command(store, &sandboxes[part.sandbox], &fake, part, &flags);
            std::thread::spawn(move || run_child(cmd, Duration::from_secs(600)))
        })
        .collect();
    std::thread::sleep(Duration::from_secs(15));
    server.kill();
    let down = fake.elapsed();
    std::thread::sleep(Duration::from_secs(5));
    let up = fake.elapsed();
    server.restart();
    let runs: Vec<ChildRun> = children
        .into_iter()
        .map(|c| c.join().expect("run"))
        .collect();
    let mut exits: Vec<Option<i32>> = runs.iter().map(|r| r.code).collect();
    let mut reruns = 0;
    for (p, part) in parts.iter().enumerate() {
        if exits[p] != Some(0) {
            reruns += 1;
            let cmd = command(
                Store::Redis(&server),
                &sandboxes[part.sandbox],
                &fake,
                part,
                &flags,
            );
            exits[p] = run_child(cmd, Duration::from_secs(600)).code;
        }
    }
    let reqs = fake.requests();
    let while_down = reqs
        .iter()
        .filter(|r| r.at > down + Duration::from_millis(100) && r.at < up)
        .count();
    let wrong: usize = parts.iter().filter_map(|p| wrong_rows(base, p, rows)).sum();
    let extra = fake.total_requests().saturating_sub(PROCS * rows);
    let r429 = fake.count_status(429);
    println!(
        "outage   3 processes x {rows} rows through Redis, killed 5 s mid-run: {while_down} requests while down, {wrong} rows lost/duplicated/wrong, {extra} requests beyond one per row, {r429} x 429, {reruns} reruns (exits {exits:?})",
    );
    Target {
        what: "outage: Redis killed 5 s mid-run: 0 rows lost or duplicated, 0 requests while down, every run completes".into(),
        measured: format!(
            "{wrong} rows wrong, {while_down} requests while down, {reruns} reruns, exits {exits:?}"
        ),
        met: wrong == 0 && while_down == 0 && exits.iter().all(|c| *c == Some(0)),
    }
}

/// 2 processes on one key allowing 600 requests a minute, both `--concurrency 4` (200 ms
/// replies: each alone would send 20 a second, twice what the key allows), one
/// `--priority high` and one `--priority low`: while both run, the high one's share of
/// the requests, the aggregate rate against the 10 a second allowed, and 429s.
pub fn priority(store: Store, base: &[String], rows: usize) -> Target {
    let cfg = FakeConfig {
        keys: vec![FakeKey::new(KEYS[0], "org_0")],
        latency: Duration::from_millis(200),
        jitter: Duration::from_millis(50),
        fixed_minute: true,
        ..FakeConfig::default()
    };
    let cfg = cfg.limit(
        "org_0",
        OrgLimits {
            rpm: Some(600),
            tpm: Some(STATED_TPM),
            ..OrgLimits::default()
        },
    );
    let fake = FakeProvider::start(cfg);
    let (sandboxes, parts) = lay_out(store, &KEYS[..1], 2, rows, base);
    let children: Vec<_> = parts
        .iter()
        .zip(["high", "low"])
        .map(|(part, priority)| {
            let flags = ["--rpm", "600", "--concurrency", "4", "--priority", priority];
            let cmd = command(store, &sandboxes[part.sandbox], &fake, part, &flags);
            std::thread::spawn(move || run_child(cmd, Duration::from_secs(600)))
        })
        .collect();
    let runs: Vec<ChildRun> = children
        .into_iter()
        .map(|c| c.join().expect("run"))
        .collect();
    let reqs = fake.requests();
    let owner = owners(base, &parts, rows);
    let of = |r: &fake::RecordedRequest| r.texts.first().and_then(|t| owner.get(t)).copied();
    // Both running: from the later first request to the earlier last one.
    let span = |p: usize| {
        let at = reqs.iter().filter(|r| of(r) == Some(p)).map(|r| r.at);
        (
            at.clone().min().unwrap_or_default(),
            at.max().unwrap_or_default(),
        )
    };
    let (a, b) = (span(0), span(1));
    let (from, to) = (a.0.max(b.0), a.1.min(b.1));
    let secs = (to - from).as_secs_f64().max(1e-9);
    let during = |p: usize| {
        reqs.iter()
            .filter(|r| of(r) == Some(p) && r.at >= from && r.at <= to)
            .count()
    };
    let (high, low) = (during(0), during(1));
    let total = (high + low).max(1);
    let high_share = high as f64 / total as f64;
    let rate = total as f64 / secs / 10.0;
    let r429 = fake.count_status(429);
    let wrong: usize = parts.iter().filter_map(|p| wrong_rows(base, p, rows)).sum();
    let exits: Vec<Option<i32>> = runs.iter().map(|r| r.code).collect();
    println!(
        "priority 2 processes x {rows} rows on one key (600 RPM), high and low, {}: both running {secs:.1} s, high {high} / low {low} requests = {:.1} % / {:.1} %, {:.2} req/s = {:.1} % of the 10 req/s the key allows, {r429} x 429, {wrong} wrong rows (exits {exits:?})",
        store.name(),
        high_share * 100.0,
        100.0 - high_share * 100.0,
        total as f64 / secs,
        rate * 100.0,
    );
    // The low run is owed one slot in twenty (--min-share 5); over a ~30 s window that is
    // ~16 requests, so one fewer is within what the window's edges decide.
    let low_owed = (low + 1) as f64 >= 0.05 * total as f64;
    Target {
        what: format!(
            "priority, {}: high >= 90 % while both run, low >= 5 % (within one request), >= 95 % of 10 req/s, 0 x 429",
            store.name()
        ),
        measured: format!(
            "high {:.1} % / low {:.1} % ({low} requests), {:.1} % of the rate, {r429} x 429",
            high_share * 100.0,
            100.0 - high_share * 100.0,
            rate * 100.0
        ),
        met: high_share >= 0.9
            && low_owed
            && rate >= 0.95
            && r429 == 0
            && wrong == 0
            && exits.iter().all(|c| *c == Some(0)),
    }
}
