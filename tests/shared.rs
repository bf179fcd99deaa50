//! Several runs on one machine share the keys' limits through the state file: together
//! they stay under each organization's limit, as one run would.

mod common;

use std::process::{Child, Output, Stdio};
use std::time::Duration;

use common::*;

/// Starts `n` runs of the same job on different inputs and outputs, all sharing the
/// sandbox's state file, and waits for every one.
fn run_together(
    sb: &Sandbox,
    fake: &FakeProvider,
    texts: &[Vec<String>],
    extra: &[&str],
) -> Vec<Output> {
    let children: Vec<Child> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let input = sb.path(&format!("in{i}.csv"));
            write_input(&input, t);
            sb.label(fake, &input, &sb.path(&format!("out{i}.csv")), extra)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    children
        .into_iter()
        .map(|c| wait_with_limit(c, Duration::from_secs(120)))
        .collect()
}

#[test]
fn three_runs_on_three_keys_pace_each_organization_together() {
    // Three organizations at 600 requests a minute: one request every 100 ms each. Three
    // runs at their own full rate would send one every 33 ms to each.
    let keys = [PLANTED, KEY2, KEY3];
    let fake = FakeProvider::start(FakeConfig::with_keys(&keys));
    let sb = Sandbox::new();
    sb.write_keys(&keys);
    let all = smsa(90);
    let parts: Vec<Vec<String>> = all.chunks(30).map(<[String]>::to_vec).collect();
    let outs = run_together(&sb, &fake, &parts, &["--rpm", "600", "--concurrency", "4"]);
    for out in &outs {
        assert_eq!(code(out), 0, "{}", stderr(out));
    }
    for (i, texts) in parts.iter().enumerate() {
        let output = sb.path(&format!("out{i}.csv"));
        let rows = read_rows(&output);
        assert_eq!(rows.len() - 1, texts.len());
        for (row, text) in rows[1..].iter().zip(texts) {
            assert_eq!(row[2], expected_label(text));
        }
    }
    assert_eq!(fake.count_status(429), 0);
    // Per organization, at most 10 requests in any second (one more for arrival jitter),
    // whichever run sent them; three runs each at their own pace would send 30.
    for key in keys {
        let n = fake.requests().iter().filter(|r| r.key == key).count();
        assert!(n >= 20, "{key}: {n} requests");
        assert_paced(&fake, key, 11);
    }
    sb.assert_no_leak(&outs.iter().collect::<Vec<_>>(), &keys);
}

#[test]
fn two_runs_on_one_key_share_its_daily_quota() {
    let fake = FakeProvider::start(FakeConfig::single_org(
        &[PLANTED],
        "org_a",
        OrgLimits {
            rpd: Some(10),
            ..Default::default()
        },
    ));
    let sb = Sandbox::new();
    sb.write_keys(&[PLANTED]);
    let all = smsa(40);
    let parts: Vec<Vec<String>> = all.chunks(20).map(<[String]>::to_vec).collect();
    let outs = run_together(
        &sb,
        &fake,
        &parts,
        &["--rpd", "10", "--status-column", "status"],
    );
    let outputs: Vec<_> = (0..outs.len())
        .map(|i| sb.path(&format!("out{i}.csv")))
        .collect();
    assert_day_shared(&fake, &outs, &outputs, 20, 10);
}
