//! What the tool learns that a provider does not say (issue 21): assumed limits yield to
//! the evidence of the replies.

mod common;

use common::*;

#[test]
fn a_stated_minute_limit_far_above_the_free_tier_drops_the_assumed_day_default() {
    // A paid-tier key: 10,000,000 tokens a minute stated, its day's requests as Groq's
    // free tier (so that only the token statement is evidence); tokens a day never stated.
    let limits = OrgLimits {
        tpm: Some(10_000_000),
        rpd: Some(14_400),
        ..Default::default()
    };
    let (fake, sb, texts, input, output) = setup(
        &[PLANTED],
        FakeConfig::single_org(&[PLANTED], "org_a", limits),
        10,
    );
    let out = run(&mut sb.label_as_typed(&fake, &input, &output, &["--rpm", "10000", "-v"]));
    let err = stderr(&out);
    assert_eq!(code(&out), 0, "{err}");
    assert_labeled(&output, &texts);
    assert!(
        err.contains("tpd = 500000 from the groq free-tier default (assumed)"),
        "-v marks the assumed limit: {err}"
    );
    let dropped =
        "tpd: free-tier default dropped (the provider states tpm 10000000, not a free-tier key)";
    assert_eq!(err.matches(dropped).count(), 1, "logged once: {err}");

    // The next run starts from the stated limit, so the default is gone before a reply.
    let out = run(&mut sb.label_as_typed(
        &fake,
        &input,
        &sb.path("dry.csv"),
        &["--rpm", "10000", "--dry-run"],
    ));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let dry = stdout(&out);
    assert!(dry.contains("tpd none"), "{dry}");
    assert!(
        !dry.contains("assumed limits: "),
        "nothing assumed any more: {dry}"
    );
    sb.assert_no_leak(&[&out], &[PLANTED]);
}

#[test]
fn reaching_an_assumed_day_limit_never_writes_the_fallback() {
    // OpenRouter's assumed free tier allows 50 requests a day; the provider states none
    // and enforces none here. 60 rows all get the model's label, exit 0.
    let fake = FakeProvider::start(FakeConfig::with_keys(&[PLANTED]));
    let sb = Sandbox::new();
    std::fs::write(sb.env_file(), format!("OPENROUTER_API_KEY_1={PLANTED}\n")).unwrap();
    let texts = smsa(60);
    let (input, output) = (sb.path("in.csv"), sb.path("out.csv"));
    write_input(&input, &texts);
    let typed = ["--provider", "openrouter", "--rpm", "6000"];
    let dry = run(sb
        .label(&fake, &input, &sb.path("dry.csv"), &typed)
        .arg("--dry-run"));
    assert_eq!(code(&dry), 0, "{}", stderr(&dry));
    assert!(
        stdout(&dry).contains("assumed limits: rpd 50 ("),
        "the dry run shows the assumed limit: {}",
        stdout(&dry)
    );
    let out =
        run(sb
            .label(&fake, &input, &output, &typed)
            .args(["-v", "--status-column", "status"]));
    let err = stderr(&out);
    assert_eq!(code(&out), 0, "{err}");
    assert!(
        err.contains("rpd = 50 from the openrouter free-tier default (assumed)"),
        "{err}"
    );
    let rows = read_rows(&output);
    assert_eq!(rows.len(), 61);
    assert!(rows[1..].iter().all(|r| r[3] == "model"), "{rows:?}");
    assert_eq!(fake.ok_count(), 60);
    sb.assert_no_leak(&[&out, &dry], &[PLANTED]);
}

#[test]
fn a_429_without_a_wait_holds_briefly_then_probes_instead_of_doubling_a_back_off() {
    // Four 429s that name no wait, no window and no limit, one after another. A doubling
    // back-off from 1 s would idle 1 + 2 + 4 + 8 = 15 s; with too few requests to tell
    // the window, each hold is the back-off base and the next request is the one probe.
    let (fake, sb, texts, input, output) = setup(&[PLANTED], FakeConfig::with_keys(&[PLANTED]), 6);
    fake.push_faults((0..4).map(|_| Fault::Status(429)));
    let started = std::time::Instant::now();
    let out = run(&mut sb.label(
        &fake,
        &input,
        &output,
        &["--rpm", "600", "--backoff", "1", "--concurrency", "1", "-v"],
    ));
    let took = started.elapsed();
    let err = stderr(&out);
    assert_eq!(code(&out), 0, "{err}");
    assert_labeled(&output, &texts);
    assert!(took < std::time::Duration::from_secs(10), "{took:?}: {err}");
    assert!(
        err.contains("at the limit for this minute, one probe in 1.0s"),
        "{err}"
    );
    // The learned minute rate fell once (one episode), from the user's 600.
    assert!(err.contains("rpm = 540 from 429s without a wait"), "{err}");
    assert_eq!(err.matches("from 429s without a wait").count(), 1, "{err}");
    assert_eq!(fake.count_status(429), 4);
}

const THREE: [&str; 3] = [PLANTED, KEY2, KEY3];

#[test]
fn keys_whose_429s_name_one_organization_are_paced_as_one() {
    // Three keys of one organization, each told 120 a minute: the first three requests
    // get a minute 429 naming the organization (one on each key, the others cooling).
    let (fake, sb, texts, input, output) =
        setup(&THREE, FakeConfig::shared_org(&THREE, 100_000), 12);
    fake.push_faults((0..3).map(|_| Fault::RateLimitMinute {
        retry_after_secs: 0.2,
    }));
    let out = run(&mut sb.label(
        &fake,
        &input,
        &output,
        &["--rpm", "120", "--concurrency", "1"],
    ));
    let err = stderr(&out);
    assert_eq!(code(&out), 0, "{err}");
    assert_labeled(&output, &texts);
    assert!(
        err.contains("keys #1, #2 share organization org_…a1 (named in 429 replies): pacing them as one; set GROQ_ORG_GROUPS to skip the learning"),
        "{err}"
    );
    assert!(
        err.contains("keys #1, #2, #3 share organization org_…a1"),
        "{err}"
    );
    assert_eq!(err.matches("share organization").count(), 2, "{err}");
    // Paced as one organization at 2 a second (as three, 6 a second).
    let at: Vec<_> = fake.requests().iter().map(|r| r.at).collect();
    let span = at[at.len() - 1] - at[at.len() - 8];
    assert!(span >= std::time::Duration::from_millis(3000), "{span:?}");

    // The user's groups win: nothing is learned.
    fake.push_faults((0..3).map(|_| Fault::RateLimitMinute {
        retry_after_secs: 0.2,
    }));
    let out = run(&mut sb.label(
        &fake,
        &input,
        &sb.path("b.csv"),
        &[
            "--rpm",
            "120",
            "--concurrency",
            "1",
            "--org-groups",
            "1;2;3",
            "--no-cache",
        ],
    ));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(!stderr(&out).contains("share"), "{}", stderr(&out));

    // Remembered: the next run starts merged, without a 429.
    let again = run(&mut sb.label(
        &fake,
        &input,
        &sb.path("c.csv"),
        &["--rpm", "120", "--concurrency", "1", "--no-cache"],
    ));
    assert_eq!(code(&again), 0, "{}", stderr(&again));
    assert!(
        stderr(&again).contains("keys #1, #2, #3 share an organization (found by an earlier run): pacing them as one; set GROQ_ORG_GROUPS to skip the learning"),
        "{}",
        stderr(&again)
    );
    let tested = run(sb
        .cmd()
        .args(["test-keys", "--chat", "--base-url"])
        .arg(fake.base_url()));
    assert!(
        stdout(&tested)
            .contains("keys #1, #2, #3 share organization org_…a1 (found by an earlier run)"),
        "{}",
        stdout(&tested)
    );
    sb.assert_no_leak(&[&out, &again, &tested], &THREE);
}

#[test]
fn keys_whose_remaining_counters_fall_together_are_paced_as_one() {
    // No 429 at all: the day's remaining requests fall for every key of the organization.
    let (fake, sb, texts, input, output) =
        setup(&THREE, FakeConfig::shared_org(&THREE, 100_000), 45);
    let out = run(&mut sb.label(&fake, &input, &output, &["--concurrency", "1"]));
    let err = stderr(&out);
    assert_eq!(code(&out), 0, "{err}");
    assert_labeled(&output, &texts);
    assert_eq!(fake.count_status(429), 0);
    assert!(
        err.contains("keys #1, #2, #3 share an organization (their x-ratelimit-remaining-requests fall together): pacing them as one"),
        "{err}"
    );
    // Keys of three organizations, each counting its own day: never merged.
    let day = OrgLimits {
        rpd: Some(1_000_000),
        ..OrgLimits::default()
    };
    let cfg = FakeConfig::with_keys(&THREE)
        .limit("org_0", day.clone())
        .limit("org_1", day.clone())
        .limit("org_2", day);
    let (fake, sb, _, input, output) = setup(&THREE, cfg, 45);
    let out = run(&mut sb.label(&fake, &input, &output, &["--concurrency", "1"]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(!stderr(&out).contains("share"), "{}", stderr(&out));
}

#[test]
fn a_key_rejected_with_an_odd_400_is_set_aside_and_its_rows_go_to_the_other_key() {
    // The server answers every request on the second key `400 No connected db.`: not a
    // 401, so only the other key's successes show that the key, not the rows, is at fault.
    let cfg = FakeConfig {
        keys: vec![
            FakeKey::new(PLANTED, "org_0"),
            FakeKey::rejected(KEY2, "org_1", 400, "No connected db."),
        ],
        ..FakeConfig::default()
    };
    let (fake, sb, texts, input, output) = setup(&[PLANTED, KEY2], cfg, 30);
    let out = run(&mut sb.label(
        &fake,
        &input,
        &output,
        &["--concurrency", "2", "--status-column", "status"],
    ));
    let err = stderr(&out);
    assert_eq!(code(&out), 0, "{err}");
    let rows = read_rows(&output);
    for (row, text) in rows[1..].iter().zip(&texts) {
        assert_eq!(
            (row[2].as_str(), row[3].as_str()),
            (expected_label(text), "model"),
            "{err}"
        );
    }
    assert!(
        err.contains("key #2 gsk_…_xw8: request refused: rejected (HTTP 400): No connected db."),
        "every error line names the key and the status: {err}"
    );
    assert!(
        err.contains(
            "-> suspect (suspect: rejected (HTTP 400): No connected db. while other keys succeed"
        ),
        "{err}"
    );
    assert!(fake.requests_for(KEY2) <= 5, "{}", fake.requests_for(KEY2));
    sb.assert_no_leak(&[&out], &[PLANTED, KEY2]);
}

#[test]
fn a_row_every_key_refuses_still_gets_the_fallback_and_no_key_is_blamed() {
    // Both keys answer this one request with 400 (a row too long, say): the row's fault.
    let ks = [PLANTED, KEY2];
    let (fake, sb, texts, input, output) = setup(&ks, FakeConfig::with_keys(&ks), 1);
    fake.push_faults([Fault::Status(400), Fault::Status(400)]);
    let out = run(&mut sb.label(&fake, &input, &output, &["--status-column", "status"]));
    let err = stderr(&out);
    assert_eq!(code(&out), 3, "{err}");
    assert_eq!(read_rows(&output)[1][3], "fallback");
    assert_eq!(fake.total_requests(), 2, "tried on both keys: {err}");
    assert!(!err.contains("-> suspect"), "{err}");
    assert_eq!(texts.len(), 1);
}

#[test]
fn test_keys_chat_reports_which_keys_share_an_organization() {
    // One request per key, one after another: the shared day counter falls by one from
    // key to key.
    let fake = FakeProvider::start(FakeConfig::shared_org(&THREE, 100_000));
    let sb = Sandbox::new();
    sb.write_keys(&THREE);
    let out = run(sb
        .cmd()
        .args(["test-keys", "--chat", "--base-url"])
        .arg(fake.base_url()));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stdout(&out).contains("keys #1, #2, #3 share an organization (their x-ratelimit-remaining-requests fell by one from key to key)"),
        "{}",
        stdout(&out)
    );
    let json = run(sb
        .cmd()
        .args(["test-keys", "--chat", "--json", "--base-url"])
        .arg(fake.base_url()));
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v[0]["shares_with"], serde_json::json!([2, 3]), "{v}");
    // Keys of separate organizations share nothing.
    let fake = FakeProvider::start(FakeConfig::with_keys(&THREE));
    let out = run(sb
        .cmd()
        .args(["test-keys", "--chat", "--base-url"])
        .arg(fake.base_url()));
    assert!(!stdout(&out).contains("share"), "{}", stdout(&out));
    sb.assert_no_leak(&[&out, &json], &THREE);
}
