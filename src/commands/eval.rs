//! `autolabel eval`: reads a labeled CSV, measures its labels against the gold column,
//! prints the report and, when asked, writes the disagreeing rows. The input is only
//! read.

use crate::cli::EvalArgs;
use crate::error::{Error, Outcome, Result};
use crate::eval::{errors, read, render, Report};
use crate::fewshot;

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
    if let Some(examples) = &args.examples {
        refuse_examples(&table, examples, args.text_column.as_deref())?;
    }
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
        // Where the rows went, not a result: -q leaves it out.
        if !args.quiet {
            eprintln!(
                "{}: {} whose labels disagree",
                path.display(),
                crate::ui::count(n as u64, "row")
            );
        }
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

/// Exit 2 naming the first row of the input whose text is also an example's.
fn refuse_examples(
    table: &read::Table,
    examples: &std::path::Path,
    text_column: Option<&str>,
) -> Result<()> {
    let at = fewshot::text_column_of(&table.path, &table.headers, text_column)?;
    let texts = fewshot::texts(examples, text_column)?;
    let set = texts.iter().map(String::as_str).collect();
    let found = fewshot::overlap(&set, &table.path, table.delimiter, at)?;
    match found.first() {
        None => Ok(()),
        Some(first) => Err(Error::Input(fewshot::overlap_message(
            examples,
            &table.path,
            &found,
            first,
        ))),
    }
}
