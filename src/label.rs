//! The labeling command from start to end: check the input, take the output lock, decide
//! between a fresh start, a resume and a rewrite of fallback rows, run the pipeline, and
//! make the result durable.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use crate::budget;
use crate::cli::BatchSize;
use crate::config::LabelConfig;
use crate::csvio::{self, Existing, InputInfo, OutputLayout};
use crate::error::{Error, Outcome, Result};
use crate::pipeline::setup::{build_labeler, cache_scope, log_limits};
use crate::pipeline::{self, control::Verdict, feeder::Previous, PipelineSetup};
use crate::prompt::Prompter;
use crate::report;
use crate::signals::StopSignal;
use crate::store::State;
use crate::ui::Ui;

pub async fn run(mut cfg: LabelConfig) -> Result<Outcome> {
    let ui = Arc::new(Ui::new(
        cfg.base.quiet,
        cfg.base.verbose,
        cfg.progress_every,
    ));
    let info = csvio::inspect_input(
        &cfg.input,
        cfg.text_column.as_deref(),
        &cfg.label_column,
        cfg.replace_label_column,
        cfg.limit,
    )?;
    let layout = OutputLayout {
        label_column: cfg.label_column.clone(),
        status_column: cfg.status_column.clone(),
        model_column: cfg.model_column.clone(),
    };
    let state = State::open_at(&cfg.base.state)?;
    state.keep_cache_days(cfg.keep_days);
    let state = Arc::new(state);
    for member in cfg.pool_mut() {
        member.load_learned(&state)?;
    }
    for member in cfg.pool() {
        log_limits(&ui, member, cfg.is_pool());
    }
    let prompter = Prompter::new(&cfg.labels, cfg.prompt_template.clone());
    // Per provider: a label is served from the cache only to the model that gave it.
    let cache_scopes: Vec<_> = cfg.pool().map(|c| cache_scope(c, &prompter)).collect();
    let batch_size = match cfg.batch_size {
        BatchSize::Fixed(n) => n,
        BatchSize::Auto => {
            let choice = budget::auto_batch_size(
                &cfg.limits_in_force(),
                &prompter,
                info.average_text_bytes(),
            );
            if !cfg.dry_run {
                ui.info(&format!(
                    "--batch-size auto: {} a request ({})",
                    crate::ui::count(choice.size as u64, "text"),
                    choice.reason
                ));
            }
            choice.size
        }
    };
    if cfg.dry_run {
        report::dry_run(&cfg, &info, &state, &cache_scopes, &prompter, batch_size)?;
        return Ok(Outcome::Complete);
    }
    match state.prune_if_due(cfg.keep_days, SystemTime::now()) {
        Ok(Some(pruned)) if pruned.total() > 0 => ui.info(&format!(
            "state {}: {pruned} (--keep-days {})",
            state.location, cfg.keep_days
        )),
        Ok(_) => {}
        // Old entries cost only space; the run goes on.
        Err(e) => ui.error(&format!("could not prune the state: {e}")),
    }
    let _lock = OutputLock::take(&cfg.output)?;
    let output_id = output_id(&cfg.output);
    let existing = if cfg.overwrite {
        Existing::Fresh
    } else {
        csvio::check_existing_output(&cfg.output, &info, &layout)?
    };
    let plan = plan_output(&existing, &state, &output_id, &info)?;
    if plan.done_already() {
        let past_limit = plan.fallbacks_past_limit().len() as u64;
        ui.info(&format!(
            "{}: {}{} labeled already; nothing to do",
            cfg.output.display(),
            match info.rows {
                1 => "the 1 row".to_string(),
                n => format!("all {n} rows"),
            },
            if cfg.limit.is_some() {
                " up to --limit"
            } else {
                ""
            }
        ));
        if past_limit > 0 {
            ui.info(&past_limit_note(past_limit, &cfg.fallback_label));
            return Ok(Outcome::WithFallbacks);
        }
        return Ok(Outcome::Complete);
    }
    // Everything that writes: on a failure (a full disk, say) the output is put back
    // the way a resume expects it, and a rewrite's temp file is removed.
    let written = async {
        let (writer, previous, skip, temp) = open_output(&cfg.output, &info, &layout, &plan)?;
        // Where this run's rows go: the output, or the temp file of a rewrite.
        let written_path = temp.clone().unwrap_or_else(|| cfg.output.clone());
        match &plan {
            Plan::Append { rows, .. } if *rows > 0 => ui.info(&format!(
                "resuming {}: {rows} of {} already labeled",
                cfg.output.display(),
                crate::ui::count(info.rows as u64, "row")
            )),
            Plan::Rewrite { redo, .. } => ui.info(&format!(
                "re-labeling {} that got the fallback label in an earlier run",
                crate::ui::count(redo.len() as u64, "row")
            )),
            _ => {}
        }
        let labeler = build_labeler(&cfg, ui.clone(), state.clone(), prompter)?;
        ui.info(&labeler.dispatcher.with_ring(|r| r.summary()));
        let started = Instant::now();
        let setup = PipelineSetup {
            info: info.clone(),
            skip,
            previous,
            writer,
            fallback_label: cfg.fallback_label.clone(),
            status_column: cfg.status_column.is_some(),
            model_column: cfg.model_column.is_some(),
            concurrency: cfg.concurrency,
            batch_size,
            use_cache: cfg.use_cache,
            output_id: output_id.clone(),
            output_path: written_path.clone(),
        };
        let (mut finished, writer) = pipeline::run(&labeler, setup).await?;
        let cannot_write =
            |e: std::io::Error| Error::io(format!("{}: cannot write", written_path.display()), e);
        let file = writer
            .into_inner()
            .map_err(|e| cannot_write(e.into_error()))?
            .into_inner()
            .map_err(|e| cannot_write(e.into_error()))?;
        file.sync_all()
            .map_err(|e| Error::io(format!("{}: cannot sync", written_path.display()), e))?;
        let past_limit = plan.fallbacks_past_limit();
        let counts = &mut finished.counts;
        counts.fallbacks_past_limit = past_limit.len() as u64;
        if let (Some(temp), Plan::Rewrite { old_rows, .. }) = (&temp, &plan) {
            // The new file is a valid output of this input as soon as it is at least as long
            // as the old one (even after Ctrl-C or a stop); a shorter one would lose rows.
            // Not when the state is unreachable: its fallback rows could not be recorded.
            let state_lost = finished.verdict.state_lost.is_some();
            if counts.written >= *old_rows && !state_lost {
                std::fs::rename(temp, &cfg.output).map_err(|e| {
                    Error::io(format!("{}: cannot replace", cfg.output.display()), e)
                })?;
                let mut still: BTreeSet<u64> = counts.fallback_rows.iter().copied().collect();
                still.extend(past_limit);
                state.set_fallback_rows(&output_id, &still)?;
            } else {
                let _ = std::fs::remove_file(temp);
            }
        }
        Ok::<_, Error>((labeler, finished, started))
    }
    .await;
    let (labeler, finished, started) = match written {
        Ok(done) => done,
        Err(e) => {
            recover_output(&cfg.output, &plan, &info, &layout, &ui);
            return Err(e);
        }
    };
    let counts = &finished.counts;
    let keys = finished.keys_view(&labeler);
    report::summary(&ui, &cfg, counts, &keys, started.elapsed());
    let Verdict {
        fatal, state_lost, ..
    } = finished.verdict;
    // The state cannot take the daily reports either; the reason was logged at the stop.
    if fatal.is_none() && state_lost.is_some() {
        return Ok(Outcome::StateLost);
    }
    if let Some(dir) = &cfg.report_dir {
        for member in cfg.pool() {
            report::write_daily_report(dir, member, &state)?;
        }
    }
    if let Some(message) = fatal {
        return Err(Error::Runtime(message));
    }
    Ok(if let Some(signal) = counts.interrupted {
        match signal {
            StopSignal::Interrupt => Outcome::Interrupted,
            StopSignal::Terminate => Outcome::Terminated,
            StopSignal::HangUp => Outcome::HungUp,
        }
    } else if counts.stopped {
        Outcome::Stopped
    } else if counts.fallbacks > 0 || counts.fallbacks_past_limit > 0 {
        Outcome::WithFallbacks
    } else {
        Outcome::Complete
    })
}

/// How this run treats the output file.
enum Plan {
    Fresh,
    /// Continue after `rows` rows; cut a torn last row at `valid_len`.
    Append {
        rows: u64,
        valid_len: u64,
        total: u64,
        past_limit: BTreeSet<u64>,
    },
    /// Write a new file, keeping old rows except `redo`, then rename it over the old one.
    Rewrite {
        old_rows: u64,
        redo: BTreeSet<u64>,
        past_limit: BTreeSet<u64>,
    },
}

impl Plan {
    fn done_already(&self) -> bool {
        matches!(self, Plan::Append { rows, total, .. } if rows >= total)
    }

    /// Fallback rows of the existing output past `--limit`: this run keeps them as they
    /// are, and says so.
    fn fallbacks_past_limit(&self) -> BTreeSet<u64> {
        match self {
            Plan::Fresh => BTreeSet::new(),
            Plan::Append { past_limit, .. } | Plan::Rewrite { past_limit, .. } => {
                past_limit.clone()
            }
        }
    }
}

/// The summary line for fallback rows that `--limit` kept out of reach.
pub fn past_limit_note(rows: u64, fallback_label: &str) -> String {
    let (rows, have) = match rows {
        1 => ("1 row".to_string(), "has"),
        n => (format!("{n} rows"), "have"),
    };
    format!(
        "  {rows} after --limit still {have} the fallback label '{fallback_label}' from an earlier run; \
         run without --limit (or with a larger one) to re-label them"
    )
}

fn plan_output(
    existing: &Existing,
    state: &State,
    output_id: &str,
    info: &InputInfo,
) -> Result<Plan> {
    Ok(match *existing {
        Existing::Fresh => {
            state.set_fallback_rows(output_id, &BTreeSet::new())?;
            Plan::Fresh
        }
        Existing::Resume { rows, valid_len } => {
            // `info.rows` stops at `--limit`: fallback rows after it are not this run's.
            let (redo, past_limit): (BTreeSet<u64>, BTreeSet<u64>) = state
                .fallback_rows(output_id)?
                .into_iter()
                .filter(|r| *r < rows)
                .partition(|r| *r < info.rows);
            if redo.is_empty() {
                Plan::Append {
                    rows,
                    valid_len,
                    total: info.rows,
                    past_limit,
                }
            } else {
                Plan::Rewrite {
                    old_rows: rows,
                    redo,
                    past_limit,
                }
            }
        }
    })
}

type Opened = (
    csv::Writer<BufWriter<File>>,
    Option<Previous>,
    u64,
    Option<PathBuf>,
);

fn open_output(
    path: &Path,
    info: &InputInfo,
    layout: &OutputLayout,
    plan: &Plan,
) -> Result<Opened> {
    let io = |what: &str, e: std::io::Error| Error::io(format!("{}: {what}", path.display()), e);
    let fresh = |p: &Path| -> Result<csv::Writer<BufWriter<File>>> {
        let f =
            File::create(p).map_err(|e| Error::io(format!("{}: cannot create", p.display()), e))?;
        let mut w = csvio::writer(BufWriter::with_capacity(64 * 1024, f), info.delimiter);
        w.write_record(&info.output_headers(layout))
            .and_then(|_| w.flush().map_err(csv::Error::from))
            .map_err(|e| {
                Error::Runtime(format!("{}: cannot write: {e}", p.display())).caused_by(e)
            })?;
        Ok(w)
    };
    Ok(match plan {
        Plan::Fresh => (fresh(path)?, None, 0, None),
        Plan::Append {
            rows, valid_len, ..
        } => {
            let mut f = OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(|e| io("cannot open for appending", e))?;
            f.set_len(*valid_len)
                .map_err(|e| io("cannot cut a torn last row", e))?;
            f.seek(SeekFrom::End(0)).map_err(|e| io("cannot seek", e))?;
            let w = csvio::writer(BufWriter::with_capacity(64 * 1024, f), info.delimiter);
            (w, None, *rows, None)
        }
        Plan::Rewrite { old_rows, redo, .. } => {
            let temp = sibling(path, ".autolabel-tmp");
            let w = fresh(&temp)?;
            let previous = Previous {
                path: path.to_path_buf(),
                rows: *old_rows,
                redo: redo.clone(),
            };
            (w, Some(previous), 0, Some(temp))
        }
    })
}

/// After a failed write: a rewrite's temp file goes; an output this run appended to (or
/// created) is cut back to its last complete row, so it is again exactly what a resume
/// expects (for a run that wrote nothing: byte for byte what was there before). An
/// output this run created that holds no complete row is removed.
fn recover_output(path: &Path, plan: &Plan, info: &InputInfo, layout: &OutputLayout, ui: &Ui) {
    if let Plan::Rewrite { .. } = plan {
        let _ = std::fs::remove_file(sibling(path, ".autolabel-tmp"));
        return;
    }
    let cut = match csvio::check_existing_output(path, info, layout) {
        Ok(Existing::Resume { rows, valid_len }) if rows > 0 || !matches!(plan, Plan::Fresh) => {
            OpenOptions::new()
                .write(true)
                .open(path)
                .and_then(|f| f.set_len(valid_len).and_then(|_| f.sync_all()))
        }
        _ if matches!(plan, Plan::Fresh) => std::fs::remove_file(path),
        _ => Ok(()),
    };
    if let Err(e) = cut {
        ui.error(&format!(
            "{}: could not cut back to its last complete row ({e}); the next run does it",
            path.display()
        ));
    }
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

/// The output's absolute path: how the state knows which rows of it fell back.
fn output_id(path: &Path) -> String {
    std::path::absolute(path)
        .unwrap_or_else(|_| path.to_path_buf())
        .display()
        .to_string()
}

/// An exclusive lock on `<output>.lock`, released when the process ends, however it ends.
///
/// The file is removed when the run ends, while the lock is still held. A second run may
/// have opened the file just before that: it then locks a file that no longer has a name,
/// while a third run creates and locks a new one. So a taker checks, once it holds the
/// lock, that the path still names the file it locked, and starts over if not.
struct OutputLock {
    path: PathBuf,
    _file: File,
}

/// How often a taker starts over because the file it locked had just been removed. Each
/// retry means another run released the lock in the meantime, so a few are plenty.
const LOCK_ATTEMPTS: u32 = 100;

impl OutputLock {
    fn take(output: &Path) -> Result<OutputLock> {
        let path = sibling(output, ".lock");
        for _ in 0..LOCK_ATTEMPTS {
            let file = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .map_err(|e| {
                    Error::io(
                        format!(
                            "{}: cannot create the lock file (the output's directory must be writable)",
                            path.display()
                        ),
                        e,
                    )
                })?;
            if let Some(lock) = Self::lock_if_current(file, &path, output)? {
                return Ok(lock);
            }
        }
        Err(Error::Runtime(format!(
            "{}: could not take the lock (it kept being replaced); try again",
            path.display()
        )))
    }

    /// Locks `file` (opened at `path`); `None` if `path` no longer names that file.
    fn lock_if_current(file: File, path: &Path, output: &Path) -> Result<Option<OutputLock>> {
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(Error::Runtime(format!(
                    "another autolabel run is writing {} (it holds {}); wait for it to finish",
                    output.display(),
                    path.display()
                )))
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(Error::io(format!("{}: cannot lock", path.display()), e))
            }
        }
        let locked = file
            .metadata()
            .map_err(|e| Error::io(format!("{}: cannot lock", path.display()), e))?;
        let current = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(format!("{}: cannot lock", path.display()), e)),
        };
        Ok(same_file(&locked, &current).then(|| OutputLock {
            path: path.to_path_buf(),
            _file: file,
        }))
    }
}

#[cfg(unix)]
fn same_file(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    (a.dev(), a.ino()) == (b.dev(), b.ino())
}

#[cfg(not(unix))]
fn same_file(_: &std::fs::Metadata, _: &std::fs::Metadata) -> bool {
    // Windows refuses to delete an open file, so a locked file keeps its name.
    true
}

impl Drop for OutputLock {
    fn drop(&mut self) {
        // Runs before `_file` closes: the file goes away while still locked, and a taker
        // that locks it afterwards sees that its name is gone (see `lock_if_current`).
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_file_removed_under_a_taker_is_not_a_lock() {
        let dir = tempfile::tempdir().unwrap();
        let output = dir.path().join("out.csv");
        let lock_path = sibling(&output, ".lock");
        let first = OutputLock::take(&output).unwrap();
        // A second run opens the lock file and is about to lock it...
        let opened_early = OpenOptions::new().write(true).open(&lock_path).unwrap();
        // ...when the first run ends and a third starts.
        drop(first);
        let third = OutputLock::take(&output).unwrap();
        // The second run's lock on the removed file must not count.
        assert!(
            OutputLock::lock_if_current(opened_early, &lock_path, &output)
                .unwrap()
                .is_none(),
            "locked a file that no longer has a name"
        );
        // And a taker that comes now is refused while the third run holds the lock.
        let err = OutputLock::take(&output).err().expect("must be refused");
        assert!(err.to_string().contains("another autolabel run"), "{err}");
        drop(third);
        assert!(!lock_path.exists(), "the lock file is removed at the end");
        drop(OutputLock::take(&output).unwrap());
    }
}
