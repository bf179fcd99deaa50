//! This run's use of its keys: counted by the jobs as replies come, written to the
//! state's ledger by the collector in short transactions (with the pending label-cache
//! entries), and the token estimate corrected by what replies reported.

use std::sync::Mutex;
use std::time::SystemTime;

use super::reply_cap::ReplyCaps;
use super::spec::Labeler;
use crate::provider::classify::ErrorClass;
use crate::provider::ChatRequest;
use crate::store::{UsageDelta, UsageEntry};
use crate::timeutil::Day;

pub struct Usage {
    book: Mutex<Book>,
    /// Real prompt tokens per estimated one, learned from the replies' `usage`.
    token_scale: Mutex<f64>,
    /// Each model's reply budget, raised once its replies come back cut.
    pub caps: ReplyCaps,
}

/// Per key (the dispatcher's index).
struct Book {
    /// Not yet written to the state.
    unsaved: Vec<UsageDelta>,
    /// Totals for the end-of-run summary.
    totals: Vec<UsageDelta>,
}

impl Usage {
    pub fn new(keys: usize) -> Usage {
        Usage {
            book: Mutex::new(Book {
                unsaved: vec![UsageDelta::default(); keys],
                totals: vec![UsageDelta::default(); keys],
            }),
            token_scale: Mutex::new(1.0),
            caps: ReplyCaps::default(),
        }
    }

    pub fn record(&self, key: usize, f: impl Fn(&mut UsageDelta)) {
        let mut book = self.book.lock().unwrap();
        f(&mut book.unsaved[key]);
        f(&mut book.totals[key]);
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

    /// Writes the usage ledger and pending cache entries in short transactions.
    pub fn flush(&self, run: &Labeler, cache_puts: &mut Vec<(Vec<u8>, String)>) {
        let deltas = self.take_unsaved(run);
        // The ledger is kept per provider.
        for (m, member) in run.spec.members.iter().enumerate() {
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
            if let Err(e) = run
                .state
                .touch_keys(member.provider, &touched, SystemTime::now())
            {
                run.ui
                    .debug(1, &format!("could not record key activity: {e}"));
            }
            if let Err(e) = run.state.add_usage(member.provider, &mine) {
                run.ui.error(&format!("could not record usage: {e}"));
                // Put the counts back so the next flush tries again.
                let mut book = self.book.lock().unwrap();
                for e in mine {
                    let mut keys = 0..run.dispatcher.key_count();
                    if let Some(i) =
                        keys.find(|&k| run.dispatcher.key(k).fingerprint == e.fingerprint)
                    {
                        book.unsaved[i].add(&e.usage);
                    }
                }
            }
        }
        if let Err(e) = run.state.cache_put_many(cache_puts) {
            run.ui
                .error(&format!("could not write the label cache: {e}"));
        }
        cache_puts.clear();
    }

    /// What no flush wrote yet, per key used, as ledger entries with their provider.
    fn take_unsaved(&self, run: &Labeler) -> Vec<(usize, UsageEntry)> {
        let day = Day::of(SystemTime::now());
        let mut book = self.book.lock().unwrap();
        book.unsaved
            .iter_mut()
            .enumerate()
            .filter(|(_, d)| d.requests > 0)
            .map(|(i, d)| {
                let k = run.dispatcher.key(i);
                (
                    run.spec.key_member[i],
                    UsageEntry {
                        fingerprint: k.fingerprint.clone(),
                        masked: k.masked.clone(),
                        model: run.spec.member(i).client.model().to_string(),
                        day: day.clone(),
                        usage: std::mem::take(d),
                    },
                )
            })
            .collect()
    }
}
