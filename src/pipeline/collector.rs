//! The collector's rows: a bounded window of rows in input order, each settled locally
//! (kept from before, empty text, cache hit, same text already asked) or waiting for its
//! text's label (with `--votes`, its votes: `votes::Tally`); the texts still to ask,
//! grouped into jobs; and the writing of every finished row at the front of the window,
//! in order.

use std::collections::VecDeque;
use std::sync::Arc;

use csv::StringRecord;
use rustc_hash::FxHashMap;

use super::cache_read::Cached;
use super::control::RunControl;
use super::fallback_record::FallbackRecord;
use super::feeder::Row;
use super::outage::Outage;
use super::spec::Labeler;
use super::usage::{CachePuts, Usage};
use super::worker::TextOutcome;
use super::writes::StateWriter;
use super::{PipelineSetup, RowStatus, RunCounts};
use crate::error::{Error, Result};
use crate::votes::{self, Tally, VoteRun, VoteSummary};

enum Slot {
    Pending(Arc<str>),
    Done {
        label: String,
        status: RowStatus,
        /// The provider (index in `RunSpec::members`) whose model gave the label.
        by: Option<usize>,
        /// What the row shows of its votes (a model or cached label has one).
        votes: Option<VoteSummary>,
    },
    Keep(StringRecord),
}

struct Waiting {
    refs: usize,
    result: Option<TextOutcome>,
    /// With `--votes` above 1: the votes so far.
    tally: Option<Tally>,
}

type WindowRow = (u64, StringRecord, Slot);

pub struct Collector {
    window: VecDeque<WindowRow>,
    // Keyed by the text: a fast hash, since every row is hashed twice (the input is the
    // user's own file, so there is no one to attack the hash).
    waiting: FxHashMap<Arc<str>, Waiting>,
    /// Texts being grouped into jobs, by vote: a text's k-th vote waits in batch k, so
    /// no job holds a text twice and each vote goes out in its own order.
    batches: Vec<Vec<Arc<str>>>,
    queue: VecDeque<Vec<Arc<str>>>,
    pub counts: RunCounts,
    /// Labels to put in the cache at the next flush.
    pub cache_puts: CachePuts,
    out_rec: StringRecord,
    /// Fallback rows on their way to the state.
    pub fallbacks: FallbackRecord,
    votes: Option<VoteRun>,
    /// `--confidence logprobs`: each row's confidence is its answer's (and is cached).
    logprobs: bool,
}

impl Collector {
    pub fn new(outage: Outage, votes: Option<VoteRun>) -> Collector {
        Collector {
            window: VecDeque::new(),
            waiting: FxHashMap::default(),
            batches: vec![Vec::new()],
            queue: VecDeque::new(),
            counts: RunCounts::default(),
            cache_puts: Vec::new(),
            out_rec: StringRecord::new(),
            fallbacks: FallbackRecord::new(outage),
            votes,
            logprobs: false,
        }
    }

    /// Rows take their confidence from their answer's logprobs (`--confidence logprobs`).
    pub fn with_logprobs(mut self, logprobs: bool) -> Collector {
        self.logprobs = logprobs;
        self
    }

    /// Rows in the window (read, not yet written).
    pub fn len(&self) -> usize {
        self.window.len()
    }

    pub fn is_empty(&self) -> bool {
        self.window.is_empty()
    }

    /// Queues the batch being filled once it is full, or when `now` (a partial batch goes
    /// out once no more rows will be read for now).
    pub fn release_batch(&mut self, batch_size: usize, now: bool) {
        let n = self.votes.as_ref().map_or(1, |v| v.n);
        for (k, batch) in self.batches.iter_mut().enumerate() {
            if !batch.is_empty() && (batch.len() >= batch_size || now) {
                let mut job = std::mem::take(batch);
                votes::reorder(&mut job, k as u32, n);
                self.queue.push_back(job);
            }
        }
    }

    /// Puts `text`'s vote `ordinal` (0 without votes) in the batch being filled for it.
    fn ask(&mut self, text: &Arc<str>, ordinal: u32) {
        let k = ordinal as usize;
        if self.batches.len() <= k {
            self.batches.resize_with(k + 1, Vec::new);
        }
        self.batches[k].push(text.clone());
    }

    /// The next job to send, if any.
    pub fn next_job(&mut self) -> Option<Vec<Arc<str>>> {
        self.queue.pop_front()
    }

    /// A finished job's outcomes, for every row waiting for its texts.
    pub fn settle(
        &mut self,
        run: &Labeler,
        (use_cache, usage): (bool, &Usage),
        texts: Vec<Arc<str>>,
        outcomes: Vec<TextOutcome>,
    ) {
        for (text, outcome) in texts.into_iter().zip(outcomes) {
            if self.votes.is_some() {
                self.count_vote((use_cache, usage), &text, outcome);
                continue;
            }
            if let (true, TextOutcome::Labeled(label, m, confidence)) = (use_cache, &outcome) {
                let key = run.spec.members[*m].cache_scope.key(&text);
                if self.logprobs {
                    let value = votes::logprobs::cache_value(label, *confidence);
                    self.cache_puts
                        .push((votes::logprobs::cache_key(key.clone()), value));
                }
                self.cache_puts.push((key, label.clone()));
            }
            if let Some(w) = self.waiting.get_mut(&text) {
                w.result = Some(outcome);
            }
        }
    }

    /// One vote's outcome: counted (and kept in the cache at once, so a stopped run asks
    /// only what is missing), then either the row's answer or the next votes to ask.
    fn count_vote(
        &mut self,
        (use_cache, usage): (bool, &Usage),
        text: &Arc<str>,
        outcome: TextOutcome,
    ) {
        let open = self.waiting.get_mut(text).filter(|w| w.result.is_none());
        let (Some(w), Some(run_votes)) = (open, &self.votes) else {
            // A vote that came after the row's votes were over counts for no row.
            usage.vote_rows.close(text);
            return;
        };
        let Some(t) = w.tally.as_mut() else {
            return;
        };
        match outcome {
            TextOutcome::Labeled(label, m, _) => {
                t.record(&label, m);
                if use_cache {
                    self.cache_puts
                        .push((run_votes.scope.key(text), t.encode()));
                }
            }
            TextOutcome::Fallback(why) => t.fail(why),
            TextOutcome::Stopped => t.stop(),
        }
        if t.finished() {
            let result = match (t.winner(), &t.failed) {
                (Some((label, m)), _) if t.settled() || !t.stopped => {
                    TextOutcome::Labeled(label.to_string(), m, None)
                }
                _ if t.stopped => TextOutcome::Stopped,
                (_, why) => TextOutcome::Fallback(why.clone().unwrap_or_default()),
            };
            // The row counts in the ledger now, once, however many votes it took.
            let key = usage.vote_rows.close(text);
            if let (Some(key), TextOutcome::Labeled(..)) = (key, &result) {
                usage.record(key, |d| d.rows += 1);
            }
            w.result = Some(result);
            return;
        }
        let asks: Vec<u32> = (0..t.to_ask()).map(|_| t.send()).collect();
        for k in asks {
            self.ask(text, k);
        }
    }

    /// Settles a new row locally if possible, else makes sure its text is (or will be)
    /// asked.
    pub fn admit(&mut self, setup: &PipelineSetup, row: Row) {
        if let Some(old) = row.keep {
            self.window
                .push_back((row.idx, row.record, Slot::Keep(old)));
            return;
        }
        let text = row.record.get(setup.info.text_col).unwrap_or("");
        if text.trim().is_empty() {
            let slot = Slot::Done {
                label: setup.fallback_label.clone(),
                status: RowStatus::Empty,
                by: None,
                votes: None,
            };
            self.window.push_back((row.idx, row.record, slot));
            return;
        }
        let text: Arc<str> = Arc::from(text);
        if let Some(w) = self.waiting.get_mut(&text) {
            w.refs += 1;
            self.window
                .push_back((row.idx, row.record, Slot::Pending(text)));
            return;
        }
        let mut tally = None;
        if let Some(v) = &self.votes {
            let t = match row.cached {
                Some(Cached::Votes(t)) => t,
                _ => None,
            };
            let t = t.unwrap_or_else(|| Tally::new(v.n));
            if let (true, Some((label, m))) = (t.settled(), t.winner()) {
                let slot = Slot::Done {
                    label: label.to_string(),
                    status: RowStatus::Cached,
                    by: Some(m),
                    votes: t.summary(),
                };
                self.window.push_back((row.idx, row.record, slot));
                return;
            }
            tally = Some(t);
        } else if let Some(Cached::Label(Some(hit))) = row.cached {
            let slot = Slot::Done {
                votes: Some(hit.votes),
                label: hit.label,
                status: RowStatus::Cached,
                by: Some(hit.by),
            };
            self.window.push_back((row.idx, row.record, slot));
            return;
        }
        let mut waiting = Waiting {
            refs: 1,
            result: None,
            tally,
        };
        let asks: Vec<u32> = match waiting.tally.as_mut() {
            Some(t) => (0..t.to_ask()).map(|_| t.send()).collect(),
            None => vec![0],
        };
        self.waiting.insert(text.clone(), waiting);
        for k in asks {
            self.ask(&text, k);
        }
        self.window
            .push_back((row.idx, row.record, Slot::Pending(text)));
        self.release_batch(setup.batch_size, false);
    }

    /// Writes every finished row at the front of the window, in order, then flushes.
    /// Fallback rows are recorded in the state before they reach the output, so a crash in
    /// between can never leave an unmarked fallback label behind.
    pub fn drain(
        &mut self,
        run: &Labeler,
        setup: &mut PipelineSetup,
        (writes, control): (&StateWriter, &RunControl),
        usage: &Arc<Usage>,
    ) -> Result<()> {
        let recorded = self.fallbacks.take_answer(run, control);
        self.counts.fallback_rows.extend(recorded);
        let mut ready = self.take_finished(run, setup);
        if ready.is_empty() {
            return Ok(());
        }
        self.record_fallbacks(setup, writes, &mut ready);
        self.write(run, setup, ready)?;
        setup
            .writer
            .flush()
            .map_err(|e| Error::io(format!("{}: cannot write", setup.output_path.display()), e))?;
        if self.cache_puts.len() >= 256 {
            usage.send_flush(writes, &mut self.cache_puts);
        }
        Ok(())
    }

    /// Takes the finished rows off the front of the window.
    fn take_finished(&mut self, run: &Labeler, setup: &PipelineSetup) -> Vec<WindowRow> {
        let mut ready = Vec::new();
        while let Some((_, _, slot)) = self.window.front() {
            let finished = match slot {
                Slot::Pending(text) => {
                    match self.waiting.get(text).and_then(|w| w.result.as_ref()) {
                        Some(TextOutcome::Stopped) | None => false,
                        Some(_) => true,
                    }
                }
                _ => true,
            };
            if !finished {
                break;
            }
            let (idx, record, slot) = self.window.pop_front().unwrap();
            let slot = match slot {
                Slot::Pending(text) => self.outcome_of(run, setup, idx, &text),
                other => other,
            };
            ready.push((idx, record, slot));
        }
        ready
    }

    /// The label a finished text got, for one of the rows waiting for it.
    fn outcome_of(&mut self, run: &Labeler, setup: &PipelineSetup, idx: u64, text: &str) -> Slot {
        let w = self.waiting.get_mut(text).unwrap();
        let outcome = w.result.clone().unwrap();
        let summary = w.tally.as_ref().and_then(Tally::summary);
        w.refs -= 1;
        if w.refs == 0 {
            self.waiting.remove(text);
        }
        match outcome {
            TextOutcome::Labeled(label, m, confidence) => Slot::Done {
                votes: Some(match summary {
                    _ if self.logprobs => VoteSummary::measured(&label, confidence),
                    Some(summary) => summary,
                    None => VoteSummary::single(&label),
                }),
                label,
                status: RowStatus::Model,
                by: Some(m),
            },
            TextOutcome::Fallback(why) => {
                run.ui
                    .debug(1, &format!("row {}: fallback label ({why})", idx + 1));
                Slot::Done {
                    label: setup.fallback_label.clone(),
                    status: RowStatus::Fallback,
                    by: None,
                    votes: None,
                }
            }
            TextOutcome::Stopped => unreachable!("stopped rows are never drained"),
        }
    }

    /// Lets the fallback rows of `ready` that the state has recorded go out; the first
    /// that it has not, and every row after it, go back to the front of the window.
    fn record_fallbacks(
        &mut self,
        setup: &PipelineSetup,
        writes: &StateWriter,
        ready: &mut Vec<WindowRow>,
    ) {
        let fallbacks: Vec<u64> = ready
            .iter()
            .filter(|(_, _, s)| {
                matches!(
                    s,
                    Slot::Done {
                        status: RowStatus::Fallback,
                        ..
                    }
                )
            })
            .map(|(i, _, _)| *i)
            .collect();
        let Some(first) = self
            .fallbacks
            .first_unrecorded(&fallbacks, &setup.output_id, writes)
        else {
            return;
        };
        let at = ready.iter().position(|(i, _, _)| *i == first).unwrap_or(0);
        for row in ready.split_off(at).into_iter().rev() {
            self.window.push_front(row);
        }
    }

    /// Writes rows to the output and counts them.
    fn write(
        &mut self,
        run: &Labeler,
        setup: &mut PipelineSetup,
        ready: Vec<WindowRow>,
    ) -> Result<()> {
        let out_err = |e: csv::Error| {
            Error::Runtime(format!(
                "{}: cannot write: {e}",
                setup.output_path.display()
            ))
            .caused_by(e)
        };
        let counts = &mut self.counts;
        for (_, record, slot) in ready {
            match slot {
                Slot::Keep(old) => {
                    setup.writer.write_record(&old).map_err(out_err)?;
                    counts.kept += 1;
                    let label = old.get(setup.info.label_index()).unwrap_or("").to_string();
                    *counts.per_label.entry(label).or_default() += 1;
                }
                Slot::Done {
                    label,
                    status,
                    by,
                    votes,
                } => {
                    let cols = setup.vote_columns;
                    let review = votes.as_ref().is_some_and(|v| cols.to_review(v));
                    let shown = if review { RowStatus::Review } else { status };
                    let status_field = setup.status_column.then(|| shown.as_str());
                    let model_field = setup
                        .model_column
                        .then(|| by.map_or("", |m| run.spec.members[m].tag.as_str()));
                    let confidence = votes.as_ref().map(VoteSummary::confidence_text);
                    let confidence = confidence.as_deref().unwrap_or("");
                    let counted = votes.as_ref().map_or("", |v| v.counts.as_str());
                    let tail = status_field
                        .into_iter()
                        .chain(model_field)
                        .chain(cols.confidence.then_some(confidence))
                        .chain(cols.votes.then_some(counted));
                    setup
                        .info
                        .output_record(&record, &label, tail, &mut self.out_rec);
                    setup.writer.write_record(&self.out_rec).map_err(out_err)?;
                    match status {
                        RowStatus::Model => counts.model += 1,
                        RowStatus::Cached => counts.cached += 1,
                        RowStatus::Empty => counts.empty += 1,
                        RowStatus::Fallback => counts.fallbacks += 1,
                        RowStatus::Review => {}
                    }
                    if let Some(v) = &votes {
                        counts.voted += 1;
                        counts.unanimous += u64::from(v.unanimous);
                        counts.review += u64::from(review);
                        counts.measured += u64::from(cols.logprobs && v.confidence.is_some());
                    }
                    *counts.per_label.entry(label).or_default() += 1;
                }
                Slot::Pending(_) => unreachable!(),
            }
            counts.written += 1;
        }
        Ok(())
    }
}
