//! `--review-output`: the rows a person should check, with all their columns, read back
//! from the finished output (so a resumed run's file holds every such row, not only the
//! last run's). Written to a temporary file beside it and renamed into place, never
//! through a link planted at either name.

use std::io::Write;
use std::path::{Path, PathBuf};

use csv::StringRecord;

use crate::columns::same_name;
use crate::csvio;
use crate::error::{Error, Result};

/// Which rows of the output are to review: by the status column when there is one, else
/// by the confidence column.
pub struct Selection<'a> {
    pub status_column: Option<&'a str>,
    pub confidence_column: Option<&'a str>,
    pub below: f64,
}

impl Selection<'_> {
    fn column(&self, headers: &StringRecord) -> Option<(usize, bool)> {
        let find = |name: &str| headers.iter().position(|h| same_name(h, name));
        if let Some(i) = self.status_column.and_then(find) {
            return Some((i, true));
        }
        self.confidence_column.and_then(find).map(|i| (i, false))
    }
}

/// Writes the output's rows to review to `path`; how many there were.
pub fn write(output: &Path, delimiter: u8, path: &Path, sel: &Selection) -> Result<u64> {
    let mut reader = csvio::reader(output, delimiter)?;
    let headers = reader
        .headers()
        .map_err(|e| csvio::describe_csv_error(output, None, e))?
        .clone();
    let (col, by_status) = sel.column(&headers).ok_or_else(|| {
        Error::Runtime(format!(
            "{}: has neither the status nor the confidence column to pick the rows to review from",
            output.display()
        ))
    })?;
    let tmp = sibling(path, ".autolabel-tmp");
    if std::fs::symlink_metadata(&tmp).is_ok_and(|m| m.is_file()) {
        // Left by a run that was killed while writing it.
        let _ = std::fs::remove_file(&tmp);
    }
    let file = crate::safefs::create_new(&tmp)?;
    let cannot = |e: csv::Error| {
        let _ = std::fs::remove_file(&tmp);
        Error::Runtime(format!("{}: cannot write: {e}", path.display())).caused_by(e)
    };
    let mut w = csvio::writer(std::io::BufWriter::new(file), delimiter);
    w.write_record(&headers).map_err(cannot)?;
    let mut rows = 0u64;
    let mut rec = StringRecord::new();
    while reader
        .read_record(&mut rec)
        .map_err(|e| csvio::describe_csv_error(output, Some(&headers), e))?
    {
        let cell = rec.get(col).unwrap_or("").trim();
        let review = if by_status {
            cell == crate::pipeline::RowStatus::Review.as_str()
        } else {
            cell.parse::<f64>().is_ok_and(|c| c < sel.below - 1e-9)
        };
        if review {
            w.write_record(&rec).map_err(cannot)?;
            rows += 1;
        }
    }
    let mut inner = w
        .into_inner()
        .map_err(|e| cannot(csv::Error::from(e.into_error())))?;
    inner
        .flush()
        .and_then(|_| inner.get_ref().sync_all())
        .map_err(|e| cannot(csv::Error::from(e)))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(format!("{}: cannot write", path.display()), e)
    })?;
    Ok(rows)
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_under_review_are_copied_whole_by_status_or_confidence() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out.csv");
        std::fs::write(
            &out,
            "text,label,status,conf\na,positif,model,1.000\nb,netral,review,0.400\nc,negatif,cached,0.600\n",
        )
        .unwrap();
        let review = dir.path().join("review.csv");
        let sel = Selection {
            status_column: Some("status"),
            confidence_column: Some("conf"),
            below: 0.6,
        };
        assert_eq!(write(&out, b',', &review, &sel).unwrap(), 1);
        let got = std::fs::read_to_string(&review).unwrap();
        assert_eq!(got, "text,label,status,conf\nb,netral,review,0.400\n");
        let sel = Selection {
            status_column: None,
            confidence_column: Some("conf"),
            below: 0.7,
        };
        assert_eq!(write(&out, b',', &review, &sel).unwrap(), 2);
        assert!(!dir.path().join("review.csv.autolabel-tmp").exists());
    }
}
