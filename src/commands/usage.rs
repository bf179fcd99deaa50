//! `autolabel usage`: what each provider's keys used, day by day, as text, JSON or a
//! static HTML snapshot of the dashboard.

use crate::cli::UsageArgs;
use crate::config::Config;
use crate::dashboard;
use crate::error::{Error, Outcome, Result};
use crate::report::{self, Span, UsageReport};
use crate::store::StateLocation;

pub fn run(args: &UsageArgs) -> Result<Outcome> {
    let mut pool = Config::resolve_for_report(&args.common())?;
    let location = pool[0].state.clone();
    let span = span(args, std::time::SystemTime::now())?;
    let state = super::open_existing(&location, &args.view)?;
    let mut reports = Vec::new();
    for cfg in &mut pool {
        cfg.load_learned(&state)?;
        reports.push(report::usage_report(cfg, &state, &span)?);
    }
    if let Some(path) = &args.html {
        let page = dashboard::api::snapshot_page(&pool, &state, &reports, &span)?;
        std::fs::write(path, page)
            .map_err(|e| Error::io(format!("--html {}", path.display()), e))?;
    }
    if args.csv {
        print_csv(args, &span, &pool, &state, &reports)?;
    } else {
        print(&reports, args.json, &location);
    }
    Ok(Outcome::Complete)
}

/// The period asked for at `now`: `--from`/`--to` (clap saw that both or neither are
/// given, and not with `--days`), else the last `--days`.
fn span(args: &UsageArgs, now: std::time::SystemTime) -> Result<Span> {
    match (&args.from, &args.to) {
        (Some(from), Some(to)) => Span::range(from, to, ("--from", "--to")).map_err(Error::Usage),
        _ => Ok(Span::last_days(now, args.days.max(1))),
    }
}

/// `--csv`: the usage per key and day, or with `--errors` the pool's error log.
fn print_csv(
    args: &UsageArgs,
    span: &Span,
    pool: &[Config],
    state: &crate::store::State,
    reports: &[UsageReport],
) -> Result<()> {
    let text = if args.errors {
        report::csv_export::errors_csv(&dashboard::api::errors_all(pool, state, span)?)
    } else {
        report::csv_export::usage_csv(reports)
    };
    crate::outln!("{}", text.trim_end());
    Ok(())
}

fn print(reports: &[UsageReport], json: bool, location: &StateLocation) {
    if json {
        // One provider: its object, as always; a pool: one object per provider.
        let text = match reports {
            [one] => serde_json::to_string_pretty(one),
            all => serde_json::to_string_pretty(&report::PoolReport { providers: all }),
        };
        crate::outln!("{}", text.unwrap_or_default());
    } else {
        for r in reports {
            report::print_usage(r, location);
        }
    }
}
