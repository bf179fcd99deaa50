//! `autolabel tune`: its flags. The run's own flags (provider, keys, limits, labels,
//! prompt, concurrency, state) follow `--`, exactly as a labeling run takes them.

use std::path::PathBuf;

use clap::Args;

#[derive(Debug, Args, Clone)]
pub struct TuneArgs {
    /// CSV with the texts and a gold label column.
    #[arg(long, short = 'i', value_name = "CSV")]
    pub input: PathBuf,
    /// Column holding the gold labels.
    #[arg(long, value_name = "COL")]
    pub gold_column: String,
    /// Column holding the text [default: as a labeling run finds it].
    #[arg(long)]
    pub text_column: Option<String>,
    /// Rows drawn at random (seeded) from the rows with a text and a gold label.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub sample: u64,
    /// Batch sizes to try (1–100 each).
    #[arg(long, value_delimiter = ',', default_value = "1,10,25,50", value_parser = clap::value_parser!(u32).range(1..=100))]
    pub batch_sizes: Vec<u32>,
    /// Vote counts to try (1–15 each).
    #[arg(long, value_delimiter = ',', default_value = "1,3", value_parser = clap::value_parser!(u32).range(1..=15))]
    pub votes: Vec<u32>,
    /// Few-shot examples for every combination (as a labeling run's --examples); an
    /// example that is also a row of the input is refused.
    #[arg(long, value_name = "CSV")]
    pub examples: Option<PathBuf>,
    /// Recommend the cheapest combination whose accuracy is within this of the best (0–1).
    #[arg(long, default_value_t = 0.02)]
    pub tolerance: f64,
    /// Print JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Spend without asking (needed when stdout is a terminal).
    #[arg(long)]
    pub yes: bool,
    /// Seed of the sample and of the bootstrap intervals.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Flags of the labeling runs (keys, provider, limits, labels, prompt, concurrency,
    /// state), e.g. `-- --provider gemini --concurrency 4`.
    #[arg(last = true, value_name = "LABEL FLAGS")]
    pub label_flags: Vec<String>,
}
