//! Reads the input on its own thread and hands rows to the collector through a bounded
//! channel, so a slow disk never stalls the request loop and memory stays flat.
//! When re-labeling fallback rows, it also reads the previous output in lockstep and
//! passes along the rows to keep.

use std::collections::BTreeSet;
use std::path::PathBuf;

use csv::StringRecord;
use tokio::sync::mpsc;

use super::cache_read::{CacheView, Cached};
use crate::csvio::{self, InputInfo};
use crate::error::{Error, Result};

pub struct Row {
    /// 0-based data row index in the input.
    pub idx: u64,
    pub record: StringRecord,
    /// The previous output's row, to write again unchanged.
    pub keep: Option<StringRecord>,
    /// What the label cache held for its text, read here when the run uses the cache
    /// (never for a kept row or an empty text).
    pub cached: Option<Cached>,
}

/// The previous output when it is being rewritten.
pub struct Previous {
    pub path: PathBuf,
    pub rows: u64,
    /// Rows (below `rows` and below the input's `--limit`) to label again.
    pub redo: BTreeSet<u64>,
}

/// How many rows the feeder hands on: the input's (up to `--limit`), and during a rewrite
/// also every further row of the previous output, kept as it is: a rewrite may never
/// make the output shorter.
pub fn rows_to_feed(info: &InputInfo, previous: Option<&Previous>) -> u64 {
    previous.map_or(info.rows, |p| p.rows.max(info.rows))
}

/// Of the rows fed from `skip` on, how many are kept as the previous output has them
/// (during a rewrite: every row below its end that is not to be labeled again).
pub fn rows_kept(info: &InputInfo, skip: u64, previous: Option<&Previous>) -> u64 {
    previous.map_or(0, |p| {
        let from = skip.min(p.rows);
        let redo = p.redo.range(from..p.rows.min(info.rows)).count() as u64;
        (p.rows - from).saturating_sub(redo)
    })
}

pub fn spawn(
    info: InputInfo,
    skip: u64,
    previous: Option<Previous>,
    cache: Option<CacheView>,
    tx: mpsc::Sender<Result<Row>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        if let Err(e) = feed(&info, skip, previous, cache.as_ref(), &tx) {
            let _ = tx.blocking_send(Err(e));
        }
    })
}

fn feed(
    info: &InputInfo,
    skip: u64,
    previous: Option<Previous>,
    cache: Option<&CacheView>,
    tx: &mpsc::Sender<Result<Row>>,
) -> Result<()> {
    let mut input = csvio::reader(&info.path, info.delimiter)?;
    let mut old = match &previous {
        Some(p) => Some(csvio::reader(&p.path, info.delimiter)?),
        None => None,
    };
    let end = rows_to_feed(info, previous.as_ref());
    let mut idx = 0u64;
    loop {
        if idx >= end {
            return Ok(());
        }
        let mut record = StringRecord::new();
        match input.read_record(&mut record) {
            Ok(true) => {}
            Ok(false) => return Ok(()),
            Err(e) => {
                return Err(csvio::describe_csv_error(
                    &info.path,
                    Some(&info.headers),
                    e,
                ))
            }
        }
        let mut keep = None;
        if let (Some(p), Some(r)) = (&previous, old.as_mut()) {
            if idx < p.rows {
                let mut o = StringRecord::new();
                if !r
                    .read_record(&mut o)
                    .map_err(|e| Error::Input(format!("{}: {e}", p.path.display())).caused_by(e))?
                {
                    return Err(Error::Input(format!(
                        "{}: ended before row {}",
                        p.path.display(),
                        idx + 1
                    )));
                }
                if idx >= info.rows || !p.redo.contains(&idx) {
                    keep = Some(o);
                }
            }
        }
        if idx < skip {
            idx += 1;
            continue;
        }
        let text = record.get(info.text_col).unwrap_or("");
        let cached = match cache {
            Some(view) if keep.is_none() && !text.trim().is_empty() => Some(view.lookup(text)),
            _ => None,
        };
        let row = Row {
            idx,
            record,
            keep,
            cached,
        };
        if tx.blocking_send(Ok(row)).is_err() {
            // The collector stopped (interrupt or stop): nothing more to read.
            return Ok(());
        }
        idx += 1;
    }
}
