//! The real dashboard as a child process, and raw HTTP/1.1 to it: shared by the tests of
//! its limits, its authentication and its alerts (each includes this file as a module).

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::process::{Child, Output, Stdio};
use std::time::Duration;

use crate::common::*;

/// A state made by a real 3-row run with one key, so the dashboard has something to show.
pub fn labeled_sandbox() -> (FakeProvider, Sandbox) {
    let (fake, sb, _, input, output) = setup(&[PLANTED], FakeConfig::with_keys(&[PLANTED]), 3);
    let out = run(&mut sb.label(&fake, &input, &output, &[]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    (fake, sb)
}

/// The dashboard as a child: its address and token from its first stdout lines.
pub struct Dash {
    child: Option<Child>,
    pub addr: String,
    /// The first line: where the page is (`http://…/` or `https://…/`).
    pub url: String,
    pub token_line: String,
}

impl Dash {
    /// `autolabel dashboard <args>`, with the open-file limit set to `nofile` when given.
    pub fn start(sb: &Sandbox, args: &[&str], nofile: Option<u64>) -> Dash {
        let mut cmd = sb.cmd();
        cmd.arg("dashboard")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(n) = nofile {
            // SAFETY: setrlimit is async-signal-safe; nothing else runs in the child here.
            unsafe {
                cmd.pre_exec(move || {
                    let lim = libc::rlimit {
                        rlim_cur: n as libc::rlim_t,
                        rlim_max: n as libc::rlim_t,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let mut child = cmd.spawn().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let Some(Ok(url)) = lines.next() else {
            let out = wait_with_limit(child, Duration::from_secs(10));
            panic!("the dashboard did not start: {}", stderr(&out));
        };
        let addr = url
            .strip_prefix("dashboard: ")
            .map(|u| {
                u.trim_start_matches("http://")
                    .trim_start_matches("https://")
            })
            .and_then(|a| a.strip_suffix('/'))
            .unwrap_or_else(|| panic!("{url}"))
            .to_string();
        let token_line = lines.next().unwrap().unwrap();
        // Keep reading stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Dash {
            child: Some(child),
            addr,
            url: url.trim_start_matches("dashboard: ").to_string(),
            token_line,
        }
    }

    /// The random token it printed.
    pub fn token(&self) -> String {
        let t = self.token_line.rsplit(' ').next().unwrap().to_string();
        assert_eq!(t.len(), 32, "{}", self.token_line);
        t
    }

    /// Stops it (SIGINT) and returns what it printed on stderr.
    pub fn stop(mut self) -> Output {
        let child = self.child.take().unwrap();
        // SAFETY: a plain kill(2) to our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        wait_with_limit(child, Duration::from_secs(20))
    }
}

impl Drop for Dash {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A reply: status, head (lower-cased header names) and body.
pub struct Reply {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl Reply {
    /// The value of header `name` (lower-case), if present.
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }
}

/// Parses a raw HTTP/1.1 answer.
pub fn parse(raw: &[u8]) -> Reply {
    let text = String::from_utf8_lossy(raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Reply {
        status,
        head: head.to_string(),
        body: body.to_string(),
    }
}

/// One request over plain TCP (`Connection: close`), with a body when given.
pub fn http(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Reply {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request(addr, method, path, headers, body).as_bytes())
        .unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    parse(&raw)
}

/// The text of a request.
pub fn request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> String {
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("Host: {addr}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    req
}
