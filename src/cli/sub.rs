//! The flags of the subcommands other than `label`: each takes only what it uses.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::{
    values::parse_date, values::parse_duration, CommonArgs, Providers, DEFAULT_KEEP_DAYS,
    DEFAULT_TIMEOUT,
};
use super::{values::parse_providers, DETAIL, KEYS, STATE};

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
    #[arg(long, env = "AUTOLABEL_STATE", help_heading = STATE)]
    pub state: Option<String>,
    /// Prefix of every key autolabel keeps in Redis (with --state redis://…).
    #[arg(long, default_value = crate::store::DEFAULT_REDIS_PREFIX, env = "AUTOLABEL_REDIS_PREFIX", help_heading = STATE)]
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

/// The flags of the commands that look at the keys and the state without sending a
/// label request (`usage`, `keys`, `dashboard`): which provider's keys, from which env
/// file, and where the state is. No model, base URL or timeout: they send nothing.
#[derive(Debug, Args, Clone)]
pub struct ViewArgs {
    /// Provider: groq, gemini, openai, xai, openrouter, ollama, or a comma-separated list.
    #[arg(long, default_value = "groq", env = "AUTOLABEL_PROVIDER", value_parser = parse_providers, help_heading = KEYS)]
    pub provider: Providers,
    /// Env file holding the keys (dotenv format; the process environment is read too).
    #[arg(long, default_value = "envs/.envs", env = "AUTOLABEL_ENV_FILE", help_heading = KEYS)]
    pub env_file: PathBuf,
    /// State: a SQLite file, or a Redis server (redis://[:password@]host:port/db, rediss://
    /// for TLS) [default: autolabel/state.sqlite3 in the user's data dir].
    #[arg(long, env = "AUTOLABEL_STATE", help_heading = STATE)]
    pub state: Option<String>,
    /// Prefix of every key autolabel keeps in Redis (with --state redis://…).
    #[arg(long, default_value = crate::store::DEFAULT_REDIS_PREFIX, env = "AUTOLABEL_REDIS_PREFIX", help_heading = STATE)]
    pub redis_prefix: String,
    /// Start an empty state file when --state names one that does not exist (without it,
    /// a mistyped --state is exit 2, not a new empty state; AUTOLABEL_STATE is opened as
    /// runs open it).
    #[arg(long, help_heading = STATE)]
    pub create: bool,
    /// Print only errors.
    #[arg(long, short = 'q', global = true, help_heading = DETAIL)]
    pub quiet: bool,
    /// More detail: where each limit came from, every key-state change (-vv: every request).
    #[arg(long, short = 'v', action = clap::ArgAction::Count, global = true, help_heading = DETAIL)]
    pub verbose: u8,
}

impl ViewArgs {
    /// Whether `--state` was typed on this command line (not taken from
    /// `AUTOLABEL_STATE`, which the runs that create the state share): a state named so
    /// must exist unless `--create` is given.
    pub fn state_typed(&self) -> bool {
        self.state.is_some()
            && std::env::var("AUTOLABEL_STATE").ok().as_deref() != self.state.as_deref()
    }

    /// As `config` reads them. The model names whose limits are shown; it comes from
    /// the environment as for a run (AUTOLABEL_MODEL, or P_MODEL in the env file), so a
    /// report shows the limits the runs work under.
    pub fn common(&self) -> CommonArgs {
        CommonArgs {
            provider: self.provider.clone(),
            base_url: None,
            model: std::env::var("AUTOLABEL_MODEL")
                .ok()
                .filter(|m| !m.trim().is_empty()),
            env_file: self.env_file.clone(),
            state: self.state.clone(),
            redis_prefix: self.redis_prefix.clone(),
            timeout: DEFAULT_TIMEOUT,
            quiet: self.quiet,
            verbose: self.verbose,
            assume_keys: None,
        }
    }
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
    /// Address and port to listen on (port 0: any free port, printed at start-up).
    #[arg(long, default_value = "127.0.0.1:8484")]
    pub listen: String,
    /// Secret for the disable, enable and rotate buttons (at least 16 characters); needed to listen beyond 127.0.0.1 [default: a random one, printed at start-up].
    #[arg(long, env = "AUTOLABEL_DASHBOARD_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The token stops working this long after start-up (e.g. 8h): reads beyond loopback, actions and the sessions it opened are then refused.
    #[arg(long, value_parser = parse_duration)]
    pub token_ttl: Option<std::time::Duration>,
    /// Serve HTTPS with this certificate chain (PEM); needs --tls-key.
    #[arg(long, requires = "tls_key", value_name = "PEM")]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, requires = "tls_cert", value_name = "PEM")]
    pub tls_key: Option<PathBuf>,
    /// How long a client may take to send a request's headers, and how long an idle connection is kept open.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub client_timeout: std::time::Duration,
    /// Not for users: the window login attempts are counted over (5 per address), shortened
    /// by tests so they need not wait a minute for it to end.
    #[arg(long, hide = true, default_value = "60s", value_parser = parse_duration)]
    pub login_window: std::time::Duration,
    /// Open connections at most (lowered to fit `ulimit -n`); at the cap, the oldest idle one is closed to let a new one in.
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub max_connections: u32,
    #[command(flatten)]
    pub alerts: super::AlertArgs,
    #[command(flatten)]
    pub view: ViewArgs,
}

impl DashboardArgs {
    pub fn common(&self) -> CommonArgs {
        self.view.common()
    }
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
    /// Rotate key N out for a minute (runs move to another key, it comes back by itself); without N, the key each running run uses now steps aside for a minute.
    Rotate(KeysRotateArgs),
}

/// Flags of every `keys` command.
#[derive(Debug, Args, Clone)]
pub struct KeysArgs {
    /// Print JSON on stdout.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub view: ViewArgs,
}

impl KeysArgs {
    pub fn common(&self) -> CommonArgs {
        self.view.common()
    }
}

#[derive(Debug, Args, Clone)]
pub struct KeysIndexArgs {
    /// The key's index, as `autolabel keys list` shows it (1 = the first key).
    pub index: usize,
    #[command(flatten)]
    pub keys: KeysArgs,
}

#[derive(Debug, Args, Clone)]
pub struct KeysRotateArgs {
    /// The key's index, as `autolabel keys list` shows it (1 = the first key) [default: the key each running run uses now].
    pub index: Option<usize>,
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

#[derive(Debug, Args, Clone)]
pub struct UsageArgs {
    /// Days of history to show, today included (1 to 3650).
    #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub days: u32,
    /// Instead of --days: the first UTC day of the period, YYYY-MM-DD (with --to).
    #[arg(long, value_name = "DATE", requires = "to", conflicts_with = "days", value_parser = parse_date)]
    pub from: Option<String>,
    /// The last UTC day of the period, YYYY-MM-DD, included (with --from).
    #[arg(long, value_name = "DATE", requires = "from", value_parser = parse_date)]
    pub to: Option<String>,
    /// Print JSON on stdout (stable format, see README).
    #[arg(long, conflicts_with = "csv")]
    pub json: bool,
    /// Print CSV on stdout instead: one row per key and UTC day it was used on (README).
    #[arg(long)]
    pub csv: bool,
    /// With --csv: print the error log of the period instead (one row per failed request).
    #[arg(long, requires = "csv")]
    pub errors: bool,
    /// Also write the dashboard's page with this data embedded (a static, self-contained snapshot) to FILE.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    #[command(flatten)]
    pub view: ViewArgs,
}

impl UsageArgs {
    pub fn common(&self) -> CommonArgs {
        self.view.common()
    }
}

#[derive(Debug, Args, Clone)]
pub struct ManArgs {
    /// Write every page (autolabel.1 and one per command, e.g. autolabel-keys-list.1) into
    /// DIR instead of printing the main page.
    #[arg(long, value_name = "DIR")]
    pub all: Option<PathBuf>,
}

#[derive(Debug, Args, Clone)]
pub struct HelpArgs {
    /// The command (and its subcommand) to explain; none: autolabel itself.
    #[arg(value_name = "COMMAND")]
    pub command: Vec<String>,
}
