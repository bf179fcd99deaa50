//! What the label cache holds for a new row's text: a label some provider of the run
//! gave it (with `--confidence logprobs`, the label and the confidence it was asked
//! with), or the votes cast for it so far. A failed read is logged and is a miss.

use super::spec::Labeler;
use crate::votes::{self, Tally, VoteRun, VoteSummary};

/// A cached label: the label, the provider (index in `RunSpec::members`) whose model
/// gave it, and what the row shows of it.
pub struct Hit {
    pub label: String,
    pub by: usize,
    pub votes: VoteSummary,
}

/// A label any provider of the run gave the text earlier, under its own model's scope
/// (with `logprobs`, only one asked with them, with the confidence they gave).
pub fn label(run: &Labeler, text: &str, logprobs: bool) -> Option<Hit> {
    for (m, member) in run.spec.members.iter().enumerate() {
        let mut key = member.cache_scope.key(text);
        if logprobs {
            key = votes::logprobs::cache_key(key);
        }
        let kept = run.state.cache_get(&key).map(|v| {
            v.and_then(|v| {
                let (label, confidence) = match logprobs {
                    true => votes::logprobs::read_cache_value(&v)?,
                    false => (v.as_str(), Some(1.0)),
                };
                Some((label.to_string(), confidence))
            })
        });
        match kept {
            Ok(Some((label, confidence))) if run.spec.labels.contains(&label) => {
                return Some(Hit {
                    votes: VoteSummary::measured(&label, confidence),
                    label,
                    by: m,
                });
            }
            Ok(_) => {}
            Err(e) => {
                run.ui
                    .error(&format!("cache read failed (continuing without it): {e}"));
                return None;
            }
        }
    }
    None
}

/// The votes an earlier run (or an earlier part of this one) cast for the text.
pub fn votes(run: &Labeler, v: &VoteRun, text: &str) -> Option<Tally> {
    match run.state.cache_get(&v.scope.key(text)) {
        Ok(Some(kept)) => {
            let known = |l: &str| run.spec.labels.contains(l);
            Tally::decode(v.n, &kept, known, run.spec.members.len())
        }
        Ok(None) => None,
        Err(e) => {
            run.ui
                .error(&format!("cache read failed (continuing without it): {e}"));
            None
        }
    }
}
