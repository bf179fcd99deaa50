//! One pool across providers (`--provider groq,gemini,openrouter`): three fakes on
//! 127.0.0.1, one per provider, each with its own keys and limits. The pool uses every
//! provider at once without a 429, shares the requests by capacity, lets a provider whose
//! daily quota is spent or whose model is gone drop out while the others finish, and
//! writes every row once, in order. (Rates are measured in `benches/throughput.rs`.)

mod common;

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use common::*;

const GROQ_1: &str = "gsk_POOLFAKEGROQ_0001_secretpart_pq1";
const GROQ_2: &str = "gsk_POOLFAKEGROQ_0002_secretpart_pq2";
const GEMINI: &str = "AIzaPOOLFAKEGMN_0001_secretpart_gm1";
const OPENROUTER: &str = "sk-or-v1-POOLFAKEOR_0001_secretpart_or1";
const ALL_KEYS: [&str; 4] = [GROQ_1, GROQ_2, GEMINI, OPENROUTER];

/// The models the fakes serve: each provider's default, so the env file names none.
const GROQ_MODEL: &str = "llama-3.1-8b-instant";
const GEMINI_MODEL: &str = "gemini-2.0-flash";
const OPENROUTER_MODEL: &str = "meta-llama/llama-3.3-70b-instruct:free";

/// Per-minute limits ten times those of the example (2 × 60, 15, 20), so that a
/// test takes seconds: the shares are the same.
const GROQ_RPM: u32 = 600;
const GEMINI_RPM: u32 = 150;
const OPENROUTER_RPM: u32 = 200;

struct Pool {
    groq: FakeProvider,
    gemini: FakeProvider,
    openrouter: FakeProvider,
    sb: Sandbox,
    texts: Vec<String>,
    input: std::path::PathBuf,
    output: std::path::PathBuf,
}

fn fake(keys: &[(&str, &str)], model: &str, rpm: u32, rpd: Option<u32>) -> FakeProvider {
    let mut cfg = FakeConfig {
        keys: keys.iter().map(|(k, org)| FakeKey::new(k, org)).collect(),
        model: model.to_string(),
        latency: Duration::from_millis(20),
        strict_model: true,
        ..FakeConfig::default()
    };
    for (_, org) in keys {
        cfg = cfg.limit(
            org,
            OrgLimits {
                rpm: Some(rpm),
                rpd,
                ..Default::default()
            },
        );
    }
    FakeProvider::start(cfg)
}

/// Three fakes and an env file that holds each provider's keys, base URL and limits, as a
/// user writes it (`extra` lines are appended, e.g. a model or a daily quota).
fn pool(rows: usize, openrouter_rpd: u32, extra: &str) -> Pool {
    let groq = fake(
        &[(GROQ_1, "groq_org_1"), (GROQ_2, "groq_org_2")],
        GROQ_MODEL,
        GROQ_RPM,
        None,
    );
    let gemini = fake(&[(GEMINI, "gemini_org")], GEMINI_MODEL, GEMINI_RPM, None);
    let openrouter = fake(
        &[(OPENROUTER, "openrouter_org")],
        OPENROUTER_MODEL,
        OPENROUTER_RPM,
        Some(openrouter_rpd),
    );
    let sb = Sandbox::new();
    let env = format!(
        "GROQ_API_KEY_1={GROQ_1}\nGROQ_API_KEY_2={GROQ_2}\nGROQ_BASE_URL={}\nGROQ_RPM={GROQ_RPM}\nGROQ_TPM=100000000\n\
         GEMINI_API_KEY={GEMINI}\nGEMINI_BASE_URL={}\nGEMINI_RPM={GEMINI_RPM}\n\
         OPENROUTER_API_KEY={OPENROUTER}\nOPENROUTER_BASE_URL={}\nOPENROUTER_RPM={OPENROUTER_RPM}\nOPENROUTER_RPD={openrouter_rpd}\n{extra}",
        groq.base_url(),
        gemini.base_url(),
        openrouter.base_url()
    );
    std::fs::write(sb.env_file(), env).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(sb.env_file(), std::fs::Permissions::from_mode(0o600)).unwrap();
    let texts = smsa(rows);
    let (input, output) = (sb.path("in.csv"), sb.path("out.csv"));
    write_input(&input, &texts);
    Pool {
        groq,
        gemini,
        openrouter,
        sb,
        texts,
        input,
        output,
    }
}

impl Pool {
    /// The sandbox's command without its test-speed groq limits (the env file has them).
    fn cmd(&self) -> Command {
        let mut c = self.sb.cmd();
        c.env_remove("GROQ_RPM").env_remove("GROQ_TPM");
        c
    }

    /// `autolabel --provider groq,gemini,openrouter -i IN -o OUT --delay 0 --concurrency 8 <extra>`
    fn label(&self, extra: &[&str]) -> Command {
        let mut c = self.cmd();
        c.args(["--provider", "groq,gemini,openrouter"])
            .arg("--input")
            .arg(&self.input)
            .arg("--output")
            .arg(&self.output)
            .args(["--delay", "0", "--concurrency", "8", "--no-cache"])
            .args(extra);
        c
    }

    /// Successful chat requests per provider.
    fn served(&self) -> [usize; 3] {
        [&self.groq, &self.gemini, &self.openrouter].map(|f| f.count_status(200))
    }

    fn all_429s(&self) -> usize {
        [&self.groq, &self.gemini, &self.openrouter]
            .iter()
            .map(|f| f.count_status(429))
            .sum()
    }
}

/// Every pair of providers had requests in flight during a common stretch of time: their
/// first-to-last spans overlap (all fakes started within milliseconds of each other).
fn assert_overlapped(fakes: &[(&str, &FakeProvider)]) {
    let span = |f: &FakeProvider| {
        let ok: Vec<Duration> = f
            .requests()
            .iter()
            .filter(|r| r.status == 200)
            .map(|r| r.at)
            .collect();
        (*ok.first().unwrap(), *ok.last().unwrap())
    };
    for (i, (a, fa)) in fakes.iter().enumerate() {
        for (b, fb) in &fakes[i + 1..] {
            let ((a0, a1), (b0, b1)) = (span(fa), span(fb));
            assert!(
                a0 < b1 + Duration::from_millis(50) && b0 < a1 + Duration::from_millis(50),
                "{a} served {a0:?}..{a1:?} and {b} {b0:?}..{b1:?}: not at the same time"
            );
        }
    }
}

#[test]
fn the_pool_draws_on_every_provider_at_once_in_proportion_to_capacity_without_a_429() {
    let p = pool(240, 10_000, "");
    let out = run(&mut p.label(&["--model-column", "model"]));
    let err = stderr(&out);
    assert_eq!(code(&out), 0, "{err}");
    assert_eq!(p.all_429s(), 0, "{err}");
    // Every row once, in order, with the label the text deserves and the model that gave it.
    let rows = read_rows(&p.output);
    assert_eq!(rows[0], ["id", "text", "label", "model"]);
    assert_eq!(rows.len() - 1, p.texts.len());
    let mut by_model: HashMap<String, usize> = HashMap::new();
    for (i, (row, text)) in rows[1..].iter().zip(&p.texts).enumerate() {
        assert_eq!(row[0], (i + 1).to_string(), "row {i} order");
        assert_eq!(&row[1], text);
        assert_eq!(row[2], expected_label(text), "row {i}");
        *by_model.entry(row[3].clone()).or_default() += 1;
    }
    let served = p.served();
    assert_eq!(
        served.iter().sum::<usize>(),
        p.texts.len(),
        "one request a row"
    );
    assert_eq!(by_model[&format!("groq/{GROQ_MODEL}")], served[0]);
    assert_eq!(by_model[&format!("gemini/{GEMINI_MODEL}")], served[1]);
    assert_eq!(
        by_model[&format!("openrouter/{OPENROUTER_MODEL}")],
        served[2]
    );
    // Shares follow capacity: 2 × 600, 150 and 200 requests a minute.
    let capacity = [2 * GROQ_RPM, GEMINI_RPM, OPENROUTER_RPM].map(f64::from);
    let total: f64 = capacity.iter().sum();
    for (name, (got, cap)) in ["groq", "gemini", "openrouter"]
        .iter()
        .zip(served.iter().zip(capacity))
    {
        let share = *got as f64 / p.texts.len() as f64;
        let expected = cap / total;
        assert!(
            (share - expected).abs() < 0.04,
            "{name}: {share:.3} of the requests, capacity share {expected:.3} ({served:?})"
        );
    }
    // Within groq, its two organizations share alike.
    let (g1, g2) = (p.groq.requests_for(GROQ_1), p.groq.requests_for(GROQ_2));
    assert!(g1.abs_diff(g2) <= 2, "groq keys {g1} and {g2}");
    assert_overlapped(&[
        ("groq", &p.groq),
        ("gemini", &p.gemini),
        ("openrouter", &p.openrouter),
    ]);
    // The summary groups by provider, then key.
    assert!(
        err.contains(&format!(
            "groq/{GROQ_MODEL} {} req ({} ok): groq #1",
            served[0], served[0]
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!("gemini/{GEMINI_MODEL} {} req", served[1])),
        "{err}"
    );
    p.sb.assert_no_leak(&[&out], &ALL_KEYS);
}

#[test]
fn a_provider_whose_daily_quota_is_spent_drops_out_and_the_others_finish() {
    // OpenRouter allows 10 requests a day; its capacity share of 120 rows would be 15.
    let p = pool(120, 10, "");
    let out = run(&mut p.label(&["-v"]));
    let err = stderr(&out);
    assert_eq!(code(&out), 0, "{err}");
    assert_labeled(&p.output, &p.texts);
    assert_eq!(p.all_429s(), 0, "{err}");
    let served = p.served();
    assert_eq!(
        served[2], 10,
        "openrouter serves its daily quota: {served:?}"
    );
    assert_eq!(served.iter().sum::<usize>(), 120);
    // The others went on after OpenRouter's last request.
    let last_or = p.openrouter.requests().last().unwrap().at;
    for f in [&p.groq, &p.gemini] {
        assert!(f.requests().last().unwrap().at > last_or, "{err}");
    }
    assert!(
        err.contains("key openrouter #1 ") && err.contains("available -> exhausted"),
        "{err}"
    );
    // All three fakes send Groq's headers; only groq's are read, with Groq's meaning
    // (x-ratelimit-limit-requests counts a day). Gemini and OpenRouter state no limits.
    assert!(
        err.contains("organization of key groq #1 ")
            && err.contains("rpd = 1000000000 from x-ratelimit-limit-requests"),
        "{err}"
    );
    for other in ["gemini #1", "openrouter #1"] {
        assert!(
            !err.contains(&format!("organization of key {other} ")),
            "{other}: {err}"
        );
    }
    p.sb.assert_no_leak(&[&out], &ALL_KEYS);
}

#[test]
fn a_provider_whose_model_answers_404_is_taken_out_while_the_others_finish() {
    // Gemini's fake serves gemini-2.0-flash only.
    let p = pool(60, 10_000, "GEMINI_MODEL=gemini-retired-model\n");
    let out = run(&mut p.label(&["--model-column", "model"]));
    let err = stderr(&out);
    assert_eq!(code(&out), 0, "{err}");
    assert!(
        err.contains("provider gemini: model gemini-retired-model answered 404")
            && err.contains("taken out of the pool, 2 providers carry on"),
        "{err}"
    );
    assert_eq!(p.gemini.count_status(200), 0);
    // Only the requests already under way when the first 404 came (at most the 8 in flight).
    assert!(
        p.gemini.count_status(404) <= 8,
        "{}",
        p.gemini.count_status(404)
    );
    let rows = read_rows(&p.output);
    assert_eq!(rows.len() - 1, p.texts.len());
    for (row, text) in rows[1..].iter().zip(&p.texts) {
        assert_eq!(row[2], expected_label(text));
        assert!(!row[3].starts_with("gemini/"), "{row:?}");
    }
    assert_eq!(p.served()[0] + p.served()[2], 60);
}

#[test]
fn when_every_provider_of_the_pool_answers_404_the_run_fails_with_exit_1() {
    let p = pool(
        20,
        10_000,
        "GROQ_MODEL=gone-1\nGEMINI_MODEL=gone-2\nOPENROUTER_MODEL=gone-3\n",
    );
    let out = run(&mut p.label(&[]));
    let err = stderr(&out);
    assert_eq!(code(&out), 1, "{err}");
    assert!(
        err.contains("every provider of the pool answered 404"),
        "{err}"
    );
    assert_eq!(p.served(), [0, 0, 0]);
}

#[test]
fn base_url_model_and_org_groups_flags_are_refused_with_a_list_naming_the_variables() {
    let p = pool(3, 10_000, "");
    for (flag, value, names) in [
        ("--model", "m", "GROQ_MODEL, GEMINI_MODEL, OPENROUTER_MODEL"),
        (
            "--base-url",
            "http://127.0.0.1:9",
            "GROQ_BASE_URL, GEMINI_BASE_URL, OPENROUTER_BASE_URL",
        ),
        ("--org-groups", "1,2", "GROQ_ORG_GROUPS"),
    ] {
        let out = run(&mut p.label(&[flag, value]));
        assert_eq!(code(&out), 2, "{flag}: {}", stderr(&out));
        assert!(stderr(&out).contains(names), "{flag}: {}", stderr(&out));
    }
    // The list also comes from AUTOLABEL_PROVIDER.
    let mut c = p.cmd();
    c.env("AUTOLABEL_PROVIDER", "groq,gemini")
        .args(["-i", "in.csv", "-o", "x.csv", "--model", "m"]);
    let out = run(&mut c);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("GEMINI_MODEL"), "{}", stderr(&out));
    assert_eq!(p.served(), [0, 0, 0]);
}

#[test]
fn a_limit_flag_applies_to_every_provider_unless_its_own_variable_is_set() {
    // --rpm 7 for all; GEMINI_RPM=150 in the env file keeps gemini's own.
    let p = pool(3, 10_000, "");
    let out = run(&mut p.label(&["--rpm", "7", "-v", "--dry-run"]));
    let err = stderr(&out);
    assert_eq!(code(&out), 0, "{err}");
    // The env file sets every provider's rpm: each variable wins over the flag.
    assert!(
        err.contains("groq: rpm = 600 from GROQ_RPM in env file"),
        "{err}"
    );
    assert!(
        err.contains("gemini: rpm = 150 from GEMINI_RPM in env file"),
        "{err}"
    );
    // Without the variables the flag is everyone's.
    let bare = format!(
        "GROQ_API_KEY={GROQ_1}\nGEMINI_API_KEY={GEMINI}\nGROQ_BASE_URL={}\nGEMINI_BASE_URL={}\n",
        p.groq.base_url(),
        p.gemini.base_url()
    );
    std::fs::write(p.sb.env_file(), bare).unwrap();
    let mut c = p.cmd();
    c.args(["--provider", "groq,gemini", "--rpm", "7", "-v", "--dry-run"])
        .arg("-i")
        .arg(&p.input)
        .arg("-o")
        .arg(&p.output);
    let out = run(&mut c);
    let err = stderr(&out);
    assert_eq!(code(&out), 0, "{err}");
    assert!(err.contains("groq: rpm = 7 from --rpm"), "{err}");
    assert!(err.contains("gemini: rpm = 7 from --rpm"), "{err}");
}

#[test]
fn dry_run_with_a_list_estimates_time_from_the_sum_of_the_capacities() {
    // 155 rows at 2 × 600 + 150 + 200 = 1,550 requests a minute: 6.0 s.
    let p = pool(155, 10_000, "");
    let out = run(&mut p.label(&["--dry-run"]));
    let text = stdout(&out);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(text.contains("estimated time:   6.0s"), "{text}");
    assert!(
        text.contains(&format!("gemini/{GEMINI_MODEL} keys: 1 in 1 organization"))
            && text.contains("2.50 requests/s"),
        "{text}"
    );
    // The daily budget: per provider, then all of them together.
    assert!(
        text.contains(&format!(
            "budget per key or organization of openrouter/{OPENROUTER_MODEL} (rpm 200 · rph none · rpd 10000"
        )),
        "{text}"
    );
    assert!(
        text.contains("batch size 1, all providers together:"),
        "{text}"
    );
    assert_eq!(p.served(), [0, 0, 0]);
}

#[test]
fn the_cache_serves_a_label_only_to_the_provider_and_model_that_gave_it() {
    let p = pool(60, 10_000, "");
    // Not `Pool::label`: that one passes --no-cache.
    let mut first = p.cmd();
    first
        .args(["--provider", "groq,gemini,openrouter"])
        .arg("-i")
        .arg(&p.input)
        .arg("-o")
        .arg(&p.output)
        .args([
            "--delay",
            "0",
            "--concurrency",
            "8",
            "--model-column",
            "model",
        ]);
    let out = run(&mut first);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let labeled_by: Vec<String> = read_rows(&p.output)[1..]
        .iter()
        .map(|r| r[3].clone())
        .collect();
    let groq_rows = labeled_by.iter().filter(|m| m.starts_with("groq/")).count();
    assert!(groq_rows > 0 && groq_rows < 60);
    // Groq alone now: only the texts groq's model labeled come from the cache.
    let before = p.groq.count_status(200);
    let mut again = p.cmd();
    again
        .args(["--provider", "groq"])
        .arg("-i")
        .arg(&p.input)
        .arg("-o")
        .arg(p.sb.path("groq-only.csv"))
        .args([
            "--delay",
            "0",
            "--status-column",
            "status",
            "--model-column",
            "model",
        ]);
    let out = run(&mut again);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let rows = read_rows(&p.sb.path("groq-only.csv"));
    assert_eq!(rows[0], ["id", "text", "label", "status", "model"]);
    for (row, first_model) in rows[1..].iter().zip(&labeled_by) {
        let cached = row[3] == "cached";
        assert_eq!(
            cached,
            first_model.starts_with("groq/"),
            "{row:?} {first_model}"
        );
        assert_eq!(row[4], format!("groq/{GROQ_MODEL}"));
    }
    assert_eq!(p.groq.count_status(200) - before, 60 - groq_rows);
}

#[test]
fn test_keys_and_usage_with_a_list_cover_every_provider_grouped_by_provider() {
    let p = pool(30, 10_000, "");
    let out = run(&mut p.label(&[]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));

    let mut tk = p.cmd();
    tk.args([
        "test-keys",
        "--provider",
        "groq,gemini,openrouter",
        "--json",
    ]);
    let keys_out = run(&mut tk);
    assert_eq!(code(&keys_out), 0, "{}", stderr(&keys_out));
    let v: serde_json::Value = serde_json::from_slice(&keys_out.stdout).unwrap();
    let listed: Vec<(String, u64, String)> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["provider"].as_str().unwrap().to_string(),
                k["index"].as_u64().unwrap(),
                k["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let ok = |p: &str, i: u64| (p.to_string(), i, "ok".to_string());
    assert_eq!(
        listed,
        [
            ok("groq", 1),
            ok("groq", 2),
            ok("gemini", 1),
            ok("openrouter", 1)
        ]
    );

    let mut usage = p.cmd();
    usage.args(["usage", "--provider", "groq,gemini,openrouter", "--json"]);
    let usage_out = run(&mut usage);
    assert_eq!(code(&usage_out), 0, "{}", stderr(&usage_out));
    let v: serde_json::Value = serde_json::from_slice(&usage_out.stdout).unwrap();
    let providers = v["providers"].as_array().unwrap();
    let served = p.served();
    for (i, name) in ["groq", "gemini", "openrouter"].iter().enumerate() {
        assert_eq!(providers[i]["provider"], *name);
        let requests: u64 = providers[i]["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["today"]["requests"].as_u64().unwrap())
            .sum();
        assert_eq!(requests as usize, served[i], "{name}");
    }
    let mut text = p.cmd();
    text.args(["usage", "--provider", "groq,gemini"]);
    let text_out = run(&mut text);
    let t = stdout(&text_out);
    let (g, m) = (
        t.find("usage for groq").unwrap(),
        t.find("usage for gemini").unwrap(),
    );
    assert!(g < m, "{t}");
    p.sb.assert_no_leak(&[&out, &keys_out, &usage_out, &text_out], &ALL_KEYS);
}

#[test]
fn batches_ask_for_json_mode_only_where_the_provider_has_it_and_labels_land_on_their_rows() {
    let p = pool(120, 10_000, "");
    let out = run(&mut p.label(&["--batch-size", "5"]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_labeled(&p.output, &p.texts);
    let json_mode = |f: &FakeProvider| -> Vec<bool> {
        f.requests()
            .iter()
            .filter(|r| r.batch)
            .map(|r| r.body["response_format"]["type"] == "json_object")
            .collect()
    };
    // Groq and Gemini accept OpenAI's JSON mode; OpenRouter's free models may not.
    for (name, f, expected) in [
        ("groq", &p.groq, true),
        ("gemini", &p.gemini, true),
        ("openrouter", &p.openrouter, false),
    ] {
        let modes = json_mode(f);
        assert!(!modes.is_empty(), "{name} got no batch");
        assert!(modes.iter().all(|m| *m == expected), "{name}: {modes:?}");
    }
    // The same instruction goes to every provider.
    let system = |f: &FakeProvider| {
        f.requests().iter().find(|r| r.batch).unwrap().body["messages"][0]["content"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(system(&p.groq), system(&p.gemini));
    assert_eq!(system(&p.groq), system(&p.openrouter));
}

#[test]
fn test_keys_with_a_list_fails_when_a_key_of_any_provider_is_invalid() {
    let p = pool(
        3,
        10_000,
        "GEMINI_API_KEY_2=AIzaPOOLFAKEGMN_0002_unknownkey_gm2\n",
    );
    let mut tk = p.cmd();
    tk.args(["test-keys", "--provider", "groq,gemini,openrouter"]);
    let out = run(&mut tk);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let text = stdout(&out);
    // One table per provider, in the order given; the unknown key is gemini's second.
    let (g, m, o) = (
        text.find("2 keys for groq").unwrap(),
        text.find("2 keys for gemini").unwrap(),
        text.find("1 key for openrouter").unwrap(),
    );
    assert!(g < m && m < o, "{text}");
    assert!(text[m..o].contains("invalid"), "{text}");
    assert!(!text[g..m].contains("invalid"), "{text}");
    p.sb.assert_no_leak(
        &[&out],
        &[GEMINI, GROQ_1, "AIzaPOOLFAKEGMN_0002_unknownkey_gm2"],
    );
}

#[test]
fn a_price_flag_prices_every_provider_unless_its_own_variable_is_set() {
    // USD per million tokens: the flag says 1,000,000 (a dollar a token); gemini's own 2,000,000.
    let p = pool(30, 10_000, "GEMINI_PRICE_IN=2000000\n");
    let out = run(&mut p.label(&["--price-in", "1000000", "--price-out", "0"]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let mut usage = p.cmd();
    usage.args(["usage", "--provider", "groq,gemini,openrouter", "--json"]);
    let usage_out = run(&mut usage);
    let v: serde_json::Value = serde_json::from_slice(&usage_out.stdout).unwrap();
    for (i, (name, per_token)) in [("groq", 1.0), ("gemini", 2.0), ("openrouter", 1.0)]
        .iter()
        .enumerate()
    {
        let provider = &v["providers"][i];
        assert_eq!(provider["provider"], *name);
        for k in provider["keys"].as_array().unwrap() {
            let today = &k["today"];
            let tokens = today["tokens_in"].as_u64().unwrap() as f64;
            let cost = today["cost_usd"].as_f64().unwrap();
            assert!(tokens > 0.0, "{name}: {k}");
            assert!((cost - tokens * per_token).abs() < 1e-6, "{name}: {k}");
        }
    }
}

#[test]
fn org_groups_come_from_each_providers_own_variable_in_a_pool() {
    // Both groq keys in one organization: groq's capacity is one 600 RPM, not two.
    let p = pool(155, 10_000, "GROQ_ORG_GROUPS=1,2\n");
    let out = run(&mut p.label(&["--dry-run"]));
    let text = stdout(&out);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        text.contains(&format!(
            "groq/{GROQ_MODEL} keys: 2 in 1 organization · delay 0s · rpm 600 per organization · 10.00 requests/s"
        )),
        "{text}"
    );
    // 155 rows at 600 + 150 + 200 = 950 a minute.
    assert!(text.contains("estimated time:   9.8s"), "{text}");
}
