//! This run's use of its keys: counted by the jobs as replies come, written to the
//! state's ledger (with the pending label-cache entries) in short transactions on the
//! state's writer thread, and the token estimate corrected by what replies reported.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use super::reply_cap::ReplyCaps;
use super::spec::Labeler;
use super::vote_rows::VoteRows;
use super::writes::StateWriter;
use crate::provider::classify::{CallError, ErrorClass};
use crate::provider::ChatRequest;
use crate::store::{events, ErrorEntry, State, UsageDelta, UsageEntry};
use crate::timeutil::{self, Day};
use crate::ui::Ui;

/// How many more times the last flush tries a ledger that cannot be written, a second
/// apart.
const LAST_TRIES: u32 = 5;

/// Label-cache entries: key and label.
pub type CachePuts = Vec<(Vec<u8>, String)>;

pub struct Usage {
    book: Mutex<Book>,
    /// Real prompt tokens per estimated one, learned from the replies' `usage`.
    token_scale: Mutex<f64>,
    /// Each model's reply budget, raised once its replies come back cut.
    pub caps: ReplyCaps,
    /// With `--votes`: rows count when their votes settle, not per reply.
    pub vote_rows: VoteRows,
    /// Failed writes of the ledger and of the label cache, logged sparingly.
    ledger_failures: Mutex<Throttle>,
    cache_failures: Mutex<Throttle>,
    /// Failed requests not yet written to the state's error log.
    errors: Mutex<Vec<ErrorEntry>>,
    /// Per key (the dispatcher's index): how the ledger names it.
    keys: Vec<LedgerKey>,
    /// Per provider of the run (index in `RunSpec::members`): its name.
    providers: Vec<&'static str>,
    /// Label-cache entries for the next flush.
    cache_puts: Mutex<CachePuts>,
    /// A flush is sent to the state's writer and has not begun yet.
    flush_sent: AtomicBool,
}

/// A key as the ledger names it.
struct LedgerKey {
    /// Its provider (index in `RunSpec::members`).
    member: usize,
    fingerprint: String,
    masked: String,
    model: String,
}

/// The HTTP status a failure came with, where one did.
fn status_of(err: &CallError) -> Option<u16> {
    match err {
        CallError::RateLimited { .. } | CallError::QuotaExhausted { .. } => Some(429),
        CallError::InvalidKey { status } | CallError::Rejected { status, .. } => Some(*status),
        CallError::NotFound { .. } => Some(404),
        CallError::Transient { detail, .. } => detail
            .strip_prefix("HTTP ")
            .and_then(|r| r.get(..3))
            .and_then(|c| c.parse().ok()),
        CallError::Unreachable { .. } => None,
    }
}

/// A failure that repeats on every flush (a full disk): logged the first time, then at
/// most once a minute with how many failed since, and once more when it stops.
#[derive(Default)]
struct Throttle {
    /// Failures since the last line about them.
    unlogged: u64,
    last_logged: Option<Instant>,
    failing: bool,
    /// The last failure was a full disk (space may come back in seconds; a state that is
    /// unreachable has its own outage handling and is not waited for here).
    no_room: bool,
}

/// How often a repeating failure is logged again.
const LOG_EVERY: Duration = Duration::from_secs(60);

impl Throttle {
    /// The line to log for this failure, if one is due.
    fn failed(&mut self, what: &str, e: &dyn std::fmt::Display) -> Option<String> {
        self.failing = true;
        self.unlogged += 1;
        // The store's wording for it (`store::sqlite::room`).
        self.no_room = e.to_string().contains("disk full:");
        if self.last_logged.is_some_and(|t| t.elapsed() < LOG_EVERY) {
            return None;
        }
        let line = match self.last_logged {
            None => format!("could not {what}: {e}; kept, and tried again as the run goes on"),
            Some(_) => format!(
                "could not {what} ({} failed writes in the last minute): {e}",
                self.unlogged
            ),
        };
        self.last_logged = Some(Instant::now());
        self.unlogged = 0;
        Some(line)
    }

    /// The line to log when a write works again after failures.
    fn worked(&mut self, what: &str) -> Option<String> {
        if !std::mem::take(&mut self.failing) {
            return None;
        }
        *self = Throttle::default();
        Some(format!("{what}: written again, nothing lost"))
    }
}

/// Per key (the dispatcher's index).
struct Book {
    /// Not yet written to the state.
    unsaved: Vec<UsageDelta>,
    /// Totals for the end-of-run summary.
    totals: Vec<UsageDelta>,
}

impl Usage {
    /// `votes`: the run votes (`--votes` above 1).
    pub fn new(run: &Labeler, votes: bool) -> Usage {
        let keys = run.dispatcher.key_count();
        Usage {
            book: Mutex::new(Book {
                unsaved: vec![UsageDelta::default(); keys],
                totals: vec![UsageDelta::default(); keys],
            }),
            token_scale: Mutex::new(1.0),
            caps: ReplyCaps::default(),
            vote_rows: VoteRows::new(votes),
            ledger_failures: Mutex::default(),
            cache_failures: Mutex::default(),
            errors: Mutex::new(Vec::new()),
            keys: (0..keys)
                .map(|k| LedgerKey {
                    member: run.spec.key_member[k],
                    fingerprint: run.dispatcher.key(k).fingerprint.clone(),
                    masked: run.dispatcher.key(k).masked.clone(),
                    model: run.spec.member(k).client.model().to_string(),
                })
                .collect(),
            providers: run.spec.members.iter().map(|m| m.provider).collect(),
            cache_puts: Mutex::new(Vec::new()),
            flush_sent: AtomicBool::new(false),
        }
    }

    pub fn record(&self, key: usize, f: impl Fn(&mut UsageDelta)) {
        let mut book = self.book.lock().unwrap();
        f(&mut book.unsaved[key]);
        f(&mut book.totals[key]);
    }

    /// Keeps a failed request for the error log: time, masked key, model, class, HTTP
    /// status and the start of what went wrong (key-like text masked).
    pub fn note_error(&self, run: &Labeler, key: usize, err: &CallError) {
        let member = run.spec.member(key);
        let entry = ErrorEntry {
            time: timeutil::rfc3339(SystemTime::now()),
            provider: member.provider.to_string(),
            key: run.dispatcher.key(key).label(),
            model: member.client.model().to_string(),
            class: err.class().as_str().to_string(),
            status: status_of(err),
            message: ErrorEntry::clean_message(&err.describe()),
        };
        self.errors.lock().unwrap().push(entry);
    }

    /// Per key, this run's usage so far.
    pub fn totals(&self) -> Vec<UsageDelta> {
        self.book.lock().unwrap().totals.clone()
    }

    /// The token estimate for a request (prompt alone, and all in), corrected by what
    /// replies reported so far.
    pub fn estimate(&self, req: &ChatRequest) -> (u64, u64) {
        let prompt = req.estimated_tokens() - req.max_tokens as u64;
        let scaled = (prompt as f64 * *self.token_scale.lock().unwrap()).ceil() as u64;
        (prompt, scaled + req.max_tokens as u64)
    }

    pub fn observe_prompt_tokens(&self, estimated: u64, actual: u64) {
        if estimated == 0 || actual == 0 {
            return;
        }
        let mut scale = self.token_scale.lock().unwrap();
        let ratio = actual as f64 / estimated as f64;
        *scale = (*scale * 0.8 + ratio * 0.2).clamp(0.25, 4.0);
    }

    /// Sends a flush of the ledger and of `cache_puts` (taken) to the state's writer,
    /// unless one is waiting there already: it takes whatever is unsaved when it begins.
    pub fn send_flush(self: &Arc<Self>, writes: &StateWriter, cache_puts: &mut CachePuts) {
        self.cache_puts.lock().unwrap().append(cache_puts);
        if self.flush_sent.swap(true, Ordering::SeqCst) {
            return;
        }
        let usage = self.clone();
        writes.send(move |state, ui| {
            usage.flush_sent.store(false, Ordering::SeqCst);
            usage.flush(state, ui);
        });
    }

    /// Sends the last flush of the run to the state's writer (see `flush_last`).
    pub fn send_last_flush(self: &Arc<Self>, writes: &StateWriter, cache_puts: &mut CachePuts) {
        self.cache_puts.lock().unwrap().append(cache_puts);
        let usage = self.clone();
        writes.send(move |state, ui| usage.flush_last(state, ui));
    }

    /// Writes the usage ledger and pending cache entries in short transactions. A
    /// ledger that cannot be written keeps the counts for the next flush.
    fn flush(&self, state: &State, ui: &Ui) {
        let deltas = self.take_unsaved();
        // The ledger is kept per provider.
        for (m, provider) in self.providers.iter().enumerate() {
            let mine: Vec<_> = deltas
                .iter()
                .filter(|(of, _)| *of == m)
                .map(|(_, d)| d.clone())
                .collect();
            if mine.is_empty() {
                continue;
            }
            // When each key was last used, and the class of its latest error.
            let touched: Vec<(String, Option<&'static str>)> = mine
                .iter()
                .map(|e| {
                    let error = e.usage.errors.iter().rposition(|&n| n > 0);
                    (
                        e.fingerprint.clone(),
                        error.map(|i| ErrorClass::ALL[i].as_str()),
                    )
                })
                .collect();
            if let Err(e) = state.touch_keys(provider, &touched, SystemTime::now()) {
                ui.debug(1, &format!("could not record key activity: {e}"));
            }
            let added = state.add_usage(provider, &mine);
            let mut log = self.ledger_failures.lock().unwrap();
            if let Err(e) = added {
                if let Some(line) = log.failed("record usage", &e) {
                    ui.error(&line);
                }
                // Put the counts back so the next flush tries again.
                let mut book = self.book.lock().unwrap();
                for e in mine {
                    if let Some(i) = self
                        .keys
                        .iter()
                        .position(|k| k.fingerprint == e.fingerprint)
                    {
                        book.unsaved[i].add(&e.usage);
                    }
                }
            } else if let Some(line) = log.worked("usage") {
                ui.info(&line);
            }
        }
        // The error log is a view for people: a state that cannot take it costs nothing.
        let errors = std::mem::take(&mut *self.errors.lock().unwrap());
        if let Err(e) = events::log_errors(&**state, &errors) {
            ui.debug(1, &format!("could not record the error log: {e}"));
        }
        let cache_puts = std::mem::take(&mut *self.cache_puts.lock().unwrap());
        let put = state.cache_put_many(&cache_puts);
        let mut log = self.cache_failures.lock().unwrap();
        match put {
            Err(e) => {
                if let Some(line) = log.failed("write the label cache", &e) {
                    ui.error(&line);
                }
            }
            Ok(()) => {
                if let Some(line) = log.worked("label cache") {
                    ui.info(&line);
                }
            }
        }
    }

    /// The last flush of a run: while the ledger cannot be written for a full disk, tries
    /// again for a few seconds; then says how much usage is missing from it.
    fn flush_last(&self, state: &State, ui: &Ui) {
        self.flush(state, ui);
        for _ in 0..LAST_TRIES {
            if self.unsaved_requests() == 0 || !self.ledger_failures.lock().unwrap().no_room {
                break;
            }
            std::thread::sleep(Duration::from_secs(1));
            self.flush(state, ui);
        }
        let missing = self.unsaved_requests();
        if missing > 0 {
            ui.error(&format!(
                "the state's usage ledger is short by {}: it could not be written (see above)",
                crate::ui::count(missing, "request")
            ));
        }
    }

    fn unsaved_requests(&self) -> u64 {
        let book = self.book.lock().unwrap();
        book.unsaved.iter().map(|d| d.requests).sum()
    }

    /// What no flush wrote yet, per key used, as ledger entries with their provider.
    fn take_unsaved(&self) -> Vec<(usize, UsageEntry)> {
        let day = Day::of(SystemTime::now());
        let mut book = self.book.lock().unwrap();
        book.unsaved
            .iter_mut()
            .zip(&self.keys)
            // A row whose votes settled after its key's requests were written comes alone.
            .filter(|(d, _)| d.requests > 0 || d.rows > 0)
            .map(|(d, k)| {
                (
                    k.member,
                    UsageEntry {
                        fingerprint: k.fingerprint.clone(),
                        masked: k.masked.clone(),
                        model: k.model.clone(),
                        day: day.clone(),
                        usage: std::mem::take(d),
                    },
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeating_failure_is_logged_once_a_minute_and_its_end_once() {
        let mut t = Throttle::default();
        assert!(t.worked("usage").is_none(), "nothing failed");
        let first = t.failed("record usage", &"disk full").unwrap();
        assert!(
            first.contains("could not record usage: disk full"),
            "{first}"
        );
        for _ in 0..100 {
            assert!(t.failed("record usage", &"disk full").is_none());
        }
        // A minute later: one line, with the count.
        t.last_logged = Some(Instant::now() - LOG_EVERY);
        let again = t.failed("record usage", &"disk full").unwrap();
        assert!(again.contains("101 failed writes"), "{again}");
        assert!(t.worked("usage").unwrap().contains("written again"));
        assert!(t.worked("usage").is_none());
    }
}
