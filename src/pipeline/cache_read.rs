//! What the label cache holds for a new row's text: a label some provider of the run
//! gave it (with `--confidence logprobs`, the label and the confidence it was asked
//! with), or the votes cast for it so far. A failed read is logged and is a miss.
//!
//! The feeder thread asks as it reads each row ([`CacheView::lookup`]), so the row reaches
//! the collector with its answer: a read that waits on the state (a hung Redis, a write
//! holding the connection) then holds up the reading of the input, never the request loop
//! on the runtime thread (signals, replies, the progress line).

use std::sync::Arc;

use super::spec::Labeler;
use crate::normalize::LabelSet;
use crate::store::{CacheScope, State};
use crate::ui::Ui;
use crate::votes::{self, Tally, VoteRun, VoteSummary};

/// A cached label: the label, the provider (index in `RunSpec::members`) whose model
/// gave it, and what the row shows of it.
pub struct Hit {
    pub label: String,
    pub by: usize,
    pub votes: VoteSummary,
}

/// What the cache held for a row's text when it was read.
pub enum Cached {
    /// Without votes: a label, if any.
    Label(Option<Hit>),
    /// With votes: the votes cast so far, if any.
    Votes(Option<Tally>),
}

/// What a cache read needs of the run, owned, so the feeder thread can hold it.
pub struct CacheView {
    state: Arc<State>,
    ui: Arc<Ui>,
    /// Each provider's scope, in the run's order (`RunSpec::members`).
    scopes: Vec<CacheScope>,
    labels: LabelSet,
    logprobs: bool,
    votes: Option<VoteRun>,
}

impl CacheView {
    pub fn new(run: &Labeler, logprobs: bool, votes: Option<VoteRun>) -> CacheView {
        CacheView {
            state: run.state.clone(),
            ui: run.ui.clone(),
            scopes: run
                .spec
                .members
                .iter()
                .map(|m| m.cache_scope.clone())
                .collect(),
            labels: run.spec.labels.clone(),
            logprobs,
            votes,
        }
    }

    /// What the cache holds for `text` now.
    pub fn lookup(&self, text: &str) -> Cached {
        match &self.votes {
            Some(v) => Cached::Votes(self.votes_of(v, text)),
            None => Cached::Label(self.label(text)),
        }
    }

    /// A label any provider of the run gave the text earlier, under its own model's scope
    /// (with `logprobs`, only one asked with them, with the confidence they gave).
    fn label(&self, text: &str) -> Option<Hit> {
        for (m, scope) in self.scopes.iter().enumerate() {
            let mut key = scope.key(text);
            if self.logprobs {
                key = votes::logprobs::cache_key(key);
            }
            let kept = self.state.cache_get(&key).map(|v| {
                v.and_then(|v| {
                    let (label, confidence) = match self.logprobs {
                        true => votes::logprobs::read_cache_value(&v)?,
                        false => (v.as_str(), Some(1.0)),
                    };
                    Some((label.to_string(), confidence))
                })
            });
            match kept {
                Ok(Some((label, confidence))) if self.labels.contains(&label) => {
                    return Some(Hit {
                        votes: VoteSummary::measured(&label, confidence),
                        label,
                        by: m,
                    });
                }
                Ok(_) => {}
                Err(e) => {
                    self.ui
                        .error(&format!("cache read failed (continuing without it): {e}"));
                    return None;
                }
            }
        }
        None
    }

    /// The votes an earlier run (or an earlier part of this one) cast for the text.
    fn votes_of(&self, v: &VoteRun, text: &str) -> Option<Tally> {
        match self.state.cache_get(&v.scope.key(text)) {
            Ok(Some(kept)) => {
                let known = |l: &str| self.labels.contains(l);
                Tally::decode(v.n, &kept, known, self.scopes.len())
            }
            Ok(None) => None,
            Err(e) => {
                self.ui
                    .error(&format!("cache read failed (continuing without it): {e}"));
                None
            }
        }
    }
}
