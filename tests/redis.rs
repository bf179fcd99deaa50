//! Runs on several machines share the keys' limits and the whole state through Redis.
//! Each run here has its own HOME and data directory, as separate machines would, and
//! a real `redis-server` started by the test on 127.0.0.1.

mod common;

use std::process::{Child, Output};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::redis::RedisServer;
use common::*;

/// A machine of its own: a sandbox with its own HOME, data dir and env file. Its
/// commands are given `--state <Redis URL>`.
fn machine(keys: &[&str]) -> Sandbox {
    let sb = Sandbox::new();
    sb.write_keys(keys);
    sb
}

/// `label` on a machine, with the state pointed at Redis (the flag wins over the
/// sandbox's file default).
fn label_on(
    sb: &Sandbox,
    fake: &FakeProvider,
    url: &str,
    texts: &[String],
    extra: &[&str],
) -> Child {
    let input = sb.path("in.csv");
    write_input(&input, texts);
    let mut cmd = sb.label(fake, &input, &sb.path("out.csv"), extra);
    cmd.args(["--state", url]);
    spawn(cmd)
}

/// Machines with `keys`, one per part of `texts`, labeling their part at once through
/// Redis; waits for every one.
fn label_together(
    keys: &[&str],
    fake: &FakeProvider,
    url: &str,
    parts: &[Vec<String>],
    extra: &[&str],
) -> (Vec<Sandbox>, Vec<Output>) {
    let machines: Vec<Sandbox> = parts.iter().map(|_| machine(keys)).collect();
    let children: Vec<Child> = machines
        .iter()
        .zip(parts)
        .map(|(sb, part)| label_on(sb, fake, url, part, extra))
        .collect();
    let outs = children
        .into_iter()
        .map(|c| wait_with_limit(c, Duration::from_secs(120)))
        .collect();
    (machines, outs)
}

/// Every key under the database and what it holds, as bytes, for the leak check.
fn redis_contents(url: &str) -> Vec<u8> {
    let mut c = ::redis::Client::open(url)
        .unwrap()
        .get_connection()
        .unwrap();
    let keys: Vec<Vec<u8>> = ::redis::cmd("KEYS").arg("*").query(&mut c).unwrap();
    let mut all = Vec::new();
    for k in keys {
        let kind: String = ::redis::cmd("TYPE").arg(&k).query(&mut c).unwrap();
        let values: Vec<Vec<u8>> = match kind.as_str() {
            "string" => vec![::redis::cmd("GET").arg(&k).query(&mut c).unwrap()],
            "hash" => ::redis::cmd("HGETALL").arg(&k).query(&mut c).unwrap(),
            "list" => ::redis::cmd("LRANGE")
                .arg(&k)
                .arg(0)
                .arg(-1)
                .query(&mut c)
                .unwrap(),
            "set" => ::redis::cmd("SMEMBERS").arg(&k).query(&mut c).unwrap(),
            "zset" => ::redis::cmd("ZRANGE")
                .arg(&k)
                .arg(0)
                .arg(-1)
                .query(&mut c)
                .unwrap(),
            other => panic!("unexpected Redis type {other}"),
        };
        all.extend_from_slice(&k);
        for v in values {
            all.push(b'\n');
            all.extend_from_slice(&v);
        }
        all.push(b'\n');
    }
    all
}

fn assert_not_in_redis(url: &str, secrets: &[&str]) {
    let dump = redis_contents(url);
    assert!(dump.len() > 100, "the state should be in Redis");
    for s in secrets {
        for w in windows(s, LEAK_WINDOW) {
            assert!(!contains(&dump, w.as_bytes()), "{w:?} of {s} is in Redis");
        }
    }
}

#[test]
fn three_machines_pace_each_organization_together() {
    let keys = [PLANTED, KEY2, KEY3];
    let fake = FakeProvider::start(FakeConfig::with_keys(&keys));
    let redis = RedisServer::start();
    let url = redis.url(0);
    let parts: Vec<Vec<String>> = smsa(90).chunks(30).map(<[String]>::to_vec).collect();
    let (machines, outs) = label_together(
        &keys,
        &fake,
        &url,
        &parts,
        &["--rpm", "600", "--concurrency", "4"],
    );
    for (sb, (out, part)) in machines.iter().zip(outs.iter().zip(&parts)) {
        assert_eq!(code(out), 0, "{}", stderr(out));
        assert_labeled(&sb.path("out.csv"), part);
        // Nothing was kept on the machine: no state file in its data dir.
        assert!(!sb.path("xdg/autolabel/state.sqlite3").exists());
        assert!(!sb.state().exists());
    }
    assert_eq!(fake.count_status(429), 0);
    // 600 a minute is one every 100 ms per organization: at most 10 in a second (one more
    // for arrival jitter), where three runs each at their own pace would send 30.
    for key in keys {
        assert_paced(&fake, key, 11);
    }
    for sb in &machines {
        sb.assert_no_leak(&outs.iter().collect::<Vec<_>>(), &keys);
    }
    assert_not_in_redis(&url, &keys);

    // The reports read the same Redis from any machine: 90 requests in today's ledger.
    let other = machine(&keys);
    let out = run(other.cmd().args(["usage", "--json", "--state", &url]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let requests: u64 = report["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["today"]["requests"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(requests, 90, "{report}");
}

#[test]
fn two_machines_share_one_daily_quota() {
    let fake = FakeProvider::start(FakeConfig::single_org(
        &[PLANTED],
        "org_a",
        OrgLimits {
            rpd: Some(10),
            ..Default::default()
        },
    ));
    let redis = RedisServer::start();
    let url = redis.url(3);
    let parts: Vec<Vec<String>> = smsa(40).chunks(20).map(<[String]>::to_vec).collect();
    let (machines, outs) = label_together(
        &[PLANTED],
        &fake,
        &url,
        &parts,
        &["--rpd", "10", "--status-column", "status"],
    );
    let outputs: Vec<_> = machines.iter().map(|sb| sb.path("out.csv")).collect();
    assert_day_shared(&fake, &outs, &outputs, 20, 10);
}

#[test]
fn redis_down_for_a_while_holds_every_request_and_loses_nothing() {
    let fake = FakeProvider::start(FakeConfig::with_keys(&[PLANTED]));
    let mut redis = RedisServer::start();
    let url = redis.url(0);
    let sb = machine(&[PLANTED]);
    let texts = smsa(80);
    // 20 a second: the outage falls in the middle of the run.
    let mut child = label_on(
        &sb,
        &fake,
        &url,
        &texts,
        &["--rpm", "1200", "--concurrency", "4"],
    );
    let output = sb.path("out.csv");
    wait_for_rows(&output, 20, &mut child);
    redis.kill();
    let down_at = fake.elapsed();
    std::thread::sleep(Duration::from_secs(2));
    let up_at = fake.elapsed();
    redis.restart();
    let out = wait_with_limit(child, Duration::from_secs(120));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_labeled(&output, &texts);
    // Requests granted just before the kill may still be on their way; after that, none
    // until Redis answers again.
    let during = fake
        .requests()
        .iter()
        .filter(|r| r.at > down_at + Duration::from_millis(250) && r.at < up_at)
        .count();
    assert_eq!(
        during, 0,
        "requests were sent without a grant while Redis was down"
    );
    assert_eq!(fake.total_requests(), texts.len(), "each row asked once");
    let err = stderr(&out);
    assert!(err.contains("unreachable"), "the outage is reported: {err}");
}

#[test]
fn redis_gone_past_the_store_timeout_stops_with_75_and_a_rerun_completes() {
    let fake = FakeProvider::start(FakeConfig::with_keys(&[PLANTED]));
    let mut redis = RedisServer::start_with(Some("pw-of-redis-4242"));
    let url = redis.url(0);
    let sb = machine(&[PLANTED]);
    let texts = smsa(60);
    let mut child = label_on(
        &sb,
        &fake,
        &url,
        &texts,
        &[
            "--rpm",
            "1200",
            "--concurrency",
            "4",
            "--store-timeout",
            "2",
        ],
    );
    let output = sb.path("out.csv");
    wait_for_rows(&output, 10, &mut child);
    redis.kill();
    let started = Instant::now();
    let out = wait_with_limit(child, Duration::from_secs(60));
    assert_eq!(code(&out), 75, "{}", stderr(&out));
    assert!(started.elapsed() >= Duration::from_secs(2));
    let err = stderr(&out);
    assert!(err.contains(&format!("127.0.0.1:{}", redis.port)), "{err}");
    assert!(!err.contains("pw-of-redis-4242"), "{err}");
    let done = read_rows(&output).len() - 1;
    assert!(done >= 10 && done < texts.len(), "{done} rows");

    // Redis back, empty: the rerun labels the rest and keeps what was written.
    redis.restart();
    let mut again = sb.label(&fake, &sb.path("in.csv"), &output, &["--rpm", "1200"]);
    again.args(["--state", &url]);
    let out = run(&mut again);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_labeled(&output, &texts);
    assert_eq!(fake.total_requests(), texts.len(), "no row asked twice");
}

#[test]
fn unusable_redis_at_start_is_a_clear_exit_2_that_writes_nothing() {
    let fake = FakeProvider::start(FakeConfig::with_keys(&[PLANTED]));
    let redis = RedisServer::start_with(Some("right-password-77"));
    let sb = machine(&[PLANTED]);
    let texts = smsa(5);
    let input = sb.path("in.csv");
    write_input(&input, &texts);
    let output = sb.path("out.csv");
    let port = redis.port;
    let try_with = |url: &str| {
        let mut cmd = sb.label(&fake, &input, &output, &[]);
        cmd.args(["--state", url]);
        run(&mut cmd)
    };

    let wrong = format!("redis://:wrong-password-66@127.0.0.1:{port}/0");
    let out = try_with(&wrong);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("credentials"), "{err}");
    assert!(!err.contains("wrong-password-66"), "{err}");

    // A database where the prefix already holds someone else's keys.
    let mut c = ::redis::Client::open(redis.url(5))
        .unwrap()
        .get_connection()
        .unwrap();
    ::redis::cmd("SET")
        .arg("autolabel:config")
        .arg("theirs")
        .query::<()>(&mut c)
        .unwrap();
    let out = try_with(&redis.url(5));
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("--redis-prefix"), "{}", stderr(&out));
    // ... which another prefix avoids.
    let mut cmd = sb.label(&fake, &input, &output, &["--redis-prefix", "labels:"]);
    cmd.args(["--state", &redis.url(5)]);
    let out = run(&mut cmd);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    std::fs::remove_file(&output).unwrap();

    drop(redis);
    let gone = format!("redis://:right-password-77@127.0.0.1:{port}/0");
    let out = try_with(&gone);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("redis://…@127.0.0.1:{port}/0")),
        "{err}"
    );
    assert!(err.contains("unreachable"), "{err}");
    assert!(!err.contains("right-password-77"), "{err}");
    assert!(!output.exists(), "nothing written");
    assert_eq!(
        fake.total_requests(),
        5,
        "only the run with a usable state sent"
    );
}

#[test]
fn the_state_and_keys_commands_work_against_redis() {
    let redis = RedisServer::start_with(Some("cmd-pw-31337"));
    let url = redis.url(2);
    let sb = machine(&[PLANTED, KEY2]);
    let other = machine(&[PLANTED, KEY2]);
    let on = |sb: &Sandbox, args: &[&str]| {
        let out = run(sb.cmd().args(args).args(["--state", &url]));
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        assert!(!format!("{}{}", stdout(&out), stderr(&out)).contains("cmd-pw-31337"));
        stdout(&out)
    };
    on(
        &sb,
        &["keys", "disable", "2", "--reason", "leaked in a log"],
    );
    // Another machine sees the decision.
    let listed = on(&other, &["keys", "list", "--json"]);
    assert!(listed.contains("leaked in a log"), "{listed}");
    let pruned = on(&sb, &["state", "prune", "--keep-days", "30"]);
    assert!(pruned.contains("removed"), "{pruned}");
    let vacuumed = on(&sb, &["state", "vacuum"]);
    assert!(vacuumed.contains("nothing to compact"), "{vacuumed}");

    // test-keys --chat tells the shared state what the provider says; usage --html reads it.
    let mut fake_keys = FakeConfig::with_keys(&[PLANTED]);
    fake_keys.keys.push(FakeKey::invalid(KEY2));
    let fake = FakeProvider::start(fake_keys);
    on(&other, &["keys", "enable", "2"]);
    let out = run(sb.cmd().args([
        "test-keys",
        "--chat",
        "--json",
        "--base-url",
        &fake.base_url(),
        "--state",
        &url,
    ]));
    assert_eq!(code(&out), 1, "key 2 is invalid: {}", stderr(&out));
    let listed = on(&other, &["keys", "list"]);
    assert!(
        listed.contains("invalid"),
        "another machine sees the invalid key: {listed}"
    );
    let page = other.path("usage.html");
    on(&other, &["usage", "--html", page.to_str().unwrap()]);
    assert!(std::fs::read_to_string(&page).unwrap().contains("<html"));
    assert_not_in_redis(&url, &[PLANTED, KEY2]);
}

/// FLUSHALL on a second connection while a run writes.
fn flush_all(url: &str) {
    let mut c = ::redis::Client::open(url)
        .unwrap()
        .get_connection()
        .unwrap();
    ::redis::cmd("FLUSHALL").query::<()>(&mut c).unwrap();
}

#[test]
fn a_flush_during_a_run_is_marked_again_and_later_runs_work() {
    let fake = FakeProvider::start(FakeConfig::with_keys(&[PLANTED]));
    let redis = RedisServer::start();
    let url = redis.url(0);
    let sb = machine(&[PLANTED]);
    let texts = smsa(60);
    let mut child = label_on(
        &sb,
        &fake,
        &url,
        &texts,
        &["--rpm", "1200", "--concurrency", "2"],
    );
    let output = sb.path("out.csv");
    wait_for_rows(&output, 10, &mut child);
    flush_all(&url);
    let out = wait_with_limit(child, Duration::from_secs(120));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_labeled(&output, &texts);

    // The running run wrote after the flush, and marked the prefix again as it did.
    let mut c = ::redis::Client::open(url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    let mark: Option<String> = ::redis::cmd("GET")
        .arg("autolabel:schema")
        .query(&mut c)
        .unwrap();
    assert_eq!(mark.as_deref(), Some("autolabel-state 1"));
    let out = run(sb.cmd().args(["keys", "list", "--state", &url]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let other = machine(&[PLANTED]);
    let more = smsa(70)[60..].to_vec();
    let out = wait_with_limit(
        label_on(&other, &fake, &url, &more, &["--rpm", "1200"]),
        Duration::from_secs(60),
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_labeled(&other.path("out.csv"), &more);
}
/// The time an "unreachable since …" line gives, as Unix seconds.
fn unreachable_since(err: &str) -> i64 {
    let at = err
        .split("unreachable since ")
        .nth(1)
        .and_then(|rest| rest.get(..20))
        .unwrap_or_else(|| panic!("no outage time in: {err}"));
    let unix = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    // The same format, from the nearest whole seconds around now.
    let now = unix(SystemTime::now());
    (now - 600..=now)
        .find(|s| autolabel::timeutil::rfc3339(UNIX_EPOCH + Duration::from_secs(*s as u64)) == at)
        .unwrap_or_else(|| panic!("not a recent time: {at}"))
}

#[test]
fn a_hung_redis_stops_the_run_with_75_within_the_store_timeout() {
    let fake = FakeProvider::start(FakeConfig::with_keys(&[PLANTED]));
    let redis = RedisServer::start();
    let url = redis.url(0);
    let sb = machine(&[PLANTED]);
    let texts = smsa(60);
    let mut child = label_on(
        &sb,
        &fake,
        &url,
        &texts,
        &["--rpm", "600", "--concurrency", "4", "--store-timeout", "5"],
    );
    let output = sb.path("out.csv");
    wait_for_rows(&output, 10, &mut child);
    let silent_at = Instant::now();
    let silent_wall = SystemTime::now();
    redis.stop();
    let out = wait_with_limit(child, Duration::from_secs(120));
    let took = silent_at.elapsed();
    redis.resume();
    eprintln!(
        "exit {:?} {took:?} after the server froze",
        out.status.code()
    );
    let err = stderr(&out);
    assert_eq!(code(&out), 75, "{err}");
    // Within N + 5 s of the server going silent (before: 26 s for N = 5), and the outage
    // dated from the first call that got no answer (before: 12 s late): the run asks the
    // store several times a second, so that call comes right after the freeze.
    assert!(took <= Duration::from_secs(10), "{took:?}: {err}");
    let since = unreachable_since(&err);
    let frozen = silent_wall.duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    assert!(
        (frozen..=frozen + 2).contains(&since),
        "the outage is dated {since}, the server froze at {frozen}: {err}"
    );
    assert!(err.contains("no answer within"), "{err}");
    let done = read_rows(&output).len() - 1;
    assert!(done >= 10 && done < texts.len(), "{done} rows");

    // Thawed, the same command labels the rest.
    let mut again = sb.label(&fake, &sb.path("in.csv"), &output, &["--rpm", "1200"]);
    again.args(["--state", &url]);
    let out = run(&mut again);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_labeled(&output, &texts);
}
