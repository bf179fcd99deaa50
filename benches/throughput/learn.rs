//! What the tool learns that a provider does not say (issue 21), against fakes that
//! behave like the real servers the fake never imitated before: keys sharing one
//! organization, a proxy whose 429s give no wait, a key rejected with an odd 400, and a
//! paid-tier key whose day limits nobody states. Every run passes what a user types
//! (no `--org-groups`), with `--status-column` to count the fallback rows.

use super::*;

use fake::SHARED_ORG;

/// Rows of `output` whose status column says `fallback` (`None` without an output).
fn fallback_rows(output: &Path) -> Option<usize> {
    let mut r = csv::Reader::from_path(output).ok()?;
    let col = r.headers().ok()?.iter().position(|c| c == "status")?;
    Some(
        r.records()
            .filter_map(Result::ok)
            .filter(|rec| rec.get(col) == Some("fallback"))
            .count(),
    )
}

/// Successful requests a minute from `from` to the last request.
fn ok_per_minute_from(reqs: &[fake::RecordedRequest], from: Duration) -> f64 {
    let end = reqs.iter().map(|r| r.at).max().unwrap_or(from);
    let ok = reqs
        .iter()
        .filter(|r| r.at >= from && r.status == 200)
        .count();
    ok as f64 * 60.0 / (end.saturating_sub(from)).as_secs_f64().max(1.0)
}

fn latency(cfg: FakeConfig) -> FakeConfig {
    FakeConfig {
        latency: Duration::from_millis(200),
        jitter: Duration::from_millis(50),
        ..cfg
    }
}

/// Runs `cmd` (labeling `rows` rows of `base` into `output`) with a time limit; one line.
fn run_line(
    name: &'static str,
    cmd: Command,
    fakes: &[&FakeProvider],
    output: &Path,
    base: &[String],
    rows: usize,
    limit: Duration,
) -> Line {
    let run = run_child(cmd, limit);
    let line = Line {
        name,
        rows,
        requests: fakes.iter().map(|f| f.total_requests()).sum(),
        r429: fakes.iter().map(|f| f.count_status(429)).sum(),
        max: None,
        wrong: wrong_labels(output, base, rows),
        run,
    };
    line.print();
    line
}

/// 3 keys of one organization allowing 60 requests a minute in all; the user types
/// `--rpm 60 --concurrency 4` (the figure is per key, as they believe).
pub fn shared_org(base: &[String]) -> Target {
    let rows = scaled(300, 60);
    let sb = Sandbox::new(&KEYS);
    let (input, output) = (sb.path("in.csv"), sb.path("out.csv"));
    write_input(&input, base, rows);
    let fake = FakeProvider::start(latency(FakeConfig::shared_org(&KEYS, 60)));
    let flags = [
        "--rpm",
        "60",
        "--concurrency",
        "4",
        "--status-column",
        "status",
    ];
    let limit = Duration::from_secs(rows as u64 * 3 + 120);
    let line = run_line(
        "org-shared",
        sb.label(&fake, &input, &output, &flags),
        &[&fake],
        &output,
        base,
        rows,
        limit,
    );
    let reqs = fake.requests();
    // Learned: from the first success after the last 429 on.
    let last429 = reqs.iter().filter(|r| r.status == 429).map(|r| r.at).max();
    let learned = last429
        .and_then(|t| {
            reqs.iter()
                .find(|r| r.at > t && r.status == 200)
                .map(|r| r.at)
        })
        .unwrap_or_default();
    let rate = ok_per_minute_from(&reqs, learned);
    let share = line.r429 as f64 / line.requests.max(1) as f64;
    let fallbacks = fallback_rows(&output);
    println!(
        "         org-shared: {rate:.1} a minute of 60 once learned (from {:.0} s), {} x 429 = {:.2} % of {} requests, {} fallback rows ({SHARED_ORG})",
        learned.as_secs_f64(),
        line.r429,
        share * 100.0,
        line.requests,
        fallbacks.map_or("?".into(), |n| n.to_string())
    );
    Target {
        what: "org-shared: 3 keys of one 60 RPM org: >= 95 % of 60/min once learned, <= 3 % 429s, 0 fallback".into(),
        measured: format!(
            "{:.1} % of 60/min, {:.2} % 429s ({}/{}), {} fallback",
            rate / 60.0 * 100.0,
            share * 100.0,
            line.r429,
            line.requests,
            fallbacks.map_or("?".into(), |n| n.to_string())
        ),
        met: line.ok() && rate >= 57.0 && share <= 0.03 && fallbacks == Some(0),
    }
}

/// A proxy allowing 120 requests a minute that says nothing: no headers, and 429s with
/// no wait. The user types `--provider openai --concurrency 4` (OpenAI-compatible).
pub fn bare_429(base: &[String]) -> Target {
    let rows = scaled(600, 150);
    let sb = Sandbox::new(&[]);
    let fake = FakeProvider::start(latency(FakeConfig {
        bare_429: true,
        ..FakeConfig::single_org(
            &KEYS[..1],
            "org_proxy",
            OrgLimits {
                rpm: Some(120),
                ..OrgLimits::default()
            },
        )
    }));
    std::fs::write(
        sb.path("keys.env"),
        format!("OPENAI_API_KEY_1={}\n", KEYS[0]),
    )
    .expect("env file");
    let (input, output) = (sb.path("in.csv"), sb.path("out.csv"));
    write_input(&input, base, rows);
    let flags = [
        "--provider",
        "openai",
        "--concurrency",
        "4",
        "--status-column",
        "status",
    ];
    let limit = Duration::from_secs(rows as u64 + 180);
    let line = run_line(
        "bare429",
        sb.label(&fake, &input, &output, &flags),
        &[&fake],
        &output,
        base,
        rows,
        limit,
    );
    let reqs = fake.requests();
    let rate = ok_per_minute_from(&reqs, Duration::from_secs(120));
    let after: Vec<_> = reqs
        .iter()
        .filter(|r| r.at >= Duration::from_secs(120))
        .collect();
    let after429 = after.iter().filter(|r| r.status == 429).count();
    println!(
        "         bare429: {rate:.1} a minute of 120 after the first two minutes, {after429} x 429 in {} requests then; {} x 429 in all",
        after.len(),
        line.r429
    );
    Target {
        what: "bare429: unstated 120 RPM, 429s without a wait: >= 90 % of 120/min after 2 min"
            .into(),
        measured: format!(
            "{:.1} % of 120/min, {after429} x 429 of {} requests after 2 min, {} fallback",
            rate / 120.0 * 100.0,
            after.len(),
            fallback_rows(&output).map_or("?".into(), |n| n.to_string())
        ),
        met: line.ok() && rate >= 108.0 && fallback_rows(&output) == Some(0),
    }
}

/// Two keys, the second rejected with `400 No connected db.`; as typed: `--rpm 300
/// --concurrency 8`.
pub fn bad_key(base: &[String]) -> Target {
    let rows = scaled(200, 60);
    let sb = Sandbox::new(&KEYS[..2]);
    let fake = FakeProvider::start(latency(FakeConfig {
        keys: vec![
            FakeKey::new(KEYS[0], "org_0"),
            FakeKey::rejected(KEYS[1], "org_1", 400, "No connected db."),
        ],
        ..FakeConfig::default()
    }));
    let (input, output) = (sb.path("in.csv"), sb.path("out.csv"));
    write_input(&input, base, rows);
    let mut flags = AS_TYPED.to_vec();
    flags.extend(["--status-column", "status"]);
    let limit = Duration::from_secs(rows as u64 + 120);
    let line = run_line(
        "badkey",
        sb.label(&fake, &input, &output, &flags),
        &[&fake],
        &output,
        base,
        rows,
        limit,
    );
    let reqs = fake.requests();
    // Requests on the bad key before the good key's second success: the set-aside; the
    // rest are its probes (one per set-aside period).
    let bad: Vec<Duration> = reqs
        .iter()
        .filter(|r| r.key == KEYS[1])
        .map(|r| r.at)
        .collect();
    let first_gap = bad
        .windows(2)
        .position(|w| w[1] - w[0] > Duration::from_secs(5));
    let before_aside = first_gap.map_or(bad.len(), |i| i + 1);
    let fallbacks = fallback_rows(&output);
    println!(
        "         badkey: {} requests on the rejected key ({before_aside} before it was set aside), {} fallback rows",
        bad.len(),
        fallbacks.map_or("?".into(), |n| n.to_string())
    );
    Target {
        what:
            "badkey: one of two keys gets 400: 0 fallback rows, the key set aside within 5 requests"
                .into(),
        measured: format!(
            "{} fallback, set aside after {before_aside} requests ({} in all)",
            fallbacks.map_or("?".into(), |n| n.to_string()),
            bad.len()
        ),
        met: line.ok() && fallbacks == Some(0) && before_aside <= 5,
    }
}

/// A paid-tier key: 10,000,000 tokens a minute and 500,000 requests a day stated, tokens
/// a day never stated; as typed: `--rpm 10000 --concurrency 64`; 20,000 rows.
pub fn paid_tier(base: &[String]) -> Target {
    let rows = scaled(20_000, 2_000);
    let sb = Sandbox::new(&KEYS[..1]);
    let fake = FakeProvider::start(FakeConfig {
        record: false,
        ..latency(FakeConfig::single_org(
            &KEYS[..1],
            "org_paid",
            OrgLimits {
                rpd: Some(500_000),
                tpm: Some(STATED_TPM),
                ..OrgLimits::default()
            },
        ))
    });
    let (input, output) = (sb.path("in.csv"), sb.path("out.csv"));
    write_input(&input, base, rows);
    let flags = [
        "--rpm",
        "10000",
        "--concurrency",
        "64",
        "--status-column",
        "status",
    ];
    let limit = Duration::from_secs(rows as u64 / 20 + 180);
    let line = run_line(
        "paidtier",
        sb.label(&fake, &input, &output, &flags),
        &[&fake],
        &output,
        base,
        rows,
        limit,
    );
    let fallbacks = fallback_rows(&output);
    println!(
        "         paidtier: {} fallback rows, exit {:?}",
        fallbacks.map_or("?".into(), |n| n.to_string()),
        line.run.code
    );
    Target {
        what: format!("paidtier: {rows} rows on a key stating 10M TPM: 0 fallback, exit 0"),
        measured: format!(
            "{} fallback, exit {:?}, {:.1} rows/s",
            fallbacks.map_or("?".into(), |n| n.to_string()),
            line.run.code,
            line.rows_s()
        ),
        met: line.ok() && fallbacks == Some(0),
    }
}
