//! `autolabel [label]`: check the input, open the state, then (unless `--dry-run`) lock
//! and plan the output, run the pipeline over the rows, make the output durable, and
//! report.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::budget;
use crate::cli::{BatchSize, LabelArgs};
use crate::config::LabelConfig;
use crate::csvio::{self, InputInfo, OutputLayout};
use crate::error::{Error, Outcome, Result};
use crate::fewshot::{self, Shots};
use crate::output::Output;
use crate::pipeline::control::Verdict;
use crate::pipeline::setup::{build_labeler, cache_scope, log_limits};
use crate::pipeline::spec::Labeler;
use crate::pipeline::{self, Finished, PipelineSetup, RunCounts};
use crate::prompt::Prompter;
use crate::report::{self, summary::past_limit_note};
use crate::signals::StopSignal;
use crate::store::State;
use crate::ui::Ui;
use crate::votes::VoteColumns;

pub async fn run(args: &LabelArgs) -> Result<Outcome> {
    let mut cfg = LabelConfig::resolve(args)?;
    let ui = Arc::new(Ui::new(
        cfg.base.quiet,
        cfg.base.verbose,
        cfg.progress_every,
    ));
    let info = inspect_input(&cfg)?;
    let state = open_state(&mut cfg, &ui)?;
    let prompter = prompter(&cfg, args, &info, &ui)?;
    let batch_size = batch_size(&cfg, &prompter, &info, &ui);
    if cfg.dry_run {
        // Per provider: a label is served from the cache only to the model that gave it.
        let scopes: Vec<_> = cfg.pool().map(|c| cache_scope(c, &prompter)).collect();
        report::dry_run(&cfg, &info, &state, &scopes, &prompter, batch_size)?;
        return Ok(Outcome::Complete);
    }
    prune_state(&cfg, &state, &ui);
    let output = Output::prepare(&cfg.output, cfg.overwrite, &info, layout(&cfg), &state)?;
    if let Some(note) = output.leftover_note() {
        ui.info(&note);
    }
    if output.done_already() {
        return Ok(nothing_to_do(&cfg, &info, &output, &ui));
    }
    // Everything that writes: on a failure (a full disk, say) the output is put back
    // the way a resume expects it, and a rewrite's temp file is removed.
    // The alerts read the state through a handle of their own: a look never waits for,
    // or delays, the run's own use of it.
    let watched = State::open_at(&cfg.base.state).map_or_else(|_| state.clone(), Arc::new);
    let monitor = crate::alerts::watch(
        cfg.pool().cloned().collect(),
        watched,
        (
            crate::alerts::Thresholds::from_args(&args.alerts),
            crate::alerts::monitor::EVERY_RUN,
        ),
        args.alerts.alert_webhook.clone(),
        ui.clone(),
    );
    let labeled = label_rows(&cfg, &ui, &state, prompter, &info, &output, batch_size).await;
    // A last look at the state (the end may raise an alert), then a few seconds at most
    // for the webhook's queue.
    monitor.finish().await;
    let (labeler, finished, elapsed) = labeled.inspect_err(|_| output.recover(&info, &ui))?;
    write_review(&cfg, &info, &ui)?;
    let outcome = report_end(&cfg, &ui, &state, &labeler, finished, elapsed);
    drop(output);
    outcome
}

/// Reads the whole input once: nothing is sent or written before it passes.
pub(crate) fn inspect_input(cfg: &LabelConfig) -> Result<InputInfo> {
    let info = csvio::inspect_input(
        &cfg.input,
        cfg.text_column.as_deref(),
        &cfg.label_column,
        cfg.replace_label_column,
        cfg.limit,
    )?;
    info.check_layout(&layout(cfg))?;
    Ok(info)
}

/// The output's columns after the input's.
fn layout(cfg: &LabelConfig) -> OutputLayout {
    OutputLayout {
        label_column: cfg.label_column.clone(),
        status_column: cfg.status_column.clone(),
        model_column: cfg.model_column.clone(),
        confidence_column: cfg.votes.confidence_column.clone(),
        votes_column: cfg.votes.votes_column.clone(),
    }
}

/// Opens the state, and takes from it what the providers learned in earlier runs.
fn open_state(cfg: &mut LabelConfig, ui: &Ui) -> Result<Arc<State>> {
    let state = State::open_at(&cfg.base.state)?;
    state.keep_cache_days(cfg.keep_days);
    let state = Arc::new(state);
    for member in cfg.pool_mut() {
        member.load_learned(&state)?;
    }
    for member in cfg.pool() {
        log_limits(ui, member, cfg.is_pool());
    }
    Ok(state)
}

/// The prompts, with the few-shot examples `--examples` gives. A row of the input that
/// is also an example is only warned about: the run labels it all the same.
pub(crate) fn prompter(
    cfg: &LabelConfig,
    args: &LabelArgs,
    info: &InputInfo,
    ui: &Ui,
) -> Result<Prompter> {
    let prompter =
        Prompter::new(&cfg.labels, cfg.prompt_template.clone()).scoped(cfg.cache_tag.as_deref());
    let Some(path) = &args.examples else {
        return Ok(prompter);
    };
    let examples = fewshot::load(
        path,
        cfg.text_column.as_deref(),
        &cfg.label_column,
        &cfg.labels,
    )?;
    let found = examples.overlap(&info.path, info.delimiter, info.text_col)?;
    if let Some(first) = found.first() {
        let message = fewshot::overlap_message(&examples.path, &info.path, &found, first);
        ui.info(&format!("warning: {message}"));
    }
    let labels = cfg.labels.labels().len();
    let shots = Shots::new(examples, args.shots as usize, args.shot_selection, labels);
    Ok(prompter.with_shots(shots))
}

/// `--batch-size`, or with `auto` the size the limits and the texts allow.
fn batch_size(cfg: &LabelConfig, prompter: &Prompter, info: &InputInfo, ui: &Ui) -> usize {
    match cfg.batch_size {
        BatchSize::Fixed(n) => n,
        BatchSize::Auto => {
            let choice = budget::auto_batch_size(
                &cfg.limits_in_force(),
                prompter,
                info.average_text_bytes(),
            );
            if !cfg.dry_run {
                ui.info(&format!(
                    "--batch-size auto: {} a request ({})",
                    crate::ui::count(choice.size as u64, "text"),
                    choice.reason
                ));
            }
            choice.size
        }
    }
}

/// Removes entries older than `--keep-days` when that is due.
fn prune_state(cfg: &LabelConfig, state: &State, ui: &Ui) {
    match state.prune_if_due(cfg.keep_days, SystemTime::now()) {
        Ok(Some(pruned)) if pruned.total() > 0 => ui.info(&format!(
            "state {}: {pruned} (--keep-days {})",
            state.location, cfg.keep_days
        )),
        Ok(_) => {}
        // Old entries cost only space; the run goes on.
        Err(e) => ui.error(&format!("could not prune the state: {e}")),
    }
}

/// Every row is labeled already: says so, and whether rows past `--limit` still carry
/// the fallback label.
fn nothing_to_do(cfg: &LabelConfig, info: &InputInfo, output: &Output, ui: &Ui) -> Outcome {
    let past_limit = output.fallbacks_past_limit().len() as u64;
    ui.info(&format!(
        "{}: {}{} labeled already; nothing to do",
        cfg.output.display(),
        match info.rows {
            1 => "the 1 row".to_string(),
            n => format!("all {n} rows"),
        },
        if cfg.limit.is_some() {
            " up to --limit"
        } else {
            ""
        }
    ));
    if past_limit > 0 {
        ui.info(&past_limit_note(past_limit, &cfg.fallback_label));
        return Outcome::WithFallbacks;
    }
    Outcome::Complete
}

/// Opens the output, builds the labeler, runs the pipeline, and makes what it wrote
/// durable. The labeler comes back for the report.
async fn label_rows(
    cfg: &LabelConfig,
    ui: &Arc<Ui>,
    state: &Arc<State>,
    prompter: Prompter,
    info: &InputInfo,
    output: &Output,
    batch_size: usize,
) -> Result<(Labeler, Finished, Duration)> {
    let opened = output.open(info)?;
    if let Some(note) = output.start_note(info) {
        ui.info(&note);
    }
    let labeler = build_labeler(cfg, ui.clone(), state.clone(), prompter)?;
    ui.info(&labeler.dispatcher.with_ring(|r| r.summary()));
    let started = Instant::now();
    let setup = PipelineSetup {
        info: info.clone(),
        skip: opened.skip,
        previous: opened.previous,
        writer: opened.writer,
        fallback_label: cfg.fallback_label.clone(),
        status_column: cfg.status_column.is_some(),
        model_column: cfg.model_column.is_some(),
        concurrency: cfg.concurrency,
        batch_size,
        use_cache: cfg.use_cache,
        output_id: output.id().to_string(),
        output_path: opened.path,
        votes: cfg
            .votes
            .run(&pool_tags(cfg), &labeler.spec.prompter.identity()),
        vote_columns: VoteColumns {
            confidence: cfg.votes.confidence_column.is_some(),
            votes: cfg.votes.votes_column.is_some(),
            review_below: cfg.votes.review_below,
            logprobs: cfg.votes.logprobs(),
        },
    };
    let (mut finished, writer) = pipeline::run(&labeler, setup).await?;
    finished.counts.fallbacks_past_limit = output.fallbacks_past_limit().len() as u64;
    output.finish(writer, &finished, state)?;
    Ok((labeler, finished, started.elapsed()))
}

/// `--review-output`: the output's rows to review, read back from the whole output.
fn write_review(cfg: &LabelConfig, info: &InputInfo, ui: &Ui) -> Result<()> {
    let (Some(path), Some(below)) = (&cfg.votes.review_output, cfg.votes.review_below) else {
        return Ok(());
    };
    let sel = crate::votes::review::Selection {
        status_column: cfg.status_column.as_deref(),
        confidence_column: cfg.votes.confidence_column.as_deref(),
        below,
    };
    let rows = crate::votes::review::write(&cfg.output, info.delimiter, path, &sel)?;
    ui.info(&format!(
        "{}: {} to review (confidence below {below})",
        path.display(),
        crate::ui::count(rows, "row")
    ));
    Ok(())
}

/// `provider/model` of each provider of the pool, in order: what a row's votes are
/// scoped by in the label cache.
pub(crate) fn pool_tags(cfg: &LabelConfig) -> Vec<String> {
    cfg.pool()
        .map(|c| format!("{}/{}", c.provider.as_str(), c.model))
        .collect()
}

/// The summary, the daily reports, and the outcome the exit code tells.
fn report_end(
    cfg: &LabelConfig,
    ui: &Ui,
    state: &State,
    labeler: &Labeler,
    finished: Finished,
    elapsed: Duration,
) -> Result<Outcome> {
    let counts = &finished.counts;
    let keys = finished.keys_view(labeler);
    report::summary(ui, cfg, counts, &keys, elapsed);
    let Verdict {
        fatal, state_lost, ..
    } = finished.verdict;
    // The state cannot take the daily reports either; the reason was logged at the stop.
    if fatal.is_none() && state_lost.is_some() {
        return Ok(Outcome::StateLost);
    }
    if let Some(dir) = &cfg.report_dir {
        for member in cfg.pool() {
            report::write_daily_report(dir, member, state)?;
        }
    }
    if let Some(message) = fatal {
        return Err(Error::Runtime(message));
    }
    Ok(outcome(counts))
}

/// How a run that went to its end (or was stopped) ended, for the exit code.
fn outcome(counts: &RunCounts) -> Outcome {
    if let Some(signal) = counts.interrupted {
        match signal {
            StopSignal::Interrupt => Outcome::Interrupted,
            StopSignal::Terminate => Outcome::Terminated,
            StopSignal::HangUp => Outcome::HungUp,
        }
    } else if counts.stopped {
        Outcome::Stopped
    } else if counts.fallbacks > 0 || counts.fallbacks_past_limit > 0 {
        Outcome::WithFallbacks
    } else {
        Outcome::Complete
    }
}
