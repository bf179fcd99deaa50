//! The output file's whole lifecycle, from before the first row to after the last:
//!
//! 1. the lock (`lock`): one run at a time writes an output;
//! 2. the plan: a fresh start, a resume after the rows already there, or a rewrite that
//!    labels again the rows an earlier run gave the fallback label;
//! 3. torn-row recovery (`resume`): an existing output must be this input's, and a last
//!    row torn by a crash is cut before appending;
//! 4. the writer, on the output itself or, for a rewrite, on a temporary file next to it;
//!    with `--overwrite` (`replace`), on a replacement next to it that is planned,
//!    resumed and rewritten as an output would be;
//! 5. the end: everything synced to disk, and the temporary file renamed over the output
//!    in one atomic step (or, after a failure, the output put back as a resume expects it);
//!    a replacement takes the output's place only once it is complete.
//!
//! Files that accompany the output (the review file to come) belong here too, written
//! at step 5 under the same lock, next to the output.
//!
//! `csvio` only reads and writes the records; the pipeline writes the rows in between.

mod lock;
mod replace;
pub mod resume;

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::csvio::{self, InputInfo, OutputLayout};
use crate::error::{Error, Result};
use crate::pipeline::feeder::Previous;
use crate::pipeline::{Finished, Writer};
use crate::store::State;
use crate::ui::Ui;
use lock::OutputLock;
use resume::Existing;

/// The suffix of a rewrite's temporary file, next to the output.
const TEMP_SUFFIX: &str = ".autolabel-tmp";

/// The output of this run: locked, checked, and planned.
pub struct Output {
    /// The output as the user named it (for messages).
    path: PathBuf,
    /// The file the plan works on: the output's real file (every link resolved), or with
    /// `--overwrite` its replacement `<output>.autolabel-new`, renamed over it once complete.
    target: PathBuf,
    /// With `--overwrite`: the output's real file that `target` replaces.
    replaces: Option<PathBuf>,
    /// How the state knows which rows of `target` fell back (the output's absolute path,
    /// with the replacement's suffix for a replacement).
    id: String,
    layout: OutputLayout,
    plan: Plan,
    /// The input's rows (up to `--limit`): a replacement holding them all is complete.
    rows: u64,
    /// An unfinished replacement that a run without `--overwrite` leaves alone.
    leftover: Option<PathBuf>,
    /// Held until the run ends; dropping it removes the lock file.
    _lock: OutputLock,
}

/// The file this run writes, opened, and what the pipeline needs to fill it.
pub struct Opened {
    pub writer: Writer,
    /// A rewrite's old output, read for the rows it keeps.
    pub previous: Option<Previous>,
    /// Input rows already in the output (a resume starts after them).
    pub skip: u64,
    /// Where this run's rows go: the output, or the temp file of a rewrite.
    pub path: PathBuf,
}

impl Output {
    /// Takes the lock, then checks what is there and decides how to go on: `overwrite`
    /// writes a replacement whatever is there (going on with one an interrupted
    /// `--overwrite` left), and the output stays as it is until the replacement is complete.
    pub fn prepare(
        path: &Path,
        overwrite: bool,
        info: &InputInfo,
        layout: OutputLayout,
        state: &State,
    ) -> Result<Output> {
        let real = crate::safefs::real_path(path);
        let lock = OutputLock::take(path, &real)?;
        let output = Output::plan(path, real, overwrite, info, layout, state, lock)?;
        if output.replaces.is_some() && output.done_already() {
            // Killed between its last row and the rename: the replacement is complete, and
            // this run goes on as one without --overwrite (re-labeling its fallback rows).
            output.replace(state)?;
            let Output {
                path,
                layout,
                _lock,
                ..
            } = output;
            let real = crate::safefs::real_path(&path);
            return Output::plan(&path, real, false, info, layout, state, _lock);
        }
        Ok(output)
    }

    /// Checks what is there, under the lock, and decides how to go on.
    fn plan(
        path: &Path,
        real: PathBuf,
        overwrite: bool,
        info: &InputInfo,
        layout: OutputLayout,
        state: &State,
        lock: OutputLock,
    ) -> Result<Output> {
        let new = sibling(&real, replace::NEW_SUFFIX);
        let out_id = output_id(path);
        let (target, id, existing) = if overwrite {
            let existing = replace::existing_replacement(&new, info, &layout)?;
            (new.clone(), replace::id(&out_id), existing)
        } else {
            let existing = resume::check_existing_output(&real, info, &layout)?;
            (real.clone(), out_id, existing)
        };
        let plan = plan_output(&existing, state, &id, info)?;
        Ok(Output {
            path: path.to_path_buf(),
            target,
            replaces: overwrite.then_some(real),
            id,
            layout,
            plan,
            rows: info.rows,
            leftover: (!overwrite && new.is_file()).then_some(new),
            _lock: lock,
        })
    }

    /// Says that an unfinished `--overwrite` of this output is left as it is.
    pub fn leftover_note(&self) -> Option<String> {
        self.leftover.as_ref().map(|new| {
            format!(
                "{} holds an unfinished --overwrite of {}: this run leaves it alone \
                 (run with --overwrite to finish it, or remove it)",
                new.display(),
                self.path.display()
            )
        })
    }

    /// Identifies the output in the state's fallback-row table.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Every row up to the input's end (or `--limit`) is in the output already.
    pub fn done_already(&self) -> bool {
        self.plan.done_already()
    }

    /// Fallback rows of the existing output past `--limit`: this run keeps them as they
    /// are, and says so.
    pub fn fallbacks_past_limit(&self) -> BTreeSet<u64> {
        self.plan.fallbacks_past_limit()
    }

    /// What the run says before it starts, when it goes on from an earlier one.
    pub fn start_note(&self, info: &InputInfo) -> Option<String> {
        match &self.plan {
            Plan::Append { rows, .. } if *rows > 0 && self.replaces.is_some() => Some(format!(
                "going on with the unfinished --overwrite of {} in {}: {rows} of {} labeled; \
                 {} stays as it is until every row is",
                self.path.display(),
                self.target.display(),
                crate::ui::count(info.rows, "row"),
                self.path.display()
            )),
            Plan::Append { rows, .. } if *rows > 0 => Some(format!(
                "resuming {}: {rows} of {} already labeled",
                self.path.display(),
                crate::ui::count(info.rows, "row")
            )),
            Plan::Rewrite { redo, .. } => Some(format!(
                "re-labeling {} that got the fallback label in an earlier run",
                crate::ui::count(redo.len() as u64, "row")
            )),
            _ => None,
        }
    }

    /// Opens the file the rows go to, as the plan says.
    pub fn open(&self, info: &InputInfo) -> Result<Opened> {
        let opened = open_output(
            &self.target,
            info,
            &self.layout,
            &self.plan,
            self.replaces.is_some(),
        )?;
        if self.replaces.is_none() {
            // An output this run just created is locked too, against a hard link made now.
            self._lock.lock_output(&self.path, &self.target)?;
        }
        Ok(opened)
    }

    /// Where this run's rows go: the target, or the temp file of a rewrite.
    fn written_path(&self) -> PathBuf {
        match self.plan {
            Plan::Rewrite { .. } => sibling(&self.target, TEMP_SUFFIX),
            _ => self.target.clone(),
        }
    }

    /// Makes what the pipeline wrote durable. A rewrite's file replaces the target if it
    /// holds every row; the state then records which rows still carry the fallback. A
    /// replacement (`--overwrite`) then replaces the output if the run ended well (exit 0
    /// or 3) with every row in it; else it stays for the same command to go on with.
    pub fn finish(&self, writer: Writer, finished: &Finished, state: &State) -> Result<()> {
        let (counts, state_lost) = (&finished.counts, finished.verdict.state_lost.is_some());
        let written_path = self.written_path();
        let cannot_write =
            |e: std::io::Error| Error::io(format!("{}: cannot write", written_path.display()), e);
        let file = writer
            .into_inner()
            .map_err(|e| cannot_write(e.into_error()))?
            .into_inner()
            .map_err(|e| cannot_write(e.into_error()))?;
        file.sync_all()
            .map_err(|e| Error::io(format!("{}: cannot sync", written_path.display()), e))?;
        if let Plan::Rewrite { old_rows, .. } = &self.plan {
            let temp = &written_path;
            // The new file is a valid output of this input as soon as it is at least as long
            // as the old one (even after Ctrl-C or a stop); a shorter one would lose rows.
            // Not when the state is unreachable: its fallback rows could not be recorded.
            if counts.written >= *old_rows && !state_lost {
                std::fs::rename(temp, &self.target).map_err(|e| {
                    Error::io(format!("{}: cannot replace", self.target.display()), e)
                })?;
                let mut still: BTreeSet<u64> = counts.fallback_rows.iter().copied().collect();
                still.extend(self.plan.fallbacks_past_limit());
                state.set_fallback_rows(&self.id, &still)?;
            } else {
                let _ = std::fs::remove_file(temp);
            }
        }
        let ended_well = finished.verdict.fatal.is_none()
            && !state_lost
            && counts.interrupted.is_none()
            && !counts.stopped;
        let rows = self.plan.skip() + counts.written;
        if ended_well && rows >= self.rows {
            self.replace(state)?;
        } else if rows == 0 && self.replaces.is_some() {
            // Nothing to go on with: no file left to explain.
            let _ = std::fs::remove_file(&self.target);
        }
        Ok(())
    }

    /// Renames a complete replacement over the output (nothing without `--overwrite`),
    /// and moves its fallback rows in the state to the output's name.
    fn replace(&self, state: &State) -> Result<()> {
        match &self.replaces {
            Some(real) => {
                replace::replace(&self.target, real, &self.id, &output_id(&self.path), state)
            }
            None => Ok(()),
        }
    }

    /// After a failed write: a rewrite's temp file goes; an output this run appended to (or
    /// created) is cut back to its last complete row, so it is again exactly what a resume
    /// expects (for a run that wrote nothing: byte for byte what was there before). An
    /// output this run created that holds no complete row is removed.
    pub fn recover(&self, info: &InputInfo, ui: &Ui) {
        let (path, plan) = (&self.target, &self.plan);
        if let Plan::Rewrite { .. } = plan {
            let _ = std::fs::remove_file(sibling(path, TEMP_SUFFIX));
            return;
        }
        let cut = match resume::check_existing_output(path, info, &self.layout) {
            Ok(Existing::Resume { rows, valid_len })
                if rows > 0 || !matches!(plan, Plan::Fresh) =>
            {
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

    /// Rows of the target the run starts after.
    fn skip(&self) -> u64 {
        match self {
            Plan::Append { rows, .. } => *rows,
            _ => 0,
        }
    }

    fn fallbacks_past_limit(&self) -> BTreeSet<u64> {
        match self {
            Plan::Fresh => BTreeSet::new(),
            Plan::Append { past_limit, .. } | Plan::Rewrite { past_limit, .. } => {
                past_limit.clone()
            }
        }
    }
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

fn open_output(
    path: &Path,
    info: &InputInfo,
    layout: &OutputLayout,
    plan: &Plan,
    replacement: bool,
) -> Result<Opened> {
    let io = |what: &str, e: std::io::Error| Error::io(format!("{}: {what}", path.display()), e);
    // A file of our own beside the output (a rewrite's, a replacement) is created anew
    // (`O_EXCL`); the output itself may be an empty file the user made.
    let fresh = |p: &Path, own: bool| -> Result<Writer> {
        let f = if own {
            crate::safefs::create_anew(p)?
        } else {
            create_fresh(p)?
        };
        let mut w = csvio::writer(BufWriter::with_capacity(64 * 1024, f), info.delimiter);
        w.write_record(&info.output_headers(layout))
            .and_then(|_| w.flush().map_err(csv::Error::from))
            .map_err(|e| {
                Error::Runtime(format!("{}: cannot write: {e}", p.display())).caused_by(e)
            })?;
        Ok(w)
    };
    let opened = |writer, previous, skip, path: &Path| Opened {
        writer,
        previous,
        skip,
        path: path.to_path_buf(),
    };
    Ok(match plan {
        Plan::Fresh => opened(fresh(path, replacement)?, None, 0, path),
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
            opened(w, None, *rows, path)
        }
        Plan::Rewrite { old_rows, redo, .. } => {
            let temp = sibling(path, TEMP_SUFFIX);
            let w = fresh(&temp, true)?;
            let previous = Previous {
                path: path.to_path_buf(),
                rows: *old_rows,
                redo: redo.clone(),
            };
            opened(w, Some(previous), 0, &temp)
        }
    })
}

/// Creates (truncating) a file this run writes rows to, never through a link planted at
/// its name (`O_NOFOLLOW`): a symlink there is refused, naming it.
fn create_fresh(p: &Path) -> Result<File> {
    crate::safefs::no_follow()
        .write(true)
        .create(true)
        .truncate(true)
        .open(p)
        .map_err(|e| crate::safefs::refused(p, "cannot create", e))
}

/// `path` with `suffix` added to its file name: the lock and temp files sit next to the
/// output, on the same file system (so the final rename is atomic).
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
