//! Torn-row recovery: whether an existing output is this input's, how many of its rows
//! are complete, and where a row torn by a crash starts (it is cut before appending).

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use csv::StringRecord;

use crate::csvio::{input_error, reader, InputInfo, OutputLayout};
use crate::csvscan;
use crate::error::{Error, Result};

/// What an existing output file means for this run.
#[derive(Debug, PartialEq)]
pub enum Existing {
    /// No output yet (or an empty file).
    Fresh,
    /// The output holds the first `rows` rows of this input; bytes past `valid_len` are a
    /// torn last row from a crash and are cut off before appending.
    Resume { rows: u64, valid_len: u64 },
}

/// Checks that an existing output belongs to this input: same header, and each of its
/// rows carries the input row of the same position unchanged.
pub fn check_existing_output(
    out: &Path,
    info: &InputInfo,
    layout: &OutputLayout,
) -> Result<Existing> {
    let Some(bytes_total) = output_size(out)? else {
        return Ok(Existing::Fresh);
    };
    let mut orr = reader(out, info.delimiter)?;
    let columns = check_header(&mut orr, out, info, layout)?;
    let (rows, valid_len) = complete_rows(&mut orr, out, info, columns, bytes_total)?;
    Ok(Existing::Resume { rows, valid_len })
}

/// The output's size; `None` when there is none yet (no file, or an empty one).
fn output_size(out: &Path) -> Result<Option<u64>> {
    let meta = match std::fs::metadata(out) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(input_error(out, e)),
    };
    if meta.is_dir() {
        return Err(Error::Usage(format!(
            "--output {}: is a directory",
            out.display()
        )));
    }
    Ok((meta.len() > 0).then_some(meta.len()))
}

fn not_ours(out: &Path, why: String) -> Error {
    Error::Input(format!(
        "{}: exists and is not this input's output ({why}); pass --overwrite to replace it, or choose another --output",
        out.display()
    ))
}

/// The output's header must be the one this run would write; returns its column count.
fn check_header(
    orr: &mut csv::Reader<BufReader<File>>,
    out: &Path,
    info: &InputInfo,
    layout: &OutputLayout,
) -> Result<usize> {
    let out_headers = match orr.headers() {
        Ok(h) => h.clone(),
        Err(_) => return Err(not_ours(out, "its header is not readable".into())),
    };
    if out_headers != info.output_headers(layout) {
        return Err(not_ours(
            out,
            format!(
                "its columns are {}",
                out_headers.iter().collect::<Vec<_>>().join(", ")
            ),
        ));
    }
    Ok(out_headers.len())
}

/// Reads the output's rows after the header against the input's: how many are complete
/// and carry the input row of the same position, and where the last of them ends.
fn complete_rows(
    orr: &mut csv::Reader<BufReader<File>>,
    out: &Path,
    info: &InputInfo,
    expected_len: usize,
    bytes_total: u64,
) -> Result<(u64, u64)> {
    let header_end = orr.position().byte();
    let mut irr = reader(&info.path, info.delimiter)?;
    let mut orec = StringRecord::new();
    let mut irec = StringRecord::new();
    let mut rows = 0u64;
    let mut valid_len = header_end;
    loop {
        let start = orr.position().byte();
        match orr.read_record(&mut orec) {
            Ok(true) => {}
            Ok(false) => break,
            // A torn last row (killed mid-write) may not parse; it is cut. A row that does
            // not parse with more rows after it is damage, and nothing is cut for it.
            Err(e) => match orr.read_record(&mut orec) {
                Ok(false) => break,
                _ => {
                    return Err(Error::Input(format!(
                        "{}: row {} is damaged ({e}) and more rows follow, so it is not a row cut \
                         off by a crash; nothing was changed: repair or move the file, or pass --overwrite",
                        out.display(),
                        rows + 1
                    ))
                    .caused_by(e))
                }
            },
        }
        let end = orr.position().byte();
        let complete = orec.len() == expected_len
            && ends_with_newline(out, end, bytes_total)?
            // A crash inside a quoted field can leave a newline of the text last.
            && (end < bytes_total
                || !csvscan::ends_inside_quotes(out, start, info.delimiter)
                    .map_err(|e| input_error(out, e))?);
        if !complete {
            break;
        }
        match irr.read_record(&mut irec) {
            Ok(true) if info.same_row(&irec, &orec) => {}
            Ok(true) => {
                return Err(not_ours(
                    out,
                    format!("row {} differs from the input's", rows + 1),
                ))
            }
            _ => return Err(not_ours(out, "it has more rows than the input".into())),
        }
        rows += 1;
        valid_len = end;
    }
    Ok((rows, valid_len))
}

/// A record is only complete if its line terminator made it to disk.
fn ends_with_newline(path: &Path, end: u64, total: u64) -> Result<bool> {
    if end == 0 || end > total {
        return Ok(false);
    }
    if end < total {
        // Not the last record: the reader consumed its terminator to get here.
        return Ok(true);
    }
    use std::io::{Seek, SeekFrom};
    let mut f = File::open(path).map_err(|e| input_error(path, e))?;
    f.seek(SeekFrom::Start(end - 1))
        .map_err(|e| input_error(path, e))?;
    let mut b = [0u8; 1];
    f.read_exact(&mut b).map_err(|e| input_error(path, e))?;
    Ok(b[0] == b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::csvio::inspect_input;
    use crate::csvio::tests::file;

    #[test]
    fn resume_check_accepts_own_prefix_and_cuts_torn_rows() {
        let input = file(b"id,text\n1,a\n2,\"b\nb\"\n3,c\n");
        let info = inspect_input(input.path(), None, "label", false, None).unwrap();
        let layout = OutputLayout {
            label_column: "label".into(),
            status_column: None,
            model_column: None,
            confidence_column: None,
            votes_column: None,
        };
        let good = file(b"id,text,label\n1,a,positif\n2,\"b\nb\",netral\n3,c,posi");
        match check_existing_output(good.path(), &info, &layout).unwrap() {
            Existing::Resume { rows, valid_len } => {
                assert_eq!(rows, 2);
                assert_eq!(
                    valid_len,
                    b"id,text,label\n1,a,positif\n2,\"b\nb\",netral\n".len() as u64
                );
            }
            other => panic!("{other:?}"),
        }
        let other = file(b"id,text,label\n1,zzz,positif\n");
        let err = check_existing_output(other.path(), &info, &layout)
            .unwrap_err()
            .to_string();
        assert!(err.contains("--overwrite"), "{err}");
        let wrong_header = file(b"a,b\n1,2\n");
        assert!(check_existing_output(wrong_header.path(), &info, &layout).is_err());
    }

    mod properties {
        //! Property test: cutting an output anywhere then resuming it never changes or
        //! drops a complete row.

        use super::*;
        use crate::csvio::tests::properties::{table, write_table, DELIMITERS};
        use crate::csvio::writer;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(200))]

            #[test]
            fn a_cut_output_resumes_with_every_complete_row_unchanged(
                (mut names, mut rows) in table(),
                d in 0usize..4,
                replace_at in prop::option::of(0usize..5),
                status in any::<bool>(),
                cut_seed in any::<u64>(),
                after_newline in any::<bool>(),
            ) {
                let delimiter = DELIMITERS[d];
                // With --replace-label-column the label sits among the input's columns
                // (so the last field may be any text); otherwise it is appended.
                let replace = replace_at.map(|at| {
                    let at = at.min(names.len());
                    names.insert(at, "label".into());
                    for r in rows.iter_mut() {
                        r.insert(at, "old".into());
                    }
                });
                let dir = tempfile::tempdir().unwrap();
                let input = dir.path().join("in.csv");
                write_table(&input, delimiter, false, &names, &rows);
                let info = inspect_input(&input, Some("text"), "label", replace.is_some(), None).unwrap();
                let layout = OutputLayout {
                    label_column: "label".into(),
                    status_column: status.then(|| "status".into()),
                    model_column: None,
                    confidence_column: None,
                    votes_column: None,
                };
                // The whole output, and where each row ends in it.
                let mut full = Vec::new();
                let mut ends = Vec::new();
                {
                    let mut w = writer(&mut full, delimiter);
                    w.write_record(&info.output_headers(&layout)).unwrap();
                    w.flush().unwrap();
                    drop(w);
                    ends.push(full.len());
                    let mut out = StringRecord::new();
                    for (i, r) in rows.iter().enumerate() {
                        let label = ["positif", "negatif", "netral"][i % 3];
                        info.output_record(&StringRecord::from(r.clone()), label, status.then_some("model"), &mut out);
                        let mut w = writer(&mut full, delimiter);
                        w.write_record(&out).unwrap();
                        drop(w);
                        ends.push(full.len());
                    }
                }
                // Anywhere, or (the tricky places) just after a newline byte, which may be
                // a row's end or one inside a quoted text.
                let newlines: Vec<usize> = (ends[0]..=full.len())
                    .filter(|&p| full[p - 1] == b'\n')
                    .collect();
                let cut = if after_newline {
                    newlines[(cut_seed as usize) % newlines.len()]
                } else {
                    ends[0] + (cut_seed as usize) % (full.len() - ends[0] + 1)
                };
                let output = dir.path().join("out.csv");
                std::fs::write(&output, &full[..cut]).unwrap();
                match check_existing_output(&output, &info, &layout).unwrap() {
                    Existing::Resume { rows: kept, valid_len } => {
                        // Every row whose bytes (newline included) are all there is kept,
                        // and nothing else.
                        let complete = ends.iter().filter(|e| **e <= cut).count() - 1;
                        prop_assert_eq!(kept as usize, complete, "cut at {} of {}", cut, full.len());
                        prop_assert_eq!(valid_len as usize, ends[complete]);
                        // Appending the remaining rows after the cut gives the whole output.
                        let mut resumed = full[..valid_len as usize].to_vec();
                        resumed.extend_from_slice(&full[ends[complete]..]);
                        prop_assert_eq!(resumed, full);
                    }
                    Existing::Fresh => prop_assert!(false, "a file with a header is not fresh"),
                }
            }
        }
    }
}
