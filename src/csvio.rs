//! Every CSV reader and writer is built here, so the dialect cannot diverge between the
//! input, the output and the resume check. Records are read one at a time into a reused
//! buffer: memory stays flat whatever the file size.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use csv::{ReaderBuilder, StringRecord};

use crate::columns;
use crate::csvscan;
use crate::error::{Error, Result};

pub use crate::columns::TEXT_COLUMNS;

/// What the input looks like, learned in one validating pass before any request.
#[derive(Debug, Clone)]
pub struct InputInfo {
    pub path: PathBuf,
    pub delimiter: u8,
    pub headers: StringRecord,
    pub text_col: usize,
    /// Set when the input already has the label column and `--replace-label-column` was given.
    pub replace_col: Option<usize>,
    pub rows: u64,
    pub empty_rows: u64,
    /// Bytes of all non-empty texts: their average sizes batches and token estimates.
    pub text_bytes: u64,
}

impl InputInfo {
    /// Average bytes of a non-empty text (0 when there is none).
    pub fn average_text_bytes(&self) -> f64 {
        let texts = self.rows - self.empty_rows;
        if texts == 0 {
            0.0
        } else {
            self.text_bytes as f64 / texts as f64
        }
    }
}

pub struct OutputLayout {
    pub label_column: String,
    pub status_column: Option<String>,
    /// Each row's provider/model, after the status column.
    pub model_column: Option<String>,
    /// The winner's share of the votes, then the votes (`--votes`), after the model column.
    pub confidence_column: Option<String>,
    pub votes_column: Option<String>,
}

impl InputInfo {
    /// Refuses a layout whose added columns repeat a name (an input column's or one
    /// another flag adds): the output would have two columns of one name.
    pub fn check_layout(&self, layout: &OutputLayout) -> Result<()> {
        let mut added = Vec::new();
        if self.replace_col.is_none() {
            added.push(("--label-column", layout.label_column.as_str()));
        }
        if let Some(s) = &layout.status_column {
            added.push(("--status-column", s.as_str()));
        }
        if let Some(m) = &layout.model_column {
            added.push(("--model-column", m.as_str()));
        }
        if let Some(c) = &layout.confidence_column {
            added.push(("--confidence-column", c.as_str()));
        }
        if let Some(v) = &layout.votes_column {
            added.push(("--votes-column", v.as_str()));
        }
        columns::check_added(&self.path, &self.headers, &added)
    }

    pub fn output_headers(&self, layout: &OutputLayout) -> StringRecord {
        let mut h = self.headers.clone();
        if self.replace_col.is_none() {
            h.push_field(&layout.label_column);
        }
        if let Some(s) = &layout.status_column {
            h.push_field(s);
        }
        let added = [
            &layout.model_column,
            &layout.confidence_column,
            &layout.votes_column,
        ];
        for name in added.into_iter().flatten() {
            h.push_field(name);
        }
        h
    }

    /// The output row: input values unchanged, then label (and the status, model,
    /// confidence and votes fields, in the order of the layout's columns).
    pub fn output_record<'a>(
        &self,
        input: &StringRecord,
        label: &str,
        tail: impl IntoIterator<Item = &'a str>,
        out: &mut StringRecord,
    ) {
        out.clear();
        for (i, field) in input.iter().enumerate() {
            out.push_field(if Some(i) == self.replace_col {
                label
            } else {
                field
            });
        }
        if self.replace_col.is_none() {
            out.push_field(label);
        }
        for field in tail {
            out.push_field(field);
        }
    }

    /// Whether output row `out` carries input row `input` unchanged.
    pub fn same_row(&self, input: &StringRecord, out: &StringRecord) -> bool {
        if out.len() < input.len() {
            return false;
        }
        input
            .iter()
            .zip(out.iter())
            .enumerate()
            .all(|(i, (a, b))| Some(i) == self.replace_col || a == b)
    }

    /// Where the label sits in an output row.
    pub fn label_index(&self) -> usize {
        self.replace_col.unwrap_or(self.headers.len())
    }
}

/// Picks `,` `;` tab or `|` by counting them (outside quotes) in the header line.
pub fn sniff_delimiter(path: &Path) -> Result<u8> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut f = File::open(path).map_err(|e| input_error(path, e))?;
    let n = f.read(&mut buf).map_err(|e| input_error(path, e))?;
    let head = &buf[..n];
    let head = head.strip_prefix(b"\xef\xbb\xbf").unwrap_or(head);
    let mut counts = [0usize; 4];
    let candidates = [b',', b';', b'\t', b'|'];
    let mut in_quotes = false;
    for &b in head {
        match b {
            b'"' => in_quotes = !in_quotes,
            b'\n' if !in_quotes => break,
            _ if !in_quotes => {
                if let Some(i) = candidates.iter().position(|c| *c == b) {
                    counts[i] += 1;
                }
            }
            _ => {}
        }
    }
    let best = (0..4).max_by_key(|&i| (counts[i], 4 - i)).unwrap();
    Ok(if counts[best] == 0 {
        b','
    } else {
        candidates[best]
    })
}

pub fn input_error(path: &Path, e: std::io::Error) -> Error {
    Error::Input(format!("{}: cannot read: {e}", path.display())).caused_by(e)
}

pub fn reader(path: &Path, delimiter: u8) -> Result<csv::Reader<BufReader<File>>> {
    let file = File::open(path).map_err(|e| input_error(path, e))?;
    Ok(ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(true)
        .flexible(false)
        .from_reader(BufReader::with_capacity(256 * 1024, file)))
}

/// A CSV file read as the input is: its delimiter sniffed, then a reader past the header
/// row, the headers, and the delimiter (for writing rows back in the same dialect).
pub fn open_with_headers(path: &Path) -> Result<(csv::Reader<BufReader<File>>, StringRecord, u8)> {
    let delimiter = sniff_delimiter(path)?;
    let mut rdr = reader(path, delimiter)?;
    let headers = rdr
        .headers()
        .map_err(|e| describe_csv_error(path, None, e))?
        .clone();
    Ok((rdr, headers, delimiter))
}

pub fn writer<W: std::io::Write>(w: W, delimiter: u8) -> csv::Writer<W> {
    csv::WriterBuilder::new()
        .delimiter(delimiter)
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(w)
}

/// Explains a csv error with the file, row and column, as users need to fix it.
pub fn describe_csv_error(path: &Path, headers: Option<&StringRecord>, e: csv::Error) -> Error {
    let p = path.display();
    let msg = match e.kind() {
        csv::ErrorKind::UnequalLengths {
            pos,
            expected_len,
            len,
        } => {
            let (row, line) = pos
                .as_ref()
                .map(|p| (p.record(), p.line()))
                .unwrap_or((0, 0));
            format!(
                "{p}: row {row} (line {line}) has {len} fields but the header has {expected_len}; \
                 check for an unquoted delimiter or a missing quote in that row"
            )
        }
        csv::ErrorKind::Utf8 { pos, err } => {
            let col = err.field();
            let name = headers
                .and_then(|h| h.get(col))
                .map(|n| format!(" ('{n}')"))
                .unwrap_or_default();
            let (row, line) = pos
                .as_ref()
                .map(|p| (p.record(), p.line()))
                .unwrap_or((0, 0));
            format!(
                "{p}: row {row} (line {line}), column {}{name} is not valid UTF-8; save the file as UTF-8",
                col + 1
            )
        }
        _ => format!("{p}: {e}"),
    };
    Error::Input(msg).caused_by(e)
}

/// Explains what the byte-level scan found, with the file, row, line and column.
fn describe_scan_problem(path: &Path, delimiter: u8, f: &csvscan::Found) -> Error {
    let p = path.display();
    // The header names the column; read it only when the problem is further down (the
    // header itself may be the huge or broken part).
    let name = (f.row > 0)
        .then(|| {
            reader(path, delimiter)
                .ok()?
                .headers()
                .ok()?
                .get(f.column)
                .map(str::to_string)
        })
        .flatten()
        .map(|n| format!(" ('{n}')"))
        .unwrap_or_default();
    let place = if f.row == 0 {
        format!(
            "{p}: the header row (line {}), column {}{name}",
            f.line,
            f.column + 1
        )
    } else {
        format!(
            "{p}: row {} (line {}), column {}{name}",
            f.row,
            f.line,
            f.column + 1
        )
    };
    let msg = match f.problem {
        csvscan::Problem::Nul => format!(
            "{place} contains a NUL byte: this is not a text CSV (a UTF-16 file? save it as UTF-8)"
        ),
        csvscan::Problem::FieldTooLarge => {
            let quote = f
                .quote_line
                .map(|l| format!("; if the quote opened on line {l} was meant to close earlier, close it there"))
                .unwrap_or_default();
            format!(
                "{place} is over {} bytes: too long for a text to label{quote}",
                csvscan::MAX_FIELD_BYTES
            )
        }
        csvscan::Problem::UnclosedQuote => format!(
            "{place} opens a quote that is never closed (the file ends inside it); close it, or double a quote meant literally (\"\")"
        ),
    };
    Error::Input(msg)
}

/// The input is read twice (checked, then labeled) and again on every resume, so it must
/// be a file that reads the same each time: not stdin, a pipe or a device.
fn require_regular_file(path: &Path) -> Result<()> {
    let p = path.display();
    let needs = "needs a regular file (it is read twice and resumed)";
    if path.as_os_str() == "-" {
        return Err(Error::Usage(format!(
            "--input -: {needs}; save the data to a file and pass its path"
        )));
    }
    let meta = std::fs::metadata(path).map_err(|e| input_error(path, e))?;
    if meta.is_dir() {
        return Err(Error::Input(format!("{p}: is a directory, not a CSV file")));
    }
    if !meta.is_file() {
        return Err(Error::Input(format!(
            "{p}: {needs}; save the data to a file and pass its path"
        )));
    }
    Ok(())
}

/// Reads the whole input once: checks every row, counts rows and empty texts, resolves
/// the text column. Nothing is sent or written before this passes.
pub fn inspect_input(
    path: &Path,
    text_column: Option<&str>,
    label_column: &str,
    replace_label: bool,
    limit: Option<u64>,
) -> Result<InputInfo> {
    require_regular_file(path)?;
    let delimiter = sniff_delimiter(path)?;
    if let Err(found) =
        csvscan::scan_file(path, delimiter, limit).map_err(|e| input_error(path, e))?
    {
        return Err(describe_scan_problem(path, delimiter, &found));
    }
    let mut rdr = reader(path, delimiter)?;
    let headers = rdr
        .headers()
        .map_err(|e| describe_csv_error(path, None, e))?
        .clone();
    let names: Vec<&str> = headers.iter().collect();
    if names.is_empty() || (names.len() == 1 && names[0].is_empty()) {
        return Err(Error::Input(format!(
            "{}: is empty (no header row)",
            path.display()
        )));
    }
    let listing = names.join(", ");
    let columns::Resolved {
        text_col,
        replace_col,
    } = columns::resolve(path, &headers, text_column, label_column, replace_label)?;
    let (rows, empty_rows, text_bytes) = count_rows(&mut rdr, path, &headers, text_col, limit)?;
    if rows == 0 && limit != Some(0) {
        return Err(Error::Input(format!(
            "{}: has a header ({listing}) but no data rows; nothing to label",
            path.display()
        )));
    }
    Ok(InputInfo {
        path: path.to_path_buf(),
        delimiter,
        headers,
        text_col,
        replace_col,
        rows,
        empty_rows,
        text_bytes,
    })
}

/// Reads every row up to `limit`: counts rows and empty texts, and the texts' bytes.
fn count_rows(
    rdr: &mut csv::Reader<BufReader<File>>,
    path: &Path,
    headers: &StringRecord,
    text_col: usize,
    limit: Option<u64>,
) -> Result<(u64, u64, u64)> {
    let mut rec = StringRecord::new();
    let mut rows = 0u64;
    let mut empty_rows = 0u64;
    let mut text_bytes = 0u64;
    loop {
        if limit.is_some_and(|l| rows >= l) {
            break;
        }
        match rdr.read_record(&mut rec) {
            Ok(true) => {
                rows += 1;
                match rec.get(text_col) {
                    Some(t) if !t.trim().is_empty() => text_bytes += t.len() as u64,
                    _ => empty_rows += 1,
                }
            }
            Ok(false) => break,
            Err(e) => return Err(describe_csv_error(path, Some(headers), e)),
        }
    }
    Ok((rows, empty_rows, text_bytes))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Write;

    pub(crate) fn file(content: &[u8]) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(content).unwrap();
        f
    }

    #[test]
    fn sniffs_delimiters_and_strips_bom() {
        for (content, d) in [
            (&b"id,text\n1,a\n"[..], b','),
            (b"id;text\n1;a,b\n", b';'),
            (b"id\ttext\n1\ta\n", b'\t'),
            (b"\"a,b\"|text\n1|x\n", b'|'),
            (b"\xef\xbb\xbftext;id\nx;1\n", b';'),
        ] {
            let f = file(content);
            assert_eq!(sniff_delimiter(f.path()).unwrap(), d);
            let info = inspect_input(f.path(), None, "label", false, None).unwrap();
            assert_eq!(
                &info.headers[info.text_col], "text",
                "BOM must not stick to the header"
            );
        }
    }

    #[test]
    fn quoted_newlines_and_errors_with_row_numbers() {
        let f = file(b"id,Text\n1,\"line one\nline two\"\n2,\n");
        let info = inspect_input(f.path(), None, "label", false, None).unwrap();
        assert_eq!((info.rows, info.empty_rows, info.text_col), (2, 1, 1));
        let bad = file(b"id,text\n1,a\n2,b,c\n");
        let err = inspect_input(bad.path(), None, "label", false, None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("row 2") && err.contains("3 fields"), "{err}");
        let err = inspect_input(f.path(), Some("tweet"), "label", false, None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("no column 'tweet'") && err.contains("id, Text"),
            "{err}"
        );
        let labeled = file(b"text,label\na,pos\n");
        assert!(inspect_input(labeled.path(), None, "label", false, None).is_err());
        let info = inspect_input(labeled.path(), None, "label", true, None).unwrap();
        assert_eq!(info.replace_col, Some(1));
    }

    pub(crate) mod properties {
        //! Property tests: the delimiter is found whatever the rows hold. The tables they
        //! draw also serve the resume check's property test (`output::resume`).

        use super::*;
        use proptest::prelude::*;

        pub(crate) const DELIMITERS: [u8; 4] = [b',', b';', b'\t', b'|'];

        /// Field text with every character that matters to CSV, and some that do not.
        pub(crate) fn field() -> impl Strategy<Value = String> {
            let chars = vec![
                'a', 'b', ' ', ',', ';', '\t', '|', '"', '\n', '\r', 'é', '😀', '\'',
            ];
            prop::collection::vec(prop::sample::select(chars), 0..10)
                .prop_map(|v| v.into_iter().collect())
        }

        /// Column names (no delimiter characters, as real headers have), `text` among them,
        /// and rows of arbitrary fields.
        pub(crate) fn table() -> impl Strategy<Value = (Vec<String>, Vec<Vec<String>>)> {
            (2usize..5, 1usize..12).prop_flat_map(|(cols, rows)| {
                let names: Vec<String> = ["id", "text", "note", "extra", "more"][..cols]
                    .iter()
                    .map(|s| s.to_string())
                    .collect();
                let rows = prop::collection::vec(prop::collection::vec(field(), cols), rows);
                (Just(names), rows)
            })
        }

        pub(crate) fn write_table(
            path: &Path,
            delimiter: u8,
            bom: bool,
            names: &[String],
            rows: &[Vec<String>],
        ) {
            let mut bytes = if bom {
                b"\xef\xbb\xbf".to_vec()
            } else {
                Vec::new()
            };
            let mut w = writer(&mut bytes, delimiter);
            w.write_record(names).unwrap();
            for r in rows {
                w.write_record(r).unwrap();
            }
            drop(w);
            std::fs::write(path, bytes).unwrap();
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(200))]

            #[test]
            fn the_delimiter_is_found_and_every_row_reads_back(
                (names, rows) in table(),
                d in 0usize..4,
                bom in any::<bool>(),
            ) {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("in.csv");
                write_table(&path, DELIMITERS[d], bom, &names, &rows);
                prop_assert_eq!(sniff_delimiter(&path).unwrap(), DELIMITERS[d]);
                let info = inspect_input(&path, None, "label", false, None).unwrap();
                prop_assert_eq!(info.rows, rows.len() as u64);
                let mut r = reader(&path, info.delimiter).unwrap();
                let back: Vec<Vec<String>> = r
                    .records()
                    .map(|rec| rec.unwrap().iter().map(str::to_string).collect())
                    .collect();
                prop_assert_eq!(back, rows);
            }

        }
    }
}
