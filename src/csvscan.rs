//! A byte-level pass over a CSV for what the csv reader accepts silently: a NUL byte
//! (binary data, or a UTF-16 file), a field too large to be a text (often an unclosed
//! quote that swallowed the rest of the file), and a quote still open when the file
//! ends. It reads in fixed chunks and keeps no field, so memory stays flat whatever the
//! file holds.
//!
//! The states follow the csv crate's reader with its defaults (quotes, doubled quotes
//! inside quotes, `\r`, `\n` or `\r\n` ending a record, empty lines skipped), so row and
//! line numbers agree with its errors: the header is row 0, the first data row row 1.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

/// The largest field accepted: far more than any text worth labeling (a model's whole
/// context is a few hundred KB of text), small enough that reading it costs nothing.
pub const MAX_FIELD_BYTES: u64 = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    Nul,
    FieldTooLarge,
    UnclosedQuote,
}

/// Where a problem is: row (0 = header), line (1-based) and column (0-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    pub problem: Problem,
    pub row: u64,
    pub line: u64,
    pub column: usize,
    /// Line on which the field's opening quote stands, if the field is quoted.
    pub quote_line: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    StartRecord,
    StartField,
    InField,
    InQuotes,
    /// A quote inside quotes: the next byte says whether it was doubled or closing.
    QuoteInQuotes,
}

pub struct Scanner {
    delimiter: u8,
    state: State,
    /// Records begun so far; the current one is `records - 1`.
    records: u64,
    line: u64,
    record_line: u64,
    column: usize,
    field_len: u64,
    quote_line: Option<u64>,
    /// Whether the leading bytes may still be a UTF-8 BOM (only at the very start).
    at_start: usize,
}

const BOM: &[u8] = b"\xef\xbb\xbf";

impl Scanner {
    pub fn new(delimiter: u8) -> Scanner {
        Scanner {
            delimiter,
            state: State::StartRecord,
            records: 0,
            line: 1,
            record_line: 1,
            column: 0,
            field_len: 0,
            quote_line: None,
            at_start: 0,
        }
    }

    /// A scanner that starts at a record boundary in the middle of a file.
    pub fn mid_file(delimiter: u8) -> Scanner {
        Scanner {
            at_start: BOM.len(),
            ..Scanner::new(delimiter)
        }
    }

    /// Data rows completely read so far (the header not counted).
    pub fn rows_done(&self) -> u64 {
        let begun = self.records;
        let complete = if self.state == State::StartRecord {
            begun
        } else {
            begun.saturating_sub(1)
        };
        complete.saturating_sub(1)
    }

    /// Whether the bytes so far end inside a quoted field.
    pub fn in_quotes(&self) -> bool {
        matches!(self.state, State::InQuotes)
    }

    fn found(&self, problem: Problem) -> Found {
        Found {
            problem,
            row: self.records.saturating_sub(1),
            line: if problem == Problem::UnclosedQuote {
                self.record_line
            } else {
                self.line
            },
            column: self.column,
            quote_line: self.quote_line,
        }
    }

    fn end_field(&mut self) {
        self.column += 1;
        self.field_len = 0;
        self.quote_line = None;
        self.state = State::StartField;
    }

    fn end_record(&mut self) {
        self.column = 0;
        self.field_len = 0;
        self.quote_line = None;
        self.state = State::StartRecord;
    }

    /// Feeds the next bytes; stops at the first problem. With `stop_after_rows`, returns
    /// `Ok(true)` once that many data rows are complete (the rest is not looked at).
    pub fn feed(&mut self, bytes: &[u8], stop_after_rows: Option<u64>) -> Result<bool, Found> {
        for &b in bytes {
            if self.at_start < BOM.len() {
                if b == BOM[self.at_start] {
                    self.at_start += 1;
                    continue;
                }
                self.at_start = BOM.len();
            }
            if b == 0 {
                if self.state == State::StartRecord {
                    self.records += 1;
                    self.record_line = self.line;
                }
                return Err(self.found(Problem::Nul));
            }
            let terminator = b == b'\n' || b == b'\r';
            match self.state {
                State::StartRecord => {
                    if !terminator {
                        if stop_after_rows.is_some_and(|n| self.rows_done() >= n) {
                            return Ok(true);
                        }
                        self.records += 1;
                        self.record_line = self.line;
                        self.state = State::StartField;
                        self.start_field(b);
                    }
                }
                State::StartField => self.start_field(b),
                State::InField => {
                    if b == self.delimiter {
                        self.end_field();
                    } else if terminator {
                        self.end_record();
                    } else {
                        self.field_len += 1;
                    }
                }
                State::InQuotes => {
                    if b == b'"' {
                        self.state = State::QuoteInQuotes;
                    } else {
                        self.field_len += 1;
                    }
                }
                State::QuoteInQuotes => {
                    if b == b'"' {
                        self.field_len += 1;
                        self.state = State::InQuotes;
                    } else if b == self.delimiter {
                        self.end_field();
                    } else if terminator {
                        self.end_record();
                    } else {
                        self.field_len += 1;
                        self.state = State::InField;
                    }
                }
            }
            if self.field_len > MAX_FIELD_BYTES {
                return Err(self.found(Problem::FieldTooLarge));
            }
            if b == b'\n' {
                self.line += 1;
            }
        }
        Ok(false)
    }

    fn start_field(&mut self, b: u8) {
        if b == b'"' {
            self.quote_line = Some(self.line);
            self.state = State::InQuotes;
        } else if b == self.delimiter {
            self.end_field();
        } else if b == b'\n' || b == b'\r' {
            self.end_record();
        } else {
            self.field_len = 1;
            self.state = State::InField;
        }
    }

    /// At the end of the input: a quote still open is a problem.
    pub fn finish(&self) -> Result<(), Found> {
        if self.in_quotes() {
            return Err(self.found(Problem::UnclosedQuote));
        }
        Ok(())
    }
}

/// Scans `path` from the start (up to `max_rows` data rows if given).
pub fn scan_file(
    path: &Path,
    delimiter: u8,
    max_rows: Option<u64>,
) -> io::Result<Result<(), Found>> {
    let mut file = File::open(path)?;
    let mut scanner = Scanner::new(delimiter);
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(scanner.finish());
        }
        match scanner.feed(&buf[..n], max_rows) {
            Err(found) => return Ok(Err(found)),
            Ok(true) => return Ok(Ok(())),
            Ok(false) => {}
        }
    }
}

/// Whether the file, read from the record boundary at byte `from`, ends inside a quoted
/// field: the last record was cut off by a crash even if its last byte is a newline.
pub fn ends_inside_quotes(path: &Path, from: u64, delimiter: u8) -> io::Result<bool> {
    let mut file = File::open(path)?;
    file.seek(SeekFrom::Start(from))?;
    let mut scanner = Scanner::mid_file(delimiter);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(scanner.in_quotes());
        }
        // NUL and size problems are not this question's business.
        if scanner.feed(&buf[..n], None).is_err() {
            return Ok(false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(bytes: &[u8]) -> Result<(), Found> {
        let mut s = Scanner::new(b',');
        s.feed(bytes, None)?;
        s.finish()
    }

    #[test]
    fn well_formed_files_pass() {
        for ok in [
            &b"id,text\n1,a\n"[..],
            b"\xef\xbb\xbfid,text\r\n1,\"a \"\"b\"\"\nc\"\r\n\r\n2,x\"y\n",
            b"id,text\n1,\"\"",
            b"",
        ] {
            assert_eq!(scan(ok), Ok(()), "{:?}", String::from_utf8_lossy(ok));
        }
    }

    #[test]
    fn finds_nul_unclosed_quote_and_huge_fields_with_their_place() {
        let f = scan(b"id,text\n1,a\n2,b\x00c\n").unwrap_err();
        assert_eq!(
            (f.problem, f.row, f.line, f.column),
            (Problem::Nul, 2, 3, 1)
        );
        let f = scan(b"id,text\n1,a\n2,\"open\nmore\n").unwrap_err();
        assert_eq!(
            (f.problem, f.row, f.line, f.column),
            (Problem::UnclosedQuote, 2, 3, 1)
        );
        let mut big = b"id,text,x\n1,".to_vec();
        big.extend(std::iter::repeat_n(b'a', MAX_FIELD_BYTES as usize + 1));
        let f = scan(&big).unwrap_err();
        assert_eq!(
            (f.problem, f.row, f.line, f.column),
            (Problem::FieldTooLarge, 1, 2, 1)
        );
    }

    #[test]
    fn counts_rows_and_stops_at_a_limit() {
        let mut s = Scanner::new(b';');
        assert_eq!(s.feed(b"a;b\n1;\"x\n\"\n\n2;y\n3;\x00", Some(2)), Ok(true));
        assert_eq!(s.rows_done(), 2);
    }
}
