//! `autolabel tune`: the same gold sample labeled once per combination of batch size and
//! votes, each a labeling run like any other (its keys, pacing and state), its answers
//! cached apart (so a second tune spends nothing), then measured with `eval`'s metrics.
//! `sample` draws the rows; `table` ranks, recommends and prints.

pub mod sample;
pub mod table;

use std::collections::HashSet;
use std::ffi::OsString;
use std::path::Path;

use clap::Parser;

use crate::cli::{Cli, LabelArgs, TuneArgs};
use crate::config::LabelConfig;
use crate::error::{Error, Result};
use crate::limits::Limits;
use crate::prompt::Prompter;
use crate::store::State;

/// One combination to try, with what its requests cost.
pub struct Combo {
    pub batch: u32,
    pub votes: u32,
    /// The labeling run's flags (input: the sample; output: the tune's directory).
    pub args: LabelArgs,
    /// Estimated tokens of one request of `batch` texts.
    pub request_tokens: f64,
    /// The column the run writes its labels to.
    pub label_column: String,
    pub limits: Limits,
}

/// What the tune will spend at most and at least, before it sends anything.
#[derive(Debug, Default)]
pub struct Spend {
    pub requests: (u64, u64),
    pub tokens: (u64, u64),
    /// Texts × combinations already answered in the cache.
    pub cached: u64,
}

impl std::fmt::Display for Spend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} to {} requests, about {} to {} tokens ({} text-combinations answered in the cache already)",
            self.requests.0, self.requests.1, self.tokens.0, self.tokens.1, self.cached
        )
    }
}

/// The labeling run of one combination, from the tune's flags and the ones after `--`.
pub fn label_args(
    t: &TuneArgs,
    sample: &Path,
    out: &Path,
    (b, v): (u32, u32),
) -> Result<LabelArgs> {
    let mut argv: Vec<OsString> = vec!["autolabel".into(), "--input".into(), sample.into()];
    argv.extend(["--output".into(), out.into()]);
    if let Some(examples) = &t.examples {
        argv.extend(["--examples".into(), examples.into()]);
    }
    for (flag, value) in [
        ("--text-column", "text".to_string()),
        ("--status-column", "status".into()),
        ("--votes-column", "votes".into()),
        ("--batch-size", b.to_string()),
        ("--votes", v.to_string()),
    ] {
        argv.extend([flag.into(), value.into()]);
    }
    let verbose = t
        .label_flags
        .iter()
        .any(|f| f.starts_with("-v") || f == "--verbose");
    if !verbose {
        argv.push("--quiet".into());
    }
    argv.extend(t.label_flags.iter().map(OsString::from));
    let cli = Cli::try_parse_from(argv)
        .map_err(|e| Error::Usage(format!("the labeling flags after --: {}", e.render())))?;
    if cli.command.is_some() {
        return Err(Error::Usage(
            "after -- come the flags of a labeling run, not a command".into(),
        ));
    }
    let mut args = cli.label;
    // Batch size is part of the answer (a model reads a text among others): each size
    // keeps its own answers; votes are scoped by their count already.
    args.cache_tag = Some(format!("tune batch {b}"));
    Ok(args)
}

/// Resolves each combination's run and estimates what the tune will spend.
pub fn plan(t: &TuneArgs, sample: &sample::Sample, out_dir: &Path) -> Result<(Vec<Combo>, Spend)> {
    let texts: Vec<&str> = {
        let mut seen = HashSet::new();
        sample
            .texts
            .iter()
            .map(String::as_str)
            .filter(|x| seen.insert(*x))
            .collect()
    };
    let bytes = texts.iter().map(|x| x.len()).sum::<usize>() as f64 / texts.len().max(1) as f64;
    let mut combos = Vec::new();
    let mut spend = Spend::default();
    let mut state: Option<State> = None;
    for &b in &t.batch_sizes {
        for &v in &t.votes {
            let out = out_dir.join(format!("batch{b}-votes{v}.csv"));
            let args = label_args(t, &sample.path, &out, (b, v))?;
            let cfg = LabelConfig::resolve(&args)?;
            if combos.is_empty() {
                refuse_examples_among_rows(t, &cfg, sample)?;
            }
            let info = crate::commands::label::inspect_input(&cfg)?;
            let ui = crate::ui::Ui::new(true, 0, cfg.progress_every);
            let prompter = crate::commands::label::prompter(&cfg, &args, &info, &ui)?;
            let state = match &mut state {
                Some(s) => s,
                None => state.insert(State::open_at(&cfg.base.state)?),
            };
            let hits = cached(&cfg, &prompter, state, &texts)?;
            let requests = (
                (texts.len() as u64 - hits).div_ceil(u64::from(b)),
                u64::from(v),
            );
            let request_tokens = prompter.estimated_request_tokens(b as usize, bytes);
            let fewest = u64::from(crate::votes::cost::fewest(v));
            spend.cached += hits;
            spend.requests.0 += requests.0 * fewest;
            spend.requests.1 += requests.0 * requests.1;
            spend.tokens.0 += (request_tokens * (requests.0 * fewest) as f64) as u64;
            spend.tokens.1 += (request_tokens * (requests.0 * requests.1) as f64) as u64;
            combos.push(Combo {
                batch: b,
                votes: v,
                args,
                request_tokens,
                label_column: cfg.label_column.clone(),
                limits: cfg.base.limits_in_force(),
            });
        }
    }
    Ok((combos, spend))
}

/// An example that is also a row of the gold input would inflate the score: exit 2.
fn refuse_examples_among_rows(t: &TuneArgs, cfg: &LabelConfig, s: &sample::Sample) -> Result<()> {
    let Some(path) = &t.examples else {
        return Ok(());
    };
    let examples = crate::fewshot::load(path, None, &cfg.label_column, &cfg.labels)?;
    examples.refuse_overlap(&t.input, s.delimiter, s.text_col)
}

/// How many of `texts` the cache answers for this combination already.
fn cached(cfg: &LabelConfig, prompter: &Prompter, state: &State, texts: &[&str]) -> Result<u64> {
    if !cfg.use_cache {
        return Ok(0);
    }
    let tags = crate::commands::label::pool_tags(cfg);
    let votes = cfg.votes.run(&tags, &prompter.identity());
    let scopes: Vec<_> = match &votes {
        Some(v) => vec![v.scope.clone()],
        None => cfg
            .pool()
            .map(|c| crate::pipeline::setup::cache_scope(c, prompter))
            .collect(),
    };
    let mut hits = 0;
    for text in texts {
        for scope in &scopes {
            if state.cache_get(&scope.key(text))?.is_some() {
                hits += 1;
                break;
            }
        }
    }
    Ok(hits)
}

/// The mean votes a row of `output` took (its votes column), 1 when none is there.
pub fn mean_votes(output: &Path) -> Result<f64> {
    let mut rdr = crate::csvio::reader(output, b',')?;
    let headers = rdr
        .headers()
        .map_err(|e| crate::csvio::describe_csv_error(output, None, e))?
        .clone();
    let Some(col) = headers.iter().position(|h| h == "votes") else {
        return Ok(1.0);
    };
    let (mut votes, mut rows) = (0u64, 0u64);
    for rec in rdr.records() {
        let rec = rec.map_err(|e| crate::csvio::describe_csv_error(output, Some(&headers), e))?;
        let cell = rec.get(col).unwrap_or("");
        let cast: u64 = cell
            .split('|')
            .filter_map(|kv| kv.rsplit_once(':')?.1.parse::<u64>().ok())
            .sum();
        if cast > 0 {
            votes += cast;
            rows += 1;
        }
    }
    Ok(if rows == 0 {
        1.0
    } else {
        votes as f64 / rows as f64
    })
}
