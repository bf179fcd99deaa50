//! The README's test command (`./test.sh`) and CI's `.ci/run`, run from scratch in a
//! stripped environment: PATH holds only a directory of the tools each case allows (links
//! to the real ones, or fakes), so redis-server, Chromium, sudo and cargo are absent unless
//! a case puts them there. A fake `cargo` stands for the build and the tests: nothing is
//! compiled, and the cases take well under a second.

use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// The real `name` from the PATH the tests run with.
fn real(name: &str) -> PathBuf {
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} is not on PATH"))
}

/// A scratch tree with copies of test.sh and .ci/run and a `bin` directory for PATH,
/// readable by every user (the first case runs as nobody).
struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new(tools: &[&str]) -> Scratch {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("bin")).unwrap();
        std::fs::create_dir_all(dir.path().join(".ci")).unwrap();
        std::fs::copy(Path::new(REPO).join("test.sh"), dir.path().join("test.sh")).unwrap();
        std::fs::copy(Path::new(REPO).join(".ci/run"), dir.path().join(".ci/run")).unwrap();
        for sub in ["", "bin", ".ci"] {
            let p = dir.path().join(sub);
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o777)).unwrap();
        }
        let s = Scratch { dir };
        for tool in tools {
            symlink(real(tool), s.path("bin").join(tool)).unwrap();
        }
        s
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// A fake tool: a bash script in `bin`.
    fn fake(&self, name: &str, body: &str) {
        let p = self.path("bin").join(name);
        std::fs::write(&p, format!("#!/usr/bin/env bash\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// `script` with PATH = bin only and an otherwise empty environment.
    fn command(&self, script: &str) -> Command {
        let mut c = Command::new(self.path(script));
        c.env_clear()
            .env("PATH", self.path("bin"))
            .env("HOME", self.dir.path())
            .current_dir(self.dir.path())
            .stdin(Stdio::null());
        c
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn run(c: &mut Command) -> (Output, Duration) {
    let start = Instant::now();
    let out = c.output().unwrap();
    (out, start.elapsed())
}

/// A fake cargo: logs its arguments, and `cargo test` prints three test binaries' results
/// (one with failures) and exits 101 as cargo does when a test failed.
const FAKE_CARGO: &str = r#"echo "$*" >> "${BASH_SOURCE[0]%/*}/../cargo.log"
if [ "$1" = test ]; then
    echo "test result: ok. 4 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.10s"
    echo "test result: FAILED. 2 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.20s"
    echo "test result: ok. 1 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.00s"
    exit 101
fi"#;

#[test]
fn without_redis_and_chromium_and_no_way_to_install_it_stops_at_once_with_the_commands() {
    // bash and id are all the check needs; no sudo, no apt-get, no redis-server, no chromium.
    let s = Scratch::new(&["bash", "id"]);
    // If it went on to build, this would show.
    s.fake(
        "cargo",
        "echo CARGO RAN; touch \"${BASH_SOURCE[0]%/*}/../built\"",
    );
    let mut c = s.command("test.sh");
    // As root (CI, containers) it could install: run it as nobody instead.
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        let script = c.get_program().to_owned();
        c = Command::new(real("setpriv"));
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(script)
            .env_clear()
            .env("PATH", s.path("bin"))
            .env("HOME", s.dir.path())
            .current_dir(s.dir.path())
            .stdin(Stdio::null());
    }
    let (out, took) = run(&mut c);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(took < Duration::from_secs(5), "at once: {took:?}");
    assert!(
        !stdout.contains("CARGO RAN") && !s.path("built").exists(),
        "built: {stdout}"
    );
    assert!(
        stderr.contains("the tests need redis-server and chromium,")
            && stderr.contains("not root, no sudo without a password"),
        "{stderr}"
    );
    for command in [
        "sudo apt-get install -y redis-server chromium",
        "sudo dnf install -y redis chromium",
        "brew install redis && brew install --cask chromium",
    ] {
        assert!(stderr.contains(command), "{command}:\n{stderr}");
    }
}

#[test]
fn only_what_is_missing_is_named() {
    let s = Scratch::new(&["bash", "id"]);
    s.fake("redis-server", "exit 0");
    let mut c = s.command("test.sh");
    if unsafe { libc::geteuid() } == 0 {
        // As root with neither apt-get nor dnf it cannot install either.
        let (out, _) = run(&mut c);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains("neither apt-get nor dnf"), "{stderr}");
        assert!(
            stderr.contains("sudo apt-get install -y chromium\n"),
            "{stderr}"
        );
        assert!(
            stderr.contains("brew install --cask chromium\n"),
            "{stderr}"
        );
        assert!(!stderr.contains("redis"), "{stderr}");
    } else {
        let (out, _) = run(&mut c);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains("sudo dnf install -y chromium\n"),
            "{stderr}"
        );
    }
}

#[test]
fn as_root_or_with_sudo_it_installs_them_then_runs_the_tests() {
    let s = Scratch::new(&[
        "bash", "id", "env", "chmod", "mktemp", "tee", "grep", "awk", "rm",
    ]);
    // apt-get installs a stub of each package named; apt-cache knows no `chromium`
    // (Ubuntu), so chromium-browser is asked for.
    s.fake(
        "apt-get",
        r#"echo "$*" >> "${BASH_SOURCE[0]%/*}/../apt.log"
if [ "$1" = install ]; then
    for p in "${@:4}"; do
        printf '#!/usr/bin/env bash\n' > "${BASH_SOURCE[0]%/*}/$p"; chmod +x "${BASH_SOURCE[0]%/*}/$p"
    done
fi"#,
    );
    s.fake("apt-cache", "exit 100");
    // Without root, sudo that needs no password (a stand-in that just runs the command).
    s.fake("sudo", r#"[ "$1" = -n ] && shift; exec "$@""#);
    s.fake("cargo", FAKE_CARGO);
    let (out, _) = run(&mut s.command("test.sh"));
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(101), "{stdout}{stderr}");
    assert!(
        stderr.contains("installing redis-server chromium"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(s.path("apt.log")).unwrap(),
        "update -qq\ninstall -y -qq redis-server chromium-browser\n"
    );
    assert_eq!(
        stdout.lines().last(),
        Some("tests: 7 passed, 2 failed"),
        "{stdout}"
    );
}

/// What the closing lines need besides bash: the log file and the sum.
const RUN_TOOLS: &[&str] = &[
    "bash", "id", "mktemp", "tee", "grep", "awk", "rm", "dirname",
];

#[test]
fn every_test_binary_runs_and_one_total_line_closes_the_output() {
    let s = Scratch::new(RUN_TOOLS);
    s.fake("redis-server", "exit 0");
    s.fake("chromium", "exit 0");
    s.fake("cargo", FAKE_CARGO);
    let (out, _) = run(s.command("test.sh").args(["--test", "labeling"]));
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(101),
        "cargo's failure is the script's: {stdout}"
    );
    assert_eq!(
        stdout.lines().last(),
        Some("tests: 7 passed, 2 failed"),
        "{stdout}"
    );
    assert_eq!(
        std::fs::read_to_string(s.path("cargo.log")).unwrap(),
        "test --locked --no-fail-fast --test labeling\n"
    );
    // All green: exit 0, and the same line.
    s.fake("cargo", "echo 'test result: ok. 3 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.01s'");
    let (out, _) = run(&mut s.command("test.sh"));
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        text(&out.stdout).lines().last(),
        Some("tests: 3 passed, 0 failed")
    );
}

#[test]
fn ci_runs_fmt_and_clippy_then_the_test_command_and_fails_with_it() {
    let s = Scratch::new(RUN_TOOLS);
    s.fake("redis-server", "exit 0");
    s.fake("chromium", "exit 0");
    s.fake("cargo", FAKE_CARGO);
    let (out, _) = run(&mut s.command(".ci/run"));
    let stdout = text(&out.stdout);
    assert_ne!(out.status.code(), Some(0), "failed tests fail CI: {stdout}");
    assert_eq!(
        stdout.lines().last(),
        Some("tests: 7 passed, 2 failed"),
        "{stdout}"
    );
    let calls = std::fs::read_to_string(s.path("cargo.log")).unwrap();
    let verbs: Vec<&str> = calls
        .lines()
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    assert_eq!(verbs, ["--version", "fmt", "clippy", "test"], "{calls}");
    assert!(calls.contains("test --locked --no-fail-fast\n"), "{calls}");
}
