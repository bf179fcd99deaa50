//! What the model is asked. A single text goes verbatim as the user message (nothing of
//! it is rewritten); a batch goes as a numbered JSON list and asks for `{"labels": [...]}`.

use serde_json::json;

use crate::normalize::LabelSet;
use crate::provider::ChatRequest;

#[derive(Debug, Clone)]
pub struct Prompter {
    labels: String,
    /// `--prompt-file` contents, with `{labels}` and `{text}` placeholders.
    template: Option<String>,
    /// The system message for single texts, built once: it is the same for every request.
    system_single: String,
}

impl Prompter {
    pub fn new(labels: &LabelSet, template: Option<String>) -> Prompter {
        let joined = labels.labels().join(", ");
        let system_single = match &template {
            None => format!(
                "You classify the sentiment of the text the user sends. Answer with exactly one word, \
                 one of these {} labels: {joined}. No explanation, no punctuation.",
                labels.labels().len()
            ),
            Some(_) => format!("Answer with exactly one of: {joined}. No explanation."),
        };
        Prompter {
            labels: joined,
            template,
            system_single,
        }
    }

    /// A fingerprint of everything that shapes the answer except the text, for the cache.
    pub fn identity(&self) -> String {
        format!("{}|{}", self.labels, self.template.as_deref().unwrap_or(""))
    }

    pub fn single(&self, text: &str) -> ChatRequest {
        let user = match &self.template {
            None => text.to_string(),
            Some(t) => t.replace("{labels}", &self.labels).replace("{text}", text),
        };
        ChatRequest {
            system: self.system_single.clone(),
            user,
            max_tokens: 16,
            json: false,
        }
    }

    pub fn batch(&self, texts: &[&str]) -> ChatRequest {
        let n = texts.len();
        let items: Vec<_> = texts
            .iter()
            .enumerate()
            .map(|(i, t)| json!({"id": i + 1, "text": t}))
            .collect();
        let list = json!({ "texts": items }).to_string();
        let instruction = format!(
            "Reply with a JSON object {{\"labels\": [...]}} holding exactly {n} labels, one per text, \
             in the order of the ids 1 to {n}. Each label is one of: {}. No explanation.",
            self.labels
        );
        let (system, user) = match &self.template {
            None => (
                format!(
                    "You classify the sentiment of each text in the JSON list the user sends. {instruction}"
                ),
                list,
            ),
            Some(t) => (
                instruction,
                t.replace("{labels}", &self.labels).replace("{text}", &list),
            ),
        };
        ChatRequest {
            system,
            user,
            max_tokens: 8 * n as u32 + 24,
            json: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_sends_the_text_verbatim_and_batches_number_them() {
        let labels = LabelSet::parse("positif,negatif,netral").unwrap();
        let p = Prompter::new(&labels, None);
        let r = p.single("  enak \"sekali\"\n");
        assert_eq!(r.user, "  enak \"sekali\"\n");
        assert!(r.system.contains("positif, negatif, netral"));
        let b = p.batch(&["a", "b"]);
        assert_eq!(
            b.user,
            r#"{"texts":[{"id":1,"text":"a"},{"id":2,"text":"b"}]}"#
        );
        assert!(b.system.contains("exactly 2 labels"));
        assert!(b.json);
        let t = Prompter::new(&labels, Some("Label ({labels}): {text}".into()));
        assert_eq!(t.single("x").user, "Label (positif, negatif, netral): x");
    }
}
