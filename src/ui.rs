//! Everything the user sees on stderr, decided once: a progress bar when stderr is a
//! terminal, plain timestamped lines when it is not (cron), nothing but errors with
//! `--quiet`. Callers never check for a terminal themselves.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::timeutil;

pub struct Ui {
    quiet: bool,
    verbose: u8,
    tty: bool,
    bar: Mutex<Option<ProgressBar>>,
    last_line: Mutex<Instant>,
    /// How often a non-terminal run logs its progress.
    pub log_every: Duration,
}

impl Ui {
    pub fn new(quiet: bool, verbose: u8, log_every: Duration) -> Ui {
        Ui {
            quiet,
            verbose,
            tty: std::io::stderr().is_terminal(),
            bar: Mutex::new(None),
            last_line: Mutex::new(Instant::now()),
            log_every,
        }
    }

    fn emit(&self, line: &str) {
        let bar = self.bar.lock().unwrap();
        match bar.as_ref() {
            Some(b) if self.tty => b.println(line),
            _ if self.tty => eprintln!("{line}"),
            _ => eprintln!("[{}] {line}", timeutil::rfc3339(SystemTime::now())),
        }
    }

    pub fn info(&self, msg: &str) {
        if !self.quiet {
            self.emit(msg);
        }
    }

    /// Whether `debug(level, ..)` prints: lets hot paths skip building the message.
    pub fn shows(&self, level: u8) -> bool {
        !self.quiet && self.verbose >= level
    }

    pub fn debug(&self, level: u8, msg: &str) {
        if !self.quiet && self.verbose >= level {
            self.emit(msg);
        }
    }

    /// An alert (`alert: …`): shown even with `--quiet`, as it asks for a human.
    pub fn alert(&self, msg: &str) {
        self.emit(msg);
    }

    pub fn error(&self, msg: &str) {
        self.emit(&format!("error: {msg}"));
    }

    pub fn start_progress(&self, total: u64) {
        if self.quiet || !self.tty {
            return;
        }
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{bar:30.cyan/blue} {pos}/{len} rows · ETA {eta} · {msg}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        *self.bar.lock().unwrap() = Some(bar);
    }

    /// Updates the bar, or logs a line every `log_every` when there is no terminal.
    pub fn progress(&self, done: u64, total: u64, rate_per_min: f64, fallbacks: u64, key: &str) {
        let msg = format!("{rate_per_min:.0} rows/min · fallbacks {fallbacks} · key {key}");
        if let Some(bar) = self.bar.lock().unwrap().as_ref() {
            bar.set_position(done);
            bar.set_message(msg);
            return;
        }
        if self.quiet {
            return;
        }
        let mut last = self.last_line.lock().unwrap();
        if last.elapsed() >= self.log_every {
            *last = Instant::now();
            drop(last);
            let eta = if rate_per_min > 0.0 && total > done {
                crate::provider::classify::human(Duration::from_secs_f64(
                    (total - done) as f64 / rate_per_min * 60.0,
                ))
            } else {
                "-".into()
            };
            self.emit(&format!(
                "progress: {done}/{total} rows · ETA {eta} · {msg}"
            ));
        }
    }

    pub fn finish_progress(&self) {
        if let Some(bar) = self.bar.lock().unwrap().take() {
            bar.finish_and_clear();
        }
    }
}

/// `println!` for the report commands (`usage`, `test-keys`, `--dry-run`): a reader that
/// went away (`autolabel usage --json | head -c 1`) ends the command quietly with exit 0
/// instead of a panic. Only report commands print to stdout, and they have nothing left
/// half-done, so ending right there is safe.
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::ui::write_stdout(format_args!($($arg)*))
    };
}

pub fn write_stdout(args: std::fmt::Arguments) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|_| out.write_all(b"\n")) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("autolabel: error: cannot write to standard output: {e}");
        std::process::exit(1);
    }
}

/// A count with its noun, singular for one: `count(1, "key")` is "1 key",
/// `count(3, "row")` "3 rows", `count(0, "cache entry")` "0 cache entries".
pub fn count(n: u64, noun: &str) -> String {
    let consonant_y =
        noun.ends_with('y') && !noun[..noun.len() - 1].ends_with(['a', 'e', 'i', 'o', 'u']);
    match n {
        1 => format!("1 {noun}"),
        // entry → entries; key → keys
        _ if consonant_y => format!("{n} {}ies", &noun[..noun.len() - 1]),
        _ => format!("{n} {noun}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::count;

    #[test]
    fn one_is_singular_and_every_other_count_plural() {
        assert_eq!(count(1, "key"), "1 key");
        assert_eq!(count(0, "key"), "0 keys");
        assert_eq!(count(2, "row"), "2 rows");
        assert_eq!(count(1, "cache entry"), "1 cache entry");
        assert_eq!(count(3, "cache entry"), "3 cache entries");
        assert_eq!(count(2, "groq key"), "2 groq keys");
    }
}
