//! The command line, close to the flags: parsing and validation only. `config` turns
//! this into what the rest of the program uses.
//!
//! The labeling flags are grouped under headings (`--help`); `-h` shows only the ones a
//! first run needs. Each subcommand takes only the flags it uses (`sub`).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

mod alerts;
mod eval;
mod sub;
mod tune;
mod values;

pub use alerts::AlertArgs;
pub use eval::*;
pub use sub::*;
pub use tune::TuneArgs;
use values::{
    fraction, parse_batch_size, parse_providers, percent, priority, seconds_up_to,
    store_timeout_seconds, timeout_seconds,
};
pub use values::{parse_duration, BatchSize, Providers};

use crate::pacing::Priority;

/// The headings of `--help`, in the order they are shown.
pub const IO: &str = "Input and output";
pub const LABELS: &str = "Labels and prompt";
pub const KEYS: &str = "Keys and providers";
pub const PACING: &str = "Pacing and limits";
pub const STATE: &str = "State";
pub const DETAIL: &str = "Output detail";

const EXIT_CODES_SHORT: &str =
    "Exit codes: 0 all labeled · 1 failure · 2 bad usage or input · 3 fallback labels left · \
     75 stopped early · 129/130/143 signal (the same command continues).\n\
     --help shows every flag; autolabel help COMMAND explains a command.";

const EXIT_CODES: &str =
    "Exit codes: 0 all rows labeled · 1 runtime failure · 2 bad usage, configuration or input · \
     3 finished with fallback labels · 75 stopped early (--on-exhausted stop) · \
     129 hang-up (SIGHUP) · 130 interrupted (Ctrl-C) · 143 terminated (SIGTERM); \
     after 129, 130 and 143 every finished row is written and the same command continues";

/// Label the sentiment of every row of a CSV with an LLM chat API, spreading the work
/// over several API keys within their quotas, and never losing a row.
#[derive(Debug, Parser)]
#[command(
    name = "autolabel",
    version = env!("AUTOLABEL_VERSION"),
    subcommand_negates_reqs = true,
    args_conflicts_with_subcommands = true,
    // Our own `help` command, which also answers `help --help`.
    disable_help_subcommand = true,
    // -h and -V come last, under "Output detail", after the flags a run needs (and -h
    // so in every command).
    disable_help_flag = true,
    disable_version_flag = true,
    after_help = EXIT_CODES_SHORT,
    after_long_help = EXIT_CODES
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub label: LabelArgs,
    /// Print help (-h: the main flags; --help: all of them).
    #[arg(short = 'h', long, action = clap::ArgAction::Help, global = true, help_heading = DETAIL)]
    pub help: Option<bool>,
    /// Print version.
    #[arg(short = 'V', long, action = clap::ArgAction::Version, help_heading = DETAIL)]
    pub version: Option<bool>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Label a CSV (the same as running autolabel without a subcommand).
    Label(Box<LabelArgs>),
    /// Measure labels against a gold column: accuracy, F1, κ, MCC, confusion, intervals.
    Eval(EvalArgs),
    /// Find the cheapest batch size and votes that keep a gold sample's accuracy.
    ///
    /// Labels the sample once per combination (each a labeling run with the flags after
    /// --), measures each against the gold column, ranks them by cost and recommends the
    /// cheapest within --tolerance of the best accuracy. A second tune is served from the
    /// cache.
    Tune(TuneArgs),
    /// Check every configured key against the provider.
    TestKeys(TestKeysArgs),
    /// Show usage per key, remaining quota, key health and recent rotations.
    Usage(UsageArgs),
    /// Maintain the state file: remove old entries (prune) or compact it (vacuum).
    #[command(subcommand)]
    State(StateCommand),
    /// List keys with their quotas and health; disable, enable, reset or rotate them.
    ///
    /// Running runs on the same state see a change within seconds.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Serve a live dashboard of the state (keys, usage, runs, rotations) and its JSON API.
    Dashboard(DashboardArgs),
    /// Print a shell completion script: bash, zsh, fish, powershell (or elvish).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page, or write one page per command with --all DIR.
    Man(ManArgs),
    /// Print the help of autolabel or of a command, e.g. `autolabel help keys disable`.
    Help(HelpArgs),
}

/// Days of label cache, rotation log and usage history a state keeps.
pub const DEFAULT_KEEP_DAYS: u32 = 90;

/// Seconds before a request is abandoned, unless `--timeout` says otherwise.
pub const DEFAULT_TIMEOUT: f64 = 30.0;

/// The settings `config` resolves a provider from: every flag of `label` and `test-keys`
/// (which use them all); the commands that only look at keys and state fill the ones
/// they have no flag for (`ViewArgs::common`).
#[derive(Debug, Args, Clone)]
pub struct CommonArgs {
    /// Provider: groq, gemini, openai, xai, openrouter, ollama, or a list of them.
    ///
    /// All are OpenAI-compatible. A comma-separated list ("groq,gemini,openrouter") is one
    /// pool drawing on every listed provider's keys at once, each under its own limits.
    #[arg(long, default_value = "groq", env = "AUTOLABEL_PROVIDER", value_parser = parse_providers, help_heading = KEYS)]
    pub provider: Providers,
    /// Base URL to which /chat/completions and /models are appended [default: the provider's]
    /// (or P_BASE_URL, e.g. GROQ_BASE_URL; with a list of providers only P_BASE_URL).
    #[arg(long, env = "AUTOLABEL_BASE_URL", help_heading = KEYS, hide_short_help = true)]
    pub base_url: Option<String>,
    /// Model name [default: the provider's, e.g. llama-3.1-8b-instant for groq] (or P_MODEL,
    /// e.g. GROQ_MODEL; with a list of providers only P_MODEL).
    #[arg(long, env = "AUTOLABEL_MODEL", help_heading = KEYS, hide_short_help = true)]
    pub model: Option<String>,
    /// Env file holding the keys (dotenv format; the process environment is read too).
    #[arg(long, default_value = "envs/.envs", env = "AUTOLABEL_ENV_FILE", help_heading = KEYS)]
    pub env_file: PathBuf,
    /// Seconds before a request is abandoned (more than 0, at most 3600).
    #[arg(long, default_value_t = DEFAULT_TIMEOUT, value_parser = timeout_seconds, help_heading = PACING, hide_short_help = true)]
    pub timeout: f64,
    /// State (usage, key health, cache, shared quotas): a SQLite file shared by every run on
    /// this machine, or a Redis server shared across machines
    /// (redis://[:password@]host:port/db, rediss:// for TLS)
    /// [default: autolabel/state.sqlite3 in the user's data dir].
    #[arg(long, env = "AUTOLABEL_STATE", help_heading = STATE, hide_short_help = true)]
    pub state: Option<String>,
    /// Prefix of every key autolabel keeps in Redis (with --state redis://…).
    #[arg(long, default_value = crate::store::DEFAULT_REDIS_PREFIX, env = "AUTOLABEL_REDIS_PREFIX", help_heading = STATE, hide_short_help = true)]
    pub redis_prefix: String,
    /// Print only errors.
    #[arg(long, short = 'q', global = true, help_heading = DETAIL)]
    pub quiet: bool,
    /// More detail: where each limit came from, every key-state change (-vv: every request).
    #[arg(long, short = 'v', action = clap::ArgAction::Count, global = true, help_heading = DETAIL)]
    pub verbose: u8,
    /// Not a flag: for a dry run (from --keys), the keys a provider without any
    /// configured is assumed to have, so the estimate needs no key yet.
    #[arg(skip)]
    pub assume_keys: Option<usize>,
}

/// `--confidence`: what a row's confidence measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum ConfidenceSource {
    /// The winner's share of the votes cast.
    #[default]
    Votes,
    /// The chosen label's share of the first label token's probability mass on labels.
    Logprobs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnExhausted {
    /// Write the fallback label (marked, so a later run re-labels those rows).
    Fallback,
    /// Sleep until the earliest key resets, then go on (and wait for the network when the
    /// provider cannot be reached, instead of stopping with exit 1).
    Wait,
    /// End the run (exit 75); the next run continues where it stopped.
    Stop,
}

/// The flags of a labeling run. Their order here is the order of `--help`: the first
/// flag under a heading places the heading.
#[derive(Debug, Args, Clone)]
pub struct LabelArgs {
    /// CSV to label (UTF-8, with or without BOM; delimiter , ; tab or | detected).
    #[arg(long, short = 'i', value_name = "CSV", required = true, help_heading = IO)]
    pub input: Option<PathBuf>,
    /// CSV to write: every input column plus the label column.
    ///
    /// An existing output of the same input is resumed.
    #[arg(long, short = 'o', value_name = "CSV", required = true, help_heading = IO)]
    pub output: Option<PathBuf>,
    /// Column holding the text [default: first of text, tweet, full_text, content, comment, review, sentence].
    #[arg(long, help_heading = IO)]
    pub text_column: Option<String>,
    /// Column appended to the output with the label.
    #[arg(long, default_value = "label", help_heading = IO, hide_short_help = true)]
    pub label_column: String,
    /// If the input already has the label column, overwrite its values instead of refusing.
    #[arg(long, help_heading = IO, hide_short_help = true)]
    pub replace_label_column: bool,
    /// Also write a column with each row's status: model, cached, empty, fallback or review.
    #[arg(long, help_heading = IO, hide_short_help = true)]
    pub status_column: Option<String>,
    /// Also write a column with the provider/model whose label each row got (empty for
    /// empty texts and fallback rows).
    #[arg(long, help_heading = IO, hide_short_help = true)]
    pub model_column: Option<String>,
    /// Ask each row up to N times (1–15) and keep the majority label; asking stops once
    /// no remaining vote can change the winner.
    ///
    /// Ties go to the label that reached the tie first. Each vote is a request like any
    /// other (any key or provider of the pool, counted against its quotas); with batches,
    /// each vote sends the texts in another order.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=15), help_heading = LABELS, hide_short_help = true)]
    pub votes: u32,
    /// Also write a column with the winner's share of the votes cast (0–1, 3 decimals).
    #[arg(long, help_heading = IO, hide_short_help = true)]
    pub confidence_column: Option<String>,
    /// Where a row's confidence comes from: the votes, or (OpenAI, Gemini) the
    /// probability of the answer's first label token among the labels.
    ///
    /// logprobs needs --votes 1 and --batch-size 1. Providers not known to return
    /// logprobs (Groq refuses them) are never asked: their rows get no confidence.
    #[arg(long, value_enum, default_value_t = ConfidenceSource::Votes, help_heading = LABELS, hide_short_help = true)]
    pub confidence: ConfidenceSource,
    /// Also write a column with each row's votes, e.g. positif:4|netral:1.
    #[arg(long, help_heading = IO, hide_short_help = true)]
    pub votes_column: Option<String>,
    /// Rows whose confidence (the winner's share of the votes) is below X (0–1) get the
    /// status review in the status column (and go to --review-output).
    #[arg(long, value_name = "X", value_parser = fraction, help_heading = IO, hide_short_help = true)]
    pub review_below: Option<f64>,
    /// Also write the rows to review, with all their columns, to this CSV (replaced each
    /// run from the whole output). Needs --review-below.
    #[arg(long, value_name = "CSV", requires = "review_below", help_heading = IO, hide_short_help = true)]
    pub review_output: Option<PathBuf>,
    /// Not a flag: `tune` caches each combination's answers apart under this tag.
    #[arg(skip)]
    pub cache_tag: Option<String>,
    /// Label at most N rows of the input (counted from the top).
    #[arg(long, help_heading = IO, hide_short_help = true)]
    pub limit: Option<u64>,
    /// Replace an existing output that does not belong to this input.
    #[arg(long, help_heading = IO, hide_short_help = true)]
    pub overwrite: bool,
    /// Print what the run would do, send and cost, and the days it takes; no request.
    ///
    /// Works before any key is configured: it then assumes --keys N keys.
    #[arg(long, help_heading = IO)]
    pub dry_run: bool,
    /// Allowed labels, comma-separated.
    #[arg(
        long,
        default_value = "positif,negatif,netral",
        env = "AUTOLABEL_LABELS",
        help_heading = LABELS
    )]
    pub labels: String,
    /// Label written when no key can label a row (and for empty texts).
    #[arg(long, default_value = "netral", help_heading = LABELS, hide_short_help = true)]
    pub fallback_label: String,
    /// Prompt template with {labels} and {text} placeholders.
    #[arg(long, help_heading = LABELS, hide_short_help = true)]
    pub prompt_file: Option<PathBuf>,
    /// Few-shot examples: a CSV with a text column (found as the input's) and a label
    /// column (--label-column) whose labels are all in --labels.
    #[arg(long, value_name = "CSV", help_heading = LABELS, hide_short_help = true)]
    pub examples: Option<PathBuf>,
    /// Examples each request carries (with --examples; 1–100).
    #[arg(long, value_name = "K", default_value_t = 6, requires = "examples",
          value_parser = clap::value_parser!(u32).range(1..=100), help_heading = LABELS, hide_short_help = true)]
    pub shots: u32,
    /// How each request's examples are chosen (with --examples).
    #[arg(long, value_enum, default_value = "balanced", requires = "examples", help_heading = LABELS, hide_short_help = true)]
    pub shot_selection: crate::fewshot::Selection,
    #[command(flatten)]
    pub common: CommonArgs,
    /// Keys to assume for --dry-run while a provider has none configured yet.
    #[arg(long = "keys", value_name = "N", default_value_t = 1, requires = "dry_run",
          value_parser = clap::value_parser!(u32).range(1..=10_000), help_heading = KEYS)]
    pub assumed_keys: u32,
    /// Keys that share one organization's limits, by index: "1,2;3,4" [default: each key its own; or P_ORG_GROUPS].
    #[arg(long, help_heading = KEYS, hide_short_help = true)]
    pub org_groups: Option<String>,
    /// Rotate a key out (until its quota's period ends) once its tightest daily or monthly quota of its own (set in the env file) has less than PCT percent left (0–100).
    #[arg(long, value_name = "PCT", default_value_t = 5.0, value_parser = percent, help_heading = KEYS, hide_short_help = true)]
    pub rotate_below: f64,
    /// Price in USD per million input tokens, for cost estimates [default: 0, or P_PRICE_IN].
    #[arg(long, help_heading = KEYS, hide_short_help = true)]
    pub price_in: Option<f64>,
    /// Price in USD per million output tokens [default: 0, or P_PRICE_OUT].
    #[arg(long, help_heading = KEYS, hide_short_help = true)]
    pub price_out: Option<f64>,
    /// Minimum seconds between any two requests (0 = off; at most 86400).
    #[arg(long, default_value_t = 2.5, value_parser = seconds_up_to::<86_400>, env = "AUTOLABEL_DELAY", help_heading = PACING)]
    pub delay: f64,
    /// Requests per minute per key/organization [default: provider free tier, or P_RPM in the env file].
    #[arg(long, help_heading = PACING, hide_short_help = true)]
    pub rpm: Option<u64>,
    /// Requests per hour per key/organization [default: none, or P_RPH].
    #[arg(long, help_heading = PACING, hide_short_help = true)]
    pub rph: Option<u64>,
    /// Requests per day per key/organization [default: provider free tier, or P_RPD].
    #[arg(long, help_heading = PACING, hide_short_help = true)]
    pub rpd: Option<u64>,
    /// Estimated tokens per minute per key/organization [default: provider free tier, or P_TPM].
    #[arg(long, help_heading = PACING, hide_short_help = true)]
    pub tpm: Option<u64>,
    /// Estimated tokens per day per key/organization [default: provider free tier, or P_TPD].
    #[arg(long, help_heading = PACING, hide_short_help = true)]
    pub tpd: Option<u64>,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=512), env = "AUTOLABEL_CONCURRENCY", help_heading = PACING)]
    pub concurrency: u32,
    /// Texts per request: 1 to 100, or auto (chosen from the limit that binds).
    ///
    /// The reply must be {"labels": [...]}, checked and split if wrong; auto picks at most 50.
    #[arg(long, default_value = "1", value_parser = parse_batch_size, help_heading = PACING)]
    pub batch_size: BatchSize,
    /// Retries per row after server errors, timeouts, dropped connections and malformed replies, before the row gets the fallback label (at most 100). Rate limits, cooldowns and exhausted or invalid keys never count: the row waits for, or moves to, a key that can serve it [default: number of keys, at least 4].
    #[arg(long, value_parser = clap::value_parser!(u32).range(0..=100), help_heading = PACING, hide_short_help = true)]
    pub max_retries: Option<u32>,
    /// First back-off in seconds after a server error, timeout or bad reply (or a 429 that gives no wait); doubles each time, with jitter (at most 3600).
    #[arg(long, default_value_t = 1.0, value_parser = seconds_up_to::<3600>, env = "AUTOLABEL_BACKOFF", help_heading = PACING, hide_short_help = true)]
    pub backoff: f64,
    /// What to do when every key is exhausted or invalid.
    #[arg(long, value_enum, default_value = "fallback", help_heading = PACING)]
    pub on_exhausted: OnExhausted,
    /// How this run ranks against other runs on the same keys (through the same state file
    /// or Redis): while they together want more than a key allows, high is served first,
    /// then normal, then low (high|normal|low).
    #[arg(long, default_value = "normal", value_parser = priority, env = "AUTOLABEL_PRIORITY", help_heading = PACING, hide_short_help = true)]
    pub priority: Priority,
    /// The least share of a key's requests, in percent, a lower-priority run still gets
    /// while higher ones want them all (0–100).
    #[arg(long, default_value = "5", value_parser = percent, env = "AUTOLABEL_MIN_SHARE", help_heading = PACING, hide_short_help = true)]
    pub min_share: f64,
    /// Seconds to keep trying a shared state (Redis) that stopped answering before the run
    /// stops with exit 75 (resumable); no request goes without a grant meanwhile (1–3600).
    #[arg(long, default_value_t = 60.0, value_parser = store_timeout_seconds, env = "AUTOLABEL_STORE_TIMEOUT", help_heading = STATE, hide_short_help = true)]
    pub store_timeout: f64,
    /// Do not read or write the label cache.
    #[arg(long, help_heading = STATE, hide_short_help = true)]
    pub no_cache: bool,
    /// Days of label cache, rotation log and usage history to keep in the state; older
    /// entries are removed when a run starts (at most once a day). 0 keeps everything.
    #[arg(long, default_value_t = DEFAULT_KEEP_DAYS, env = "AUTOLABEL_KEEP_DAYS", help_heading = STATE, hide_short_help = true)]
    pub keep_days: u32,
    /// Write the day's usage report as DIR/<provider>_<YYYY-MM-DD>.json at the end.
    #[arg(long, help_heading = DETAIL, hide_short_help = true)]
    pub report_dir: Option<PathBuf>,
    /// Seconds between progress lines when stderr is not a terminal (cron logs; at most 86400).
    #[arg(long, default_value_t = 10.0, value_parser = seconds_up_to::<86_400>, help_heading = DETAIL, hide_short_help = true)]
    pub progress_every: f64,
    #[command(flatten)]
    pub alerts: AlertArgs,
}

#[cfg(test)]
mod tests;
