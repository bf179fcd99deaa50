//! `autolabel tune`: draw the gold sample, say what it will spend (and ask for `--yes`
//! on a terminal), label it once per combination, measure each with `eval`'s metrics,
//! rank by cost and recommend.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use crate::cli::TuneArgs;
use crate::error::{Error, Outcome, Result};
use crate::eval::{read, Report};
use crate::tune::table::{self, Ci95};
use crate::tune::{self as tuning, Combo};

pub async fn run(args: &TuneArgs) -> Result<Outcome> {
    if !(0.0..=1.0).contains(&args.tolerance) {
        return Err(Error::Usage(format!(
            "--tolerance {} is not a share from 0 to 1 (0.02 for two points of accuracy)",
            args.tolerance
        )));
    }
    let dir = work_dir()?;
    let result = tune_in(args, &dir).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn tune_in(args: &TuneArgs, dir: &Path) -> Result<Outcome> {
    let sample = tuning::sample::draw(
        &args.input,
        &args.gold_column,
        args.text_column.as_deref(),
        args.sample,
        args.seed,
        dir,
    )?;
    let (combos, spend) = tuning::plan(args, &sample, dir)?;
    eprintln!(
        "tune: {} rows of {}, {} combinations: {spend}",
        sample.texts.len(),
        args.input.display(),
        combos.len()
    );
    if std::io::stdout().is_terminal() && !args.yes && spend.requests.1 > 0 {
        return Err(Error::Usage(
            "tune spends the requests above; pass --yes to go ahead".into(),
        ));
    }
    let mut results = Vec::new();
    for combo in &combos {
        eprintln!(
            "tune: batch size {}, {} ...",
            combo.batch,
            crate::ui::count(u64::from(combo.votes), "vote")
        );
        match crate::commands::label::run(&combo.args).await? {
            Outcome::Complete | Outcome::WithFallbacks => {}
            other => return Ok(other),
        }
        results.push(measure(args, combo)?);
    }
    table::rank(&mut results);
    let rec = table::recommend(&results, args.tolerance);
    if args.json {
        crate::outln!("{:#}", table::json(&results, rec));
    } else {
        crate::outln!("{}", table::text(&results, rec, args.tolerance));
    }
    Ok(Outcome::Complete)
}

/// One combination's output against the gold column.
fn measure(args: &TuneArgs, combo: &Combo) -> Result<table::Result> {
    let output = combo.args.output.as_deref().expect("tune sets --output");
    let t = read::read(
        output,
        &read::Spec {
            gold_column: "gold",
            label_column: &combo.label_column,
            status_column: Some("status"),
            confidence_column: None,
            keep_disagreeing: false,
        },
    )?;
    let report = Report::of(&t, 1000, args.seed);
    let votes = tuning::mean_votes(output)?;
    let b = combo.batch as usize;
    let day = crate::budget::rows_per_day(&combo.limits, b, combo.request_tokens).rows;
    Ok(table::Result {
        batch_size: combo.batch,
        votes: combo.votes,
        rows: t.rows.len(),
        accuracy: report.scores.accuracy,
        macro_f1: report.scores.macro_f1,
        ci95: Ci95 {
            accuracy: report.ci95.as_ref().map(|c| c.accuracy),
            macro_f1: report.ci95.as_ref().map(|c| c.macro_f1),
        },
        tokens_per_row: combo.request_tokens / b as f64 * votes,
        rows_per_key_day: day.map(|d| d / votes),
        cost_rank: 0,
    })
}

/// A directory of the tune's own for the sample and the outputs (removed at the end),
/// readable by this user only.
fn work_dir() -> Result<PathBuf> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let dir = std::env::temp_dir().join(format!("autolabel-tune-{}-{nanos}", std::process::id()));
    let mut b = std::fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(&dir)
        .map_err(|e| Error::io(format!("{}: cannot create", dir.display()), e))?;
    Ok(dir)
}
