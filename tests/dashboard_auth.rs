//! The dashboard off loopback (#24 item 3): every read takes the token (header) or a
//! session cookie set by the login form; the token is never taken from a URL; it expires
//! with `--token-ttl`; `--tls-cert`/`--tls-key` serve HTTPS; security headers on every
//! answer; the login form takes a few attempts a minute per address. Each refusal has
//! its assertion here.

mod common;
mod dashsrv;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::*;
use dashsrv::*;

const TOKEN: &str = "a-test-token-of-32-characters-xx";
const PATHS: [&str; 6] = [
    "/",
    "/api/summary",
    "/api/keys",
    "/api/runs",
    "/api/usage",
    "/api/rotations",
];

/// Bound to every address (not loopback), reached through 127.0.0.1.
fn off_loopback(sb: &Sandbox, extra: &[&str]) -> (Dash, String) {
    let mut args = vec!["--listen", "0.0.0.0:0", "--token", TOKEN];
    args.extend(extra);
    let d = Dash::start(sb, &args, None);
    let port = d.addr.rsplit(':').next().unwrap().to_string();
    (d, format!("127.0.0.1:{port}"))
}

/// The session cookie (`name=value`) a login set.
fn login(a: &str, token: &str) -> Reply {
    http(
        a,
        "POST",
        "/login",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        &format!("token={token}"),
    )
}

fn session_of(r: &Reply) -> String {
    let set = r
        .header("set-cookie")
        .unwrap_or_else(|| panic!("{}", r.head));
    set.split(';').next().unwrap().to_string()
}

fn assert_security_headers(what: &str, r: &Reply) {
    let csp = r.header("content-security-policy").unwrap_or_default();
    assert!(csp.contains("frame-ancestors 'none'"), "{what}: {}", r.head);
    assert_eq!(
        r.header("x-frame-options").as_deref(),
        Some("DENY"),
        "{what}"
    );
    assert_eq!(
        r.header("cache-control").as_deref(),
        Some("no-store"),
        "{what}"
    );
    // These answers come over plain HTTP, where HSTS is not sent.
    assert_eq!(r.header("strict-transport-security"), None, "{what}");
}

#[test]
fn off_loopback_every_read_needs_the_token_or_a_session() {
    let (_fake, sb) = labeled_sandbox();
    let (d, a) = off_loopback(&sb, &[]);
    assert!(
        d.token_line.contains("the one given with --token"),
        "{}",
        d.token_line
    );
    let key = [("X-Autolabel-Token", TOKEN)];
    for path in PATHS {
        // No token: 401, and nothing of the state.
        let r = http(&a, "GET", path, &[], "");
        assert_eq!(r.status, 401, "{path}: {}", r.body);
        assert!(!r.body.contains("\"requests\""), "{path}: {}", r.body);
        assert_security_headers(path, &r);
        // A wrong token, or a session this server never opened: 401.
        let wrong = http(
            &a,
            "GET",
            path,
            &[("X-Autolabel-Token", "a-wrong-token-of-32-characters-x")],
            "",
        );
        assert_eq!(wrong.status, 401, "{path}");
        let forged = http(
            &a,
            "GET",
            path,
            &[(
                "Cookie",
                "autolabel_session=00112233445566778899aabbccddeeff",
            )],
            "",
        );
        assert_eq!(forged.status, 401, "{path}");
        // The token itself as a cookie is not a session either.
        let raw = http(
            &a,
            "GET",
            path,
            &[("Cookie", &format!("autolabel_session={TOKEN}"))],
            "",
        );
        assert_eq!(raw.status, 401, "{path}");
        // The token in the header: served.
        let ok = http(&a, "GET", path, &key, "");
        assert_eq!(ok.status, 200, "{path}: {}", ok.body);
        assert_security_headers(path, &ok);
    }
    // The page without a session is the login form, which posts the token in a body.
    let page = http(&a, "GET", "/", &[], "");
    assert!(
        page.body
            .contains("<form method=\"post\" action=\"/login\""),
        "{}",
        page.body
    );
    assert!(page.body.contains("needs the token"), "{}", page.body);
    let summary = http(&a, "GET", "/api/summary", &key, "");
    assert!(summary.body.contains("\"requests\":3"), "{}", summary.body);
    d.stop();
}

#[test]
fn the_login_form_sets_a_strict_http_only_session_that_opens_reads_but_not_actions() {
    let (_fake, sb) = labeled_sandbox();
    let (d, a) = off_loopback(&sb, &[]);
    let bad = login(&a, "a-wrong-token-of-32-characters-x");
    assert_eq!(bad.status, 401);
    assert!(bad.header("set-cookie").is_none(), "{}", bad.head);

    let ok = login(&a, TOKEN);
    assert_eq!(ok.status, 303, "{}", ok.body);
    assert_eq!(ok.header("location").as_deref(), Some("/"));
    let set = ok.header("set-cookie").unwrap();
    for part in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(part), "{part}: {set}");
    }
    assert!(!set.contains("Secure"), "plain HTTP: {set}");
    assert!(
        !set.contains(TOKEN),
        "the cookie is a session id, not the token: {set}"
    );
    let cookie = session_of(&ok);
    for path in PATHS {
        let r = http(&a, "GET", path, &[("Cookie", &cookie)], "");
        assert_eq!(r.status, 200, "{path}: {}", r.body);
    }
    // A session reads; acting still takes the token in the header.
    let act = http(&a, "POST", "/api/rotate", &[("Cookie", &cookie)], "");
    assert_eq!(act.status, 401, "{}", act.body);
    let act = http(
        &a,
        "POST",
        "/api/rotate",
        &[("Cookie", &cookie), ("X-Autolabel-Token", TOKEN)],
        "",
    );
    assert_eq!(act.status, 200, "{}", act.body);
    // Logging out ends it.
    let out = http(&a, "POST", "/logout", &[("Cookie", &cookie)], "");
    assert_eq!(out.status, 303);
    assert_eq!(
        http(&a, "GET", "/api/keys", &[("Cookie", &cookie)], "").status,
        401
    );
    d.stop();
}

#[test]
fn the_login_form_takes_five_attempts_per_address_and_window_then_429() {
    let (_fake, sb) = labeled_sandbox();
    // A 6 s window instead of a minute, so the test sees it end.
    let (d, a) = off_loopback(&sb, &["--login-window", "6s"]);
    let wrong = "a-wrong-token-of-32-characters-x";
    // Four wrong tokens, then the right one: it logs in and starts the count again.
    for _ in 0..4 {
        assert_eq!(login(&a, wrong).status, 401);
    }
    assert_eq!(login(&a, TOKEN).status, 303);
    for i in 0..5 {
        let r = login(&a, wrong);
        assert_eq!(r.status, 401, "attempt {i} after a success: {}", r.body);
    }
    // The sixth attempt in the window is refused before the token is compared: even the
    // right one gets 429, with no session.
    let r = login(&a, TOKEN);
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(r.header("set-cookie").is_none(), "{}", r.head);
    assert!(r.body.contains("too many attempts"), "{}", r.body);
    assert!(!r.body.contains(TOKEN));
    let wait: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=6).contains(&wait), "Retry-After: {wait}");
    assert_security_headers("429", &r);
    // The header token is a separate way in, and still works meanwhile.
    let key = [("X-Autolabel-Token", TOKEN)];
    assert_eq!(http(&a, "GET", "/api/keys", &key, "").status, 200);
    // Once Retry-After has passed, the right token logs in again.
    std::thread::sleep(Duration::from_millis(wait * 1000 + 300));
    let ok = login(&a, TOKEN);
    assert_eq!(ok.status, 303, "{}", ok.body);
    assert!(ok.header("set-cookie").is_some());
    d.stop();
}

#[test]
fn the_token_header_takes_five_wrong_tries_per_address_and_window_then_429() {
    let (_fake, sb) = labeled_sandbox();
    // On loopback: reads are open (a wrong header on them is not a try), actions take
    // the header. A 6 s window instead of a minute, so the test sees it end.
    let d = Dash::start(&sb, &["--token", TOKEN, "--login-window", "6s"], None);
    let a = d.addr.clone();
    let wrong = [("X-Autolabel-Token", "a-wrong-token-of-32-characters-x")];
    let right = [("X-Autolabel-Token", TOKEN)];
    for i in 0..4 {
        let r = http(&a, "POST", "/api/rotate", &wrong, "");
        assert_eq!(r.status, 401, "try {i}: {}", r.body);
    }
    // The right token starts the count again.
    assert_eq!(http(&a, "POST", "/api/rotate", &right, "").status, 200);
    for i in 0..5 {
        let r = http(&a, "POST", "/api/rotate", &wrong, "");
        assert_eq!(r.status, 401, "try {i} after a success: {}", r.body);
        // Open reads never count, whatever header they carry.
        assert_eq!(http(&a, "GET", "/api/keys", &wrong, "").status, 200);
    }
    // The sixth wrong try in the window locks the header out, even the right token:
    // a guess can no longer be told from a hit.
    let r = http(&a, "POST", "/api/rotate", &right, "");
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(r.body.contains("too many wrong tokens"), "{}", r.body);
    assert!(!r.body.contains(TOKEN));
    let wait: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=6).contains(&wait), "Retry-After: {wait}");
    // The login form counts apart: it still takes the right token meanwhile.
    assert_eq!(login(&a, TOKEN).status, 303);
    std::thread::sleep(Duration::from_millis(wait * 1000 + 300));
    assert_eq!(http(&a, "POST", "/api/rotate", &right, "").status, 200);
    d.stop();
}

#[test]
fn the_token_in_a_url_is_refused_even_when_right() {
    let (_fake, sb) = labeled_sandbox();
    let (d, a) = off_loopback(&sb, &[]);
    for url in [
        format!("/api/summary?token={TOKEN}"),
        format!("/api/summary?x-autolabel-token={TOKEN}"),
        format!("/?t={TOKEN}"),
        "/api/keys?token=anything".to_string(),
        format!("/login?token={TOKEN}"),
    ] {
        let r = http(&a, "GET", &url, &[], "");
        assert_eq!(r.status, 400, "{url}: {}", r.body);
        assert!(r.body.contains("never taken from a URL"), "{}", r.body);
        assert!(r.header("set-cookie").is_none(), "{url}");
        assert!(
            !r.body.contains(TOKEN),
            "{url}: the refusal does not echo it"
        );
    }
    // Posting the login form to a URL holding the token is refused too.
    let r = http(
        &a,
        "POST",
        &format!("/login?token={TOKEN}"),
        &[("Content-Type", "application/x-www-form-urlencoded")],
        &format!("token={TOKEN}"),
    );
    assert_eq!(r.status, 400);
    assert!(r.header("set-cookie").is_none());
    // On loopback as well (reads there need no token, but a URL still must not carry it).
    let (_f2, sb2) = labeled_sandbox();
    let local = Dash::start(&sb2, &["--listen", "127.0.0.1:0"], None);
    let t = local.token();
    let r = http(&local.addr, "GET", &format!("/api/keys?token={t}"), &[], "");
    assert_eq!(r.status, 400, "{}", r.body);
    d.stop();
    local.stop();
}

#[test]
fn an_expired_token_opens_nothing_and_its_sessions_end_with_it() {
    let (_fake, sb) = labeled_sandbox();
    let (d, a) = off_loopback(&sb, &["--token-ttl", "3s"]);
    let key = [("X-Autolabel-Token", TOKEN)];
    assert_eq!(http(&a, "GET", "/api/keys", &key, "").status, 200);
    let cookie = session_of(&login(&a, TOKEN));
    assert_eq!(
        http(&a, "GET", "/api/keys", &[("Cookie", &cookie)], "").status,
        200
    );
    std::thread::sleep(Duration::from_millis(3500));
    let r = http(&a, "GET", "/api/keys", &key, "");
    assert_eq!(r.status, 401);
    assert!(r.body.contains("expired"), "{}", r.body);
    assert_eq!(
        http(&a, "GET", "/api/keys", &[("Cookie", &cookie)], "").status,
        401
    );
    assert_eq!(http(&a, "POST", "/api/rotate", &key, "").status, 401);
    let again = login(&a, TOKEN);
    assert_eq!(again.status, 401);
    assert!(again.header("set-cookie").is_none());
    d.stop();

    // On loopback reads stay open, and actions end with the token.
    let local = Dash::start(&sb, &["--listen", "127.0.0.1:0", "--token-ttl", "2s"], None);
    let t = local.token();
    let act = [("X-Autolabel-Token", t.as_str())];
    assert_eq!(
        http(&local.addr, "POST", "/api/rotate", &act, "").status,
        200
    );
    std::thread::sleep(Duration::from_millis(2500));
    let r = http(&local.addr, "POST", "/api/rotate", &act, "");
    assert_eq!(r.status, 401);
    assert!(r.body.contains("expired"), "{}", r.body);
    assert_eq!(http(&local.addr, "GET", "/api/keys", &[], "").status, 200);
    local.stop();
}

fn tls_files() -> (String, String) {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/tls");
    (format!("{dir}/cert.pem"), format!("{dir}/key.pem"))
}

fn tls_client() -> reqwest::Client {
    let (cert, _) = tls_files();
    let root = reqwest::Certificate::from_pem(&std::fs::read(cert).unwrap()).unwrap();
    reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(root)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_serves_https_and_plain_http_to_its_port_gets_nothing() {
    let (_fake, sb) = labeled_sandbox();
    let (cert, key) = tls_files();
    let d = Dash::start(
        &sb,
        &[
            "--listen",
            "0.0.0.0:0",
            "--token",
            TOKEN,
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
        ],
        None,
    );
    assert!(d.url.starts_with("https://"), "{}", d.url);
    let port = d.addr.rsplit(':').next().unwrap().to_string();
    let base = format!("https://localhost:{port}");
    let client = tls_client();
    let r = client
        .get(format!("{base}/api/summary"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "reads take the token over TLS too");
    // Over TLS every answer, a refusal too, tells the browser to keep to HTTPS.
    assert_eq!(r.headers()["strict-transport-security"], "max-age=31536000");
    let r = client
        .get(format!("{base}/api/summary"))
        .header("X-Autolabel-Token", TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert_eq!(r.headers()["strict-transport-security"], "max-age=31536000");
    assert!(r.text().await.unwrap().contains("\"requests\":3"));
    let login = client
        .post(format!("{base}/login"))
        .form(&[("token", TOKEN)])
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 303);
    let set = login.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(set.contains("; Secure"), "{set}");
    let cookie = set.split(';').next().unwrap().to_string();
    let page = client
        .get(format!("{base}/"))
        .header("Cookie", cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(
        page.headers()["strict-transport-security"],
        "max-age=31536000"
    );

    // Plain HTTP to the TLS port: no HTTP answer, nothing served.
    let plain = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(format!("127.0.0.1:{port}")).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(format!("GET /api/summary HTTP/1.1\r\nHost: localhost\r\nX-Autolabel-Token: {TOKEN}\r\n\r\n").as_bytes())
            .unwrap();
        let mut raw = Vec::new();
        let _ = s.read_to_end(&mut raw);
        raw
    })
    .await
    .unwrap();
    assert!(
        !plain.starts_with(b"HTTP/"),
        "{:?}",
        String::from_utf8_lossy(&plain)
    );
    assert!(!contains(&plain, b"requests"));
    // And an http:// client fails outright.
    let http_client = reqwest::Client::new();
    assert!(http_client
        .get(format!(
            "http://127.0.0.1:{}/api/summary",
            d.addr.rsplit(':').next().unwrap()
        ))
        .send()
        .await
        .is_err());
    d.stop();
}

#[test]
fn tls_flags_are_checked_before_listening() {
    let sb = Sandbox::new();
    sb.write_keys(&[PLANTED]);
    let (cert, key) = tls_files();
    let missing = sb.path("nope.pem");
    let missing = missing.to_str().unwrap();
    let cases: [(&[&str], &str); 4] = [
        (&["--tls-cert", &cert], "--tls-key"),
        (&["--tls-key", &key], "--tls-cert"),
        (&["--tls-cert", missing, "--tls-key", &key], "nope.pem"),
        // The key where the certificate belongs.
        (&["--tls-cert", &key, "--tls-key", &cert], "key.pem"),
    ];
    for (args, names) in cases {
        let out = run_with_limit(
            sb.cmd()
                .args(["dashboard", "--listen", "127.0.0.1:0"])
                .args(args),
            Duration::from_secs(20),
        );
        assert_eq!(code(&out), 2, "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(names), "{args:?}: {}", stderr(&out));
    }
    let ttl = run_with_limit(
        sb.cmd().args(["dashboard", "--token-ttl", "forever"]),
        Duration::from_secs(20),
    );
    assert_eq!(code(&ttl), 2);
}

#[test]
fn plain_http_off_loopback_warns_that_the_token_travels_in_clear() {
    let (_fake, sb) = labeled_sandbox();
    let (d, _) = off_loopback(&sb, &[]);
    let out = d.stop();
    assert!(stderr(&out).contains("travel in clear"), "{}", stderr(&out));
}
