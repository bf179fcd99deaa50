//! Okapi BM25 over words: how close an example's text is to the texts of a request,
//! computed here from the examples themselves (no embedding call, so no quota spent).

use std::collections::HashMap;

/// The usual constants: term-frequency saturation and length normalization.
const K1: f64 = 1.2;
const B: f64 = 0.75;

/// The words of `text`: runs of letters and digits, lowercased.
pub fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
}

/// An index of the examples' texts.
#[derive(Debug)]
pub struct Index {
    /// Per word: (document, occurrences in it).
    postings: HashMap<String, Vec<(usize, u32)>>,
    lengths: Vec<f64>,
    average_length: f64,
}

impl Index {
    pub fn new<'a>(docs: impl IntoIterator<Item = &'a str>) -> Index {
        let mut postings: HashMap<String, Vec<(usize, u32)>> = HashMap::new();
        let mut lengths = Vec::new();
        for (d, text) in docs.into_iter().enumerate() {
            let mut counts: HashMap<String, u32> = HashMap::new();
            let mut length = 0;
            for w in words(text) {
                *counts.entry(w).or_default() += 1;
                length += 1;
            }
            for (w, n) in counts {
                postings.entry(w).or_default().push((d, n));
            }
            lengths.push(f64::from(length));
        }
        let average_length = lengths.iter().sum::<f64>() / (lengths.len().max(1) as f64);
        Index {
            postings,
            lengths,
            average_length: average_length.max(1.0),
        }
    }

    /// Each document's score against the words of `query` (each word counted as often as
    /// it occurs there).
    pub fn scores(&self, query: &str) -> Vec<f64> {
        let mut wanted: HashMap<String, u32> = HashMap::new();
        for w in words(query) {
            *wanted.entry(w).or_default() += 1;
        }
        let n = self.lengths.len() as f64;
        let mut scores = vec![0.0; self.lengths.len()];
        for (w, times) in wanted {
            let Some(docs) = self.postings.get(&w) else {
                continue;
            };
            let df = docs.len() as f64;
            let idf = ((n - df + 0.5) / (df + 0.5) + 1.0).ln();
            for &(d, tf) in docs {
                let tf = f64::from(tf);
                let norm = K1 * (1.0 - B + B * self.lengths[d] / self.average_length);
                scores[d] += f64::from(times) * idf * tf * (K1 + 1.0) / (tf + norm);
            }
        }
        scores
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_rare_words_score_highest() {
        let index = Index::new([
            "makanan enak sekali",
            "pelayanan lambat sekali",
            "harga mahal",
            "sekali sekali sekali",
        ]);
        let s = index.scores("Pelayanannya LAMBAT, tapi makanan enak!");
        // "makanan" and "enak" occur once in the examples, "lambat" too: the first shares two.
        assert!(s[0] > s[1] && s[1] > 0.0, "{s:?}");
        assert_eq!(s[2], 0.0);
        // Of two texts of one length, the one repeating the word scores higher.
        let s = index.scores("sekali");
        assert!(s[3] > s[0] && s[0] > 0.0 && s[2] == 0.0, "{s:?}");
        assert_eq!(
            words("Ini, itu-dan 2x").collect::<Vec<_>>(),
            ["ini", "itu", "dan", "2x"]
        );
    }
}
