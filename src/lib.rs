//! autolabel: label the sentiment of every row of a CSV with LLM chat APIs, spreading the
//! work over several API keys within their quotas, and never losing a row.
//!
//! `run` is the whole program; `main.rs` only maps its result to an exit code.

pub mod budget;
pub mod cli;
pub mod config;
pub mod csvio;
pub mod csvscan;
pub mod error;
pub mod keys;
pub mod label;
pub mod limits;
pub mod normalize;
pub mod pacing;
pub mod pipeline;
pub mod prompt;
pub mod provider;
pub mod report;
pub mod signals;
pub mod state;
pub mod testkeys;
pub mod timeutil;
pub mod ui;

use cli::{Cli, Command};
use config::{Config, LabelConfig};
use error::{Outcome, Result};
use provider::defaults::Limits;

pub async fn run(cli: Cli) -> Result<Outcome> {
    match cli.command {
        None => label::run(LabelConfig::resolve(&cli.label)?).await,
        Some(Command::Label(args)) => label::run(LabelConfig::resolve(&args)?).await,
        Some(Command::TestKeys(args)) => {
            let cfg = Config::resolve(&args.common, (None, None), Limits::default(), None)?;
            testkeys::run(&cfg, args.json, args.chat).await
        }
        Some(Command::Usage(args)) => {
            let mut cfg = Config::resolve_for_report(&args.common)?;
            let state = state::State::open(&cfg.state_path)?;
            cfg.load_learned(&state)?;
            let value = report::usage_value(&cfg, &state, args.days.max(1))?;
            if let Some(path) = &args.html {
                std::fs::write(path, report::usage_html(&value))
                    .map_err(|e| error::Error::io(format!("--html {}", path.display()), e))?;
            }
            if args.json {
                crate::outln!(
                    "{}",
                    serde_json::to_string_pretty(&value).unwrap_or_default()
                );
            } else {
                report::print_usage(&value, &cfg.state_path);
            }
            Ok(Outcome::Complete)
        }
        Some(Command::State(cmd)) => state_command(cmd),
        Some(Command::Completions { shell }) => {
            // Into a buffer first: the generator panics on a write error (a closed pipe).
            let mut script = Vec::new();
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "autolabel", &mut script);
            print_bytes(&script, "the completion script")
        }
        Some(Command::Man) => {
            let mut page = Vec::new();
            clap_mangen::Man::new(<Cli as clap::CommandFactory>::command())
                .render(&mut page)
                .map_err(|e| error::Error::io("cannot render the manual page", e))?;
            print_bytes(&page, "the manual page")
        }
    }
}

/// Writes generated text to stdout; a closed pipe or full disk is an error, not a panic.
fn print_bytes(bytes: &[u8], what: &str) -> Result<Outcome> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)
        .and_then(|_| out.flush())
        .map_err(|e| error::Error::io(format!("cannot write {what}"), e))?;
    Ok(Outcome::Complete)
}

/// `autolabel state prune|vacuum`: prints what it did on stdout.
fn state_command(cmd: cli::StateCommand) -> Result<Outcome> {
    let file = match &cmd {
        cli::StateCommand::Prune(a) => &a.file,
        cli::StateCommand::Vacuum(a) => a,
    };
    let path = state::resolve_path(file.state.as_deref())?;
    if !path.exists() {
        return Err(error::Error::Usage(format!(
            "--state {}: no such state file",
            path.display()
        )));
    }
    let state = state::State::open(&path)?;
    match cmd {
        cli::StateCommand::Prune(a) => {
            let pruned = state.prune(a.keep_days, std::time::SystemTime::now())?;
            if a.keep_days == 0 {
                crate::outln!(
                    "{}: --keep-days 0 keeps everything; nothing removed",
                    path.display()
                );
            } else {
                crate::outln!("{}: {pruned}", path.display());
            }
        }
        cli::StateCommand::Vacuum(_) => {
            let c = state.vacuum()?;
            crate::outln!(
                "{}: {} bytes before, {} after ({} freed)",
                path.display(),
                c.before,
                c.after,
                c.before.saturating_sub(c.after)
            );
        }
    }
    Ok(Outcome::Complete)
}
