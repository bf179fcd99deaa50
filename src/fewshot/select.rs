//! Which examples a request carries (`--shots K`, `--shot-selection`):
//! - `balanced`: the same K for the whole run, as many of each label as K allows (the
//!   first of each label in file order);
//! - `similar`: for each request, the K examples whose texts are closest to its texts by
//!   BM25 (a batch's texts taken together), still as many of each label as the examples
//!   allow, so that the closest texts do not all teach one label.
//!
//! Either way the examples are interleaved label by label, so that no label comes last
//! every time.

use std::fmt::Write as _;

use clap::ValueEnum;
use sha2::{Digest, Sha256};

use super::bm25::Index;
use super::{Example, Examples};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Selection {
    /// The same examples in every request, as many per label as K allows.
    Balanced,
    /// For each request the examples closest to its texts (BM25 over words), balanced
    /// across labels where the examples allow.
    Similar,
}

/// The examples and how each request's are chosen.
#[derive(Debug)]
pub struct Shots {
    examples: Examples,
    k: usize,
    selection: Selection,
    labels: usize,
    /// `balanced`: the run's choice.
    fixed: Vec<usize>,
    /// `similar`: the index of the examples' texts.
    index: Option<Index>,
}

impl Shots {
    /// `labels`: how many labels `--labels` names (the examples' label indexes are below).
    pub fn new(examples: Examples, k: usize, selection: Selection, labels: usize) -> Shots {
        let in_file_order: Vec<usize> = (0..examples.items.len()).collect();
        let fixed = pick(&examples.items, &in_file_order, k, labels);
        let index = (selection == Selection::Similar)
            .then(|| Index::new(examples.items.iter().map(|e| e.text.as_str())));
        Shots {
            examples,
            k,
            selection,
            labels,
            fixed,
            index,
        }
    }

    /// The examples of a request carrying `texts`.
    pub fn for_texts(&self, texts: &[&str]) -> Vec<&Example> {
        let chosen = match &self.index {
            Some(index) if texts.iter().any(|t| !t.trim().is_empty()) => {
                let scores = index.scores(&texts.join(" "));
                let mut ranked: Vec<usize> = (0..scores.len()).collect();
                // Highest first; equal scores in file order (the sort is stable).
                ranked.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
                pick(&self.examples.items, &ranked, self.k, self.labels)
            }
            _ => self.fixed.clone(),
        };
        chosen.iter().map(|&i| &self.examples.items[i]).collect()
    }

    /// What sets the examples apart, for the label cache's scope: a label given with
    /// other examples (or another K or selection) is not this run's.
    pub fn fingerprint(&self) -> String {
        let mut h = Sha256::new();
        h.update(format!("{:?}|{}|", self.selection, self.k).as_bytes());
        for e in &self.examples.items {
            h.update(e.label.to_le_bytes());
            h.update(e.text.as_bytes());
            h.update([0u8]);
        }
        let mut hex = String::new();
        for b in &h.finalize()[..8] {
            let _ = write!(hex, "{b:02x}");
        }
        format!("shots:{hex}")
    }

    pub fn examples(&self) -> &Examples {
        &self.examples
    }

    /// How many examples a request carries (K, or fewer when the file has fewer).
    pub fn per_request(&self) -> usize {
        self.fixed.len()
    }

    pub fn selection(&self) -> Selection {
        self.selection
    }
}

/// Up to `k` examples from `ranked` (indexes into `items`, best first): label by label in
/// the order of each label's best example, one round at a time, so every label gets its
/// share while it has examples and the others fill the rest.
fn pick(items: &[Example], ranked: &[usize], k: usize, labels: usize) -> Vec<usize> {
    let mut per_label: Vec<Vec<usize>> = vec![Vec::new(); labels];
    let mut label_order = Vec::new();
    for &i in ranked {
        let l = items[i].label;
        if per_label[l].is_empty() {
            label_order.push(l);
        }
        per_label[l].push(i);
    }
    let mut chosen = Vec::with_capacity(k);
    for round in 0.. {
        let before = chosen.len();
        for &l in &label_order {
            if chosen.len() == k {
                return chosen;
            }
            if let Some(&i) = per_label[l].get(round) {
                chosen.push(i);
            }
        }
        if chosen.len() == before {
            break;
        }
    }
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;

    fn examples(rows: &[(&str, usize)]) -> Examples {
        Examples {
            path: "ex.csv".into(),
            items: rows
                .iter()
                .map(|(t, l)| Example {
                    text: t.to_string(),
                    label: *l,
                })
                .collect(),
        }
    }

    fn labels_of(chosen: &[&Example]) -> Vec<usize> {
        chosen.iter().map(|e| e.label).collect()
    }

    #[test]
    fn balanced_takes_the_same_number_of_each_label_interleaved() {
        let ex = examples(&[
            ("p1", 0),
            ("p2", 0),
            ("p3", 0),
            ("n1", 1),
            ("n2", 1),
            ("z1", 2),
            ("z2", 2),
            ("z3", 2),
        ]);
        let shots = Shots::new(ex, 6, Selection::Balanced, 3);
        let chosen = shots.for_texts(&["anything"]);
        let texts: Vec<&str> = chosen.iter().map(|e| e.text.as_str()).collect();
        assert_eq!(texts, ["p1", "n1", "z1", "p2", "n2", "z2"]);
        // The same for every request.
        assert_eq!(shots.for_texts(&["other", "texts"]), chosen);
    }

    #[test]
    fn a_label_short_of_examples_leaves_its_share_to_the_others() {
        let ex = examples(&[("p1", 0), ("p2", 0), ("p3", 0), ("n1", 1), ("p4", 0)]);
        let shots = Shots::new(ex, 4, Selection::Balanced, 3);
        assert_eq!(labels_of(&shots.for_texts(&["x"])), [0, 1, 0, 0]);
        let few = Shots::new(examples(&[("p1", 0)]), 6, Selection::Balanced, 2);
        assert_eq!(few.for_texts(&["x"]).len(), 1);
    }

    #[test]
    fn similar_picks_the_lexically_nearest_of_each_label() {
        let ex = examples(&[
            ("pelayanan ramah sekali", 0),
            ("makanan enak dan murah", 0),
            ("pelayanan lambat dan kasar", 1),
            ("makanan basi", 1),
            ("cuaca hari ini", 2),
            ("makanan biasa saja", 2),
        ]);
        let shots = Shots::new(ex, 3, Selection::Similar, 3);
        let chosen = shots.for_texts(&["Makanan enak, murah lagi"]);
        let texts: Vec<&str> = chosen.iter().map(|e| e.text.as_str()).collect();
        // The nearest first; then the nearest of each other label ("makanan" shared).
        assert_eq!(texts[0], "makanan enak dan murah");
        assert_eq!(labels_of(&chosen).len(), 3);
        assert!(texts.contains(&"makanan basi") && texts.contains(&"makanan biasa saja"));
        let chosen = shots.for_texts(&["pelayanan kasar", "lambat sekali"]);
        assert_eq!(chosen[0].text, "pelayanan lambat dan kasar");
        assert_eq!(chosen[1].text, "pelayanan ramah sekali");
    }

    #[test]
    fn the_fingerprint_follows_the_examples_and_the_choice() {
        let a = Shots::new(examples(&[("x", 0)]), 6, Selection::Balanced, 2);
        let b = Shots::new(examples(&[("x", 1)]), 6, Selection::Balanced, 2);
        let c = Shots::new(examples(&[("x", 0)]), 6, Selection::Similar, 2);
        assert_ne!(a.fingerprint(), b.fingerprint());
        assert_ne!(a.fingerprint(), c.fingerprint());
    }
}
