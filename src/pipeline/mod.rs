//! The labeling loop: feeder → jobs (up to `--concurrency` in flight) → one collector.
//!
//! The collector (`run`) alone owns the output writer, the progress display and the run's
//! control (`control`), and the jobs (`worker`) are futures it polls itself, so every
//! write to the state is sent from its task: rows, usage and cache entries by the
//! collector, key events (`journal`) as the dispatcher hands them out, never under its
//! lock. The state's writer thread (`writes`) makes them in that order, so a state that
//! is slow or silent never holds up the pipeline. It keeps
//! a bounded window of rows in input order (`collector`), settles what it can locally
//! (empty text, cache hit, same text already in flight), groups the rest into jobs, and
//! writes rows strictly in input order as their labels arrive. Each row is flushed as
//! soon as it can be written. The run's fixed setup is a `spec::RunSpec`.

mod adopt;
mod cache_read;
mod collector;
pub mod control;
mod fallback_record;
pub mod feeder;
pub mod heartbeat;
mod journal;
mod live;
pub mod outage;
pub mod overrides;
pub mod reach;
pub mod reply_cap;
pub mod setup;
pub mod spec;
mod usage;
mod vote_rows;
pub mod worker;
mod writes;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::BufWriter;
use std::sync::Arc;

use futures_util::stream::{FuturesUnordered, StreamExt};
use futures_util::FutureExt;
use tokio::sync::mpsc;

use crate::csvio::InputInfo;
use crate::error::{Error, Result};
use crate::signals::StopSignal;
use crate::store::UsageDelta;
use collector::Collector;
use control::{RunControl, Verdict};
use feeder::Row;
use live::Live;
use outage::Outage;
use spec::Labeler;
use usage::Usage;
use worker::Job;
use writes::StateWriter;

/// How each written row got its label (the optional status column shows it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowStatus {
    Model,
    Cached,
    Empty,
    Fallback,
    /// Labeled, with a confidence below `--review-below`.
    Review,
}

impl RowStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RowStatus::Model => "model",
            RowStatus::Cached => "cached",
            RowStatus::Empty => "empty",
            RowStatus::Fallback => "fallback",
            RowStatus::Review => "review",
        }
    }
}

/// The output's writer.
pub type Writer = csv::Writer<BufWriter<File>>;

/// What the collector needs besides the run: the input, the output and how to batch.
pub struct PipelineSetup {
    pub info: InputInfo,
    pub skip: u64,
    pub previous: Option<feeder::Previous>,
    pub writer: csv::Writer<BufWriter<File>>,
    pub fallback_label: String,
    pub status_column: bool,
    /// Whether the output has a column with each row's provider/model.
    pub model_column: bool,
    pub concurrency: usize,
    pub batch_size: usize,
    /// Cache keys are scoped by each provider's `Member::cache_scope`.
    pub use_cache: bool,
    /// Identifies the output in the state's fallback-row table.
    pub output_id: String,
    /// The file the writer writes (the output, or a rewrite's temp file), for messages.
    pub output_path: std::path::PathBuf,
    /// `--votes` above 1.
    pub votes: Option<crate::votes::VoteRun>,
    /// The confidence and votes columns, and review.
    pub vote_columns: crate::votes::VoteColumns,
}

/// Counts for the summary.
#[derive(Debug, Default, Clone)]
pub struct RunCounts {
    pub written: u64,
    pub kept: u64,
    pub per_label: BTreeMap<String, u64>,
    pub model: u64,
    pub cached: u64,
    pub empty: u64,
    pub fallbacks: u64,
    /// Rows that got a fallback in this run (row indexes).
    pub fallback_rows: Vec<u64>,
    /// Rows past `--limit` that still carry an earlier run's fallback label (out of this
    /// run's reach, kept as they are).
    pub fallbacks_past_limit: u64,
    /// Rows written with a label from votes (model or cached), those whose votes all
    /// agreed, and those sent to review.
    pub voted: u64,
    pub unanimous: u64,
    pub review: u64,
    /// With `--confidence logprobs`: rows written with a confidence their logprobs gave.
    pub measured: u64,
    /// The signal that ended the run early, if one did.
    pub interrupted: Option<StopSignal>,
    pub stopped: bool,
}

/// How a run that did not fail ended.
pub struct Finished {
    pub counts: RunCounts,
    /// Fatal answer, lost state, providers taken out.
    pub verdict: Verdict,
    /// Per key (the dispatcher's index), this run's usage.
    pub totals: Vec<UsageDelta>,
}

/// The keys as the end-of-run summary shows them.
pub struct KeysView {
    /// Per key (the dispatcher's index): its label, its provider (index in `providers`)
    /// and this run's usage.
    pub keys: Vec<(String, usize, UsageDelta)>,
    /// Per provider: `provider/model`, and whether it was taken out of the pool (404).
    pub providers: Vec<(String, bool)>,
    /// The key-status line.
    pub status: String,
}

impl Finished {
    /// The summary's view of the run's keys.
    pub fn keys_view(&self, run: &Labeler) -> KeysView {
        let keys = (0..run.dispatcher.key_count())
            .map(|k| {
                let label = run.dispatcher.key(k).label();
                (label, run.spec.key_member[k], self.totals[k].clone())
            })
            .collect();
        let providers = run.spec.members.iter().map(|m| m.tag.clone());
        KeysView {
            keys,
            providers: providers
                .zip(self.verdict.dropped.iter().copied())
                .collect(),
            status: run.dispatcher.with_ring(|r| r.summary()),
        }
    }
}

/// The input being read: the feeder's thread and the rows it sends.
struct Input {
    rx: mpsc::Receiver<Result<Row>>,
    /// Rows taken from the channel at once.
    rows: Vec<Result<Row>>,
    feeder: std::thread::JoinHandle<()>,
    /// Rows to feed in all.
    total: u64,
    /// Of those, the rows this run labels (the others are kept from the previous output).
    to_label: u64,
    /// The window holds at most this many rows...
    cap: usize,
    /// ...and is refilled once it holds fewer than this.
    refill_below: usize,
    done: bool,
    error: Option<Error>,
}

impl Input {
    fn start(run: &Labeler, setup: &mut PipelineSetup) -> Input {
        let cap = (setup.concurrency * setup.batch_size * 4).max(1024);
        let (tx, rx) = mpsc::channel(1024);
        let total = feeder::rows_to_feed(&setup.info, setup.previous.as_ref()) - setup.skip;
        let to_label = total - feeder::rows_kept(&setup.info, setup.skip, setup.previous.as_ref());
        let cache = setup.use_cache.then(|| {
            let logprobs = setup.vote_columns.logprobs;
            cache_read::CacheView::new(run, logprobs, setup.votes.clone())
        });
        let feeder = feeder::spawn(
            setup.info.clone(),
            setup.skip,
            setup.previous.take(),
            cache,
            tx,
        );
        Input {
            rx,
            rows: Vec::with_capacity(cap),
            feeder,
            total,
            to_label,
            cap,
            // Refill the window in chunks (an eighth of it at once), not row by row: each
            // row taken from a full channel wakes the feeder thread, a futex and a context
            // switch.
            refill_below: cap - cap / 8,
            done: false,
            error: None,
        }
    }

    /// Whether to take rows now, with `held` rows in the window.
    fn wants(&self, held: usize, stopping: bool) -> bool {
        !self.done && !stopping && held < self.refill_below
    }

    /// Admits the `n` rows just taken (none: the input is over); a bad row ends the run.
    fn admit(&mut self, n: usize, setup: &PipelineSetup, control: &RunControl, c: &mut Collector) {
        if n == 0 {
            self.done = true;
        }
        for row in self.rows.drain(..) {
            match row {
                Err(e) => {
                    self.error = Some(e);
                    self.done = true;
                    control.stop();
                    break;
                }
                Ok(row) => c.admit(setup, row),
            }
        }
    }
}

/// Labels the input into the output: feeds rows into the window, sends their texts as
/// jobs (up to `--concurrency` at once), writes rows in order as their labels come, and
/// keeps the state, the progress display and the registry of runs up to date meanwhile.
pub async fn run(run: &Labeler, mut setup: PipelineSetup) -> Result<(Finished, Writer)> {
    let control = RunControl::new(run.spec.members.len());
    let usage = Arc::new(Usage::new(run, setup.votes.is_some()));
    // Read before the first request, so its first tries already get the cap they need.
    reply_cap::adopt(run, &usage.caps);
    let writes = StateWriter::start(run.state.clone(), run.ui.clone());
    let job = Job {
        run,
        control: &control,
        usage: &usage,
        writes: &writes,
    };
    let mut input = Input::start(run, &mut setup);
    run.ui.start_progress(input.total);
    let mut live = Live::start(run, &writes, &setup, (input.total, input.to_label));
    let outage = Outage::new(run.spec.policy.store_timeout);
    let mut c =
        Collector::new(outage, setup.votes.clone()).with_logprobs(setup.vote_columns.logprobs);
    let recorded = c.fallbacks.answered.clone();
    // The jobs in flight, polled by this task itself: no task to spawn, schedule and join
    // per request (a measurable share of the CPU at high rates). A panic in one is caught
    // and ends the run as an error, as a failed task would.
    let mut tasks = FuturesUnordered::new();
    loop {
        let stopping = control.is_stopping();
        // A partial batch goes out once no more rows will be read for now: the rows
        // waiting for it could otherwise hold the window forever.
        c.release_batch(
            setup.batch_size,
            input.done || c.len() >= input.refill_below,
        );
        while tasks.len() < setup.concurrency && !stopping {
            let Some(texts) = c.next_job() else { break };
            let labeled = async move {
                let out = worker::label_texts(job, &texts).await;
                (texts, out)
            };
            tasks.push(std::panic::AssertUnwindSafe(labeled).catch_unwind());
        }
        c.drain(run, &mut setup, (&writes, &control), &usage)?;
        if input.done && c.is_empty() {
            break;
        }
        if stopping && tasks.is_empty() {
            c.counts.stopped = true;
            break;
        }
        tokio::select! {
            signal = live.signals.recv() => {
                run.ui.info(&format!("{} received: writing what is done and stopping", signal.name()));
                c.counts.interrupted = Some(signal);
                control.stop();
                tasks.clear();
                break;
            }
            Some(joined) = tasks.next(), if !tasks.is_empty() => {
                // Take every job that has finished by now, so that one write and flush
                // covers them all under load (and still a single row when idle).
                let mut next = Some(joined);
                while let Some(joined) = next {
                    let (texts, outcomes) = joined.map_err(|_| Error::Runtime("a request task failed (panicked)".into()))?;
                    c.settle(run, (setup.use_cache, &usage), texts, outcomes);
                    next = tasks.next().now_or_never().flatten();
                }
            }
            n = input.rx.recv_many(&mut input.rows, input.cap - c.len()), if input.wants(c.len(), stopping) => {
                input.admit(n, &setup, &control, &mut c);
            }
            _ = live.tick.tick() => live.on_tick(run, &writes, &usage, &mut c),
            // The state recorded fallback rows: they can go out.
            _ = recorded.notified() => {}
        }
    }
    drop(tasks);
    finish(run, setup, input, live, c, (&control, &usage, writes))
}

/// Writes what is left, and closes the run's entry, the progress display and the input.
fn finish(
    run: &Labeler,
    mut setup: PipelineSetup,
    input: Input,
    live: Live,
    mut c: Collector,
    (control, usage, writes): (&RunControl, &Arc<Usage>, StateWriter),
) -> Result<(Finished, Writer)> {
    drop(input.rx);
    c.drain(run, &mut setup, (&writes, control), usage)?;
    // Fallback rows on their way to the state: written once it answers. Each pass takes
    // an answer; one that failed is not sent again, and a pass sends only rows the
    // passes before did not, so three are enough (bounded, should the writer be gone).
    for _ in 0..3 {
        if !c.fallbacks.waiting() {
            break;
        }
        writes.wait();
        c.drain(run, &mut setup, (&writes, control), usage)?;
    }
    usage.send_last_flush(&writes, &mut c.cache_puts);
    live.finish(run, &writes, &c.counts);
    // Everything sent is written before the run ends.
    writes.finish();
    run.ui.finish_progress();
    let _ = input.feeder.join();
    if let Some(e) = input.error {
        return Err(e);
    }
    let finished = Finished {
        counts: c.counts,
        verdict: control.verdict(),
        totals: usage.totals(),
    };
    Ok((finished, setup.writer))
}
