//! Rows labeled by votes, as the ledger counts them. Without votes a reply that labels a
//! request's texts counts them as rows at once. With `--votes` a row takes several
//! requests, so a vote's reply counts no row: the row counts once, when its votes settle
//! on a label, for the key of its first usable vote. Requests stay requests, and tokens
//! per row then show what the votes cost.

use std::sync::{Arc, Mutex};

use rustc_hash::FxHashMap;

/// Per text whose votes are still being counted: the key (the dispatcher's index) of
/// its first usable vote.
#[derive(Debug, Default)]
pub struct VoteRows {
    /// Whether the run votes (`--votes` above 1).
    on: bool,
    first: Mutex<FxHashMap<Arc<str>, usize>>,
}

impl VoteRows {
    pub fn new(on: bool) -> VoteRows {
        VoteRows {
            on,
            first: Mutex::default(),
        }
    }

    /// Whether replies count rows only when a row's votes settle.
    pub fn on(&self) -> bool {
        self.on
    }

    /// A usable vote from `key` for each of `texts` (a text keeps its first key).
    pub fn answered(&self, key: usize, texts: &[Arc<str>]) {
        let mut first = self.first.lock().unwrap();
        for t in texts {
            first.entry(t.clone()).or_insert(key);
        }
    }

    /// The text's votes are over (or it is no longer counted, for a vote that came after
    /// they were): the key its row counts for, if a vote was usable.
    pub fn close(&self, text: &str) -> Option<usize> {
        self.first.lock().unwrap().remove(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_counts_once_for_its_first_usable_vote() {
        let rows = VoteRows::new(true);
        let (a, b): (Arc<str>, Arc<str>) = ("a".into(), "b".into());
        rows.answered(3, &[a.clone(), b.clone()]);
        rows.answered(1, std::slice::from_ref(&a));
        assert_eq!(rows.close("a"), Some(3));
        assert_eq!(rows.close("a"), None, "closed once");
        assert_eq!(rows.close("b"), Some(3));
        assert_eq!(rows.close("c"), None, "no usable vote");
    }
}
