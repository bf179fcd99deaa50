//! The labeling loop: feeder → jobs (up to `--concurrency` in flight) → one collector.
//!
//! The collector alone owns the output writer, the progress display and the writes to
//! the state. It keeps a bounded window of rows in input order, settles what it can
//! locally (empty text, cache hit, same text already in flight), groups the rest into
//! jobs, and writes rows strictly in input order as their labels arrive. Each row is
//! flushed as soon as it can be written.

pub mod feeder;
pub mod heartbeat;
pub mod outage;
pub mod overrides;
pub mod reach;
pub mod reply_cap;
pub mod setup;
pub mod worker;

use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::io::BufWriter;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use csv::StringRecord;
use futures_util::stream::{FuturesUnordered, StreamExt};
use futures_util::FutureExt;
use rustc_hash::FxHashMap;
use tokio::sync::mpsc;

use crate::csvio::InputInfo;
use crate::error::{Error, Result};
use crate::provider::classify::ErrorClass;
use crate::signals::{Signals, StopSignal};
use crate::store::{Beat, UsageEntry};
use crate::timeutil::Day;
use feeder::Row;
use worker::{Ctx, TextOutcome};

/// How each written row got its label (the optional status column shows it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowStatus {
    Model,
    Cached,
    Empty,
    Fallback,
}

impl RowStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RowStatus::Model => "model",
            RowStatus::Cached => "cached",
            RowStatus::Empty => "empty",
            RowStatus::Fallback => "fallback",
        }
    }
}

/// What the pipeline needs besides the shared job context.
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
    /// The signal that ended the run early, if one did.
    pub interrupted: Option<StopSignal>,
    pub stopped: bool,
}

enum Slot {
    Pending(Arc<str>),
    Done {
        label: String,
        status: RowStatus,
        /// The provider (index in `Ctx::members`) whose model gave the label.
        by: Option<usize>,
    },
    Keep(StringRecord),
}

struct Waiting {
    refs: usize,
    result: Option<TextOutcome>,
}

pub async fn run(
    ctx: Arc<Ctx>,
    mut setup: PipelineSetup,
) -> Result<(RunCounts, csv::Writer<BufWriter<File>>)> {
    let window_cap = (setup.concurrency * setup.batch_size * 4).max(1024);
    // Refill the window in chunks (an eighth of it at once), not row by row: each row
    // taken from a full channel wakes the feeder thread, a futex and a context switch.
    let refill_below = window_cap - window_cap / 8;
    let mut rows_in: Vec<Result<Row>> = Vec::with_capacity(window_cap);
    let (tx, mut rx) = mpsc::channel::<Result<Row>>(1024);
    let total = feeder::rows_to_feed(&setup.info, setup.previous.as_ref()) - setup.skip;
    let feeder = feeder::spawn(setup.info.clone(), setup.skip, setup.previous.take(), tx);
    ctx.ui.start_progress(total);

    let mut window: VecDeque<(u64, StringRecord, Slot)> = VecDeque::new();
    // Keyed by the text: a fast hash, since every row is hashed twice (the input is the
    // user's own file, so there is no one to attack the hash).
    let mut waiting: FxHashMap<Arc<str>, Waiting> = FxHashMap::default();
    let mut batch: Vec<Arc<str>> = Vec::new();
    let mut queue: VecDeque<Vec<Arc<str>>> = VecDeque::new();
    // The jobs in flight, polled by this task itself: no task to spawn, schedule and join
    // per request (a measurable share of the CPU at high rates). A panic in one is caught
    // and ends the run as an error, as a failed task would.
    let mut tasks = FuturesUnordered::new();
    let jobs_ctx: &Ctx = &ctx;
    let mut counts = RunCounts::default();
    let mut cache_puts: Vec<(Vec<u8>, String)> = Vec::new();
    let mut input_done = false;
    let mut input_error: Option<Error> = None;
    let started = Instant::now();
    let mut shared_seen = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut signals = Signals::install();
    // `autolabel keys disable|enable|reset|rotate`, now and while the run goes.
    let mut key_overrides = overrides::OverrideSync::start(&ctx);
    // The run's entry in the runs registry, for `autolabel dashboard`.
    let mut heartbeat =
        heartbeat::Heartbeat::start(&ctx, &setup.info.path, &setup.output_path, total);
    let mut out_rec = StringRecord::new();

    loop {
        let stopping = ctx.is_stopping();
        // A partial batch goes out once no more rows will be read for now: the rows
        // waiting for it could otherwise hold the window forever.
        if !batch.is_empty()
            && (batch.len() >= setup.batch_size || input_done || window.len() >= refill_below)
        {
            queue.push_back(std::mem::take(&mut batch));
        }
        while tasks.len() < setup.concurrency && !stopping {
            let Some(job) = queue.pop_front() else { break };
            tasks.push(
                std::panic::AssertUnwindSafe(async move {
                    let out = worker::label_texts(jobs_ctx, &job).await;
                    (job, out)
                })
                .catch_unwind(),
            );
        }
        drain(
            &ctx,
            &mut setup,
            &mut window,
            &mut waiting,
            &mut counts,
            &mut out_rec,
            &mut cache_puts,
        )?;
        if input_done && window.is_empty() {
            break;
        }
        if stopping && tasks.is_empty() {
            counts.stopped = true;
            break;
        }
        tokio::select! {
            signal = signals.recv() => {
                ctx.ui.info(&format!("{} received: writing what is done and stopping", signal.name()));
                counts.interrupted = Some(signal);
                ctx.stopping.store(true, std::sync::atomic::Ordering::SeqCst);
                tasks.clear();
                break;
            }
            Some(joined) = tasks.next(), if !tasks.is_empty() => {
                // Take every job that has finished by now, so that one write and flush
                // covers them all under load (and still a single row when idle).
                let mut next = Some(joined);
                while let Some(joined) = next {
                    let (texts, outcomes) = joined.map_err(|_| Error::Runtime("a request task failed (panicked)".into()))?;
                    for (text, outcome) in texts.into_iter().zip(outcomes) {
                        if let (true, TextOutcome::Labeled(label, m)) = (setup.use_cache, &outcome) {
                            cache_puts.push((ctx.members[*m].cache_scope.key(&text), label.clone()));
                        }
                        if let Some(w) = waiting.get_mut(&text) {
                            w.result = Some(outcome);
                        }
                    }
                    next = tasks.next().now_or_never().flatten();
                }
            }
            n = rx.recv_many(&mut rows_in, window_cap - window.len()), if !input_done && !stopping && window.len() < refill_below => {
                if n == 0 {
                    input_done = true;
                }
                for row in rows_in.drain(..) {
                    match row {
                        Err(e) => { input_error = Some(e); input_done = true; ctx.stopping.store(true, std::sync::atomic::Ordering::SeqCst); break; }
                        Ok(row) => {
                            admit(&ctx, &setup, row, &mut window, &mut waiting, &mut batch);
                            if batch.len() >= setup.batch_size {
                                queue.push_back(std::mem::take(&mut batch));
                            }
                        }
                    }
                }
            }
            _ = tick.tick() => {
                flush_state(&ctx, &mut cache_puts);
                key_overrides.poll(&ctx);
                // Every second: what other runs on the same state found about our keys and
                // heard their providers state.
                if shared_seen.elapsed() >= Duration::from_secs(1) {
                    shared_seen = Instant::now();
                    ctx.adopt_shared_health();
                    ctx.adopt_learned_limits();
                }
                let done = counts.written;
                let minutes = started.elapsed().as_secs_f64() / 60.0;
                let key = ctx.dispatcher.with_ring(|r| r.current.map(|k| r.slots[k].key.label()).unwrap_or_else(|| "-".into()));
                let rate = if minutes > 0.0 { (done - counts.kept) as f64 / minutes } else { 0.0 };
                ctx.ui.progress(done, total, rate, counts.fallbacks, &key);
                heartbeat.beat(&ctx, &Beat { rows_done: done, rows_total: total, rate, key_in_use: &key });
            }
        }
    }
    drop(rx);
    drain(
        &ctx,
        &mut setup,
        &mut window,
        &mut waiting,
        &mut counts,
        &mut out_rec,
        &mut cache_puts,
    )?;
    flush_state(&ctx, &mut cache_puts);
    let key = ctx.dispatcher.with_ring(|r| {
        r.current
            .map(|k| r.slots[k].key.label())
            .unwrap_or_else(|| "-".into())
    });
    let minutes = started.elapsed().as_secs_f64() / 60.0;
    let rate = if minutes > 0.0 {
        (counts.written - counts.kept) as f64 / minutes
    } else {
        0.0
    };
    heartbeat.finish(
        &ctx,
        &Beat {
            rows_done: counts.written,
            rows_total: total,
            rate,
            key_in_use: &key,
        },
    );
    ctx.ui.finish_progress();
    let _ = feeder.join();
    if let Some(e) = input_error {
        return Err(e);
    }
    Ok((counts, setup.writer))
}

/// Settles a new row locally if possible, else makes sure its text is (or will be) asked.
fn admit(
    ctx: &Ctx,
    setup: &PipelineSetup,
    row: Row,
    window: &mut VecDeque<(u64, StringRecord, Slot)>,
    waiting: &mut FxHashMap<Arc<str>, Waiting>,
    batch: &mut Vec<Arc<str>>,
) {
    if let Some(old) = row.keep {
        window.push_back((row.idx, row.record, Slot::Keep(old)));
        return;
    }
    let text = row.record.get(setup.info.text_col).unwrap_or("");
    if text.trim().is_empty() {
        let slot = Slot::Done {
            label: setup.fallback_label.clone(),
            status: RowStatus::Empty,
            by: None,
        };
        window.push_back((row.idx, row.record, slot));
        return;
    }
    let text: Arc<str> = Arc::from(text);
    if let Some(w) = waiting.get_mut(&text) {
        w.refs += 1;
        window.push_back((row.idx, row.record, Slot::Pending(text)));
        return;
    }
    if setup.use_cache {
        // A label any provider of the run gave earlier, under its own model's scope.
        for (m, member) in ctx.members.iter().enumerate() {
            match ctx.state.cache_get(&member.cache_scope.key(&text)) {
                Ok(Some(label)) if ctx.labels.contains(&label) => {
                    window.push_back((
                        row.idx,
                        row.record,
                        Slot::Done {
                            label,
                            status: RowStatus::Cached,
                            by: Some(m),
                        },
                    ));
                    return;
                }
                Ok(_) => {}
                Err(e) => {
                    ctx.ui
                        .error(&format!("cache read failed (continuing without it): {e}"));
                    break;
                }
            }
        }
    }
    waiting.insert(
        text.clone(),
        Waiting {
            refs: 1,
            result: None,
        },
    );
    batch.push(text.clone());
    window.push_back((row.idx, row.record, Slot::Pending(text)));
}

/// Writes every finished row at the front of the window, in order, then flushes.
/// Fallback rows are recorded in the state before they reach the output, so a crash in
/// between can never leave an unmarked fallback label behind.
fn drain(
    ctx: &Ctx,
    setup: &mut PipelineSetup,
    window: &mut VecDeque<(u64, StringRecord, Slot)>,
    waiting: &mut FxHashMap<Arc<str>, Waiting>,
    counts: &mut RunCounts,
    out_rec: &mut StringRecord,
    cache_puts: &mut Vec<(Vec<u8>, String)>,
) -> Result<()> {
    let mut ready: Vec<(u64, StringRecord, Slot)> = Vec::new();
    while let Some((_, _, slot)) = window.front() {
        let finished = match slot {
            Slot::Pending(text) => match waiting.get(text).and_then(|w| w.result.as_ref()) {
                Some(TextOutcome::Stopped) | None => false,
                Some(_) => true,
            },
            _ => true,
        };
        if !finished {
            break;
        }
        let (idx, record, slot) = window.pop_front().unwrap();
        let slot = match slot {
            Slot::Pending(text) => {
                let w = waiting.get_mut(&text).unwrap();
                let outcome = w.result.clone().unwrap();
                w.refs -= 1;
                if w.refs == 0 {
                    waiting.remove(&text);
                }
                match outcome {
                    TextOutcome::Labeled(label, m) => Slot::Done {
                        label,
                        status: RowStatus::Model,
                        by: Some(m),
                    },
                    TextOutcome::Fallback(why) => {
                        ctx.ui
                            .debug(1, &format!("row {}: fallback label ({why})", idx + 1));
                        Slot::Done {
                            label: setup.fallback_label.clone(),
                            status: RowStatus::Fallback,
                            by: None,
                        }
                    }
                    TextOutcome::Stopped => unreachable!("stopped rows are never drained"),
                }
            }
            other => other,
        };
        ready.push((idx, record, slot));
    }
    if ready.is_empty() {
        return Ok(());
    }
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
    if !fallbacks.is_empty() {
        match ctx.state.add_fallback_rows(&setup.output_id, &fallbacks) {
            Ok(()) => {
                ctx.state_outage.lock().unwrap().answered(ctx);
                counts.fallback_rows.extend(&fallbacks);
            }
            Err(e) => {
                // The rows before the first fallback go out; it and the rest wait, in
                // order, at the front of the window.
                let first = ready
                    .iter()
                    .position(|(i, _, _)| *i == fallbacks[0])
                    .unwrap_or(0);
                for row in ready.split_off(first).into_iter().rev() {
                    window.push_front(row);
                }
                ctx.state_outage.lock().unwrap().failed(ctx, &e);
            }
        }
    }
    let out_err = |e: csv::Error| {
        Error::Runtime(format!(
            "{}: cannot write: {e}",
            setup.output_path.display()
        ))
        .caused_by(e)
    };
    for (_, record, slot) in ready {
        match slot {
            Slot::Keep(old) => {
                setup.writer.write_record(&old).map_err(out_err)?;
                counts.kept += 1;
                let label = old.get(setup.info.label_index()).unwrap_or("").to_string();
                *counts.per_label.entry(label).or_default() += 1;
            }
            Slot::Done { label, status, by } => {
                let status_field = setup.status_column.then(|| status.as_str());
                let model_field = setup
                    .model_column
                    .then(|| by.map_or("", |m| ctx.members[m].tag.as_str()));
                setup.info.output_record(
                    &record,
                    &label,
                    status_field.into_iter().chain(model_field),
                    out_rec,
                );
                setup.writer.write_record(&*out_rec).map_err(out_err)?;
                match status {
                    RowStatus::Model => counts.model += 1,
                    RowStatus::Cached => counts.cached += 1,
                    RowStatus::Empty => counts.empty += 1,
                    RowStatus::Fallback => counts.fallbacks += 1,
                }
                *counts.per_label.entry(label).or_default() += 1;
            }
            Slot::Pending(_) => unreachable!(),
        }
        counts.written += 1;
    }
    setup
        .writer
        .flush()
        .map_err(|e| Error::io(format!("{}: cannot write", setup.output_path.display()), e))?;
    if cache_puts.len() >= 256 {
        flush_state(ctx, cache_puts);
    }
    Ok(())
}

/// Writes the usage ledger and pending cache entries in short transactions.
pub fn flush_state(ctx: &Ctx, cache_puts: &mut Vec<(Vec<u8>, String)>) {
    let day = Day::of(SystemTime::now());
    let deltas: Vec<_> = {
        let mut usage = ctx.usage.lock().unwrap();
        usage
            .unsaved
            .iter_mut()
            .enumerate()
            .filter(|(_, d)| d.requests > 0)
            .map(|(i, d)| {
                let k = &ctx.keys[i];
                (
                    ctx.key_member[i],
                    UsageEntry {
                        fingerprint: k.fingerprint.clone(),
                        masked: k.masked.clone(),
                        model: ctx.member(i).client.model().to_string(),
                        day: day.clone(),
                        usage: std::mem::take(d),
                    },
                )
            })
            .collect()
    };
    // The ledger is kept per provider.
    for (m, member) in ctx.members.iter().enumerate() {
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
        if let Err(e) = ctx
            .state
            .touch_keys(member.provider, &touched, SystemTime::now())
        {
            ctx.ui
                .debug(1, &format!("could not record key activity: {e}"));
        }
        if let Err(e) = ctx.state.add_usage(member.provider, &mine) {
            ctx.ui.error(&format!("could not record usage: {e}"));
            // Put the counts back so the next flush tries again.
            let mut usage = ctx.usage.lock().unwrap();
            for e in mine {
                if let Some(i) = ctx.keys.iter().position(|k| k.fingerprint == e.fingerprint) {
                    usage.unsaved[i].add(&e.usage);
                }
            }
        }
    }
    if let Err(e) = ctx.state.cache_put_many(cache_puts) {
        ctx.ui
            .error(&format!("could not write the label cache: {e}"));
    }
    cache_puts.clear();
}
