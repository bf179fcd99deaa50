//! Shared by the integration tests: a hermetic way to run the real binary against the
//! fake provider, real dataset text for inputs, and the key-leak check.

#![allow(dead_code)]

pub mod cdp;
pub mod dash;
pub mod fake;
#[path = "../../src/store/redis/test_server.rs"]
pub mod redis;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

#[allow(unused_imports)]
pub use fake::{
    expected_label, FakeConfig, FakeKey, FakeProvider, Fault, OrgLimits, ReplyStyle, ReservedPort,
};

/// A key that must never appear anywhere in full. Looks fake at a glance.
pub const PLANTED: &str = "gsk_PLANTEDFAKEKEY_0001_secretpart_zq9";
pub const KEY2: &str = "gsk_SECONDFAKEKEY_0002_secretpart_xw8";
pub const KEY3: &str = "gsk_THIRDFAKEKEY_0003_secretpart_vu7";

/// A temp working directory with its own env file, state file and data dir.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        Sandbox {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn state(&self) -> PathBuf {
        self.path("state/state.sqlite3")
    }

    pub fn env_file(&self) -> PathBuf {
        self.path("keys.env")
    }

    /// Writes `GROQ_API_KEY_1..n` lines.
    pub fn write_keys(&self, keys: &[&str]) {
        let body: String = keys
            .iter()
            .enumerate()
            .map(|(i, k)| format!("GROQ_API_KEY_{}={k}\n", i + 1))
            .collect();
        std::fs::write(self.env_file(), body).unwrap();
        // As a user should keep it: only the owner may read it (else a warning is printed).
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(self.env_file(), std::fs::Permissions::from_mode(0o600)).unwrap();
    }

    /// Appends lines (per-key settings, limits) to the env file.
    pub fn add_env_lines(&self, lines: &[&str]) {
        let mut body = std::fs::read_to_string(self.env_file()).unwrap_or_default();
        for l in lines {
            body.push_str(l);
            body.push('\n');
        }
        std::fs::write(self.env_file(), body).unwrap();
    }

    /// The binary with a clean environment: no real keys, state and data dir inside the sandbox.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_autolabel"));
        c.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .env("XDG_DATA_HOME", self.path("xdg"))
            .env("AUTOLABEL_STATE", self.state())
            .env("AUTOLABEL_ENV_FILE", self.env_file())
            // Tests run fast unless a test sets limits itself (flags win over these).
            .env("GROQ_RPM", "600000")
            .env("AUTOLABEL_BACKOFF", "0.05")
            .env("GROQ_TPM", "100000000")
            .current_dir(self.dir.path())
            .stdin(Stdio::null());
        c
    }

    /// `autolabel --input IN --output OUT --base-url URL --delay 0 <extra>`
    pub fn label(
        &self,
        fake: &FakeProvider,
        input: &Path,
        output: &Path,
        extra: &[&str],
    ) -> Command {
        let mut c = self.cmd();
        c.arg("--input")
            .arg(input)
            .arg("--output")
            .arg(output)
            .arg("--base-url")
            .arg(fake.base_url())
            .args(["--delay", "0"])
            .args(extra);
        c
    }

    /// `label` without the test-speed groq limits the env file sets, as a user with a
    /// plain env file runs it: every limit the user does not type is the provider's
    /// free-tier default until the provider says otherwise.
    pub fn label_as_typed(
        &self,
        fake: &FakeProvider,
        input: &Path,
        output: &Path,
        extra: &[&str],
    ) -> Command {
        let mut c = self.label(fake, input, output, extra);
        c.env_remove("GROQ_RPM").env_remove("GROQ_TPM");
        c
    }

    /// Every byte the tool may have written in the sandbox (output, state, WAL, reports).
    pub fn all_files(&self) -> Vec<(PathBuf, Vec<u8>)> {
        let mut out = Vec::new();
        let mut stack = vec![self.dir.path().to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if p != self.env_file() {
                    let mut bytes = Vec::new();
                    if let Ok(mut f) = std::fs::File::open(&p) {
                        let _ = f.read_to_end(&mut bytes);
                    }
                    out.push((p, bytes));
                }
            }
        }
        out
    }

    /// Fails if any 8-character stretch of a planted secret appears in the process
    /// output or in any file of the sandbox but the env file (outputs, the state and its
    /// WAL, reports). A masked key (`gsk_…a1b2`) shows at most 5 characters in a row.
    pub fn assert_no_leak(&self, outputs: &[&Output], secrets: &[&str]) {
        let files = self.all_files();
        for s in secrets {
            for window in windows(s, LEAK_WINDOW) {
                let needle = window.as_bytes();
                for o in outputs {
                    for stream in [&o.stdout, &o.stderr] {
                        assert!(
                            !contains(stream, needle),
                            "{window:?} of secret {s} leaked in process output"
                        );
                    }
                }
                for (p, bytes) in &files {
                    assert!(
                        !contains(bytes, needle),
                        "{window:?} of secret {s} leaked into {}",
                        p.display()
                    );
                }
            }
        }
    }
}

/// The length of a key fragment that counts as a leak.
pub const LEAK_WINDOW: usize = 8;

/// Every run of `n` consecutive characters of `s` (the whole of `s` if shorter).
pub fn windows(s: &str, n: usize) -> Vec<String> {
    let chars: Vec<char> = s.chars().collect();
    if chars.len() <= n {
        return vec![s.to_string()];
    }
    chars.windows(n).map(|w| w.iter().collect()).collect()
}

pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Runs to completion, killing it after `limit` (a hung binary must fail the test, not CI).
pub fn run_with_limit(cmd: &mut Command, limit: Duration) -> Output {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_with_limit(child, limit)
}

pub fn wait_with_limit(mut child: Child, limit: Duration) -> Output {
    let start = Instant::now();
    // Drain pipes on threads so a chatty child cannot block on a full pipe.
    let mut so = child.stdout.take();
    let mut se = child.stderr.take();
    let t1 = std::thread::spawn(move || {
        let mut b = Vec::new();
        if let Some(s) = so.as_mut() {
            let _ = s.read_to_end(&mut b);
        }
        b
    });
    let t2 = std::thread::spawn(move || {
        let mut b = Vec::new();
        if let Some(s) = se.as_mut() {
            let _ = s.read_to_end(&mut b);
        }
        b
    });
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Output {
                status,
                stdout: t1.join().unwrap(),
                stderr: t2.join().unwrap(),
            };
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "autolabel did not finish within {limit:?}; stderr: {}",
                String::from_utf8_lossy(&t2.join().unwrap())
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs to completion like [`run`] and also returns the child's peak resident memory in
/// KiB, as the kernel accounted it (`wait4`'s `ru_maxrss`): exact, however short-lived
/// the peak was.
// The child is reaped by `wait4` (which std's `Child` does not see), so clippy's
// zombie check cannot follow it.
#[allow(clippy::zombie_processes)]
pub fn run_measuring_memory(cmd: &mut Command, limit: Duration) -> (Output, u64) {
    use std::os::unix::process::ExitStatusExt;
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as libc::pid_t;
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let t1 = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = so.read_to_end(&mut b);
        b
    });
    let t2 = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = se.read_to_end(&mut b);
        b
    });
    let start = Instant::now();
    loop {
        let mut status = 0;
        // SAFETY: plain FFI with valid out-pointers; the pid is our own child.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        assert!(r >= 0, "wait4 failed: {}", std::io::Error::last_os_error());
        if r == pid {
            let out = Output {
                status: std::process::ExitStatus::from_raw(status),
                stdout: t1.join().unwrap(),
                stderr: t2.join().unwrap(),
            };
            return (out, usage.ru_maxrss as u64);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("autolabel did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub fn run(cmd: &mut Command) -> Output {
    run_with_limit(cmd, Duration::from_secs(120))
}

pub fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Texts of a dataset in tests/data (real public sentiment data).
pub fn dataset_texts(name: &str) -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name);
    let mut r = csv::Reader::from_path(&path).unwrap();
    let col = r
        .headers()
        .unwrap()
        .iter()
        .position(|h| h == "text")
        .unwrap();
    r.records()
        .map(|rec| rec.unwrap()[col].to_string())
        .collect()
}

/// Writes a CSV with columns `id,text` from `texts`.
pub fn write_input(path: &Path, texts: &[String]) {
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .from_path(path)
        .unwrap();
    w.write_record(["id", "text"]).unwrap();
    for (i, t) in texts.iter().enumerate() {
        w.write_record([&(i + 1).to_string(), t]).unwrap();
    }
    w.flush().unwrap();
}

/// The first `n` texts of the SmSA sample.
pub fn smsa(n: usize) -> Vec<String> {
    dataset_texts("id_smsa_valid.csv")
        .into_iter()
        .take(n)
        .collect()
}

/// A fake provider with `cfg`, a sandbox holding `keys`, and an input of the first `n`
/// SmSA texts: (fake, sandbox, texts, input path, output path).
pub fn setup(
    keys: &[&str],
    cfg: FakeConfig,
    n: usize,
) -> (FakeProvider, Sandbox, Vec<String>, PathBuf, PathBuf) {
    let fake = FakeProvider::start(cfg);
    let sb = Sandbox::new();
    sb.write_keys(keys);
    let texts = smsa(n);
    let (input, output) = (sb.path("in.csv"), sb.path("out.csv"));
    write_input(&input, &texts);
    (fake, sb, texts, input, output)
}

/// Asserts that every two consecutive requests the fake received are at least `min` apart.
pub fn assert_min_spacing(fake: &FakeProvider, min: Duration) {
    // The fake sees when a request arrives, not when the tool let it go: on a loaded
    // machine one late delivery shortens the gap after it by as much as it lengthens
    // the one before. So every span of k gaps must hold k spacings, less one delivery's
    // jitter; a burst (two requests let go together) still fails by far.
    const JITTER: Duration = Duration::from_millis(150);
    let at: Vec<Duration> = fake.requests().iter().map(|r| r.at).collect();
    for i in 0..at.len() {
        for j in i + 1..at.len() {
            let span = at[j] - at[i];
            let want = (min * (j - i) as u32).saturating_sub(JITTER);
            assert!(
                span >= want,
                "requests {i}..{j} {span:?} apart, expected at least {want:?} \
                 ({min:?} each, less {JITTER:?} of delivery jitter); all at {at:?}"
            );
        }
    }
}

/// Reads an output CSV as rows of fields (header first).
pub fn read_rows(path: &Path) -> Vec<Vec<String>> {
    read_csv(path, b',')
}

/// Reads a CSV with `delimiter` as rows of fields (header first).
pub fn read_csv(path: &Path, delimiter: u8) -> Vec<Vec<String>> {
    let mut r = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(false)
        .from_path(path)
        .unwrap();
    r.records()
        .map(|rec| rec.unwrap().iter().map(str::to_string).collect())
        .collect()
}

/// Asserts that `output` is `texts` in order with the fake's labels in the last column.
pub fn assert_labeled(output: &Path, texts: &[String]) {
    let rows = read_rows(output);
    assert_eq!(rows[0], ["id", "text", "label"], "header");
    assert_eq!(rows.len() - 1, texts.len(), "row count");
    for (i, (row, text)) in rows[1..].iter().zip(texts).enumerate() {
        assert_eq!(row[0], (i + 1).to_string(), "row {i} id (order)");
        assert_eq!(&row[1], text, "row {i} text unchanged");
        assert_eq!(row[2], expected_label(text), "row {i} label");
    }
}

/// Runs that shared one key's day of `day_limit` requests (`--status-column status`):
/// together exactly that many requests, no daily 429, each run `rows` rows ending with
/// exit 3, and as many rows labeled by the model as requests.
pub fn assert_day_shared(
    fake: &FakeProvider,
    outs: &[Output],
    outputs: &[PathBuf],
    rows: usize,
    day_limit: usize,
) {
    assert_eq!(
        fake.total_requests(),
        day_limit,
        "together at most the day's {day_limit}"
    );
    assert_eq!(fake.count_status(429), 0, "no daily 429");
    let mut model = 0;
    for (out, output) in outs.iter().zip(outputs) {
        assert_eq!(code(out), 3, "{}", stderr(out));
        let written = read_rows(output);
        assert_eq!(written.len() - 1, rows);
        model += written[1..].iter().filter(|r| r[3] == "model").count();
    }
    assert_eq!(model, day_limit);
}

/// At most `max` requests of one key in any second.
pub fn assert_paced(fake: &FakeProvider, key: &str, max: usize) {
    let at: Vec<Duration> = fake
        .requests()
        .iter()
        .filter(|r| r.key == key)
        .map(|r| r.at)
        .collect();
    for (i, start) in at.iter().enumerate() {
        let n = at[i..]
            .iter()
            .take_while(|t| **t < *start + Duration::from_secs(1))
            .count();
        assert!(n <= max, "{n} requests of {key} in a second");
    }
}

/// Starts the binary with stdout and stderr piped (to be ended by `wait_with_limit`).
pub fn spawn(mut cmd: Command) -> Child {
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Complete data rows in a CSV being written: lines after the header, a torn last line
/// not counted (the dataset texts used with it have no line breaks).
pub fn complete_rows(path: &Path) -> usize {
    let bytes = std::fs::read(path).unwrap_or_default();
    bytes
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        .saturating_sub(1)
}

/// Waits until `path` has `n` complete rows, failing if the run ends first or stalls.
pub fn wait_for_rows(path: &Path, n: usize, child: &mut Child) {
    let start = Instant::now();
    while complete_rows(path) < n {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            panic!("the run ended ({status}) before {n} rows: {err}");
        }
        assert!(start.elapsed() < Duration::from_secs(60), "no progress");
        std::thread::sleep(Duration::from_millis(5));
    }
}
