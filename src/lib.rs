//! autolabel: label the sentiment of every row of a CSV with LLM chat APIs, spreading the
//! work over several API keys within their quotas, and never losing a row.
//!
//! `run` is the whole program; `main.rs` only maps its result to an exit code.

pub mod budget;
pub mod cli;
pub mod config;
pub mod csvio;
pub mod csvscan;
pub mod dashboard;
pub mod docs;
pub mod error;
pub mod hex;
pub mod keys;
pub mod keyscmd;
pub mod label;
pub mod limits;
pub mod normalize;
pub mod pacing;
pub mod pipeline;
pub mod prompt;
pub mod provider;
pub mod report;
pub mod signals;
pub mod statecmd;
pub mod store;
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
            let pool = Config::resolve_pool(&args.common, (None, None), Limits::default(), None)?;
            testkeys::run(&pool, args.json, args.chat).await
        }
        Some(Command::Usage(args)) => {
            let mut pool = Config::resolve_for_report(&args.common())?;
            let location = pool[0].state.clone();
            let state = store::State::open_at(&location)?;
            let mut reports = Vec::new();
            for cfg in &mut pool {
                cfg.load_learned(&state)?;
                reports.push(report::usage_report(cfg, &state, args.days.max(1))?);
            }
            if let Some(path) = &args.html {
                let page = dashboard::api::snapshot_page(&pool, &state, &reports)?;
                std::fs::write(path, page)
                    .map_err(|e| error::Error::io(format!("--html {}", path.display()), e))?;
            }
            if args.json {
                // One provider: its object, as always; a pool: one object per provider.
                let text = match reports.as_slice() {
                    [one] => serde_json::to_string_pretty(one),
                    all => serde_json::to_string_pretty(&report::PoolReport { providers: all }),
                };
                crate::outln!("{}", text.unwrap_or_default());
            } else {
                for r in &reports {
                    report::print_usage(r, &location);
                }
            }
            Ok(Outcome::Complete)
        }
        Some(Command::State(cmd)) => statecmd::run(cmd),
        Some(Command::Keys(cmd)) => keyscmd::run(cmd),
        Some(Command::Dashboard(args)) => dashboard::run(&args).await,
        Some(Command::Completions { shell }) => docs::completions(shell),
        Some(Command::Man(args)) => docs::man_page(args.all.as_deref()),
        Some(Command::Help(args)) => docs::help(&args.command),
    }
}
