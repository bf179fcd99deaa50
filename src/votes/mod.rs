//! `--votes`: each row asked up to N times, the majority kept, and what a row shows of
//! its votes (confidence, counts, review). The tally of one row is `tally` (pure); the
//! collector asks and counts the votes; `review` writes the rows to check.

use std::path::{Path, PathBuf};

use crate::cli::{BatchSize, ConfidenceSource, LabelArgs};
use crate::error::{Error, Result};
use crate::store::CacheScope;

pub mod cost;
pub mod logprobs;
pub mod review;
pub mod runs;
pub mod tally;

pub use tally::{Tally, VoteSummary};

/// What the flags ask of votes, confidence and review.
#[derive(Debug, Clone, Default)]
pub struct VoteSettings {
    /// `--votes` (1 asks each row once, as without it).
    pub n: u32,
    pub confidence_column: Option<String>,
    pub votes_column: Option<String>,
    pub review_below: Option<f64>,
    pub review_output: Option<PathBuf>,
    /// `--confidence`: votes, or one answer's logprobs.
    pub confidence: ConfidenceSource,
}

impl VoteSettings {
    /// Checks what the flags alone cannot: the review file is neither the input nor the
    /// output, and the output shows which rows are under review.
    pub fn from_args(args: &LabelArgs, input: &Path, output: &Path) -> Result<VoteSettings> {
        let s = VoteSettings {
            n: args.votes.max(1),
            confidence_column: args.confidence_column.clone(),
            votes_column: args.votes_column.clone(),
            review_below: args.review_below,
            review_output: args.review_output.clone(),
            confidence: args.confidence,
        };
        if s.confidence == ConfidenceSource::Logprobs {
            logprobs_fit(args)?;
        }
        if let Some(review) = &s.review_output {
            crate::safefs::refuse_input(input, review, "--review-output")?;
            if review == output || crate::safefs::refuse_input(output, review, "").is_err() {
                return Err(Error::Usage(format!(
                    "--review-output {} is the output file; choose another path",
                    review.display()
                )));
            }
            if args.status_column.is_none() && s.confidence_column.is_none() {
                return Err(Error::Usage(
                    "--review-output needs --status-column or --confidence-column: the rows to \
                     review are read back from the output, which has to show them"
                        .into(),
                ));
            }
        }
        Ok(s)
    }

    /// Whether rows take their confidence from logprobs.
    pub fn logprobs(&self) -> bool {
        self.confidence == ConfidenceSource::Logprobs
    }

    /// The votes of a run with more than one, scoped in the label cache by the pool's
    /// providers and models (in order: a vote names its provider by position), the
    /// prompt, and the vote count: a row asked 3 times is not served from 5 votes.
    pub fn run(&self, members: &[String], prompt: &str) -> Option<VoteRun> {
        (self.n > 1).then(|| VoteRun {
            n: self.n,
            scope: CacheScope::new(
                "votes",
                &members.join(","),
                &format!("{prompt}|votes={}", self.n),
            ),
        })
    }
}

/// `--confidence logprobs` reads one answer to one text: it replaces votes, and a
/// batch's JSON reply has no first label token per row.
fn logprobs_fit(args: &LabelArgs) -> Result<()> {
    let refuse = |why: &str| Err(Error::Usage(format!("--confidence logprobs {why}")));
    if args.votes > 1 {
        return refuse(&format!(
            "replaces votes: drop --votes {} (or use --confidence votes)",
            args.votes
        ));
    }
    if args.batch_size != BatchSize::Fixed(1) {
        return refuse(
            "reads the answer to one text; a batch's reply has no label token per row: use --batch-size 1",
        );
    }
    if args.confidence_column.is_none() && args.review_below.is_none() {
        return refuse(
            "shows only in --confidence-column or --review-below: pass one, or drop it (it asks for logprobs for nothing)",
        );
    }
    Ok(())
}

/// Votes in a running pipeline (`--votes` above 1).
#[derive(Debug, Clone)]
pub struct VoteRun {
    pub n: u32,
    /// Where a row's votes are kept in the label cache, after every vote: a run that is
    /// stopped or killed asks only the votes that are still missing.
    pub scope: CacheScope,
}

/// What the output shows of the votes, and the threshold for review.
#[derive(Debug, Clone, Copy, Default)]
pub struct VoteColumns {
    pub confidence: bool,
    pub votes: bool,
    pub review_below: Option<f64>,
    /// `--confidence logprobs`: a row's confidence is its answer's, from logprobs.
    pub logprobs: bool,
}

impl VoteColumns {
    /// Whether a row with this summary goes to review. A row whose confidence is unknown
    /// (no logprobs came) is not: nothing says it is doubtful.
    pub fn to_review(&self, summary: &VoteSummary) -> bool {
        let below = |x: f64| summary.confidence.is_some_and(|c| c < x - 1e-9);
        self.review_below.is_some_and(below)
    }
}

/// Shifts a vote's batch so that every text sits elsewhere than in the votes before:
/// vote `ordinal` (0 keeps the order) rotates the texts by `ordinal × len / n`, so a
/// model's bias for a position does not fall on the same text twice.
pub fn reorder<T>(texts: &mut [T], ordinal: u32, n: u32) {
    let len = texts.len();
    if ordinal == 0 || len < 2 {
        return;
    }
    // Distinct shifts for the first min(n, len) votes: a step of len / n (at least 1).
    let step = (len / n.max(1) as usize).max(1);
    let shift = (ordinal as usize * step) % len;
    texts.rotate_left(if shift == 0 { 1 } else { shift });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_vote_of_a_batch_moves_every_text() {
        for n in [2u32, 3, 5, 15] {
            for len in [2usize, 3, 10, 50] {
                let base: Vec<usize> = (0..len).collect();
                let mut seen = vec![base.clone()];
                for ordinal in 1..n.min(len as u32) {
                    let mut v = base.clone();
                    reorder(&mut v, ordinal, n);
                    for earlier in &seen {
                        assert!(
                            v.iter().zip(earlier).all(|(a, b)| a != b),
                            "n {n} len {len} ordinal {ordinal}: {v:?}"
                        );
                    }
                    seen.push(v);
                }
            }
        }
    }

    #[test]
    fn review_takes_rows_strictly_below() {
        let cols = VoteColumns {
            review_below: Some(0.6),
            ..VoteColumns::default()
        };
        let at = |c: f64| VoteSummary {
            confidence: Some(c),
            counts: String::new(),
            unanimous: false,
        };
        assert!(cols.to_review(&at(0.4)));
        assert!(!cols.to_review(&at(0.6)));
        assert!(!VoteColumns::default().to_review(&at(0.0)));
        let unknown = VoteSummary::measured("a", None);
        assert!(!cols.to_review(&unknown));
        assert_eq!(unknown.confidence_text(), "");
    }
}
