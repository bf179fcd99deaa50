//! End-to-end labeling against the fake provider: rotation, failure classes, replies.

mod common;

use common::*;

#[test]
fn labels_every_row_in_order_across_three_keys_without_leaking_keys() {
    let (fake, sb, texts, input, output) = setup(
        &[PLANTED, KEY2, KEY3],
        FakeConfig::with_keys(&[PLANTED, KEY2, KEY3]),
        30,
    );
    let out = run(&mut sb.label(&fake, &input, &output, &["-v"]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_labeled(&output, &texts);
    for k in [PLANTED, KEY2, KEY3] {
        assert_eq!(fake.requests_for(k), 10, "round robin over the keys");
    }
    assert!(stderr(&out).contains("3/3 available"), "{}", stderr(&out));
    sb.assert_no_leak(&[&out], &[PLANTED, KEY2, KEY3]);
}

#[test]
fn messy_replies_are_normalized_to_the_label_set() {
    let mut cfg = FakeConfig::with_keys(&[PLANTED]);
    cfg.style = ReplyStyle::Messy;
    let (fake, sb, texts, input, output) = setup(&[PLANTED], cfg, 24);
    let out = run(&mut sb.label(&fake, &input, &output, &[]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_labeled(&output, &texts);
    assert_eq!(
        fake.requests().len(),
        24,
        "one request per row: every messy reply was usable"
    );
}

#[test]
fn minute_rate_limit_cools_the_key_and_the_row_moves_to_the_next_key() {
    let (fake, sb, texts, input, output) =
        setup(&[PLANTED, KEY2], FakeConfig::with_keys(&[PLANTED, KEY2]), 6);
    fake.push_faults([Fault::RateLimitMinute {
        retry_after_secs: 30.0,
    }]);
    let out = run(&mut sb.label(&fake, &input, &output, &[]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_labeled(&output, &texts);
    let reqs = fake.requests();
    assert_eq!(reqs[0].status, 429);
    assert_eq!(reqs[0].key, PLANTED);
    // The same text is retried at once on the other key, and the cooling key gets nothing more.
    assert_eq!(reqs[1].key, KEY2);
    assert_eq!(reqs[1].texts, reqs[0].texts);
    assert_eq!(
        fake.requests_for(PLANTED),
        1,
        "a cooling key is not asked again within its cooldown"
    );
    let err = stderr(&out);
    assert!(err.contains("available -> cooling"), "{err}");
    assert!(
        err.contains("cooling 1") && err.contains("1/2 available"),
        "{err}"
    );
    sb.assert_no_leak(&[&out], &[PLANTED, KEY2]);
}

#[test]
fn a_cooled_key_comes_back_after_retry_after_and_is_unfailed() {
    let (fake, sb, texts, input, output) = setup(&[PLANTED], FakeConfig::with_keys(&[PLANTED]), 4);
    fake.push_faults([Fault::RateLimitMinute {
        retry_after_secs: 0.3,
    }]);
    let out = run(&mut sb.label(&fake, &input, &output, &["--max-retries", "2"]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_labeled(&output, &texts);
    let reqs = fake.requests();
    assert_eq!(reqs[0].status, 429);
    assert!(
        reqs[1].at - reqs[0].at >= std::time::Duration::from_millis(280),
        "the key waited for retry-after before the next request"
    );
    let err = stderr(&out);
    assert!(err.contains("cooling -> available"), "{err}");
}

#[test]
fn daily_limit_429_exhausts_the_key_for_the_run_and_others_carry_on() {
    let (fake, sb, texts, input, output) = setup(
        &[PLANTED, KEY2],
        FakeConfig::with_keys(&[PLANTED, KEY2]),
        12,
    );
    fake.push_faults([Fault::RateLimitDay]);
    let out = run(&mut sb.label(&fake, &input, &output, &[]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_labeled(&output, &texts);
    // One 429 (RPD), then never again this run.
    assert_eq!(fake.requests_for(PLANTED), 1);
    assert_eq!(fake.requests_for(KEY2), 12);
    let err = stderr(&out);
    assert!(err.contains("-> exhausted") && err.contains("RPD"), "{err}");
}

#[test]
fn no_requests_left_in_the_headers_exhausts_the_key_before_any_429() {
    let day = OrgLimits {
        rpd: Some(2),
        ..Default::default()
    };
    let cfg = FakeConfig::with_keys(&[PLANTED, KEY2])
        .limit("org_0", day.clone())
        .limit("org_1", day);
    let (fake, sb, _texts, input, output) = setup(&[PLANTED, KEY2], cfg, 12);
    let out = run(&mut sb.label(&fake, &input, &output, &["--status-column", "status"]));
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert_eq!(
        fake.requests_for(PLANTED),
        2,
        "quota used up, then left alone"
    );
    assert_eq!(fake.requests_for(KEY2), 2);
    assert_eq!(
        fake.count_status(429),
        0,
        "the headers said so before any 429"
    );
    let err = stderr(&out);
    assert!(
        err.contains("exhausted 2") && err.contains("0/2 available"),
        "{err}"
    );
    let rows = read_rows(&output);
    assert_eq!(rows[1..].iter().filter(|r| r[3] == "fallback").count(), 8);
}

#[test]
fn keys_of_one_organization_share_its_limit() {
    // Two keys in one org with a daily limit of 3: after the 429 both are exhausted.
    let cfg = FakeConfig::single_org(
        &[PLANTED, KEY2],
        "org_shared",
        OrgLimits {
            rpd: Some(3),
            ..Default::default()
        },
    );
    let (fake, sb, _texts, input, output) = setup(&[PLANTED, KEY2], cfg, 8);
    let out = run(&mut sb.label(
        &fake,
        &input,
        &output,
        &["--org-groups", "1,2", "--status-column", "status"],
    ));
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert_eq!(fake.ok_count(), 3);
    assert_eq!(
        fake.count_status(429),
        0,
        "the organization's quota ran out for both keys at once"
    );
    assert!(stderr(&out).contains("exhausted 2"), "{}", stderr(&out));
    let rows = read_rows(&output);
    let statuses: Vec<&str> = rows[1..].iter().map(|r| r[3].as_str()).collect();
    assert_eq!(statuses.iter().filter(|s| **s == "model").count(), 3);
    assert_eq!(statuses.iter().filter(|s| **s == "fallback").count(), 5);
    assert!(rows[1..]
        .iter()
        .filter(|r| r[3] == "fallback")
        .all(|r| r[2] == "netral"));
}

#[test]
fn invalid_key_is_asked_once_then_skipped() {
    let mut cfg = FakeConfig::with_keys(&[KEY2]);
    cfg.keys.insert(0, FakeKey::invalid(PLANTED));
    let (fake, sb, texts, input, output) = setup(&[PLANTED, KEY2], cfg, 8);
    let out = run(&mut sb.label(&fake, &input, &output, &[]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_labeled(&output, &texts);
    assert_eq!(fake.requests_for(PLANTED), 1);
    assert_eq!(fake.count_status(401), 1);
    let err = stderr(&out);
    assert!(
        err.contains("invalid 1") && err.contains("1/2 available"),
        "{err}"
    );
    sb.assert_no_leak(&[&out], &[PLANTED, KEY2]);
}

#[test]
fn server_errors_resets_timeouts_and_malformed_bodies_are_retried() {
    let (fake, sb, texts, input, output) = setup(&[PLANTED], FakeConfig::with_keys(&[PLANTED]), 5);
    fake.push_faults([
        Fault::Status(500),
        Fault::Reset,
        Fault::MalformedJson,
        Fault::Hang(std::time::Duration::from_secs(5)),
    ]);
    let out = run(&mut sb.label(&fake, &input, &output, &["--timeout", "0.5"]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_labeled(&output, &texts);
    assert_eq!(fake.pending_faults(), 0);
}

#[test]
fn backoff_between_transient_retries_grows() {
    let (fake, sb, _texts, input, output) = setup(&[PLANTED], FakeConfig::with_keys(&[PLANTED]), 1);
    fake.push_faults([Fault::Status(500), Fault::Status(500), Fault::Status(500)]);
    let out = run(&mut sb.label(&fake, &input, &output, &["--backoff", "0.2"]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let at: Vec<_> = fake.requests().iter().map(|r| r.at).collect();
    assert_eq!(at.len(), 4);
    // Jitter is ×0.5..1.5 of 0.2 s, 0.4 s, 0.8 s.
    assert!(at[1] - at[0] >= std::time::Duration::from_millis(100));
    assert!(at[2] - at[1] >= std::time::Duration::from_millis(200));
    assert!(at[3] - at[2] >= std::time::Duration::from_millis(400));
}

#[test]
fn per_minute_429s_on_every_key_make_the_row_wait_never_fall_back() {
    let (fake, sb, texts, input, output) =
        setup(&[PLANTED, KEY2], FakeConfig::with_keys(&[PLANTED, KEY2]), 3);
    fake.push_faults([
        Fault::RateLimitMinute {
            retry_after_secs: 0.2,
        },
        Fault::RateLimitMinute {
            retry_after_secs: 0.2,
        },
        Fault::RateLimitMinute {
            retry_after_secs: 0.2,
        },
    ]);
    let out = run(&mut sb.label(&fake, &input, &output, &["--max-retries", "1"]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_labeled(&output, &texts);
    assert_eq!(fake.count_status(429), 3);
}

#[test]
fn a_row_whose_transient_retries_are_spent_gets_the_fallback_and_exit_3() {
    let (fake, sb, texts, input, output) =
        setup(&[PLANTED, KEY2], FakeConfig::with_keys(&[PLANTED, KEY2]), 3);
    fake.push_faults([Fault::Status(503), Fault::Status(503)]);
    let out = run(&mut sb.label(
        &fake,
        &input,
        &output,
        &["--status-column", "status", "--max-retries", "1"],
    ));
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    let rows = read_rows(&output);
    assert_eq!(rows[1][2], "netral");
    assert_eq!(rows[1][3], "fallback");
    assert_eq!(rows[2][2], expected_label(&texts[1]));
    assert_eq!(rows[3][2], expected_label(&texts[2]));
    assert!(stderr(&out).contains("re-label"), "{}", stderr(&out));
}

#[test]
fn unusable_replies_are_retried_never_guessed() {
    let (fake, sb, texts, input, output) = setup(&[PLANTED], FakeConfig::with_keys(&[PLANTED]), 2);
    fake.push_faults([
        Fault::Reply("I am not sure.".into()),
        Fault::Reply("positif or negatif".into()),
        Fault::Reply("Negative.".into()),
        // Row 2: three unusable replies in a row → fallback, not a guess.
        Fault::Reply("hmm".into()),
        Fault::Reply("hmm".into()),
        Fault::Reply("hmm".into()),
    ]);
    let out = run(&mut sb.label(&fake, &input, &output, &["--status-column", "status"]));
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    let rows = read_rows(&output);
    assert_eq!(rows[1][2], "negatif", "the third, clear reply was used");
    assert_eq!(rows[1][3], "model");
    assert_eq!(rows[2][3], "fallback");
    assert_eq!(fake.requests().len(), 6);
    let _ = texts;
}

#[test]
fn every_key_invalid_means_fallback_without_further_requests() {
    let mut cfg = FakeConfig::with_keys(&[]);
    cfg.keys = vec![FakeKey::invalid(PLANTED)];
    let (fake, sb, _texts, input, output) = setup(&[PLANTED], cfg, 10);
    let out = run(&mut sb.label(&fake, &input, &output, &["--status-column", "status"]));
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert_eq!(
        fake.requests().len(),
        1,
        "no request after the only key turned out invalid"
    );
    let rows = read_rows(&output);
    assert_eq!(rows.len(), 11);
    assert!(rows[1..]
        .iter()
        .all(|r| r[2] == "netral" && r[3] == "fallback"));
    assert!(stderr(&out).contains("0/1 available"));
}

#[test]
fn empty_texts_get_the_fallback_label_without_a_request() {
    let fake = FakeProvider::start(FakeConfig::with_keys(&[PLANTED]));
    let sb = Sandbox::new();
    sb.write_keys(&[PLANTED]);
    let mut texts = smsa(4);
    texts.insert(1, String::new());
    texts.insert(3, "   ".into());
    let (input, output) = (sb.path("in.csv"), sb.path("out.csv"));
    write_input(&input, &texts);
    let out = run(&mut sb.label(&fake, &input, &output, &["--fallback-label", "kosong"]));
    assert_eq!(
        code(&out),
        0,
        "empty rows are not failures: {}",
        stderr(&out)
    );
    assert_eq!(fake.requests().len(), 4);
    let rows = read_rows(&output);
    assert_eq!(rows[2][2], "kosong");
    assert_eq!(rows[4][2], "kosong");
    assert_eq!(rows[4][1], "   ", "values unchanged");
    assert_eq!(rows[1][2], expected_label(&texts[0]));
}

#[test]
fn identical_texts_are_sent_once() {
    let fake = FakeProvider::start(FakeConfig::with_keys(&[PLANTED]));
    let sb = Sandbox::new();
    sb.write_keys(&[PLANTED]);
    let base = smsa(3);
    let texts: Vec<String> = (0..12).map(|i| base[i % 3].clone()).collect();
    let (input, output) = (sb.path("in.csv"), sb.path("out.csv"));
    write_input(&input, &texts);
    let out = run(&mut sb.label(
        &fake,
        &input,
        &output,
        &["--no-cache", "--concurrency", "4"],
    ));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_labeled(&output, &texts);
    assert_eq!(fake.requests().len(), 3);
}

#[test]
fn batches_split_when_the_reply_has_the_wrong_count() {
    let (fake, sb, texts, input, output) = setup(&[PLANTED], FakeConfig::with_keys(&[PLANTED]), 40);
    fake.push_faults([
        Fault::WrongCount,
        Fault::Reply("{\"labels\": [\"happy\"]}".into()),
    ]);
    let out = run(&mut sb.label(&fake, &input, &output, &["--batch-size", "8"]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_labeled(&output, &texts);
    let reqs = fake.requests();
    assert!(reqs.iter().all(|r| r.batch && r.texts.len() <= 8));
    assert_eq!(reqs[0].texts.len(), 8);
    // The first batch was split into halves (4 + 4), and one half again after the bad label.
    assert_eq!(reqs[1].texts.len(), 4);
    let sent: usize = reqs
        .iter()
        .filter(|r| r.status == 200)
        .map(|r| r.texts.len())
        .sum();
    assert!(
        sent > 40 && reqs.len() < 40 / 8 + 6,
        "batches were split, not abandoned: {}",
        reqs.len()
    );
}

#[test]
fn batches_go_as_a_json_array_with_a_reply_budget_from_the_labels() {
    let fake = FakeProvider::start(FakeConfig::with_keys(&[PLANTED]));
    let sb = Sandbox::new();
    sb.write_keys(&[PLANTED]);
    // Texts that would break a one-text-per-line list: line breaks, quotes, numbering,
    // a text that is itself a JSON array.
    let mut texts = smsa(8);
    texts.extend([
        "baris satu\nbaris dua".to_string(),
        "dia bilang \"mantap\" \\ oke".to_string(),
        "2. nomor dua\n3. nomor tiga".to_string(),
        "[\"bukan batch\"]".to_string(),
    ]);
    let (input, output) = (sb.path("in.csv"), sb.path("out.csv"));
    write_input(&input, &texts);
    let out = run(&mut sb.label(&fake, &input, &output, &["--batch-size", "5"]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_labeled(&output, &texts);
    let reqs = fake.requests();
    assert_eq!(
        reqs.iter().map(|r| r.texts.len()).collect::<Vec<_>>(),
        [5, 5, 2]
    );
    for r in &reqs {
        let n = r.texts.len();
        let user = r.body["messages"][1]["content"].as_str().unwrap();
        let sent: Vec<String> = serde_json::from_str(user).expect("a JSON array of strings");
        assert_eq!(
            sent, r.texts,
            "the array is exactly the texts, nothing else"
        );
        // "positif"/"negatif": 2 tokens each at 4 bytes a token, + 2 slack, + the envelope.
        assert_eq!(r.body["max_tokens"], 4 * n as u64 + 8);
        assert_eq!(r.body["response_format"]["type"], "json_object");
        let system = r.body["messages"][0]["content"].as_str().unwrap();
        assert!(system.contains(&format!(" {n} texts")), "{system}");
        assert!(system.len() < 100, "{system}");
    }
}

/// The size `--batch-size auto` logged, and the whole log line.
fn auto_choice(stderr: &str) -> (usize, String) {
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("--batch-size auto:"))
        .collect();
    assert_eq!(lines.len(), 1, "the choice is logged once: {stderr}");
    let size = lines[0]
        .split("--batch-size auto: ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no size in {}", lines[0]));
    (size, lines[0].to_string())
}

#[test]
fn batch_size_auto_fills_batches_when_the_daily_tokens_bind() {
    // The sandbox lifts the per-minute limits; Groq's free-tier day (14,400 requests,
    // 500,000 tokens) stays: for one text a request tokens run out first.
    let (fake, sb, texts, input, output) =
        setup(&[PLANTED], FakeConfig::with_keys(&[PLANTED]), 120);
    let out = run(&mut sb.label(&fake, &input, &output, &["--batch-size", "auto"]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_labeled(&output, &texts);
    let (size, line) = auto_choice(&stderr(&out));
    // These texts average about 45 tokens: the 2 % rule lands in the thirties or forties.
    assert!((20..=50).contains(&size), "{line}");
    assert!(line.contains("tokens per day bind"), "{line}");
    assert!(line.contains("rows per key a day"), "{line}");
    let sizes: Vec<usize> = fake.requests().iter().map(|r| r.texts.len()).collect();
    assert_eq!(sizes.len(), 120usize.div_ceil(size), "{sizes:?}");
    assert!(
        sizes[..sizes.len() - 1].iter().all(|n| *n == size),
        "{sizes:?}"
    );
}

#[test]
fn batch_size_auto_keeps_long_texts_within_half_the_assumed_context() {
    let fake = FakeProvider::start(FakeConfig::with_keys(&[PLANTED]));
    let sb = Sandbox::new();
    sb.write_keys(&[PLANTED]);
    // Reviews of about 1,000 characters (250 tokens): 50 of them would not fit in 8k.
    // Requests bind (a plentiful token day), so auto wants batches as large as can be.
    let short = smsa(600);
    let texts: Vec<String> = short.chunks(6).take(60).map(|c| c.join(" ")).collect();
    let (input, output) = (sb.path("in.csv"), sb.path("out.csv"));
    write_input(&input, &texts);
    let out = run(&mut sb.label(
        &fake,
        &input,
        &output,
        &[
            "--batch-size",
            "auto",
            "--rpd",
            "1000",
            "--tpd",
            "100000000",
        ],
    ));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_labeled(&output, &texts);
    let (size, line) = auto_choice(&stderr(&out));
    assert!(
        line.contains("capped at half of an assumed 8192-token context"),
        "{line}"
    );
    let reqs = fake.requests();
    for r in &reqs[..reqs.len() - 1] {
        assert_eq!(r.texts.len(), size, "{line}");
    }
    // A batch of average texts (with its instruction) fits in half of 8,192 tokens, and
    // one more text would not.
    let chars: usize = texts.iter().map(|t| t.chars().count()).sum();
    let per_text = chars as f64 / 4.0 / texts.len() as f64;
    assert!(per_text * size as f64 <= 4096.0, "{per_text} × {line}");
    assert!(per_text * (size + 2) as f64 > 4096.0, "{per_text} × {line}");
}

#[test]
fn batch_size_auto_goes_to_the_cap_when_requests_bind() {
    let (fake, sb, texts, input, output) = setup(&[PLANTED], FakeConfig::with_keys(&[PLANTED]), 60);
    let out = run(&mut sb.label(
        &fake,
        &input,
        &output,
        &[
            "--batch-size",
            "auto",
            "--rpd",
            "1000",
            "--tpd",
            "100000000",
        ],
    ));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_labeled(&output, &texts);
    let (size, line) = auto_choice(&stderr(&out));
    assert_eq!(size, 50, "{line}");
    assert!(line.contains("requests per day bind"), "{line}");
    assert!(line.contains("capped at 50 texts"), "{line}");
}

#[test]
fn concurrency_keeps_the_output_in_input_order() {
    let mut cfg = FakeConfig::with_keys(&[PLANTED, KEY2, KEY3]);
    cfg.latency = std::time::Duration::from_millis(20);
    cfg.jitter = std::time::Duration::from_millis(19);
    let (fake, sb, texts, input, output) = setup(&[PLANTED, KEY2, KEY3], cfg, 120);
    let out = run(&mut sb.label(&fake, &input, &output, &["--concurrency", "8"]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_labeled(&output, &texts);
    assert_eq!(fake.requests().len(), 120);
}

#[test]
fn rpm_per_key_spreads_requests_evenly() {
    let (fake, sb, texts, input, output) = setup(&[PLANTED], FakeConfig::with_keys(&[PLANTED]), 5);
    let out = run(&mut sb.label(&fake, &input, &output, &["--rpm", "300"]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_labeled(&output, &texts);
    // 300/min = one per 200 ms, never a burst.
    assert_min_spacing(&fake, std::time::Duration::from_millis(190));
}

#[test]
fn the_default_delay_is_two_and_a_half_seconds_between_any_two_requests() {
    let (fake, sb, texts, input, output) =
        setup(&[PLANTED, KEY2], FakeConfig::with_keys(&[PLANTED, KEY2]), 3);
    let mut cmd = sb.cmd();
    cmd.arg("--input")
        .arg(&input)
        .arg("--output")
        .arg(&output)
        .arg("--base-url")
        .arg(fake.base_url());
    let out = run(&mut cmd);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_labeled(&output, &texts);
    assert_min_spacing(&fake, std::time::Duration::from_millis(2450));
}

#[test]
fn prompt_file_is_used_with_its_placeholders() {
    let (fake, sb, texts, input, output) = setup(&[PLANTED], FakeConfig::with_keys(&[PLANTED]), 2);
    let prompt = sb.path("prompt.txt");
    std::fs::write(&prompt, "Sentimen ({labels}) dari teks ini: {text}").unwrap();
    let out = run(&mut sb.label(
        &fake,
        &input,
        &output,
        &["--prompt-file", prompt.to_str().unwrap()],
    ));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let reqs = fake.requests();
    let body = &reqs[0].body;
    let user = body["messages"][1]["content"].as_str().unwrap();
    assert_eq!(
        user,
        format!(
            "Sentimen (positif, negatif, netral) dari teks ini: {}",
            texts[0]
        )
    );
    assert_eq!(body["temperature"], 0);
    assert!(body["max_tokens"].as_u64().unwrap() <= 32);
}

#[test]
fn test_keys_reports_each_key_masked_and_fails_on_a_bad_one() {
    let mut cfg = FakeConfig::with_keys(&[PLANTED, KEY3]);
    cfg.keys.insert(1, FakeKey::invalid(KEY2));
    let fake = FakeProvider::start(cfg);
    let sb = Sandbox::new();
    sb.write_keys(&[PLANTED, KEY2, KEY3]);
    let out = run(sb
        .cmd()
        .args(["test-keys", "--json", "--base-url", &fake.base_url()]));
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let statuses: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["ok", "invalid", "ok"]);
    assert_eq!(v[0]["key"], "gsk_…_zq9");
    assert_eq!(v[0]["index"], 1);
    assert!(v[0]["remaining_requests"].as_u64().is_some());
    let text = run(sb.cmd().args(["test-keys", "--base-url", &fake.base_url()]));
    assert!(stdout(&text).contains("2/3 ok"), "{}", stdout(&text));
    let chat = run(sb.cmd().args([
        "test-keys",
        "--chat",
        "--json",
        "--base-url",
        &fake.base_url(),
    ]));
    assert_eq!(code(&chat), 1);
    assert_eq!(
        fake.requests().len(),
        3,
        "--chat sends one chat request per key"
    );
    sb.assert_no_leak(&[&out, &text, &chat], &[PLANTED, KEY2, KEY3]);
}

#[test]
fn without_a_terminal_progress_is_logged_as_plain_lines_and_quiet_prints_nothing() {
    let mut cfg = FakeConfig::with_keys(&[PLANTED]);
    cfg.latency = std::time::Duration::from_millis(40);
    let (fake, sb, texts, input, output) = setup(&[PLANTED], cfg, 40);
    let out = run(&mut sb.label(&fake, &input, &output, &["--progress-every", "0.1"]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let err = stderr(&out);
    let progress: Vec<&str> = err.lines().filter(|l| l.contains("progress: ")).collect();
    assert!(progress.len() >= 2, "{err}");
    assert!(
        progress[0].starts_with("[20")
            && progress[0].contains("/40 rows")
            && progress[0].contains("ETA"),
        "{err}"
    );
    assert!(
        !err.contains('\r') && !err.contains("\x1b["),
        "no terminal control codes in logs"
    );
    assert!(
        err.contains("done: 40 rows") && err.contains("positif") && err.contains("requests 40"),
        "{err}"
    );
    assert!(stdout(&out).is_empty(), "stdout carries data only");

    let quiet_out = sb.path("quiet.csv");
    let out = run(&mut sb.label(
        &fake,
        &input,
        &quiet_out,
        &["--quiet", "--progress-every", "0.1"],
    ));
    assert_eq!(code(&out), 0);
    assert!(out.stderr.is_empty(), "{}", stderr(&out));
    assert_labeled(&quiet_out, &texts);
}

#[test]
fn large_inputs_in_batches_fill_and_drain_the_window_without_stalling() {
    // More rows than the reorder window holds, in batches that do not divide it: a partial
    // batch must still go out when the window stops reading.
    let fake = FakeProvider::start(FakeConfig::with_keys(&[PLANTED]));
    let sb = Sandbox::new();
    sb.write_keys(&[PLANTED]);
    let base = dataset_texts("en_tweeteval_sentiment_val.csv");
    let texts: Vec<String> = base
        .iter()
        .chain(base.iter().take(1000))
        .map(|t| t.to_string())
        .collect();
    let (input, output) = (sb.path("in.csv"), sb.path("out.csv"));
    write_input(&input, &texts);
    let out = run(&mut sb.label(
        &fake,
        &input,
        &output,
        &["--batch-size", "7", "--concurrency", "3", "--no-cache"],
    ));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_labeled(&output, &texts);
    // Duplicates in flight together are sent once; the rest once each.
    let sent: usize = fake.requests().iter().map(|r| r.texts.len()).sum();
    assert!((2000..=3000).contains(&sent), "{sent}");
}

#[test]
fn a_404_for_the_model_stops_the_run_with_a_clear_error_and_keeps_what_was_written() {
    let (fake, sb, texts, input, output) = setup(&[PLANTED], FakeConfig::with_keys(&[PLANTED]), 5);
    let first = run(&mut sb.label(&fake, &input, &output, &["--limit", "2"]));
    assert_eq!(code(&first), 0, "{}", stderr(&first));
    fake.push_faults([Fault::Status(404)]);
    let out = run(&mut sb.label(&fake, &input, &output, &[]));
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains("--model"), "{}", stderr(&out));
    let rows = read_rows(&output);
    assert_eq!(
        rows.len(),
        3,
        "the two rows from before are kept, nothing guessed after the 404"
    );
    assert_eq!(rows[2][2], expected_label(&texts[1]));
}

#[test]
fn the_clients_own_hourly_count_stops_requests_at_the_limit() {
    // The hour window is the UTC hour: a run that crosses the hour may rightly send more,
    // so such an attempt is repeated (the next one cannot cross again).
    let utc_hour = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            / 3600
    };
    for attempt in 0..2 {
        let hour = utc_hour();
        let (fake, sb, _texts, input, output) =
            setup(&[PLANTED], FakeConfig::with_keys(&[PLANTED]), 6);
        let out = run(&mut sb.label(
            &fake,
            &input,
            &output,
            &["--rph", "3", "--status-column", "status"],
        ));
        if attempt == 0 && utc_hour() != hour {
            continue;
        }
        assert_eq!(code(&out), 3, "{}", stderr(&out));
        assert_eq!(fake.requests().len(), 3, "no request beyond --rph");
        let rows = read_rows(&output);
        assert_eq!(rows[1..].iter().filter(|r| r[3] == "fallback").count(), 3);
        return;
    }
}

#[test]
fn waiting_for_a_reset_that_cannot_come_stops_instead_of_hanging() {
    let mut cfg = FakeConfig::with_keys(&[]);
    cfg.keys = vec![FakeKey::invalid(PLANTED)];
    let (fake, sb, _texts, input, output) = setup(&[PLANTED], cfg, 4);
    let out = run_with_limit(
        &mut sb.label(&fake, &input, &output, &["--on-exhausted", "wait"]),
        std::time::Duration::from_secs(30),
    );
    assert_eq!(code(&out), 75, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("every key is invalid"),
        "{}",
        stderr(&out)
    );
    assert_eq!(fake.requests().len(), 1);
}
