//! The dashboard as the tests drive it: started as a child on a free port, asked over
//! plain HTTP/1.1, and loaded in headless Chromium.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::{run_with_limit, wait_with_limit, Sandbox};

/// A reply: status and body.
pub struct Reply {
    pub status: u16,
    pub body: String,
}

/// One HTTP/1.1 request to the dashboard, by hand (the test needs nothing more).
pub fn http(addr: &str, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\nContent-Length: 0\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("Host: {addr}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    // The JSON bodies are small: axum sends them with a length, not chunked.
    Reply {
        status,
        body: body.to_string(),
    }
}

pub fn json(r: &Reply) -> Value {
    assert_eq!(r.status, 200, "{}", r.body);
    serde_json::from_str(&r.body).unwrap()
}

/// The dashboard as a child: its address and token from the first two stdout lines.
pub struct Dashboard {
    child: Option<Child>,
    pub addr: String,
    pub token: String,
}

impl Dashboard {
    pub fn start(sb: &Sandbox) -> Dashboard {
        let mut child = sb
            .cmd()
            .args(["dashboard", "--listen", "127.0.0.1:0", "-v"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().unwrap().unwrap();
        let addr = first
            .strip_prefix("dashboard: http://")
            .and_then(|a| a.strip_suffix('/'))
            .unwrap_or_else(|| panic!("{first}"))
            .to_string();
        let second = lines.next().unwrap().unwrap();
        let token = second.rsplit(' ').next().unwrap().to_string();
        assert_eq!(token.len(), 32, "{second}");
        Dashboard {
            child: Some(child),
            addr,
            token,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// Stops it (SIGTERM) and returns what it printed on stderr.
    pub fn stop(mut self) -> Output {
        let child = self.child.take().unwrap();
        // SAFETY: a plain kill(2) to our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        wait_with_limit(child, Duration::from_secs(20))
    }
}

impl Drop for Dashboard {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Debian names it `chromium`; other systems `chromium-browser`. None: the test fails.
pub fn chromium() -> PathBuf {
    for name in ["chromium", "chromium-browser"] {
        if let Ok(out) = Command::new("sh")
            .args(["-c", &format!("command -v {name}")])
            .output()
        {
            let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if out.status.success() && !path.is_empty() {
                return PathBuf::from(path);
            }
        }
    }
    panic!("chromium is not installed: `apt-get install -y chromium` (./test.sh does it)");
}

/// Headless Chromium with its own profile in `profile`, that reaches nothing but
/// 127.0.0.1 (every other name fails to resolve): the start of every browser the tests run.
pub fn headless_chromium(profile: &Path) -> Command {
    let mut cmd = Command::new(chromium());
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--hide-scrollbars",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    ])
    .arg(format!("--user-data-dir={}", profile.display()));
    cmd
}

/// Headless Chromium that reaches nothing but 127.0.0.1, with the page's scripts run
/// (virtual time) before the DOM is printed or the screenshot taken.
pub fn browser(profile: &Path, args: &[&str], url: &str) -> Output {
    let mut cmd = headless_chromium(profile);
    cmd.arg("--virtual-time-budget=4000")
        .args(args)
        .arg(url)
        .stdin(Stdio::null());
    run_with_limit(&mut cmd, Duration::from_secs(90))
}
