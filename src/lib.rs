//! autolabel: label the sentiment of every row of a CSV with LLM chat APIs, spreading the
//! work over several API keys within their quotas, and never losing a row.
//!
//! `run` is the whole program; `main.rs` only maps its result to an exit code.

pub mod alerts;
pub mod budget;
pub mod cli;
pub mod columns;
pub mod commands;
pub mod config;
pub mod control;
pub mod csvio;
pub mod csvscan;
pub mod dashboard;
pub mod error;
pub mod eval;
pub mod fewshot;
pub mod hex;
pub mod keys;
pub mod limits;
pub mod normalize;
pub mod output;
pub mod pacing;
pub mod pipeline;
pub mod prompt;
pub mod provider;
pub mod report;
pub mod safefs;
pub mod signals;
pub mod store;
pub mod timeutil;
pub mod tune;
pub mod ui;
pub mod votes;

use cli::{Cli, Command};
use commands::{docs, label, test_keys, usage};
use error::{Outcome, Result};

/// Runs the command the arguments name (labeling when they name none).
pub async fn run(cli: Cli) -> Result<Outcome> {
    match cli.command {
        None => label::run(&cli.label).await,
        Some(Command::Label(args)) => label::run(&args).await,
        Some(Command::Eval(args)) => commands::eval::run(&args),
        Some(Command::Tune(args)) => commands::tune::run(&args).await,
        Some(Command::TestKeys(args)) => test_keys::run(&args).await,
        Some(Command::Usage(args)) => usage::run(&args),
        Some(Command::State(cmd)) => commands::state::run(cmd),
        Some(Command::Keys(cmd)) => commands::keys::run(cmd),
        Some(Command::Dashboard(args)) => commands::dashboard::run(&args).await,
        Some(Command::Completions { shell }) => docs::completions(shell),
        Some(Command::Man(args)) => docs::man_page(args.all.as_deref()),
        Some(Command::Help(args)) => docs::help(&args.command),
    }
}
