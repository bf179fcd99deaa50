//! `eval`: how far the labels of a CSV agree with a gold column. `read` decides which
//! rows count; `metrics` measures them, `bootstrap` bounds the measures, `coverage`
//! relates them to the rows' confidence; `render` prints them and `errors` writes the
//! disagreeing rows.

pub mod bootstrap;
pub mod coverage;
pub mod errors;
pub mod metrics;
pub mod read;
pub mod render;

use bootstrap::Intervals;
use coverage::AtThreshold;
use metrics::{Confusion, Scores};
use read::Table;

/// Everything `eval` reports about one file.
#[derive(Debug)]
pub struct Report {
    pub scores: Scores,
    pub confusion: Confusion,
    /// `None` with `--bootstrap 0`.
    pub ci95: Option<Intervals>,
    /// The resamples and seed the intervals came from.
    pub resamples: u32,
    pub seed: u64,
    /// `None` when the file has no confidence column.
    pub coverage: Option<Vec<AtThreshold>>,
}

impl Report {
    pub fn of(table: &Table, resamples: u32, seed: u64) -> Report {
        let pairs = table.pairs();
        let k = table.classes.len();
        let confusion = Confusion::of(k, &pairs);
        Report {
            scores: metrics::scores(&confusion),
            confusion,
            ci95: bootstrap::intervals(&pairs, k, resamples, seed),
            resamples,
            seed,
            coverage: table
                .confidence_column
                .as_ref()
                .map(|_| coverage::accuracy_at_coverage(&table.rows)),
        }
    }
}
