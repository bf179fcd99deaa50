//! What a labeling run is, fixed before its first request: the providers and which keys
//! are whose, the prompt, the labels and the retry policy. Built once, then only read;
//! with the dispatcher, the state and the UI it makes a [`Labeler`].

use std::sync::Arc;
use std::time::Duration;

use crate::cli::OnExhausted;
use crate::normalize::LabelSet;
use crate::pacing::{Dispatcher, Priority};
use crate::prompt::Prompter;
use crate::provider::Client;
use crate::store::{CacheScope, State};
use crate::ui::Ui;

/// One provider of the run: the only one, or one of a pool (`--provider groq,gemini`).
pub struct Member {
    pub provider: &'static str,
    pub client: Client,
    /// USD per token, in and out.
    pub prices: (f64, f64),
    /// `provider/model`, as the model column shows it.
    pub tag: String,
    /// Prefix of its label-cache keys: provider, model, prompt and labels.
    pub cache_scope: CacheScope,
}

/// How failures are met.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Retries per row after transient failures (server errors, timeouts, dropped
    /// connections, malformed replies); rate limits and key errors never count.
    pub max_retries: u32,
    pub backoff: Duration,
    pub on_exhausted: OnExhausted,
    /// How long the state may stay unreachable before the run stops (`--store-timeout`).
    pub store_timeout: Duration,
    /// This run's `--priority`, kept with its entry in the runs registry.
    pub priority: Priority,
}

/// The run's fixed setup.
pub struct RunSpec {
    /// The providers, in the order given; every key belongs to one (`key_member`).
    pub members: Vec<Member>,
    /// Per key (the dispatcher's index): its provider's index in `members`.
    pub key_member: Vec<usize>,
    pub prompter: Prompter,
    pub labels: LabelSet,
    pub policy: Policy,
}

impl RunSpec {
    /// The provider `key` belongs to.
    pub fn member(&self, key: usize) -> &Member {
        &self.members[self.key_member[key]]
    }

    /// The keys (dispatcher indexes) of provider `m`.
    pub fn keys_of(&self, m: usize) -> impl Iterator<Item = usize> + '_ {
        (0..self.key_member.len()).filter(move |&k| self.key_member[k] == m)
    }
}

/// Everything a labeling run works with: its fixed setup, the dispatcher that hands out
/// its keys, the shared state and the UI. The run's changing parts (stop, usage) are the
/// collector's (`pipeline::run`).
pub struct Labeler {
    pub spec: RunSpec,
    pub dispatcher: Dispatcher,
    pub state: Arc<State>,
    pub ui: Arc<Ui>,
}
