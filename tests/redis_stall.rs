//! A Redis server that goes silent never holds up the run itself: the state's reads and
//! writes are made on a thread of their own, so the pipeline goes on answering (here:
//! to Ctrl-C) while a call waits out its response timeout. Requests cannot go meanwhile
//! (each needs a grant from the quota store on the same server), so the signal is what
//! shows it.

mod common;

use std::io::{BufRead, BufReader};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::redis::RedisServer;
use common::*;

/// Sends lines of the child's stderr, with when each came, to the receiver.
fn stderr_lines(child: &mut std::process::Child) -> mpsc::Receiver<(Instant, String)> {
    let err = child.stderr.take().expect("stderr piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines() {
            let Ok(line) = line else { return };
            if tx.send((Instant::now(), line)).is_err() {
                return;
            }
        }
    });
    rx
}

#[test]
fn ctrl_c_is_acted_on_at_once_while_redis_hangs() {
    let fake = FakeProvider::start(FakeConfig::with_keys(&[PLANTED]));
    let redis = RedisServer::start();
    let url = redis.url(0);
    let sb = Sandbox::new();
    sb.write_keys(&[PLANTED]);
    let texts = smsa(100);
    let input = sb.path("in.csv");
    let output = sb.path("out.csv");
    write_input(&input, &texts);
    let mut cmd = sb.label(
        &fake,
        &input,
        &output,
        &[
            "--rpm",
            "1200",
            "--concurrency",
            "4",
            "--store-timeout",
            "60",
            "-vv",
        ],
    );
    cmd.args(["--state", &url]);
    let mut child = spawn(cmd);
    wait_for_rows(&output, 10, &mut child);
    let lines = stderr_lines(&mut child);
    redis.stop();
    // Long enough for the run to have made a state call (it writes usage every 500 ms
    // and reads what other runs found every second) that now waits out the 2 s response
    // timeout; before, that call held the whole pipeline, the signal included.
    std::thread::sleep(Duration::from_millis(1300));
    let sent = Instant::now();
    // SAFETY: a plain kill(2) to our own child.
    assert_eq!(
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) },
        0
    );
    let mut seen = Vec::new();
    let heard = loop {
        let (at, line) = lines
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("no word of the signal: {seen:#?}"));
        if line.contains("SIGINT (Ctrl-C) received") {
            break at;
        }
        seen.push(line);
    };
    let took = heard.saturating_duration_since(sent);
    redis.resume();
    let out = wait_with_limit(child, Duration::from_secs(60));
    eprintln!("the signal was acted on {took:?} after it was sent: {seen:#?}");
    assert_eq!(code(&out), 130, "{seen:#?}");
    // Before: 0.7 to 1.7 s (the rest of the 2 s timeout); now a few milliseconds. The
    // bound leaves room for a loaded machine.
    assert!(
        took < Duration::from_millis(500),
        "{took:?} to act on Ctrl-C while Redis hangs: {seen:#?}"
    );
    let done = complete_rows(&output);
    assert!((10..texts.len()).contains(&done), "{done} rows");
    // The same command, Redis thawed, labels the rest.
    let mut again = sb.label(&fake, &input, &output, &["--rpm", "1200"]);
    again.args(["--state", &url]);
    let out = run(&mut again);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_labeled(&output, &texts);
}
