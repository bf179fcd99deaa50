//! The flags of `eval`: a labeled CSV, its gold column, and what to report.

use std::path::PathBuf;

use clap::Args;

/// Resamples of the bootstrap intervals unless `--bootstrap` says otherwise.
pub const DEFAULT_RESAMPLES: u32 = 1000;

#[derive(Debug, Args, Clone)]
pub struct EvalArgs {
    /// Labeled CSV (typically autolabel's output with a gold column filled in); only read.
    #[arg(long, short = 'i', value_name = "CSV")]
    pub input: PathBuf,
    /// Column holding the correct labels; rows where it is empty are skipped (and counted).
    #[arg(long, value_name = "COL")]
    pub gold_column: String,
    /// Column holding the labels to measure.
    #[arg(long, value_name = "COL", default_value = "label")]
    pub label_column: String,
    /// Column with each row's status; rows with status fallback are left out (and
    /// counted) [default: a column named status, if there is one].
    #[arg(long, value_name = "COL")]
    pub status_column: Option<String>,
    /// Column with each row's confidence (0–1): errors are sorted by it, and accuracy at
    /// coverage is printed [default: a column named confidence, if there is one].
    #[arg(long, value_name = "COL")]
    pub confidence_column: Option<String>,
    /// The few-shot examples the labels were made with: a row whose text is also an
    /// example is refused (exit 2), as it would score too well.
    #[arg(long, value_name = "CSV")]
    pub examples: Option<PathBuf>,
    /// Column holding the text, in the input and the examples (with --examples) [default:
    /// first of text, tweet, full_text, content, comment, review, sentence].
    #[arg(long, value_name = "COL", requires = "examples")]
    pub text_column: Option<String>,
    /// Print one JSON object on stdout (field names in the README).
    #[arg(long)]
    pub json: bool,
    /// Write the rows whose labels disagree (all columns, plus gold and predicted) to FILE,
    /// most confident first.
    #[arg(long, value_name = "FILE")]
    pub errors: Option<PathBuf>,
    /// Bootstrap resamples for the 95 % intervals (0: no intervals; at most 100000).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_RESAMPLES,
          value_parser = clap::value_parser!(u32).range(0..=100_000))]
    pub bootstrap: u32,
    /// Seed of the bootstrap's resampling: the same seed gives the same intervals.
    #[arg(long, value_name = "S", default_value_t = 1)]
    pub seed: u64,
    /// Print only errors (and the results).
    #[arg(long, short = 'q', global = true, help_heading = crate::cli::DETAIL)]
    pub quiet: bool,
}
