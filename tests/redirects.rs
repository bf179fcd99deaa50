//! A provider that answers with a redirect to another host: the other host is never
//! contacted (a 302 would have turned the POST into a GET whose reply became labels; a 307
//! would have re-sent the texts there). The 3xx is a provider error naming the
//! `Location` (password masked), retried on the key like a 5xx.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::*;

/// A server on 127.0.0.1 that counts the connections it gets, and answers each with a
/// well-formed chat completion labeling everything `negatif`: what a hijacking host
/// would send.
struct Elsewhere {
    port: u16,
    contacted: Arc<AtomicUsize>,
}

impl Elsewhere {
    fn start() -> Elsewhere {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let contacted = Arc::new(AtomicUsize::new(0));
        let count = contacted.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                count.fetch_add(1, Ordering::SeqCst);
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf);
                let body = r#"{"choices":[{"message":{"role":"assistant","content":"negatif"}}],"data":[]}"#;
                let _ = write!(
                    conn,
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Elsewhere { port, contacted }
    }

    /// A location there, with a password that must never be printed.
    fn location(&self) -> String {
        format!("http://thief:Pa55wordThere@127.0.0.1:{}/steal", self.port)
    }

    fn contacted(&self) -> usize {
        self.contacted.load(Ordering::SeqCst)
    }
}

#[test]
fn a_redirect_is_never_followed_and_is_retried_as_a_provider_error() {
    for status in [302, 307] {
        let elsewhere = Elsewhere::start();
        let (fake, sb, texts, input, output) =
            setup(&[PLANTED], FakeConfig::with_keys(&[PLANTED]), 4);
        let redirect = || Fault::Redirect {
            status,
            location: elsewhere.location(),
        };
        fake.push_faults([redirect(), redirect()]);
        let out = run(&mut sb.label(&fake, &input, &output, &["--concurrency", "1", "-vv"]));
        let err = stderr(&out);
        assert_eq!(code(&out), 0, "{status}: {err}");
        assert_eq!(
            elsewhere.contacted(),
            0,
            "{status}: the other host was contacted"
        );
        // Every row has the provider's own label: no fallback, nothing from elsewhere.
        assert_labeled(&output, &texts);
        assert_eq!(fake.pending_faults(), 0);
        assert_eq!(fake.total_requests(), 6, "two redirects, each tried again");
        let named = format!(
            "server: HTTP {status} redirect to http://thief:***@127.0.0.1:{}/steal",
            elsewhere.port
        );
        assert!(err.contains(&named), "{status}: {err}");
        assert!(!err.contains("Pa55wordThere"), "{err}");
        // Counted as a server error of the key in the ledger.
        let usage = run(sb.cmd().args(["usage", "--json"]));
        let v: serde_json::Value = serde_json::from_slice(&usage.stdout).unwrap();
        assert!(v.to_string().contains("\"server\":2"), "{v}");
    }
}

#[test]
fn test_keys_reports_a_redirect_as_an_error_without_following_it() {
    let elsewhere = Elsewhere::start();
    let fake = FakeProvider::start(FakeConfig::with_keys(&[PLANTED]));
    let sb = Sandbox::new();
    sb.write_keys(&[PLANTED]);
    fake.push_models_faults([Fault::Redirect {
        status: 302,
        location: elsewhere.location(),
    }]);
    let out = run(sb
        .cmd()
        .args(["test-keys", "--json", "--base-url"])
        .arg(fake.base_url()));
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["status"], "error", "{v}");
    let detail = v[0]["detail"].as_str().unwrap();
    assert!(
        detail.contains("HTTP 302 redirect to http://thief:***@"),
        "{detail}"
    );
    assert_eq!(elsewhere.contacted(), 0);
}
