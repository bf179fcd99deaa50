//! The command line, close to the flags: parsing and validation only. `config` turns
//! this into what the rest of the program uses.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::provider::defaults::ProviderName;

/// Label the sentiment of every row of a CSV with an LLM chat API, spreading the work
/// over several API keys within their quotas, and never losing a row.
#[derive(Debug, Parser)]
#[command(
    name = "autolabel",
    version = env!("AUTOLABEL_VERSION"),
    subcommand_negates_reqs = true,
    args_conflicts_with_subcommands = true,
    after_help = "Exit codes: 0 all rows labeled · 1 runtime failure · 2 bad usage, configuration or input · \
                  3 finished with fallback labels · 75 stopped early (--on-exhausted stop) · \
                  129 hang-up (SIGHUP) · 130 interrupted (Ctrl-C) · 143 terminated (SIGTERM); \
                  after 129, 130 and 143 every finished row is written and the same command continues"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub label: LabelArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Label a CSV (the same as running autolabel without a subcommand).
    Label(Box<LabelArgs>),
    /// Check every configured key against the provider.
    TestKeys(TestKeysArgs),
    /// Show usage per key, remaining quota, key health and recent rotations.
    Usage(UsageArgs),
    /// Maintain the state file: remove old entries (prune) or compact it (vacuum).
    #[command(subcommand)]
    State(StateCommand),
    /// List keys with their quotas and health; disable, enable, reset or rotate them (running runs see it within seconds).
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Serve a live dashboard of the state (keys, usage, runs, rotations) and its JSON API.
    Dashboard(DashboardArgs),
    /// Print a shell completion script: bash, zsh, fish, powershell (or elvish).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff) on stdout, e.g. `autolabel man > autolabel.1`.
    Man,
}

#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// Remove cache entries, rotations and usage rows older than --keep-days, and say how many.
    Prune(PruneArgs),
    /// Compact the state file (after a prune) and print its size before and after.
    Vacuum(StateFileArgs),
}

/// Where the state file is, for the `state` commands.
#[derive(Debug, Args, Clone)]
pub struct StateFileArgs {
    /// State file, or a Redis server (redis://[:password@]host:port/db, rediss:// for TLS)
    /// [default: autolabel/state.sqlite3 in the user's data dir].
    #[arg(long, env = "AUTOLABEL_STATE")]
    pub state: Option<String>,
    /// Prefix of every key autolabel keeps in Redis (with --state redis://…).
    #[arg(long, default_value = crate::store::DEFAULT_REDIS_PREFIX, env = "AUTOLABEL_REDIS_PREFIX")]
    pub redis_prefix: String,
}

#[derive(Debug, Args, Clone)]
pub struct PruneArgs {
    #[command(flatten)]
    pub file: StateFileArgs,
    /// Remove entries from before the UTC day N days ago (today's always stay); 0 keeps everything.
    #[arg(long, default_value_t = DEFAULT_KEEP_DAYS)]
    pub keep_days: u32,
}

/// Days of label cache, rotation log and usage history a state keeps.
pub const DEFAULT_KEEP_DAYS: u32 = 90;

/// Flags every command shares: which provider, which keys, where the state lives.
#[derive(Debug, Args, Clone)]
pub struct CommonArgs {
    /// Provider: groq, gemini, openai, xai, openrouter, ollama (all OpenAI-compatible), or a
    /// comma-separated list of them ("groq,gemini,openrouter"): one pool drawing on every
    /// listed provider's keys at once, each under its own limits.
    #[arg(long, default_value = "groq", env = "AUTOLABEL_PROVIDER", value_parser = parse_providers)]
    pub provider: Providers,
    /// Base URL to which /chat/completions and /models are appended [default: the provider's]
    /// (or P_BASE_URL, e.g. GROQ_BASE_URL; with a list of providers only P_BASE_URL).
    #[arg(long, env = "AUTOLABEL_BASE_URL")]
    pub base_url: Option<String>,
    /// Model name [default: the provider's, e.g. llama-3.1-8b-instant for groq] (or P_MODEL,
    /// e.g. GROQ_MODEL; with a list of providers only P_MODEL).
    #[arg(long, env = "AUTOLABEL_MODEL")]
    pub model: Option<String>,
    /// Env file holding the keys (dotenv format; the process environment is read too).
    #[arg(long, default_value = "envs/.envs", env = "AUTOLABEL_ENV_FILE")]
    pub env_file: PathBuf,
    /// State (usage, key health, cache, shared quotas): a SQLite file shared by every run on
    /// this machine, or a Redis server shared across machines
    /// (redis://[:password@]host:port/db, rediss:// for TLS)
    /// [default: autolabel/state.sqlite3 in the user's data dir].
    #[arg(long, env = "AUTOLABEL_STATE")]
    pub state: Option<String>,
    /// Prefix of every key autolabel keeps in Redis (with --state redis://…).
    #[arg(long, default_value = crate::store::DEFAULT_REDIS_PREFIX, env = "AUTOLABEL_REDIS_PREFIX")]
    pub redis_prefix: String,
    /// Seconds before a request is abandoned (more than 0, at most 3600).
    #[arg(long, default_value_t = 30.0, value_parser = timeout_seconds)]
    pub timeout: f64,
    /// Print only errors.
    #[arg(long, short = 'q', global = true)]
    pub quiet: bool,
    /// More detail: where each limit came from, every key-state change (-vv: every request).
    #[arg(long, short = 'v', action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnExhausted {
    /// Write the fallback label (marked, so a later run re-labels those rows).
    Fallback,
    /// Sleep until the earliest key resets, then go on.
    Wait,
    /// End the run (exit 75); the next run continues where it stopped.
    Stop,
}

#[derive(Debug, Args, Clone)]
pub struct LabelArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// CSV to label (UTF-8, with or without BOM; delimiter , ; tab or | detected).
    #[arg(long, short = 'i', required = true)]
    pub input: Option<PathBuf>,
    /// CSV to write: every input column plus the label column. An existing output of the same input is resumed.
    #[arg(long, short = 'o', required = true)]
    pub output: Option<PathBuf>,
    /// Column holding the text [default: first of text, tweet, full_text, content, comment, review, sentence].
    #[arg(long)]
    pub text_column: Option<String>,
    /// Column appended to the output with the label.
    #[arg(long, default_value = "label")]
    pub label_column: String,
    /// If the input already has the label column, overwrite its values instead of refusing.
    #[arg(long)]
    pub replace_label_column: bool,
    /// Also write a column with each row's status: model, cached, empty or fallback.
    #[arg(long)]
    pub status_column: Option<String>,
    /// Also write a column with the provider/model whose label each row got (empty for
    /// empty texts and fallback rows).
    #[arg(long)]
    pub model_column: Option<String>,
    /// Allowed labels, comma-separated.
    #[arg(
        long,
        default_value = "positif,negatif,netral",
        env = "AUTOLABEL_LABELS"
    )]
    pub labels: String,
    /// Label written when no key can label a row (and for empty texts).
    #[arg(long, default_value = "netral")]
    pub fallback_label: String,
    /// Minimum seconds between any two requests (0 = off; at most 86400).
    #[arg(long, default_value_t = 2.5, value_parser = seconds_up_to::<86_400>, env = "AUTOLABEL_DELAY")]
    pub delay: f64,
    /// Requests per minute per key/organization [default: provider free tier, or P_RPM in the env file].
    #[arg(long)]
    pub rpm: Option<u64>,
    /// Requests per hour per key/organization [default: none, or P_RPH].
    #[arg(long)]
    pub rph: Option<u64>,
    /// Requests per day per key/organization [default: provider free tier, or P_RPD].
    #[arg(long)]
    pub rpd: Option<u64>,
    /// Estimated tokens per minute per key/organization [default: provider free tier, or P_TPM].
    #[arg(long)]
    pub tpm: Option<u64>,
    /// Estimated tokens per day per key/organization [default: provider free tier, or P_TPD].
    #[arg(long)]
    pub tpd: Option<u64>,
    /// Keys that share one organization's limits, by index: "1,2;3,4" [default: each key its own; or P_ORG_GROUPS].
    #[arg(long)]
    pub org_groups: Option<String>,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=512), env = "AUTOLABEL_CONCURRENCY")]
    pub concurrency: u32,
    /// Texts per request, 1 to 100 (the reply must be {"labels": [...]}, checked and split if wrong),
    /// or auto: chosen from the limit that binds, at most 50.
    #[arg(long, default_value = "1", value_parser = parse_batch_size)]
    pub batch_size: BatchSize,
    /// Retries per row after server errors, timeouts, dropped connections and malformed replies, before the row gets the fallback label (at most 100). Rate limits, cooldowns and exhausted or invalid keys never count: the row waits for, or moves to, a key that can serve it [default: number of keys, at least 4].
    #[arg(long, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub max_retries: Option<u32>,
    /// First back-off in seconds after a server error, timeout or bad reply (or a 429 that gives no wait); doubles each time, with jitter (at most 3600).
    #[arg(long, default_value_t = 1.0, value_parser = seconds_up_to::<3600>, env = "AUTOLABEL_BACKOFF")]
    pub backoff: f64,
    /// What to do when every key is exhausted or invalid.
    #[arg(long, value_enum, default_value = "fallback")]
    pub on_exhausted: OnExhausted,
    /// Seconds to keep trying a shared state (Redis) that stopped answering before the run
    /// stops with exit 75 (resumable); no request goes without a grant meanwhile (1–3600).
    #[arg(long, default_value_t = 60.0, value_parser = store_timeout_seconds, env = "AUTOLABEL_STORE_TIMEOUT")]
    pub store_timeout: f64,
    /// Rotate a key out (until its quota's period ends) once its tightest daily or monthly quota of its own (set in the env file) has less than PCT percent left (0–100).
    #[arg(long, value_name = "PCT", default_value_t = 5.0, value_parser = percent)]
    pub rotate_below: f64,
    /// Prompt template with {labels} and {text} placeholders.
    #[arg(long)]
    pub prompt_file: Option<PathBuf>,
    /// Do not read or write the label cache.
    #[arg(long)]
    pub no_cache: bool,
    /// Label at most N rows of the input (counted from the top).
    #[arg(long)]
    pub limit: Option<u64>,
    /// Read the input and print what the run would do, without any request.
    #[arg(long)]
    pub dry_run: bool,
    /// Replace an existing output that does not belong to this input.
    #[arg(long)]
    pub overwrite: bool,
    /// Days of label cache, rotation log and usage history to keep in the state; older
    /// entries are removed when a run starts (at most once a day). 0 keeps everything.
    #[arg(long, default_value_t = DEFAULT_KEEP_DAYS, env = "AUTOLABEL_KEEP_DAYS")]
    pub keep_days: u32,
    /// Write the day's usage report as DIR/<provider>_<YYYY-MM-DD>.json at the end.
    #[arg(long)]
    pub report_dir: Option<PathBuf>,
    /// Seconds between progress lines when stderr is not a terminal (cron logs; at most 86400).
    #[arg(long, default_value_t = 10.0, value_parser = seconds_up_to::<86_400>)]
    pub progress_every: f64,
    /// Price in USD per million input tokens, for cost estimates [default: 0, or P_PRICE_IN].
    #[arg(long)]
    pub price_in: Option<f64>,
    /// Price in USD per million output tokens [default: 0, or P_PRICE_OUT].
    #[arg(long)]
    pub price_out: Option<f64>,
}

#[derive(Debug, Args, Clone)]
pub struct TestKeysArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Print JSON (one object per key) on stdout.
    #[arg(long)]
    pub json: bool,
    /// Send a one-token chat request instead of listing models.
    #[arg(long)]
    pub chat: bool,
}

#[derive(Debug, Args, Clone)]
pub struct DashboardArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Address and port to listen on (port 0: any free port, printed at start-up).
    #[arg(long, default_value = "127.0.0.1:8484")]
    pub listen: String,
    /// Secret for the disable, enable and rotate buttons (at least 16 characters); needed to listen beyond 127.0.0.1 [default: a random one, printed at start-up].
    #[arg(long, env = "AUTOLABEL_DASHBOARD_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Every configured key: name, masked key, priority, status, use of each quota, health, last use and error.
    List(KeysArgs),
    /// Take key N out of service (in every run on this state) until enabled, or for a while.
    Disable(KeysDisableArgs),
    /// Put key N back in service.
    Enable(KeysIndexArgs),
    /// Forget key N's counts of a period and the cooldown or exhaustion it caused (e.g. after the provider raised a quota).
    Reset(KeysResetArgs),
    /// Make the key each running run uses now step aside for a minute's cooldown.
    Rotate(KeysArgs),
}

/// Flags of every `keys` command.
#[derive(Debug, Args, Clone)]
pub struct KeysArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Print JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args, Clone)]
pub struct KeysIndexArgs {
    /// The key's index, as `autolabel keys list` shows it (1 = the first key).
    pub index: usize,
    #[command(flatten)]
    pub keys: KeysArgs,
}

#[derive(Debug, Args, Clone)]
pub struct KeysDisableArgs {
    /// The key's index, as `autolabel keys list` shows it (1 = the first key).
    pub index: usize,
    /// Only for this long, e.g. 90s, 30m, 2h, 1d, 1h30m (at most 366 days) [default: until enabled].
    #[arg(long = "for", value_name = "DURATION", value_parser = parse_duration)]
    pub for_: Option<std::time::Duration>,
    /// Why, for the list and the rotation log (at most 200 characters).
    #[arg(long, default_value = "disabled by hand")]
    pub reason: String,
    #[command(flatten)]
    pub keys: KeysArgs,
}

#[derive(Debug, Args, Clone)]
pub struct KeysResetArgs {
    /// The key's index, as `autolabel keys list` shows it (1 = the first key).
    pub index: usize,
    /// Forget the last minute's counts and a cooldown.
    #[arg(long, group = "what")]
    pub minute: bool,
    /// Forget today's counts and an exhaustion.
    #[arg(long, group = "what")]
    pub day: bool,
    /// Forget this month's counts and an exhaustion.
    #[arg(long, group = "what")]
    pub month: bool,
    /// Forget every count and any cooldown, exhaustion or invalid mark (the default).
    #[arg(long, group = "what")]
    pub all: bool,
    #[command(flatten)]
    pub keys: KeysArgs,
}

impl KeysResetArgs {
    pub fn what(&self) -> &'static str {
        match (self.minute, self.day, self.month) {
            (true, _, _) => "minute",
            (_, true, _) => "day",
            (_, _, true) => "month",
            _ => "all",
        }
    }
}

/// A duration like `90s`, `30m`, `2h`, `1d`, `1w` or `1h30m`, at most 366 days.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let bad = || format!("'{s}' is not a duration like 90s, 30m, 2h, 1d or 1h30m");
    let mut total: u64 = 0;
    let mut number = String::new();
    let mut any = false;
    for c in s.trim().chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 7 * 86_400,
            _ => return Err(bad()),
        };
        let n: u64 = number.parse().map_err(|_| bad())?;
        number.clear();
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
        any = true;
    }
    if !number.is_empty() || !any || total == 0 {
        return Err(bad());
    }
    if total > 366 * 86_400 {
        return Err(format!("'{s}' is longer than 366 days"));
    }
    Ok(std::time::Duration::from_secs(total))
}

#[derive(Debug, Args, Clone)]
pub struct UsageArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Days of history to show, today included (1 to 3650).
    #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub days: u32,
    /// Print JSON on stdout (stable format, see README).
    #[arg(long)]
    pub json: bool,
    /// Also write the dashboard's page with this data embedded (a static, self-contained snapshot) to FILE.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
}

/// `--batch-size`: a number of texts per request, or `auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchSize {
    Fixed(usize),
    /// Chosen at the start of a run from the limits in force and the input's texts.
    Auto,
}

fn parse_batch_size(s: &str) -> Result<BatchSize, String> {
    if s.trim().eq_ignore_ascii_case("auto") {
        return Ok(BatchSize::Auto);
    }
    match s.trim().parse::<usize>() {
        Ok(n) if (1..=100).contains(&n) => Ok(BatchSize::Fixed(n)),
        _ => Err(format!(
            "'{s}' is neither a number of texts from 1 to 100 nor auto"
        )),
    }
}

/// The providers of `--provider`: one name (as before), or several for one pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Providers(pub Vec<ProviderName>);

impl Providers {
    /// More than one provider: settings that differ by provider come from `P_` variables.
    pub fn is_pool(&self) -> bool {
        self.0.len() > 1
    }
}

fn parse_providers(s: &str) -> Result<Providers, String> {
    let mut names = Vec::new();
    for part in s.split(',').map(str::trim) {
        let name = ProviderName::from_str(part, true).map_err(|_| {
            format!("'{part}' is not a provider (groq, gemini, openai, xai, openrouter, ollama)")
        })?;
        if names.contains(&name) {
            return Err(format!("'{part}' is named twice"));
        }
        names.push(name);
    }
    Ok(Providers(names))
}

/// Seconds from 0 to `MAX`: anything else (negative, NaN, infinite, huge) is refused with
/// exit 2 naming the flag, before it can reach a `Duration`.
fn seconds_up_to<const MAX: u32>(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a number of seconds"))?;
    if !v.is_finite() || v < 0.0 || v > MAX as f64 {
        return Err(format!("'{s}' must be between 0 and {MAX} seconds"));
    }
    Ok(v)
}

/// A percentage from 0 to 100.
fn percent(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .trim_end_matches('%')
        .parse()
        .map_err(|_| format!("'{s}' is not a percentage"))?;
    if !v.is_finite() || !(0.0..=100.0).contains(&v) {
        return Err(format!("'{s}' must be between 0 and 100"));
    }
    Ok(v)
}

fn store_timeout_seconds(s: &str) -> Result<f64, String> {
    let v = seconds_up_to::<3600>(s)?;
    if v < 1.0 {
        return Err(format!("'{s}' must be at least 1 second"));
    }
    Ok(v)
}

fn timeout_seconds(s: &str) -> Result<f64, String> {
    let v = seconds_up_to::<3600>(s)?;
    if v < 0.001 {
        return Err(format!("'{s}' must be more than 0 seconds"));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn durations_for_keys_disable() {
        let secs = |s: &str| parse_duration(s).map(|d| d.as_secs());
        assert_eq!(secs("90s"), Ok(90));
        assert_eq!(secs("1h30m"), Ok(5400));
        assert_eq!(secs("2d"), Ok(172_800));
        for bad in [
            "",
            "10",
            "5x",
            "0m",
            "h",
            "-1h",
            "367d",
            "99999999999999999999w",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn label_flags_work_with_and_without_the_subcommand() {
        let cli =
            Cli::try_parse_from(["autolabel", "--input", "a.csv", "--output", "b.csv"]).unwrap();
        assert!(cli.command.is_none());
        assert_eq!(cli.label.delay, 2.5);
        let cli =
            Cli::try_parse_from(["autolabel", "label", "-i", "a.csv", "-o", "b.csv"]).unwrap();
        assert!(matches!(cli.command, Some(Command::Label(_))));
        let cli = Cli::try_parse_from(["autolabel", "test-keys", "--json"]).unwrap();
        assert!(matches!(cli.command, Some(Command::TestKeys(_))));
        assert!(Cli::try_parse_from(["autolabel", "--input", "a.csv"]).is_err());
    }

    #[test]
    fn batch_size_is_a_number_from_1_to_100_or_auto() {
        let parse = |v: &str| {
            Cli::try_parse_from(["autolabel", "-i", "a", "-o", "b", "--batch-size", v])
                .map(|c| c.label.batch_size)
        };
        let default = Cli::try_parse_from(["autolabel", "-i", "a", "-o", "b"]).unwrap();
        assert_eq!(default.label.batch_size, BatchSize::Fixed(1));
        assert_eq!(parse("20").unwrap(), BatchSize::Fixed(20));
        assert_eq!(parse("100").unwrap(), BatchSize::Fixed(100));
        assert_eq!(parse("auto").unwrap(), BatchSize::Auto);
        assert_eq!(parse("AUTO").unwrap(), BatchSize::Auto);
        for bad in ["0", "101", "-1", "auto5", "", "1.5"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn provider_is_one_name_or_a_list_without_repeats() {
        let parse = |v: &str| {
            Cli::try_parse_from(["autolabel", "-i", "a", "-o", "b", "--provider", v])
                .map(|c| c.label.common.provider)
        };
        assert_eq!(
            parse("gemini").unwrap(),
            Providers(vec![ProviderName::Gemini])
        );
        let pool = parse("groq, Gemini,openrouter").unwrap();
        assert!(pool.is_pool());
        assert_eq!(
            pool.0,
            [
                ProviderName::Groq,
                ProviderName::Gemini,
                ProviderName::Openrouter
            ]
        );
        for bad in ["groq,groq", "groq,", "mistral", ""] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
