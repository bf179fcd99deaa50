//! The reply budget (`max_tokens`) of each request, learned per model.
//!
//! The prompt sets a tight cap from the labels' own length, so that providers reserving
//! `max_tokens` against a per-minute token limit admit as many requests as possible.
//! A model that wraps the label in prose (`Sentimen: Positif, karena…`, a fenced JSON
//! block) then has its reply cut (`finish_reason: "length"`), often before the label.
//! Such a reply never costs the row: it is asked again at once with a generous cap, and
//! that try is not one of its retries. Once cut replies repeat on a model, its first
//! tries get the generous cap too, so the run stops paying for a cut try per row; and
//! the state remembers it, so the next run's first tries start there.

use std::sync::Mutex;

use super::spec::Labeler;
use super::writes::StateWriter;

/// Tokens a row added to the tight cap for a retry after a cut reply (and for first
/// tries once a model's cap is raised): room for a sentence of prose around each label
/// (a batch's model may explain every one of its labels).
pub const GENEROUS_EXTRA: u32 = 24;

/// Cut, unusable replies on one model before its first tries get the generous cap: one
/// is an odd reply, two a habit.
pub const RAISE_AFTER: u32 = 2;

/// The generous cap for a request of `rows` texts whose tight cap is `tight`.
pub fn generous(tight: u32, rows: usize) -> u32 {
    let rows = u32::try_from(rows.max(1)).unwrap_or(u32::MAX);
    tight.saturating_add(GENEROUS_EXTRA.saturating_mul(rows))
}

/// Per model of the run (a provider of the pool, by index): its cut, unusable replies
/// so far.
#[derive(Debug, Default)]
pub struct ReplyCaps {
    cuts: Mutex<Vec<u32>>,
}

impl ReplyCaps {
    /// Whether model `m`'s first tries get the generous cap.
    pub fn raised(&self, m: usize) -> bool {
        let cuts = self.cuts.lock().unwrap();
        cuts.get(m).is_some_and(|c| *c >= RAISE_AFTER)
    }

    /// The cap of a first try on model `m`, for a request of `rows` texts whose tight
    /// cap is `tight`.
    pub fn first_try(&self, m: usize, tight: u32, rows: usize) -> u32 {
        if self.raised(m) {
            generous(tight, rows)
        } else {
            tight
        }
    }

    /// The largest cap a first try on any model may get (what the pacer reserves before
    /// it knows which key, and so which model, serves the request).
    pub fn largest_first_try(&self, tight: u32, rows: usize) -> u32 {
        let cuts = self.cuts.lock().unwrap();
        if cuts.iter().any(|c| *c >= RAISE_AFTER) {
            generous(tight, rows)
        } else {
            tight
        }
    }

    /// Model `m` is known (from an earlier run) to wrap its labels in prose: its first
    /// tries get the generous cap from the start.
    pub fn known_chatty(&self, m: usize) {
        let mut cuts = self.cuts.lock().unwrap();
        if cuts.len() <= m {
            cuts.resize(m + 1, 0);
        }
        cuts[m] = cuts[m].max(RAISE_AFTER);
    }

    /// A reply of model `m` came back cut and unusable. Returns true when this one
    /// raised the model's cap (to be logged once).
    pub fn cut(&self, m: usize) -> bool {
        let mut cuts = self.cuts.lock().unwrap();
        if cuts.len() <= m {
            cuts.resize(m + 1, 0);
        }
        cuts[m] = cuts[m].saturating_add(1);
        cuts[m] == RAISE_AFTER
    }
}

/// The run's models the state knows to be chatty (an earlier run raised their cap).
pub fn adopt(run: &Labeler, caps: &ReplyCaps) {
    for (m, member) in run.spec.members.iter().enumerate() {
        match run
            .state
            .reply_extra(member.provider, member.client.model())
        {
            Ok(Some(extra)) if extra > 0 => {
                caps.known_chatty(m);
                run.ui.debug(
                    1,
                    &format!(
                        "{}: known to wrap its labels in prose; first tries get {GENEROUS_EXTRA} tokens more a row",
                        member.tag
                    ),
                );
            }
            Ok(_) => {}
            Err(e) => run
                .ui
                .debug(1, &format!("could not read the models' reply caps: {e}")),
        }
    }
}

/// Remembers in the state that model `m` needs the generous cap (once a run, when its
/// cap is raised), by the state's writer: never on the runtime thread.
pub fn remember(run: &Labeler, writes: &StateWriter, m: usize) {
    let member = &run.spec.members[m];
    let (provider, model, tag) = (
        member.provider,
        member.client.model().to_string(),
        member.tag.clone(),
    );
    writes.send(move |state, ui| {
        if let Err(e) = state.save_reply_extra(provider, &model, GENEROUS_EXTRA) {
            ui.debug(1, &format!("could not remember {tag}'s reply cap: {e}"));
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_is_raised_per_model_once_cuts_repeat() {
        let caps = ReplyCaps::default();
        assert_eq!(caps.first_try(0, 4, 1), 4);
        assert!(!caps.cut(0), "one cut reply is not a habit");
        assert_eq!(caps.first_try(0, 4, 1), 4);
        assert!(caps.cut(0), "the second raises the cap");
        assert!(!caps.cut(0), "and is reported once");
        assert_eq!(caps.first_try(0, 4, 1), 4 + GENEROUS_EXTRA);
        // A batch gets room for prose around each of its labels.
        assert_eq!(caps.first_try(0, 48, 10), 48 + 10 * GENEROUS_EXTRA);
        // The other model of the pool keeps its tight cap.
        assert_eq!(caps.first_try(1, 4, 1), 4);
        assert_eq!(caps.largest_first_try(4, 1), 4 + GENEROUS_EXTRA);
        assert_eq!(generous(u32::MAX, 1), u32::MAX);
        assert_eq!(generous(8, usize::MAX), u32::MAX);
    }

    #[test]
    fn a_model_known_to_be_chatty_starts_raised_and_is_not_raised_again() {
        let caps = ReplyCaps::default();
        caps.known_chatty(1);
        assert_eq!(caps.first_try(1, 4, 1), 4 + GENEROUS_EXTRA);
        assert_eq!(caps.first_try(0, 4, 1), 4);
        assert!(
            !caps.cut(1),
            "already raised: nothing to report or remember"
        );
    }
}
