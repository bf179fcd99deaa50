//! `--errors FILE`: the rows where the gold and the predicted label disagree, with all
//! their columns and the two labels as `eval` read them, most confident first (a
//! confident disagreement is the likeliest gold error).
//!
//! The file is never the input, and it is written beside its place and renamed over it:
//! a reader never sees half of it, and a link planted at the temporary name is refused.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::columns::same_name;
use crate::csvio;
use crate::error::{Error, Result};
use crate::safefs;

use super::read::{Row, Table};

/// Writes the disagreeing rows of `table` to `path`; returns how many.
pub fn write(table: &Table, path: &Path) -> Result<usize> {
    safefs::refuse_input(&table.path, path, "--errors")?;
    let rows = sorted(&table.rows);
    let tmp = temporary(path);
    let what = || format!("--errors {}", path.display());
    let file = safefs::create_new(&tmp)?;
    let result = (|| -> Result<()> {
        let mut w = csvio::writer(std::io::BufWriter::new(file), table.delimiter);
        let csv_err = |e: csv::Error| Error::Runtime(format!("{}: {e}", what())).caused_by(e);
        let mut header = table.headers.clone();
        header.push_field(&added_name(&table.headers, "gold"));
        header.push_field(&added_name(&table.headers, "predicted"));
        w.write_record(&header).map_err(csv_err)?;
        for row in &rows {
            let mut rec = row.record.clone().unwrap_or_default();
            rec.push_field(&table.classes[row.gold]);
            rec.push_field(&table.classes[row.predicted]);
            w.write_record(&rec).map_err(csv_err)?;
        }
        let mut inner = w
            .into_inner()
            .map_err(|e| Error::io(what(), e.into_error()))?;
        inner.flush().map_err(|e| Error::io(what(), e))?;
        inner
            .get_ref()
            .sync_all()
            .map_err(|e| Error::io(what(), e))?;
        std::fs::rename(&tmp, path).map_err(|e| Error::io(what(), e))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map(|_| rows.len())
}

/// The disagreeing rows, by confidence (highest first, rows without one last), in
/// input order otherwise.
fn sorted(rows: &[Row]) -> Vec<&Row> {
    let mut wrong: Vec<&Row> = rows.iter().filter(|r| r.gold != r.predicted).collect();
    wrong.sort_by(|a, b| {
        let key = |r: &Row| r.confidence.unwrap_or(f64::NEG_INFINITY);
        key(b).total_cmp(&key(a))
    });
    wrong
}

/// `name`, or `eval_name` (`eval_eval_name`…) when the input has a column so named.
fn added_name(headers: &csv::StringRecord, name: &str) -> String {
    let mut n = name.to_string();
    while headers.iter().any(|h| same_name(h, &n)) {
        n = format!("eval_{n}");
    }
    n
}

/// The temporary file beside `path`, unique to this process.
fn temporary(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".autolabel-tmp-{}", std::process::id()));
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn added_names_never_repeat_a_column() {
        let h = csv::StringRecord::from(vec!["text", "Gold", "eval_gold"]);
        assert_eq!(added_name(&h, "gold"), "eval_eval_gold");
        assert_eq!(added_name(&h, "predicted"), "predicted");
    }
}
