//! Turning a model's reply into one of the allowed labels, or refusing to.
//!
//! Models answer `Positive.`, `**negatif**`, `Sentimen: netral` or a JSON object when
//! asked for one word. All of those are accepted; a reply that names no label, or two
//! different ones, is rejected (and retried by the caller), never guessed.

use serde_json::Value;

/// The allowed labels, in the order given by `--labels`.
#[derive(Debug, Clone)]
pub struct LabelSet {
    labels: Vec<String>,
    /// Lowercased, punctuation-free forms used for matching.
    keys: Vec<String>,
}

/// English and Indonesian forms of the three default classes; a word in one group maps
/// to whichever member of the group is in the label set.
const SYNONYMS: &[&[&str]] = &[
    &["positif", "positive", "pos"],
    &["negatif", "negative", "neg"],
    &["netral", "neutral", "neu", "neutro"],
];

/// Why a `--labels` list is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabelsError {
    /// The same label twice (letter case aside): its replies could not be told apart.
    #[error("label '{0}' is given twice")]
    Twice(String),
    /// Fewer than two labels: there is nothing to choose between.
    #[error("'{0}' must name at least two labels, comma-separated")]
    TooFew(String),
}

impl LabelSet {
    pub fn parse(list: &str) -> Result<LabelSet, LabelsError> {
        let mut labels: Vec<String> = Vec::new();
        for l in list.split(',').map(str::trim).filter(|l| !l.is_empty()) {
            if labels.iter().any(|x| x.eq_ignore_ascii_case(l)) {
                return Err(LabelsError::Twice(l.to_string()));
            }
            labels.push(l.to_string());
        }
        if labels.len() < 2 {
            return Err(LabelsError::TooFew(list.to_string()));
        }
        let keys = labels.iter().map(|l| simplify(l)).collect();
        Ok(LabelSet { labels, keys })
    }

    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    pub fn name(&self, idx: usize) -> &str {
        &self.labels[idx]
    }

    pub fn contains(&self, label: &str) -> bool {
        self.labels.iter().any(|l| l == label)
    }

    /// The label a single word or short phrase stands for.
    fn lookup(&self, candidate: &str) -> Option<usize> {
        let c = simplify(candidate);
        if let Some(i) = self.keys.iter().position(|k| *k == c) {
            return Some(i);
        }
        let group = SYNONYMS.iter().find(|g| g.contains(&c.as_str()))?;
        self.keys.iter().position(|k| group.contains(&k.as_str()))
    }

    /// One reply for one text.
    pub fn normalize(&self, reply: &str) -> Option<usize> {
        let body = strip_fences(reply);
        if let Some(value) = parse_json(body) {
            return self.label_in_json(&value);
        }
        if let Some(i) = self.lookup(body) {
            return Some(i);
        }
        // Look for label words anywhere in the reply; exactly one distinct label must appear.
        let mut found: Option<usize> = None;
        let lowered = body.to_lowercase();
        let words: Vec<&str> = lowered
            .split(|c: char| !c.is_alphanumeric() && c != '-' && c != '_')
            .filter(|w| !w.is_empty())
            .collect();
        for w in &words {
            if let Some(i) = self.lookup(w) {
                match found {
                    Some(f) if f != i => return None,
                    _ => found = Some(i),
                }
            }
        }
        // Multi-word labels ("very positive") only match as a whole phrase.
        for (i, key) in self.keys.iter().enumerate() {
            if key.contains(' ') && simplify(&lowered).contains(key.as_str()) {
                match found {
                    Some(f) if f != i => return None,
                    _ => found = Some(i),
                }
            }
        }
        found
    }

    fn label_in_json(&self, value: &Value) -> Option<usize> {
        match value {
            Value::String(s) => self.lookup(s),
            Value::Object(map) => ["label", "sentiment", "class", "category", "answer"]
                .iter()
                .find_map(|k| map.get(*k))
                .and_then(|v| self.label_in_json(v))
                .or_else(|| match map.get("labels") {
                    Some(Value::Array(a)) if a.len() == 1 => self.label_in_json(&a[0]),
                    _ => None,
                }),
            Value::Array(a) if a.len() == 1 => self.label_in_json(&a[0]),
            _ => None,
        }
    }

    /// A batch reply: `{"labels": [...]}` with exactly `n` known labels, in order.
    pub fn normalize_batch(&self, reply: &str, n: usize) -> Option<Vec<usize>> {
        let value = parse_json(strip_fences(reply))?;
        let items = match &value {
            Value::Object(map) => map
                .get("labels")
                .or_else(|| map.get("sentiments"))?
                .as_array()?,
            Value::Array(a) => a,
            _ => return None,
        };
        if items.len() != n {
            return None;
        }
        // The request sends no ids, but a model may number its answers anyway: a number
        // that is not the item's position means the order cannot be trusted.
        let numbered_elsewhere = items.iter().enumerate().any(|(i, v)| {
            v.get("id")
                .and_then(Value::as_u64)
                .is_some_and(|id| id != i as u64 + 1)
        });
        if numbered_elsewhere {
            return None;
        }
        items.iter().map(|v| self.label_in_json(v)).collect()
    }
}

/// Lowercase, trim surrounding punctuation, quotes and markdown.
fn simplify(s: &str) -> String {
    s.trim()
        .trim_matches(|c: char| !c.is_alphanumeric())
        .to_lowercase()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// The content of a ```json fenced block, or the reply itself.
fn strip_fences(reply: &str) -> &str {
    let t = reply.trim();
    if let Some(start) = t.find("```") {
        let after = &t[start + 3..];
        let after = after.find('\n').map_or(after, |nl| {
            let lang = &after[..nl];
            if lang.trim().chars().all(|c| c.is_ascii_alphanumeric()) {
                &after[nl + 1..]
            } else {
                after
            }
        });
        if let Some(end) = after.find("```") {
            return after[..end].trim();
        }
    }
    t
}

/// A JSON value, also when the reply wraps it in prose (`Here you go: {...}`).
fn parse_json(s: &str) -> Option<Value> {
    if let Ok(v) = serde_json::from_str::<Value>(s) {
        return Some(v);
    }
    let (open, close) = (s.find(['{', '['])?, s.rfind(['}', ']'])?);
    if close <= open {
        return None;
    }
    serde_json::from_str(&s[open..=close]).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set() -> LabelSet {
        LabelSet::parse("positif,negatif,netral").unwrap()
    }

    fn norm(s: &str) -> Option<&'static str> {
        let labels = ["positif", "negatif", "netral"];
        set().normalize(s).map(|i| labels[i])
    }

    #[test]
    fn accepts_messy_but_clear_replies() {
        assert_eq!(norm("positif"), Some("positif"));
        assert_eq!(norm("Positive."), Some("positif"));
        assert_eq!(norm("**negatif**"), Some("negatif"));
        assert_eq!(norm("Sentimen: netral"), Some("netral"));
        assert_eq!(norm("\"Netral\""), Some("netral"));
        assert_eq!(norm("NEGATIVE!"), Some("negatif"));
        assert_eq!(norm("{\"label\": \"positif\"}"), Some("positif"));
        assert_eq!(norm("{\"sentiment\": \"Negative\"}"), Some("negatif"));
        assert_eq!(
            norm("```json\n{\"label\": \"positif\"}\n```"),
            Some("positif")
        );
        assert_eq!(norm("Label: `neutral`"), Some("netral"));
    }

    #[test]
    fn refuses_to_guess() {
        assert_eq!(norm("I cannot tell."), None);
        assert_eq!(norm("positif atau negatif"), None);
        assert_eq!(norm(""), None);
        assert_eq!(norm("{\"label\": \"happy\"}"), None);
    }

    #[test]
    fn custom_label_sets_match_exactly_and_by_synonym() {
        let s = LabelSet::parse("positive,negative,neutral,mixed").unwrap();
        assert_eq!(s.normalize("Positif"), Some(0));
        assert_eq!(s.normalize("Mixed."), Some(3));
        assert!(LabelSet::parse("a").is_err());
        assert!(LabelSet::parse("a,A").is_err());
    }

    #[test]
    fn batches_need_the_exact_count() {
        let s = set();
        assert_eq!(
            s.normalize_batch("{\"labels\": [\"positif\", \"Negative\", \"netral\"]}", 3),
            Some(vec![0, 1, 2])
        );
        assert_eq!(
            s.normalize_batch("```json\n{\"labels\":[\"netral\"]}\n```", 1),
            Some(vec![2])
        );
        assert_eq!(s.normalize_batch("{\"labels\": [\"positif\"]}", 2), None);
        assert_eq!(
            s.normalize_batch("{\"labels\": [\"positif\", \"happy\"]}", 2),
            None
        );
        assert_eq!(s.normalize_batch("{\"labels\": [", 1), None);
        // Numbered answers count only when the numbers are the positions.
        assert_eq!(
            s.normalize_batch(
                r#"{"labels":[{"id":1,"label":"netral"},{"id":2,"label":"positif"}]}"#,
                2
            ),
            Some(vec![2, 0])
        );
        assert_eq!(
            s.normalize_batch(
                r#"{"labels":[{"id":2,"label":"netral"},{"id":1,"label":"positif"}]}"#,
                2
            ),
            None
        );
    }

    mod never_panics {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn replies(reply in ".{0,200}", n in 1usize..60) {
                let labels = LabelSet::parse("positif,negatif,netral").unwrap();
                if let Some(i) = labels.normalize(&reply) {
                    prop_assert!(i < 3);
                }
                if let Some(v) = labels.normalize_batch(&reply, n) {
                    prop_assert_eq!(v.len(), n);
                }
            }

            #[test]
            fn json_like_replies(items in proptest::collection::vec("(positif|Negatif|netral|neutral|x|\\{|\\]|\"|[0-9]){0,3}", 0..8), n in 1usize..8) {
                let labels = LabelSet::parse("positif,negatif,netral").unwrap();
                let reply = format!("{{\"labels\":[{}]}}", items.iter().map(|i| format!("\"{i}\"")).collect::<Vec<_>>().join(","));
                if let Some(v) = labels.normalize_batch(&reply, n) {
                    prop_assert_eq!(v.len(), n);
                }
                let _ = labels.normalize(&reply);
            }

            #[test]
            fn label_lists(list in ".{0,60}") {
                if let Ok(set) = LabelSet::parse(&list) {
                    let _ = set.normalize(&list);
                }
            }
        }
    }
}
