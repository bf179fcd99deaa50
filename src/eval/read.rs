//! Reads the labeled CSV `eval` measures: finds the gold, label, status and confidence
//! columns, decides which rows count, and turns labels into classes. The file is only
//! read.
//!
//! Labels are compared trimmed and without regard to ASCII case, so a gold "Positif"
//! is the class of a predicted "positif" (shown as the label column spells it). A gold
//! label no row was predicted as is a class of its own, listed after the predicted ones.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use csv::StringRecord;

use crate::columns::same_name;
use crate::csvio;
use crate::error::{Error, Result};

/// The status autolabel writes for a row that got the fallback label.
const FALLBACK_STATUS: &str = "fallback";
/// Columns looked for when no flag names them.
const STATUS_COLUMN: &str = "status";
const CONFIDENCE_COLUMN: &str = "confidence";

/// Which columns to read, as the flags name them.
pub struct Spec<'a> {
    pub gold_column: &'a str,
    pub label_column: &'a str,
    pub status_column: Option<&'a str>,
    pub confidence_column: Option<&'a str>,
    /// Keep the full record of rows whose labels disagree (for `--errors`).
    pub keep_disagreeing: bool,
}

/// One row that counts.
#[derive(Debug, Clone)]
pub struct Row {
    /// 1 for the first row under the header.
    pub number: u64,
    pub gold: usize,
    pub predicted: usize,
    pub confidence: Option<f64>,
    /// The whole row, kept for disagreeing rows when asked.
    pub record: Option<StringRecord>,
}

/// The rows that count, their classes, and the rows left out and why.
#[derive(Debug)]
pub struct Table {
    pub path: PathBuf,
    pub delimiter: u8,
    pub headers: StringRecord,
    pub gold_column: String,
    pub label_column: String,
    /// The status column read, if any.
    pub status_column: Option<String>,
    /// The confidence column read, if any.
    pub confidence_column: Option<String>,
    /// Class names: the predicted labels (sorted), then gold-only labels (sorted).
    pub classes: Vec<String>,
    /// How many of `classes` were predicted; the rest occur only as gold.
    pub predicted_classes: usize,
    pub rows: Vec<Row>,
    pub skipped_no_gold: u64,
    /// Rows whose label cell is empty (a file not fully labeled).
    pub skipped_no_label: u64,
    pub fallback: u64,
}

impl Table {
    pub fn pairs(&self) -> Vec<(usize, usize)> {
        self.rows.iter().map(|r| (r.gold, r.predicted)).collect()
    }
}

/// Positions of the columns read.
struct At {
    gold: usize,
    label: usize,
    status: Option<usize>,
    confidence: Option<usize>,
}

pub fn read(path: &Path, spec: &Spec) -> Result<Table> {
    let (mut rdr, headers, delimiter) = csvio::open_with_headers(path)?;
    let at = locate(path, &headers, spec)?;
    let mut classes = Classes::default();
    let mut table = Table {
        path: path.to_path_buf(),
        delimiter,
        gold_column: headers[at.gold].to_string(),
        label_column: headers[at.label].to_string(),
        status_column: at.status.map(|i| headers[i].to_string()),
        confidence_column: at.confidence.map(|i| headers[i].to_string()),
        headers,
        classes: Vec::new(),
        predicted_classes: 0,
        rows: Vec::new(),
        skipped_no_gold: 0,
        skipped_no_label: 0,
        fallback: 0,
    };
    let mut rec = StringRecord::new();
    let mut number = 0u64;
    loop {
        match rdr.read_record(&mut rec) {
            Ok(true) => number += 1,
            Ok(false) => break,
            Err(e) => return Err(csvio::describe_csv_error(path, Some(&table.headers), e)),
        }
        let row = take_row(&mut table, &at, &rec, number, spec, &mut classes)?;
        table.rows.extend(row);
    }
    classes.order(&mut table);
    Ok(table)
}

/// The row as it counts, or `None` (counted) when it is left out.
fn take_row(
    table: &mut Table,
    at: &At,
    rec: &StringRecord,
    number: u64,
    spec: &Spec,
    classes: &mut Classes,
) -> Result<Option<Row>> {
    let cell = |i: usize| rec.get(i).unwrap_or("").trim();
    if cell(at.gold).is_empty() {
        table.skipped_no_gold += 1;
        return Ok(None);
    }
    if at
        .status
        .is_some_and(|s| cell(s).eq_ignore_ascii_case(FALLBACK_STATUS))
    {
        table.fallback += 1;
        return Ok(None);
    }
    if cell(at.label).is_empty() {
        table.skipped_no_label += 1;
        return Ok(None);
    }
    let confidence = match at.confidence {
        Some(c) => confidence(table, rec, c, number)?,
        None => None,
    };
    let predicted = classes.of(cell(at.label), true);
    let gold = classes.of(cell(at.gold), false);
    let record = (spec.keep_disagreeing && gold != predicted).then(|| rec.clone());
    Ok(Some(Row {
        number,
        gold,
        predicted,
        confidence,
        record,
    }))
}

/// The confidence cell: empty is none; anything else must be a number from 0 to 1.
fn confidence(table: &Table, rec: &StringRecord, col: usize, number: u64) -> Result<Option<f64>> {
    let raw = rec.get(col).unwrap_or("").trim();
    if raw.is_empty() {
        return Ok(None);
    }
    match raw.parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(Some(v)),
        _ => Err(Error::Input(format!(
            "{}: row {number}, column '{}': '{raw}' is not a confidence from 0 to 1; \
             pass --confidence-column with the column that holds them",
            table.path.display(),
            &table.headers[col]
        ))),
    }
}

/// Finds the columns: the gold and label columns must be there, once each; the status
/// and confidence columns must be there when a flag names them.
fn locate(path: &Path, headers: &StringRecord, spec: &Spec) -> Result<At> {
    let gold = required(path, headers, spec.gold_column, "--gold-column")?;
    let label = required(path, headers, spec.label_column, "--label-column")?;
    if gold == label {
        return Err(Error::Usage(format!(
            "--gold-column '{}' and --label-column '{}' are the same column; the gold labels \
             must be in a column of their own",
            spec.gold_column, spec.label_column
        )));
    }
    let optional = |flag: &str, named: Option<&str>, default: &str| -> Result<Option<usize>> {
        match named {
            Some(name) => required(path, headers, name, flag).map(Some),
            None => Ok(headers.iter().position(|h| same_name(h, default))),
        }
    };
    Ok(At {
        gold,
        label,
        status: optional("--status-column", spec.status_column, STATUS_COLUMN)?,
        confidence: optional(
            "--confidence-column",
            spec.confidence_column,
            CONFIDENCE_COLUMN,
        )?,
    })
}

/// The one column named `name`; exit 2 naming the file, the column and the flag.
fn required(path: &Path, headers: &StringRecord, name: &str, flag: &str) -> Result<usize> {
    let at: Vec<usize> = (0..headers.len())
        .filter(|&i| same_name(&headers[i], name))
        .collect();
    let listing = headers.iter().collect::<Vec<_>>().join(", ");
    match at.as_slice() {
        [i] => Ok(*i),
        [] => Err(Error::Input(format!(
            "{}: no column '{name}' (columns: {listing}); pass {flag} with one of them",
            path.display()
        ))),
        _ => Err(Error::Input(format!(
            "{}: {} columns are named '{name}' ({flag}); rename the copies",
            path.display(),
            at.len()
        ))),
    }
}

/// Labels seen so far, each a class, keyed by its trimmed lowercase form.
#[derive(Default)]
struct Classes {
    index: HashMap<String, usize>,
    names: Vec<String>,
    predicted: Vec<bool>,
}

impl Classes {
    /// The class of `label`; a predicted label's spelling names the class.
    fn of(&mut self, label: &str, predicted: bool) -> usize {
        let key = label.to_lowercase();
        let i = *self.index.entry(key).or_insert_with(|| {
            self.names.push(label.to_string());
            self.predicted.push(false);
            self.names.len() - 1
        });
        if predicted && !self.predicted[i] {
            self.predicted[i] = true;
            self.names[i] = label.to_string();
        }
        i
    }

    /// Puts the classes in their reported order and renumbers the rows.
    fn order(self, table: &mut Table) {
        let mut order: Vec<usize> = (0..self.names.len()).collect();
        order.sort_by(|&a, &b| {
            (!self.predicted[a], &self.names[a]).cmp(&(!self.predicted[b], &self.names[b]))
        });
        let mut new_index = vec![0; order.len()];
        for (new, &old) in order.iter().enumerate() {
            new_index[old] = new;
        }
        for row in &mut table.rows {
            row.gold = new_index[row.gold];
            row.predicted = new_index[row.predicted];
        }
        table.predicted_classes = self.predicted.iter().filter(|p| **p).count();
        table.classes = order.into_iter().map(|i| self.names[i].clone()).collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec<'a>() -> Spec<'a> {
        Spec {
            gold_column: "gold",
            label_column: "label",
            status_column: None,
            confidence_column: None,
            keep_disagreeing: true,
        }
    }

    fn table(content: &str, spec: &Spec) -> Result<Table> {
        let f = crate::csvio::tests::file(content.as_bytes());
        read(f.path(), spec)
    }

    #[test]
    fn rows_without_gold_and_fallback_rows_are_counted_and_left_out() {
        let t = table(
            "text,gold,label,status\n\
             a,Positif,positif,model\n\
             b,,negatif,model\n\
             c,negatif,netral,fallback\n\
             d,sarkas,negatif,cached\n\
             e,negatif,,model\n",
            &spec(),
        )
        .unwrap();
        assert_eq!(
            (t.skipped_no_gold, t.fallback, t.skipped_no_label),
            (1, 1, 1)
        );
        assert_eq!(t.classes, ["negatif", "positif", "sarkas"]);
        assert_eq!(t.predicted_classes, 2);
        let pairs = t.pairs();
        assert_eq!(pairs, [(1, 1), (2, 0)]);
        assert_eq!(t.rows[1].number, 4);
        assert!(t.rows[0].record.is_none());
        assert_eq!(&t.rows[1].record.as_ref().unwrap()[0], "d");
    }

    #[test]
    fn missing_columns_and_bad_confidences_name_file_and_column() {
        let err = table("text,label\na,b\n", &spec()).unwrap_err().to_string();
        assert!(
            err.contains("no column 'gold'") && err.contains("--gold-column"),
            "{err}"
        );
        assert!(err.contains("columns: text, label"), "{err}");
        let s = Spec {
            status_column: Some("state"),
            ..spec()
        };
        let err = table("gold,label\na,b\n", &s).unwrap_err().to_string();
        assert!(
            err.contains("'state'") && err.contains("--status-column"),
            "{err}"
        );
        let err = table("gold,label,confidence\na,a,high\n", &spec())
            .unwrap_err()
            .to_string();
        assert!(err.contains("row 1") && err.contains("'high'"), "{err}");
        let same = Spec {
            gold_column: "Label",
            ..spec()
        };
        assert!(table("gold,label\na,b\n", &same).is_err());
    }
}
