//! Alerts (#24 item 5): a key's quota nearly spent, a low success rate over the last
//! requests, no key left that can label, a state that stops answering; as lines in the
//! run's log, as banners on the dashboard, and as JSON POSTs to a webhook receiver started
//! here: once per condition, retried when the receiver fails, never followed through a
//! redirect, and never holding up labeling when the receiver hangs.

mod common;
mod dashsrv;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// How the receiver answers.
#[derive(Clone, Copy)]
enum Mode {
    Ok,
    /// 500 to the first n posts, then 200.
    FailFirst(usize),
    /// Reads the post, never answers.
    Hang,
    /// 302 to this port.
    Redirect(u16),
}

/// A webhook receiver on 127.0.0.1: every POST's body, in order of arrival.
struct Receiver {
    port: u16,
    bodies: Arc<Mutex<Vec<String>>>,
}

impl Receiver {
    fn start(mode: Mode) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let seen = bodies.clone();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for stream in listener.incoming() {
                let Ok(mut s) = stream else { continue };
                let Some(body) = read_request(&mut s) else {
                    continue;
                };
                let n = {
                    let mut b = seen.lock().unwrap();
                    b.push(body);
                    b.len()
                };
                let answer = match mode {
                    Mode::Ok => "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok".to_string(),
                    Mode::FailFirst(k) if n <= k => "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string(),
                    Mode::FailFirst(_) => "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok".to_string(),
                    Mode::Redirect(to) => format!("HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:{to}/elsewhere\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
                    Mode::Hang => {
                        held.push(s);
                        continue;
                    }
                };
                let _ = s.write_all(answer.as_bytes());
            }
        });
        Receiver { port, bodies }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    /// The `text` of every post received.
    fn texts(&self) -> Vec<String> {
        self.bodies
            .lock()
            .unwrap()
            .iter()
            .map(|b| {
                let v: Value = serde_json::from_str(b).unwrap_or_else(|_| panic!("not JSON: {b}"));
                assert_eq!(v.as_object().unwrap().len(), 1, "{b}");
                v["text"].as_str().unwrap().to_string()
            })
            .collect()
    }
}

/// Reads one request's head and body (by its Content-Length).
fn read_request(s: &mut TcpStream) -> Option<String> {
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            assert!(head.starts_with("POST /hook "), "{head}");
            assert!(
                head.to_ascii_lowercase()
                    .contains("content-type: application/json"),
                "{head}"
            );
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            if body.len() >= len {
                return Some(body[..len].to_string());
            }
        }
    }
}

/// 20 rows with key 1 allowed 34 requests a day, sent 12 at once, the first 12 requests
/// failing (500, each row retried once): 32 requests, so 5.9 % of the quota left, and 20
/// successes after 12 failures: a quota alert and a success-rate alert.
fn quota_and_failures(mode: Mode) -> (Output, Receiver, Sandbox, Duration) {
    let receiver = Receiver::start(mode);
    let (fake, sb, texts, input, output) = setup(&[PLANTED], FakeConfig::with_keys(&[PLANTED]), 20);
    sb.add_env_lines(&["GROQ_API_KEY_1_DAILY_REQUESTS=34"]);
    fake.push_faults(std::iter::repeat_n(Fault::Status(500), 12));
    let url = receiver.url();
    let start = Instant::now();
    let out = run_with_limit(
        &mut sb.label(
            &fake,
            &input,
            &output,
            &[
                "--alert-webhook",
                &url,
                "--alert-window",
                "10",
                "--batch-size",
                "1",
                "--concurrency",
                "12",
            ],
        ),
        Duration::from_secs(90),
    );
    let took = start.elapsed();
    assert_eq!(fake.total_requests(), 32, "{}", stderr(&out));
    assert_labeled(&output, &texts);
    (out, receiver, sb, took)
}

const QUOTA: &str = "key groq #1 gsk_";
const SUCCESS: &str = "success rate ";

fn count(texts: &[String], start: &str) -> usize {
    texts.iter().filter(|t| t.starts_with(start)).count()
}

#[test]
fn a_run_raises_each_alert_once_in_its_log_and_at_the_webhook() {
    let (out, receiver, sb, _) = quota_and_failures(Mode::Ok);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let log = stderr(&out);
    assert_eq!(log.matches(&format!("alert: {QUOTA}")).count(), 1, "{log}");
    assert!(
        log.contains("% of its daily requests quota left (alert below 10 %)"),
        "{log}"
    );
    assert_eq!(
        log.matches(&format!("alert: {SUCCESS}")).count(),
        1,
        "{log}"
    );
    let texts = receiver.texts();
    assert_eq!(
        (count(&texts, QUOTA), count(&texts, SUCCESS), texts.len()),
        (1, 1, 2),
        "{texts:?}"
    );
    sb.assert_no_leak(&[&out], &[PLANTED]);
    for t in &texts {
        assert!(!t.contains("PLANTEDFAKEKEY"), "{t}");
    }
}

#[test]
fn a_failing_receiver_gets_the_alert_again_with_back_off() {
    let (out, receiver, _sb, _) = quota_and_failures(Mode::FailFirst(2));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let texts = receiver.texts();
    // The first alert is posted three times (500, 500, 200), the second once.
    assert_eq!(texts.len(), 4, "{texts:?}");
    assert_eq!(texts[0], texts[1]);
    assert_eq!(texts[1], texts[2]);
    assert_eq!(
        (count(&texts, QUOTA) + count(&texts, SUCCESS)),
        4,
        "{texts:?}"
    );
    assert_ne!(texts[3], texts[0]);
    assert!(!stderr(&out).contains("not delivered"), "{}", stderr(&out));
}

#[test]
fn a_hanging_receiver_does_not_hold_up_labeling() {
    let (out, receiver, _sb, took) = quota_and_failures(Mode::Hang);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(!receiver.texts().is_empty(), "it was posted to");
    // The rows take about a second; the end waits at most a few seconds for the queue.
    println!("with a hanging receiver the run took {took:?}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

#[test]
fn no_key_left_is_an_alert_in_the_log_on_the_page_and_redirects_are_not_followed() {
    let elsewhere = Receiver::start(Mode::Ok);
    let receiver = Receiver::start(Mode::Redirect(elsewhere.port));
    let cfg = FakeConfig {
        keys: vec![common::FakeKey::invalid(PLANTED)],
        ..FakeConfig::default()
    };
    let (fake, sb, _, input, output) = setup(&[PLANTED], cfg, 3);
    let url = receiver.url();
    let out = run_with_limit(
        &mut sb.label(&fake, &input, &output, &["--alert-webhook", &url]),
        Duration::from_secs(60),
    );
    let log = stderr(&out);
    assert!(
        log.contains("alert: no key can label: 0 exhausted, 1 invalid, 0 disabled"),
        "{log}"
    );
    let texts = receiver.texts();
    assert_eq!(
        texts,
        ["no key can label: 0 exhausted, 1 invalid, 0 disabled"]
    );
    assert!(elsewhere.texts().is_empty(), "the redirect was followed");
    assert!(log.contains("redirects are not followed"), "{log}");
    assert!(!log.contains(&url), "the webhook URL is not printed: {log}");

    // The dashboard shows it as a banner (its API), from the state alone.
    let d = dashsrv::Dash::start(&sb, &["--listen", "127.0.0.1:0"], None);
    let start = Instant::now();
    let alerts = loop {
        let r = dashsrv::http(&d.addr, "GET", "/api/alerts", &[], "");
        assert_eq!(r.status, 200, "{}", r.body);
        let v: Value = serde_json::from_str(&r.body).unwrap();
        if !v.as_array().unwrap().is_empty() || start.elapsed() > Duration::from_secs(10) {
            break v;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(alerts[0]["id"], "keys", "{alerts}");
    assert_eq!(
        alerts[0]["text"],
        "no key can label: 0 exhausted, 1 invalid, 0 disabled"
    );
    let page = dashsrv::http(&d.addr, "GET", "/", &[], "");
    assert!(
        page.body.contains("id=\"alerts\""),
        "the page has a banner area"
    );
    let served = d.stop();
    assert!(
        stderr(&served).contains("alert: no key can label"),
        "{}",
        stderr(&served)
    );
    sb.assert_no_leak(&[&out, &served], &[PLANTED]);
}

#[test]
fn a_state_that_stops_answering_is_an_alert_on_the_dashboard() {
    let redis = common::redis::RedisServer::start();
    let url = redis.url(3);
    let (fake, sb, _, input, output) = setup(&[PLANTED], FakeConfig::with_keys(&[PLANTED]), 3);
    let out = run(&mut sb.label(&fake, &input, &output, &["--state", &url]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let d = dashsrv::Dash::start(&sb, &["--listen", "127.0.0.1:0", "--state", &url], None);
    let alerts = || {
        let r = dashsrv::http(&d.addr, "GET", "/api/alerts", &[], "");
        assert_eq!(r.status, 200, "{}", r.body);
        serde_json::from_str::<Value>(&r.body).unwrap()
    };
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        alerts(),
        serde_json::json!([]),
        "nothing to say while it answers"
    );
    drop(redis);
    let start = Instant::now();
    let shown = loop {
        let a = alerts();
        if a.as_array().unwrap().iter().any(|x| x["id"] == "state") {
            break a;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "no alert: {a}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        shown[0]["text"]
            .as_str()
            .unwrap()
            .starts_with("the state cannot be read: "),
        "{shown}"
    );
    let served = d.stop();
    assert!(
        stderr(&served).contains("alert: the state cannot be read"),
        "{}",
        stderr(&served)
    );
}
