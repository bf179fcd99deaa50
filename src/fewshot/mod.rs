//! Few-shot examples (`--examples FILE`): texts with their labels that go in the prompt
//! so the model sees what each label means on this data. `load` reads and checks the
//! file; `select` picks the examples of each request; `bm25` measures which examples are
//! close to a request's texts.
//!
//! An example that is also a row of the input would be labeled from its own answer:
//! `overlap` finds such rows, which a normal run warns about and `eval` refuses.

pub mod bm25;
pub mod select;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use csv::StringRecord;

use crate::columns::{same_name, TEXT_COLUMNS};
use crate::csvio;
use crate::error::{Error, Result};
use crate::normalize::LabelSet;

pub use select::{Selection, Shots};

/// One example: its text and the index of its label in `--labels`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Example {
    pub text: String,
    pub label: usize,
}

/// The examples of a file, in file order.
#[derive(Debug, Clone)]
pub struct Examples {
    pub path: PathBuf,
    pub items: Vec<Example>,
}

/// Reads the examples: the text column found as the input's is (`--text-column`, else
/// the first of the usual names), the label column named as the output's
/// (`--label-column`, else `label`). Every label must be one of `labels`; an empty file, an empty text
/// or a missing column is exit 2 naming the file (and the row or column).
pub fn load(
    path: &Path,
    text_column: Option<&str>,
    label_column: &str,
    labels: &LabelSet,
) -> Result<Examples> {
    let p = path.display();
    let (mut rdr, headers, _) = csvio::open_with_headers(path)?;
    let (text_at, label_at) = columns(path, &headers, text_column, label_column)?;
    let mut items = Vec::new();
    let mut rec = StringRecord::new();
    for row in 1u64.. {
        match rdr.read_record(&mut rec) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => return Err(csvio::describe_csv_error(path, Some(&headers), e)),
        }
        let text = rec.get(text_at).unwrap_or("").trim();
        let label = rec.get(label_at).unwrap_or("").trim();
        if text.is_empty() {
            return Err(Error::Input(format!(
                "{p}: row {row} has an empty text in '{}'; an example needs one",
                &headers[text_at]
            )));
        }
        let Some(label) = labels
            .labels()
            .iter()
            .position(|l| l.eq_ignore_ascii_case(label))
        else {
            return Err(Error::Input(format!(
                "{p}: row {row}: the label '{label}' in '{}' is not one of --labels ({}); \
                 fix the example or add the label",
                &headers[label_at],
                labels.labels().join(", ")
            )));
        };
        items.push(Example {
            text: text.to_string(),
            label,
        });
    }
    if items.is_empty() {
        return Err(Error::Input(format!(
            "{p}: has no examples (no data rows under the header); --examples needs at least one"
        )));
    }
    Ok(Examples {
        path: path.to_path_buf(),
        items,
    })
}

/// The text and label columns of the examples file.
fn columns(
    path: &Path,
    headers: &StringRecord,
    text_column: Option<&str>,
    label_column: &str,
) -> Result<(usize, usize)> {
    let find = |name: &str| headers.iter().position(|h| same_name(h, name));
    let listing = headers.iter().collect::<Vec<_>>().join(", ");
    if headers.iter().all(|h| h.trim().is_empty()) {
        return Err(Error::Input(format!(
            "{}: is empty (no header row); --examples needs a CSV with a text and a label column",
            path.display()
        )));
    }
    let text = text_column_of(path, headers, text_column)?;
    // The output's label column name, or `label`: an input that already has a `label`
    // column (a gold set) is labeled into another, and its examples keep theirs.
    let label = find(label_column)
        .or_else(|| find("label"))
        .ok_or_else(|| {
            Error::Input(format!(
                "{}: no column '{label_column}' for the examples' labels (columns: {listing}); \
             pass --label-column with the one that holds them",
                path.display()
            ))
        })?;
    Ok((text, label))
}

/// The text column: `--text-column`, else the first of the usual names.
pub fn text_column_of(
    path: &Path,
    headers: &StringRecord,
    text_column: Option<&str>,
) -> Result<usize> {
    let find = |name: &str| headers.iter().position(|h| same_name(h, name));
    match text_column {
        Some(name) => find(name),
        None => TEXT_COLUMNS.iter().find_map(|c| find(c)),
    }
    .ok_or_else(|| {
        let listing = headers.iter().collect::<Vec<_>>().join(", ");
        Error::Input(format!(
            "{}: no text column (columns: {listing}); name it {} or pass --text-column",
            path.display(),
            text_column.unwrap_or("text")
        ))
    })
}

/// A row of the input whose text is also an example's: the row's number (1 = the first
/// row under the header) and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overlap {
    pub row: u64,
    pub text: String,
}

impl Examples {
    /// The rows of `input` (its text in column `text_col`) whose text, trimmed, is an
    /// example's.
    pub fn overlap(&self, input: &Path, delimiter: u8, text_col: usize) -> Result<Vec<Overlap>> {
        let texts: HashSet<&str> = self.items.iter().map(|e| e.text.as_str()).collect();
        overlap(&texts, input, delimiter, text_col)
    }

    /// For `eval` and `tune`, where an example among the rows would inflate the score:
    /// exit 2 naming the first such row.
    pub fn refuse_overlap(&self, input: &Path, delimiter: u8, text_col: usize) -> Result<()> {
        let found = self.overlap(input, delimiter, text_col)?;
        match found.first() {
            None => Ok(()),
            Some(first) => Err(Error::Input(overlap_message(
                &self.path, input, &found, first,
            ))),
        }
    }
}

/// The rows of `input` whose text (column `text_col`, trimmed) is one of `texts`.
pub fn overlap(
    texts: &HashSet<&str>,
    input: &Path,
    delimiter: u8,
    text_col: usize,
) -> Result<Vec<Overlap>> {
    let mut rdr = csvio::reader(input, delimiter)?;
    let mut rec = StringRecord::new();
    let mut found = Vec::new();
    for row in 1u64.. {
        match rdr.read_record(&mut rec) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => return Err(csvio::describe_csv_error(input, None, e)),
        }
        let text = rec.get(text_col).unwrap_or("").trim();
        if texts.contains(text) {
            found.push(Overlap {
                row,
                text: text.to_string(),
            });
        }
    }
    Ok(found)
}

/// The texts of an examples file (its text column found as the input's), whatever its
/// labels: what `eval` compares its rows with.
pub fn texts(path: &Path, text_column: Option<&str>) -> Result<Vec<String>> {
    let (mut rdr, headers, _) = csvio::open_with_headers(path)?;
    let at = text_column_of(path, &headers, text_column)?;
    let mut texts = Vec::new();
    for rec in rdr.records() {
        let rec = rec.map_err(|e| csvio::describe_csv_error(path, Some(&headers), e))?;
        let text = rec.get(at).unwrap_or("").trim();
        if !text.is_empty() {
            texts.push(text.to_string());
        }
    }
    Ok(texts)
}

/// "in.csv: row 4 ('enak sekali') is also an example in ex.csv (and 2 more rows)".
pub fn overlap_message(
    examples: &Path,
    input: &Path,
    found: &[Overlap],
    first: &Overlap,
) -> String {
    let more = match found.len() {
        1 => String::new(),
        2 => " (and 1 more row)".to_string(),
        n => format!(" (and {} more rows)", n - 1),
    };
    let shown: String = first.text.chars().take(60).collect();
    format!(
        "{}: row {} ('{shown}') is also an example in {}{more}; a row labeled with its own \
         answer in the prompt scores too well: remove it from one of the files",
        input.display(),
        first.row,
        examples.display()
    )
}

#[cfg(test)]
mod tests;
