//! Headless Chromium driven over the DevTools protocol, for the tests that act on the
//! page as a person would: click, type, answer its confirm and prompt dialogs, and read
//! what it shows. The protocol runs over a pipe (`--remote-debugging-pipe`: JSON messages
//! ended by a NUL byte, Chromium reading fd 3 and writing fd 4), so it needs neither a
//! websocket client nor a crate: only the `serde_json` the tests already use.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::dash::headless_chromium;

/// How the test answers the next dialog the page opens.
#[derive(Debug, Clone)]
pub enum Answer {
    /// OK, with this text typed into a prompt.
    Accept(&'static str),
    /// Cancel.
    Dismiss,
}

/// One page in a headless Chromium of its own (own profile, reaching only 127.0.0.1).
pub struct Browser {
    child: Child,
    to: File,
    from: Receiver<Value>,
    next_id: u64,
    session: String,
    answers: VecDeque<Answer>,
    /// Every dialog the page opened: (type, message), in order.
    pub dialogs: Vec<(String, String)>,
    _profile: tempfile::TempDir,
}

/// A pipe whose two ends close on exec (the child gets its copies by `dup2`).
fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: pipe2 fills two new descriptors, which we then own.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: both are open and owned by nobody else.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

impl Browser {
    /// Starts Chromium and opens an empty page of `width`×`height` CSS pixels.
    pub fn start(width: u32, height: u32) -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let (its_in, to) = pipe();
        let (from, its_out) = pipe();
        let (r, w) = {
            use std::os::fd::AsRawFd;
            (its_in.as_raw_fd(), its_out.as_raw_fd())
        };
        let mut cmd = headless_chromium(profile.path());
        cmd.arg("--remote-debugging-pipe")
            .arg(format!("--window-size={width},{height}"))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: only fcntl and dup2 between fork and exec (async-signal-safe). The
        // copies above 10 close on exec; fds 3 and 4 made by dup2 stay open.
        unsafe {
            cmd.pre_exec(move || {
                let r10 = libc::fcntl(r, libc::F_DUPFD_CLOEXEC, 10);
                let w10 = libc::fcntl(w, libc::F_DUPFD_CLOEXEC, 10);
                if r10 < 0 || w10 < 0 || libc::dup2(r10, 3) < 0 || libc::dup2(w10, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("start chromium");
        // Our copies of its ends go, so its exit ends our reads.
        drop((its_in, its_out));
        let (tx, rx) = mpsc::channel();
        let mut reader = BufReader::new(File::from(from));
        std::thread::spawn(move || loop {
            let mut buf = Vec::new();
            match reader.read_until(0, &mut buf) {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    buf.pop_if(|b| *b == 0);
                    if let Ok(v) = serde_json::from_slice::<Value>(&buf) {
                        if tx.send(v).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        let mut b = Browser {
            child,
            to: File::from(to),
            from: rx,
            next_id: 0,
            session: String::new(),
            answers: VecDeque::new(),
            dialogs: Vec::new(),
            _profile: profile,
        };
        let target = b.call_in(None, "Target.createTarget", json!({ "url": "about:blank" }));
        let attached = b.call_in(
            None,
            "Target.attachToTarget",
            json!({ "targetId": target["targetId"], "flatten": true }),
        );
        b.session = attached["sessionId"].as_str().unwrap().to_string();
        b.call("Page.enable", json!({}));
        b.call(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": width, "height": height, "deviceScaleFactor": 1, "mobile": false }),
        );
        b
    }

    fn send(&mut self, session: Option<&str>, method: &str, params: Value) -> u64 {
        self.next_id += 1;
        let mut msg = json!({ "id": self.next_id, "method": method, "params": params });
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        let mut bytes = serde_json::to_vec(&msg).unwrap();
        bytes.push(0);
        self.to.write_all(&bytes).expect("write to chromium");
        self.next_id
    }

    /// One command and its result; dialogs the page opens meanwhile are answered from
    /// the queue (an unexpected one is cancelled, and recorded like the others).
    fn call_in(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        self.try_call_in(session, method, params)
            .unwrap_or_else(|err| panic!("{method}: {err}"))
    }

    /// The same, with the protocol's error (say, a page navigating meanwhile) returned.
    fn try_call_in(
        &mut self,
        session: Option<&str>,
        method: &str,
        params: Value,
    ) -> Result<Value, Value> {
        let id = self.send(session, method, params);
        loop {
            let msg = self
                .from
                .recv_timeout(Duration::from_secs(60))
                .unwrap_or_else(|e| panic!("{method}: no answer from chromium ({e})"));
            if msg["id"] == id {
                return match msg.get("error") {
                    Some(err) => Err(err.clone()),
                    None => Ok(msg["result"].clone()),
                };
            }
            if msg["method"] == "Page.javascriptDialogOpening" {
                let p = &msg["params"];
                self.dialogs.push((
                    p["type"].as_str().unwrap_or("").to_string(),
                    p["message"].as_str().unwrap_or("").to_string(),
                ));
                let answer = match self.answers.pop_front() {
                    Some(Answer::Accept(text)) => json!({ "accept": true, "promptText": text }),
                    _ => json!({ "accept": false }),
                };
                let s = self.session.clone();
                self.send(Some(&s), "Page.handleJavaScriptDialog", answer);
            }
        }
    }

    /// A command to the page.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        let s = self.session.clone();
        self.call_in(Some(&s), method, params)
    }

    /// How to answer the dialogs the page opens next, in order.
    pub fn answer(&mut self, answers: &[Answer]) {
        self.answers.extend(answers.iter().cloned());
    }

    /// Goes to `url` and waits until the page's document has loaded.
    pub fn open(&mut self, url: &str) {
        self.call("Page.navigate", json!({ "url": url }));
        self.wait_for("document.readyState === 'complete'", "the page loads");
    }

    /// The value of a JavaScript expression (promises awaited); a thrown error fails the test.
    pub fn eval(&mut self, expr: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({ "expression": expr, "returnByValue": true, "awaitPromise": true }),
        );
        if let Some(e) = r.get("exceptionDetails") {
            panic!("{expr}: {e}");
        }
        r["result"]["value"].clone()
    }

    /// Waits (up to 20 s) until `expr` is true; else fails, saying what was awaited and
    /// what the page showed. While the page navigates (a form posted, say) the question
    /// may find no page to answer it: it is asked again.
    pub fn wait_for(&mut self, expr: &str, what: &str) {
        let end = Instant::now() + Duration::from_secs(20);
        while Instant::now() < end {
            let s = self.session.clone();
            let params = json!({ "expression": format!("!!({expr})"), "returnByValue": true });
            let r = self.try_call_in(Some(&s), "Runtime.evaluate", params);
            if r.is_ok_and(|r| r["result"]["value"] == json!(true)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let body = self.eval("document.body ? document.body.innerText : ''");
        panic!("waited 20 s for {what} ({expr}); the page shows: {body}");
    }

    /// The text of the first element matching `selector` (`None`: there is none).
    pub fn text(&mut self, selector: &str) -> Option<String> {
        let sel = serde_json::to_string(selector).unwrap();
        self.eval(&format!(
            "(() => {{ const e = document.querySelector({sel}); return e ? e.textContent : null; }})()"
        ))
        .as_str()
        .map(str::to_string)
    }

    /// A mouse click in the middle of the first element matching `selector`, as a
    /// person's (the element scrolled into view first; it must be visible).
    pub fn click(&mut self, selector: &str) {
        let sel = serde_json::to_string(selector).unwrap();
        let at = self.eval(&format!(
            "(() => {{ const e = document.querySelector({sel}); if (!e) return null;
               e.scrollIntoView({{ block: 'center' }}); const r = e.getBoundingClientRect();
               return r.width && r.height ? [r.x + r.width / 2, r.y + r.height / 2] : null; }})()"
        ));
        let (x, y) = match at.as_array() {
            Some(p) => (p[0].as_f64().unwrap(), p[1].as_f64().unwrap()),
            None => panic!("nothing visible to click at {selector}"),
        };
        for kind in ["mouseMoved", "mousePressed", "mouseReleased"] {
            self.call(
                "Input.dispatchMouseEvent",
                json!({ "type": kind, "x": x, "y": y, "button": "left", "clickCount": 1 }),
            );
        }
    }

    /// Types `text` into the field `selector` (focused first, emptied).
    pub fn type_into(&mut self, selector: &str, text: &str) {
        let sel = serde_json::to_string(selector).unwrap();
        self.eval(&format!(
            "(() => {{ const e = document.querySelector({sel}); e.focus(); e.value = ''; }})()"
        ));
        self.call("Input.insertText", json!({ "text": text }));
    }

    /// Picks `value` in the select `selector`, as choosing it from the list does (a
    /// headless browser draws no list to click in).
    pub fn choose(&mut self, selector: &str, value: &str) {
        let sel = serde_json::to_string(selector).unwrap();
        let val = serde_json::to_string(value).unwrap();
        let found = self.eval(&format!(
            "(() => {{ const e = document.querySelector({sel}); if (!e) return false;
               e.focus(); e.value = {val}; if (e.value !== {val}) return false;
               e.dispatchEvent(new Event('input', {{ bubbles: true }}));
               e.dispatchEvent(new Event('change', {{ bubbles: true }})); return true; }})()"
        ));
        assert_eq!(found, json!(true), "no option {value} in {selector}");
    }

    /// A PNG of what the page shows now, written to `path`.
    pub fn screenshot(&mut self, path: &Path) {
        let shot = self.call("Page.captureScreenshot", json!({ "format": "png" }));
        let png = base64(shot["data"].as_str().unwrap());
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        std::fs::write(path, png).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Standard base64 decoded (what the protocol sends screenshots in).
fn base64(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    let digits: Vec<u8> = text
        .bytes()
        .filter(|c| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/')
        .map(value)
        .collect();
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    for chunk in digits.chunks(4) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, d)| n | (u32::from(*d) << (18 - 6 * i)));
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    out
}
