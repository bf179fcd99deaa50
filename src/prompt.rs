//! What the model is asked, in as few tokens as stay unambiguous: on a free tier the
//! daily token quota decides how many rows a key labels, and every token of instructions
//! repeated in each request is a row not labeled.
//!
//! - A single text goes verbatim as the user message (nothing of it is rewritten); the
//!   system message names the labels and asks for one word.
//! - A batch goes as a JSON array of strings, `["text 1","text 2"]`: three characters of
//!   structure per text, and unambiguous whatever a text holds (line breaks, quotes,
//!   digits and dots that look like numbering are all escaped or inside a string), which a
//!   one-text-per-line list is not. The reply is the labels only, `{"labels":[...]}`,
//!   in the texts' order, without ids or texts echoed back.
//! - Few-shot examples (`--examples`), when given, follow the instruction in the system
//!   message as one JSON array of `[text, label]` pairs: unambiguous like the batch, and
//!   about six characters of structure an example.
//! - `max_tokens` follows from the labels' own length, so providers that reserve it
//!   against a per-minute token limit admit as many requests as the reply needs.

use std::sync::Arc;

use crate::fewshot::Shots;
use crate::normalize::LabelSet;
use crate::provider::ChatRequest;

/// Reply tokens per label beyond the label's own estimate: a word the tokenizer splits
/// once more than 4 bytes a token suggests, and in a batch the quotes, comma and space.
const REPLY_SLACK_PER_LABEL: u32 = 2;
/// Reply tokens of a batch's envelope: `{"labels": [` and `]}`.
const BATCH_ENVELOPE_TOKENS: u32 = 8;

#[derive(Debug, Clone)]
pub struct Prompter {
    labels: String,
    /// The labels one by one, as examples name them.
    names: Vec<String>,
    /// The labels in prose ("a, b or c"), as the prompts name them.
    spoken: String,
    /// `--prompt-file` contents, with `{labels}` and `{text}` placeholders.
    template: Option<String>,
    /// The system message for single texts, built once: it is the same for every request.
    system_single: String,
    /// Estimated tokens of the longest label.
    label_tokens: u32,
    /// Few-shot examples, when `--examples` gives them.
    shots: Option<Arc<Shots>>,
    /// Added to the cache identity only (`tune` keeps each combination's answers apart).
    scope: String,
}

impl Prompter {
    pub fn new(labels: &LabelSet, template: Option<String>) -> Prompter {
        let names = labels.labels();
        let joined = names.join(", ");
        let spoken = match names {
            [] => String::new(),
            [only] => only.clone(),
            [init @ .., last] => format!("{} or {last}", init.join(", ")),
        };
        // "one word" is only true when every label is one word.
        let answer = if names.iter().all(|l| !l.contains(char::is_whitespace)) {
            "Answer with one word."
        } else {
            "Answer with the label only."
        };
        let system_single = match &template {
            None => format!("Text sentiment: {spoken}. {answer}"),
            Some(_) => format!("{answer} One of: {spoken}."),
        };
        let label_tokens = names
            .iter()
            .map(|l| l.len().div_ceil(4) as u32)
            .max()
            .unwrap_or(1)
            .max(1);
        Prompter {
            labels: joined,
            names: names.to_vec(),
            spoken,
            template,
            system_single,
            label_tokens,
            shots: None,
            scope: String::new(),
        }
    }

    /// The same prompts with few-shot examples.
    pub fn with_shots(mut self, shots: Shots) -> Prompter {
        self.shots = Some(Arc::new(shots));
        self
    }

    pub fn shots(&self) -> Option<&Shots> {
        self.shots.as_deref()
    }

    /// The same prompts without the examples (what they add is the difference).
    pub fn without_shots(&self) -> Prompter {
        Prompter {
            shots: None,
            ..self.clone()
        }
    }

    /// The same prompts, with answers cached apart under `tag` (nothing sent changes).
    pub fn scoped(mut self, tag: Option<&str>) -> Prompter {
        if let Some(tag) = tag {
            self.scope = format!("|{tag}");
        }
        self
    }

    /// A fingerprint of everything that shapes the answer except the text, for the cache.
    /// Without examples it is what it always was, so earlier runs' cache keeps serving.
    pub fn identity(&self) -> String {
        let base = format!("{}|{}", self.labels, self.template.as_deref().unwrap_or(""));
        let id = match &self.shots {
            None => base,
            Some(s) => format!("{base}|{}", s.fingerprint()),
        };
        format!("{id}{}", self.scope)
    }

    /// ` Examples: [["text","label"],...]` for a request of `texts`, or nothing.
    fn examples(&self, texts: &[&str]) -> String {
        let Some(shots) = &self.shots else {
            return String::new();
        };
        let pairs: Vec<[&str; 2]> = shots
            .for_texts(texts)
            .into_iter()
            .map(|e| [e.text.as_str(), self.label_name(e.label)])
            .collect();
        if pairs.is_empty() {
            return String::new();
        }
        format!(
            " Examples: {}",
            serde_json::to_string(&pairs).expect("strings serialize")
        )
    }

    fn label_name(&self, index: usize) -> &str {
        self.names.get(index).map(String::as_str).unwrap_or("")
    }

    /// The reply budget for `n` labels: each label's estimate plus slack, and for a batch
    /// the JSON envelope.
    pub fn max_tokens(&self, n: usize) -> u32 {
        let per_label = self.label_tokens + REPLY_SLACK_PER_LABEL;
        if n <= 1 {
            per_label
        } else {
            (n as u32).saturating_mul(per_label) + BATCH_ENVELOPE_TOKENS
        }
    }

    /// Estimated tokens of one request of `n` texts of `text_bytes` bytes each (what the
    /// limits and the model's context count, the reply budget included): the same
    /// estimate the pacing uses, with the texts' share at 4 bytes a token.
    pub fn estimated_request_tokens(&self, n: usize, text_bytes: f64) -> f64 {
        let n = n.max(1);
        let req = if n == 1 {
            self.single("")
        } else {
            self.batch(&vec![""; n])
        };
        req.estimated_tokens() as f64 + n as f64 * text_bytes / 4.0
    }

    pub fn single(&self, text: &str) -> ChatRequest {
        let user = match &self.template {
            None => text.to_string(),
            Some(t) => t.replace("{labels}", &self.labels).replace("{text}", text),
        };
        ChatRequest {
            system: self.system_single.clone() + &self.examples(&[text]),
            user,
            max_tokens: self.max_tokens(1),
            json: false,
        }
    }

    pub fn batch(&self, texts: &[&str]) -> ChatRequest {
        let n = texts.len();
        let list = serde_json::to_string(texts).expect("strings serialize");
        let instruction = format!(
            "Sentiment of each of the {n} texts: {}. Reply {{\"labels\":[...]}} in order.",
            self.spoken
        );
        let user = match &self.template {
            None => list,
            Some(t) => t.replace("{labels}", &self.labels).replace("{text}", &list),
        };
        ChatRequest {
            system: instruction + &self.examples(texts),
            user,
            max_tokens: self.max_tokens(n),
            json: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn default_labels() -> LabelSet {
        LabelSet::parse("positif,negatif,netral").unwrap()
    }

    #[test]
    fn single_sends_the_text_verbatim_under_a_short_instruction() {
        let p = Prompter::new(&default_labels(), None);
        let r = p.single("  enak \"sekali\"\n");
        assert_eq!(r.user, "  enak \"sekali\"\n");
        assert_eq!(
            r.system,
            "Text sentiment: positif, negatif or netral. Answer with one word."
        );
        assert!(!r.json);
        let t = Prompter::new(&default_labels(), Some("Label ({labels}): {text}".into()));
        assert_eq!(t.single("x").user, "Label (positif, negatif, netral): x");
    }

    #[test]
    fn batches_are_a_json_array_of_the_texts_and_nothing_else() {
        let p = Prompter::new(&default_labels(), None);
        let b = p.batch(&["a", "b \"q\"\n2. c"]);
        assert_eq!(b.user, r#"["a","b \"q\"\n2. c"]"#);
        // A text holding a line break and something like numbering stays one item.
        let back: Vec<String> = serde_json::from_str(&b.user).unwrap();
        assert_eq!(back, ["a", "b \"q\"\n2. c"]);
        assert_eq!(
            b.system,
            r#"Sentiment of each of the 2 texts: positif, negatif or netral. Reply {"labels":[...]} in order."#
        );
        assert!(b.json);
    }

    #[test]
    fn reply_budget_follows_the_labels_length() {
        let p = Prompter::new(&default_labels(), None);
        // "positif"/"negatif" are 7 bytes: 2 tokens at 4 bytes a token, + 2 slack.
        assert_eq!(p.single("x").max_tokens, 4);
        assert_eq!(p.batch(&["x"; 20]).max_tokens, 20 * 4 + 8);
        let long = LabelSet::parse("sangat positif,sangat negatif,netral").unwrap();
        let q = Prompter::new(&long, None);
        // "sangat negatif" is 14 bytes: 4 tokens, + 2.
        assert_eq!(q.single("x").max_tokens, 6);
        assert_eq!(q.batch(&["x"; 10]).max_tokens, 10 * 6 + 8);
        assert!(q.single("x").system.contains("the label only"));
    }

    #[test]
    fn examples_follow_the_instruction_and_change_the_cache_identity() {
        use crate::fewshot::{Example, Examples, Selection, Shots};
        let examples = Examples {
            path: "ex.csv".into(),
            items: vec![
                Example {
                    text: "enak \"sekali\"".into(),
                    label: 0,
                },
                Example {
                    text: "jelek".into(),
                    label: 1,
                },
            ],
        };
        let plain = Prompter::new(&default_labels(), None);
        let p = plain
            .clone()
            .with_shots(Shots::new(examples, 6, Selection::Balanced, 3));
        let r = p.single("x");
        assert_eq!(
            r.system,
            r#"Text sentiment: positif, negatif or netral. Answer with one word. Examples: [["enak \"sekali\"","positif"],["jelek","negatif"]]"#
        );
        assert_eq!(r.user, "x");
        assert!(p
            .batch(&["a", "b"])
            .system
            .ends_with(r#"["jelek","negatif"]]"#));
        assert_ne!(p.identity(), plain.identity());
        assert_eq!(plain.identity(), "positif, negatif, netral|");
        // The estimate counts the examples.
        let more = p.estimated_request_tokens(1, 100.0) - plain.estimated_request_tokens(1, 100.0);
        assert!(more >= 12.0, "{more}");
    }

    #[test]
    fn prompts_stay_short() {
        // The instruction is what every request repeats; keep it well under a text's length.
        let p = Prompter::new(&default_labels(), None);
        assert!(p.single("").estimated_tokens() <= 30, "{:?}", p.single(""));
        let b = p.batch(&[""; 20]);
        let overhead = b.estimated_tokens() - b.max_tokens as u64;
        assert!(overhead <= 50, "{b:?}");
    }
}
