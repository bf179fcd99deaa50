//! The gold sample `tune` labels: rows with a text and a gold label, drawn at random
//! (seeded, without replacement), kept in input order, written as `text,gold` to the
//! tune's own directory.

use std::path::{Path, PathBuf};

use csv::StringRecord;

use crate::columns::{self, same_name};
use crate::csvio;
use crate::error::{Error, Result};

/// The sample on disk, and its texts (for the cost estimate).
pub struct Sample {
    pub path: PathBuf,
    pub texts: Vec<String>,
    /// The input's delimiter and text column (to check examples against its rows).
    pub delimiter: u8,
    pub text_col: usize,
}

/// Draws up to `n` rows of `input` with a text and a gold label into `dir/sample.csv`.
pub fn draw(
    input: &Path,
    gold_column: &str,
    text_column: Option<&str>,
    n: u64,
    seed: u64,
    dir: &Path,
) -> Result<Sample> {
    let (mut rdr, headers, delimiter) = csvio::open_with_headers(input)?;
    let gold = (0..headers.len())
        .find(|&i| same_name(&headers[i], gold_column))
        .ok_or_else(|| {
            let listing: Vec<&str> = headers.iter().collect();
            Error::Input(format!(
                "{}: no column '{gold_column}' (columns: {}); pass --gold-column with one of them",
                input.display(),
                listing.join(", ")
            ))
        })?;
    // No label column is added here: a name no header can have.
    let text = columns::resolve(input, &headers, text_column, "\u{0}", false)?.text_col;
    let mut rows: Vec<(String, String)> = Vec::new();
    let mut rec = StringRecord::new();
    while rdr
        .read_record(&mut rec)
        .map_err(|e| csvio::describe_csv_error(input, Some(&headers), e))?
    {
        let (t, g) = (
            rec.get(text).unwrap_or(""),
            rec.get(gold).unwrap_or("").trim(),
        );
        if !t.trim().is_empty() && !g.is_empty() {
            rows.push((t.to_string(), g.to_string()));
        }
    }
    if rows.is_empty() {
        return Err(Error::Input(format!(
            "{}: no row has both a text and a gold label in '{}'",
            input.display(),
            &headers[gold]
        )));
    }
    let picked = pick(rows.len(), n as usize, seed);
    let path = dir.join("sample.csv");
    let file = crate::safefs::create_new(&path)?;
    let mut w = csvio::writer(std::io::BufWriter::new(file), b',');
    let cannot = |e: csv::Error| Error::Runtime(format!("{}: cannot write: {e}", path.display()));
    w.write_record(["text", "gold"]).map_err(cannot)?;
    let mut texts = Vec::with_capacity(picked.len());
    for i in picked {
        w.write_record([&rows[i].0, &rows[i].1]).map_err(cannot)?;
        texts.push(rows[i].0.clone());
    }
    w.flush()
        .map_err(|e| Error::io(format!("{}: cannot write", path.display()), e))?;
    Ok(Sample {
        path,
        texts,
        delimiter,
        text_col: text,
    })
}

/// `n` of `0..len` at random (all when `n >= len`), in ascending order.
fn pick(len: usize, n: usize, seed: u64) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..len).collect();
    let mut rng = fastrand::Rng::with_seed(seed);
    rng.shuffle(&mut idx);
    idx.truncate(n.min(len));
    idx.sort_unstable();
    idx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seeded_sample_is_the_same_every_time_and_never_repeats_a_row() {
        let a = pick(1000, 200, 7);
        assert_eq!(a, pick(1000, 200, 7));
        assert_ne!(a, pick(1000, 200, 8));
        assert_eq!(a.len(), 200);
        assert!(a.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(pick(5, 200, 1), vec![0, 1, 2, 3, 4]);
    }
}
