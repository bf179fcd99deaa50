//! `autolabel eval`: reads a labeled CSV, measures its labels against the gold column,
//! prints the report and, when asked, writes the disagreeing rows. The input is only
//! read.

use crate::cli::EvalArgs;
use crate::error::{Error, Outcome, Result};
use crate::eval::{errors, read, render, Report};

pub fn run(args: &EvalArgs) -> Result<Outcome> {
    if let Some(path) = &args.errors {
        crate::safefs::refuse_input(&args.input, path, "--errors")?;
    }
    let table = read::read(
        &args.input,
        &read::Spec {
            gold_column: &args.gold_column,
            label_column: &args.label_column,
            status_column: args.status_column.as_deref(),
            confidence_column: args.confidence_column.as_deref(),
            keep_disagreeing: args.errors.is_some(),
        },
    )?;
    if table.rows.is_empty() {
        return Err(nothing_to_evaluate(&table));
    }
    let report = Report::of(&table, args.bootstrap, args.seed);
    if args.json {
        crate::outln!("{:#}", render::json(&table, &report));
    } else {
        crate::outln!("{}", render::text(&table, &report));
    }
    if let Some(path) = &args.errors {
        let n = errors::write(&table, path)?;
        eprintln!(
            "{}: {} whose labels disagree",
            path.display(),
            crate::ui::count(n as u64, "row")
        );
    }
    Ok(Outcome::Complete)
}

fn nothing_to_evaluate(table: &read::Table) -> Error {
    Error::Input(format!(
        "{}: no row to evaluate ({} without gold in '{}', {} fallback, {} without label); \
         fill in the gold column",
        table.path.display(),
        table.skipped_no_gold,
        table.gold_column,
        table.fallback,
        table.skipped_no_label
    ))
}
